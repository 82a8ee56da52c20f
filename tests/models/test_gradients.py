"""Gradients of predictions and of the paper target w.r.t. masses, BRs and κ (models/protomodel/gradients.py)
against central finite differences on the real 1.2.4 database.

Random protomodels on the sub-space of the oracle models' particles (d̃, t̃, g̃, N1, N2, C1): random
masses, BRs over every open channel (Dirichlet), κ in [0.5, 2], fitted σ. Steps: 1e-3 GeV for
masses (inside one simplex of the piecewise-linear maps almost everywhere: grid spacings are
10-100 GeV), 1e-6 for BRs and κ (the predictions are polynomial in them). A coordinate whose
central difference at step h disagrees with the one at h/10 straddles a switch (simplex face,
sigmacut, a selection) and is skipped and counted (checked only where the first difference
disagrees with the gradient); at most 5 % may be.

Tolerances: predictions are smooth in one piece, so the central difference is exact up to
truncation O(h²) (below 1e-8 relative here) and roundoff ~ 1e-15 Σ|c·v| / h; we allow
1e-6 relative + 100× that roundoff. K: its μ̂ comes from a golden-section search (bracket
~1e-8 μ_max), so K carries ~1e-12 noise; we allow 1e-5 relative + 1e-9/h.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

MASS_STEP, BR_STEP, KAPPA_STEP = 1e-3, 1e-6, 1e-6


@pytest.fixture(scope="module")
def space(oracle_models):
    from tdmcmc.models.protomodel.space import default_space
    from tdmcmc.models.protomodel.topologies import restrict_space

    particles = {int(p) for data, _ in oracle_models.values() for p in data["masses"]}
    return restrict_space(default_space(), sorted(particles))


@pytest.fixture(scope="module")
def target(db124, shared, db124_compiled, space):
    from tdmcmc.models.protomodel.target import LikelihoodTarget

    return LikelihoodTarget(db124, shared / "data" / "raw" / "protomodels" / "combination-matrix",
                            space=space, compiled=db124_compiled)


@pytest.fixture(scope="module")
def models(space, target):
    """Random protomodels with at least 20 predictions each."""
    rng = np.random.default_rng(11)
    out = []
    while len(out) < 6:
        model = random_model(space, rng)
        if len(target.predictor.evaluate_batch([model]).xsec_fb) >= 20:
            out.append(model)
    return out


def random_model(space, rng):
    from tdmcmc.models.protomodel.model import Protomodel

    lsp = space.lsp
    while True:
        m_lsp = float(rng.uniform(50, 500))
        masses = {lsp: m_lsp}
        for p in sorted(space.particles):
            if p != lsp and rng.random() < 0.6:
                masses[p] = float(rng.uniform(max(space.particles[p].mass_min, m_lsp + 30), 1800))
        decays = {}
        for p in masses:
            if p == lsp:
                continue
            open_ = [ch for ch in space.particles[p].decays
                     if all(d in masses for d in ch if d in space.particles)
                     and masses[p] > sum(masses[d] if d in space.particles else space.sm_masses.get(d, 0.0)
                                         for d in ch)]
            if not open_:
                break
            decays[p] = dict(zip(open_, map(float, rng.dirichlet(np.ones(len(open_))))))
        else:
            if len(masses) < 2:
                continue
            kappas = {key: float(rng.uniform(0.5, 2.0)) for key, chs in space.kappa_classes().items()
                      if all(abs(q) in masses for q in chs[0].pair)}
            return Protomodel("random", masses, decays, kappas)


def _coordinates(model, grad):
    """(kind, key, value, analytic derivative, perturbed-model function) of every coordinate."""
    for pdg, g in grad.masses.items():
        yield "mass", pdg, MASS_STEP, g, lambda v, pdg=pdg: dataclasses.replace(
            model, masses={**model.masses, pdg: model.masses[pdg] + v})
    for parent, channels in grad.brs.items():
        for ch, g in channels.items():
            old = model.decays.get(parent, {}).get(ch, 0.0)
            if old < BR_STEP:
                continue          # BR 0: one-sided (sigmacut drops rows at BR -> 0+)
            yield "br", (parent, ch), BR_STEP, g, lambda v, parent=parent, ch=ch, old=old: dataclasses.replace(
                model, decays={**model.decays, parent: {**model.decays[parent], ch: old + v}})
    for key, g in grad.kappas.items():
        old = model.kappas.get(key, 1.0)
        yield "kappa", key, KAPPA_STEP, g, lambda v, key=key, old=old: dataclasses.replace(
            model, kappas={**model.kappas, key: old + v})


def _check_against_fd(model, grad, f, rel: float, noise: float) -> tuple[int, int, float]:
    """Central differences of f at every coordinate; returns (checked, skipped at switches, max rel
    error). A coordinate that disagrees is re-differenced at h/10: if the two differences disagree
    with each other the step straddles a switch (skipped), otherwise the gradient is wrong."""
    checked = skipped = 0
    worst = 0.0
    for kind, key, h, g, moved in _coordinates(model, grad):
        fd = (f(moved(h)) - f(moved(-h))) / (2 * h)
        if abs(g - fd) > rel * abs(fd) + noise / h:
            fd_small = (f(moved(h / 10)) - f(moved(-h / 10))) / (2 * h / 10)
            if abs(fd - fd_small) > rel * abs(fd) + 11 * noise / h:
                skipped += 1
                continue
        assert g == pytest.approx(fd, rel=rel, abs=noise / h), (model.masses, kind, key)
        checked += 1
        if abs(fd) > 1e3 * noise / h:
            worst = max(worst, abs(g - fd) / abs(fd))
    return checked, skipped, worst


class _Tally:
    """Central-difference checks summed over models: at least `minimum` coordinates checked and at
    most 5% skipped at switches."""

    def __init__(self, label: str) -> None:
        self.label, self.total, self.skipped, self.worst = label, 0, 0, 0.0

    def add(self, result: tuple[int, int, float]) -> None:
        checked, skipped, worst = result
        self.total, self.skipped, self.worst = self.total + checked, self.skipped + skipped, max(self.worst, worst)

    def check(self, minimum: int) -> None:
        print(f"{self.label}: {self.total} coordinates agree with central differences (max relative error "
              f"{self.worst:.1e}); {self.skipped} skipped at switches")
        assert self.total >= minimum
        assert self.skipped <= 0.05 * (self.total + self.skipped)


def test_log_xsec_gradient_against_pytensor():
    """∂ ln σ/∂m of the fits (inside the table range, below it, above it, and the two-mass
    squark-gluino fit with one mass extrapolated), as :class:`ChannelXsecs` gives them with σ in
    one batched pass, against pytensor.grad of the PyTensor σ graph of each channel."""
    import pytensor
    import pytensor.tensor as pt

    from tdmcmc.models.protomodel.space import default_space
    from tdmcmc.models.protomodel.xsec import channel_xsec_tensor, channel_xsecs

    space = default_space()
    table = channel_xsecs(space, (8, 13))
    cases = {(1000021, 1000021): [(1200, 1200), (250, 250), (2800, 2800)],
             (1000001, 1000021): [(800, 1500), (150, 900), (900, 2900), (2700, 2900)],
             (-1000011, 1000011): [(300, 300), (30, 30), (1300, 1300)],
             (1000023, 1000024): [(400, 420), (90, 110)]}
    m_a, m_b = pt.dvector("m_a"), pt.dvector("m_b")
    outputs, points = [], []
    for pair, where in cases.items():
        for sqrts in (8, 13):
            ln_sigma = pt.log(channel_xsec_tensor(space.channel(pair), m_a, m_b, sqrts)).sum()
            outputs += pytensor.grad(ln_sigma, [m_a, m_b])      # the points are independent
            points.append((pair, sqrts, where))
    f = pytensor.function([m_a, m_b], outputs, mode="FAST_COMPILE", on_unused_input="ignore")
    # every point of every channel in one batch (one mass point per row, other particles absent)
    rows = [(pair, x, y) for pair, where in cases.items() for x, y in where]
    masses = np.full((len(rows), len(table.particles)), np.nan)
    for r, (pair, x, y) in enumerate(rows):
        masses[r, table.particles.index(abs(pair[0]))] = x
        masses[r, table.particles.index(abs(pair[1]))] = y
    _, dlog = table.evaluate(masses, np.ones((len(rows), len(table.kappa_keys))))
    max_len = max(len(w) for *_, w in points)
    for i, (pair, sqrts, where) in enumerate(points):
        a, b = (np.array([w[j] for w in where], dtype=float) for j in (0, 1))
        ref = f(np.resize(a, max_len), np.resize(b, max_len))[2 * i: 2 * i + 2]
        for k, (x, y) in enumerate(where):
            mine = dlog[rows.index((pair, x, y)), table.channels.index(pair), (8, 13).index(sqrts)]
            np.testing.assert_allclose(mine, [ref[0][k], ref[1][k]], rtol=1e-9, atol=1e-14,
                                       err_msg=str((pair, sqrts, x, y)))


def test_prediction_vjp_against_finite_differences(target, models, monkeypatch):
    """Random cotangents on xsec_fb, ul_obs_fb, ul_exp_fb of the flat predictions; the VJP against
    central differences of Σ c·(xsec, UL_obs, UL_exp) for every mass, BR > 0 and κ of six models.
    Merged UL clusters: SModelS rounds their mean mass to 5 digits (piecewise constant); the
    gradient is that of the unrounded mean, so the rounding is switched off for the differences."""
    from tdmcmc.models.protomodel import predictions
    from tdmcmc.models.protomodel.gradients import prediction_vjp

    monkeypatch.setattr(predictions, "_round_significant", lambda x, digits: np.asarray(x, dtype=float))
    predictor = target.predictor
    rng = np.random.default_rng(5)
    preds = predictor.evaluate_batch(models)
    n = len(preds.xsec_fb)
    cot = rng.normal(size=(3, n))
    grads = prediction_vjp(predictor, models, preds, *cot)
    tally = _Tally(f"prediction VJP ({len(models)} models)")
    for b, model in enumerate(models):
        mine = preds.model == b
        c = cot[:, mine]

        def f(m, c=c, count=int(mine.sum())):
            p = predictor.evaluate_batch([m])
            assert len(p.xsec_fb) == count
            return float(c[0] @ p.xsec_fb + np.nansum(c[1] * p.ul_obs_fb) + np.nansum(c[2] * p.ul_exp_fb))

        v = predictor.evaluate_batch([model])
        scale = float(np.abs(c[0] * v.xsec_fb).sum() + np.nansum(np.abs(c[1:] * [v.ul_obs_fb, v.ul_exp_fb])))
        tally.add(_check_against_fd(model, grads[b], f, rel=1e-6, noise=1e-13 * scale))
    tally.check(60)


def test_merged_ul_cluster_gradient(db124_compiled, monkeypatch):
    """d̃, ũ, c̃ at 801/816/829 GeV decaying to N1 q: T2 limits see three mass points merged into one
    cluster at the σ-weighted mean mass (tests/models/test_predictions: CLUSTERS). Its UL then depends
    on all three masses and on their σ·BR: the VJP against central differences (rounding off)."""
    from tdmcmc.models.protomodel import predictions
    from tdmcmc.models.protomodel.gradients import linearize, prediction_vjp
    from tdmcmc.models.protomodel.model import Protomodel
    from tdmcmc.models.protomodel.predictions import MapInterpolators, Predictor
    from tdmcmc.models.protomodel.space import default_space
    from tdmcmc.models.protomodel.topologies import load_table, restrict_space

    monkeypatch.setattr(predictions, "_round_significant", lambda x, digits: np.asarray(x, dtype=float))
    space = restrict_space(default_space(), [1000001, 1000002, 1000004])
    predictor = Predictor(load_table(space, db124_compiled), db124_compiled, space, MapInterpolators(db124_compiled))
    # not on grid lines (a kink there: both difference steps would straddle it)
    model = Protomodel("clusters", {1000022: 203.7, 1000001: 801.3, 1000002: 816.2, 1000004: 829.4},
                       {q: {(1000022, q - 1000000): 1.0} for q in (1000001, 1000002, 1000004)},
                       {(-1000002, 1000002): 1.3})
    preds = predictor.evaluate_batch([model])
    lin = linearize(predictor, [predictor.model_arrays(model)], preds)
    merged = {int(k) for k in lin.lim_pred[lin.dobs_dw != 0]}
    assert len(merged) >= 3           # several analyses' T2 clusters are merged
    rng = np.random.default_rng(2)
    cot = np.zeros((3, len(preds.xsec_fb)))
    cot[1, list(merged)] = rng.normal(size=len(merged))      # limits of merged clusters only
    cot[0] = rng.normal(size=len(preds.xsec_fb))
    grad = prediction_vjp(predictor, [model], preds, *cot)[0]
    assert all(grad.masses[q] != 0 for q in (1000001, 1000002, 1000004))

    def f(m):
        p = predictor.evaluate_batch([m])
        return float(cot[0] @ p.xsec_fb + np.nansum(cot[1] * p.ul_obs_fb))

    scale = float(np.abs(cot[0] * preds.xsec_fb).sum() + np.nansum(np.abs(cot[1] * preds.ul_obs_fb)))
    checked, skipped, worst = _check_against_fd(model, grad, f, rel=1e-6, noise=1e-13 * scale)
    print(f"merged clusters: {checked} coordinates agree (max relative error {worst:.1e}), {skipped} skipped")
    assert checked >= 6 and skipped == 0


def test_target_gradient_against_finite_differences(target, models):
    """∂K/∂(masses, BRs, κ) of the paper target against central differences of K (``target.evaluate``,
    one model per call) for every model of the batch with a finite K."""
    from tdmcmc.models.protomodel.gradients import target_value_and_gradient

    k, grads = target_value_and_gradient(target, models)
    assert np.isfinite(k).sum() >= 3

    def k_of(m):
        return float(target.evaluate([m])[0].K[0])

    tally = _Tally("K")
    for b, model in enumerate(models):
        if not np.isfinite(k[b]):
            assert all(v == 0 for v in grads[b].masses.values())
            continue
        assert k_of(model) == pytest.approx(k[b], abs=1e-9)
        tally.add(_check_against_fd(model, grads[b], k_of, rel=1e-5, noise=1e-9))
    tally.check(40)


def test_r_max_gradient(target, models):
    """Another graph output through the generic path (its own small compiled gradient): r_max, the
    critic's largest r_obs, whose gradient reaches the parameters only through the recomputed
    critic prediction (σ/UL_obs of an UL cluster or of the best-expected EM signal region)."""
    from tdmcmc.models.protomodel.gradients import target_value_and_gradient

    r_max, grads = target_value_and_gradient(target, models, output="r_max")
    np.testing.assert_allclose(r_max, target.evaluate(models)[0].r_max, rtol=1e-12)
    tally = _Tally("r_max")
    for b, model in enumerate(models):
        tally.add(_check_against_fd(model, grads[b], lambda m: float(target.evaluate([m])[0].r_max[0]),
                                    rel=1e-6, noise=1e-13 * r_max[b]))
    tally.check(60)


def test_bayes_chain_to_parameters(target, models):
    """The bayes path: ln R(μ) at a fixed μ with ∂ln R/∂(signal, UL_obs, UL_exp) from
    ``evaluate_bayes``, chained by :func:`chain_to_parameters`, against central differences of ln R
    (tolerances as for K; ln R has no inner optimisation)."""
    from tdmcmc.models.protomodel.gradients import chain_to_parameters

    mu = 0.7
    values, preds, inputs = target.evaluate_bayes(models, mu)
    cot = {k: getattr(values, f"grad_{k}") for k in ("signal", "ul_obs", "ul_exp")}
    grads = chain_to_parameters(target, models, preds, inputs, cot)
    tally = _Tally("bayes ln R")
    for b, model in enumerate(models[:3]):
        tally.add(_check_against_fd(
            model, grads[b], lambda m: float(target.evaluate_bayes([m], mu)[0].log_ratio[0]), rel=1e-5, noise=1e-9))
    tally.check(40)


def test_no_predictions_zero_gradient(target, models, space):
    """A model too heavy for every map (no prediction) gets exact zeros, also inside a batch."""
    from tdmcmc.models.protomodel.gradients import prediction_vjp, target_value_and_gradient
    from tdmcmc.models.protomodel.model import Protomodel

    heavy = Protomodel("heavy", {1000022: 2300.0, 1000001: 2390.0}, {1000001: {(1000022, 1): 1.0}})
    batch = [heavy, models[0]]
    preds = target.predictor.evaluate_batch(batch)
    assert not (preds.model == 0).any() and (preds.model == 1).any()
    ones = np.ones(len(preds.xsec_fb))
    grads = prediction_vjp(target.predictor, batch, preds, ones, ones, ones)
    assert set(grads[0].masses) == {1000022, 1000001}
    assert all(v == 0.0 for v in grads[0].masses.values())
    assert grads[0].brs == {1000001: {ch: 0.0 for ch in grads[0].brs[1000001]}}
    assert all(v == 0.0 for v in grads[0].kappas.values())
    assert any(v != 0.0 for v in grads[1].masses.values())
    k, tgrads = target_value_and_gradient(target, [heavy])
    assert np.isnan(k[0]) and all(v == 0.0 for v in tgrads[0].masses.values())
    empty = target.predictor.evaluate_batch([heavy])
    assert prediction_vjp(target.predictor, [heavy], empty, np.zeros(0))[0].masses == {1000022: 0.0, 1000001: 0.0}


def test_injected_xsec_mass_gradient(target, oracle_models):
    """With injected σ (the oracle's best model) σ does not depend on masses or κ: the κ gradient
    is zero, the mass gradient of Σ c·xsec is linear in the injected σ (doubling every σ doubles
    it: no dσ/dm term) and agrees with central differences at fixed σ."""
    from tdmcmc.models.protomodel.gradients import prediction_vjp
    from tdmcmc.models.protomodel.model import InjectedXsec, protomodel_from_dict

    model = protomodel_from_dict(oracle_models["best_paper"][0], target.space)
    double = dataclasses.replace(model, xsecs=tuple(InjectedXsec(x.pair, x.sqrts, 2 * x.xsec_fb) for x in model.xsecs))
    preds = target.predictor.evaluate_batch([model])
    c = np.random.default_rng(3).normal(size=len(preds.xsec_fb))
    grad = prediction_vjp(target.predictor, [model], preds, c)[0]
    assert grad.kappas and all(v == 0.0 for v in grad.kappas.values())
    grad2 = prediction_vjp(target.predictor, [double], target.predictor.evaluate_batch([double]), c)[0]
    for pdg in model.masses:
        assert grad2.masses[pdg] == pytest.approx(2 * grad.masses[pdg], rel=1e-12, abs=1e-15)
    assert any(abs(v) > 0 for v in grad.masses.values())

    def f(m):
        return float(c @ target.predictor.evaluate_batch([m]).xsec_fb)

    checked, skipped, _ = _check_against_fd(model, grad, f, rel=1e-6,
                                            noise=1e-13 * float(np.abs(c * preds.xsec_fb).sum()))
    assert checked >= 3 and skipped == 0


def test_forward_trace_and_rerun_give_the_same_vjp(target, models):
    """The VJP from the forward pass's trace (``evaluate_batch(..., jacobian=True)``) equals, bit for
    bit, the one that evaluates the batch again (predictions without Jacobians); a trace that does not
    belong to the predictions is refused."""
    from tdmcmc.models.protomodel.gradients import prediction_vjp

    predictor = target.predictor
    with_trace = predictor.evaluate_batch(models, jacobian=True)
    without = predictor.evaluate_batch(models)
    cot = np.random.default_rng(9).normal(size=(3, len(with_trace.xsec_fb)))
    a = prediction_vjp(predictor, models, with_trace, *cot)
    b = prediction_vjp(predictor, models, without, *cot)
    assert [(g.masses, g.brs, g.kappas) for g in a] == [(g.masses, g.brs, g.kappas) for g in b]
    stale = dataclasses.replace(with_trace, xsec_fb=2.0 * with_trace.xsec_fb)
    with pytest.raises(ValueError, match="not the predictions"):
        prediction_vjp(predictor, models, stale, *cot)
