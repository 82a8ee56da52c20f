"""Exact gradients of theory predictions and of the likelihood target with respect to the physical
protomodel parameters: masses (GeV), branching ratios (one coordinate per parent and decay channel,
treated as independent: no Σ BR = 1 constraint) and signal-strength multipliers κ (one per κ class,
``space.kappa_key``). The chain rule runs backwards through the numpy predictions stage
(:meth:`.predictions.Predictor.evaluate_batch`) with every discrete decision of that stage frozen:
the forward pass's trace (``PredictionArrays.trace``: entries, selections, the maps' Jacobians and
∂ ln σ/∂m) supplies them, so nothing of the forward pass is recomputed.

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

Differentiable: σ_fit (its Chebyshev series and the extrapolation rules, :class:`.xsec.ChannelXsecs`),
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

import numba
import numpy as np

from .model import Protomodel
from .predictions import ModelArrays, PredictionArrays, Predictor, ModelArraysBatch
from .space import Pair

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


def linearize(predictor: Predictor, ms: Sequence[ModelArrays] | None, preds: PredictionArrays) -> Linearization:
    """The partial derivatives of every flat prediction of `preds` (= ``predictor.evaluate_batch(ms)``)
    with respect to its entries' weights and points, from the forward pass's trace (``preds.trace``;
    without the maps' Jacobians the forward pass is run again with them and must give `preds`).
    Vectorised over the batch but for the merged UL clusters."""
    p = predictor
    tr = preds.trace
    if tr is None or tr.jacobian is None:
        again = p.evaluate_batch(ms, jacobian=True)
        _check(preds, again.xsec_fb, again.ul_obs_fb, again.ul_exp_fb)
        tr = again.trace
    e, sel, jac, jac_exp = tr.entries, tr.selection, tr.jacobian, tr.jacobian_expected
    n, c = len(e["tx"]), e["points"].shape[1]
    pred = np.full(n, -1)
    pred[sel.entry] = sel.pred
    # EM: σ_SR = Σ coef W ε(p); UL: σ = Σ coef W
    is_em = p.tx_is_em[e["tx"][sel.entry]]
    coef = e["coef"][sel.entry]
    dx_dw, dx_dp = np.zeros(n), np.zeros((n, c))
    dx_dw[sel.entry] = np.where(is_em, coef * tr.values[sel.entry], coef)      # selected: values are finite
    dx_dp[sel.entry] = np.where(is_em, coef * e["weight"][sel.entry], 0.0)[:, None] * jac[sel.entry]
    # a trace that does not belong to `preds` (e.g. kept through dataclasses.replace) must not pass:
    # unless it holds the very arrays of `preds`, the flat predictions are rebuilt from it and compared
    if any(a is not b for a, b in zip(tr.outputs, (preds.xsec_fb, preds.ul_obs_fb, preds.ul_exp_fb))):
        has = pred >= 0
        xsec = np.bincount(pred[has], weights=(dx_dw * e["weight"])[has], minlength=len(preds.xsec_fb))
        _check(preds, xsec, preds.ul_obs_fb, preds.ul_exp_fb)
    # UL limits at one point vary with that point only
    zeros = np.zeros(len(sel.point_pred))
    lim = {"pred": [sel.point_pred], "entry": [sel.point_entry], "dobs_dp": [jac[sel.point_entry]],
           "dexp_dp": [jac_exp[sel.point_entry]], "dobs_dw": [zeros], "dexp_dw": [zeros]}
    for cluster in sel.merged:
        # limits at the W-weighted mean point p̄ (slope at the rounded p̄ the forward used)
        nc = cluster.points.shape[1]
        point = np.zeros((2, c))
        point[:, :nc] = cluster.mean
        _, slopes = p.interps.evaluate_with_jacobian(np.array([p.tx_map[cluster.txname], p.tx_map_exp[cluster.txname]]),
                                                     point)
        w_sum = float(cluster.weight.sum())
        mean = (cluster.weight[:, None] * cluster.points).sum(axis=0) / w_sum
        d_dweight = (cluster.points - mean) @ slopes[:, :nc].T / w_sum        # (groups, 2)
        for entries, w_g, d_w in zip(cluster.groups, cluster.weight, d_dweight):
            dp = np.zeros((len(entries), 2, c))
            dp[0] = w_g / w_sum * slopes                                       # on the group's first entry
            _add_limit(lim, cluster.pred, entries, dp[:, 0], dp[:, 1], np.repeat(d_w[None], len(entries), axis=0))
    lim = {k: np.concatenate(v) if len(v) > 1 else v[0] for k, v in lim.items()}
    return Linearization(
        model=e["model"], row=e["row"], sqrts=e["sqrts"], weight=e["weight"], coords=e["coords"], pred=pred,
        dx_dw=dx_dw, dx_dp=dx_dp, lim_pred=np.asarray(lim["pred"], np.int64),
        lim_entry=np.asarray(lim["entry"], np.int64),
        dobs_dp=lim["dobs_dp"].reshape(-1, c), dexp_dp=lim["dexp_dp"].reshape(-1, c),
        dobs_dw=np.asarray(lim["dobs_dw"], float), dexp_dw=np.asarray(lim["dexp_dw"], float))


def _add_limit(lim: dict, pred: int, entries: np.ndarray, dobs_dp: np.ndarray, dexp_dp: np.ndarray,
               dlim_dw: np.ndarray) -> None:
    """Limit derivatives of prediction `pred` on `entries`: ∂UL/∂p (k, C) and ∂(UL_obs, UL_exp)/∂W (k, 2)."""
    lim["pred"].append(np.full(len(entries), pred))
    lim["entry"].append(np.asarray(entries))
    lim["dobs_dp"].append(dobs_dp)
    lim["dexp_dp"].append(dexp_dp)
    lim["dobs_dw"].append(dlim_dw[:, 0])
    lim["dexp_dw"].append(dlim_dw[:, 1])


def _check(preds: PredictionArrays, xsec, obs, exp) -> None:
    """The re-run (or the trace) must reproduce the flat predictions it differentiates (same order,
    same values)."""
    def close(a, b, rtol, atol):         # np.allclose(equal_nan=True) without its overhead
        return bool(np.all((np.abs(a - b) <= atol + rtol * np.abs(b)) | (np.isnan(a) & np.isnan(b))))

    same = (len(xsec) == len(preds.xsec_fb) and close(xsec, preds.xsec_fb, 1e-9, 0.0)
            and close(obs, preds.ul_obs_fb, 1e-12, 1e-8) and close(exp, preds.ul_exp_fb, 1e-12, 1e-8))
    if not same:
        raise ValueError("gradients: `preds` are not the predictions of these models on this predictor "
                         f"({len(preds.xsec_fb)} flat predictions, the re-run gives {len(xsec)})")


def prediction_vjp(predictor: Predictor, models: Sequence[Protomodel], preds: PredictionArrays,
                   d_xsec_fb: np.ndarray, d_ul_obs_fb: np.ndarray | None = None,
                   d_ul_exp_fb: np.ndarray | None = None) -> BatchGradient:
    """Vector-Jacobian product of the flat predictions: given cotangents ∂F/∂xsec_fb, ∂F/∂ul_obs_fb,
    ∂F/∂ul_exp_fb (1/fb, arrays of ``len(preds.xsec_fb)``; None: zero) of some scalar F, return per
    model ∂F/∂(masses, BRs, κ). ``preds`` must be ``predictor.evaluate_batch(models)``. Cotangents
    on limits that are constants (EM signal regions) or absent (NaN) are ignored."""
    n = len(preds.xsec_fb)
    d_x, d_obs, d_exp = (np.zeros(n) if d is None else np.asarray(d, dtype=float).reshape(n)
                         for d in (d_xsec_fb, d_ul_obs_fb, d_ul_exp_fb))
    if preds.trace is not None and preds.trace.jacobian is not None:
        lin, stacked = linearize(predictor, None, preds), preds.trace.stacked
    else:
        ms = predictor.model_arrays_batch(models)
        lin, stacked = linearize(predictor, ms, preds), ModelArraysBatch.of(ms)
    w_bar, p_bar = _entry_cotangents(lin.pred, lin.dx_dw, lin.dx_dp, lin.lim_pred, lin.lim_entry, lin.dobs_dw,
                                     lin.dexp_dw, lin.dobs_dp, lin.dexp_dp, d_x, d_obs, d_exp,
                                     preds.ul_obs_fb, preds.ul_exp_fb)
    return _to_parameters(predictor, models, stacked, lin, w_bar, p_bar)


@numba.njit(cache=True)
def _entry_cotangents(pred, dx_dw, dx_dp, lim_pred, lim_entry, dobs_dw, dexp_dw, dobs_dp, dexp_dp, d_x, d_obs, d_exp,
                      obs, exp):
    """(W̄ (n,), p̄ (n, C)) of the entries from the cotangents of the flat predictions: the selected
    entries' ∂σ_pred/∂(W, p), then the limits' ∂UL/∂(W, p) in the order of ``lim_entry`` (cotangents
    on absent, NaN, limits count as zero)."""
    n, c = dx_dp.shape
    w_bar, p_bar = np.zeros(n), np.zeros((n, c))
    for i in range(n):
        k = pred[i]
        if k >= 0:
            w_bar[i] = d_x[k] * dx_dw[i]
            for j in range(c):
                p_bar[i, j] = d_x[k] * dx_dp[i, j]
    for q in range(len(lim_pred)):
        k, i = lim_pred[q], lim_entry[q]
        lo = d_obs[k] if np.isfinite(obs[k]) else 0.0
        le = d_exp[k] if np.isfinite(exp[k]) else 0.0
        w_bar[i] += lo * dobs_dw[q] + le * dexp_dw[q]
        for j in range(c):
            p_bar[i, j] += lo * dobs_dp[q, j] + le * dexp_dp[q, j]
    return w_bar, p_bar


def _to_parameters(p: Predictor, models: Sequence[Protomodel], s: ModelArraysBatch, lin: Linearization,
                   w_bar: np.ndarray, p_bar: np.ndarray) -> BatchGradient:
    """Cotangents of the entry weights W and points p of a batch (arrays `s`) -> masses, BRs, κ per
    model (:func:`_scatter_to_parameters`)."""
    t = p.table
    mass_bar, br_bar, kappa_bar = _scatter_to_parameters(
        lin.model, lin.row, t.el_channel, t.el_br, lin.sqrts, lin.weight, lin.coords, w_bar, p_bar,
        s.xsec, s.br, s.dlog_xsec, s.kappa, s.fitted, p.xsecs.channel_particles, p.xsecs.channel_kappa,
        s.masses.shape[1], len(p.xsecs.kappa_keys))
    return BatchGradient(p, models, mass_bar, br_bar[:, :len(t.br_channels)], kappa_bar, s.present)


@numba.njit(cache=True)
def _scatter_to_parameters(model, row, el_channel, el_br, sqrts, weight, coords, w_bar, p_bar, xsec, br, dlog, kappa,
                           fitted, channel_particles, channel_kappa, n_p, n_k):
    """(mass_bar (B, P), br_bar (B, n_br + 1), kappa_bar (B, K)) of the entries (n; table rows `row`) of a batch:
    W = X[channel, √s] · Π BR · share, so W̄ goes to X̄ = Σ W̄ W/X and to BR̄ = Σ W̄ W/BR per factor;
    X = κ · σ_fit(m_a, m_b): ∂X/∂m = X ∂ln σ/∂m, ∂X/∂κ = X/κ (injected σ: constants); p̄ adds to the
    masses of its coordinates. Each sum runs in the order of the entries, then of (model, channel,
    √s) (that of the numpy scatter-adds this replaces, so the sums are the same to the bit)."""
    n_b, n_c, n_s = xsec.shape
    n_br = br.shape[1]
    x_bar = np.zeros((n_b, n_c, n_s))
    br_bar = np.zeros((n_b, n_br))
    mass_bar = np.zeros((n_b, n_p))
    kappa_bar = np.zeros((n_b, n_k))
    for i in range(len(model)):
        b, channel = model[i], el_channel[row[i]]
        ww = w_bar[i] * weight[i]
        x_bar[b, channel, sqrts[i]] += ww / xsec[b, channel, sqrts[i]]
        for d in range(el_br.shape[1]):
            column = el_br[row[i], d]
            br_bar[b, column] += ww / br[b, column]
        for c in range(coords.shape[1]):
            if coords[i, c] >= 0:
                mass_bar[b, coords[i, c]] += p_bar[i, c]
    for b in range(n_b):
        if not fitted[b]:
            continue
        for c in range(n_c):
            for si in range(n_s):
                if x_bar[b, c, si] != 0.0 and xsec[b, c, si] != 0.0:
                    xs = x_bar[b, c, si] * xsec[b, c, si]
                    mass_bar[b, channel_particles[c, 0]] += xs * dlog[b, c, si, 0]
                    mass_bar[b, channel_particles[c, 1]] += xs * dlog[b, c, si, 1]
                    kappa_bar[b, channel_kappa[c]] += xs / kappa[b, c]
    return mass_bar, br_bar, kappa_bar


@dataclass(frozen=True, eq=False)
class BatchGradient(Sequence):
    """∂F/∂(masses, BRs, κ) of a batch, dense, as a sequence of per-model
    :class:`ParameterGradient` (built on access).

    ``masses`` (B, n_particles) per GeV by ``predictor.pindex``; ``brs`` (B, n_br) by the table's
    ``br_channels``; ``kappas`` (B, n_kappa) by ``predictor.xsecs.kappa_keys``; zero for what a
    model lacks; ``present`` (B,) the particle bit masks."""

    predictor: Predictor
    models: Sequence[Protomodel]
    masses: np.ndarray
    brs: np.ndarray
    kappas: np.ndarray
    present: np.ndarray

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, b):
        if isinstance(b, slice):
            return [self[i] for i in range(*b.indices(len(self)))]
        p, model = self.predictor, self.models[b]
        present = self.present[b]
        # the BR channels and κ classes a model has: their particles are all present
        has_channel = (p.channel_required & ~present) == 0
        brs: dict[int, dict[tuple[int, ...], float]] = {}
        for j in np.flatnonzero((p.br_required & ~present) == 0).tolist():
            parent, ch = p.table.br_channels[j]
            brs.setdefault(parent, {})[ch] = float(self.brs[b, j])
        kappas = {p.xsecs.kappa_keys[k]: float(self.kappas[b, k])
                  for k in sorted(set(p.xsecs.channel_kappa[has_channel].tolist()))}
        return ParameterGradient(masses={pdg: float(self.masses[b, p.pindex[pdg]]) for pdg in model.masses},
                                 brs=brs, kappas=kappas)


# ---------------------------------------------------------------------------------------------
# The target


def chain_to_parameters(target: LikelihoodTarget, models: Sequence[Protomodel], preds: PredictionArrays,
                        inputs: ResultInputs, cot: Mapping[str, np.ndarray]) -> BatchGradient:
    """∂F/∂(masses, BRs, κ) from ∂F/∂ of the per-result graph inputs.

    `cot`: (B, n_results) arrays by :class:`ResultInputs` field name among :data:`GRAPH_INPUTS`
    (missing: zero), e.g. ``TargetValues.grad_signal`` under ``"signal"``. `preds`, `inputs`: those
    of ``target.evaluate(models)``. ``signal`` is σ·L (EM, fb⁻¹ × fb) or σ (UL, fb) of the chosen
    prediction; ``critic_r`` is recomputed as in ``result_inputs``: the largest r_obs = σ/UL_obs of
    the result's UL predictions, or r_obs of its best-expected EM signal region. ``sl_signal``
    (B, n_sl) is σ·L of every SR of the combined results (SR selection ``combined``), the cotangent
    e.g. ``TargetValues.grad_sl_signal``."""
    a = target.compiled.arrays
    c_signal, c_obs, c_exp, c_critic, c_sl = (
        np.asarray(cot[k], dtype=float) if k in cot else np.zeros_like(getattr(inputs, k), dtype=float)
        for k in GRAPH_INPUTS)
    ds = preds.dataset
    d_x, d_obs, d_exp = _prediction_cotangents(
        inputs.choice, inputs.sl_choice, c_signal, c_obs, c_exp, c_critic, c_sl, preds.model, ds, preds.txname,
        a.dataset_result[ds], target._dataset_em[ds], a.result_lumi, preds.xsec_fb, preds.ul_obs_fb, preds.ul_exp_fb)
    return prediction_vjp(target.predictor, models, preds, d_x, d_obs, d_exp)


@numba.njit(cache=True)
def _prediction_cotangents(choice, sl_choice, c_signal, c_obs, c_exp, c_critic, c_sl, model, dataset, txname, res,
                           em, result_lumi, xsec, obs, exp):
    """(∂F/∂σ, ∂F/∂UL_obs, ∂F/∂UL_exp) of the flat predictions (n) from the per-result cotangents
    (:func:`chain_to_parameters`): the chosen prediction of each (model, result) gets its signal's
    (× L for EM) and its limits' (where finite and > 0); each combined SR its σ·L's; the prediction
    attaining a result's critic r (:meth:`LikelihoodTarget.result_inputs`: the largest r_obs of its UL
    predictions, or the r_obs of its EM signal region of largest r_exp, r_obs where r_exp is
    undefined; ties: the first by (model, dataset, txname)) gets c·∂r/∂σ = c/UL_obs and
    c·∂r/∂UL_obs = −c σ/UL_obs², where UL_obs is finite. Sums in (model, result) order."""
    n = len(xsec)
    n_b, n_r = choice.shape
    d_x, d_obs, d_exp = np.zeros(n), np.zeros(n), np.zeros(n)
    for b in range(n_b):
        for r in range(n_r):
            k = choice[b, r]
            if k >= 0:
                d_x[k] += c_signal[b, r] * (result_lumi[r] if em[k] else 1.0)
    for b in range(n_b):
        for q in range(sl_choice.shape[1]):
            k = sl_choice[b, q]
            if k >= 0:
                d_x[k] += c_sl[b, q] * result_lumi[res[k]]
    for d, v, c in ((d_obs, obs, c_obs), (d_exp, exp, c_exp)):
        for b in range(n_b):
            for r in range(n_r):
                k = choice[b, r]
                if k >= 0 and np.isfinite(v[k]) and v[k] > 0:
                    d[k] += c[b, r]
    # the critic: per (model, result) and kind (0: UL, 1: EM) the attaining prediction and its value
    best = np.full((2, n_b, n_r), -1)
    best_value = np.full((2, n_b, n_r), np.nan)
    for i in range(n):
        b, r = model[i], res[i]
        if c_critic[b, r] == 0.0:
            continue
        r_obs = xsec[i] / obs[i] if np.isfinite(obs[i]) else np.nan
        if em[i]:
            kind = 1
            value = xsec[i] / exp[i] if np.isfinite(exp[i]) and exp[i] > 0 else np.nan
            if np.isnan(value):
                value = r_obs
        elif np.isfinite(obs[i]):
            kind, value = 0, r_obs
        else:
            continue
        j, current = best[kind, b, r], best_value[kind, b, r]
        if j < 0 or value > current or (np.isnan(current) and not np.isnan(value)):
            take = True
        elif value == current or (np.isnan(current) and np.isnan(value)):        # tie: the first
            take = (dataset[i], txname[i], i) < (dataset[j], txname[j], j)
        else:
            take = False
        if take:
            best[kind, b, r], best_value[kind, b, r] = i, value
    for kind in range(2):
        for b in range(n_b):
            for r in range(n_r):
                i = best[kind, b, r]
                if i >= 0 and np.isfinite(obs[i]):       # without an UL the critic's r is a constant (23)
                    c = c_critic[b, r]
                    d_x[i] += c / obs[i]
                    d_obs[i] += -c * xsec[i] / (obs[i] * obs[i])
    return d_x, d_obs, d_exp


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
                              output: str = "K") -> tuple[np.ndarray, BatchGradient]:
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
                    output: str = "K") -> BatchGradient:
    """∂(output)/∂(masses, BRs, κ) of the paper target per model (see :func:`target_value_and_gradient`)."""
    return target_value_and_gradient(target, models, output)[1]
