"""Maps of a series store through a trained encoder: the embedding GeoTIFF (one band per dimension), and its
principal-component false colour (GeoTIFF + PNG quicklook); and class maps through a classifier. Both are
streamed by the production engine (:class:`~decloud.production.streaming.StreamingEngine`) window by window,
from a :class:`~decloud.production.sources.SeriesSource` over the store, so memory does not depend on the
area, outputs are published atomically, and an interrupted run leaves nothing behind.

Every pixel is encoded from *all* its valid observations (the mask hides the others); a pixel with no valid
observation is no-data. The encoder is per pixel (no margin), so the maps do not depend on the window size.

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
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.atomic import outputs_to_write, skip_message
from decloud.core.errors import InvalidArgumentError
from decloud.core.raster import Grid, open_raster, read_window, write_png
from decloud.production.sources import SeriesSource
from decloud.production.streaming import OutputSpec, StreamingEngine
from decloud.sits.encoding import SeriesModelBackend, encode_pixels
from decloud.sits.finetune import load_classifier
from decloud.sits.pretrain import load_encoder
from decloud.sits.store import CHUNK_SIDE, SeriesStore

log = logging.getLogger(__name__)

EMBEDDING_TYPES = ("int8", "float32")
INT8_NODATA = -128
INT8_LIMIT = 127
#: Default side of the windows streamed through the network (one chunk of the store).
MAP_WINDOW = CHUNK_SIDE
#: Pixels of the calibration sample (int8 scales, principal components, colour stretch).
CALIBRATION_PIXELS = 16384
#: Percentiles of the calibration sample mapped to the ends of the int8 range, and of the colour stretch.
QUANTISATION_PERCENTILES = (0.1, 99.9)
STRETCH_PERCENTILES = (2.0, 98.0)
#: Largest side of the PNG quicklook.
QUICKLOOK_SIDE = 1024


def calibration_sample(encoder: keras.Model, store: SeriesStore, source: str, area: Window) -> np.ndarray:
    """Representations of at most CALIBRATION_PIXELS pixels on a regular lattice over ``area`` (with data)."""
    step = max(1, int(np.ceil(np.sqrt(area.width * area.height / CALIBRATION_PIXELS))))
    rows = np.arange(int(area.row_off), int(area.row_off + area.height), step)
    cols = np.arange(int(area.col_off), int(area.col_off + area.width), step)
    values, valid = store.read_pixels(source, rows, cols)
    pixel_values = values.reshape(values.shape[0], -1, values.shape[-1]).swapaxes(0, 1)
    pixel_valid = valid.reshape(valid.shape[0], -1).T
    keep = pixel_valid.any(axis=1)
    if not keep.any():
        raise InvalidArgumentError(f"{store.path}: no pixel of the area has a valid observation")
    return encode_pixels(encoder, pixel_values[keep], pixel_valid[keep], store.sources[source].doys)


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

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Stored values (N, D) int8 of embeddings (N, D)."""
        return np.clip(np.rint((values - self.offset) / self.scale), -INT8_LIMIT, INT8_LIMIT).astype(np.int8)


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

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Colours (N, 3) uint8 in 1-255 of embeddings (N, D)."""
        projected = (values - self.mean) @ self.components.T
        return (1 + np.rint(254 * np.clip((projected - self.low) / (self.high - self.low), 0, 1))).astype(np.uint8)


def _area(store: SeriesStore, window: Window | None) -> Window:
    full = Window(0, 0, store.grid.width, store.grid.height)
    if window is None:
        return full
    inside = window.intersection(full) if window.row_off < full.height and window.col_off < full.width else None
    if inside is None or (inside.width, inside.height) != (window.width, window.height):
        raise InvalidArgumentError(f"window {window} is not inside the {full.height}x{full.width} store")
    return window


def _stream(
    network: keras.Model,
    network_dir: str | os.PathLike[str],
    store: SeriesStore,
    source: str,
    area: Window,
    outputs: list[OutputSpec],
    chunk_size: int,
    quicklook: tuple[Path, Path] | None = None,
) -> None:
    """Run ``network`` over ``area`` of the store through the streaming engine, writing ``outputs``; with
    ``quicklook`` (a 3-band byte output and a PNG), the PNG of that output is published with them, once they
    are complete."""
    info = store.sources[source]
    reference = Grid(
        store.grid.crs,
        store.grid.transform @ Affine.translation(area.col_off, area.row_off),
        int(area.width),
        int(area.height),
    )
    backend = SeriesModelBackend(network, source, info.doys, len(info.bands), [output.name for output in outputs])
    series = SeriesSource(
        source,
        lambda window: store.read(source, window),
        reference,
        dates=len(info.doys),
        bands=len(info.bands),
        origin=(int(area.row_off), int(area.col_off)),
        shape=(store.grid.height, store.grid.width),
    )
    engine = StreamingEngine(
        backend, [series], reference, outputs, chunk_size=chunk_size, pad=0, model_name=str(network_dir)
    )
    if quicklook is None:
        engine.run()
        return
    colour_tif, png = quicklook
    # published (atomically) right before the GeoTIFFs it is made from
    engine.run(before_publish=lambda complete: write_quicklook(complete[colour_tif], png))


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise InvalidArgumentError(f"chunk size (--ts) {chunk_size} must be positive")


def embed(
    encoder_dir: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    dtype: str = "int8",
    window: Window | None = None,
    pca: bool = True,
    chunk_size: int = MAP_WINDOW,
    overwrite: bool = False,
) -> list[Path]:
    """Write the embedding GeoTIFF of the store (or of ``window`` of it), and with ``pca`` its false colour
    ``<stem>_pca.tif`` and ``<stem>_pca.png``; return the paths (skipped when all are there, ours, and
    ``overwrite`` is not set)."""
    if dtype not in EMBEDDING_TYPES:
        raise InvalidArgumentError(f"embedding type {dtype!r} is not one of {', '.join(EMBEDDING_TYPES)}")
    _check_chunk_size(chunk_size)
    out = Path(out_path)
    pca_tif, pca_png = out.with_name(f"{out.stem}_pca.tif"), out.with_name(f"{out.stem}_pca.png")
    paths = [out, *([pca_tif, pca_png] if pca else [])]
    store = SeriesStore(store_path)
    encoder, metadata = load_encoder(encoder_dir)
    source = metadata["source"]
    if source not in store.sources or list(store.sources[source].bands) != metadata["bands"]:
        raise InvalidArgumentError(
            f"{store.path} has no {source} series with the bands {metadata['bands']} the encoder was trained on"
        )
    area = _area(store, window)
    if not outputs_to_write(paths, overwrite):
        log.info(skip_message(paths))
        return paths
    sample = calibration_sample(encoder, store, source, area) if dtype == "int8" or pca else None
    dim = int(encoder.output.shape[-1])
    tags = {"TILE": store.tile, "ENCODER": Path(encoder_dir).name, "SOURCE": source}
    descriptions = [f"embedding {index}" for index in range(1, dim + 1)]
    if dtype == "int8":
        quantisation = Quantisation.fit(sample)
        embedding = OutputSpec(
            "embedding",
            out,
            descriptions,
            dtype="int8",
            nodata=INT8_NODATA,
            convert=quantisation.apply,
            band_scales=tuple(quantisation.scale),
            band_offsets=tuple(quantisation.offset),
            tags=tags,
        )
    else:
        embedding = OutputSpec(
            "embedding", out, descriptions, dtype="float32", nodata=float("nan"), convert=_exact, tags=tags
        )
    outputs = [embedding]
    if pca:
        colour = FalseColour.fit(sample)
        bands = ["principal component 1", "2", "3"]
        outputs.append(
            OutputSpec("false_colour", pca_tif, bands, dtype="uint8", nodata=0, convert=colour.apply, tags=tags)
        )
    _stream(encoder, encoder_dir, store, source, area, outputs, chunk_size, (pca_tif, pca_png) if pca else None)
    return paths


def _exact(values: np.ndarray) -> np.ndarray:
    """Embeddings stored as they are (float32)."""
    return values


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
    chunk_size: int = MAP_WINDOW,
    overwrite: bool = False,
) -> Path:
    """Write the class map (uint8, class k = k-th class of the classifier, 0 no-data) with a colour table."""
    _check_chunk_size(chunk_size)
    out = Path(out_path)
    store = SeriesStore(store_path)
    network, metadata = load_classifier(classifier_dir)
    names = metadata["classes"]
    if len(names) > 254:
        raise InvalidArgumentError(f"{classifier_dir}: {len(names)} classes do not fit a byte class map")
    source = metadata["source"]
    if source not in store.sources:
        raise InvalidArgumentError(f"{store.path} has no {source} series, which the classifier reads")
    area = _area(store, window)
    if not outputs_to_write([out], overwrite):
        log.info(skip_message([out]))
        return out
    colours = {0: (0, 0, 0, 0)}
    colours.update({k: (*CLASS_COLOURS[(k - 1) % len(CLASS_COLOURS)], 255) for k in range(1, len(names) + 1)})
    classes = OutputSpec(
        "classes",
        out,
        ["class"],
        dtype="uint8",
        nodata=0,
        convert=_decided_class,
        colormap=colours,
        tags={"TILE": store.tile, "CLASSES": ", ".join(f"{k}={name}" for k, name in enumerate(names, start=1))},
    )
    _stream(network, classifier_dir, store, source, area, [classes], chunk_size)
    return out


def _decided_class(logits: np.ndarray) -> np.ndarray:
    """Class numbers (N, 1), from 1, of the largest of the logits (N, classes)."""
    return (logits.argmax(axis=-1) + 1)[:, np.newaxis]
