"""Compiled (numba) kernels of the standard normal: ln Φ and the truncated Gaussian's mode.

:func:`log_ndtr` is ln Φ(x) for one double, in three ranges:

- x ≥ −1: ln(1 − erfc(x/√2)/2) by ``log1p`` — scipy's branch (``faddeeva_log_ndtr``), with
  libm's erfc instead of Faddeeva's;
- −20 ≤ x < −1: ln(erfc(−x/√2)/2); scipy writes it ln(erfcx(−x/√2)/2) − x²/2 to reach very
  negative x; numba has no erfcx, and erfc(−x/√2) ≥ 1e-89 is far from underflow here;
- x ≤ −20: the asymptotic series of scipy 1.x's cephes ``log_ndtr`` (special/cephes/ndtr.c),
  ln Φ(x) = −x²/2 − ln(−x) − ½ ln 2π + ln Σᵢ (−1)ⁱ (2i−1)!! x⁻²ⁱ, summed until a term is below
  the double epsilon (≤ 10 terms for x < −20, far before they would grow again at 2i − 1 ≈ x²).

Accuracy (tested): against scipy.special.log_ndtr (1.18) ≤ 7e-16 relative for −1e150 ≤ x < 0
(incl. the series) and ≤ 1.5e-15 on [0, 2). For x ≥ 2 scipy's erfc forms exp(−t²) from a
rounded t² and is off by up to t² ulp (5.7e-14 relative at x = 37), libm's erfc is not: against
scipy's erfcx(t) · exp(−t²) in long double at the same t the kernel is within 9e-16 relative
down to the smallest normal double (x ≈ 37.5). Like any evaluation in doubles, ln Φ(x) inherits
the rounding of x/√2, a relative x² ulp for large x (its condition number is ~x²).

:func:`mode_in_sigmas` solves k(z) = ln 0.05 + ln Φ(z) − ln Φ(z − u) = 0 for every u (see
:mod:`.limits`) by Newton's method from z = u − 1.96, each value until its step is below
1e-10 (1 + |z|) (at most 40 steps): the iteration of the numpy solver it replaced, with the
same operations in the same order; only ln Φ differs (above). Against that solver (scipy's ln Φ)
z agrees bit for bit for u ≥ 10 and to 1.7e-15 (1 + |z|) for 1 ≤ u < 10; for small u the root
itself is ill-conditioned (|k'| ≈ u while k rounds at eps |ln Φ(z)|, z ≈ −3000 at u = 1e-3), and
the two agree to 9e-14 for u ≥ 0.1, 1.1e-9 relative at u = 1e-3 (measured on 3e5 values).
Consecutive equal values (the padding of a batch) are solved once.

Units: none (standard normal). No fast-math: the rounding is that of the written operations.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_SQRT_HALF = math.sqrt(0.5)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_HALF_PDF = -0.5 * math.log(2.0 * math.pi)
_SERIES_BELOW = -20.0          # cephes' switch to the asymptotic series
_EPS = np.finfo(np.float64).eps
_LOG_ALPHA = math.log(0.05)    # 1 − CL
_NEWTON_STEPS = 40
_NEWTON_RTOL = 1e-10


@numba.njit(cache=True)
def log_ndtr(x: float) -> float:
    """ln Φ(x), Φ the standard normal CDF (NaN for NaN, −∞ at −∞, 0 at +∞)."""
    if x < _SERIES_BELOW:
        inv_x2 = 1.0 / (x * x)
        total, last, term, sign, i = 1.0, 0.0, 1.0, 1.0, 0
        while abs(last - total) > _EPS:
            i += 1
            last = total
            sign = -sign
            term *= (2 * i - 1) * inv_x2
            total += sign * term
        return -0.5 * x * x - math.log(-x) - _HALF_LOG_2PI + math.log(total)
    if x < -1.0:
        return math.log(0.5 * math.erfc(-x * _SQRT_HALF))
    return math.log1p(-0.5 * math.erfc(x * _SQRT_HALF))


@numba.njit(cache=True)
def _mills(x: float, log_cdf: float) -> float:
    """φ(x)/Φ(x), the inverse Mills ratio, from ln Φ(x)."""
    return math.exp(_LOG_HALF_PDF - 0.5 * x * x - log_cdf)


@numba.njit(cache=True)
def _newton_mode(u: float) -> float:
    """The root z of ln 0.05 + ln Φ(z) − ln Φ(z − u) for one u > 0 (the last iterate if 40 steps
    do not converge)."""
    z = u - 1.96  # left of the root for large u; k is convex, so Newton climbs monotonically
    for _ in range(_NEWTON_STEPS):
        shifted = z - u
        log_cdf, log_cdf_shifted = log_ndtr(z), log_ndtr(shifted)
        k = _LOG_ALPHA + log_cdf - log_cdf_shifted
        step = k / (_mills(z, log_cdf) - _mills(shifted, log_cdf_shifted))
        converged = abs(step) <= _NEWTON_RTOL * (1.0 + abs(z))
        z = z - step
        if converged:
            return z
    return z


@numba.njit(cache=True)
def mode_in_sigmas(u: np.ndarray) -> np.ndarray:
    """z = m/σ_e of the truncated Gaussian for every element of u = UL_obs/σ_e (float64, any
    shape and layout); a new C-contiguous array of u's shape."""
    flat = np.ravel(u)
    z = np.empty(flat.size)
    for i in range(flat.size):
        if i and flat[i] == flat[i - 1]:
            z[i] = z[i - 1]
        else:
            z[i] = _newton_mode(flat[i])
    return z.reshape(u.shape)
