"""Birth/death of one slot in the product space (Carlin–Chib style).

Proposal from γ: with probability 1/2 a birth, otherwise a death. A birth switches on a slot j
chosen uniformly among the n_off(γ) inactive slots, *keeping* its current parameters θ_j, which
the Gibbs refresh (:mod:`tdmcmc.moves.refresh`) has drawn from the pseudo-prior q_j — so q_j is the
birth proposal (the prior by default, refitted during warm-up only). A death switches off a slot
chosen uniformly among the n_on(γ) active ones, keeping θ_j as the inactive slot's value.

Acceptance of a birth γ → γ' = γ ∪ {j} (n_on = n_on(γ), n_off = n_off(γ)):

    α = min(1, [L(θ_γ')^β p(γ', θ_γ')] / [L(θ_γ)^β p(γ, θ_γ) q_j(θ_j)] · P_death(j|γ') / P_birth(j|γ)),
    P_birth(j|γ) = 1/(2 n_off),  P_death(j|γ') = 1/(2 (n_on + 1)),

so log_q_ratio = log n_off − log(n_on + 1); the 1/q_j(θ_j) comes from the pseudo-prior term of
π̃, which loses slot j. A death is the exact reverse: log_q_ratio = log n_on − log(n_off + 1), and
π̃ gains q_j(θ_j). This is the RJMCMC birth ratio with proposal q_j and unit Jacobian (θ_j is
copied, not transformed). A birth with nothing to switch on (or a death with nothing to switch
off) is a null move.
"""

from __future__ import annotations

import numpy as np

from tdmcmc.moves.base import MetropolisMove, MoveContext, Proposal, nth_true
from tdmcmc.randomness import RandomSource
from tdmcmc.state import State


class BirthDeath(MetropolisMove):
    """Switch one slot on or off (see module docstring for the acceptance ratio)."""

    name = "birth_death"

    def propose(self, state: State, ctx: MoveContext, src: RandomSource) -> Proposal:
        active = state.active
        n_on = active.sum(axis=1)
        n_off = active.shape[1] - n_on
        birth = src.integers(2) == 0
        pool = np.where(birth[:, None], ~active, active)
        pool_size = np.where(birth, n_off, n_on)
        pick = nth_true(pool, src.integers(np.maximum(pool_size, 1)))
        possible = pool_size > 0
        rows = np.arange(len(active))
        new_active = active.copy()
        new_active[rows, pick] = np.where(possible, ~active[rows, pick], active[rows, pick])
        with np.errstate(divide="ignore"):
            log_q = np.where(
                birth, np.log(n_off) - np.log(n_on + 1), np.log(n_on) - np.log(n_off + 1)
            )
        log_q = np.where(possible, log_q, -np.inf)
        proposed = ctx.evaluate(new_active, state.params, state.globals)
        return Proposal(proposed, log_q)
