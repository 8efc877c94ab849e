"""The time-series encoder's objective and metric against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decloud.sits.barlow import barlow_twins_loss, cross_correlation, effective_rank


def test_barlow_twins_loss_of_a_hand_computed_2x2_example():
    # Columns standardised over the 2 samples: first (-1, 1) and (1, -1), second (-1, 1) and (-1, 1).
    first = np.array([[1.0, 5.0], [3.0, 1.0]], np.float32)
    second = np.array([[0.0, 0.0], [2.0, 2.0]], np.float32)
    np.testing.assert_allclose(np.asarray(cross_correlation(first, second)), [[1, 1], [-1, -1]], atol=1e-6)
    # diagonal (1, -1): (1 - 1)^2 + (1 + 1)^2 = 4; off-diagonal 1^2 + (-1)^2 = 2
    assert float(barlow_twins_loss(first, second, 0.005)) == pytest.approx(4.0 + 0.005 * 2, abs=1e-5)


def test_barlow_twins_loss_of_a_hand_computed_3x3_example():
    # Every column is a permutation of (0, 1, 2), standardised to a permutation of (-a, 0, a), a^2 = 3/2;
    # C_ij is the dot product of the two permutations divided by 3.
    first = np.array([[0, 2, 1], [1, 1, 0], [2, 0, 2]], np.float32)
    second = np.array([[0, 0, 2], [1, 2, 0], [2, 1, 1]], np.float32)
    expected = [[1, 0.5, -0.5], [-1, -0.5, 0.5], [0.5, -0.5, 0.5]]
    np.testing.assert_allclose(np.asarray(cross_correlation(first, second)), expected, atol=1e-6)
    # diagonal (1, -0.5, 0.5): 0 + 2.25 + 0.25 = 2.5; off-diagonal squares: 0.25 * 5 + 1 = 2.25
    assert float(barlow_twins_loss(first, second, 0.1)) == pytest.approx(2.5 + 0.1 * 2.25, abs=1e-5)


def test_identical_decorrelated_views_have_zero_loss():
    views = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)
    assert float(barlow_twins_loss(views, views, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_effective_rank_of_identity_and_rank_one_matrices():
    assert effective_rank(np.eye(6)) == pytest.approx(6.0)
    assert effective_rank(np.outer([1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 0.5])) == pytest.approx(1.0)
    # singular values (3, 1): p = (3/4, 1/4)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(np.diag([3.0, 1.0])) == pytest.approx(expected)
    assert effective_rank(np.zeros((3, 3))) == 0.0
