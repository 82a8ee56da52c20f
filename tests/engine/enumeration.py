"""Exact transition matrices of engine moves on small discrete spaces.

:class:`EnumeratingRandom` implements the engine's ``RandomSource`` protocol by enumerating every
outcome: each variate is a branch point (integers uniform, categorical with its weights, normals
uniform on a small symmetric support, accept/reject with weights α and 1 − α). Re-running a move
once per path (depth-first, by replaying the choices made so far) lists every final state with
its probability, so the move's whole kernel is obtained on the very code path the sampler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np


class EnumeratingRandom:
    """A ``RandomSource`` whose draws walk through all outcomes (see module docstring)."""

    def __init__(self, batch_size: int, normal_support: tuple[float, ...] = (-1.0, 1.0)) -> None:
        self.batch_size = batch_size
        self.support = np.asarray(normal_support, dtype=float)
        self.path: list[list] = []  # [chosen position, values, weights]
        self.pos = 0
        self.prob = 1.0

    def _branch(self, values: list, weights: list[float]):
        if self.pos == len(self.path):
            keep = [(v, w) for v, w in zip(values, weights) if w > 0]
            self.path.append([0, [v for v, _ in keep], [w for _, w in keep]])
        choice, vals, ws = self.path[self.pos]
        self.pos += 1
        self.prob *= ws[choice]
        return vals[choice]

    def restart(self) -> None:
        self.pos, self.prob = 0, 1.0

    def next_path(self) -> bool:
        """Move to the next unexplored path; false when all are done."""
        while self.path:
            entry = self.path[-1]
            if entry[0] + 1 < len(entry[1]):
                entry[0] += 1
                return True
            self.path.pop()
        return False

    def _fill(self, shape, draw):
        out = np.empty((self.batch_size,) + shape, dtype=object)
        for idx in np.ndindex(out.shape):
            out[idx] = draw(idx)
        return out

    def normal(self, shape=()):
        n = len(self.support)
        return self._fill(shape, lambda idx: self._branch(list(self.support), [1 / n] * n)).astype(float)

    def normal_logpdf(self, z):
        inside = np.isclose(np.asarray(z, float)[..., None], self.support).any(axis=-1)
        return np.where(inside, -np.log(len(self.support)), -np.inf)

    def integers(self, high, shape=()):
        highs = np.broadcast_to(np.asarray(high), (self.batch_size,))
        return self._fill(
            shape, lambda idx: self._branch(list(range(highs[idx[0]])), [1 / highs[idx[0]]] * highs[idx[0]])
        ).astype(np.int64)

    def categorical(self, probs, shape=()):
        p = list(np.asarray(probs, float))
        return self._fill(shape, lambda idx: self._branch(list(range(len(p))), p)).astype(np.int64)

    def accept(self, log_alpha):
        alpha = np.exp(np.minimum(np.asarray(log_alpha, float), 0.0))
        return np.array([self._branch([True, False], [a, 1 - a]) for a in alpha], dtype=bool)


def outcomes(run: Callable[[EnumeratingRandom], object], batch_size: int):
    """All (probability, result) pairs of ``run(src)``; probabilities sum to one."""
    src = EnumeratingRandom(batch_size)
    while True:
        src.restart()
        result = run(src)
        yield src.prob, result
        if not src.next_path():
            return


def transition_matrix(states: list, step: Callable, key: Callable[[object], Hashable], batch_size: int):
    """P[a, b] = probability that ``step(states[a], src)`` ends in ``states[b]`` (by ``key``)."""
    index = {key(s): i for i, s in enumerate(states)}
    P = np.zeros((len(states), len(states)))
    for a, s in enumerate(states):
        for prob, result in outcomes(lambda src: step(s, src), batch_size):
            P[a, index[key(result)]] += prob
    return P
