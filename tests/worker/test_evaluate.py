"""Evaluate runs: a reward model's accuracy and length bias on held-out human judgments, and a
policy's win rate against its reference, judged by a reward model or an LM judge."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import ModelKind, ModelVersion, Project, Run, RunKind, RunLog, User
from app.schemas.training import RewardConfig
from app.services import runs
from tests.utils.factories import make_comparison, make_human_judgment, make_project, make_user
from tests.utils.tiny_models import make_forced_causal_lm, make_tiny_causal_lm
from tests.worker.conftest import FILLER, make_prompts, run_to_end
from worker.training.base import ModelRef, PrintReporter
from worker.training.evaluate import pearson, ranks, spearman
from worker.training.reward import train_reward

RM_CONFIG = {"learning_rate": 1e-3, "batch_size": 16, "max_steps": 20, "max_length": 64, "eval_fraction": 0.0}


def length_pairs(n: int, seed: int, *, longer_wins: bool = True) -> list[dict]:
    """Pairs of random words where the known answer is the longer (or the shorter) response."""
    rng = random.Random(seed)
    pairs = []
    for i, messages in enumerate(make_prompts(n, seed)):
        long = " ".join(rng.choice(FILLER) for _ in range(rng.randint(6, 12)))
        short = " ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 5)))
        chosen, rejected = (long, short) if longer_wins else (short, long)
        pairs.append({"prompt_id": i, "messages": messages, "chosen": chosen, "rejected": rejected})
    return pairs


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "base", seed=0)


@pytest.fixture(scope="module")
def brevity_rm(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward model trained (outside any run) to prefer the shorter response."""
    out = tmp_path_factory.mktemp("brevity") / "rm"
    pairs = length_pairs(150, seed=11, longer_wins=False)
    config = RewardConfig(**RM_CONFIG)
    train_reward(
        config=config, base=ModelRef(str(base_dir)), pairs=pairs, output_dir=out, reporter=PrintReporter()
    )
    return out


def _label(session: Session, project: Project, pairs: list[dict], rater, seed: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Store the pairs as comparisons (known answer on a random side) judged right by `rater`."""
    rng = random.Random(seed)
    ids = []
    for pair in pairs:
        flip = rng.random() < 0.5
        a, b = (pair["rejected"], pair["chosen"]) if flip else (pair["chosen"], pair["rejected"])
        comparison = make_comparison(session, project, pair["messages"], a, b)
        ids.append(make_human_judgment(session, comparison, rater, "B" if flip else "A").id)
    return ids


def _model(session: Session, name: str, kind: ModelKind, uri: Path, parent_id: int | None = None) -> int:
    model = ModelVersion(name=name, kind=kind, uri=str(uri), parent_id=parent_id)
    session.add(model)
    session.flush()
    return model.id


def test_reward_model_accuracy_and_length_bias_on_held_out_judgments(
    pg_factory: sessionmaker[Session], pg_url: str, base_dir: Path, brevity_rm: Path, tmp_path: Path
) -> None:
    # humans prefer the longer answer; a reward model is trained on the first 60 of their labels
    with session_scope(pg_factory) as session:
        project = make_project(session, "evals")
        rater = make_user(session, "ann")
        _label(session, project, length_pairs(60, seed=1), rater, seed=1)
        base_id = _model(session, "tiny-base", ModelKind.policy, base_dir)
    trained = run_to_end(
        pg_factory, pg_url, tmp_path, kind=RunKind.reward, base_model_id=base_id, config=RM_CONFIG
    )
    with session_scope(pg_factory) as session:
        project = session.scalars(select(Project)).one()
        rater = session.scalars(select(User).where(User.username == "ann")).one()
        later = _label(session, project, length_pairs(40, seed=2), rater, seed=2)
        untrained_id = _model(session, "untrained-rm", ModelKind.reward, base_dir)
        brevity_id = _model(session, "brevity-rm", ModelKind.reward, brevity_rm)

    config = {"max_length": 64, "batch_size": 16}
    rm_id = trained.output_model_id
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.evaluate, config=config | {"model_id": rm_id})
    with pg_factory() as session:
        # held out: exactly the judgments on comparisons the model never trained on
        assert runs.snapshot_ids(session, run.id) == sorted(later)
        figures = run.summary
        assert figures["n"] == 40 and figures["accuracy"] >= 0.9, figures
        logged = session.scalars(select(RunLog.message).where(RunLog.run_id == run.id)).all()
        assert "held-out 40 pairs from 40 judgments on 40 comparisons" in logged  # says what it counted
        for unit in ("chars", "tokens"):
            assert figures[f"length_pearson_{unit}"] > 0.5 and figures[f"length_spearman_{unit}"] > 0.5
        model = session.get(ModelVersion, rm_id)
        assert model is not None
        evaluation = model.metrics["evaluation"]
        assert evaluation["accuracy"] == figures["accuracy"] and evaluation["n"] == 40
        assert evaluation["run_id"] == run.id and "eval/pairs" not in evaluation
        assert "loss/train" in model.metrics  # the training metrics stay

    # a reward model with no training run is evaluated on every human judgment
    untrained = run_to_end(
        pg_factory, pg_url, tmp_path, kind=RunKind.evaluate, config=config | {"model_id": untrained_id}
    )
    assert untrained.snapshot_size == 100 and untrained.summary["n"] == 100
    assert 0.25 <= untrained.summary["accuracy"] <= 0.75, untrained.summary  # chance, give or take
    # one that learned the opposite preference: wrong on the humans' labels, and short-biased
    brevity = run_to_end(
        pg_factory, pg_url, tmp_path, kind=RunKind.evaluate, config=config | {"model_id": brevity_id}
    )
    assert brevity.summary["accuracy"] <= 0.1, brevity.summary
    for unit in ("chars", "tokens"):
        assert brevity.summary[f"length_pearson_{unit}"] < -0.5
        assert brevity.summary[f"length_spearman_{unit}"] < -0.5


def test_policy_win_rate_against_its_reference(
    pg_factory: sessionmaker[Session], pg_url: str, base_dir: Path, brevity_rm: Path, tmp_path: Path
) -> None:
    says_banana = make_forced_causal_lm(tmp_path / "banana", "banana")  # five words every time
    says_nothing = make_forced_causal_lm(tmp_path / "eos", "<|im_end|>")  # ends at once
    always_a = make_forced_causal_lm(tmp_path / "always-a", "A", extra_words=["A", "B"])
    with session_scope(pg_factory) as session:
        project = make_project(session, "policy-eval", instructions="Prefer short answers.")
        for i in range(6):
            make_comparison(
                session, project, [{"role": "user", "content": f"tell me about the sun {i}"}], "a", "b"
            )
        banana_id = _model(session, "says-banana", ModelKind.policy, says_banana)
        brief_id = _model(session, "says-nothing", ModelKind.policy, says_nothing, parent_id=banana_id)
        judge_id = _model(session, "brevity-rm", ModelKind.reward, brevity_rm)
        lm_judge_id = _model(session, "always-a", ModelKind.policy, always_a)
        random_id = _model(session, "tiny-base", ModelKind.policy, base_dir)

    common = {"max_new_tokens": 5, "temperature": 1.0, "num_prompts": 6, "batch_size": 4, "max_length": 128}
    # against a reference the judge dislikes (the parent, by default): a clear win
    run = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.evaluate,
               config=common | {"model_id": brief_id, "judge_model_id": judge_id})  # fmt: skip
    s = run.summary
    assert run.config["reference_model_id"] == banana_id and s["reference"] == "says-banana"
    assert s["n"] == 6 and s["win_rate"] >= 0.9 and s["tie_rate"] == 0.0, s
    assert s["mean_length"] == 0.0 and s["reference_mean_length"] == len("banana banana banana banana banana")
    assert 0.0 <= s["lc_win_rate"] <= 1.0 and s["judge"] == "reward model brevity-rm"
    with pg_factory() as session:
        evaluation = session.get(ModelVersion, brief_id).metrics["evaluation"]  # type: ignore[union-attr]
        for key in (
            "win_rate",
            "tie_rate",
            "lc_win_rate",
            "mean_length",
            "reference_mean_length",
            "judge",
            "n",
        ):
            assert evaluation[key] == s[key]

    # a policy against itself (same seed: the same texts) is a draw, by either judge
    for judge in (judge_id, lm_judge_id):
        itself = {"model_id": random_id, "reference_model_id": random_id, "judge_model_id": judge}
        same = run_to_end(pg_factory, pg_url, tmp_path, kind=RunKind.evaluate, config=common | itself)
        assert same.summary["win_rate"] == 0.5 and same.summary["tie_rate"] == 1.0, same.summary
        assert same.summary["mean_length"] == same.summary["reference_mean_length"] > 0
    assert same.summary["judge"].startswith("LM judge always-a (rubric ")
    # the project's evaluate history keeps every run, one row per reference and judge
    from app.services.evaluation import evaluate_results

    with pg_factory() as session:
        project_id = session.scalars(select(Project.id).where(Project.slug == "policy-eval")).one()
        history = evaluate_results(session, project_id)
    assert [(r.model, r.reference, r.judge.split(" (")[0]) for r in history] == [
        ("tiny-base", "tiny-base", "LM judge always-a"),
        ("tiny-base", "tiny-base", "reward model brevity-rm"),
        ("says-nothing", "says-banana", "reward model brevity-rm"),
    ]
    assert history[-1].run_id == run.id and history[-1].figures["win_rate"] == s["win_rate"]
    assert all(r.kind == "policy" and r.model_version_id for r in history)


def test_evaluate_and_judge_runs_check_their_models(session: Session) -> None:
    project = make_project(session)
    rater = make_user(session, "ann")
    comparison = make_comparison(session, project, [{"role": "user", "content": "q"}], "a", "b")
    make_human_judgment(session, comparison, rater, "A")
    policy = ModelVersion(name="p", kind=ModelKind.policy, uri="/p")
    reward = ModelVersion(name="r", kind=ModelKind.reward, uri="/r")
    session.add_all([policy, reward])
    session.flush()

    def create(kind: RunKind, **config: object) -> Run:
        return runs.create_run(session, project=project, kind=kind, config=config)

    with pytest.raises(runs.RunError, match="choose a judge model"):
        create(RunKind.judge)
    with pytest.raises(runs.RunError, match="no model version 999"):
        create(RunKind.judge, judge_model_id=999)
    with pytest.raises(runs.RunError, match="choose the model version to evaluate"):
        create(RunKind.evaluate)
    with pytest.raises(runs.RunError, match="has no parent"):
        create(RunKind.evaluate, model_id=policy.id, judge_model_id=reward.id)
    with pytest.raises(runs.RunError, match="is a reward model"):
        create(RunKind.evaluate, model_id=policy.id, reference_model_id=reward.id, judge_model_id=reward.id)
    with pytest.raises(runs.RunError, match="choose a judge model"):
        create(RunKind.evaluate, model_id=policy.id, reference_model_id=policy.id)
    with pytest.raises(runs.RunError, match="leave reference_model_id and judge_model_id empty"):
        create(RunKind.evaluate, model_id=reward.id, judge_model_id=policy.id)
    # a judge run freezes the pairs it will label, like any run's data
    judge_run = create(RunKind.judge, judge_model_id=policy.id)
    assert judge_run.snapshot_size == 1 and runs.snapshot_ids(session, judge_run.id) == [comparison.id]
    later = make_comparison(session, project, [{"role": "user", "content": "q2"}], "c", "d")
    assert runs.snapshot_ids(session, judge_run.id) == [comparison.id]  # created after: not in it
    human_only = create(RunKind.judge, judge_model_id=policy.id, comparisons="human_labelled")
    assert runs.snapshot_ids(session, human_only.id) == [comparison.id]
    assert sorted(runs.snapshot_ids(session, create(RunKind.judge, judge_model_id=policy.id).id)) == sorted(
        [comparison.id, later.id]
    )
    assert create(RunKind.evaluate, model_id=reward.id).snapshot_size == 1
    evaluate = create(
        RunKind.evaluate, model_id=policy.id, reference_model_id=policy.id, judge_model_id=reward.id
    )
    assert evaluate.snapshot_size == 2 and evaluate.base_model_id is None  # the two prompts

    # a reward model whose training run saw every human judgment has nothing held out
    trained = runs.create_run(session, project=project, kind=RunKind.reward, base_model_id=policy.id)
    reward.run_id = trained.id
    session.flush()
    with pytest.raises(runs.RunError, match="no held-out human judgments"):
        create(RunKind.evaluate, model_id=reward.id)


def test_correlations() -> None:
    assert ranks([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotone, not linear
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 1.0
    assert pearson([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [2, 1]) is None


def test_dashboard_launches_judge_and_evaluate_runs(app, client) -> None:  # type: ignore[no-untyped-def]
    from app.models import Role
    from tests.utils.web import csrf_from, login

    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        make_comparison(session, project, [{"role": "user", "content": "q"}], "a", "b")
        make_user(session, "ada", Role.admin)
        policy = ModelVersion(name="base-policy", kind=ModelKind.policy, uri="/models/base")
        reward = ModelVersion(name="rm", kind=ModelKind.reward, uri="/models/rm")
        session.add_all([policy, reward])
        session.flush()
        policy_id, reward_id = policy.id, reward.id
    login(client, "ada")
    form = client.get("/admin/runs/new?kind=judge&project=proj")
    assert form.status_code == 200 and "AI judge" in form.text and "Evaluate a model version" in form.text
    assert 'name="base_model_id"' not in form.text  # the judge is chosen in the config
    assert 'name="judge_model_id"' in form.text and f'<option value="{reward_id}"' in form.text
    token = csrf_from(form.text)

    missing = client.post("/admin/runs", data={"kind": "judge", "project": "proj", "csrf_token": token})
    assert missing.status_code == 422 and "choose a judge model" in missing.text
    launched = client.post(
        "/admin/runs",
        data={"kind": "judge", "project": "proj", "judge_model_id": str(reward_id), "rubric": "",
              "comparisons": "all", "limit": "10", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert launched.status_code == 303
    page = client.get(launched.headers["location"])
    assert page.status_code == 200 and "judge_model_id" in page.text and "<strong>rm</strong>" in page.text

    evaluate = client.get("/admin/runs/new?kind=evaluate&project=proj")
    for field in ("model_id", "reference_model_id", "judge_model_id", "num_prompts"):
        assert f'name="{field}"' in evaluate.text
    launched = client.post(
        "/admin/runs",
        data={"kind": "evaluate", "project": "proj", "model_id": str(policy_id), "reference_model_id": "",
              "judge_model_id": str(reward_id), "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert launched.status_code == 422 and "has no parent" in launched.text
    with app.state.sessionmaker() as session:
        created = session.scalars(select(Run)).all()
        assert [(r.kind, r.config["comparisons"], r.config["limit"]) for r in created] == [
            (RunKind.judge, "all", 10)
        ]
