"""Truncated-Gaussian UL likelihoods against SModelS 3.2.1 (oracle) and an independent scipy build."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import optimize, special, stats

from tdmcmc.models.likelihood.backend import NUMPY, PYTENSOR, log_ndtr
from tdmcmc.models.likelihood.limits import mode_in_sigmas, r_value, ul_nll


@pytest.mark.realdata
@pytest.mark.parametrize("negative", [False, True])
def test_smodels3_matches_smodels_321_on_every_oracle_ul_prediction(oracle_ul, negative):
    suffix = "_negok" if negative else ""
    total = 0
    for model, p in oracle_ul.items():
        for mu, key in ((0.0, "nll_mu0"), (1.0, "nll_mu1")):
            ours = ul_nll(mu, p["xsec_fb"], p["ul_obs_fb"], p["ul_exp_fb"], p["lumi_ifb"],
                          "smodels3", allow_negative=negative)
            worst = np.max(np.abs(ours - p[key + suffix]), initial=0.0)
            print(f"{model}: {len(ours)} UL predictions, max |Δ {key + suffix}| = {worst:.1e}")
            assert worst < 1e-6, model
        total += len(p["xsec_fb"])
    assert total >= 30


def _paper_reference(mu, xsec, obs, exp, lumi, drmax=0.676):
    """2020 likelihoodFromLimits rebuilt with scipy: yields, SModelS' dr₂ = 2 dr > _drmax = 0.676
    (the production runs' setting), brentq on the erf form, truncnorm."""
    obs_n, exp_n, s = obs * lumi, exp * lumi, mu * xsec * lumi
    if 2 * (obs_n - exp_n) / (obs_n + exp_n) > drmax:
        obs_n = exp_n * (2 + drmax) / (2 - drmax)
    sigma = exp_n / 1.96
    mode = 0.0
    if obs_n >= exp_n:
        a = np.sqrt(2) * sigma
        mode = optimize.brentq(lambda m: (special.erf((obs_n - m) / a) + special.erf(m / a))
                               / (1 + special.erf(m / a)) - 0.95, 0.0, max(obs_n, exp_n), xtol=1e-14)
    return -stats.truncnorm.logpdf(s, -mode / sigma, np.inf, loc=mode, scale=sigma)


@pytest.mark.parametrize(("obs", "exp"), [(18.45, 21.57), (2.043, 2.077), (30.85, 19.58),
                                          (4.50, 2.50), (5.5, 2.5), (2.2, 2.0), (1.0, 1.0)])
@pytest.mark.parametrize("mu", [0.0, 0.5, 1.0, 3.0])
def test_2020_matches_an_independent_scipy_build(obs, exp, mu):
    xsec, lumi = 2.62, 35.9
    ours = ul_nll(mu, xsec, obs, exp, lumi, "2020")
    assert ours == pytest.approx(_paper_reference(mu, xsec, obs, exp, lumi), abs=1e-9)


def test_2020_caps_large_excesses_and_smodels3_corrects_them():
    xsec, lumi, exp = 2.62, 35.9, 2.5
    capped = exp * 1.338 / 0.662
    for obs in (5.5, 10.0):
        assert ul_nll(1.0, xsec, obs, exp, lumi, "2020") == pytest.approx(
            ul_nll(1.0, xsec, capped, exp, lumi, "2020"), abs=1e-12)
    assert ul_nll(1.0, xsec, 4.5, exp, lumi, "2020") != ul_nll(1.0, xsec, capped, exp, lumi, "2020")
    # corr = 0 reproduces the uncorrected, uncapped truncated Gaussian (up to the unit)
    plain = ul_nll(1.0, xsec, 4.5, exp, lumi, "smodels3", corr=0.0)
    uncapped = ul_nll(1.0, xsec, 4.5, exp, lumi, "2020", drmax=0.99)
    assert plain - np.log(1 / xsec) == pytest.approx(uncapped - np.log(lumi), abs=1e-10)


def test_mode_and_log_ndtr_against_scipy():
    x = np.linspace(-300.0, 40.0, 20001)
    assert np.allclose(log_ndtr(x, NUMPY), special.log_ndtr(x), rtol=1e-14, atol=1e-15)
    u = np.geomspace(1e-3, 1e3, 301)
    reference = [optimize.brentq(lambda z: np.log(0.05) + special.log_ndtr(z) - special.log_ndtr(z - v),
                                 -1e5, v + 10, xtol=1e-13, rtol=1e-15) for v in u]
    assert np.allclose(mode_in_sigmas(u), reference, rtol=1e-9, atol=1e-9)


def test_mode_of_a_batch_with_repeats_is_the_mode_of_each_value():
    """The solver stops per value and solves runs of equal values once: a (3, 4) batch full of
    the padding value 1.96 gives each element the mode it has alone."""
    u = np.full((3, 4), 1.96)
    u[0, 1], u[2, 3], u[1, 0] = 0.01, 250.0, 0.01
    alone = np.array([[mode_in_sigmas(np.array([v]))[0] for v in row] for row in u])
    assert mode_in_sigmas(u).shape == (3, 4)
    assert np.array_equal(mode_in_sigmas(u), alone)


def test_zero_signal_stays_finite_and_differences_are_exact():
    nll = ul_nll(np.array([0.0, 1.0]), 0.0, 4.5, 2.5, 12.9, "smodels3")
    assert np.all(np.isfinite(nll)) and nll[1] == nll[0]
    small = ul_nll(np.array([0.0, 1.0]), 1e-9, 4.5, 2.5, 12.9, "smodels3")
    assert small[1] - small[0] == pytest.approx(0.0, abs=1e-8)


def test_r_value():
    assert r_value(2.62, 2.0) == pytest.approx(1.31)


@pytest.mark.parametrize(("variant", "negative"), [("2020", False), ("smodels3", False), ("smodels3", True)])
def test_graph_gradients_match_finite_differences(variant, negative, python_linker):
    obs = np.array([18.45, 2.043, 30.85, 4.5, 3.0])
    exp = np.array([21.57, 2.077, 19.58, 2.5, 2.9])
    xsec = np.array([[28.3, 2.6, 2.7, 2.6, 1.0], [10.0, 1.0, 5.0, 0.3, 2.0]])
    lumi = np.array([137.0, 137.0, 19.5, 35.9, 36.1])
    mu = np.array([0.4, 1.3])

    mu_v, x_v, o_v, e_v = pt.vector("mu"), pt.matrix("x"), pt.vector("o"), pt.vector("e")
    total = ul_nll(mu_v[:, None], x_v, o_v, e_v, lumi, variant, negative, xp=PYTENSOR)
    grads = pytensor.grad(total.sum(), [mu_v, x_v, o_v, e_v])
    value, *analytic = pytensor.function([mu_v, x_v, o_v, e_v], [total, *grads])(mu, xsec, obs, exp)

    def f(m, x, o, e):
        return ul_nll(m[:, None], x, o, e, lumi, variant, negative)

    assert np.allclose(value, f(mu, xsec, obs, exp), rtol=1e-12, atol=1e-12)
    args = [mu, xsec, obs, exp]
    for i, g in enumerate(analytic):
        numeric = np.zeros_like(args[i])
        for idx in np.ndindex(args[i].shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            h = 1e-6 * max(1.0, abs(args[i][idx]))
            plus[i][idx] += h
            minus[i][idx] -= h
            numeric[idx] = (f(*plus).sum() - f(*minus).sum()) / (2 * h)
        assert np.allclose(g, numeric, rtol=1e-5, atol=1e-6), i
