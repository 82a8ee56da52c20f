"""The compiled kernels' sums equal numpy's to the bit (numpy's pairwise summation order)."""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.models.protomodel.numpy_sums import pairwise_sum


def test_pairwise_sum_equals_numpy_sum_bit_for_bit():
    # values spanning 12 decades with both signs: a left-to-right loop differs from numpy in the
    # last bits for most lengths >= 9 (checked below, so the test has power)
    rng = np.random.default_rng(5)
    loop_differs = 0
    for n in range(129):
        for _ in range(20):
            a = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)
            assert pairwise_sum(a) == a.sum(), n
            loop = 0.0
            for x in a:
                loop += x
            loop_differs += loop != a.sum()
    assert loop_differs > 500


def test_pairwise_sum_refuses_long_rows():
    with pytest.raises(ValueError, match="128"):
        pairwise_sum(np.ones(129))
