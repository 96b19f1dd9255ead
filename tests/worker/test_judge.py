"""AI judge runs (RLAIF): a reward model or a prompted LM labels comparisons; the labels are stored
as AI judgments with their provenance, kept apart from human ones, and chosen by label_source."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.auth import verify_password
from app.db import session_scope
from app.models import (
    Comparison,
    Judgment,
    JudgmentSource,
    ModelKind,
    ModelVersion,
    Project,
    Role,
    RunKind,
    User,
)
from app.schemas.training import JUDGE_TEMPLATE, RewardConfig
from app.services import runs
from app.services.preferences.rows import preference_rows
from tests.utils.factories import make_comparison, make_human_judgment, make_project, make_user, make_vote
from tests.utils.tiny_models import make_forced_causal_lm, make_tiny_causal_lm
from tests.worker.conftest import make_oracle_pairs, run_to_end
from worker.runner import prepare
from worker.training.base import ModelRef, PrintReporter
from worker.training.judge import INCONSISTENT, LMJudge, combine_orders, transcript
from worker.training.reward import train_reward

LETTERS = ["A", "B"]  # the answer letters are words of the LM judges' vocabulary


def _ai_judgments(session: Session) -> list[Judgment]:
    return list(
        session.scalars(select(Judgment).where(Judgment.source == JudgmentSource.ai).order_by(Judgment.id))
    )


def _seed_oracle_project(session: Session, n_prompts: int, seed: int) -> dict[int, str]:
    """Fresh pairs whose right answer is known (the side with "banana"), on random sides; the
    first 10 are judged correctly by a human. Returns the answer of each comparison."""
    project = make_project(session, "rlaif", instructions="Prefer the answer that mentions a banana.")
    rater = make_user(session, "ann")
    rng = random.Random(seed)
    truth: dict[int, str] = {}
    for i, pair in enumerate(make_oracle_pairs(n_prompts, 2, seed=seed)):
        flip = rng.random() < 0.5
        a, b = (pair["rejected"], pair["chosen"]) if flip else (pair["chosen"], pair["rejected"])
        comparison = make_comparison(session, project, pair["messages"], a, b)
        truth[comparison.id] = "B" if flip else "A"
        if i < 10:
            make_human_judgment(session, comparison, rater, truth[comparison.id])
    return truth


def test_reward_model_judge_labels_like_the_oracle_and_stays_apart_from_humans(
    pg_factory: sessionmaker[Session], pg_url: str, tiny_base: ModelRef, tmp_path: Path
) -> None:
    # a reward model that learned the known preference (as in test_reward)
    rm_dir = tmp_path / "rm"
    config = RewardConfig(learning_rate=1e-3, batch_size=16, max_steps=30, max_length=64, eval_fraction=0.0)
    train_reward(config=config, base=tiny_base, pairs=make_oracle_pairs(60, 5, seed=0), output_dir=rm_dir,
                 reporter=PrintReporter())  # fmt: skip
    with session_scope(pg_factory) as session:
        truth = _seed_oracle_project(session, n_prompts=20, seed=99)  # 40 fresh pairs
        rm = ModelVersion(name="tiny-rm", kind=ModelKind.reward, uri=str(rm_dir))
        base = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=tiny_base.uri)
        session.add_all([rm, base])
        session.flush()
        rm_id, base_id = rm.id, base.id
        counts_before = dict(session.execute(select(Comparison.id, Comparison.judgment_count)).all())

    judge_config = {"judge_model_id": rm_id, "comparisons": "all", "max_length": 64, "batch_size": 16}
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.judge, config=judge_config)

    with pg_factory() as session:
        ai = _ai_judgments(session)
        assert len(ai) == 40 and {j.comparison_id for j in ai} == set(truth)
        # agreement with the known answer (ties count as misses)
        agreement = sum(j.choice == truth[j.comparison_id] for j in ai) / len(ai)
        assert agreement >= 0.85, agreement
        judge = session.get(User, ai[0].rater_id)
        assert judge is not None and judge.username == "ai-judge:tiny-rm" and judge.role == Role.judge
        assert not verify_password(judge.password_hash, "!") and judge.password_hash == "!"
        for j in ai:
            assert j.run_id == run.id and j.assignment_id is None and j.a_on_left and j.rater_id == judge.id
            assert j.provenance is not None and j.provenance["method"] == "rm"
            assert j.provenance["model_version_id"] == rm_id and j.provenance["model_name"] == "tiny-rm"
            score_a, score_b = j.provenance["scores"]
            assert j.choice == ("A" if score_a > score_b else "B") and j.strength in (1, 2)
        # AI labels take no human slot of the rating queue
        assert dict(session.execute(select(Comparison.id, Comparison.judgment_count)).all()) == counts_before
        assert run.summary["stored"] == 40 and run.summary["judged"] == 40
        assert run.summary["human_compared"] == 10 and run.summary["human_agreement"] >= 0.8
        assert run.output_model_id is None and session.scalar(select(func.count(ModelVersion.id))) == 2

        # exports: human only, AI only, or both
        project_id = session.scalars(select(Project.id)).one()
        human_ids = set(session.scalars(select(Judgment.id).where(Judgment.source == JudgmentSource.human)))
        ai_ids = {j.id for j in ai if j.choice != "tie"}

        def exported(source: str) -> set[int]:
            rows = preference_rows(
                session, project_id=project_id, aggregation="per_rater", label_source=source
            )  # type: ignore[arg-type]
            return {i for row in rows for i in row.judgment_ids}

        assert exported("human") == human_ids and len(human_ids) == 10
        assert exported("ai") == ai_ids
        assert exported("both") == human_ids | ai_ids
        majority = list(preference_rows(session, project_id=project_id, label_source="human"))
        assert len(majority) == 10 and all(v.source == "human" for row in majority for v in row.votes_used)

    # training runs choose their labels: the snapshot holds exactly the chosen source
    with session_scope(pg_factory) as session:
        project = session.scalars(select(Project)).one()
        snapshots = {}
        for source in ("human", "ai", "both"):
            created = runs.create_run(session, project=project, kind=RunKind.dpo, base_model_id=base_id,
                                      config={"label_source": source})  # fmt: skip
            snapshots[source] = set(runs.snapshot_ids(session, created.id))
        all_ai = {j.id for j in _ai_judgments(session)}
        assert snapshots == {"human": human_ids, "ai": all_ai, "both": human_ids | all_ai}

        # with another judge's labels in the project, `ai_judge` keeps to one judge
        judge_name = session.get(User, session.get(Judgment, min(all_ai)).rater_id).username
        other = make_user(session, "ai-judge:other", Role.judge)
        stray = make_vote(session, session.scalars(select(Comparison)).first(), other, "A", source="ai")

        def snapshot(**config: object) -> set[int]:
            created = runs.create_run(session, project=project, kind=RunKind.dpo, base_model_id=base_id,
                                      config=config)  # fmt: skip
            return set(runs.snapshot_ids(session, created.id))

        assert snapshot(label_source="ai") == all_ai | {stray.id}
        assert snapshot(label_source="ai", ai_judge=judge_name) == all_ai
        assert snapshot(label_source="both", ai_judge=judge_name) == human_ids | all_ai
        assert snapshot(label_source="human", ai_judge=judge_name) == human_ids
        with pytest.raises(runs.RunError, match="no AI judge named 'ai-judge:nobody'"):
            snapshot(label_source="ai", ai_judge="ai-judge:nobody")
        session.rollback()

    # ...and a reward model trains on the AI labels alone, end to end
    reward_config = {"label_source": "ai", "max_steps": 2, "batch_size": 8, "max_length": 64,
                     "eval_fraction": 0.0, "learning_rate": 1e-3}  # fmt: skip
    with pg_factory() as session:
        project = session.scalars(select(Project)).one()
        probe = runs.create_run(session, project=project, kind=RunKind.reward, base_model_id=base_id,
                                config=reward_config)  # fmt: skip
        data = prepare(session, probe).data
        assert len(data) == len(ai_ids)  # one row per AI-labelled comparison (ties give none)
        session.rollback()
    trained = run_to_end(
        pg_factory, pg_url, tmp_path, kind=RunKind.reward, base_model_id=base_id, config=reward_config
    )
    assert trained.output_model_id is not None and trained.snapshot_size == 40

    # a second run labels only what is missing: nothing
    again = run_to_end(
        pg_factory, pg_url, tmp_path, kind=RunKind.judge, config=judge_config | {"comparisons": "unjudged"}
    )
    assert again.summary["judged"] == 0 and again.summary["stored"] == 0
    with pg_factory() as session:
        assert len(_ai_judgments(session)) == 40


average_rule = {"strong_margin": 1.0, "orders": "average", "tie_margin": 1e-4}


def test_lm_judge_turns_position_bias_into_ties_and_reruns_store_nothing(
    session_factory: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    # an LM judge that answers "A" whatever it is shown
    always_a = make_forced_causal_lm(tmp_path / "always-a", "A", extra_words=LETTERS)
    with session_scope(session_factory) as session:
        project = make_project(session, "lm", instructions="Prefer the kinder answer.")
        rater = make_user(session, "ann")
        for i in range(6):
            comparison = make_comparison(
                session, project, [{"role": "user", "content": f"say hi {i}"}], "hello", "go away"
            )
            if i in (1, 4):
                make_human_judgment(session, comparison, rater, "A")
        judge = ModelVersion(name="always-a", kind=ModelKind.policy, uri=str(always_a))
        session.add(judge)
        session.flush()
        judge_id = judge.id

    config = {"judge_model_id": judge_id, "comparisons": "all", "max_length": 256, "batch_size": 4}
    first = run_to_end(session_factory, db_url, tmp_path, kind=RunKind.judge, config=config)

    rubric_hash = runs.rubric_sha256("Prefer the kinder answer.")  # the instructions: no judge rubric set
    with session_factory() as session:
        ai = _ai_judgments(session)
        assert len(ai) == 6 and first.summary["ties"] == 6 and first.summary["tie_rate"] == 1.0
        for j in ai:
            assert j.choice == "tie" and j.strength == 0 and j.rationale == INCONSISTENT
            assert j.provenance is not None and j.provenance["method"] == "lm"
            assert j.provenance["answers"] == {"ab": "A", "ba": "A"}  # asked in both orders
            assert j.provenance["logodds"]["ab"] > 0 and j.provenance["logodds"]["ba"] > 0
            assert (
                j.provenance["rubric_sha256"] == rubric_hash and j.provenance["model_version_id"] == judge_id
            )
        user = session.get(User, ai[0].rater_id)
        assert user is not None and user.username == f"ai-judge:always-a:{rubric_hash[:8]}"

    # running again stores nothing new; asking only for unjudged pairs finds none
    second = run_to_end(session_factory, db_url, tmp_path, kind=RunKind.judge, config=config)
    assert second.summary["stored"] == 0 and second.summary["already_judged"] == 6
    third = run_to_end(
        session_factory, db_url, tmp_path, kind=RunKind.judge, config=config | {"comparisons": "unjudged"}
    )
    assert third.summary["judged"] == 0
    # another rubric is another judge, with its own labels; `limit` and the selections apply
    brief = config | {"rubric": "Prefer brevity."}
    fourth = run_to_end(session_factory, db_url, tmp_path, kind=RunKind.judge, config=brief | {"limit": 4})
    assert fourth.summary["stored"] == 4
    fifth = run_to_end(
        session_factory, db_url, tmp_path, kind=RunKind.judge, config=brief | {"comparisons": "unjudged"}
    )
    assert fifth.summary["judged"] == 2 and fifth.summary["stored"] == 2
    human = config | {"rubric": "Prefer warmth.", "comparisons": "human_labelled"}
    sixth = run_to_end(session_factory, db_url, tmp_path, kind=RunKind.judge, config=human)
    assert sixth.summary["judged"] == 2 and sixth.summary["human_compared"] == 2
    assert sixth.summary["human_agreement"] == 0.0  # ties never agree with a decided vote
    # averaging the orders is another judge too; its verdicts follow the averaged log-odds
    averaged = run_to_end(
        session_factory, db_url, tmp_path, kind=RunKind.judge, config=config | {"orders": "average"}
    )
    assert averaged.summary["stored"] == 6 and "orders averaged" in averaged.summary["judge"]
    with session_factory() as session:
        mean_judge = session.scalars(
            select(User).where(User.username == averaged.summary["judge_user"])
        ).one()
        assert mean_judge.username != user.username
        votes = session.scalars(select(Judgment).where(Judgment.rater_id == mean_judge.id)).all()
        for j in votes:
            odds = j.provenance["logodds"]
            assert j.provenance["orders"] == "average"
            assert (j.choice, j.strength) == combine_orders(odds["ab"], odds["ba"], **average_rule)[:2]
    with session_factory() as session:
        assert len(_ai_judgments(session)) == 20
        assert session.scalar(select(func.count(User.id)).where(User.role == Role.judge)) == 4
        assert session.scalar(select(func.sum(Comparison.judgment_count))) == 2  # the human votes only
        assert (
            session.scalar(select(func.count(Judgment.id)).where(Judgment.source == JudgmentSource.human))
            == 2
        )


@torch.no_grad()
def test_lm_judge_reads_the_answer_letter_in_both_orders(tmp_path: Path) -> None:
    ref = ModelRef(str(make_tiny_causal_lm(tmp_path / "lm", extra_words=LETTERS, seed=3)))
    judge = LMJudge(ref, rubric="be kind", max_length=512, batch_size=3, strong_margin=0.05, device="cpu")
    tokenizer, model = judge.tokenizer, judge.model
    a_id, b_id = tokenizer.convert_tokens_to_ids("A"), tokenizer.convert_tokens_to_ids("B")

    def expected(messages: list[dict[str, str]], first: str, second: str) -> float:
        """log p(A) - log p(B) after the judge prompt, computed here, unbatched."""
        text = JUDGE_TEMPLATE.format(rubric="be kind", conversation=transcript(messages), response_a=first,
                                     response_b=second)  # fmt: skip
        chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)  # fmt: skip
        ids = torch.tensor([tokenizer(chat, add_special_tokens=False)["input_ids"]])
        logprobs = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
        return float(logprobs[a_id] - logprobs[b_id])

    items = [
        ([{"role": "user", "content": "tell me about the cat"}], "the cat is happy", "no"),
        ([{"role": "user", "content": "what is the sun"}], "a star", "the sun is a big hot star in the sky"),
        ([{"role": "user", "content": "hi"}], "hello", "hello there my good friend"),
        ([{"role": "user", "content": "say something"}], "banana", "apple"),
    ]
    verdicts = judge.judge(items)
    swapped = judge.judge([(m, b, a) for m, a, b in items])
    for (messages, a, b), verdict, mirror in zip(items, verdicts, swapped, strict=True):
        odds = verdict["provenance"]["logodds"]
        assert odds["ab"] == pytest.approx(expected(messages, a, b), abs=1e-3)
        assert odds["ba"] == pytest.approx(expected(messages, b, a), abs=1e-3)
        assert (verdict["choice"], verdict["strength"], verdict["rationale"]) == combine_orders(
            odds["ab"], odds["ba"], strong_margin=0.05
        )
        # judging the pair the other way round asks the same two questions
        assert mirror["provenance"]["logodds"]["ab"] == pytest.approx(odds["ba"], abs=1e-4)
        assert mirror["choice"] == {"A": "B", "B": "A", "tie": "tie"}[verdict["choice"]]

    # the combination rule
    assert combine_orders(2.0, -3.0, strong_margin=1.0) == ("A", 2, "")
    assert combine_orders(2.0, -0.5, strong_margin=1.0) == ("A", 1, "")
    assert combine_orders(-0.2, 0.4, strong_margin=1.0) == ("B", 1, "")
    assert combine_orders(1.0, 1.0, strong_margin=1.0) == ("tie", 0, INCONSISTENT)
    assert combine_orders(0.0, -1.0, strong_margin=1.0) == ("tie", 0, INCONSISTENT)
    # averaged orders: a bias toward the first position adds to both log-odds and cancels
    average = {"strong_margin": 1.0, "orders": "average", "tie_margin": 1e-4}
    assert combine_orders(3.0, 1.0, **average) == ("A", 2, "")  # mean +1.0: a, decisively
    assert combine_orders(2.6, 2.2, **average) == ("A", 1, "")  # "A" both times, yet a is preferred
    assert combine_orders(0.5, 2.5, **average) == ("B", 2, "")
    assert combine_orders(1.5, 1.5, **average)[:2] == ("tie", 0)  # the position alone: no preference


def test_lm_judge_trims_the_responses_never_the_answer_cue(tmp_path: Path) -> None:
    ref = ModelRef(str(make_tiny_causal_lm(tmp_path / "lm", extra_words=LETTERS)))
    long = " ".join(["banana"] * 300)
    messages = [{"role": "user", "content": "tell me about the sun"}]
    roomy = LMJudge(ref, rubric="be kind", max_length=4096, batch_size=2, device="cpu")
    full, cut = roomy.prompt_ids(messages, long, "a star")
    assert not cut and len(full) > 300
    tight = LMJudge(ref, rubric="be kind", max_length=160, batch_size=2, device="cpu")
    ids, cut = tight.prompt_ids(messages, long, "a star")
    assert cut and len(ids) <= 160
    # the question after the responses and the answer cue are intact
    cue = roomy.render(transcript(messages), "", "")[-12:]
    assert ids[-12:] == cue and full[-12:] == cue
    text = tight.tokenizer.decode(ids)
    assert "star" in text and "tell me about the sun" in text and 0 < text.count("banana") < 300
