"""Per-row column gathers and scatters for the likelihood graphs, as C Ops.

The graphs evaluate the likelihood on each state's *slots*, a few result columns per row
(:class:`~.target.ResultInputs`): ``y[b, s] = x[b, slots[b, s]]`` and back. PyTensor's advanced
indexing Ops run in Python in the C virtual machine (8–10 µs a call for one model, ~40 µs for 64; a
graph and its gradient need 9 of them); these run in C inside the VM (< 1 µs), with the same
values: a gather copies, a scatter writes (``set``: the last slot of a column wins, as numpy's
assignment) or adds in slot order (``inc``: as ``np.add.at`` into zeros). Indices must lie in
[-n_columns, n_columns) (negative ones count from the end, as numpy's); others raise IndexError.
Fields of one row and scattered values of one row or column broadcast, as in numpy's indexing
(PyTensor's rewrites may hand an Op a cotangent in that unbroadcast form).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

_VERSION = (2,)


def _index_check(column: str, n: str, fail: str) -> str:
    """C: wrap a negative `column` as numpy does, IndexError outside [0, n)."""
    return f"""
        if ({column} < 0) {column} += {n};
        if ({column} < 0 || {column} >= {n}) {{
            PyErr_Format(PyExc_IndexError, "slot index out of bounds for %lld columns", (long long) {n});
            {fail}
        }}"""


def _output(out: str, rows: str, cols: str, fail: str, zero: bool) -> str:
    """C: (re)allocate `out` as a C-contiguous float64 (rows, cols) matrix, zero-filled if `zero`."""
    fill = f"memset(PyArray_DATA({out}), 0, PyArray_NBYTES({out}));" if zero else ""
    return f"""
        if (!({out} && PyArray_NDIM({out}) == 2 && PyArray_IS_C_CONTIGUOUS({out})
              && PyArray_TYPE({out}) == NPY_FLOAT64
              && PyArray_DIMS({out})[0] == {rows} && PyArray_DIMS({out})[1] == {cols})) {{
            npy_intp dims[2] = {{{rows}, {cols}}};
            Py_XDECREF({out});
            {out} = (PyArrayObject*) PyArray_EMPTY(2, dims, NPY_FLOAT64, 0);
            if (!{out}) {{ {fail} }}
        }}
        {fill}"""


class SlotGather(COp):
    """``SlotGather()(slots, x_1, ..., x_k)`` -> (y_1, ..., y_k), ``y_f[b, s] = x_f[b, slots[b, s]]``:
    `slots` (B, S) int64, each x_f (B or 1, N_f) float64, each y_f (B, S). The gradient of x_f is the
    ``inc`` scatter of y_f's."""

    __props__ = ()

    def make_node(self, slots, *fields):
        slots = pt.as_tensor_variable(slots)
        fields = [pt.as_tensor_variable(x) for x in fields]
        if slots.type.ndim != 2 or slots.type.dtype != "int64":
            raise TypeError(f"slots: expected an int64 matrix, got {slots.type}")
        for x in fields:
            if x.type.ndim != 2 or x.type.dtype != "float64":
                raise TypeError(f"fields: expected float64 matrices, got {x.type}")
        return Apply(self, [slots, *fields], [pt.matrix(dtype="float64") for _ in fields])

    def perform(self, node, inputs, output_storage):
        slots, *fields = inputs
        for x, out in zip(fields, output_storage):
            out[0] = np.take_along_axis(np.broadcast_to(x, (len(slots), x.shape[1])), slots, axis=1)

    def infer_shape(self, node, shapes):
        return [shapes[0]] * (len(node.inputs) - 1)

    def connection_pattern(self, node):
        k = len(node.outputs)
        return [[False] * k] + [[f == i for i in range(k)] for f in range(k)]

    def pullback(self, inputs, outputs, cotangents):
        slots, *fields = inputs
        return [disconnected_type()] + [
            disconnected_type() if isinstance(g.type, DisconnectedType)
            else SlotScatter("inc")(slots, g, x.shape[1]) for x, g in zip(fields, cotangents)]

    def c_code_cache_version(self):
        return _VERSION

    def c_code(self, node, name, inames, onames, sub):
        slots, *fields = inames
        fail = sub["fail"]
        body = []
        for x, y in zip(fields, onames):
            body.append(f"""
        {{
            npy_intp n = PyArray_DIMS({x})[1];
            if (PyArray_DIMS({x})[0] != n_b && PyArray_DIMS({x})[0] != 1) {{
                PyErr_SetString(PyExc_ValueError, "SlotGather: fields and slots differ in rows");
                {fail}
            }}
            {_output(y, "n_b", "n_s", fail, zero=False)}
            const char *xd = PyArray_BYTES({x});
            npy_intp x0 = PyArray_DIMS({x})[0] == 1 ? 0 : PyArray_STRIDES({x})[0], x1 = PyArray_STRIDES({x})[1];
            double *yd = (double*) PyArray_DATA({y});
            for (npy_intp b = 0; b < n_b; ++b) {{
                for (npy_intp s = 0; s < n_s; ++s) {{
                    npy_int64 c = *(const npy_int64*) (sd + b * s0 + s * s1);
                    {_index_check("c", "n", fail)}
                    yd[b * n_s + s] = *(const double*) (xd + b * x0 + c * x1);
                }}
            }}
        }}""")
        return f"""{{
        npy_intp n_b = PyArray_DIMS({slots})[0], n_s = PyArray_DIMS({slots})[1];
        const char *sd = PyArray_BYTES({slots});
        npy_intp s0 = PyArray_STRIDES({slots})[0], s1 = PyArray_STRIDES({slots})[1];
        {"".join(body)}
        }}"""


class SlotScatter(COp):
    """``SlotScatter(mode)(slots, y, n)`` -> x (B, n): zeros with ``x[b, slots[b, s]] = y[b, s]``
    (`mode` ``set``: in slot order, the last wins) or ``+= y[b, s]`` (``inc``: summed in slot
    order); y (B or 1, S or 1) broadcasts. The gradient of y is the gather of x's (for ``set``
    too, as PyTensor's ``set_subtensor``: a slot overwritten by a later one of its row still gets it)."""

    __props__ = ("mode",)

    def __init__(self, mode: str):
        if mode not in ("set", "inc"):
            raise ValueError(f"mode: expected 'set' or 'inc', got {mode!r}")
        self.mode = mode

    def make_node(self, slots, values, n):
        slots, values = pt.as_tensor_variable(slots), pt.as_tensor_variable(values)
        n = pt.as_tensor_variable(n).astype("int64")
        if slots.type.ndim != 2 or slots.type.dtype != "int64":
            raise TypeError(f"slots: expected an int64 matrix, got {slots.type}")
        if values.type.ndim != 2 or values.type.dtype != "float64":
            raise TypeError(f"values: expected a float64 matrix, got {values.type}")
        if n.type.ndim != 0:
            raise TypeError(f"n: expected a scalar, got {n.type}")
        return Apply(self, [slots, values, n], [pt.matrix(dtype="float64")])

    def perform(self, node, inputs, output_storage):
        slots, values, n = inputs
        out = np.zeros((len(slots), int(n)))
        rows = np.broadcast_to(np.arange(len(slots))[:, None], slots.shape)
        values = np.broadcast_to(values, slots.shape)
        if self.mode == "set":
            out[rows, slots] = values
        else:
            np.add.at(out, (rows, slots), values)
        output_storage[0][0] = out

    def infer_shape(self, node, shapes):
        return [(shapes[0][0], node.inputs[2])]

    def connection_pattern(self, node):
        return [[False], [True], [False]]

    def pullback(self, inputs, outputs, cotangents):
        slots, _, _ = inputs
        (g,) = cotangents
        return [disconnected_type(), SlotGather()(slots, g), disconnected_type()]

    def c_code_cache_version(self):
        return _VERSION

    def c_code(self, node, name, inames, onames, sub):
        slots, values, n = inames
        (x,) = onames
        fail = sub["fail"]
        op = "=" if self.mode == "set" else "+="
        return f"""{{
        npy_intp n_b = PyArray_DIMS({slots})[0], n_s = PyArray_DIMS({slots})[1];
        npy_intp n = (npy_intp) *(npy_int64*) PyArray_DATA({n});
        if ((PyArray_DIMS({values})[0] != n_b && PyArray_DIMS({values})[0] != 1)
            || (PyArray_DIMS({values})[1] != n_s && PyArray_DIMS({values})[1] != 1)) {{
            PyErr_SetString(PyExc_ValueError, "SlotScatter: values do not broadcast to the slots' shape");
            {fail}
        }}
        if (n < 0) {{
            PyErr_SetString(PyExc_ValueError, "SlotScatter: negative number of columns");
            {fail}
        }}
        {_output(x, "n_b", "n", fail, zero=True)}
        const char *sd = PyArray_BYTES({slots}), *vd = PyArray_BYTES({values});
        npy_intp s0 = PyArray_STRIDES({slots})[0], s1 = PyArray_STRIDES({slots})[1];
        npy_intp v0 = PyArray_DIMS({values})[0] == 1 ? 0 : PyArray_STRIDES({values})[0];
        npy_intp v1 = PyArray_DIMS({values})[1] == 1 ? 0 : PyArray_STRIDES({values})[1];
        double *xd = (double*) PyArray_DATA({x});
        for (npy_intp b = 0; b < n_b; ++b) {{
            for (npy_intp s = 0; s < n_s; ++s) {{
                npy_int64 c = *(const npy_int64*) (sd + b * s0 + s * s1);
                {_index_check("c", "n", fail)}
                xd[b * n + c] {op} *(const double*) (vd + b * v0 + s * v1);
            }}
        }}
        }}"""


def gather(slots, *fields) -> list:
    """The `fields` (B, N) at the columns `slots` (B, S) of their rows: [(B, S), ...]."""
    out = SlotGather()(slots, *fields)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def scatter(slots, values, n_columns):
    """(B, `n_columns`) zeros with each row's `values` (B, S) in its columns `slots` (B, S) (the last
    slot of a column wins)."""
    return SlotScatter("set")(slots, values, n_columns)
