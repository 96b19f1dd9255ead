"""Finding 4: run configs refuse non-finite, absurd and unknown values by name, at the launch
form and at `rlhf train --set` alike, and queue nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import ModelKind, ModelVersion, Role, Run
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import csrf_from, login

# (kind, field, value): each must be refused with the field named.
BAD = [
    ("dpo", "beta", "inf"),
    ("dpo", "beta", "1e309"),
    ("dpo", "beta", "nan"),
    ("ppo", "kl_coef", "inf"),
    ("dpo", "seed", str(10**30)),
    ("dpo", "max_steps", str(10**30)),
    ("dpo", "epochs", "1e-300"),
    ("judge", "rubric", "x" * 1_000_000),
    ("dpo", "no_such_field", "1"),
]


@pytest.fixture
def admin(app, client):  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        make_pair(session, project, "q", "a", "b")
        make_user(session, "ada", Role.admin)
        policy = ModelVersion(name="base-policy", kind=ModelKind.policy, uri="/models/base")
        reward = ModelVersion(name="rm", kind=ModelKind.reward, uri="/models/rm")
        session.add_all([policy, reward])
        session.flush()
        ids = {"base_model_id": str(policy.id), "reward_model_id": str(reward.id)}
    login(client, "ada")
    return ids | {"csrf_token": csrf_from(client.get("/admin/runs/new?kind=dpo&project=proj").text)}


def test_the_launch_form_refuses_each_bad_value_by_name(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    for kind, field, value in BAD:
        data = {"kind": kind, "project": "proj", "base_model_id": admin["base_model_id"],
                "csrf_token": admin["csrf_token"], field: value}  # fmt: skip
        if kind == "ppo":
            data["reward_model_id"] = admin["reward_model_id"]
        if kind == "judge":
            data = {"kind": kind, "project": "proj", "judge_model_id": admin["base_model_id"],
                    "csrf_token": admin["csrf_token"], field: value}  # fmt: skip
        answer = client.post("/admin/runs", data=data, follow_redirects=False)
        assert answer.status_code in (400, 413, 422), (field, value[:20], answer.status_code)
        assert field in answer.text, (field, value[:20])
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0


def test_rlhf_train_set_refuses_the_same_values(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.db import make_engine, make_sessionmaker
    from tests.test_cli import _rlhf
    from tests.utils.processes import service_env

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    assert _rlhf(env, "db", "upgrade").returncode == 0
    assert _rlhf(env, "projects", "add", "proj").returncode == 0
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session, session.begin():
        session.add(ModelVersion(name="base-policy", kind=ModelKind.policy, uri="/models/base"))
        session.add(ModelVersion(name="rm", kind=ModelKind.reward, uri="/models/rm"))
    for kind, field, value in BAD:
        if field == "rubric":
            continue  # a 1 MB argument: the form covers it
        models = ["--base", "base-policy"] + (["--reward", "rm"] if kind == "ppo" else [])
        answer = _rlhf(env, "train", kind, "--project", "proj", *models, "--set", f"{field}={value}")
        assert answer.returncode != 0, (field, value)
        assert field in answer.stderr and "Traceback" not in answer.stderr, answer.stderr
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
    engine.dispose()
