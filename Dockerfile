# Two images from one file, both installing RLHF Studio's wheel (templates, static files and
# migrations included; no source tree in the image):
#   web    (docker build --target web .)    the web app, `rlhf db upgrade` and Celery beat; no torch
#   worker (docker build --target worker .) the training worker: the same wheel with [train]
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home rlhf && mkdir -p /data && chown rlhf /data
# A writable working directory of its own: ./data (DATA_DIR's default) and beat's schedule land here.
WORKDIR /home/rlhf

FROM base AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md alembic.ini ./
COPY app app
COPY worker worker
COPY migrations migrations
COPY templates templates
COPY static static
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM base AS web
COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
USER rlhf
EXPOSE 8000
CMD ["rlhf", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]

FROM base AS worker
# torch first, pinned, so that [train] (transformers, trl, peft, accelerate) keeps this build
# instead of resolving another. PyPI's Linux build is the CUDA one, for the GPU hosts that
# docker-compose.yml reserves; for a CPU-only worker build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
COPY --from=wheel /wheels /wheels
RUN pip install "$(echo /wheels/*.whl)[train]" && rm -rf /wheels
USER rlhf
CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "train,default", "--concurrency", "1"]
