"""Celery tasks and the training code (needs the `train` extra: torch, transformers, TRL, PEFT).

Workers never reach a model hub on their own: models come from the registry's directories.
"""

import os

# Set before huggingface_hub is imported anywhere in the worker process.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
