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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler
from trl import RewardTrainer

GROUP = "group"  # the dataset column naming a pair's group (-1: a group of its own)


def group_pairs(rows: Sequence[dict[str, Any]], *, use_margin: bool) -> list[dict[str, Any]]:
    """Tokenized pairs -> one element per group: its distinct sequences and its pairs as indices."""
    groups: dict[Any, dict[str, Any]] = {}
    for n, row in enumerate(rows):
        key = row.get(GROUP, -1)
        key = ("pair", n) if key is None or key == -1 else key
        group = groups.setdefault(key, {"seqs": [], "index": {}, "winners": [], "losers": [], "margins": []})
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
        group_of: list[int] = []
        for g, group in enumerate(groups):
            offset = len(seqs)
            seqs += group["seqs"]
            winners += [offset + i for i in group["winners"]]
            losers += [offset + i for i in group["losers"]]
            margins += group["margins"]
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
            "pair_group": torch.tensor(group_of),
        }


def grouped_loss(
    rewards: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    margins: torch.Tensor,
    pair_group: torch.Tensor,
) -> torch.Tensor:
    """The mean over groups of each group's mean pairwise loss (rewards: one per sequence)."""
    per_pair = -F.logsigmoid(rewards[winners] - rewards[losers] - margins)
    groups = int(pair_group.max()) + 1
    sizes = torch.bincount(pair_group, minlength=groups).to(per_pair.dtype)
    per_group = torch.zeros(groups, dtype=per_pair.dtype, device=per_pair.device).index_add(
        0, pair_group, per_pair
    )
    return (per_group / sizes).mean()


class GroupedRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with the training batches made of whole groups (see the module).

    TRL tokenizes and filters the dataset as usual (the ``group`` column rides along); the
    training dataloader then serves ``per_device_train_batch_size`` groups per batch, in a
    seeded random order. Evaluation keeps TRL's pairwise batches.
    """

    def __init__(self, *args: Any, use_margin: bool, **kwargs: Any) -> None:
        self._use_margin = use_margin
        super().__init__(*args, **kwargs)
        dataset = self.train_dataset
        assert dataset is not None
        columns = ["chosen_ids", "rejected_ids", GROUP] + (["margin"] if use_margin else [])
        self.groups = group_pairs(dataset.select_columns(columns).to_list(), use_margin=use_margin)  # type: ignore[union-attr]

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
        loss = grouped_loss(rewards, winners, losers, inputs["margins"], inputs["pair_group"])
        centering = getattr(self.args, "center_rewards_coefficient", None)
        if centering is not None:
            loss = loss + centering * torch.mean((rewards[winners] + rewards[losers]) ** 2)
        with torch.no_grad():
            metrics = self._metrics["train"]
            diff = rewards[winners] - rewards[losers]
            metrics["accuracy"].append((diff > 0).float().mean().item())
            metrics["margin"].append(diff.mean().item())
            metrics["mean_reward"].append(rewards.mean().item())
        return (loss, outputs) if return_outputs else loss
