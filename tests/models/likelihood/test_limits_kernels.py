"""The numba kernels of the truncated Gaussian: ln Φ against scipy and a long-double reference,
the mode as a root checked with scipy's ln Φ, and the mode Op under PyTensor's Numba linker."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytensor.tensor as pt
import pytest
from pytensor import function
from pytensor.compile.mode import Mode
from scipy import special

from tdmcmc.models.likelihood.backend import PYTENSOR
from tdmcmc.models.likelihood.limits import mode_in_sigmas
from tdmcmc.models.likelihood.normal_kernels import log_ndtr

_EPS = np.finfo(float).eps


@numba.njit
def _log_ndtr_array(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = log_ndtr(x[i])
    return out


def _relative(a, b):
    return np.abs(a - b) / np.abs(b)


def test_log_ndtr_matches_scipy_where_scipy_is_accurate():
    """x < 2 (incl. the asymptotic series below −20 and tails to −1e150): 3e-15 relative
    (measured: ≤ 7e-16 for x < 0, ≤ 1.5e-15 on [0, 2), where both evaluate erfc of nearly 1)."""
    x = np.concatenate([np.linspace(-1e3, 2.0, 300_001), -np.geomspace(20.0, 1e150, 20_001),
                        np.random.default_rng(3).normal(0.0, 1e-3, 1001), [-20.0, -1.0, 0.0]])
    rel = _relative(_log_ndtr_array(x), special.log_ndtr(x))
    assert rel[x < 0].max() < 1.5e-15
    assert rel.max() < 3e-15


def test_log_ndtr_right_tail_against_a_long_double_reference():
    """x ≥ 2: ln Φ(x) = log1p(−erfc(t)/2), t = x/√2. scipy's erfc forms exp(−t²) from a rounded
    t², off by up to t² ulp (5.7e-14 relative at x = 37); the kernel uses libm's erfc. The
    reference: scipy's erfcx(t) (no t² rounding) times exp(−t²) in long double, at the same
    double t; agreement 2e-15 (measured ≤ 9e-16) down to the smallest normal double (x ≈ 37.5),
    then absolute. Beyond x ≈ 38.5, |ln Φ| < 1e-300."""
    if np.finfo(np.longdouble).eps > 1e-18:
        pytest.skip("long double is not extended precision here")
    x = np.linspace(2.0, 38.0, 200_001)
    t = x * np.sqrt(0.5)
    t_long = t.astype(np.longdouble)
    reference = np.log1p(-special.erfcx(t).astype(np.longdouble) * np.exp(-t_long * t_long) / 2)
    ours = _log_ndtr_array(x)
    normal = np.abs(reference) > np.finfo(float).tiny  # below it: subnormals of a few digits
    assert float(_relative(ours[normal], reference[normal]).max()) < 2e-15
    assert float(np.abs(ours - reference)[~normal].max()) < 1e-300
    far = _log_ndtr_array(np.array([38.5, 40.0, 1e3, np.inf]))
    assert np.all(far <= 0.0) and np.all(np.abs(far) < 1e-300)


def test_log_ndtr_special_values():
    values = _log_ndtr_array(np.array([np.nan, -np.inf, np.inf, 0.0, -1e308]))
    assert np.isnan(values[0]) and values[1] == -np.inf and values[2] == 0.0
    assert values[3] == pytest.approx(np.log(0.5), rel=1e-16) and values[4] == -np.inf


def _k_and_slope(z, u):
    """k(z) = ln 0.05 + ln Φ(z) − ln Φ(z − u) and k'(z) = R(z) − R(z − u), R = φ/Φ, by scipy."""
    def mills(x):
        return np.exp(-0.5 * np.log(2 * np.pi) - 0.5 * x * x - special.log_ndtr(x))
    k = np.log(0.05) + special.log_ndtr(z) - special.log_ndtr(z - u)
    return k, mills(z) - mills(z - u)


def test_mode_is_the_root_up_to_rounding():
    """Newton distance |k/k'| of the returned z from the root, with scipy's ln Φ: at most the
    rounding of z (4 ulp) plus that of k (4 eps (|ln Φ(z)| + |ln Φ(z − u)| + 3)) mapped through k'
    (measured ≤ 2.3 on the k part, ≤ 64 eps on k itself near u = 500, where z's spacing
    dominates). As u → 1e-3, z ≈ −3000 and the k rounding alone is ~1e-9 relative in z."""
    u = np.concatenate([np.geomspace(1e-3, 1e3, 20_001), [1.96],
                        np.random.default_rng(5).uniform(1.0, 4.0, 2000)])
    z = mode_in_sigmas(u)
    k, slope = _k_and_slope(z, u)
    k_rounding = 4 * _EPS * (np.abs(special.log_ndtr(z)) + np.abs(special.log_ndtr(z - u)) + 3)
    assert np.all(np.abs(k / slope) <= 4 * np.spacing(np.abs(z)) + k_rounding / np.abs(slope))
    # u = UL_obs/σ_e = 1.96 (UL_obs = UL_exp): z ≈ 5.47e-5, not 0 (Φ(−1.96) ≠ 0.025)
    assert z[20_001] == pytest.approx(5.4675789488e-05, rel=1e-9)


def test_mode_of_scalars_and_empty_arrays_keeps_the_shape():
    assert np.shape(mode_in_sigmas(2.5)) == ()
    assert mode_in_sigmas(np.zeros((0, 3))).shape == (0, 3)
    strided = np.linspace(0.5, 4.0, 12).reshape(3, 4).T
    assert np.array_equal(mode_in_sigmas(strided), mode_in_sigmas(np.ascontiguousarray(strided)))


def test_the_mode_op_compiles_into_numba_graphs():
    """No object-mode fallback (its warning is an error here) and the same values as numpy, on a
    C-contiguous and on a strided input."""
    u = pt.tensor3("u")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        compiled = function([u], mode_in_sigmas(u, PYTENSOR), mode=Mode(linker="numba", optimizer="fast_run"))
    values = np.random.default_rng(7).uniform(0.5, 4.0, (3, 1, 6))
    values[0, 0, 4:] = 1.96
    assert np.array_equal(compiled(values), mode_in_sigmas(values))
    assert np.array_equal(compiled(values[:, :, ::2]), mode_in_sigmas(values[:, :, ::2]))
