"""The processors end to end on generated prepared products: outputs on the input grid, values equal to
the model applied to the whole inputs (those the CRGA processor wrote; for Meraner and monthly synthesis,
inputs read and mosaicked here from the prepared rasters), keep-clear, time series, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keras
import numpy as np
import pytest
import rasterio
from affine import Affine

from decloud.core.constants import S2_NODATA
from decloud.models.export import export_savedmodel
from decloud.models.onnx_conversion import export_onnx
from decloud.models.registry import create_model
from decloud.preprocessing.dem_prepare import prepare_dem
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.production import (
    crga_processor,
    crga_timeseries_processor,
    meraner_processor,
    monthly_synthesis_processor,
)
from decloud.production.backends import SavedModelBackend
from decloud.production.processors import LoadedModel
from decloud.testing.dem import make_dem
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN, make_theia_product

SHAPE = (136, 168)  # not a multiple of the chunks
START = datetime(2021, 6, 2, 10, 30, tzinfo=UTC)
S2_DATES = [START + timedelta(days=5 * i) for i in range(6)]  # 2, 7, 12, 17, 22, 27 June
S1_DATES = [(START + timedelta(days=2 * i - 1)).replace(hour=6) for i in range(15)]
CLOUDS = {2: [Rect(30, 40, 50, 60)], 3: [Rect(0, 0, 136, 40)]}
#: No-data in the S1 image of 17 June 06:00 (index 8), the one closest to the S2 date of 17 June 10:30: the
#: S1 mosaics there take 19 June 06:00 (43.5 h away) before 15 June 06:00 (52.5 h).
S1_NODATA_RECTS = {8: [Rect(20, 30, 40, 50)]}


@pytest.fixture(scope="module")
def tile(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tile")
    for index, date in enumerate(S2_DATES):
        raw = make_theia_product(
            root / "raw", acquired=date, shape=SHAPE, clouds=CLOUDS.get(index, []), seed=index,
            nodata=[Rect(120, 150, 16, 18)] if index == 4 else [],
        )  # fmt: skip
        prepare_s2_product(raw, root / "S2")
    for index, date in enumerate(S1_DATES):
        nodata = S1_NODATA_RECTS.get(index, [])
        _, vh = make_s1tiling_pair(root / "raw_s1", acquired=date, shape=SHAPE, seed=index, nodata=nodata)
        prepare_s1_image(vh, root / "S1")
    transform = Affine(30, 0, DEFAULT_ORIGIN[0] - 300, 0, -30, DEFAULT_ORIGIN[1] + 300)
    make_dem(root / "raw_dem.tif", crs=DEFAULT_CRS, transform=transform, shape=(70, 80))
    reference = next((root / "S2" / "T31TEJ").iterdir())
    prepare_dem(reference / f"{reference.name}_FRE_20m.tif", [root / "raw_dem.tif"], root / "DEM" / "T31TEJ.tif")
    return root


def products(tile: Path) -> list[Path]:
    return sorted((tile / "S2" / "T31TEJ").iterdir(), key=lambda p: p.name.split("_")[1])


def s1_files(tile: Path) -> list[Path]:
    return sorted((tile / "S1" / "T31TEJ").glob("*_from-10to3dB.tif"))


def s1_date(path: Path) -> datetime:
    """The date in a prepared S1 name, s1x_<tile>_vvvh_<ASC|DES>_<orbit>_<yyyymmddthhmmss>_from-10to3dB.tif."""
    return datetime.strptime(Path(path).name.split("_")[5], "%Y%m%dt%H%M%S").replace(tzinfo=UTC)


def s1_near(tile: Path, date: datetime, hours: float = 72) -> list[str]:
    return [str(path) for path in s1_files(tile) if abs((s1_date(path) - date).total_seconds()) <= hours * 3600]


def s1_mosaic(paths: list[str], date: datetime) -> np.ndarray:
    """Independent S1 mosaic: per pixel, the image closest in time to ``date`` whose VV and VH are not 0."""
    by_distance = sorted(paths, key=lambda path: abs((s1_date(path) - date).total_seconds()))
    mosaic = np.zeros((*SHAPE, 2), np.uint16)
    for path in reversed(by_distance):  # the closest written last, on top
        image = read(Path(path))
        valid = (image != 0).all(axis=-1)
        mosaic[valid] = image[valid]
    return mosaic


def model_on_whole_images(model: Path, inputs: dict[str, np.ndarray], margin: int) -> dict[str, np.ndarray]:
    """The SavedModel run once on the whole inputs mirrored by ``margin`` 10 m pixels (half at 20 m), its
    outputs cropped back and rounded to int16 as the processors write them. SHAPE is a multiple of the
    models' size multiple (4), so no other padding is needed."""
    backend = SavedModelBackend(model)
    assert set(inputs) == set(backend.inputs)
    feed = {}
    for key, values in inputs.items():
        m = margin // 2 if key.startswith("s2_20m") or key == "dem" else margin  # 20 m keys
        feed[key] = np.pad(values.astype(np.float32), ((m, m), (m, m), (0, 0)), mode="symmetric")[np.newaxis]
    outputs = backend.run(feed, [name for name in ("s2_estim", "s2_20m_estim") if name in backend.outputs])
    cropped = {}
    for name, values in outputs.items():
        m = margin // 2 if name == "s2_20m_estim" else margin
        cropped[name] = np.clip(np.rint(values[0, m:-m, m:-m]), S2_NODATA + 1, 32767)
    return cropped


def export(tmp_path_factory, name: str, **params) -> Path:
    model = create_model(name, **params)
    return export_savedmodel(model.model(), model, tmp_path_factory.mktemp(name) / "savedmodel")


@pytest.fixture(scope="module")
def crga_os2(tmp_path_factory) -> Path:
    return export(tmp_path_factory, "crga_os2_unet", filters=4, depth=2, with_dem=True)


def grid_of(path: Path) -> tuple:
    with rasterio.open(path) as dataset:
        return dataset.crs, dataset.transform, dataset.shape


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return np.moveaxis(dataset.read(), 0, -1)


def crga_arguments(tile: Path, target: int, model: Path, output: Path, *extra: str) -> list[str]:
    s2 = products(tile)
    return [
        "--il_s2before", *map(str, s2[max(0, target - 3) : target]),
        "--il_s1before", *s1_near(tile, S2_DATES[max(0, target - 3)], 24 * 20),
        "--in_s2", str(s2[target]),
        "--il_s1", *s1_near(tile, S2_DATES[target]),
        "--il_s2after", *map(str, s2[target + 1 : target + 4]),
        "--il_s1after", *s1_near(tile, S2_DATES[target + 1], 24 * 20),
        "--dem", str(tile / "DEM" / "T31TEJ.tif"),
        "--savedmodel", str(model), "--output", str(output), *extra,
    ]  # fmt: skip


def test_crga_processor_output_is_the_model_on_the_prepared_inputs(tile, crga_os2, tmp_path):
    output = tmp_path / "out" / "reconstructed.tif"
    status = crga_processor.main(
        crga_arguments(tile, 2, crga_os2, output, "--ts", "64", "--pad", "16", "--write_intermediate")
    )
    assert status == 0
    target = products(tile)[2]
    assert grid_of(output) == grid_of(target / f"{target.name}_FRE_10m.tif")
    with rasterio.open(output) as dataset:
        assert dataset.dtypes[0] == "int16" and dataset.nodata == S2_NODATA
        assert dataset.descriptions == ("B2", "B3", "B4", "B8")
    estimate = read(output)
    # The same model applied to the whole prepared inputs (mirrored by the margin) gives the same image.
    backend = SavedModelBackend(crga_os2)
    feed = {}
    for key, channels in backend.inputs.items():
        values = read(output.with_name(f"reconstructed_input_{key}.tif")).astype(np.float32)
        margin = 16 // (2 if key == "dem" else 1)
        extra = (-values.shape[0]) % (4 // (2 if key == "dem" else 1))  # depth 2: sizes multiple of 4
        extra_cols = (-values.shape[1]) % (4 // (2 if key == "dem" else 1))
        assert values.shape[-1] == channels
        feed[key] = np.pad(values, ((margin, margin + extra), (margin, margin + extra_cols), (0, 0)), mode="symmetric")[
            np.newaxis
        ]
    whole = backend.run(feed, ["s2_estim"])["s2_estim"][0, 16 : 16 + SHAPE[0], 16 : 16 + SHAPE[1]]
    expected = np.clip(np.rint(whole), S2_NODATA + 1, 32767)
    valid = (estimate != S2_NODATA).all(axis=-1)
    assert valid.mean() > 0.95
    np.testing.assert_allclose(estimate[valid], expected[valid], atol=1)


def distance_to_clouds(cloudy: np.ndarray, reach: int = 8) -> np.ndarray:
    """Euclidean distance to the nearest cloudy pixel, by trying every offset up to ``reach`` (inf beyond)."""
    distance = np.full(cloudy.shape, np.inf)
    rows, cols = cloudy.shape
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            shifted = np.zeros_like(cloudy)
            shifted[max(0, -dy) : rows - max(0, dy), max(0, -dx) : cols - max(0, dx)] = cloudy[
                max(0, dy) : rows - max(0, -dy), max(0, dx) : cols - max(0, -dx)
            ]
            distance = np.where(shifted, np.minimum(distance, np.hypot(dy, dx)), distance)
    return distance


def test_keep_clear_blends_the_estimate_into_the_clear_input_pixels(tile, crga_os2, tmp_path):
    """Cloudy pixels and clear ones within 2 pixels (Euclidean) of a cloud: the estimate; between 2 and 7 pixels
    away: cross-faded (weight of the estimate 1 - (d - 2) / 5); 7 pixels or more: the input's own pixels."""
    kept_output, raw_output = tmp_path / "kept.tif", tmp_path / "raw.tif"
    assert crga_processor.main(crga_arguments(tile, 2, crga_os2, kept_output, "--keep_clear", "--ts", "64")) == 0
    assert crga_processor.main(crga_arguments(tile, 2, crga_os2, raw_output, "--ts", "64")) == 0
    target = products(tile)[2]
    source = read(target / f"{target.name}_FRE_10m.tif").astype(np.float64)
    cloudy = read(target / f"{target.name}_CLM_R1.tif")[..., 0] != 0
    kept, raw = read(kept_output), read(raw_output).astype(np.float64)
    distance = distance_to_clouds(cloudy)
    far, near = distance >= 7, distance <= 2
    assert far.sum() > 1000 and (~far & ~near).sum() > 100
    np.testing.assert_array_equal(kept[far], source[far])
    np.testing.assert_array_equal(kept[near], raw[near])
    fade = ~far & ~near
    weight = (1 - (distance[fade] - 2) / 5)[:, None]
    np.testing.assert_allclose(kept[fade], weight * raw[fade] + (1 - weight) * source[fade], atol=0.51)


def test_a_model_trained_on_holes_is_fed_holes_where_the_image_is_cloudy(tile, crga_os2, tmp_path):
    """decloud_model.json says "cloudy_pixels": "nodata": the image at t reaches the model with its cloud mask,
    dilated by 2 pixels (Euclidean), at no-data (-10000), and as it is elsewhere."""
    model = tmp_path / "holes_model"
    shutil.copytree(crga_os2, model)
    description = json.loads((model / "decloud_model.json").read_text())
    assert description["cloudy_pixels"] == "as_acquired"  # exported without same-date records
    (model / "decloud_model.json").write_text(json.dumps({**description, "cloudy_pixels": "nodata"}))
    output = tmp_path / "out.tif"
    assert crga_processor.main(crga_arguments(tile, 2, model, output, "--write_intermediate", "--ts", "64")) == 0
    fed = read(tmp_path / "out_input_s2_t.tif")
    target = products(tile)[2]
    source = read(target / f"{target.name}_FRE_10m.tif")
    holes = distance_to_clouds(read(target / f"{target.name}_CLM_R1.tif")[..., 0] != 0) <= 2
    assert holes.sum() == 54 * 64 - 4 * 3  # the 50 x 60 cloud grown by 2 pixels, 3 pixels cut off each corner
    assert (fed[holes] == -10000).all()
    np.testing.assert_array_equal(fed[~holes], source[~holes])


@pytest.fixture(scope="module")
def crga_os1(tmp_path_factory) -> Path:
    return export(tmp_path_factory, "crga_os1_unet", filters=4, depth=2)


@pytest.fixture(scope="module")
def foreign_model(tmp_path_factory) -> Path:
    """A SavedModel with the Meraner inputs but none of the decloud outputs."""
    import keras

    s1, s2 = keras.Input((None, None, 2), name="s1_t"), keras.Input((None, None, 4), name="s2_t")
    out = keras.layers.Conv2D(4, 1, name="cloudfree")(keras.layers.Concatenate()([s1, s2]))
    path = tmp_path_factory.mktemp("foreign") / "savedmodel"
    keras.Model({"s1_t": s1, "s2_t": s2}, {"cloudfree": out}).export(str(path), verbose=False)
    return path


def expect_failure(main, arguments: list[str], culprit: str, capsys) -> None:
    assert main(arguments) == 1
    assert culprit in capsys.readouterr().err


def test_bad_inputs_fail_without_output(tile, crga_os2, crga_os1, foreign_model, tmp_path, capsys):
    output = tmp_path / "bad.tif"
    # An S1 image on another grid (5 m off).
    origin = (DEFAULT_ORIGIN[0] + 5, DEFAULT_ORIGIN[1])
    _, vh = make_s1tiling_pair(tmp_path / "raw", acquired=S1_DATES[5], shape=SHAPE, origin=origin)
    shifted = prepare_s1_image(vh, tmp_path / "S1other")
    arguments = crga_arguments(tile, 2, crga_os2, output)
    arguments[arguments.index("--il_s1") + 1] = str(shifted)
    expect_failure(crga_processor.main, arguments, shifted.name, capsys)
    # The OS1 model reads neither tp1 nor the DEM that this run feeds it.
    expect_failure(crga_processor.main, crga_arguments(tile, 2, crga_os1, output), "has no input", capsys)
    # A model without the decloud outputs.
    s2 = products(tile)
    arguments = ["--il_s1", *s1_near(tile, S2_DATES[1]), "--in_s2", str(s2[1])]
    arguments += ["--savedmodel", str(foreign_model), "--output", str(output)]
    expect_failure(meraner_processor.main, arguments, "has no output ['s2_estim']", capsys)
    # An empty date range.
    series = ["--s2_dir", str(tile / "S2" / "T31TEJ"), "--s1_dir", str(tile / "S1" / "T31TEJ")]
    series += ["--model", str(crga_os1), "--out_dir", str(tmp_path / "series"), "--start", "2022-01-01"]
    expect_failure(crga_timeseries_processor.main, series, "no prepared Sentinel-2 product", capsys)
    assert not output.exists() and not (tmp_path / "series").exists()
    assert not list(tmp_path.glob(".decloud-tmp*"))


def test_meraner_processor_output_is_the_model_on_independently_read_inputs(tile, tmp_path_factory, tmp_path):
    model = export(tmp_path_factory, "meraner_unet", filters=4, depth=2, with_20m_bands=True)
    s2 = products(tile)
    target, s1 = s2[3], s1_near(tile, S2_DATES[3])
    assert [s1_date(path).day for path in s1] == [15, 17, 19]
    output, output_20m = tmp_path / "m.tif", tmp_path / "m20.tif"
    arguments = ["--il_s1", *s1, "--in_s2", str(target), "--savedmodel", str(model), "--output", str(output)]
    arguments += ["--output_20m", str(output_20m), "--with_20m_bands", "--ts", "64", "--pad", "16"]
    assert meraner_processor.main(arguments) == 0
    assert grid_of(output) == grid_of(target / f"{target.name}_FRE_10m.tif")
    assert grid_of(output_20m) == grid_of(target / f"{target.name}_FRE_20m.tif")
    mosaic = s1_mosaic(s1, S2_DATES[3])
    hole = (read(Path(s1[1])) == 0).all(axis=-1)
    assert hole.sum() == 40 * 50
    np.testing.assert_array_equal(mosaic[hole], read(Path(s1[2]))[hole])  # 19 June fills 17 June's hole
    inputs = {
        "s2_t": read(target / f"{target.name}_FRE_10m.tif"),
        "s2_20m_t": read(target / f"{target.name}_FRE_20m.tif"),
        "s1_t": mosaic,
    }
    expected = model_on_whole_images(model, inputs, 16)
    np.testing.assert_allclose(read(output), expected["s2_estim"], atol=1)
    np.testing.assert_allclose(read(output_20m), expected["s2_20m_estim"], atol=1)


def test_monthly_synthesis_processor_output_is_the_model_on_independently_read_inputs(tile, tmp_path_factory, tmp_path):
    model = export(tmp_path_factory, "monthly_synthesis_6_s2s1_images", filters=4, depth=2)
    output = tmp_path / "june.tif"
    arguments = ["--il_s2", *map(str, products(tile)), "--il_s1", *map(str, s1_files(tile))]
    arguments += ["--year", "2021", "--month", "6", "--savedmodel", str(model), "--output", str(output)]
    assert monthly_synthesis_processor.main([*arguments, "--ts", "64", "--pad", "16"]) == 0
    first = products(tile)[0]
    assert grid_of(output) == grid_of(first / f"{first.name}_FRE_10m.tif")
    # The six June products, in date order, each with the S1 mosaic of the images within 72 h of it.
    inputs = {}
    for index, (product, date) in enumerate(zip(products(tile), S2_DATES, strict=True)):
        inputs[f"s2_d{index}"] = read(product / f"{product.name}_FRE_10m.tif")
        inputs[f"s1_d{index}"] = s1_mosaic(s1_near(tile, date), date)
    expected = model_on_whole_images(model, inputs, 16)["s2_estim"]
    # Every pixel is seen by some date, so the synthesis covers the whole image.
    estimate = read(output)
    assert (estimate != S2_NODATA).all()
    np.testing.assert_allclose(estimate, expected, atol=1)
    arguments[arguments.index("--month") + 1] = "7"
    assert monthly_synthesis_processor.main(arguments) == 1


def test_an_output_is_skipped_replaced_or_refused(tile, crga_os2, tmp_path, capsys):
    output = tmp_path / "estimate.tif"
    arguments = crga_arguments(tile, 2, crga_os2, output, "--ts", "64")
    assert crga_processor.main(arguments) == 0
    inode = output.stat().st_ino
    assert crga_processor.main(arguments) == 0 and output.stat().st_ino == inode  # skipped
    assert crga_processor.main([*arguments, "--overwrite"]) == 0 and output.stat().st_ino != inode
    mine = tmp_path / "mine.tif"
    mine.write_bytes(b"my own file")
    assert crga_processor.main(crga_arguments(tile, 2, crga_os2, mine, "--ts", "64", "--overwrite")) == 1
    assert f"{mine} exists and was not written complete by decloud" in capsys.readouterr().err
    assert mine.read_bytes() == b"my own file"


def test_a_time_series_writes_nothing_when_an_output_is_not_decloud_s(tile, crga_os1, tmp_path, capsys):
    out = tmp_path / "series"
    out.mkdir()
    mine = out / f"{products(tile)[3].name}_reconstructed_FRE_10m.tif"
    mine.write_bytes(b"my own file")
    arguments = ["--s2_dir", str(tile / "S2" / "T31TEJ"), "--s1_dir", str(tile / "S1" / "T31TEJ")]
    arguments += ["--model", str(crga_os1), "--out_dir", str(out), "--start", "2021-06-05", "--end", "2021-06-20"]
    assert crga_timeseries_processor.main([*arguments, "--overwrite"]) == 1
    assert f"{mine} exists and was not written complete by decloud" in capsys.readouterr().err
    assert list(out.iterdir()) == [mine] and mine.read_bytes() == b"my own file"


def test_crga_time_series(tile, crga_os1, tmp_path):
    out = tmp_path / "series"
    base = ["--s2_dir", str(tile / "S2" / "T31TEJ"), "--s1_dir", str(tile / "S1" / "T31TEJ")]
    base += ["--model", str(crga_os1), "--out_dir", str(out), "--ts", "64"]
    assert crga_timeseries_processor.main([*base, "--start", "2021-06-05", "--end", "2021-06-20"]) == 0
    written = sorted(path.name for path in out.iterdir())
    # 7, 12 and 17 June are in the period; each has an earlier date.
    assert written == sorted(f"{p.name}_reconstructed_FRE_10m.tif" for p in products(tile)[1:4])
    stamp = (out / written[0]).stat().st_mtime_ns
    assert crga_timeseries_processor.main([*base, "--end", "2021-06-20"]) == 0  # 2 June: no earlier date
    assert (out / written[0]).stat().st_mtime_ns == stamp
    assert crga_timeseries_processor.main([*base, "--end", "2021-06-08", "--overwrite"]) == 0
    assert (out / written[0]).stat().st_mtime_ns != stamp
    # An area: snapped to the 10 m grid (and to even pixels).
    area = ["--ulx", str(DEFAULT_ORIGIN[0] + 205), "--uly", str(DEFAULT_ORIGIN[1] - 100)]
    area += ["--lrx", str(DEFAULT_ORIGIN[0] + 1000), "--lry", str(DEFAULT_ORIGIN[1] - 800)]
    subset_dir = tmp_path / "subset"
    base[base.index("--out_dir") + 1] = str(subset_dir)
    assert crga_timeseries_processor.main([*base, "--start", "2021-06-12", "--end", "2021-06-12", *area]) == 0
    (subset,) = subset_dir.iterdir()
    _, transform, shape = grid_of(subset)
    assert (transform.c, transform.f) == (DEFAULT_ORIGIN[0] + 200, DEFAULT_ORIGIN[1] - 100)
    assert shape == (70, 80)


# --- Margins: the receptive field measured at export --------------------------------------------


def meraner_arguments(tile: Path, model: Path, output: Path, *extra: str) -> list[str]:
    s2 = products(tile)
    return ["--il_s1", *s1_near(tile, S2_DATES[3]), "--in_s2", str(s2[3]), "--savedmodel", str(model),
            "--output", str(output), *extra]  # fmt: skip


def test_default_margin_of_a_depth_6_unet_makes_the_output_tile_invariant(tile, tmp_path_factory, tmp_path, caplog):
    # Depth 6: pooling down to 1/64 and back, a receptive field of about 130 pixels (twice the old default 64).
    # With untrained weights the far pixels' share of an output is below the int16 rounding: kernels x1.5
    # make it tens of units (with this seed, up to 131 with a 64-pixel margin), so that a margin narrower
    # than the receptive field shows.
    keras.utils.set_random_seed(6)
    network = create_model("meraner_unet", filters=2, depth=6)
    keras_model = network.model()
    for weight in keras_model.weights:
        if "kernel" in weight.path:
            weight.assign(weight.numpy() * 1.5)
    model = export_savedmodel(keras_model, network, tmp_path_factory.mktemp("depth6") / "savedmodel")
    description = json.loads((model / "decloud_model.json").read_text())
    radius = description["receptive_field"]["radius_10m_pixels"]
    assert 120 <= radius <= 200 and description["size_multiple"] == 64
    whole, tiled = tmp_path / "whole.tif", tmp_path / "tiled.tif"
    assert meraner_processor.main(meraner_arguments(tile, model, whole, "--ts", "256")) == 0  # one tile
    assert meraner_processor.main(meraner_arguments(tile, model, tiled, "--ts", "64")) == 0  # 3 x 3 tiles
    assert np.abs(read(tiled).astype(np.int32) - read(whole)).max() <= 1
    assert "narrower than the receptive field" not in caplog.text
    narrow = tmp_path / "narrow.tif"
    assert meraner_processor.main(meraner_arguments(tile, model, narrow, "--ts", "64", "--pad", "64")) == 0
    assert f"--pad 64 is narrower than the receptive field of {model} ({radius} pixels)" in caplog.text
    assert np.abs(read(narrow).astype(np.int32) - read(whole)).max() > 10


def test_a_savedmodel_without_measured_receptive_field_is_measured_at_load(tmp_path_factory):
    model = export(tmp_path_factory, "meraner_original", filters=4, blocks=1)
    description = json.loads((model / "decloud_model.json").read_text())
    # conv 3x3, one residual block (two 3x3), head 3x3: radius 1 + 2 + 1 = 4 pixels
    assert description["receptive_field"] == {"radius_10m_pixels": 4, "at_least": False}
    assert description["tiling"]["margin_10m_pixels"] == 4
    del description["receptive_field"], description["tiling"]
    (model / "decloud_model.json").write_text(json.dumps(description))
    loaded = LoadedModel.load(model)
    assert loaded.receptive_field == 4 and loaded.margin(None) == 4 and loaded.margin(6) == 6


def test_a_model_with_timestamp_inputs_is_refused_in_one_line(tile, tmp_path_factory, tmp_path, capsys):
    model = export(tmp_path_factory, "gapfilling")
    output = tmp_path / "gapfilled.tif"
    assert meraner_processor.main(meraner_arguments(tile, model, output)) == 1
    error = capsys.readouterr().err.strip()
    assert "takes inputs that are not images (s2_timestamp_t, s2_timestamp_tm1, s2_timestamp_tp1)" in error
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert not output.exists()


@pytest.mark.parametrize("fmt", ["savedmodel", pytest.param("onnx", marks=pytest.mark.slow)])
def test_the_console_script_refuses_a_model_with_timestamp_inputs_in_one_line(fmt, tile, tmp_path_factory, tmp_path):
    """As a user runs it (the installed ``decloud``, without the test run's TensorFlow log level, so the command
    hides TensorFlow's start-up lines itself): the exact line, exit 1."""
    model = savedmodel = export(tmp_path_factory, "gapfilling")
    if fmt == "onnx":
        model = tmp_path / "gapfilling.onnx"
        export_onnx(savedmodel, model)
    script = shutil.which("decloud")
    assert script is not None, "the decloud console script is not on PATH: pip install -e '.[test]'"
    output = tmp_path / "gapfilled.tif"
    user_environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    arguments = meraner_arguments(tile, model, output)
    command = [script, "meraner-processor", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=user_environment)
    assert done.returncode == 1
    assert done.stderr == (
        f"decloud meraner-processor: error: model {model} takes inputs that are not images (s2_timestamp_t, "
        "s2_timestamp_tm1, s2_timestamp_tp1): the processors feed images only; score such a model with decloud "
        "evaluate\n"
    )
    assert done.stdout == "" and not output.exists() and not list(tmp_path.glob("gapfilled*"))


# --- Time series: the dates that lack inputs -----------------------------------------------------


def test_clear_first_and_last_dates_are_written_as_themselves_with_keep_clear(tile, crga_os2, tmp_path, caplog):
    out = tmp_path / "series"
    arguments = ["--s2_dir", str(tile / "S2" / "T31TEJ"), "--s1_dir", str(tile / "S1" / "T31TEJ")]
    arguments += ["--dem", str(tile / "DEM" / "T31TEJ.tif"), "--model", str(crga_os2), "--out_dir", str(out)]
    assert crga_timeseries_processor.main([*arguments, "--ts", "64", "--keep_clear"]) == 0
    s2 = products(tile)
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{p.name}_reconstructed_FRE_10m.tif" for p in s2)
    # 2 June has no earlier date and 27 June no later one; both are clear: written as themselves.
    for product in (s2[0], s2[-1]):
        written = out / f"{product.name}_reconstructed_FRE_10m.tif"
        assert grid_of(written) == grid_of(product / f"{product.name}_FRE_10m.tif")
        np.testing.assert_array_equal(read(written), read(product / f"{product.name}_FRE_10m.tif"))


def test_a_cloudy_date_lacking_inputs_is_named_with_its_reason(tile, crga_os2, tmp_path, caplog):
    # A series of the two cloudy dates only (12 June: a 50 x 60 cloud; 17 June: the first 40 columns).
    series = tmp_path / "T31TEJ"
    series.mkdir()
    cloudy = products(tile)[2:4]
    for product in cloudy:
        (series / product.name).symlink_to(product)
    arguments = ["--s2_dir", str(series), "--s1_dir", str(tile / "S1" / "T31TEJ"), "--keep_clear"]
    arguments += ["--dem", str(tile / "DEM" / "T31TEJ.tif"), "--model", str(crga_os2), "--out_dir", str(tmp_path / "o")]
    assert crga_timeseries_processor.main(arguments) == 1
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert (
        f"{cloudy[0].name} not reconstructed: no earlier S2 product, and {50 * 60} cloudy pixels keep it from "
        "being written as itself" in warnings
    )
    assert (
        f"{cloudy[1].name} not reconstructed: no later S2 product, and {136 * 40} cloudy pixels keep it "
        "from being written as itself" in warnings
    )
