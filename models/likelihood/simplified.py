"""Simplified likelihoods of SR combinations: SLv1 (covariance) and SLv2 (third moments).

For k SRs with counts n, backgrounds b, covariance Σ (events²) and optionally third moments m₃
(CMS-NOTE-2017-001; arXiv:1809.05548):

    SLv1:  λᵢ = μ sᵢ + bᵢ + θᵢ,                θ ~ N(0, V), V = Σ
    SLv2:  λᵢ = μ sᵢ + Aᵢ + θᵢ + Cᵢ θᵢ²/Bᵢ²,   θ ~ N(0, V), V = B ρ B

with Cᵢ = −sign(m₃ᵢ) √(2 Σᵢᵢ) cos(4π/3 + arctan(√(8 Σᵢᵢ³/m₃ᵢ² − 1))/3), Bᵢ = √(Σᵢᵢ − 2Cᵢ²),
Aᵢ = bᵢ − Cᵢ, ρᵢⱼ = (√((BᵢBⱼ)² + 8CᵢCⱼΣᵢⱼ) − BᵢBⱼ)/(4CᵢCⱼ) — exactly SModelS 3.2.1's
``SLData._computeABC`` (statistics/simplifiedLikelihoods.py 199–255), with its conventions
(m₃ = 0 → 1e-30; all |m₃| summing below 1e-10 → SLv1).

The profiled value is SModelS 3.2.1's ``SLLikelihoodComputer.nll`` (822–843, ``nllOfTheta``
569–627): −ln L = Σᵢ [λᵢ − nᵢ ln λᵢ + ln Γ(nᵢ+1)] + ½ θ̂ᵀV⁻¹θ̂ + ½ ln det(2πV), λ floored at 1e-30,
with θ̂ minimising it under SModelS' TNC bounds |θᵢ| ≤ 10 nᵢ (``findThetaHat`` 796–812). In
particular **θᵢ = 0 for every SR with nᵢ = 0** (CMS-SUS-20-004 has four such SRs), which changes
the value noticeably; we reproduce it. The 20% signal uncertainty enters SModelS only through the
starting point.

Profiling: ``_NEWTON_STEPS`` projected Newton steps (a ``scan`` in graphs), started from
SModelS' own diagonal guess: SRs with nᵢ = 0 and coordinates at a bound with an outward gradient
are held fixed and the reduced Newton system is solved for the others; each step is shortened so that
every λᵢ keeps at least 1% of its value (fraction to the boundary) and then clipped to the bounds.
For SLv1 the objective is convex and the iteration converges quadratically; for SLv2 it is convex
near the optimum for the database's results (tested against SModelS on CMS-SUS-20-004). The
gradient w.r.t. signals and μ uses the envelope theorem (θ̂ on stopped values).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from scipy.special import gammaln

from .backend import NUMPY, PYTENSOR
from .counting import profiled_theta

_NEWTON_STEPS = 30
_TINY = 1e-30
_KEEP = 0.01  # a Newton step keeps at least this fraction of every λᵢ


@dataclass(frozen=True, eq=False)
class SimplifiedLikelihood:
    """Data of one SR combination (events), in SModelS 3.2.1's parametrisation."""

    n: np.ndarray
    a: np.ndarray          # b for SLv1, A = b − C for SLv2
    c_over_b2: np.ndarray  # Cᵢ/Bᵢ² (zeros for SLv1)
    covariance: np.ndarray  # V (Σ for SLv1, B ρ B for SLv2)
    weight: np.ndarray     # V⁻¹
    constant: float        # Σ ln Γ(nᵢ+1) + ½ ln det(2πV)
    free: np.ndarray       # nᵢ > 0: coordinates SModelS' bounds leave free

    @property
    def is_skewed(self) -> bool:
        return bool(np.any(self.c_over_b2 != 0.0))

    @classmethod
    def from_arrays(cls, n: Any, b: Any, covariance: Any,
                    third_moment: Any | None = None) -> SimplifiedLikelihood:
        """From counts, backgrounds, covariance (events²) and optional third moments (events³)."""
        n, b = np.asarray(n, dtype=float), np.asarray(b, dtype=float)
        sigma = np.asarray(covariance, dtype=float)
        a, c_over_b2, v = b, np.zeros_like(b), sigma
        if third_moment is not None and np.sum(np.abs(third_moment)) >= 1e-10:
            m2 = np.diag(sigma)
            m3 = np.where(np.asarray(third_moment, dtype=float) == 0.0, 1e-30, third_moment)
            c = -np.sign(m3) * np.sqrt(2.0 * m2) * np.cos(
                4.0 * np.pi / 3.0 + np.arctan(np.sqrt(8.0 * m2**3 / m3**2 - 1.0)) / 3.0)
            bb = np.sqrt(m2 - 2.0 * c**2)
            outer_b, outer_c = np.outer(bb, bb), np.outer(c, c)
            rho = (np.sqrt(outer_b**2 + 8.0 * outer_c * sigma) - outer_b) / (4.0 * outer_c)
            a, c_over_b2, v = b - c, c / bb**2, outer_b * rho
        sign, logdet = np.linalg.slogdet(2.0 * np.pi * v)
        if sign <= 0:
            raise ValueError("the (SLv2-transformed) covariance matrix is not positive definite")
        return cls(n=n, a=a, c_over_b2=c_over_b2, covariance=v, weight=np.linalg.inv(v),
                   constant=float(gammaln(n + 1.0).sum() + 0.5 * logdet), free=n > 0.0)

    @classmethod
    def from_compiled(cls, arrays: Any, result_index: int) -> SimplifiedLikelihood:
        """From :class:`DatabaseArrays`: the result's covariance block, SRs in datasetOrder."""
        datasets, covariance = arrays.covariances[result_index]
        moments = arrays.third_moment[datasets]
        return cls.from_arrays(arrays.observed_n[datasets], arrays.expected_bg[datasets], covariance,
                               moments if np.all(np.isfinite(moments)) else None)


def sl_nll(mu: Any, signal: Any, model: SimplifiedLikelihood, xp: SimpleNamespace = NUMPY,
           unrolled: int | None = None) -> Any:
    """Profiled −ln L of a simplified likelihood, SModelS 3.2.1 semantics.

    :param mu: signal strength, shape ``batch`` (or scalar)
    :param signal: signal events per SR at μ = 1, shape ``batch + (k,)`` in the model's SR order
    :param unrolled: in graphs, this many Newton steps written out instead of the 30-step ``scan``
        (for graphs that evaluate it inside another ``scan``: nested scans run slowly)
    :returns: shape ``batch``
    """
    lam0 = xp.expand_dims(xp.asarray(mu), -1) * signal + model.a
    theta = profiled_thetas(lam0, model, xp, unrolled)
    return _objective(lam0, theta, model, xp)


def profiled_thetas(lam0: Any, model: SimplifiedLikelihood, xp: SimpleNamespace = NUMPY,
                    unrolled: int | None = None) -> Any:
    """θ̂ under SModelS' bounds for λ⁰ = μ s + a (shape ``batch + (k,)``), gradient stopped;
    `unrolled`: see :func:`sl_nll`."""
    lam0 = xp.stop_gradient(lam0)
    hi = 10.0 * model.n
    theta = xp.clip(profiled_theta(lam0, model.n, np.diag(model.covariance), xp), -hi, hi)
    if unrolled is None:
        (theta,) = xp.loop(lambda t: (_newton_step(lam0, t, model, xp),), (theta,), _NEWTON_STEPS)
    else:
        for _ in range(unrolled):
            theta = _newton_step(lam0, theta, model, xp)
    return xp.stop_gradient(theta)


def _newton_step(lam0: Any, theta: Any, model: SimplifiedLikelihood, xp: SimpleNamespace) -> Any:
    """One projected Newton step: coordinates at a bound whose gradient points outward, and SRs
    with n = 0, are held fixed; the reduced Newton system is solved for the rest."""
    hi = 10.0 * model.n
    slope_lam = 1.0 + 2.0 * model.c_over_b2 * theta  # ∂λ/∂θ
    lam = xp.maximum(lam0 + theta + model.c_over_b2 * theta * theta, _TINY)
    residual = 1.0 - model.n / lam
    gradient = residual * slope_lam + xp.matmul(theta, model.weight)
    edge = 1e-9 * (1.0 + hi)
    blocked = ((theta <= edge - hi) & (gradient > 0.0)) | ((theta >= hi - edge) & (gradient < 0.0))
    free = xp.where(blocked, 0.0, model.free.astype(float))
    curvature = model.n * slope_lam**2 / lam**2 + residual * 2.0 * model.c_over_b2
    eye = np.eye(len(model.n))
    free_row, free_col = xp.expand_dims(free, -1), xp.expand_dims(free, -2)
    hessian = ((model.weight + xp.expand_dims(curvature, -1) * eye) * free_row * free_col
               + (1.0 - free_row) * eye)
    step = -(_batched_solve if xp is PYTENSOR else xp.solve)(hessian, gradient * free)
    shrink = xp.where(step * slope_lam < 0.0, (1.0 - _KEEP) * lam / xp.maximum(-step * slope_lam, _TINY), 1.0)
    alpha = xp.minimum(shrink.min(axis=-1), 1.0)
    return xp.clip(theta + xp.expand_dims(alpha, -1) * step, -hi, hi)


class _BatchedSolve(Op):
    """Graph solve of a batch of systems a x = b in one ``numpy.linalg.solve`` call. PyTensor's
    batched solve (``Blockwise``) loops over the batch in Python, one scipy call per matrix, which
    made the paper target's μ profile over a combined result (batch × 64 grid points of 17×17
    systems, 30 Newton steps) take minutes. Used only for θ̂, under a stopped gradient: no gradient."""

    __props__ = ()

    def make_node(self, a, b):
        a, b = pt.as_tensor_variable(a), pt.as_tensor_variable(b)
        return Apply(self, [a, b], [b.type()])

    def perform(self, node, inputs, outputs):
        a, b = inputs
        outputs[0][0] = np.linalg.solve(a, b[..., None])[..., 0].astype(b.dtype)


_batched_solve = _BatchedSolve()


def _objective(lam0: Any, theta: Any, model: SimplifiedLikelihood, xp: SimpleNamespace) -> Any:
    lam = xp.maximum(lam0 + theta + model.c_over_b2 * theta * theta, _TINY)
    poisson = (lam - model.n * xp.log(lam)).sum(axis=-1)
    gauss = 0.5 * (xp.matmul(theta, model.weight) * theta).sum(axis=-1)
    return poisson + gauss + model.constant
