"""How one metric combines over ranks, micro-batches and optimizer steps: as the loss that produced it declared
(`ipa.LossOutput.reductions`: max, min or sum); a metric it did not list is averaged."""
from __future__ import annotations

from collections.abc import Sequence

_PAIRWISE = {"max": max, "min": min, "sum": lambda a, b: a + b}


def combine(reduction: str, a: float, b: float) -> float:
    """Two values of a max / min / sum metric as one."""
    return _PAIRWISE[reduction](a, b)


def reduce_values(reduction: str, values: Sequence[float]) -> float:
    """Values of one metric as one: its declared reduction, or the plain mean for "mean" (and undeclared metrics)."""
    if reduction not in _PAIRWISE:
        return sum(values) / len(values)
    out = values[0]
    for value in values[1:]:
        out = combine(reduction, out, value)
    return out
