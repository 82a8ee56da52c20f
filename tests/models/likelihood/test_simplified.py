"""Simplified likelihoods (SLv1, SLv2) against SModelS 3.2.1's SLLikelihoodComputer and scipy."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import optimize

from tdmcmc.models.likelihood.backend import PYTENSOR
from tdmcmc.models.likelihood.simplified import SimplifiedLikelihood, sl_nll

# SModelS 3.2.1 SLLikelihoodComputer(SLData(n, b, cov, third_moment, nsignal=s)).nll(μ) at
# μ = 0, 1, 2.5 with sᵢ = round(0.3 √bᵢ + 0.05 i, 4), run in /tmp/smodels-venv on the data below.
SMODELS_321 = {
    ("CMS-PAS-SUS-16-052-agg", False): [96.96747389070391, 97.09323132496269, 99.08404927771826],
    ("CMS-SUS-20-004-eff", False): [79.69558218190537, 79.68243722021583, 89.17307987714437],
    ("CMS-SUS-20-004-eff", True): [77.80888820981181, 78.26993054746268, 87.45770682412953],
}


def _model(arrays, folder, skewed):
    index = int(np.flatnonzero(arrays.result_folder == folder)[0])
    model = SimplifiedLikelihood.from_compiled(arrays, index)
    if not skewed and model.is_skewed:
        datasets, covariance = arrays.covariances[index]
        model = SimplifiedLikelihood.from_arrays(arrays.observed_n[datasets], arrays.expected_bg[datasets],
                                                 covariance)
    b = arrays.expected_bg[arrays.covariances[index][0]]
    return model, np.round(0.3 * np.sqrt(b) + 0.05 * np.arange(len(b)), 4)


@pytest.mark.realdata
@pytest.mark.parametrize(("folder", "skewed"), [("CMS-SUS-20-004-eff", False), ("CMS-SUS-20-004-eff", True)])
def test_matches_smodels_321_on_a_300_covariance_result(db300_compiled, folder, skewed):
    model, signal = _model(db300_compiled.arrays, folder, skewed)
    assert model.is_skewed == skewed and (~model.free).sum() == 4  # four SRs with n = 0
    ours = sl_nll(np.array([0.0, 1.0, 2.5]), signal, model)
    assert np.max(np.abs(ours - SMODELS_321[folder, skewed])) < 1e-6


@pytest.mark.realdata
def test_matches_smodels_321_on_cms_pas_sus_16_052_agg(db124_compiled):
    model, signal = _model(db124_compiled.arrays, "CMS-PAS-SUS-16-052-agg", False)
    ours = sl_nll(np.array([0.0, 1.0, 2.5]), signal, model)
    assert np.max(np.abs(ours - SMODELS_321["CMS-PAS-SUS-16-052-agg", False])) < 1e-6


def _toy(skewed: bool) -> tuple[SimplifiedLikelihood, np.ndarray]:
    rng = np.random.default_rng(5)
    k = 6
    b = rng.uniform(2.0, 60.0, k)
    sd = 0.3 * b
    corr = 0.5 * np.ones((k, k)) + 0.5 * np.eye(k)
    cov = corr * np.outer(sd, sd)
    n = np.array([0.0, 3.0, 40.0, 12.0, 0.0, 70.0])
    m3 = 0.4 * sd**3 if skewed else None
    return SimplifiedLikelihood.from_arrays(n, b, cov, m3), rng.uniform(0.5, 8.0, (3, k))


@pytest.mark.parametrize("skewed", [False, True])
def test_profile_matches_scipy_bounded_minimisation(skewed):
    """Independent profile: L-BFGS-B on the same objective with SModelS' bounds |θᵢ| ≤ 10 nᵢ."""
    model, signals = _toy(skewed)
    for mu, s in zip([0.0, 1.0, 2.0], signals):
        lam0 = mu * s + model.a

        def f(t):
            lam = np.maximum(lam0 + t + model.c_over_b2 * t * t, 1e-30)
            return (lam - model.n * np.log(lam)).sum() + 0.5 * t @ model.weight @ t + model.constant

        bounds = list(zip(-10 * model.n, 10 * model.n))
        ref = optimize.minimize(f, np.zeros(len(s)), bounds=bounds, method="L-BFGS-B",
                                options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})
        assert sl_nll(mu, s, model) == pytest.approx(ref.fun, abs=1e-7)


@pytest.mark.parametrize("skewed", [False, True])
def test_graph_matches_numpy_and_gradients_match_finite_differences(skewed, python_linker):
    model, signals = _toy(skewed)
    mu = np.array([0.5, 1.0, 2.0])
    mu_v, s_v = pt.vector("mu"), pt.matrix("s")
    total = sl_nll(mu_v, s_v, model, xp=PYTENSOR)
    f = pytensor.function([mu_v, s_v], [total, *pytensor.grad(total.sum(), [s_v, mu_v])])
    value, g_s, g_mu = f(mu, signals)
    assert np.allclose(value, sl_nll(mu, signals, model), rtol=1e-12)
    h = 1e-5
    fd_s = np.zeros_like(signals)
    for idx in np.ndindex(signals.shape):
        plus, minus = signals.copy(), signals.copy()
        plus[idx] += h
        minus[idx] -= h
        fd_s[idx] = (sl_nll(mu, plus, model).sum() - sl_nll(mu, minus, model).sum()) / (2 * h)
    fd_mu = (sl_nll(mu + h, signals, model) - sl_nll(mu - h, signals, model)) / (2 * h)
    assert np.allclose(g_s, fd_s, rtol=1e-5, atol=1e-7)
    assert np.allclose(g_mu, fd_mu, rtol=1e-5, atol=1e-7)
