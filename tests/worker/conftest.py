"""The trainer tests need torch, transformers, TRL and PEFT (the `train` extra).

Without them the whole directory is skipped with the reason, unless RLHF_REQUIRE_SERVICES=1 (CI),
where a missing training stack is an error. Hub access and telemetry are switched off: the tests
build their tiny models on the fly and must never reach the network.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_MISSING = [
    m for m in ("torch", "transformers", "trl", "peft", "datasets") if importlib.util.find_spec(m) is None
]
if _MISSING:
    _REASON = (
        f"the training stack is not installed ({', '.join(_MISSING)} missing): pip install -e '.[train]'"
    )
    if os.environ.get("RLHF_REQUIRE_SERVICES") == "1":
        raise pytest.UsageError(_REASON + " and RLHF_REQUIRE_SERVICES=1")
    pytest.skip(_REASON, allow_module_level=True)

# Below: only reached with the training stack installed.
import random  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import datasets  # noqa: E402
import torch  # noqa: E402

from tests.utils.tiny_models import make_tiny_causal_lm  # noqa: E402
from worker.training.base import ModelRef, PrintReporter  # noqa: E402

datasets.disable_progress_bars()
torch.set_num_threads(min(2, torch.get_num_threads()))

TARGET = "banana"  # the oracle prefers completions that contain it
FILLER = "red blue green yellow apple cherry grape lemon mango pear plum cat dog bird fish tree".split()
SUBJECTS = "cat dog bird fish tree sun moon star sky sea river hill".split()
ASKS = ["tell me about the", "what is the", "write about the", "say something about the"]


def oracle_score(text: str) -> float:
    """The known right answer: 1 when the completion contains the target word."""
    return float(TARGET in text.split())


def make_prompts(n: int, seed: int) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    return [[{"role": "user", "content": f"{rng.choice(ASKS)} {rng.choice(SUBJECTS)}"}] for _ in range(n)]


def make_oracle_pairs(n_prompts: int, per_prompt: int, seed: int, length: int = 4) -> list[dict[str, Any]]:
    """Pairs whose chosen side has the target word at a random place, where the rejected has another."""
    rng = random.Random(seed)
    pairs = []
    for prompt_id, messages in enumerate(make_prompts(n_prompts, seed)):
        for _ in range(per_prompt):
            # minimal pairs: the same words but one, the target in the chosen one, so that the
            # only thing to learn is the oracle's
            rejected = [rng.choice(FILLER) for _ in range(length)]
            chosen = list(rejected)
            chosen[rng.randrange(length)] = TARGET
            pairs.append(
                {
                    "prompt_id": prompt_id,
                    "messages": messages,
                    "chosen": " ".join(chosen),
                    "rejected": " ".join(rejected),
                    "margin": 1.0,
                }
            )
    return pairs


class StopAfter(PrintReporter):
    """A reporter that asks to stop once `steps` steps were reported."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def should_stop(self) -> bool:
        return len({s for s, _ in self.history}) >= self.steps


def chat_ids(tokenizer: Any, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    return list(
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
        )
    )


@torch.no_grad()
def completion_logps(
    model: Any, tokenizer: Any, prompts: list[list[dict]], completions: list[str]
) -> torch.Tensor:
    """Sum of the completion tokens' log-probs (end-of-turn included), one per example: (N,)."""
    out = []
    model.eval()
    for messages, completion in zip(prompts, completions, strict=True):
        prompt_ids = chat_ids(tokenizer, messages, add_generation_prompt=True)
        full_ids = chat_ids(tokenizer, [*messages, {"role": "assistant", "content": completion}])
        assert full_ids[: len(prompt_ids)] == prompt_ids
        ids = torch.tensor([full_ids])  # (1, T)
        logits = model(input_ids=ids).logits[0, :-1].float()  # (T-1, V)
        logps = logits.log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]  # (T-1,)
        out.append(logps[len(prompt_ids) - 1 :].sum())
    return torch.stack(out)


@torch.no_grad()
def sample_completions(model: Any, tokenizer: Any, prompts: list[list[dict]], n: int, seed: int) -> list[str]:
    """`n` sampled completions per prompt (temperature 1), decoded without special tokens."""
    torch.manual_seed(seed)
    model.eval()
    texts = []
    for messages in prompts:
        ids = chat_ids(tokenizer, messages, add_generation_prompt=True)
        input_ids = torch.tensor([ids]).repeat(n, 1)  # (n, P)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )  # (n, P + new)
        texts += tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)
    return texts


def weights_changed(before: dict[str, torch.Tensor], model: Any) -> bool:
    after = model.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before if k in after)


@pytest.fixture
def tiny_base(tmp_path: Path) -> ModelRef:
    """A freshly made 2-layer Llama and its word-level tokenizer (seeded, so the same each run)."""
    return ModelRef(uri=str(make_tiny_causal_lm(tmp_path / "base", seed=0)))


@pytest.fixture
def stop_after() -> Callable[[int], StopAfter]:
    return StopAfter


@pytest.fixture
def pg_factory(pg_url: str):  # type: ignore[no-untyped-def]
    """Sessions on the PostgreSQL test database, for runs taken through the runner."""
    from app.db import make_engine, make_sessionmaker

    engine = make_engine(pg_url, pool_size=2)
    yield make_sessionmaker(engine)
    engine.dispose()


def run_to_end(factory: Any, url: str, tmp_path: Path, **fields: object) -> Any:
    """Create a run in the project of the database and take it through the runner's normal
    entry point (`execute_run`); return it finished, detached, and asserted succeeded."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Project, Run, RunStatus
    from app.services import runs
    from tests.conftest import make_settings
    from worker.runner import execute_run

    with session_scope(factory) as session:
        project = session.scalars(select(Project)).one()
        run_id = runs.create_run(session, project=project, **fields).id  # type: ignore[arg-type]
    execute_run(run_id, settings=make_settings(url, artifacts_dir=tmp_path / "artifacts"), factory=factory)
    with factory() as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.expunge(run)
    assert run.status == RunStatus.succeeded, run.error
    return run
