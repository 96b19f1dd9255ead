"""The two halves of the run kinds table agree."""

from __future__ import annotations

from app.models import RunKind
from app.run_kinds import KINDS
from worker.methods import METHODS


def test_every_kind_is_declared_on_both_sides() -> None:
    assert set(KINDS) == set(METHODS) == set(RunKind)
    for kind, spec in KINDS.items():
        # A kind that registers a model leaves it to the registry; every other kind stores its
        # outcome itself. Only trainers (which return a model) run through the launch.
        assert (spec.produces is None) == (METHODS[kind].store is not None), kind
        assert not spec.distributed or spec.produces is not None, kind
        assert all(need.kind is not None for need in spec.run_inputs), kind
