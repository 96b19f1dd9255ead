"""Models published to a remote store (any fsspec URL) are complete before they can be used,
and workers fetch them into a local cache."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from tests.utils.tiny_models import make_tiny_causal_lm
from worker.training.models import fetch, publish


def test_publish_and_fetch_through_a_remote_store(tmp_path: Path) -> None:
    store = "memory://rlhf-test-store"
    model_dir = make_tiny_causal_lm(tmp_path / "tiny")
    files = sorted(p.name for p in model_dir.iterdir())
    uri = publish(model_dir, store, "policy-v1")
    assert uri == f"{store}/policy-v1" and not model_dir.exists()
    local = Path(fetch(uri, tmp_path / "cache"))
    assert sorted(p.name for p in local.iterdir() if p.name != "_COMPLETE") == files
    assert fetch(uri, tmp_path / "cache") == str(local)  # cached: fetched once

    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(local).config.num_hidden_layers == 2


def test_an_unfinished_upload_is_refused(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/rlhf-test-store/half/config.json", b"{}")  # no _COMPLETE marker: upload cut short
    with pytest.raises(FileNotFoundError, match="not a complete model upload"):
        fetch("memory://rlhf-test-store/half", tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
