"""PyMC priors for the engine: a ``pm.Model``'s log density batched over chains, with masks.

The engine evaluates a whole batch (temperatures × chains) at once, and in a trans-dimensional
model only the *active* slots' prior terms count. :class:`BatchedModelLogp` takes the model's
elementwise log-density terms (``model.logp(sum=False)``: one term per value variable, in
unconstrained space with the transform Jacobians, as ``compile_logp`` uses them), vectorises the
graph over a leading batch axis with ``pytensor.graph.replace.vectorize_graph``, multiplies each
term by a mask input and sums per batch element. Gradients come from ``pytensor.grad`` of the
batch sum, which gives each element's gradient because elements do not interact. One compiled
function returns the log density and all gradients.

A target then builds ``log_prior`` (and its part of ``grad``) from it, with masks that switch off
the terms of inactive slots.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.graph.replace import vectorize_graph


class BatchedModelLogp:
    """Masked, batched log density and gradient of a ``pm.Model`` (see module docstring).

    Attributes:
        value_names: names of the model's value variables (unconstrained, e.g. ``m_interval__``).
        value_shapes: shape of one element's value per variable.
        term_shapes: shape of each variable's elementwise log-density term (the mask shape).
    """

    def __init__(self, model: pm.Model, jacobian: bool = True, mode: str | None = None) -> None:
        value_vars = list(model.value_vars)
        terms = model.logp(vars=model.free_RVs, jacobian=jacobian, sum=False)
        self.value_names = [v.name for v in value_vars]
        self.value_shapes = {v.name: tuple(int(s) for s in v.type.shape) for v in value_vars}
        self.term_shapes = {v.name: tuple(int(s) for s in t.type.shape) for v, t in zip(value_vars, terms)}
        batched = [pt.tensor(f"{v.name}_batch", shape=(None,) + v.type.shape, dtype=v.dtype) for v in value_vars]
        masks = [pt.tensor(f"{v.name}_mask", shape=(None,) + t.type.shape, dtype="float64") for v, t in zip(value_vars, terms)]
        batched_terms = vectorize_graph(terms, dict(zip(value_vars, batched)))
        total = sum(
            pt.sum((m * t).reshape((t.shape[0], -1)), axis=1) for m, t in zip(masks, batched_terms)
        )
        grads = pytensor.grad(total.sum(), batched)
        self._fn = pytensor.function(batched + masks, [total, *grads], mode=mode)

    def __call__(
        self, values: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(log density (B,), {name: gradient (B, *value_shape)}); masks default to all ones."""
        masks = masks or {}
        batch = len(np.asarray(values[self.value_names[0]]))
        args = [np.asarray(values[n], dtype=float) for n in self.value_names]
        args += [
            np.broadcast_to(np.asarray(masks.get(n, 1.0), dtype=float), (batch,) + self.term_shapes[n])
            for n in self.value_names
        ]
        total, *grads = self._fn(*args)
        return np.asarray(total), dict(zip(self.value_names, grads))
