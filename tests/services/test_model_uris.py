"""Model locations are checked when registered: no nonexistent path, no unknown scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services.registry import RegistryError, checked_model_uri


def test_model_locations_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(RegistryError, match="no config.json"):
        checked_model_uri(str(model))
    (model / "config.json").write_text("{}")
    assert checked_model_uri("model") == str(model.resolve())
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert checked_model_uri(f"file://{adapter}") == str(adapter.resolve())
    for bad in ("../../etc/passwd", "/etc/passwd", "/nonexistent/model", "./missing", "a/b/c"):
        with pytest.raises(RegistryError, match="not an existing directory"):
            checked_model_uri(bad)
    with pytest.raises(RegistryError, match="unknown scheme"):
        checked_model_uri("javascript://alert(1)")
    assert checked_model_uri("s3://bucket/models/base") == "s3://bucket/models/base"
    assert checked_model_uri("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
