"""Common machinery of all moves: the context they run in and the Metropolis–Hastings step.

Every Metropolis–Hastings move is written as ``propose(state, ctx, src) -> Proposal``: a
proposed product-space point (with its log densities evaluated) and

    log_q_ratio = log q(y → x) − log q(x → y)

which includes the probabilities of the discrete choices (which slot, which pair), the densities
of any continuous variates drawn, and log |Jacobian| of the deterministic map. The acceptance
probability is then always the same expression,

    α = min(1, π̃(y) / π̃(x) · exp(log_q_ratio)),

with π̃ the tempered product-space target of :mod:`tdmcmc.state` (pseudo-prior terms of inactive
slots included), so a move only has to get its proposal ratio right; each move's docstring states
the ratio it uses. The random numbers come from a :class:`~tdmcmc.randomness.RandomSource`, which
lets the tests enumerate a move's exact transition matrix on the code path the sampler runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tdmcmc.randomness import RandomSource
from tdmcmc.state import SlotLayout, State
from tdmcmc.target import PseudoPrior, Target, evaluate


@dataclass
class MoveContext:
    """What a move may use besides the state.

    Attributes:
        target: the model's log density.
        pseudo: the slots' pseudo-prior (inactive-slot distribution and birth proposal).
        beta: inverse temperature of each batch element, shape (B,).
        n_chains: chains per temperature level (batch element b is level b // n_chains).
        tuning: true during warm-up; moves adapt only then.
        reference: the temperature level with T = 1 (the recorded one).
    """

    target: Target
    pseudo: PseudoPrior
    beta: np.ndarray
    n_chains: int
    tuning: bool = False
    reference: int = 0

    @property
    def layout(self) -> SlotLayout:
        return self.target.layout

    @property
    def n_levels(self) -> int:
        return len(self.beta) // self.n_chains

    def evaluate(self, active: np.ndarray, params: np.ndarray, globals_: np.ndarray) -> State:
        return evaluate(self.target, self.pseudo, active, params, globals_)


@dataclass
class Proposal:
    """A proposed point and its proposal ratio log q(y→x) − log q(x→y) (−inf: no proposal)."""

    state: State
    log_q_ratio: np.ndarray


@dataclass
class StepInfo:
    """Outcome of one move for every batch element.

    ``attempted`` is false where the move had nothing to do (e.g. a death with no active slot);
    ``accept_prob`` is min(1, α) (NaN where not attempted), used for adaptation and reporting.
    """

    accepted: np.ndarray
    accept_prob: np.ndarray
    attempted: np.ndarray


class Move(Protocol):
    """One transition kernel that leaves π̃ invariant."""

    name: str

    def step(self, state: State, ctx: MoveContext, src: RandomSource) -> tuple[State, StepInfo]: ...

    def adapt(self, state: State, info: StepInfo, ctx: MoveContext) -> None:
        """Update tuning parameters from one step; called only during warm-up."""
        ...


def log_acceptance(current: State, proposal: Proposal, beta: np.ndarray) -> np.ndarray:
    """log α before the min(1, ·): Δ log π̃ + log_q_ratio; −inf where impossible, never NaN."""
    new = proposal.state.log_target(beta)
    log_alpha = new - current.log_target(beta) + proposal.log_q_ratio
    impossible = ~np.isfinite(proposal.log_q_ratio) | (new == -np.inf) | np.isnan(log_alpha)
    return np.where(impossible, -np.inf, log_alpha)


def metropolis(
    current: State, proposal: Proposal, ctx: MoveContext, src: RandomSource
) -> tuple[State, StepInfo]:
    """Accept each proposal with probability min(1, α); see the module docstring."""
    log_alpha = log_acceptance(current, proposal, ctx.beta)
    accepted = src.accept(log_alpha)
    attempted = np.isfinite(proposal.log_q_ratio)
    prob = np.where(attempted, np.exp(np.minimum(log_alpha, 0.0)), np.nan)
    return current.where(accepted, proposal.state), StepInfo(accepted, prob, attempted)


class MetropolisMove:
    """Base for moves defined by a proposal: ``step`` = propose + :func:`metropolis`."""

    name = "move"

    def propose(self, state: State, ctx: MoveContext, src: RandomSource) -> Proposal:
        raise NotImplementedError

    def step(self, state: State, ctx: MoveContext, src: RandomSource) -> tuple[State, StepInfo]:
        return metropolis(state, self.propose(state, ctx, src), ctx, src)

    def adapt(self, state: State, info: StepInfo, ctx: MoveContext) -> None:
        """Moves without tuning parameters ignore adaptation."""


def nth_true(mask: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Column index of the ``n``-th (0-based) true entry of each row of ``mask`` (B, S).

    Rows with fewer than n+1 true entries return 0; callers mask those rows out.
    """
    counts = np.cumsum(mask, axis=1)
    hit = mask & (counts == (np.asarray(n)[:, None] + 1))
    return np.argmax(hit, axis=1)
