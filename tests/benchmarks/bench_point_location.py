"""Point location on every triangulation of the 1.2.4 database: the compiled locator against
scipy's one-point ``find_simplex(point, tol=1e-6)`` (SModelS' call), 10^4 probe points per
triangulation (interior, faces, vertices, +-tol of faces, outside, NaN; see
tests/models/test_point_location.py), all simplices equal; and the time per point of both.
Run: ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_point_location.py``.
"""

from __future__ import annotations

import time

import numpy as np

from tdmcmc.models.database.compiled import load_compiled
from tdmcmc.models.protomodel.interpolation import SIMPLEX_TOL, build_database_interpolators
from tdmcmc.models.protomodel.point_location import PointLocator
from tests.models.test_point_location import check_against_scipy, probe_points


def test_point_location_all_maps(db124):
    groups = build_database_interpolators(load_compiled(db124)).groups
    t = time.perf_counter()
    n = check_against_scipy(groups, 10_000, 10_000, seed=21)
    print(f"\n{len(groups)} triangulations ({sum(g._walk_dependent for g in groups)} with flat simplices), "
          f"{n} points: every simplex equal to scipy's one-point call ({time.perf_counter() - t:.0f} s)")
    rng = np.random.default_rng(22)
    t = time.perf_counter()
    locator = PointLocator(groups)
    print(f"PointLocator build (all triangulations, grids included): {time.perf_counter() - t:.2f} s")
    for flat in (False, True):
        sel = [i for i, g in enumerate(groups) if g._walk_dependent == flat and g._tri is not None]
        pts = {i: probe_points(groups[i], 200, rng) for i in sel}
        dm = max(groups[i].dimensionality for i in sel)
        tri = np.repeat(sel, 200)
        qp = np.zeros((len(tri), dm))
        for i in sel:
            qp[tri == i, :groups[i].dimensionality] = pts[i]
        locator.find(tri, qp)
        t = time.perf_counter()
        locator.find(tri, qp)
        ours = (time.perf_counter() - t) / len(tri)
        t = time.perf_counter()
        for i in sel:
            for p in pts[i]:
                groups[i]._tri.find_simplex(p, tol=SIMPLEX_TOL)
        ref = (time.perf_counter() - t) / len(tri)
        label = "with flat simplices" if flat else "without flat simplices"
        print(f"{len(sel)} triangulations {label}: compiled {1e6 * ours:.2f} us/point, scipy one-point "
              f"{1e6 * ref:.1f} us/point (ratio {ref / ours:.0f})")
