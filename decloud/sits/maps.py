"""Maps of a series store through a trained encoder: the embedding GeoTIFF (one band per dimension), and its
principal-component false colour (GeoTIFF + PNG quicklook), streamed window by window so memory does not
depend on the area.

Every pixel is encoded from *all* its valid observations (the mask hides the others); a pixel with no valid
observation is no-data. The encoder is per pixel, so the maps do not depend on the window size.

Embedding types (``dtype``):
- ``int8`` (default, as the TESSERA embeddings are distributed: 1 byte per dimension): per band
  ``value = stored x scale + offset``, written as the GeoTIFF band's scale and offset (QGIS and GDAL show the
  physical values), stored in [-127, 127], no-data -128. Scale and offset map the 0.1-99.9 % range of a fixed
  calibration sample of the area's embeddings onto [-127, 127] (values beyond are clipped); the sample is taken
  on a fixed pixel lattice, independent of the window size, so the map is too.
- ``float32``: exact values, no-data NaN. (Float16 GeoTIFFs need GDAL 3.11; rasterio's wheels ship 3.10.)
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.atomic import atomic_file
from decloud.core.errors import InvalidArgumentError
from decloud.core.progress import progress
from decloud.core.raster import (
    Grid,
    create_geotiff,
    gdal_environment,
    geotiff_profile,
    open_raster,
    read_window,
    write_png,
)
from decloud.sits.encoding import encode_pixels, encode_window
from decloud.sits.finetune import load_classifier
from decloud.sits.pretrain import load_encoder
from decloud.sits.store import CHUNK_SIDE, SeriesStore

log = logging.getLogger(__name__)

EMBEDDING_TYPES = ("int8", "float32")
INT8_NODATA = -128
INT8_LIMIT = 127
#: Side of the windows read from the store and written at once (one chunk).
MAP_WINDOW = CHUNK_SIDE
#: Pixels of the calibration sample (int8 scales, principal components, colour stretch).
CALIBRATION_PIXELS = 16384
#: Percentiles of the calibration sample mapped to the ends of the int8 range, and of the colour stretch.
QUANTISATION_PERCENTILES = (0.1, 99.9)
STRETCH_PERCENTILES = (2.0, 98.0)
#: Largest side of the PNG quicklook.
QUICKLOOK_SIDE = 1024


def _windows(area: Window) -> list[Window]:
    return [
        Window(
            col,
            row,
            min(MAP_WINDOW, area.col_off + area.width - col),
            min(MAP_WINDOW, area.row_off + area.height - row),
        )
        for row in range(int(area.row_off), int(area.row_off + area.height), MAP_WINDOW)
        for col in range(int(area.col_off), int(area.col_off + area.width), MAP_WINDOW)
    ]


def calibration_sample(encoder: keras.Model, store: SeriesStore, source: str, area: Window) -> np.ndarray:
    """Representations of at most CALIBRATION_PIXELS pixels on a regular lattice over ``area`` (with data)."""
    step = max(1, int(np.ceil(np.sqrt(area.width * area.height / CALIBRATION_PIXELS))))
    rows = np.arange(int(area.row_off), int(area.row_off + area.height), step)
    cols = np.arange(int(area.col_off), int(area.col_off + area.width), step)
    samples = []
    for window in _windows(area):
        r = rows[(rows >= window.row_off) & (rows < window.row_off + window.height)] - int(window.row_off)
        c = cols[(cols >= window.col_off) & (cols < window.col_off + window.width)] - int(window.col_off)
        if len(r) == 0 or len(c) == 0:
            continue
        values, valid = store.read(source, window)
        pixel_values = values[:, r][:, :, c].reshape(values.shape[0], -1, values.shape[-1]).swapaxes(0, 1)
        pixel_valid = valid[:, r][:, :, c].reshape(valid.shape[0], -1).T
        keep = pixel_valid.any(axis=1)
        if keep.any():
            samples.append(encode_pixels(encoder, pixel_values[keep], pixel_valid[keep], store.sources[source].doys))
    if not samples:
        raise InvalidArgumentError(f"{store.path}: no pixel of the area has a valid observation")
    return np.concatenate(samples)


@dataclass(frozen=True)
class Quantisation:
    """int8 value = round((x - offset) / scale), per band."""

    scale: np.ndarray
    offset: np.ndarray

    @classmethod
    def fit(cls, sample: np.ndarray) -> Quantisation:
        low, high = np.percentile(sample, QUANTISATION_PERCENTILES, axis=0)
        scale = np.maximum((high - low) / (2 * INT8_LIMIT), 1e-12)
        return cls(scale.astype(np.float64), ((high + low) / 2).astype(np.float64))

    def apply(self, values: np.ndarray, has_data: np.ndarray) -> np.ndarray:
        quantised = np.clip(np.rint((values - self.offset) / self.scale), -INT8_LIMIT, INT8_LIMIT)
        return np.where(has_data[..., np.newaxis], np.nan_to_num(quantised), INT8_NODATA).astype(np.int8)


@dataclass(frozen=True)
class FalseColour:
    """The first three principal components of the calibration sample, stretched to bytes 1-255 (0: no data)."""

    mean: np.ndarray
    components: np.ndarray  #: (3, D), each with its largest loading positive (a deterministic sign)
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, sample: np.ndarray) -> FalseColour:
        mean = sample.mean(axis=0)
        _, _, vectors = np.linalg.svd(sample - mean, full_matrices=False)
        components = np.zeros((3, sample.shape[1]))
        count = min(3, len(vectors))
        components[:count] = vectors[:count]
        components *= np.where(components[np.arange(3), np.abs(components).argmax(axis=1)] < 0, -1, 1)[:, None]
        projected = (sample - mean) @ components.T
        low, high = np.percentile(projected, STRETCH_PERCENTILES, axis=0)
        return cls(mean, components, low, np.maximum(high, low + 1e-12))

    def apply(self, values: np.ndarray, has_data: np.ndarray) -> np.ndarray:
        projected = (np.nan_to_num(values) - self.mean) @ self.components.T
        scaled = 1 + np.rint(254 * np.clip((projected - self.low) / (self.high - self.low), 0, 1))
        return np.where(has_data[..., np.newaxis], scaled, 0).astype(np.uint8)


def _area(store: SeriesStore, window: Window | None) -> Window:
    full = Window(0, 0, store.grid.width, store.grid.height)
    if window is None:
        return full
    inside = window.intersection(full) if window.row_off < full.height and window.col_off < full.width else None
    if inside is None or (inside.width, inside.height) != (window.width, window.height):
        raise InvalidArgumentError(f"window {window} is not inside the {full.height}x{full.width} store")
    return window


def _check_outputs(paths: list[Path], overwrite: bool) -> None:
    for path in paths:
        if path.exists() and not overwrite:
            raise InvalidArgumentError(f"{path} exists (use --overwrite to replace it)")


def embed(
    encoder_dir: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    dtype: str = "int8",
    window: Window | None = None,
    pca: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Write the embedding GeoTIFF of the store (or of ``window`` of it), and with ``pca`` its false colour
    ``<stem>_pca.tif`` and ``<stem>_pca.png``; return the paths written."""
    if dtype not in EMBEDDING_TYPES:
        raise InvalidArgumentError(f"embedding type {dtype!r} is not one of {', '.join(EMBEDDING_TYPES)}")
    encoder, metadata = load_encoder(encoder_dir)
    store = SeriesStore(store_path)
    source = metadata["source"]
    if source not in store.sources or list(store.sources[source].bands) != metadata["bands"]:
        raise InvalidArgumentError(
            f"{store.path} has no {source} series with the bands {metadata['bands']} the encoder was trained on"
        )
    area = _area(store, window)
    out = Path(out_path)
    pca_tif, pca_png = out.with_name(f"{out.stem}_pca.tif"), out.with_name(f"{out.stem}_pca.png")
    _check_outputs([out, *([pca_tif, pca_png] if pca else [])], overwrite)
    grid = Grid(
        store.grid.crs,
        store.grid.transform @ Affine.translation(area.col_off, area.row_off),
        int(area.width),
        int(area.height),
    )
    needs_sample = dtype == "int8" or pca
    sample = calibration_sample(encoder, store, source, area) if needs_sample else None
    quantisation = Quantisation.fit(sample) if dtype == "int8" else None
    colour = FalseColour.fit(sample) if pca else None
    dim = int(encoder.output.shape[-1])
    descriptions = [f"embedding {index}" for index in range(1, dim + 1)]
    tags = {"TILE": store.tile, "ENCODER": Path(encoder_dir).name, "SOURCE": source}
    with gdal_environment(), ExitStack() as stack:
        embedding_file = stack.enter_context(atomic_file(out))
        profile = geotiff_profile(
            width=grid.width,
            height=grid.height,
            count=dim,
            dtype=dtype,
            crs=grid.crs,
            transform=grid.transform,
            nodata=INT8_NODATA if dtype == "int8" else float("nan"),
        )
        embedding = stack.enter_context(create_geotiff(embedding_file, profile, descriptions, tags))
        if quantisation is not None:
            embedding.scales, embedding.offsets = tuple(quantisation.scale), tuple(quantisation.offset)
        colour_dataset = None
        if colour is not None:
            colour_file = stack.enter_context(atomic_file(pca_tif))
            colour_profile = geotiff_profile(
                width=grid.width,
                height=grid.height,
                count=3,
                dtype="uint8",
                crs=grid.crs,
                transform=grid.transform,
                nodata=0,
            )
            colour_dataset = stack.enter_context(
                create_geotiff(colour_file, colour_profile, ["principal component 1", "2", "3"], tags)
            )
        for part in progress(_windows(area), desc="embedding"):
            values, has_data = encode_window(encoder, store, source, part)
            target = Window(part.col_off - area.col_off, part.row_off - area.row_off, part.width, part.height)
            written = quantisation.apply(values, has_data) if quantisation else values
            embedding.write(np.moveaxis(written, -1, 0), window=target)
            if colour_dataset is not None:
                colour_dataset.write(np.moveaxis(colour.apply(values, has_data), -1, 0), window=target)
        embedding.close()
        if colour_dataset is not None:
            colour_dataset.close()
            write_quicklook(colour_file, pca_png)
    log.info("wrote %s", out)
    return [out, *([pca_tif, pca_png] if pca else [])]


def write_quicklook(rgb_tif: str | os.PathLike[str], png: str | os.PathLike[str]) -> Path:
    """A PNG of a 3-band byte GeoTIFF, decimated to at most QUICKLOOK_SIDE pixels a side."""
    with open_raster(rgb_tif) as dataset:
        factor = max(1, int(np.ceil(max(dataset.height, dataset.width) / QUICKLOOK_SIDE)))
        shape = (3, -(-dataset.height // factor), -(-dataset.width // factor))
        rgb = read_window(dataset, None, out_shape=shape)
    return write_png(np.moveaxis(rgb, 0, -1), png)


#: Colours of the classes of a class map (class k gets the k-th, cycling), no-data (0) black.
CLASS_COLOURS = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)


def classify(
    classifier_dir: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    window: Window | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the class map (uint8, class k = k-th class of the classifier, 0 no-data) with a colour table."""
    network, metadata = load_classifier(classifier_dir)
    names = metadata["classes"]
    if len(names) > 254:
        raise InvalidArgumentError(f"{classifier_dir}: {len(names)} classes do not fit a byte class map")
    store = SeriesStore(store_path)
    source = metadata["source"]
    if source not in store.sources:
        raise InvalidArgumentError(f"{store.path} has no {source} series, which the classifier reads")
    area = _area(store, window)
    out = Path(out_path)
    _check_outputs([out], overwrite)
    grid = Grid(
        store.grid.crs,
        store.grid.transform @ Affine.translation(area.col_off, area.row_off),
        int(area.width),
        int(area.height),
    )
    tags = {"TILE": store.tile, "CLASSES": ", ".join(f"{k}={name}" for k, name in enumerate(names, start=1))}
    with gdal_environment(), atomic_file(out) as temporary:
        profile = geotiff_profile(
            width=grid.width,
            height=grid.height,
            count=1,
            dtype="uint8",
            crs=grid.crs,
            transform=grid.transform,
            nodata=0,
        )
        with create_geotiff(temporary, profile, ["class"], tags) as dataset:
            colours = {0: (0, 0, 0, 0)}
            colours.update({k: (*CLASS_COLOURS[(k - 1) % len(CLASS_COLOURS)], 255) for k in range(1, len(names) + 1)})
            dataset.write_colormap(1, colours)
            for part in progress(_windows(area), desc="classification"):
                logits, has_data = encode_window(network, store, source, part)
                classes = np.where(has_data, np.nan_to_num(logits).argmax(axis=-1) + 1, 0).astype(np.uint8)
                target = Window(part.col_off - area.col_off, part.row_off - area.row_off, part.width, part.height)
                dataset.write(classes, 1, window=target)
    log.info("wrote %s", out)
    return out
