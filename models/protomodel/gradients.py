"""Exact gradients of theory predictions and of the likelihood target with respect to the physical
protomodel parameters: masses (GeV), branching ratios (one coordinate per parent and decay channel,
treated as independent: no Σ BR = 1 constraint) and signal-strength multipliers κ (one per κ class,
``space.kappa_key``). The chain rule runs backwards through the numpy predictions stage
(:meth:`.predictions.Predictor.evaluate_batch`) with every discrete decision of that stage frozen.

How a flat prediction depends on the parameters (docs/likelihood-graph.md, "Gradients w.r.t.
protomodel parameters"):

- element weight of a table row at √s: W = X(channel, √s) · Π BR · share, with X = κ · σ_fit(m_a, m_b)
  (fitted σ; injected ``xsecs`` are constants: no mass or κ dependence);
- a match (entry) of the row: weight W at its txname's √s, mass point p = masses[coords];
- EM signal region: σ_SR = Σ coef · W · ε(p) over the selected entries (one per related family
  and dataset); UL_obs, UL_exp of an EM SR are the dataset's constants;
- UL cluster: σ = Σ coef · W over its entries; UL_obs, UL_exp = map(p) at the cluster's point:
  the common point of its entries, or for a merged cluster the W-weighted mean of its groups'
  points, p̄ = Σ_g W_g p_g / Σ_g W_g (W_g: the sum of W of group g's entries).

Differentiable: σ_fit (its Chebyshev series and the extrapolation rules, :func:`log_xsec_gradient`),
the BR products, κ, and the piecewise-linear interpolation (exact Jacobian of the simplex found,
:class:`.interpolation.BatchedInterpolator`). Piecewise constant (zero derivative, frozen): the
particle content, sigmacut, mass compression, the choice of one element per related family, ε below
1e-14 and points outside a map, the UL clustering decisions, the 1e-6 fb cut, and later the SR
selection, the critic's maximum and the clique choice. At their switching points the functions jump
or have kinks; there the gradient is that of the branch the forward pass took.

Approximation: SModelS rounds a merged cluster's mean point to 5 significant digits; that makes its
limit piecewise constant (steps of 1e-5 relative), whose almost-everywhere derivative zero says
nothing. We differentiate the unrounded mean and evaluate the map's slope at the rounded point. The
value itself is unchanged (it is the forward pass's).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.polynomial import chebyshev

from .model import Protomodel
from .predictions import (EFF_ZERO, MIN_PREDICTION_FB, ModelArrays, PredictionArrays, Predictor, _first_of_max,
                          _unique_rows)
from .space import Pair, ProductionChannel
from .xsec import (NUMPY, ProcessFit, XsecFits, _chebyshev_basis, _contract, _pad, _process_masses, kappa_lookup,
                   load_fits)

if TYPE_CHECKING:
    from .target import LikelihoodTarget, ResultInputs

# Per-result inputs of the target graph that depend on the parameters (ResultInputs fields).
GRAPH_INPUTS = ("signal", "ul_obs", "ul_exp", "critic_r", "sl_signal")


@dataclass(frozen=True)
class ParameterGradient:
    """Derivative of a scalar with respect to one protomodel's parameters.

    ``masses``: per GeV, by positive PDG id (every particle of the model); ``brs``: parent ->
    {decay channel (daughters as in the space): ∂/∂BR}, every channel of a present parent whose
    daughters are present; ``kappas``: by κ class key (``space.kappa_key``), every class whose
    particles are present (zero for models with injected cross sections)."""

    masses: dict[int, float]
    brs: dict[int, dict[tuple[int, ...], float]]
    kappas: dict[Pair, float]


# ---------------------------------------------------------------------------------------------
# Cross sections


def log_xsec_gradient(fit: ProcessFit, masses: Sequence[np.ndarray]) -> list[np.ndarray]:
    """∂ ln(σ/fb)/∂ m_i (1/GeV) of :meth:`ProcessFit.log_xsec` at `masses` (GeV, one array per mass
    argument), exact: the differentiated Chebyshev series inside the table range, the slopes of
    the extrapolation rules outside it (and, for two-mass fits, the cross term of an extrapolated
    argument's edge slope with the other argument)."""
    m = [np.asarray(x, dtype=float) for x in masses]
    u = [np.log(x) for x in m]
    uc = [np.clip(x, lo, hi) for x, lo, hi in zip(u, fit.log_lo, fit.log_hi)]
    scale = [2.0 / (hi - lo) for lo, hi in zip(fit.log_lo, fit.log_hi)]
    bases = [_chebyshev_basis(NUMPY, a * (x - lo) - 1.0, n)
             for x, a, lo, n in zip(uc, scale, fit.log_lo, fit.coefficients.shape)]
    slope = [_contract(NUMPY, g, bases) for g in fit.gradients]              # ∂ series / ∂ t_j
    excess = [np.minimum(x - c, 0.0) + np.maximum(np.exp(x - c) - 1.0, 0.0) for x, c in zip(u, uc)]
    d_excess = [np.where(x < c, 1.0, np.where(x > c, np.exp(x - c), 0.0)) for x, c in zip(u, uc)]
    out = []
    for i in range(fit.n_masses):
        inner = slope[i]
        for j in range(fit.n_masses):
            if j != i:  # the edge slope of an extrapolated argument j still varies with t_i
                cross = _pad(chebyshev.chebder(fit.gradients[j], axis=i), fit.coefficients.shape)
                inner = inner + _contract(NUMPY, cross, bases) * scale[j] * excess[j]
        inside = (u[i] >= fit.log_lo[i]) & (u[i] <= fit.log_hi[i])
        d_u = np.where(inside, scale[i] * inner, 0.0) + slope[i] * scale[i] * d_excess[i]
        out.append(d_u / m[i])
    return out


def channel_log_xsec_gradient(channel: ProductionChannel, m_a: float, m_b: float, sqrts: int,
                              fits: XsecFits | None = None) -> tuple[float, float]:
    """∂ ln σ/∂ m_a, ∂ ln σ/∂ m_b (1/GeV) of one production channel at √s (TeV); m_a, m_b: the masses
    of ``channel.pair[0]``, ``channel.pair[1]`` (one-mass processes take the mean mass)."""
    fit = (fits or load_fits()).fit(channel.process, sqrts)
    if fit is None:
        return 0.0, 0.0
    grads = log_xsec_gradient(fit, _process_masses(fit, np.asarray(m_a, float), np.asarray(m_b, float)))
    if fit.n_masses == 1:
        return 0.5 * float(grads[0]), 0.5 * float(grads[0])
    return float(grads[0]), float(grads[1])


# ---------------------------------------------------------------------------------------------
# The predictions stage, linearised


@dataclass(frozen=True)
class Linearization:
    """The selected entries of a batch and the partial derivatives of the flat predictions.

    Per entry (n): ``model``, ``row`` (table row), ``sqrts`` (index), ``weight`` W (fb), ``coords``
    (n, C) particle index per map column (-1 pad), ``pred`` its flat prediction (-1: dropped),
    ``dx_dw`` ∂σ_pred/∂W, ``dx_dp`` (n, C) ∂σ_pred/∂p. UL limits, sparse (k): ``lim_pred``,
    ``lim_entry``, ``dobs_dp``/``dexp_dp`` (k, C) ∂UL/∂p of that entry's point, ``dobs_dw``/``dexp_dw``
    ∂UL/∂W of that entry (merged clusters: through the mean point)."""

    model: np.ndarray
    row: np.ndarray
    sqrts: np.ndarray
    weight: np.ndarray
    coords: np.ndarray
    pred: np.ndarray
    dx_dw: np.ndarray
    dx_dp: np.ndarray
    lim_pred: np.ndarray
    lim_entry: np.ndarray
    dobs_dp: np.ndarray
    dexp_dp: np.ndarray
    dobs_dw: np.ndarray
    dexp_dw: np.ndarray


def _interpolate(predictor: Predictor, map_rows: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`MapInterpolators.evaluate` (values, NaN where SModelS gives None) with the exact
    Jacobian (n, C) per GeV in the same pass (zero where the value is NaN or clamped)."""
    interps = predictor.interps
    n = len(map_rows)
    values, jac = np.full(n, np.nan), np.zeros(points.shape)
    valid = np.flatnonzero(map_rows >= 0)
    if not len(valid):
        return values, jac
    unbuilt = valid[interps._batch_group[interps.map_group[map_rows[valid]]] == -2]
    if len(unbuilt):
        interps.evaluate(map_rows[unbuilt], points[unbuilt])       # builds (and batches) their groups
    sel = valid[interps._batch_group[interps.map_group[map_rows[valid]]] >= 0]
    if len(sel):
        ev = interps._batched.evaluate(map_rows[sel], points[sel], jacobian=True)
        values[sel] = ev.values
        c = min(points.shape[1], ev.jacobian.shape[1])
        jac[sel, :c] = np.where(np.isnan(ev.values)[:, None], 0.0, ev.jacobian[:, :c])
    return values, jac


def linearize(predictor: Predictor, ms: Sequence[ModelArrays], preds: PredictionArrays) -> Linearization:
    """Re-run the predictions stage of the models `ms` (:meth:`Predictor.model_arrays`) with the partial
    derivatives of every flat prediction of `preds` (= ``predictor.evaluate_batch(ms)``), and check
    that the values agree."""
    p = predictor
    e = p.entries(ms)
    tx, n = e["tx"], len(e["tx"])
    is_em = p.tx_is_em[tx]
    values, jac = _interpolate(p, p.tx_map[tx], e["points"])
    expected, jac_exp = _interpolate(p, np.where(is_em, -1, p.tx_map_exp[tx]), e["points"])
    eff = np.nan_to_num(values, nan=0.0)
    em = np.flatnonzero(is_em & (np.abs(eff) >= EFF_ZERO))
    ul = np.flatnonzero(~is_em & ~np.isnan(values))
    c = e["points"].shape[1]
    pred = np.full(n, -1)
    dx_dw, dx_dp = np.zeros(n), np.zeros((n, c))
    xsec_check, obs_check, exp_check = [], [], []

    # EM: one entry per (model, origin, dataset), the largest W·ε; σ_SR = Σ coef W ε
    ds = p.tx_dataset[tx[em]]
    sel = em[_first_of_max(np.stack([e["model"][em], e["origin"][em], ds]), (e["weight"] * eff)[em])]
    n_ds = len(p.arrays.dataset_id)
    keys, inv = np.unique(e["model"][sel] * n_ds + p.tx_dataset[tx[sel]], return_inverse=True)
    xsec = np.bincount(inv, weights=(e["coef"] * e["weight"] * eff)[sel], minlength=len(keys))
    keep = xsec >= MIN_PREDICTION_FB
    pred[sel] = np.where(keep[inv], (np.cumsum(keep) - 1)[inv], -1)
    dx_dw[sel] = e["coef"][sel] * eff[sel]
    dx_dp[sel] = (e["coef"] * e["weight"])[sel, None] * jac[sel]
    n_em = int(keep.sum())
    xsec_check.append(xsec[keep])
    obs_check.append(p.arrays.upper_limit[keys[keep] % n_ds])
    exp_check.append(p.arrays.expected_upper_limit[keys[keep] % n_ds])

    # UL: one entry per (model, origin, txname), the largest W; groups of identical points; clusters
    sel = ul[_first_of_max(np.stack([e["model"][ul], e["origin"][ul], tx[ul]]), e["weight"][ul])]
    key = np.column_stack([e["model"][sel], tx[sel], e["shape"][sel], e["points"][sel]]).astype(float)
    groups, g_of = _unique_rows(key)
    n_g = len(groups)
    by_group = np.argsort(g_of, kind="stable")
    group_entries = np.split(sel[by_group], np.cumsum(np.bincount(g_of, minlength=n_g))[:-1])
    rep = np.array([x[0] for x in group_entries if len(x)], dtype=np.int64)   # the entry whose point stands for the group
    g_weight = np.bincount(g_of, weights=e["weight"][sel], minlength=n_g)
    g_xsec = np.bincount(g_of, weights=(e["coef"] * e["weight"])[sel], minlength=n_g)
    g_ul, g_exp = values[rep], expected[rep]
    g_tx, g_shape, g_points = groups[:, 1].astype(np.int64), groups[:, 2], groups[:, 3:]
    _, owner = _unique_rows(groups[:, :2])
    count = np.bincount(owner)
    clusters = [[g] for g in np.flatnonzero(count[owner] == 1)]
    limits = [(g_ul[g], g_exp[g], None) for g in np.flatnonzero(count[owner] == 1)]
    for o in np.unique(owner[count[owner] > 1]):
        members = np.flatnonzero(owner == o)
        t = int(g_tx[members[0]])
        for chosen, avg, value, exp_value in p._clusters(t, g_weight[members], g_shape[members], g_points[members],
                                                        g_ul[members], g_exp[members]):
            clusters.append(list(members[chosen]))
            single = len(chosen) == 1
            limits.append((value, g_exp[members[chosen[0]]] if single else exp_value, None if single else avg))
    lim = {k: [] for k in ("pred", "entry", "dobs_dp", "dexp_dp", "dobs_dw", "dexp_dw")}
    next_pred = n_em
    for gs, (value, exp_value, avg) in zip(clusters, limits):
        entries = np.concatenate([group_entries[g] for g in gs])
        total = float(g_xsec[gs].sum())
        if total < MIN_PREDICTION_FB:
            continue
        k = next_pred
        next_pred += 1
        pred[entries] = k
        dx_dw[entries] = e["coef"][entries]
        xsec_check.append([total])
        obs_check.append([value])
        exp_check.append([np.nan if exp_value is None else exp_value])
        if avg is None:                          # one point: the limits vary with that point only
            g = gs[0]
            _add_limit(lim, k, [rep[g]], jac[rep[g]][None], jac_exp[rep[g]][None], [0.0], [0.0])
            continue
        # merged: limits at the W-weighted mean point p̄ (slope at the rounded p̄ the forward used)
        t = int(g_tx[gs[0]])
        nc = int(p.tx_ncoords[t])
        point = np.zeros((2, c))
        point[:, :len(avg)] = avg
        _, slopes = _interpolate(p, np.array([p.tx_map[t], p.tx_map_exp[t]]), point)
        w_sum = float(g_weight[gs].sum())
        mean = (g_weight[gs, None] * g_points[gs, :nc]).sum(axis=0) / w_sum
        d_dweight = (g_points[gs, :nc] - mean) @ slopes[:, :nc].T / w_sum        # (groups, 2)
        for i, g in enumerate(gs):
            members = group_entries[g]
            share = g_weight[g] / w_sum
            dp = np.zeros((len(members), 2, c))
            dp[0] = share * slopes                                               # on the group's representative
            _add_limit(lim, k, members, dp[:, 0], dp[:, 1], np.full(len(members), d_dweight[i, 0]),
                       np.full(len(members), d_dweight[i, 1]))
    _check(preds, np.concatenate(xsec_check), np.concatenate(obs_check), np.concatenate(exp_check))
    return Linearization(
        model=e["model"], row=e["row"], sqrts=e["sqrts"], weight=e["weight"], coords=e["coords"], pred=pred,
        dx_dw=dx_dw, dx_dp=dx_dp, lim_pred=np.array(lim["pred"], dtype=np.int64),
        lim_entry=np.array(lim["entry"], dtype=np.int64),
        dobs_dp=np.array(lim["dobs_dp"]).reshape(-1, c), dexp_dp=np.array(lim["dexp_dp"]).reshape(-1, c),
        dobs_dw=np.array(lim["dobs_dw"], dtype=float), dexp_dw=np.array(lim["dexp_dw"], dtype=float))


def _add_limit(lim: dict, pred: int, entries, dobs_dp, dexp_dp, dobs_dw, dexp_dw) -> None:
    for j, i in enumerate(entries):
        lim["pred"].append(pred)
        lim["entry"].append(int(i))
        lim["dobs_dp"].append(dobs_dp[j])
        lim["dexp_dp"].append(dexp_dp[j])
        lim["dobs_dw"].append(dobs_dw[j])
        lim["dexp_dw"].append(dexp_dw[j])


def _check(preds: PredictionArrays, xsec, obs, exp) -> None:
    """The re-run must reproduce the flat predictions it differentiates (same order, same values)."""
    same = (len(xsec) == len(preds.xsec_fb)
            and np.allclose(xsec, preds.xsec_fb, rtol=1e-9, atol=0.0)
            and np.allclose(obs, preds.ul_obs_fb, rtol=1e-12, equal_nan=True)
            and np.allclose(exp, preds.ul_exp_fb, rtol=1e-12, equal_nan=True))
    if not same:
        raise ValueError("gradients: `preds` are not the predictions of these models on this predictor "
                         f"({len(preds.xsec_fb)} flat predictions, the re-run gives {len(xsec)})")


def prediction_vjp(predictor: Predictor, models: Sequence[Protomodel], preds: PredictionArrays,
                   d_xsec_fb: np.ndarray, d_ul_obs_fb: np.ndarray | None = None,
                   d_ul_exp_fb: np.ndarray | None = None) -> list[ParameterGradient]:
    """Vector-Jacobian product of the flat predictions: given cotangents ∂F/∂xsec_fb, ∂F/∂ul_obs_fb,
    ∂F/∂ul_exp_fb (1/fb, arrays of ``len(preds.xsec_fb)``; None: zero) of some scalar F, return per
    model ∂F/∂(masses, BRs, κ). ``preds`` must be ``predictor.evaluate_batch(models)``. Cotangents
    on limits that are constants (EM signal regions) or absent (NaN) are ignored."""
    n = len(preds.xsec_fb)
    cot = [np.zeros(n) if d is None else np.asarray(d, dtype=float).reshape(n) for d in
           (d_xsec_fb, d_ul_obs_fb, d_ul_exp_fb)]
    for d, v in zip(cot[1:], (preds.ul_obs_fb, preds.ul_exp_fb)):
        d[~np.isfinite(v)] = 0.0
    ms = [predictor.model_arrays(x) for x in models]
    lin = linearize(predictor, ms, preds)
    d_x, d_obs, d_exp = cot
    has = lin.pred >= 0
    pred = np.maximum(lin.pred, 0) if n else np.zeros(0, np.int64)   # no prediction at all: no entry counts
    w_bar = np.where(has, d_x[pred] * lin.dx_dw, 0.0) if n else np.zeros_like(lin.dx_dw)
    p_bar = np.where(has[:, None], d_x[pred, None] * lin.dx_dp, 0.0) if n else np.zeros_like(lin.dx_dp)
    if len(lin.lim_pred):
        lo, le = d_obs[lin.lim_pred], d_exp[lin.lim_pred]
        np.add.at(w_bar, lin.lim_entry, lo * lin.dobs_dw + le * lin.dexp_dw)
        np.add.at(p_bar, lin.lim_entry, lo[:, None] * lin.dobs_dp + le[:, None] * lin.dexp_dp)
    return [_to_parameters(predictor, model, m, lin, b, w_bar, p_bar) for b, (model, m) in enumerate(zip(models, ms))]


def _to_parameters(p: Predictor, model: Protomodel, m: ModelArrays, lin: Linearization, b: int,
                   w_bar: np.ndarray, p_bar: np.ndarray) -> ParameterGradient:
    """Cotangents of one model's entry weights W and points p -> masses, BRs, κ."""
    t = p.table
    mine = np.flatnonzero(lin.model == b)
    w_bar, p_bar, row, weight = w_bar[mine], p_bar[mine], lin.row[mine], lin.weight[mine]
    coords = lin.coords[mine]
    mass_bar = np.zeros(len(t.particles))
    ok = coords >= 0
    np.add.at(mass_bar, coords[ok], p_bar[ok])
    # W = X[channel, √s] · Π BR · share
    channel = t.el_channel[row]
    x = m.xsec[channel, lin.sqrts[mine]]
    x_bar = np.zeros_like(m.xsec)
    np.add.at(x_bar, (channel, lin.sqrts[mine]), w_bar * weight / x)
    br_idx = t.el_br[row]
    br_bar = np.zeros(len(m.br))
    np.add.at(br_bar, br_idx, (w_bar * weight)[:, None] / m.br[br_idx])
    kappa_bar: dict[Pair, float] = {}
    kappa = _kappas(p, model)
    for channel in p.space.productions:
        a, c = (abs(q) for q in channel.pair)
        if a not in model.masses or c not in model.masses or channel.key not in p.channel_index:
            continue
        kappa_bar.setdefault(channel.kappa_key, 0.0)
        if model.xsecs is not None:
            continue                            # injected σ: constants
        ci = p.channel_index[channel.key]
        for s_i, s in enumerate(p.sqrts):
            xs = m.xsec[ci, s_i]
            if x_bar[ci, s_i] == 0.0 or xs == 0.0:
                continue
            d_a, d_c = channel_log_xsec_gradient(channel, model.masses[a], model.masses[c], s)
            mass_bar[p.pindex[a]] += x_bar[ci, s_i] * xs * d_a
            mass_bar[p.pindex[c]] += x_bar[ci, s_i] * xs * d_c
            kappa_bar[channel.kappa_key] += x_bar[ci, s_i] * xs / kappa[channel.kappa_key]
    brs: dict[int, dict[tuple[int, ...], float]] = {}
    for j, (parent, ch) in enumerate(t.br_channels):
        if parent in model.masses and all(d in model.masses for d in ch if d in p.space.particles):
            brs.setdefault(parent, {})[ch] = float(br_bar[j])
    return ParameterGradient(masses={pdg: float(mass_bar[p.pindex[pdg]]) for pdg in model.masses}, brs=brs,
                             kappas={k: float(v) for k, v in kappa_bar.items()})


def _kappas(p: Predictor, model: Protomodel) -> dict[Pair, float]:
    given = kappa_lookup(p.space, model.kappas)
    return {key: given.get(key, 1.0) for key in p.space.kappa_classes()}


# ---------------------------------------------------------------------------------------------
# The target


def chain_to_parameters(target: LikelihoodTarget, models: Sequence[Protomodel], preds: PredictionArrays,
                        inputs: ResultInputs, cot: Mapping[str, np.ndarray]) -> list[ParameterGradient]:
    """∂F/∂(masses, BRs, κ) from ∂F/∂ of the per-result graph inputs.

    `cot`: (B, n_results) arrays by :class:`ResultInputs` field name among :data:`GRAPH_INPUTS`
    (missing: zero), e.g. ``TargetValues.grad_signal`` under ``"signal"``. `preds`, `inputs`: those
    of ``target.evaluate(models)``. ``signal`` is σ·L (EM, fb⁻¹ × fb) or σ (UL, fb) of the chosen
    prediction; ``critic_r`` is recomputed as in ``result_inputs``: the largest r_obs = σ/UL_obs of
    the result's UL predictions, or r_obs of its best-expected EM signal region. ``sl_signal``
    (B, n_sl) is σ·L of every SR of the combined results (SR selection ``combined``), the cotangent
    e.g. ``TargetValues.grad_sl_signal``."""
    from .target import _first_max_per_key

    a = target.compiled.arrays
    n = len(preds.xsec_fb)
    d_x, d_obs, d_exp = np.zeros(n), np.zeros(n), np.zeros(n)
    c_signal, c_obs, c_exp, c_critic, c_sl = (
        np.asarray(cot[k], dtype=float) if k in cot else np.zeros_like(getattr(inputs, k), dtype=float)
        for k in GRAPH_INPUTS)
    ds = preds.dataset
    res = a.dataset_result[ds]
    em = target._dataset_em[ds]
    xsec, obs, exp = preds.xsec_fb, preds.ul_obs_fb, preds.ul_exp_fb
    cm, cr = np.nonzero(inputs.choice >= 0)
    chosen = inputs.choice[cm, cr]
    np.add.at(d_x, chosen, c_signal[cm, cr] * np.where(em[chosen], a.result_lumi[cr], 1.0))
    sm, sc = np.nonzero(inputs.sl_choice >= 0)
    sl = inputs.sl_choice[sm, sc]
    np.add.at(d_x, sl, c_sl[sm, sc] * a.result_lumi[res[sl]])
    for d, v, c in ((d_obs, obs, c_obs), (d_exp, exp, c_exp)):
        valid = np.isfinite(v[chosen]) & (np.nan_to_num(v[chosen]) > 0)
        np.add.at(d, chosen[valid], c[cm, cr][valid])
    # the critic r: which flat prediction attains it
    n_r = inputs.signal.shape[1]
    finite = np.isfinite(obs)
    r_obs = np.where(finite, xsec / np.where(finite, obs, 1.0), np.nan)
    r_exp = np.where(np.isfinite(exp) & (np.nan_to_num(exp) > 0), xsec / np.where(exp > 0, exp, 1.0), np.nan)
    order = np.lexsort((preds.txname, ds, preds.model))
    key = preds.model * n_r + res
    ul_best = _first_max_per_key(order[~em[order] & finite[order]], key, r_obs)
    em_best = _first_max_per_key(order[em[order]], key, np.where(np.isnan(r_exp), r_obs, r_exp))
    best = np.concatenate([ul_best, em_best])
    best = best[finite[best]]                   # without an UL the critic's r is a constant (23)
    c = c_critic[preds.model[best], res[best]]
    np.add.at(d_x, best, c / obs[best])
    np.add.at(d_obs, best, -c * xsec[best] / obs[best] ** 2)
    return prediction_vjp(target.predictor, models, preds, d_x, d_obs, d_exp)


_GRADIENT_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gradient_function(target: LikelihoodTarget, output: str):
    """Compiled (inputs of ``target.symbolic_inputs()`` in order) -> (output (B,), ∂output/∂ of
    :data:`GRAPH_INPUTS` (B, n_results) each), for outputs other than K (whose gradients
    ``target.evaluate`` already gives); NaN outputs get zero gradients. Cached per target."""
    cache = _GRADIENT_FUNCTIONS.setdefault(target, {})
    if output not in cache:
        import pytensor
        import pytensor.tensor as pt

        x = target.symbolic_inputs()
        y = target.graph_outputs(x)[output]
        grads = pytensor.grad(pt.switch(pt.isnan(y), 0.0, y).sum(), [x[k] for k in GRAPH_INPUTS],
                              disconnected_inputs="ignore")
        fn = pytensor.function(list(x.values()), [y, *grads], mode=target.mode, on_unused_input="ignore")
        cache[output] = (list(x), fn)
    return cache[output]


def target_value_and_gradient(target: LikelihoodTarget, models: Sequence[Protomodel],
                              output: str = "K") -> tuple[np.ndarray, list[ParameterGradient]]:
    """The paper target's `output` (B,) (``"K"``, or another (B,) output of ``target.graph_outputs``
    such as ``"Z"``, compiled on first use; NaN where undefined, with a zero gradient) and its
    gradient with respect to each model's masses (per GeV), BRs and κ."""
    if output == "K":
        values, preds, inputs = target.evaluate(models)
        value = values.K
        cot = {k: getattr(values, f"grad_{k}") for k in GRAPH_INPUTS}
    else:
        preds, inputs = target.prepare(models)
        names, fn = gradient_function(target, output)
        value, *grads = fn(*[getattr(inputs, k) for k in names])
        cot = dict(zip(GRAPH_INPUTS, grads))
    return np.asarray(value), chain_to_parameters(target, models, preds, inputs, cot)


def target_gradient(target: LikelihoodTarget, models: Sequence[Protomodel],
                    output: str = "K") -> list[ParameterGradient]:
    """∂(output)/∂(masses, BRs, κ) of the paper target per model (see :func:`target_value_and_gradient`)."""
    return target_value_and_gradient(target, models, output)[1]
