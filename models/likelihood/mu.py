"""μ̂: the global signal strength maximising a sum of log-likelihoods on [0, μ_max].

This is the combiner's profile over μ (method reference §4.6, with μ capped by the critic, §5).
The maximiser is batched and has a fixed amount of work, so it is the same graph for every state:

1. evaluate the total −ln L on a grid of ``n_grid`` points spanning [0, μ_max]; the grid's best
   point b and its two neighbours a < b < c form a bracket (f(b) ≤ f(a), f(c));
2. ``n_steps`` refinement steps, each evaluating four points in one vectorised call:
   the vertex u of the parabola through (a, b, c), its mirror 2u − b (so that the next bracket is a
   symmetric stencil around u: a Newton step with finite-difference derivatives, error
   e → ≈ f'''/(3f'') e²), and the midpoints of [a, b] and [b, c] (a bisection safeguard: the
   bracket at least halves every step, whatever the function). The new bracket is the best of the
   seven points with its nearest neighbours, so f(b) only decreases. When the parabola carries no
   information (u = b: b at an end of [0, μ_max], or an exactly quadratic −ln L) the stencil is
   (c − a)/16 wide;
3. μ̂ is the best point evaluated: a maximum at 0 or μ_max (grid points) is returned exactly.

Why not golden section (used before): its steps are sequential, one bracket shrink of 0.618 per two
evaluations, and 30 of them took 3.2 ms (one model) and 14 ms (64 models) of the ``paper`` target's
4.3 ms and 31 ms (C VM, CPU time): the cost of a step is the ~300 small ops of the objective, not its
arithmetic. Four points per step cost about as much as two, and 6 steps replace 30: 0.9 ms and
4.4 ms (the whole function: 4.2 → 1.8 ms and 31 → 21 ms; the steps' bookkeeping is ~30 µs each).

Accuracy (measured against golden section with 60 iterations, i.e. the converged maximiser of the
same bracket): on the 64 protomodels of the speed benchmark (1.2.4 database, 28 interior μ̂; paper
and SModelS 3.2.1 variants) |Δ(−ln L)| < 1e-12 from 3 steps on. On 6000 synthetic states (the max
over 4 random cliques of 5 EM SRs drawn from the 1.2.4 database and 5 UL results, all three EM
variants, like the states of tests/models/likelihood/test_mu.py) 6 steps give the converged
value to 1e-10 in every state with one local minimum in the bracket (8 steps change nothing; with
5, 2–7 states per 1000 are off by up to 2e-8).

What can be missed: every likelihood here (profiled or marginalised EM SRs, SLv1, truncated
Gaussians) is log-concave in μ, and so is any sum of them; the target's objective is a maximum over
cliques of such sums, so −ln L is piecewise convex with its local minima at the pieces' own
minima. (i) A local minimum narrower than a grid cell that is not in the grid's best cells is not
seen (as with any grid; cell = μ_max/(n_grid − 1)). (ii) With two local minima inside the bracket
the steps converge to one of them: in the 6000 synthetic states this gave a worse minimum than
golden section in 4 and a better one in 21. SLv2 is not always log-concave, with the same caveats.

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

N_STEPS = 6
_SPREAD = 1.0 / 16.0      # stencil half-width when the parabola gives none, in units of c − a


def profile_mu(nll_of_mu: Callable[[Any], Any], mu_max: Any, xp: SimpleNamespace = NUMPY,
               n_grid: int = 32, n_steps: int = N_STEPS) -> tuple[Any, Any]:
    """Return (μ̂, −ln L(μ̂)) of the total likelihood on [0, μ_max], batched.

    :param nll_of_mu: maps μ of shape ``batch + (k,)`` to the total −ln L of the same shape
        (every term broadcast over the trailing μ axis)
    :param mu_max: finite upper bounds, shape ``batch`` (cap an infinite critic bound first)
    :param n_grid: grid points on [0, μ_max] (at least 3)
    :param n_steps: refinement steps of four points each (in PyTensor one ``scan``)
    """
    if n_grid < 3:
        raise ValueError("n_grid must be at least 3")
    mu_max = xp.asarray(mu_max)
    top = xp.stop_gradient(mu_max)
    grid = xp.expand_dims(top, -1) * np.linspace(0.0, 1.0, n_grid)
    values = xp.stop_gradient(nll_of_mu(grid))
    best = xp.argmin(values, axis=-1)
    bracket = xp.stack([xp.maximum(best - 1, 0), best, xp.minimum(best + 1, n_grid - 1)], axis=-1)
    # one state array (a, b, c, f(a), f(b), f(c)): PyTensor then knows that its columns have one
    # shape (six separate states made it check broadcasting at every op, 1.6× the time per step)
    state = _pick(xp.stack([grid, values], axis=-2), bracket, n_grid, xp)
    state, = xp.loop(lambda s: (_refine(nll_of_mu, s, xp),), (state,), n_steps)
    b = xp.stop_gradient(state[..., 1])
    mu_hat = xp.where(xp.eq(b, top), mu_max, b)
    return mu_hat, nll_of_mu(xp.expand_dims(mu_hat, -1))[..., 0]


def _refine(nll_of_mu: Callable[[Any], Any], state: Any, xp: SimpleNamespace) -> Any:
    """One step on the bracket state (a, b, c, f(a), f(b), f(c)) (module docstring, step 2)."""
    a, b, c, fa, fb, fc = (state[..., i] for i in range(6))
    p, q = (b - a) * (fb - fc), (b - c) * (fb - fa)
    curved = xp.abs(p - q) > 0
    m1, m2 = 0.5 * (a + b), 0.5 * (b + c)
    # the vertex of a parabola through a bracket lies in [m1, m2]; the clip only guards rounding
    u = xp.clip(b - 0.5 * ((b - a) * p - (b - c) * q) / xp.where(curved, p - q, 1.0) * curved, m1, m2)
    right = u >= b
    half = xp.where(xp.eq(u, b), _SPREAD * (c - a), xp.abs(u - b))
    v = xp.clip(xp.where(right, u + half, u - half), a, c)
    # the four trials in increasing order: m1 ≤ b ≤ u ≤ (v, m2) if u ≥ b, else (v, m1) ≤ u ≤ b ≤ m2
    trials = xp.stack([xp.where(right, m1, xp.minimum(v, m1)), xp.where(right, u, xp.maximum(v, m1)),
                       xp.where(right, xp.minimum(v, m2), u), xp.where(right, xp.maximum(v, m2), m2)], axis=-1)
    points = _merge(a, b, c, trials, right, xp)
    values = _merge(fa, fb, fc, xp.stop_gradient(nll_of_mu(trials)), right, xp)
    # the best point with its nearest distinct neighbours (repeated points share their value)
    first = xp.argmin(values, axis=-1)
    last = 6 - xp.argmin(values[..., ::-1], axis=-1)
    bracket = xp.stack([xp.maximum(first - 1, 0), first, xp.minimum(last + 1, 6)], axis=-1)
    return _pick(xp.stack([points, values], axis=-2), bracket, 7, xp)


def _pick(rows: Any, index: Any, n: int, xp: SimpleNamespace) -> Any:
    """(..., 2, n) points and values at the `index` (..., 3) of a bracket -> the state (..., 6).

    A masked sum with one term (exact): elementwise ops instead of PyTensor's advanced indexing, a
    Python Op costing ~10 µs per call."""
    onehot = xp.expand_dims(xp.eq(xp.expand_dims(index, -1), np.arange(n)), -3)        # (..., 1, 3, n)
    picked = xp.sum(xp.where(onehot, xp.expand_dims(rows, -2), 0.0), axis=-1)          # (..., 2, 3)
    return xp.concatenate([picked[..., 0, :], picked[..., 1, :]], axis=-1)


def _merge(a: Any, b: Any, c: Any, trials: Any, right: Any, xp: SimpleNamespace) -> Any:
    """The seven points (or their values) in increasing order of μ: a, the trials with b among them
    (after the second trial if u ≥ b, else before the fourth), c."""
    t = [trials[..., i] for i in range(4)]
    middle = [xp.where(right, x, y) for x, y in zip((b, t[1], t[2]), (t[1], t[2], b))]
    return xp.stack([a, t[0], *middle, t[3], c], axis=-1)
