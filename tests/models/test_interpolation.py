"""SModelS map interpolation: against SModelS 3.2.1 itself, scipy, finite differences; the Op.

The SModelS numbers come from ``data/smodels_interpolation.json`` (Python 3.12, numpy 2.5) and
``data/smodels_interpolation_py311.json`` (Python 3.11, numpy 2.4: the oracle's environment), made
by ``data/make_smodels_interpolation_fixture.py`` with SModelS 3.2.1 on copies of the real maps;
each is compared with the ``arithmetic`` that reproduces its environment.
"""

from __future__ import annotations

import json
import math
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import LinearNDInterpolator
from scipy.linalg import svd
from threadpoolctl import threadpool_limits

from tdmcmc.models.database.maps import Coordinate
from tdmcmc.models.protomodel.interpolation import (
    DEFAULT_ARITHMETIC, BatchedInterpolator, DegenerateMapError, GridInterpolator, build_interpolators,
    fused_multiply_add, map_layouts, rescale_width)

DATA = Path(__file__).parent / "data"
FIXTURE = json.loads((DATA / "smodels_interpolation.json").read_text())
# arithmetic -> SModelS 3.2.1 run in the environment it reproduces (same seed, points and maps)
FIXTURES = {"py312-numpy2.5": FIXTURE,
            "py311-numpy2.4": json.loads((DATA / "smodels_interpolation_py311.json").read_text())}
CASES = [(a, e) for a, f in FIXTURES.items() for e in f["maps"]]
# SModelS rounds every interpolated value to 6 significant digits (TxNameData.interpolate); we
# do not, so values may differ by up to half a unit in the 6th digit.
ROUNDING = 5.0e-6


def _round6(x: float) -> float:
    return x if x == 0.0 else round(x, -int(math.floor(math.log10(abs(x)))) + 5)


def _grids(compiled, entry: dict):
    res = next(r for r in compiled.database.results if str(r.path).endswith(entry["folder"]))
    key = {"observed": "upper_limits", "expected": "expected_upper_limits", "efficiency": "efficiency_map"}
    grids = []
    for d in entry["datasets"]:
        ds = next(x for x in res.datasets if x.data_id == d["dataset"])
        tx = next(t for t in ds.txnames if t.name == entry["txname"])
        grids.append(getattr(tx, key[entry["kind"]]))
    return grids


@pytest.fixture(scope="module")
def compiled_dbs(request):
    return {"smodels-db": request.getfixturevalue("db124_compiled"),
            "smodels-db-300-extra": request.getfixturevalue("db300_compiled")}


def _entry_id(entry: dict) -> str:
    return f"{entry['txname']}-{entry['kind']}-{entry['folder'].split('/')[-1]}"


@pytest.mark.parametrize(("arithmetic", "entry"), CASES, ids=[f"{a}-{_entry_id(e)}" for a, e in CASES])
def test_matches_smodels(arithmetic, entry, compiled_dbs):
    grids = _grids(compiled_dbs[entry["database"]], entry)
    # All signal regions of the entry share one triangulation.
    interp = GridInterpolator(grids[0].coords, np.stack([g.values for g in grids], axis=1), grids[0].layout,
                              arithmetic)
    assert interp.dimensionality == entry["dimensionality"]
    # The bits the triangulation is built from: SModelS' translation and rotated data points.
    np.testing.assert_array_equal(interp.delta_x, [float.fromhex(v) for v in entry["delta_x"]])
    if entry["rotated_points"] is not None:
        rotated = np.array([[float.fromhex(v) for v in p] for p in entry["rotated_points"]])
        np.testing.assert_array_equal(interp.rotate(grids[0].coords)[:, :interp.dimensionality], rotated)
    points = np.array(entry["points"])
    ref = np.array([[np.nan if v is None else v for v in d["values"]] for d in entry["datasets"]]).T
    ours = interp(points)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))  # same None decisions
    assert np.isnan(ref).mean() > 0.05 and (~np.isnan(ref)).mean() > 0.5  # the fixture tests both
    both = ~np.isnan(ref)
    np.testing.assert_allclose(ours[both], ref[both], rtol=ROUNDING, atol=0)
    rounded = np.array([_round6(v) for v in ours[both]])
    assert np.mean(rounded == ref[both]) > 0.98  # exact after SModelS' rounding, up to ties


def test_environments_differ_on_tie_cells(compiled_dbs):
    """The two fixtures disagree (other diagonals of tie cells, other delta_x with widths), so
    each arithmetic is tested against something only it reproduces; the default is the oracle's."""
    assert DEFAULT_ARITHMETIC == "py311-numpy2.4"
    differing = 0
    for a, b in zip(FIXTURES["py312-numpy2.5"]["maps"], FIXTURES["py311-numpy2.4"]["maps"]):
        assert a["points"] == b["points"]
        for da, db in zip(a["datasets"], b["datasets"]):
            differing += sum(x is None or y is None or abs(x - y) > ROUNDING * abs(y)
                             for x, y in zip(da["values"], db["values"]) if x != y)
    assert differing > 30  # 66 of 3474 values (TChiQ, TDTM2F, T6WW, TChiWZ)


def test_fused_multiply_add_is_exact():
    """Against rational arithmetic: one rounding of a*b + c, including near-cancellation."""
    rng = np.random.default_rng(11)
    n = 5000
    a = rng.normal(size=n) * 10 ** rng.uniform(-3, 4, n)
    b = rng.normal(size=n) * 10 ** rng.uniform(-3, 1, n)
    c = -a * b * (1 + rng.normal(size=n) * 10 ** rng.uniform(-17, -1, n))  # a*b + c cancels
    c[::3] = rng.normal(size=len(c[::3])) * 10 ** rng.uniform(-3, 4, len(c[::3]))
    exact = np.array([float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(a, b, c)])
    np.testing.assert_array_equal(fused_multiply_add(a, b, c), exact)
    assert np.mean(exact != a * b + c) > 0.3  # the single rounding matters on these inputs


def test_grouped_columns_equal_single_maps(compiled_dbs):
    entry = next(e for e in FIXTURE["maps"] if len(e["datasets"]) > 2)
    grids = _grids(compiled_dbs[entry["database"]], entry)
    points = np.array(entry["points"])
    grouped = GridInterpolator(grids[0].coords, np.stack([g.values for g in grids], axis=1), grids[0].layout)
    for c, grid in enumerate(grids):
        single = GridInterpolator(grid.coords, grid.values, grid.layout)
        np.testing.assert_allclose(grouped(points)[:, c], single(points)[:, 0], rtol=1e-13, atol=0)


def test_against_scipy_linear_nd(db124_compiled):
    """scipy's LinearNDInterpolator on SModelS' rotated data points, at points inside the hull."""
    entry = next(e for e in FIXTURE["maps"] if e["txname"] == "T6WW")
    grid = _grids(db124_compiled, entry)[0]
    interp = GridInterpolator(grid.coords, grid.values, grid.layout)
    d = interp.dimensionality
    rotated = interp.rotate(grid.coords)[:, :d]
    with threadpool_limits(limits=1, user_api="blas"):  # scipy's per-simplex LU, see interpolation.py
        reference = LinearNDInterpolator(rotated, grid.values)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(grid.coords), (400, 3))
    points = np.einsum("nj,njc->nc", rng.dirichlet(np.ones(3), 400), grid.coords[idx])
    loc = interp.locate(points)
    # Away from faces the containing simplex is unique, whichever walk finds it.
    clear = loc.inside & (loc.weights.min(axis=1) > 1e-3)
    assert clear.sum() > 200
    np.testing.assert_allclose(interp(points[clear])[:, 0], reference(interp.rotate(points[clear])[:, :d]),
                               rtol=1e-10)


def test_rotation_matches_full_svd_and_row_products(db124_compiled):
    """The economic SVD and the per-column products give SModelS' bits (full SVD, per-row dot
    of the numpy installed here, 2.5)."""
    arrays = db124_compiled.arrays
    for i in range(0, len(arrays.map_coords), 97):
        coords = arrays.map_coords[i]
        interp = GridInterpolator(coords, arrays.map_values[i], arithmetic="py312-numpy2.5")
        m = coords - interp.delta_x
        v_full = svd(m[::int(math.ceil(len(m) / 2000))])[2].T
        np.testing.assert_array_equal(interp.rotation, v_full)
        rows = np.array([np.dot(row.tolist(), v_full) for row in m[:200]])
        np.testing.assert_array_equal(interp.rotate(coords[:200]), rows)


@pytest.mark.parametrize("txname", ["T6WW", "TDTM2F", "TChiQ"])
def test_jacobian_matches_finite_differences(txname, compiled_dbs):
    entry = next(e for e in FIXTURE["maps"] if e["txname"] == txname)
    grids = _grids(compiled_dbs[entry["database"]], entry)
    interp = GridInterpolator(grids[0].coords, np.stack([g.values for g in grids], axis=1), grids[0].layout)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, len(grids[0].coords), (300, 3))
    points = np.einsum("nj,njc->nc", rng.dirichlet(np.ones(3), 300), grids[0].coords[idx])
    loc = interp.locate(points)
    points = points[loc.inside & (loc.weights.min(axis=1) > 1e-2)][:40]
    assert len(points) >= 10
    ev = interp.evaluate(points, jacobian=True)
    widths = np.array([c.quantity == "width" for c in grids[0].layout])
    # Steps small against the simplex size (masses: 1e-3 GeV; widths: 1e-4 relative, since the
    # map is linear in log(width)); central differences of a linear function are exact up to
    # rounding, so 1e-5 relative is tight.
    for j in range(points.shape[1]):
        h = points[:, j] * 1e-4 if widths[j] else np.full(len(points), 1e-3)
        up, down = points.copy(), points.copy()
        up[:, j] += h
        down[:, j] -= h
        fd = (interp(up) - interp(down)) / (2 * h[:, None])
        scale = np.abs(ev.jacobian).max(axis=2)  # per point and map
        np.testing.assert_allclose(ev.jacobian[:, :, j], fd, atol=1e-5 * scale.max() + 1e-300, rtol=1e-5)


def _plane_map():
    """A symmetric-branch map [[m1, m2], [m1, m2]]: a 2-D plane in 4-D, linear values."""
    rng = np.random.default_rng(3)
    m1 = rng.uniform(100, 1000, 300)
    m2 = rng.uniform(0, 1, 300) * m1
    coords = np.stack([m1, m2, m1, m2], axis=1)
    values = np.stack([3.0 * m1 - m2 + 10.0, np.full(300, 2.0)], axis=1)
    return GridInterpolator(coords, values), coords, values


def test_linear_map_is_reproduced_and_off_plane_rule():
    interp, coords, _ = _plane_map()
    assert interp.dimensionality == 2 and interp.full_dimensionality == 4
    p = np.array([[500.0, 200.0, 500.0, 200.0]])
    np.testing.assert_allclose(interp(p), [[3 * 500 - 200 + 10, 2.0]], rtol=1e-12)
    # Off the plane SModelS returns the projected value when its error estimate is below 5 %.
    # 10 GeV of asymmetry: 3.2 (slope) * 14 GeV (distance) / 1310 = 3 % -> accepted.
    off = np.array([[510.0, 200.0, 490.0, 200.0]])
    np.testing.assert_allclose(interp(off), interp(p), rtol=1e-12)
    # 60 GeV: about 20 % for the linear column -> None; the constant column has zero gradient,
    # hence zero estimated error -> accepted (the decision is per map).
    far = np.array([[560.0, 200.0, 440.0, 200.0]])
    vals = interp(far)
    assert np.isnan(vals[0, 0]) and vals[0, 1] == 2.0


def test_outside_hull_and_tolerance():
    interp, coords, _ = _plane_map()
    outside = np.array([[50.0, 10.0, 50.0, 10.0], [2000.0, 10.0, 2000.0, 10.0]])
    assert np.isnan(interp(outside)).all()
    loc = interp.locate(outside)
    assert not loc.inside.any() and (loc.simplex == -1).all()
    # A data point is inside (tolerance 1e-6 in barycentric coordinates) and reproduces its value.
    np.testing.assert_allclose(interp(coords[:20]), interp.values[:20], rtol=1e-12)


def test_one_dimensional_map_like_delaunay1d():
    # [[m], [m]]: a line in 2-D (the HSCP maps of 1.2.4). Intervals (x_i, x_i+1], 1e-6 GeV slack
    # at the ends only.
    m = np.array([100.0, 300.0, 200.0, 500.0])
    interp = GridInterpolator(np.stack([m, m], axis=1), np.array([1.0, 3.0, 2.0, 7.0]))
    assert interp.dimensionality == 1
    pts = np.array([[150.0, 150.0], [400.0, 400.0], [100.0, 100.0], [500.0, 500.0], [99.0, 99.0],
                    [100.0 - 1e-7, 100.0 - 1e-7], [501.0, 501.0]])
    vals = interp(pts)[:, 0]
    np.testing.assert_allclose(vals[:4], [1.5, 5.0, 1.0, 7.0], rtol=1e-12)
    assert np.isnan(vals[4]) and np.isnan(vals[6])
    np.testing.assert_allclose(vals[5], 1.0, rtol=1e-9)  # within the 1e-6 slack (on rotated coord)
    jac = interp.evaluate(pts[:2], jacobian=True).jacobian[:, 0]
    np.testing.assert_allclose(jac, [[0.005, 0.005], [0.01, 0.01]], rtol=1e-10)


def test_degenerate_maps_raise():
    with pytest.raises(DegenerateMapError):
        GridInterpolator(np.array([[100.0, 50.0, 100.0, 50.0]]), np.array([1.0]))
    with pytest.raises(DegenerateMapError):
        GridInterpolator(np.full((3, 4), 100.0), np.ones(3))


def test_widths_use_smodels_order_and_rescaling():
    # Layout (mass, width, mass): SModelS flattens masses first, widths last, and interpolates
    # linearly in log(1 + w / 1e-30).
    layout = (Coordinate("mass", 0, 0), Coordinate("width", 0, 0), Coordinate("mass", 1, 0))
    rng = np.random.default_rng(4)
    m = rng.uniform(100, 1000, 200)
    w = 10 ** rng.uniform(-20, -10, 200)
    coords = np.stack([m, w, m], axis=1)
    x, _ = rescale_width(w)
    values = 2.0 * m + 5.0 * x
    interp = GridInterpolator(coords, values, layout)
    assert interp.dimensionality == 2
    np.testing.assert_array_equal(interp._order, [0, 2, 1])
    p = np.array([[500.0, 1e-15, 500.0]])
    np.testing.assert_allclose(interp(p), [[1000.0 + 5.0 * np.log(1 + 1e15)]], rtol=1e-10)
    jac = interp.evaluate(p, jacobian=True).jacobian[0, 0]
    np.testing.assert_allclose(jac, [1.0, 5.0 / (1e-30 + 1e-15), 1.0], rtol=1e-8)


def test_pickle_round_trip():
    interp, coords, _ = _plane_map()
    clone = pickle.loads(pickle.dumps(interp))
    pts = coords[:50] * 0.97
    np.testing.assert_array_equal(clone(pts), interp(pts))


def test_grouping_shares_triangulations(db124_compiled):
    arrays = db124_compiled.arrays
    n = 150  # a slice of the database keeps the test fast
    layouts = map_layouts(db124_compiled)[:n]
    built = build_interpolators(arrays.map_coords[:n], arrays.map_values[:n], layouts)
    assert len(built.map_group) == n and not built.failed
    assert len(built.groups) < 0.8 * n  # observed/expected limits and SRs share coordinates
    rng = np.random.default_rng(5)
    for i in rng.choice(n, 8, replace=False):
        coords, values = arrays.map_coords[i], arrays.map_values[i]
        pts = coords[rng.integers(0, len(coords), 20)] * rng.uniform(0.9, 1.1, (20, 1))
        single = GridInterpolator(coords, values, layouts[i])
        # Same simplices and weights; the k-column contraction may round differently (1 ulp).
        np.testing.assert_allclose(built.evaluate_map(i, pts), single(pts)[:, 0], rtol=1e-13, atol=0)
        for j in np.flatnonzero(built.map_group == built.map_group[i]):
            np.testing.assert_array_equal(arrays.map_coords[j], coords)


def test_batched_equals_per_map(db124_compiled, db300_compiled):
    """One vectorised call over many maps = each map's own GridInterpolator (values, None
    decisions, Jacobians away from faces), with in-hull, outside and off-plane queries."""
    rng = np.random.default_rng(7)
    for compiled, n in ((db124_compiled, 150), (db300_compiled, 120)):
        arrays = compiled.arrays
        built = build_interpolators(arrays.map_coords[:n], arrays.map_values[:n], map_layouts(compiled)[:n])
        batched = BatchedInterpolator(built)
        rows = rng.integers(0, n, 1500)
        points = np.zeros((len(rows), batched.max_coords))
        for i, r in enumerate(rows):
            data = arrays.map_coords[r]
            p = rng.dirichlet(np.ones(3)) @ data[rng.integers(0, len(data), 3)]
            if i % 3 == 1:
                p = p * rng.uniform(0.9, 1.1)  # off the plane of symmetric maps, often outside
            elif i % 3 == 2:
                p = p + rng.normal(0.0, 5.0, len(p)) * (p > 1e-3)  # masses only, widths stay
            points[i, :len(p)] = p
        ev = batched.evaluate(rows, points, jacobian=True)
        ref = np.array([built.evaluate_map(r, points[i:i + 1, :arrays.map_coords[r].shape[1]])[0]
                        for i, r in enumerate(rows)])
        np.testing.assert_array_equal(np.isnan(ev.values), np.isnan(ref))
        assert 0.1 < np.isnan(ref).mean() < 0.9, np.isnan(ref).mean()  # both kinds are tested
        ok = ~np.isnan(ref)
        # The batched transform sums left to right, the per-map one in SModelS' np.dot order: q
        # differs by an ulp, so values by ulp x slope (absolute; seen 3e-18 on efficiencies near zero).
        np.testing.assert_allclose(ev.values[ok], ref[ok], rtol=1e-12, atol=1e-15)
        for i in np.flatnonzero(ok)[:200]:
            g = built.groups[built.map_group[rows[i]]]
            e = g.evaluate(points[i:i + 1, :g.n_coords], jacobian=True)
            loc = g.locate(points[i:i + 1, :g.n_coords])
            if loc.weights.min() > 1e-6:  # on a face the Jacobian of either side is valid
                np.testing.assert_allclose(ev.jacobian[i, :g.n_coords], e.jacobian[0, built.map_column[rows[i]]],
                                           rtol=1e-9, atol=1e-12 * np.abs(e.jacobian).max())


def test_op_values_mask_and_gradient(db124_compiled):
    import pytensor
    import pytensor.tensor as pt
    from pytensor.gradient import verify_grad

    from tdmcmc.models.protomodel.interpolation_op import InterpolateOp, interpolate

    interp, coords, _ = _plane_map()
    x = pt.matrix("x", dtype="float64")
    vals, inside = interpolate(interp, x, fill_value=-1.0)
    g = pytensor.grad(vals[:, 0].sum() + 3.0 * vals[:, 1].sum(), x)
    f = pytensor.function([x], [vals, inside, g])
    pts = np.array([[500.0, 200.0, 500.0, 200.0], [50.0, 10.0, 50.0, 10.0], [800.0, 100.0, 800.0, 100.0]])
    v, ins, grad = f(pts)
    np.testing.assert_array_equal(ins, [[True, True], [False, False], [True, True]])
    np.testing.assert_allclose(v[[0, 2], 0], [1310.0, 2310.0], rtol=1e-12)
    assert (v[1] == -1.0).all()
    # d/dm1 of 3 m1 - m2 split evenly over the two (symmetric) branch columns; zero outside.
    np.testing.assert_allclose(grad[[0, 2]], [[1.5, -0.5, 1.5, -0.5]] * 2, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(grad[1], 0.0)
    # verify_grad: random projections of the output against finite differences.
    rng = np.random.default_rng(6)
    grid = _grids(db124_compiled, next(e for e in FIXTURE["maps"] if e["txname"] == "T6WW"))[0]
    real = GridInterpolator(grid.coords, grid.values, grid.layout)
    idx = rng.integers(0, len(grid.coords), (6, 3))
    ok_pts = np.einsum("nj,njc->nc", rng.dirichlet(np.ones(3), 6), grid.coords[idx])
    loc = real.locate(ok_pts)
    ok_pts = ok_pts[loc.inside & (loc.weights.min(axis=1) > 1e-2)]
    assert len(ok_pts) >= 2
    verify_grad(lambda p: InterpolateOp(real)(p)[0], [ok_pts], rng=rng, eps=1e-4, abs_tol=1e-6, rel_tol=1e-6)


def test_rows_op_matches_batched_and_gradient(db124_compiled):
    import pytensor
    import pytensor.tensor as pt
    from pytensor.gradient import verify_grad

    from tdmcmc.models.protomodel.interpolation_op import InterpolateRowsOp, interpolate_rows

    arrays = db124_compiled.arrays
    n = 60
    built = build_interpolators(arrays.map_coords[:n], arrays.map_values[:n], map_layouts(db124_compiled)[:n])
    batched = BatchedInterpolator(built)
    rng = np.random.default_rng(8)
    rows = rng.integers(0, n, 40)
    points = np.zeros((len(rows), batched.max_coords))
    for i, r in enumerate(rows):
        data = arrays.map_coords[r]
        p = rng.dirichlet(np.ones(3)) @ data[rng.integers(0, len(data), 3)]
        points[i, :len(p)] = p * (1.0 if i % 2 else rng.uniform(0.8, 1.2)) * (3.0 if i % 8 == 0 else 1.0)
    r_var, x = pt.vector("rows", dtype="int64"), pt.matrix("x", dtype="float64")
    vals, inside = interpolate_rows(batched, r_var, x, fill_value=0.0)
    f = pytensor.function([r_var, x], [vals, inside, pytensor.grad(vals.sum(), x)])
    v, ins, grad = f(rows, points)
    ev = batched.evaluate(rows, points, jacobian=True)
    np.testing.assert_array_equal(ins, ev.inside)
    assert 0 < ins.sum() < len(rows)
    np.testing.assert_array_equal(v, np.where(ev.inside, ev.values, 0.0))
    np.testing.assert_array_equal(grad, ev.jacobian)
    assert (grad[~ins] == 0).all()
    # Finite differences at in-plane points well inside their simplices.
    keep = []
    for i in np.flatnonzero(ins):
        g = built.groups[built.map_group[rows[i]]]
        loc = g.locate(points[i:i + 1, :g.n_coords])
        q = g.rotate(points[i:i + 1, :g.n_coords])[0]
        if loc.weights.min() > 1e-2 and (np.abs(q) > 1e-4).sum() <= g.dimensionality:
            keep.append(i)
    assert len(keep) >= 5
    fixed_rows = rows[keep]
    verify_grad(lambda p: InterpolateRowsOp(batched)(pt.constant(fixed_rows), p)[0], [points[keep]],
                rng=rng, eps=1e-4, abs_tol=1e-6, rel_tol=1e-6)


def test_batched_outside_point_of_a_small_map_after_a_large_one(db124_compiled):
    """Regression: a query outside a small map's hull once fell back to the *global* simplex 0 (of
    another, larger triangulation), whose vertex numbers run past the small map's values
    (IndexError). It must give NaN like the map's own interpolator."""
    arrays = db124_compiled.arrays
    sizes = np.array([len(c) for c in arrays.map_coords])
    ok = [i for i in np.argsort(sizes) if arrays.map_coords[i].shape[1] == arrays.map_coords[np.argmax(sizes)].shape[1]]
    big, small = ok[-1], next(i for i in ok if sizes[i] >= 4)
    layouts = map_layouts(db124_compiled)
    built = build_interpolators([arrays.map_coords[big], arrays.map_coords[small]],
                                [arrays.map_values[big], arrays.map_values[small]], [layouts[big], layouts[small]])
    batched = BatchedInterpolator(built)
    far = arrays.map_coords[small].max(axis=0) * 3.0 + 100.0
    points = np.zeros((1, batched.max_coords))
    points[0, :len(far)] = far
    ev = batched.evaluate(np.array([1]), points)
    assert np.isnan(ev.values[0])
    assert np.isnan(built.evaluate_map(1, far[None])[0])
