"""What the engine needs from a model: the :class:`Target` protocol and slot pseudo-priors.

A target is batched: every method takes arrays with a leading batch axis B (temperatures × chains)
and returns one value per batch element. The likelihood and the prior come back separately, so
that parallel tempering can temper the likelihood only. All parameters live in unconstrained
space; the prior includes the Jacobians of the transforms (as PyMC's ``model.compile_logp()``
does with its default ``jacobian=True``), so a PyMC prior plugs in as the ``log_prior`` half.

``log_prior`` is log p(γ, θ_γ, g): the model-indicator prior, the prior of the *active* slots'
parameters given γ, and the prior of the globals. Inactive slots must not contribute; their
parameters are governed by the pseudo-prior, which the engine owns (see :mod:`tdmcmc.state`).

The pseudo-prior q_j of each slot is both the distribution of inactive slots (Gibbs refresh) and
the birth proposal. :class:`GaussianPseudoPrior` is a diagonal Gaussian in unconstrained space;
when the prior of a slot is itself Gaussian in unconstrained space it *is* the prior, which is the
default birth proposal; the sampler may refit it to the active-slot draws during warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from tdmcmc.randomness import RandomSource
from tdmcmc.state import SlotLayout, State

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


@runtime_checkable
class Target(Protocol):
    """A batched trans-dimensional log density (see module docstring)."""

    layout: SlotLayout

    def log_density(
        self, active: np.ndarray, params: np.ndarray, globals_: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(log L, log p(γ, θ_γ, g)) for a batch, each of shape (B,); -inf outside the support."""
        ...

    def initial_point(self, src: RandomSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A starting (active (B,S), params (B,S,D), globals (B,G)) with finite log density."""
        ...

    def pseudo_prior(self) -> PseudoPrior:
        """The default pseudo-prior / birth proposal of the slots."""
        ...

    def named_variables(
        self, active: np.ndarray, params: np.ndarray, globals_: np.ndarray
    ) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """Output variables in the model's own (constrained) units, per batch element.

        Maps a name to (dims after the batch axis, array of shape (B, ...)). Variables whose first
        dim is the layout's slot dim are set to NaN by the writer where the slot is inactive.
        """
        ...


@runtime_checkable
class DifferentiableTarget(Target, Protocol):
    """A target with gradients for MALA: derivatives w.r.t. the unconstrained parameters."""

    def grad(
        self, active: np.ndarray, params: np.ndarray, globals_: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(∂logL/∂params (B,S,D), ∂logL/∂globals (B,G), ∂logp/∂params, ∂logp/∂globals).

        Entries of inactive slots are ignored by the engine.
        """
        ...


class PseudoPrior(Protocol):
    """Distribution q_j of the parameters of each slot while it is inactive."""

    def sample(self, src: RandomSource) -> np.ndarray:
        """Draw parameters for every slot, shape (B, S, D); unused entries are 0."""
        ...

    def sample_slot(self, src: RandomSource, slot: np.ndarray) -> np.ndarray:
        """Draw parameters of one slot per batch element (``slot`` (B,)), shape (B, D)."""
        ...

    def logpdf(self, params: np.ndarray) -> np.ndarray:
        """Per-slot log density, shape (B, S)."""
        ...


@dataclass
class GaussianPseudoPrior:
    """Independent N(mean, std²) on each used parameter entry of each slot (unconstrained space).

    Attributes: ``mean`` and ``std`` of shape (S, D); ``mask`` (S, D) of used entries.
    """

    mean: np.ndarray
    std: np.ndarray
    mask: np.ndarray

    def sample(self, src: RandomSource) -> np.ndarray:
        z = src.normal(self.mean.shape)
        return np.where(self.mask, self.mean + self.std * z, 0.0)

    def sample_slot(self, src: RandomSource, slot: np.ndarray) -> np.ndarray:
        z = src.normal(self.mean.shape[1:])
        return np.where(self.mask[slot], self.mean[slot] + self.std[slot] * z, 0.0)

    def logpdf(self, params: np.ndarray) -> np.ndarray:
        z = (params - self.mean) / self.std
        dens = -0.5 * z * z - np.log(self.std) - _LOG_SQRT_2PI
        return np.where(self.mask, dens, 0.0).sum(axis=-1)


def is_differentiable(target: Target) -> bool:
    """Whether MALA can run on ``target`` (it, or the target a :class:`PriorOnly` wraps, has ``grad``)."""
    inner = target.inner if isinstance(target, PriorOnly) else target
    return isinstance(inner, DifferentiableTarget)


def evaluate(
    target: Target,
    pseudo: PseudoPrior,
    active: np.ndarray,
    params: np.ndarray,
    globals_: np.ndarray,
) -> State:
    """Build a :class:`State` with all cached log densities for the given point."""
    log_lik, log_prior = target.log_density(active, params, globals_)
    log_pseudo = np.where(active, 0.0, pseudo.logpdf(params)).sum(axis=-1)
    log_lik = np.asarray(log_lik, dtype=float)
    log_prior = np.asarray(log_prior, dtype=float)
    # A point outside the prior support has no likelihood; keep β·logL finite-or--inf, never NaN.
    log_lik = np.where(np.isfinite(log_prior), log_lik, -np.inf)
    return State(active, params, globals_, log_lik, log_prior, log_pseudo)


class PriorOnly:
    """Wraps a target with its likelihood switched off (log L ≡ 0): the chain samples the prior.

    A target with an expensive likelihood may offer ``log_prior(active, params, globals_)`` (B,), used
    here instead of ``log_density`` so that the likelihood is not computed at all."""

    def __init__(self, target: Target) -> None:
        self.inner = target
        self.layout = target.layout

    def log_density(self, active, params, globals_):
        if hasattr(self.inner, "log_prior"):
            log_prior = np.asarray(self.inner.log_prior(active, params, globals_), dtype=float)
        else:
            _, log_prior = self.inner.log_density(active, params, globals_)
        return np.zeros_like(log_prior), log_prior

    def grad(self, active, params, globals_):
        _, _, gp, gg = self.inner.grad(active, params, globals_)
        return np.zeros_like(gp), np.zeros_like(gg), gp, gg

    def initial_point(self, src):
        return self.inner.initial_point(src)

    def pseudo_prior(self):
        return self.inner.pseudo_prior()

    def named_variables(self, active, params, globals_):
        return self.inner.named_variables(active, params, globals_)
