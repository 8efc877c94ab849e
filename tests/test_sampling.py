"""Sampling: the tile catalog and its index, the tuple search against a brute-force count, the sample
iterators, and create_tfrecords end to end (traceability to source pixels, determinism, atomicity)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio

from decloud.acquisitions.sensing_layout import AcquisitionsLayout, S1Acquisition, S2Acquisition
from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M
from decloud.core.errors import InvalidArgumentError
from decloud.models.create_tfrecords import main as create_tfrecords_main
from decloud.preprocessing.generate_roi_rasters import generate_roi_rasters
from decloud.preprocessing.sentinel1_prepare import prepare_s1_image
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.preprocessing.tiles import TilesConfig
from decloud.sampling import catalog as catalog_module
from decloud.sampling.catalog import load_tile_catalog
from decloud.sampling.dataset_writer import SUMMARY_FILE
from decloud.sampling.iterators import month_of, select_samples
from decloud.sampling.sample_reader import SampleReader
from decloud.sampling.search import SampleTuples, find_tuples
from decloud.sampling.tfrecords import iterate_numpy, shard_paths
from decloud.testing.regions import Rect
from decloud.testing.s1tiling import make_s1tiling_pair
from decloud.testing.theia import make_theia_product

START = datetime(2020, 6, 1, 10, 30, tzinfo=UTC)
SHAPE = (256, 256)  # 4 x 4 elementary patches
#: S2 dates every 5 days; clouds and no-data on chosen patches of chosen dates.
S2_DATES = [START + timedelta(days=5 * i) for i in range(6)]
S2_CLOUDS = {
    0: [Rect(0, 0, 64, 64)],
    1: [Rect(0, 0, 128, 256)],
    2: [Rect(64, 64, 32, 64)],
    3: [],
    4: [Rect(0, 0, 256, 256)],
    5: [Rect(192, 0, 64, 32)],
}
S2_NODATA = {0: [], 1: [Rect(192, 192, 64, 64)], 2: [], 3: [Rect(0, 128, 10, 10)], 4: [], 5: []}
#: S1 dates every 3 days at 06:00, with some no-data.
S1_DATES = [START.replace(hour=6) + timedelta(days=3 * i) for i in range(10)]
S1_NODATA = {1: [Rect(0, 0, 128, 128)], 4: [Rect(128, 0, 128, 256)], 6: [Rect(0, 192, 64, 64)]}


@pytest.fixture(scope="module")
def tile_data(tmp_path_factory) -> Path:
    """A prepared tile with 6 S2 products and 10 S1 images, and its tiles JSON."""
    root = tmp_path_factory.mktemp("tile")
    for i, date in enumerate(S2_DATES):
        raw = make_theia_product(
            root / "raw", acquired=date, shape=SHAPE, clouds=S2_CLOUDS[i], nodata=S2_NODATA[i], seed=i
        )
        prepare_s2_product(raw, root / "S2")
    for i, date in enumerate(S1_DATES):
        _, vh = make_s1tiling_pair(root / "raw_s1", acquired=date, shape=SHAPE, nodata=S1_NODATA.get(i, []), seed=i)
        prepare_s1_image(vh, root / "S1")
    (root / "tiles.json").write_text(json.dumps({"S1_ROOT_DIR": "S1", "S2_ROOT_DIR": "S2", "TILES": ["T31TEJ"]}))
    return root


def crga_like_layout() -> AcquisitionsLayout:
    layout = AcquisitionsLayout()
    layout.new_acquisition(
        "tm1", s2_acquisition=S2Acquisition(0, 10), timeframe_start_hours=-288, timeframe_end_hours=-72
    )
    layout.new_acquisition(
        "t",
        s1_acquisition=S1Acquisition(),
        s2_acquisition=S2Acquisition(20, 100),
        max_s1s2_gap_hours=48,
        timeframe_origin=True,
    )
    layout.new_acquisition(
        "tp1", s2_acquisition=S2Acquisition(0, 10), timeframe_start_hours=72, timeframe_end_hours=288
    )
    layout.new_acquisition(
        "target", s2_acquisition=S2Acquisition(0, 0), timeframe_start_hours=-24, timeframe_end_hours=288
    )
    layout.new_acquisition("radar", s1_acquisition=S1Acquisition(), timeframe_start_hours=-120, timeframe_end_hours=0)
    layout.set_siblings([["tp1", "target"]])
    return layout.validate()


def source_patch_stats(tile_data: Path, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent per-training-patch statistics read from the raw generated files."""

    def blocks(array: np.ndarray) -> np.ndarray:
        size = 64 * k
        rows, cols = array.shape[0] // size, array.shape[1] // size
        return array[: rows * size, : cols * size].reshape(rows, size, cols, size).swapaxes(1, 2)

    cloud, s2_valid, s1_valid = [], [], []
    for product in sorted((tile_data / "raw").iterdir(), key=lambda p: p.name.split("_")[1]):
        with (
            rasterio.open(product / "MASKS" / f"{product.name}_CLM_R1.tif") as clm,
            rasterio.open(product / "MASKS" / f"{product.name}_EDG_R1.tif") as edg,
        ):
            cloud.append(100 * (blocks(clm.read(1)) != 0).mean(axis=(2, 3)))
            s2_valid.append((blocks(edg.read(1)) == 0).all(axis=(2, 3)))
    for vv in sorted((tile_data / "raw_s1").glob("*_vv_*.tif")):
        with rasterio.open(vv) as a, rasterio.open(str(vv).replace("_vv_", "_vh_")) as b:
            s1_valid.append(((blocks(a.read(1)) != 0) & (blocks(b.read(1)) != 0)).all(axis=(2, 3)))
    return np.array(cloud), np.array(s2_valid), np.array(s1_valid)


def brute_force_tuples(tile_data: Path, k: int, roi: np.ndarray | None) -> set[tuple]:
    """Every tuple, by trying every image for every acquisition on every patch, constraint by constraint."""
    cloud, s2_valid, s1_valid = source_patch_stats(tile_data, k)
    s2_t = [d.timestamp() for d in S2_DATES]
    s1_t = [d.timestamp() for d in S1_DATES]
    hour = 3600
    found = set()
    rows, cols = cloud.shape[1:]
    for r, c in itertools.product(range(rows), range(cols)):
        if roi is not None and not roi[r * k : (r + 1) * k, c * k : (c + 1) * k].all():
            continue

        def s2_ok(i, low, high, r=r, c=c):
            return s2_valid[i, r, c] and low <= cloud[i, r, c] <= high

        def closest_s1(i, r=r, c=c):
            gaps = [(abs(s1_t[j] - s2_t[i]), j) for j in range(len(s1_t)) if s1_valid[j, r, c]]
            best = min(gaps, default=None)
            return best[1] if best and best[0] <= 48 * hour else None

        for tm1, t, tp1, target, radar in itertools.product(range(6), range(6), range(6), range(6), range(10)):
            origin = s2_t[t]
            if not (s2_ok(t, 20, 100) and s2_ok(tm1, 0, 10) and s2_ok(tp1, 0, 10) and s2_ok(target, 0, 0)):
                continue
            if not (-288 * hour <= s2_t[tm1] - origin <= -72 * hour and 72 * hour <= s2_t[tp1] - origin <= 288 * hour):
                continue
            if not (-24 * hour <= s2_t[target] - origin <= 288 * hour and -120 * hour <= s1_t[radar] - origin <= 0):
                continue
            paired = closest_s1(t)
            if paired is None or not s1_valid[radar, r, c] or paired == radar:
                continue
            s2_images = [tm1, t, tp1, target]
            pairs = [(a, b) for a, b in itertools.combinations(range(4), 2) if (a, b) != (2, 3)]  # tp1/target siblings
            if any(s2_images[a] == s2_images[b] for a, b in pairs):
                continue
            found.add((r, c, tm1, t, tp1, target, paired, radar))
    return found


def as_set(tuples: SampleTuples) -> set[tuple]:
    return {
        tuple(int(x) for x in row)
        for row in zip(
            tuples.patch_row,
            tuples.patch_col,
            tuples.s2["tm1"],
            tuples.s2["t"],
            tuples.s2["tp1"],
            tuples.s2["target"],
            tuples.s1["t"],
            tuples.s1["radar"],
            strict=True,
        )
    }


@pytest.mark.parametrize(("patchsize", "with_roi"), [(64, False), (64, True), (128, False)])
def test_search_finds_exactly_the_brute_force_tuples(tile_data, tmp_path, patchsize, with_roi):
    catalog = load_tile_catalog(TilesConfig.load(tile_data / "tiles.json"), "T31TEJ", tmp_path)
    roi = None
    if with_roi:
        roi = np.ones((4, 4), dtype=np.uint8)
        roi[0, :2] = 0
    found = find_tuples(crga_like_layout(), catalog, roi, patchsize)
    expected = brute_force_tuples(tile_data, patchsize // 64, roi)
    assert len(expected) >= 4  # the data set exercises the constraints, not an empty case
    assert len(found) == len(expected)
    assert as_set(found) == expected
    assert any(row[4] == row[5] for row in expected)  # siblings share an image in some tuples


def nearest_layout() -> AcquisitionsLayout:
    """tm1 and tp1 clear (at most 10 % clouds) and the nearest such dates to t, up to 15 days away."""
    layout = AcquisitionsLayout()
    for name, window in (("tm1", (-360, -1)), ("tp1", (1, 360))):
        layout.new_acquisition(
            name, s2_acquisition=S2Acquisition(0, 10), timeframe_start_hours=window[0], timeframe_end_hours=window[1],
            nearest=True,
        )  # fmt: skip
    layout.new_acquisition("t", s2_acquisition=S2Acquisition(0, 100), timeframe_origin=True)
    return layout.validate()


def test_nearest_acquisitions_take_the_closest_qualifying_date_of_each_patch(tile_data, tmp_path):
    """Against the raw masks: per patch and date t, tm1 is the latest date before t (within 15 days) with at most
    10 % clouds and no no-data, tp1 the earliest after; patches with no such date on a side have no tuple."""
    catalog = load_tile_catalog(TilesConfig.load(tile_data / "tiles.json"), "T31TEJ", tmp_path)
    found = find_tuples(nearest_layout(), catalog, None, 64)
    cloud, s2_valid, _ = source_patch_stats(tile_data, 1)
    days = np.array([(d - START).days for d in S2_DATES])
    expected = set()
    for r, c, t in itertools.product(range(4), range(4), range(6)):
        clear = [i for i in range(6) if s2_valid[i, r, c] and cloud[i, r, c] <= 10 and 0 < abs(days[i] - days[t]) <= 15]
        before, after = [i for i in clear if i < t], [i for i in clear if i > t]
        if s2_valid[t, r, c] and before and after:
            expected.add((r, c, max(before), t, min(after)))
    rows = zip(found.patch_row, found.patch_col, found.s2["tm1"], found.s2["t"], found.s2["tp1"], strict=True)
    assert {tuple(int(x) for x in row) for row in rows} == expected
    assert len(found) == len(expected)
    # the data exercise the rule: on patch (1, 2) date 1 is cloudy, so t = 2 takes date 0 as tm1; on patch (0, 0)
    # dates 0 and 1 are both cloudy, so t = 2 has no tm1 there
    assert (1, 2, 0, 2, 3) in expected and not any(row[:2] == (0, 0) and row[3] == 2 for row in expected)


def test_catalog_index_is_reused_and_refreshed(tile_data, tmp_path, monkeypatch):
    config = TilesConfig.load(tile_data / "tiles.json")
    first = load_tile_catalog(config, "T31TEJ", tmp_path)
    assert [p.acquired for p in first.s2] == S2_DATES
    assert [i.acquired for i in first.s1] == S1_DATES
    assert first.s2_cloud_percent.shape == (6, 4, 4)
    assert first.s2_cloud_percent[4].min() == 100 and first.s2_nodata_count[1, 3, 3] == 4096
    reads = []
    original = catalog_module._read_stats
    monkeypatch.setattr(catalog_module, "_read_stats", lambda path: reads.append(path) or original(path))
    second = load_tile_catalog(config, "T31TEJ", tmp_path)
    assert reads == []
    np.testing.assert_array_equal(second.s2_cloud_percent, first.s2_cloud_percent)
    np.testing.assert_array_equal(second.s1_nodata_count, first.s1_nodata_count)
    marker = first.s2[2].directory / "decloud_prepared.json"
    marker.write_text(marker.read_text() + " ")
    load_tile_catalog(config, "T31TEJ", tmp_path)
    assert [path.name.split("_")[1] for path in reads] == [first.s2[2].name.split("_")[1]] * 2


def test_iterators_are_deterministic_and_respect_their_rule():
    n = 500
    rng = np.random.default_rng(0)
    origin = np.array([datetime(2020, 1 + (i % 3) * 4, 10, tzinfo=UTC).timestamp() for i in range(n)])
    origin[:20] = datetime(2020, 12, 1, tzinfo=UTC).timestamp()  # a scarce month
    tuples = SampleTuples(np.zeros(n, int), rng.integers(0, 5, n), rng.integers(0, 5, n), origin)
    first = select_samples(tuples, "random", np.random.default_rng(1))
    assert sorted(first.tolist()) == list(range(n))
    np.testing.assert_array_equal(first, select_samples(tuples, "random", np.random.default_rng(1)))
    assert len(select_samples(tuples, "random", np.random.default_rng(1), max_samples=7)) == 7
    constant = select_samples(tuples, "constant", np.random.default_rng(1), samples_per_patch=2)
    patches = list(zip(tuples.patch_row[constant], tuples.patch_col[constant], strict=True))
    assert max(patches.count(p) for p in set(patches)) == 2
    assert len(set(patches)) == len(set(zip(tuples.patch_row, tuples.patch_col, strict=True)))
    monthly = select_samples(tuples, "monthly", np.random.default_rng(1), max_samples=400)
    counts = np.unique(month_of(origin[monthly]), return_counts=True)[1]
    assert len(counts) == 4 and counts.max() - counts.min() <= 1 and len(monthly) == 400
    with pytest.raises(InvalidArgumentError):
        select_samples(tuples, "alphabetical", np.random.default_rng(1))


def test_sample_reader_reads_the_recorded_location(tile_data, tmp_path):
    catalog = load_tile_catalog(TilesConfig.load(tile_data / "tiles.json"), "T31TEJ", tmp_path)
    layout = crga_like_layout()
    found = find_tuples(layout, catalog, None, 128)
    reader = SampleReader([catalog], 128, with_20m_bands=True)
    sample = reader.read(found, len(found) - 1)
    reader.close()
    assert set(sample) == set(layout.keys(with_20m_bands=True, with_dem=False))
    row, col = int(sample["patch_row"]), int(sample["patch_col"])
    product = catalog.s2[found.s2["tp1"][-1]]
    with rasterio.open(product.bands_10m) as stack:
        expected = stack.read(window=((row, row + 128), (col, col + 128)))
    np.testing.assert_array_equal(np.moveaxis(sample["s2_tp1"], -1, 0), expected)
    assert sample["s2_20m_tp1"].shape == (64, 64, 6)
    assert sample["s1_radar"].dtype == np.uint16 and sample["s1_radar"].shape == (128, 128, 2)


# --- create_tfrecords end to end ---------------------------------------------------------------


def write_layout(path: Path) -> Path:
    crga_like_layout().to_json(path)
    return path


def rois(tile_data: Path, out: Path) -> Path:
    return generate_roi_rasters(tile_data / "tiles.json", ["train", "valid"], [70, 30], out, patchsize=64, seed=1)


def create(tile_data: Path, tmp_path: Path, out: str, *extra: str) -> int:
    return create_tfrecords_main(
        [
            "--acquisition_train", str(write_layout(tmp_path / "layout.json")),
            "--output_train", str(tmp_path / out),
            "--tiles", str(tile_data / "tiles.json"),
            "--rois", str(rois(tile_data, tmp_path / "roi")),
            "--patchsize", "64",
            "--n_samples_per_shard", "4",
            "--catalog_dir", str(tmp_path / "catalog"),
            "--seed", "3",
            *extra,
        ]
    )  # fmt: skip


def test_create_tfrecords_is_deterministic_and_traceable(tile_data, tmp_path):
    assert create(tile_data, tmp_path, "a", "--with_20m_bands", "--maxntrain", "10") == 0
    assert create(tile_data, tmp_path, "b", "--with_20m_bands", "--maxntrain", "10") == 0
    shards = shard_paths(tmp_path / "a")
    assert len(shards) == 3  # 10 samples, 4 per shard
    for first, second in zip(shards, shard_paths(tmp_path / "b"), strict=True):
        assert first.read_bytes() == second.read_bytes()
    summary = json.loads((tmp_path / "a" / SUMMARY_FILE).read_text())
    assert summary["total_samples"] == 10 and summary["samples"] == {"T31TEJ": 10}
    assert summary["shard_samples"] == {"0.records": 4, "1.records": 4, "2.records": 2}
    with rasterio.open(tmp_path / "roi" / "T31TEJ_train.tif") as roi:
        train_patches = roi.read(1)
    products = {product.name.split("_")[1]: product for product in (tile_data / "S2" / "T31TEJ").iterdir()}
    for sample in iterate_numpy(tmp_path / "a"):
        row, col = int(sample["patch_row"]), int(sample["patch_col"])
        assert train_patches[row // 64, col // 64] == 1
        for acquisition in ("tm1", "t", "tp1", "target"):
            date = datetime.fromtimestamp(sample[f"s2_timestamp_{acquisition}"], UTC)
            product = products[date.strftime("%Y%m%d-%H%M%S-000")]
            with rasterio.open(product / f"{product.name}_FRE_10m.tif") as stack:
                expected = stack.read(window=((row, row + 64), (col, col + 64)))
            np.testing.assert_array_equal(np.moveaxis(sample[f"s2_{acquisition}"], -1, 0), expected)


def test_interrupted_run_leaves_no_shard(tile_data, tmp_path, monkeypatch):
    calls = []

    def failing_read(self, tuples, index):
        calls.append(index)
        if len(calls) > 6:
            raise KeyboardInterrupt
        return original(self, tuples, index)

    original = SampleReader.read
    monkeypatch.setattr(SampleReader, "read", failing_read)
    assert create(tile_data, tmp_path, "records", "--workers", "1") == 130
    assert not (tmp_path / "records").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".decloud-tmp")]


def test_bad_arguments_fail_cleanly(tile_data, tmp_path, capsys):
    status = create_tfrecords_main(
        ["--acquisitions_valid", "a.json", "b.json", "--outputs_valid", "x", "--tiles", "t.json", "--rois", "r.json"]
    )
    assert status == 1 and "2 valid layouts for 1 valid output" in capsys.readouterr().err
    bad_layout = tmp_path / "bad.json"
    bad_layout.write_text('{"t": {"acquisition": {"S2": {"type": "S2"}}}}')
    status = create_tfrecords_main(
        [
            "--acquisition_train", str(bad_layout), "--output_train", str(tmp_path / "out"),
            "--tiles", str(tile_data / "tiles.json"), "--rois", str(rois(tile_data, tmp_path / "roi")),
        ]
    )  # fmt: skip
    assert status == 1 and "bad.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- Real data ---------------------------------------------------------------------------------


def test_real_timeseries_records_hold_the_source_pixels(shared_data, tmp_path):
    """The 5-date eo-learn series, prepared with decloud, sampled with an S2-only tm1/t/tp1 layout."""
    series = shared_data / "eolearn-timeseries" / "S2" / "T33TVL"
    for product in sorted(series.iterdir()):
        prepare_s2_product(product, tmp_path / "S2")
    (tmp_path / "tiles.json").write_text(json.dumps({"S2_ROOT_DIR": "S2", "TILES": ["T33TVL"]}))
    generate_roi_rasters(tmp_path / "tiles.json", ["train"], [1], tmp_path / "roi", patchsize=64)
    layout = AcquisitionsLayout()
    layout.new_acquisition(
        "tm1", s2_acquisition=S2Acquisition(), timeframe_start_hours=-25 * 24, timeframe_end_hours=-5 * 24
    )
    layout.new_acquisition("t", s2_acquisition=S2Acquisition(), timeframe_origin=True)
    layout.new_acquisition(
        "tp1", s2_acquisition=S2Acquisition(), timeframe_start_hours=5 * 24, timeframe_end_hours=25 * 24
    )
    layout.to_json(tmp_path / "layout.json")
    status = create_tfrecords_main(
        [
            "--acquisition_train", str(tmp_path / "layout.json"), "--output_train", str(tmp_path / "records"),
            "--tiles", str(tmp_path / "tiles.json"), "--rois", str(tmp_path / "roi" / "rois.json"),
            "--patchsize", "64", "--with_20m_bands",
        ]
    )  # fmt: skip
    assert status == 0
    samples = list(iterate_numpy(tmp_path / "records"))
    # One 64x64 patch fits in the 101 x 100 crop; t = 07-31 (tm1 07-11, tp1 08-20), 08-20 (tm1 07-31,
    # tp1 08-30 or 09-09) and 08-30 (tm1 08-20, tp1 09-09): 4 tuples.
    assert len(samples) == 4
    sources = {p.name.split("_")[1][:8]: p for p in series.iterdir()}
    for sample in samples:
        assert sample["tile"] == b"T33TVL" and (int(sample["patch_row"]), int(sample["patch_col"])) == (0, 0)
        for acquisition in ("tm1", "t", "tp1"):
            day = datetime.fromtimestamp(sample[f"s2_timestamp_{acquisition}"], UTC).strftime("%Y%m%d")
            source = sources[day]
            for key, bands, size in (
                (f"s2_{acquisition}", S2_BANDS_10M, 64),
                (f"s2_20m_{acquisition}", S2_BANDS_20M, 32),
            ):
                for channel, band in enumerate(bands):
                    with rasterio.open(source / f"{source.name}_FRE_{band}.tif") as raster:
                        expected = raster.read(1, window=((0, size), (0, size)))
                    np.testing.assert_array_equal(sample[key][..., channel], expected)
    days = sorted(
        tuple(datetime.fromtimestamp(s[f"s2_timestamp_{a}"], UTC).strftime("%m%d") for a in ("tm1", "t", "tp1"))
        for s in samples
    )
    assert days == [
        ("0711", "0731", "0820"),
        ("0731", "0820", "0830"),
        ("0731", "0820", "0909"),
        ("0820", "0830", "0909"),
    ]


def same_date_layout() -> AcquisitionsLayout:
    """t: a clear patch with the cloud mask of another date (mask: 20-100 % cloudy, within 30 days) transplanted;
    target: that same clear image."""
    layout = AcquisitionsLayout()
    layout.new_acquisition("t", s2_acquisition=S2Acquisition(0, 0), timeframe_origin=True, clouds_from="mask")
    layout.new_acquisition(
        "mask", s2_acquisition=S2Acquisition(20, 100), timeframe_start_hours=-720, timeframe_end_hours=720
    )
    layout.new_acquisition("target", s2_acquisition=S2Acquisition(0, 0))
    layout.set_siblings([["t", "target"]])
    return layout.validate()


def test_transplanted_mask_makes_holes_in_the_clear_image(tile_data, tmp_path):
    catalog = load_tile_catalog(TilesConfig.load(tile_data / "tiles.json"), "T31TEJ", tmp_path)
    layout = same_date_layout()
    found = find_tuples(layout, catalog, None, 64)
    # Patch (0, 0) is clear on dates 2, 3 and 5; cloudy (>= 20 %) on dates 0, 1 and 4.
    at_origin = {(int(t), int(m)) for r, c, t, m in zip(found.patch_row, found.patch_col, found.s2["t"],
                                                        found.s2["mask"], strict=True) if (r, c) == (0, 0)}  # fmt: skip
    assert at_origin == {(t, m) for t in (2, 3, 5) for m in (0, 1, 4)}
    assert (found.s2["t"] == found.s2["target"]).all()
    reader = SampleReader([catalog], 64, with_20m_bands=True, transplants=layout.transplants)
    index = int(np.flatnonzero((found.patch_row == 0) & (found.patch_col == 0) & (found.s2["mask"] == 1))[0])
    sample = reader.read(found, index)
    reader.close()
    assert set(sample) == set(layout.keys(with_20m_bands=True, with_dem=False))
    assert "s2_mask" not in sample and "s2_holes_t" in sample
    clear, donor = catalog.s2[found.s2["t"][index]], catalog.s2[1]
    assert sample["s2_timestamp_mask"] == donor.acquired.timestamp()
    with rasterio.open(clear.bands_10m) as stack, rasterio.open(donor.cloud_mask) as clm:
        image = np.moveaxis(stack.read(window=((0, 64), (0, 64))), 0, -1)
        holes = clm.read(1, window=((0, 64), (0, 64))) != 0
    assert holes.all()  # date 1 is cloudy over rows 0-127 of every column: the whole patch
    np.testing.assert_array_equal(sample["s2_holes_t"][..., 0], holes.astype(np.uint8))
    assert (sample["s2_t"] == -10000).all() and (sample["s2_20m_t"] == -10000).all()
    np.testing.assert_array_equal(sample["s2_target"], image)
    # Patch (1, 1) with the mask of date 2 (rows 64-95, columns 64-127 cloudy): half the patch.
    found_11 = np.flatnonzero((found.patch_row == 1) & (found.patch_col == 1) & (found.s2["mask"] == 2))
    assert sorted(int(found.s2["t"][i]) for i in found_11) == [0, 3, 5]  # the dates where patch (1, 1) is clear
    reader = SampleReader([catalog], 64, with_20m_bands=True, transplants=layout.transplants)
    sample = reader.read(found, int(found_11[0]))
    reader.close()
    expected_holes = np.zeros((64, 64), bool)
    expected_holes[:32, :] = True
    np.testing.assert_array_equal(sample["s2_holes_t"][..., 0] != 0, expected_holes)
    np.testing.assert_array_equal(sample["s2_t"][32:], sample["s2_target"][32:])
    assert (sample["s2_t"][:32] == -10000).all() and (sample["s2_20m_t"][:16] == -10000).all()
    assert (sample["s2_20m_t"][16:] != -10000).all()
