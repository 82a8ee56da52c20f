"""Parallel tempering on the likelihood: temperature ladder and neighbour swaps.

Level t targets π̃_t ∝ L^{β_t} · p · Π_inactive q with β_t = 1/T_t, T_0 < T_1 < … < T_{N−1}.
Level ``reference`` has T = 1 and is the one recorded; levels below it are *sharpened* (T < 1,
β > 1: they concentrate on high-likelihood states and hand them down through swaps, a search aid
that leaves the T = 1 level's target unchanged); by default there are none (reference = 0).
A swap of the states of levels t and t+1 of one chain is accepted with

    α = min(1, exp[(β_t − β_{t+1}) · (log L(x_{t+1}) − log L(x_t))]),

(the prior and pseudo-prior terms are untempered and cancel). Each sweep attempts the pairs
from the hottest down to the coldest, so a good state can travel all the way down in one sweep.

Ladder adaptation (warm-up only), after Vousden, Farr & Mandel (2016, MNRAS 455, 1919) as in
ptemcee: with A_t the mean swap acceptance probability of pair (t, t+1), the log gaps
S_t = log(T_t − T_{t−1}) of the intermediate levels move by κ(n)·(A_{t−1} − A_t),
κ(n) = lag / (n + lag) / time, which equalises the swap rates; T = 1 and T_max stay fixed, and only
the levels above T = 1 move (sharpened levels keep their geometric spacing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tdmcmc.adaptation import per_level
from tdmcmc.moves.base import MoveContext, StepInfo
from tdmcmc.randomness import RandomSource
from tdmcmc.state import State


@dataclass
class TemperatureLadder:
    """Temperatures T_0 < … < T_{N−1}, T = 1 at index ``reference``, with optional Vousden et al.
    adaptation of the levels above T = 1."""

    temperatures: np.ndarray
    adaptation_lag: float = 10_000.0
    adaptation_time: float = 100.0
    n_updates: int = 0
    reference: int = 0

    @classmethod
    def geometric(cls, n_levels: int, max_temperature: float, sharpened: int = 0,
                  min_temperature: float = 1.0) -> TemperatureLadder:
        """Geometric from 1 to ``max_temperature`` (``n_levels`` levels, a single one is T = 1),
        preceded by ``sharpened`` levels geometric from ``min_temperature`` (< 1) up to 1."""
        if n_levels < 1 or sharpened < 0:
            raise ValueError("need at least one temperature level and sharpened >= 0")
        if n_levels > 1 and max_temperature <= 1.0:
            raise ValueError("max_temperature must exceed 1 with several levels")
        if sharpened and not 0.0 < min_temperature < 1.0:
            raise ValueError("min_temperature must lie in (0, 1) with sharpened levels")
        upper = np.geomspace(1.0, max_temperature, n_levels) if n_levels > 1 else np.ones(1)
        lower = np.geomspace(min_temperature, 1.0, sharpened + 1)[:-1] if sharpened else np.zeros(0)
        return cls(np.concatenate([lower, upper]), reference=sharpened)

    @property
    def n_levels(self) -> int:
        return len(self.temperatures)

    def betas(self, n_chains: int) -> np.ndarray:
        """Inverse temperature of every batch element (temperature-major), shape (N·C,)."""
        return np.repeat(1.0 / self.temperatures, n_chains)

    def update(self, pair_accept: np.ndarray) -> None:
        """One adaptation step from the mean acceptance probability of each pair (N−1,)."""
        r = self.reference
        temps = self.temperatures[r:]
        n = len(temps)
        if n < 3:
            return
        pair_accept = pair_accept[r:]
        decay = self.adaptation_lag / (self.n_updates + self.adaptation_lag)
        kappa = decay / self.adaptation_time
        self.n_updates += 1
        gaps = np.diff(temps[:-1]) * np.exp(kappa * (pair_accept[:-1] - pair_accept[1:]))
        room = temps[-1] - 1.0
        if gaps.sum() >= room:  # keep the intermediate levels strictly below T_max
            gaps *= room * (n - 2) / (n - 1) / gaps.sum()
        upper = np.concatenate([[1.0], 1.0 + np.cumsum(gaps), temps[-1:]])
        self.temperatures = np.concatenate([self.temperatures[:r], upper])

    def reference_rows(self, n_chains: int) -> slice:
        """Batch elements of the T = 1 level."""
        return slice(self.reference * n_chains, (self.reference + 1) * n_chains)


class ReplicaExchange:
    """Neighbour swaps between temperature levels, within each chain (see module docstring).

    ``StepInfo`` entry ``t·C + c`` describes the swap of pair (t, t+1) of chain c; the top level
    has no pair above it and is marked not attempted.
    """

    name = "swap"

    def __init__(self, ladder: TemperatureLadder) -> None:
        self.ladder = ladder

    def step(self, state: State, ctx: MoveContext, src: RandomSource) -> tuple[State, StepInfo]:
        c, n = ctx.n_chains, ctx.n_levels
        beta = ctx.beta
        accepted = np.zeros(n * c, dtype=bool)
        prob = np.full(n * c, np.nan)
        for t in range(n - 2, -1, -1):
            lo, hi = slice(t * c, (t + 1) * c), slice((t + 1) * c, (t + 2) * c)
            log_alpha = np.full(n * c, -np.inf)
            log_alpha[lo] = (beta[lo] - beta[hi]) * (state.log_lik[hi] - state.log_lik[lo])
            acc = src.accept(log_alpha)[lo]
            accepted[lo] = acc
            prob[lo] = np.exp(np.minimum(log_alpha[lo], 0.0))
            order = np.arange(n * c)
            order[lo] = np.where(acc, order[hi], order[lo])
            order[hi] = np.where(acc, np.arange(t * c, (t + 1) * c), order[hi])
            state = state.take(order)
        attempted = np.arange(n * c) < (n - 1) * c
        return state, StepInfo(accepted, prob, attempted)

    def adapt(self, state: State, info: StepInfo, ctx: MoveContext) -> None:
        pair_accept = per_level(info.accept_prob, ctx.n_chains)[:-1].mean(axis=1)
        self.ladder.update(pair_accept)
        ctx.beta = self.ladder.betas(ctx.n_chains)
