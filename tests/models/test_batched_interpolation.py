"""BatchedInterpolator's compiled kernels against the numpy implementation they replaced.

The kernels sum in the order of that implementation (numpy ``einsum``/``sum``), so values and
Jacobians must be the same bits on every map row of the 1.2.4 and 3.0.0-extra databases, at grid
points, inside the hulls, off the planes of lower-dimensional maps (SModelS' extrapolation
estimate, accepted and rejected), outside, and with widths moved (3.0.0-extra has width maps).
The agreement with SModelS itself is tested in test_interpolation.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.models.protomodel.interpolation import (
    ACCEPT_ERRORS_UPTO, NONZERO_TOL, ZERO_VALUE, BatchedInterpolator, DatabaseInterpolators, GridInterpolator,
    build_database_interpolators, build_interpolators, map_layouts, rescale_width)
from tdmcmc.models.protomodel.point_location import PointLocator


class _NumpyBatched:
    """``BatchedInterpolator.evaluate`` as it was before the compiled kernels (commit 3f0de15):
    numpy passes over per-triangulation arrays padded to the largest dimensionality, without the
    sharing of work between queries at the same point (row-wise arithmetic: changes no bit)."""

    def __init__(self, interps: DatabaseInterpolators) -> None:
        self.interps = interps
        groups = interps.groups
        n, f = len(groups), max(g.n_coords for g in groups)
        self.max_coords, self.max_dim = f, max(g.dimensionality for g in groups)
        dm = self.max_dim
        self._dim = np.array([g.dimensionality for g in groups])
        self._k = np.array([g.k for g in groups])
        self._order = np.tile(np.arange(f), (n, 1))
        self._is_width = np.zeros((n, f), dtype=bool)
        self._delta = np.zeros((n, f))
        self._rotation = np.zeros((n, f, f))
        self._simplex_offset = np.zeros(n, dtype=np.int64)
        self._value_offset = np.zeros(n, dtype=np.int64)
        transforms, simplices, values = [], [], []
        for i, g in enumerate(groups):
            d, nc = g.dimensionality, g.n_coords
            self._order[i, :nc] = g._order
            self._is_width[i, :nc] = g._is_width
            self._delta[i, :nc] = g.delta_x
            self._rotation[i, :nc, :nc] = g.rotation
            t = np.zeros((len(g.simplices), dm + 1, dm))
            t[:, :d, :d] = g._transform[:, :d]
            t[:, dm, :d] = g._transform[:, d]
            s = np.empty((len(g.simplices), dm + 1), dtype=np.int64)
            s[:, :d] = g.simplices[:, :d]
            s[:, d:] = g.simplices[:, d:d + 1]
            self._simplex_offset[i] = sum(len(x) for x in simplices)
            self._value_offset[i] = sum(x.size for x in values)
            transforms.append(t)
            simplices.append(s)
            values.append(g.values.ravel())
        self._transform = np.concatenate(transforms)
        self._simplices = np.concatenate(simplices)
        self._values = np.concatenate(values)
        self._locator = PointLocator(groups)

    def _locate(self, grp, qp):
        dm = self.max_dim
        local = self._locator.find(grp, qp)
        found = local >= 0
        s = np.where(found, local, 0) + self._simplex_offset[grp]
        t = self._transform[s]
        bary = np.einsum("nij,nj->ni", t[:, :dm], qp - t[:, dm])
        weights = np.concatenate([bary, 1.0 - bary.sum(axis=1, keepdims=True)], axis=1)
        base = self._value_offset[grp][:, None] + self._simplices[s] * self._k[grp][:, None]
        return found, t, weights, base

    def _column_values(self, col, found, weights, base):
        yv = self._values[base + col[:, None]]
        vals = np.sum(weights * yv, axis=1)
        floor = yv.min(axis=1)
        clamped = vals < floor
        return np.where(found, np.where(clamped, floor, vals), np.nan), yv, clamped

    def _extrapolation_ok(self, grp, col, q, qp, proj):
        n, dm = len(col), self.max_dim
        dim = self._dim[grp]
        alpha = np.sqrt(np.sum(np.where(np.arange(q.shape[1]) < dim[:, None], 0.0, q) ** 2, axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            probes = np.repeat(qp[:, None, :], dm, axis=1) + alpha[:, None, None] * np.eye(dm)[None]
            probes = np.where(np.arange(dm)[None, :, None] < dim[:, None, None], probes, qp[:, None, :])
            found, _, weights, base = self._locate(np.repeat(grp, dm), probes.reshape(-1, dm))
            pv = self._column_values(np.repeat(col, dm), found, weights, base)[0]
            g = np.where(np.arange(dm) < dim[:, None], (pv.reshape(n, dm) - proj[:, None]) / alpha[:, None], 0.0)
            norm = np.sqrt(np.sum(g ** 2, axis=1))
            step = np.sum(g / norm[:, None], axis=1) * alpha
            moved = np.repeat(qp[None], 2, axis=0)
            moved[0, np.arange(n), dim - 1] += step
            moved[1, np.arange(n), dim - 1] -= step
            found, _, weights, base = self._locate(np.tile(grp, 2), moved.reshape(-1, dm))
            f = self._column_values(np.tile(col, 2), found, weights, base)[0].reshape(2, n)
            rel = np.where(proj == 0.0, (f != 0.0).astype(float), np.abs(f - proj) / proj)
            de = np.where(rel[1] > rel[0], rel[1], rel[0])
            de = np.where(norm == 0.0, 0.0, de)
            de = np.where(np.isnan(g).any(axis=1), np.nan, de)
            de = np.where(alpha == 0.0, 0.0, de)
            return de < ACCEPT_ERRORS_UPTO

    def evaluate(self, map_rows, points):
        """Values (n,), Jacobian (n, max_coords) and the number of off-plane queries with a
        projected value and how many of them were rejected."""
        pts = np.zeros((len(map_rows), self.max_coords))
        pts[:, :points.shape[1]] = points
        grp, col, dm = self.interps.map_group[map_rows], self.interps.map_column[map_rows], self.max_dim
        x = np.take_along_axis(pts, self._order[grp], axis=1)
        dx = np.ones_like(x)
        wmask = self._is_width[grp]
        x[wmask], dx[wmask] = rescale_width(x[wmask])
        q = np.einsum("nf,nfe->ne", x - self._delta[grp], self._rotation[grp])
        dim = self._dim[grp]
        qp = np.where(np.arange(dm) < dim[:, None], q[:, :dm], 0.0)
        found, t, weights, base = self._locate(grp, qp)
        vals, yv, clamped = self._column_values(col, found, weights, base)
        off = np.flatnonzero((np.sum(np.abs(q) > NONZERO_TOL, axis=1) > dim) & ~np.isnan(vals))
        ok = self._extrapolation_ok(grp[off], col[off], q[off], qp[off], vals[off])
        vals[off[~ok]] = np.nan
        vals = np.where(np.abs(vals) < ZERO_VALUE, 0.0, vals)
        slope = np.einsum("ni,nij->nj", yv[:, :dm] - yv[:, dm:], t[:, :dm])
        jac_flat = np.einsum("nj,nfj->nf", slope, self._rotation[grp][:, :, :dm]) * dx
        jac_flat[np.isnan(vals) | clamped] = 0.0
        jac = np.zeros_like(jac_flat)
        np.put_along_axis(jac, self._order[grp], jac_flat, axis=1)
        return vals, jac, len(off), int((~ok).sum())


def _queries(compiled, built, width: int, rng):
    """Every map row at 3 grid points, 3 points next to grid points (masses moved by ~1e-3 GeV),
    and 6 each of: convex combinations of 3 data points (in the hull), those scaled by U(0.9, 1.1)
    (off the planes of lower-dimensional maps, often outside), moved by N(0, 5 GeV) in the masses,
    and with the widths scaled by 10^U(-3, 3) (width maps). Shuffled, so that maps are mixed."""
    rows, points = [], []
    for r in np.flatnonzero(built.map_group >= 0):
        data = compiled.arrays.map_coords[r]
        layout = built.groups[built.map_group[r]].layout
        is_width = np.array([c.quantity == "width" for c in layout]) if layout else np.zeros(data.shape[1], bool)
        conv = np.einsum("nj,njc->nc", rng.dirichlet(np.ones(3), 6), data[rng.integers(0, len(data), (6, 3))])
        near = data[rng.integers(0, len(data), 3)] + rng.normal(0.0, 1e-3, (3, data.shape[1])) * ~is_width
        widths = conv.copy()
        widths[:, is_width] *= 10.0 ** rng.uniform(-3, 3, (6, is_width.sum()))
        p = np.concatenate([data[rng.integers(0, len(data), 3)], near, conv, conv * rng.uniform(0.9, 1.1, (6, 1)),
                            conv + rng.normal(0.0, 5.0, conv.shape) * ~is_width] + ([widths] if is_width.any() else []))
        full = np.zeros((len(p), width))
        full[:, :p.shape[1]] = p
        rows.append(np.full(len(p), r))
        points.append(full)
    perm = rng.permutation(sum(len(r) for r in rows))
    return np.concatenate(rows)[perm], np.concatenate(points)[perm]


@pytest.mark.parametrize("database", ["db124_compiled", "db300_compiled"])
def test_same_bits_as_the_numpy_implementation(database, request):
    compiled = request.getfixturevalue(database)
    built = build_database_interpolators(compiled)
    assert not built.failed
    batched, reference = BatchedInterpolator(built), _NumpyBatched(built)
    rows, points = _queries(compiled, built, batched.max_coords, np.random.default_rng(3))
    ev = batched.evaluate(rows, points, jacobian=True)
    vals, jac, n_off, n_rejected = reference.evaluate(rows, points)
    np.testing.assert_array_equal(ev.values, vals)  # NaN where NaN, every other value bit for bit
    np.testing.assert_array_equal(ev.jacobian, jac)
    np.testing.assert_array_equal(ev.inside, ~np.isnan(vals))
    np.testing.assert_array_equal(batched.evaluate(rows, points).values, vals)
    # Every path is exercised: outside, off the plane accepted and rejected, widths.
    assert 0.05 < np.isnan(vals).mean() < 0.5, np.isnan(vals).mean()
    assert n_off > 1000 and 0.05 * n_off < n_rejected < 0.95 * n_off, (n_off, n_rejected)
    if database == "db300_compiled":
        assert sum(g._is_width.any() for g in built.groups) > 100
    # One query at a time gives the same bits (no state shared between the queries of a batch).
    pick = np.random.default_rng(4).choice(len(rows), 300, replace=False)
    alone = [batched.evaluate(rows[i:i + 1], points[i:i + 1], jacobian=True) for i in pick]
    np.testing.assert_array_equal(np.concatenate([a.values for a in alone]), vals[pick])
    np.testing.assert_array_equal(np.concatenate([a.jacobian for a in alone]), jac[pick])


def test_empty_and_unknown_rows(db124_compiled):
    arrays = db124_compiled.arrays
    built = build_interpolators(arrays.map_coords[:3], arrays.map_values[:3], map_layouts(db124_compiled)[:3])
    batched = BatchedInterpolator(built)
    ev = batched.evaluate(np.zeros(0, dtype=np.int64), np.zeros((0, batched.max_coords)), jacobian=True)
    assert ev.values.shape == (0,) and ev.jacobian.shape == (0, batched.max_coords)
    broken = DatabaseInterpolators(built.groups, np.array([0, -1, 1]), built.map_column, {})
    with pytest.raises(ValueError, match=r"map rows \[1\] have no interpolator"):
        BatchedInterpolator(broken).evaluate(np.array([0, 1]), np.full((2, batched.max_coords), 100.0))


def test_map_with_fewer_points_than_coordinates(db300_compiled):
    """SModelS' full SVD gives a square V even for a map with fewer points than coordinates; its
    off-line directions decide the off-plane estimate. Two points on the line m1 = m1', m2 = m2' =
    50 GeV with values 1 and 2: at m1 = 140 GeV the value is 1.4, the slope along the line (q
    coordinate, 100 sqrt(2) GeV long) 1/(100 sqrt(2)), so moving m2' off the line by delta gives
    SModelS' error estimate delta / (100 sqrt(2) 1.4): accepted below 0.05, i.e. delta < 9.9 GeV."""
    coords = np.array([[100.0, 50.0, 100.0, 50.0], [200.0, 50.0, 200.0, 50.0]])
    interp = GridInterpolator(coords, np.array([1.0, 2.0]))
    assert interp.rotation.shape == (4, 4) and interp.dimensionality == 1
    deltas = np.array([0.0, 5.0, 9.8, 10.0, 20.0])
    points = np.column_stack([np.full(5, 140.0), np.full(5, 50.0), np.full(5, 140.0), 50.0 + deltas])
    expected = np.where(deltas / (100.0 * np.sqrt(2.0) * 1.4) < ACCEPT_ERRORS_UPTO, 1.4, np.nan)
    np.testing.assert_allclose(interp(points)[:, 0], expected, rtol=1e-12)
    batched = BatchedInterpolator(build_interpolators([coords], [np.array([1.0, 2.0])], [None]))
    np.testing.assert_allclose(batched.evaluate(np.zeros(5, dtype=np.int64), points).values, expected, rtol=1e-12)
    # The real such map of 3.0.0-extra builds into the batch and agrees with its own interpolator.
    arrays = db300_compiled.arrays
    row = next(i for i, c in enumerate(arrays.map_coords) if len(c) < c.shape[1])
    layouts = map_layouts(db300_compiled)
    real = GridInterpolator(arrays.map_coords[row], arrays.map_values[row], layouts[row])
    assert real.rotation.shape == (real.n_coords, real.n_coords)
    built = build_interpolators([arrays.map_coords[row]], [arrays.map_values[row]], [layouts[row]])
    pts = arrays.map_coords[row].mean(axis=0) * np.array([[1.0], [1.02], [0.95]])
    np.testing.assert_allclose(BatchedInterpolator(built).evaluate(np.zeros(3, dtype=np.int64), pts).values,
                               real(pts)[:, 0], rtol=1e-12)
