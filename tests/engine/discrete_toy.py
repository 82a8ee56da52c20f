"""A three-slot target on a finite grid, for exact transition-matrix tests of the moves.

Slots 0, 1, 2 with one parameter each on the grid {0, 0.5, 1}; slots 1 and 2 form an
exchangeable group. Densities are with respect to counting measure on the grid; off-grid points
have zero prior. Likelihood, prior and the per-slot pseudo-prior pmfs are deliberately uneven,
so a missing or wrong term in any acceptance ratio shows up.
"""

from __future__ import annotations

import itertools

import numpy as np

from tdmcmc.state import SlotLayout

GRID = np.array([0.0, 0.5, 1.0])
SLAB = np.array([0.2, 0.5, 0.3])
PSEUDO = np.array([[0.3, 0.3, 0.4], [0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
LAM = 0.7


def grid_index(values: np.ndarray) -> np.ndarray:
    """Index of each value on GRID, −1 off the grid."""
    hit = np.isclose(np.asarray(values, float)[..., None], GRID)
    return np.where(hit.any(-1), hit.argmax(-1), -1)


class DiscretePseudoPrior:
    """Per-slot pmf PSEUDO[j] on GRID."""

    def sample(self, src):
        cols = [GRID[src.categorical(PSEUDO[j])] for j in range(len(PSEUDO))]
        return np.stack(cols, axis=1)[..., None]

    def sample_slot(self, src, slot):
        return np.array([[GRID[src.categorical(PSEUDO[j])[0]]] for j in slot])

    def logpdf(self, params):
        idx = grid_index(params[..., 0])
        with np.errstate(divide="ignore"):
            return np.where(idx >= 0, np.log(PSEUDO[np.arange(len(PSEUDO)), np.maximum(idx, 0)]), -np.inf)


def log_likelihood(active, theta):
    s = np.where(active, theta, 0.0).sum(-1)
    return -((s - 1.2) ** 2) / 0.6 + 0.3 * active[..., 1] * theta[..., 1] - 0.2 * active[..., 2]


def log_prior(active, theta):
    idx = grid_index(theta)
    with np.errstate(divide="ignore"):
        slab = np.where(idx >= 0, np.log(SLAB[np.maximum(idx, 0)]), -np.inf)
    return np.where(active, slab, 0.0).sum(-1) - LAM * active.sum(-1)


class DiscreteTarget:
    layout = SlotLayout(slot_names=("a", "b", "c"), param_names=("theta",), groups=(-1, 0, 0))

    def log_density(self, active, params, globals_):
        theta = params[..., 0]
        return log_likelihood(active, theta), log_prior(active, theta)

    def pseudo_prior(self):
        return DiscretePseudoPrior()

    def initial_point(self, src):
        raise NotImplementedError  # the tests build every state themselves

    def named_variables(self, active, params, globals_):
        return {"theta": (("slot",), params[..., 0])}


def all_points(n_slots: int = 3, grid: np.ndarray = GRID):
    """Every (active, theta) of the product space: 2^S indicator patterns × grid^S values."""
    for gamma in itertools.product([False, True], repeat=n_slots):
        for theta in itertools.product(grid, repeat=n_slots):
            yield np.array(gamma), np.array(theta)


def log_pi_tilde(active, theta, beta):
    """The product-space target written out directly: β log L + log p + Σ_inactive log q_j."""
    idx = grid_index(theta)
    log_q = np.log(PSEUDO[np.arange(len(theta)), idx])
    return beta * log_likelihood(active, theta) + log_prior(active, theta) + np.where(active, 0.0, log_q).sum()
