"""Encoding of Sentinel-1 linear sigma0 into the uint16 values of prepared images, and its inverse.

ln(sigma0) from [S1_LN_MIN, S1_LN_MAX] (about -43 dB to +13 dB) is stretched linearly onto
[S1_ENCODED_MIN, S1_ENCODED_MAX], so the whole uint16 range serves the useful backscatter range and 0 is
left free for "no data", as in Decloud's prepared images.
"""

from __future__ import annotations

import numpy as np

from decloud.core.constants import (
    S1_ENCODED_MAX,
    S1_ENCODED_MIN,
    S1_LN_MAX,
    S1_LN_MIN,
    S1_LOG_EPSILON,
    S1_NODATA,
    S1_SIGMA0_MAX_DB,
)

#: Encoded units per unit of ln(sigma0): 65534 / 13.
_SLOPE = (S1_ENCODED_MAX - S1_ENCODED_MIN) / (S1_LN_MAX - S1_LN_MIN)
#: Largest |sigma0| (linear) taken as a measurement (:data:`S1_SIGMA0_MAX_DB`).
S1_SIGMA0_MAX = 10.0 ** (S1_SIGMA0_MAX_DB / 10.0)

#: The encoding in words, written in the tags of prepared images so a reader can decode them without decloud.
S1_ENCODING_NOTE = (
    f"{S1_NODATA}: no data; otherwise round(clip({S1_ENCODED_MIN} + {S1_ENCODED_MAX - S1_ENCODED_MIN} * "
    f"(ln(|sigma0| + {S1_LOG_EPSILON:g}) - LN_MIN) / (LN_MAX - LN_MIN), {S1_ENCODED_MIN}, {S1_ENCODED_MAX})) "
    f"with LN_MIN = {S1_LN_MIN:g}, LN_MAX = {S1_LN_MAX:g}; sigma0 linear; non-finite sigma0 and "
    f"|sigma0| > {S1_SIGMA0_MAX:g} ({S1_SIGMA0_MAX_DB:g} dB) are no data"
)


def encode_s1(sigma0: np.ndarray) -> np.ndarray:
    """Encode linear sigma0 as uint16: no data gives 0, any other value 1..65535.

    No data is 0, NaN, +-inf, and any |sigma0| above :data:`S1_SIGMA0_MAX` (no surface backscatters that
    much: such values are fill values or failures upstream, and clipping them to 65535 would make them
    count as the brightest valid backscatter). Computed in float64 so that the rounding to the nearest
    integer is exact for float32 inputs.
    """
    values = np.asarray(sigma0, dtype=np.float64)
    nodata = (values == S1_NODATA) | ~(np.abs(values) <= S1_SIGMA0_MAX)  # NaN and +-inf compare False
    logarithm = np.log(np.abs(np.where(nodata, 1.0, values)) + S1_LOG_EPSILON)
    scaled = S1_ENCODED_MIN + _SLOPE * (logarithm - S1_LN_MIN)
    encoded = np.rint(np.clip(scaled, S1_ENCODED_MIN, S1_ENCODED_MAX)).astype(np.uint16)
    encoded[nodata] = S1_NODATA
    return encoded


def decode_s1(encoded: np.ndarray) -> np.ndarray:
    """Linear sigma0 (float32) of encoded values; 0 (no data) gives 0. Values clipped by the encoding
    come back as the bounds of the range (about exp(-10) or exp(3))."""
    values = np.asarray(encoded, dtype=np.float64)
    sigma0 = np.exp((values - S1_ENCODED_MIN) / _SLOPE + S1_LN_MIN) - S1_LOG_EPSILON
    return np.where(values == S1_NODATA, 0.0, sigma0).astype(np.float32)
