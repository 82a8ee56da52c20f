"""PyTensor Op for SModelS map interpolation (:class:`~.interpolation.GridInterpolator`).

``values, inside = interpolate(interp, points, fill_value=0.0)``  (one triangulation, k maps)
    points: float64 tensor (batch, n_coords) in GeV, columns as in the map's ``MapData.layout``.
    values: (batch, k) float64, the interpolated values where SModelS has a value and
    ``fill_value`` where it returns None (outside the hull, or off the plane beyond SModelS' 5 %
    extrapolation estimate). inside: (batch, k) bool, False exactly there.

``values, inside = interpolate_rows(batched, map_rows, points, fill_value=0.0)``  (whole database)
    batched: a :class:`~.interpolation.BatchedInterpolator`; map_rows: int64 vector (n,) of map
    rows of ``DatabaseArrays``; points: float64 (n, c) GeV, row i in the layout of map_rows[i]
    (columns beyond that map's n_coords are ignored). values, inside: (n,). Use this one in the
    likelihood graph: one Op evaluates every (row, chain) query of a step.

Why a fill value and a mask, not NaN: NaN would poison sums and gradients of the whole likelihood
graph (0 * NaN = NaN). Efficiency maps want 0 outside (``fill_value=0.0``, as SModelS'
``getEfficiencyFor``); upper-limit rows must use ``inside`` to drop the row's contribution (SModelS
gives no UL there), e.g. ``pt.switch(inside, signal / values, 0.0)`` with a fill value that keeps
the unused branch finite (``fill_value=1.0``).

Gradient: the interpolant is piecewise linear, so d value / d point is constant inside a simplex:
(y_i - y_d) T_ij summed over the simplex's vertices i (T: scipy's barycentric transform), times
SModelS' rotation V[:, :dim]^T and the derivative of the width rescaling. The Op computes this
Jacobian (batch, k, n_coords) in the same pass as the values (one point location for both) as a
third output, and its pullback contracts it with the cotangent. The Jacobian is zero where the
value is the fill value or clamped to the smallest vertex value; across simplex faces and at the
hull boundary the function is not differentiable and the Jacobian is that of the simplex scipy's
point location returns. Second derivatives are zero (the Jacobian is treated as constant).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply, Variable
from pytensor.graph.op import Op
from pytensor.gradient import DisconnectedType

from tdmcmc.models.protomodel.interpolation import BatchedInterpolator, GridInterpolator


class InterpolateOp(Op):
    """Values, inside mask and Jacobian of one :class:`GridInterpolator` at a batch of points."""

    def __init__(self, interp: GridInterpolator, fill_value: float = 0.0) -> None:
        self.interp = interp
        self.fill_value = float(fill_value)

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and other.interp is self.interp
                and other.fill_value == self.fill_value)

    def __hash__(self) -> int:
        return hash((type(self), id(self.interp), self.fill_value))

    def __str__(self) -> str:
        return f"InterpolateOp(k={self.interp.k}, dim={self.interp.dimensionality}, fill={self.fill_value})"

    def make_node(self, points) -> Apply:
        points = pt.as_tensor_variable(points)
        if points.ndim != 2 or points.dtype != "float64":
            raise TypeError(f"points must be a float64 matrix (batch, {self.interp.n_coords}), got "
                            f"{points.type}")
        k, n = self.interp.k, self.interp.n_coords
        outputs = [pt.tensor(dtype="float64", shape=(None, k)), pt.tensor(dtype="bool", shape=(None, k)),
                   pt.tensor(dtype="float64", shape=(None, k, n))]
        return Apply(self, [points], outputs)

    def perform(self, node, inputs, output_storage) -> None:
        (points,) = inputs
        if points.shape[1] != self.interp.n_coords:
            raise ValueError(f"points have {points.shape[1]} columns, the map has {self.interp.n_coords}")
        ev = self.interp.evaluate(points, jacobian=True)
        output_storage[0][0] = np.where(ev.inside, ev.values, self.fill_value)
        output_storage[1][0] = ev.inside
        output_storage[2][0] = ev.jacobian

    def connection_pattern(self, node) -> list[list[bool]]:
        # The mask is piecewise constant and the Jacobian is treated as constant.
        return [[True, False, False]]

    def pullback(self, inputs: list[Variable], outputs: list[Variable], cotangents: list[Variable]) -> list[Variable]:
        (points,) = inputs
        g = cotangents[0]
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(points)]
        return [pt.sum(g[:, :, None] * outputs[2], axis=1)]


def interpolate(interp: GridInterpolator, points, fill_value: float = 0.0) -> tuple[Variable, Variable]:
    """Symbolic ``(values (batch, k), inside (batch, k))`` of `interp` at points (batch, n_coords) GeV."""
    values, inside, _ = InterpolateOp(interp, fill_value)(points)
    return values, inside


class InterpolateRowsOp(Op):
    """Values, inside mask and Jacobian of many map rows of a :class:`BatchedInterpolator`."""

    def __init__(self, batched: BatchedInterpolator, fill_value: float = 0.0) -> None:
        self.batched = batched
        self.fill_value = float(fill_value)

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and other.batched is self.batched
                and other.fill_value == self.fill_value)

    def __hash__(self) -> int:
        return hash((type(self), id(self.batched), self.fill_value))

    def __str__(self) -> str:
        return f"InterpolateRowsOp(fill={self.fill_value})"

    def make_node(self, map_rows, points) -> Apply:
        map_rows = pt.as_tensor_variable(map_rows)
        points = pt.as_tensor_variable(points)
        if map_rows.ndim != 1 or not map_rows.dtype.startswith("int"):
            raise TypeError(f"map_rows must be an integer vector, got {map_rows.type}")
        if points.ndim != 2 or points.dtype != "float64":
            raise TypeError(f"points must be a float64 matrix (n, n_coords), got {points.type}")
        outputs = [pt.tensor(dtype="float64", shape=(None,)), pt.tensor(dtype="bool", shape=(None,)),
                   pt.tensor(dtype="float64", shape=(None, points.type.shape[1]))]
        return Apply(self, [map_rows, points], outputs)

    def perform(self, node, inputs, output_storage) -> None:
        map_rows, points = inputs
        ev = self.batched.evaluate(map_rows, points, jacobian=True)
        output_storage[0][0] = np.where(ev.inside, ev.values, self.fill_value)
        output_storage[1][0] = ev.inside
        jac = np.zeros(points.shape)
        c = min(points.shape[1], ev.jacobian.shape[1])
        jac[:, :c] = ev.jacobian[:, :c]
        output_storage[2][0] = jac

    def connection_pattern(self, node) -> list[list[bool]]:
        return [[False, False, False], [True, False, False]]

    def pullback(self, inputs: list[Variable], outputs: list[Variable], cotangents: list[Variable]) -> list[Variable]:
        map_rows, points = inputs
        g = cotangents[0]
        rows_grad = DisconnectedType()()
        if isinstance(g.type, DisconnectedType):
            return [rows_grad, pt.zeros_like(points)]
        return [rows_grad, g[:, None] * outputs[2]]


def interpolate_rows(batched: BatchedInterpolator, map_rows, points,
                     fill_value: float = 0.0) -> tuple[Variable, Variable]:
    """Symbolic ``(values (n,), inside (n,))`` of map rows `map_rows` (n,) at points (n, c) GeV."""
    values, inside, _ = InterpolateRowsOp(batched, fill_value)(map_rows, points)
    return values, inside
