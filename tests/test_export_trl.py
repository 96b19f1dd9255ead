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


# --- rater-written demonstrations and edit preferences -----------------------------------------

WRITING_WORDS = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star", "sky", "sea", "river", "hill"]


def seed_writing(session: Session):  # type: ignore[no-untyped-def]
    """Written and improved demonstrations through the writing service, reviewed (one written
    answer rejected), beside one imported demonstration."""
    from app.models import Demonstration, ModelKind, ModelVersion
    from app.services.content import text_hash
    from tests.utils.writing_data import write_and_review

    project = make_project(session, "writers", task_mix={"write": 0.5, "improve": 0.5})
    writer, editor, reviewer = (make_user(session, name, Role.rater) for name in ("wendy", "eddie", "rita"))
    version = ModelVersion(name="policy-v1", kind=ModelKind.policy, uri="/models/v1")
    session.add(version)
    session.flush()
    made = write_and_review(
        session, project, writer=writer, editor=editor, reviewer=reviewer,
        words=WRITING_WORDS, reject=frozenset({"cat"}), version_id=version.id,
    )  # fmt: skip
    imported = Demonstration(project_id=project.id, prompt_id=made.prompts["dog"], response="a dog can run",
                             content_hash=text_hash("a dog can run"))  # fmt: skip
    session.add(imported)
    session.flush()
    return project, made, (writer, editor), version


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sft_trainer_trains_on_a_demonstrations_export(
    session: Session, tmp_path: Path, tiny_model: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from app.schemas.export import DemoExport

    project, made, (writer, editor), version = seed_writing(session)
    spec = DemoExport(format="jsonl", test_fraction=0.25, demonstration_source="raters")
    export = exporting.prepare_demos(session, project=project, spec=spec, secret_key="k")
    exporting.write_directory(export, tmp_path / "export")
    dataset = datasets.load_dataset(str(tmp_path / "export"), cache_dir=str(tmp_path / "cache"))
    rows = sorted([*dataset["train"], *dataset.get("test", [])], key=lambda r: r["demonstration_id"])

    # the accepted written and improved answers (not the rejected one, not the imported one),
    # each in TRL's conversational format with its review and its author's pseudonym
    expected = sorted([*(v for w, v in made.written.items() if w != "cat"), *made.improved.values()])
    assert [r["demonstration_id"] for r in rows] == expected
    pseudonym = exporting.Pseudonyms("k")
    for row in rows:
        word = row["messages"][0]["content"].split()[-1]
        assert row["messages"][0]["role"] == "user" and row["messages"][-1]["role"] == "assistant"
        assert (row["review_status"], row["reviews"], row["reviews_accepted"], row["review_score"]) == (
            "accepted", 1, 1, 5.0)  # fmt: skip
        if row["source"] == "written":
            assert row["messages"][-1]["content"] == f"the {word} is good"
            assert row["author"] == pseudonym(writer.id) and row["edit_distance"] == -1
            assert row["edited_from_completion_id"] == 0 and row["edited_from_model_version_id"] == 0
        else:
            assert row["source"] == "improved" and row["messages"][-1]["content"] == f"yes good {word}"
            assert (
                row["author"] == pseudonym(editor.id) and row["edit_distance"] == 6
            )  # "no bad" -> "yes good"
            assert row["edited_from_completion_id"] == made.originals[word].id
            assert row["edited_from_model_version_id"] == version.id
    assert "wendy" not in {r["author"] for r in rows}
    card = (tmp_path / "export" / "README.md").read_text()
    assert "## Writing" in card and "| source: written | 11 |" in card and "| source: improved | 12 |" in card
    assert "| source: imported | 0 |" in card and "| review: rejected | 0 |" in card
    assert "| mean review score (1-5) | 5.00 (23 reviewed) |" in card
    assert "| mean edit distance of improvements (characters) | 6.0 (12 improved) |" in card
    assert "| authors (pseudonymous) | 2 |" in card

    # SFTTrainer takes the export as it is
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    before = snapshot(model)
    trainer = trl.SFTTrainer(
        model=model,
        args=trl.SFTConfig(**common_args(tmp_path)),
        train_dataset=dataset["train"],
        processing_class=tokenizer,
    )
    trainer.train()
    assert changed(before, model)
    assert trainer.state.log_history[0]["loss"] > 0

    # with the rejected and the imported ones asked for, they come too
    spec = DemoExport(test_fraction=0, include_rejected=True)
    export = exporting.prepare_demos(session, project=project, spec=spec, secret_key="k")
    source, status = (
        next(i for i, c in enumerate(export.columns) if c.name == n) for n in ("source", "review_status")
    )
    sources = {(row[source], row[status]) for row in exporting.iter_rows(export.batches())}
    assert sources == {("imported", "accepted"), ("written", "accepted"), ("written", "rejected"),
                       ("improved", "accepted")}  # fmt: skip


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_reward_trainer_trains_on_the_edit_preferences(
    session: Session, tmp_path: Path, tiny_model: Path
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    project, made, _, _ = seed_writing(session)
    spec = ComparisonExport(format="parquet", label_source="edit", test_fraction=0.25)
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    exporting.write_directory(export, tmp_path / "export")
    dataset = datasets.load_dataset(str(tmp_path / "export"), cache_dir=str(tmp_path / "cache"))
    rows = [*dataset["train"], *dataset.get("test", [])]
    # one pair per improvement: the edit beats the completion it was edited from
    assert len(rows) == len(WRITING_WORDS)
    for row in rows:
        word = row["prompt"][0]["content"].split()[-1]
        assert row["chosen"] == [{"role": "assistant", "content": f"yes good {word}"}]
        assert row["rejected"] == [{"role": "assistant", "content": f"no bad {word}"}]
        assert row["source"] == "edit"
    assert "Label source: edit." in (tmp_path / "export" / "README.md").read_text()

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    before = snapshot(model)
    trainer = trl.RewardTrainer(
        model=model,
        args=trl.RewardConfig(**common_args(tmp_path)),
        train_dataset=dataset["train"],
        processing_class=tokenizer,
    )
    trainer.train()
    assert changed(before, model)
    assert trainer.state.log_history[0]["loss"] > 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_reward_trainer_trains_on_the_expanded_rankings_export(
    session: Session, tmp_path: Path, tiny_model: Path
) -> None:
    """Rankings of four completions, exported as the pairs they imply, train RewardTrainer as is."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from app.models import RankingJudgment
    from tests.utils.rankings import make_ranking

    project = make_project(session, "ranked")
    raters = [make_user(session, f"r{i}", Role.rater) for i in range(2)]
    for k, word in enumerate(WORDS):
        texts = [f"yes good {word}", f"fine {word}", f"meh {word} {k}", f"no bad {word} {k}"]
        ranking = make_ranking(session, project, f"tell me about the {word}", texts)
        for rater, ranks, cutoff in ((raters[0], [1, 2, 3, 4], None), (raters[1], [1, 2, 2, 3], 2)):
            session.add(
                RankingJudgment(ranking_id=ranking.id, rater_id=rater.id, project_id=project.id,
                                ranks=ranks, cutoff_rank=cutoff, display_order=[3, 2, 1, 0])
            )  # fmt: skip
    session.flush()
    spec = ComparisonExport(format="parquet", test_fraction=0.0, aggregation="per_rater")
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    exporting.write_directory(export, tmp_path / "export")
    dataset = datasets.load_dataset(str(tmp_path / "export"), cache_dir=str(tmp_path / "cache"))
    # per rater: 6 pairs from the strict order, 5 from the one with a tie (the tie gives no row)
    assert dataset["train"].num_rows == len(WORDS) * (6 + 5)
    assert "Rankings: 8, implying 48 pairs" in (tmp_path / "export" / "README.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    before = snapshot(model)
    trainer = trl.RewardTrainer(
        model=model,
        args=trl.RewardConfig(**common_args(tmp_path)),
        train_dataset=dataset["train"],
        processing_class=tokenizer,
    )
    trainer.train()
    assert changed(before, model)
    assert trainer.state.log_history[0]["loss"] > 0
