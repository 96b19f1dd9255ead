"""AI feedback (RLAIF): label comparisons with a reward model or with a causal LM prompted with a
rubric, asked in both orders.

A judge run receives plain data, one item per comparison,
`{"comparison_id": int, "messages": [...], "a": str, "b": str}`, and returns verdicts
`{"comparison_id", "choice": "A" | "B" | "tie", "strength": 0 | 1 | 2, "rationale", "provenance"}`
that the runner stores as AI judgments (app/services/runs/results.py, `store_judgments`). The judges
also serve the evaluate runs (evaluate.py) through the same `judge(items)` call.

Reward-model judge (`RewardJudge`):
1. The reward model version is loaded as a one-output sequence classifier (models.py), in eval
   mode with dropout off.
2. Each side is scored as the reward trainer saw it: prompt + response rendered with the chat
   template, read at the last real token (right padding). A text longer than `max_length` tokens
   keeps its last `max_length` tokens: the response and its end, where the reward is read.
3. choice = the side with the higher score; |score difference| < `tie_margin` is a tie
   (strength 0); strength 2 when the difference is at least `strong_margin`, else 1.
   Provenance: both scores.

LM judge (`LMJudge`):
4. The prompt is `JUDGE_TEMPLATE` (app/schemas/training.py) filled with the rubric, the
   conversation as a transcript and the two responses, sent as one user turn through the
   tokenizer's chat template with the generation prompt (without a chat template: the text and an
   "Answer:" cue). Over `max_length` tokens, the responses are trimmed (the longer first, then
   both alike), then the conversation from its start; the instructions and the answer cue are
   never cut.
5. No free generation: one forward pass reads the next-token log-probabilities of the answer
   letters, and the log-odds d = log p("A") - log p("B") (each letter: the log-sum-exp over its
   single-token spellings, "A" and " A"). Deterministic for given weights.
6. Both orders are asked: (A = a, B = b) gives d_ab, (A = b, B = a) gives d_ba. Order ab prefers
   a when d_ab > 0; order ba prefers a when d_ba < 0. When both orders prefer the same
   completion, that is the choice, with strength 2 when both log-odds favour it by at least
   `strong_margin` nats, else 1. When they disagree (the answer follows the position, not the
   content) or a log-odds is exactly 0, the verdict is a tie, strength 0, with the rationale
   "inconsistent across orders". Provenance: the letter picked and the log-odds in each order.
   With `orders = "average"` the verdict is read from the mean (d_ab - d_ba) / 2 instead: a
   position bias adds the same amount to both log-odds and cancels (the position-debiasing of
   Lee et al., 2023, "RLAIF"); below `tie_margin` a tie, from `strong_margin` strength 2.

7. Items go in batches of `batch_size`; progress is reported after each batch and a cancel is
   honoured before the next one.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from app.schemas.training import JUDGE_TEMPLATE, JudgeConfig
from worker.training.base import Cancelled, ModelRef, Reporter
from worker.training.models import best_dtype, load_policy, load_reward_model, load_tokenizer

INCONSISTENT = "inconsistent across orders"
# A judged item: (conversation, first response, second response); choice "A" means the first.
Item = tuple[list[dict[str, str]], str, str]


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def judge_dtype(setting: str, device: torch.device) -> torch.dtype:
    """bf16 weights when asked ("on"), or where the hardware supports them ("auto")."""
    if setting == "on":
        return torch.bfloat16
    if setting == "off":
        return torch.float32
    return best_dtype(device)


def _quiet(model: nn.Module) -> nn.Module:
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def _accepts(model: nn.Module, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def transcript(messages: Sequence[dict[str, str]]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def tie_or_side(diff: float, *, tie_margin: float, strong_margin: float) -> tuple[str, int]:
    """A score difference (first minus second) -> (choice, strength) for the reward-model judge (3)."""
    if abs(diff) < tie_margin or diff == 0:
        return "tie", 0
    return ("A" if diff > 0 else "B"), (2 if abs(diff) >= strong_margin else 1)


def combine_orders(
    d_ab: float, d_ba: float, *, strong_margin: float, orders: str = "agree", tie_margin: float = 1e-4
) -> tuple[str, int, str]:
    """The LM judge's two log-odds -> (choice, strength, rationale) (6)."""
    if orders == "average":
        mean = (d_ab - d_ba) / 2  # > 0: a is preferred; a position bias adds to both and cancels
        choice, strength = tie_or_side(mean, tie_margin=tie_margin, strong_margin=strong_margin)
        return choice, strength, "" if strength else "no preference once the orders are averaged"
    if d_ab > 0 and d_ba < 0:
        return "A", (2 if min(d_ab, -d_ba) >= strong_margin else 1), ""
    if d_ab < 0 and d_ba > 0:
        return "B", (2 if min(-d_ab, d_ba) >= strong_margin else 1), ""
    return "tie", 0, INCONSISTENT


class RewardJudge:
    """Scores texts with a reward model version and judges pairs by the higher score (1-3)."""

    method = "rm"

    def __init__(
        self,
        ref: ModelRef,
        *,
        max_length: int,
        batch_size: int,
        tie_margin: float = 1e-4,
        strong_margin: float = 1.0,
        bf16: str = "auto",
        device: torch.device | str | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(ref)
        model = load_reward_model(ref, self.tokenizer, dtype=judge_dtype(bf16, self.device))
        self.model = _quiet(model.to(self.device))  # type: ignore[arg-type]
        self.max_length, self.batch_size = max_length, batch_size
        self.tie_margin, self.strong_margin = tie_margin, strong_margin

    def encode(self, messages: list[dict[str, str]], response: str) -> tuple[list[int], bool]:
        text = self.tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": response}], tokenize=False
        )
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_length :], len(ids) > self.max_length  # (2)

    @torch.no_grad()
    def scores(self, messages: Sequence[list[dict[str, str]]], responses: Sequence[str]) -> list[float]:
        """The reward of each (conversation, response), read at the last real token (2)."""
        encoded = [self.encode(m, r)[0] for m, r in zip(messages, responses, strict=True)]
        pad = self.tokenizer.pad_token_id
        out: list[float] = []
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            width = max(len(ids) for ids in batch)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch], device=self.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=self.device)
            logits = self.model(input_ids=ids, attention_mask=mask).logits  # (b, 1)
            out.extend(float(v) for v in logits.float()[:, 0])
        return out

    def judge(self, items: Sequence[Item]) -> list[dict[str, Any]]:
        messages = [m for m, _, _ in items]
        firsts = self.scores(messages, [a for _, a, _ in items])
        seconds = self.scores(messages, [b for _, _, b in items])
        verdicts = []
        for (m, a, b), sa, sb in zip(items, firsts, seconds, strict=True):
            choice, strength = tie_or_side(
                sa - sb, tie_margin=self.tie_margin, strong_margin=self.strong_margin
            )
            truncated = self.encode(m, a)[1] or self.encode(m, b)[1]
            verdicts.append(
                {"choice": choice, "strength": strength, "rationale": "",
                 "provenance": {"scores": [sa, sb], "truncated": truncated}}
            )  # fmt: skip
        return verdicts


def letter_token_ids(tokenizer: Any, letter: str) -> list[int]:
    """The single tokens that spell an answer letter ("A", " A"), never the unknown token (5)."""
    ids: set[int] = set()
    for spelling in (letter, f" {letter}"):
        encoded = tokenizer.encode(spelling, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
            ids.add(int(encoded[0]))
    if not ids:
        raise ValueError(f"the judge's tokenizer has no single token for the answer {letter!r}")
    return sorted(ids)


class LMJudge:
    """A causal LM prompted with the rubric, read at the answer letter in both orders (4-6)."""

    method = "lm"

    def __init__(
        self,
        ref: ModelRef,
        *,
        rubric: str,
        max_length: int,
        batch_size: int,
        strong_margin: float = 1.0,
        orders: str = "agree",
        tie_margin: float = 1e-4,
        bf16: str = "auto",
        device: torch.device | str | None = None,
    ) -> None:
        self.orders, self.tie_margin = orders, tie_margin
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(ref)
        model = load_policy(ref, self.tokenizer, dtype=judge_dtype(bf16, self.device))
        self.model = _quiet(model.to(self.device))  # type: ignore[arg-type]
        self.rubric = rubric
        self.max_length, self.batch_size, self.strong_margin = max_length, batch_size, strong_margin
        self.letter_a = letter_token_ids(self.tokenizer, "A")
        self.letter_b = letter_token_ids(self.tokenizer, "B")
        if set(self.letter_a) & set(self.letter_b):
            raise ValueError("the judge's tokenizer spells the answers A and B with the same token")
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.keep_logits = _accepts(self.model, "logits_to_keep")
        self.position_ids = _accepts(self.model, "position_ids")

    def render(self, conversation: str, first: str, second: str) -> list[int]:
        """The prompt's token ids (4)."""
        text = JUDGE_TEMPLATE.format(
            rubric=self.rubric, conversation=conversation, response_a=first, response_b=second
        )
        if self.chat:
            text = cast(  # one conversation, not tokenized: one string
                str,
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
                ),
            )
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(f"{text}\n\nAnswer:")["input_ids"])

    def prompt_ids(self, messages: list[dict[str, str]], first: str, second: str) -> tuple[list[int], bool]:
        """The prompt within `max_length` tokens, and whether anything was trimmed (4)."""
        tok = self.tokenizer
        pieces = [
            tok(text, add_special_tokens=False)["input_ids"] for text in (transcript(messages), first, second)
        ]
        keep = [len(p) for p in pieces]
        texts = [transcript(messages), first, second]
        trimmed = False
        while True:
            ids = self.render(*texts)
            over = len(ids) - self.max_length
            if over <= 0:
                return ids, trimmed
            trimmed = True
            if keep[1] + keep[2] > 0:
                longer, shorter = (1, 2) if keep[1] >= keep[2] else (2, 1)
                gap = keep[longer] - keep[shorter]
                if gap > 0:
                    keep[longer] -= min(over, gap)
                else:
                    half = (over + 1) // 2
                    keep[1], keep[2] = max(0, keep[1] - half), max(0, keep[2] - half)
            elif keep[0] > 0:
                keep[0] = max(0, keep[0] - over)
            else:
                raise ValueError(
                    f"max_length {self.max_length} is too short for the judge's instructions "
                    f"({len(ids)} tokens with no conversation or response)"
                )
            texts = [  # one sequence of ids decodes to one string
                cast(str, tok.decode(pieces[0][len(pieces[0]) - keep[0] :])) if keep[0] else "",
                cast(str, tok.decode(pieces[1][: keep[1]])),
                cast(str, tok.decode(pieces[2][: keep[2]])),
            ]

    @torch.no_grad()
    def logodds(self, prompts: Sequence[list[int]]) -> list[float]:
        """log p(A) - log p(B) at the next token of each prompt (5)."""
        pad = self.tokenizer.pad_token_id
        letter_a = torch.tensor(self.letter_a, device=self.device)
        letter_b = torch.tensor(self.letter_b, device=self.device)
        out: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
            kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if self.position_ids:  # left padding: positions start at the first real token
                kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
            if self.keep_logits:
                kwargs["logits_to_keep"] = 1
            logprobs = self.model(**kwargs).logits[:, -1].float().log_softmax(-1)  # (b, V)
            diff = logprobs[:, letter_a].logsumexp(-1) - logprobs[:, letter_b].logsumexp(-1)  # (b,)
            out.extend(float(v) for v in diff)
        return out

    def judge(self, items: Sequence[Item]) -> list[dict[str, Any]]:
        prompts: list[list[int]] = []
        trimmed: list[bool] = []
        for messages, a, b in items:
            for first, second in ((a, b), (b, a)):  # (6) both orders
                ids, cut = self.prompt_ids(messages, first, second)
                prompts.append(ids)
                trimmed.append(cut)
        odds = self.logodds(prompts)
        verdicts = []
        for i in range(len(items)):
            d_ab, d_ba = odds[2 * i], odds[2 * i + 1]
            choice, strength, rationale = combine_orders(
                d_ab, d_ba, strong_margin=self.strong_margin, orders=self.orders, tie_margin=self.tie_margin
            )
            verdicts.append(
                {"choice": choice, "strength": strength, "rationale": rationale,
                 "provenance": {"answers": {"ab": _letter(d_ab), "ba": _letter(d_ba)},
                                "logodds": {"ab": d_ab, "ba": d_ba},
                                "truncated": trimmed[2 * i] or trimmed[2 * i + 1]}}
            )  # fmt: skip
        return verdicts


def _letter(logodds: float) -> str:
    return "A" if logodds > 0 else "B" if logodds < 0 else "="


def make_judge(
    ref: ModelRef,
    identity: dict[str, Any],
    *,
    max_length: int,
    batch_size: int,
    bf16: str = "auto",
    tie_margin: float = 1e-4,
    strong_margin: float = 1.0,
    device: torch.device | str | None = None,
) -> RewardJudge | LMJudge:
    """The judge for an identity from app.services.runs.judges.judge_identity ("rm" or "lm")."""
    if identity["method"] == "rm":
        return RewardJudge(ref, max_length=max_length, batch_size=batch_size, tie_margin=tie_margin,
                           strong_margin=strong_margin, bf16=bf16, device=device)  # fmt: skip
    return LMJudge(ref, rubric=identity["rubric"], max_length=max_length, batch_size=batch_size,
                   strong_margin=strong_margin, orders=identity.get("orders", "agree"),
                   tie_margin=tie_margin, bf16=bf16, device=device)  # fmt: skip


def run_judge(
    *,
    config: JudgeConfig,
    judge: ModelRef,
    identity: dict[str, Any],
    data: list[dict[str, Any]],
    reporter: Reporter,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Judge every comparison of `data`; returns `{"verdicts": [...]}` in data order (7)."""
    if reporter.should_stop():
        raise Cancelled()
    if not data:
        reporter.log("judge: nothing to judge (every selected comparison has this judge's label)")
        return {"verdicts": []}
    model = make_judge(judge, identity, max_length=config.max_length, batch_size=config.batch_size,
                       bf16=config.bf16, tie_margin=config.tie_margin,
                       strong_margin=config.strong_margin, device=device)  # fmt: skip
    reporter.log(f"judge: {len(data)} comparisons with {identity['model_name']} ({identity['method']})")
    verdicts: list[dict[str, Any]] = []
    size = config.batch_size
    total = (len(data) + size - 1) // size
    for index in range(total):
        if index and reporter.should_stop():
            raise Cancelled()
        rows = data[index * size : (index + 1) * size]
        for row, verdict in zip(
            rows, model.judge([(r["messages"], r["a"], r["b"]) for r in rows]), strict=True
        ):
            verdicts.append({"comparison_id": row["comparison_id"], **verdict})
        done = len(verdicts)
        reporter.step(index + 1, total, {
            "judge/done": float(done),
            "judge/tie_rate": sum(v["choice"] == "tie" for v in verdicts) / done,
            "judge/a_rate": sum(v["choice"] == "A" for v in verdicts) / done,
        })  # fmt: skip
    return {"verdicts": verdicts}
