"""The compiled point location equals scipy's one-point ``find_simplex(point, tol=1e-6)`` (what
SModelS 3.2.1 calls) on real 1.2.4 triangulations, for interior points, points on and next to
faces and vertices, and points just and far outside the hull.

Coverage here (default suite): every 12th distinct triangulation of the 1.2.4 database plus the
two largest with flat simplices, 10^4 points each (2000 in triangulations with flat simplices,
where scipy's own brute-force fallback makes the reference slow). ``tests/benchmarks/
bench_point_location.py`` runs the same check on all 383 triangulations with 10^4 points each.
"""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.models.protomodel.interpolation import SIMPLEX_TOL, build_database_interpolators
from tdmcmc.models.protomodel.point_location import PointLocator


def probe_points(g, n: int, rng: np.random.Generator) -> np.ndarray:
    """Projected points (n, dim) of one triangulation: interior, on faces and vertices, within
    +-tol of faces, just outside and far outside the hull, and a few NaN."""
    d = g.dimensionality
    data = g._line[:, None] if g._tri is None else g._tri.points
    simplices = g.simplices
    s = simplices[rng.integers(0, len(simplices), n)]
    w = rng.dirichlet(np.ones(d + 1), n)
    kind = rng.integers(0, 7, n)
    w[kind == 1, 0] = 0.0  # on the face opposite vertex 0
    w[kind == 2] = np.eye(d + 1)[rng.integers(0, d + 1, (kind == 2).sum())]  # vertices
    near = kind == 3  # within a few tol of the face, either side
    w[near, 0] = rng.choice([-3, -1, -0.5, 0.5, 1, 3], near.sum()) * SIMPLEX_TOL
    w /= w.sum(axis=1, keepdims=True)
    pts = np.einsum("nj,njc->nc", w, data[s])
    centre = data.mean(axis=0)
    out = kind == 4  # pushed out from the centre: mostly just outside the hull
    pts[out] = centre + (pts[out] - centre) * rng.uniform(1.0, 1.05, (out.sum(), 1))
    far = kind == 5
    pts[far] = centre + (pts[far] - centre) * rng.uniform(1.5, 4.0, (far.sum(), 1))
    pts[rng.random(n) < 1e-3] = np.nan
    return pts


def check_against_scipy(groups, n_plain: int, n_flat: int, seed: int) -> int:
    """Asserts equal simplices for every probe point; returns the number of points checked."""
    rng = np.random.default_rng(seed)
    locator = PointLocator(groups)
    checked = 0
    for i, g in enumerate(groups):
        n = n_flat if g._walk_dependent else n_plain
        qp = probe_points(g, n, rng)
        ours = locator.find(np.full(n, i), qp)
        if g._tri is None:  # Delaunay1D, SModelS' own class: intervals (x_i, x_i+1]
            x, line = qp[:, 0], g._line
            s = np.searchsorted(line, x, side="left") - 1
            s = np.where((s == -1) & (np.abs(x - line[0]) < SIMPLEX_TOL), 0, s)
            s = np.where((s == len(line) - 1) & (np.abs(x - line[-1]) < SIMPLEX_TOL), len(line) - 2, s)
            ref = np.where((s < 0) | (s > len(line) - 2) | np.isnan(x), -1, s)
        else:
            ref = np.array([g._tri.find_simplex(p, tol=SIMPLEX_TOL) for p in qp])
        bad = np.flatnonzero(ours != ref)
        assert not bad.size, (i, g.dimensionality, g._walk_dependent, qp[bad[:3]], ours[bad[:3]], ref[bad[:3]])
        inside = (ref >= 0).mean()
        assert 0.2 < inside < 0.95, inside  # both decisions are exercised
        checked += n
    return checked


@pytest.fixture(scope="module")
def groups124(db124_compiled):
    return build_database_interpolators(db124_compiled).groups


def test_same_simplex_as_scipy_sampled(groups124):
    flat = [i for i, g in enumerate(groups124) if g._walk_dependent]
    largest = sorted(flat, key=lambda i: len(groups124[i].simplices))[-2:]
    chosen = sorted(set(range(0, len(groups124), 12)) | set(largest))
    sample = [groups124[i] for i in chosen]
    assert any(g._walk_dependent for g in sample) and any(g._tri is None for g in groups124)
    assert check_against_scipy(sample, 10_000, 2_000, seed=11) > 200_000


def test_one_dimensional_maps(groups124):
    one_d = [g for g in groups124 if g._tri is None]
    assert one_d
    check_against_scipy(one_d, 10_000, 10_000, seed=12)


def test_batched_queries_in_mixed_order(groups124):
    """One call over many triangulations, queries interleaved, equals one call per triangulation."""
    rng = np.random.default_rng(13)
    sample = list(groups124[::20])
    locator = PointLocator(sample)
    dm = max(g.dimensionality for g in sample)
    tri = rng.integers(0, len(sample), 3000)
    qp = np.zeros((len(tri), dm))
    for i, g in enumerate(sample):
        sel = tri == i
        qp[sel, :g.dimensionality] = probe_points(g, int(sel.sum()), rng)
    got = locator.find(tri, qp)
    for i, g in enumerate(sample):
        sel = tri == i
        np.testing.assert_array_equal(got[sel], PointLocator([g]).find(np.zeros(sel.sum(), np.int64),
                                                                        qp[sel, :g.dimensionality]))
