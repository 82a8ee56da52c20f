"""BatchedModelLogp against PyMC's own per-point compile_logp / compile_dlogp."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

from tdmcmc.pymc_prior import BatchedModelLogp


@pytest.fixture(scope="module")
def model():
    with pm.Model() as m:
        pm.Normal("x", 0.0, 2.0, shape=3)
        pm.HalfNormal("s", 1.5)
        pm.Uniform("mass", 10.0, 2400.0, shape=3)
    return m


def test_batched_logp_and_grad_match_pointwise_pymc(model):
    prior = BatchedModelLogp(model, mode="FAST_COMPILE")  # python mode: no C compilation in tests
    assert prior.value_names == ["x", "s_log__", "mass_interval__"]
    rng = np.random.default_rng(0)
    batch = 5
    values = {"x": rng.normal(size=(batch, 3)), "s_log__": rng.normal(size=batch),
              "mass_interval__": rng.normal(size=(batch, 3))}
    mass_mask = rng.random((batch, 3)) < 0.5
    logp, grads = prior(values, {"mass_interval__": mass_mask})

    point_logp = model.compile_logp(mode="FAST_COMPILE")
    point_dlogp = model.compile_dlogp(mode="FAST_COMPILE")
    # Uniform(a, b) on the interval transform u: log(1/(b−a)) + log(b−a) + log σ(u) + log(1 − σ(u))
    u = values["mass_interval__"]
    mass_terms = -np.logaddexp(0.0, -u) - np.logaddexp(0.0, u)
    for b in range(batch):
        point = {k: v[b] for k, v in values.items()}
        expected = point_logp(point) - np.sum(mass_terms[b][~mass_mask[b]])
        np.testing.assert_allclose(logp[b], expected, rtol=1e-12)
        full = point_dlogp(point)  # concatenated in value-variable order
        np.testing.assert_allclose(grads["x"][b], full[:3], rtol=1e-12)
        np.testing.assert_allclose(grads["s_log__"][b], full[3], rtol=1e-12)
        g_mass = np.where(mass_mask[b], full[4:], 0.0)
        np.testing.assert_allclose(grads["mass_interval__"][b], g_mass, rtol=1e-10, atol=1e-14)
