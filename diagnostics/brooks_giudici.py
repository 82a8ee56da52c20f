"""Brooks & Giudici (2000), J. Comput. Graph. Stat. 9:266: two-way (chain × model) analysis of variance
of a model-invariant quantity θ (one defined in every model, e.g. the log target).

For draws θ_{c,t} of C chains × T draws with model m_{c,t} (M models seen in total, M_c in chain c):

    V̂      = Σ_{c,t} (θ_{ct} − θ̄)²           / (CT − 1)          total variance
    W_c    = Σ_{c,t} (θ_{ct} − θ̄_c)²         / (C(T − 1))        within chains
    W_m    = Σ_{c,t} (θ_{ct} − θ̄^{(m)})²     / (CT − M)          within models (chains pooled)
    W_mW_c = Σ_{c,t} (θ_{ct} − θ̄_c^{(m)})²   / (CT − Σ_c M_c)    within chain and model

At convergence every chain samples the same distribution, so V̂ ≈ W_c and W_m ≈ W_mW_c. The ratios
``chain_ratio`` = V̂ / W_c (chains disagree, e.g. one chain stuck in a model whose θ differs) and
``model_ratio`` = W_m / W_mW_c (chains disagree on θ within a model) should both be close to 1;
Brooks & Giudici also look at the four components over the run (all draws up to iteration t, the
warm-up having been discarded already), which :func:`brooks_giudici_path` returns for the plot.
A quantity that is a function of the model (W_m = 0) carries no within-model information; the
ratios are then NaN. The denominators are the ANOVA degrees of freedom (unbiased mean squares); the
paper's text was not at hand to check its exact normalisation, which changes the ratios by
O(M/CT) only.
"""

from __future__ import annotations

import numpy as np


def _sum_sq_within(values: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """Σ (x − group mean)² and the number of distinct groups."""
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.bincount(inv, weights=values)
    counts = np.bincount(inv)
    means = sums / counts
    return float(np.sum((values - means[inv]) ** 2)), len(uniq)


def brooks_giudici(theta: np.ndarray, model_index: np.ndarray) -> dict[str, float]:
    """V̂, W_c, W_m, W_mW_c and the two ratios for ``theta`` and ``model_index`` (chain, draw)."""
    theta = np.asarray(theta, dtype=float)
    chains, draws = theta.shape
    n = chains * draws
    flat = theta.ravel()
    chain_of = np.repeat(np.arange(chains), draws)
    model = np.asarray(model_index).ravel()
    v_hat = float(np.var(flat, ddof=1))
    w_c = _sum_sq_within(flat, chain_of)[0] / (chains * (draws - 1))
    ss_m, n_models = _sum_sq_within(flat, model)
    # a (chain, model) cell key: model indices are < model.max()+1
    ss_cm, n_cells = _sum_sq_within(flat, chain_of * (model.max() + 1) + model)
    w_m = ss_m / (n - n_models) if n > n_models else np.nan
    w_mw_c = ss_cm / (n - n_cells) if n > n_cells else np.nan
    return {
        "V": v_hat,
        "W_c": w_c,
        "W_m": w_m,
        "W_mW_c": w_mw_c,
        "chain_ratio": v_hat / w_c if w_c > 0 else np.nan,
        "model_ratio": w_m / w_mw_c if w_mw_c > 0 else np.nan,
    }


def brooks_giudici_path(theta: np.ndarray, model_index: np.ndarray, n_points: int = 20) -> dict[str, np.ndarray]:
    """The components of :func:`brooks_giudici` on the first t draws, for ``n_points`` values of t."""
    draws = theta.shape[1]
    ts = np.unique(np.linspace(draws / n_points, draws, n_points).astype(int).clip(4, draws))
    rows = [brooks_giudici(theta[:, :t], model_index[:, :t]) for t in ts]
    return {"draw": ts} | {key: np.array([r[key] for r in rows]) for key in rows[0]}
