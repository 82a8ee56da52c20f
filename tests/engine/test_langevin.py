"""MALA: pointwise detailed balance of the continuous kernel.

For random pairs (x, y = MALA proposal from x) we check

    π̃(x) q(x→y) α(x, y) = π̃(y) q(y→x) α(y, x)

with q the Gaussian proposal density written independently here (scipy, finite-difference
gradients of the target's log density, not the target's ``grad``), and α from the move itself;
the reverse proposal is produced by the move from y with the normals that map it back to x.
This is exact detailed balance for the off-diagonal (accepted) part of the kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tdmcmc.moves.base import MoveContext, log_acceptance
from tdmcmc.moves.langevin import Langevin

from tests.engine.independent_toy import IndependentSlots

BETA = 0.6


class ForcedNormals:
    """A RandomSource whose normal() returns prescribed arrays in order."""

    def __init__(self, *arrays):
        self.arrays = list(arrays)

    def normal(self, shape=()):
        return self.arrays.pop(0)

    def normal_logpdf(self, z):
        return stats.norm.logpdf(z)


def _flat_free(target, active, params, globals_):
    free = active[:, None] & target.layout.param_mask
    return np.concatenate([params[free], globals_]), free


def _log_post(target, active, vec, free, template):
    params = template.copy()
    params[free] = vec[: free.sum()]
    ll, lp = target.log_density(active[None], params[None], vec[free.sum():][None])
    return float(BETA * ll[0] + lp[0])


def _fd_grad(f, vec, h=1e-6):
    return np.array([(f(vec + h * e) - f(vec - h * e)) / (2 * h) for e in np.eye(len(vec))])


def _density(move, target, active, x_vec, y_vec, free, template):
    """log q(x → y), Gaussian with the move's step and preconditioner, FD drift."""
    d = len(x_vec)
    eps = np.exp(move.step_size.log_step[0]) * d ** (-1 / 6)
    m = np.concatenate([move.slot_scale[0][free], move.global_scale[0]]) ** 2
    grad = _fd_grad(lambda v: _log_post(target, active, v, free, template), x_vec)
    mean = x_vec + 0.5 * eps**2 * m * grad
    return stats.multivariate_normal.logpdf(y_vec, mean, np.diag(eps**2 * m)), mean, eps, m


def _balance_gap(move_cls, seed):
    rng = np.random.default_rng(seed)
    target = IndependentSlots()
    layout = target.layout
    ctx = MoveContext(target, target.pseudo_prior(), np.array([BETA]), n_chains=1)
    move = move_cls(layout, 1, rng.uniform(0.5, 1.5, (4, 2)), np.array([0.8]), step=0.9)
    active = rng.random(4) < 0.7
    active[1] = True
    params = np.where(layout.param_mask, rng.normal(size=(4, 2)), 0.0)
    x = ctx.evaluate(active[None], params[None], rng.normal(size=(1, 1)))
    z = [rng.normal(size=(1, 4, 2)), rng.normal(size=(1, 1))]
    forward = move.propose(x, ctx, ForcedNormals(*z))
    y = forward.state

    x_vec, free = _flat_free(target, active, x.params[0], x.globals[0])
    y_vec, _ = _flat_free(target, active, y.params[0], y.globals[0])
    log_q_xy, _, _, _ = _density(move, target, active, x_vec, y_vec, free, x.params[0])
    log_q_yx, mean_y, eps, m = _density(move, target, active, y_vec, x_vec, free, y.params[0])

    z_rev = (x_vec - mean_y) / (eps * np.sqrt(m))
    zp = np.zeros((1, 4, 2))
    zp[0][free] = z_rev[: free.sum()]
    backward = move.propose(y, ctx, ForcedNormals(zp, z_rev[free.sum():][None]))
    np.testing.assert_allclose(backward.state.params, x.params, atol=1e-7)  # the reverse map lands on x

    log_pi_x = _log_post(target, active, x_vec, free, x.params[0])
    log_pi_y = _log_post(target, active, y_vec, free, y.params[0])
    lhs = log_pi_x + log_q_xy + min(0.0, log_acceptance(x, forward, ctx.beta)[0])
    rhs = log_pi_y + log_q_yx + min(0.0, log_acceptance(y, backward, ctx.beta)[0])
    return lhs - rhs


@pytest.mark.parametrize("seed", range(6))
def test_mala_satisfies_detailed_balance_pointwise(seed):
    assert abs(_balance_gap(Langevin, seed)) < 1e-6  # finite-difference drift: ~1e-9 in practice


def test_missing_hastings_correction_is_detected():
    class NoCorrection(Langevin):
        def propose(self, state, ctx, src):
            prop = super().propose(state, ctx, src)
            prop.log_q_ratio = np.zeros_like(prop.log_q_ratio)
            return prop

    gaps = [abs(_balance_gap(NoCorrection, seed)) for seed in range(6)]
    assert max(gaps) > 1e-3
