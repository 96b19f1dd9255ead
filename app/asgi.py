"""The ASGI entry point for uvicorn: `uvicorn app.asgi:app`."""

from app.web.app import create_app

app = create_app()
