"""The tallies the database keeps of the judgments (app/models/tallies.py) equal a recount of
the judgments after every kind of write: one judgment, many in one statement (several on one
comparison), a retried insert that is ignored, an undo, an edit, a deleted comparison, rater
or project, AI votes, and two raters voting on one pair at the same moment (PostgreSQL)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflicts, make_sessionmaker
from app.models import (
    Comparison,
    ComparisonTally,
    Completion,
    Judgment,
    Project,
    RaterFlagTally,
    RaterHour,
    RaterPairTally,
    RaterTally,
    User,
)
from tests.utils.factories import make_pair, make_project, make_user

SIGNED = (-2, -1, 0, 1, 2)


def _signed(choice: str, strength: int) -> int:
    return strength if choice == "A" else -strength if choice == "B" else 0


def recount(session: Session) -> dict[str, dict[Any, tuple[int, ...]]]:
    """Every tally, computed in Python from the judgments as they stand."""
    session.flush()
    j = Judgment.__table__.c
    rows = session.execute(
        select(
            j.id,
            j.comparison_id,
            j.project_id,
            j.rater_id,
            j.source,
            j.choice,
            j.strength,
            j.both_bad,
            j.a_on_left,
            j.flags,
            j.created_at,
        )
    ).all()
    lengths = {cid: len(text) for cid, text in session.execute(select(Completion.id, Completion.text))}
    sides = {c.id: (c.completion_a_id, c.completion_b_id) for c in session.scalars(select(Comparison))}
    comparisons: dict[Any, Counter[str]] = {}
    raters: dict[Any, Counter[str]] = {}
    hours: Counter[Any] = Counter()
    flags: Counter[Any] = Counter()
    pairs: dict[Any, Counter[str]] = {}
    by_comparison: dict[int, list[Any]] = {}
    for r in rows:
        source, choice = str(r.source), str(r.choice)
        c = comparisons.setdefault((r.comparison_id, source), Counter())
        c.update(votes=1, a=choice == "A", b=choice == "B", tie=choice == "tie")
        c[f"s{_signed(choice, r.strength)}"] += 1
        c["project"] = r.project_id
        t = raters.setdefault((r.project_id, r.rater_id, source), Counter())
        left = (choice == "A" and r.a_on_left) or (choice == "B" and not r.a_on_left)
        t.update(judgments=1, ties=choice == "tie", both_bad=bool(r.both_bad), non_tie=choice != "tie")
        t.update(left=bool(left), flagged=bool(r.flags), **{f"s{_signed(choice, r.strength)}": 1})
        created = r.created_at.astimezone(UTC) if r.created_at.tzinfo else r.created_at
        hours[(r.project_id, r.rater_id, source, created.strftime("%Y-%m-%d %H"))] += 1
        for flag in set(r.flags or []):
            flags[(r.project_id, r.rater_id, source, flag)] += 1
        if source == "human":
            by_comparison.setdefault(r.comparison_id, []).append(r)
    for votes in by_comparison.values():
        for x in votes:
            for y in votes:
                if y.id < x.id:
                    p = pairs.setdefault((x.project_id, x.rater_id, y.rater_id), Counter())
                    p.update(pairs=1, agreeing=str(x.choice) == str(y.choice))
    signed = tuple(f"s{v}" for v in SIGNED)
    return {
        "comparisons": {
            key: (
                c["project"],
                c["votes"],
                c["a"],
                c["b"],
                c["tie"],
                *(c[s] for s in signed),
                lengths[sides[key[0]][0]],
                lengths[sides[key[0]][1]],
            )
            for key, c in comparisons.items()
        },
        "raters": {
            key: tuple(t[k] for k in ("judgments", "ties", "both_bad", "non_tie", "left", "flagged", *signed))
            for key, t in raters.items()
        },
        "hours": {key: (n,) for key, n in hours.items()},
        "flags": {key: (n,) for key, n in flags.items()},
        "pairs": {key: (p["pairs"], p["agreeing"]) for key, p in pairs.items()},
    }


def stored(session: Session) -> dict[str, dict[Any, tuple[int, ...]]]:
    """Every tally as the triggers left it, rows at zero left out."""
    session.flush()
    c, t = ComparisonTally, RaterTally
    signed_c = (c.s_m2, c.s_m1, c.s_0, c.s_p1, c.s_p2)
    signed_t = (t.s_m2, t.s_m1, t.s_0, t.s_p1, t.s_p2)
    flag_t = RaterFlagTally
    return {
        "comparisons": {
            (r[0], r[1]): tuple(r[2:])
            for r in session.execute(
                select(c.comparison_id, c.source, c.project_id, c.votes, c.a, c.b, c.tie, *signed_c)
                .add_columns(c.chars_a, c.chars_b)
                .where(c.votes != 0)
            )
        },
        "raters": {
            (r[0], r[1], r[2]): tuple(r[3:])
            for r in session.execute(
                select(t.project_id, t.rater_id, t.source, t.judgments, t.ties, t.both_bad, t.non_tie)
                .add_columns(t.left_picks, t.flagged, *signed_t)
                .where(t.judgments != 0)
            )
        },
        "hours": {
            (r[0], r[1], r[2], _hour(r[3])): (r[4],)
            for r in session.execute(
                select(
                    RaterHour.project_id,
                    RaterHour.rater_id,
                    RaterHour.source,
                    RaterHour.hour,
                    RaterHour.judgments,
                ).where(RaterHour.judgments != 0)
            )
        },
        "flags": {
            tuple(r[:4]): (r[4],)
            for r in session.execute(
                select(
                    flag_t.project_id, flag_t.rater_id, flag_t.source, flag_t.flag, flag_t.judgments
                ).where(flag_t.judgments != 0)
            )
        },
        "pairs": {
            tuple(r[:3]): (r[3], r[4])
            for r in session.execute(
                select(
                    RaterPairTally.project_id,
                    RaterPairTally.rater_id,
                    RaterPairTally.other_id,
                    RaterPairTally.pairs,
                    RaterPairTally.agreeing,
                ).where((RaterPairTally.pairs != 0) | (RaterPairTally.agreeing != 0))
            )
        },
    }


def _hour(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H") if isinstance(value, datetime) else str(value)[:13]


def assert_tallies(session: Session) -> None:
    expected, found = recount(session), stored(session)
    for name in expected:
        assert found[name] == expected[name], name


def _row(comparison: Comparison, rater: User, rng: random.Random, **fields: Any) -> dict[str, Any]:
    choice = rng.choice(["A", "B", "tie"])
    values = {
        "comparison_id": comparison.id,
        "project_id": comparison.project_id,
        "rater_id": rater.id,
        "choice": choice,
        "strength": 0 if choice == "tie" else rng.choice([1, 2]),
        "both_bad": choice == "tie" and rng.random() < 0.5,
        "a_on_left": rng.random() < 0.5,
        "flags": rng.choice([[], [], ["unsafe"], ["unsafe", "off-topic", "unsafe"]]),
        "time_spent_ms": rng.randrange(100, 90_000),
        "source": "human",
        "created_at": datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(0, 600)),
    }
    values.update(fields)
    return values


@pytest.fixture
def world(session: Session) -> dict[str, Any]:
    project = make_project(session, "tallies", flags=["unsafe", "off-topic"])
    other = make_project(session, "other")
    raters = [make_user(session, f"rater{i}") for i in range(6)]
    judge = make_user(session, "judge", role="judge")
    pairs = [make_pair(session, project, f"p{i}", "a" * (i + 1), "bb" * (i + 3)) for i in range(8)]
    pairs.append(make_pair(session, other, "q", "short", "a much longer answer"))
    session.commit()
    return {"project": project, "raters": raters, "judge": judge, "pairs": pairs}


def test_tallies_follow_every_write(session: Session, world: dict[str, Any]) -> None:
    rng = random.Random(7)
    raters, pairs = world["raters"], world["pairs"]
    # Many rows in one statement, several on one comparison.
    session.execute(insert(Judgment), [_row(c, r, rng) for c in pairs[:5] for r in raters[:4]])
    assert_tallies(session)
    # One at a time, through the ORM.
    for r in raters[4:]:
        session.add(Judgment(**_row(pairs[0], r, rng)))
        session.flush()
    assert_tallies(session)
    # A retried submit: the conflicting row is ignored and counts nothing.
    before = stored(session)
    statement = insert_ignoring_conflicts(session, Judgment, index_elements=["comparison_id", "rater_id"])
    session.execute(statement, [_row(pairs[0], raters[0], rng)])
    assert stored(session) == before
    # AI votes on the same pairs: their own source, no human pairs.
    session.execute(insert(Judgment), [_row(c, world["judge"], rng, source="ai") for c in pairs[:6]])
    assert_tallies(session)
    # Undo of one vote, then an edit of several (choice, flags, time), then of one back.
    session.execute(
        delete(Judgment).where(Judgment.comparison_id == pairs[0].id, Judgment.rater_id == raters[5].id)
    )
    assert_tallies(session)
    session.execute(
        update(Judgment)
        .where(Judgment.comparison_id.in_([pairs[1].id, pairs[2].id]), Judgment.source == "human")
        .values(choice="A", strength=2, flags=["off-topic"], created_at=datetime(2026, 12, 2, 9, tzinfo=UTC))
    )
    assert_tallies(session)
    # A deleted comparison, rater and project take their judgments with them.
    session.execute(delete(Comparison).where(Comparison.id == pairs[3].id))
    assert_tallies(session)
    session.execute(delete(User).where(User.id == raters[1].id))
    assert_tallies(session)
    session.execute(insert(Judgment), [_row(pairs[-1], r, rng) for r in raters[2:5]])
    session.execute(delete(Project).where(Project.id == world["project"].id))
    assert_tallies(session)
    session.commit()


def test_statements_writing_many_judgments_are_tallied(session: Session, world: dict[str, Any]) -> None:
    """More judgments in one statement than the few a rater writes (PostgreSQL plans those
    statements for their size): inserted, edited and deleted at once."""
    rng = random.Random(11)
    project = world["project"]
    more = [make_pair(session, project, f"bulk{i}", "x" * i, "y" * (2 * i)) for i in range(1, 13)]
    rows = [_row(c, r, rng) for c in world["pairs"][:8] + more for r in world["raters"]]
    assert len(rows) > 100
    session.execute(insert(Judgment), rows)
    assert_tallies(session)
    session.execute(
        update(Judgment).where(Judgment.project_id == project.id).values(choice="tie", strength=0)
    )
    assert_tallies(session)
    session.execute(
        delete(Judgment).where(Judgment.project_id == project.id, Judgment.rater_id != world["raters"][0].id)
    )
    assert_tallies(session)
    session.commit()


def test_a_rolled_back_write_leaves_no_tally(session: Session, world: dict[str, Any]) -> None:
    rng = random.Random(3)
    session.execute(insert(Judgment), [_row(world["pairs"][0], r, rng) for r in world["raters"][:3]])
    session.commit()
    before = stored(session)
    session.execute(insert(Judgment), [_row(world["pairs"][0], world["raters"][3], rng)])
    session.rollback()
    assert stored(session) == before
    assert_tallies(session)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_concurrent_votes_on_one_pair_are_counted_once(
    engine: Engine, session: Session, world: dict[str, Any]
) -> None:
    """Raters voting on one comparison at the same moment, each in its own transaction, without
    the comparison lock the rating routes take: every pair of votes is counted exactly once."""
    factory = make_sessionmaker(engine)
    raters, pairs = world["raters"], world["pairs"][:3]
    barrier = threading.Barrier(len(raters))
    errors: list[BaseException] = []

    def vote(rater: User, seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for comparison in pairs:
                with factory() as s, s.begin():
                    s.execute(insert(Judgment), [_row(comparison, rater, rng)])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=vote, args=(r, i)) for i, r in enumerate(raters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    session.expire_all()
    assert_tallies(session)
    assert sum(p for p, _ in stored(session)["pairs"].values()) == len(pairs) * 15  # 6 raters: 15 pairs each


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_truncating_the_judgments_empties_the_tallies(session: Session, world: dict[str, Any]) -> None:
    rng = random.Random(21)
    session.execute(
        insert(Judgment), [_row(c, r, rng) for c in world["pairs"][:3] for r in world["raters"][:3]]
    )
    assert stored(session)["pairs"]
    session.execute(text("TRUNCATE judgments"))
    assert stored(session) == {name: {} for name in stored(session)}
    assert_tallies(session)
    session.commit()


def test_check_finds_drift_and_rebuild_repairs_it(session: Session, world: dict[str, Any]) -> None:
    """Judgments written with the triggers off (here: tallies edited behind their back, a row
    removed, one invented) are found by the recount and put right by a rebuild."""
    from app.services import tallies

    rng = random.Random(5)
    session.execute(
        insert(Judgment), [_row(c, r, rng) for c in world["pairs"][:4] for r in world["raters"][:3]]
    )
    assert all(item.ok for item in tallies.check(session))
    session.execute(update(RaterTally).where(RaterTally.rater_id == world["raters"][0].id).values(ties=99))
    session.execute(delete(RaterPairTally).where(RaterPairTally.rater_id == world["raters"][2].id))
    session.add(
        RaterFlagTally(
            project_id=world["project"].id,
            rater_id=world["raters"][1].id,
            source="human",
            flag="x",
            judgments=3,
        )
    )
    wrong = {item.table: item.wrong for item in tallies.check(session)}
    assert (
        wrong["rater_tallies"] >= 1 and wrong["rater_pair_tallies"] >= 1 and wrong["rater_flag_tallies"] == 1
    )
    assert wrong["comparison_tallies"] == 0 and wrong["rater_hours"] == 0
    written = tallies.rebuild(session)
    assert written["rater_tallies"] == 3
    assert all(item.ok for item in tallies.check(session))
    assert_tallies(session)
    session.commit()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_rlhf_db_tallies_checks_and_repairs(db_url: str, session: Session, world: dict[str, Any]) -> None:
    import subprocess
    import sys

    from tests.utils.processes import ROOT, service_env

    rng = random.Random(9)
    session.execute(
        insert(Judgment), [_row(c, r, rng) for c in world["pairs"][:3] for r in world["raters"][:3]]
    )
    session.commit()
    env = service_env(DATABASE_URL=db_url, ENVIRONMENT="development")

    def rlhf(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", "from app.cli import main; main()", "db", "tallies", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    good = rlhf()
    assert good.returncode == 0, good.stderr
    assert "Every tally matches" in good.stdout
    session.execute(update(ComparisonTally).values(votes=ComparisonTally.votes + 1))
    session.commit()
    drifted = rlhf()
    assert drifted.returncode == 1
    assert "rlhf db tallies --repair" in drifted.stderr
    repaired = rlhf("--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "comparison_tallies: 3 rows rebuilt" in repaired.stdout
    assert rlhf().returncode == 0


def test_dashboard_counts_read_from_the_tallies_equal_the_judgments(
    session: Session, world: dict[str, Any]
) -> None:
    """The dashboard's per-rater and per-project counts (app/services/stats.py) against the
    judgments themselves, in one project and over all of them."""
    from app.services import stats

    rng = random.Random(13)
    raters, pairs = world["raters"], world["pairs"]
    session.execute(
        insert(Judgment), [_row(c, r, rng) for c in pairs for r in raters[:4] if rng.random() < 0.8]
    )
    session.execute(insert(Judgment), [_row(c, world["judge"], rng, source="ai") for c in pairs[:5]])
    session.flush()
    judgments = session.scalars(select(Judgment)).all()
    for project_id in (world["project"].id, None):
        mine = [j for j in judgments if project_id is None or j.project_id == project_id]
        found = {r.rater_id: r for r in stats.rater_counts(session, project_id=project_id)}
        human = [j for j in mine if str(j.source) == "human"]
        assert set(found) == {j.rater_id for j in human}
        for rid, row in found.items():
            own = [j for j in human if j.rater_id == rid]
            assert row.judgments == len(own)
            assert row.ties == sum(str(j.choice) == "tie" for j in own)
            assert row.both_bad == sum(bool(j.both_bad) for j in own)
            assert row.last_at == max(j.created_at for j in own)
            times = sorted(j.time_spent_ms for j in mine if j.rater_id == rid)
            middle = len(times) // 2
            median = times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2
            assert row.median_seconds == median / 1000
    counts = {c.project.id: c.judgments for c in stats.project_counts(session)}
    assert counts == {p: sum(j.project_id == p for j in judgments) for p in counts}
