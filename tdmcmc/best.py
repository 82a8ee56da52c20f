"""The best states a run has visited: a search record next to the posterior draws.

Per chain, the state with the largest log L seen at *any* temperature level (sharpened levels
included) and at any iteration (warm-up included), with the running maximum after every iteration
and the run's cumulative CPU seconds, so that a sampler run can be compared with an optimiser such as
the greedy walk on best-found value against CPU time. Nothing here feeds back into the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tdmcmc.state import State


@dataclass
class BestStates:
    """``log_lik`` (C,), ``active`` (C, S), ``params`` (C, S, D), ``globals`` (C, G), ``iteration``
    (C,) of the best state per chain; ``history`` (C, iterations) the running maximum of log L and
    ``cpu_seconds`` (iterations,) the cumulative process CPU time after each iteration."""

    log_lik: np.ndarray
    active: np.ndarray
    params: np.ndarray
    globals: np.ndarray
    iteration: np.ndarray
    history: np.ndarray
    cpu_seconds: np.ndarray

    @classmethod
    def empty(cls, state: State, n_chains: int, iterations: int) -> BestStates:
        s, d = state.params.shape[1:]
        return cls(np.full(n_chains, -np.inf), np.zeros((n_chains, s), bool), np.zeros((n_chains, s, d)),
                   np.zeros((n_chains, state.globals.shape[1])), np.full(n_chains, -1),
                   np.full((n_chains, iterations), np.nan), np.full(iterations, np.nan))

    def update(self, state: State, n_chains: int, iteration: int, cpu_seconds: float) -> None:
        """Take in the states of all levels after iteration `iteration` (1-based)."""
        per_chain = state.log_lik.reshape(-1, n_chains)                    # (levels, C)
        finite = np.where(np.isfinite(state.log_prior.reshape(-1, n_chains)), per_chain, -np.inf)
        level = np.argmax(finite, axis=0)
        value = finite[level, np.arange(n_chains)]
        better = value > self.log_lik
        rows = level * n_chains + np.arange(n_chains)
        self.log_lik = np.where(better, value, self.log_lik)
        self.active[better] = state.active[rows[better]]
        self.params[better] = state.params[rows[better]]
        self.globals[better] = state.globals[rows[better]]
        self.iteration[better] = iteration
        self.history[:, iteration - 1] = self.log_lik
        self.cpu_seconds[iteration - 1] = cpu_seconds
