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
from .predictions import ForwardTrace, ModelArrays, ModelArraysBatch, PredictionArrays, Predictor
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
    :func:`prediction_vjp` uses the same pieces (:func:`_entry_partials`, :func:`_merged_limits`)
    without assembling them."""
    tr = _jacobian_trace(predictor, ms, preds)
    e, sel, jac, jac_exp = tr.entries, tr.selection, tr.jacobian, tr.jacobian_expected
    pred, dx_dw, dx_dp = _entry_partials(*_partials_arguments(predictor, tr))
    # UL limits at one point vary with that point only; merged clusters' with their groups' W and points
    merged = _merged_limits(predictor, sel, jac.shape[1])
    point = (sel.point_pred, sel.point_entry, jac[sel.point_entry], jac_exp[sel.point_entry],
             np.zeros(len(sel.point_pred)), np.zeros(len(sel.point_pred)))
    lim_pred, lim_entry, dobs_dp, dexp_dp, dobs_dw, dexp_dw = (np.concatenate(pair) for pair in zip(point, merged))
    return Linearization(
        model=e["model"], row=e["row"], sqrts=e["sqrts"], weight=e["weight"], coords=e["coords"], pred=pred,
        dx_dw=dx_dw, dx_dp=dx_dp, lim_pred=lim_pred.astype(np.int64), lim_entry=lim_entry.astype(np.int64),
        dobs_dp=dobs_dp, dexp_dp=dexp_dp, dobs_dw=dobs_dw, dexp_dw=dexp_dw)


def _jacobian_trace(predictor: Predictor, models: Sequence[Protomodel | ModelArrays] | None,
                    preds: PredictionArrays) -> ForwardTrace:
    """The forward trace of `preds` with the maps' Jacobians: ``preds.trace``, or the forward pass
    of `models` run again with them (it must give `preds`). A trace that does not hold the very
    arrays of `preds` (e.g. kept through dataclasses.replace) must give them back: the flat σ are
    rebuilt from it and compared."""
    tr = preds.trace
    if tr is None or tr.jacobian is None:
        again = predictor.evaluate_batch(predictor.model_arrays_batch(models), jacobian=True)
        _check(preds, again.xsec_fb, again.ul_obs_fb, again.ul_exp_fb)
        tr = again.trace
    if any(a is not b for a, b in zip(tr.outputs, (preds.xsec_fb, preds.ul_obs_fb, preds.ul_exp_fb))):
        pred, dx_dw, _ = _entry_partials(*_partials_arguments(predictor, tr))
        has = pred >= 0
        xsec = np.bincount(pred[has], weights=(dx_dw * tr.entries["weight"])[has], minlength=len(preds.xsec_fb))
        _check(preds, xsec, preds.ul_obs_fb, preds.ul_exp_fb)
    return tr


def _partials_arguments(p: Predictor, tr: ForwardTrace) -> tuple:
    """The arguments of :func:`_entry_partials` from a forward trace with Jacobians."""
    e, sel = tr.entries, tr.selection
    return sel.entry, sel.pred, p.tx_is_em, e["tx"], e["coef"], tr.values, e["weight"], tr.jacobian


@numba.njit(cache=True)
def _entry_partials(sel_entry, sel_pred, tx_is_em, tx, coef, values, weight, jac):
    """(pred (n,) the flat prediction of each entry (-1: none), ∂σ_pred/∂W (n,), ∂σ_pred/∂p (n, C)) of the
    entries (:class:`Linearization`): σ_SR = Σ coef W ε(p) for EM, σ = Σ coef W for UL clusters
    (selected entries only: their values are finite)."""
    n, c = jac.shape
    pred = np.full(n, -1, dtype=np.int64)
    dx_dw, dx_dp = np.zeros(n), np.zeros((n, c))
    for q in range(len(sel_entry)):
        i = sel_entry[q]
        pred[i] = sel_pred[q]
        em = tx_is_em[tx[i]]
        dx_dw[i] = coef[i] * values[i] if em else coef[i]
        scale = coef[i] * weight[i] if em else 0.0
        for j in range(c):
            dx_dp[i, j] = scale * jac[i, j]
    return pred, dx_dw, dx_dp


_NO_LIMITS: dict[int, tuple[np.ndarray, ...]] = {}


def _merged_limits(p: Predictor, sel, c: int) -> tuple[np.ndarray, ...]:
    """The limit derivatives of the merged UL clusters' predictions, per entry of their groups:
    (pred, entry, ∂UL_obs/∂p (k, C), ∂UL_exp/∂p (k, C), ∂UL_obs/∂W, ∂UL_exp/∂W) (k,): the limits are
    taken at the W-weighted mean point p̄ (slope at the rounded p̄ the forward pass used); ∂/∂p on
    each group's first entry (the group's point), ∂/∂W on every entry of the group."""
    if not sel.merged:
        if c not in _NO_LIMITS:
            _NO_LIMITS[c] = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, c)), np.zeros((0, c)),
                             np.zeros(0), np.zeros(0))
        return _NO_LIMITS[c]
    out: list[list[np.ndarray]] = [[] for _ in range(6)]
    for cluster in sel.merged:
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
            d_dw = np.repeat(d_w[None], len(entries), axis=0)
            for part, value in zip(out, (np.full(len(entries), cluster.pred, dtype=np.int64),
                                         np.asarray(entries, dtype=np.int64), dp[:, 0], dp[:, 1],
                                         d_dw[:, 0], d_dw[:, 1])):
                part.append(value)
    return tuple(np.concatenate(part) for part in out)


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
    tr = _jacobian_trace(predictor, models, preds)
    bars = _vjp(d_x, d_obs, d_exp, preds.ul_obs_fb, preds.ul_exp_fb, *_vjp_arguments(predictor, tr))
    return _batch_gradient(predictor, models, tr.stacked, *bars)


def _vjp_arguments(p: Predictor, tr: ForwardTrace) -> tuple:
    """The arguments of :func:`_vjp` after the cotangents and limits, from a forward trace with Jacobians."""
    e, s, t = tr.entries, tr.stacked, p.table
    return (*_partials_arguments(p, tr), tr.selection.point_pred, tr.selection.point_entry, tr.jacobian_expected,
            *_merged_limits(p, tr.selection, tr.jacobian.shape[1]), e["model"], e["row"], t.el_channel, t.el_br,
            e["sqrts"], e["coords"], s.xsec, s.br, s.dlog_xsec, s.kappa, s.fitted, p.xsecs.channel_particles,
            p.xsecs.channel_kappa, s.masses.shape[1], len(p.xsecs.kappa_keys))


@numba.njit(cache=True)
def _vjp(d_x, d_obs, d_exp, obs, exp, sel_entry, sel_pred, tx_is_em, tx, coef, values, weight, jac, point_pred,
         point_entry, jac_exp, m_pred, m_entry, m_dobs_dp, m_dexp_dp, m_dobs_dw, m_dexp_dw, model, row, el_channel,
         el_br, sqrts, coords, xsec, br, dlog, kappa, fitted, channel_particles, channel_kappa, n_p, n_k):
    """(mass_bar (B, P), br_bar (B, n_br + 1), kappa_bar (B, K)) of the cotangents of the flat predictions
    (:func:`prediction_vjp`): :func:`_entry_partials`, :func:`_entry_cotangents`, :func:`_scatter_to_parameters`."""
    pred, dx_dw, dx_dp = _entry_partials(sel_entry, sel_pred, tx_is_em, tx, coef, values, weight, jac)
    w_bar, p_bar = _entry_cotangents(pred, dx_dw, dx_dp, point_pred, point_entry, jac, jac_exp, m_pred, m_entry,
                                     m_dobs_dw, m_dexp_dw, m_dobs_dp, m_dexp_dp, d_x, d_obs, d_exp, obs, exp)
    return _scatter_to_parameters(model, row, el_channel, el_br, sqrts, weight, coords, w_bar, p_bar, xsec, br, dlog,
                                  kappa, fitted, channel_particles, channel_kappa, n_p, n_k)


@numba.njit(cache=True)
def _entry_cotangents(pred, dx_dw, dx_dp, point_pred, point_entry, jac, jac_exp, m_pred, m_entry, m_dobs_dw,
                      m_dexp_dw, m_dobs_dp, m_dexp_dp, d_x, d_obs, d_exp, obs, exp):
    """(W̄ (n,), p̄ (n, C)) of the entries from the cotangents of the flat predictions: the selected
    entries' ∂σ_pred/∂(W, p), then the limits' ∂UL/∂(W, p): those at one point (the Jacobians of
    their entries, no W dependence), then the merged clusters' (:func:`_merged_limits`), in the
    order of :class:`Linearization`'s limits (cotangents on absent, NaN, limits count as zero)."""
    n, c = dx_dp.shape
    w_bar, p_bar = np.zeros(n), np.zeros((n, c))
    for i in range(n):
        k = pred[i]
        if k >= 0:
            w_bar[i] = d_x[k] * dx_dw[i]
            for j in range(c):
                p_bar[i, j] = d_x[k] * dx_dp[i, j]
    for q in range(len(point_pred)):
        i = point_entry[q]
        _add_limit_cotangent(w_bar, p_bar, i, point_pred[q], 0.0, 0.0, jac[i], jac_exp[i], d_obs, d_exp, obs, exp)
    for q in range(len(m_pred)):
        _add_limit_cotangent(w_bar, p_bar, m_entry[q], m_pred[q], m_dobs_dw[q], m_dexp_dw[q], m_dobs_dp[q],
                             m_dexp_dp[q], d_obs, d_exp, obs, exp)
    return w_bar, p_bar


@numba.njit(cache=True, inline="always")
def _add_limit_cotangent(w_bar, p_bar, i, k, dobs_dw, dexp_dw, dobs_dp, dexp_dp, d_obs, d_exp, obs, exp):
    """Entry i's share of the cotangents of prediction k's limits (UL_obs, UL_exp) through ∂UL/∂W and ∂UL/∂p."""
    lo = d_obs[k] if np.isfinite(obs[k]) else 0.0
    le = d_exp[k] if np.isfinite(exp[k]) else 0.0
    w_bar[i] += lo * dobs_dw + le * dexp_dw
    for j in range(p_bar.shape[1]):
        p_bar[i, j] += lo * dobs_dp[j] + le * dexp_dp[j]


def _batch_gradient(p: Predictor, models: Sequence[Protomodel], s: ModelArraysBatch, mass_bar: np.ndarray,
                    br_bar: np.ndarray, kappa_bar: np.ndarray) -> BatchGradient:
    """The :class:`BatchGradient` of the kernels' cotangents (the constant BR column dropped)."""
    return BatchGradient(p, models, mass_bar, br_bar[:, :len(p.table.br_channels)], kappa_bar, s.present)


@numba.njit(cache=True)
def _scatter_to_parameters(model, row, el_channel, el_br, sqrts, weight, coords, w_bar, p_bar, xsec, br, dlog, kappa,
                           fitted, channel_particles, channel_kappa, n_p, n_k):
    """(mass_bar (B, P), br_bar (B, n_br + 1), kappa_bar (B, K)) of the entries (n; table rows `row`) of a batch:
    W = X[channel, √s] · Π BR · share, so W̄ goes to X̄ = Σ W̄ W/X and to BR̄ = Σ W̄ W/BR per factor
    (but the constant column n_br, whose BR̄ nobody reads: br_bar[:, n_br] stays 0);
    X = κ · σ_fit(m_a, m_b): ∂X/∂m = X ∂ln σ/∂m, ∂X/∂κ = X/κ (injected σ: constants); p̄ adds to the
    masses of its coordinates. Each sum runs in the order of the entries, then of (model, channel,
    √s) (that of the numpy scatter-adds this replaces, so the sums are the same to the bit)."""
    n_b, n_c, n_s = xsec.shape
    n_br = br.shape[1]
    constant = n_br - 1
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
            if column != constant:
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
    prediction; ``critic_r`` is r_obs = σ/UL_obs of the prediction attaining it,
    ``inputs.critic_choice`` (the largest of the result's UL predictions, or its best-expected EM
    signal region). ``sl_signal``
    (B, n_sl) is σ·L of every SR of the combined results (SR selection ``combined``), the cotangent
    e.g. ``TargetValues.grad_sl_signal``."""
    a = target.compiled.arrays
    c_signal, c_obs, c_exp, c_critic, c_sl = (
        np.asarray(cot[k], dtype=float) if k in cot else np.zeros_like(getattr(inputs, k), dtype=float)
        for k in GRAPH_INPUTS)
    p = target.predictor
    tr = _jacobian_trace(p, models, preds)
    bars = _chain(inputs.choice, inputs.sl_choice, inputs.critic_choice, c_signal, c_obs, c_exp, c_critic, c_sl,
                  preds.dataset, a.dataset_result, target._dataset_em, a.result_lumi, preds.xsec_fb, preds.ul_obs_fb,
                  preds.ul_exp_fb, *_vjp_arguments(p, tr))
    return _batch_gradient(p, models, tr.stacked, *bars)


@numba.njit(cache=True)
def _chain(choice, sl_choice, critic_choice, c_signal, c_obs, c_exp, c_critic, c_sl, dataset, dataset_result,
           dataset_em, result_lumi, xsec, obs, exp, *vjp_arguments):
    """:func:`_prediction_cotangents` then :func:`_vjp` (its arguments after the limits: `vjp_arguments`)."""
    d_x, d_obs, d_exp = _prediction_cotangents(choice, sl_choice, critic_choice, c_signal, c_obs, c_exp, c_critic,
                                               c_sl, dataset, dataset_result, dataset_em, result_lumi, xsec, obs, exp)
    return _vjp(d_x, d_obs, d_exp, obs, exp, *vjp_arguments)


@numba.njit(cache=True)
def _prediction_cotangents(choice, sl_choice, critic_choice, c_signal, c_obs, c_exp, c_critic, c_sl, dataset,
                           dataset_result, dataset_em, result_lumi, xsec, obs, exp):
    """(∂F/∂σ, ∂F/∂UL_obs, ∂F/∂UL_exp) of the flat predictions (n) from the per-result cotangents
    (:func:`chain_to_parameters`): the chosen prediction of each (model, result) gets its signal's
    (× L for EM) and its limits' (where finite and > 0); each combined SR its σ·L's; the prediction
    attaining a result's critic r (``critic_choice`` of :class:`.target.ResultInputs`) gets
    c·∂r/∂σ = c/UL_obs and c·∂r/∂UL_obs = −c σ/UL_obs², where UL_obs is finite (without it the
    critic's r is a constant, 23). Sums in (model, result) order."""
    n = len(xsec)
    n_b, n_r = choice.shape
    d_x, d_obs, d_exp = np.zeros(n), np.zeros(n), np.zeros(n)
    for b in range(n_b):
        for r in range(n_r):
            k = choice[b, r]
            if k >= 0:
                d_x[k] += c_signal[b, r] * (result_lumi[r] if dataset_em[dataset[k]] else 1.0)
    for b in range(n_b):
        for q in range(sl_choice.shape[1]):
            k = sl_choice[b, q]
            if k >= 0:
                d_x[k] += c_sl[b, q] * result_lumi[dataset_result[dataset[k]]]
    for d, v, c in ((d_obs, obs, c_obs), (d_exp, exp, c_exp)):
        for b in range(n_b):
            for r in range(n_r):
                k = choice[b, r]
                if k >= 0 and np.isfinite(v[k]) and v[k] > 0:
                    d[k] += c[b, r]
    for b in range(n_b):
        for r in range(n_r):
            i, c = critic_choice[b, r], c_critic[b, r]
            if i >= 0 and c != 0.0 and np.isfinite(obs[i]):
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
