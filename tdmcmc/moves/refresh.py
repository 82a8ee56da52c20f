"""Gibbs refresh of the inactive slots from their pseudo-prior.

In π̃ (see :mod:`tdmcmc.state`) the parameters of inactive slots are independent of everything
else with density q_j, so drawing them afresh from q_j is an exact Gibbs step (acceptance 1).
Relies on the Target contract that inactive slots do not enter log L or log p, so only the
pseudo-prior term of the state is recomputed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tdmcmc.moves.base import MoveContext, StepInfo
from tdmcmc.randomness import RandomSource
from tdmcmc.state import State


class RefreshInactive:
    """Redraw every inactive slot's parameters from q_j."""

    name = "refresh"

    def step(self, state: State, ctx: MoveContext, src: RandomSource) -> tuple[State, StepInfo]:
        fresh = ctx.pseudo.sample(src)
        inactive = ~state.active
        params = np.where(inactive[:, :, None], fresh, state.params)
        log_pseudo = np.where(inactive, ctx.pseudo.logpdf(params), 0.0).sum(axis=-1)
        new = replace(state, params=params, log_pseudo=log_pseudo)
        ones = np.ones(state.batch_size, dtype=bool)
        return new, StepInfo(ones, np.ones(state.batch_size), ones)

    def adapt(self, state: State, info: StepInfo, ctx: MoveContext) -> None:
        """Nothing to tune (the pseudo-prior itself is refitted by the sampler)."""
