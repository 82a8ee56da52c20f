"""Sources of randomness for moves.

Moves never touch a ``numpy.random.Generator`` directly: they ask a :class:`RandomSource` for the
variates they need (integers, normals, categorical draws, accept/reject decisions) and for the
log-density of their normal variates. Two sources implement the protocol:

- :class:`ChainRandom`: the sampler's source, one ``Generator`` per chain spawned from one
  ``SeedSequence``; the chain's generator draws the variates of all its temperature levels, so a
  run is reproducible bit for bit from its seed and chains are independent streams.
- ``tests/engine/enumeration.py`` enumerates every outcome with its probability (discrete normals,
  branching accept/reject), which turns any move into an exact transition matrix on a small
  discrete space, on the same code path the sampler runs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


class RandomSource(Protocol):
    """Variates with a leading batch axis of length B (temperatures × chains)."""

    def normal(self, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Standard normal variates, shape (B, *shape)."""
        ...

    def normal_logpdf(self, z: np.ndarray) -> np.ndarray:
        """Elementwise log density of :meth:`normal`'s distribution at ``z``."""
        ...

    def integers(self, high: np.ndarray | int, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Uniform integers in [0, high), ``high`` scalar or (B,) (must be >= 1); shape (B, *shape)."""
        ...

    def categorical(self, probs: np.ndarray, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Indices drawn with probabilities ``probs`` (K,), shape (B, *shape)."""
        ...

    def accept(self, log_alpha: np.ndarray) -> np.ndarray:
        """Metropolis decisions: true with probability min(1, exp(log_alpha)), shape (B,)."""
        ...


class ChainRandom:
    """One ``numpy.random.Generator`` per chain, spawned from ``SeedSequence(seed)``.

    Every method draws, chain by chain, a block of shape (T, *shape) from that chain's generator
    and interleaves the blocks into the temperature-major batch (element ``t·C + c``).
    """

    def __init__(self, seed: int, n_chains: int, n_temps: int = 1) -> None:
        children = np.random.SeedSequence(seed).spawn(n_chains)
        self.generators = [np.random.Generator(np.random.PCG64(s)) for s in children]
        self.n_temps = n_temps

    @property
    def n_chains(self) -> int:
        return len(self.generators)

    def _batch(self, blocks: list[np.ndarray]) -> np.ndarray:
        stacked = np.stack(blocks, axis=1)  # (T, C, ...)
        return stacked.reshape((self.n_temps * self.n_chains,) + stacked.shape[2:])

    def normal(self, shape: tuple[int, ...] = ()) -> np.ndarray:
        return self._batch([g.standard_normal((self.n_temps,) + shape) for g in self.generators])

    def normal_logpdf(self, z: np.ndarray) -> np.ndarray:
        return -0.5 * np.square(z) - _LOG_SQRT_2PI

    def integers(self, high: np.ndarray | int, shape: tuple[int, ...] = ()) -> np.ndarray:
        """floor(u · high) with u uniform on [0, 1): each value has probability 1/high up to a
        relative error of high · 2^-53 (u has 53 random bits), and it is several times faster than
        ``Generator.integers`` with a per-element ``high``."""
        u = self.uniform(shape)
        high = np.asarray(high, dtype=np.int64).reshape((-1,) + (1,) * len(shape))
        return np.minimum((u * high).astype(np.int64), high - 1)

    def categorical(self, probs: np.ndarray, shape: tuple[int, ...] = ()) -> np.ndarray:
        p = np.asarray(probs, dtype=float)
        return self._batch([g.choice(len(p), size=(self.n_temps,) + shape, p=p) for g in self.generators])

    def uniform(self, shape: tuple[int, ...] = ()) -> np.ndarray:
        return self._batch([g.random((self.n_temps,) + shape) for g in self.generators])

    def accept(self, log_alpha: np.ndarray) -> np.ndarray:
        u = self.uniform()
        return np.log(u) < log_alpha  # NaN compares false: rejected

    def get_state(self) -> list[dict]:
        """Bit-generator states, for checkpoints."""
        return [g.bit_generator.state for g in self.generators]

    def set_state(self, states: list[dict]) -> None:
        for g, s in zip(self.generators, states, strict=True):
            g.bit_generator.state = s
