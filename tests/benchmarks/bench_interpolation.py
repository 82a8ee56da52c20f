"""Interpolation benchmark on the full 1.2.4 database.

Figures: triangulation build time with and without grouping maps that share coordinates (and how
many triangulations grouping saves), pickle size/load time, interpolation time for 1 and 64 points
in every triangulation (a protomodel touches a subset of them, so "all groups" is an upper
bound), with and without the Jacobian, and the PyTensor Op (forward + gradient) on a large map.
Targets (later benchmarks): one protomodel over the whole database <= 2 ms, 64 protomodels
batched <= 20 ms, for the whole prediction, of which interpolation is a part.
Run: ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_interpolation.py``.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np

from tdmcmc.models.database.compiled import load_compiled
from tdmcmc.models.protomodel.interpolation import BatchedInterpolator, build_database_interpolators

TARGET_ONE_MS, TARGET_BATCH_MS = 2.0, 20.0


def _best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _points(data: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points near the data (GeV): convex combinations of 3 data points, some moved off the hull."""
    idx = rng.integers(0, len(data), (n, 3))
    pts = np.einsum("nj,njc->nc", rng.dirichlet(np.ones(3), n), data[idx])
    return pts * rng.uniform(0.97, 1.03, (n, 1))


def test_interpolation_benchmark(db124: Path) -> None:
    compiled = load_compiled(db124)
    n_maps = len(compiled.arrays.map_coords)
    t = time.perf_counter()
    grouped = build_database_interpolators(compiled, group=True)
    t_grouped = time.perf_counter() - t
    t = time.perf_counter()
    single = build_database_interpolators(compiled, group=False)
    t_single = time.perf_counter() - t
    blob = pickle.dumps(grouped, protocol=pickle.HIGHEST_PROTOCOL)
    t_unpickle = _best(lambda: pickle.loads(blob), 3)
    n_walk = sum(g._walk_dependent for g in grouped.groups)
    print(f"\n{n_maps} maps -> {len(grouped.groups)} triangulations grouped ({len(single.groups)} ungrouped, "
          f"{len(single.groups) / len(grouped.groups):.2f}x fewer); {n_walk} have flat simplices")
    print(f"build: grouped {t_grouped:.1f} s, ungrouped {t_single:.1f} s (ratio {t_single / t_grouped:.2f}); "
          f"pickle {len(blob) / 1e6:.0f} MB, unpickle {t_unpickle:.2f} s")

    rng = np.random.default_rng(0)
    groups = grouped.groups
    coords = [compiled.arrays.map_coords[int(np.flatnonzero(grouped.map_group == i)[0])] for i in range(len(groups))]
    pts1 = [_points(c, 1, rng) for c in coords]
    pts64 = [_points(c, 64, rng) for c in coords]
    for label, pts in (("1 point", pts1), ("64 points", pts64)):
        t_val = _best(lambda: [g(p) for g, p in zip(groups, pts)])
        t_jac = _best(lambda: [g.evaluate(p, jacobian=True) for g, p in zip(groups, pts)])
        target = TARGET_ONE_MS if label == "1 point" else TARGET_BATCH_MS
        print(f"{label} in each of {len(groups)} triangulations: values {1e3 * t_val:.1f} ms, "
              f"values+Jacobian {1e3 * t_jac:.1f} ms ({1e6 * t_jac / len(groups):.0f} us per triangulation; "
              f"whole-prediction target {target:.0f} ms, ratio {1e3 * t_jac / target:.1f})")

    t = time.perf_counter()
    batched = BatchedInterpolator(grouped)
    print(f"BatchedInterpolator build {time.perf_counter() - t:.2f} s")
    first_rows = np.array([int(np.flatnonzero(grouped.map_group == i)[0]) for i in range(len(groups))])
    for label, pts in (("1 point", pts1), ("64 points", pts64)):
        n_per = len(pts[0])
        rows = np.repeat(first_rows, n_per)
        flat = np.zeros((len(rows), batched.max_coords))
        for i, p in enumerate(pts):
            flat[i * n_per:(i + 1) * n_per, :p.shape[1]] = p
        t_b = _best(lambda: batched.evaluate(rows, flat, jacobian=True))
        target = TARGET_ONE_MS if label == "1 point" else TARGET_BATCH_MS
        print(f"batched, {label} in each of {len(groups)} triangulations ({len(rows)} queries): values+Jacobian "
              f"{1e3 * t_b:.1f} ms (whole-prediction target {target:.0f} ms, ratio {1e3 * t_b / target:.1f})")
        in_plane = ~np.array([bool(g._walk_dependent) for g in groups])
        sel = np.repeat(in_plane, n_per)
        t_r = _best(lambda: batched.evaluate(rows[sel], flat[sel], jacobian=True))
        print(f"  of which the {in_plane.sum()} triangulations without flat simplices: {1e3 * t_r:.1f} ms")

    import pytensor
    import pytensor.tensor as pt

    from tdmcmc.models.protomodel.interpolation_op import interpolate, interpolate_rows

    i_big = max(range(len(groups)), key=lambda i: len(groups[i].simplices))
    big = groups[i_big]
    x = pt.matrix("x", dtype="float64")
    vals, _ = interpolate(big, x)
    fwd = pytensor.function([x], vals)
    both = pytensor.function([x], [vals, pytensor.grad(vals.sum(), x)])
    for n in (1, 64):
        p = _points(coords[i_big], n, rng)
        fwd(p), both(p)  # compile/warm
        print(f"Op on the largest triangulation ({len(big.simplices)} simplices, k={big.k}), batch {n}: "
              f"forward {1e6 * _best(lambda: fwd(p), 20):.0f} us, "
              f"forward+grad {1e6 * _best(lambda: both(p), 20):.0f} us")

    r_var = pt.vector("rows", dtype="int64")
    y = pt.matrix("y", dtype="float64")
    vals, _ = interpolate_rows(batched, r_var, y)
    both = pytensor.function([r_var, y], [vals, pytensor.grad(vals.sum(), y)])
    rows = np.repeat(first_rows, 64)
    flat = np.zeros((len(rows), batched.max_coords))
    for i, p in enumerate(pts64):
        flat[i * 64:(i + 1) * 64, :p.shape[1]] = p
    both(rows, flat)
    print(f"interpolate_rows Op, {len(rows)} queries: forward+grad {1e3 * _best(lambda: both(rows, flat)):.1f} ms")
