"""`rlhf projects add --tasks`, `rlhf projects members --tasks` and `rlhf import prompts --tasks
write` as an operator runs them: the mix, the members' kinds and the writing tasks stored."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.db import make_engine, make_sessionmaker
from app.models import Project, ProjectMember, User, WritingTask
from app.services.rating.tasks import next_task
from tests.test_cli import _rlhf
from tests.utils.processes import service_env


def test_task_mix_member_kinds_and_prompts_for_writing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = service_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="development")
    assert _rlhf(env, "db", "upgrade").returncode == 0
    bad = _rlhf(env, "projects", "add", "w", "--tasks", "compare=0.7,wrte=0.3")
    assert bad.returncode == 1 and "unknown task kind 'wrte'" in bad.stderr
    zero = _rlhf(env, "projects", "add", "w", "--tasks", "write=0")
    assert zero.returncode == 1 and "at least one task kind a weight above 0" in zero.stderr
    words = _rlhf(env, "projects", "add", "w", "--tasks", "write", "--min-words", "50", "--max-words", "10")
    assert words.returncode == 1 and "max_words (10) must be at least min_words (50)" in words.stderr
    made = _rlhf(
        env, "projects", "add", "w", "--tasks", "compare=0.7,write=0.3", "--writing-overlap", "2",
        "--review-overlap", "3", "--min-words", "20", "--max-words", "300", "--max-answer-chars", "5000",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "tasks compare=0.7,write=0.3" in made.stdout
    bad_k = _rlhf(env, "projects", "add", "r", "--tasks", "rank", "--rank-k", "12")
    assert bad_k.returncode == 1 and "rank_k" in bad_k.stderr
    ranked = _rlhf(
        env, "projects", "add", "r", "--tasks", "rank=1,compare=1", "--rank-k", "6", "--selection", "mix",
        "--random-share", "0.3",
    )  # fmt: skip
    assert ranked.returncode == 0, ranked.stderr
    assert "pairs by mix" in ranked.stdout

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Explain tides."}\n{"prompt": "Write a haiku."}\n')
    wrong = _rlhf(env, "import", "prompts", str(prompts), "--project", "w", "--tasks", "rank")
    assert wrong.returncode == 1 and "unknown writing task kind 'rank'" in wrong.stderr
    imported = _rlhf(env, "import", "prompts", str(prompts), "--project", "w", "--tasks", "write")
    assert imported.returncode == 0, imported.stderr
    assert "2 writing task(s) created (write)" in imported.stdout
    again = _rlhf(env, "import", "prompts", str(prompts), "--project", "w", "--tasks", "write")
    assert "0 writing task(s) created" in again.stdout, "a prompt gets one write task"

    assert _rlhf(env, "users", "add", "wendy", "--role", "rater").returncode == 0
    typo = _rlhf(env, "projects", "members", "w", "--add", "wendy", "--tasks", "write,reveiw")
    assert typo.returncode == 1 and "unknown task kind 'reveiw'" in typo.stderr
    member = _rlhf(env, "projects", "members", "w", "--add", "wendy", "--tasks", "write")
    assert member.returncode == 0, member.stderr
    assert "wendy" in member.stdout and "write" in member.stdout

    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        project = session.scalars(select(Project).where(Project.slug == "w")).one()
        assert project.task_mix == {"compare": 0.7, "write": 0.3}
        assert (project.writing_overlap, project.review_overlap) == (2, 3)
        assert (project.min_words, project.max_words, project.max_answer_chars) == (20, 300, 5000)
        ranked_project = session.scalars(select(Project).where(Project.slug == "r")).one()
        assert (ranked_project.rank_k, ranked_project.selection_strategy) == (6, "mix")
        assert ranked_project.random_share == 0.3
        tasks = session.scalars(select(WritingTask).where(WritingTask.project_id == project.id)).all()
        assert sorted(t.kind for t in tasks) == ["write", "write"]
        wendy = session.scalars(select(User).where(User.username == "wendy")).one()
        assert session.scalars(select(ProjectMember.task_kinds)).one() == ["write"]
        # No pairs in the project and wendy limited to writing: every task she gets is a write task.
        task = next_task(session, project, wendy.id)
        assert task is not None and task.kind == "write"
    engine.dispose()
