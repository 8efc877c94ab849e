"""Running an encoder (or a classifier built on one) over the pixels of a series store."""

from __future__ import annotations

import keras
import numpy as np
from rasterio.windows import Window

from decloud.sits.store import SeriesStore

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


def encode_window(
    encoder: keras.Model, store: SeriesStore, source: str, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """Representations (rows, cols, D) over a window of the store, and where a pixel has data (rows, cols)."""
    values, valid = store.read(source, window)
    dates, rows, cols, bands = values.shape
    pixels = np.moveaxis(values, 0, 2).reshape(rows * cols, dates, bands)
    masks = np.moveaxis(valid, 0, 2).reshape(rows * cols, dates)
    has_data = masks.any(axis=1)
    out = np.full((rows * cols, encoder.output.shape[-1]), np.nan, np.float32)
    if has_data.any():
        out[has_data] = encode_pixels(encoder, pixels[has_data], masks[has_data], store.sources[source].doys)
    return out.reshape(rows, cols, -1), has_data.reshape(rows, cols)
