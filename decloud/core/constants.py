"""Format constants of prepared products: the one place where band orders, file suffixes,
no-data values and scaling factors (and the hour, in seconds) are defined. Every other module imports them
from here."""

from __future__ import annotations

# --- Patch grid ---------------------------------------------------------------------------------
#: Side, in 10 m pixels, of the elementary patch on which statistics are computed (640 m).
PATCH_SIZE = 64

# --- Time ---------------------------------------------------------------------------------------
#: Seconds in an hour: timestamps are seconds since the epoch, gaps and layout windows are given in hours.
HOUR = 3600.0
#: Seconds in a day: the unit of the days maps and of date distances.
DAY = 24 * HOUR

# --- Sentinel-2 ---------------------------------------------------------------------------------
#: Band order of the prepared 10 m stack.
S2_BANDS_10M = ("B2", "B3", "B4", "B8")
#: Band order of the prepared 20 m stack.
S2_BANDS_20M = ("B5", "B6", "B7", "B8A", "B11", "B12")
#: Prepared reflectances are stored as reflectance x S2_REFLECTANCE_SCALE in int16.
S2_REFLECTANCE_SCALE = 10000
#: No-data value of prepared reflectances (THEIA convention).
S2_NODATA = -10000

#: Suffixes (after the product name) of the files of a prepared Sentinel-2 product.
S2_SUFFIX_FRE_10M = "_FRE_10m.tif"
S2_SUFFIX_FRE_20M = "_FRE_20m.tif"
S2_SUFFIX_CLM = "_CLM_R1.tif"
S2_SUFFIX_EDG = "_EDG_R1.tif"
#: Per-patch share of cloudy pixels (CLM non-zero), float32 percent 0-100.
S2_SUFFIX_CLOUD_STATS = "_STATS_CLOUDPERCENT_640m.tif"
#: Per-patch count of no-data pixels (EDG non-zero, or outside the image), uint16; 0 means valid.
S2_SUFFIX_NODATA_STATS = "_STATS_NODATA_640m.tif"

# --- Sentinel-1 ---------------------------------------------------------------------------------
#: Band order of the prepared Sentinel-1 stack.
S1_BANDS = ("VV", "VH")
#: No-data value of prepared Sentinel-1 images (and of S1Tiling inputs).
S1_NODATA = 0
#: The encoding maps ln(sigma0) from [S1_LN_MIN, S1_LN_MAX] linearly onto [1, 65535].
S1_LN_MIN = -10.0
S1_LN_MAX = 3.0
S1_ENCODED_MIN = 1
S1_ENCODED_MAX = 65535
#: Added to |sigma0| before the logarithm so that tiny values stay finite.
S1_LOG_EPSILON = 1e-6
#: Largest |sigma0| taken as a measurement, in dB: the brightest targets Sentinel-1 sees (corner reflectors,
#: metal structures, ships) reach a few tens of dB, while larger values (1e30, float overflow, +-inf) are fill
#: values or processing failures. Beyond it a pixel is no data; between +13 dB and it, it saturates at 65535.
S1_SIGMA0_MAX_DB = 40.0
#: Suffix of prepared Sentinel-1 images.
S1_SUFFIX_VVVH = "_from-10to3dB.tif"
#: Suffix (after the prepared image's stem) of its per-patch no-data count raster (uint16).
S1_SUFFIX_NODATA_STATS = "_STATS_NODATA_640m.tif"

# --- DEM ----------------------------------------------------------------------------------------
#: Prepared DEMs are int16 metres with this no-data value.
DEM_NODATA = -32768

# --- Scaling applied inside the models' graphs (prepared value -> network input) ---------------
S1_MODEL_SCALE = 1.0 / 65535.0
S2_MODEL_SCALE = 1e-4
DEM_MODEL_SCALE = 1e-4
