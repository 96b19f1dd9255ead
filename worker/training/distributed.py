"""The few collective operations the trainers need when a run spans several processes.

A run with `processes_per_run` > 1 is started by `worker.training.launch` under `accelerate launch`
(torchrun underneath): one process per GPU (or per CPU slot with the gloo backend, for tests).
The process group is set up there, before any trainer code runs. Everything here is a no-op, or
the identity, in a single process, so the trainers call these helpers unconditionally and their
single-process behaviour does not change.

Rules that keep ranks from deadlocking:
* every collective (`should_stop`, `all_reduce_*`, `barrier`) must be called by every rank, the
  same number of times, in the same order;
* only rank 0 talks to the outside world (the parent runner): `DistributedReporter` forwards
  steps and logs from rank 0 only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

import torch
import torch.distributed as dist

# Lines that rank 0 writes to stdout with this prefix are events for the parent runner; every
# other line of the children's output is plain log text.
EVENT_PREFIX = "@@rlhf-event@@ "


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo reduces CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all ranks (a new tensor on `tensor`'s device); identity alone."""
    if not is_distributed():
        return tensor
    reduced = tensor.detach().to(_collective_device(), copy=True)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(tensor.device)


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the ranks (one collective for the whole dict).

    Ranks must pass the same keys; they are sorted so that the vectors line up.
    """
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    vector = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    vector = all_reduce_sum(vector) / world_size()
    return dict(zip(keys, vector.tolist(), strict=True))


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (an all-reduce MAX)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def check_same_on_all_ranks(value: float, what: str) -> None:
    """Raise when `value` differs between ranks (e.g. a checksum of weights that must agree)."""
    if not is_distributed():
        return
    both = torch.tensor([value, -value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    highest, lowest = both[0].item(), -both[1].item()
    if highest != lowest:
        raise RuntimeError(f"{what} differs between ranks: from {lowest!r} to {highest!r}")


def all_reduce_gradients(parameters: list[torch.nn.Parameter], bucket_bytes: int = 64 << 20) -> None:
    """Average the gradients of `parameters` over the ranks, in flat buckets.

    This is what DistributedDataParallel does at the last micro-batch of an accumulation; we do
    it by hand because PPO calls the value model's backbone and head directly (not its forward)
    and generates with the bare policy, which DDP's wrapper does not support. Every rank holds the
    same parameters (same seed, same weights, broadcast at start), so the same averaged gradient
    keeps them equal after each optimizer step.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    bucket: list[torch.Tensor] = []
    size = 0
    for grad in [*grads, None]:
        if grad is not None:
            bucket.append(grad)
            size += grad.numel() * grad.element_size()
        if bucket and (grad is None or size >= bucket_bytes):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            flat = all_reduce_sum(flat) / world_size()
            offset = 0
            for g in bucket:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
            bucket, size = [], 0


def broadcast_parameters(parameters: list[torch.nn.Parameter]) -> None:
    """Make every rank's copy of `parameters` equal to rank 0's (a safety net at start)."""
    if not is_distributed():
        return
    device = _collective_device()
    with torch.no_grad():
        for p in parameters:
            data = p.data.to(device, copy=True)
            dist.broadcast(data, src=0)
            p.data.copy_(data.to(p.device))


class DistributedReporter:
    """The `Reporter` of every rank in a multi-process run.

    * `step` / `log` / `phase`: rank 0 writes them as JSON event lines on stdout, which the parent runner
      turns into calls on its database reporter; other ranks drop them (rank 0's metrics are
      already averaged over ranks where that matters).
    * `should_stop`: the parent writes `stop_file` when the run is cancelled. Ranks may see the
      file at different moments, so the local flag is all-reduced (MAX): all ranks stop at the
      same step, or none does. It is therefore a collective: every rank must call it at the same
      points, which the trainers do (once per step).
    """

    def __init__(self, stop_file: Path, *, stream: TextIO | None = None) -> None:
        self.stop_file = Path(stop_file)
        self.stream = stream or sys.stdout
        self._stopped = False

    def _emit(self, event: dict[str, object]) -> None:
        if is_main_process():
            # one write (atomic on a pipe up to 4 KiB) and its own line
            self.stream.write("\n" + EVENT_PREFIX + json.dumps(event) + "\n")
            self.stream.flush()  # the parent reads line by line, while we train

    def step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self._emit({"type": "step", "step": step, "total": total, "metrics": metrics})

    def log(self, message: str) -> None:
        self._emit({"type": "log", "message": message})

    def phase(self, name: str) -> None:
        self._emit({"type": "phase", "name": name})

    def should_stop(self) -> bool:
        # Once stopped, stay stopped without a collective: a trainer may check again on its way
        # out (e.g. before saving) on some ranks only.
        if not self._stopped:
            self._stopped = any_rank(self.stop_file.exists())
        return self._stopped


def parse_event(line: str) -> tuple[str, dict[str, object] | None]:
    """(plain text, event) of one line of the children's merged output.

    The event may follow other text on the same line: progress bars write `\r` without a newline,
    and all ranks share one pipe. A line whose JSON does not parse stays plain text.
    """
    at = line.find(EVENT_PREFIX)
    if at < 0:
        return line, None
    try:
        event = json.loads(line[at + len(EVENT_PREFIX) :])
    except json.JSONDecodeError:
        return line, None
    return line[:at], event if isinstance(event, dict) else None
