"""Exact detailed balance of every discrete-testable move, on the full product space of a small
grid target (512 states): the transition matrix P is enumerated from the move's own code
(tests/engine/enumeration.py) and π̃_a P_ab = π̃_b P_ba is checked to 1e-12 for all pairs, with π̃
written out independently in tests/engine/discrete_toy.py. Each test also asserts that the move
actually moves (enough off-diagonal mass), so a kernel that always rejects cannot pass.

MALA is not on this list: its proposal needs continuous Gaussians; it gets a pointwise
detailed-balance test in test_langevin.py instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.moves.base import MoveContext
from tdmcmc.moves.birth_death import BirthDeath
from tdmcmc.moves.identity_swap import IdentitySwap
from tdmcmc.moves.random_walk import RandomWalk
from tdmcmc.moves.refresh import RefreshInactive
from tdmcmc.moves.split_merge import SplitMerge
from tdmcmc.tempering import ReplicaExchange, TemperatureLadder

from tests.engine.discrete_toy import GRID, DiscreteTarget, all_points, grid_index, log_pi_tilde
from tests.engine.enumeration import transition_matrix


def _context(beta: float) -> MoveContext:
    target = DiscreteTarget()
    return MoveContext(target, target.pseudo_prior(), np.array([beta]), n_chains=1)


def _key(state):
    return tuple(state.active[0]) + tuple(grid_index(state.params[0, :, 0]))


def _moves():
    layout = DiscreteTarget.layout
    h = GRID[1] - GRID[0]
    return {
        "refresh": RefreshInactive(),
        "birth_death": BirthDeath(),
        # step h on the lattice: normals are ±1 under enumeration, step size 1, scale h
        "random_walk": RandomWalk(layout, 1, np.full((3, 1), h), step=1.0, dimension_scaling=False),
        "slot_random_walk": RandomWalk(layout, 1, np.full((3, 1), h), step=1.0, dimension_scaling=False,
                                       blocks=True),
        "identity_swap": IdentitySwap(),
        # split offsets u = ±1 = ±2h keep both halves on the grid; σ = 1 so that the continuous
        # density factor 1/σ of u is also the lattice pmf factor
        "split_merge": SplitMerge(layout, np.ones((3, 1))),
    }


def _flow(move, beta):
    """π̃_a P_ab for all pairs of product-space states (rows of P checked to sum to one)."""
    ctx = _context(beta)
    points = list(all_points())
    states = [ctx.evaluate(a[None], t[None, :, None], np.zeros((1, 0))) for a, t in points]
    P = transition_matrix(states, lambda s, src: move.step(s, ctx, src)[0], _key, batch_size=1)
    log_pi = np.array([log_pi_tilde(a, t, beta) for a, t in points])
    pi = np.exp(log_pi - log_pi.max())
    pi /= pi.sum()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    return pi[:, None] * P


@pytest.mark.parametrize("beta", [1.0, 0.4])
@pytest.mark.parametrize("name", list(_moves()))
def test_move_is_reversible_on_product_space(name, beta):
    flow = _flow(_moves()[name], beta)
    np.testing.assert_allclose(flow, flow.T, atol=1e-12, rtol=0)
    np.testing.assert_allclose(flow.sum(axis=0), flow.sum(axis=1), atol=1e-12)  # π̃ P = π̃
    moved = flow.sum() - np.trace(flow)
    assert moved > 0.01, f"{name} hardly moves (probability of leaving {moved:.3f})"


class _BirthWithoutPseudoTerm(BirthDeath):
    def propose(self, state, ctx, src):
        prop = super().propose(state, ctx, src)
        prop.log_q_ratio = prop.log_q_ratio + (prop.state.log_pseudo - state.log_pseudo)
        return prop


class _SplitWithExtraJacobian(SplitMerge):
    def propose(self, state, ctx, src):
        prop = super().propose(state, ctx, src)
        grows = prop.state.active.sum(1) > state.active.sum(1)
        prop.log_q_ratio = prop.log_q_ratio + np.where(grows, np.log(2.0), -np.log(2.0))
        return prop


@pytest.mark.parametrize(
    "move",
    [_BirthWithoutPseudoTerm(), _SplitWithExtraJacobian(DiscreteTarget.layout, np.ones((3, 1)))],
    ids=["birth-without-pseudo-prior", "split-with-wrong-jacobian"],
)
def test_a_wrong_ratio_is_detected(move):
    """The check has teeth: a ratio with a missing or wrong term breaks detailed balance."""
    flow = _flow(move, 1.0)
    assert np.abs(flow - flow.T).max() > 1e-4


def test_replica_exchange_is_reversible():
    """Two temperature levels of one chain; joint target π̃_{β0}(x0) π̃_{β1}(x1) on 20×20 pairs."""
    betas = np.array([1.0, 0.35])
    target = DiscreteTarget()
    ctx = MoveContext(target, target.pseudo_prior(), betas, n_chains=1)
    rng = np.random.default_rng(3)
    points = list(all_points())
    subset = [points[i] for i in rng.choice(len(points), 20, replace=False)]
    pairs = [(p, q) for p in subset for q in subset]
    states = [
        ctx.evaluate(np.stack([p[0], q[0]]), np.stack([p[1], q[1]])[..., None], np.zeros((2, 0)))
        for p, q in pairs
    ]
    swap = ReplicaExchange(TemperatureLadder(1.0 / betas))

    def key(state):
        return tuple(state.active.ravel()) + tuple(grid_index(state.params[..., 0]).ravel())

    P = transition_matrix(states, lambda s, src: swap.step(s, ctx, src)[0], key, batch_size=2)
    log_pi = np.array([log_pi_tilde(*p, betas[0]) + log_pi_tilde(*q, betas[1]) for p, q in pairs])
    pi = np.exp(log_pi - log_pi.max())
    pi /= pi.sum()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    flow = pi[:, None] * P
    np.testing.assert_allclose(flow, flow.T, atol=1e-12, rtol=0)
    assert 1.0 - pi @ np.diag(P) > 0.05
