"""The whole chain on the real data of ../shared/data, with the project's own commands: prepare, split,
sample, train a few steps, stream. There is no Sentinel-1 co-located with these scenes, so the layouts
and the CRGA model are S2-only. Checks: the outputs are georeferenced on the inputs' grids, and the clear
pixels kept from the input (--keep_clear) equal the input beyond the zone where the estimate is blended in
(the cloud mask dilated by 2 pixels, then a 4-pixel cross-fade: every pixel nearer than 7 pixels to a cloudy
one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from decloud.acquisitions.sensing_layout import AcquisitionsLayout, S2Acquisition
from decloud.cli import main as decloud
from decloud.sampling.tfrecords import iterate_numpy
from decloud.testing.rasters import raster_grid as grid
from decloud.testing.rasters import read_raster as read

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_PARAMS = json.dumps({"filters": 4, "depth": 2, "with_s1": False})
#: Offsets (pixels) nearer than 7 pixels (Euclidean) to the centre: where a cloudy pixel still weighs.
BLEND_REACH = (np.mgrid[-6:7, -6:7] ** 2).sum(axis=0) < 7**2


def prepare_and_split(products: list[Path], tile: str, root: Path) -> Path:
    for product in products:
        assert decloud(["s2-prepare", "--in_image", str(product), "--out_s2_dir", str(root / "S2")]) == 0
    (root / "tiles.json").write_text(json.dumps({"S2_ROOT_DIR": "S2", "TILES": [tile]}))
    arguments = ["--tiles", str(root / "tiles.json"), "--datasets", "train", "--props", "1"]
    assert decloud(["generate-roi-rasters", *arguments, "--output_dir", str(root / "ROI"), "--patchsize", "64"]) == 0
    return root / "ROI" / "rois.json"


def sample_and_train(root: Path, layout: Path, rois: Path) -> Path:
    arguments = ["--acquisition_train", str(layout), "--output_train", str(root / "records")]
    arguments += ["--tiles", str(root / "tiles.json"), "--rois", str(rois), "--patchsize", "64", "--maxntrain", "8"]
    assert decloud(["create-tfrecords", *arguments]) == 0
    model = root / "savedmodel"
    arguments = ["--training_record", str(root / "records"), "-m", "crga_os2_unet", "--model_params", MODEL_PARAMS]
    arguments += ["-bt", "1", "-e", "1", "--steps_per_epoch", "3", "--out_savedmodel", str(model), "--seed", "1"]
    assert decloud(["train", *arguments]) == 0
    return model


def kept_as_is(product: Path) -> np.ndarray:
    """The 10 m pixels --keep_clear copies from ``product``: at least 7 pixels from any cloudy one."""
    cloudy = read(product / f"{product.name}_CLM_R1.tif")[0] != 0
    return ~ndimage.binary_dilation(cloudy, BLEND_REACH)


def assert_clear_pixels_kept(product: Path, output: Path) -> float:
    """Checks the output's grid and kept pixels; returns the share of kept pixels."""
    source = product / f"{product.name}_FRE_10m.tif"
    assert grid(output) == grid(source)
    kept = kept_as_is(product)
    estimate, original = read(output), read(source)
    np.testing.assert_array_equal(estimate[:, kept], original[:, kept])
    with rasterio.open(output) as dataset:
        assert dataset.descriptions == ("B2", "B3", "B4", "B8")
    return kept.mean()


def test_chain_on_the_real_time_series(shared_data, tmp_path):
    products = sorted((shared_data / "eolearn-timeseries" / "S2" / "T33TVL").iterdir())
    rois = prepare_and_split(products, "T33TVL", tmp_path)
    layout = REPO_ROOT / "decloud" / "acquisitions" / "layouts" / "crga_os2_s2only.json"
    model = sample_and_train(tmp_path, layout, rois)
    summary = json.loads((tmp_path / "records" / "summary.json").read_text())
    assert summary["total_samples"] >= 1  # t = 08-20 (cloudy): tm1 07-31, tp1 09-09, target 08-30
    out = tmp_path / "out"
    arguments = ["--s2_dir", str(tmp_path / "S2" / "T33TVL"), "--model", str(model), "--out_dir", str(out)]
    assert decloud(["crga-timeseries-processor", *arguments, "--keep_clear", "--ts", "64", "--pad", "32"]) == 0
    reconstructed, shares = sorted(out.iterdir()), []
    # every date with an earlier and a later one, and the clear first and last dates (--keep_clear) as themselves
    assert len(reconstructed) == 5
    for output in reconstructed:
        name = output.name.removesuffix("_reconstructed_FRE_10m.tif")
        shares.append(assert_clear_pixels_kept(tmp_path / "S2" / "T33TVL" / name, output))
    # the CLM masks flag nothing on 07-11, 08-30 and 09-09, everything on 07-31 and 08-20
    assert shares == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_chain_on_the_real_theia_crop(shared_data, tmp_path):
    """One date only: a layout whose acquisitions are siblings of the same image exercises the chain on the
    real THEIA product (1170 x 1198 pixels, 0.48 % cloudy)."""
    crop = shared_data / "theia" / "T30TYP" / "SENTINEL2B_20181023-105107-455_L2A_T30TYP_D_V1-9"
    rois = prepare_and_split([crop], "T30TYP", tmp_path)
    layout = AcquisitionsLayout()
    for name in ("tm1", "t", "tp1", "target"):
        layout.new_acquisition(name, s2_acquisition=S2Acquisition(0, 100), timeframe_origin=name == "t")
    layout.set_siblings([["tm1", "t", "tp1", "target"]])
    layout.to_json(tmp_path / "one_date.json")
    model = sample_and_train(tmp_path, tmp_path / "one_date.json", rois)
    product = str(tmp_path / "S2" / "T30TYP" / crop.name)
    output = tmp_path / "reconstructed.tif"
    arguments = ["--il_s2before", product, "--in_s2", product, "--il_s2after", product]
    arguments += ["--savedmodel", str(model), "--output", str(output), "--keep_clear"]
    assert decloud(["crga-processor", *arguments]) == 0
    assert assert_clear_pixels_kept(tmp_path / "S2" / "T30TYP" / crop.name, output) > 0.9
    cloudy = read(tmp_path / "S2" / "T30TYP" / crop.name / f"{crop.name}_CLM_R1.tif")[0] != 0
    assert cloudy.sum() == 6688


def test_chain_with_20m_bands_on_the_real_theia_crop(shared_data, tmp_path):
    """The crop's 20 m files start half a 20 m pixel (10 m) off its 10 m grid. Prepared, sampled, trained on
    and reconstructed with the 20 m bands: every 20 m value stays at its georeferenced position and the
    outputs lie on the prepared grids."""
    crop = shared_data / "theia" / "T30TYP" / "SENTINEL2B_20181023-105107-455_L2A_T30TYP_D_V1-9"
    name = crop.name
    rois = prepare_and_split([crop], "T30TYP", tmp_path)
    layout = AcquisitionsLayout()
    for acquisition in ("tm1", "t", "tp1", "target"):
        layout.new_acquisition(acquisition, s2_acquisition=S2Acquisition(0, 100), timeframe_origin=acquisition == "t")
    layout.set_siblings([["tm1", "t", "tp1", "target"]])
    layout.to_json(tmp_path / "one_date.json")
    arguments = ["--acquisition_train", str(tmp_path / "one_date.json"), "--output_train", str(tmp_path / "records")]
    arguments += ["--tiles", str(tmp_path / "tiles.json"), "--rois", str(rois), "--patchsize", "64"]
    assert decloud(["create-tfrecords", *arguments, "--maxntrain", "6", "--with_20m_bands"]) == 0

    # Independently: the raw 20 m value at the centre of 20 m pixel (i, j) of the 10 m-aligned grid, i.e.
    # at (742920 + 20 j, 4848600 - 20 i), is the mean of raw pixels (i..i+1, j..j+1) (edges repeated).
    raw_10m = np.stack([read(crop / f"{name}_FRE_{band}.tif")[0] for band in ("B2", "B3", "B4", "B8")])
    raw_20m = np.stack([read(crop / f"{name}_FRE_{band}.tif")[0] for band in ("B5", "B6", "B7", "B8A", "B11", "B12")])
    padded = np.pad(raw_20m.astype(np.float64), ((0, 0), (0, 1), (0, 1)), mode="edge")
    at_aligned_centres = (padded[:, :-1, :-1] + padded[:, :-1, 1:] + padded[:, 1:, :-1] + padded[:, 1:, 1:]) / 4
    samples = list(iterate_numpy(tmp_path / "records"))
    assert len(samples) == 6
    for sample in samples:
        row, col = int(sample["patch_row"]), int(sample["patch_col"])
        np.testing.assert_array_equal(np.moveaxis(sample["s2_t"], -1, 0), raw_10m[:, row : row + 64, col : col + 64])
        for acquisition in ("tm1", "t", "tp1", "target"):
            patch = np.moveaxis(sample[f"s2_20m_{acquisition}"], -1, 0)
            truth = at_aligned_centres[:, row // 2 : row // 2 + 32, col // 2 : col // 2 + 32]
            assert patch.shape == (6, 32, 32) and np.abs(patch - truth).max() <= 0.5

    model = tmp_path / "savedmodel"
    arguments = ["--training_record", str(tmp_path / "records"), "-m", "crga_os2_unet", "--model_params", MODEL_PARAMS]
    arguments += ["-bt", "1", "-e", "1", "--steps_per_epoch", "2", "--out_savedmodel", str(model), "--seed", "1"]
    assert decloud(["train", *arguments, "--with_20m_bands"]) == 0

    product = tmp_path / "S2" / "T30TYP" / name
    output, output_20m = tmp_path / "reconstructed.tif", tmp_path / "reconstructed_20m.tif"
    arguments = ["--il_s2before", str(product), "--in_s2", str(product), "--il_s2after", str(product)]
    arguments += ["--savedmodel", str(model), "--output", str(output), "--output_20m", str(output_20m)]
    assert decloud(["crga-processor", *arguments, "--with_20m_bands", "--keep_clear"]) == 0
    assert assert_clear_pixels_kept(product, output) > 0.9
    assert grid(output) == grid(crop / f"{name}_FRE_B2.tif")
    with rasterio.open(output_20m) as dataset:
        assert dataset.shape == (585, 599) and tuple(dataset.transform)[:6] == (20, 0, 742910, 0, -20, 4848610)
        estimate_20m = dataset.read()
    # a 20 m pixel is kept when its four 10 m pixels are
    kept_20m = kept_as_is(product).reshape(585, 2, 599, 2).all(axis=(1, 3))
    np.testing.assert_array_equal(estimate_20m[:, kept_20m], read(product / f"{name}_FRE_20m.tif")[:, kept_20m])
