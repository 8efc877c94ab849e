"""ROI rasters: the tiles JSON, the tiles' reference grids, and the split of the training patches into
datasets (grid, grouping, disjointness, proportions, reproducibility, vector ROIs, errors)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.warp import transform as transform_points

from decloud import cli
from decloud.core.constants import S2_SUFFIX_FRE_10M
from decloud.core.errors import InputNotFoundError, InvalidFileError
from decloud.preprocessing.generate_roi_rasters import UNASSIGNED, draw_datasets, main
from decloud.preprocessing.sentinel2_prepare import prepare_s2_product
from decloud.preprocessing.tiles import TilesConfig, tile_reference_grid
from decloud.testing.theia import make_theia_product

#: Tiles of the test data set: shape (rows, cols at 10 m), CRS, upper-left corner. Neither shape is a
#: multiple of 64 nor of 256, and the second tile is in another UTM zone.
TILES = {
    "T31TEJ": ((1000, 1300), "EPSG:32631", (600000.0, 4900020.0)),
    "T32TLQ": ((1200, 1700), "EPSG:32632", (300000.0, 4900020.0)),
}
DATASETS = ["train", "valid", "test"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared products of both tiles under <root>/S2 (plus an unfinished folder sorted first), and a
    tiles JSON <root>/tiles.json with a relative S2_ROOT_DIR."""
    root = tmp_path_factory.mktemp("roi")
    for tile, (shape, crs, origin) in TILES.items():
        raw = make_theia_product(
            root / "raw", acquired=datetime(2020, 5, 1, 10), tile=tile, shape=shape, crs=crs, origin=origin
        )
        prepare_s2_product(raw, root / "S2")
    (root / "S2" / "T31TEJ" / "AAA_unfinished").mkdir()
    write_tiles_json(root / "tiles.json", {"S2_ROOT_DIR": "S2", "TILES": list(TILES)})
    return root


def write_tiles_json(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path


def product_grid(root: Path, tile: str) -> tuple[rasterio.crs.CRS, Affine, int, int]:
    (product,) = (p for p in (root / "S2" / tile).iterdir() if p.name.startswith("SENTINEL2"))
    with rasterio.open(product / f"{product.name}{S2_SUFFIX_FRE_10M}") as dataset:
        return dataset.crs, dataset.transform, dataset.height, dataset.width


def run(data_root: Path, out: Path, *extra: str, tiles: Path | None = None) -> None:
    tiles_json = tiles or data_root / "tiles.json"
    argv = ["--tiles", str(tiles_json), "--datasets", *DATASETS, "--output_dir", str(out), *extra]
    if "--props" not in extra:
        argv += ["--props", "90", "5", "5"]
    assert main(argv) == 0


def read_roi(out: Path, tile: str, dataset: str) -> np.ndarray:
    with rasterio.open(out / f"{tile}_{dataset}.tif") as dataset_file:
        return dataset_file.read(1)


def groups(array: np.ndarray, k: int) -> np.ndarray:
    """(rows // k, cols // k, k, k) view of the complete k x k groups of ``array``."""
    rows, cols = array.shape[0] // k, array.shape[1] // k
    return array[: rows * k, : cols * k].reshape(rows, k, cols, k).transpose(0, 2, 1, 3)


# --- tiles JSON and reference grid ----------------------------------------------------------------


def test_tiles_config_resolves_relative_folders(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = write_tiles_json(
        tmp_path / "conf" / "tiles.json",
        {"S1_ROOT_DIR": "/data/S1", "S2_ROOT_DIR": "../S2", "TILES": ["T31TEJ", "T30TXQ"]},
    )
    config = TilesConfig.load(path)
    assert config == TilesConfig(Path("/data/S1"), tmp_path / "conf" / ".." / "S2", None, ("T31TEJ", "T30TXQ"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"S2_ROOT_DIR": "S2", "TILES": ["T31TEJ"],}', "not valid JSON"),
        ('{"TILES": ["T31TEJ"]}', "S2_ROOT_DIR"),
        ('{"S2_ROOT_DIR": "S2"}', "TILES"),
        ('{"S2_ROOT_DIR": 3, "TILES": ["T31TEJ"]}', "S2_ROOT_DIR"),
        ('{"S2_ROOT_DIR": "S2", "DEM_ROOT_DIR": [], "TILES": ["T31TEJ"]}', "DEM_ROOT_DIR"),
        ('{"S2_ROOT_DIR": "S2", "TILES": "T31TEJ"}', "TILES"),
        ('{"S2_ROOT_DIR": "S2", "TILES": ["31TEJ"]}', "'31TEJ'"),
        ('{"S2_ROOT_DIR": "S2", "TILES": ["T31TEJ", "T31TEJ"]}', "more than once"),
        ('["T31TEJ"]', "JSON object"),
    ],
)
def test_tiles_config_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "tiles.json"
    path.write_text(text)
    with pytest.raises(InvalidFileError) as error:
        TilesConfig.load(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_tile_reference_grid_reads_first_complete_product(data_root: Path) -> None:
    grid = tile_reference_grid(data_root / "S2", "T31TEJ")
    crs, transform, height, width = product_grid(data_root, "T31TEJ")
    assert (grid.crs, grid.transform, grid.height, grid.width) == (crs, transform, height, width)


def test_tile_reference_grid_without_complete_product(tmp_path: Path) -> None:
    (tmp_path / "T31TEJ" / "unfinished").mkdir(parents=True)
    with pytest.raises(InputNotFoundError, match=re.escape(str(tmp_path / "T31TEJ"))):
        tile_reference_grid(tmp_path, "T31TEJ")


# --- the split --------------------------------------------------------------------------------------


def test_rasters_are_on_patch_grid_grouped_disjoint_and_summarised(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ROI"
    run(data_root, out, "--patchsize", "256")
    k = 4
    expected_summary = {"ROIS_ROOT_DIR": str(out), "decloud_version": "0.1.0"}
    for tile in TILES:
        crs, transform, height, width = product_grid(data_root, tile)
        for dataset in DATASETS:
            with rasterio.open(out / f"{tile}_{dataset}.tif") as roi:
                assert roi.crs == crs
                assert roi.dtypes == ("uint8",)
                assert (roi.height, roi.width) == (math.ceil(height / 64), math.ceil(width / 64))
                assert roi.transform.almost_equals(transform @ Affine.scale(64))
        stack = np.stack([read_roi(out, tile, dataset) for dataset in DATASETS])
        assert set(np.unique(stack)) <= {0, 1}
        complete = (height // 256 * k, width // 256 * k)
        # every complete group goes to exactly one dataset, as a whole; incomplete border groups to none
        assert np.all(stack.sum(axis=0)[: complete[0], : complete[1]] == 1)
        assert not stack[:, complete[0] :].any() and not stack[:, :, complete[1] :].any()
        for layer in stack:
            grouped = groups(layer, k)
            assert np.all(grouped == grouped[:, :, :1, :1])
        for index, dataset in enumerate(DATASETS):
            if stack[index].any():
                expected_summary.setdefault(f"{dataset.upper()}_TILES", []).append(tile)
    for dataset in DATASETS:
        expected_summary.setdefault(f"{dataset.upper()}_TILES", [])
    assert json.loads((out / "rois.json").read_text()) == expected_summary
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["rois.json", *(f"{tile}_{dataset}.tif" for tile in TILES for dataset in DATASETS)]
    )


def test_proportions_follow_props(data_root: Path, tmp_path: Path) -> None:
    """With 64-pixel patches every elementary patch is a draw: counts are binomial around n * p."""
    run(data_root, tmp_path, "--patchsize", "64", "--props", "6", "3", "1")
    counts = np.zeros(len(DATASETS))
    total = 0
    for tile in TILES:
        _, _, height, width = product_grid(data_root, tile)
        total += (height // 64) * (width // 64)
        counts += [read_roi(tmp_path, tile, dataset).sum() for dataset in DATASETS]
    assert counts.sum() == total
    for count, share in zip(counts, [0.6, 0.3, 0.1], strict=True):
        assert abs(count - total * share) <= 4 * math.sqrt(total * share * (1 - share))


def test_draw_never_picks_a_zero_weight_or_ineligible_dataset() -> None:
    weights = np.array([0.5, 0.0, 0.5])
    eligible = np.zeros((3, 4, 500), dtype=bool)
    eligible[:, 0] = True  # all three
    eligible[1, 1] = True  # only the zero-weight one
    eligible[2, 2] = True  # only the last one
    chosen = draw_datasets(weights, eligible, np.random.default_rng(0))
    assert set(np.unique(chosen[0])) == {0, 2}
    assert np.all(chosen[1] == UNASSIGNED) and np.all(chosen[2] == 2) and np.all(chosen[3] == UNASSIGNED)


def test_seed_makes_the_split_reproducible(data_root: Path, tmp_path: Path) -> None:
    def split(name: str, *extra: str, tiles: Path | None = None) -> dict[tuple[str, str], np.ndarray]:
        run(data_root, tmp_path / name, "--patchsize", "128", *extra, tiles=tiles)
        present = {p.name.split("_")[0] for p in (tmp_path / name).glob("T*.tif")}
        return {(t, d): read_roi(tmp_path / name, t, d) for t in present for d in DATASETS}

    first, again, other = split("a", "--seed", "7"), split("b", "--seed", "7"), split("c", "--seed", "8")
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert any(not np.array_equal(first[key], other[key]) for key in first)
    # a tile's draw depends on the seed and its name only, not on the other tiles of the JSON
    alone = write_tiles_json(tmp_path / "alone.json", {"S2_ROOT_DIR": str(data_root / "S2"), "TILES": ["T32TLQ"]})
    single = split("d", "--seed", "7", tiles=alone)
    assert all(np.array_equal(single[key], first[key]) for key in single)


# --- vector ROIs ---------------------------------------------------------------------------------------

#: Area (row0, row1, col0, col1), in 10 m pixels of T31TEJ, of each dataset. The edges fall in the middle
#: of 128-pixel groups (so partly covered groups exist), valid extends beyond the image, train and valid
#: overlap. Train's file holds two polygons split at column SPLIT, inside a column of groups.
AREAS = {"train": (-64, 704, -64, 832), "valid": (320, 1100, 448, 1400), "test": (576, 960, -64, 448)}
SPLIT = 394


def lonlat_polygon(transform: Affine, area: tuple[int, int, int, int]) -> shapely.Polygon:
    """The area as a polygon in EPSG:4326, densified every 2 pixels at integer positions (so the shared
    edge of the two train polygons has identical vertices in both)."""
    row0, row1, col0, col1 = area
    ring = (
        [(row0, c) for c in range(col0, col1, 2)]
        + [(r, col1) for r in range(row0, row1, 2)]
        + [(row1, c) for c in range(col1, col0, -2)]
        + [(r, col0) for r in range(row1, row0, -2)]
    )
    rows, cols = np.array(ring, dtype=float).T
    x, y = transform @ (cols, rows)
    lon, lat = transform_points("EPSG:32631", "EPSG:4326", x, y)
    return shapely.Polygon(np.column_stack([lon, lat]))


def write_dataset_polygons(path: Path, transform: Affine, dataset: str) -> None:
    row0, row1, col0, col1 = AREAS[dataset]
    parts = [(row0, row1, col0, SPLIT), (row0, row1, SPLIT, col1)] if dataset == "train" else [AREAS[dataset]]
    polygons = np.array([lonlat_polygon(transform, part) for part in parts])
    pyogrio.raw.write(path, shapely.to_wkb(polygons), [], [], geometry_type="Polygon", crs="EPSG:4326", driver="GPKG")


def groups_inside(area: tuple[int, int, int, int], shape: tuple[int, int], size: int) -> np.ndarray:
    """Which of the rows x cols complete size x size groups lie inside ``area``, from pixel coordinates."""
    row0, row1, col0, col1 = area
    starts_row, starts_col = np.arange(shape[0]) * size, np.arange(shape[1]) * size
    rows_in = (row0 <= starts_row) & (starts_row + size <= row1)
    cols_in = (col0 <= starts_col) & (starts_col + size <= col1)
    return np.outer(rows_in, cols_in)


def test_rois_restrict_groups_to_polygons(data_root: Path, tmp_path: Path) -> None:
    _, transform, height, width = product_grid(data_root, "T31TEJ")
    size, k = 128, 2
    shape = (height // size, width // size)
    paths = [tmp_path / f"{dataset}.gpkg" for dataset in DATASETS]
    for path, dataset in zip(paths, DATASETS, strict=True):
        write_dataset_polygons(path, transform, dataset)
    out = tmp_path / "ROI"
    run(data_root, out, "--patchsize", str(size), "--props", "60", "30", "10", "--rois", *map(str, paths))

    eligible = np.stack([groups_inside(AREAS[d], shape, size) for d in DATASETS])
    assert eligible[0, :, SPLIT // size].any()  # groups covered only by the union of train's two polygons
    assert (eligible[0] & eligible[1]).any()
    selected = np.stack([groups(read_roi(out, "T31TEJ", d), k)[: shape[0], : shape[1], 0, 0] for d in DATASETS])
    assert np.array_equal(selected.astype(bool) & ~eligible, np.zeros_like(eligible))  # only inside
    assert np.array_equal(selected.sum(axis=0), eligible.any(axis=0).astype(int))  # once where eligible
    roi_shape = (math.ceil(height / 64), math.ceil(width / 64))
    for dataset in DATASETS:  # nothing outside the complete groups, though valid's polygon extends there
        full = read_roi(out, "T31TEJ", dataset)
        assert full.shape == roi_shape
        assert not full[shape[0] * k :].any() and not full[:, shape[1] * k :].any()
        assert not read_roi(out, "T32TLQ", dataset).any()  # far from every polygon
    assert json.loads((out / "rois.json").read_text()) == {
        "ROIS_ROOT_DIR": str(out),
        "decloud_version": "0.1.0",
        "TRAIN_TILES": ["T31TEJ"],
        "VALID_TILES": ["T31TEJ"],
        "TEST_TILES": ["T31TEJ"],
    }


# --- errors ----------------------------------------------------------------------------------------------


def bad_tiles(root: Path, text: str) -> Path:
    path = root / "bad_tiles.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("props count", r"2 proportions \(--props\) for 3 datasets"),
        ("patchsize", r"patch size 100 is not a positive multiple of 64"),
        ("tile without product", r"of T31TGJ not found: \S+/S2/T31TGJ"),
        ("invalid JSON", r"\S+/bad_tiles\.json: not valid JSON"),
        ("missing S2_ROOT_DIR", r"\S+/bad_tiles\.json: missing key 'S2_ROOT_DIR'"),
        ("missing vector file", r"vector file not found: \S+/train\.gpkg"),
        ("unreadable vector file", r"\S+/train\.gpkg: cannot read vector file"),
    ],
)
def test_errors_exit_non_zero_and_write_nothing(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    tiles, props, extra = str(data_root / "tiles.json"), ["90", "5", "5"], []
    if case == "props count":
        props = ["90", "10"]
    elif case == "patchsize":
        extra = ["--patchsize", "100"]
    elif case == "tile without product":
        content = {"S2_ROOT_DIR": str(data_root / "S2"), "TILES": [*TILES, "T31TGJ"]}
        tiles = str(write_tiles_json(tmp_path / "tiles.json", content))
    elif case == "invalid JSON":
        tiles = str(bad_tiles(tmp_path, '{"S2_ROOT_DIR": "S2", "TILES": [T31TEJ]}'))
    elif case == "missing S2_ROOT_DIR":
        tiles = str(bad_tiles(tmp_path, '{"TILES": ["T31TEJ"]}'))
    elif case.endswith("vector file"):
        extra = ["--rois", *(str(tmp_path / f"{dataset}.gpkg") for dataset in DATASETS)]
        if case.startswith("unreadable"):
            (tmp_path / "train.gpkg").write_bytes(b"not a GeoPackage")
    out = tmp_path / "ROI"
    out.mkdir()
    argv = ["--tiles", tiles, "--datasets", *DATASETS, "--props", *props, "--output_dir", str(out), *extra]
    assert main(argv) == 1
    stderr = capsys.readouterr().err
    assert "decloud generate-roi-rasters: error:" in stderr
    assert re.search(expected, stderr), stderr
    assert not any(out.iterdir())


def test_command_line_module_and_umbrella(data_root: Path, tmp_path: Path) -> None:
    argv = ["--tiles", str(data_root / "tiles.json"), "--datasets", "train", "--props", "1"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "decloud.preprocessing.generate_roi_rasters",
            *argv,
            "--output_dir",
            str(tmp_path / "a"),
            "--patchsize",
            "96",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "patch size 96 is not a positive multiple of 64" in result.stderr
    assert cli.main(["generate-roi-rasters", *argv, "--output_dir", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "rois.json").read_text())
    assert summary == {"ROIS_ROOT_DIR": str(tmp_path / "b"), "decloud_version": "0.1.0", "TRAIN_TILES": list(TILES)}
