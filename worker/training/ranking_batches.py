"""Reward-model batches the InstructGPT way: all pairs of one ranking in one batch element.

Ouyang et al. (2022, section 3.5 and appendix C.1) train on the K(K-1)/2 comparisons of a
labeller's ranking of K completions as one batch element: treating them as independent points
made the reward model overfit (each completion is seen K-1 times in one epoch), and keeping them
together needs one forward pass per completion instead of one per pair side.

`group_pairs` turns the tokenized pairs (TRL's ``chosen_ids`` / ``rejected_ids``) into groups:
the pairs sharing a ``group`` key (worker/data.py gives the pairs of one ranking the same key,
and of one rater's ranking under ``per_rater``), each distinct token sequence stored once. A
pair without a group is a group of its own. `GroupedRewardTrainer` batches ``batch_size``
groups per step and minimises

    loss = mean over groups g of [ mean over pairs (w, l) of g of -log sigmoid(r_w - r_l - m) ]

so a ranking weighs as much as a single pair, whatever its K (the loss is averaged over its
pairs). Rewards are read once per distinct completion of the batch.

Ties (a pair flagged ``tie``, kept by a reward run's ``tie_rule``) take the tie rule's term
instead (`pair_losses`), with d = r_a - r_b:

* ``half``: half a win each way, the cross-entropy of sigmoid(d) against the soft label 0.5:
  ``-(log sigmoid(d) + log sigmoid(-d)) / 2``; a decisive pair keeps ``-log sigmoid(d - m)``.
* ``davidson`` (Davidson, 1970): P(a > b) = e^{r_a} / (e^{r_a} + e^{r_b} + nu e^{(r_a + r_b)/2})
  and P(tie) = nu e^{(r_a + r_b)/2} / (the same), i.e. with Z = e^{d/2} + e^{-d/2} + nu a decisive
  pair costs ``log Z - (d - m)/2`` (its d less the margin) and a tie ``log Z - log nu``. ``log nu``
  is fixed (``tie_nu``) or a parameter the optimizer learns with the model (starting at 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler
from trl import RewardTrainer

GROUP = "group"  # the dataset column naming a pair's group (-1: a group of its own)
TIE = "tie"  # the dataset column flagging a tie (kept by the tie rule)


def pair_losses(
    diff: torch.Tensor, margins: torch.Tensor, ties: torch.Tensor, rule: str, log_nu: torch.Tensor | None
) -> torch.Tensor:
    """Each pair's loss (module docstring) from d = r_chosen - r_rejected; ties: a bool mask."""
    decisive = diff - margins
    if rule == "davidson":
        assert log_nu is not None, "the Davidson loss needs log nu"
        log_nu = log_nu.to(diff.dtype).expand_as(diff)
        log_z = torch.logsumexp(torch.stack([decisive / 2, -decisive / 2, log_nu]), dim=0)
        log_z_tie = torch.logsumexp(torch.stack([diff / 2, -diff / 2, log_nu]), dim=0)
        return torch.where(ties, log_z_tie - log_nu, log_z - decisive / 2)
    win = -F.logsigmoid(decisive)
    if rule == "half":
        return torch.where(ties, -(F.logsigmoid(diff) + F.logsigmoid(-diff)) / 2, win)
    return win


def group_pairs(rows: Sequence[dict[str, Any]], *, use_margin: bool) -> list[dict[str, Any]]:
    """Tokenized pairs -> one element per group: its distinct sequences and its pairs as indices
    (with each pair's tie flag)."""
    groups: dict[Any, dict[str, Any]] = {}
    for n, row in enumerate(rows):
        key = row.get(GROUP, -1)
        key = ("pair", n) if key is None or key == -1 else key
        group = groups.setdefault(
            key, {"seqs": [], "index": {}, "winners": [], "losers": [], "margins": [], "ties": []}
        )
        sides = []
        for ids in (row["chosen_ids"], row["rejected_ids"]):
            token_key = tuple(ids)
            at = group["index"].get(token_key)
            if at is None:
                at = group["index"][token_key] = len(group["seqs"])
                group["seqs"].append(list(ids))
            sides.append(at)
        group["winners"].append(sides[0])
        group["losers"].append(sides[1])
        group["margins"].append(float(row.get("margin") or 0.0) if use_margin else 0.0)
        group["ties"].append(bool(row.get(TIE)))
    return [{k: v for k, v in group.items() if k != "index"} for group in groups.values()]


class GroupCollator:
    """Groups -> one padded batch of their distinct sequences, with each pair's indices into it."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, groups: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs: list[list[int]] = []
        winners: list[int] = []
        losers: list[int] = []
        margins: list[float] = []
        ties: list[bool] = []
        group_of: list[int] = []
        for g, group in enumerate(groups):
            offset = len(seqs)
            seqs += group["seqs"]
            winners += [offset + i for i in group["winners"]]
            losers += [offset + i for i in group["losers"]]
            margins += group["margins"]
            ties += group["ties"]
            group_of += [g] * len(group["winners"])
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, seq in enumerate(seqs):  # right padding, as TRL's collator
            input_ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[i, : len(seq)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "winners": torch.tensor(winners),
            "losers": torch.tensor(losers),
            "margins": torch.tensor(margins, dtype=torch.float),
            "ties": torch.tensor(ties, dtype=torch.bool),
            "pair_group": torch.tensor(group_of),
        }


def grouped_loss(
    rewards: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    margins: torch.Tensor,
    pair_group: torch.Tensor,
    ties: torch.Tensor | None = None,
    rule: str = "drop",
    log_nu: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean over groups of each group's mean pairwise loss (rewards: one per sequence)."""
    diff = rewards[winners] - rewards[losers]
    ties = torch.zeros_like(diff, dtype=torch.bool) if ties is None else ties
    per_pair = pair_losses(diff, margins, ties, rule, log_nu)
    groups = int(pair_group.max()) + 1
    sizes = torch.bincount(pair_group, minlength=groups).to(per_pair.dtype)
    per_group = torch.zeros(groups, dtype=per_pair.dtype, device=per_pair.device).index_add(
        0, pair_group, per_pair
    )
    return (per_group / sizes).mean()


class GroupedRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with the training batches made of whole groups (see the module).

    TRL tokenizes and filters the dataset as usual (the ``group`` and ``tie`` columns ride
    along); the training dataloader then serves ``per_device_train_batch_size`` groups per batch,
    in a seeded random order. Evaluation keeps TRL's pairwise batches. A reward run whose
    ``tie_rule`` keeps ties trains through this trainer even without groups (each pair its own
    group: the plain mean over pairs), with ``log_nu`` learned beside the model when Davidson's nu
    is not fixed.
    """

    def __init__(
        self,
        *args: Any,
        use_margin: bool,
        tie_rule: str = "drop",
        tie_nu: float | None = None,
        **kwargs: Any,
    ) -> None:
        self._use_margin = use_margin
        self.tie_rule = tie_rule
        super().__init__(*args, **kwargs)
        dataset = self.train_dataset
        assert dataset is not None
        present = set(dataset.column_names or [])  # type: ignore[union-attr]
        columns = ["chosen_ids", "rejected_ids"] + [c for c in (GROUP, TIE) if c in present]
        columns += ["margin"] if use_margin else []
        self.groups = group_pairs(dataset.select_columns(columns).to_list(), use_margin=use_margin)  # type: ignore[union-attr]
        device = self.args.device
        self.log_nu: torch.Tensor | None = None
        if tie_rule == "davidson":
            start = torch.tensor(math.log(tie_nu if tie_nu is not None else 1.0), device=device)
            self.log_nu = torch.nn.Parameter(start) if tie_nu is None else start

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if isinstance(self.log_nu, torch.nn.Parameter):  # learned: one more group, no weight decay
            optimizer.add_param_group({"params": [self.log_nu], "weight_decay": 0.0})
        return optimizer

    def get_train_dataloader(self) -> DataLoader:  # type: ignore[type-arg]
        generator = torch.Generator().manual_seed(self.args.seed)
        loader: DataLoader[Any] = DataLoader(
            self.groups,  # type: ignore[arg-type]
            batch_size=self._train_batch_size,
            sampler=RandomSampler(self.groups, generator=generator),  # type: ignore[arg-type]
            collate_fn=GroupCollator(self.processing_class.pad_token_id),  # type: ignore[union-attr]
            drop_last=self.args.dataloader_drop_last,
        )
        return self.accelerator.prepare(loader)  # type: ignore[no-any-return]

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if "winners" not in inputs:  # TRL's pairwise batches (evaluation)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
        )
        rewards = outputs.logits.squeeze(-1).float()
        winners, losers = inputs["winners"], inputs["losers"]
        loss = grouped_loss(
            rewards, winners, losers, inputs["margins"], inputs["pair_group"],
            inputs["ties"], self.tie_rule, self.log_nu,
        )  # fmt: skip
        centering = getattr(self.args, "center_rewards_coefficient", None)
        if centering is not None:
            loss = loss + centering * torch.mean((rewards[winners] + rewards[losers]) ** 2)
        with torch.no_grad():
            metrics = self._metrics["train"]
            decisive = ~inputs["ties"]
            diff = (rewards[winners] - rewards[losers])[decisive]
            if len(diff):
                metrics["accuracy"].append((diff > 0).float().mean().item())
            if self.log_nu is not None:
                metrics["tie_nu"].append(math.exp(float(self.log_nu.detach())))
            metrics["margin"].append(diff.mean().item())
            metrics["mean_reward"].append(rewards.mean().item())
        return (loss, outputs) if return_outputs else loss
