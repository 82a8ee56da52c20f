"""Warm-up adaptation primitives. They are only ever updated while ``MoveContext.tuning`` is true;
after warm-up every kernel is fixed, so the post-warm-up chain is a time-homogeneous Markov chain
with the target as its stationary distribution.

- :class:`StepSizeAdapter`: Robbins–Monro on a log step size per temperature level,
  log s ← log s + t^(−0.6) · (mean acceptance probability − target) (Andrieu & Thoms 2008).
- :class:`MaskedMoments`: running mean/variance (Welford) per temperature level of array entries,
  counting an entry only where a mask is true (active slots), for per-coordinate proposal scales
  and for refitting the pseudo-prior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def per_level(values: np.ndarray, n_chains: int) -> np.ndarray:
    """Reshape a batch array (B, ...) to (levels, chains, ...)."""
    return values.reshape((values.shape[0] // n_chains, n_chains) + values.shape[1:])


def to_batch(level_values: np.ndarray, n_chains: int) -> np.ndarray:
    """Broadcast per-level values (levels, ...) to the batch (B, ...)."""
    return np.repeat(level_values, n_chains, axis=0)


@dataclass
class StepSizeAdapter:
    """Robbins–Monro adaptation of a log step size per level towards a target acceptance."""

    log_step: np.ndarray
    target_accept: float
    n_updates: int = 0

    def update(self, accept_prob: np.ndarray, n_chains: int) -> None:
        """``accept_prob`` (B,) with NaN where the move was not attempted."""
        probs = per_level(accept_prob, n_chains)
        seen = np.isfinite(probs).any(axis=1)
        mean = np.where(seen, np.nansum(probs, axis=1) / np.maximum(np.isfinite(probs).sum(1), 1), 0.0)
        self.n_updates += 1
        gain = self.n_updates**-0.6
        self.log_step = self.log_step + np.where(seen, gain * (mean - self.target_accept), 0.0)

    def step(self, n_chains: int) -> np.ndarray:
        return to_batch(np.exp(self.log_step), n_chains)


@dataclass
class MaskedMoments:
    """Per-level running moments of entries of shape ``entry_shape``, counted where masked."""

    n_levels: int
    entry_shape: tuple[int, ...]
    count: np.ndarray = field(init=False)
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        shape = (self.n_levels,) + self.entry_shape
        self.count = np.zeros(shape)
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)

    def update(self, values: np.ndarray, mask: np.ndarray, n_chains: int) -> None:
        """Add the batch ``values`` (B, *entry_shape) where ``mask`` is true, one chain at a time."""
        v = per_level(values, n_chains)
        m = per_level(np.broadcast_to(mask, values.shape), n_chains)
        for c in range(n_chains):
            w = m[:, c]
            self.count = self.count + w
            delta = np.where(w, v[:, c] - self.mean, 0.0)
            self.mean = self.mean + np.where(w, delta / np.maximum(self.count, 1), 0.0)
            self.m2 = self.m2 + np.where(w, delta * (v[:, c] - self.mean), 0.0)

    def std(self, fallback: np.ndarray, min_count: int = 20) -> np.ndarray:
        """Standard deviation per level and entry; ``fallback`` (broadcastable) where few counts."""
        var = self.m2 / np.maximum(self.count - 1, 1)
        ok = self.count >= min_count
        return np.where(ok, np.sqrt(np.maximum(var, 1e-300)), fallback)


@dataclass
class PseudoPriorFit:
    """Refits a Gaussian pseudo-prior (the birth proposal) to the T = 1 chains' active slots.

    Moments are gathered during warm-up; :meth:`fitted` returns mean and ``inflation`` × std of
    each slot's parameters where the slot was active in at least ``min_count`` draws, and the
    current values elsewhere. Heavier-than-posterior proposals keep birth ratios bounded.
    """

    moments: MaskedMoments
    inflation: float = 1.2
    min_count: int = 50

    def update(self, params: np.ndarray, mask: np.ndarray, n_chains: int) -> None:
        """Add one draw of the T = 1 chains (arrays of those n_chains batch elements)."""
        self.moments.update(params, mask, n_chains)

    def fitted(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = self.moments.count[0] >= self.min_count
        new_std = self.inflation * self.moments.std(std, self.min_count)[0]
        return np.where(ok, self.moments.mean[0], mean), np.where(ok, new_std, std)
