"""Adaptive random-walk Metropolis on the active parameters and the globals.

Proposal: every coordinate that is currently free (used entries of active slots, and all globals)
moves by ``s · σ_i / sqrt(d) · z_i`` with z_i standard normal, d the number of free coordinates of
that batch element (the 1/sqrt(d) can be switched off, e.g. to keep a lattice walk on its lattice), σ_i a per-coordinate scale and s a global step size per temperature level;
γ and the inactive slots stay fixed. The proposal is symmetric (d depends only on γ, which does not
change), so

    α = min(1, [L(θ')^β p(γ, θ')] / [L(θ)^β p(γ, θ)]),   log_q_ratio = 0.

Block variant (``blocks=True``, move name ``slot_random_walk``): each batch element first picks one
block uniformly among its active slots with free entries and, if there are globals, the block of
all globals; only that block moves (d = its number of free coordinates). The choice depends on γ
only, which the move does not change, so the proposal stays symmetric (log_q_ratio = 0). With many
slots of several parameters each, this moves every particle with steps of its own size instead of
the joint 1/sqrt(d) shrinkage.

During warm-up only: s follows Robbins–Monro to an acceptance of 0.234 (Roberts et al. 1997);
σ_i becomes the running posterior standard deviation of coordinate i at that level (initially the
pseudo-prior scale). Afterwards both are frozen.
"""

from __future__ import annotations

import numpy as np

from tdmcmc.adaptation import to_batch
from tdmcmc.moves.base import MoveContext, Proposal, nth_true
from tdmcmc.moves.scaled import ScaledMove
from tdmcmc.randomness import RandomSource
from tdmcmc.state import SlotLayout, State


class RandomWalk(ScaledMove):
    """Adaptive diagonal random-walk Metropolis on the free coordinates."""

    name = "random_walk"

    def __init__(
        self,
        layout: SlotLayout,
        n_levels: int,
        slot_scale: np.ndarray,
        global_scale: np.ndarray | None = None,
        step: float = 2.38,
        target_accept: float = 0.234,
        dimension_scaling: bool = True,
        blocks: bool = False,
    ) -> None:
        super().__init__(layout, n_levels, slot_scale, global_scale, step, target_accept)
        self.dimension_scaling = dimension_scaling
        self.blocks = blocks
        if blocks:
            self.name = "slot_random_walk"

    def propose(self, state: State, ctx: MoveContext, src: RandomSource) -> Proposal:
        layout = ctx.layout
        z_slots = src.normal((layout.n_slots, layout.max_dim))
        z_globals = src.normal((layout.n_globals,))
        free = self.free_mask(state, ctx)
        move_globals = np.full(state.batch_size, layout.n_globals > 0)
        if self.blocks:
            free, move_globals = self._one_block(free, layout.n_globals > 0, src)
        d = free.sum(axis=(1, 2)) + move_globals * layout.n_globals
        factor = self.step_size.step(ctx.n_chains)
        if self.dimension_scaling:
            factor = factor / np.sqrt(np.maximum(d, 1))
        slot_scale = to_batch(self.slot_scale, ctx.n_chains)
        global_scale = to_batch(self.global_scale, ctx.n_chains)
        params = state.params + np.where(free, factor[:, None, None] * slot_scale * z_slots, 0.0)
        globals_ = state.globals + move_globals[:, None] * factor[:, None] * global_scale * z_globals
        log_q = np.where(d > 0, 0.0, -np.inf)
        return Proposal(ctx.evaluate(state.active, params, globals_), log_q)

    @staticmethod
    def _one_block(free: np.ndarray, has_globals: bool, src: RandomSource) -> tuple[np.ndarray, np.ndarray]:
        """Restrict the free mask to one uniformly chosen block (a slot, or the globals)."""
        blocks = np.concatenate([free.any(axis=2), np.full((len(free), 1), has_globals)], axis=1)
        pick = nth_true(blocks, src.integers(np.maximum(blocks.sum(axis=1), 1)))
        chosen = np.arange(free.shape[1])[None, :] == pick[:, None]
        return free & chosen[:, :, None], pick == free.shape[1]
