"""Failed writes are never published: a GeoTIFF whose last writes were lost (full disk: rasterio's close()
does not raise) is caught by the check of the written file's blocks on every raster-writing path, reported
in one line naming the file, and nothing is left under the final name. Checked with a fault-injecting close
(everywhere), with blocks placed as failed writes leave them, and on a real full file system (a small tmpfs,
when mounting is permitted)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.io
from affine import Affine

from decloud.core.constants import S2_NODATA
from decloud.core.errors import OutputWriteError
from decloud.core.products import s1_nodata_stats_path
from decloud.core.raster import Grid, geotiff_profile, verify_geotiff, write_array
from decloud.preprocessing import dem_prepare, generate_roi_rasters, sentinel1_prepare, sentinel2_prepare
from decloud.production.backends import ModelBackend
from decloud.production.sources import RasterSource
from decloud.production.streaming import OutputSpec, StreamingEngine
from decloud.testing.dem import make_dem
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import make_theia_product

CRS = "EPSG:32631"
TRANSFORM = Affine(10, 0, 600000, 0, -10, 4900020)
ACQUIRED = datetime(2020, 1, 1, 6)


def write_test_tiff(path: Path, **creation: object) -> np.ndarray:
    values = np.arange(2 * 300 * 300, dtype=np.uint16).reshape(2, 300, 300)
    profile = geotiff_profile(width=300, height=300, count=2, dtype="uint16", crs=CRS, transform=TRANSFORM)
    with rasterio.open(path, "w", **profile, **creation) as dataset:
        dataset.write(values)
    return values


def test_a_complete_file_passes(tmp_path: Path) -> None:
    write_test_tiff(tmp_path / "a.tif")
    verify_geotiff(tmp_path / "a.tif")


def test_a_file_cut_short_fails_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    write_test_tiff(path)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 100)
    with pytest.raises(OutputWriteError, match=f"cannot write {path}: "):
        verify_geotiff(path)


def test_a_block_never_written_fails(tmp_path: Path) -> None:
    """GDAL would read a block missing from the directory as zeros without any error."""
    path = tmp_path / "a.tif"
    profile = geotiff_profile(width=300, height=300, count=2, dtype="uint16", crs=CRS, transform=TRANSFORM)
    with rasterio.open(path, "w", **profile, sparse_ok=True) as dataset:
        dataset.write(np.ones((2, 256, 256), np.uint16), window=((0, 256), (0, 256)))
    with rasterio.open(path) as dataset:
        assert (dataset.read(window=((256, 300), (256, 300))) == 0).all()  # reads back silently
    with pytest.raises(OutputWriteError, match=r"block \(0, 1\) of band 1 is missing"):
        verify_geotiff(path)


def tile_offsets(path: Path) -> tuple[int, list[int]]:
    """Where the TileOffsets values (tag 324, LONG) of a little-endian classic TIFF are, and the values."""
    data = path.read_bytes()
    assert data[:4] == b"II*\x00"
    (directory,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, directory)
    for entry in range(directory + 2, directory + 2 + 12 * entries, 12):
        tag, kind, count, place = struct.unpack_from("<HHII", data, entry)
        if tag == 324:
            assert kind == 4 and count > 1
            return place, list(struct.unpack_from(f"<{count}I", data, place))
    raise AssertionError("no TileOffsets")


def test_a_block_written_over_by_the_next_one_fails(tmp_path: Path) -> None:
    """Bytes lost in a write buffer leave the next block written where the lost ones were recorded: both
    blocks are recorded, inside the file, but overlap."""
    path = tmp_path / "a.tif"
    write_test_tiff(path)
    verify_geotiff(path)
    place, offsets = tile_offsets(path)
    with path.open("r+b") as file:  # the second block of band 1 (pixel-interleaved: of every band) starts 10
        file.seek(place + 4)  # bytes into the first one
        file.write(struct.pack("<I", offsets[0] + 10))
    with pytest.raises(OutputWriteError, match=r"block \(0, 1\) of band 1 lies over block \(0, 0\) of band 1"):
        verify_geotiff(path)


def test_a_band_interleaved_file_is_checked_band_by_band(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    write_test_tiff(path, interleave="band")
    verify_geotiff(path)
    place, offsets = tile_offsets(path)
    assert len(offsets) == 8  # 2 x 2 blocks of 256 pixels, 2 bands
    with path.open("r+b") as file:  # the first block of band 2 over the last one of band 1
        file.seek(place + 4 * 4)
        file.write(struct.pack("<I", offsets[3] + 1))
    with pytest.raises(OutputWriteError, match=r"lies over block \(1, 1\) of band 1"):
        verify_geotiff(path)


def test_an_unreadable_directory_fails(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 500)
    with pytest.raises(OutputWriteError, match="does not read back"):
        verify_geotiff(path)


# --- Every raster-writing path, with a close that loses the file's last writes -------------------


@pytest.fixture
def lost_last_write(monkeypatch: pytest.MonkeyPatch):
    """From now on, closing a GeoTIFF written by rasterio silently loses its last 2 KB, as a full disk does
    (GDAL's error in the final flush is not raised by close())."""

    def install() -> None:
        close = rasterio.io.DatasetWriter.close

        def losing_close(self) -> None:
            was_open = not self.closed
            close(self)
            path = Path(self.name)
            if was_open and path.is_file() and path.suffix == ".tif":
                with path.open("r+b") as file:
                    file.truncate(max(path.stat().st_size - 2048, 8))

        monkeypatch.setattr(rasterio.io.DatasetWriter, "close", losing_close)

    return install


def visible_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def s1_command(tmp_path: Path) -> tuple[list[str], object]:
    _, vh = make_s1tiling_pair(tmp_path / "in", acquired=ACQUIRED, shape=(300, 300))
    return ["--input_s1_vh", str(vh), "--out_s1_dir", str(tmp_path / "out")], sentinel1_prepare.main


def s2_command(tmp_path: Path) -> tuple[list[str], object]:
    product = make_theia_product(tmp_path / "in", acquired=ACQUIRED, shape=(300, 300))
    return ["--in_image", str(product), "--out_s2_dir", str(tmp_path / "out")], sentinel2_prepare.main


def dem_command(tmp_path: Path) -> tuple[list[str], object]:
    (tmp_path / "in").mkdir()
    reference = tmp_path / "in" / "ref.tif"
    write_array(reference, np.ones((150, 150), np.int16), crs=CRS, transform=TRANSFORM @ Affine.scale(2))
    dem = make_dem(tmp_path / "in" / "dem.tif", crs=CRS, transform=TRANSFORM, shape=(300, 300))
    argv = ["--reference", str(reference), "--input", str(dem), "--output", str(tmp_path / "out" / "dem.tif")]
    return argv, dem_prepare.main


def roi_command(tmp_path: Path) -> tuple[list[str], object]:
    product = make_theia_product(tmp_path / "raw", acquired=ACQUIRED, shape=(300, 300))
    sentinel2_prepare.prepare_s2_product(product, tmp_path / "in" / "S2")
    tiles = tmp_path / "in" / "tiles.json"
    tiles.write_text(json.dumps({"S2_ROOT_DIR": "S2", "TILES": ["T31TEJ"]}))
    argv = ["--tiles", str(tiles), "--datasets", "train", "--props", "1", "--output_dir", str(tmp_path / "out")]
    return argv, generate_roi_rasters.main


@pytest.mark.parametrize("command", [s1_command, s2_command, dem_command, roi_command])
def test_preparation_steps_never_publish_a_file_whose_last_write_was_lost(
    command, tmp_path: Path, lost_last_write, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, main = command(tmp_path)
    lost_last_write()

    status = main(argv)

    stderr = capsys.readouterr().err.strip()
    assert status == 1
    assert len(stderr.splitlines()) == 1 and "error: cannot write " in stderr and ".tif" in stderr
    out = tmp_path / "out"
    assert not out.exists() or visible_files(out) == []


class ConstantModel(ModelBackend):
    """Gives 1234 everywhere, whatever its input."""

    def __init__(self) -> None:
        self.inputs = {"s2_t": 4}
        self.outputs = ["s2_estim"]

    def run(self, inputs, outputs):
        return {"s2_estim": np.full((*inputs["s2_t"].shape[:3], 4), 1234.0, np.float32)}


def run_engine(tmp_path: Path, model: ModelBackend = None, chunk_size: int = 64, cog: bool = False) -> list[Path]:
    source_path = tmp_path / "s2.tif"
    if not source_path.exists():
        tmp_path.mkdir(exist_ok=True)
        write_array(source_path, np.full((4, 200, 180), 500, np.int16), crs=CRS, transform=TRANSFORM, nodata=S2_NODATA)
    with rasterio.open(source_path) as dataset:
        grid = Grid.of(dataset)
    output = OutputSpec("s2_estim", tmp_path / "out" / "estim.tif", ["B2", "B3", "B4", "B8"])
    sources = [RasterSource("s2_t", source_path, grid, nodata=S2_NODATA)]
    engine = StreamingEngine(model or ConstantModel(), sources, grid, [output], chunk_size=chunk_size, pad=16)
    return engine.run(cog=cog)


@pytest.mark.parametrize("cog", [False, True])
def test_the_engine_never_publishes_an_output_whose_last_write_was_lost(tmp_path: Path, lost_last_write, cog) -> None:
    assert run_engine(tmp_path / "good", cog=cog)  # the same run without the fault publishes its output
    (tmp_path / "bad").mkdir()
    shutil.copy(tmp_path / "good" / "s2.tif", tmp_path / "bad" / "s2.tif")
    lost_last_write()

    with pytest.raises(OutputWriteError, match=r"cannot write .*estim\.tif"):
        run_engine(tmp_path / "bad", cog=cog)
    assert visible_files(tmp_path / "bad" / "out") == []


# --- A real full disk -----------------------------------------------------------------------------


@pytest.fixture
def small_file_system(tmp_path: Path):
    """A 30 MB tmpfs with about 870 KB left free; skipped where mounting is not permitted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["fallocate", "-l", str(30 * 1024 * 1024 - 870 * 1024), str(mount_point / "fill")], check=True)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_full_disk_is_one_line_and_nothing_published(tmp_path: Path, small_file_system: Path) -> None:
    """s1-prepare of images of growing size on a nearly full disk: each run either succeeds with files
    that read back equal to a run on a roomy disk, or fails with one line saying the disk is full and
    leaves nothing behind. Sizes around the free space make the failure fall while streaming, at the
    statistics, and in the writes that close() does not report."""
    failures = 0
    for side in (500, 560, 580, 600, 620, 700):
        inputs = tmp_path / f"in{side}"
        _, vh = make_s1tiling_pair(inputs, acquired=ACQUIRED, shape=(side, side))
        out = small_file_system / "out"
        result = subprocess.run(
            [sys.executable, "-m", "decloud", "s1-prepare", "--input_s1_vh", str(vh), "--out_s1_dir", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        last_line = result.stderr.strip().splitlines()[-1]
        if result.returncode == 0:
            reference = sentinel1_prepare.prepare_s1_image(vh, tmp_path / f"roomy{side}")
            for suffix in ("", s1_nodata_stats_path("x.tif").name.removeprefix("x")):
                name = reference.stem + suffix if suffix else reference.name
                with rasterio.open(out / "T31TEJ" / name) as written, rasterio.open(reference.parent / name) as good:
                    np.testing.assert_array_equal(written.read(), good.read())
        else:
            failures += 1
            assert result.returncode == 1, result.stderr
            assert last_line.startswith("decloud s1-prepare: error: cannot write ")
            assert "no space left on device" in last_line
            assert "Traceback" not in result.stderr
            assert visible_files(out) == [] and not any(out.rglob(".decloud-tmp-*"))
        shutil.rmtree(out, ignore_errors=True)
    assert failures >= 2  # the disk was really full for the larger images


def test_records_on_a_full_disk_are_one_error_naming_the_shard(small_file_system: Path) -> None:
    """TensorFlow's TFRecordWriter reports a full disk as a ResourceExhaustedError naming no output: the
    writer says which records folder and shard could not be written, and publishes nothing."""
    from decloud.sampling.tfrecords import RecordsWriter

    sample = {"s2_t": np.zeros((256, 256, 4), np.int16)}  # 512 KB per sample: the third one fills the disk
    with (
        pytest.raises(OutputWriteError, match=r"records.*0\.records: no space left on device"),
        RecordsWriter(small_file_system / "records", 100) as writer,
    ):
        for _ in range(4):
            writer.write(sample)
    assert sorted(path.name for path in small_file_system.iterdir()) == ["fill"]
