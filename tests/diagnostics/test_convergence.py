"""R-hat/ESS wrappers and the conditional-on-active diagnostics (induced chains of unequal length)."""

from __future__ import annotations

import arviz_stats
import numpy as np
import pytest

from tdmcmc.diagnostics.convergence import _rhat_unequal, conditional_diagnostics, rank_rhat_unequal, scalar_diagnostics

from .synthetic import ar1, two_state


@pytest.mark.parametrize("draws", [101, 400])
def test_unequal_rhat_reduces_to_arviz_for_equal_lengths(draws):
    rng = np.random.default_rng(draws)
    x = rng.standard_normal((4, draws)) * np.array([[1.0], [1.3], [1.0], [0.8]]) + np.array(
        [[0.0], [0.2], [0.0], [0.0]]
    )
    assert rank_rhat_unequal(list(x)) == pytest.approx(float(arviz_stats.rhat(x)), rel=1e-12)


def test_unequal_length_variance_estimate_is_unbiased_for_iid_chains():
    # i.i.d. N(0,1) chains of lengths 30…1500: var⁺ = (1 − mean 1/n) W + Var(means) has E = σ², so the
    # mean R-hat² over 1000 replicates is 1 within its Monte Carlo error (≈ 2e-4). The naive weight
    # (1 − 1/n̄) would give 1 + mean(1/n) − 1/n̄ ≈ 1.0088 for these lengths.
    # (The reported R-hat is the max of bulk and folded, hence biased up on purpose; tested here is
    # the variance formula itself.)
    rng = np.random.default_rng(0)
    lengths = [30, 30, 150, 150, 600, 600, 1500, 1500]
    r2 = [_rhat_unequal([rng.standard_normal(n) for n in lengths]) ** 2 for _ in range(1000)]
    assert np.mean(r2) == pytest.approx(1.0, abs=0.0015)


def test_unequal_rhat_flags_a_shifted_chain():
    rng = np.random.default_rng(1)
    chains = [rng.standard_normal(n) for n in (200, 900, 1500)]
    chains[0] = chains[0] + 0.8
    assert rank_rhat_unequal(chains) > 1.05


def test_scalar_diagnostics_are_arviz_values():
    rng = np.random.default_rng(2)
    x = np.stack([ar1(0.5, 1000, rng) for _ in range(4)])
    d = scalar_diagnostics(x)
    assert d["rhat"] == float(arviz_stats.rhat(x))
    assert d["ess_bulk"] == float(arviz_stats.ess(x, method="bulk"))
    # AR(1), φ = 0.5: τ = 3, ESS ≈ 4000/3; the estimator's relative sd is ≈ 5 % here.
    assert d["ess_bulk"] == pytest.approx(4000 / 3, rel=0.15)


def _induced(phi: float, active: np.ndarray, rng: np.random.Generator, shift=None) -> np.ndarray:
    """Values whose induced chain on ``active`` is an AR(1) (so its ESS is known); NaN elsewhere."""
    values = np.full(active.shape, np.nan)
    for c in range(active.shape[0]):
        values[c, active[c]] = ar1(phi, int(active[c].sum()), rng) + (0.0 if shift is None else shift[c])
    return values


def test_conditional_ess_and_rhat_are_those_of_the_induced_chain():
    # Slot present 40 % of the time (two-state chain); the parameter's induced chain is AR(1) with
    # φ = 0.6 (τ = 4), so ESS ≈ (number of active draws)/4 whatever the gaps between active stretches.
    rng = np.random.default_rng(3)
    active = two_state(0.04, 0.06, (4,), 5000, rng)
    values = _induced(0.6, active, rng)
    d = conditional_diagnostics(values, active, min_draws=40)
    assert d["n_active"] == active.sum(axis=1).tolist()
    assert d["chains_used"] == [0, 1, 2, 3]
    assert d["ess_bulk"] == pytest.approx(active.sum() / 4.0, rel=0.15)
    assert d["rhat"] < 1.01


def test_conditional_rhat_flags_a_chain_with_a_different_conditional_distribution():
    rng = np.random.default_rng(4)
    active = two_state(0.04, 0.06, (4,), 3000, rng)
    values = _induced(0.6, active, rng, shift=[0.0, 0.0, 0.7, 0.0])
    assert conditional_diagnostics(values, active, min_draws=40)["rhat"] > 1.05


def test_conditional_diagnostics_leave_out_chains_with_few_active_draws():
    rng = np.random.default_rng(5)
    active = np.zeros((3, 500), bool)
    active[0, ::2] = True  # 250 active draws
    active[1, :30] = True  # 30 < min_draws: left out
    active[2, 100:400] = True  # 300
    values = np.where(active, rng.standard_normal(active.shape), np.nan)
    d = conditional_diagnostics(values, active, min_draws=40)
    assert d["chains_used"] == [0, 2] and d["n_active"] == [250, 30, 300]
    assert np.isfinite(d["rhat"])
    one = conditional_diagnostics(values, active, min_draws=260)
    assert one["chains_used"] == [2] and np.isnan(one["rhat"]) and np.isfinite(one["ess_bulk"])
    none = conditional_diagnostics(values, active, min_draws=1000)
    assert none["chains_used"] == [] and np.isnan(none["rhat"]) and np.isnan(none["ess_bulk"])
