"""Sentinel-1 sigma0 encoding: values computed by hand from the formula of DESIGN.md, and the inverse."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from decloud.preprocessing.normalization import decode_s1, encode_s1

SLOPE = 65534 / 13  # encoded units per unit of ln(sigma0)


def by_hand(x: float) -> int:
    """round(clip(1 + 65534/13 * (ln(|x| + 1e-6) + 10), 1, 65535)) for one valid pixel."""
    return round(min(max(1 + SLOPE * (math.log(abs(x) + 1e-6) + 10), 1), 65535))


@pytest.mark.parametrize(
    ("sigma0", "expected"),
    [
        (0.0, 0),  # no data stays no data
        (-0.0, 0),
        (float("nan"), 0),  # NaN is no data too
        (1e-12, 1),  # tiny: ln(1e-6) = -13.8 is below the range, clipped to 1
        (1e4, 65535),  # +40 dB: bright but possible, clipped to 65535
        (-1e4, 65535),
        (1.0001e4, 0),  # above +40 dB: not a backscatter, no data
        (1e6, 0),
        (1e30, 0),  # a fill value
        (-1e30, 0),
        (float("inf"), 0),
        (float("-inf"), 0),
        (math.exp(-10) - 1e-6, 1),  # ln(x + 1e-6) = -10 exactly: the bottom of the range
        (math.exp(-10), 111),  # 1 + 65534/13 * ln(1 + 1e-6 * e^10) = 110.83: the epsilon matters here
        (math.exp(3), 65535),  # the top of the range
        (1.0, 50412),  # 0 dB: 1 + 65534/13 * (10 + ln(1.000001)) = 50411.77
        (-1.0, 50412),  # the magnitude is encoded
        (0.01, 27197),  # -20 dB: 1 + 65534/13 * (ln(0.010001) + 10) = 27197.26
        (0.1, 38804),  # -10 dB: 38804.31
    ],
)
def test_encode_chosen_values(sigma0: float, expected: int) -> None:
    encoded = encode_s1(np.array([sigma0], dtype=np.float64))
    assert encoded.dtype == np.uint16
    assert encoded[0] == expected
    if expected:
        assert expected == by_hand(sigma0)


@pytest.mark.parametrize("level", [2, 1000, 40000, 65534])
def test_encode_rounds_to_nearest(level: int) -> None:
    """Values whose unrounded code is level + 0.4 and level + 0.6 give level and level + 1."""
    below = math.exp((level + 0.4 - 1) / SLOPE - 10) - 1e-6
    above = math.exp((level + 0.6 - 1) / SLOPE - 10) - 1e-6
    assert encode_s1(np.array([below, above])).tolist() == [level, level + 1]


def test_encode_keeps_shape_and_float32_input() -> None:
    sigma0 = np.array([[0.0, 1.0], [np.nan, 0.01]], dtype=np.float32)
    encoded = encode_s1(sigma0)
    assert encoded.shape == (2, 2)
    assert encoded.tolist() == [[0, by_hand(float(np.float32(1.0)))], [0, by_hand(float(np.float32(0.01)))]]


def test_decode_no_data_and_bounds() -> None:
    decoded = decode_s1(np.array([0, 1, 65535], dtype=np.uint16))
    assert decoded.dtype == np.float32
    assert decoded[0] == 0
    np.testing.assert_allclose(decoded[1:], [math.exp(-10) - 1e-6, math.exp(3) - 1e-6], rtol=1e-6)


def test_every_code_survives_decode_then_encode() -> None:
    codes = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(encode_s1(decode_s1(codes)), codes)


@given(st.floats(min_value=math.exp(-9.9), max_value=math.exp(2.9)))
def test_decode_inverts_encode_within_half_a_step(sigma0: float) -> None:
    """Half a code step is 13/65534/2 ~ 1e-4 in ln(sigma0 + 1e-6), i.e. a relative error of 1e-4."""
    decoded = float(decode_s1(encode_s1(np.array([sigma0])))[0])
    assert abs(decoded - sigma0) <= 1.01e-4 * (sigma0 + 1e-6) + 1e-7 * sigma0
