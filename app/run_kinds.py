"""The run kinds, each declared once: its config schema, its title and description, what its
snapshot selects, the model versions it is given, what it stores on success, whether it
trains through the (possibly multi-process) trainer launch or runs in one process, and how big
a run is (`Sizing`: the work it does on its data, the defaults a CPU worker gets, the data size
below which its figures mean little).

This is the torch-free half of the table; the service (app/services/runs/), the CLI
(`rlhf train <kind>`), the launch form and the retraining schedules read it. The torch half,
worker/methods.py, says how a kind's data is built and which trainer entry point runs it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from app.models import ModelKind, RunKind
from app.schemas.training import (
    DPOConfig,
    EvaluateConfig,
    GenerateConfig,
    JudgeConfig,
    PPOConfig,
    RewardConfig,
    ScoreConfig,
    SFTConfig,
    TriageConfig,
)


class Selects(enum.StrEnum):
    """What a run's snapshot freezes at creation (app/services/runs/snapshots.py selects it)."""

    demonstrations = "demonstrations"  # every demonstration of the project
    judgments = "judgments"  # the judgments of the config's label_source (and ai_judge)
    prompts = "prompts"  # every prompt of the project
    newest_prompts = "newest_prompts"  # the config's num_prompts newest prompts
    comparisons_to_judge = "comparisons_to_judge"  # the pairs a judge run labels
    evaluation_set = "evaluation_set"  # held-out human judgments (reward model) or newest prompts
    open_comparisons = "open_comparisons"  # the regular pairs that still need human votes
    triage_candidates = "triage_candidates"  # untriaged open pairs no rater holds or has voted on


# The columns of a run that name its models; every other model input is a config field.
RUN_MODEL_FIELDS = ("base_model_id", "reward_model_id")


@dataclass(frozen=True)
class ModelInput:
    """A model version a run of this kind is given.

    `field` is a column of the run (`base_model_id`, `reward_model_id`) or a config field.
    Creating a run checks that it names a version of `kind` (any kind when None: then the
    selection checks it); a config field is checked only when `needed(config)` says so.
    """

    field: str
    kind: ModelKind | None
    role: str  # in errors: "choose a <role>"
    label: str  # the launch form's label
    option: str | None = None  # `rlhf train <kind> --<option>` (name or id)
    help: str = ""  # the CLI option's help
    needed: Callable[[dict[str, Any]], bool] | None = None

    @property
    def on_run(self) -> bool:
        return self.field in RUN_MODEL_FIELDS

    @property
    def name(self) -> str:
        """Its role for the worker: `base`, `reward`, `judge`, `model`, `reference`, `versus`."""
        return self.field.removesuffix("_id").removesuffix("_model")


# Device classes: a worker's device (app/services/workers.py) is "cpu", or a GPU ("cuda:…", "mps").
CPU, GPU = "cpu", "gpu"


@dataclass(frozen=True)
class Sizing:
    """How much work a run of a kind is, and what a worker of each device class should be given.

    `work(config, n)` is the number of `unit`s a run does on `n` items of its data (pairs after
    aggregation, demonstrations, prompts...); a worker's speed is measured in seconds per unit
    (plus a fixed overhead: loading the model, tokenising), so that an estimate follows the
    config and the data size. `prior` is the speed assumed per device class before a worker has
    finished a run of the kind: rough figures for a small (~135M parameters) model, on the slow
    side. `cpu_defaults` replace the config schema's defaults (which suit a GPU) when the worker
    that will train has no GPU. Below `min_data` items of data (`data` names them) the run's
    figures mean little: the launch form and the run page say so.
    """

    unit: str
    work: Callable[[Mapping[str, Any], int], float]
    data: str
    prior: Mapping[str, tuple[float, float]]  # device class -> (overhead seconds, seconds per unit)
    cpu_defaults: Mapping[str, Any] = field(default_factory=dict)
    min_data: int = 0


def _examples_trained(config: Mapping[str, Any], n: int) -> float:
    """Examples a trainer steps through: max_steps full batches (it cycles the data), or the
    epochs over the data that is not held out."""
    if config.get("max_steps", -1) > 0:
        batch = config["batch_size"] * config.get("gradient_accumulation_steps", 1)
        return float(config["max_steps"] * batch)
    return n * (1 - config.get("eval_fraction", 0.0)) * config["epochs"]


def _tokens_generated(config: Mapping[str, Any], n: int) -> float:
    """Two completions per prompt (two samples, or the policy and the version it is compared with),
    N with samples_per_prompt (the reward model's scoring of them is small beside sampling), K for
    rankings (the project's rank_k when the config leaves it empty: 4 assumed here)."""
    if config.get("strategy") == "ranking":
        per_prompt = config.get("rank_k") or 4
    else:
        per_prompt = config.get("samples_per_prompt") or 2
    return float(n * per_prompt * config["max_new_tokens"])


@dataclass(frozen=True)
class KindSpec:
    kind: RunKind
    config: type[BaseModel]
    title: str  # the dashboard's name for it
    description: str  # one sentence: the CLI command's help
    selects: Selects
    inputs: tuple[ModelInput, ...]
    produces: ModelKind | None  # the kind of version the registry registers; None: registers none
    distributed: bool  # trains through worker.training.launch (one or several processes)
    sizing: Sizing
    loop_method: bool = False  # a schedule may use it to improve the policy (reward -> it -> generate)

    @property
    def run_inputs(self) -> tuple[ModelInput, ...]:
        """The inputs held on the run's own columns (the launch form's model selects)."""
        return tuple(i for i in self.inputs if i.on_run)


_BASE_HELP = "Model version (name or id) to start from."
_JUDGE_HELP = "Judge version (name or id): a reward model, or a policy as LM judge."


def _base(label: str, role: str = "base model") -> ModelInput:
    return ModelInput("base_model_id", ModelKind.policy, role, label, option="base", help=_BASE_HELP)


def _judge() -> ModelInput:
    return ModelInput("judge_model_id", None, "judge model", "Judge", option="judge", help=_JUDGE_HELP)


KINDS: dict[RunKind, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            RunKind.sft, SFTConfig, "Supervised fine-tuning",
            "Supervised fine-tuning on the project's demonstrations.",
            Selects.demonstrations, (_base("Base model"),), ModelKind.policy, distributed=True,
            sizing=Sizing("examples", _examples_trained, "demonstrations", min_data=20,
                          prior={CPU: (60, 3.0), GPU: (30, 0.05)},
                          cpu_defaults={"batch_size": 4, "max_length": 512}),
        ),
        KindSpec(
            RunKind.reward, RewardConfig, "Reward model",
            "A reward model on the project's judgments (held-out accuracy on a split by prompt).",
            Selects.judgments, (_base("Initialise the reward model from"),), ModelKind.reward,
            distributed=True,
            sizing=Sizing("pairs", _examples_trained, "pairs", min_data=50,
                          prior={CPU: (60, 8.0), GPU: (30, 0.1)},
                          cpu_defaults={"batch_size": 4, "max_length": 512}),
        ),
        KindSpec(
            RunKind.dpo, DPOConfig, "DPO",
            "Direct preference optimisation of a policy on the project's judgments.",
            Selects.judgments, (_base("Base model"),), ModelKind.policy, distributed=True,
            loop_method=True,
            sizing=Sizing("pairs", _examples_trained, "pairs", min_data=50,
                          prior={CPU: (90, 25.0), GPU: (30, 0.3)},
                          cpu_defaults={"batch_size": 4, "max_length": 512, "max_steps": 25}),
        ),
        KindSpec(
            RunKind.ppo, PPOConfig, "PPO",
            "PPO of a policy against a reward model, with a KL penalty to the starting policy.",
            Selects.prompts,
            (
                _base("Policy to improve", role="policy"),
                ModelInput("reward_model_id", ModelKind.reward, "reward model", "Reward model",
                           option="reward", help="Reward model version."),
            ),
            ModelKind.policy, distributed=True, loop_method=True,
            sizing=Sizing("episodes", lambda config, n: float(config["total_episodes"]), "prompts",
                          min_data=8, prior={CPU: (90, 15.0), GPU: (30, 0.5)},
                          cpu_defaults={"total_episodes": 64, "batch_size": 4, "mini_batch_size": 4,
                                        "response_length": 32}),
        ),
        KindSpec(
            RunKind.generate, GenerateConfig, "Generate pairs for raters",
            "Sample completions of a policy and add the pairs (or rankings of K) to the rating queue.",
            Selects.newest_prompts,
            (
                _base("Policy that writes the completions"),
                ModelInput("versus_model_id", ModelKind.policy, "the version to compare with",
                           "Compare with", needed=lambda config: config["versus_model_id"] is not None
                           or config["strategy"] == "versus"),
                ModelInput("scorer_model_id", ModelKind.reward, "reward model that picks the pairs",
                           "Pick pairs with", option="scorer",
                           help="Reward model version (name or id) that picks the most uncertain pairs.",
                           needed=lambda config: config.get("scorer_model_id") is not None),
            ),
            None, distributed=False,
            sizing=Sizing("tokens", _tokens_generated, "prompts",
                          prior={CPU: (30, 0.2), GPU: (15, 0.005)},
                          cpu_defaults={"num_prompts": 16, "max_new_tokens": 64}),
        ),
        KindSpec(
            RunKind.judge, JudgeConfig, "AI judge (label pairs)",
            "AI feedback: label the project's comparisons with a reward model or a prompted LM.",
            Selects.comparisons_to_judge, (_judge(),), None, distributed=False,
            sizing=Sizing("comparisons", lambda config, n: float(n), "comparisons",
                          prior={CPU: (30, 2.0), GPU: (15, 0.05)},
                          cpu_defaults={"limit": 200, "max_length": 512}),
        ),
        KindSpec(
            RunKind.evaluate, EvaluateConfig, "Evaluate a model version",
            "A reward model's accuracy on held-out judgments, or a policy's win rate against a reference.",
            Selects.evaluation_set,
            (
                ModelInput("model_id", None, "model version to evaluate", "Model", option="model",
                           help="The version to evaluate."),
                ModelInput("reference_model_id", None, "reference", "Reference", option="reference",
                           help="Policy: compare with this version (default: parent)."),
                _judge(),
            ),
            None, distributed=False,
            sizing=Sizing("items", lambda config, n: float(n), "held-out judgments or prompts",
                          min_data=20, prior={CPU: (60, 3.0), GPU: (30, 0.2)},
                          cpu_defaults={"num_prompts": 16, "max_new_tokens": 64}),
        ),
        KindSpec(
            RunKind.score, ScoreConfig, "Score open pairs (for uncertainty selection)",
            "Predict each open pair's preference and uncertainty with the reward model (or an "
            "ensemble of its latest versions); uncertainty selection serves the least certain first.",
            Selects.open_comparisons,
            (ModelInput("reward_model_id", ModelKind.reward, "reward model", "Reward model",
                        option="reward", help="Reward model version (the newest of the ensemble)."),),
            None, distributed=False,
            sizing=Sizing("comparisons", lambda config, n: float(n * config["ensemble"]), "open pairs",
                          prior={CPU: (30, 2.0), GPU: (15, 0.05)},
                          cpu_defaults={"limit": 2000, "max_length": 512}),
        ),
        KindSpec(
            RunKind.triage, TriageConfig, "AI triage (the judge takes the sure pairs)",
            "The project's judge labels the open pairs; those it is sure of skip the human queue, "
            "but for an audit share.",
            Selects.triage_candidates, (_judge(),), None, distributed=False,
            sizing=Sizing("comparisons", lambda config, n: float(n), "open pairs",
                          prior={CPU: (30, 2.0), GPU: (15, 0.05)},
                          cpu_defaults={"limit": 200, "max_length": 512}),
        ),
    )
}  # fmt: skip

# The retraining loop (app/services/runs/schedules.py): [judge ->] reward model -> a loop method
# (`loop_method`) -> generate, each step started when the previous one succeeded.
LOOP_JUDGE, LOOP_REWARD, LOOP_GENERATE = RunKind.judge, RunKind.reward, RunKind.generate
# With `score_open_pairs` in a schedule's config, this kind follows each reward and generate run.
LOOP_SCORE = RunKind.score
# The kind the launch form opens with.
DEFAULT_KIND = RunKind.sft


def spec(kind: RunKind | str) -> KindSpec:
    return KINDS[RunKind(kind)]


def loop_methods() -> list[RunKind]:
    return [kind for kind, entry in KINDS.items() if entry.loop_method]


def producing(model_kind: ModelKind) -> list[RunKind]:
    """The kinds whose runs register a version of `model_kind`."""
    return [kind for kind, entry in KINDS.items() if entry.produces == model_kind]


def device_defaults(kind: RunKind | str, device_class: str) -> dict[str, Any]:
    """The config fields that differ from the schema's defaults on a worker of `device_class`."""
    return dict(spec(kind).sizing.cpu_defaults) if device_class == CPU else {}
