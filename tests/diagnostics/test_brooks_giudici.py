"""Brooks–Giudici components on chains with known variance decomposition."""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.diagnostics.brooks_giudici import brooks_giudici, brooks_giudici_path

MU = np.array([0.0, 2.0])  # θ | model m ~ N(MU[m], 1)


def _theta(models: np.ndarray, rng: np.random.Generator, shift: np.ndarray | float = 0.0) -> np.ndarray:
    return MU[models] + rng.standard_normal(models.shape) + shift


def test_components_of_well_mixed_chains_have_their_known_values():
    # Models i.i.d. with P(1) = 0.3: Var θ = 1 + 4·0.21 = 1.84; within a model the variance is 1.
    # With 4 × 5000 draws each component is within ≈ 2 % (sd of a variance estimate ≈ sqrt(2/N)).
    rng = np.random.default_rng(0)
    models = (rng.random((4, 5000)) < 0.3).astype(int)
    bg = brooks_giudici(_theta(models, rng), models)
    assert bg["V"] == pytest.approx(1.84, rel=0.04)
    assert bg["W_c"] == pytest.approx(1.84, rel=0.04)
    assert bg["W_m"] == pytest.approx(1.0, rel=0.04)
    assert bg["W_mW_c"] == pytest.approx(1.0, rel=0.04)
    assert bg["chain_ratio"] == pytest.approx(1.0, abs=0.01)
    assert bg["model_ratio"] == pytest.approx(1.0, abs=0.01)


def test_chain_stuck_in_one_model_raises_the_chain_ratio_only():
    # Chain 0 never leaves model 0, the others visit model 1 half the time: V̂/W_c ≈ 1.107
    # (exact value in the next test); within models nothing differs.
    rng = np.random.default_rng(1)
    models = (rng.random((4, 3000)) < 0.5).astype(int)
    models[0] = 0
    bg = brooks_giudici(_theta(models, rng), models)
    assert bg["chain_ratio"] > 1.08
    assert bg["model_ratio"] == pytest.approx(1.0, abs=0.01)


def test_within_model_disagreement_raises_the_model_ratio():
    rng = np.random.default_rng(2)
    models = (rng.random((4, 3000)) < 0.5).astype(int)
    shift = np.array([[0.6], [0.0], [0.0], [0.0]])
    bg = brooks_giudici(_theta(models, rng, shift), models)
    # chain means within a model differ by 0.6 for one chain in four: W_m/W_mW_c ≈ 1 + 0.6²·3/16 ≈ 1.07
    assert bg["model_ratio"] == pytest.approx(1.0675, abs=0.02)


def test_known_ratio_for_stuck_chain():
    # Expected values: chain means 0, 1, 1, 1 (θ̄ = 0.75) add mean_c (θ̄_c − θ̄)² = 0.1875 to the total
    # variance; W_c = (1 + 3·2)/4 = 1.75 (chain 0 has variance 1, the others 1 + 1 from the mixture).
    rng = np.random.default_rng(3)
    models = (rng.random((4, 20000)) < 0.5).astype(int)
    models[0] = 0
    bg = brooks_giudici(_theta(models, rng), models)
    w_c = (1.0 + 3 * 2.0) / 4
    assert bg["W_c"] == pytest.approx(w_c, rel=0.02)
    assert bg["chain_ratio"] == pytest.approx((w_c + 0.1875) / w_c, abs=0.01)


def test_quantity_that_is_a_function_of_the_model_has_no_ratio():
    models = np.array([[0, 1, 1, 0], [1, 1, 0, 0]])
    bg = brooks_giudici(models.astype(float), models)
    assert bg["W_m"] == 0.0 and np.isnan(bg["model_ratio"])


def test_path_ends_with_the_full_run():
    rng = np.random.default_rng(4)
    models = (rng.random((3, 400)) < 0.5).astype(int)
    theta = _theta(models, rng)
    path = brooks_giudici_path(theta, models, n_points=10)
    assert path["draw"][-1] == 400 and len(path["draw"]) == 10
    assert path["V"][-1] == brooks_giudici(theta, models)["V"]
