"""Generate runs for ranking tasks: K completions per prompt from the policy, or shared with a
second version; stored as rankings with each completion's version, served to raters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

torch = pytest.importorskip("torch")

from app.models import Completion, ModelKind, ModelVersion, Ranking, RunKind  # noqa: E402
from app.run_kinds import KINDS  # noqa: E402
from app.schemas.training import GenerateConfig  # noqa: E402
from app.services import runs  # noqa: E402
from app.services.rating.ranking import claim_next_ranking, ranking_view  # noqa: E402
from app.services.runs.results import store_generated  # noqa: E402
from tests.utils.factories import make_pair, make_project, make_user  # noqa: E402
from tests.utils.tiny_models import make_forced_causal_lm, make_tiny_causal_lm  # noqa: E402
from worker.methods import Work, _generate  # noqa: E402
from worker.training.base import ModelRef  # noqa: E402

PROMPTS = [[{"role": "user", "content": "tell me about the sun"}], [{"role": "user", "content": "hi"}]]
SAMPLING = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "batch_size": 2}


def test_k_completions_per_prompt_from_one_or_two_versions(tmp_path_factory: pytest.TempPathFactory) -> None:
    policy = ModelRef(str(make_tiny_causal_lm(tmp_path_factory.mktemp("policy"))))
    other = ModelRef(str(make_forced_causal_lm(tmp_path_factory.mktemp("other"), "moon")))
    rows = [{"prompt_id": n, "messages": messages} for n, messages in enumerate(PROMPTS, start=1)]

    alone = _generate(
        Work(
            kind=RunKind.generate,
            config={"strategy": "ranking", **SAMPLING},
            data=rows,
            base=policy,
            context={"rank_k": 4},
        ),
        _Quiet(),
    )
    assert [[slot for _, slot in ranking] for ranking in alone["rankings"]] == [[0, 0, 0, 0]] * 2

    shared = _generate(
        Work(
            kind=RunKind.generate,
            config={"strategy": "ranking", "rank_k": 5, "versus_model_id": 9, **SAMPLING},
            data=rows,
            base=policy,
            models={"versus": other},
            context={"rank_k": 4},
        ),
        _Quiet(),
    )
    for ranking in shared["rankings"]:
        assert [slot for _, slot in ranking] == [0, 0, 0, 1, 1]  # the config's K wins over the project's
        assert all("moon" in text for text, slot in ranking if slot == 1)
    assert shared["sampling"]["temperature"] == 1.0


class _Quiet:
    def log(self, message: str) -> None:
        pass

    def step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def test_config_rules() -> None:
    assert GenerateConfig(strategy="ranking").rank_k is None
    for bad in ({"strategy": "two_samples", "versus_model_id": 3}, {"strategy": "versus", "rank_k": 4},
                {"strategy": "ranking", "rank_k": 10}):  # fmt: skip
        with pytest.raises(ValidationError):
            GenerateConfig(**bad)
    work = KINDS[RunKind.generate].sizing
    assert work is not None
    assert work.work({"strategy": "ranking", "rank_k": 6, "max_new_tokens": 10}, 3) == 180
    assert work.work({"strategy": "two_samples", "max_new_tokens": 10}, 3) == 60


def _model(session: Session, name: str) -> ModelVersion:
    model = ModelVersion(name=name, kind=ModelKind.policy, uri=f"/models/{name}")
    session.add(model)
    session.flush()
    return model


def test_stored_rankings_keep_each_completions_version(session: Session) -> None:
    project = make_project(session, "gen", rank_k=4)
    make_pair(session, project, "first prompt", "a", "b")
    make_pair(session, project, "second prompt", "c", "d")
    policy, other = _model(session, "new"), _model(session, "old")
    run = runs.create_run(
        session, project=project, kind=RunKind.generate, base_model_id=policy.id,
        config={"strategy": "ranking", "versus_model_id": other.id},
    )  # fmt: skip
    rows = [{"prompt_id": prompt_id} for prompt_id in sorted(runs_prompt_ids(session, project.id))]
    outcome = {
        "rankings": [
            [["p1", 0], ["p2", 0], ["o1", 1], ["o2", 1]],
            [["same", 0], ["x", 0], ["same", 1], ["y", 1]],  # a repeated text: no ranking
        ],
        "sampling": {"temperature": 1.0},
    }
    assert store_generated(session, run=run, prompts=rows, outcome=outcome) == {
        "rankings_created": 1, "rankings_skipped": 1,
    }  # fmt: skip
    [ranking] = session.scalars(select(Ranking)).all()
    versions = {
        c.text: c.model_version_id
        for c in session.scalars(select(Completion).where(Completion.id.in_(ranking.completion_ids)))
    }
    assert versions == {"p1": policy.id, "p2": policy.id, "o1": other.id, "o2": other.id}
    rater = make_user(session, "rita")
    assignment = claim_next_ranking(session, project=project, rater_id=rater.id)
    assert assignment is not None and assignment.ranking_id == ranking.id
    assert sorted(r.text for r in ranking_view(session, assignment).responses) == ["o1", "o2", "p1", "p2"]


def runs_prompt_ids(session: Session, project_id: int) -> list[int]:
    from app.models import Prompt

    return list(session.scalars(select(Prompt.id).where(Prompt.project_id == project_id)))
