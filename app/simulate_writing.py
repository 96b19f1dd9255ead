"""Simulated writers and reviewers of app/simulate.py (whose docstring states the rules): the
`Writer` that answers write and improve tasks and reviews, the model samples of the project's
write tasks, and the posts to the writing workbench's routes, as a browser's."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Comparison, Completion, WritingKind, WritingTask
from app.oracles import EditRule, Oracle, load_edit_rule
from app.simulate import RaterStats, SimulationConfig, SimulationError, _request
from app.workbench_html import Workbench, parse_workbench


@dataclass(frozen=True)
class Writer:
    """How a simulated rater writes, improves and reviews (see the module's docstring)."""

    oracle: Oracle
    edit: EditRule
    samples: dict[int, list[str]]  # write task id -> its prompt's first model samples
    accept_above: float = 0.0
    note: str = "Simulated reviewer"

    def answer(self, page: Workbench) -> str:
        if page.task == "improve":
            return self.edit(page.prompt, page.answer if page.answer is not None else page.original or "")
        samples = self.samples.get(page.task_id or 0, [])
        best = max(samples, key=lambda text: float(self.oracle(page.prompt, text)), default="")
        return self.edit(page.prompt, best)

    def accepts(self, page: Workbench) -> bool:
        score = float(self.oracle(page.prompt, page.reviewed or ""))
        if page.lazy_flagged or score <= self.accept_above:
            return False
        return page.original is None or score > float(self.oracle(page.prompt, page.original))


def writing_samples(session: Session, *, slug: str, samples: int) -> dict[int, list[str]]:
    """Per write task of the project: the first `samples` model completions of its prompt (not
    the texts of earlier edits)."""
    from app.models import Judgment, JudgmentSource, Project

    project_id = session.scalar(select(Project.id).where(Project.slug == slug))
    tasks = dict(
        session.execute(
            select(WritingTask.prompt_id, WritingTask.id).where(
                WritingTask.project_id == project_id, WritingTask.kind == WritingKind.write
            )
        ).all()
    )
    edits = (
        select(Comparison.completion_a_id)
        .join(Judgment, Judgment.comparison_id == Comparison.id)
        .where(Comparison.project_id == project_id, Judgment.source == JudgmentSource.edit)
    )
    found: dict[int, list[str]] = {}
    rows = session.execute(
        select(Completion.prompt_id, Completion.text)
        .where(Completion.prompt_id.in_(list(tasks)), Completion.id.not_in(edits))
        .order_by(Completion.prompt_id, Completion.id)
    )
    for prompt_id, text in rows:
        texts = found.setdefault(tasks[prompt_id], [])
        if len(texts) < samples:
            texts.append(text)
    return found


def load_writer(config: SimulationConfig, oracle: Oracle, *, database_url: str | None = None) -> Writer:
    """The edit rule and the model samples of the project's write tasks."""
    from app.config import get_settings
    from app.db import make_engine, make_sessionmaker

    edit = load_edit_rule(config.edit_rule)
    engine = make_engine(database_url or get_settings().database_url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as session:
            samples = writing_samples(session, slug=config.project, samples=config.samples)
    finally:
        engine.dispose()
    return Writer(oracle, edit, samples, config.accept_above, f"Simulated reviewer (oracle {config.oracle})")


async def write_or_review(
    client: httpx.AsyncClient,
    url: str,
    page: Workbench,
    headers: dict[str, str],
    writer: Writer,
    stats: RaterStats,
) -> httpx.Response:
    """Answers a write or improve task, or reviews, through the workbench's routes."""
    try:
        if page.task == "review":
            if page.demonstration_id is None:
                raise SimulationError(f"a review page from {url} without its demonstration")
            accepted = writer.accepts(page)
            data: dict[str, object] = {
                "demonstration_id": page.demonstration_id, "verdict": "accept" if accepted else "reject",
                "score": 5 if accepted else 1, "note": writer.note,
            }  # fmt: skip
            route = f"{url}/reviews"
        else:
            if page.assignment_id is None:
                raise SimulationError(f"a {page.task} page from {url} without its assignment")
            data = {"assignment_id": page.assignment_id, "text": writer.answer(page), "time_spent_ms": 1000}
            route = f"{url}/demonstrations"
    except SimulationError:
        raise
    except Exception as error:
        raise SimulationError(
            f"the oracle or edit rule failed: {error.__class__.__name__}: {error}"
        ) from error
    response = await _request(client, "POST", route, data=data, headers=headers)
    if response.status_code == 200:
        if page.task == "review":
            stats.reviews += 1
            stats.accepted += data["verdict"] == "accept"
        elif page.task == "improve":
            stats.improved += 1
        else:
            stats.written += 1
    elif response.status_code == 409:  # the task filled up while its lease was away
        stats.refused += 1
    else:
        answer = parse_workbench(response.text)
        reason = answer.error or answer.notice or f"HTTP {response.status_code}"
        raise SimulationError(f"the {page.task} answer was refused: {reason}")
    return response
