"""The processors end to end on generated prepared products: outputs on the input grid, values equal to
the model applied to the inputs they prepared, keep-clear, time series, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from decloud.models.export import export_savedmodel
from decloud.models.registry import create_model
from decloud.preprocessing.constants import S2_NODATA
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
from decloud.testing.dem import make_dem
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN, make_theia_product

SHAPE = (136, 168)  # not a multiple of the tiles
START = datetime(2021, 6, 2, 10, 30, tzinfo=UTC)
S2_DATES = [START + timedelta(days=5 * i) for i in range(6)]  # 2, 7, 12, 17, 22, 27 June
S1_DATES = [(START + timedelta(days=2 * i - 1)).replace(hour=6) for i in range(15)]
CLOUDS = {2: [Rect(30, 40, 50, 60)], 3: [Rect(0, 0, 136, 40)]}


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
        _, vh = make_s1tiling_pair(root / "raw_s1", acquired=date, shape=SHAPE, seed=index)
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


def s1_near(tile: Path, date: datetime, hours: float = 72) -> list[str]:
    near = []
    for path in s1_files(tile):
        stamp = datetime.strptime(path.name.split("_")[5], "%Y%m%dt%H%M%S").replace(tzinfo=UTC)
        if abs((stamp - date).total_seconds()) <= hours * 3600:
            near.append(str(path))
    return near


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


def test_keep_clear_keeps_the_clear_input_pixels(tile, crga_os2, tmp_path):
    output = tmp_path / "kept.tif"
    assert crga_processor.main(crga_arguments(tile, 2, crga_os2, output, "--keep_clear", "--ts", "64")) == 0
    target = products(tile)[2]
    source = read(target / f"{target.name}_FRE_10m.tif")
    clear = read(target / f"{target.name}_CLM_R1.tif")[..., 0] == 0
    estimate = read(output)
    np.testing.assert_array_equal(estimate[clear], source[clear])
    assert (estimate[~clear] != source[~clear]).any()


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


def test_meraner_processor(tile, tmp_path_factory, tmp_path):
    model = export(tmp_path_factory, "meraner_unet", filters=4, depth=2, with_20m_bands=True)
    s2 = products(tile)
    output, output_20m = tmp_path / "m.tif", tmp_path / "m20.tif"
    arguments = ["--il_s1", *s1_near(tile, S2_DATES[3]), "--in_s2", str(s2[3]), "--savedmodel", str(model)]
    arguments += ["--output", str(output), "--output_20m", str(output_20m), "--with_20m_bands", "--ts", "64"]
    assert meraner_processor.main(arguments) == 0
    assert grid_of(output) == grid_of(s2[3] / f"{s2[3].name}_FRE_10m.tif")
    assert grid_of(output_20m) == grid_of(s2[3] / f"{s2[3].name}_FRE_20m.tif")
    assert (read(output) != S2_NODATA).all() and (read(output_20m) != S2_NODATA).all()


def test_monthly_synthesis_processor(tile, tmp_path_factory, tmp_path):
    model = export(tmp_path_factory, "monthly_synthesis_6_s2s1_images", filters=4, depth=2)
    output = tmp_path / "june.tif"
    arguments = ["--il_s2", *map(str, products(tile)), "--il_s1", *map(str, s1_files(tile))]
    arguments += ["--year", "2021", "--month", "6", "--savedmodel", str(model), "--output", str(output)]
    assert monthly_synthesis_processor.main(arguments) == 0
    first = products(tile)[0]
    assert grid_of(output) == grid_of(first / f"{first.name}_FRE_10m.tif")
    # Every pixel is seen by some date, so the synthesis covers the whole image.
    assert (read(output) != S2_NODATA).all()
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
