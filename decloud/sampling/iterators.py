"""Which of the tuples found become samples, and in which order. Each strategy returns indices into a
:class:`~decloud.sampling.search.SampleTuples`, deterministically for a given random generator.

- ``random``: every tuple once, in random order;
- ``constant``: at most N tuples per training patch (drawn at random), so that patches seen on many dates
  do not dominate;
- ``monthly``: as many samples from every month (of the reference date) present, drawing with replacement
  in the months that have few tuples (oversampling), so that seasons are balanced.

``max_samples`` caps the total in every strategy.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from decloud.core.errors import InvalidArgumentError
from decloud.sampling.search import SampleTuples

SAMPLING_STRATEGIES = ("random", "constant", "monthly")


def select_samples(
    tuples: SampleTuples,
    strategy: str,
    rng: np.random.Generator,
    *,
    max_samples: int | None = None,
    samples_per_patch: int = 1,
) -> np.ndarray:
    """Indices of the tuples to write, in writing order."""
    if max_samples is not None and max_samples < 0:
        raise InvalidArgumentError(f"the maximum number of samples must be >= 0, not {max_samples}")
    if strategy == "random":
        chosen = rng.permutation(len(tuples))
    elif strategy == "constant":
        chosen = _constant_per_patch(tuples, samples_per_patch, rng)
    elif strategy == "monthly":
        chosen = _balanced_by_month(tuples, max_samples, rng)
    else:
        raise InvalidArgumentError(f"unknown sampling strategy {strategy!r} (known: {', '.join(SAMPLING_STRATEGIES)})")
    return chosen if max_samples is None else chosen[:max_samples]


def _constant_per_patch(tuples: SampleTuples, per_patch: int, rng: np.random.Generator) -> np.ndarray:
    if per_patch <= 0:
        raise InvalidArgumentError(f"samples per patch must be positive, not {per_patch}")
    order = rng.permutation(len(tuples))
    patch_ids = np.stack([tuples.tile_index, tuples.patch_row, tuples.patch_col], axis=1)[order]
    # Rank of each (shuffled) tuple among those of its patch: keep the first ``per_patch`` of each patch.
    _, inverse = np.unique(patch_ids, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    by_patch = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[by_patch], inverse[by_patch], side="left")
    rank = np.empty(len(order), dtype=np.int64)
    rank[by_patch] = np.arange(len(order)) - starts
    return order[rank < per_patch]


def month_of(timestamps: np.ndarray) -> np.ndarray:
    """Month (1-12, UTC) of each timestamp in seconds."""
    return np.array([datetime.fromtimestamp(t, UTC).month for t in timestamps], dtype=np.int8)


def _balanced_by_month(tuples: SampleTuples, total: int | None, rng: np.random.Generator) -> np.ndarray:
    if not len(tuples):
        return np.zeros(0, dtype=np.int64)
    months = month_of(tuples.origin_time)
    present = np.unique(months)
    total = len(tuples) if total is None else total
    per_month = -(-total // len(present))
    draws = []
    for month in present:
        members = np.flatnonzero(months == month)
        replace = len(members) < per_month
        draws.append(rng.choice(members, size=per_month, replace=replace))
    return rng.permutation(np.concatenate(draws))
