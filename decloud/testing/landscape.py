"""A generated farmland landscape, as Sentinel-2 and Sentinel-1 see it on the ground (no atmosphere): irregular
parcels (Voronoi cells) of crops, grassland and fallow, woods, a river with its riparian forest, villages and the
roads between them. Each crop follows its own phenology (green-up, peak, senescence, harvest) shifted per parcel,
and its reflectances mix the spectra of green vegetation, dry vegetation, flowers and soil in the bands of
Sentinel-2; its radar backscatter follows the vegetation's biomass and the soil moisture (water cloud model).

Every pixel is a function of its position, the seed and the acquisition's :class:`Conditions` only, so any
window can be computed on its own and a tile of any size is generated window by window. Windows are on the 10 m
grid; :func:`block_mean` gives the 20 m pixels (the mean of the four 10 m pixels each covers).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
from rasterio.windows import Window

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M
from decloud.testing.noise import hash_uniform, smoothstep, value_noise

#: Band order of every reflectance stack of this module: the 10 m bands, then the 20 m bands.
BANDS = S2_BANDS_10M + S2_BANDS_20M


@dataclass(frozen=True)
class LandClass:
    code: int  #: value in the class map
    name: str
    colour: str  #: #rrggbb of the class map's colour table


#: The classes of the class map, by code (0 is left for no data).
CLASSES = (
    LandClass(1, "wheat", "#e3c04f"),
    LandClass(2, "maize", "#f08c1e"),
    LandClass(3, "sunflower", "#c9e01b"),
    LandClass(4, "rapeseed", "#f7f257"),
    LandClass(5, "grassland", "#8fd16b"),
    LandClass(6, "bare soil", "#a8785a"),
    LandClass(7, "forest", "#1f6b2e"),
    LandClass(8, "water", "#2b6cd6"),
    LandClass(9, "urban", "#d62d2d"),
    LandClass(10, "road", "#505050"),
)
WHEAT, MAIZE, SUNFLOWER, RAPESEED, GRASSLAND, BARE_SOIL, FOREST, WATER, URBAN, ROAD = (c.code for c in CLASSES)
#: Classes drawn for the open-field parcels and their shares.
FIELD_SHARES = {WHEAT: 0.30, MAIZE: 0.17, SUNFLOWER: 0.14, RAPESEED: 0.12, GRASSLAND: 0.18, BARE_SOIL: 0.09}


def spectrum(b2, b3, b4, b8, b5, b6, b7, b8a, b11, b12) -> np.ndarray:
    """A reflectance spectrum in :data:`BANDS` order (B2 B3 B4 B8, then B5 B6 B7 B8A B11 B12)."""
    return np.array([b2, b3, b4, b8, b5, b6, b7, b8a, b11, b12])


# Reflectance spectra (0-1) of the surfaces, in the ranges published for Sentinel-2 over European farmland: green
# vegetation absorbs red, rises along the red edge (B5-B7) to a near-infrared plateau (B8, B8A) and absorbs in the
# short-wave infrared by its water (B11 > B12); dry vegetation and soil rise steadily and are bright in B11; water
# is dark beyond green and near zero in the short-wave infrared; flowering rapeseed and sunflower are yellow
# (green and red high, blue low).
GREEN_CROP = spectrum(0.030, 0.070, 0.030, 0.420, 0.100, 0.300, 0.390, 0.440, 0.210, 0.100)
GREEN_GRASS = spectrum(0.035, 0.075, 0.040, 0.370, 0.105, 0.270, 0.340, 0.385, 0.230, 0.120)
CANOPY = spectrum(0.025, 0.050, 0.025, 0.330, 0.080, 0.230, 0.300, 0.345, 0.160, 0.070)
DRY_VEGETATION = spectrum(0.090, 0.125, 0.165, 0.280, 0.200, 0.235, 0.260, 0.295, 0.380, 0.300)
FLOWERS = spectrum(0.040, 0.160, 0.140, 0.380, 0.200, 0.300, 0.350, 0.390, 0.220, 0.120)
SOIL = spectrum(0.090, 0.125, 0.160, 0.250, 0.190, 0.215, 0.235, 0.265, 0.340, 0.280)
LITTER = spectrum(0.040, 0.055, 0.065, 0.145, 0.085, 0.110, 0.130, 0.155, 0.200, 0.140)
WATER_SURFACE = spectrum(0.050, 0.060, 0.040, 0.012, 0.030, 0.018, 0.015, 0.010, 0.004, 0.003)
ROOFS = spectrum(0.090, 0.110, 0.160, 0.260, 0.200, 0.230, 0.245, 0.270, 0.320, 0.280)
PAVEMENT = spectrum(0.110, 0.120, 0.130, 0.160, 0.140, 0.150, 0.155, 0.165, 0.190, 0.180)
ASPHALT = spectrum(0.070, 0.080, 0.090, 0.110, 0.095, 0.100, 0.105, 0.115, 0.130, 0.120)
#: Darkening of bare soil from dry to wet (share of its reflectance lost at MOISTURE_WET), strongest in the SWIR.
WET_SOIL_DARKENING = spectrum(0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.45, 0.45)
#: Volumetric soil moisture (m3/m3) of a dry and of a soaked field.
MOISTURE_DRY, MOISTURE_WET = 0.08, 0.40


@dataclass(frozen=True)
class Conditions:
    """What changes on the ground from one acquisition to another."""

    day: float  #: day of the year, with the time of day as a fraction
    moisture: float  #: regional volumetric soil moisture, m3/m3


@dataclass(frozen=True)
class Phenology:
    """The season of a class, in days of the year (floats, or per-pixel arrays once shifted per parcel): the
    green cover rises from ``winter_cover`` at ``green_up`` to ``peak_cover`` at ``peak``, turns dry from
    ``senescence`` to ``dry``, and is cut at ``harvest`` (residue left, then regrowth); flowers cover up to
    ``flower_cover`` around ``flowering``, within ``flowering_days``."""

    winter_cover: float
    green_up: float
    peak: float
    peak_cover: float
    senescence: float = 999.0
    dry: float = 1000.0
    harvest: float = 999.0
    flowering: float = 0.0
    flowering_days: float = 1.0
    flower_cover: float = 0.0
    residue: float = 0.0  #: dry cover left just after the harvest (straw, hay)
    residue_days: float = 60.0  #: days for the residue to go (baled, ploughed in)
    cut_cover: float = 0.0  #: green cover left just after the harvest
    regrowth: float = 0.0  #: green cover reached ``regrowth_days`` after the harvest
    regrowth_days: float = 30.0


#: The seasons of south-west France (winter crops sown in autumn, summer crops sown in April-May), before the
#: per-parcel shift. Harvest of grassland means mowing.
PHENOLOGY = {
    WHEAT: Phenology(0.35, 60, 110, 0.92, senescence=155, dry=180, harvest=192, residue=0.55, regrowth=0.08,
                     regrowth_days=40),
    RAPESEED: Phenology(0.45, 55, 95, 0.90, senescence=145, dry=168, harvest=180, flowering=108, flowering_days=18,
                        flower_cover=0.55, residue=0.40, regrowth=0.08, regrowth_days=40),
    MAIZE: Phenology(0.0, 135, 200, 0.95, senescence=245, dry=270, harvest=285, residue=0.30),
    SUNFLOWER: Phenology(0.0, 125, 185, 0.85, senescence=215, dry=240, harvest=255, flowering=195,
                         flowering_days=12, flower_cover=0.45, residue=0.25),
    GRASSLAND: Phenology(0.60, 70, 120, 0.90, harvest=150, residue=0.35, residue_days=8, cut_cover=0.30,
                         regrowth=0.80, regrowth_days=30),
    BARE_SOIL: Phenology(0.05, 100, 200, 0.35),
    FOREST: Phenology(0.30, 100, 135, 0.95, senescence=290, dry=320),
}  # fmt: skip
#: Half-range (days) of the uniform per-parcel shift of a class's whole season (sowing dates, varieties), and of
#: the extra shift of its harvest (the farmer's choice of day).
SEASON_SHIFT = {WHEAT: 8, RAPESEED: 7, MAIZE: 12, SUNFLOWER: 10, GRASSLAND: 6, BARE_SOIL: 10, FOREST: 5}
HARVEST_SHIFT = {WHEAT: 6, RAPESEED: 5, MAIZE: 10, SUNFLOWER: 8, GRASSLAND: 20, BARE_SOIL: 0, FOREST: 0}
#: Biomass index of a full green cover of each class (the vegetation term of the water cloud model).
BIOMASS = {WHEAT: 2.0, RAPESEED: 2.5, MAIZE: 4.0, SUNFLOWER: 3.0, GRASSLAND: 1.0, BARE_SOIL: 0.5, FOREST: 6.0}

#: Mean side of the parcels (jittered lattice of Voronoi sites), of the lattice of village sites, and the cell of
#: the noise that places the woods, in 10 m pixels.
PARCEL_CELL, VILLAGE_CELL, WOODS_CELL = 40.0, 256.0, 200.0
#: Woods where the woods noise at a parcel's site is above this (about a tenth of the parcels).
WOODS_THRESHOLD = 0.64
#: Village radius range, pixels; side of the urban blocks (each its share of roofs), pixels.
VILLAGE_RADIUS, URBAN_BLOCK = (18.0, 30.0), 2
#: Road half-width and grassy field-margin width, pixels (roads are narrower than a pixel: mixed pixels).
ROAD_HALF_WIDTH, MARGIN_WIDTH = 0.6, 1.0
#: The river: mean row (10 m pixels), half-width, half-width of its riparian forest, and meanders (amplitude,
#: wavelength in pixels).
RIVER_ROW, RIVER_HALF_WIDTH, RIPARIAN_HALF_WIDTH = 170.0, 3.5, 9.0
RIVER_MEANDERS = ((35.0, 520.0), (12.0, 170.0), (4.0, 60.0))

# Water cloud model (Attema and Ulaby): sigma0 = A V (1 - T2) + T2 sigma0_soil, T2 = exp(-2 B V), with the soil
# term in dB linear in the soil moisture; constants for C band at about 39 degrees of incidence.
WATER_CLOUD = {"vv": (0.040, 0.25), "vh": (0.015, 0.20)}  #: (A, B) per polarisation
SOIL_DB = {"vv": (-18.0, 25.0), "vh": (-27.0, 20.0)}  #: (dB at moisture 0, dB per m3/m3)
#: Backscatter (dB) of the surfaces that are not vegetation: calm water is a mirror, asphalt is smooth, and
#: buildings make double bounces.
WATER_DB, ASPHALT_DB, URBAN_DB = {"vv": -22.0, "vh": -28.0}, {"vv": -19.0, "vh": -27.0}, {"vv": -3.0, "vh": -11.0}

# Salts of the random draws, one per quantity.
_SITE_ROW, _SITE_COL, _FIELD_CLASS, _SHIFT, _HARVEST, _VIGOUR, _SOIL, _ROUGHNESS, _WET = range(1, 10)
_VILLAGE_ROW, _VILLAGE_COL, _VILLAGE_RADIUS, _BLOCK, _SCATTERER, _BEND_ROW, _BEND_COL = range(20, 27)
_WOODS, _PATCHES, _DETAIL, _SOIL_REGION, _EDGE, _RIVER, _GARDENS = range(40, 47)


def pixel_centres(window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Row (rows, 1) and column (1, cols) coordinates of the centres of the 10 m pixels of ``window``."""
    rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.float64) + 0.5
    cols = np.arange(window.col_off, window.col_off + window.width, dtype=np.float64) + 0.5
    return rows[:, np.newaxis], cols[np.newaxis, :]


def block_mean(values: np.ndarray, scale: int) -> np.ndarray:
    """The mean of each ``scale`` x ``scale`` block of the last two axes (whose sizes are multiples of it)."""
    *lead, rows, cols = values.shape
    return values.reshape(*lead, rows // scale, scale, cols // scale, scale).mean(axis=(-3, -1))


def parcel_sites(site_rows: np.ndarray, site_cols: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre (row, col) of the Voronoi site of lattice cell (``site_rows``, ``site_cols``): anywhere in the
    middle 70 % of the cell, so that the parcels are irregular but none is tiny."""
    row = (site_rows + 0.15 + 0.7 * hash_uniform(site_rows, site_cols, seed, _SITE_ROW)) * PARCEL_CELL
    col = (site_cols + 0.15 + 0.7 * hash_uniform(site_rows, site_cols, seed, _SITE_COL)) * PARCEL_CELL
    return row, col


def parcels(rows: np.ndarray, cols: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice cell (row, col) of the nearest site of every point of the grid ``rows`` (n, 1) x ``cols`` (1, m),
    i.e. its parcel, and the point's distance to the parcel's border (the bisector with the second-nearest
    site), pixels."""
    base_r, base_c = np.floor(rows / PARCEL_CELL).astype(np.int64), np.floor(cols / PARCEL_CELL).astype(np.int64)
    first_r, first_c = base_r.min() - 1, base_c.min() - 1
    lattice_r, lattice_c = np.arange(first_r, base_r.max() + 2), np.arange(first_c, base_c.max() + 2)
    table_r, table_c = parcel_sites(lattice_r[:, np.newaxis], lattice_c[np.newaxis, :], seed)
    shape = np.broadcast_shapes(rows.shape, cols.shape)
    nearest, cell_r, cell_c = np.full(shape, np.inf), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    site_r1, site_c1 = np.zeros(shape), np.zeros(shape)
    second, site_r2, site_c2 = np.full(shape, np.inf), np.zeros(shape), np.zeros(shape)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            index = base_r + dr - first_r, base_c + dc - first_c
            sr, sc = table_r[index], table_c[index]
            distance = (rows - sr) ** 2 + (cols - sc) ** 2
            closer, between = distance < nearest, (distance >= nearest) & (distance < second)
            second = np.where(closer, nearest, np.where(between, distance, second))
            site_r2 = np.where(closer, site_r1, np.where(between, sr, site_r2))
            site_c2 = np.where(closer, site_c1, np.where(between, sc, site_c2))
            nearest = np.where(closer, distance, nearest)
            site_r1, site_c1 = np.where(closer, sr, site_r1), np.where(closer, sc, site_c1)
            cell_r = np.where(closer, base_r + dr, cell_r)
            cell_c = np.where(closer, base_c + dc, cell_c)
    spacing = np.hypot(site_r2 - site_r1, site_c2 - site_c1)
    return cell_r, cell_c, (second - nearest) / (2.0 * spacing)


def villages(rows: np.ndarray, cols: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (row, col) and radius of the village of the VILLAGE_CELL lattice cell of every point (one per cell,
    in the middle 30 % of it, so that every tile of that side has one)."""
    cell_r, cell_c = np.floor(rows / VILLAGE_CELL), np.floor(cols / VILLAGE_CELL)
    return _village(cell_r, cell_c, seed)


def _village(cell_r: np.ndarray, cell_c: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row = (cell_r + 0.35 + 0.3 * hash_uniform(cell_r, cell_c, seed, _VILLAGE_ROW)) * VILLAGE_CELL
    col = (cell_c + 0.35 + 0.3 * hash_uniform(cell_r, cell_c, seed, _VILLAGE_COL)) * VILLAGE_CELL
    low, high = VILLAGE_RADIUS
    return row, col, low + (high - low) * hash_uniform(cell_r, cell_c, seed, _VILLAGE_RADIUS)


def road_distance(rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """Distance (pixels) of every point of the grid ``rows`` (n, 1) x ``cols`` (1, m) to the road network, up to
    a few pixels (farther is infinite): each village joined to its east, south and south-east neighbours by a
    road bent once at a jittered middle point. Each road piece is measured over its bounding box only."""
    reach = 3.0
    distance = np.full((rows.shape[0], cols.shape[1]), np.inf)
    cells_r = np.arange(np.floor(rows.min() / VILLAGE_CELL) - 1, np.floor(rows.max() / VILLAGE_CELL) + 1)
    cells_c = np.arange(np.floor(cols.min() / VILLAGE_CELL) - 1, np.floor(cols.max() / VILLAGE_CELL) + 1)
    for start_r in cells_r:
        for start_c in cells_c:
            ar, ac, _ = _village(start_r, start_c, seed)
            for nr, nc in ((0, 1), (1, 0), (1, 1)):
                br, bc, _ = _village(start_r + nr, start_c + nc, seed)
                key = (start_r * 4 + nr) * 4 + nc
                mr = (ar + br) / 2 + 0.15 * VILLAGE_CELL * (hash_uniform(key, start_c, seed, _BEND_ROW) - 0.5)
                mc = (ac + bc) / 2 + 0.15 * VILLAGE_CELL * (hash_uniform(key, start_c, seed, _BEND_COL) - 0.5)
                for (r0, c0), (r1, c1) in (((ar, ac), (mr, mc)), ((mr, mc), (br, bc))):
                    near_r = (rows[:, 0] > min(r0, r1) - reach) & (rows[:, 0] < max(r0, r1) + reach)
                    near_c = (cols[0] > min(c0, c1) - reach) & (cols[0] < max(c0, c1) + reach)
                    if near_r.any() and near_c.any():
                        box = np.ix_(near_r, near_c)
                        piece = _segment_distance(rows[near_r], cols[:, near_c], r0, c0, r1, c1)
                        distance[box] = np.minimum(distance[box], piece)
    return distance


def _segment_distance(rows, cols, r0, c0, r1, c1) -> np.ndarray:
    length2 = (r1 - r0) ** 2 + (c1 - c0) ** 2
    t = np.clip(((rows - r0) * (r1 - r0) + (cols - c0) * (c1 - c0)) / length2, 0.0, 1.0)
    return np.hypot(rows - (r0 + t * (r1 - r0)), cols - (c0 + t * (c1 - c0)))


def river_distance(rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """Distance (pixels) of every point to the axis of the river, a sum of meanders across the landscape."""
    centre, slope = RIVER_ROW, 0.0
    for index, (amplitude, wavelength) in enumerate(RIVER_MEANDERS):
        phase = 2 * np.pi * hash_uniform(index, 0, seed, _RIVER)
        centre = centre + amplitude * np.sin(2 * np.pi * cols / wavelength + phase)
        slope = slope + amplitude * 2 * np.pi / wavelength * np.cos(2 * np.pi * cols / wavelength + phase)
    return np.abs(rows - centre) / np.sqrt(1.0 + slope**2)


def field_class(cell_r: np.ndarray, cell_c: np.ndarray, seed: int) -> np.ndarray:
    """Class of the parcel of lattice cell (``cell_r``, ``cell_c``): forest where the woods noise at its site is
    high, otherwise a field class drawn with the FIELD_SHARES."""
    site_r, site_c = parcel_sites(cell_r, cell_c, seed)
    draw = hash_uniform(cell_r, cell_c, seed, _FIELD_CLASS)
    codes, shares = np.array(list(FIELD_SHARES)), np.cumsum(list(FIELD_SHARES.values()))
    classes = codes[np.minimum(np.searchsorted(shares / shares[-1], draw, side="right"), len(codes) - 1)]
    woods = value_noise(site_r, site_c, WOODS_CELL, seed, _WOODS) > WOODS_THRESHOLD
    return np.where(woods, FOREST, classes).astype(np.uint8)


@dataclass(frozen=True)
class Layout:
    """What does not change during the season, per 10 m pixel of a window."""

    classes: np.ndarray  #: uint8 class map (the road and river pixels included)
    ground: np.ndarray  #: class of the ground under roads and water margins (the parcel's, or forest, urban)
    cell_r: np.ndarray  #: parcel lattice cell, the key of per-parcel draws
    cell_c: np.ndarray
    margin: np.ndarray  #: share of grassy field margin in the pixel
    road: np.ndarray  #: share of road in the pixel
    water: np.ndarray  #: share of river in the pixel
    roofs: np.ndarray  #: urban pixels: share of roofs in the built part (per URBAN_BLOCK block), the rest paved
    gardens: np.ndarray  #: urban pixels: share of gardens and trees
    soil: np.ndarray  #: soil brightness factor (parcel and region)
    patches: np.ndarray  #: within-parcel growth factor around 1 (patches of better and worse growth)
    detail: np.ndarray  #: fine reflectance texture factor around 1 (rows, crowns, roofs)


@lru_cache(maxsize=4)
def layout(window: Window, seed: int) -> Layout:
    """The :class:`Layout` of ``window`` (cached: every band and date of a window reads it)."""
    rows, cols = pixel_centres(window)
    cell_r, cell_c, border = parcels(rows, cols, seed)
    ground = field_class(cell_r, cell_c, seed)
    village_r, village_c, radius = villages(rows, cols, seed)
    ragged = radius * (0.8 + 0.4 * value_noise(rows, cols, 8.0, seed, _EDGE))
    ground = np.where(np.hypot(rows - village_r, cols - village_c) < ragged, URBAN, ground)
    river = river_distance(rows, cols, seed)
    ground = np.where(river < RIPARIAN_HALF_WIDTH, FOREST, ground)
    water = np.clip(RIVER_HALF_WIDTH + 0.5 - river, 0.0, 1.0)
    road = np.clip(ROAD_HALF_WIDTH + 0.5 - road_distance(rows, cols, seed), 0.0, 1.0) * (1.0 - water)
    fields = (ground != FOREST) & (ground != URBAN)
    margin = np.where(fields, 0.6 * np.clip(1.0 - border / MARGIN_WIDTH, 0.0, 1.0), 0.0)
    classes = np.where(water >= 0.5, WATER, np.where(road >= 0.5, ROAD, ground)).astype(np.uint8)
    roofs = 0.3 + 0.6 * hash_uniform(np.floor(rows / URBAN_BLOCK), np.floor(cols / URBAN_BLOCK), seed, _BLOCK)
    gardens = 0.6 * value_noise(rows, cols, 5.0, seed, _GARDENS) ** 2
    soil = (0.8 + 0.4 * hash_uniform(cell_r, cell_c, seed, _SOIL)) * (
        0.9 + 0.2 * value_noise(rows, cols, 150.0, seed, _SOIL_REGION)
    )
    patches = 0.85 + 0.3 * value_noise(rows, cols, 10.0, seed, _PATCHES)
    detail = 0.95 + 0.1 * value_noise(rows, cols, 2.5, seed, _DETAIL)
    return Layout(classes, ground, cell_r, cell_c, margin, road, water, roofs, gardens, soil, patches, detail)


def class_map(window: Window, seed: int) -> np.ndarray:
    """uint8 class codes (:data:`CLASSES`) of the 10 m pixels of ``window``."""
    return layout(window, seed).classes


def parcel_phenology(ground: np.ndarray, cell_r: np.ndarray, cell_c: np.ndarray, seed: int) -> Phenology:
    """The :class:`Phenology` of every pixel (arrays): its class's, with every date shifted by the parcel's
    season shift (uniform within +-SEASON_SHIFT), the harvest by a further shift of its own (+-HARVEST_SHIFT),
    and the peak cover scaled by the parcel's vigour (0.85 to 1). Classes without a phenology never turn green."""
    codes = max(c.code for c in CLASSES) + 1
    bare = Phenology(0.0, 500.0, 501.0, 0.0)
    by_class = [PHENOLOGY.get(code, bare) for code in range(codes)]
    table = {f.name: np.array([getattr(p, f.name) for p in by_class])[ground] for f in fields(Phenology)}
    shift = np.array([SEASON_SHIFT.get(code, 0) for code in range(codes)])[ground]
    shift = shift * (2 * hash_uniform(cell_r, cell_c, seed, _SHIFT) - 1)
    harvest = np.array([HARVEST_SHIFT.get(code, 0) for code in range(codes)])[ground]
    harvest = harvest * (2 * hash_uniform(cell_r, cell_c, seed, _HARVEST) - 1)
    for name in ("green_up", "peak", "senescence", "dry", "harvest", "flowering"):
        table[name] = table[name] + shift
    table["harvest"] = table["harvest"] + harvest
    table["peak_cover"] = table["peak_cover"] * (0.85 + 0.15 * hash_uniform(cell_r, cell_c, seed, _VIGOUR))
    return Phenology(**table)


def cover(phenology: Phenology, day: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(green, dry, flower) cover shares on ``day`` of the year: the standing cover grows along a smoothstep from
    the winter cover (green-up) to the peak cover (peak), dries along another (senescence to dry), and gives way
    after the harvest to the residue (fading over residue_days) and the regrowth (over regrowth_days);
    flowers take the place of green cover, most at ``flowering``, (1 - x^2) around it."""
    p = phenology
    standing = p.winter_cover + (p.peak_cover - p.winter_cover) * smoothstep((day - p.green_up) / (p.peak - p.green_up))
    drying = smoothstep((day - p.senescence) / (p.dry - p.senescence))
    green, dry = standing * (1.0 - drying), standing * drying
    flower = np.minimum(green, p.flower_cover * np.clip(1.0 - ((day - p.flowering) / p.flowering_days) ** 2, 0, 1))
    after = day - p.harvest
    harvested = after >= 0
    regrown = p.cut_cover + (p.regrowth - p.cut_cover) * smoothstep(after / p.regrowth_days)
    residue = p.residue * (1.0 - smoothstep(after / p.residue_days))
    return (
        np.where(harvested, regrown, green - flower),
        np.where(harvested, residue, dry),
        np.where(harvested, 0.0, flower),
    )


@lru_cache(maxsize=4)
def _phenology(window: Window, seed: int) -> Phenology:
    plan = layout(window, seed)
    return parcel_phenology(plan.ground, plan.cell_r, plan.cell_c, seed)


@lru_cache(maxsize=2)
def _cover(window: Window, seed: int, day: float) -> tuple[Layout, np.ndarray, np.ndarray, np.ndarray]:
    """The layout of ``window`` and its per-pixel (green, dry, flower) covers on ``day``, with the growth
    patches, never above a full cover (cached: both polarisations read it)."""
    plan = layout(window, seed)
    green, dry, flower = cover(_phenology(window, seed), day)
    green = np.minimum(green * plan.patches, 1.0 - dry - flower)
    return plan, green, dry, flower


def reflectance(window: Window, seed: int, conditions: Conditions) -> np.ndarray:
    """Cloud-free surface reflectance (0-1) of the 10 m pixels of ``window``, float32 (len(BANDS), rows, cols)
    in :data:`BANDS` order: per pixel, the green, dry and flower covers of its parcel's phenology with their
    spectra over the soil (darker when wet) or the forest floor, or in villages roofs, pavement and gardens,
    times the fine texture; then field margins, roads and the river mixed in by their share of the pixel. Every
    pixel is thus a weighted sum of the spectra, computed as one matrix product."""
    plan, green, dry, flower = _cover(window, seed, conditions.day)
    wet = np.clip((conditions.moisture - MOISTURE_DRY) / (MOISTURE_WET - MOISTURE_DRY), 0.0, 1.0)
    forest, urban, grass = plan.ground == FOREST, plan.ground == URBAN, plan.ground == GRASSLAND
    rural = ~urban
    parcel = (1 - plan.margin) * (1 - plan.road) * (1 - plan.water) * plan.detail
    margin = plan.margin * (1 - plan.road) * (1 - plan.water)
    bare = (1.0 - green - dry - flower) * rural
    built = urban * (1 - plan.gardens)
    gardens = urban * plan.gardens
    weights = (
        (green * rural * ~forest * ~grass * parcel, GREEN_CROP),
        ((green * grass * parcel) + 0.7 * gardens * parcel + 0.8 * margin, GREEN_GRASS),
        (green * forest * parcel, CANOPY),
        (dry * rural * parcel, DRY_VEGETATION),
        (flower * rural * parcel, FLOWERS),
        (
            (bare * ~forest * parcel + 0.3 * gardens * parcel + 0.2 * margin) * plan.soil,
            SOIL * (1 - WET_SOIL_DARKENING * wet),
        ),
        (bare * forest * parcel, LITTER),
        (built * plan.roofs * parcel, ROOFS),
        (built * (1 - plan.roofs) * parcel, PAVEMENT),
        (plan.road * (1 - plan.water), ASPHALT),
        (plan.water, WATER_SURFACE),
    )
    shares = np.empty((len(weights), *plan.ground.shape), dtype=np.float32)
    for index, (share, _) in enumerate(weights):
        shares[index] = share
    spectra = np.stack([spectrum for _, spectrum in weights], axis=1).astype(np.float32)
    surface = spectra @ shares.reshape(len(weights), -1)
    return surface.reshape(len(BANDS), *plan.ground.shape)


@lru_cache(maxsize=4)
def _radar_ground(window: Window, seed: int, polarisation: str) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the soil backscatter factor of the parcel (its moisture offset, +-0.02 m3/m3, and roughness,
    +-1.5 dB) and the backscatter of the buildings (+-3 dB per block), both linear (cached per window)."""
    plan = layout(window, seed)
    offset = 0.04 * (hash_uniform(plan.cell_r, plan.cell_c, seed, _WET) - 0.5)
    roughness = 3.0 * (hash_uniform(plan.cell_r, plan.cell_c, seed, _ROUGHNESS) - 0.5)
    soil = _linear(SOIL_DB[polarisation][1] * offset + roughness)
    rows, cols = (np.floor(centres / URBAN_BLOCK) for centres in pixel_centres(window))
    buildings = _linear(URBAN_DB[polarisation] + 6.0 * (hash_uniform(rows, cols, seed, _SCATTERER) - 0.5))
    return soil, buildings


def backscatter(window: Window, seed: int, conditions: Conditions, polarisation: str) -> np.ndarray:
    """Linear sigma0 (before speckle) of ``polarisation`` ("vv" or "vh") over the 10 m pixels of ``window``: the
    water cloud model over vegetation, whose biomass index is the class's BIOMASS times its green cover (flowers
    count as green, dry standing cover as half), over a soil whose backscatter (dB) rises linearly with its
    moisture (regional, +-0.02 per parcel) and its roughness (+-1.5 dB per parcel); water, asphalt and buildings
    (+-3 dB per block) have their own, mixed in by their share of the pixel."""
    plan, green, dry, flower = _cover(window, seed, conditions.day)
    biomass = np.array([BIOMASS.get(code, 0.0) for code in range(len(CLASSES) + 1)])[plan.ground]
    biomass = biomass * (green + flower + 0.5 * dry)
    parcel_soil, buildings = _radar_ground(window, seed, polarisation)
    intercept, slope = SOIL_DB[polarisation]
    soil = _linear(intercept + slope * conditions.moisture) * parcel_soil
    a, b = WATER_CLOUD[polarisation]
    two_way = np.exp(-2.0 * b * biomass)
    sigma = a * biomass * (1.0 - two_way) + two_way * soil
    sigma = np.where(plan.ground == URBAN, buildings, sigma)
    sigma = sigma * (1 - plan.road) + plan.road * _linear(ASPHALT_DB[polarisation])
    sigma = sigma * (1 - plan.water) + plan.water * _linear(WATER_DB[polarisation])
    return sigma.astype(np.float32)


def _linear(decibels: np.ndarray | float) -> np.ndarray:
    return 10.0 ** (np.asarray(decibels) / 10.0)
