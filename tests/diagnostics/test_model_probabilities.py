"""Model probabilities and their uncertainty on Markov chains with known stationary distribution and
autocorrelation (see synthetic.py for τ of a two-state chain)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from tdmcmc.diagnostics.model_probabilities import (
    OTHER,
    dirichlet_precision_mle,
    heck_posterior,
    index_models,
    indicator_stats,
    model_table,
    stationary_distributions,
    transition_counts,
)

from .synthetic import markov, tau_two_state, two_state

# The example of Heck et al.'s R package (MCMCprecision::stationary): three models.
P3 = np.array([[0.1, 0.5, 0.4], [0.0, 0.5, 0.5], [0.9, 0.1, 0.0]])


def _scipy_stationary(p: np.ndarray) -> np.ndarray:
    w, v = scipy.linalg.eig(p.T)
    vec = np.real(v[:, np.argmin(np.abs(w - 1.0))])
    return vec / vec.sum()


def test_index_models_orders_by_visits_and_labels():
    active = np.array([[[1, 0], [1, 0], [0, 0]], [[1, 1], [1, 0], [0, 0]]], dtype=bool)
    models = index_models(active)
    assert models.labels(("a", "b")) == ["a", "(none)", "a+b"]
    assert models.counts.tolist() == [3, 2, 1]
    assert models.index.tolist() == [[0, 0, 1], [2, 0, 1]]


def test_stationary_distribution_matches_scipy_eigenvector():
    rng = np.random.default_rng(3)
    mats = rng.dirichlet(np.ones(6), size=(5, 6))
    ours = stationary_distributions(mats)
    for m, pi in zip(mats, ours):
        np.testing.assert_allclose(pi, _scipy_stationary(m), atol=1e-12)
    np.testing.assert_allclose(stationary_distributions(P3), _scipy_stationary(P3), atol=1e-12)


def test_transition_counts_only_within_chains():
    index = np.array([[0, 1, 1], [2, 0, 0]])
    n = transition_counts(index, 3)
    assert n.sum() == 4  # 2 steps per chain, none across the chain boundary (1 → 2)
    assert n[0, 1] == 1 and n[1, 1] == 1 and n[2, 0] == 1 and n[0, 0] == 1


def test_indicator_ess_and_mcse_match_the_known_autocorrelation():
    # a = 0.05, b = 0.15: p = 0.25, τ = 9; 4 chains × 5000 draws → ESS = 20000/9 ≈ 2222.
    a, b = 0.05, 0.15
    z = two_state(a, b, (4,), 5000, np.random.default_rng(11))
    s = indicator_stats(z)
    tau = tau_two_state(a, b)
    # The ESS estimator has a relative sd of roughly 5–8 % at this length: 15 % tolerance.
    assert s["ess"] == pytest.approx(z.size / tau, rel=0.15)
    assert s["mcse"] == pytest.approx(np.sqrt(0.25 * 0.75 * tau / z.size), rel=0.1)
    assert 0.995 < s["rhat"] < 1.01


def test_indicator_mcse_covers_the_truth_at_the_nominal_rate():
    # 300 independent replicates of 4 × 1000 draws (τ = 9, ESS ≈ 440): |p̂ − p| < 2 MCSE in ≈ 95.4 %.
    # Binomial sd of the rate over 300 replicates is 1.2 %; accept [0.90, 0.99].
    a, b = 0.05, 0.15
    z = two_state(a, b, (300, 4), 1000, np.random.default_rng(5))
    hits = [abs(s["mean"] - 0.25) < 2 * s["mcse"] for s in map(indicator_stats, z)]
    assert 0.90 <= np.mean(hits) <= 0.99


def test_indicator_of_a_constant_chain_has_no_ess_or_rhat():
    s = indicator_stats(np.zeros((3, 50), bool))
    assert s["mean"] == 0 and np.isnan(s["ess"]) and np.isnan(s["rhat"])


def test_dirichlet_precision_recovers_the_generating_sum():
    rng = np.random.default_rng(2)
    alpha = np.array([30.0, 120.0, 50.0, 300.0])
    draws = rng.dirichlet(alpha, size=4000)
    # The MLE of α₀ from 4000 draws has a relative sd of about 1–2 %.
    assert dirichlet_precision_mle(draws) == pytest.approx(alpha.sum(), rel=0.05)


def test_heck_ess_of_a_symmetric_two_state_chain_is_n_over_tau():
    # q = 0.1: τ = 9, 4 × 4000 draws → T_eff = 16000/9 ≈ 1778 (all models share τ here).
    q = 0.1
    z = two_state(q, q, (4,), 4000, np.random.default_rng(8))
    table = model_table(index_models(z[..., None]), ("a",))
    assert table.heck_ess == pytest.approx(z.size / tau_two_state(q, q), rel=0.15)
    for row in table.rows:  # the two uncertainty estimates agree
        assert row["heck_sd"] == pytest.approx(row["mcse"], rel=0.2)


def test_heck_interval_covers_the_stationary_distribution_at_the_nominal_rate():
    # 120 replicates of 2 chains × 500 draws of the three-model chain; 95 % intervals of each model's
    # probability should cover the truth ≈ 95 % of the time (binomial sd over 360 intervals 1.1 %).
    pi = _scipy_stationary(P3)
    z = markov(P3, pi, (120, 2), 500, np.random.default_rng(4))
    rng = np.random.default_rng(0)
    covered = []
    for rep in z:
        draws = heck_posterior(transition_counts(rep, 3), 1000, rng)
        lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
        covered += list((lo <= pi) & (pi <= hi))
    assert 0.90 <= np.mean(covered) <= 0.99


def test_model_table_lumps_rare_models_into_other():
    rng = np.random.default_rng(1)
    active = rng.random((2, 400, 4)) < 0.5  # 16 models, roughly equally likely
    table = model_table(index_models(active), ("a", "b", "c", "d"), max_models=5)
    assert table.n_models == 16 and len(table.rows) == 6
    assert table.rows[-1]["label"] == OTHER
    assert sum(r["p"] for r in table.rows) == pytest.approx(1.0)
    assert sum(r["heck_mean"] for r in table.rows) == pytest.approx(1.0, abs=1e-9)
    assert all(r["heck_lo"] <= r["heck_mean"] <= r["heck_hi"] for r in table.rows)
