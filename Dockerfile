# One image for web, worker and beat. The worker's GPU comes from the compose reservation.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/rlhf-studio
COPY pyproject.toml README.md alembic.ini ./
COPY app app
COPY worker worker
COPY migrations migrations
COPY templates templates
COPY static static
RUN pip install .
RUN useradd --create-home rlhf && mkdir -p /data && chown rlhf /data
USER rlhf
EXPOSE 8000
CMD ["rlhf", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
