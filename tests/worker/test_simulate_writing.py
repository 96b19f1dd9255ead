"""Write -> review -> SFT -> generate -> compare without people: simulated raters write and
improve answers and review each other's through the writing workbench's routes on a running
server (`rlhf simulate`), an SFT run on what they wrote learns it, the new policy's samples come
back as pairs, and the same simulated raters compare them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import (
    Comparison,
    Completion,
    Demonstration,
    DemonstrationReview,
    Judgment,
    JudgmentSource,
    ModelKind,
    ModelVersion,
    Project,
    Prompt,
    ReviewStatus,
    RunItem,
    RunKind,
    RunMetric,
    User,
)
from app.services import writing
from app.services.content import messages_hash, text_hash
from app.simulate import SimulationConfig, simulate
from tests.test_simulate import engine_session, server, sim_db  # noqa: F401 - fixtures
from tests.utils.factories import make_project
from tests.utils.tiny_models import make_tiny_causal_lm
from tests.worker.conftest import completion_logps, run_to_end
from worker.training.base import ModelRef
from worker.training.models import load_policy, load_tokenizer

WRITE = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star"]  # write tasks
IMPROVE = ["sky", "sea", "river", "hill"]  # improve tasks


def _prompt(session: Session, project_id: int, word: str) -> Prompt:
    messages = [{"role": "user", "content": f"tell me about the {word}"}]
    prompt = Prompt(project_id=project_id, messages=messages, content_hash=messages_hash(messages))
    session.add(prompt)
    session.flush()
    return prompt


def _completion(session: Session, prompt: Prompt, text: str, version_id: int) -> Completion:
    completion = Completion(
        prompt_id=prompt.id, text=text, content_hash=text_hash(text), model_version_id=version_id
    )
    session.add(completion)
    session.flush()
    return completion


def _nll(uri: str, messages: list, responses: list[str]) -> float:
    ref = ModelRef(uri)
    tokenizer = load_tokenizer(ref)
    return float(-completion_logps(load_policy(ref, tokenizer), tokenizer, messages, responses).mean())


@pytest.mark.postgres
def test_simulated_writers_and_reviewers_feed_an_sft_run(
    server: str,  # noqa: F811
    sim_db: str,  # noqa: F811
    pg_factory: sessionmaker[Session],
    pg_url: str,
    tmp_path: Path,
) -> None:
    base = make_tiny_causal_lm(tmp_path / "base", seed=0)
    with engine_session(sim_db) as session:
        project = make_project(session, "sim", task_mix={"write": 1.0, "improve": 1.0, "review": 1.0})
        version = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=str(base))
        session.add(version)
        session.flush()
        base_id, prompts, originals = version.id, [], {}
        for word in WRITE:  # two model samples each, neither saying banana: the first is the best
            prompt = _prompt(session, project.id, word)
            _completion(session, prompt, f"the {word} is big", version.id)
            _completion(session, prompt, f"the {word} can sing", version.id)
            prompts.append(prompt.id)
        for word in IMPROVE:
            prompt = _prompt(session, project.id, word)
            originals[word] = _completion(session, prompt, f"no bad {word}", version.id).id
        writing.add_tasks(session, project, prompt_ids=prompts, completion_ids=list(originals.values()))

    config = SimulationConfig(project="sim", raters=2, oracle="app.oracles:prefers_word", base_url=server,
                              edit_rule="app.oracles:add_target_word", samples=2)  # fmt: skip
    result = simulate(config, database_url=sim_db)
    assert result.errors == []
    assert sum(r.written for r in result.raters) == len(WRITE)
    assert sum(r.improved for r in result.raters) == len(IMPROVE)
    assert (
        sum(r.reviews for r in result.raters)
        == sum(r.accepted for r in result.raters)
        == len(WRITE + IMPROVE)
    )

    with pg_factory() as session:
        names = dict(session.execute(select(User.id, User.username)).all())
        demos = session.scalars(select(Demonstration).order_by(Demonstration.id)).all()
        answers = {session.get(Prompt, d.prompt_id).messages[0]["content"].split()[-1]: d for d in demos}
        assert sorted(answers) == sorted(WRITE + IMPROVE) and len(demos) == len(WRITE + IMPROVE)
        for word, demo in answers.items():
            assert (
                names[demo.author_id].startswith("sim-sim-") and demo.review_status == ReviewStatus.accepted
            )
            assert demo.lazy_flags == []
            if word in IMPROVE:  # the completion shown, edited by the rule, with its origin
                assert demo.source == "improved" and demo.response == f"no bad {word} banana"
                assert (
                    demo.edited_from_completion_id == originals[word]
                    and demo.edited_from_model_version_id == base_id
                )
            else:  # the best of the two samples, edited by the rule
                assert demo.source == "written" and demo.response == f"the {word} is big banana"
        reviews = session.execute(
            select(DemonstrationReview.reviewer_id, Demonstration.author_id, DemonstrationReview.score).join(
                Demonstration, Demonstration.id == DemonstrationReview.demonstration_id
            )
        ).all()
        assert len(reviews) == len(demos) and all(r != a and s == 5 for r, a, s in reviews)  # never their own
        edits = session.scalars(select(Judgment).where(Judgment.source == JudgmentSource.edit)).all()
        assert len(edits) == len(IMPROVE)
        demo_ids = [d.id for d in demos]
        messages = [session.get(Prompt, d.prompt_id).messages for d in demos]
        responses = [d.response for d in demos]

    # the SFT run trains on exactly what the simulated raters wrote, and learns it (measured: the
    # loss 5.0 -> 2.2, the answers' NLL 28.4 -> 11.7)
    sft = {"demonstration_source": "raters", "learning_rate": 3e-3, "batch_size": 8, "max_steps": 24,
           "max_length": 64, "seed": 0}  # fmt: skip
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.sft, base_model_id=base_id, config=sft)
    with pg_factory() as session:
        items = session.scalars(
            select(RunItem.item_id).where(RunItem.run_id == run.id).order_by(RunItem.item_id)
        )
        assert list(items) == demo_ids
        metric = select(RunMetric.value).where(RunMetric.run_id == run.id, RunMetric.name == "loss/train")
        losses = list(session.scalars(metric.order_by(RunMetric.step)))
        uri = session.get(ModelVersion, run.output_model_id).uri  # type: ignore[union-attr]
    assert losses[-1] < 0.5 * losses[0], losses
    before, after = _nll(str(base), messages, responses), _nll(uri, messages, responses)
    assert after < 0.5 * before, (before, after)

    # the new policy's samples come back as pairs, and the simulated raters compare them
    generate = {"num_prompts": 8, "max_new_tokens": 8, "temperature": 1.0}
    sft_id = run.output_model_id
    generated = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.generate, base_model_id=sft_id,
                           config=generate)  # fmt: skip
    with session_scope(pg_factory) as session:
        session.scalars(select(Project)).one().task_mix = {"compare": 1.0}
        sampled = session.execute(
            select(Comparison.id, Completion.sampling)
            .join(Completion, Completion.id == Comparison.completion_a_id)
            .where(Completion.model_version_id == sft_id)
        ).all()
        fresh = {comparison_id for comparison_id, _ in sampled}
    assert len(fresh) == generated.summary["comparisons_created"] > 0
    assert all(sampling["temperature"] == 1.0 for _, sampling in sampled)  # the run's own settings
    compared = simulate(config, database_url=sim_db)
    assert compared.errors == [] and compared.judgments >= len(fresh)
    with pg_factory() as session:
        voted = set(
            session.scalars(select(Judgment.comparison_id).where(Judgment.source == JudgmentSource.human))
        )
    assert fresh <= voted
