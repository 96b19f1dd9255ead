"""Training code: one file per method. Imports torch; never imports the web app or Celery."""
