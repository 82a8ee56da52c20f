"""Split/merge within an exchangeable group (e.g. one squark into two nearly degenerate ones).

Choose a group uniformly, then split or merge with probability 1/2 each. With n_a active and
n_i inactive members of the group in the current state:

Split: pick an active i (prob 1/n_a) and an inactive j (prob 1/n_i), draw z ~ N(0, I_d) and set
u = σ ⊙ z (σ a fixed per-entry scale), then

    θ_i = θ' − u/2,   θ_j = θ' + u/2    (both active; j's old pseudo-prior value v is dropped).

The map (θ', u) → (θ_i, θ_j) has |∂(θ_i, θ_j)/∂(θ', u)| = 1 per entry (det [[1, −½], [1, ½]] = 1).
The reverse merge picks the ordered pair (i, j) among n_a + 1 active members (prob
1/((n_a+1) n_a)) and draws j's new inactive value v ~ q_j. Hence

    log_q_ratio = −log((n_a+1) n_a) + log q_j(v) + log n_a + log n_i − log g(u) + log|J|,

with log g(u) = Σ [log φ(z) − log σ] and log|J| = 0 (σ: during warm-up only, √2 × the running
posterior standard deviation of the slot's parameters at the T = 1 level — the spread of the
difference of two independent draws — starting from the scale given at construction); α = min(1, π̃(y)/π̃(x) · exp(log_q_ratio)),
where π̃(x) contains q_j(v) (j inactive in x), which cancels the reverse-draw term — this is the
RJMCMC split ratio.

Merge (n_a ≥ 2): pick an ordered pair (i, j) of active members (prob 1/(n_a (n_a−1))); set
θ' = (θ_i + θ_j)/2 in slot i, u = θ_j − θ_i, switch j off with a fresh v ~ q_j; exactly the inverse:

    log_q_ratio = log(n_a (n_a−1)) − log(n_a−1) − log(n_i+1) + log g(u) − log q_j(v).
"""

from __future__ import annotations

import numpy as np

from tdmcmc.adaptation import MaskedMoments
from tdmcmc.moves.base import MetropolisMove, MoveContext, Proposal, StepInfo, nth_true
from tdmcmc.moves.groups import GroupTable
from tdmcmc.randomness import RandomSource
from tdmcmc.state import SlotLayout, State


class SplitMerge(MetropolisMove):
    """Dimension-changing split/merge of two slots of one group (see module docstring)."""

    name = "split_merge"

    def __init__(self, layout: SlotLayout, scale: np.ndarray) -> None:
        self.initial_scale = np.broadcast_to(scale, (layout.n_slots, layout.max_dim)).copy()
        self.scale = self.initial_scale.copy()
        self.moments = MaskedMoments(1, (layout.n_slots, layout.max_dim))

    def adapt(self, state: State, info: StepInfo, ctx: MoveContext) -> None:
        cold = slice(ctx.reference * ctx.n_chains, (ctx.reference + 1) * ctx.n_chains)
        free = state.active[cold, :, None] & ctx.layout.param_mask[None]
        self.moments.update(state.params[cold], free, ctx.n_chains)
        self.scale = np.sqrt(2.0) * self.moments.std(self.initial_scale[None] / np.sqrt(2.0))[0]

    def propose(self, state: State, ctx: MoveContext, src: RandomSource) -> Proposal:
        layout = ctx.layout
        rows = np.arange(state.batch_size)
        members, valid = GroupTable(layout).choose(src)
        split = src.integers(2) == 0
        act = state.active[rows[:, None], members] & valid
        off = ~state.active[rows[:, None], members] & valid
        n_a, n_i = act.sum(axis=1), off.sum(axis=1)
        # split: i among active, j among inactive; merge: ordered pair of actives
        first = src.integers(np.maximum(n_a, 1))
        second = src.integers(np.maximum(np.where(split, n_i, n_a - 1), 1))
        i = members[rows, nth_true(act, first)]
        second = np.where(split, second, second + (second >= first))
        j = members[rows, nth_true(np.where(split[:, None], off, act), second)]
        z = src.normal((layout.max_dim,))
        fresh = ctx.pseudo.sample_slot(src, j)
        mask = layout.param_mask[j]
        sigma = self.scale[j]
        th_i, th_j = state.params[rows, i], state.params[rows, j]

        u_split = sigma * z
        u_merge = th_j - th_i
        with np.errstate(divide="ignore", invalid="ignore"):
            z_merge = u_merge / sigma
        log_g = np.where(
            mask, np.where(split[:, None], src.normal_logpdf(z), src.normal_logpdf(z_merge)) - np.log(sigma), 0.0
        ).sum(axis=1)

        params, active = state.params.copy(), state.active.copy()
        centre = 0.5 * (th_i + th_j)
        params[rows, i] = np.where(mask, np.where(split[:, None], th_i - 0.5 * u_split, centre), th_i)
        params[rows, j] = np.where(mask, np.where(split[:, None], th_i + 0.5 * u_split, fresh), fresh)
        active[rows, j] = split
        proposed = ctx.evaluate(active, params, state.globals)

        v_dropped = ctx.pseudo.logpdf(state.params)[rows, j]
        v_new = ctx.pseudo.logpdf(params)[rows, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_split = (-np.log((n_a + 1.0) * n_a) + v_dropped + np.log(n_a) + np.log(n_i) - log_g)
            log_merge = (np.log(n_a * (n_a - 1.0)) - np.log(n_a - 1.0) - np.log(n_i + 1.0) + log_g - v_new)
        possible = np.where(split, (n_a >= 1) & (n_i >= 1), n_a >= 2)
        log_q = np.where(possible, np.where(split, log_split, log_merge), -np.inf)
        return Proposal(proposed, np.nan_to_num(log_q, nan=-np.inf))
