"""Random but plausible training samples for any list of keys, and records folders of them.

Every acquisition sees the same smooth landscape (so a model can learn something): Sentinel-2 reflectances
drift slowly with the date, the acquisition ``t`` carries a bright cloud, the target has a no-data corner
(to exercise masking), Sentinel-1 is a speckled encoded backscatter, timestamps follow the acquisition
names (``tm1`` 10 days before ``t``, ``tp1`` 10 days after, ``d<k>`` every 5 days). Samples are a function
of (keys, patch size, index, seed) only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from decloud.core import keys
from decloud.core.constants import DAY, S2_BANDS_10M, S2_NODATA
from decloud.sampling.tfrecords import RecordsWriter
from decloud.testing.texture import texture

#: Date of the acquisition ``t`` of sample 0.
REFERENCE_TIME = datetime(2020, 6, 1, 10, 30, tzinfo=UTC).timestamp()
CLOUDY_ACQUISITION = "t"
TARGET_ACQUISITION = "target"
_OFFSET = re.compile(r"^(tm|tp|d)(\d+)$")

#: The shipped layouts' acquisitions (decloud/acquisitions/layouts/*.json).
S1_S2 = (keys.S1, keys.S2)
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "meraner": {"t": S1_S2, "target": (keys.S2,)},
    "crga_os1": {"tm1": S1_S2, "t": S1_S2, "target": (keys.S2,)},
    "crga_os2": {"tm1": S1_S2, "t": S1_S2, "tp1": S1_S2, "target": (keys.S2,)},
    "monthly_s2": {**{f"d{index}": (keys.S2,) for index in range(6)}, "target": (keys.S2,)},
    "monthly_s2s1": {**{f"d{index}": S1_S2 for index in range(6)}, "target": (keys.S2,)},
    "superres": {"t": (keys.S2,)},
}


def acquisition_offset_days(acquisition: str) -> float:
    """Days between ``acquisition`` and ``t``: tm<k> -10k, tp<k> +10k, d<k> 5k - 12, others 0."""
    match = _OFFSET.match(acquisition)
    if match is None:
        return 0.0
    kind, number = match[1], int(match[2])
    return {"tm": -10.0 * number, "tp": 10.0 * number, "d": 5.0 * number - 12.0}[kind]


def _landscape(patchsize: int, index: int, seed: int, bands: Iterable[int], scale: int) -> np.ndarray:
    size = patchsize // scale
    window = Window(0, index * size, size, size)
    return np.stack([texture(window, band, seed, scale) for band in bands], axis=-1)


def _s2(source: str, acquisition: str, patchsize: int, index: int, seed: int, rng) -> np.ndarray:
    spec = keys.SOURCES[source]
    first_band = 0 if source == keys.S2 else len(S2_BANDS_10M)
    field = _landscape(patchsize, index, seed, range(first_band, first_band + spec.channels), spec.scale)
    drift = 1.0 + 0.004 * acquisition_offset_days(acquisition)
    values = (300 + 3000 * field) * drift + rng.normal(0, 30, field.shape)
    rows, cols = field.shape[:2]
    if acquisition == CLOUDY_ACQUISITION:
        r, c = np.ogrid[:rows, :cols]
        cloud = (r - rows * rng.uniform(0.3, 0.7)) ** 2 + (c - cols * rng.uniform(0.3, 0.7)) ** 2 < (rows / 4) ** 2
        values[cloud] = 7000 + values[cloud] / 4
    if acquisition == TARGET_ACQUISITION:
        values[: rows // 8, : cols // 8] = S2_NODATA
    return np.clip(np.rint(values), S2_NODATA, 10000).astype(np.int16)


def _s1(acquisition: str, patchsize: int, index: int, seed: int, rng) -> np.ndarray:
    field = _landscape(patchsize, index, seed + 1, range(2), 1)
    speckle = rng.gamma(4.0, 0.25, field.shape)
    return np.clip(20000 + 25000 * field * speckle, 1, 65535).astype(np.uint16)


def plausible_sample(names: Iterable[str], patchsize: int, index: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One sample holding ``names`` plus the trace keys (tile, patch position)."""
    rng = np.random.default_rng([seed, index])
    sample: dict[str, np.ndarray] = {}
    for name in sorted(set(names) - set(keys.TRACE_KEYS)):
        source, acquisition = keys.split_key(name)
        if source in (keys.S2, keys.S2_20M):
            sample[name] = _s2(source, acquisition, patchsize, index, seed, rng)
        elif source == keys.S1:
            sample[name] = _s1(acquisition, patchsize, index, seed, rng)
        elif source in (keys.S1_TIMESTAMP, keys.S2_TIMESTAMP):
            hours = 8.0 if source == keys.S1_TIMESTAMP else 0.0
            offset = acquisition_offset_days(acquisition) + 3.0 * index + hours / 24.0
            sample[name] = np.float64(REFERENCE_TIME + offset * DAY)
        elif source == keys.DEM:
            sample[name] = (200 + 800 * _landscape(patchsize, index, seed + 2, [0], 2)).astype(np.int16)
        else:
            raise ValueError(f"plausible_sample cannot make key {name!r}")
    sample[keys.TILE] = np.array(b"T31TEJ")
    sample[keys.PATCH_ROW] = np.int32(index // 8)
    sample[keys.PATCH_COL] = np.int32(index % 8)
    return sample


def write_records(
    folder: str | os.PathLike[str],
    names: Iterable[str],
    *,
    n_samples: int,
    patchsize: int = 64,
    n_samples_per_shard: int = 8,
    seed: int = 0,
) -> Path:
    """A records folder of ``n_samples`` plausible samples holding ``names`` (and the trace keys)."""
    names = list(names)
    with RecordsWriter(folder, n_samples_per_shard) as writer:
        for index in range(n_samples):
            writer.write(plausible_sample(names, patchsize, index, seed))
    return Path(folder)


#: The layout (of LAYOUTS) whose records feed each registered architecture.
LAYOUT_OF = {
    "crga_os1_unet": "crga_os1",
    "crga_os2_unet": "crga_os2",
    "crga_os2_david": "crga_os2",
    "gapfilling": "crga_os2",
    "meraner_original": "meraner",
    "meraner_unet": "meraner",
    "monthly_synthesis_6_s2_images": "monthly_s2",
    "monthly_synthesis_6_s2s1_images": "monthly_s2s1",
    "superres_carn": "superres",
    "superres_bicubic": "superres",
    "sharpen_carn": "superres",
    "sharpen_bicubic": "superres",
}
