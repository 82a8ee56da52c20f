"""The likelihood target's compiled pieces against the numpy / PyTensor formulations they replaced:
:func:`result_columns` (stage 2: critic, chosen predictions, likelihood data, slots) against the
numpy code of ``LikelihoodTarget.result_inputs`` before it (argsorts, np.fmax.reduceat per key,
np.maximum.at, fancy assignment), equal to the bit on random inputs with many ties, NaN, zero and
negative limits; and the C gather/scatter Ops of :mod:`.slot_indexing` against numpy's indexing and
PyTensor's advanced-indexing gradients, under the C VM and the Python linker."""

import numpy as np
import pytest

from tdmcmc.models.greedy.objective import MISSING_R
from tdmcmc.models.protomodel.result_columns import result_columns


def _first_max_per_key(candidates, key, value):
    """The previous numpy selection: per key the largest value (NaN only when all are), the first
    candidate (priority order) on ties; in increasing key order."""
    if not len(candidates):
        return candidates
    c = candidates[np.argsort(key[candidates], kind="stable")]
    k, v = key[c], value[c]
    new = np.ones(len(k), bool)
    new[1:] = k[1:] != k[:-1]
    segment = np.cumsum(new) - 1
    best = np.fmax.reduceat(v, np.flatnonzero(new))[segment]
    hit = np.flatnonzero((v == best) | np.isnan(best))
    first = np.ones(len(hit), bool)
    first[1:] = segment[hit[1:]] != segment[hit[:-1]]
    return c[hit[first]]


def _numpy_columns(n_b, model, ds, txname, xsec, obs, exp, dataset_result, dataset_em, em_ok, in_graph, code,
                   n_codes, observed_n, expected_bg, bg_error, result_lumi, ratio_key, em_cols, ul_cols, sl, node):
    n_r, n_tx = len(in_graph), int(txname.max(initial=0)) + 1
    res, em = dataset_result[ds], dataset_em[ds]
    with np.errstate(divide="ignore", invalid="ignore"):          # the cases include zero limits
        r_obs = np.where(np.isfinite(obs), xsec / np.where(np.isfinite(obs), obs, 1.0), MISSING_R)
    positive = exp > 0
    r_exp = np.where(np.isfinite(exp) & positive, xsec / np.where(positive, exp, 1.0), np.nan)
    order = np.argsort((model * len(dataset_result) + ds) * (n_tx + 1) + txname + 1, kind="stable")
    critic = np.zeros((n_b, n_r))
    np.maximum.at(critic, (model[~em], res[~em]), r_obs[~em])
    best_em = _first_max_per_key(order[em[order]], model * n_r + res, np.where(np.isnan(r_exp), r_obs, r_exp))
    at = model[best_em], res[best_em]
    critic[at] = np.maximum(critic[at], r_obs[best_em])
    critic_choice = np.full((n_b, n_r), -1)
    critic_choice[at] = best_em
    best_ul = _first_max_per_key(order[~em[order]], model * n_r + res, r_obs)
    critic_choice[model[best_ul], res[best_ul]] = best_ul
    ok = np.isfinite(obs) & positive & in_graph[res] & (~em | em_ok[ds])
    key = obs / np.where(ok, exp, 1.0) if ratio_key else r_exp
    chosen = _first_max_per_key(order[ok[order]], model * n_r + code[res], key)
    cm, cr = model[chosen], res[chosen]
    selected, signal, choice = np.zeros((n_b, n_r)), np.zeros((n_b, n_r)), np.full((n_b, n_r), -1)
    selected[cm, cr], choice[cm, cr] = 1.0, chosen
    lumi = result_lumi[cr]
    signal[cm, cr] = np.where(em[chosen], xsec[chosen] * lumi, xsec[chosen])
    cd = ds[chosen]
    values = np.stack([observed_n[cd], expected_bg[cd], bg_error[cd], obs[chosen], exp[chosen], lumi])
    valid = np.isfinite(values) & np.where(np.arange(6)[:, None] < 2, values >= 0, values > 0)
    dense = np.ones((6, n_b, n_r))
    dense[:, cm, cr] = np.where(valid, values, 1.0)
    # slots: per state its selected columns of each kind in their order, padded with its first unselected one
    picked = selected > 0
    spare = np.argmax(~picked, axis=1)[:, None]
    rows = np.arange(n_b)[:, None]
    ext = np.concatenate([picked, np.zeros((n_b, 1), bool)], axis=1)
    slots = []
    for cols in (np.append(em_cols, -1), np.append(ul_cols, -1)):
        mask = ext[:, cols]
        pick = np.argsort(~mask, axis=1, kind="stable")[:, :max(int(mask.sum(axis=1).max(initial=0)), 1)]
        slots.append(np.where(mask[rows, pick], cols[pick], spare))
    slot_results = np.concatenate([*slots, np.broadcast_to(sl, (n_b, len(sl)))], axis=1).astype(np.int64)
    slot_node = np.where(np.take_along_axis(selected, slot_results, 1) > 0, node[slot_results], -1)
    return critic, critic_choice, chosen, selected, signal, choice, dense, slots[0], slots[1], slot_node


def _random_inputs(rng, ratio_key):
    """A database of 40 datasets in 14 results (9 analysis ids, UL and EM versions sharing some) and
    the predictions of a few models, with values from small sets (ties) and NaN / 0 / negative limits."""
    n_b, n_ds, n_r, n_codes = int(rng.integers(1, 6)), 40, 14, 9
    dataset_result = np.sort(np.concatenate([np.arange(n_r), rng.integers(0, n_r, n_ds - n_r)]))
    result_em = rng.random(n_r) < 0.5
    code = rng.integers(0, n_codes, n_r)
    in_graph = rng.random(n_r) < 0.85
    node = np.where(in_graph, rng.permutation(n_r), -1)
    sl = np.flatnonzero(in_graph & result_em)[:int(rng.integers(0, 2))]
    candidate = in_graph.copy()
    candidate[sl] = False
    em_cols, ul_cols = (np.flatnonzero(candidate & kind) for kind in (result_em, ~result_em))
    em_cols, ul_cols = (c[np.argsort(node[c], kind="stable")] for c in (em_cols, ul_cols))
    choices = np.array([np.nan, -1.0, 0.0, 0.5, 2.0, 3.0, np.inf])
    observed_n, expected_bg, bg_error = (rng.choice(choices, n_ds) for _ in range(3))
    em_ok = np.isfinite(observed_n) & np.isfinite(expected_bg) & (np.nan_to_num(bg_error) > 0)
    n = int(rng.integers(0, 120))
    ds = rng.integers(0, n_ds, n)
    dataset_em = result_em[dataset_result]
    txname = np.where(dataset_em[ds], -1, rng.integers(0, 4, n))
    xsec = rng.choice([0.0, 1.0, 2.0, 4.0], n)
    obs, exp = (rng.choice(np.array([np.nan, 0.0, -1.0, 1.0, 2.0, 8.0]), n) for _ in range(2))
    lumi = rng.choice([36.1, 139.0], n_r)
    return (n_b, rng.integers(0, n_b, n), ds, txname, xsec, obs, exp, dataset_result, dataset_em, em_ok, in_graph,
            code, n_codes, observed_n, expected_bg, bg_error, lumi, ratio_key, em_cols, ul_cols,
            sl.astype(np.int64), node)


@pytest.mark.parametrize("seed", range(40))
def test_result_columns_match_numpy(seed):
    rng = np.random.default_rng(seed)
    args = _random_inputs(rng, ratio_key=seed % 2 == 0)
    got, ref = result_columns(*args), _numpy_columns(*args)
    names = ("critic", "critic_choice", "chosen", "selected", "signal", "choice", "values", "em_slots", "ul_slots",
             "slot_node")
    for name, g, r in zip(names, got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape, name
        assert g.tobytes() == r.tobytes(), name


def test_result_columns_choose_and_tie_break():
    """Hand-made: one model, UL result 0 (analysis A) and EM result 1 (analysis A, two SRs), UL
    result 2 (analysis B). The ratio key picks the EM SR of larger UL_obs/UL_exp over the UL result;
    ties go to the first dataset; the critic takes the largest UL r_obs and the EM SR of largest r_exp."""
    dataset_result = np.array([0, 1, 1, 2])
    dataset_em = np.array([False, True, True, False])
    args = dict(n_b=1, model=np.zeros(5, np.int64), dataset=np.array([0, 0, 1, 2, 3]),
                txname=np.array([0, 1, -1, -1, 2]), xsec=np.array([1.0, 3.0, 2.0, 2.0, 1.0]),
                obs=np.array([2.0, 2.0, 4.0, 2.0, 1.0]), exp=np.array([1.0, 1.0, 2.0, 1.0, 1.0]),
                dataset_result=dataset_result, dataset_em=dataset_em, em_ok=np.ones(4, bool),
                in_graph=np.ones(3, bool), analysis_code=np.array([0, 0, 1]), n_codes=2,
                observed_n=np.full(4, 5.0), expected_bg=np.full(4, 4.0), bg_error=np.full(4, 1.0),
                result_lumi=np.array([10.0, 20.0, 30.0]), ratio_key=True, em_columns=np.array([1]),
                ul_columns=np.array([0, 2]), sl_results=np.zeros(0, np.int64), result_node=np.array([0, 1, 2]))
    critic, critic_choice, chosen, _, signal, _, _, em_slots, ul_slots, slot_node = result_columns(**args)
    # analysis A: predictions 0, 1 (ratio 2), 2 (EM, ratio 2), 3 (EM, ratio 2): the first by dataset, txname: 0
    assert chosen.tolist() == [0, 4]
    np.testing.assert_array_equal(critic, [[1.5, 1.0, 1.0]])    # UL max(1/2, 3/2); EM: r_obs of r_exp 2 (2/2)
    np.testing.assert_array_equal(signal, [[1.0, 0.0, 1.0]])
    assert critic_choice.tolist() == [[1, 3, 4]]
    assert em_slots.tolist() == [[1]] and ul_slots.tolist() == [[0, 2]] and slot_node.tolist() == [[-1, 0, 2]]
    args["ratio_key"] = False                   # best expected: r_exp 1, 3, 1, 2 in A -> prediction 1
    assert result_columns(**args)[2].tolist() == [1, 4]


# -- the C gather / scatter Ops --------------------------------------------------------------------

@pytest.fixture(scope="module", params=["cvm", "py"])
def slot_function(request):
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    from tdmcmc.models.protomodel.slot_indexing import gather, scatter

    slots, x1, x2, v = pt.matrix("slots", dtype="int64"), pt.matrix("x1"), pt.matrix("x2"), pt.matrix("v")
    col = pt.col("col")
    y1, y2 = gather(slots, x1, x2)
    dense = scatter(slots, v, x1.shape[1])
    # y2 × a column: its cotangent reaches the Op with static shape (B, 1) (broadcast there)
    cost = (y1 ** 2).sum() + (3.0 * y2 * col).sum() + (x2 ** 2).sum() + (dense * x1).sum()
    return pytensor.function([slots, x1, x2, v, col], [y1, y2, dense, *pytensor.grad(cost, [x1, x2, v])],
                             mode=Mode(linker=request.param, optimizer="fast_run"))


def _reference(*args):
    """The same outputs and gradients by PyTensor's advanced indexing."""
    import pytensor
    import pytensor.tensor as pt

    s, a, b, w, col = pt.matrix(dtype="int64"), pt.matrix(), pt.matrix(), pt.matrix(), pt.col()
    rows = pt.arange(s.shape[0])[:, None]
    y1, y2 = a[rows, s], b[rows, s]
    dense = pt.set_subtensor(pt.zeros_like(a)[rows, s], w)
    cost = (y1 ** 2).sum() + (3.0 * y2 * col).sum() + (b ** 2).sum() + (dense * a).sum()
    return pytensor.function([s, a, b, w, col], [y1, y2, dense, *pytensor.grad(cost, [a, b, w])])(*args)


@pytest.mark.parametrize("seed", range(3))
def test_slot_ops_match_advanced_indexing(slot_function, seed):
    rng = np.random.default_rng(seed)
    n_b, n, s = 4, 9, 5
    slots = rng.integers(-n, n, (n_b, s))            # repeated columns and negative ones
    x1, x2 = rng.normal(size=(n_b, n)), rng.normal(size=(n_b, n))
    v, col = rng.normal(size=(n_b, s)), rng.normal(size=(n_b, 1))
    got = slot_function(slots, x1, x2, v, col)
    rows = np.arange(n_b)[:, None]
    np.testing.assert_array_equal(got[0], x1[rows, slots])
    np.testing.assert_array_equal(got[1], x2[rows, slots])
    ref = _reference(slots, x1, x2, v, col)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-15, atol=0)
    # non-contiguous inputs give the same
    again = slot_function(np.asfortranarray(slots), np.asfortranarray(x1), x2[:, :], v[::-1][::-1], col)
    for g, r in zip(again, got):
        np.testing.assert_array_equal(g, r)


def test_slot_ops_reject_out_of_range(slot_function):
    x = np.zeros((2, 3))
    with pytest.raises(IndexError):
        slot_function(np.array([[0, 3], [1, 1]]), x, x, np.zeros((2, 2)), np.ones((2, 1)))
    with pytest.raises(IndexError):
        slot_function(np.array([[0, -4], [1, 1]]), x, x, np.zeros((2, 2)), np.ones((2, 1)))


@pytest.mark.parametrize("linker", ["cvm", "py"])
def test_slot_ops_broadcast_single_rows_and_columns(linker):
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    from tdmcmc.models.protomodel.slot_indexing import gather, scatter

    slots, field, col, row = pt.matrix("slots", dtype="int64"), pt.row("field"), pt.col("col"), pt.row("row")
    f = pytensor.function([slots, field, col, row], [gather(slots, field)[0], scatter(slots, col, 6),
                                                     scatter(slots, row, 6)],
                          mode=Mode(linker=linker, optimizer="fast_run"))
    s = np.array([[0, 5, 2], [1, 1, -1]])
    c, r = np.array([[2.0], [3.0]]), np.array([[0.5, 1.5, 2.5]])
    got = f(s, np.arange(6.0)[None, :], c, r)
    np.testing.assert_array_equal(got[0], np.arange(6.0)[s])
    rows = np.arange(2)[:, None]
    for g, v in zip(got[1:], (c, r)):
        ref = np.zeros((2, 6))
        ref[rows, s] = v
        np.testing.assert_array_equal(g, ref)
