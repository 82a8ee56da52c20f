"""μ̂: the global signal strength maximising a sum of log-likelihoods on [0, μ_max].

This is the combiner's profile over μ (method reference §4.6, with μ capped by the critic, §5).
The maximiser is batched and has a fixed amount of work, so it is the same graph for every state:

1. evaluate the total −ln L on a grid of ``n_grid`` points spanning [0, μ_max];
2. golden-section search for ``n_golden`` iterations on the two grid cells around the grid
   minimum (the bracket shrinks by 0.618 per iteration);
3. compare the refined point with both ends 0 and μ_max and keep the best, so a maximum on the
   boundary is returned exactly.

Exactness: every likelihood here (profiled or marginalised EM SRs, SLv1, truncated Gaussians) is
log-concave in μ, and so is any sum of them, so the bracket around the grid minimum contains the
maximiser and golden section converges to it. The result is within
2 μ_max/(n_grid − 1) · 0.618^n_golden of μ̂ (defaults: 3.6e-8 μ_max), which changes −ln L by a
second-order amount (< 1e-12 for the database's likelihoods). SLv2 is not always log-concave; a
second local maximum more than one grid cell away from the grid's best point can then be missed.

Gradients: the search runs on stopped values. At an interior maximum ∂(−ln L)/∂μ = 0, so the
gradient of the returned ``nll_min`` w.r.t. the signals is exact (envelope theorem); at μ̂ = μ_max
the returned μ̂ *is* ``mu_max`` and carries its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from .backend import NUMPY

_GOLDEN = 0.5 * (np.sqrt(5.0) - 1.0)


def profile_mu(nll_of_mu: Callable[[Any], Any], mu_max: Any, xp: SimpleNamespace = NUMPY,
               n_grid: int = 32, n_golden: int = 30) -> tuple[Any, Any]:
    """Return (μ̂, −ln L(μ̂)) of the total likelihood on [0, μ_max], batched.

    :param nll_of_mu: maps μ of shape ``batch + (k,)`` to the total −ln L of the same shape
        (every term broadcast over the trailing μ axis)
    :param mu_max: finite upper bounds, shape ``batch`` (cap an infinite critic bound first)
    """
    if n_grid < 3:
        raise ValueError("n_grid must be at least 3")
    mu_max = xp.asarray(mu_max)
    top = xp.stop_gradient(mu_max)
    grid = xp.expand_dims(top, -1) * np.linspace(0.0, 1.0, n_grid)
    best = xp.argmin(nll_of_mu(grid), axis=-1)
    lo = _pick(grid, xp.maximum(best - 1, 0), xp)
    hi = _pick(grid, xp.minimum(best + 1, n_grid - 1), xp)
    lo, hi = xp.loop(lambda lo, hi: _golden_step(nll_of_mu, lo, hi, xp), (lo, hi), n_golden)
    candidates = xp.stack([0.0 * top, 0.5 * (lo + hi), top], axis=-1)
    choice = xp.stop_gradient(xp.argmin(nll_of_mu(candidates), axis=-1))
    mu_hat = xp.where(xp.eq(choice, 2), mu_max, xp.stop_gradient(_pick(candidates, choice, xp)))
    return mu_hat, nll_of_mu(xp.expand_dims(mu_hat, -1))[..., 0]


def _golden_step(nll_of_mu: Callable[[Any], Any], lo: Any, hi: Any, xp: SimpleNamespace):
    step = _GOLDEN * (hi - lo)
    inner = xp.stack([hi - step, lo + step], axis=-1)
    values = nll_of_mu(inner)
    left_better = values[..., 0] < values[..., 1]
    return xp.where(left_better, lo, inner[..., 0]), xp.where(left_better, inner[..., 1], hi)


def _pick(values: Any, index: Any, xp: SimpleNamespace) -> Any:
    return xp.take_along_axis(values, xp.expand_dims(index, -1), axis=-1)[..., 0]
