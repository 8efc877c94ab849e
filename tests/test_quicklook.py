"""The demo's quicklook (decloud.demo.quicklook): cloudy input | reconstruction | truth | absolute error, checked
pixel by pixel on small rasters made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from decloud.demo.quicklook import showcase_date, write_quicklook

SIZE = 40
TOP, GAP = 22, 8  #: title strip above the panels, white gap between them
#: inferno at 0, 1/4, 1/2, 3/4 and 1 of the error scale (0 to 0.05 reflectance)
INFERNO = [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)]


def write_stack(path: Path, values: np.ndarray) -> Path:
    """A 10 m stack (B2 B3 B4 B8) of int16 ``values`` (4, SIZE, SIZE), no data -10000."""
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=4, dtype="int16", nodata=-10000,
                   crs="EPSG:32631", transform=Affine(10, 0, 600000, 0, -10, 4900020))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(values.astype(np.int16))
    return path


@pytest.fixture
def quicklook(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(300, 3000, (4, SIZE, SIZE))
    cloudy = truth.copy()
    cloudy[:, :10, :10] = 9000  # a cloud
    cloudy[:, 30:, :] = -10000  # no data
    estimate = truth.copy()
    estimate[:, 0, 0] += 250  # error 0.025 in every band: the middle of the scale
    estimate[:, 0, 2] += np.array([0, 0, 0, 500])  # mean error 0.0125: a quarter of the scale
    estimate[:, 0, 3] += 2000  # beyond the scale: saturates
    estimate[:, 39, :] = -10000  # no data
    paths = [write_stack(tmp_path / f"{name}.tif", image) for name, image in
             (("cloudy", cloudy), ("estimate", estimate), ("truth", truth))]  # fmt: skip
    png = write_quicklook(*paths, tmp_path / "quicklook.png")
    with Image.open(png) as picture:
        return np.asarray(picture.convert("RGB")), cloudy, estimate, truth


def panel(picture: np.ndarray, index: int) -> np.ndarray:
    left = index * (SIZE + GAP)
    return picture[TOP : TOP + SIZE, left : left + SIZE]


def stretched(image: np.ndarray, low: float, high: float) -> np.ndarray:
    rgb = image[[2, 1, 0]].astype(np.float64)  # B4 B3 B2
    values = np.clip(np.rint((rgb - low) / (high - low) * 255.0), 0, 255)
    values[:, (image == -10000).any(axis=0)] = 0
    return np.moveaxis(values.astype(np.uint8), 0, -1)


def test_the_three_images_share_one_stretch_from_the_truth(quicklook):
    picture, cloudy, estimate, truth = quicklook
    assert picture.shape == (TOP + SIZE + 40, 4 * SIZE + 3 * GAP, 3)
    low, high = np.percentile(truth[[2, 1, 0]].astype(float), [2, 98])
    for index, image in enumerate((cloudy, estimate, truth)):
        np.testing.assert_array_equal(panel(picture, index), stretched(image, low, high))
    assert (panel(picture, 0)[:10, :10] == 255).all() and (panel(picture, 0)[30:] == 0).all()
    for gap in range(3):
        left = gap * (SIZE + GAP) + SIZE
        assert (picture[TOP : TOP + SIZE, left : left + GAP] == 255).all()


def test_the_error_panel_colours_the_mean_absolute_error_on_a_fixed_scale(quicklook):
    picture, *_ = quicklook
    errors = panel(picture, 3)
    assert tuple(errors[0, 0]) == INFERNO[2]  # 0.025 of 0.05
    assert tuple(errors[0, 1]) == INFERNO[0]  # exact
    assert tuple(errors[0, 2]) == INFERNO[1]  # 0.0125
    assert tuple(errors[0, 3]) == INFERNO[4]  # saturated
    assert (errors[39] == 0).all()  # no data in the estimate: black
    # the colour scale below the error panel runs from the colour of 0 to that of 0.05
    bar = picture[TOP + SIZE + 4 : TOP + SIZE + 16, 3 * (SIZE + GAP) : 3 * (SIZE + GAP) + SIZE]
    assert tuple(bar[5, 0]) == INFERNO[0] and tuple(bar[5, -1]) == INFERNO[4]
    # titles and labels are drawn in black on the white strips
    assert (picture[:TOP] == 0).all(axis=-1).any() and (picture[TOP + SIZE + 16 :] == 0).all(axis=-1).any()


def test_the_showcase_is_the_date_nearest_half_cloudy():
    counts = {"a": 0, "b": 9000, "c": 4000, "d": 6000, "e": 10000}
    assert showcase_date(counts, 10000) == "c"  # 0.4 and 0.6 tie: the earliest
    assert showcase_date({"a": 0, "b": 100}, 10000) == "b"
