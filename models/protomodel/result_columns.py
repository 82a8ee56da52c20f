"""The per-result columns of a batch's flat predictions in one compiled pass (stage 2 of
:class:`~.target.LikelihoodTarget`): the critic's r, the prediction each result enters the likelihood
with, its likelihood data and the states' slots.

One numba kernel instead of ~60 small numpy calls (sorts, reductions per key, scatters), the same
choices and the same floating-point operations (bit-identical to the numpy formulation it replaced;
``tests/models/test_target_kernels.py``).
"""

from __future__ import annotations

import numba
import numpy as np

from tdmcmc.models.greedy.objective import MISSING_R

# rows of `ResultColumns.values`: the chosen prediction's n, b (>= 0), Δb, UL_obs, UL_exp (fb), L (fb⁻¹) (> 0)
VALUE_ROWS = ("n", "b", "db", "ul_obs", "ul_exp", "lumi")


@numba.njit(cache=True)
def _maximum(a: float, b: float) -> float:
    """np.maximum of two floats (NaN propagates, the first NaN wins)."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a > b else b


@numba.njit(cache=True)
def _beats(i, value, j, current, dataset, txname) -> bool:
    """Whether prediction i with `value` replaces the current best j (-1: none) with `current` of its
    key: a larger value (NaN below everything), on ties the first by (dataset, txname, index)."""
    if j < 0 or value > current:
        return True
    if current != current:
        if value == value:
            return True
    elif value != current:
        return False
    if dataset[i] != dataset[j]:
        return dataset[i] < dataset[j]
    if txname[i] != txname[j]:
        return txname[i] < txname[j]
    return i < j


@numba.njit(cache=True)
def _slot_rows(selected, columns, spare):
    """(B, S) for one kind of slot: per state its selected `columns` in their order, padded with
    `spare` to S = the batch's largest count (at least 1)."""
    n_b = selected.shape[0]
    counts = np.zeros(n_b, np.int64)
    for b in range(n_b):
        for c in columns:
            if selected[b, c] > 0:
                counts[b] += 1
    out = np.empty((n_b, max(counts.max(), 1)), np.int64)
    for b in range(n_b):
        out[b, :] = spare[b]
        k = 0
        for c in columns:
            if selected[b, c] > 0:
                out[b, k] = c
                k += 1
    return out


@numba.njit(cache=True, error_model="numpy")      # σ/0 is inf, as in numpy
def result_columns(n_b, model, dataset, txname, xsec, obs, exp, dataset_result, dataset_em, em_ok, in_graph,
                   analysis_code, n_codes, observed_n, expected_bg, bg_error, result_lumi, ratio_key,
                   em_columns, ul_columns, sl_results, result_node):
    """The dense per-result columns of a batch of `n_b` models from its flat predictions.

    Predictions: `model`, `dataset`, `txname` (-1 for EM), σ `xsec` (fb), `obs`, `exp` UL (fb).
    Per dataset: `dataset_result`, `dataset_em`, `em_ok` (counts usable); per result: `in_graph`,
    `analysis_code` (< `n_codes`), `result_lumi` (fb⁻¹), `result_node`.

    * critic (B, n_results): max over the result's UL predictions of r_obs = σ/UL_obs
      (:data:`MISSING_R` without UL_obs), and r_obs of its EM SR of largest r_exp = σ/UL_exp
      (r_obs where r_exp is undefined); critic_choice (B, n_results) the prediction attaining it
      (UL: of largest r_obs, NaN below everything; ties: the first by (dataset, txname, index);
      -1 without prediction);
    * chosen (k,): per (model, analysis id), in that order, the prediction in the likelihood: finite
      UL_obs, UL_exp > 0, in the combinability graph, EM with counts; the largest UL_obs/UL_exp
      (`ratio_key`) or r_exp; ties: the first by (dataset, txname, index);
    * selected, signal (σ·L for EM, σ for UL), choice (-1 where none) (B, n_results);
    * values (6, B, n_results): :data:`VALUE_ROWS` of the chosen prediction where valid, else 1;
    * em_slots, ul_slots: the selected `em_columns` / `ul_columns` of each state, padded with its
      first unselected column; slot_node (B, S_em + S_ul + n_sl): the graph node of those slots and
      then of `sl_results` where selected, -1 elsewhere.
    """
    n_r = len(in_graph)
    critic = np.zeros((n_b, n_r))
    critic_choice = np.full((n_b, n_r), -1)
    critic_value = np.zeros((n_b, n_r))
    best = np.full((n_b, n_codes), -1)
    best_value = np.zeros((n_b, n_codes))
    for i in range(len(xsec)):
        b, d = model[i], dataset[i]
        r = dataset_result[d]
        o, e = obs[i], exp[i]
        r_obs = xsec[i] / o if np.isfinite(o) else MISSING_R
        positive = e > 0
        r_exp = xsec[i] / e if np.isfinite(e) and positive else np.nan
        if dataset_em[d]:
            value = r_obs if r_exp != r_exp else r_exp
        else:
            critic[b, r] = _maximum(critic[b, r], r_obs)
            value = r_obs
        if _beats(i, value, critic_choice[b, r], critic_value[b, r], dataset, txname):
            critic_choice[b, r], critic_value[b, r] = i, value
        if np.isfinite(o) and positive and in_graph[r] and (em_ok[d] or not dataset_em[d]):
            value = o / e if ratio_key else r_exp
            c = analysis_code[r]
            if _beats(i, value, best[b, c], best_value[b, c], dataset, txname):
                best[b, c], best_value[b, c] = i, value
    for b in range(n_b):
        for r in range(n_r):
            i = critic_choice[b, r]
            if i >= 0 and dataset_em[dataset[i]]:
                critic[b, r] = _maximum(critic[b, r], xsec[i] / obs[i] if np.isfinite(obs[i]) else MISSING_R)

    chosen = np.empty(int((best >= 0).sum()), np.int64)
    k = 0
    for b in range(n_b):
        for c in range(n_codes):
            if best[b, c] >= 0:
                chosen[k] = best[b, c]
                k += 1
    selected, signal = np.zeros((n_b, n_r)), np.zeros((n_b, n_r))
    choice = np.full((n_b, n_r), -1)
    values = np.ones((6, n_b, n_r))
    for i in chosen:
        b, d = model[i], dataset[i]
        r = dataset_result[d]
        lumi = result_lumi[r]
        selected[b, r] = 1.0
        choice[b, r] = i
        signal[b, r] = xsec[i] * lumi if dataset_em[d] else xsec[i]
        row = (observed_n[d], expected_bg[d], bg_error[d], obs[i], exp[i], lumi)
        for q in range(6):
            v = row[q]
            if np.isfinite(v) and (v >= 0 if q < 2 else v > 0):
                values[q, b, r] = v

    spare = np.zeros(n_b, np.int64)              # the first column a state does not select
    for b in range(n_b):
        for r in range(n_r):
            if selected[b, r] == 0:
                spare[b] = r
                break
    em_slots = _slot_rows(selected, em_columns, spare)
    ul_slots = _slot_rows(selected, ul_columns, spare)
    s_em, s_ul = em_slots.shape[1], ul_slots.shape[1]
    slot_node = np.full((n_b, s_em + s_ul + len(sl_results)), -1)
    for b in range(n_b):
        for s in range(slot_node.shape[1]):
            if s < s_em:
                r = em_slots[b, s]
            elif s < s_em + s_ul:
                r = ul_slots[b, s - s_em]
            else:
                r = sl_results[s - s_em - s_ul]
            if selected[b, r] > 0:
                slot_node[b, s] = result_node[r]
    return critic, critic_choice, chosen, selected, signal, choice, values, em_slots, ul_slots, slot_node
