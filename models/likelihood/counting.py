"""Efficiency-map signal regions: Poisson counts with a Gaussian background nuisance.

For one SR with observed count n, expected background b ± δb (events) and signal s (events at
μ = 1), the likelihood in the nuisance θ (the background shift, θ ~ N(0, δb²)) is

    L(μ, θ) = Pois(n | λ) · N(θ; 0, δb²),      λ = b + μ s + θ.

Variants (``EM_VARIANTS``; the ``--em-likelihood`` choices):

``smodels3``  exactly what SModelS 3.2.1 computes for a single SR (``statsTools.forSingleBin`` →
    ``SLLikelihoodComputer.nll``): θ profiled, the value *normalised* as a pmf × pdf,
        −ln L = λ̂ − n ln λ̂ + ln Γ(n+1) + θ̂²/(2δb²) + ½ ln(2π δb²),
    with the continuous Poisson for non-integer n. SModelS finds θ̂ numerically (Newton-CG, then
    TNC with bounds |θ| ≤ 10 n); the objective is convex in θ, so its bounded minimum is the
    closed-form stationary point below clipped to [−10n, 10n]. The clip is a real SModelS quirk:
    for n = 0 it forces θ̂ = 0, and when b ≫ n with a large δb it stops θ̂ at −10n. The 20%
    signal uncertainty (``deltas_rel``) enters only SModelS' starting point, not the result.
``2020``  what the paper's code computed (bundled SModelS 2.0.0rc11): the same profile with n
    rounded to an integer first (``numpy.around`` in its ``Data``), same bounds, same constants.
``marginal``  θ integrated over the truncated prior b + θ ≥ 0 (the background cannot be negative):
        L = ∫_{−b}^{∞} Pois(n | b + μs + θ) N(θ; 0, δb²) dθ / Φ(b/δb).
    Gauss–Legendre quadrature in two panels of 48 nodes, split at the integrand's mode θ̂ (the
    profile root, floored at −b); the outer edges are where the integrand has fallen to e^-40 of
    its peak, found by Newton steps on the convex −ln f (conservative after the first step),
    floored at −b. Tested against ``scipy.integrate.quad`` on every SR of the 1.2.4 database and
    a grid of (n, b, δb, s) from n = 0 to 1e5: |Δ(−ln L)| < 1e-9 (see docs/likelihoods.md).

Closed-form profile: ∂(−ln L)/∂θ = 1 − n/λ + θ/δb² = 0 is the quadratic
θ² + p θ + q = 0 with p = b + μs + δb², q = δb² (b + μs − n). Its discriminant
p² − 4q = (b + μs − δb²)² + 4 δb² n ≥ 0, and the root with λ > 0 is θ₊ = (−p + √(p² − 4q))/2,
evaluated as −2q / (p + √(p² − 4q)) when p > 0 to avoid cancellation.

All functions broadcast over any shapes (batch of chains × SRs); arrays are events, μ is
dimensionless. θ̂ is computed on stopped gradients: by the envelope theorem the gradient of the
profiled value w.r.t. s and μ is then exact (and a clipped θ̂ does not depend on them at all).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from .backend import NUMPY, log_ndtr

EM_VARIANTS = ("2020", "smodels3", "marginal")

_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)  # per panel, two panels split at the mode
_LOG_WEIGHTS = np.log(_WEIGHTS)
_DROP = 40.0       # window edges where the integrand has fallen to e^-40 of its peak
_START = 9.0       # first guess of the edges, in units of the width w at the mode
_NEWTON_STEPS = 8
_TINY = 1e-30   # SModelS' floor for λ


def observed_counts(n: np.ndarray, variant: str) -> np.ndarray:
    """The counts a variant uses: rounded for ``2020`` (as its ``Data`` did), else as given."""
    _check_variant(variant)
    n = np.asarray(n, dtype=float)
    return np.around(n) if variant == "2020" else n


def em_nll(mu: Any, signal: Any, n: Any, b: Any, db: Any, variant: str = "smodels3",
           xp: SimpleNamespace = NUMPY) -> Any:
    """−ln L of EM signal regions at signal strength μ (broadcast over all arguments).

    :param mu: signal strength (dimensionless)
    :param signal: signal events at μ = 1 (σ×ε×L)
    :param n: observed events (rounded here for ``2020``; pass the database value)
    :param b: expected background events
    :param db: background uncertainty δb (events, > 0)
    :param variant: one of ``EM_VARIANTS``
    """
    _check_variant(variant)
    if variant == "2020":
        n = xp.round(n)
    lam0 = b + mu * signal
    var = db * db
    if variant == "marginal":
        return _marginal_nll(lam0, n, b, var, xp)
    theta = xp.clip(profiled_theta(lam0, n, var, xp), -10.0 * n, 10.0 * n)
    return _joint_nll(lam0 + theta, theta, n, var, xp)


def profiled_theta(lam0: Any, n: Any, var: Any, xp: SimpleNamespace = NUMPY) -> Any:
    """θ̂ maximising Pois(n | lam0 + θ) N(θ; 0, var), unbounded (gradient stopped)."""
    lam0, n, var = (xp.stop_gradient(xp.asarray(v)) for v in (lam0, n, var))
    p = lam0 + var
    q = var * (lam0 - n)
    root = xp.sqrt((lam0 - var) ** 2 + 4.0 * var * n)
    positive = p > 0.0
    stable = -2.0 * q / xp.where(positive, p + root, 1.0)
    direct = 0.5 * (root - p)
    return xp.stop_gradient(xp.where(positive, stable, direct))


def _joint_nll(lam: Any, theta: Any, n: Any, var: Any, xp: SimpleNamespace) -> Any:
    lam = xp.maximum(lam, _TINY)
    return (lam - n * xp.log(lam) + xp.gammaln(n + 1.0)
            + 0.5 * theta * theta / var + 0.5 * xp.log(var) + _HALF_LOG_2PI)


def _marginal_nll(lam0: Any, n: Any, b: Any, var: Any, xp: SimpleNamespace) -> Any:
    lower = xp.stop_gradient(-xp.asarray(b) * xp.ones_like(lam0))
    lam0_stopped = xp.stop_gradient(lam0)
    mode = xp.maximum(profiled_theta(lam0, n, var, xp), lower)
    peak_nll = _joint_nll(lam0_stopped + mode, mode, n, var, xp)
    width = 1.0 / xp.sqrt(n / xp.maximum(lam0_stopped + mode, _TINY) ** 2 + 1.0 / var)
    hi = _drop_point(mode + _START * width, lam0_stopped, n, var, peak_nll, xp)
    lo = xp.maximum(_drop_point(mode - _START * width, lam0_stopped, n, var, peak_nll, xp), lower)
    log_terms = xp.concatenate([_panel(lo, mode, lam0, n, var, xp), _panel(mode, hi, lam0, n, var, xp)],
                               axis=-1)
    peak = xp.stop_gradient(log_terms.max(axis=-1))
    log_integral = xp.log(xp.exp(log_terms - xp.expand_dims(peak, -1)).sum(axis=-1)) + peak
    return -log_integral + log_ndtr(b / xp.sqrt(var), xp)


def _drop_point(start: Any, lam0: Any, n: Any, var: Any, peak_nll: Any, xp: SimpleNamespace) -> Any:
    """θ where −ln f has risen by ``_DROP`` above its minimum, on the side of ``start``.

    g(θ) = −ln f(θ) − (−ln f(θ̂)) − D is convex and monotone on each side of the mode θ̂, so Newton
    steps from any start land beyond the root after the first step and then approach it
    monotonically: every iterate is a conservative window edge (the tail outside it is
    below e^(−D) of the peak times a log-concave tail length).
    """
    theta = start
    for _ in range(_NEWTON_STEPS):
        lam = xp.maximum(lam0 + theta, _TINY)
        slope = 1.0 - n / lam + theta / var
        excess = _joint_nll(lam, theta, n, var, xp) - peak_nll - _DROP
        step = excess / xp.where(xp.abs(slope) > 0.0, slope, 1.0)
        theta = xp.where(xp.abs(slope) > 0.0, theta - step, theta)
    return xp.stop_gradient(theta)


def _panel(lo: Any, hi: Any, lam0: Any, n: Any, var: Any, xp: SimpleNamespace) -> Any:
    """log(weight × integrand) at the Gauss–Legendre nodes of [lo, hi] (last axis: nodes)."""
    half = xp.expand_dims(0.5 * (hi - lo), -1)
    theta = xp.expand_dims(0.5 * (hi + lo), -1) + half * _NODES
    lam = xp.expand_dims(lam0, -1) + theta
    return (-_joint_nll(lam, theta, xp.expand_dims(n * xp.ones_like(lam0), -1),
                        xp.expand_dims(var * xp.ones_like(lam0), -1), xp)
            + _LOG_WEIGHTS + xp.log(xp.maximum(half, _TINY)))


def _check_variant(variant: str) -> None:
    if variant not in EM_VARIANTS:
        raise ValueError(f"unknown EM likelihood variant {variant!r}; choose one of {EM_VARIANTS}")
