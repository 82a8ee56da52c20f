"""Metropolis-adjusted Langevin (MALA) on the active parameters and the globals.

On the free coordinates x (used entries of active slots, globals), with the tempered gradient
g(x) = β ∇log L + ∇log p, a diagonal preconditioner M (squared per-coordinate scales) and step
ε = s · d^(−1/6) (d free coordinates; Roberts & Rosenthal 1998 scaling):

    x' = x + (ε²/2) M g(x) + ε M^(1/2) z,   z ~ N(0, I).

Writing z_fwd = z and z_rev = (x − x' − (ε²/2) M g(x')) / (ε M^(1/2)), the normalising constants
of the two Gaussians are equal (same γ, ε, M), so

    α = min(1, π̃(x')/π̃(x) · exp(Σ log φ(z_rev) − Σ log φ(z_fwd))),

with φ the density of the source's normal variates. γ and the inactive slots do not change.
Warm-up only: s by Robbins–Monro towards acceptance 0.574, M from running posterior variances.
"""

from __future__ import annotations

import numpy as np

from tdmcmc.adaptation import to_batch
from tdmcmc.moves.base import MoveContext, Proposal
from tdmcmc.moves.scaled import ScaledMove
from tdmcmc.randomness import RandomSource
from tdmcmc.state import SlotLayout, State


class Langevin(ScaledMove):
    """MALA with diagonal preconditioning; needs a target with ``grad``."""

    name = "mala"

    def __init__(self, layout: SlotLayout, n_levels: int, slot_scale: np.ndarray,
                 global_scale: np.ndarray | None = None, step: float = 1.0,
                 target_accept: float = 0.574) -> None:
        super().__init__(layout, n_levels, slot_scale, global_scale, step, target_accept)

    def _drift(self, state: State, ctx: MoveContext, eps, s_scale, g_scale):
        gl_p, gl_g, gp_p, gp_g = ctx.target.grad(state.active, state.params, state.globals)
        beta = ctx.beta
        half = 0.5 * eps**2
        d_params = half[:, None, None] * s_scale**2 * (beta[:, None, None] * gl_p + gp_p)
        d_globals = half[:, None] * g_scale**2 * (beta[:, None] * gl_g + gp_g)
        return d_params, d_globals

    def propose(self, state: State, ctx: MoveContext, src: RandomSource) -> Proposal:
        layout = ctx.layout
        z_p = src.normal((layout.n_slots, layout.max_dim))
        z_g = src.normal((layout.n_globals,))
        free = self.free_mask(state, ctx)
        d = free.sum(axis=(1, 2)) + layout.n_globals
        eps = self.step_size.step(ctx.n_chains) * np.maximum(d, 1) ** (-1.0 / 6.0)
        s_scale = to_batch(self.slot_scale, ctx.n_chains)
        g_scale = to_batch(self.global_scale, ctx.n_chains)
        dp, dg = self._drift(state, ctx, eps, s_scale, g_scale)
        params = np.where(free, state.params + dp + eps[:, None, None] * s_scale * z_p, state.params)
        globals_ = state.globals + dg + eps[:, None] * g_scale * z_g
        proposed = ctx.evaluate(state.active, params, globals_)
        with np.errstate(invalid="ignore", over="ignore"):
            dp_new, dg_new = self._drift(proposed, ctx, eps, s_scale, g_scale)
            zr_p = (state.params - params - dp_new) / (eps[:, None, None] * s_scale)
            zr_g = (state.globals - globals_ - dg_new) / (eps[:, None] * g_scale)
        log_q = (
            np.where(free, src.normal_logpdf(zr_p) - src.normal_logpdf(z_p), 0.0).sum(axis=(1, 2))
            + (src.normal_logpdf(zr_g) - src.normal_logpdf(z_g)).sum(axis=1)
        )
        log_q = np.where((d > 0) & np.isfinite(proposed.log_prior), log_q, -np.inf)
        return Proposal(proposed, log_q)
