"""linear-selection: the exact reference, the target's derivatives, and the sampler against the
exact posterior (the engine's end-to-end correctness test; the full-size 4 × 20,000 acceptance
run is tests/benchmarks/bench_linear_selection.py)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from arviz_stats import mcse
from scipy import integrate, stats

from tdmcmc.errors import UserError
from tdmcmc.models.toys.linear_selection import LinearSelection, exact_posterior, load, save, simulate
from tdmcmc.sampler import SamplerConfig, sample
from tdmcmc.target import PriorOnly


def test_exact_reference_matches_quadrature():
    """P(γ | y) for J = 2 by numerical integration over β on a fine grid (trapezoid, exact to
    ~1e-10 for this smooth, rapidly decaying integrand), independent of the Gaussian
    marginal-likelihood formula used by exact_posterior."""
    model = simulate(n=8, n_regressors=2, coefficients={0: 0.8}, seed=3)
    exact = exact_posterior(model)
    grid = np.linspace(-8, 8, 1601)
    slab = stats.norm(0, model.tau).pdf(grid)

    def lik(betas):  # betas (..., 2) -> likelihood (...)
        resid = model.y - betas @ model.X.T
        return np.exp(stats.norm.logpdf(resid, 0, model.sigma).sum(-1))

    b0, b1 = np.meshgrid(grid, grid, indexing="ij")
    zeros = np.zeros_like(grid)
    evidence = {
        (False, False): lik(np.zeros(2)),
        (True, False): integrate.trapezoid(lik(np.stack([grid, zeros], -1)) * slab, grid),
        (False, True): integrate.trapezoid(lik(np.stack([zeros, grid], -1)) * slab, grid),
        (True, True): integrate.trapezoid(
            integrate.trapezoid(lik(np.stack([b0, b1], -1)) * slab[:, None] * slab[None], grid), grid
        ),
    }
    weights = np.array([evidence[tuple(g)] * np.exp(-model.lam * g.sum()) for g in exact.models])
    np.testing.assert_allclose(exact.prob, weights / weights.sum(), rtol=1e-6)


def test_gradient_matches_finite_differences():
    model = simulate(n=20, n_regressors=4, seed=5)
    rng = np.random.default_rng(0)
    active = rng.random((3, 4)) < 0.6
    params = rng.normal(size=(3, 4, 1))
    g_lik, _, g_prior, _ = model.grad(active, params, np.zeros((3, 0)))
    h = 1e-6
    for j in range(4):
        up, down = params.copy(), params.copy()
        up[:, j, 0] += h
        down[:, j, 0] -= h
        (lu, pu), (ld, pd) = model.log_density(active, up, None), model.log_density(active, down, None)
        np.testing.assert_allclose(g_lik[:, j, 0], (lu - ld) / (2 * h), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g_prior[:, j, 0], (pu - pd) / (2 * h), rtol=1e-6, atol=1e-6)


def test_pymc_prior_route_matches_numpy():
    """The pm.Model slab prior (BatchedModelLogp, inactive slots masked) equals the closed form."""
    model = simulate(n=20, n_regressors=6, seed=2)
    pymc_model = LinearSelection(model.X, model.y, model.sigma, model.tau, model.lam, prior_backend="pymc")
    rng = np.random.default_rng(1)
    active, params = rng.random((7, 6)) < 0.5, rng.normal(size=(7, 6, 1))
    np.testing.assert_allclose(pymc_model.log_density(active, params, None), model.log_density(active, params, None), rtol=1e-12)
    for mine, ref in zip(pymc_model.grad(active, params, None), model.grad(active, params, None)):
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-14)


def _mcse(values: np.ndarray) -> float:
    return float(mcse(xr.DataArray(values, dims=("chain", "draw"))))


@pytest.fixture(scope="module")
def posterior_run():
    model = simulate()
    config = SamplerConfig(chains=4, draws=3000, tune=1000, seed=11, birth_death_per_sweep=5)
    return model, exact_posterior(model), sample(model, config)


def test_sampler_reproduces_exact_posterior(posterior_run):
    """Every inclusion probability, P(k) and E[β_j γ_j] within 4 Monte-Carlo standard errors
    (ArviZ mcse, autocorrelation included) of exact enumeration, plus 0.003 for the bias of the
    short warm-up. Power: the MCSEs are below 0.02 (asserted), so any error above ~0.08 fails."""
    model, exact, run = posterior_run
    active = run.trace.active.astype(float)
    k = active.sum(axis=2)
    beta = np.where(active > 0, run.trace.params[..., 0], 0.0)
    checks = []
    for j in range(active.shape[2]):
        checks.append((f"P(x{j})", active[..., j], exact.inclusion[j]))
        checks.append((f"E[beta{j}]", beta[..., j], exact.coefficient_mean[j]))
    for size, p in enumerate(exact.size_distribution):
        checks.append((f"P(k={size})", (k == size).astype(float), p))
    for name, series, truth in checks:
        err, se = abs(series.mean() - truth), _mcse(series)
        assert se < 0.02, f"{name}: Monte-Carlo error {se:.3f} too large for the test to have power"
        assert err < 4 * se + 0.003, f"{name}: {series.mean():.4f} vs exact {truth:.4f} (mcse {se:.4f})"


def test_sampler_moves_are_used(posterior_run):
    _, _, run = posterior_run
    rates = {name: np.nanmean(a) for name, a in run.trace.accept.items()}
    assert set(rates) == {"refresh", "birth_death", "random_walk", "mala"}
    assert 0.15 < rates["random_walk"] < 0.35  # adapted towards 0.234
    assert 0.45 < rates["mala"] < 0.7  # adapted towards 0.574
    assert rates["birth_death"] > 0.1


def test_prior_only_run_reproduces_prior():
    """Likelihood off: γ_j ~ Bernoulli(1/(1+e^λ)) independently, β_j ~ N(0, τ²) when active."""
    model = simulate(n=30, n_regressors=6, lam=0.5, tau=2.0, seed=1)
    config = SamplerConfig(chains=2, draws=2000, tune=300, seed=4, birth_death_per_sweep=3)
    run = sample(PriorOnly(model), config)
    active = run.trace.active.astype(float)
    p_incl = 1.0 / (1.0 + np.exp(0.5))
    k = active.sum(axis=2)
    for size in range(7):
        series = (k == size).astype(float)
        truth = stats.binom(6, p_incl).pmf(size)
        assert abs(series.mean() - truth) < 4 * _mcse(series) + 0.003
    beta = run.trace.params[..., 0][active > 0]
    assert abs(beta.std() - 2.0) < 0.1
    assert abs(beta.mean()) < 0.1


def test_data_file_round_trip_and_errors(tmp_path):
    model = simulate(n=12, n_regressors=3)
    save(model, tmp_path / "d.npz")
    back = load(tmp_path / "d.npz")
    np.testing.assert_array_equal(back.X, model.X)
    assert (back.sigma, back.tau, back.lam) == (model.sigma, model.tau, model.lam)
    np.savez(tmp_path / "bad.npz", X=model.X, y=model.y, sigma=1.0)
    with pytest.raises(UserError, match=r"bad\.npz: missing key\(s\) tau, lam"):
        load(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", X=model.X, y=model.y[:-1], sigma=1.0, tau=1.0, lam=1.0)
    with pytest.raises(UserError, match="X must be n×J"):
        load(tmp_path / "shape.npz")
