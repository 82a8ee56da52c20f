"""Compiled point location in many triangulations at once, with SModelS 3.2.1's answers.

SModelS locates one point per ``Delaunay.find_simplex(point, tol=1e-6)`` call, so scipy's walk
always starts at simplex 0. :meth:`PointLocator.find` runs, for every query, a port (numba) of
scipy's ``_find_simplex`` (``scipy/spatial/_qhull.pyx``: the walk over the lifted paraboloid
facets, the directed barycentric walk, the brute-force fallback with its ``sqrt(tol)`` leeway
next to flat simplices) from simplex 0, on scipy's own arrays (``transform``, ``neighbors``,
``equations``, paraboloid scale/shift, bounds). Same operations in the same order on the same
doubles (no fast-math, no fused multiply-add), hence the same simplex for every point as a
one-point scipy call, including points on faces, next to flat simplices and outside the hull
(tested against scipy on every triangulation of the 1.2.4 database). 1-D maps use SModelS'
``Delaunay1D`` intervals (x_i, x_i+1], with the tolerance in the coordinate beyond both ends.

Speed: the walk from simplex 0 costs about 1 us per point; scipy's brute-force fallback (taken
whenever the walk meets a flat simplex, in 146 of the 383 triangulations of 1.2.4) scans every
simplex in index order and returns the first that accepts the point. We scan only the simplices
listed in the point's cell of a uniform grid built once per triangulation (about one cell per
simplex): the list keeps index order and contains every simplex that can accept a point of the
cell (``_build_grid``: bounding boxes, and for inner cells the simplex's barycentric range over
the cell's corners), so the first acceptance is the same simplex.

Most points do not need the walk at all: when no simplex can be returned for the point (accepts
it with tol, or with sqrt(tol) on a face shared with a flat simplex), or exactly one can and
contains it, every path of scipy's search gives that answer (``_unambiguous``). That settles all
but the points on faces (within tol of several simplices: grid-aligned masses, 81 of the 4,600
queries of the 64-model benchmark batch, all from its five oracle models), which take the walk
from simplex 0. The queries are taken triangulation by triangulation (cache locality); the
per-query functions are inlined into the loop and 2-D coordinates computed in locals.

``PointLocator(interps)`` packs the triangulations of a sequence of
:class:`~.interpolation.GridInterpolator`; ``PointLocator.find(tri (n,), qp (n, >= dim))``
returns the simplex of query i in triangulation ``tri[i]`` (-1 outside), one compiled call for
the whole batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numba
import numpy as np

SIMPLEX_TOL = 1e-6  # SModelS' find_simplex tolerance (barycentric; GeV for 1-D maps)


@numba.njit(cache=True, inline="always")
def _coordinate(transform, t0, ndim, x, i):
    """Barycentric coordinate i < ndim of x in the simplex whose transform starts at t0, as scipy:
    0 + T[i, 0] (x_0 - r_0) + T[i, 1] (x_1 - r_1) + ..., left to right (unrolled for 2-D maps, the
    common case: generic loops cost about 4x more there)."""
    if ndim == 2:
        s = 0.0
        s += transform[t0 + 2 * i] * (x[0] - transform[t0 + 4])
        s += transform[t0 + 2 * i + 1] * (x[1] - transform[t0 + 5])
        return s
    s = 0.0
    for j in range(ndim):
        s += transform[t0 + ndim * i + j] * (x[j] - transform[t0 + ndim * ndim + j])
    return s


@numba.njit(cache=True, inline="always")
def _inside_nd(transform, t0, ndim, x, c, eps):
    """scipy ``_barycentric_inside``: fills c, stops at the first coordinate out of range."""
    if ndim == 2:  # in locals: a store to c would make every later load of x and transform reload
        c0 = _coordinate(transform, t0, 2, x, 0)
        if not (-eps <= c0 <= 1.0 + eps):
            return False
        c1 = _coordinate(transform, t0, 2, x, 1)
        if not (-eps <= c1 <= 1.0 + eps):
            return False
        c[0], c[1], c[2] = c0, c1, 1.0 - c0 - c1
        return -eps <= c[2] <= 1.0 + eps
    last = 1.0
    for i in range(ndim):
        c[i] = _coordinate(transform, t0, ndim, x, i)
        last -= c[i]
        if not (-eps <= c[i] <= 1.0 + eps):
            return False
    c[ndim] = last
    return -eps <= last <= 1.0 + eps


@numba.njit(cache=True)
def _cell(ndim, x, g_origin, g_step, g_n):
    """Index of x's cell in a triangulation's search grid (points outside go to the border cells)."""
    cell = 0
    for j in range(ndim):
        k = int((x[j] - g_origin[j]) / g_step[j]) if x[j] > g_origin[j] else 0
        k = min(k, g_n[j] - 1)
        cell = cell * g_n[j] + k
    return cell


@numba.njit(cache=True)
def _may_return(transform, neighbors, t_off, nb_off, ndim, s, c, eps, eps_broad):
    """Whether some path of scipy's ``_find_simplex`` can end at non-flat simplex `s` for a point
    with barycentric coordinates `c` in it: the directed walk and the brute force accept s when
    every coordinate is in [-tol, 1 + tol]; the brute force's flat-simplex branch also accepts it
    when the coordinate opposite a face shared with a flat simplex is down to -sqrt(tol)."""
    width = ndim * (ndim + 1)
    for k in range(ndim + 1):
        if not c[k] <= 1.0 + eps:
            return False
        if c[k] < -eps:
            nb = neighbors[nb_off + s * (ndim + 1) + k]
            if nb == -1 or transform[t_off + nb * width] == transform[t_off + nb * width] or not c[k] >= -eps_broad:
                return False
    return True


@numba.njit(cache=True, inline="always")
def _unambiguous(transform, neighbors, t_off, nb_off, ndim, x, c, eps, eps_broad, g_off, g_origin, g_step, g_n,
                 cell_start, cell_items):
    """scipy's answer for x when it cannot depend on the walk: the simplex containing x, -1 when
    no simplex can be returned for x; -2 otherwise (ask the walk).

    Every path of scipy's ``_find_simplex`` ends at a simplex that accepts x with tol (the walk,
    the brute force), at a neighbour of a flat simplex that accepts x with sqrt(tol) on their
    common face (the brute force), or at -1 (``_may_return``). So when no simplex may be returned,
    the answer is -1; when exactly one may and x lies inside it (coordinates in [0, 1]), the answer
    is that simplex (the walk cannot leave the hull, which is convex, from a point inside it). The
    candidates of x's grid cell hold every simplex that accepts x with sqrt(tol) (``_build_grid``).
    Points on faces (several simplices accept them) get -2."""
    cell = _cell(ndim, x, g_origin, g_step, g_n)
    width = ndim * (ndim + 1)
    found, inside = -1, True
    for it in range(cell_start[g_off + cell], cell_start[g_off + cell + 1]):
        s = cell_items[it]
        t0 = t_off + s * width
        if (_inside_nd(transform, t0, ndim, x, c, eps_broad)  # flat simplices (NaN) never accept
                and _may_return(transform, neighbors, t_off, nb_off, ndim, s, c, eps, eps_broad)):
            if found >= 0:
                return -2
            found = s
            for k in range(ndim + 1):
                if not (0.0 <= c[k] <= 1.0):
                    inside = False
    return found if inside else -2


@numba.njit(cache=True)
def _bruteforce(transform, neighbors, t_off, nb_off, ndim, x, c, eps, eps_broad,
                g_off, g_origin, g_step, g_n, cell_start, cell_items):
    """scipy ``_find_simplex_bruteforce`` (the bounding-box test is done by the caller): the first
    simplex, in index order, that accepts x. Only the simplices listed in x's grid cell are
    tested, in index order; every other simplex provably rejects x (see ``_build_grid``)."""
    if x[0] != x[0]:
        return -1  # NaN: no simplex accepts it
    cell = _cell(ndim, x, g_origin, g_step, g_n)
    width = ndim * (ndim + 1)
    for it in range(cell_start[g_off + cell], cell_start[g_off + cell + 1]):
        s = cell_items[it]
        t0 = t_off + s * width
        if transform[t0] == transform[t0]:
            if _inside_nd(transform, t0, ndim, x, c, eps):
                return s
        else:
            for k in range(ndim + 1):
                nb = neighbors[nb_off + s * (ndim + 1) + k]
                if nb == -1:
                    continue
                n0 = t_off + nb * width
                if transform[n0] != transform[n0]:
                    continue
                c[ndim] = 1.0
                for i in range(ndim):
                    c[i] = 0.0
                    for j in range(ndim):
                        c[i] += transform[n0 + ndim * i + j] * (x[j] - transform[n0 + ndim * ndim + j])
                    c[ndim] -= c[i]
                inside = True
                for m in range(ndim + 1):
                    lo = -eps_broad if neighbors[nb_off + nb * (ndim + 1) + m] == s else -eps
                    if not (lo <= c[m] <= 1.0 + eps):
                        inside = False
                        break
                if inside:
                    return nb
    return -1


@numba.njit(cache=True)
def _reaches(t, origin, step, slack, idx, eps_broad, corner, lam, lam_lo, lam_hi):
    """Whether the simplex of transform `t` ((d + 1, d): T^-1 rows, then the last vertex) widened to
    barycentric coordinates in [-2 eps_broad, 1 + 2 eps_broad] may meet grid cell `idx` (widened by
    `slack`): no coordinate is out of that range at all corners (coordinates are affine in x)."""
    d = len(idx)
    for k in range(d + 1):
        lam_lo[k] = np.inf
        lam_hi[k] = -np.inf
    for m in range(1 << d):
        for j in range(d):
            lo = origin[j] + idx[j] * step[j] - slack[j]
            corner[j] = lo + step[j] + 2.0 * slack[j] if (m >> j) & 1 else lo
        lam[d] = 1.0
        for i in range(d):
            lam[i] = 0.0
            for j in range(d):
                lam[i] += t[i, j] * (corner[j] - t[d, j])
            lam[d] -= lam[i]
        for k in range(d + 1):
            lam_lo[k] = min(lam_lo[k], lam[k])
            lam_hi[k] = max(lam_hi[k], lam[k])
    for k in range(d + 1):
        if lam_hi[k] < -2.0 * eps_broad or lam_lo[k] > 1.0 + 2.0 * eps_broad:
            return False
    return True


@numba.njit(cache=True)
def _build_grid(points, simplices, transform, neighbors, eps_broad, cells_per_axis):
    """Uniform grid over a triangulation for the brute-force search: cell -> the simplices (in
    index order) that may accept a point of the cell. A simplex accepting x with every barycentric
    coordinate >= -eps_broad has x within its vertex bounding box widened by (d+1) eps_broad times
    its extent per axis (x_j = sum_i c_i v_ij, sum_i c_i = 1); the box is widened by twice that plus
    1e-9 of the coordinate range against rounding. Flat simplices are tested through their non-flat
    neighbours, so they get the union of those boxes (none if they have none). Simplices whose
    transform has a norm above 1e9 per unit extent (ill-conditioned: larger rounding in c; none in
    the 1.2.4 database) are listed in every cell."""
    ns, d1 = simplices.shape
    d = d1 - 1
    lo_all = np.empty(d)
    hi_all = np.empty(d)
    for j in range(d):
        lo_all[j] = points[:, j].min()
        hi_all[j] = points[:, j].max()
    slack = np.empty(d)
    for j in range(d):
        slack[j] = 1e-9 * (abs(lo_all[j]) + abs(hi_all[j]) + 1.0)
    box = np.empty((ns, 2, d))
    everywhere = np.zeros(ns, dtype=np.bool_)
    for s in range(ns):
        big = 0.0
        for j in range(d):
            a = points[simplices[s, 0], j]
            b = a
            for v in range(1, d1):
                y = points[simplices[s, v], j]
                a = min(a, y)
                b = max(b, y)
            margin = 2.0 * d1 * eps_broad * (b - a) + slack[j]
            box[s, 0, j] = a - margin
            box[s, 1, j] = b + margin
            big = max(big, b - a)
        if transform[s, 0, 0] == transform[s, 0, 0]:
            norm = 0.0
            for i in range(d):
                row = 0.0
                for j in range(d):
                    row += abs(transform[s, i, j])
                norm = max(norm, row)
            everywhere[s] = norm * big > 1e9
    # Flat simplices: the union of their non-flat neighbours' boxes; empty (lo > hi) if none.
    fbox = np.empty((ns, 2, d))
    for s in range(ns):
        if transform[s, 0, 0] == transform[s, 0, 0]:
            fbox[s] = box[s]
            continue
        for j in range(d):
            fbox[s, 0, j] = np.inf
            fbox[s, 1, j] = -np.inf
        for k in range(d1):
            nb = neighbors[s, k]
            if nb == -1 or transform[nb, 0, 0] != transform[nb, 0, 0]:
                continue
            everywhere[s] = everywhere[s] or everywhere[nb]
            for j in range(d):
                fbox[s, 0, j] = min(fbox[s, 0, j], box[nb, 0, j])
                fbox[s, 1, j] = max(fbox[s, 1, j], box[nb, 1, j])
    origin = lo_all.copy()
    step = np.empty(d)
    n_axis = np.empty(d, dtype=np.int64)
    for j in range(d):
        n_axis[j] = cells_per_axis
        step[j] = max(hi_all[j] - lo_all[j], 1e-300) / cells_per_axis
    n_cells = 1
    for j in range(d):
        n_cells *= n_axis[j]
    # Cell ranges per simplex (points outside the grid are clipped to the border cells, which
    # list every simplex whose box reaches beyond the grid on that side).
    rng = np.zeros((ns, 2, d), dtype=np.int64)
    counts = np.zeros(n_cells + 1, dtype=np.int64)
    for s in range(ns):
        empty = False
        for j in range(d):
            if everywhere[s]:
                rng[s, 0, j], rng[s, 1, j] = 0, n_axis[j] - 1
                continue
            if fbox[s, 0, j] > fbox[s, 1, j]:
                empty = True
                break
            a = int(np.floor((fbox[s, 0, j] - origin[j]) / step[j]))
            b = int(np.floor((fbox[s, 1, j] - origin[j]) / step[j]))
            rng[s, 0, j] = min(max(a, 0), n_axis[j] - 1)
            rng[s, 1, j] = min(max(b, 0), n_axis[j] - 1)
        if empty:
            rng[s, 0, 0], rng[s, 1, 0] = 1, 0
    # Cells strictly inside the grid are listed only if the simplex, widened to every barycentric
    # coordinate in [-2 eps_broad, 1 + 2 eps_broad], can reach them: no coordinate (affine in x) is
    # beyond that range at every corner of the cell, itself widened by the slack against the rounding
    # of x's cell index. The border cells also take the points beyond the grid: listed by box alone.
    corner = np.empty(d)
    lam = np.empty(d + 1)
    lam_lo = np.empty(d + 1)
    lam_hi = np.empty(d + 1)
    reach = np.empty(ns, dtype=np.bool_)
    for s in range(ns):
        reach[s] = not everywhere[s] and transform[s, 0, 0] == transform[s, 0, 0]
    idx = np.zeros(d, dtype=np.int64)
    for phase in range(2):
        if phase == 1:
            total = 0
            for i in range(n_cells):
                cnt = counts[i]
                counts[i] = total
                total += cnt
            counts[n_cells] = total
            items = np.empty(total, dtype=np.int32)
            fill = counts[:n_cells].copy()
        else:
            items = np.empty(0, dtype=np.int32)
            fill = np.empty(0, dtype=np.int64)
        for s in range(ns):
            if rng[s, 0, 0] > rng[s, 1, 0]:
                continue
            for j in range(d):
                idx[j] = rng[s, 0, j]
            while True:
                cell = 0
                border = False
                for j in range(d):
                    cell = cell * n_axis[j] + idx[j]
                    border |= idx[j] == 0 or idx[j] == n_axis[j] - 1
                if border or not reach[s] or _reaches(transform[s], origin, step, slack, idx, eps_broad, corner, lam,
                                                     lam_lo, lam_hi):
                    if phase == 0:
                        counts[cell] += 1
                    else:
                        items[fill[cell]] = s
                        fill[cell] += 1
                j = d - 1
                while j >= 0:
                    idx[j] += 1
                    if idx[j] <= rng[s, 1, j]:
                        break
                    idx[j] = rng[s, 0, j]
                    j -= 1
                if j < 0:
                    break
    return origin, step, n_axis, counts, items


@numba.njit(cache=True, inline="always")
def _find_nd(transform, neighbors, equations, t_off, nb_off, eq_off, nsimplex, ndim, scale, shift, lo, hi, x, c, z,
             eps, eps_broad, g_off, g_origin, g_step, g_n, cell_start, cell_items):
    """scipy ``_find_simplex`` with start = 0 (a one-point ``find_simplex`` call); -1 outside."""
    for i in range(ndim):
        if x[i] < lo[i] - eps or x[i] > hi[i] + eps:
            return -1
    if nsimplex <= 0:
        return -1
    s = _unambiguous(transform, neighbors, t_off, nb_off, ndim, x, c, eps, eps_broad, g_off, g_origin, g_step, g_n,
                     cell_start, cell_items)
    if s != -2:
        return s
    # Lift to the paraboloid and walk towards a facet with positive plane distance.
    z[ndim] = 0.0
    for i in range(ndim):
        z[i] = x[i]
        z[ndim] += x[i] * x[i]
    z[ndim] *= scale
    z[ndim] += shift
    s = 0
    e0 = eq_off
    best = equations[e0 + ndim + 1]
    for k in range(ndim + 1):
        best += equations[e0 + k] * z[k]
    changed = True
    while changed:
        if best > 0:
            break
        changed = False
        for k in range(ndim + 1):
            nb = neighbors[nb_off + s * (ndim + 1) + k]
            if nb == -1:
                continue
            e0 = eq_off + nb * (ndim + 2)
            dist = equations[e0 + ndim + 1]
            for kk in range(ndim + 1):
                dist += equations[e0 + kk] * z[kk]
            if dist > best + eps * (1.0 + abs(best)):
                s = nb
                best = dist
                changed = True
    # Directed walk (scipy ``_find_simplex_directed``).
    width = ndim * (ndim + 1)
    for _ in range(1 + nsimplex // 4):
        if s == -1:
            return -1
        t0 = t_off + s * width
        inside = 1
        last = 1.0  # c[ndim] = 1 - c[0] - c[1] - ..., left to right
        for k in range(ndim + 1):
            if k == ndim:
                ck = last
            else:
                ck = _coordinate(transform, t0, ndim, x, k)
                last -= ck
            if ck < -eps:
                m = neighbors[nb_off + s * (ndim + 1) + k]
                if m == -1:
                    return -1
                s = m
                inside = -1
                break
            elif ck <= 1.0 + eps:
                pass
            else:
                inside = 0  # out of range or NaN: a flat simplex in the way
        if inside == -1:
            continue
        if inside == 1:
            return s
        return _bruteforce(transform, neighbors, t_off, nb_off, ndim, x, c, eps, eps_broad,
                           g_off, g_origin, g_step, g_n, cell_start, cell_items)
    return _bruteforce(transform, neighbors, t_off, nb_off, ndim, x, c, eps, eps_broad,
                           g_off, g_origin, g_step, g_n, cell_start, cell_items)


@numba.njit(cache=True)
def _find_1d(line, l_off, n_line, x, eps):
    """SModelS' ``Delaunay1D.find_simplex``: interval i is (x_i, x_i+1]; tolerance beyond the ends."""
    n_simplex = n_line - 1
    if x != x:
        return -1
    a, b = 0, n_line  # first index with line[i] >= x (searchsorted, side="left")
    while a < b:
        mid = (a + b) // 2
        if line[l_off + mid] < x:
            a = mid + 1
        else:
            b = mid
    s = a - 1
    if s == -1 and abs(x - line[l_off]) < eps:
        s = 0
    elif s == n_simplex and abs(x - line[l_off + n_line - 1]) < eps:
        s = n_simplex - 1
    if s < 0 or s >= n_simplex:
        return -1
    return s


@numba.njit(cache=True)
def _locate(tri, qp, qbits, dims, t_off, nb_off, eq_off, n_simplex, scale, shift, lo, hi, transform, neighbors,
            equations, l_off, n_line, line, eps, eps_broad, g_off, g_origin, g_step, g_n, cell_start, cell_items):
    """Every query located once: repeated (triangulation, point) queries (bit-identical
    coordinates, e.g. the signal regions of one analysis) reuse the first answer (hash table)."""
    n = len(tri)
    out = np.empty(n, dtype=np.int64)
    width = qp.shape[1]
    c = np.empty(width + 2)
    z = np.empty(width + 2)
    x = np.empty(width)
    size = 2
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    # Queries grouped by triangulation (counting sort): each triangulation's arrays are then read
    # while they are in cache, instead of once per model of a batch.
    start = np.zeros(len(dims) + 1, dtype=np.int64)
    for i in range(n):
        start[tri[i] + 1] += 1
    for g in range(len(dims)):
        start[g + 1] += start[g]
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[start[tri[i]]] = i
        start[tri[i]] += 1
    for i in order:
        g = tri[i]
        d = dims[g]
        h = g + 1
        for j in range(d):
            h = (h ^ qbits[i, j]) * 1099511628211
        slot = (h ^ (h >> 29)) & (size - 1)
        seen = -1
        while table[slot] != -1:
            k = table[slot]
            if tri[k] == g:
                same = True
                for j in range(d):
                    if qbits[k, j] != qbits[i, j]:
                        same = False
                        break
                if same:
                    seen = k
                    break
            slot = (slot + 1) & (size - 1)
        if seen >= 0:
            out[i] = out[seen]
            continue
        table[slot] = i
        for j in range(d):
            x[j] = qp[i, j]
        if d == 1:
            out[i] = _find_1d(line, l_off[g], n_line[g], x[0], eps)
        else:
            out[i] = _find_nd(transform, neighbors, equations, t_off[g], nb_off[g], eq_off[g], n_simplex[g], d,
                              scale[g], shift[g], lo[g], hi[g], x, c, z, eps, eps_broad, g_off[g], g_origin[g],
                              g_step[g], g_n[g], cell_start, cell_items)
    return out


_KEYS = ("transform", "neighbors", "equations", "line", "cell_start", "cell_items")
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pack(g) -> dict:
    """Flat arrays and scalars of one GridInterpolator's triangulation (cached per object)."""
    if g in _PACKED:
        return _PACKED[g]
    d, tri = g.dimensionality, g._tri
    empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
    out = {"transform": empty_f, "neighbors": empty_i, "equations": empty_f, "line": empty_f, "cell_start": empty_i,
           "cell_items": np.zeros(0, dtype=np.int32), "n_simplex": 0, "scale": 0.0, "shift": 0.0,
           "lo": np.zeros(d), "hi": np.zeros(d), "origin": np.zeros(d), "step": np.ones(d),
           "n_axis": np.ones(d, dtype=np.int64)}
    if tri is None:  # Delaunay1D
        out["line"] = np.asarray(g._line, dtype=np.float64)
    else:
        neighbors = tri.neighbors.astype(np.int64)
        cells = max(1, int(np.ceil(tri.nsimplex ** (1.0 / d))))  # about one cell per simplex
        out["origin"], out["step"], out["n_axis"], out["cell_start"], out["cell_items"] = _build_grid(
            tri.points, tri.simplices.astype(np.int64), g._transform, neighbors, np.sqrt(SIMPLEX_TOL), cells)
        out.update(transform=np.asarray(g._transform, dtype=np.float64).ravel(), neighbors=neighbors.ravel(),
                   equations=np.asarray(tri.equations, dtype=np.float64).ravel(), n_simplex=tri.nsimplex,
                   scale=tri.paraboloid_scale, shift=tri.paraboloid_shift, lo=tri.min_bound, hi=tri.max_bound)
    _PACKED[g] = out
    return out


class PointLocator:
    """The triangulations of `interps` (GridInterpolator), packed into flat arrays for :meth:`find`.
    Each triangulation's arrays and search grid are built once per interpolator object (cached)."""

    def __init__(self, interps: Sequence) -> None:
        n = len(interps)
        packed = [_pack(g) for g in interps]
        self.dims = np.array([g.dimensionality for g in interps], dtype=np.int64)
        dm = int(self.dims.max()) if n else 1
        self._n_simplex = np.array([p["n_simplex"] for p in packed], dtype=np.int64)
        self._scale = np.array([p["scale"] for p in packed], dtype=np.float64)
        self._shift = np.array([p["shift"] for p in packed], dtype=np.float64)
        self._n_line = np.array([len(p["line"]) for p in packed], dtype=np.int64)
        self._per_tri = {}
        for k, fill in (("lo", 0.0), ("hi", 0.0), ("origin", 0.0), ("step", 1.0), ("n_axis", 1)):
            arr = np.full((n, dm), fill, dtype=np.int64 if k == "n_axis" else np.float64)
            for i, p in enumerate(packed):
                arr[i, :len(p[k])] = p[k]
            self._per_tri[k] = arr
        self._offsets, self._arrays = {}, {}
        for k in _KEYS:
            items = [p[k] for p in packed]
            if k == "cell_start":  # positions in the concatenated cell_items
                shift = np.cumsum([0] + [len(p["cell_items"]) for p in packed[:-1]])
                items = [a + o for a, o in zip(items, shift)]
            sizes = np.array([len(a) for a in items], dtype=np.int64)
            self._offsets[k] = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            dtype = {"neighbors": np.int64, "cell_start": np.int64, "cell_items": np.int32}.get(k, np.float64)
            self._arrays[k] = np.concatenate(items).astype(dtype) if n else np.zeros(0, dtype)
        self._max_dim = dm
        o, a, t = self._offsets, self._arrays, self._per_tri
        self._tables = (self.dims, o["transform"], o["neighbors"], o["equations"], self._n_simplex, self._scale,
                        self._shift, t["lo"], t["hi"], a["transform"], a["neighbors"], a["equations"], o["line"],
                        self._n_line, a["line"], SIMPLEX_TOL, float(np.sqrt(SIMPLEX_TOL)), o["cell_start"],
                        t["origin"], t["step"], t["n_axis"], a["cell_start"], a["cell_items"])

    def find(self, tri: np.ndarray, qp: np.ndarray) -> np.ndarray:
        """Simplex (n,) of query i in triangulation ``tri[i]`` at projected point ``qp[i, :dim]``
        (-1 outside), as SModelS' one-point ``find_simplex(qp[i], tol=1e-6)`` call."""
        tri = np.ascontiguousarray(tri, dtype=np.int64)
        qp = np.ascontiguousarray(qp, dtype=np.float64)
        if qp.ndim != 2 or len(qp) != len(tri):
            raise ValueError(f"queries {tri.shape} and points {qp.shape} do not match")
        if not len(tri):
            return np.zeros(0, dtype=np.int64)
        if qp.shape[1] < self._max_dim and qp.shape[1] < self.dims[tri].max():
            raise ValueError(f"points have {qp.shape[1]} columns, the triangulations need {self.dims[tri].max()}")
        return _locate(tri, qp, qp.view(np.int64), *self._tables)
