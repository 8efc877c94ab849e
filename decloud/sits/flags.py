"""The command-line flags that ``sits-pretrain`` and ``sits-finetune`` share: the encoder's architecture and
the training loop. Defined here once; each command passes its own configuration for the default values."""

from __future__ import annotations

import argparse
from typing import Any

from decloud.sits.encoder import BACKBONES

#: Configuration fields set by :func:`add_encoder_training_flags`, named as the flags.
ENCODER_TRAINING_FIELDS = (
    "backbone",
    "dim",
    "depth",
    "heads",
    "epochs",
    "batch",
    "learning_rate",
    "warmup_share",
    "seed",
)


def add_encoder_training_flags(parser: argparse.ArgumentParser, defaults: Any, *, encoder_help: str = "") -> None:
    """Add the shared flags to ``parser``, with the defaults of ``defaults`` (a configuration holding the fields
    of ENCODER_TRAINING_FIELDS)."""
    group = parser.add_argument_group("encoder and training", encoder_help or None)
    group.add_argument("--backbone", choices=BACKBONES, default=defaults.backbone)
    group.add_argument("--dim", type=int, default=defaults.dim, help="size of the representation")
    group.add_argument("--depth", type=int, default=defaults.depth, help="layers (MLP, CNN) or attention blocks")
    group.add_argument("--heads", type=int, default=defaults.heads, help="attention heads (transformer)")
    group.add_argument("--epochs", type=int, default=defaults.epochs)
    group.add_argument("--batch", type=int, default=defaults.batch, help="samples per batch (and replica)")
    group.add_argument(
        "--learning_rate", type=float, default=defaults.learning_rate, help="peak rate of the warm-up + cosine schedule"
    )
    group.add_argument(
        "--warmup_share",
        type=float,
        default=defaults.warmup_share,
        help="share of the steps spent raising the rate linearly from 0 to its peak",
    )
    group.add_argument("--seed", type=int, default=defaults.seed)


def encoder_training_values(args: argparse.Namespace) -> dict[str, Any]:
    """The values of the shared flags, as keyword arguments of a configuration."""
    return {name: getattr(args, name) for name in ENCODER_TRAINING_FIELDS}
