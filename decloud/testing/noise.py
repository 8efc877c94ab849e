"""Deterministic random fields of the generated landscape: a number per integer key (a parcel, a lattice node,
a pixel of a date), smooth noise over the plane, and gamma-distributed speckle.

Every value is a function of its coordinates and keys only, never of the window it is computed in, so a large
image can be generated window by window, at 10 m or 20 m, and a test can recompute any pixel on its own.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
#: Multipliers of the successive keys of :func:`hash_uniform` (odd 64-bit constants, so no key cancels another).
_KEY_FACTORS = tuple(
    np.uint64(f) for f in (0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5, 0xFF51AFD7ED558CCD)
)


def hash_uniform(*keys: np.ndarray | int) -> np.ndarray:
    """A uniform number in [0, 1) for each combination of integer ``keys`` (arrays broadcast together): the
    splitmix64 finaliser of the keys mixed with distinct multipliers. Equal keys give equal numbers anywhere."""
    if len(keys) > len(_KEY_FACTORS):
        raise ValueError(f"at most {len(_KEY_FACTORS)} keys, got {len(keys)}")
    with np.errstate(over="ignore"):
        x = np.uint64(0)
        for key, factor in zip(keys, _KEY_FACTORS, strict=False):
            x = (x + np.asarray(key).astype(np.int64).astype(np.uint64) + _GOLDEN) * factor
            x ^= x >> np.uint64(31)
        for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x ^= x >> np.uint64(shift)
            x *= np.uint64(factor)
        x ^= x >> np.uint64(31)
    return (np.asarray(x) >> np.uint64(11)).astype(np.float64) / 2.0**53


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """0 below 0, 1 above 1, and the cubic 3x^2 - 2x^3 in between (flat at both ends)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def value_noise(rows: np.ndarray, cols: np.ndarray, cell: float, seed: int, salt: int) -> np.ndarray:
    """Smooth noise in [0, 1] at the points (``rows``, ``cols``) (10 m pixel units, arrays broadcast together):
    a uniform number at every node of a lattice of side ``cell``, interpolated with :func:`smoothstep` weights.
    On a grid (``rows`` a column, ``cols`` a row) the nodes are drawn once and gathered."""
    r, c = np.asarray(rows, dtype=np.float64) / cell, np.asarray(cols, dtype=np.float64) / cell
    r0, c0 = np.floor(r), np.floor(c)
    wr, wc = smoothstep(r - r0), smoothstep(c - c0)
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    if r.ndim == 2 and c.ndim == 2 and r.shape[1] == 1 and c.shape[0] == 1:
        first_r, first_c = r0.min(), c0.min()
        table = hash_uniform(
            np.arange(first_r, r0.max() + 2)[:, np.newaxis], np.arange(first_c, c0.max() + 2)[np.newaxis, :], seed, salt
        )

        def node(dr: int, dc: int) -> np.ndarray:
            return table[r0 - first_r + dr, c0 - first_c + dc]

    else:

        def node(dr: int, dc: int) -> np.ndarray:
            return hash_uniform(r0 + dr, c0 + dc, seed, salt)

    top = node(0, 0) * (1 - wc) + node(0, 1) * wc
    bottom = node(1, 0) * (1 - wc) + node(1, 1) * wc
    return top * (1 - wr) + bottom * wr


def fractal_noise(
    rows: np.ndarray, cols: np.ndarray, cell: float, octaves: int, seed: int, salt: int, persistence: float = 0.5
) -> np.ndarray:
    """Sum of ``octaves`` :func:`value_noise` layers, each of half the cell and ``persistence`` times the weight
    of the previous one, normalised to [0, 1] (mean 0.5): ragged outlines at every scale, as clouds have."""
    total, weight, norm = 0.0, 1.0, 0.0
    for octave in range(octaves):
        total = total + weight * value_noise(rows, cols, cell / 2**octave, seed, salt * 16 + octave)
        norm += weight
        weight *= persistence
    return total / norm


def gamma_speckle(rows: np.ndarray, cols: np.ndarray, looks: int, seed: int, salt: int) -> np.ndarray:
    """Multiplicative speckle of a ``looks``-look intensity image at integer pixels (``rows``, ``cols``): the mean
    of ``looks`` unit exponential numbers, i.e. gamma distributed with shape ``looks`` and scale 1/``looks``
    (mean 1, variance 1/``looks``), independent from pixel to pixel and from one ``salt`` (date) to another."""
    total = 0.0
    for look in range(looks):
        uniform = hash_uniform(rows, cols, seed, salt * 64 + look)
        total = total - np.log1p(-uniform)  # exponential of mean 1; uniform < 1 so the log is finite
    return total / looks
