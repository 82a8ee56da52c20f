"""EM signal-region likelihoods against SModelS 3.2.1 (oracle outputs and direct runs) and scipy."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate, special, stats

from tdmcmc.models.likelihood.backend import PYTENSOR
from tdmcmc.models.likelihood.counting import EM_VARIANTS, em_nll, observed_counts, profiled_theta


@pytest.mark.realdata
def test_profiled_matches_smodels_321_on_every_oracle_signal_region(oracle_em):
    """Same injected signals (σ×ε×L from the oracle) → SModelS' nll at μ = 0 and 1 within 1e-6."""
    total = 0
    for model, p in oracle_em.items():
        assert np.allclose(p["signal_yield"], p["xsec_fb"] * p["lumi_ifb"], rtol=1e-12)
        for mu, key in ((0.0, "nll_mu0"), (1.0, "nll_mu1")):
            ours = em_nll(mu, p["signal_yield"], p["obs_n"], p["exp_bg"], p["bg_err"], "smodels3")
            worst = np.max(np.abs(ours - p[key]))
            print(f"{model}: {len(ours)} SRs, max |Δ {key}| = {worst:.1e}")
            assert worst < 1e-6, model
        total += len(p["obs_n"])
    assert total >= 200


@pytest.mark.realdata
def test_oracle_signal_regions_are_database_signal_regions(oracle_em, db124_compiled):
    arrays = db124_compiled.arrays
    known = set(zip(arrays.observed_n.tolist(), arrays.expected_bg.tolist(), arrays.bg_error.tolist()))
    for p in oracle_em.values():
        assert set(zip(p["obs_n"].tolist(), p["exp_bg"].tolist(), p["bg_err"].tolist())) <= known


# (n, b, δb, s) → SModelS 3.2.1 SLLikelihoodComputer(SLData(n, b, δb², nsignal=[s])).nll(0), nll(1),
# run in /tmp/smodels-venv: the n = 0 bound forces θ̂ = 0, b ≫ n stops θ̂ at −10 n, and a
# non-integer n uses the continuous Poisson.
SMODELS_321_RUNS = [
    ((0.0, 3.0, 1.0, 2.0), 3.9189385332046727, 5.918938533204672),
    ((1.0, 20.0, 10.0, 0.0), 11.418938533204672, 11.418938533204672),
    ((2.5, 3.0, 1.0, 1.0), 2.362581613580771, 2.5938300755781776),
    ((0.0, 0.5, 2.0, 1.0), 2.112085713764618, 3.112085713764618),
]


@pytest.mark.parametrize(("args", "nll0", "nll1"), SMODELS_321_RUNS)
def test_smodels_321_edge_cases(args, nll0, nll1):
    n, b, db, s = args
    assert em_nll(0.0, s, n, b, db, "smodels3") == pytest.approx(nll0, abs=1e-9)
    assert em_nll(1.0, s, n, b, db, "smodels3") == pytest.approx(nll1, abs=1e-9)


def test_2020_rounds_counts_and_otherwise_equals_smodels3():
    n = np.array([0.0, 3.0, 2.5, 7.4])
    b, db, s = np.array([1.0, 2.0, 3.0, 5.0]), np.array([0.5, 1.0, 1.0, 2.0]), np.array([1.0, 2.0, 1.0, 0.5])
    assert np.array_equal(observed_counts(n, "2020"), [0.0, 3.0, 2.0, 7.0])
    assert np.allclose(em_nll(1.0, s, n, b, db, "2020"),
                       em_nll(1.0, s, observed_counts(n, "2020"), b, db, "smodels3"), atol=0, rtol=0)
    assert em_nll(1.0, s, n, b, db, "2020")[2] != em_nll(1.0, s, n, b, db, "smodels3")[2]


def test_profiled_theta_solves_the_stationarity_condition():
    rng = np.random.default_rng(7)
    lam0 = rng.uniform(0.0, 500.0, 2000)
    n = np.floor(rng.uniform(1.0, 600.0, 2000))
    var = rng.uniform(0.01, 200.0, 2000) ** 2
    theta = profiled_theta(lam0, n, var)
    lam = lam0 + theta
    assert (lam > 0).all()
    assert np.max(np.abs(1 - n / lam + theta / var) * np.sqrt(var)) < 1e-9
    # n = 0: the minimum over λ ≥ 0 is λ = 0 when b + μs < δb², else θ = −δb²
    assert np.allclose(profiled_theta(lam0, 0.0, var), np.maximum(-var, -lam0), rtol=1e-12, atol=1e-9)


def _marginal_reference(s: float, n: float, b: float, db: float) -> float:
    """−ln of ∫_{−b}^{∞} Pois(n|b+s+θ) N(θ;0,δb) dθ / Φ(b/δb) by scipy.integrate.quad on panels."""
    lam0 = b + s

    def log_f(t):
        return -(lam0 + t) + n * np.log(lam0 + t) - special.gammaln(n + 1) + stats.norm.logpdf(t, 0, db)

    mode = max(float(profiled_theta(lam0, n, db * db)), -b + 1e-12)
    scale = log_f(mode)
    width = 1 / np.sqrt(n / (lam0 + mode) ** 2 + 1 / db**2)
    edges = [-b] + [mode + k * width for k in (-40, -8, 0, 8, 40, 300) if mode + k * width > -b]
    value = sum(integrate.quad(lambda t: np.exp(log_f(t) - scale), lo, hi, epsabs=0, epsrel=1e-11, limit=200)[0]
                for lo, hi in zip(edges, edges[1:] + [np.inf]))
    return -np.log(value) - scale + stats.norm.logcdf(b / db)


def _marginal_cases() -> list[tuple[float, float, float, float]]:
    cases = [(s, n, max(n * f, 0.2), rel * max(n * f, 0.2))
             for n in (0, 1, 3, 20, 611, 1e5) for rel in (0.01, 0.3, 3.0)
             for f in (0.3, 1.5) for s in (0.0, 50.0)]
    return cases + [(0.0, 1, 20.0, 10.0), (0.0, 0, 0.1, 5.0), (2.0, 3, 0.5, 0.5)]


def test_marginal_matches_scipy_quad_on_a_grid():
    """Stated accuracy of the quadrature: |Δ(−ln L)| < 1e-8 from n = 0 to 1e5, δb/b from 0.01 to 3."""
    cases = np.array(_marginal_cases())
    ours = em_nll(1.0, cases[:, 0], cases[:, 1], cases[:, 2], cases[:, 3], "marginal")
    reference = np.array([_marginal_reference(*c) for c in cases])
    assert np.max(np.abs(ours - reference)) < 1e-8


@pytest.mark.realdata
def test_marginal_matches_scipy_quad_on_database_signal_regions(db124_compiled):
    arrays = db124_compiled.arrays
    em = np.isfinite(arrays.observed_n) & (arrays.bg_error > 0)
    n, b, db = arrays.observed_n[em], arrays.expected_bg[em], arrays.bg_error[em]
    s = np.sqrt(b + db**2 + 1.0)  # a signal of about one standard deviation
    pick = np.random.default_rng(3).choice(len(n), size=min(60, len(n)), replace=False)
    ours = em_nll(1.0, s[pick], n[pick], b[pick], db[pick], "marginal")
    reference = np.array([_marginal_reference(s[i], n[i], b[i], db[i]) for i in pick])
    assert np.max(np.abs(ours - reference)) < 1e-8


def test_marginal_is_close_to_profiled_for_small_background_error():
    # δb → 0: both tend to the plain Poisson; the profile keeps −½ ln(2π δb²) extra
    n, b, db, s = 12.0, 10.0, 1e-3, 3.0
    poisson = -stats.poisson.logpmf(12, 13.0)
    assert em_nll(1.0, s, n, b, db, "marginal") == pytest.approx(poisson, abs=1e-6)
    profiled = em_nll(1.0, s, n, b, db, "smodels3") - 0.5 * np.log(2 * np.pi * db**2)
    assert profiled == pytest.approx(poisson, abs=1e-6)


@pytest.mark.parametrize("variant", EM_VARIANTS)
def test_graph_matches_numpy_and_gradients_match_finite_differences(variant, request):
    rng = np.random.default_rng(11)
    n = np.array([0.0, 3.0, 8.0, 611.0, 2.0])
    b = np.array([0.4, 4.9, 3.8, 526.0, 6.0])
    db = np.array([0.3, 1.6, 1.0, 31.0, 1.0])
    signal = rng.uniform(0.1, 20.0, (3, 5))
    mu = np.array([0.3, 1.0, 2.0])

    if variant != "smodels3":  # the closed form is compiled with the C backend, the rest in Python
        request.getfixturevalue("python_linker")
    s_var, mu_var = pt.matrix("s"), pt.vector("mu")
    total = em_nll(mu_var[:, None], s_var, n, b, db, variant, xp=PYTENSOR)
    f = pytensor.function([mu_var, s_var], [total, *pytensor.grad(total.sum(), [s_var, mu_var])])
    value, g_s, g_mu = f(mu, signal)
    assert np.allclose(value, em_nll(mu[:, None], signal, n, b, db, variant), rtol=1e-12, atol=1e-12)

    h = 1e-6
    fd_s = (em_nll(mu[:, None], signal + h, n, b, db, variant)
            - em_nll(mu[:, None], signal - h, n, b, db, variant)) / (2 * h)
    fd_mu = ((em_nll(mu[:, None] + h, signal, n, b, db, variant)
              - em_nll(mu[:, None] - h, signal, n, b, db, variant)) / (2 * h)).sum(axis=1)
    assert np.allclose(g_s, fd_s, rtol=1e-5, atol=1e-7)
    assert np.allclose(g_mu, fd_mu, rtol=1e-5, atol=1e-7)
