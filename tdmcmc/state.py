"""Product-space state of a trans-dimensional sampler, batched over temperatures and chains.

Layout (after Eryn's ``coords`` + ``inds``): every replica carries an indicator ``active[slot]``
and a parameter vector for *every* slot, active or not, in unconstrained space. Inactive slots hold
draws from their pseudo-prior (Carlin & Chib 1995), so the state has a fixed shape and the joint
product-space target is

    log π̃(γ, θ, g) = β·log L(θ_γ, g) + log p(γ, θ_γ, g) + Σ_{j inactive} log q_j(θ_j),

whose marginal over (γ, θ_γ, g) is the tempered RJMCMC posterior. ``g`` are global parameters that
are always present (e.g. a signal strength). Slots may have different parameter dimensions: the
parameter array has the maximal dimension and ``SlotLayout.param_mask`` says which entries are used.

Batch order: arrays have a leading batch axis of length ``T·C`` (temperature-major: element
``t·C + c`` is temperature level ``t`` of chain ``c``), so the target sees one flat batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class SlotLayout:
    """Static description of the slots of a model space.

    Attributes:
        slot_names: one name per slot (e.g. particle names, or ``x0 … x9``).
        param_names: names of the parameter entries ``0 … max_dim-1`` (unconstrained space).
        slot_dims: number of used parameter entries per slot (entries ``< slot_dims[j]``).
        groups: group id per slot; slots with the same id ``>= 0`` are exchangeable (split/merge,
            identity swap); ``-1`` means the slot belongs to no group.
        global_names: names of the always-present global parameters (may be empty).
        slot_dim: name of the slot dimension in the output (``slot``, ``particle``, ...).
    """

    slot_names: tuple[str, ...]
    param_names: tuple[str, ...]
    slot_dims: tuple[int, ...] | None = None
    groups: tuple[int, ...] | None = None
    global_names: tuple[str, ...] = ()
    slot_dim: str = "slot"
    param_mask: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n, d = len(self.slot_names), len(self.param_names)
        dims = self.slot_dims if self.slot_dims is not None else (d,) * n
        groups = self.groups if self.groups is not None else (-1,) * n
        if len(dims) != n or len(groups) != n:
            raise ValueError("slot_dims and groups need one entry per slot")
        if any(k < 0 or k > d for k in dims):
            raise ValueError(f"slot_dims must lie in [0, {d}]")
        object.__setattr__(self, "slot_dims", tuple(int(k) for k in dims))
        object.__setattr__(self, "groups", tuple(int(g) for g in groups))
        object.__setattr__(self, "param_mask", np.arange(d)[None, :] < np.asarray(dims)[:, None])

    @property
    def n_slots(self) -> int:
        return len(self.slot_names)

    @property
    def max_dim(self) -> int:
        return len(self.param_names)

    @property
    def n_globals(self) -> int:
        return len(self.global_names)

    def group_members(self) -> list[np.ndarray]:
        """Slot indices of each exchangeable group with at least two members."""
        groups = np.asarray(self.groups)
        ids = sorted({g for g in self.groups if g >= 0})
        members = [np.flatnonzero(groups == g) for g in ids]
        return [m for m in members if len(m) >= 2]


@dataclass(frozen=True)
class State:
    """One product-space point per batch element, with its cached log densities.

    Shapes (B = temperatures × chains, S = slots, D = max parameter dim, G = globals):
    ``active`` (B, S) bool, ``params`` (B, S, D), ``globals`` (B, G), ``log_lik``, ``log_prior``,
    ``log_pseudo`` (B,). ``log_prior`` is log p(γ, θ_γ, g) of the target; ``log_pseudo`` is the
    pseudo-prior density of the inactive slots' parameters, Σ_{j inactive} log q_j(θ_j).
    """

    active: np.ndarray
    params: np.ndarray
    globals: np.ndarray
    log_lik: np.ndarray
    log_prior: np.ndarray
    log_pseudo: np.ndarray

    @property
    def batch_size(self) -> int:
        return self.active.shape[0]

    def log_target(self, beta: np.ndarray) -> np.ndarray:
        """Tempered product-space log density β·log L + log p + Σ_inactive log q, shape (B,)."""
        return beta * self.log_lik + self.log_prior + self.log_pseudo

    def where(self, mask: np.ndarray, other: State) -> State:
        """Elementwise choice: ``other`` where ``mask`` (B,) is true, else ``self``."""
        m = np.asarray(mask, dtype=bool)
        return State(
            active=np.where(m[:, None], other.active, self.active),
            params=np.where(m[:, None, None], other.params, self.params),
            globals=np.where(m[:, None], other.globals, self.globals),
            log_lik=np.where(m, other.log_lik, self.log_lik),
            log_prior=np.where(m, other.log_prior, self.log_prior),
            log_pseudo=np.where(m, other.log_pseudo, self.log_pseudo),
        )

    def take(self, index: np.ndarray) -> State:
        """Reorder batch elements (used by replica exchange)."""
        return State(*(getattr(self, f)[index] for f in _FIELDS))

    def copy(self) -> State:
        return replace(self, **{f: getattr(self, f).copy() for f in _FIELDS})


_FIELDS = ("active", "params", "globals", "log_lik", "log_prior", "log_pseudo")
