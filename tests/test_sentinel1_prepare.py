"""Sentinel-1 preparation: the prepared stack against numpy on the source files (generated and real pairs),
against Orfeo ToolBox BandMath when it is installed, per-patch no-data counts, bad inputs, reruns."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from decloud.core.errors import CorruptRasterError
from decloud.preprocessing import sentinel1_prepare
from decloud.preprocessing.sentinel1_prepare import main, prepare_s1_image
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import DEFAULT_ORIGIN

ACQUIRED = datetime(2020, 1, 1, 6, 0, 0)
PREPARED = "s1a_31TEJ_vvvh_ASC_030_20200101t060000_from-10to3dB.tif"
STATS = "s1a_31TEJ_vvvh_ASC_030_20200101t060000_from-10to3dB_STATS_NODATA_640m.tif"
REAL_VH = "s1/s1tiling/T31TXX/s1a_31TXX_vh_ASC_030_20200101t060000.tif"
#: Chosen no-data areas of the generated pair: a 10x10 block in VV only, an 8x8 block in VH only that
#: straddles the corner of four patches.
VV_NODATA = Rect(row=0, col=0, height=10, width=10)
VH_NODATA = Rect(row=60, col=60, height=8, width=8)


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


def numpy_encoding(sigma0: np.ndarray) -> np.ndarray:
    """The formula of DESIGN.md written directly in numpy: 0 stays 0, else the clipped, rounded stretch."""
    x = sigma0.astype(np.float64)
    stretched = np.rint(np.clip(1 + 65534 / 13 * (np.log(np.abs(x) + 1e-6) + 10), 1, 65535))
    return np.where(x == 0, 0, stretched).astype(np.uint16)


def expected_stack(vh_path: Path) -> np.ndarray:
    vv_path = vh_path.with_name(vh_path.name.replace("_vh_", "_vv_"))
    return np.stack([numpy_encoding(read_band(vv_path)), numpy_encoding(read_band(vh_path))])


def make_pair(folder: Path, vv_nodata: tuple[Rect, ...] = (), vh_nodata: tuple[Rect, ...] = (), **kwargs) -> Path:
    """A generated pair whose vv and vh have their own no-data areas; return the vh path."""
    make_s1tiling_pair(folder, acquired=ACQUIRED, nodata=vv_nodata, **kwargs)
    _, vh = make_s1tiling_pair(folder / "vh", acquired=ACQUIRED, nodata=vh_nodata, **kwargs)
    moved = vh.rename(folder / vh.name)
    shutil.rmtree(folder / "vh")
    return moved


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, hidden temporary files included."""
    return [path for path in folder.rglob("*") if not path.is_dir()]


@pytest.fixture
def generated_vh(tmp_path: Path) -> Path:
    return make_pair(tmp_path / "in", (VV_NODATA,), (VH_NODATA,), shape=(200, 150))


@pytest.mark.parametrize("window_size", [64, 1024])
def test_generated_pair_is_encoded_per_band(generated_vh: Path, tmp_path: Path, window_size: int) -> None:
    prepared = prepare_s1_image(generated_vh, tmp_path / "out", window_size=window_size)

    assert prepared == tmp_path / "out" / "T31TEJ" / PREPARED
    with rasterio.open(prepared) as dataset, rasterio.open(generated_vh) as source:
        assert dataset.dtypes == ("uint16", "uint16")
        assert dataset.descriptions == ("VV", "VH")
        assert dataset.nodata == 0
        assert dataset.profile["compress"] == "deflate"
        assert (dataset.crs, dataset.transform, dataset.shape) == (source.crs, source.transform, source.shape)
        image = dataset.read()
    np.testing.assert_array_equal(image, expected_stack(generated_vh))
    # VV band first: 0 only in the VV no-data block, where VH still holds its value; and the reverse.
    assert (image[0, :10, :10] == 0).all() and (image[1, :10, :10] > 0).all()
    assert (image[1, 60:68, 60:68] == 0).all() and (image[0, 60:68, 60:68] > 0).all()
    assert (image == 0).sum(axis=(1, 2)).tolist() == [100, 64]


def test_nodata_counts_per_patch(generated_vh: Path, tmp_path: Path) -> None:
    prepared = prepare_s1_image(generated_vh, tmp_path / "out", window_size=64)

    with rasterio.open(prepared.with_name(STATS)) as dataset:
        assert dataset.dtypes == ("uint16",)
        assert dataset.crs.to_epsg() == 32631
        assert dataset.transform == Affine(640.0, 0.0, DEFAULT_ORIGIN[0], 0.0, -640.0, DEFAULT_ORIGIN[1])
        counts = dataset.read(1)
    assert counts.shape == (4, 3)  # ceil(200 / 64) x ceil(150 / 64)
    assert counts[0, 0] == 100 + 16  # the VV block, and a 4x4 corner of the VH block
    assert counts[0, 1] == counts[1, 0] == counts[1, 1] == 16  # the other corners of the VH block
    assert counts[2, 1] == 0  # a full patch without no data
    assert counts[3, 0] == 64 * 64 - 8 * 64  # last patch row: 8 rows inside the image
    assert counts[3, 2] == 64 * 64 - 8 * 22  # last patch: 8 rows x 22 columns inside the image
    assert counts.sum() == 100 + 64 + (256 * 192 - 200 * 150)


def test_values_that_are_not_backscatter_are_no_data(generated_vh: Path, tmp_path: Path) -> None:
    """+inf, -inf, 1e30 and 1e5 (+50 dB) in the inputs are no data, counted as such; +30 dB saturates."""
    vv_path = generated_vh.with_name(generated_vh.name.replace("_vh_", "_vv_"))
    with rasterio.open(vv_path, "r+") as dataset:
        values = dataset.read(1)
        values[100, 100:105] = [np.inf, -np.inf, 1e30, 1e5, 1e3]
        dataset.write(values, 1)

    prepared = prepare_s1_image(generated_vh, tmp_path / "out")

    image = read_band(prepared)
    assert image[100, 100:105].tolist() == [0, 0, 0, 0, 65535]
    counts = read_band(prepared.with_name(STATS))
    assert counts[1, 1] == 16 + 4  # a corner of the VH block, and the four values
    assert counts.sum() == 100 + 64 + (256 * 192 - 200 * 150) + 4


def test_unknown_time_and_tile_folder_given(tmp_path: Path) -> None:
    """S1Tiling's txxxxxx is kept in the name; an output folder already named after the tile is used as is."""
    _, vh = make_s1tiling_pair(tmp_path / "in", acquired=ACQUIRED, time_unknown=True, shape=(64, 64))
    assert vh.name == "s1a_31TEJ_vh_ASC_030_20200101txxxxxx.tif"

    prepared = prepare_s1_image(vh, tmp_path / "T31TEJ")

    assert prepared == tmp_path / "T31TEJ" / "s1a_31TEJ_vvvh_ASC_030_20200101txxxxxx_from-10to3dB.tif"
    with rasterio.open(prepared) as dataset:
        np.testing.assert_array_equal(dataset.read(), expected_stack(vh))


@pytest.fixture(scope="module")
def real_prepared(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_s1_image(shared_data / REAL_VH, tmp_path_factory.mktemp("s1_out"))


def test_real_pair_matches_numpy(real_prepared: Path, shared_data: Path) -> None:
    vh_path = shared_data / REAL_VH
    assert real_prepared.name == "s1a_31TXX_vvvh_ASC_030_20200101t060000_from-10to3dB.tif"
    assert real_prepared.parent.name == "T31TXX"
    with rasterio.open(real_prepared) as dataset:
        image = dataset.read()
    np.testing.assert_array_equal(image, expected_stack(vh_path))

    # Known properties of the real pair: no zero pixel; 222 VV pixels capped at 0 dB (sigma0 1.0) encode as
    # round(1 + 65534/13 * (ln(1 + 1e-6) + 10)) = round(50411.77) = 50412, the VV maximum.
    assert (image > 0).all()
    assert image[0].max() == 50412
    assert (read_band(vh_path.with_name(vh_path.name.replace("_vh_", "_vv_"))) == 1.0).sum() == 222
    assert (image[0] == 50412).sum() >= 222
    assert image[1].max() == numpy_encoding(np.array([read_band(vh_path).max()]))[0]

    stats = read_band(real_prepared.with_name(real_prepared.stem + "_STATS_NODATA_640m.tif"))
    np.testing.assert_array_equal(stats, np.zeros((4, 4)))  # 256x256: 4x4 full, valid patches


@pytest.mark.skipif(shutil.which("otbcli_BandMath") is None, reason="Orfeo ToolBox otbcli_BandMath not on PATH")
def test_real_vv_agrees_with_otb_bandmath(real_prepared: Path, shared_data: Path, tmp_path: Path) -> None:
    """OTB evaluates the same expression (in float32, so up to ~2e-3 off before rounding); ours is rounded."""
    vv_path = shared_data / REAL_VH.replace("_vh_", "_vv_")
    otb_output = tmp_path / "otb_vv.tif"
    expression = "im1b1 == 0 ? 0 : max(1, min(65535, 1 + 65534 / 13 * (ln(abs(im1b1) + 1e-6) + 10)))"
    completed = subprocess.run(
        ["otbcli_BandMath", "-il", str(vv_path), "-out", str(otb_output), "double", "-exp", expression],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    otb = read_band(otb_output)
    ours = read_band(real_prepared).astype(np.float64)
    assert np.abs(ours - otb).max() <= 0.5 + 1e-3


def test_idempotent_and_overwrite(generated_vh: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    arguments = ["--input_s1_vh", str(generated_vh), "--out_s1_dir", str(out)]
    assert main(arguments) == 0
    outputs = [out / "T31TEJ" / PREPARED, out / "T31TEJ" / STATS]
    for path in outputs:
        os.utime(path, ns=(10**18, 10**18))

    assert main(arguments) == 0
    assert [path.stat().st_mtime_ns for path in outputs] == [10**18, 10**18]

    assert main([*arguments, "--overwrite"]) == 0
    assert all(path.stat().st_mtime_ns != 10**18 for path in outputs)
    with rasterio.open(outputs[0]) as dataset:
        np.testing.assert_array_equal(dataset.read(), expected_stack(generated_vh))
    assert sorted(files_under(out)) == sorted(outputs)


def test_missing_statistics_are_rebuilt(generated_vh: Path, tmp_path: Path) -> None:
    """A rerun redoes an image whose pair of outputs is incomplete."""
    prepared = prepare_s1_image(generated_vh, tmp_path / "out")
    prepared.with_name(STATS).unlink()

    prepare_s1_image(generated_vh, tmp_path / "out")

    assert read_band(prepared.with_name(STATS))[0, 0] == 116


def _missing_vh(folder: Path) -> tuple[Path, list[Path]]:
    vh = folder / "s1a_31TEJ_vh_ASC_030_20200101t060000.tif"
    return vh, [vh]


def _vh_without_vv(folder: Path) -> tuple[Path, list[Path]]:
    vv, vh = make_s1tiling_pair(folder, acquired=ACQUIRED, shape=(64, 64))
    vv.unlink()
    return vh, [vv]


def _different_grids(folder: Path) -> tuple[Path, list[Path]]:
    _, vh = make_s1tiling_pair(folder, acquired=ACQUIRED, shape=(64, 64))
    shifted, _ = make_s1tiling_pair(folder / "other", acquired=ACQUIRED, shape=(64, 64), origin=(600010.0, 4900020.0))
    vv = shifted.replace(folder / shifted.name)
    return vh, [vv, vh]


def _corrupt_vv(folder: Path) -> tuple[Path, list[Path]]:
    vv, vh = make_s1tiling_pair(folder, acquired=ACQUIRED, shape=(64, 64))
    vv.write_bytes(b"II*\x00 this is not a GeoTIFF " * 20)
    return vh, [vv]


def _corrupt_vh(folder: Path) -> tuple[Path, list[Path]]:
    _, vh = make_s1tiling_pair(folder, acquired=ACQUIRED, shape=(64, 64))
    vh.write_bytes(os.urandom(4096))
    return vh, [vh]


def _not_s1tiling_name(folder: Path) -> tuple[Path, list[Path]]:
    _, vh = make_s1tiling_pair(folder, acquired=ACQUIRED, shape=(64, 64))
    return vh.rename(folder / "sigma0_vh.tif"), [folder / "sigma0_vh.tif"]


def _vv_given_as_vh(folder: Path) -> tuple[Path, list[Path]]:
    vv, _ = make_s1tiling_pair(folder, acquired=ACQUIRED, shape=(64, 64))
    return vv, [vv]


def _two_band_vh(folder: Path) -> tuple[Path, list[Path]]:
    _, vh = make_s1tiling_pair(folder, acquired=ACQUIRED, shape=(64, 64))
    with rasterio.open(vh) as source:
        profile = {**source.profile, "count": 2}
    with rasterio.open(vh, "w", **profile) as target:
        target.write(np.ones((2, 64, 64), dtype=np.float32))
    return vh, [vh]


@pytest.mark.parametrize(
    "make_bad_input",
    [
        _missing_vh,
        _vh_without_vv,
        _different_grids,
        _corrupt_vv,
        _corrupt_vh,
        _not_s1tiling_name,
        _vv_given_as_vh,
        _two_band_vh,
    ],
)
def test_bad_input_fails_cleanly(make_bad_input, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source_dir = tmp_path / "in"
    source_dir.mkdir()
    vh, culprits = make_bad_input(source_dir)
    out = tmp_path / "out"

    status = main(["--input_s1_vh", str(vh), "--out_s1_dir", str(out)])

    assert status == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("decloud s1-prepare: error: ")
    for culprit in culprits:
        assert str(culprit) in stderr
    assert not out.exists() or files_under(out) == []


def test_failure_while_writing_leaves_no_file(
    generated_vh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read error in the middle of the image (after some windows were written) removes both outputs."""
    read_window = sentinel1_prepare.read_window
    calls = []

    def failing_read(dataset, window, *args, **kwargs):
        calls.append(window)
        if len(calls) > 5:
            raise CorruptRasterError(dataset.name, "simulated read error")
        return read_window(dataset, window, *args, **kwargs)

    monkeypatch.setattr(sentinel1_prepare, "read_window", failing_read)
    out = tmp_path / "out"

    with pytest.raises(CorruptRasterError, match="simulated read error"):
        prepare_s1_image(generated_vh, out, window_size=64)
    assert len(calls) == 6
    assert files_under(out) == []


def test_command_line_exit_status(generated_vh: Path, tmp_path: Path) -> None:
    """The module and the umbrella command, as a user runs them."""
    out = tmp_path / "out"
    missing = tmp_path / "s1a_31TEJ_vh_ASC_030_20200102t060000.tif"
    module = "decloud.preprocessing.sentinel1_prepare"
    failed = subprocess.run(
        [sys.executable, "-m", module, "--input_s1_vh", str(missing), "--out_s1_dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1
    assert str(missing) in failed.stderr
    assert not out.exists()

    succeeded = subprocess.run(
        [sys.executable, "-m", "decloud", "s1-prepare", "--input_s1_vh", str(generated_vh), "--out_s1_dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert succeeded.returncode == 0, succeeded.stderr
    with rasterio.open(out / "T31TEJ" / PREPARED) as dataset:
        np.testing.assert_array_equal(dataset.read(), expected_stack(generated_vh))
