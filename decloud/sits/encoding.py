"""Running an encoder (or a classifier built on one) over the pixels of a time series: a batch of pixels, or
windows streamed by the production engine (:class:`SeriesModelBackend`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from decloud.production.backends import ModelBackend
from decloud.production.sources import series_keys

#: Pixels encoded at once.
ENCODE_BATCH = 4096


def encode_pixels(encoder: keras.Model, values: np.ndarray, valid: np.ndarray, doys: np.ndarray) -> np.ndarray:
    """Representations (N, D) of N pixels' series (values (N, T, C), validity (N, T)), day numbers (T,)."""
    count, dates = valid.shape
    dim = encoder.output.shape[-1]
    out = np.empty((count, dim), np.float32)
    for start in range(0, count, ENCODE_BATCH):
        part = slice(start, min(start + ENCODE_BATCH, count))
        inputs = {
            "values": values[part].astype(np.float32),
            "doys": np.broadcast_to(doys.astype(np.float32), (part.stop - part.start, dates)),
            "mask": valid[part].astype(np.float32),
        }
        out[part] = np.asarray(encoder(inputs, training=False))
    return out


class SeriesModelBackend(ModelBackend):
    """A per-pixel series network served to the streaming engine, which feeds it the two keys of a
    :class:`~decloud.production.sources.SeriesSource` as images; every output named in ``outputs`` is the
    network's output (the engine's output specifications turn it into embeddings, colours or classes).
    Pixels without a valid date are not encoded (zeros: the engine writes them as no-data)."""

    def __init__(self, network: keras.Model, source: str, doys: np.ndarray, bands: int, outputs: Sequence[str]) -> None:
        self.network, self.doys, self.bands = network, np.asarray(doys), bands
        self.values_key, self.mask_key = series_keys(source)
        self.inputs = {self.values_key: len(self.doys) * bands, self.mask_key: len(self.doys)}
        self.outputs = list(outputs)

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        _, rows, cols, _ = inputs[self.mask_key].shape
        dates = len(self.doys)
        masks = inputs[self.mask_key].reshape(rows * cols, dates) > 0.5
        pixels = inputs[self.values_key].reshape(rows * cols, dates, self.bands)
        has_data = masks.any(axis=1)
        out = np.zeros((rows * cols, int(self.network.output.shape[-1])), np.float32)
        if has_data.any():
            out[has_data] = encode_pixels(self.network, pixels[has_data], masks[has_data], self.doys)
        result = out.reshape(1, rows, cols, -1)
        return dict.fromkeys(outputs, result)
