"""Learning-rate schedule of the time-series trainings: a linear warm-up from 0 to the peak rate, then a cosine
decay to 0 at the last step. The warm-up keeps the first, noisy steps of Adam (and the batch statistics of the
projector) from throwing the weights far; the decay lets the last epochs settle."""

from __future__ import annotations

import keras

from decloud.core.errors import InvalidArgumentError

#: Share of the steps spent warming up by default.
DEFAULT_WARMUP_SHARE = 0.1


def warmup_cosine(peak: float, total_steps: int, warmup_share: float = DEFAULT_WARMUP_SHARE):
    """Rate at step s: peak s / w for s < w (w = warm-up steps), then peak (1 + cos(pi (s - w) / (total - w))) / 2,
    0 from ``total_steps`` on."""
    if total_steps <= 0 or not 0 <= warmup_share < 1:
        raise InvalidArgumentError(
            f"{total_steps} steps with a warm-up share of {warmup_share}: need steps > 0, share in [0, 1)"
        )
    warmup = round(total_steps * warmup_share)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=total_steps - warmup,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )
