"""Exports load with `datasets.load_dataset` as they are; imports of TRL and HH data round-trip."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Comparison, Completion, Demonstration, Judgment, Project, Role
from app.schemas.export import ComparisonExport, DemoExport
from app.services import exporting
from app.services.importing.preferences import import_preferences
from app.services.importing.schema import ImportFailed
from tests.utils.factories import (
    make_human_judgment,
    make_model_version,
    make_pair,
    make_project,
    make_user,
    make_versus_pair,
)

datasets = pytest.importorskip("datasets")

N_PAIRS = 30


def seed(session: Session, *, overlap: int = 3) -> Project:
    project = make_project(session, "export", flags=["unsafe", "off-topic"])
    raters = [make_user(session, f"rater{i}", Role.rater) for i in range(overlap)]
    for k in range(N_PAIRS):
        pair = make_pair(session, project, f"question number {k}", f"a good answer {k}", f"bad {k}")
        for i, rater in enumerate(raters):
            choice = "A" if (k + i) % 4 else "B"  # mostly A, some 2-1 splits
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=rater.id,
                    project_id=project.id,
                    choice=choice,
                    strength=1 + (k + i) % 2,
                    a_on_left=bool(i % 2),
                    flags=["unsafe"] if k == 7 else [],
                    rationale=f"because {k}",
                    time_spent_ms=1000 + k,
                )  # fmt: skip
            )
    demo_prompt = session.scalars(select(Comparison.prompt_id).limit(1)).one()
    session.add(
        Demonstration(project_id=project.id, prompt_id=demo_prompt, response="ideal", content_hash="x")
    )
    session.flush()
    return project


def load(path: Path, cache: Path):  # type: ignore[no-untyped-def]
    return datasets.load_dataset(str(path), cache_dir=str(cache))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv"])
@pytest.mark.parametrize("aggregation", ["majority", "per_rater"])
def test_every_format_loads_as_it_is(session: Session, tmp_path: Path, fmt: str, aggregation: str) -> None:
    project = seed(session)
    spec = ComparisonExport(format=fmt, aggregation=aggregation, test_fraction=0.3)
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    files = exporting.write_directory(export, tmp_path / "out")
    assert set(files) == {"train", "test"}

    dataset = load(tmp_path / "out", tmp_path / "cache")
    expected_rows = N_PAIRS if aggregation == "majority" else N_PAIRS * 3
    assert sum(len(split) for split in dataset.values()) == expected_rows == export.stats.total
    train = dataset["train"]
    assert {"chosen", "rejected", "prompt", "margin", "agreement", "comparison_id", "split"} <= set(
        train.column_names
    )
    if fmt == "csv":
        assert isinstance(train[0]["prompt"], str) and train[0]["chosen"].startswith(("a good", "bad"))
    else:  # TRL's conversational format
        assert train[0]["prompt"][0]["role"] == "user"
        assert train[0]["chosen"] == [{"role": "assistant", "content": train[0]["chosen"][0]["content"]}]
    # The split is by prompt: no prompt in both.
    prompts = {name: {row["prompt_id"] for row in dataset[name]} for name in ("train", "test")}
    assert prompts["train"] and prompts["test"] and not prompts["train"] & prompts["test"]
    # A single file loads with the generic builders too.
    single = tmp_path / f"all.{fmt}"
    again = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    exporting.write_file(again, single)
    builder = {"jsonl": "json", "parquet": "parquet", "csv": "csv"}[fmt]
    flat = datasets.load_dataset(builder, data_files=str(single), cache_dir=str(tmp_path / "c2"))["train"]
    assert len(flat) == expected_rows


@pytest.mark.parametrize("layout", ["implicit", "text", "hh"])
def test_other_layouts(session: Session, tmp_path: Path, layout: str) -> None:
    project = seed(session)
    spec = ComparisonExport(layout=layout, metadata=False, test_fraction=0)
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    exporting.write_directory(export, tmp_path / "out")
    train = load(tmp_path / "out", tmp_path / "cache")["train"]
    row = train[0]
    assert set(train.column_names) == (
        {"chosen", "rejected", "margin"} | ({"prompt"} if layout == "text" else set())
    )
    if layout == "implicit":
        assert [m["role"] for m in row["chosen"]] == ["user", "assistant"]
    elif layout == "hh":
        assert row["chosen"].startswith("\n\nHuman: question number") and "\n\nAssistant: " in row["chosen"]
    else:
        assert row["prompt"].startswith("question number")


def test_archive_holds_the_card_and_the_splits(session: Session, tmp_path: Path) -> None:
    project = seed(session)
    spec = ComparisonExport(format="parquet", exclude_flags=["unsafe"], license="cc-by-4.0")
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    data = b"".join(exporting.stream_archive(export))
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert names[0] == "data/train.parquet" and names[-1] == "README.md"
    archive.extractall(tmp_path / "x")
    card = (tmp_path / "x" / "README.md").read_text()
    assert 'license: "cc-by-4.0"' in card
    assert "Aggregation: majority vote" in card and "Ties:" in card and "Both bad:" in card
    assert "Excluded flags: unsafe" in card and "Raters: " in card and "| mean |" in card
    assert "- flagged: 3" in card  # pair 7's three judgments carry the flag
    dataset = load(tmp_path / "x", tmp_path / "cache")
    total = sum(len(split) for split in dataset.values())
    assert total == export.stats.total
    assert total == N_PAIRS - 1 and all("unsafe" not in row["flags"] for row in dataset["train"])


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv"])
@pytest.mark.parametrize("aggregation", ["majority", "per_rater"])
def test_rows_name_the_models_and_versions_and_the_card_lists_the_versions(
    session: Session, tmp_path: Path, fmt: str, aggregation: str
) -> None:
    project = make_project(session, "provenance")
    rater = make_user(session, "judge-of-versions", Role.rater)
    base = make_model_version(session, "base-lm")
    sft = make_model_version(session, "provenance-sft-run1", parent=base)
    dpo = make_model_version(session, "provenance-dpo-run2", project=project, parent=sft)
    for k in range(4):
        pair = make_versus_pair(session, project, f"prompt {k}", f"new {k}", dpo, f"old {k}", base)
        make_human_judgment(session, pair, rater, "A")
    imported = make_pair(session, project, "imported prompt", "mine", "theirs")
    session.get(Completion, imported.completion_a_id).model_name = "gpt-x"  # type: ignore[union-attr]
    make_human_judgment(session, imported, rater, "A")
    session.flush()

    spec = ComparisonExport(format=fmt, aggregation=aggregation, test_fraction=0)
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    data = b"".join(exporting.stream_archive(export))
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path / "x")
    train = load(tmp_path / "x", tmp_path / "cache")["train"]
    rows = {row["prompt_id"]: row for row in train}
    assert len(rows) == 5
    keys = ("chosen_model", "chosen_model_version", "chosen_model_version_id",
            "rejected_model", "rejected_model_version", "rejected_model_version_id")  # fmt: skip
    # CSV has no empty string apart from a missing value: `datasets` reads "" back as None.
    provenance = {tuple("" if r[k] is None else r[k] for k in keys) for r in rows.values()}
    assert provenance == {
        ("base-lm", "provenance-dpo-run2", dpo.id, "base-lm", "base-lm", base.id),
        ("gpt-x", "", 0, "", "", 0),
    }
    card = (tmp_path / "x" / "README.md").read_text()
    assert "## Model versions" in card
    assert f"| {base.id} | base-lm | policy | - | - | 4 |" in card
    assert f"| {dpo.id} | provenance-dpo-run2 | policy | provenance-sft-run1 | - | 4 |" in card
    assert f"| {sft.id} | provenance-sft-run1 |" not in card  # it sampled none of the rows


def test_filters_and_unknown_raters(session: Session) -> None:
    project = seed(session)
    make_user(session, "quiet", Role.rater)
    for name in ("nobody", "quiet"):  # unknown, or known without judgments: no rows either way
        spec = ComparisonExport(raters=[name])
        export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
        assert list(exporting.iter_rows(export.batches())) == []
    spec = ComparisonExport(raters=["rater0"], aggregation="per_rater")
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    rows = list(exporting.iter_rows(export.batches()))
    names = [c.name for c in export.columns]
    raters = {row[names.index("rater")] for row in rows}
    assert len(rows) == N_PAIRS and len(raters) == 1 and "rater0" not in raters  # pseudonymous


def test_demonstrations_export_as_messages(session: Session, tmp_path: Path) -> None:
    project = seed(session)
    export = exporting.prepare_demos(
        session, project=project, spec=DemoExport(test_fraction=0), secret_key="k"
    )
    exporting.write_directory(export, tmp_path / "out")
    train = load(tmp_path / "out", tmp_path / "cache")["train"]
    assert len(train) == 1
    assert train[0]["messages"][-1] == {"role": "assistant", "content": "ideal"}


# --- imports of existing preference data round-trip through export -----------------------------

HH_ROWS = [
    {
        "chosen": "\n\nHuman: What is a cat?\n\nAssistant: A small animal.",
        "rejected": "\n\nHuman: What is a cat?\n\nAssistant: A tree.",
    },
    {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Knock knock.",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No.",
    },
]
TRL_EXPLICIT = [
    {
        "prompt": [{"role": "user", "content": "Name a colour"}],
        "chosen": [{"role": "assistant", "content": "Blue"}],
        "rejected": [{"role": "assistant", "content": "Seven"}],
    },
    {"prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away."},
]
TRL_IMPLICIT = [
    {
        "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
    }
]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def exported(session: Session, project: Project, layout: str) -> list[dict]:
    spec = ComparisonExport(layout=layout, metadata=False, test_fraction=0)
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    names = [c.name for c in export.columns]
    return [
        {k: v for k, v in zip(names, row, strict=True) if k != "margin"}
        for row in exporting.iter_rows(export.batches())
    ]


def test_hh_import_round_trips(session: Session) -> None:
    project = make_project(session, "hh")
    report = import_preferences(session, project=project, filename="hh.jsonl", data=jsonl(HH_ROWS))
    assert report.created == 2
    assert exported(session, project, "hh") == HH_ROWS
    # Importing again adds nothing: no doubled pairs, no doubled labels.
    import_preferences(session, project=project, filename="hh.jsonl", data=jsonl(HH_ROWS))
    assert session.scalar(select(func.count()).select_from(Judgment)) == 2


def test_trl_imports_round_trip(session: Session) -> None:
    project = make_project(session, "trl")
    import_preferences(session, project=project, filename="explicit.jsonl", data=jsonl(TRL_EXPLICIT[:1]))
    assert exported(session, project, "conversational") == TRL_EXPLICIT[:1]
    import_preferences(
        session, project=project, filename="text.json", data=json.dumps(TRL_EXPLICIT[1:]).encode()
    )
    assert exported(session, project, "text")[-1] == TRL_EXPLICIT[1]
    import_preferences(session, project=project, filename="implicit.jsonl", data=jsonl(TRL_IMPLICIT))
    assert exported(session, project, "implicit")[-1] == TRL_IMPLICIT[0]
    pair = session.scalars(select(Comparison).order_by(Comparison.id.desc())).first()
    assert pair is not None and pair.judgment_count == 1  # raters can add votes up to the overlap


def test_bad_preference_rows_import_nothing(session: Session) -> None:
    project = make_project(session, "bad")
    rows = [HH_ROWS[0], {"chosen": "no transcript", "rejected": "x"}, {"chosen": TRL_IMPLICIT[0]["chosen"]}]
    with pytest.raises(ImportFailed) as caught:
        import_preferences(session, project=project, filename="bad.jsonl", data=jsonl(rows))
    assert [p.line for p in caught.value.problems] == [2, 2, 3]
    assert session.scalar(select(func.count()).select_from(Comparison)) == 0


@pytest.mark.parametrize("value", ["-170326913", "1700000000", "12.5"])
def test_export_dates_are_iso_text_never_bare_numbers(value: str) -> None:
    with pytest.raises(ValidationError, match="ISO 8601"):
        ComparisonExport(date_from=value)
    assert ComparisonExport(date_from="2026-01-31").date_from == datetime(2026, 1, 31, tzinfo=UTC)
