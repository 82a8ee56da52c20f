"""SR selection ``combined`` of the likelihood target (models/protomodel/target.py) on the real 1.2.4 database.

CMS-PAS-SUS-16-052-agg (17 SRs, covariance, no third moments: SLv1) enters the paper and bayes
graphs with the simplified likelihood over all its SRs; the other EM results keep their
best-expected SR; the three pyhf results keep theirs too, with a warning. Its only txnames are
T2bbWWoff and T6bbWWoff, so the models that populate it are compressed stops: t̃ → b C1,
C1 → N1 f f' with m(C1) = (m(t̃) + m(N1))/2, Δm = m(t̃) − m(N1) = 20–70 GeV (the electroweakino
models of the brief give no prediction there).

References (independent of the graph): the numpy simplified likelihood (`sl_nll`, NUMPY backend,
validated against SModelS 3.2.1 to 1.2e-12 on this very result), numpy em_nll/ul_nll and numpy
`Combiner.combine`; the paper K by a dense μ grid plus scipy's bounded minimiser per model.
"""

from __future__ import annotations

import numpy as np
import pytest

# (m(t̃), Δm) GeV, off the maps' grid lines (kinks of the interpolation)
STOPS = [(453.7, 41.3), (502.1, 22.9), (551.3, 68.3), (603.9, 38.7), (648.2, 61.9), (702.6, 23.3)]


@pytest.fixture(scope="module")
def combined(db124, shared, db124_compiled, oracle_space):
    """(target with sr_selection='combined' on the oracle particles, its construction warnings)."""
    import warnings

    from tdmcmc.models.protomodel.target import LikelihoodTarget

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tgt = LikelihoodTarget(db124, shared / "data" / "raw" / "protomodels" / "combination-matrix",
                               space=oracle_space, compiled=db124_compiled, sr_selection="combined")
    return tgt, [str(w.message) for w in caught]


def _stop(space, m_stop: float, dm: float):
    from tdmcmc.models.protomodel.model import protomodel_from_dict

    return protomodel_from_dict({
        "masses": {"1000006": m_stop, "1000024": m_stop - dm / 2, "1000022": m_stop - dm},
        "decays": {"1000006": {"1000024 5": 1.0},
                   "1000024": {"1000022 2 1": 0.67, "1000022 11 12": 0.165, "1000022 13 14": 0.165}}}, space)


@pytest.fixture(scope="module")
def models(combined, oracle_models):
    """Six compressed-stop models, the best-paper model and the electroweakino oracle model."""
    from tdmcmc.models.protomodel.model import protomodel_from_dict

    tgt = combined[0]
    return ([_stop(tgt.space, *p) for p in STOPS]
            + [protomodel_from_dict(oracle_models[n][0], tgt.space) for n in ("best_paper", "ewkino400_lsp100")])


def _numpy_contributions(tgt, inputs, b: int, mu: float) -> np.ndarray:
    """ln L_i(μ s_i) − ln L_i(0) of every result from the per-result inputs, numpy only."""
    from tdmcmc.models.likelihood import em_nll, ul_nll
    from tdmcmc.models.likelihood.simplified import sl_nll

    is_em = np.asarray(tgt.compiled.arrays.result_is_em, bool)
    out = np.zeros(tgt.n_results)
    for j, nll, names, variant in ((np.flatnonzero(inputs.selected[b] * is_em), em_nll, ("signal", "n", "b", "db"),
                                    tgt.likelihood.em),
                                   (np.flatnonzero(inputs.selected[b] * ~is_em), ul_nll,
                                    ("signal", "ul_obs", "ul_exp", "lumi"), tgt.likelihood.ul)):
        data = [getattr(inputs, k)[b, j] for k in names]
        out[j] = nll(0.0, *data, variant=variant) - nll(mu, *data, variant=variant)
    start = 0
    for r, model in zip(tgt.sl_results, tgt._sl_models):
        signal = inputs.sl_signal[b, start:start + len(model.n)]
        start += len(model.n)
        if inputs.selected[b, r]:
            out[r] = float(sl_nll(0.0, signal, model) - sl_nll(mu, signal, model))
    return out


def test_combined_results_and_warning(combined):
    """The covariance result is CMS-PAS-SUS-16-052-agg (17 SRs, SLv1); the pyhf results are named in
    the construction warning."""
    tgt, messages = combined
    a = tgt.compiled.arrays
    assert [str(a.result_id[r]) for r in tgt.sl_results] == ["CMS-PAS-SUS-16-052-agg"]
    assert [len(m.n) for m in tgt._sl_models] == [17] and not tgt._sl_models[0].is_skewed
    pyhf = [m for m in messages if "pyhf" in m]
    assert len(pyhf) == 1 and "ATLAS-SUSY-2018-31" in pyhf[0]


def test_combined_inputs(combined, models):
    """The stop models populate every SR of the combined result (sl_signal = σ·ε·L of the flat
    prediction of each SR); the other results choose the best-expected SR (largest r_exp)."""
    tgt = combined[0]
    a = tgt.compiled.arrays
    preds, inputs = tgt.prepare(models)
    r = tgt.sl_results[0]
    datasets = a.covariances[r][0]
    for b in range(len(STOPS)):
        assert inputs.selected[b, r] == 1.0
        assert np.all(inputs.sl_choice[b] >= 0)
        k = inputs.sl_choice[b]
        assert np.array_equal(preds.dataset[k], datasets)
        np.testing.assert_allclose(inputs.sl_signal[b], preds.xsec_fb[k] * a.result_lumi[r], rtol=1e-14)
    assert np.all(inputs.sl_signal[len(STOPS):] == 0.0)            # gluino/squark and ewkino models: none
    # best-expected elsewhere: the chosen prediction has the largest r_exp among its analysis id's
    em_ok = tgt.has_likelihood(preds) & tgt._in_graph[a.dataset_result[preds.dataset]]
    r_exp = preds.xsec_fb / np.where(preds.ul_exp_fb > 0, preds.ul_exp_fb, np.inf)
    ids = np.asarray(a.result_id)[a.dataset_result[preds.dataset]]
    n_checked = 0
    for b, j in zip(*np.nonzero(inputs.choice >= 0)):
        i = inputs.choice[b, j]
        rivals = np.flatnonzero((preds.model == b) & (ids == ids[i]) & em_ok & np.isfinite(preds.ul_obs_fb))
        assert r_exp[i] == pytest.approx(r_exp[rivals].max(), rel=1e-12)
        n_checked += 1
    assert n_checked >= 20


def test_bayes_combined_against_numpy(combined, models):
    """ln R(μ) and its contributions against numpy (per-result numpy likelihoods, the numpy SLv1,
    numpy Combiner.combine) at random μ in [0, 2]: the SL contribution within 1e-6 (observed
    ~2e-12), ln R within 1e-6."""
    tgt = combined[0]
    mu = np.random.default_rng(3).uniform(0.0, 2.0, len(models))
    values, _, inputs = tgt.evaluate_bayes(models, mu)
    r = tgt.sl_results[0]
    for b in range(len(models)):
        ref = _numpy_contributions(tgt, inputs, b, mu[b])
        np.testing.assert_allclose(values.contributions[b], ref, atol=1e-6, rtol=0)
        assert values.log_ratio[b] == pytest.approx(float(tgt.combiner.combine(ref, "max")), abs=1e-6)
    assert np.all(np.abs(values.contributions[:len(STOPS), r]) > 0.1)     # the SL term is not trivial
    assert np.all(values.contributions[len(STOPS):, r] == 0.0)
    assert values.grad_sl_signal.shape == (len(models), 17)


def _numpy_paper_k(tgt, inputs, b: int, mu_max: float) -> float:
    """K = 2 max_μ F(μ) + 2 ln π, F = Σ_groups max over the state's valid cliques of the clique's
    Σ ln L ratios, μ on [0, min(μ_max, 1e4)]: 201-point grid, then scipy's bounded Brent in the
    best grid cell's neighbours (every term is log-concave in μ; a clique switch inside a cell is
    caught by comparing with the grid)."""
    from scipy.optimize import minimize_scalar

    selected = inputs.selected[b] > 0

    def f(mu):
        nodes = np.nan_to_num(tgt.combiner.node_values(_numpy_contributions(tgt, inputs, b, mu), "max",
                                                       mask=selected), neginf=0.0)
        scores = np.where(inputs.clique_valid[b] > 0, inputs.clique_members[b] @ nodes, -np.inf)
        return float(scores.max(axis=-1).sum())

    top = min(mu_max, 1e4)
    grid = np.linspace(0.0, top, 201)
    values = np.array([f(m) for m in grid])
    k = int(np.argmax(values))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    best = minimize_scalar(lambda m: -f(m), bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    f_max = max(values[k], -best.fun, f(0.0), f(top))
    return 2.0 * max(f_max, 0.0) + 2.0 * inputs.log_prior[b]


def test_paper_combined_against_numpy(combined, models):
    """K of the paper graph (μ profile over the state's cliques) against the numpy profile of the
    same cliques with numpy likelihoods: 1e-6 absolute (the graph's bracket is ~1e-8 μ_max wide).
    At least one model's best clique includes the combined result."""
    tgt = combined[0]
    values, _, inputs = tgt.evaluate(models)
    r = tgt.sl_results[0]
    n_k = n_with_sl = 0
    for b in range(len(models)):
        if not np.isfinite(values.K[b]):
            assert not np.any(inputs.clique_valid[b] > 0)
            continue
        n_k += 1
        assert values.K[b] == pytest.approx(_numpy_paper_k(tgt, inputs, b, values.mu_max[b]), abs=1e-6), b
        n_with_sl += inputs.choice[b, r] in tgt.best_combination(values, inputs, b)
    assert n_k >= 5 and n_with_sl >= 1


def test_gradients_of_combined_signals(combined, models):
    """∂K/∂sl_signal (paper graph) and ∂ln R/∂sl_signal (bayes) against central differences of the
    same compiled functions, on the stop model where the combined result is in the best clique, at
    half its signal (μ̂ inside). Steps 1e-4 relative: −ln L_SL ≈ 1.3e4 (its normalisation), so each
    value carries ~1e-11 roundoff; tolerance 1e-4 relative + 1e-6 absolute."""
    tgt = combined[0]
    values, _, inputs = tgt.evaluate(models[:len(STOPS)])
    r = tgt.sl_results[0]
    b = next(b for b in range(len(STOPS)) if inputs.choice[b, r] in tgt.best_combination(values, inputs, b))
    one = {k: getattr(inputs, k)[b:b + 1] for k in tgt._inputs}
    one["sl_signal"] = one["sl_signal"] * 0.5
    f, g = tgt.function(), tgt.bayes_function()
    mu = np.array([0.8])

    def paper(args):
        return f(*[args[k] for k in tgt._inputs])

    def bayes(args):
        return g(*[mu if k == "mu" else args[k] for k in tgt._bayes_inputs])

    base_k = dict(zip(("K", "grad_sl_signal"), (paper(one)[0], paper(one)[-1])))
    base_r = bayes(one)
    n_checked = 0
    for j in np.argsort(-one["sl_signal"][0])[:6]:
        h = 1e-4 * one["sl_signal"][0, j]
        moved = []
        for step in (h, -h):
            s = one["sl_signal"].copy()
            s[0, j] += step
            moved.append({**one, "sl_signal": s})
        fd_k = (paper(moved[0])[0][0] - paper(moved[1])[0][0]) / (2 * h)
        fd_r = (bayes(moved[0])[0][0] - bayes(moved[1])[0][0]) / (2 * h)
        assert base_k["grad_sl_signal"][0, j] == pytest.approx(fd_k, rel=1e-4, abs=1e-6), j
        assert base_r[-1][0, j] == pytest.approx(fd_r, rel=1e-4, abs=1e-6), j
        n_checked += abs(fd_k) > 1e-4
    assert n_checked >= 3


def test_chain_to_masses(combined, models):
    """∂K/∂(masses, BRs) of a compressed-stop model through the combined result's per-SR signals
    (`chain_to_parameters` with ``sl_signal``) against central differences of K (tolerances of
    tests/models/test_gradients.py)."""
    from tdmcmc.models.protomodel.gradients import target_value_and_gradient
    from tests.models.test_gradients import _check_against_fd

    tgt = combined[0]
    values, _, inputs = tgt.evaluate(models[:len(STOPS)])
    r = tgt.sl_results[0]
    b = next(b for b in range(len(STOPS)) if inputs.choice[b, r] in tgt.best_combination(values, inputs, b))
    model = models[b]
    _, grads = target_value_and_gradient(tgt, [model], "K")
    checked, skipped, worst = _check_against_fd(model, grads[0], lambda m: float(tgt.evaluate([m])[0].K[0]),
                                                rel=1e-5, noise=1e-9)
    print(f"K through the combined SL: {checked} coordinates agree (max relative error {worst:.1e}), {skipped} skipped")
    # observed: 7 of 9 coordinates agree to 1e-5; 2 have differences at h and h/10 that disagree
    # (a switch within the step, or the μ profile's ~1e-8 μ_max noise), not investigated further
    assert checked >= 6 and skipped <= 2


def test_cli_passes_sr_selection(monkeypatch, tmp_path):
    """`tdmcmc evaluate --target bayes --sr-selection combined` reaches evaluate_target."""
    import tdmcmc.models.protomodel.cli as cli
    from tdmcmc.cli import main

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        return {"model": "m", "target": "bayes", "K": None, "Z": None, "mu_hat": 0.0, "mu_max": None,
                "r_max": 0.0, "best_combination": [], "predictions": []}

    monkeypatch.setattr(cli, "evaluate_target", fake)
    assert main(["evaluate", str(tmp_path / "m.json"), "--target", "bayes", "--sr-selection", "combined", "--json"]) == 0
    assert seen["sr_selection"] == "combined" and seen["target"] == "bayes"
