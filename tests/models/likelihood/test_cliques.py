"""Maximal cliques and the per-group factorised combiner, checked against brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import logsumexp

from tdmcmc.errors import UserError
from tdmcmc.models.likelihood.cliques import build_combiner, maximal_cliques
from tdmcmc.models.likelihood.combinability import (AllowLists, analysis_id, build_graph,
                                                    graph_for_database, read_allow_lists)

# The graphs are checked without C compilation (same graph, same values; a cold C compile of these
# graphs takes minutes on a loaded 2-core machine). Default-mode compilation on the real database
# is exercised by tests/benchmarks/bench_combiner.py.
FAST = "FAST_COMPILE"


def brute_maximal_cliques(adj: np.ndarray) -> list[tuple[int, ...]]:
    """Every subset that is a clique and admits no further vertex (exhaustive, for small graphs)."""
    n = len(adj)
    cliques = [s for k in range(1, n + 1) for s in itertools.combinations(range(n), k)
               if all(adj[a, b] for a, b in itertools.combinations(s, 2))]
    return sorted(s for s in cliques
                  if not any(all(adj[v, u] for u in s) for v in range(n) if v not in s))


def random_graph(rng, n, p):
    upper = np.triu(rng.random((n, n)) < p, 1)
    return upper | upper.T


@pytest.mark.parametrize("seed", range(6))
def test_bron_kerbosch_equals_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    for n in range(0, 12):
        adj = random_graph(rng, n, rng.uniform(0.2, 0.9))
        assert maximal_cliques(adj) == brute_maximal_cliques(adj), (seed, n)


def test_maximal_cliques_known_graphs():
    assert maximal_cliques(np.ones((4, 4), bool)) == [(0, 1, 2, 3)]
    assert maximal_cliques(np.zeros((3, 3), bool)) == [(0,), (1,), (2,)]
    # Moon–Moser graph K_{3,3,3} complement structure: 3 disjoint triangles' complement has 27.
    tri = np.kron(np.eye(3, dtype=bool), np.ones((3, 3), bool))
    assert len(maximal_cliques(~tri)) == 27
    with pytest.raises(ValueError):
        maximal_cliques(np.triu(np.ones((3, 3), bool)))


# A synthetic database: three (experiment, √s) groups, twins (UL/EM/-agg versions) in two of them.
IDS = ["A-1", "A-1-eff", "A-2", "A-3", "A-4",                    # ATLAS 8
       "C-1", "C-2", "C-3", "C-3-agg", "C-3-eff", "C-4",          # CMS 13 (C-3 has three versions)
       "B-1", "B-2", "B-3"]                                       # ATLAS 13
EXP = ["ATLAS"] * 5 + ["CMS"] * 6 + ["ATLAS"] * 3
SQRTS = [8.0] * 5 + [13.0] * 6 + [13.0] * 3
ALLOW = AllowLists({"A-1": ("A-2", "A-3"), "A-2": ("A-3",), "A-4": ("A-3",),
                    "C-1": ("C-2", "C-3"), "C-3": ("C-4",), "C-2": ("C-4",),
                    "B-1": ("B-2",), "B-3": ()}, {})


def result_adjacency() -> np.ndarray:
    """Combinability of *results* as the paper builds it: twins are separate, never combined."""
    n = len(IDS)
    adj = np.zeros((n, n), bool)
    for i, k in itertools.combinations(range(n), 2):
        same_group = (EXP[i], SQRTS[i]) == (EXP[k], SQRTS[k])
        adj[i, k] = adj[k, i] = not same_group or ALLOW.allows(IDS[i], IDS[k])
    return adj


def global_result_cliques() -> list[tuple[int, ...]]:
    return brute_maximal_cliques(result_adjacency())


@pytest.fixture(scope="module")
def synthetic():
    return build_combiner(build_graph(IDS, EXP, SQRTS, ALLOW)), global_result_cliques()


def test_clique_counts_factorise(synthetic):
    comb, brute = synthetic
    assert comb.n_cliques == {("ATLAS", 8.0): 2, ("ATLAS", 13.0): 2, ("CMS", 13.0): 4}
    assert comb.n_global_cliques == 16
    # Twin expansion: each node clique appears once per choice of version of its members.
    versions = {a: sum(analysis_id(r) == a for r in IDS) for a in map(analysis_id, IDS)}
    expanded = 0
    for combo in itertools.product(*[[np.flatnonzero(m) for m in g.membership] for g in comb.groups]):
        expanded += int(np.prod([versions[comb.graph.analyses[i]] for i in np.concatenate(combo)]))
    assert expanded == len(brute) == 3 * 2 * 8


@pytest.mark.parametrize("seed", range(5))
def test_modes_equal_brute_force_over_global_cliques(synthetic, seed):
    comb, brute = synthetic
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 2.0, size=(3, 4, len(IDS)))
    r[..., rng.random(len(IDS)) < 0.3] = 0.0                     # some results without prediction
    sums = np.stack([r[..., list(c)].sum(-1) for c in brute], axis=-1)
    np.testing.assert_allclose(comb.combine(r, "max"), sums.max(-1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(comb.combine(r, "logsumexp"), logsumexp(sums, axis=-1),
                               rtol=1e-12, atol=1e-12)
    one = r[1, 2]
    best = brute[int(np.argmax(sums[1, 2]))]
    got = comb.best_combination(one, with_zero=True)
    assert sum(one[j] for _, j in got) == pytest.approx(sums[1, 2].max(), abs=1e-12)
    if np.sort(sums[1, 2])[-2] < sums[1, 2].max() - 1e-9:          # unique optimum: same members
        assert sorted(j for _, j in got) == list(best)
    assert all(one[j] != 0.0 for _, j in comb.best_combination(one))


def test_fixed_mode(synthetic):
    comb, _ = synthetic
    r = np.arange(1.0, len(IDS) + 1) * np.array([1, -1] * 7)
    # C-3 is reduced by max over its three versions (results 7, 8, 9 → values -8, 9, -10).
    assert comb.combine(r, "fixed", fixed=["A-1", "C-3-agg", "B-2"]) == pytest.approx(1 + 9 + 13)
    with pytest.raises(UserError, match="A-2 and A-4 may not be combined"):
        comb.combine(r, "fixed", fixed=["A-2", "A-4"])
    assert comb.fixed_mask(["A-2", "A-4"], check=False).sum() == 2
    with pytest.raises(UserError, match="needs a list"):
        comb.combine(r, "fixed")
    with pytest.raises(UserError, match="mode"):
        comb.combine(r, "mean")


def test_pytensor_graph_values_and_gradients(synthetic):
    comb, brute = synthetic
    x = pt.dmatrix("r")
    lse = comb.combine(x, "logsumexp")
    mx = comb.combine(x, "max")
    f = pytensor.function([x], [lse, mx, pytensor.grad(lse.sum(), x), pytensor.grad(mx.sum(), x)],
                          mode=FAST)
    rng = np.random.default_rng(7)
    r = rng.normal(0.0, 1.5, size=(2, len(IDS)))
    r[:, [2, 12]] = 0.0                          # results without prediction: ties between cliques
    v_lse, v_max, g_lse, g_max = f(r)
    np.testing.assert_allclose(v_lse, comb.combine(r, "logsumexp"), rtol=1e-12)
    np.testing.assert_allclose(v_max, comb.combine(r, "max"), rtol=1e-12)
    h = 1e-6
    fd = np.zeros_like(r)
    for b, j in np.ndindex(r.shape):
        e = np.zeros_like(r)
        e[b, j] = h
        fd[b, j] = (comb.combine(r + e, "logsumexp")[b] - comb.combine(r - e, "logsumexp")[b]) / (2 * h)
    np.testing.assert_allclose(g_lse, fd, rtol=1e-6, atol=1e-8)
    # logsumexp gradient = posterior weight of each result over the global cliques.
    sums = np.stack([r[:, list(c)].sum(-1) for c in brute], axis=-1)
    w = np.exp(sums - logsumexp(sums, axis=-1, keepdims=True))
    member = np.array([[j in c for j in range(len(IDS))] for c in brute], float)
    np.testing.assert_allclose(g_lse, w @ member, rtol=1e-10)
    # max: the gradient is the 0/1 indicator of the first best clique (a subgradient), never
    # doubled by tied cliques.
    for b in range(2):
        chosen = [j for _, j in comb.best_combination(r[b], with_zero=True)]
        assert g_max[b].tolist() == [float(j in chosen) for j in range(len(IDS))]


@pytest.mark.parametrize("seed", range(4))
def test_paper_definition_equals_brute_force_on_predicted_results(synthetic, seed):
    comb, _ = synthetic
    adj = result_adjacency()
    rng = np.random.default_rng(100 + seed)
    for _ in range(25):
        predicted = rng.random(len(IDS)) < rng.uniform(0.1, 0.6)
        r = np.where(predicted, rng.normal(0.5, 1.5, len(IDS)), 0.0)
        idx = np.flatnonzero(predicted)
        cliques = [tuple(idx[list(c)]) for c in brute_maximal_cliques(adj[np.ix_(idx, idx)])]
        cliques = [c for c in cliques if len(c) >= 2]
        value, members = comb.paper_combination(r, predicted)
        if not cliques:
            assert np.isnan(value) and members == () and comb.paper_max(r, predicted) == -np.inf
            continue
        sums = [r[list(c)].sum() for c in cliques]
        assert value == pytest.approx(max(sums), abs=1e-12)
        assert tuple(j for _, j in members) in cliques
        assert all(a == analysis_id(IDS[j]) for a, j in members)
        assert comb.paper_max(r, predicted) == pytest.approx(value, abs=1e-12)
        if all(r[predicted] >= 0):               # without deficits both definitions agree
            assert comb.combine(r, "max") == pytest.approx(value, abs=1e-12)
        assert comb.combine(r, "max") >= value - 1e-12   # ours scores a superset of cliques


def test_paper_max_graph_batched_with_gradient(synthetic):
    comb, _ = synthetic
    rng = np.random.default_rng(9)
    predicted = rng.random((6, len(IDS))) < 0.5
    predicted[0] = False
    predicted[1] = np.arange(len(IDS)) < 2                 # one group, A-1 twins only: no pair
    r = np.where(predicted, rng.normal(0.3, 1.5, predicted.shape), 0.0)
    x, p = pt.dmatrix("r"), pt.dmatrix("p")
    out = comb.paper_max(x, p)
    f = pytensor.function([x, p], [out, pytensor.grad(out[2:].sum(), x)], mode=FAST)
    value, grad = f(r, predicted * 1.0)
    expected = [comb.paper_combination(ri, pi) for ri, pi in zip(r, predicted)]
    assert value[0] == value[1] == -np.inf and np.isnan(expected[1][0])
    np.testing.assert_allclose(value[2:], [v for v, _ in expected[2:]], atol=1e-12)
    for b in range(2, 6):                      # subgradient: indicator of the chosen members
        assert grad[b].tolist() == [float(j in [m for _, m in expected[b][1]]) for j in range(len(IDS))]


def _random_veto(comb, rng, p):
    """Random combinable node pairs inside one group (the states' ``hasOverlap`` pairs)."""
    g = comb.graph
    return [(a, b) for a, b in itertools.combinations(range(g.n_nodes), 2)
            if g.adjacency[a, b] and (g.experiment[a], g.sqrts[a]) == (g.experiment[b], g.sqrts[b])
            and rng.random() < p]


@pytest.mark.parametrize("seed", range(3))
def test_paper_cliques_with_veto_equal_brute_force(synthetic, seed):
    """The paper's max with vetoed edges (hasOverlap), by per-state enumeration (paper_combination)
    and by the padded clique inputs (paper_cliques, slot_cliques + paper_clique_max, numpy), against brute force
    over the maximal cliques of the predicted results with those edges removed, ≥ 2 members."""
    comb, _ = synthetic
    rng = np.random.default_rng(200 + seed)
    n_states = 30
    predicted = rng.random((n_states, len(IDS))) < rng.uniform(0.2, 0.8, (n_states, 1))
    r = np.where(predicted, rng.normal(0.5, 1.5, predicted.shape), 0.0)
    vetoed = [_random_veto(comb, rng, 0.5) for _ in range(n_states)]
    node_pred = predicted @ comb.versions.sum(axis=0) > 0
    members, valid = comb.paper_cliques(node_pred, vetoed)
    node = comb.graph.result_node
    # every result a slot (twins included: several predicted versions of one node)
    slot_members, slot_valid = comb.slot_cliques(members, valid, np.where(predicted, node, -1))
    batched = comb.paper_clique_max(r[:, None, :], slot_members, slot_valid)[:, 0]
    assert np.array_equal(batched, comb.paper_clique_max(r[:, None, :], slot_members, slot_valid, first=False)[:, 0])
    n_bitten = 0
    for b in range(n_states):
        adj = result_adjacency()
        for a, c in vetoed[b]:
            adj[np.ix_(node == a, node == c)] = adj[np.ix_(node == c, node == a)] = False
        idx = np.flatnonzero(predicted[b])
        cliques = [tuple(idx[list(c)]) for c in brute_maximal_cliques(adj[np.ix_(idx, idx)]) if len(c) >= 2]
        value, chosen = comb.paper_combination(r[b], predicted[b], vetoed[b])
        if not cliques:
            assert np.isnan(value) and batched[b] == -np.inf
            continue
        best = max(r[b, list(c)].sum() for c in cliques)
        assert value == pytest.approx(best, abs=1e-12)
        assert batched[b] == pytest.approx(best, abs=1e-12)
        assert tuple(j for _, j in chosen) in cliques
        n_bitten += not np.isclose(best, comb.paper_combination(r[b], predicted[b])[0])
    assert n_bitten >= 3                      # the veto changes the value in a fair share of states


def test_paper_clique_max_graph_with_gradient(synthetic):
    """PyTensor paper_clique_max on a (B, k) grid (every result a slot): values as numpy, gradient =
    the chosen members."""
    comb, _ = synthetic
    rng = np.random.default_rng(11)
    predicted = rng.random((5, len(IDS))) < 0.6
    predicted[0] = False                                  # nothing predicted: −inf
    vetoed = [_random_veto(comb, rng, 0.4) for _ in range(5)]
    members, valid = comb.paper_cliques(predicted @ comb.versions.sum(axis=0) > 0, vetoed)
    members, valid = comb.slot_cliques(members, valid, np.where(predicted, comb.graph.result_node, -1))
    r = np.where(predicted[:, None, :], rng.normal(0.3, 1.5, (5, 2, len(IDS))), 0.0)
    x, m, v = pt.tensor3("r"), pt.tensor4("m"), pt.tensor3("v")
    out = comb.paper_clique_max(x, m, v)
    f = pytensor.function([x, m, v], [out, pytensor.grad(out[1:, 0].sum(), x)], mode=FAST)
    value, grad = f(r, members, valid)
    np.testing.assert_array_equal(value, comb.paper_clique_max(r, members, valid))
    assert (value[0] == -np.inf).all()
    for b in range(1, 5):
        expected, chosen = comb.paper_combination(r[b, 0], predicted[b], vetoed[b])
        assert value[b, 0] == pytest.approx(expected, abs=1e-12)
        assert grad[b, 0].tolist() == [float(j in [c for _, c in chosen]) for j in range(len(IDS))]


def test_deficits_where_paper_definition_differs():
    """The paper enumerates cliques among predicted analyses only; ours are static.

    A-1 combines with A-2 and A-3; A-2 and A-3 do not combine. Only A-1 and A-2 have a prediction,
    A-2 with a deficit (r < 0). The paper's only maximal clique is {A-1, A-2}: ln R = 2 − 1 = 1.
    Ours has {A-1, A-2} and {A-1, A-3}; the latter drops the deficit: ln R = 2.
    """
    allow = AllowLists({"A-1": ("A-2", "A-3")}, {})
    comb = build_combiner(build_graph(["A-1", "A-2", "A-3"], ["ATLAS"] * 3, [13.0] * 3, allow))
    r = np.array([2.0, -1.0, 0.0])
    assert comb.combine(r, "max") == 2.0
    assert comb.best_combination(r) == (("A-1", 0),)
    assert comb.paper_combination(r, r != 0) == (1.0, (("A-1", 0), ("A-2", 1)))
    assert comb.paper_max(r, r != 0) == 1.0
    r_excess = np.array([2.0, 1.0, 0.0])           # no deficit: both definitions agree
    assert comb.combine(r_excess, "max") == 3.0


@pytest.fixture(scope="module")
def matrix(shared):
    return read_allow_lists(shared / "data" / "raw" / "protomodels" / "combination-matrix")


def test_real_database_clique_counts(db124_compiled, matrix):
    arrays = db124_compiled.arrays
    all_results = build_combiner(graph_for_database(arrays, matrix, "all"))
    assert all_results.n_cliques == {("ATLAS", 8.0): 15, ("ATLAS", 13.0): 261,
                                     ("CMS", 8.0): 29, ("CMS", 13.0): 23}
    assert all_results.n_global_cliques == 15 * 261 * 29 * 23 == 2_611_305
    with_llhd = build_combiner(graph_for_database(arrays, matrix))
    assert with_llhd.n_cliques == {("ATLAS", 8.0): 6, ("ATLAS", 13.0): 12,
                                   ("CMS", 8.0): 18, ("CMS", 13.0): 17}
    # The factorised max equals a brute-force max over the cliques of a 4-member sub-product.
    rng = np.random.default_rng(3)
    r = rng.normal(0, 1, len(arrays.result_id))
    per_group = [np.max(s) for s in with_llhd.clique_scores(r)]
    assert with_llhd.combine(r, "max") == pytest.approx(sum(per_group), abs=1e-12)


def test_empty_graph():
    comb = build_combiner(build_graph(["A-1", "B-1"], ["ATLAS", "CMS"], [8.0, 8.0], ALLOW,
                                      include=[False, False]))
    assert comb.n_global_cliques == 0 and comb.graph.n_nodes == 0
    r = np.ones((3, 2))
    assert comb.combine(r, "max").tolist() == [0.0, 0.0, 0.0]
    assert comb.combine(r, "logsumexp").tolist() == [0.0, 0.0, 0.0]
    assert comb.paper_max(r, r > 0).tolist() == [-np.inf] * 3
    assert comb.best_combination(r[0]) == () and np.isnan(comb.paper_combination(r[0], r[0] > 0)[0])


def _slot_layout_reference(members, valid, slot_node):
    """Plain-Python statement of slot_cliques' layout: per state and group, per valid clique in
    order, one clique per choice of one slot per member node (nodes ascending, the last fastest;
    each node's slots ascending); C' the largest count (at least 1)."""
    n_b, n_groups = valid.shape[:2]
    n_s = slot_node.shape[1]
    rows = [[[] for _ in range(n_groups)] for _ in range(n_b)]
    for b, g in itertools.product(range(n_b), range(n_groups)):
        for c in np.flatnonzero(valid[b, g] > 0):
            slots = [s for s in range(n_s) if slot_node[b, s] >= 0 and members[b, g, c, slot_node[b, s]] > 0]
            nodes = sorted({int(slot_node[b, s]) for s in slots})
            rows[b][g] += itertools.product(*[[s for s in slots if slot_node[b, s] == n] for n in nodes])
    n_c = max([len(r) for state in rows for r in state] + [1])
    out, out_valid = np.zeros((n_b, n_s, n_groups, n_c)), np.zeros((n_b, n_groups, n_c))
    for b, g in itertools.product(range(n_b), range(n_groups)):
        for c, choice in enumerate(rows[b][g]):
            out_valid[b, g, c] = 1.0
            out[b, list(choice), g, c] = 1.0
    return out, out_valid


def test_slot_cliques_layout(synthetic):
    """slot_cliques (compiled) lays out the cliques as the plain-Python reference, exactly, on 200
    random states (slots shuffled and padded), most of them with twins."""
    comb, _ = synthetic
    rng = np.random.default_rng(21)
    n_twins = 0
    for _ in range(20):
        n_b = int(rng.integers(1, 20))
        predicted = rng.random((n_b, len(IDS))) < rng.uniform(0.2, 0.9, (n_b, 1))
        vetoed = [_random_veto(comb, rng, rng.uniform(0.0, 0.6)) for _ in range(n_b)]
        members, valid = comb.paper_cliques(predicted @ comb.versions.sum(axis=0) > 0, vetoed)
        slot_node = np.where(predicted, comb.graph.result_node, -1)[:, rng.permutation(len(IDS))]
        slot_node = np.concatenate([slot_node, np.full((n_b, int(rng.integers(0, 3))), -1)], axis=1)
        got, want = comb.slot_cliques(members, valid, slot_node), _slot_layout_reference(members, valid, slot_node)
        assert all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(got, want))
        n_twins += sum(len(set(r[r >= 0].tolist())) < (r >= 0).sum() for r in slot_node)
    assert n_twins >= 50
