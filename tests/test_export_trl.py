"""An export trains TRL's RewardTrainer and DPOTrainer as it is: no column renamed, nothing mapped.

The data: prompts answered well ("yes good ...") or badly ("no bad ..."), labeled by three
raters; the export is read back with `datasets.load_dataset` and handed to the trainers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.models import Judgment, Role
from app.schemas.export import ComparisonExport
from app.services import exporting
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.tiny_models import make_tiny_causal_lm

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

WORDS = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm")


def export_dataset(session: Session, tmp_path: Path, fmt: str):  # type: ignore[no-untyped-def]
    project = make_project(session, "trl")
    raters = [make_user(session, f"r{i}", Role.rater) for i in range(3)]
    for k, word in enumerate(WORDS * 2):
        prompt = f"tell me about the {word}" + (" please" if k >= len(WORDS) else "")
        pair = make_pair(session, project, prompt, f"yes good {word}", f"no bad {word} {k}")
        for i, rater in enumerate(raters):
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=rater.id,
                    project_id=project.id,
                    choice="A" if i < 2 else "B",
                    strength=2,
                    a_on_left=True,
                )  # fmt: skip
            )
    session.flush()
    spec = ComparisonExport(format=fmt, test_fraction=0.25)
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    exporting.write_directory(export, tmp_path / "export")
    return datasets.load_dataset(str(tmp_path / "export"), cache_dir=str(tmp_path / "cache"))


def common_args(tmp_path: Path) -> dict:
    return {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "report_to": "none",
        "save_strategy": "no",
        "bf16": False,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "logging_steps": 1,
        "max_length": 64,
        "disable_tqdm": True,
    }


def snapshot(model) -> dict:  # type: ignore[no-untyped-def]
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before: dict, model) -> bool:  # type: ignore[no-untyped-def]
    return any(not torch.equal(before[name], p) for name, p in model.named_parameters())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_reward_trainer_trains_on_a_parquet_export(
    session: Session, tmp_path: Path, tiny_model: Path
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dataset = export_dataset(session, tmp_path, "parquet")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    before = snapshot(model)
    trainer = trl.RewardTrainer(
        model=model,
        args=trl.RewardConfig(**common_args(tmp_path)),
        train_dataset=dataset["train"],
        eval_dataset=dataset["test"],
        processing_class=tokenizer,
    )
    trainer.train()
    assert changed(before, model)
    assert trainer.state.log_history[0]["loss"] > 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dpo_trainer_trains_on_a_jsonl_export(session: Session, tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dataset = export_dataset(session, tmp_path, "jsonl")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    before = snapshot(model)
    trainer = trl.DPOTrainer(
        model=model,
        args=trl.DPOConfig(**common_args(tmp_path)),
        train_dataset=dataset["train"],
        processing_class=tokenizer,
    )
    trainer.train()
    assert changed(before, model)
