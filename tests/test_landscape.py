"""The generated landscape, sky and scene of the demo (decloud.testing.landscape, .sky, .noise, decloud.demo.scene):
values checked against formulas written out here with literal constants, and against independent computations."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from decloud.demo.scene import (
    conditions,
    date_image,
    plan_scene,
    s1_sigma0,
    write_scene,
)
from decloud.testing import landscape as land
from decloud.testing.noise import gamma_speckle, value_noise
from decloud.testing.sky import (
    Weather,
    cloud_opacity,
    observe,
    shadow_depth,
    sun_position,
    with_cover,
)

TILE = Window(0, 0, 512, 512)
#: Band order of the landscape's stacks, written out: the 10 m bands then the 20 m bands.
B2, B3, B4, B8, B5, B6, B7, B8A, B11, B12 = range(10)
CODES = {"wheat": 1, "maize": 2, "sunflower": 3, "rapeseed": 4, "grassland": 5, "bare soil": 6, "forest": 7,
         "water": 8, "urban": 9, "road": 10}  # fmt: skip


def grid(window: Window) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(window.row_off, window.row_off + window.height)[:, None] + 0.5
    cols = np.arange(window.col_off, window.col_off + window.width)[None, :] + 0.5
    return rows, cols


def test_the_class_map_is_a_function_of_the_seed_and_of_the_position_only():
    full = land.class_map(TILE, 3)
    np.testing.assert_array_equal(full, land.class_map(Window(0, 0, 512, 512), 3))
    np.testing.assert_array_equal(full[100:228, 300:400], land.class_map(Window(300, 100, 100, 128), 3))
    assert (full != land.class_map(TILE, 4)).mean() > 0.5
    present = set(np.unique(full).tolist())
    assert present == set(CODES.values())  # the ten classes on a 512 x 512 tile
    shares = {name: (full == code).mean() for name, code in CODES.items()}
    assert 0.15 < shares["wheat"] < 0.45 and 0.05 < shares["forest"] < 0.35
    assert 0.005 < shares["water"] < 0.05 and 0.005 < shares["urban"] < 0.06 and 0.005 < shares["road"] < 0.05


def test_parcels_are_the_voronoi_cells_of_sites_in_the_middle_of_their_lattice_cells():
    rows, cols = grid(TILE)
    cell_r, cell_c, border = land.parcels(rows, cols, 0)
    # brute force: the nearest of the sites of a 5 x 5 lattice neighbourhood (cells of 40 pixels)
    lattice = np.arange(-2, 16)
    site_r, site_c = land.parcel_sites(lattice[:, None], lattice[None, :], 0)
    assert ((site_r / 40 - lattice[:, None]) >= 0.15).all() and ((site_r / 40 - lattice[:, None]) <= 0.85).all()
    assert ((site_c / 40 - lattice[None, :]) >= 0.15).all() and ((site_c / 40 - lattice[None, :]) <= 0.85).all()
    sample = np.random.default_rng(0).integers(0, 512, (2000, 2))
    for r, c in sample:
        distance = (r + 0.5 - site_r) ** 2 + (c + 0.5 - site_c) ** 2
        i, j = np.unravel_index(np.argmin(distance), distance.shape)
        assert (cell_r[r, c], cell_c[r, c]) == (lattice[i], lattice[j])
    # 512 / 40 = 12.8 cells a side: 13 x 13 sites inside or at the edge, a few more parcels poking in
    count = len(np.unique(cell_r * 1000 + cell_c))
    assert 150 <= count <= 200
    # the distance to the border is 0 where the parcel changes
    changes = (cell_r[:, 1:] != cell_r[:, :-1]) | (cell_c[:, 1:] != cell_c[:, :-1])
    assert np.percentile(border[:, 1:][changes], 99) < 1.0 and np.median(border) > 5


def wheat_parcel(seed: int = 0):
    """(row, col) of a pixel in the middle of a wheat parcel, its lattice cell, and its season shift."""
    plan = land.layout(TILE, seed)
    rows, cols = np.nonzero((plan.classes == CODES["wheat"]) & (plan.margin == 0) & (plan.road == 0))
    r, c = rows[len(rows) // 2], cols[len(cols) // 2]
    return r, c, plan.cell_r[r, c], plan.cell_c[r, c]


def smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def test_the_phenology_of_a_wheat_parcel_follows_its_formula_shifted_per_parcel():
    r, c, cell_r, cell_c = wheat_parcel()
    ground = np.array([[land.WHEAT]])
    phenology = land.parcel_phenology(ground, np.array([[cell_r]]), np.array([[cell_c]]), 0)
    shift = phenology.green_up.item() - 60
    harvest_shift = phenology.harvest.item() - 192 - shift
    peak = phenology.peak_cover.item()
    assert abs(shift) <= 8 and abs(harvest_shift) <= 6 and 0.85 * 0.92 <= peak <= 0.92
    assert (phenology.peak.item(), phenology.dry.item()) == pytest.approx((110 + shift, 180 + shift))
    expected = {  # winter cover 0.35, green-up 60, peak 110, senescence 155, dry 180, harvest 192
        60 + shift: (0.35, 0.0),
        85 + shift: (0.35 + (peak - 0.35) * 0.5, 0.0),
        70 + shift: (0.35 + (peak - 0.35) * smoothstep(10 / 50), 0.0),
        130 + shift: (peak, 0.0),
        167.5 + shift: (peak * 0.5, peak * 0.5),
        180 + shift: (0.0, peak),
        192 + shift + harvest_shift: (0.0, 0.55),  # cut: straw stubble
        212 + shift + harvest_shift: (0.08 * 0.5, 0.55 * (1 - smoothstep(20 / 60))),
    }
    for day, (green, dry) in expected.items():
        got_green, got_dry, flower = land.cover(phenology, float(day))
        assert got_green.item() == pytest.approx(green, abs=1e-9), day
        assert got_dry.item() == pytest.approx(dry, abs=1e-9) and flower.item() == 0.0
    # what Sentinel-2 sees of it: green in spring (NDVI high), straw after the harvest (NDVI low)
    spring = land.reflectance(TILE, 0, land.Conditions(130 + shift, 0.12))[:, r, c]
    stubble = land.reflectance(TILE, 0, land.Conditions(200 + shift + harvest_shift, 0.12))[:, r, c]
    ndvi = [(x[B8] - x[B4]) / (x[B8] + x[B4]) for x in (spring, stubble)]
    assert ndvi[0] > 0.75 and ndvi[1] < 0.35


def test_season_shifts_differ_between_parcels_within_their_range():
    plan = land.layout(TILE, 0)
    phenology = land.parcel_phenology(plan.ground, plan.cell_r, plan.cell_c, 0)
    for code, half_range, nominal in ((CODES["wheat"], 8, 60), (CODES["maize"], 12, 135)):
        starts = np.unique(phenology.green_up[plan.ground == code])
        assert len(starts) > 10
        assert starts.min() >= nominal - half_range and starts.max() <= nominal + half_range
        assert starts.max() - starts.min() > half_range


def test_rapeseed_flowers_yellow_in_april_and_classes_overlap_in_time():
    plan = land.layout(TILE, 0)
    flowering = land.reflectance(TILE, 0, land.Conditions(108, 0.12))
    green = land.reflectance(TILE, 0, land.Conditions(135, 0.12))
    inner = (plan.margin == 0) & (plan.road == 0) & (plan.water == 0)
    rapeseed = inner & (plan.classes == CODES["rapeseed"])
    # yellow: red rises towards green, blue stays low
    assert np.median(flowering[B4][rapeseed]) > 2 * np.median(green[B4][rapeseed])
    assert np.median(flowering[B2][rapeseed]) < 0.5 * np.median(flowering[B3][rapeseed])
    # mid-May, wheat, rapeseed, grassland and forest are all green (NDVI > 0.6): one date does not tell them apart
    june = land.reflectance(TILE, 0, land.Conditions(135, 0.12))
    ndvi = (june[B8] - june[B4]) / (june[B8] + june[B4])
    for name in ("wheat", "rapeseed", "grassland", "forest"):
        assert np.median(ndvi[inner & (plan.classes == CODES[name])]) > 0.6, name


def test_reflectances_per_class_have_the_shapes_of_real_spectra():
    plan = land.layout(TILE, 0)
    values = land.reflectance(TILE, 0, land.Conditions(160, 0.12))
    assert values.dtype == np.float32 and values.shape == (10, 512, 512)
    assert values.min() > 0.0 and values.max() < 0.7
    pure = (plan.margin == 0) & (plan.road == 0) & ((plan.water == 0) | (plan.water == 1))

    def median(name: str) -> np.ndarray:
        return np.median(values[:, pure & (plan.classes == CODES[name])], axis=1)

    water, forest, urban = median("water"), median("forest"), median("urban")
    assert water[B8] < 0.02 and water[B11] < 0.01 and water[B12] < 0.01 and water[B3] > water[B8]
    # vegetation: red absorbed, red edge rising to the near-infrared plateau, SWIR water absorption (B11 > B12)
    assert forest[B4] < 0.04 and forest[B5] < forest[B6] < forest[B7] < forest[B8A] and 0.25 < forest[B8] < 0.4
    assert forest[B11] > forest[B12] and forest[B8] > 1.5 * forest[B11]
    assert 0.1 < urban[B4] < 0.25 and urban[B11] > urban[B8] * 0.9
    # maize emerges in May: bare soil in April, bright in SWIR, red above green
    april = land.reflectance(TILE, 0, land.Conditions(110, 0.12))
    maize = np.median(april[:, pure & (plan.classes == CODES["maize"])], axis=1)
    assert maize[B11] > maize[B8] > maize[B4] > maize[B3] > maize[B2]


def test_wet_soil_is_darker_and_backscatters_more():
    plan = land.layout(TILE, 0)
    soil = (plan.classes == CODES["maize"]) & (plan.margin == 0) & (plan.road == 0)
    dry, wet = (land.reflectance(TILE, 0, land.Conditions(110, m)) for m in (0.08, 0.40))
    # moisture 0.08 to 0.40 darkens bare soil by 30 % (45 % in the SWIR); maize has not emerged on day 110
    np.testing.assert_allclose(np.median(wet[B4][soil] / dry[B4][soil]), 0.70, atol=0.02)
    np.testing.assert_allclose(np.median(wet[B11][soil] / dry[B11][soil]), 0.55, atol=0.02)
    vv_dry, vv_wet = (land.backscatter(TILE, 0, land.Conditions(110, m), "vv") for m in (0.10, 0.30))
    # the soil term rises by 25 dB per m3/m3: 5 dB from 0.10 to 0.30 over bare soil
    gain = 10 * np.log10(vv_wet[soil] / vv_dry[soil])
    assert np.median(gain) == pytest.approx(5.0, abs=0.3)


def test_backscatter_follows_the_biomass_and_water_is_dark():
    plan = land.layout(TILE, 0)
    pure = (plan.margin == 0) & (plan.road == 0) & (plan.water == 0)
    maize = pure & (plan.classes == CODES["maize"])
    days = [120, 150, 180, 210]
    vh = [np.median(10 * np.log10(land.backscatter(TILE, 0, land.Conditions(d, 0.15), "vh")[maize])) for d in days]
    assert all(np.diff(vh) > 0) and vh[-1] - vh[0] > 6
    assert -16 < vh[-1] < -11  # a grown maize field in VH
    water = plan.water == 1
    vv = land.backscatter(TILE, 0, land.Conditions(150, 0.15), "vv")
    np.testing.assert_allclose(vv[water], 10 ** (-22 / 10), rtol=1e-5)  # calm water: -22 dB in VV
    forest = 10 * np.log10(np.median(vv[pure & (plan.classes == CODES["forest"])]))
    assert -9 < forest < -5


def test_speckle_is_gamma_distributed_with_mean_one_and_variance_one_over_the_looks():
    rows, cols = np.arange(512)[:, None], np.arange(512)[None, :]
    speckle = gamma_speckle(rows, cols, 4, 0, 1)
    assert speckle.min() > 0
    assert speckle.mean() == pytest.approx(1.0, abs=0.005)
    assert speckle.var() == pytest.approx(0.25, abs=0.005)
    # third moment of a gamma of shape 4 and scale 1/4: k(k+1)(k+2)/k^3 = 120/64
    assert (speckle**3).mean() == pytest.approx(120 / 64, rel=0.02)
    other = gamma_speckle(rows, cols, 4, 0, 2)
    assert abs(np.corrcoef(speckle.ravel(), other.ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(speckle[:, 1:].ravel(), speckle[:, :-1].ravel())[0, 1]) < 0.01


def test_value_noise_is_the_same_on_a_grid_and_at_scattered_points():
    rows, cols = grid(Window(-30, 17, 90, 70))
    on_grid = value_noise(rows, cols, 9.0, 2, 5)
    scattered = value_noise(*np.broadcast_arrays(rows, cols), 9.0, 2, 5)
    np.testing.assert_allclose(on_grid, scattered, rtol=1e-12)
    assert on_grid.min() >= 0 and on_grid.max() <= 1


def weather(**changes) -> Weather:
    base = dict(system=1, date_key=3, offset=(0.0, 0.0), cell=120.0, height=1000.0, sun_zenith=45.0,
                sun_azimuth=180.0)  # fmt: skip
    base.update(changes)
    rows, cols = grid(Window(0, 0, 256, 256))
    return with_cover(Weather(**base), 0.3, rows[::4], cols[:, ::4], 0)


D = 100 / 2**0.5  #: 100 pixels along a diagonal


@pytest.mark.parametrize(("azimuth", "expected"), [(180.0, (-100, 0)), (90.0, (0, -100)), (135.0, (-D, -D))])
def test_shadows_are_the_clouds_moved_away_from_the_sun(azimuth, expected):
    # a cloud 1000 m high with the sun 45 degrees from the zenith casts its shadow 1000 m (100 pixels) away
    sky = weather(sun_azimuth=azimuth)
    rows, cols = grid(Window(0, 0, 256, 256))
    d_rows, d_cols = expected
    np.testing.assert_allclose(
        shadow_depth(rows, cols, sky, 0), cloud_opacity(rows - d_rows, cols - d_cols, sky, 0), atol=0.02
    )
    assert shadow_depth(rows, cols, sky, 0).max() == 1.0


def test_the_sun_position_matches_known_positions():
    # 20 March 2021 12:00 UTC at 45 N 0 E: declination about -0.4 degrees, so the sun is about 45.4 degrees from
    # the zenith, due south
    zenith, azimuth = sun_position(datetime(2021, 3, 20, 12, 0), 45.0, 0.0)
    assert zenith == pytest.approx(45.4, abs=1.0) and azimuth == pytest.approx(180.0, abs=1.0)
    # 21 June 10:40 UTC over the south of France: sun high (about 25 degrees from the zenith) in the south-east
    zenith, azimuth = sun_position(datetime(2021, 6, 21, 10, 40), 43.9, 3.3)
    assert 22 < zenith < 28 and 130 < azimuth < 160


def test_the_cloud_mask_flags_the_opaque_clouds_and_misses_thin_edges():
    sky = weather(cirrus=0.0, haze=0.0)
    rows, cols = grid(Window(0, 0, 256, 256))
    surface = land.reflectance(Window(0, 0, 256, 256), 0, land.Conditions(150, 0.12))
    seen, clm = observe(surface, rows, cols, sky, 0)
    opacity = cloud_opacity(rows, cols, sky, 0)
    assert ((clm[opacity == 1] & 0b10) != 0).all()  # bit 1: clouds
    assert 0.27 < ((clm & 0b10) != 0).mean() < 0.33  # the cover asked for, 0.3
    thin = (opacity > 0) & (opacity < 0.15) & (shadow_depth(rows, cols, sky, 0) == 0)
    assert thin.sum() > 100 and ((clm[thin] & 0b10) == 0).all()
    assert (seen[B2][thin] > surface[B2][thin]).all()  # brighter than the ground, yet unflagged
    clear = (opacity == 0) & (shadow_depth(rows, cols, sky, 0) == 0)
    np.testing.assert_allclose(seen[:, clear], surface[:, clear], rtol=1e-6)
    np.testing.assert_allclose(seen[:, opacity == 1].mean(), 0.57, atol=0.06)  # cloud tops


def test_a_plan_reaches_the_cloud_share_asked_for_over_a_season():
    plan = plan_scene(128, 24, 7, cloud_share=0.3)
    assert len(plan.s2) == 24 and (plan.s2[-1].acquired - plan.s2[0].acquired).days == 115
    rows, cols = grid(Window(0, 0, 128, 128))
    shares = [(cloud_opacity(rows, cols, d.weather, 7) >= 0.15).mean() for d in plan.s2]
    assert np.mean(shares) == pytest.approx(0.3, abs=0.03)
    assert 0.2 < np.mean(np.array(shares) > 0) < 0.95  # cloudy and clear dates
    assert plan_scene(128, 24, 7, cloud_share=0.3) == plan
    assert plan_scene(128, 24, 8, cloud_share=0.3) != plan


def test_rain_wets_the_soil_which_then_dries():
    plan = plan_scene(128, 19, 0)
    assert plan.rains  # the cloudiest dates bring rain
    rain = plan.rains[0]
    before = conditions(plan, rain.replace(hour=0))
    after = conditions(plan, rain.replace(hour=16, minute=40))  # 6 hours after
    assert after.moisture - before.moisture == pytest.approx(0.12 * math.exp(-0.25 / 6), abs=1e-6)
    assert after.day == pytest.approx(rain.timetuple().tm_yday + 16 / 24 + 40 / 1440)


def read(path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read().astype(float)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    plan = plan_scene(128, 4, 1, cloud_share=0.4)
    return plan, write_scene(plan, tmp_path_factory.mktemp("scene"))


def test_the_scene_writes_products_truth_and_the_class_map(scene):
    plan, written = scene
    assert len(written.s2_products) == 4 and len(written.s1_vh) == len(plan.s1)
    with rasterio.open(written.classes) as classes:
        assert classes.dtypes[0] == "uint8" and classes.shape == (128, 128)
        np.testing.assert_array_equal(classes.read(1), land.class_map(Window(0, 0, 128, 128), 1))
        assert classes.colormap(1)[1][:3] == (0xE3, 0xC0, 0x4F)  # wheat
    names = json.loads(written.classes.with_name("classes.json").read_text())
    assert {c["code"]: c["name"] for c in names["classes"]} == {v: k for k, v in CODES.items()}
    for product in written.s2_products:
        truth_10m, truth_20m = (read(paths[product.name]) for paths in (written.truth, written.truth_20m))
        assert truth_10m.shape == (4, 128, 128) and truth_20m.shape == (6, 64, 64)
        index = [p.name for p in written.s2_products].index(product.name)
        image = date_image(plan, index, Window(0, 0, 128, 128))
        nodata = image.nodata
        np.testing.assert_array_equal(truth_10m[:, ~nodata], np.rint(image.truth[:4, ~nodata] * 1e4))
        expected_20m = image.truth[4:].reshape(6, 64, 2, 64, 2).mean(axis=(2, 4)) * 1e4
        valid = ~nodata.reshape(64, 2, 64, 2).any(axis=(1, 3))
        np.testing.assert_allclose(truth_20m[:, valid], expected_20m[:, valid], atol=0.51)
        with rasterio.open(next((product / "MASKS").glob("*_CLM_R1.tif"))) as clm:
            np.testing.assert_array_equal(clm.read(1), image.clm)
        with rasterio.open(next(product.glob("*_FRE_B4.tif"))) as red:
            seen = red.read(1)
        np.testing.assert_array_equal(seen[~nodata], np.rint(image.seen[B4][~nodata] * 1e4))


def test_sentinel1_of_the_scene_is_the_backscatter_with_speckle(scene):
    plan, written = scene
    vh = written.s1_vh[2]
    with rasterio.open(vh) as dataset:
        values = dataset.read(1)
        assert dataset.dtypes[0] == "float32" and dataset.tags()["UNIT"] == "linear"
    window = Window(0, 0, 128, 128)
    np.testing.assert_allclose(values, s1_sigma0(plan, 2, window, "vh"), rtol=1e-6)
    clean = land.backscatter(window, 1, conditions(plan, plan.s1[2]), "vh")
    ratio = values / clean
    assert ratio.mean() == pytest.approx(1.0, abs=0.02) and ratio.var() == pytest.approx(0.25, abs=0.02)
