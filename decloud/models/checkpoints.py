"""Training checkpoints that survive a killed run: after each epoch the weights *and* the optimizer state
go to ``epoch-NNNN.weights.h5`` (written under a temporary name, then renamed), then ``state.json`` records
the epoch reached and which model wrote it. Starting the same training again restores both and goes on at
the next epoch; ``--save_best`` also keeps ``best.weights.h5``, the epoch with the lowest monitored loss.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import keras

from decloud.core.atomic import atomic_file
from decloud.core.errors import InputNotFoundError, InvalidArgumentError, InvalidFileError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.h5"
#: Number of per-epoch checkpoints kept (older ones are deleted).
KEEP = 3
_WEIGHTS_SUFFIX = ".weights.h5"


def epoch_weights_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}{_WEIGHTS_SUFFIX}"


def read_state(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state of a checkpoint folder, or None when it holds none yet."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidFileError(path, f"not valid JSON: {error}") from error
    if not isinstance(state, dict) or not {"epoch", "weights", "model"} <= set(state):
        raise InvalidFileError(path, "not a decloud checkpoint state (needs epoch, weights, model)")
    return state


def _write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2) + "\n")


def _save_weights(model: keras.Model, path: Path) -> None:
    with atomic_file(path) as temporary:
        model.save_weights(temporary)


def _load_weights(model: keras.Model, path: Path) -> None:
    """Load weights and optimizer state (the optimizer must exist before its variables can be filled)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except (ValueError, OSError) as error:
        raise InvalidFileError(path, f"cannot load these weights into model {model.name!r}: {error}") from error


def restore(model: keras.Model, source: str | os.PathLike[str], identity: dict[str, Any]) -> tuple[int, float | None]:
    """Restore ``model`` (compiled) from a checkpoint folder or a ``.weights.h5`` file.

    Returns (epochs already done, best monitored value so far). A folder without a state yet gives (0, None)
    (a first run); a folder written by another model or other parameters is an error, not a silent mix.
    """
    path = Path(source)
    if path.is_file():
        _load_weights(model, path)
        log.info("loaded weights from %s", path)
        return 0, None
    if not path.exists():
        raise InputNotFoundError(path, "checkpoint")
    state = read_state(path)
    if state is None:
        return 0, None
    if state["model"] != identity:
        raise InvalidArgumentError(
            f"checkpoints in {path} were written by model {state['model']}, not {identity}: "
            "use another --save_ckpt_dir or the same model and parameters"
        )
    _load_weights(model, path / state["weights"])
    log.info("resuming from %s: %d epoch(s) done", path, state["epoch"])
    return int(state["epoch"]), state.get("best")


class EpochCheckpoint(keras.callbacks.Callback):
    """Save weights, optimizer state and epoch after each epoch (only where ``enabled``: the chief worker)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        identity: dict[str, Any],
        *,
        enabled: bool = True,
        monitor: str | None = None,
        best: float | None = None,
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.identity = identity
        self.enabled = enabled
        self.monitor = monitor
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        _save_weights(self.model, self.directory / epoch_weights_name(epoch + 1))
        value = (logs or {}).get(self.monitor) if self.monitor else None
        if value is not None and math.isfinite(value) and (self.best is None or value < self.best):
            self.best = float(value)
            _save_weights(self.model, self.directory / BEST_WEIGHTS)
            log.info("epoch %d: %s improved to %.6g, saved %s", epoch + 1, self.monitor, value, BEST_WEIGHTS)
        state = {"epoch": epoch + 1, "weights": epoch_weights_name(epoch + 1), "model": self.identity}
        if self.best is not None:
            state.update(best=self.best, monitor=self.monitor)
        _write_json(self.directory / STATE_FILE, state)
        for old in sorted(self.directory.glob(f"epoch-*{_WEIGHTS_SUFFIX}"))[:-KEEP]:
            old.unlink()


def load_best(model: keras.Model, directory: str | os.PathLike[str]) -> bool:
    """Load ``best.weights.h5`` of ``directory`` into ``model`` if it exists."""
    path = Path(directory) / BEST_WEIGHTS
    if not path.is_file():
        return False
    _load_weights(model, path)
    return True
