"""Run configs, one per method: every field has a default and a description.

They live on the torch-free side so that the dashboard can show launch forms with the defaults
filled in and validate input; the trainers in worker/training/ receive the same objects. Each
run kind names its config in app/run_kinds.py. The
resolved config (all fields) is stored with the run and beside the checkpoint.

Every config refuses unknown fields and non-finite numbers (a config is stored as JSON, which has
no Infinity or NaN), and every number has an upper bound: past it a run could not finish, or the
value cannot be stored or used (a seed past 32 bits, a model id past the INTEGER column). The
launch form and `rlhf train` validate through these same models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Bounds shared by the configs. Seeds are 32-bit for numpy and the CUDA generators; a model id
# is an INTEGER row id; a million optimizer steps is months of training on one GPU; a rubric is
# read into every judge prompt, so it stays a page or two.
SEED_MAX = 2**32 - 1
ROW_ID_MAX = 2**31 - 1
MAX_STEPS = 1_000_000
MIN_EPOCHS = 0.01
MAX_RUBRIC_CHARS = 20_000
# Coefficients and margins: far beyond any useful setting, still finite.
MAX_COEFFICIENT = 1_000.0

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def _seed(description: str) -> int:
    return Field(0, ge=0, le=SEED_MAX, description=description)  # type: ignore[no-any-return]


def _model_id(description: str) -> int | None:
    return Field(None, ge=1, le=ROW_ID_MAX, description=description)  # type: ignore[no-any-return]


def _rubric() -> str | None:
    return Field(  # type: ignore[no-any-return]
        None,
        max_length=MAX_RUBRIC_CHARS,
        description="LM judge: a rubric to use instead of the project's judge rubric.",
    )


def _epochs(description: str) -> float:
    return Field(1.0, ge=MIN_EPOCHS, le=100, description=description)  # type: ignore[no-any-return]


def _max_steps() -> int:
    return Field(  # type: ignore[no-any-return]
        -1, ge=-1, le=MAX_STEPS, description="Stop after this many steps (-1: by epochs)."
    )


class _Config(BaseModel):
    model_config = STRICT

    seed: int = _seed("Random seed for data order, initialisation and sampling.")
    learning_rate: float = Field(1e-5, gt=0, le=1, description="Peak learning rate (AdamW).")
    batch_size: int = Field(8, ge=1, le=1024, description="Examples per optimizer step per device.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Micro-batches per step.")
    max_length: int = Field(1024, ge=16, le=32768, description="Tokens per example (prompt + answer).")
    lora_r: int = Field(0, ge=0, le=512, description="LoRA rank; 0 trains all weights.")
    lora_alpha: int = Field(16, ge=1, le=4096, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch.")
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="Mixed precision: auto uses bf16 where the hardware supports it."
    )


class _PreferenceData(BaseModel):
    """How judgments become (chosen, rejected) pairs; shared by the reward model and DPO."""

    model_config = STRICT

    aggregation: Literal["majority", "per_rater"] = Field(
        "majority",
        description="majority: one row per comparison from the votes (split votes dropped); "
        "per_rater: one row per judgment.",
    )
    label_source: Literal["human", "ai", "both", "edit", "human_edit", "all"] = Field(
        "human",
        description="Which judgments to train on: human votes, ai judges', both of those, edit "
        "(an improved completion beats its original), human_edit, or all.",
    )
    ai_judge: str | None = Field(
        None,
        max_length=64,
        description="With label_source ai or both: only this AI judge's labels (its user name, "
        "ai-judge:…, as on the label-quality page); every judge's when empty.",
    )
    triaged: bool = Field(
        False,
        description="Also train on the AI judge's labels of the pairs triage took from the human "
        "queue (they have no human label; each pair keeps one label).",
    )
    include_both_bad: bool = Field(
        False, description="Keep judgments marked 'both bad' (their preference is weak evidence)."
    )
    min_agreement: float = Field(
        0.0, ge=0, le=1, description="Drop comparisons whose winning share of votes is below this."
    )


class SFTConfig(_Config):
    learning_rate: float = Field(2e-5, gt=0, le=1, description="Peak learning rate (AdamW).")
    epochs: float = _epochs("Passes over the demonstrations.")
    max_steps: int = _max_steps()
    demonstration_source: Literal["all", "imported", "written", "improved", "raters"] = Field(
        "all",
        description="Which demonstrations: all, imported, written by raters, improved by raters, "
        "or raters (written and improved).",
    )
    include_pending: bool = Field(
        False,
        description="Also train on demonstrations not yet reviewed (rejected ones never train).",
    )


class RewardConfig(_Config, _PreferenceData):
    epochs: float = _epochs("Passes over the preference pairs.")
    max_steps: int = _max_steps()
    eval_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of prompts held out for pairwise accuracy."
    )
    use_margin: bool = Field(
        False, description="Add a margin from the vote strength to the loss (Llama 2 style)."
    )
    ranking_batching: Literal["expanded", "per_prompt"] = Field(
        "expanded",
        description="expanded: every pair a ranking implies is its own example; per_prompt: all "
        "pairs of one ranking form one batch element, loss averaged over them (InstructGPT).",
    )
    center_rewards_coefficient: float | None = Field(
        None,
        ge=0,
        le=MAX_COEFFICIENT,
        description="Penalty pulling mean reward to zero (Eisenstein et al., 2023).",
    )
    tie_rule: Literal["drop", "half", "davidson"] = Field(
        "half",
        description="Comparisons whose outcome is a tie: drop (not trained on); half (half a win each "
        "way: the loss pulls sigmoid(r_a - r_b) to 0.5); davidson (the Davidson tie model, "
        "P(tie) = nu / (e^(d/2) + e^(-d/2) + nu) for d = r_a - r_b).",
    )
    tie_nu: float | None = Field(
        None,
        gt=0,
        le=MAX_COEFFICIENT,
        description="davidson: the tie parameter nu (empty: learned with the model, starting at 1).",
    )

    @model_validator(mode="after")
    def _tie_nu_for_davidson(self) -> RewardConfig:
        if self.tie_nu is not None and self.tie_rule != "davidson":
            raise ValueError("tie_nu is for tie_rule davidson")
        return self


class DPOConfig(_Config, _PreferenceData):
    learning_rate: float = Field(5e-6, gt=0, le=1, description="Peak learning rate (AdamW).")
    epochs: float = _epochs("Passes over the preference pairs.")
    max_steps: int = _max_steps()
    beta: float = Field(
        0.1, gt=0, le=MAX_COEFFICIENT, description="Strength of the implicit KL to the reference."
    )
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="DPO loss variant.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of prompts held out.")


class PPOConfig(_Config):
    learning_rate: float = Field(3e-6, gt=0, le=1, description="Peak learning rate (AdamW).")
    total_episodes: int = Field(1024, ge=1, le=100_000_000, description="Prompts sampled over the whole run.")
    batch_size: int = Field(8, ge=1, le=4096, description="Prompts per rollout (one PPO step).")
    mini_batch_size: int = Field(8, ge=1, le=4096, description="Rollouts per gradient step.")
    ppo_epochs: int = Field(4, ge=1, le=64, description="Passes over each rollout batch.")
    response_length: int = Field(48, ge=1, le=4096, description="New tokens per completion.")
    temperature: float = Field(0.7, gt=0, le=5, description="Sampling temperature.")
    kl_coef: float = Field(
        0.05, ge=0, le=MAX_COEFFICIENT, description="Initial beta of the per-token KL penalty."
    )
    adaptive_kl: bool = Field(False, description="Adapt beta toward target_kl (Ziegler et al.).")
    target_kl: float = Field(
        6.0, gt=0, le=MAX_COEFFICIENT, description="Target KL (nats per sequence) when adaptive."
    )
    kl_horizon: int = Field(10000, ge=1, le=100_000_000, description="Horizon of the adaptive KL controller.")
    cliprange: float = Field(0.2, gt=0, lt=1, description="Policy ratio clip.")
    cliprange_value: float = Field(0.2, gt=0, le=MAX_COEFFICIENT, description="Value clip.")
    vf_coef: float = Field(0.1, ge=0, le=MAX_COEFFICIENT, description="Weight of the value loss.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    missing_eos_penalty: float = Field(
        1.0, ge=0, le=MAX_COEFFICIENT, description="Subtracted from the score of completions that never end."
    )
    whiten_rewards: bool = Field(False, description="Whiten rewards before computing advantages.")

    @model_validator(mode="after")
    def _check(self) -> PPOConfig:
        if self.batch_size % self.mini_batch_size:
            raise ValueError("batch_size must be a multiple of mini_batch_size")
        return self


class GenerateConfig(BaseModel):
    model_config = STRICT

    strategy: Literal["two_samples", "versus", "ranking"] = Field(
        "two_samples",
        description="two_samples: two completions of the policy per prompt; versus: the policy "
        "against another version (a human evaluation of the new policy); ranking: K completions per "
        "prompt for ranking tasks, from the policy alone or shared with the versus version.",
    )
    versus_model_id: int | None = _model_id(
        "The other version: for `versus`; for `ranking`, optional (it writes half of the K completions)."
    )
    rank_k: int | None = Field(
        None, ge=3, le=9, description="ranking: completions per prompt (empty: the project's rank_k)."
    )
    samples_per_prompt: int = Field(
        2,
        ge=2,
        le=16,
        description="two_samples: completions sampled per prompt (N); above 2 all N are kept and "
        "only the most informative pair(s) go to raters.",
    )
    pairs_per_prompt: int = Field(
        1, ge=1, le=120, description="two_samples: pairs sent to raters per prompt (at most N choose 2)."
    )
    scorer_model_id: int | None = _model_id(
        "two_samples: the reward model that picks the pairs (the smallest reward margin first) and "
        "scores them for uncertainty selection; empty: the pairs are picked at random."
    )
    num_prompts: int = Field(64, ge=1, le=100000, description="Prompts to answer (newest first).")
    max_new_tokens: int = Field(160, ge=1, le=4096, description="Tokens per completion.")
    temperature: float = Field(0.8, ge=0, le=5, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    batch_size: int = Field(8, ge=1, le=1024, description="Prompts per generation batch.")
    seed: int = _seed("Sampling seed.")

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if self.strategy == "versus" and self.versus_model_id is None:
            raise ValueError("the versus strategy needs versus_model_id")
        if self.strategy == "two_samples" and self.versus_model_id is not None:
            raise ValueError("versus_model_id is for the versus and ranking strategies")
        if self.strategy != "ranking" and self.rank_k is not None:
            raise ValueError("rank_k is for the ranking strategy")
        if self.strategy != "two_samples":
            defaults = {"samples_per_prompt": 2, "pairs_per_prompt": 1, "scorer_model_id": None}
            for name, default in defaults.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name} is for the two_samples strategy")
        pairs = self.samples_per_prompt * (self.samples_per_prompt - 1) // 2
        if self.pairs_per_prompt > pairs:
            raise ValueError(
                f"pairs_per_prompt {self.pairs_per_prompt} is more than the {pairs} pair(s) of "
                f"samples_per_prompt {self.samples_per_prompt} completions"
            )
        return self

    @property
    def oversampled(self) -> bool:
        """More than one pair's worth of samples, or a reward model picking the pair(s)."""
        return self.samples_per_prompt > 2 or self.scorer_model_id is not None


# The prompt of an LM judge. The rubric is the project's judge rubric (its rater instructions
# when that is empty) unless the run overrides it; the template and the rubric together are the
# judge's identity (a different rubric is a different judge). The model answers with one letter.
JUDGE_TEMPLATE = """You compare two responses to the same conversation and decide which one is better.

Judge them by this rubric:
{rubric}

The conversation:
{conversation}

Response A:
{response_a}

Response B:
{response_b}

Which response is better? Answer with one letter, A or B."""


class JudgeConfig(BaseModel):
    """AI feedback: label the project's comparisons with a reward model or a prompted LM."""

    model_config = STRICT

    judge_model_id: int | None = _model_id(
        "The judge: a reward model version (scores both sides) or a policy version "
        "(an LM prompted with the rubric, asked in both orders)."
    )
    comparisons: Literal["unjudged", "human_labelled", "all"] = Field(
        "unjudged",
        description="unjudged: those this judge has not labelled yet; human_labelled: those with at "
        "least one human judgment (to measure agreement); all: every comparison.",
    )
    limit: int = Field(1000, ge=1, le=1_000_000, description="Most comparisons to judge (oldest first).")
    rubric: str | None = _rubric()
    strong_margin: float = Field(
        1.0,
        ge=0,
        le=MAX_COEFFICIENT,
        description="Strength 2 ('much better') above this margin: the score difference for a "
        "reward model; the log-odds of the chosen letter in both orders for an LM judge.",
    )
    tie_margin: float = Field(
        1e-4,
        ge=0,
        le=MAX_COEFFICIENT,
        description="A tie below this: the score difference of a reward model judge; the mean "
        "log-odds of an LM judge with orders=average.",
    )
    orders: Literal["agree", "average"] = Field(
        "agree",
        description="LM judge: agree = a verdict only when both orders prefer the same response "
        "(else a tie); average = the mean of the two orders' log-odds, which cancels the position "
        "bias (Lee et al., 2023) and still decides for a small, position-biased judge.",
    )
    max_length: int = Field(
        1024, ge=16, le=32768, description="Tokens per judged text; longer responses are trimmed."
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Texts per forward pass.")
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 weights: auto uses them where the hardware supports bf16."
    )


class EvaluateConfig(BaseModel):
    """Evaluate a model version: a reward model on held-out human judgments, or a policy's win
    rate against a reference, judged by a reward model or an LM judge."""

    model_config = STRICT

    model_id: int | None = _model_id("The version evaluated: a reward model or a policy.")
    reference_model_id: int | None = _model_id(
        "Policy: the version it is compared with (default: its parent)."
    )
    judge_model_id: int | None = _model_id(
        "Policy: who judges the pairs, a reward model or a policy as LM judge."
    )
    rubric: str | None = _rubric()
    num_prompts: int = Field(
        64, ge=1, le=100000, description="Policy: prompts answered by both (newest first)."
    )
    max_new_tokens: int = Field(160, ge=1, le=4096, description="Policy: tokens per completion.")
    temperature: float = Field(0.7, ge=0, le=5, description="Policy: sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Policy: nucleus sampling.")
    seed: int = _seed("Sampling seed (the same for policy and reference) and score-head seed.")
    max_length: int = Field(1024, ge=16, le=32768, description="Tokens per scored or judged text.")
    batch_size: int = Field(8, ge=1, le=1024, description="Texts per forward pass.")
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 weights: auto uses them where the hardware supports bf16."
    )


class ScoreConfig(BaseModel):
    """Score the open pairs with the project's reward model (or an ensemble of its latest
    versions): the predicted preference and an uncertainty per pair, for uncertainty selection."""

    model_config = STRICT

    ensemble: int = Field(
        1,
        ge=1,
        le=8,
        description="Reward versions scoring each pair: the chosen one and the project's newest "
        "earlier ones, up to this many. The prediction is the mean of their probabilities.",
    )
    measure: Literal["margin", "disagreement"] = Field(
        "margin",
        description="The uncertainty that orders the queue: margin = 1 - |2p - 1| (the pairs the "
        "ensemble's mean is least sure of first); disagreement = the standard deviation of the "
        "members' probabilities (needs an ensemble of two or more).",
    )
    limit: int = Field(100_000, ge=1, le=1_000_000, description="Most open pairs to score (newest first).")
    max_length: int = Field(
        1024, ge=16, le=32768, description="Tokens per scored text; longer ones keep their end."
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Texts per forward pass.")
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 weights: auto uses them where the hardware supports bf16."
    )

    @model_validator(mode="after")
    def _check(self) -> ScoreConfig:
        if self.measure == "disagreement" and self.ensemble < 2:
            raise ValueError("the disagreement measure needs an ensemble of two or more reward versions")
        return self


class TriageConfig(BaseModel):
    """AI triage: the project's judge labels the open pairs nobody holds yet; those it is sure of
    (both orders agree, margin above the threshold) skip the human queue, but for the audit share."""

    model_config = STRICT

    judge_model_id: int | None = _model_id("The judge (empty: the project's triage judge).")
    margin: float | None = Field(
        None,
        ge=0,
        le=MAX_COEFFICIENT,
        description="A verdict stands above this margin: the smaller log-odds of the two orders "
        "for an LM judge, the score difference for a reward model (empty: the project's).",
    )
    audit_share: float | None = Field(
        None, ge=0, le=1, description="Share of confident pairs still sent to humans (empty: the project's)."
    )
    limit: int = Field(1000, ge=1, le=1_000_000, description="Most pairs to triage (newest first).")
    strong_margin: float = Field(
        1.0, ge=0, le=MAX_COEFFICIENT, description="Strength 2 ('much better') at this margin."
    )
    max_length: int = Field(
        1024, ge=16, le=32768, description="Tokens per judged text; longer responses are trimmed."
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Texts per forward pass.")
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 weights: auto uses them where the hardware supports bf16."
    )
