"""DEM preparation: mosaic + bilinear reprojection onto the 20 m grid of a tile, checked against
elevations computed independently (linear functions of lon/lat, which bilinear interpolation
reproduces exactly, and a hand-made bilinear interpolation of the real Rome DEM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform, transform_bounds

from decloud import cli
from decloud.core.constants import DEM_NODATA, S2_BANDS_20M, S2_NODATA
from decloud.core.raster import Grid, write_array
from decloud.preprocessing.dem_prepare import DEM_DESCRIPTION, horizontal_crs, main, prepare_dem
from decloud.testing.dem import make_dem

#: A 20 m reference grid in UTM 31N (south of France), 100 x 130 pixels: with 64-pixel windows it has
#: full, clipped and (in test c) empty windows.
REF_CRS = "EPSG:32631"
REF_TRANSFORM = Affine(20.0, 0.0, 560000.0, 0.0, -20.0, 4870020.0)
REF_SHAPE = (100, 130)
WINDOW = 64
#: Pixel size (degrees) of the lon/lat input DEMs: 1 arc-second, like SRTM or Copernicus DEM.
ARC_SECOND = 1.0 / 3600.0
#: Margin (degrees) around a footprint boundary within which a pixel may fall on either side of it.
BOUNDARY = 1.5 * ARC_SECOND


def write_reference(path: Path, crs: str = REF_CRS, transform_: Affine = REF_TRANSFORM, shape=REF_SHAPE) -> Path:
    """A prepared-FRE_20m-like raster: 6 int16 bands on the 20 m grid."""
    write_array(
        path,
        np.full((len(S2_BANDS_20M), *shape), 1000, dtype=np.int16),
        crs=CRS.from_string(crs),
        transform=transform_,
        nodata=S2_NODATA,
        descriptions=S2_BANDS_20M,
    )
    return path


def reference_lonlat(crs: str = REF_CRS, transform_: Affine = REF_TRANSFORM, shape=REF_SHAPE):
    """Longitude and latitude (rows, cols) of the centres of the reference pixels."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    xs, ys = transform_ @ (cols, rows)
    lon, lat = transform(crs, "EPSG:4326", xs.ravel(), ys.ravel())
    return np.reshape(lon, shape), np.reshape(lat, shape)


REF_LON, REF_LAT = reference_lonlat()
LON0, LAT0 = float(REF_LON.mean()), float(REF_LAT.mean())


def linear(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Elevation linear in lon and lat, steep enough (about 0.25 m/m) that a 20 m error shows."""
    return 500.0 + 20000.0 * (lon - LON0) + 30000.0 * (lat - LAT0)


def linear_in_lat(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Elevation depending on latitude only: a west/east seam cannot bend it."""
    return 500.0 + 30000.0 * (lat - LAT0)


def lonlat_grid(margin: int = 10) -> tuple[Affine, tuple[int, int]]:
    """A 1 arc-second grid covering the reference with ``margin`` pixels on each side."""
    west, south, east, north = transform_bounds(
        REF_CRS, "EPSG:4326", *rasterio.transform.array_bounds(*REF_SHAPE, REF_TRANSFORM)
    )
    left = np.floor(west / ARC_SECOND - margin) * ARC_SECOND
    top = np.ceil(north / ARC_SECOND + margin) * ARC_SECOND
    width = int(np.ceil((east - left) / ARC_SECOND)) + margin
    height = int(np.ceil((top - south) / ARC_SECOND)) + margin
    return Affine(ARC_SECOND, 0.0, left, 0.0, -ARC_SECOND, top), (height, width)


def columns_of(transform_: Affine, start: int, stop: int, height: int) -> tuple[Affine, tuple[int, int]]:
    """The sub-grid of columns [start, stop) of a grid."""
    return transform_ @ Affine.translation(start, 0), (height, stop - start)


def read_dem(path: Path) -> tuple[np.ndarray, dict, tuple]:
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.profile, dataset.descriptions


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return write_reference(tmp_path / "ref_FRE_20m.tif")


def test_linear_dem_in_lonlat_is_reprojected_onto_the_reference_grid(tmp_path, reference):
    dem_transform, dem_shape = lonlat_grid()
    dem = make_dem(
        tmp_path / "dem.tif",
        crs="EPSG:4326",
        transform=dem_transform,
        shape=dem_shape,
        elevation=linear,
    )
    by_function = prepare_dem(reference, [dem], tmp_path / "a.tif", window_size=WINDOW)
    assert main(["--reference", str(reference), "--input", str(dem), "--output", str(tmp_path / "b.tif")]) == 0

    values, profile, descriptions = read_dem(by_function)
    with rasterio.open(by_function) as out, rasterio.open(reference) as ref:
        assert Grid.of(out).same_as(Grid.of(ref))
    assert profile["dtype"] == "int16"
    assert profile["nodata"] == DEM_NODATA
    assert descriptions == (DEM_DESCRIPTION,)
    assert (values != DEM_NODATA).all()
    expected = np.rint(linear(REF_LON, REF_LAT))
    assert np.abs(values - expected).max() <= 1
    assert np.mean(values == expected) > 0.9  # rounded to the nearest metre, not truncated
    assert np.ptp(expected) > 300  # the test is sensitive: neighbouring pixels differ by about 5 m
    np.testing.assert_array_equal(read_dem(tmp_path / "b.tif")[0], values)  # window size does not matter
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "dem.tif", "ref_FRE_20m.tif"]


def test_dem_split_in_two_files_mosaics_without_seam(tmp_path, reference):
    full_transform, (height, width) = lonlat_grid()
    half = width // 2
    west_transform, west_shape = columns_of(full_transform, 0, half + 2, height)
    east_transform, east_shape = columns_of(full_transform, half - 2, width, height)
    west = make_dem(
        tmp_path / "west.tif", crs="EPSG:4326", transform=west_transform, shape=west_shape, elevation=linear_in_lat
    )
    east = make_dem(
        tmp_path / "east.tif",
        crs="EPSG:4326",
        transform=east_transform,
        shape=east_shape,
        elevation=linear_in_lat,
        dtype="int16",
    )
    seam_lon = (full_transform @ (half, 0))[0]
    assert REF_LON.min() < seam_lon < REF_LON.max()  # both files contribute

    expected = np.rint(linear_in_lat(REF_LON, REF_LAT))
    for order in ([west, east], [east, west]):
        values = read_dem(prepare_dem(reference, order, tmp_path / "out.tif", window_size=WINDOW))[0]
        assert np.abs(values - expected).max() <= 1  # int16 east half: its own rounding adds 0.5 m at most


def test_first_input_wins_where_it_has_a_value(tmp_path, reference):
    full_transform, (height, width) = lonlat_grid()
    first_transform, first_shape = columns_of(full_transform, 0, width // 2, height)
    first_east = (first_transform @ (first_shape[1], 0))[0]
    hole = (LON0 - 0.004, LON0 - 0.002, LAT0 - 0.002, LAT0 + 0.002)  # lon0, lon1, lat0, lat1

    def in_hole(lon, lat, margin=0.0):
        return (lon > hole[0] - margin) & (lon < hole[1] + margin) & (lat > hole[2] - margin) & (lat < hole[3] + margin)

    def first_elevation(lon, lat):
        return np.where(in_hole(lon, lat), np.nan, linear_in_lat(lon, lat))

    first = make_dem(
        tmp_path / "first.tif", crs="EPSG:4326", transform=first_transform, shape=first_shape, elevation=first_elevation
    )
    second = make_dem(
        tmp_path / "second.tif",
        crs="EPSG:4326",
        transform=full_transform,
        shape=(height, width),
        elevation=lambda lon, lat: linear_in_lat(lon, lat) + 1000.0,
    )
    values = read_dem(prepare_dem(reference, [first, second], tmp_path / "out.tif", window_size=WINDOW))[0]

    lon, lat = REF_LON, REF_LAT
    ground = linear_in_lat(lon, lat)
    from_first = (lon < first_east) & ~in_hole(lon, lat)
    near_edge = (np.abs(lon - first_east) < BOUNDARY) | (in_hole(lon, lat, BOUNDARY) & ~in_hole(lon, lat, -BOUNDARY))
    expected = np.rint(np.where(from_first, ground, ground + 1000.0))
    assert np.abs(values - expected)[~near_edge].max() <= 1
    assert (from_first & ~near_edge).sum() > 1000
    assert (~from_first & ~near_edge).sum() > 1000
    assert in_hole(lon, lat, -BOUNDARY).sum() > 20  # the hole is filled by the second input
    # Along the edges, each pixel comes from one input or the other (bilinear near an edge leans on one side).
    edge_error = np.minimum(np.abs(values - ground), np.abs(values - ground - 1000.0))[near_edge]
    assert edge_error.max() <= 10

    swapped = read_dem(prepare_dem(reference, [second, first], tmp_path / "swapped.tif", window_size=WINDOW))[0]
    assert np.abs(swapped - np.rint(ground + 1000.0)).max() <= 1


def test_reference_partly_outside_every_input_stays_nodata(tmp_path, reference):
    full_transform, (_, width) = lonlat_grid()
    south_edge = float(np.quantile(REF_LAT[40], 0.5))
    rows = int(np.ceil((full_transform.f - south_edge) / ARC_SECOND))
    dem = make_dem(
        tmp_path / "north.tif", crs="EPSG:4326", transform=full_transform, shape=(rows, width), elevation=linear
    )
    dem_south = full_transform.f - rows * ARC_SECOND
    output = tmp_path / "out" / "T31TEJ.tif"
    status = cli.main(["dem-prepare", "--reference", str(reference), "--input", str(dem), "--output", str(output)])
    assert status == 0

    values = read_dem(output)[0]
    lon, lat = REF_LON, REF_LAT
    covered = lat > dem_south + BOUNDARY
    outside = lat < dem_south - BOUNDARY
    assert (values[outside] == DEM_NODATA).all()
    assert (values[WINDOW:] == DEM_NODATA).all()  # whole windows without any input value
    assert np.abs(values[covered] - np.rint(linear(lon, lat))[covered]).max() <= 1
    assert covered.sum() > 3000 and outside.sum() > 5000


def test_compound_crs_is_reduced_to_its_horizontal_part():
    assert horizontal_crs(CRS.from_epsg(9707)) == CRS.from_epsg(4326)
    assert horizontal_crs(CRS.from_epsg(32633)) == CRS.from_epsg(32633)


def bilinear(array: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``array`` at fractional pixel-centre coordinates (col, row)."""
    col0, row0 = np.floor(col).astype(int), np.floor(row).astype(int)
    dc, dr = col - col0, row - row0
    top = array[row0, col0] * (1 - dc) + array[row0, col0 + 1] * dc
    bottom = array[row0 + 1, col0] * (1 - dc) + array[row0 + 1, col0 + 1] * dc
    return top * (1 - dr) + bottom * dr


def test_real_rome_dem_in_wgs84_egm96_onto_utm33(tmp_path, shared_data):
    source_path = shared_data / "dem" / "Rome-30m-DEM.tif"
    ref_transform, ref_shape = Affine(20.0, 0.0, 290380.0, 0.0, -20.0, 4655360.0), (256, 256)
    reference = write_reference(tmp_path / "ref_FRE_20m.tif", "EPSG:32633", ref_transform, ref_shape)
    values, profile, _ = read_dem(
        prepare_dem(reference, [source_path], tmp_path / "T33TTG.tif", window_size=2 * WINDOW)
    )
    assert profile["crs"] == CRS.from_epsg(32633) and profile["transform"] == ref_transform
    assert values.shape == ref_shape
    assert (values != DEM_NODATA).all()
    assert values.min() >= 5 and values.max() <= 115

    with rasterio.open(source_path) as source:
        assert source.crs.to_epsg() == 9707  # the compound CRS this test is about
        heights = source.read(1).astype(np.float64)
        src_transform = source.transform
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, ref_shape[0], 25), rng.integers(0, ref_shape[1], 25)
    xs, ys = ref_transform @ (cols + 0.5, rows + 0.5)
    lon, lat = transform("EPSG:32633", "EPSG:4326", xs, ys)
    src_col, src_row = ~src_transform @ (np.asarray(lon), np.asarray(lat))
    expected = bilinear(heights, src_col - 0.5, src_row - 0.5)
    assert np.abs(values[rows, cols] - expected).max() <= 1  # no geoid shift (about 48 m in Rome) applied


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def bad_inputs(tmp_path: Path, reference: Path) -> dict[str, tuple[list[str], Path]]:
    """Command lines that must fail, with the file their error must name."""
    dem_transform, dem_shape = lonlat_grid()
    good = make_dem(tmp_path / "good.tif", crs="EPSG:4326", transform=dem_transform, shape=dem_shape)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"this is not a GeoTIFF")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    far_away = make_dem(
        tmp_path / "far.tif",
        crs="EPSG:4326",
        transform=Affine(ARC_SECOND, 0.0, 100.0, 0.0, -ARC_SECOND, 10.0),
        shape=(50, 50),
    )
    missing = tmp_path / "missing.tif"
    cases = {
        "missing input": (good, missing, missing),
        "corrupt input": (good, corrupt, corrupt),
        "truncated input": (truncated, good, truncated),
        "input not overlapping": (good, far_away, far_away),
        "missing reference": (good, good, tmp_path / "no_ref.tif"),
    }
    return {
        name: (
            [
                "--reference",
                str(at_fault if name == "missing reference" else reference),
                "--input",
                str(first),
                str(second),
                "--output",
                str(tmp_path / "out" / "T31TEJ.tif"),
            ],
            at_fault,
        )
        for name, (first, second, at_fault) in cases.items()
    }


@pytest.mark.parametrize(
    "case", ["missing input", "corrupt input", "truncated input", "input not overlapping", "missing reference"]
)
def test_bad_input_fails_naming_the_file_and_leaves_nothing(tmp_path, bad_inputs, case, capsys):
    argv, at_fault = bad_inputs[case]
    assert main(argv) != 0
    assert str(at_fault) in capsys.readouterr().err
    assert _leftovers(tmp_path / "out") == []


def test_bad_input_exit_status_through_python_m(tmp_path, bad_inputs):
    argv, at_fault = bad_inputs["input not overlapping"]
    result = subprocess.run(
        [sys.executable, "-m", "decloud.preprocessing.dem_prepare", *argv], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert str(at_fault) in result.stderr and "does not overlap" in result.stderr
    assert _leftovers(tmp_path / "out") == []


def test_the_20m_grid_reaching_half_a_pixel_past_the_dem_has_no_nodata_edge(tmp_path):
    # A 10 m extent of 129 x 131 pixels: its 20 m grid (65 x 66) reaches 10 m past it at the bottom and right.
    # The DEM (10 m, UTM) covers exactly the 10 m extent, height = 0.01 x + 0.02 y metres (plane).
    origin_x, origin_y = 560000.0, 4870020.0
    dem_transform = Affine(10.0, 0.0, origin_x, 0.0, -10.0, origin_y)
    rows, cols = np.mgrid[0:129, 0:131] + 0.5
    xs, ys = dem_transform @ (cols, rows)
    write_array(
        tmp_path / "dem.tif",
        (0.01 * (xs - origin_x) + 0.02 * (origin_y - ys)).astype(np.float32),
        crs=CRS.from_string(REF_CRS),
        transform=dem_transform,
        nodata=-9999.0,
    )
    reference = write_reference(
        tmp_path / "ref.tif", transform_=Affine(20.0, 0.0, origin_x, 0.0, -20.0, origin_y), shape=(65, 66)
    )
    prepare_dem(reference, [tmp_path / "dem.tif"], tmp_path / "out.tif", window_size=WINDOW)
    with rasterio.open(tmp_path / "out.tif") as dataset:
        heights = dataset.read(1)
    assert heights.shape == (65, 66)
    assert (heights != DEM_NODATA).all()
    # Centres of the 20 m pixels: x = 10 + 20 j, y = 10 + 20 i from the origin; the plane there, in metres.
    expected = 0.01 * (10 + 20 * np.arange(66))[np.newaxis] + 0.02 * (10 + 20 * np.arange(65))[:, np.newaxis]
    # inside: bilinear interpolation of a plane is exact (up to int16 rounding)
    np.testing.assert_allclose(heights[:-1, :-1], expected[:-1, :-1], atol=0.5)
    # outer row and column: the value 20 m inwards, i.e. within one pixel step of the plane (0.2 m and 0.4 m)
    np.testing.assert_allclose(heights[-1], expected[-1], atol=0.4 + 0.5)
    np.testing.assert_allclose(heights[:, -1], expected[:, -1], atol=0.4 + 0.5)
