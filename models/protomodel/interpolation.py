"""Interpolation of upper-limit and efficiency maps with the semantics of SModelS 3.2.1.

API (for the prediction code)
-----------------------------
Points are always given in the column order of the map's ``MapData.layout`` (masses and widths in
GeV, exactly like ``grid.coords``); values come back in the map's units (fb for limits, plain
numbers for efficiencies).

``GridInterpolator(coords, values, layout=None, arithmetic=DEFAULT_ARITHMETIC)``
    One triangulation for one set of mass points. ``coords`` (n_points, n_coords) GeV, ``values``
    (n_points,) or (n_points, k): k maps that share the same points (e.g. the efficiency maps of one
    txname in every SR of an analysis, or observed and expected limits) share one simplex search
    and one set of barycentric weights. ``layout`` (the ``MapData.layout``) says which columns are
    widths and fixes SModelS' column order; None means "all masses, already in SModelS order".
    ``arithmetic``: which SModelS environment's rounding to reproduce (``ARITHMETICS``, see
    "Numerical environments" below). Picklable. Attributes: ``n_coords``, ``k``,
    ``dimensionality`` (of the data after the rotation), ``full_dimensionality``, ``arithmetic``.
``GridInterpolator.__call__(points (n, n_coords)) -> (n, k)``
    Interpolated values; NaN exactly where SModelS' ``TxNameData.getValueFor`` returns None.
``GridInterpolator.evaluate(points, jacobian=False) -> Evaluation``
    ``values`` (n, k) as above, ``inside`` (n, k) bool (= ~isnan(values)) and, if asked,
    ``jacobian`` (n, k, n_coords): d value / d point in [value unit]/GeV, exact for the piecewise-
    linear interpolant (constant inside a simplex), zero where the value is NaN or clamped.
``GridInterpolator.locate(points) -> Location``
    ``simplex`` (n,) int (-1 outside), ``vertices`` (n, d+1) point indices, ``weights`` (n, d+1)
    barycentric weights, ``inside`` (n,) bool — in the rotated, projected space (no off-plane test).
``build_database_interpolators(compiled, group=True, arithmetic=DEFAULT_ARITHMETIC) -> DatabaseInterpolators``
    Interpolators for every map row of ``compiled.arrays`` (``map_coords[i]``/``map_values[i]``),
    maps with bit-identical coordinates (and layout) grouped into one ``GridInterpolator``.
    ``DatabaseInterpolators.groups`` (tuple of GridInterpolator), ``.map_group[i]`` and
    ``.map_column[i]`` (map row i is column ``map_column[i]`` of group ``map_group[i]``),
    ``.failed`` {map row: reason} for maps SModelS cannot triangulate either, and
    ``.evaluate_map(i, points) -> (n,)``. ``build_interpolators(coords, values, layouts, group,
    arithmetic)`` does the same for plain lists of maps.
``BatchedInterpolator(database_interpolators)``
    The whole database at once (the prediction code should use this one):
    ``evaluate(map_rows (n,), points (n, c), jacobian=False) -> Evaluation`` with values (n,),
    inside (n,), jacobian (n, max_coords); query i is map row ``map_rows[i]`` at ``points[i]``
    (first n_coords columns in that map's layout, the rest ignored). Compiled kernels (numba)
    over all queries: each distinct (triangulation, point) pair is transformed and located once,
    so maps sharing a triangulation and asked at one point (the signal regions of an analysis,
    observed and expected limits) share that work; values, Jacobians and SModelS' off-plane
    estimate per query, with at most three point-location calls. Same bits as one query at a time.
PyTensor: :mod:`tdmcmc.models.protomodel.interpolation_op`: ``interpolate_rows(batched, map_rows,
points, fill_value=0.0) -> (values (n,), inside (n,))`` and ``interpolate(interp, points,
fill_value=0.0) -> (values (n, k), inside (n, k))``, Ops with exact piecewise-linear gradients.

How callers map NaN to SModelS' behaviour (``smodels/experiment/txnameObj.py``):
``TxName.getEfficiencyFor`` turns None/NaN/0 into efficiency 0 for efficiency maps, and for an
upper-limit map into "not in the grid" (efficiency 0: the SMS does not contribute to the UL
cluster). ``getULFor`` returns None: the upper-limit result gives no theory prediction there.
So: EM rows use ``nan_to_num(value, nan=0)``; UL rows use ``inside`` as a mask on the row's
contribution and never use the value where it is NaN.

SModelS 3.2.1 semantics reproduced here
---------------------------------------
References are to ``smodels/experiment/txnameDataObj.py`` (class ``TxNameData``), unless noted.

1. Flat point (``txnameObj.TxName.setDataMap``/``transformPoint``): all masses in branch order
   (branch 0 positions, then branch 1; an inclusive ``*`` branch is skipped), then all widths in
   the same order; v3 maps use the ``dataMap`` column order. Units removed in GeV. Widths go
   through ``expAuxiliaryFuncs.rescaleWidth``: w' = min(w, 1e50)/1e-30, x = w' if w' < 1e-10 else
   log(1 + w').
2. ``computeV``: delta_x = column means of the data points (Python's ``sum``: plain left-to-right
   up to Python 3.11, compensated since 3.12; see "Numerical environments"); M = x - delta_x;
   V = right singular vectors of ``scipy.linalg.svd(M[::ceil(n/2000)])`` (only every n-th point
   when n > 2000). Rotated points Mp = M V. ``dimensionality`` = the largest number of
   coordinates with |Mp| > 1e-4 in any data point (``countNonZeros``); the triangulation is
   ``scipy.spatial.Delaunay(Mp[:, :dim])`` for dim > 1, and ``Delaunay1D`` (sorted intervals)
   for dim == 1. dim == 0 (a single point, or all points equal) makes SModelS fail when the
   txname is built; we raise :class:`DegenerateMapError`.
   Data in a lower-dimensional plane (e.g. symmetric branches [[m1,m2],[m1,m2]] -> 2-D plane in 4-D,
   or T6WW's two x-planes) is handled by this projection, nothing else.
3. ``getValueFor(point)`` is wrapped by ``tools.caching.roundCache(digits=2)``: the flat point is
   rounded to 0.01 GeV *before* evaluation. We do NOT round (it would make the gradient zero);
   the difference is at most the change of a linear interpolant over 0.005 GeV.
4. q = (x - delta_x) V. ``interpolate(q[:dim])``: ``tri.find_simplex(q, tol=1e-6)`` (scipy: the
   tolerance is on barycentric coordinates; ``Delaunay1D.find_simplex``: on the coordinate itself,
   in GeV, only beyond the two end points, intervals are (x_i, x_i+1]). Outside: NaN. Inside: value
   = Σ w_j y_j, then clamped from below to the smallest vertex value (only matters within the
   tolerance band), then rounded to 6 significant digits. We do not round (relative <= 5e-6).
5. Off the plane: if ``countNonZeros(q)`` (|q_i| > 1e-4 over ALL full-dimensional coordinates)
   exceeds dim, ``_interpolateOutsideConvexHull`` returns the projected value only when
   ``_estimateExtrapolationError`` < 0.05 (``accept_errors_upto``), else None. That estimate, with
   alpha = |q[dim:]|: g_i = (f(q + alpha e_i) - f(q))/alpha for i < dim (NaN if any of those
   points is outside -> None); if |g| == 0 -> 0; otherwise the step s = Σ_i alpha g_i/|g| is added
   to and subtracted from the LAST in-plane coordinate only (SModelS' loop reuses the index i;
   reproduced as is), giving f+ and f-; de = |f± - f|/f (1 if f == 0 and f± != 0); de = de+ unless
   de- > de+ (so NaN in f+ rejects, NaN in f- alone does not). With k maps sharing a
   triangulation the decision is made per map, as SModelS does.
6. ``_returnProjectedValue``: NaN -> None; |value| < 100 * machine epsilon -> 0.

Bit-exactness (needed: on regular grids many points are co-circular and qhull breaks those ties
by the last bits of the rotated coordinates, so other rounding gives other triangles and values
5 % to 5x off): we reproduce delta_x, V (same LAPACK call), Mp (SModelS' row-by-row ``np.dot``),
the width rescaling (``log(1+w)``, not ``log1p``) and the column order. Point location: 138 of the
383 triangulations of 1.2.4 contain flat (zero-volume) simplices; next to them the containing
simplex is not unique, the interpolant can jump across a face, and scipy's answer depends on where
its walk starts (the previous point of a batch; simplex 0 for SModelS' one-point calls). So every
point is located as by a one-point call: :mod:`.point_location` runs a compiled port of scipy's
walk from simplex 0 (same answer as scipy for every point, tested), with a grid index that speeds
up scipy's brute-force fallback without changing its answer. The Jacobian on a face is that of the
simplex found.

Numerical environments (``arithmetic``)
---------------------------------------
The last bits of delta_x and Mp depend on the Python and numpy that run SModelS, so SModelS 3.2.1
itself triangulates tie cells differently in different environments. ``ARITHMETICS``:

- ``"py311-numpy2.4"`` (default): Python <= 3.11 (``sum`` adds left to right) and numpy 2.4 wheels
  (OpenBLAS 0.3.31: ``np.dot(row, V)`` is the AVX2/FMA ``dgemv_n`` kernel, emulated exactly with
  :func:`fused_multiply_add`, see :func:`_rows_times_numpy24`). What ``pip install smodels==3.2.1``
  gives under the machine's default ``python3`` (3.11.7: numpy 2.4.6, scipy 1.17.1), and what the
  oracle-reference outputs were made with: all 332 of their predictions agree to 1e-5 (with their
  0.1 GeV masses), against 306 within 2 % with the other arithmetic.
- ``"py312-numpy2.5"``: Python >= 3.12 (compensated ``sum``, called as such) and numpy 2.5 (row
  products = one matrix-vector product per column, :func:`_rows_times_numpy25`), e.g. SModelS in
  Python 3.12.1 with numpy 2.5.5 and scipy 1.18.1.

Both are tested bit for bit (delta_x, rotated data points) and in value against SModelS 3.2.1 run in
each environment (``tests/models/data/make_smodels_interpolation_fixture.py``); the py311 kernels
also on all 726 distinct triangulations of the 1.2.4 and 3.0.0-extra databases. The emulated
kernel follows OpenBLAS' blocking for any length (checked for 1-8 coordinates; the databases have
2, 3, 4 and 6). Other environments (other OpenBLAS kernels, e.g. AVX-512 machines) may round
differently again and then split some tie cells along the other diagonal.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy.linalg import svd
from scipy.spatial import Delaunay
from threadpoolctl import threadpool_limits

from tdmcmc.models.database.maps import Coordinate

from .point_location import PointLocator

# Constants of SModelS 3.2.1 (see the module docstring for where each comes from).
SIMPLEX_TOL = 1e-6
NONZERO_TOL = 1e-4
ACCEPT_ERRORS_UPTO = 0.05
ZERO_VALUE = 100.0 * sys.float_info.epsilon
WIDTH_MIN, WIDTH_MAX = 1e-30, 1e50  # GeV
SVD_MAX_POINTS = 2000


class DegenerateMapError(ValueError):
    """A map whose points do not span even a line (SModelS cannot triangulate it either)."""


def rescale_width(width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SModelS' ``rescaleWidth`` (widths in GeV) and its derivative d x / d width (1/GeV)."""
    w = np.minimum(width, WIDTH_MAX) / WIDTH_MIN
    small = w < 1e-10
    x = np.where(small, w, np.log(1.0 + np.where(small, 0.0, w)))  # log(1+w) as SModelS, not log1p
    dx = np.where(width > WIDTH_MAX, 0.0, np.where(small, 1.0, 1.0 / (1.0 + w)) / WIDTH_MIN)
    return x, dx


def smodels_column_order(layout: Sequence[Coordinate] | None, n_coords: int) -> np.ndarray:
    """Indices of the layout's columns in SModelS' flat order: masses first, then widths (v1/v2);
    v3 layouts (``node`` set) already are in ``dataMap`` order."""
    if layout is None or any(c.node is not None for c in layout):
        return np.arange(n_coords)
    masses = [i for i, c in enumerate(layout) if c.quantity == "mass"]
    widths = [i for i, c in enumerate(layout) if c.quantity == "width"]
    return np.array(masses + widths, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Location:
    """Point location in the projected rotated space of a :class:`GridInterpolator`."""

    simplex: np.ndarray  # (n,) int64, -1 outside
    vertices: np.ndarray  # (n, d+1) data point indices (vertex 0 where outside)
    weights: np.ndarray  # (n, d+1) barycentric weights (NaN where outside)
    inside: np.ndarray  # (n,) bool


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Values (n, k), ``inside`` (n, k) and optionally the Jacobian (n, k, n_coords) per GeV."""

    values: np.ndarray
    inside: np.ndarray
    jacobian: np.ndarray | None = None


def _rows_times_numpy25(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m @ v, bit-identical to SModelS' row-by-row ``np.dot(row, V)`` under numpy 2.5: a matrix-
    matrix product rounds differently, and qhull breaks the ties of co-circular grid points by those
    last bits. One matrix-vector product per column of a row-major `m` gives the same bits (checked
    on all 2101 maps of the 1.2.4 and 3.0.0-extra databases) and is as fast as ``m @ v``."""
    m = np.ascontiguousarray(m)
    out = np.empty((len(m), v.shape[1]))
    for j in range(v.shape[1]):
        out[:, j] = m @ v[:, j]
    return out


_VELTKAMP = 134217729.0  # 2**27 + 1: splits a double into two 26-bit halves


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s + e == a + b exactly, s = fl(a + b) (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p + e == a * b exactly, p = fl(a * b) (Dekker; no overflow for GeV-sized inputs)."""
    p = a * b
    ca, cb = _VELTKAMP * a, _VELTKAMP * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def fused_multiply_add(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fl(a * b + c) with a single rounding, like the FMA instruction (numpy has no fma ufunc,
    ``math.fma`` needs Python 3.13). Boldo & Melquiond (IEEE TC 57, 2008), Algorithm 5.4: exact
    product, exact sum with c, the two low parts added with rounding to odd, then one rounding to
    nearest. Exact for finite inputs without underflow (tested against rational arithmetic)."""
    uh, ul = _two_product(a, b)
    th, tl = _two_sum(c, uh)
    s, e = _two_sum(tl, ul)
    round_up = (e != 0) & ((s.view(np.int64) & 1) == 0)  # inexact and even: step to the odd neighbour
    v = np.where(round_up, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)
    return th + v


def _rows_times_numpy24(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m @ v, bit-identical to the row-by-row ``np.dot(row, V)`` of numpy 2.4 wheels (OpenBLAS
    0.3.31, AVX2/FMA ``dgemv_n`` kernels; V C-contiguous as SModelS' ``Vt.T``). With n = len(row):
    output columns j < 4 floor(n/4) come from the vector kernel: per block of four inputs b,
    fma(x[b+2], V, x[b] V) + fma(x[b+3], V, x[b+1] V), blocks added in order, then the remaining
    inputs as (x[i] V + x[i+1] V) and x[i] V; the other output columns are plain left-to-right sums
    of the rounded products. Checked bit for bit against numpy 2.4.6 for n = 1..8 (random rows and
    rotations) and on real maps (tests/models/data/make_smodels_interpolation_fixture.py)."""
    m = np.asarray(m, dtype=np.float64)
    n, k = v.shape
    t = m[:, :, None] * v[None]  # (points, n, k) rounded products x[i] V[i, j]
    out = np.empty((len(m), k))
    n_blocks = n // 4 * 4
    for j in range(k):
        if j >= k // 4 * 4:
            y = t[:, 0, j]
            for i in range(1, n):
                y = y + t[:, i, j]
            out[:, j] = y
            continue
        y = None
        for b in range(0, n_blocks, 4):
            block = (fused_multiply_add(m[:, b + 2], v[b + 2, j], t[:, b, j])
                     + fused_multiply_add(m[:, b + 3], v[b + 3, j], t[:, b + 1, j]))
            y = block if y is None else y + block
        rest = [t[:, n_blocks, j] + t[:, n_blocks + 1, j]] if n - n_blocks >= 2 else []
        rest += [t[:, n - 1, j]] if (n - n_blocks) % 2 else []
        for r in rest:
            y = r if y is None else y + r
        out[:, j] = y
    return out


def _column_means_py311(x: np.ndarray) -> np.ndarray:
    """SModelS' ``sum(column) / n`` under Python <= 3.11: plain left-to-right float additions."""
    return np.add.accumulate(x, axis=0)[-1] / len(x)


def _column_means_py312(x: np.ndarray) -> np.ndarray:
    """The same under Python >= 3.12, whose built-in ``sum`` of floats is compensated (Neumaier):
    we call that ``sum`` to get the same bits."""
    return np.array([sum(col) / len(x) for col in x.T.tolist()])


# Numerical environments SModelS 3.2.1 may run in, differing in the last bits of the rotated
# grid points and hence in the tie-breaking of co-circular points by qhull (module docstring):
# name -> (column means, row-by-row product).
ARITHMETICS = {
    "py311-numpy2.4": (_column_means_py311, _rows_times_numpy24),
    "py312-numpy2.5": (_column_means_py312, _rows_times_numpy25),
}
DEFAULT_ARITHMETIC = "py311-numpy2.4"  # the environment of the oracle-reference outputs


class GridInterpolator:
    """SModelS' interpolation of k maps that share the same mass points (see the module docstring).

    Args:
        coords: (n_points, n_coords) masses/widths in GeV, columns as in ``layout``.
        values: (n_points,) or (n_points, k) values (fb or unitless).
        layout: the grid's ``MapData.layout`` (None: every column is a mass, in SModelS order).
        arithmetic: the SModelS environment whose rounding (and so tie-breaking) to reproduce, a
            key of ``ARITHMETICS``; the default is the oracle-reference's.

    Raises:
        DegenerateMapError: all points coincide after the transform (SModelS fails there too).
        ValueError: unknown `arithmetic`.
    """

    def __init__(self, coords: np.ndarray, values: np.ndarray,
                 layout: Sequence[Coordinate] | None = None, arithmetic: str = DEFAULT_ARITHMETIC) -> None:
        if arithmetic not in ARITHMETICS:
            raise ValueError(f"arithmetic {arithmetic!r} is not one of {sorted(ARITHMETICS)}")
        self.arithmetic = arithmetic
        column_means, self._rows_times = ARITHMETICS[arithmetic]
        coords = np.asarray(coords, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        self._scalar = values.ndim == 1
        self.values = values.reshape(len(values), -1)
        if coords.ndim != 2 or len(coords) != len(self.values):
            raise ValueError(f"coords {coords.shape} and values {values.shape} do not match")
        self.n_coords = coords.shape[1]
        self.k = self.values.shape[1]
        self.layout = None if layout is None else tuple(layout)
        self._order = smodels_column_order(layout, self.n_coords)
        widths = [] if layout is None else [c.quantity == "width" for c in layout]
        self._is_width = np.array([widths[i] for i in self._order] if widths else [False] * self.n_coords)
        x, _ = self._flat(coords)
        self.delta_x = column_means(x)  # SModelS' Python sum: np.mean would differ in the last bit
        m = x - self.delta_x
        step = int(math.ceil(len(m) / SVD_MAX_POINTS))
        # SModelS calls svd(...) with full_matrices=True; the economic SVD returns the same V bits
        # (checked on every 7th map of the 1.2.4 database; tested) without the (n, n) U, but only
        # min(n, n_coords) columns of V: maps with fewer points than coordinates need the full call
        # (the off-plane directions). Threaded BLAS makes the many tiny LAPACK calls here up to
        # 1000x slower on a busy machine.
        sample = m[::step]
        with threadpool_limits(limits=1, user_api="blas"):
            self.rotation = svd(sample, full_matrices=len(sample) < self.n_coords)[2].T  # SModelS' V (full_dim, full_dim)
        mp = self._rows_times(m, self.rotation)
        self.full_dimensionality = self.n_coords
        self.dimensionality = int(np.max(np.sum(np.abs(mp) > NONZERO_TOL, axis=1)))
        d = self.dimensionality
        if d == 0:
            raise DegenerateMapError(f"all {len(coords)} points of the map coincide")
        if d > 1:
            self._tri: Delaunay | None = Delaunay(mp[:, :d])
            self.simplices = self._tri.simplices.astype(np.int64)
            with threadpool_limits(limits=1, user_api="blas"):
                self._transform = self._tri.transform
            self._walk_dependent = bool(np.isnan(self._transform).any())  # has flat simplices
        else:
            self._walk_dependent = False
            self._tri = None
            self._init_1d(mp[:, 0])

    def _init_1d(self, line: np.ndarray) -> None:
        # Delaunay1D: intervals between sorted points; vertex 0 is the upper end (weight t), 1 the lower.
        # Ties keep the first index, as list.index does there.
        order = np.argsort(line, kind="stable")
        first = {}
        for i in order:
            first.setdefault(line[i], i)
        self._line = line[order]
        idx = np.array([first[v] for v in self._line], dtype=np.int64)
        self.simplices = np.stack([idx[1:], idx[:-1]], axis=1)
        lo, hi = line[self.simplices[:, 1]], line[self.simplices[:, 0]]
        with np.errstate(divide="ignore"):
            self._transform = np.stack([1.0 / (hi - lo), lo], axis=1)[:, :, None]  # (n_simplex, 2, 1)

    def _flat(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SModelS' flat point (columns reordered, widths rescaled) and d flat / d point (diagonal)."""
        x = np.ascontiguousarray(points[:, self._order])  # row-major, see _rows_times_numpy25
        dx = np.ones_like(x)
        if self._is_width.any():
            x[:, self._is_width], dx[:, self._is_width] = rescale_width(x[:, self._is_width])
        return x, dx

    def rotate(self, points: np.ndarray) -> np.ndarray:
        """Points (n, n_coords) GeV -> SModelS' rotated coordinates q (n, full_dimensionality)."""
        x, _ = self._flat(np.atleast_2d(np.asarray(points, dtype=np.float64)))
        return self._rows_times(x - self.delta_x, self.rotation)

    def _weights(self, qp: np.ndarray, simplex: np.ndarray) -> np.ndarray:
        d = self.dimensionality
        t = self._transform[np.where(simplex >= 0, simplex, 0)]
        bary = np.einsum("nij,nj->ni", t[:, :d], qp - t[:, d])
        weights = np.concatenate([bary, 1.0 - bary.sum(axis=1, keepdims=True)], axis=1)
        weights[simplex < 0] = np.nan
        return weights

    def _find_as_smodels(self, qp: np.ndarray) -> np.ndarray:
        """Simplex per projected point (-1 outside), the one SModelS' one-point call finds."""
        if getattr(self, "_locator", None) is None:
            self._locator = PointLocator([self])
        return self._locator.find(np.zeros(len(qp), dtype=np.int64), qp)

    def _locate_projected(self, qp: np.ndarray) -> Location:
        simplex = self._find_as_smodels(qp)
        s = np.where(simplex >= 0, simplex, 0)
        return Location(simplex, self.simplices[s], self._weights(qp, simplex), simplex >= 0)

    def locate(self, points: np.ndarray) -> Location:
        """Simplex and barycentric weights of points (n, n_coords) GeV in the projected space."""
        return self._locate_projected(self.rotate(points)[:, :self.dimensionality])

    def _interpolate(self, qp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``TxNameData.interpolate`` without the rounding: values (n, k), simplex, clamped mask."""
        loc = self._locate_projected(qp)
        vals = np.einsum("nj,njk->nk", np.nan_to_num(loc.weights), self.values[loc.vertices])
        floor = self.values[loc.vertices].min(axis=1)
        clamped = vals < floor
        vals = np.where(clamped, floor, vals)
        vals[~loc.inside] = np.nan
        return vals, loc.simplex, clamped

    def _interpolate_per_column(self, qp: np.ndarray) -> np.ndarray:
        """Values (n, k) where map c is evaluated at its own point qp[:, c] (qp: (n, k, d))."""
        n = len(qp)
        vals = self._interpolate(qp.reshape(n * self.k, -1))[0].reshape(n, self.k, self.k)
        return np.diagonal(vals, axis1=1, axis2=2)

    def _extrapolation_ok(self, q: np.ndarray, proj: np.ndarray) -> np.ndarray:
        """``_interpolateOutsideConvexHull`` for off-plane points q (n, full_dim) whose projected
        values are `proj` (n, k): True where SModelS accepts the projected value."""
        d = self.dimensionality
        qp = q[:, :d]
        alpha = np.sqrt(np.sum(q[:, d:] ** 2, axis=1))[:, None]  # (n, 1) distance to the plane
        with np.errstate(invalid="ignore", divide="ignore"):
            g = np.empty(proj.shape + (d,))
            for i in range(d):
                shifted = qp.copy()
                shifted[:, i] += alpha[:, 0]
                g[:, :, i] = (self._interpolate(shifted)[0] - proj) / alpha
            norm = np.sqrt(np.sum(g ** 2, axis=-1))
            step = np.sum(g / norm[..., None], axis=-1) * alpha  # (n, k), all on the last coordinate
            rel = []
            for sign in (1.0, -1.0):
                moved = np.repeat(qp[:, None, :], self.k, axis=1)
                moved[:, :, d - 1] += sign * step
                f = self._interpolate_per_column(moved)
                rel.append(np.where(proj == 0.0, (f != 0.0).astype(float), np.abs(f - proj) / proj))
            de = np.where(rel[1] > rel[0], rel[1], rel[0])
            # SModelS' early returns, applied from the last to the first so the first one wins.
            de = np.where(norm == 0.0, 0.0, de)
            de = np.where(np.isnan(g).any(axis=-1), np.nan, de)
            de = np.where(alpha == 0.0, 0.0, de)
            return de < ACCEPT_ERRORS_UPTO

    def _slope(self, simplex: np.ndarray) -> np.ndarray:
        """d value / d q[:dim] in each simplex (n, k, d): sum_i (y_i - y_d) T[i, j]."""
        d = self.dimensionality
        s = np.where(simplex >= 0, simplex, 0)
        yv = self.values[self.simplices[s]]  # (n, d+1, k)
        return np.einsum("nik,nij->nkj", yv[:, :d] - yv[:, d:], self._transform[s, :d])

    def evaluate(self, points: np.ndarray, jacobian: bool = False) -> Evaluation:
        """SModelS' ``getValueFor`` for points (n, n_coords) GeV, with the optional exact Jacobian."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        x, dx = self._flat(points)
        q = self._rows_times(x - self.delta_x, self.rotation)
        d = self.dimensionality
        vals, simplex, clamped = self._interpolate(q[:, :d])
        off = np.sum(np.abs(q) > NONZERO_TOL, axis=1) > d
        if off.any():
            ok = self._extrapolation_ok(q[off], vals[off])
            vals[off] = np.where(ok, vals[off], np.nan)
        vals = np.where(np.abs(vals) < ZERO_VALUE, 0.0, vals)
        inside = ~np.isnan(vals)
        jac = None
        if jacobian:
            slope = self._slope(simplex)  # (n, k, d)
            slope = np.where((inside & ~clamped)[..., None], slope, 0.0)
            jac_flat = slope @ self.rotation[:, :d].T * dx[:, None, :]  # d value / d flat x
            jac = np.empty_like(jac_flat)
            jac[:, :, self._order] = jac_flat
        return Evaluation(vals, inside, jac)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Values (n, k) at points (n, n_coords) GeV; NaN where SModelS returns None."""
        return self.evaluate(points).values


def coords_key(coords: np.ndarray, layout: Sequence[Coordinate] | None) -> tuple:
    """Grouping key: maps share a triangulation iff their coordinates are bit-identical."""
    coords = np.ascontiguousarray(coords, dtype=np.float64)
    return (coords.shape, tuple(layout or ()), hashlib.blake2b(coords.tobytes(), digest_size=16).digest())


@dataclass(frozen=True, eq=False)
class DatabaseInterpolators:
    """Interpolators for every map row of a :class:`~tdmcmc.models.database.compiled.DatabaseArrays`.

    Map row i is column ``map_column[i]`` of ``groups[map_group[i]]``; ``map_group[i] == -1`` for
    the rows in ``failed`` (map row -> reason).
    """

    groups: tuple[GridInterpolator, ...]
    map_group: np.ndarray
    map_column: np.ndarray
    failed: dict[int, str]

    def evaluate_map(self, map_row: int, points: np.ndarray) -> np.ndarray:
        """Values (n,) of map row `map_row` at points (n, n_coords) GeV (NaN: SModelS' None)."""
        return self.groups[self.map_group[map_row]](points)[:, self.map_column[map_row]]


def map_layouts(compiled) -> list[tuple[Coordinate, ...]]:
    """The layout of every map row of ``compiled.arrays``, in the row order of ``compile_arrays``."""
    layouts = []
    for ds in compiled.database.datasets:
        for tx in ds.txnames:
            for grid in (tx.upper_limits, tx.expected_upper_limits, tx.efficiency_map):
                if grid is not None:
                    layouts.append(grid.layout)
    return layouts


def build_interpolators(coords: Sequence[np.ndarray], values: Sequence[np.ndarray],
                        layouts: Sequence[Sequence[Coordinate] | None], group: bool = True,
                        arithmetic: str = DEFAULT_ARITHMETIC) -> DatabaseInterpolators:
    """Interpolators for a list of maps (coordinates in GeV, values, layouts), one per distinct
    coordinate array when `group` (maps with bit-identical coordinates and layout share one);
    `arithmetic` as for :class:`GridInterpolator`."""
    members: dict[tuple, list[int]] = {}
    for i, (c, layout) in enumerate(zip(coords, layouts)):
        members.setdefault(coords_key(c, layout) if group else (i,), []).append(i)
    groups, failed = [], {}
    map_group = np.full(len(coords), -1, dtype=np.int64)
    map_column = np.zeros(len(coords), dtype=np.int64)
    for rows in members.values():
        first = rows[0]
        try:
            interp = GridInterpolator(coords[first], np.stack([values[i] for i in rows], axis=1), layouts[first],
                                      arithmetic)
        except DegenerateMapError as exc:
            failed.update({i: str(exc) for i in rows})
            continue
        map_group[rows] = len(groups)
        map_column[rows] = np.arange(len(rows))
        groups.append(interp)
    return DatabaseInterpolators(tuple(groups), map_group, map_column, failed)


def build_database_interpolators(compiled, group: bool = True,
                                 arithmetic: str = DEFAULT_ARITHMETIC) -> DatabaseInterpolators:
    """:func:`build_interpolators` for every map row of a ``CompiledDatabase`` (``load_compiled``):
    map row i is ``compiled.arrays.map_coords[i]``/``map_values[i]``."""
    arrays = compiled.arrays
    layouts = map_layouts(compiled)
    if len(layouts) != len(arrays.map_coords):
        raise ValueError("database records and arrays disagree on the number of maps")
    return build_interpolators(arrays.map_coords, arrays.map_values, layouts, group, arithmetic)


class BatchedInterpolator:
    """All triangulations of a :class:`DatabaseInterpolators` evaluated together.

    ``evaluate(map_rows (n,), points (n, c) GeV, jacobian=False) -> Evaluation`` with values (n,),
    inside (n,) and jacobian (n, max_coords): query i asks map row ``map_rows[i]`` at
    ``points[i, :n_coords of that map]`` (further columns are ignored). Same results as
    ``DatabaseInterpolators.evaluate_map`` (tested). Compiled kernels transform each distinct
    (triangulation, point) pair once (maps sharing a triangulation and asked at one point, like the
    signal regions of an analysis or observed and expected limits, share that work), then compute
    the values, Jacobians and SModelS' off-plane estimate per query. Point location takes one
    :meth:`.point_location.PointLocator.find` call for the pairs and, if some queries are off the
    plane, one for the probes shifted along each in-plane axis and one for the two probes along the
    estimated gradient.

    Arithmetic: the sums run in the order of the former numpy implementation (numpy 2.4 ``einsum``
    and ``sum`` on its SSE2 baseline), so the results are bit for bit the same (tested against it):
    left to right, except the barycentric weights and the rotation of the Jacobian back to the flat
    point, where ``einsum`` reduces a contiguous axis in two lanes (:func:`_dot_two_lanes`).
    """

    def __init__(self, interps: DatabaseInterpolators) -> None:
        self.interps = interps
        groups = interps.groups
        n, f = len(groups), max(g.n_coords for g in groups)
        self.max_coords = f
        self.max_dim = max(g.dimensionality for g in groups)
        # Per triangulation: dimensionality, n_coords, k, and where its transforms, simplices and
        # values start in the packed arrays below.
        self._meta = np.zeros((n, 6), dtype=np.int64)
        self._order = np.tile(np.arange(f), (n, 1))
        self._is_width = np.zeros((n, f), dtype=bool)
        self._delta = np.zeros((n, f))
        self._rotation = np.zeros((n, f, f))
        offsets = np.zeros(3, dtype=np.int64)
        for i, g in enumerate(groups):
            nc = g.n_coords
            self._meta[i] = (g.dimensionality, nc, g.k, *offsets)
            self._order[i, :nc] = g._order
            self._is_width[i, :nc] = g._is_width
            self._delta[i, :nc] = g.delta_x
            self._rotation[i, :nc, :nc] = g.rotation
            offsets += (g._transform.size, g.simplices.size, g.values.size)
        # Simplex s of a d-dimensional triangulation: (d + 1, d) transform (T^-1 rows, then the
        # offset vertex) and d + 1 vertices; value column c of data point p at p k + c.
        self._transform = np.concatenate([np.asarray(g._transform, dtype=np.float64).ravel() for g in groups])
        self._simplices = np.concatenate([g.simplices.ravel() for g in groups]).astype(np.int64)
        self._values = np.concatenate([g.values.ravel() for g in groups])
        self._locator = PointLocator(groups)

    def evaluate(self, map_rows: np.ndarray, points: np.ndarray, jacobian: bool = False) -> Evaluation:
        """Values (n,) of map rows `map_rows` (n,) at `points` (n, >= n_coords) GeV; NaN where
        SModelS returns None; ``jacobian`` (n, max_coords) per GeV if asked."""
        map_rows = np.ascontiguousarray(map_rows, dtype=np.int64)
        given = np.asarray(points, dtype=np.float64)
        given = np.ascontiguousarray(given.reshape(len(map_rows), given.shape[-1] if given.ndim == 2 else -1))
        found, grp, col, point, ugrp, q, qp, dx, off = _transform_pairs(
            map_rows, given, given.view(np.int64), self.interps.map_group, self.interps.map_column, self._meta,
            self._order, self._is_width, self._delta, self._rotation, self.max_dim)
        if not found:
            bad = map_rows[self.interps.map_group[map_rows] < 0]
            raise ValueError(f"map rows {bad} have no interpolator (see .failed)")
        tables = (self._meta, self._transform, self._simplices, self._values)
        vals, proj, jac, off_q, alpha, probe_start, probe_tri, probe_qp = _interpolate_queries(
            grp, col, point, ugrp, self._locator.find(ugrp, qp), q, qp, dx, off, self._order, self._rotation,
            *tables, jacobian)
        if len(off_q):
            norm, g_nan, moved_tri, moved_qp = _gradient_probes(
                off_q, grp, col, point, proj, qp, alpha, probe_start, self._locator.find(probe_tri, probe_qp),
                probe_qp, *tables)
            _reject_extrapolations(off_q, grp, col, point, proj, alpha, norm, g_nan,
                                   self._locator.find(moved_tri, moved_qp), moved_qp, *tables, vals, jac)
        return Evaluation(vals, ~np.isnan(vals), jac if jacobian else None)


@numba.njit(cache=True, inline="always")
def _dot_two_lanes(a, a0, b, b0, d):
    """sum_j a[a0 + j] b[b0 + j], j < d (flat arrays), as numpy's ``einsum`` reduces a contiguous
    axis on its SSE2 baseline: even and odd j summed separately, left to right, then added."""
    even = 0.0
    odd = 0.0
    for j in range(d):
        if j & 1:
            odd += a[a0 + j] * b[b0 + j]
        else:
            even += a[a0 + j] * b[b0 + j]
    return even + odd


@numba.njit(cache=True, error_model="numpy")
def _transform_pairs(map_rows, points, bits, map_group, map_column, meta, order, is_width, delta, rotation, max_dim):
    """Triangulation `grp` and map column `col` of every query, and the distinct (triangulation,
    point) pairs (by the point's bits, in order of first appearance; query i is pair `point[i]`),
    each transformed once: SModelS' flat point x (columns reordered, widths rescaled; d x / d point
    in `dx`), q = (x - delta_x) V, the projected qp (max_dim columns, zero beyond the map's
    dimensionality) and whether q is off the plane (``countNonZeros(q) > dim``). False first if a
    query's map row has no triangulation."""
    n, f = len(map_rows), order.shape[1]
    grp = np.empty(n, dtype=np.int64)
    col = np.empty(n, dtype=np.int64)
    point = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    q = np.empty((n, f))  # columns < the map's n_coords are set
    qp = np.zeros((n, max_dim))
    dx = np.empty((n, f))
    off = np.empty(n, dtype=np.bool_)
    x = np.empty(f)
    size = 2
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    m = 0
    for i in range(n):
        g = map_group[map_rows[i]]
        if g < 0:
            return False, grp, col, point, grp[:0], q[:0], qp[:0], dx[:0], off[:0]
        grp[i] = g
        col[i] = map_column[map_rows[i]]
        nc = min(meta[g, 1], points.shape[1])  # columns beyond the given ones are zero
        h = g + 1
        for j in range(nc):
            h = (h ^ bits[i, j]) * 1099511628211
        slot = (h ^ (h >> 29)) & (size - 1)
        k = table[slot]
        while k != -1:
            r = first[k]
            same = grp[r] == g
            for j in range(nc):
                if not same:
                    break
                same = bits[r, j] == bits[i, j]
            if same:
                break
            slot = (slot + 1) & (size - 1)
            k = table[slot]
        if k != -1:
            point[i] = k
            continue
        table[slot] = m
        first[m] = i
        point[i] = m
        d, full = meta[g, 0], meta[g, 1]
        for j in range(full):
            c = order[g, j]
            v = points[i, c] if c < nc else 0.0
            dx[m, j] = 1.0
            if is_width[g, j]:  # rescale_width
                w = (WIDTH_MAX if v > WIDTH_MAX else v) / WIDTH_MIN
                small = w < 1e-10
                dx[m, j] = 0.0 if v > WIDTH_MAX else (1.0 if small else 1.0 / (1.0 + w)) / WIDTH_MIN
                v = w if small else math.log(1.0 + w)  # log(1+w) as SModelS, not log1p
            x[j] = v - delta[g, j]
        nonzero = 0
        for e in range(full):
            s = 0.0
            for j in range(full):
                s += x[j] * rotation[g, j, e]
            q[m, e] = s
            nonzero += abs(s) > NONZERO_TOL
            if e < d:
                qp[m, e] = s
        off[m] = nonzero > d
        m += 1
    return True, grp, col, point, grp[first[:m]], q[:m], qp[:m], dx[:m], off[:m]


@numba.njit(cache=True, inline="always")
def _interpolate_at(meta, transform, simplices, values, g, col, s, x, row):
    """``TxNameData.interpolate`` of map column `col` of triangulation `g` at the projected point
    x[row] in its simplex `s` (-1: outside, NaN): the value clamped from below to the smallest vertex
    value and whether it was clamped. Barycentric weights in einsum's two lanes (_dot_two_lanes)."""
    if s < 0:
        return np.nan, False
    d, k = meta[g, 0], meta[g, 2]
    t0 = meta[g, 3] + s * (d + 1) * d
    vertex = meta[g, 4] + s * (d + 1)
    total = 0.0
    value = 0.0
    floor = np.inf
    for i in range(d + 1):
        if i < d:
            even = 0.0
            odd = 0.0
            for j in range(d):
                term = transform[t0 + i * d + j] * (x[row, j] - transform[t0 + d * d + j])
                if j & 1:
                    odd += term
                else:
                    even += term
            w = even + odd
        else:
            w = 1.0 - total
        total += w
        y = values[meta[g, 5] + simplices[vertex + i] * k + col]
        value += w * y
        if y < floor or y != y:
            floor = y
    if value < floor:
        return floor, True
    return value, False


@numba.njit(cache=True, error_model="numpy")
def _interpolate_queries(grp, col, point, ugrp, simplex, q, qp, dx, off, order, rotation, meta, transform, simplices,
                         values, jacobian):
    """Values of every query (NaN outside, zero below ZERO_VALUE as ``_returnProjectedValue``) and,
    if `jacobian`, d value / d point (n, max_coords) per GeV, zero where NaN or clamped. For SModelS'
    off-plane estimate: the queries off the plane with a value (`off_q`), their values before the
    zeroing (`proj`), and per pair (`ugrp`, `simplex`, `q`, `qp`: the pairs of _transform_pairs)
    the distance `alpha` to the plane and where its probes start (`probe_start`, -1: none; probe j
    is qp moved by alpha along in-plane axis j)."""
    n, m, f, dm = len(grp), len(simplex), order.shape[1], qp.shape[1]
    rotation_flat = rotation.ravel()
    vals = np.empty(n)
    proj = np.empty(n)
    jac = np.zeros((n if jacobian else 0, f))
    off_q = np.empty(n, dtype=np.int64)
    alpha = np.zeros(m)
    probe_start = np.full(m, -1, dtype=np.int64)
    slope = np.empty(dm)
    n_off = n_probes = 0
    for i in range(n):
        p, g = point[i], grp[i]
        s = simplex[p]
        v, clamped = _interpolate_at(meta, transform, simplices, values, g, col[i], s, qp, p)
        proj[i] = v
        vals[i] = 0.0 if abs(v) < ZERO_VALUE else v
        if off[p] and v == v:
            off_q[n_off] = i
            n_off += 1
            if probe_start[p] < 0:
                probe_start[p] = n_probes
                n_probes += meta[g, 0]
        if not jacobian or v != v or clamped:
            continue
        # d value / d qp = sum over vertices a < d of (y_a - y_d) T^-1[a, :], then back through the
        # rotation and the width rescaling to the layout's columns.
        d, k, v0 = meta[g, 0], meta[g, 2], meta[g, 5]
        t0 = meta[g, 3] + s * (d + 1) * d
        vertex = meta[g, 4] + s * (d + 1)
        yd = values[v0 + simplices[vertex + d] * k + col[i]]
        for j in range(d):
            slope[j] = 0.0
        for a in range(d):
            dy = values[v0 + simplices[vertex + a] * k + col[i]] - yd
            for j in range(d):
                slope[j] += dy * transform[t0 + a * d + j]
        for c in range(meta[g, 1]):
            jac[i, order[g, c]] = _dot_two_lanes(slope, 0, rotation_flat, (g * f + c) * f, d) * dx[p, c]
    probe_tri = np.empty(n_probes, dtype=np.int64)
    probe_qp = np.empty((n_probes, dm))
    for p in range(m):
        start = probe_start[p]
        if start < 0:
            continue
        g = ugrp[p]
        d = meta[g, 0]
        sq = 0.0
        for e in range(d, meta[g, 1]):
            sq += q[p, e] * q[p, e]
        alpha[p] = math.sqrt(sq)
        for a in range(d):
            probe_tri[start + a] = g
            probe_qp[start + a] = qp[p]
            probe_qp[start + a, a] = qp[p, a] + alpha[p]
    return vals, proj, jac, off_q[:n_off].copy(), alpha, probe_start, probe_tri, probe_qp


@numba.njit(cache=True, error_model="numpy")
def _gradient_probes(off_q, grp, col, point, proj, qp, alpha, probe_start, probe_simplex, probe_qp, meta, transform,
                     simplices, values):
    """SModelS' ``_estimateExtrapolationError`` up to the two last probes, per off-plane query
    `off_q[t]`: the gradient g_j = (f(probe j) - f) / alpha, its norm, whether it has a NaN (a probe
    outside), and the probes qp +- step on the last in-plane axis (rows 2t, 2t + 1) with
    step = alpha sum_j g_j / |g| (SModelS' reused loop index, reproduced as is)."""
    n_off, dm = len(off_q), qp.shape[1]
    norm = np.empty(n_off)
    g_nan = np.zeros(n_off, dtype=np.bool_)
    moved_tri = np.empty(2 * n_off, dtype=np.int64)
    moved_qp = np.empty((2 * n_off, dm))
    grad = np.empty(dm)
    for t in range(n_off):
        i = off_q[t]
        p, g = point[i], grp[i]
        d, start = meta[g, 0], probe_start[p]
        sq = 0.0
        for j in range(d):
            pv = _interpolate_at(meta, transform, simplices, values, g, col[i], probe_simplex[start + j],
                                 probe_qp, start + j)[0]
            grad[j] = (pv - proj[i]) / alpha[p]
            sq += grad[j] * grad[j]
            g_nan[t] |= grad[j] != grad[j]
        norm[t] = math.sqrt(sq)
        step = 0.0
        for j in range(d):
            step += grad[j] / norm[t]
        step *= alpha[p]
        for r, sign in ((2 * t, 1.0), (2 * t + 1, -1.0)):
            moved_tri[r] = g
            moved_qp[r] = qp[p]
            moved_qp[r, d - 1] = qp[p, d - 1] + sign * step
    return norm, g_nan, moved_tri, moved_qp


@numba.njit(cache=True, error_model="numpy")
def _reject_extrapolations(off_q, grp, col, point, proj, alpha, norm, g_nan, moved_simplex, moved_qp, meta, transform,
                           simplices, values, vals, jac):
    """The end of ``_estimateExtrapolationError`` and ``_interpolateOutsideConvexHull``: the relative
    changes de+- = |f(qp +- step) - f| / f (1 if f == 0 and f+- != 0), de = de+ unless de- > de+,
    SModelS' early returns (alpha == 0, a NaN in g, |g| == 0: the first applies); where de is not
    below ACCEPT_ERRORS_UPTO, the value becomes NaN and its Jacobian row zero (in place)."""
    for t in range(len(off_q)):
        i = off_q[t]
        f0 = proj[i]
        de = 0.0
        for r in (2 * t, 2 * t + 1):
            f = _interpolate_at(meta, transform, simplices, values, grp[i], col[i], moved_simplex[r], moved_qp, r)[0]
            rel = (1.0 if f != 0.0 else 0.0) if f0 == 0.0 else abs(f - f0) / f0
            if r == 2 * t or rel > de:
                de = rel
        if norm[t] == 0.0:
            de = 0.0
        if g_nan[t]:
            de = np.nan
        if alpha[point[i]] == 0.0:
            de = 0.0
        if not de < ACCEPT_ERRORS_UPTO:
            vals[i] = np.nan
            if len(jac):
                jac[i] = 0.0
