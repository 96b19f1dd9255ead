"""Oracles and simulated raters, the latter against a real server (uvicorn in a subprocess)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app import oracles
from app.db import make_engine, make_sessionmaker, session_scope
from app.models import Choice, Comparison, Completion, Judgment, Project, Role, Scale, User
from app.oracles import OracleError, load_oracle, make_prefers_word
from app.resources import ROOT_DIR
from app.simulate import (
    SimulationConfig,
    SimulationError,
    decide,
    open_slots,
    parse_workbench,
    prepare,
    run_simulation,
    simulate,
)
from tests.conftest import TEST_SECRET
from tests.utils.factories import make_pair, make_project, make_user

# --- oracles --------------------------------------------------------------------------------


def test_shipped_oracles() -> None:
    assert oracles.prefers_word("q", "A Banana, two bananas, banana!") == 2.0  # whole words
    assert make_prefers_word("kiwi")("q", "kiwi KIWI banana") == 2.0
    assert oracles.prefers_shorter("q", "one two three") == -3.0
    assert oracles.prefers_longer("q", "one two three") == 3.0
    assert oracles.prefers_polite("q", "Please wait. Thank  you, thanks!") == 3.0
    assert oracles.prefers_polite("q", "Do it now.") == 0.0


def test_prefers_word_reads_the_module_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracles, "TARGET_WORD", "cherry")
    assert oracles.prefers_word("q", "cherry banana") == 1.0


def test_load_oracle() -> None:
    assert load_oracle("app.oracles:prefers_word") is oracles.prefers_word
    assert load_oracle(" app.oracles:prefers_shorter ") is oracles.prefers_shorter
    assert load_oracle("prefers_polite") is oracles.prefers_polite  # shorthand for shipped ones
    assert load_oracle("os.path:join") is os.path.join  # any (prompt, completion) callable


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonsense", "not of the form MODULE:FUNCTION"),
        ("", "not of the form MODULE:FUNCTION"),
        ("app.oracles:", "both MODULE and FUNCTION"),
        ("no_such_module_xyz:score", "no module named 'no_such_module_xyz'"),
        ("app.oracles:prefers_nothing", "has no 'prefers_nothing'"),
        ("app.oracles:TARGET_WORD", "not a function"),
        ("app.oracles:make_prefers_word", "score(prompt: str, completion: str)"),
    ],
)
def test_bad_oracle_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(OracleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_oracle(spec)


# --- deciding and reading pages -------------------------------------------------------------


def test_decide() -> None:
    rng = random.Random(0)
    assert decide(1, 0, rng=rng).pick == -1  # left better: negative
    assert decide(0, 1, rng=rng).pick == 1
    assert decide(0, 3, rng=rng).pick == 2  # a large gap: much better
    assert decide(-10, -10, rng=rng).pick == 0 and decide(2, 2, rng=rng).tie
    flipped = decide(1, 0, rng=rng, noise=1.0)
    assert flipped.pick == 1 and flipped.flipped
    assert decide(1, 1, rng=rng, noise=1.0) == decide(1, 1, rng=rng)  # a tie stays a tie
    assert decide(0, 5, rng=rng, picks=[-1, 0, 1]).pick == 1  # three-point scale
    assert decide(3, 3, rng=rng, picks=[-1, 1]).pick in (-1, 1)  # two-point scale: no tie
    flips = sum(decide(1, 0, rng=rng, noise=0.3).flipped for _ in range(2000))
    assert 450 < flips < 750


def test_parse_workbench_reads_text_not_markup() -> None:
    html = """
    <section id="workbench"><div class="conversation">
      <div class="message role-user"><div class="role">user</div>
        <div class="markdown"><p>first <em>question</em></p></div></div>
      <div class="message role-assistant"><div class="role">assistant</div>
        <div class="markdown"><p>an answer</p></div></div>
      <div class="message role-user"><div class="role">user</div>
        <div class="markdown"><p>Tom &amp; Jerry &lt;b&gt;?</p>
        <ul><li>one</li><li>two</li></ul></div></div>
    </div>
    <div class="markdown" data-testid="left-text"><p>I like <strong>banana</strong> bread</p></div>
    <div class="markdown" data-testid="right-text"><pre><code>x = 1
    </code></pre></div>
    <form><input type="hidden" name="csrf_token" value="tok">
    <input type="hidden" name="assignment_id" value="42">
    <input type="radio" name="pick" value="-1"><input type="radio" name="pick" value="0">
    <input type="radio" name="pick" value="1">
    <textarea name="rationale" rows="2" required></textarea></form></section>
    """
    page = parse_workbench(html)
    assert page.has_workbench and not page.empty
    assert page.csrf_token == "tok" and page.assignment_id == 42
    assert page.messages[0] == ("user", "first question")
    assert [role for role, _ in page.messages] == ["user", "assistant", "user"]
    assert page.prompt == "Tom & Jerry <b>?\none\ntwo"
    assert page.left == "I like banana bread" and page.right == "x = 1"
    assert page.picks == [-1, 0, 1] and page.rationale_required


# --- against a running server ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`uvicorn app.asgi:app` on a free port, on the test PostgreSQL database."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "uvicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": pg_database,
        "ENVIRONMENT": "test",
        "SECRET_KEY": TEST_SECRET,
    }
    command = [sys.executable, "-m", "uvicorn", "app.asgi:app", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            cwd=ROOT_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /healthz:\n{log.read_text()}")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# (prompt, completion A, completion B, expected winner without noise, strength)
PAIRS = [
    ("what is yellow", "a banana is yellow", "the sun is yellow", Choice.A, 1),
    ("name a fruit", "an apple", "a banana", Choice.B, 1),
    ("snack", "I like **banana** bread & <b>tea</b>", "I like cake", Choice.A, 1),
    ("breakfast", "toast", "banana, banana and more banana", Choice.B, 2),
    ("colour of the sky", "blue", "light blue", Choice.tie, 0),
]


@pytest.fixture
def sim_db(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test database; simulated accounts get cheap Argon2 hashes (the parameters travel in
    the hash, so the server's verification is cheap too)."""
    from argon2 import PasswordHasher

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr("app.simulate.hash_password", cheap.hash)
    monkeypatch.setattr("app.services.users.hash_password", cheap.hash)
    return pg_url


@contextmanager
def engine_session(url: str) -> Iterator[Session]:
    engine = make_engine(url, pool_size=1)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _seed(url: str, *, slug: str = "sim", **fields: object) -> None:
    with engine_session(url) as session:
        project = make_project(session, slug, **fields)
        for prompt, a, b, _, _ in PAIRS:
            make_pair(session, project, prompt, a, b)


def _judgments(url: str) -> list[tuple[str, Choice, int, str, str, str]]:
    """(rater, choice, strength, completion A, completion B, rationale) per stored judgment."""
    engine = make_engine(url, pool_size=1)
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(User.username, Judgment.choice, Judgment.strength, Comparison, Judgment.rationale)
            .join(User, User.id == Judgment.rater_id)
            .join(Comparison, Comparison.id == Judgment.comparison_id)
        ).all()
        out = []
        for username, choice, strength, comparison, rationale in rows:
            a = session.get(Completion, comparison.completion_a_id)
            b = session.get(Completion, comparison.completion_b_id)
            out.append((username, choice, strength, a.text, b.text, rationale))
    engine.dispose()
    return out


EXPECTED = {(a, b): (choice, strength) for _, a, b, choice, strength in PAIRS}
FLIPPED = {Choice.A: Choice.B, Choice.B: Choice.A, Choice.tie: Choice.tie}


def _config(server: str, **fields: object) -> SimulationConfig:
    values: dict[str, object] = {
        "project": "sim",
        "raters": 2,
        "oracle": "app.oracles:prefers_word",
        "base_url": server,
    }
    values.update(fields)
    return SimulationConfig(**values)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_simulated_raters_pick_what_the_oracle_prefers(server: str, sim_db: str) -> None:
    _seed(sim_db)
    seen: list[tuple[str, int]] = []
    result = simulate(
        _config(server), database_url=sim_db, on_start=lambda total: seen.append(("start", total))
    )
    assert result.errors == []
    assert seen == [("start", len(PAIRS))]
    assert result.judgments == len(PAIRS) and result.ties == 1 and result.flips == 0
    assert sorted(r.username for r in result.raters) == ["sim-sim-1", "sim-sim-2"]
    stored = _judgments(sim_db)
    assert len(stored) == len(PAIRS)
    for _, choice, strength, a, b, _ in stored:
        assert (choice, strength) == EXPECTED[(a, b)], (a, b)
    per_rater = {r.username: r.judgments for r in result.raters}
    assert per_rater == {name: sum(1 for s in stored if s[0] == name) for name in per_rater}

    # The accounts are ordinary raters that need no password change; a rerun resets their
    # passwords, logs in again, and finds nothing left.
    engine = make_engine(sim_db, pool_size=1)
    with make_sessionmaker(engine)() as session:
        users = session.scalars(select(User).where(User.username.like("sim-%"))).all()
        assert {(u.role, u.must_change_password) for u in users} == {(Role.rater, False)}
    engine.dispose()
    again = simulate(_config(server), database_url=sim_db)
    assert again.errors == [] and again.judgments == 0


@pytest.mark.postgres
def test_noise_one_flips_every_choice(server: str, sim_db: str) -> None:
    _seed(sim_db)
    result = simulate(_config(server, raters=3, noise=1.0), database_url=sim_db)
    assert result.errors == []
    assert result.judgments == len(PAIRS) and result.flips == len(PAIRS) - 1 and result.ties == 1
    for _, choice, strength, a, b, _ in _judgments(sim_db):
        expected, expected_strength = EXPECTED[(a, b)]
        assert (choice, strength) == (FLIPPED[expected], expected_strength)


@pytest.mark.postgres
def test_prompt_overlap_scale_rationale_and_budget(server: str, sim_db: str) -> None:
    """The oracle gets the last user message; overlap 2 gives each pair to two raters; the
    three-point scale caps strength at 1; a required rationale is written; the budget holds."""
    _seed(sim_db, overlap=2, scale=Scale.three, rationale_required=True)
    prompts: list[str] = []

    def recording(prompt: str, completion: str) -> float:
        prompts.append(prompt)
        return oracles.prefers_word(prompt, completion)

    config = _config(server, raters=3, max_judgments=7)
    accounts, total = prepare(config, database_url=sim_db)
    assert total == 7 and len(accounts) == 3 and "password" not in repr(accounts[0])
    result = asyncio.run(run_simulation(config, accounts, recording))
    assert result.errors == [] and result.judgments == 7
    assert set(prompts) <= {p for p, *_ in PAIRS}
    stored = _judgments(sim_db)
    assert len(stored) == 7
    for _, choice, strength, a, b, rationale in stored:
        expected, _ = EXPECTED[(a, b)]
        assert choice == expected and strength == (0 if choice == Choice.tie else 1)
        assert rationale.startswith("Simulated rater (oracle app.oracles:prefers_word)")
    pairs = [(a, b) for _, _, _, a, b, _ in stored]
    raters_per_pair = {p: {s[0] for s in stored if (s[3], s[4]) == p} for p in pairs}
    assert all(len(raters) == pairs.count(p) for p, raters in raters_per_pair.items())

    rest = asyncio.run(run_simulation(_config(server, raters=3), accounts, recording))
    assert rest.judgments == 2 * len(PAIRS) - 7  # overlap 2, now complete


@pytest.mark.postgres
def test_cli_labels_through_the_server(server: str, sim_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli
    from app.config import get_settings

    _seed(sim_db)
    monkeypatch.setenv("DATABASE_URL", sim_db)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli,
            ["simulate", "--project", "sim", "--raters", "2", "--oracle", "prefers_word",
             "--base-url", server, "--seed", "3"],
        )  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "sim-sim-1" in result.output and f"{len(PAIRS)} judgments" in result.output
    assert len(_judgments(sim_db)) == len(PAIRS)


@pytest.mark.postgres
def test_errors_are_clear(server: str, sim_db: str) -> None:
    _seed(sim_db)
    with pytest.raises(SimulationError, match="no project 'nope'"):
        prepare(_config(server, project="nope"), database_url=sim_db)
    with pytest.raises(SimulationError, match="between 0 and 1"):
        _config(server, noise=1.5)
    with engine_session(sim_db) as session:
        make_user(session, "sim-sim-1", Role.admin)
    with pytest.raises(SimulationError, match="role admin"):
        prepare(_config(server), database_url=sim_db)


@pytest.mark.postgres
def test_no_server_is_reported(sim_db: str) -> None:
    _seed(sim_db)
    result = simulate(_config(f"http://127.0.0.1:{_free_port()}", raters=1), database_url=sim_db)
    assert result.judgments == 0
    assert len(result.errors) == 1 and "no server at" in result.errors[0]


def test_cli_rejects_a_bad_oracle_spec() -> None:
    from app.cli import cli

    result = CliRunner().invoke(
        cli, ["simulate", "--project", "sim", "--raters", "1", "--oracle", "not-a-spec"]
    )
    assert result.exit_code == 1
    assert "not of the form MODULE:FUNCTION" in result.output


@pytest.mark.postgres
def test_a_planted_left_bias_is_flagged_and_honest_raters_are_not(server: str, sim_db: str) -> None:
    """Three simulated raters label 120 pairs through the server, each pair twice; the first
    picks the left side 90% of the time whatever the oracle says. The label-quality report
    flags that rater for position bias (binomial test)."""
    from app.services import quality

    with engine_session(sim_db) as session:
        project = make_project(session, "bias", overlap=2)
        for i in range(120):
            # Which side holds "banana" alternates, so an honest rater's left share is ~1/2.
            good, plain = f"banana number {i}", f"plain number {i}"
            make_pair(session, project, f"prompt {i}", *((good, plain) if i % 2 else (plain, good)))
    config = _config(server, project="bias", raters=3, left_bias=0.9, biased_raters=1, seed=3)
    result = simulate(config, database_url=sim_db)
    assert result.errors == [] and result.judgments == 240
    with engine_session(sim_db) as session:
        project = session.scalars(select(Project).where(Project.slug == "bias")).one()
        report = {r.username: r for r in quality.rater_report(session, project)}
    biased, honest = report["sim-bias-1"], [report["sim-bias-2"], report["sim-bias-3"]]
    assert biased.non_tie >= 30 and biased.left_share > 0.8 and biased.position_biased
    assert "position bias" in " ".join(biased.outliers).lower()
    # The server draws the sides at random, so an honest rater's left share is binomial around
    # 1/2: the test checks it is far from the biased one's (a 0.3..0.7 miss has odds of about
    # 3 in 10,000). That an honest rater is not flagged is checked with seeded votes in
    # tests/services/test_quality.py, where it cannot flake.
    for rater in honest:
        assert rater.non_tie >= 30 and 0.3 <= rater.left_share <= 0.7, (rater.username, rater.left_share)


def _project_with_a_held_pair(url: str, slug: str, *, free_pairs: int, lease_s: float) -> None:
    """A project (overlap 1) whose first pair is leased to a rater outside the simulation for
    `lease_s` seconds, and `free_pairs` more pairs."""
    from datetime import timedelta

    from app.models import Assignment, AssignmentStatus
    from app.models.types import utcnow

    with engine_session(url) as session:
        project = make_project(session, slug, overlap=1)
        held = make_pair(session, project, "held prompt", "banana", "plain")
        for i in range(free_pairs):
            make_pair(session, project, f"free prompt {i}", "plain", "banana")
        holder = make_user(session, f"holder-{slug}", Role.rater)
        now, lease = utcnow(), timedelta(seconds=lease_s)
        session.add(
            Assignment(
                comparison_id=held.id, rater_id=holder.id, project_id=project.id, a_on_left=True,
                status=AssignmentStatus.active, leased_at=now, lease_expires_at=now + lease,
            )
        )  # fmt: skip


@pytest.mark.postgres
def test_a_rater_waits_for_a_pair_another_rater_holds(server: str, sim_db: str) -> None:
    """The last pair is leased to someone outside the simulation for a moment. The simulated
    rater finishes the other pair, sees "waiting for other raters" instead of "all done", and
    takes the pair when the lease runs out, as the polling page would."""
    import threading

    from sqlalchemy import update

    from app.models import Assignment
    from app.models.types import utcnow

    _project_with_a_held_pair(sim_db, "wait", free_pairs=1, lease_s=3600)
    done = threading.Event()

    def end_the_lease_once_the_free_pair_is_judged() -> None:
        # Only then is the rater sure to be waiting: the held pair is all that is left.
        while not done.is_set():
            with engine_session(sim_db) as session:
                if session.scalar(select(func.count()).select_from(Judgment)):
                    holder = select(User.id).where(User.username == "holder-wait").scalar_subquery()
                    held = update(Assignment).where(Assignment.rater_id == holder)
                    session.execute(held.values(lease_expires_at=utcnow()))
                    return
            time.sleep(0.2)

    ender = threading.Thread(target=end_the_lease_once_the_free_pair_is_judged, daemon=True)
    ender.start()
    try:
        result = simulate(_config(server, project="wait", raters=1, patience_s=60), database_url=sim_db)
    finally:
        done.set()
        ender.join(timeout=10)
    assert result.errors == [] and result.judgments == 2
    assert result.raters[0].waited_s > 0 and not result.raters[0].gave_up_waiting


@pytest.mark.postgres
def test_a_rater_stops_waiting_after_its_patience(server: str, sim_db: str) -> None:
    _project_with_a_held_pair(sim_db, "patience", free_pairs=0, lease_s=3600)
    result = simulate(_config(server, project="patience", raters=1, patience_s=0.5), database_url=sim_db)
    assert result.errors == [] and result.judgments == 0
    assert result.raters[0].gave_up_waiting and result.raters[0].waited_s > 0


def test_open_slots_counts_regular_pairs_with_their_extra_raters(session: Session) -> None:
    """The progress bar's estimate: overlap plus a widened pair's extra raters, minus the votes
    in, capped at the simulated raters; gold pairs are not in it (they come at the gold rate)."""
    project = make_project(session, "slots", overlap=2, max_overlap=4)
    fresh = make_pair(session, project, "p1", "a", "b")
    widened = make_pair(session, project, "p2", "a", "b")
    widened.extra_raters, widened.judgment_count = 2, 2  # wants 4, has 2
    full = make_pair(session, project, "p3", "a", "b")
    full.judgment_count = 2
    make_pair(session, project, "p4", "a", "b", gold="A")
    session.flush()
    assert open_slots(session, slug="slots", raters=3) == 2 + 2 + 0
    assert open_slots(session, slug="slots", raters=1) == 1 + 1
    assert fresh.judgment_count == 0
