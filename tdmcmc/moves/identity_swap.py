"""Identity swap inside an exchangeable group (e.g. a light-flavour squark becoming another).

Choose a group uniformly, then an ordered pair (i, j) of distinct members uniformly, and exchange
everything the two slots hold: indicators and parameters. The proposal is an involution chosen
with the same probability from both ends, so

    α = min(1, π̃(y)/π̃(x)),   log_q_ratio = 0,

where π̃ includes the pseudo-prior terms (they matter when q_i ≠ q_j).
"""

from __future__ import annotations

import numpy as np

from tdmcmc.moves.base import MetropolisMove, MoveContext, Proposal
from tdmcmc.moves.groups import GroupTable
from tdmcmc.randomness import RandomSource
from tdmcmc.state import State


class IdentitySwap(MetropolisMove):
    """Swap the contents of two slots of one group."""

    name = "identity_swap"

    def propose(self, state: State, ctx: MoveContext, src: RandomSource) -> Proposal:
        table = GroupTable(ctx.layout)
        members, valid = table.choose(src)
        size = valid.sum(axis=1)
        a = src.integers(size)
        b = src.integers(size - 1)
        b = b + (b >= a)
        rows = np.arange(state.batch_size)
        i, j = members[rows, a], members[rows, b]
        active, params = state.active.copy(), state.params.copy()
        active[rows, i], active[rows, j] = state.active[rows, j], state.active[rows, i]
        params[rows, i], params[rows, j] = state.params[rows, j], state.params[rows, i]
        proposed = ctx.evaluate(active, params, state.globals)
        return Proposal(proposed, np.zeros(state.batch_size))
