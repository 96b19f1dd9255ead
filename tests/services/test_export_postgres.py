"""PostgreSQL writes an export's JSON lines itself (exporting/postgres.py): the same bytes, files
and dataset card as the Python row path, on a project made to hit every rule and escape."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_sessionmaker
from app.models import Comparison, Completion, Judgment, Project, Role
from app.schemas.export import ComparisonExport
from app.services import exporting
from app.services.exporting.postgres import split_threshold
from tests.utils.factories import make_comparison, make_model_version, make_project, make_user

TEXTS = [
    "plain answer, 100% %s sure",
    'quotes " and \\ backslash, tab\there, newline\nthere, \x01 control, \x7f del',
    "unicode: é, 中文, emoji 🙂, \u2028 line separator",
    "",
    "x" * 300,
]


def seed(session: Session) -> Project:
    rng = random.Random(7)
    project = make_project(session, "fast", flags=["unsafe", "off-topic", "zz", "Äpfel"], overlap=3)
    raters = [make_user(session, f"rater{i}", Role.rater) for i in range(9)]
    judge = make_user(session, "judge", Role.judge)
    base = make_model_version(session, "base-model")
    child = make_model_version(session, "policy-v1", parent=base)
    samplings = [None, {}, {"temperature": 0.7, "top_p": 0.95}, {"top_p": 1e-05, "name": "naïve", "n": 2}]
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    for k in range(36):
        messages = [{"role": "user", "content": f"question {k}: {TEXTS[k % len(TEXTS)]}"}]
        if k % 4 == 1:
            messages = [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": f"first {k}"},
                {"role": "assistant", "content": TEXTS[(k + 1) % len(TEXTS)]},
                {"role": "user", "content": "and then?"},
            ]
        pair = make_comparison(
            session, project, messages, f"A {k} {TEXTS[(k + 2) % 5]}", f"B {k} {TEXTS[k % 5]}"
        )
        for side, completion_id in enumerate((pair.completion_a_id, pair.completion_b_id)):
            completion = session.get(Completion, completion_id)
            assert completion is not None
            completion.model_name = [None, "", "imported-model"][(k + side) % 3]
            completion.model_version_id = [None, base.id, child.id][(k + 2 * side) % 3]
            completion.sampling = samplings[(k + side) % len(samplings)]
        if k % 9 == 3:
            pair.kind, pair.gold_choice = "gold", ["A", "B", "tie"][k % 3]
        if k % 11 == 5:
            pair.resolved_choice = "B"
        votes = 0 if k == 10 else (8 if k % 5 == 0 else 7 if k % 5 == 1 else 3)
        for i in range(votes):
            roll = rng.random()
            choice = "A" if roll < 0.45 else "B" if roll < 0.85 else "tie"
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=raters[i].id,
                    project_id=project.id,
                    choice=choice,
                    strength=0 if choice == "tie" else 1 + (rng.random() < 0.4),
                    both_bad=rng.random() < 0.1,
                    flags=[[], [], ["unsafe"], ["zz", "off-topic"], ["Äpfel"]][rng.randrange(5)],
                    rationale=rng.choice(["", "clear", TEXTS[1], TEXTS[2]]),
                    time_spent_ms=rng.randrange(9000),
                    a_on_left=rng.random() < 0.5,
                    created_at=start + timedelta(minutes=k, microseconds=rng.choice([0, 1, 123456])),
                )  # fmt: skip
            )
        if k % 3 == 0:
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=judge.id,
                    project_id=project.id,
                    choice="A",
                    strength=2,
                    a_on_left=True,
                    source="ai",
                    created_at=start,
                )  # fmt: skip
            )
    session.commit()
    return project


SPECS = [
    {},
    {"aggregation": "per_rater"},
    {"aggregation": "mean_strength"},
    {"layout": "implicit", "aggregation": "per_rater"},
    {"layout": "text"},
    {"layout": "hh", "aggregation": "per_rater"},
    {"ties": "ignore", "include_both_bad": True},
    {"ties": "ignore", "aggregation": "per_rater"},
    {"min_agreement": 0.6, "aggregation": "per_rater"},
    {"min_agreement": 0.6},
    {"exclude_flags": ["unsafe", "Äpfel"], "aggregation": "mean_strength"},
    {"label_source": "both", "gold": "exclude"},
    {"label_source": "ai", "aggregation": "per_rater"},
    {"gold": "only"},
    {"raters": ["rater1", "rater2", "nobody"], "aggregation": "per_rater"},
    {"date_from": "2026-03-01T12:10:00Z", "date_to": "2026-03-01T12:30:00Z"},
    {"metadata": False, "aggregation": "per_rater"},
    {"test_fraction": 0.5, "split_seed": 3},
    {"test_fraction": 0.0},
]


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "README.md":  # the export's time stamp differs
                data = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"Exported from"))
            out[str(path.relative_to(root))] = data
    return out


def _prepare(
    session: Session, project: Project, spec: ComparisonExport, *, fast: bool, tables: bool = True
) -> exporting.PreparedExport:
    export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
    assert export.lines is not None, "PostgreSQL takes the SQL path for JSONL and Parquet"
    columnar = spec.format == "parquet" and spec.aggregation == "per_rater" and spec.layout in (None, "text")
    assert (export.tables is not None) == columnar, "Parquet per rater is read as columns"
    if not fast:
        export.lines = export.tables = None  # the Python row path
    if not tables:
        export.tables = None  # the JSON lines
    return export


@pytest.fixture
def pg_factory(pg_url: str) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(pg_url, pool_size=2))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_postgres_lines_are_the_python_rows_byte_for_byte(
    pg_factory: sessionmaker[Session], tmp_path: Path, fmt: str
) -> None:
    with pg_factory() as session:
        seed(session)
    for n, options in enumerate(SPECS):
        spec = ComparisonExport(format=fmt, **options)  # type: ignore[arg-type]
        outputs = []
        for fast in (False, True):
            with pg_factory() as session:
                project = session.scalars(select(Project).where(Project.slug == "fast")).one()

                export = _prepare(session, project, spec, fast=fast)
                files = exporting.write_directory(export, tmp_path / f"{n}-{fast}")
                streamed = b"".join(
                    exporting.stream_file(_prepare(session, project, spec, fast=fast), split="test")
                )
                outputs.append((files, _files(tmp_path / f"{n}-{fast}"), streamed, export.stats))
        (files_py, data_py, streamed_py, stats_py), (files_sql, data_sql, streamed_sql, stats_sql) = outputs
        assert files_sql == files_py, options
        assert data_sql.keys() == data_py.keys(), options
        for name in data_py:
            assert data_sql[name] == data_py[name], (options, name)
        assert streamed_sql == streamed_py, options
        assert stats_sql.total == stats_py.total > 0 or options.get("gold") == "only", options
        assert stats_sql.preference == stats_py.preference, options


def test_every_rule_is_hit_by_the_seed(pg_factory: sessionmaker[Session]) -> None:
    """The seed gives drops of every kind, so that the comparison above covers them."""
    with pg_factory() as session:
        project = seed(session)
        spec = ComparisonExport(format="jsonl", exclude_flags=["zz"], min_agreement=0.5)
        export = exporting.prepare_comparisons(session, project=project, spec=spec, secret_key="k")
        for _ in exporting.stream_file(export):
            pass
        assert {"flagged", "both_bad", "split", "below_min_agreement", "tie"} <= set(
            export.stats.preference.dropped
        )
        assert (
            session.scalar(select(Comparison.id).where(Comparison.resolved_choice.is_not(None))) is not None
        )


@pytest.mark.parametrize("fraction", [0.0, 1e-12, 0.1, 0.5, 0.999999])
def test_split_threshold_is_where_the_python_split_turns(fraction: float) -> None:
    threshold = split_threshold(fraction)
    if fraction == 0:
        assert threshold == 0
        return
    assert threshold / 2**64 >= fraction
    assert (threshold - 1) / 2**64 < fraction


@pytest.mark.parametrize(
    "options",
    [
        {"aggregation": "per_rater"},
        {"layout": "implicit", "aggregation": "per_rater"},
        {"layout": "text", "aggregation": "per_rater", "test_fraction": 0.5},
        {"aggregation": "per_rater", "metadata": False},
        {"aggregation": "per_rater", "exclude_flags": ["unsafe"], "min_agreement": 0.6},
        {"layout": "hh"},
        {"metadata": False},
    ],
)
def test_postgres_parquet_is_the_python_table(
    pg_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, object],
) -> None:
    """Parquet from the statement's lines, and from its columns where they apply: the same
    schema, row groups and table as the Python row path, with batches, CSV blocks and row groups
    that split a comparison's lines."""
    import pyarrow.parquet as pq

    from app.services.exporting import postgres, postgres_columns, prepare, writers

    monkeypatch.setattr(prepare, "WRITE_BATCH", 7)
    monkeypatch.setattr(postgres, "WRITE_BATCH", 7)
    monkeypatch.setattr(writers, "PARQUET_ROW_GROUP", 10)
    monkeypatch.setattr(postgres_columns, "BLOCK_SIZE", 4096)
    with pg_factory() as session:
        seed(session)
    spec = ComparisonExport(format="parquet", **options)  # type: ignore[arg-type]
    for name, fast, tables in (("python", False, False), ("lines", True, False), ("tables", True, True)):
        with pg_factory() as session:
            project = session.scalars(select(Project).where(Project.slug == "fast")).one()
            export = _prepare(session, project, spec, fast=fast, tables=tables)
            exporting.write_file(export, tmp_path / f"{name}.parquet")
    python = pq.ParquetFile(tmp_path / "python.parquet")
    for name in ("lines", "tables"):
        sql = pq.ParquetFile(tmp_path / f"{name}.parquet")
        assert sql.schema_arrow == python.schema_arrow
        assert sql.metadata.num_row_groups == python.metadata.num_row_groups >= 2
        for group in range(python.metadata.num_row_groups):
            assert sql.read_row_group(group).equals(python.read_row_group(group)), (options, name, group)
        assert (tmp_path / f"{name}.parquet").read_bytes() == (tmp_path / "python.parquet").read_bytes()
