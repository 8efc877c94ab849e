"""The one rule for choosing among dates by closeness to a target date: the closest first, the earlier one on a
tie. Sampling uses it to pair an S2 image with its S1 image and to take an acquisition's nearest qualifying
image; the processors use it to choose each pixel's images; so a model is trained on the images it will be fed.
"""

from __future__ import annotations

from collections.abc import Sequence


def by_closeness(times: Sequence[float], target: float) -> list[int]:
    """Indices of ``times`` from the closest to ``target`` to the farthest (earlier first on a tie)."""
    return sorted(range(len(times)), key=lambda i: (abs(times[i] - target), times[i]))
