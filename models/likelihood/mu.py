"""μ̂: the global signal strength maximising a sum of log-likelihoods on [0, μ_max].

This is the combiner's profile over μ (method reference §4.6, with μ capped by the critic, §5).
The maximiser is batched and has a fixed amount of work, so it is the same graph for every state:

1. evaluate the total −ln L on a grid of ``n_grid`` points spanning [0, μ_max]; the grid's best
   point b and its two neighbours a < b < c form a bracket (f(b) ≤ f(a), f(c));
2. ``n_steps`` refinement steps, each evaluating four points in one vectorised call:
   the vertex u of the parabola through (a, b, c), its mirror 2u − b (so that the next bracket is a
   symmetric stencil around u: a Newton step with finite-difference derivatives, error
   e → ≈ f'''/(3f'') e²), and the midpoints of [a, b] and [b, c] (a bisection safeguard: the
   bracket at least halves every step, whatever the function). The new bracket is the best of the
   seven points with its nearest neighbours, so f(b) only decreases. When the parabola carries no
   information (u = b: b at an end of [0, μ_max], or an exactly quadratic −ln L) the stencil is
   (c − a)/16 wide;
3. μ̂ is the best point evaluated: a maximum at 0 or μ_max (grid points) is returned exactly.

Why not golden section (used before): its steps are sequential, one bracket shrink of 0.618 per two
evaluations, and 30 of them took 3.2 ms (one model) and 14 ms (64 models) of the ``paper`` target's
4.3 ms and 31 ms (C VM, CPU time): the cost of a step is the ~300 small ops of the objective, not its
arithmetic. Four points per step cost about as much as two, and 6 steps replace 30: 0.9 ms and
4.4 ms (the whole function: 4.2 → 1.8 ms and 31 → 21 ms).

In PyTensor the steps are written out in the graph (no ``scan``: its Python bookkeeping cost ~5 µs
per iteration), and each step's bookkeeping (the trials from the bracket, the new bracket from their
values) is one Op with C code, :class:`_BracketOp`, run on the numpy definitions' arithmetic. As ~50
elementwise graph nodes it took ~27 µs of a step's ~47 µs for one model; the compiled ``paper``
graph went from 0.52 to 0.26 ms (one model) and from 3.2 to 2.6 ms (64 models).

Accuracy (measured against golden section with 60 iterations, i.e. the converged maximiser of the
same bracket): on the 64 protomodels of the speed benchmark (1.2.4 database, 28 interior μ̂; paper
and SModelS 3.2.1 variants) |Δ(−ln L)| < 1e-12 from 3 steps on. On 6000 synthetic states (the max
over 4 random cliques of 5 EM SRs drawn from the 1.2.4 database and 5 UL results, all three EM
variants, like the states of tests/models/likelihood/test_mu.py) 6 steps give the converged
value to 1e-10 in every state with one local minimum in the bracket (8 steps change nothing; with
5, 2–7 states per 1000 are off by up to 2e-8).

What can be missed: every likelihood here (profiled or marginalised EM SRs, SLv1, truncated
Gaussians) is log-concave in μ, and so is any sum of them; the target's objective is a maximum over
cliques of such sums, so −ln L is piecewise convex with its local minima at the pieces' own
minima. (i) A local minimum narrower than a grid cell that is not in the grid's best cells is not
seen (as with any grid; cell = μ_max/(n_grid − 1)). (ii) With two local minima inside the bracket
the steps converge to one of them: in the 6000 synthetic states this gave a worse minimum than
golden section in 4 and a better one in 21. SLv2 is not always log-concave, with the same caveats.

Gradients: the search runs on stopped values. At an interior maximum ∂(−ln L)/∂μ = 0, so the
gradient of the returned ``nll_min`` w.r.t. the signals is exact (envelope theorem); at μ̂ = μ_max
the returned μ̂ *is* ``mu_max`` and carries its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .backend import NUMPY

N_STEPS = 6
_SPREAD = 1.0 / 16.0      # stencil half-width when the parabola gives none, in units of c − a


def profile_mu(nll_of_mu: Callable[[Any], Any], mu_max: Any, xp: SimpleNamespace = NUMPY,
               n_grid: int = 32, n_steps: int = N_STEPS) -> tuple[Any, Any]:
    """Return (μ̂, −ln L(μ̂)) of the total likelihood on [0, μ_max], batched.

    :param nll_of_mu: maps μ of shape ``batch + (k,)`` to the total −ln L of the same shape
        (every term broadcast over the trailing μ axis)
    :param mu_max: finite upper bounds, shape ``batch`` (cap an infinite critic bound first)
    :param n_grid: grid points on [0, μ_max] (at least 3)
    :param n_steps: refinement steps of four points each (in PyTensor, written out in the graph)
    """
    if n_grid < 3:
        raise ValueError("n_grid must be at least 3")
    mu_max = xp.asarray(mu_max)
    top = xp.stop_gradient(mu_max)
    grid = xp.expand_dims(top, -1) * np.linspace(0.0, 1.0, n_grid)
    start, step = (_start, _step) if xp is NUMPY else (_BracketOp("start"), _BracketOp("step"))
    state, trials = start(grid, xp.stop_gradient(nll_of_mu(grid)))
    for _ in range(n_steps):
        state, trials = step(state, trials, xp.stop_gradient(nll_of_mu(trials)))
    b = xp.stop_gradient(state[..., 1])
    mu_hat = xp.where(xp.eq(b, top), mu_max, b)
    return mu_hat, nll_of_mu(xp.expand_dims(mu_hat, -1))[..., 0]


# The bracket bookkeeping on values: numpy here, one C Op per step in PyTensor (:class:`_BracketOp`).
# The state (..., 6) is (a, b, c, f(a), f(b), f(c)), the trials (..., 4) a step's new points.

def _start(grid: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid's best point b with its neighbours (module docstring, step 1): (state, trials)."""
    grid, values = np.broadcast_arrays(grid, values)
    best = np.argmin(values, axis=-1)[..., None]
    index = np.concatenate([np.maximum(best - 1, 0), best, np.minimum(best + 1, grid.shape[-1] - 1)], axis=-1)
    state = np.concatenate([np.take_along_axis(grid, index, -1), np.take_along_axis(values, index, -1)], axis=-1)
    return state, _trials(state)[0]


def _step(state: np.ndarray, trials: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One refinement (module docstring, step 2) from the trials' `values`: (state, next trials).
    The new bracket is the best of the seven points with its nearest distinct neighbours (repeated
    points share their value)."""
    right = _trials(state)[1]
    points, values = (_merge(state[..., i:i + 3], t, right) for i, t in ((0, trials), (3, values)))
    first = np.argmin(values, axis=-1)
    last = 6 - np.argmin(values[..., ::-1], axis=-1)
    index = np.stack([np.maximum(first - 1, 0), first, np.minimum(last + 1, 6)], axis=-1)
    state = np.concatenate([np.take_along_axis(points, index, -1), np.take_along_axis(values, index, -1)], axis=-1)
    return state, _trials(state)[0]


def _trials(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The four trials of a step in increasing order, and whether the vertex u is right of b."""
    a, b, c, fa, fb, fc = (state[..., i] for i in range(6))
    p, q = (b - a) * (fb - fc), (b - c) * (fb - fa)
    curved = np.abs(p - q) > 0
    m1, m2 = 0.5 * (a + b), 0.5 * (b + c)
    # the vertex of a parabola through a bracket lies in [m1, m2]; the clip only guards rounding
    u = np.clip(b - 0.5 * ((b - a) * p - (b - c) * q) / np.where(curved, p - q, 1.0) * curved, m1, m2)
    right = u >= b
    half = np.where(np.equal(u, b), _SPREAD * (c - a), np.abs(u - b))
    v = np.clip(np.where(right, u + half, u - half), a, c)
    # m1 ≤ b ≤ u ≤ (v, m2) if u ≥ b, else (v, m1) ≤ u ≤ b ≤ m2
    trials = np.stack([np.where(right, m1, np.minimum(v, m1)), np.where(right, u, np.maximum(v, m1)),
                       np.where(right, np.minimum(v, m2), u), np.where(right, np.maximum(v, m2), m2)], axis=-1)
    return trials, right


def _merge(bracket: np.ndarray, trials: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The seven points (or their values) in increasing order of μ: a, the trials with b among them
    (after the second trial if u ≥ b, else before the fourth), c; `bracket` (..., 3) is (a, b, c)."""
    a, b, c = (bracket[..., i] for i in range(3))
    t = [trials[..., i] for i in range(4)]
    middle = [np.where(right, x, y) for x, y in zip((b, t[1], t[2]), (t[1], t[2], b))]
    return np.stack([a, t[0], *middle, t[3], c], axis=-1)


class _BracketOp(COp):
    """:func:`_start` (inputs grid, values (..., n)) or :func:`_step` (inputs state, trials,
    values) as one PyTensor node with a C implementation of the same arithmetic in the same order
    (IEEE double, no contraction into fused multiply-adds: bit-identical to numpy, tested). Its
    outputs carry no gradient (the search runs on stopped values)."""

    __props__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def make_node(self, *inputs):
        inputs = [pt.cast(pt.as_tensor_variable(x), "float64") for x in inputs]
        batch = (None,) * (inputs[-1].type.ndim - 1)
        return Apply(self, inputs, [pt.tensor(dtype="float64", shape=batch + (6,)),
                                    pt.tensor(dtype="float64", shape=batch + (4,))])

    def perform(self, node, inputs, outputs):
        for storage, value in zip(outputs, (_start if self.kind == "start" else _step)(*inputs)):
            storage[0] = np.ascontiguousarray(value)

    def infer_shape(self, node, shapes):
        batch = tuple(shapes[-1][:-1])
        return [batch + (6,), batch + (4,)]

    def connection_pattern(self, node):
        return [[False, False] for _ in node.inputs]

    def c_compile_args(self, **kwargs):
        return ["-ffp-contract=off"]

    def c_support_code(self, **kwargs):
        return _C_SUPPORT

    def c_code_cache_version(self):
        return (1,)

    def c_code(self, node, name, inputs, outputs, sub):
        fail = sub["fail"]
        ins = ", ".join(f"(PyArrayObject*)PyArray_FromAny((PyObject*){x}, NULL, 0, 0, NPY_ARRAY_CARRAY_RO, NULL)"
                        for x in inputs)
        call = ("bracket_start(d[0], d[1], n, PyArray_DIMS(c[1])[nd - 1], s, t)" if self.kind == "start" else
                "bracket_step(d[0], d[1], d[2], n, s, t)")
        state, trials = outputs
        return f"""
        {{
            PyArrayObject* c[{len(inputs)}] = {{{ins}}};
            int ok = 1, k, nd = PyArray_NDIM(c[{len(inputs) - 1}]);
            npy_intp n = 1, dims[NPY_MAXDIMS];
            for (k = 0; k < {len(inputs)}; k++) ok = ok && c[k] && PyArray_NDIM(c[k]) == nd;
            for (k = 0; ok && k < nd - 1; k++) {{
                dims[k] = PyArray_DIMS(c[{len(inputs) - 1}])[k];
                n *= dims[k];
                for (int j = 0; j < {len(inputs)}; j++) ok = ok && PyArray_DIMS(c[j])[k] == dims[k];
            }}
            {"ok = ok && PyArray_DIMS(c[0])[nd - 1] == PyArray_DIMS(c[1])[nd - 1];" if self.kind == "start" else ""}
            if (ok) {{
                dims[nd - 1] = 6;
                Py_XDECREF({state});
                {state} = (PyArrayObject*)PyArray_SimpleNew(nd, dims, NPY_FLOAT64);
                dims[nd - 1] = 4;
                Py_XDECREF({trials});
                {trials} = (PyArrayObject*)PyArray_SimpleNew(nd, dims, NPY_FLOAT64);
                ok = {state} && {trials};
            }}
            if (ok) {{
                double* s = (double*)PyArray_DATA({state});
                double* t = (double*)PyArray_DATA({trials});
                const double* d[{len(inputs)}];
                for (k = 0; k < {len(inputs)}; k++) d[k] = (const double*)PyArray_DATA(c[k]);
                {call};
            }}
            for (k = 0; k < {len(inputs)}; k++) Py_XDECREF(c[k]);
            if (!ok) {{
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "{name}: inconsistent bracket shapes");
                {fail}
            }}
        }}
        """


# numpy's float semantics: minimum/maximum propagate NaN, clip = min(max(x, lo), hi) likewise,
# argmin returns the first NaN or else the first minimum
_C_SUPPORT = f"#define BRACKET_SPREAD {_SPREAD!r}\n" + """
static double np_min(double a, double b) { return (a <= b || isnan(a)) ? a : b; }
static double np_max(double a, double b) { return (a >= b || isnan(a)) ? a : b; }
static double np_clip(double x, double lo, double hi) {
    double y = isnan(x) ? x : (x > lo ? x : lo);
    return isnan(y) ? y : (y < hi ? y : hi);
}
static long np_argmin(const double* f, long n, long stride) {
    long best = 0;
    double m = f[0];
    if (isnan(m)) return 0;
    for (long k = 1; k < n; k++) {
        double x = f[k * stride];
        if (isnan(x)) return k;
        if (x < m) { m = x; best = k; }
    }
    return best;
}
/* _trials: the four trials t of state s; returns whether u >= b */
static int bracket_trials(const double* s, double* t) {
    double a = s[0], b = s[1], c = s[2], fa = s[3], fb = s[4], fc = s[5];
    double p = (b - a) * (fb - fc), q = (b - c) * (fb - fa);
    double curved = fabs(p - q) > 0 ? 1.0 : 0.0;
    double m1 = 0.5 * (a + b), m2 = 0.5 * (b + c);
    double u = np_clip(b - 0.5 * ((b - a) * p - (b - c) * q) / (curved != 0.0 ? p - q : 1.0) * curved, m1, m2);
    int right = u >= b;
    double half = u == b ? BRACKET_SPREAD * (c - a) : fabs(u - b);
    double v = np_clip(right ? u + half : u - half, a, c);
    t[0] = right ? m1 : np_min(v, m1);
    t[1] = right ? u : np_max(v, m1);
    t[2] = right ? np_min(v, m2) : u;
    t[3] = right ? np_max(v, m2) : m2;
    return right;
}
static void bracket_start(const double* grid, const double* values, long n, long n_grid, double* s, double* t) {
    for (long i = 0; i < n; i++, grid += n_grid, values += n_grid, s += 6, t += 4) {
        long best = np_argmin(values, n_grid, 1);
        long lo = best > 0 ? best - 1 : 0, hi = best + 1 < n_grid ? best + 1 : n_grid - 1;
        s[0] = grid[lo]; s[1] = grid[best]; s[2] = grid[hi];
        s[3] = values[lo]; s[4] = values[best]; s[5] = values[hi];
        bracket_trials(s, t);
    }
}
static void bracket_step(const double* state, const double* trials, const double* values, long n, double* s, double* t) {
    double tr[4], p[7], f[7];
    for (long i = 0; i < n; i++, state += 6, trials += 4, values += 4, s += 6, t += 4) {
        int right = bracket_trials(state, tr);
        p[0] = state[0]; p[1] = trials[0]; p[5] = trials[3]; p[6] = state[2];
        f[0] = state[3]; f[1] = values[0]; f[5] = values[3]; f[6] = state[5];
        p[2] = right ? state[1] : trials[1]; p[3] = right ? trials[1] : trials[2]; p[4] = right ? trials[2] : state[1];
        f[2] = right ? state[4] : values[1]; f[3] = right ? values[1] : values[2]; f[4] = right ? values[2] : state[4];
        long first = np_argmin(f, 7, 1), last = 6 - np_argmin(f + 6, 7, -1);
        long lo = first > 0 ? first - 1 : 0, hi = last < 6 ? last + 1 : 6;
        s[0] = p[lo]; s[1] = p[first]; s[2] = p[hi]; s[3] = f[lo]; s[4] = f[first]; s[5] = f[hi];
        bracket_trials(s, t);
    }
}
"""
