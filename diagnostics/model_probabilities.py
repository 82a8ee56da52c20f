"""Posterior model probabilities and their Monte Carlo uncertainty.

A *model* is the set of active slots (for protomodels: which particles are present). Two estimates
of the uncertainty of the visit frequencies p̂_m are given:

1. Indicator chains. For each model m the binary chain I_t = [model_t = m] has mean p̂_m; its
   effective sample size ESS_m is ArviZ's ``ess(method="mean")`` over all chains, and
   MCSE_m = sqrt(p̂_m (1 − p̂_m) / ESS_m) (the CLT for a Markov chain: the asymptotic variance of
   p̂_m is p_m (1 − p_m) τ_m / N with τ_m the integrated autocorrelation time of I).
2. Heck, Overstall, Gronau & Wagenmakers (2019), Stat. Comput. 29:631, Sect. 2: treat the
   model sequence as a first-order Markov chain over the M visited models; each row of its
   transition matrix P gets a Dirichlet(ε, …, ε) prior with ε = 1/M (the default of their R package
   MCMCprecision), so given the transition counts N (summed over chains, transitions counted only
   within a chain) the rows are independent Dirichlet(N_i + ε). Each posterior draw of P gives a
   stationary distribution π(P); their spread is the uncertainty of the model probabilities.
   Their effective sample size (Sect. 2.3) is the sum α₀ of the parameters of a Dirichlet fitted by
   maximum likelihood to the draws of π: i.i.d. sampling of T models would give π ~ Dirichlet with
   α₀ ≈ T.

Approximation: with more than ``max_models`` visited models, the least visited ones are lumped into
one state "other" before the Markov model is fitted; lumping states of a Markov chain does not give
a Markov chain in general, so the Heck intervals of the kept models are then approximate.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz_stats
import numpy as np
from scipy import optimize, special

from tdmcmc.diagnostics.convergence import arviz_rhat

OTHER = "other"


@dataclass(frozen=True)
class ModelIndex:
    """``index`` (chain, draw) into ``patterns`` (M, slots) bool, sorted by decreasing visit count."""

    index: np.ndarray
    patterns: np.ndarray
    counts: np.ndarray

    def labels(self, slot_names: tuple[str, ...]) -> list[str]:
        """Readable model labels, e.g. ``x0+x2`` or ``(none)`` for the empty model."""
        return [model_label(p, slot_names) for p in self.patterns]


def model_label(pattern: np.ndarray, slot_names: tuple[str, ...]) -> str:
    """``a+b`` for the active slots of ``pattern``; ``(none)`` when no slot is active."""
    names = [n for n, on in zip(slot_names, pattern) if on]
    return "+".join(names) if names else "(none)"


def index_models(active: np.ndarray) -> ModelIndex:
    """Number the distinct active-slot patterns of ``active`` (chain, draw, slot), most visited first."""
    chains, draws, slots = active.shape
    patterns, inverse, counts = np.unique(active.reshape(-1, slots), axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return ModelIndex(rank[inverse.ravel()].reshape(chains, draws), patterns[order], counts[order])


def indicator_stats(indicator: np.ndarray) -> dict[str, float]:
    """Mean, ESS (ArviZ "mean" method), MCSE = sqrt(p(1−p)/ESS) and rank R-hat of a 0/1 chain (chain, draw).

    ESS, MCSE and R-hat are NaN when the indicator is constant over all draws (undefined there).
    """
    x = np.asarray(indicator, dtype=float)
    p = float(x.mean())
    if np.all(x == x.flat[0]):
        return {"mean": p, "ess": np.nan, "mcse": np.nan, "rhat": np.nan}
    ess = float(arviz_stats.ess(x, method="mean"))
    return {"mean": p, "ess": ess, "mcse": float(np.sqrt(p * (1.0 - p) / ess)), "rhat": arviz_rhat(x)}


def transition_counts(index: np.ndarray, n_states: int) -> np.ndarray:
    """N[i, j] = number of steps i → j within chains, from ``index`` (chain, draw)."""
    counts = np.zeros((n_states, n_states))
    np.add.at(counts, (index[:, :-1].ravel(), index[:, 1:].ravel()), 1.0)
    return counts


def stationary_distributions(transition: np.ndarray) -> np.ndarray:
    """π with π P = π, Σπ = 1 for a batch of row-stochastic matrices (..., M, M)."""
    m = transition.shape[-1]
    a = np.swapaxes(transition, -1, -2) - np.eye(m)
    a[..., -1, :] = 1.0  # replace one (redundant) balance equation by the normalisation
    b = np.zeros(transition.shape[:-1])
    b[..., -1] = 1.0
    return np.linalg.solve(a, b[..., None])[..., 0]


def heck_posterior(
    counts: np.ndarray, n_samples: int, rng: np.random.Generator, epsilon: float | None = None
) -> np.ndarray:
    """Draws (n_samples, M) of the stationary distribution under the Dirichlet–Markov posterior."""
    m = counts.shape[0]
    eps = 1.0 / m if epsilon is None else epsilon
    g = rng.gamma(counts + eps, size=(n_samples, m, m))
    rows = g.sum(axis=-1, keepdims=True)
    # A row of underflowed gammas (an unvisited row with tiny ε) carries no information: uniform.
    p = np.where(rows > 0, g / np.where(rows > 0, rows, 1.0), 1.0 / m)
    return np.clip(stationary_distributions(p), 0.0, 1.0)


def dirichlet_precision_mle(samples: np.ndarray) -> float:
    """α₀ = Σα of the maximum-likelihood Dirichlet fitted to ``samples`` (n, M) (Heck et al. 2019, Sect. 2.3)."""
    x = np.clip(samples, 1e-300, None)
    x = x / x.sum(axis=1, keepdims=True)
    mean_log = np.log(x).mean(axis=0)
    m = x.mean(axis=0)
    v = x.var(axis=0)
    start = np.log(np.clip(np.median(m * (1 - m) / np.where(v > 0, v, np.inf)) - 1.0, 1e-3, None) * m)

    def neg_loglik(log_alpha: np.ndarray) -> tuple[float, np.ndarray]:
        alpha = np.exp(log_alpha)
        a0 = alpha.sum()
        ll = special.gammaln(a0) - special.gammaln(alpha).sum() + ((alpha - 1.0) * mean_log).sum()
        grad = special.digamma(a0) - special.digamma(alpha) + mean_log
        return -ll, -grad * alpha

    res = optimize.minimize(neg_loglik, start, jac=True, method="L-BFGS-B")
    return float(np.exp(res.x).sum())


@dataclass(frozen=True)
class ModelTable:
    """Posterior model probabilities with uncertainties, most probable first.

    Per model: ``label``, ``k`` (number of active slots; None for "other"), ``p`` (visit frequency), indicator-chain
    ``ess``, ``mcse`` and ``rhat``, and the Heck et al. posterior ``heck_mean``, ``heck_sd``,
    ``heck_lo`` / ``heck_hi`` (2.5 % / 97.5 % quantiles). ``heck_ess`` is the Heck effective sample
    size of the whole model sequence; ``n_models`` the number of distinct models visited.
    """

    rows: list[dict]
    heck_ess: float
    n_models: int


def model_table(
    models: ModelIndex, slot_names: tuple[str, ...], max_models: int = 20, n_samples: int = 2000, seed: int = 0
) -> ModelTable:
    """The :class:`ModelTable` of the models visited (:func:`index_models`); see the module docstring.

    ``seed`` fixes the draws of the Heck posterior so a report is reproducible."""
    labels = models.labels(slot_names)
    n_models = len(labels)
    kept = min(n_models, max_models)
    lumped = n_models > max_models
    index = np.minimum(models.index, kept) if lumped else models.index
    n_states = kept + int(lumped)
    rows = []
    for i in range(n_states):
        stats = indicator_stats(index == i)
        is_other = lumped and i == kept
        rows.append(
            {
                "label": OTHER if is_other else labels[i],
                "k": None if is_other else int(models.patterns[i].sum()),
                "p": stats["mean"],
                "ess": stats["ess"],
                "mcse": stats["mcse"],
                "rhat": stats["rhat"],
            }
        )
    if n_states == 1:
        for row in rows:
            row.update(heck_mean=1.0, heck_sd=0.0, heck_lo=1.0, heck_hi=1.0)
        return ModelTable(rows, np.nan, n_models)
    draws = heck_posterior(transition_counts(index, n_states), n_samples, np.random.default_rng(seed))
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    for i, row in enumerate(rows):
        row.update(
            heck_mean=float(draws[:, i].mean()),
            heck_sd=float(draws[:, i].std(ddof=1)),
            heck_lo=float(lo[i]),
            heck_hi=float(hi[i]),
        )
    return ModelTable(rows, dirichlet_precision_mle(draws), n_models)
