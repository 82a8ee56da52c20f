"""The paper's hasOverlap veto of a batch in flat form (ContributingRows.vetoed_node_pairs) against
pairwise intersections of each chosen prediction's contributing rows found by a scan of the whole
topology table (tests.models.test_result_inputs), with the forward trace's map values and without;
and the cliques from the flat form (Combiner.paper_cliques_flat) against those of the per-state
lists (Combiner.paper_cliques).
Batch: the five oracle models (injected σ) and 16 random protomodels of their space (fitted σ), on 1.2.4.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.models.test_result_inputs import _scanned_rows, batch  # noqa: F401 (batch: a fixture)


@pytest.fixture(scope="module")
def chosen_nodes(oracle_space_target, batch):
    """The batch, its flat predictions and per predicted graph node its state, node and chosen prediction."""
    tgt = oracle_space_target
    models, arrays, preds = batch
    inputs = tgt.result_inputs(preds, models, arrays)
    model, res = np.nonzero((inputs.choice >= 0) & (tgt.graph.result_node >= 0))
    return arrays, preds, model, tgt.graph.result_node[res], inputs.choice[model, res]


def _vetoed(tgt, arrays, preds, model, node, chosen):
    return tgt._contributing_rows.vetoed_node_pairs(arrays, model, node, chosen, preds.part_prediction,
                                                    preds.part_txname, tgt._group_index, tgt.graph.adjacency,
                                                    preds.trace)


def test_vetoed_node_pairs_against_pairwise_rows(oracle_space_target, chosen_nodes):
    """Vetoed: same group, combinable, and rows in common; states in order; the same pairs without
    the trace; the veto bites in at least 5 of the 21 models and in some pairs only."""
    tgt = oracle_space_target
    arrays, preds, model, node, chosen = chosen_nodes
    state, pairs = _vetoed(tgt, arrays, preds, model, node, chosen)
    untraced = _vetoed(tgt, arrays, replace(preds, trace=None), model, node, chosen)
    assert np.array_equal(state, untraced[0]) and np.array_equal(pairs, untraced[1])
    assert np.all(np.diff(state) >= 0)
    g, group = tgt.graph, tgt._group_index
    n_bitten = n_spared = 0
    for b in range(len(arrays)):
        mine = np.flatnonzero(model == b)
        rows = [_scanned_rows(tgt, arrays[b], preds.part_txname[preds.part_prediction == chosen[k]]) for k in mine]
        ref, spared = set(), 0
        for i, k in enumerate(mine):
            for j in range(i + 1, len(mine)):
                m = mine[j]
                if group[node[k]] == group[node[m]] and g.adjacency[node[k], node[m]]:
                    if np.intersect1d(rows[i], rows[j]).size:
                        ref.add((min(node[k], node[m]), max(node[k], node[m])))
                    else:
                        spared += 1
        assert {(min(a, c), max(a, c)) for a, c in pairs[state == b].tolist()} == ref, b
        assert len(pairs[state == b]) == len(ref)
        n_bitten += bool(ref)
        n_spared += spared
    print(f"the veto bites in {n_bitten} of {len(arrays)} models; {n_spared} combinable pairs spared")
    assert n_bitten >= 5 and n_spared >= 5


def test_vetoed_node_pairs_of_a_model_alone(oracle_space_target, batch, chosen_nodes):
    """Each model in a batch of its own gets the pairs it gets in the batch (also when its groups
    are not crowded)."""
    tgt = oracle_space_target
    arrays, preds, model, node, chosen = chosen_nodes
    state, pairs = _vetoed(tgt, arrays, preds, model, node, chosen)
    n_uncrowded = 0
    for b in range(len(arrays)):
        one = tgt.predictor.evaluate_batch(arrays[b:b + 1])
        inputs = tgt.result_inputs(one, batch[0][b:b + 1], arrays[b:b + 1])
        _, res = np.nonzero((inputs.choice >= 0) & (tgt.graph.result_node >= 0))
        alone = _vetoed(tgt, arrays[b:b + 1], one, np.zeros(len(res), np.int64), tgt.graph.result_node[res],
                        inputs.choice[0, res])[1]
        assert {tuple(p) for p in alone.tolist()} == {tuple(p) for p in pairs[state == b].tolist()}, b
        n_uncrowded += np.bincount(tgt._group_index[tgt.graph.result_node[res]]).max(initial=0) < 2
    print(f"{n_uncrowded} models without two predicted results in one group")
    assert n_uncrowded >= 1


def test_paper_cliques_flat_equals_lists(oracle_space_target, chosen_nodes):
    """Cliques of the flat veto (states shuffled, pairs reversed) = cliques of the per-state lists."""
    from tdmcmc.models.likelihood.cliques import build_combiner

    tgt = oracle_space_target
    arrays, preds, model, node, chosen = chosen_nodes
    state, pairs = _vetoed(tgt, arrays, preds, model, node, chosen)
    node_predicted = np.zeros((len(arrays), tgt.graph.n_nodes), bool)
    node_predicted[model, node] = True
    lists = [pairs[state == b] for b in range(len(arrays))]
    want = build_combiner(tgt.graph).paper_cliques(node_predicted, lists)          # cold memo
    as_tuples = [[(int(c), int(a)) for a, c in p] for p in lists]                   # reversed, tuples
    assert all(np.array_equal(w, t) for w, t in zip(want, tgt.combiner.paper_cliques(node_predicted, as_tuples)))
    shuffle = np.random.default_rng(3).permutation(len(state))
    got = tgt.combiner.paper_cliques_flat(node_predicted, state[shuffle], pairs[shuffle, ::-1])
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])
    unvetoed = tgt.combiner.paper_cliques(node_predicted)
    assert unvetoed[0].shape != got[0].shape or not np.array_equal(unvetoed[0], got[0])     # the veto matters
