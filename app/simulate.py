"""Simulated raters: label a project with an oracle, through the pages people use.

`rlhf simulate` is a dry run of the human side of the loop. It makes sure N rater accounts
`sim-<slug>-1..N` exist (created or given a fresh random password directly in the database; the
passwords live only in this process's memory), then logs each one in over HTTP against a running
server, one httpx client (one cookie jar) per rater, all concurrently on asyncio. Each rater reads
the workbench HTML, scores the prompt's last user message with the left and right completions
through the oracle, and posts its pick to the same route and with the same CSRF token a browser
would. Going through the server (and not the services) means the simulation exercises
assignment, leases, overlap, idempotent submits and the rendering of untrusted text as well.

The choice: the side with the higher score wins; equal scores are a tie (pick 0); the strength is
2 ("much better") when the gap is at least `strong_gap`, else 1; with probability `noise` the
choice is flipped (a tie stays a tie). Picks are fitted to the project's scale (the workbench
lists the allowed ones): strength 2 becomes 1 on a three-point scale, a tie becomes a random side
on a two-point scale. Where the project requires a rationale, the rater writes its scores there.

A planted position bias tests the label-quality checks: the first `biased_raters` raters, with
probability `left_bias` per pair, ignore the oracle and pick the left side ("better", -1).

Ranking tasks, where the task mix serves them, are ordered by the ranking mode
(app/simulate_ranking.py, `decide_ranking`): the oracle's order of the K responses, with two
neighbouring levels swapped with probability `noise`.

Writing and reviewing, where the project's task mix asks for them, go through the writing
workbench's routes the same way (app/simulate_writing.py): a write task's answer is the
`edit_rule` applied to the best, by the oracle, of the prompt's first `samples` model completions
(read from the database before the run, by writing task); an improve task's, the rule applied to
the completion in the editor. A review accepts (score 5) an answer that the checks did not flag
as lazy, whose oracle score is above `accept_above` and, for an improvement, above the
original's; otherwise it rejects (score 1). So write -> review -> SFT runs without people, on a
rule whose right answer is known.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.auth import generate_password, hash_password
from app.models import Comparison, ComparisonKind, Role, User
from app.oracles import Oracle, load_oracle
from app.workbench_html import parse_workbench

if TYPE_CHECKING:
    from app.simulate_writing import Writer

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
MAX_RATERS = 200
TIE_EPSILON = 1e-9
RETRIES = 3  # per request, for transport errors and 5xx answers (submits are idempotent)


class SimulationError(Exception):
    """Something that stops the simulation (or one simulated rater); `str()` says what."""


@dataclass(frozen=True)
class SimulationConfig:
    project: str
    raters: int
    oracle: str
    noise: float = 0.0
    base_url: str = DEFAULT_BASE_URL
    max_judgments: int | None = None  # over all raters together; None: until nothing is left
    seed: int = 0
    strong_gap: float = 2.0
    timeout_s: float = 30.0
    left_bias: float = 0.0
    biased_raters: int = 0
    patience_s: float = 120.0  # how long a rater waits for pairs other raters hold, then stops
    edit_rule: str = "app.oracles:add_target_word"  # how a simulated writer edits a text
    samples: int = 4  # model samples of a prompt a simulated writer picks the best of
    accept_above: float = 0.0  # a review accepts answers the oracle scores above this

    def __post_init__(self) -> None:
        if not 1 <= self.raters <= MAX_RATERS:
            raise SimulationError(f"--raters must be between 1 and {MAX_RATERS}")
        if not 0.0 <= self.noise <= 1.0:
            raise SimulationError("--noise is a probability, between 0 and 1")
        if self.max_judgments is not None and self.max_judgments < 0:
            raise SimulationError("--max-judgments cannot be negative")
        if self.strong_gap <= 0:
            raise SimulationError("--strong-gap must be positive")
        if not 0.0 <= self.left_bias <= 1.0:
            raise SimulationError("--left-bias is a probability, between 0 and 1")
        if not 0 <= self.biased_raters <= self.raters:
            raise SimulationError("--biased-raters must be between 0 and --raters")
        if self.patience_s < 0:
            raise SimulationError("--patience cannot be negative")
        if self.samples < 1:
            raise SimulationError("--samples must be at least 1")


@dataclass(frozen=True)
class SimAccount:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Decision:
    """What a simulated rater picks for one pair (pick: -2..2, negative = left better)."""

    pick: int
    left_score: float
    right_score: float
    flipped: bool = False
    biased: bool = False  # the planted left bias chose, not the oracle

    @property
    def tie(self) -> bool:
        return self.pick == 0


@dataclass
class RaterStats:
    username: str
    judgments: int = 0
    ties: int = 0
    flips: int = 0
    strong: int = 0
    left: int = 0
    right: int = 0
    refused: int = 0  # late submits the server turned down (the pair filled up meanwhile)
    waited_s: float = 0.0  # time spent on "waiting for other raters" pages
    gave_up_waiting: bool = False  # stopped after --patience with pairs still held by others
    error: str | None = None
    rankings: int = 0  # ranking tasks ordered (app/simulate_ranking.py)
    swaps: int = 0  # neighbouring levels the ranking noise swapped
    written: int = 0  # answers to write tasks
    improved: int = 0  # answers to improve tasks
    reviews: int = 0
    accepted: int = 0  # reviews that accepted

    def record(self, decision: Decision) -> None:
        self.judgments += 1
        self.ties += decision.tie
        self.flips += decision.flipped
        self.strong += abs(decision.pick) == 2
        self.left += decision.pick < 0
        self.right += decision.pick > 0


@dataclass
class SimulationResult:
    raters: list[RaterStats]
    seconds: float

    @property
    def judgments(self) -> int:
        return sum(r.judgments for r in self.raters)

    @property
    def ties(self) -> int:
        return sum(r.ties for r in self.raters)

    @property
    def flips(self) -> int:
        return sum(r.flips for r in self.raters)

    @property
    def errors(self) -> list[str]:
        return [f"{r.username}: {r.error}" for r in self.raters if r.error]


JudgmentCallback = Callable[[RaterStats, Decision], None]


# --- deciding -------------------------------------------------------------------------------


def decide(
    left_score: float,
    right_score: float,
    *,
    rng: random.Random,
    noise: float = 0.0,
    strong_gap: float = 2.0,
    picks: tuple[int, ...] | list[int] = (-2, -1, 0, 1, 2),
    left_bias: float = 0.0,
) -> Decision:
    """The pick for two scores; the random draws happen for every pair (reproducible runs)."""
    gap = right_score - left_score  # positive: right better: positive pick
    flip_draw = rng.random()
    if left_bias and rng.random() < left_bias:
        return Decision(pick=-1, left_score=left_score, right_score=right_score, biased=True)
    if abs(gap) <= TIE_EPSILON:
        pick, flipped = 0, False
    else:
        pick = (2 if abs(gap) >= strong_gap else 1) * (1 if gap > 0 else -1)
        flipped = flip_draw < noise
        if flipped:
            pick = -pick
    allowed = set(picks) or {-2, -1, 0, 1, 2}
    if pick not in allowed and abs(pick) == 2 and pick // 2 in allowed:
        pick //= 2
    if pick not in allowed:  # a tie on a scale without one
        pick = rng.choice(sorted(p for p in allowed if p))
    return Decision(pick=pick, left_score=left_score, right_score=right_score, flipped=flipped)


@dataclass(frozen=True)
class RankingDecision:
    """What a simulated rater answers for a ranking: ranks aligned with the completions as given
    (1 = best, equal = tie, dense) and the all-bad line (None: not drawn)."""

    ranks: tuple[int, ...]
    cutoff_rank: int | None
    swaps: int = 0  # neighbouring levels the noise swapped


def decide_ranking(
    scores: list[float] | tuple[float, ...],
    *,
    rng: random.Random,
    noise: float = 0.0,
    bad_below: float | None = None,
) -> RankingDecision:
    """The ranking mode's answer for K scores: the oracle's order (scores within `TIE_EPSILON`
    tie), then one pass from the best level down in which each two neighbouring levels swap with
    probability `noise` (the ranking's counterpart of a pair's flip: a rater misjudges close
    neighbours, not the top against the bottom). With `bad_below`, the all-bad line goes under
    the last level whose (oracle) score is at least `bad_below`. The draws happen for every
    ranking (reproducible runs)."""
    levels: list[list[int]] = []
    for index in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if levels and abs(scores[levels[-1][0]] - scores[index]) <= TIE_EPSILON:
            levels[-1].append(index)
        else:
            levels.append([index])
    acceptable = None if bad_below is None else sum(scores[level[0]] >= bad_below for level in levels)
    swaps = 0
    for at in range(len(levels) - 1):
        if rng.random() < noise:
            levels[at], levels[at + 1] = levels[at + 1], levels[at]
            swaps += 1
    ranks = [0] * len(scores)
    for rank, level in enumerate(levels, start=1):
        for index in level:
            ranks[index] = rank
    return RankingDecision(tuple(ranks), acceptable, swaps)


def reading_minutes(completions_shown: int, *, minutes_per_completion: float = 0.5) -> float:
    """Simulated rater time of one task: reading cost is proportional to the completions shown
    (a pair shows two, a ranking of K shows K), the prompt's reading shared by them."""
    return completions_shown * minutes_per_completion


# --- accounts -------------------------------------------------------------------------------


def sim_username(slug: str, index: int) -> str:
    """`sim-<slug>-<index>`, the slug shortened where the name would pass 64 characters."""
    suffix = f"-{index}"
    return f"sim-{slug[: 64 - 4 - len(suffix)]}{suffix}"


def ensure_sim_raters(session: Session, *, slug: str, count: int) -> list[SimAccount]:
    """Create `sim-<slug>-1..count` as raters, or give existing ones a fresh random password.

    The passwords are returned, never printed or stored in clear; `must_change_password` stays
    off so the simulated rater lands on /rate after logging in.
    """
    from app.services.users import UserError, create_user

    accounts = []
    for index in range(1, count + 1):
        username = sim_username(slug, index)
        password = generate_password()
        user = session.scalars(
            select(User).where(func.lower(User.username) == username.lower())
        ).one_or_none()
        if user is None:
            try:
                create_user(session, username=username, role=Role.rater, password=password)
            except UserError as error:
                raise SimulationError(f"cannot create {username}: {error}") from None
        else:
            if user.role != Role.rater:
                raise SimulationError(
                    f"{username} exists with the role {user.role.value}; simulated raters must be "
                    "raters (rename or remove that account)"
                )
            if not user.is_active:
                raise SimulationError(f"{username} is deactivated; reactivate it to simulate with it")
            user.password_hash = hash_password(password)
            user.must_change_password = False
        accounts.append(SimAccount(username, password))
    session.flush()
    return accounts


def open_slots(session: Session, *, slug: str, raters: int) -> int:
    """Judgments still wanted in the project that `raters` distinct raters could give (an
    estimate for the progress bar: judgments the simulated raters gave before are not known)."""
    from app.services.projects import get_project

    project = get_project(session, slug)
    if project is None:
        raise SimulationError(f"no project {slug!r} (see `rlhf projects list`)")
    if not project.is_active:
        raise SimulationError(f"the project {slug!r} is not active")
    # Regular pairs only (gold pairs are drawn at the project's gold rate, and a split pair may
    # still widen): the bar's total grows when the simulation passes it.
    wanted = project.overlap + Comparison.extra_raters
    slots = wanted - Comparison.judgment_count
    capped = case((slots > raters, raters), else_=slots)
    total = session.scalar(
        select(func.coalesce(func.sum(capped), 0)).where(
            Comparison.project_id == project.id,
            Comparison.kind == ComparisonKind.regular,
            Comparison.judgment_count < wanted,
        )
    )
    return int(total or 0)


def prepare(config: SimulationConfig, *, database_url: str | None = None) -> tuple[list[SimAccount], int]:
    """Check the project, ensure the accounts; returns (accounts, estimated judgments)."""
    from app.config import get_settings
    from app.db import make_engine, make_sessionmaker, session_scope

    engine = make_engine(database_url or get_settings().database_url, pool_size=1)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            total = open_slots(session, slug=config.project, raters=config.raters)
            accounts = ensure_sim_raters(session, slug=config.project, count=config.raters)
    finally:
        engine.dispose()
    if config.max_judgments is not None:
        total = min(total, config.max_judgments)
    return accounts, total


# --- rating over HTTP -----------------------------------------------------------------------


class _Budget:
    """Judgments left to give over all raters (one event loop: no lock needed)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def give_back(self) -> None:
        if self.left is not None:
            self.left += 1


async def _request(client: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request, retried on transport errors and 5xx (every request here is idempotent)."""
    for attempt in range(RETRIES + 1):
        try:
            response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.ConnectError as error:
            if attempt == RETRIES:
                raise SimulationError(
                    f"no server at {client.base_url} ({error}); start one with `rlhf up` or pass --base-url"
                ) from None
        except httpx.TransportError as error:
            if attempt == RETRIES:
                raise SimulationError(f"{method} {url} failed: {error!r}") from None
        else:
            if response.status_code < 500 or attempt == RETRIES:
                return response
        await asyncio.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


async def _login(client: httpx.AsyncClient, account: SimAccount) -> None:
    page = await _request(client, "GET", "/login")
    token = parse_workbench(page.text).csrf_token
    if page.status_code != 200 or not token:
        raise SimulationError(f"GET /login answered {page.status_code} without a login form")
    response = await _request(
        client,
        "POST",
        "/login",
        data={"username": account.username, "password": account.password, "csrf_token": token},
    )
    if response.status_code == 303:
        if response.headers.get("location", "").startswith("/account/password"):
            raise SimulationError(f"{account.username} is asked to change its password first")
        return
    if response.status_code == 401:
        raise SimulationError(
            f"login as {account.username} was refused: does the server at {client.base_url} use "
            "the same DATABASE_URL as this command?"
        )
    if response.status_code == 429:
        raise SimulationError(f"login as {account.username} is throttled; try again in 5 minutes")
    raise SimulationError(f"login as {account.username} answered {response.status_code}")


def _rationale(oracle_spec: str, decision: Decision) -> str:
    return (
        f"Simulated rater (oracle {oracle_spec}): left scored {decision.left_score:g}, "
        f"right {decision.right_score:g}" + (" (choice flipped as noise)" if decision.flipped else "")
    )


async def _rate(
    config: SimulationConfig,
    index: int,
    account: SimAccount,
    oracle: Oracle,
    budget: _Budget,
    stats: RaterStats,
    on_judgment: JudgmentCallback | None,
    writer: Writer,
) -> None:
    rng = random.Random(f"{config.seed}:{index}")
    url = f"/rate/{config.project}"
    async with httpx.AsyncClient(
        base_url=config.base_url,
        timeout=config.timeout_s,
        follow_redirects=False,
        headers={"User-Agent": "rlhf-simulate"},
    ) as client:
        await _login(client, account)
        response = await _request(client, "GET", url, headers={"HX-Request": "true"})
        if response.status_code == 404:
            raise SimulationError(f"the server has no active project {config.project!r}")
        if response.status_code != 200:
            raise SimulationError(f"GET {url} answered {response.status_code}")
        page = parse_workbench(response.text)
        token = page.csrf_token
        if not token:
            raise SimulationError(f"GET {url}: no CSRF token on the page")
        headers = {"HX-Request": "true", "X-CSRF-Token": token}
        waiting_since: float | None = None
        while not page.empty:
            if page.waiting:
                # Pairs this rater has not seen are leased to others: one may need this rater
                # once its vote is in (or its lease runs out). Check again, as the page does.
                now = perf_counter()
                waiting_since = now if waiting_since is None else waiting_since
                if now - waiting_since >= config.patience_s:
                    stats.gave_up_waiting = True
                    return
                delay = min(2.0, 0.05 + 0.25 * (now - waiting_since))
                await asyncio.sleep(delay)
                stats.waited_s += delay
                response = await _request(client, "GET", url, headers={"HX-Request": "true"})
                if response.status_code != 200:
                    raise SimulationError(f"GET {url} answered {response.status_code}")
                page = parse_workbench(response.text)
                continue
            waiting_since = None
            if page.task == "rank":  # the ranking mode (app/simulate_ranking.py)
                from app.simulate_ranking import rank

                if not budget.take():
                    return
                response = await rank(client, url, page, headers, config, oracle, rng, stats)
                page = parse_workbench(response.text)
                if not page.has_workbench:
                    raise SimulationError(f"POST {url}/rankings did not answer with the workbench")
                continue
            if page.task != "compare":  # write, improve or review (app/simulate_writing.py)
                from app.simulate_writing import write_or_review

                if not budget.take():
                    return
                response = await write_or_review(client, url, page, headers, writer, stats)
                page = parse_workbench(response.text)
                if not page.has_workbench:
                    raise SimulationError(f"POST {url} did not answer with the workbench")
                continue
            if page.assignment_id is None or page.left is None or page.right is None:
                raise SimulationError(f"unexpected page from {url}: {page.error or page.notice or 'no pair'}")
            if not budget.take():
                return
            try:
                left = float(oracle(page.prompt, page.left))
                right = float(oracle(page.prompt, page.right))
            except Exception as error:
                budget.give_back()
                raise SimulationError(f"the oracle failed: {error.__class__.__name__}: {error}") from error
            decision = decide(
                left,
                right,
                rng=rng,
                noise=config.noise,
                strong_gap=config.strong_gap,
                picks=page.picks,
                left_bias=config.left_bias if index < config.biased_raters else 0.0,
            )
            data: dict[str, object] = {"assignment_id": page.assignment_id, "pick": decision.pick}
            if page.rationale_required:
                data["rationale"] = _rationale(config.oracle, decision)
            response = await _request(client, "POST", f"{url}/judgments", data=data, headers=headers)
            previous = page.assignment_id
            page = parse_workbench(response.text)
            if response.status_code == 200:
                stats.record(decision)
                if on_judgment is not None:
                    on_judgment(stats, decision)
            elif response.status_code == 409:  # the lease ran out and the pair filled meanwhile
                budget.give_back()
                stats.refused += 1
            else:
                budget.give_back()
                reason = page.error or page.notice or f"HTTP {response.status_code}"
                raise SimulationError(f"the judgment on assignment {previous} was refused: {reason}")
            if not page.has_workbench:
                raise SimulationError(f"POST {url}/judgments did not answer with the workbench")


async def run_simulation(
    config: SimulationConfig,
    accounts: list[SimAccount],
    oracle: Oracle,
    *,
    on_judgment: JudgmentCallback | None = None,
    writer: Writer | None = None,
) -> SimulationResult:
    """Every account rates (and writes and reviews, where the project asks) concurrently until
    nothing is left or the budget is spent. A rater that fails stops with its error recorded;
    the others go on."""
    from app.oracles import load_edit_rule
    from app.simulate_writing import Writer

    writer = writer or Writer(oracle, load_edit_rule(config.edit_rule), {}, config.accept_above)
    budget = _Budget(config.max_judgments)
    stats = [RaterStats(account.username) for account in accounts]
    started = perf_counter()

    async def one(index: int) -> None:
        try:
            await _rate(config, index, accounts[index], oracle, budget, stats[index], on_judgment, writer)
        except SimulationError as error:
            stats[index].error = str(error)
        except httpx.HTTPError as error:
            stats[index].error = f"{error.__class__.__name__}: {error}"

    await asyncio.gather(*(one(i) for i in range(len(accounts))))
    return SimulationResult(raters=stats, seconds=perf_counter() - started)


def simulate(
    config: SimulationConfig,
    *,
    database_url: str | None = None,
    on_start: Callable[[int], None] | None = None,
    on_judgment: JudgmentCallback | None = None,
) -> SimulationResult:
    """The whole run: load the oracle, ensure the accounts, rate. Raises `OracleError` for a bad
    oracle spec and `SimulationError` when the project or accounts are not usable."""
    from app.simulate_writing import load_writer

    oracle = load_oracle(config.oracle)
    accounts, total = prepare(config, database_url=database_url)
    writer = load_writer(config, oracle, database_url=database_url)
    if on_start is not None:
        on_start(total)
    coroutine = run_simulation(config, accounts, oracle, on_judgment=on_judgment, writer=writer)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no loop in this thread
        return asyncio.run(coroutine)
    # Called from code that already runs an event loop (a notebook, a test): use a thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
