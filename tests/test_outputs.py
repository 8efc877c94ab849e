"""Outputs never lose, hide or half-write data: an output decloud did not write is never touched, reruns
skip or (--overwrite) atomically replace what decloud wrote, temporaries of killed runs are invisible
and removed, SIGTERM cleans up like Ctrl-C, multi-output commands write all or nothing (metadata last),
and the same seed gives byte-identical records in another process. Kills are injected in a subprocess
through ``decloud.testing.faults``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import decloud.core.atomic as atomic
from decloud.acquisitions.sensing_layout import AcquisitionsLayout, S2Acquisition
from decloud.core.products import is_complete, prepared_s1_series, prepared_s2_series
from decloud.models.create_tfrecords import main as create_tfrecords_main
from decloud.models.train_from_tfrecords import main as train_main
from decloud.preprocessing.dem_prepare import main as dem_main
from decloud.preprocessing.generate_roi_rasters import generate_roi_rasters
from decloud.preprocessing.generate_roi_rasters import main as rois_main
from decloud.preprocessing.sentinel1_prepare import main as s1_main
from decloud.preprocessing.sentinel2_prepare import main as s2_main
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.sampling import catalog
from decloud.testing.dem import make_dem
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import DEFAULT_CRS, DEFAULT_ORIGIN, make_theia_product

START = datetime(2020, 6, 1, 10, 30, tzinfo=UTC)
FOREIGN = "was not written complete by decloud"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def faulty(point: str, count: int, signal: str, *command: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``decloud <command>`` in a subprocess that sends itself ``signal`` at the fault point."""
    return subprocess.run(
        [sys.executable, "-m", "decloud.testing.faults", point, str(count), signal, *command],
        capture_output=True,
        text=True,
        env={**ENV, **env},
        check=False,
    )


def temporaries(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(".decloud-tmp-")]


@pytest.fixture(scope="module")
def tile(tmp_path_factory) -> Path:
    """A prepared tile of 256x256 pixels (4x4 patches): 3 S2 products, and its tiles JSON."""
    root = tmp_path_factory.mktemp("tile")
    for i in range(3):
        raw = make_theia_product(root / "raw", acquired=START + timedelta(days=5 * i), seed=i)
        prepare_s2_product(raw, root / "S2")
    (root / "tiles.json").write_text(json.dumps({"S2_ROOT_DIR": "S2", "TILES": ["T31TEJ"]}))
    return root


def layout(path: Path, min_cloud: int = 0) -> Path:
    """One S2 image per sample, of at least ``min_cloud`` percent clouds (the tile has no cloud)."""
    single = AcquisitionsLayout()
    single.new_acquisition("t", s2_acquisition=S2Acquisition(min_cloud, 100), timeframe_origin=True)
    single.validate().to_json(path)
    return path


def records_command(tile: Path, tmp_path: Path, *outputs: str) -> list[str]:
    rois = generate_roi_rasters(tile / "tiles.json", ["train", "valid"], [50, 50], tmp_path / "rois", patchsize=64)
    return [
        "--tiles", str(tile / "tiles.json"), "--rois", str(rois), "--patchsize", "64",
        "--n_samples_per_shard", "3", "--catalog_dir", str(tmp_path / "catalog"), "--workers", "2", *outputs,
    ]  # fmt: skip


# --- 1. an output decloud did not write is never touched; ours is skipped or replaced ----------------


def test_create_tfrecords_never_replaces_a_folder_of_the_user(tile, tmp_path, capsys):
    out = tmp_path / "train"
    (out / "sub").mkdir(parents=True)
    (out / "note.txt").write_text("mine")
    (out / "sub" / "important.txt").write_text("also mine")
    argv = records_command(tile, tmp_path, "--acquisition_train", str(layout(tmp_path / "l.json")))
    assert create_tfrecords_main([*argv, "--output_train", str(out)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(out) in error[0] and FOREIGN in error[0]
    assert (out / "note.txt").read_text() == "mine" and (out / "sub" / "important.txt").read_text() == "also mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # an empty folder holds nothing to lose: it is written into
    (tmp_path / "empty").mkdir()
    assert create_tfrecords_main([*argv, "--output_train", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "0.records").is_file() and (tmp_path / "empty" / "decloud_prepared.json").is_file()
    first = (tmp_path / "empty" / "0.records").stat().st_ino
    assert create_tfrecords_main([*argv, "--output_train", str(tmp_path / "empty")]) == 0  # skipped
    assert (tmp_path / "empty" / "0.records").stat().st_ino == first
    assert create_tfrecords_main([*argv, "--output_train", str(tmp_path / "empty"), "--overwrite"]) == 0
    assert (tmp_path / "empty" / "0.records").stat().st_ino != first


def test_train_refuses_a_foreign_out_savedmodel_before_training(tmp_path, capsys):
    out = tmp_path / "savedmodel"
    out.mkdir()
    (out / "note.txt").write_text("mine")
    argv = ["--model", "gapfilling", "--training_record", str(tmp_path / "no_records"), "--out_savedmodel", str(out)]
    assert train_main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(out) in error[0] and FOREIGN in error[0]
    assert (out / "note.txt").read_text() == "mine"


def test_s2_prepare_never_replaces_a_folder_of_the_user(tmp_path, capsys):
    raw = make_theia_product(tmp_path / "raw", acquired=START)
    product = tmp_path / "S2" / "T31TEJ" / raw.name
    product.mkdir(parents=True)
    (product / "note.txt").write_text("mine")
    assert s2_main(["--in_image", str(raw), "--out_s2_dir", str(tmp_path / "S2"), "--overwrite"]) == 1
    assert FOREIGN in capsys.readouterr().err
    assert [p.name for p in product.iterdir()] == ["note.txt"]


def test_s1_prepare_skips_replaces_or_refuses(tmp_path, capsys):
    _, vh = make_s1tiling_pair(tmp_path / "raw", acquired=START)
    argv = ["--input_s1_vh", str(vh), "--out_s1_dir", str(tmp_path / "S1")]
    assert s1_main(argv) == 0
    (image,) = (tmp_path / "S1" / "T31TEJ").glob("*_from-10to3dB.tif")
    with rasterio.open(image) as dataset:
        assert dataset.tags()["TIFFTAG_SOFTWARE"] == "decloud 0.1.0"
        encoded = dataset.read()
    inode = image.stat().st_ino
    assert s1_main(argv) == 0 and image.stat().st_ino == inode  # skipped
    assert s1_main([*argv, "--overwrite"]) == 0 and image.stat().st_ino != inode
    with rasterio.open(image) as dataset:
        np.testing.assert_array_equal(dataset.read(), encoded)
    # the user's own file under the image's name (statistics absent): left as it is
    for path in image.parent.iterdir():
        path.unlink()
    image.write_bytes(b"my own notes")
    assert s1_main([*argv, "--overwrite"]) == 1
    assert f"{image} exists and {FOREIGN}" in capsys.readouterr().err
    assert image.read_bytes() == b"my own notes" and len(list(image.parent.iterdir())) == 1


def test_dem_prepare_skips_replaces_or_refuses(tmp_path, capsys):
    raw = make_theia_product(tmp_path / "raw", acquired=START)
    reference = next(raw.glob("*_FRE_B5.tif"))
    x, y = DEFAULT_ORIGIN
    dem = make_dem(
        tmp_path / "dem.tif", crs=DEFAULT_CRS, transform=Affine(30, 0, x - 300, 0, -30, y + 300), shape=(120, 120)
    )
    out = tmp_path / "DEM" / "T31TEJ.tif"
    argv = ["--reference", str(reference), "--input", str(dem), "--output", str(out)]
    assert dem_main(argv) == 0
    inode = out.stat().st_ino
    assert dem_main(argv) == 0 and out.stat().st_ino == inode  # skipped
    assert dem_main([*argv, "--overwrite"]) == 0 and out.stat().st_ino != inode
    # a GeoTIFF decloud did not write (no decloud Software tag): never replaced
    with rasterio.open(dem) as source:
        profile, heights = source.profile, source.read()
    foreign = tmp_path / "DEM" / "mine.tif"
    with rasterio.open(foreign, "w", **profile) as target:
        target.write(heights)
    before = foreign.read_bytes()
    assert dem_main(["--reference", str(reference), "--input", str(dem), "--output", str(foreign), "--overwrite"]) == 1
    assert f"{foreign} exists and {FOREIGN}" in capsys.readouterr().err
    assert foreign.read_bytes() == before


# --- 3. temporaries of killed runs are never seen by discovery, and are removed ----------------------


def test_a_killed_s1_prepare_hides_nothing_and_its_rerun_cleans_up(tmp_path):
    for day in range(2):
        make_s1tiling_pair(tmp_path / "raw", acquired=START + timedelta(days=day), seed=day)
    first, second = sorted((tmp_path / "raw").glob("*_vh_*.tif"))
    assert s1_main(["--input_s1_vh", str(first), "--out_s1_dir", str(tmp_path / "S1")]) == 0
    argv = ["s1-prepare", "--input_s1_vh", str(second), "--out_s1_dir", str(tmp_path / "S1")]
    killed = faulty("progress", 1, "KILL", *argv)
    assert killed.returncode == -9
    left = temporaries(tmp_path / "S1")
    assert len(left) == 1 and left[0].name.endswith("_vvvh_ASC_030_20200602t103000_from-10to3dB.tif")
    tile_dir = tmp_path / "S1" / "T31TEJ"
    assert len(prepared_s1_series(tile_dir)) == 1
    assert len(catalog._find_s1_images(tile_dir)) == 1  # what create-tfrecords catalogs
    rerun = faulty("progress", 10**6, "KILL", *argv)
    assert rerun.returncode == 0, rerun.stderr
    assert temporaries(tmp_path / "S1") == [] and len(prepared_s1_series(tile_dir)) == 2


# --- 4. an S2 product is published in one step, also under --overwrite --------------------------------


def test_a_product_killed_before_publication_is_invisible(tmp_path):
    raw = make_theia_product(tmp_path / "raw", acquired=START)
    argv = ["s2-prepare", "--in_image", str(raw), "--out_s2_dir", str(tmp_path / "S2")]
    assert faulty("publish", 1, "KILL", *argv).returncode == -9
    tile_dir = tmp_path / "S2" / "T31TEJ"
    (hidden,) = temporaries(tile_dir)
    assert (hidden / "decloud_prepared.json").is_file()  # complete, yet not published: no reader takes it
    assert prepared_s2_series(tile_dir) == []
    assert faulty("progress", 10**6, "KILL", *argv).returncode == 0
    assert [p.name for p in tile_dir.iterdir()] == [raw.name]


def test_overwrite_keeps_a_complete_product_visible_at_every_step(tmp_path, monkeypatch):
    raw = make_theia_product(tmp_path / "raw", acquired=START)
    product = prepare_s2_product(raw, tmp_path / "S2")
    old = product.stat().st_ino
    seen = []

    def check(name, function):
        def spy(*args, **kwargs):
            result = function(*args, **kwargs)
            listed = prepared_s2_series(product.parent)
            seen.append((name, [p.name for p in listed], is_complete(product), product.stat().st_ino))
            return result

        return spy

    monkeypatch.setattr(atomic.os, "replace", check("replace", os.replace))
    monkeypatch.setattr(atomic.shutil, "rmtree", check("rmtree", atomic.shutil.rmtree))
    prepare_s2_product(raw, tmp_path / "S2", overwrite=True)
    assert seen, "publication went through none of the observed steps"
    assert all(listed == [raw.name] and complete for _, listed, complete, _ in seen), seen
    assert product.stat().st_ino != old and temporaries(tmp_path) == []


def test_a_kill_after_exchanging_leaves_the_new_product_and_no_visible_copy(tmp_path):
    raw = make_theia_product(tmp_path / "raw", acquired=START)
    argv = ["s2-prepare", "--in_image", str(raw), "--out_s2_dir", str(tmp_path / "S2"), "--overwrite"]
    assert faulty("progress", 10**6, "KILL", *argv).returncode == 0
    assert faulty("published", 1, "KILL", *argv).returncode == -9
    tile_dir = tmp_path / "S2" / "T31TEJ"
    assert len(temporaries(tile_dir)) == 1  # the previous version, not yet deleted
    assert [p.name for p in prepared_s2_series(tile_dir)] == [raw.name]
    assert faulty("progress", 10**6, "KILL", *argv[:-1]).returncode == 0  # skipped, and cleans up
    assert temporaries(tile_dir) == []


# --- 6. SIGTERM ----------------------------------------------------------------------------------------


def test_sigterm_cleans_up_and_exits_143(tmp_path):
    raw = make_theia_product(tmp_path / "raw", acquired=START, shape=(512, 512))
    result = faulty("progress", 2, "TERM", "s2-prepare", "--in_image", str(raw), "--out_s2_dir", str(tmp_path / "S2"))
    assert result.returncode == 143
    assert result.stderr.strip().splitlines()[-1] == "decloud s2-prepare: terminated"
    assert temporaries(tmp_path) == [] and list((tmp_path / "S2" / "T31TEJ").iterdir()) == []


# --- 9. multi-output commands write all or nothing, metadata last -------------------------------------


def test_create_tfrecords_writes_no_folder_when_one_has_no_sample(tile, tmp_path, capsys):
    argv = records_command(
        tile,
        tmp_path,
        "--acquisition_train", str(layout(tmp_path / "any.json")), "--output_train", str(tmp_path / "train"),
        "--acquisitions_valid", str(layout(tmp_path / "cloudy.json", min_cloud=100)),
        "--outputs_valid", str(tmp_path / "valid"),
    )  # fmt: skip
    assert create_tfrecords_main(argv) == 1
    assert "no sample for" in capsys.readouterr().err
    assert not (tmp_path / "train").exists() and not (tmp_path / "valid").exists()
    assert temporaries(tmp_path) == []


def test_roi_rasters_publish_the_summary_last_and_drop_an_earlier_split(tile, tmp_path, monkeypatch):
    published = []
    original = atomic._publish
    monkeypatch.setattr(atomic, "_publish", lambda t, f: published.append(f.name) or original(t, f))
    argv = ["--tiles", str(tile / "tiles.json"), "--output_dir", str(tmp_path), "--patchsize", "64"]
    assert rois_main([*argv, "--datasets", "train", "valid", "test", "--props", "1", "1", "1"]) == 0
    assert published[-1] == "rois.json" and len(published) == 4
    (tmp_path / "notes.txt").write_text("mine")
    assert rois_main([*argv, "--datasets", "train", "valid", "--props", "1", "1"]) == 0  # skipped
    assert (tmp_path / "T31TEJ_test.tif").exists()
    assert rois_main([*argv, "--datasets", "train", "valid", "--props", "1", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "T31TEJ_train.tif",
        "T31TEJ_valid.tif",
        "notes.txt",
        "rois.json",
    ]
    assert set(json.loads((tmp_path / "rois.json").read_text())) == {
        "ROIS_ROOT_DIR",
        "decloud_version",
        "TRAIN_TILES",
        "VALID_TILES",
    }


# --- 11. the same seed gives byte-identical records in another process -------------------------------


def test_records_are_byte_identical_across_processes(tile, tmp_path):
    argv = records_command(
        tile, tmp_path, "--acquisition_train", str(layout(tmp_path / "l.json")), "--seed", "5", "--maxntrain", "7"
    )
    contents = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"records_{hash_seed}"
        result = subprocess.run(
            [sys.executable, "-m", "decloud.cli", "create-tfrecords", *argv, "--output_train", str(out)],
            capture_output=True, text=True, env={**ENV, "PYTHONHASHSEED": hash_seed}, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        contents.append({path.name: path.read_bytes() for path in sorted(out.iterdir())})
    shards = [{name: data for name, data in content.items() if name.endswith(".records")} for content in contents]
    assert sorted(shards[0]) == ["0.records", "1.records", "2.records"]  # 7 samples, 3 per shard
    assert shards[0] == shards[1]
    assert sorted(contents[0]) == [
        "0.records", "1.records", "2.records", "decloud_prepared.json", "output_shapes.json", "output_types.json",
        "summary.json",
    ]  # fmt: skip
    assert contents[0] == contents[1]


def test_only_temporaries_of_finished_processes_of_this_machine_are_removed(tmp_path):
    final = tmp_path / "image.tif"
    mine = atomic.temporary_sibling(final)  # this process: running
    host = mine.name.removeprefix(".decloud-tmp-").split(".", 1)[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f".decloud-tmp-{host}.{int(dead.stdout)}.1-0123abcd-image.tif"  # a pid that has exited
    elsewhere = tmp_path / f".decloud-tmp-{'0' * 8 if host != '0' * 8 else '1' * 8}.1.1-0123abcd-image.tif"
    other_output = tmp_path / f".decloud-tmp-{host}.{int(dead.stdout)}.1-0123abcd-other.tif"
    older = tmp_path / ".decloud-tmp-0123abcd-image.tif"  # no owner recorded, older than this process
    for path in (mine, gone, elsewhere, other_output, older):
        path.write_text("x")
    os.utime(older, (0, 0))
    atomic.remove_stale_temporaries(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, elsewhere, other_output))
    assert all(atomic.is_temporary(p) for p in (mine, gone, elsewhere)) and not atomic.is_temporary(final)
