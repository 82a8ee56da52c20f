"""Shared tuning of the within-model moves (random walk, MALA): per-coordinate scales learnt as
running posterior standard deviations and a global step size driven by Robbins–Monro towards a
target acceptance, one set per temperature level, adapted during warm-up only."""

from __future__ import annotations

import numpy as np

from tdmcmc.adaptation import MaskedMoments, StepSizeAdapter
from tdmcmc.moves.base import MetropolisMove, MoveContext, StepInfo
from tdmcmc.state import SlotLayout, State


class ScaledMove(MetropolisMove):
    """Base of moves on the free coordinates (used entries of active slots, and the globals)."""

    def __init__(self, layout: SlotLayout, n_levels: int, slot_scale: np.ndarray,
                 global_scale: np.ndarray | None, step: float, target_accept: float) -> None:
        self.initial_slot_scale = np.broadcast_to(slot_scale, (layout.n_slots, layout.max_dim)).copy()
        self.initial_global_scale = (
            np.ones(layout.n_globals) if global_scale is None else np.asarray(global_scale, float)
        )
        self.slot_scale = np.repeat(self.initial_slot_scale[None], n_levels, axis=0)
        self.global_scale = np.repeat(self.initial_global_scale[None], n_levels, axis=0)
        self.step_size = StepSizeAdapter(np.full(n_levels, np.log(step)), target_accept)
        self.slot_moments = MaskedMoments(n_levels, (layout.n_slots, layout.max_dim))
        self.global_moments = MaskedMoments(n_levels, (layout.n_globals,))

    def free_mask(self, state: State, ctx: MoveContext) -> np.ndarray:
        return state.active[:, :, None] & ctx.layout.param_mask[None]

    def adapt(self, state: State, info: StepInfo, ctx: MoveContext) -> None:
        self.step_size.update(info.accept_prob, ctx.n_chains)
        self.slot_moments.update(state.params, self.free_mask(state, ctx), ctx.n_chains)
        self.global_moments.update(state.globals, np.ones_like(state.globals, bool), ctx.n_chains)
        self.slot_scale = self.slot_moments.std(self.initial_slot_scale[None])
        self.global_scale = self.global_moments.std(self.initial_global_scale[None])
