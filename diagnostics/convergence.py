"""R-hat, ESS and MCSE for trans-dimensional chains.

- Scalar (model-invariant) quantities and inclusion indicators: ArviZ (arviz-stats 1.x)
  ``rhat`` (rank-normalised split R-hat, the max of bulk and folded), ``ess`` ("bulk", "tail",
  "mean") and ``mcse`` ("mean"). Inclusion indicators are 0/1 chains; their MCSE is
  sqrt(p(1−p)/ESS_mean) (see :mod:`.model_probabilities`).

- A slot parameter given its slot is active ("conditional" diagnostics). Definition: for each
  chain, the *induced chain* on {slot active} is the sub-sequence of that chain's draws at which
  the slot is active, in order. If the full chain is stationary with distribution π, the induced
  chain is stationary with distribution π( · | slot active) (the chain watched on a set; Kac), so
  the usual diagnostics apply to it. Chains with fewer than ``min_draws`` active draws are left out
  (too short to split and rank); with fewer than two chains left, R-hat is NaN. The induced chains
  have unequal lengths, which ArviZ does not take, so R-hat is computed here: each induced chain is
  split into halves (first and last ⌊n/2⌋ draws, as ArviZ does), all halves are rank-normalised
  together (Blom offset 3/8, average ranks for ties), and with half-chain means x̄_j, variances
  s_j² (ddof 1) and lengths n_j,

      W = Σ(n_j − 1) s_j² / Σ(n_j − 1),   var⁺ = (1 − h) W + Var_j(x̄_j),   h = mean_j(1/n_j),
      R-hat = sqrt(var⁺ / W),

  for the values (bulk) and for |x − median| (folded); the larger is reported. With equal lengths
  this is exactly ArviZ's rank R-hat (tested); h = mean(1/n_j) keeps E[var⁺] = σ² for independent
  draws when lengths differ. ESS is the sum over kept chains of ArviZ's single-chain ESS (bulk
  and tail); between-chain disagreement is R-hat's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz_stats
import numpy as np
from scipy import stats

# Tail ESS is the smaller ESS of the 5 % and 95 % quantiles (Vehtari et al. 2021).
TAIL_PROB = (0.05, 0.95)


@dataclass(frozen=True)
class Thresholds:
    """When a diagnostic fails. Defaults follow Vehtari et al. (2021, Bayesian Anal. 16:667):
    R-hat < 1.01 and ESS ≥ 100 per chain; ``bg_ratio_max`` bounds the Brooks–Giudici variance
    ratios (a variance ratio of 1.05 is an R-hat of about 1.025); ``min_active_draws`` is the
    per-chain minimum of active draws for conditional diagnostics."""

    rhat_max: float = 1.01
    ess_min_per_chain: float = 100.0
    bg_ratio_max: float = 1.05
    min_active_draws: int = 40

    def ess_min(self, n_chains: int) -> float:
        return self.ess_min_per_chain * n_chains


def arviz_rhat(x: np.ndarray) -> float:
    """ArviZ rank R-hat of a (chain, draw) array; NaN for one chain.

    Chains that never move have zero within-chain variance: R-hat is then inf or NaN, which the
    callers report in words, so numpy's division warning is silenced here."""
    if x.shape[0] < 2:
        return np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(arviz_stats.rhat(x))


def scalar_diagnostics(values: np.ndarray) -> dict[str, float]:
    """Mean, sd, rank R-hat, bulk/tail ESS and MCSE of the mean of a (chain, draw) array (ArviZ)."""
    x = np.asarray(values, dtype=float)
    out = {"mean": float(np.mean(x)), "sd": float(np.std(x, ddof=1))}
    if np.all(x == x.flat[0]):
        return out | {"rhat": np.nan, "ess_bulk": np.nan, "ess_tail": np.nan, "mcse_mean": 0.0}
    return out | {
        "rhat": arviz_rhat(x),
        "ess_bulk": float(arviz_stats.ess(x, method="bulk")),
        "ess_tail": float(arviz_stats.ess(x, method="tail", prob=TAIL_PROB)),
        "mcse_mean": float(arviz_stats.mcse(x, method="mean")),
    }


def _split(chains: list[np.ndarray]) -> list[np.ndarray]:
    halves = []
    for c in chains:
        h = len(c) // 2
        halves += [c[:h], c[len(c) - h :]]
    return halves


def _rank_normalise(parts: list[np.ndarray]) -> list[np.ndarray]:
    pooled = np.concatenate(parts)
    z = stats.norm.ppf((stats.rankdata(pooled, method="average") - 0.375) / (pooled.size + 0.25))
    return np.split(z, np.cumsum([len(p) for p in parts])[:-1])


def _rhat_unequal(parts: list[np.ndarray]) -> float:
    n = np.array([len(p) for p in parts], dtype=float)
    means = np.array([p.mean() for p in parts])
    w = np.sum([(len(p) - 1) * p.var(ddof=1) for p in parts]) / np.sum(n - 1)
    var_plus = (1.0 - np.mean(1.0 / n)) * w + means.var(ddof=1)
    return float(np.sqrt(var_plus / w))


def rank_rhat_unequal(chains: list[np.ndarray]) -> float:
    """Rank-normalised split R-hat (max of bulk and folded) for chains of unequal lengths (module docstring)."""
    halves = _split([np.asarray(c, dtype=float) for c in chains])
    pooled = np.concatenate(halves)
    if len(halves) < 4 or min(len(h) for h in halves) < 2 or np.all(pooled == pooled[0]):
        return np.nan
    median = np.median(pooled)
    bulk = _rhat_unequal(_rank_normalise(halves))
    folded = _rhat_unequal(_rank_normalise([np.abs(h - median) for h in halves]))
    return max(bulk, folded)


def conditional_diagnostics(values: np.ndarray, active: np.ndarray, min_draws: int) -> dict:
    """Diagnostics of ``values`` (chain, draw) on the draws where ``active`` (chain, draw) is true.

    Returns ``rhat``, ``ess_bulk``, ``ess_tail`` (NaN when undefined), ``n_active`` per chain and
    ``chains_used`` (indices of chains with at least ``min_draws`` active draws).
    """
    induced = [np.asarray(v[a], dtype=float) for v, a in zip(values, active)]
    used = [i for i, c in enumerate(induced) if len(c) >= min_draws]
    kept = [induced[i] for i in used]
    ess_bulk = ess_tail = np.nan
    if kept and not np.all(np.concatenate(kept) == kept[0][0]):
        ess_bulk = float(sum(arviz_stats.ess(c[None, :], method="bulk") for c in kept))
        ess_tail = float(sum(arviz_stats.ess(c[None, :], method="tail", prob=TAIL_PROB) for c in kept))
    return {
        "rhat": rank_rhat_unequal(kept) if len(kept) >= 2 else np.nan,
        "ess_bulk": ess_bulk,
        "ess_tail": ess_tail,
        "n_active": [len(c) for c in induced],
        "chains_used": used,
    }
