"""Search of the image tuples that satisfy an acquisitions layout, for every training patch of a tile.

A training patch is a k x k group of elementary patches (k = patchsize / 64), aligned on multiples of k
like the ROI rasters. Its cloud percentage in an S2 image is the mean over its elementary patches; it is
valid in an image when none of its pixels is no-data.

A tuple is one image per acquisition of the layout such that:
  - the origin's image is the reference date; every other acquisition's image lies in its time window
    relative to that date (bounds included);
  - S2 images are valid and within the acquisition's cloud bounds over the whole patch;
  - an acquisition with S1 and S2 uses the valid S1 image closest in time to its S2 image (earlier one
    on a tie), which must lie within ``max_s1s2_gap_hours``; an S1-only acquisition uses any valid S1
    image of its window;
  - no image (S1 or S2) serves two acquisitions unless they are siblings;
  - an acquisition declared ``nearest`` takes, per patch, only the qualifying image of its window closest in
    time to the reference date (earlier one on a tie, :mod:`decloud.core.closeness`).

Work is vectorised over patches: Python loops run over reference dates and over the combinations of
dates that the time windows allow, never over patches.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from decloud.acquisitions.sensing_layout import AcquisitionsLayout
from decloud.core.closeness import by_closeness
from decloud.core.constants import HOUR, PATCH_SIZE
from decloud.core.errors import InvalidArgumentError
from decloud.sampling.catalog import TileCatalog

#: Refuse layouts whose windows allow more date combinations than this per reference date.
MAX_COMBINATIONS_PER_DATE = 100_000


@dataclass
class SampleTuples:
    """Tuples found, one entry per tuple: tile, training patch position and image of each acquisition."""

    tile_index: np.ndarray  #: index of the tile in the list of catalogs searched
    patch_row: np.ndarray  #: row of the training patch (in patches of ``patchsize`` pixels)
    patch_col: np.ndarray
    origin_time: np.ndarray  #: timestamp (s) of the reference image
    s2: dict[str, np.ndarray] = field(default_factory=dict)  #: acquisition -> S2 product index
    s1: dict[str, np.ndarray] = field(default_factory=dict)  #: acquisition -> S1 image index

    def __len__(self) -> int:
        return len(self.patch_row)

    def take(self, indices: np.ndarray) -> SampleTuples:
        return SampleTuples(
            self.tile_index[indices],
            self.patch_row[indices],
            self.patch_col[indices],
            self.origin_time[indices],
            {name: array[indices] for name, array in self.s2.items()},
            {name: array[indices] for name, array in self.s1.items()},
        )

    @staticmethod
    def concatenate(parts: Sequence[SampleTuples], s2_names: Sequence[str], s1_names: Sequence[str]) -> SampleTuples:
        def join(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

        return SampleTuples(
            join([part.tile_index for part in parts], np.int32),
            join([part.patch_row for part in parts], np.int32),
            join([part.patch_col for part in parts], np.int32),
            join([part.origin_time for part in parts], np.float64),
            {name: join([part.s2[name] for part in parts], np.int32) for name in s2_names},
            {name: join([part.s1[name] for part in parts], np.int32) for name in s1_names},
        )


def _group(array: np.ndarray, k: int) -> np.ndarray:
    """(n, rows, cols) -> (n, rows // k, cols // k, k * k): the elementary values of each full group."""
    n, rows, cols = array.shape
    groups_r, groups_c = rows // k, cols // k
    blocks = array[:, : groups_r * k, : groups_c * k].reshape(n, groups_r, k, groups_c, k)
    return blocks.transpose(0, 1, 3, 2, 4).reshape(n, groups_r, groups_c, k * k)


@dataclass
class _PatchStatistics:
    """Per training patch statistics of every image of a tile."""

    s2_cloud: np.ndarray  #: (n_s2, R, C) mean cloud percentage
    s2_valid: np.ndarray  #: (n_s2, R, C) bool
    s1_valid: np.ndarray  #: (n_s1, R, C) bool
    roi: np.ndarray  #: (R, C) bool

    @classmethod
    def of(cls, catalog: TileCatalog, roi: np.ndarray | None, k: int) -> _PatchStatistics:
        s2_cloud = _group(catalog.s2_cloud_percent.astype(np.float64), k).mean(axis=-1)
        s2_valid = _group(catalog.s2_nodata_count, k).max(axis=-1) == 0
        s1_valid = _group(catalog.s1_nodata_count, k).max(axis=-1) == 0
        if roi is None:
            roi_groups = np.ones(s2_cloud.shape[1:], dtype=bool)
        else:
            if roi.shape != catalog.s2_cloud_percent.shape[1:]:
                raise InvalidArgumentError(
                    f"{catalog.tile}: the ROI raster is {roi.shape[0]}x{roi.shape[1]}, the patch grid "
                    f"{catalog.s2_cloud_percent.shape[1]}x{catalog.s2_cloud_percent.shape[2]}"
                )
            roi_groups = _group(roi[np.newaxis] != 0, k).all(axis=-1)[0]
        return cls(s2_cloud, s2_valid, s1_valid, roi_groups)


def _closest_valid_s1(
    s2_times: np.ndarray, s1_times: np.ndarray, s1_valid: np.ndarray, max_gap_hours: float
) -> np.ndarray:
    """(n_s2, R, C) index of the valid S1 image closest to each S2 image within the gap, -1 if none."""
    closest = np.full((len(s2_times), *s1_valid.shape[1:]), -1, dtype=np.int32)
    for i, s2_time in enumerate(s2_times):
        candidates = np.array(
            [j for j in by_closeness(s1_times, s2_time) if abs(s1_times[j] - s2_time) <= max_gap_hours * HOUR], int
        )
        if len(candidates):
            valid = s1_valid[candidates]
            first = valid.argmax(axis=0)
            closest[i] = np.where(valid.any(axis=0), candidates[first], -1)
    return closest


def find_tuples(
    layout: AcquisitionsLayout,
    catalog: TileCatalog,
    roi: np.ndarray | None,
    patchsize: int,
    tile_index: int = 0,
) -> SampleTuples:
    """Every tuple of ``catalog``'s images satisfying ``layout`` (resolved: plain cloud bounds), on the
    training patches of ``patchsize`` pixels that lie wholly inside ``roi`` (elementary patch grid, non-zero
    = selected; None = everywhere)."""
    if patchsize <= 0 or patchsize % PATCH_SIZE:
        raise InvalidArgumentError(f"patch size {patchsize} is not a positive multiple of {PATCH_SIZE}")
    stats = _PatchStatistics.of(catalog, roi, patchsize // PATCH_SIZE)
    s2_times, s1_times = catalog.s2_timestamps, catalog.s1_timestamps
    acquisitions = list(layout.acquisitions.values())
    s2_names = [a.name for a in acquisitions if a.s2 is not None]
    s1_names = [a.name for a in acquisitions if a.s1 is not None]

    # Per acquisition: the times of its candidate images, and per image a patch mask of where it qualifies.
    # The candidate images are S2 products when the acquisition has S2, S1 images otherwise.
    times, qualifies, paired_s1 = {}, {}, {}
    for acquisition in acquisitions:
        if acquisition.s2 is not None:
            low, high = acquisition.s2.min_cloud_percent, acquisition.s2.max_cloud_percent
            ok = stats.s2_valid & (stats.s2_cloud >= low) & (stats.s2_cloud <= high)
            if acquisition.s1 is not None:
                closest = _closest_valid_s1(s2_times, s1_times, stats.s1_valid, acquisition.max_s1s2_gap_hours)
                paired_s1[acquisition.name] = closest
                ok &= closest >= 0
            times[acquisition.name], qualifies[acquisition.name] = s2_times, ok
        else:
            times[acquisition.name], qualifies[acquisition.name] = s1_times, stats.s1_valid

    origin = layout.acquisitions[layout.origin]
    distinct_s2 = _non_sibling_pairs(layout, s2_names)
    distinct_s1 = _non_sibling_pairs(layout, s1_names)
    parts = []
    for reference in range(len(times[origin.name])):
        if not (qualifies[origin.name][reference] & stats.roi).any():
            continue
        reference_time = times[origin.name][reference]
        candidates = [
            [reference]
            if acquisition.is_origin
            else _in_window(times[acquisition.name], reference_time, acquisition.window_hours)
            for acquisition in acquisitions
        ]
        allowed = {
            a.name: _nearest_only(qualifies[a.name], window, times[a.name], reference_time)
            if a.nearest
            else qualifies[a.name]
            for a, window in zip(acquisitions, candidates, strict=True)
        }
        combinations = int(np.prod([len(c) for c in candidates]))
        if combinations > MAX_COMBINATIONS_PER_DATE:
            raise InvalidArgumentError(
                f"{catalog.tile}: the layout's time windows allow {combinations} date combinations around "
                f"{catalog.s2[reference].name if origin.s2 else catalog.s1[reference].name}: narrow them"
            )
        for combination in itertools.product(*candidates):
            chosen = dict(zip([a.name for a in acquisitions], combination, strict=True))
            if any(chosen[a] == chosen[b] for a, b in distinct_s2):
                continue
            mask = stats.roi.copy()
            for name, image in chosen.items():
                mask &= allowed[name][image]
            s1_used = {
                name: paired_s1[name][chosen[name]] if name in paired_s1 else np.full(mask.shape, chosen[name])
                for name in s1_names
            }
            for a, b in distinct_s1:
                mask &= s1_used[a] != s1_used[b]
            rows, cols = np.nonzero(mask)
            if not len(rows):
                continue
            parts.append(
                SampleTuples(
                    np.full(len(rows), tile_index),
                    rows,
                    cols,
                    np.full(len(rows), reference_time),
                    {name: np.full(len(rows), chosen[name]) for name in s2_names},
                    {name: s1_used[name][rows, cols] for name in s1_names},
                )
            )
    return SampleTuples.concatenate(parts, s2_names, s1_names)


def _nearest_only(
    qualifies: np.ndarray, candidates: list[int], image_times: np.ndarray, reference_time: float
) -> dict[int, np.ndarray]:
    """For each of ``candidates``, its patch mask of ``qualifies`` (images, patch rows, patch cols) kept only where
    it is the qualifying image closest in time to ``reference_time``."""
    nearest, taken = {}, np.zeros(qualifies.shape[1:], dtype=bool)
    for position in by_closeness(image_times[candidates], reference_time):
        image = candidates[position]
        nearest[image] = qualifies[image] & ~taken
        taken |= qualifies[image]
    return nearest


def _in_window(image_times: np.ndarray, reference_time: float, window_hours: tuple[float, float]) -> list[int]:
    """Indices of the (sorted) ``image_times`` within the window around ``reference_time``, bounds included."""
    low, high = (reference_time + bound * HOUR for bound in window_hours)
    return list(range(np.searchsorted(image_times, low, "left"), np.searchsorted(image_times, high, "right")))


def _non_sibling_pairs(layout: AcquisitionsLayout, names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of acquisitions (among ``names``) that may not share an image."""
    return [(a, b) for a, b in itertools.combinations(names, 2) if not layout.are_siblings(a, b)]
