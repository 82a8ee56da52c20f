"""The engine's protomodel target (models/protomodel/sampling.py) on the real 1.2.4 database,
over the oracle models' particles: values against LikelihoodTarget, gradients in the sampler's
unconstrained coordinates against central finite differences, and a short sampler run whose
output has the layout of the output issue (particle dim, units, database identity, best states)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tdmcmc.models.protomodel.sampling import ProtomodelTarget


@pytest.fixture(scope="module", params=["paper", "bayes"])
def target(request, oracle_space_target):
    return ProtomodelTarget(oracle_space_target, request.param)


def _best_paper_state(target, oracle_models, mu_fraction=0.3):
    from tdmcmc.models.protomodel.model import protomodel_from_dict

    data = dict(oracle_models["best_paper"][0])
    data.pop("xsecs", None)
    model = protomodel_from_dict(data, target.likelihood.space)
    active, params = target.params.from_protomodel(model)
    g = np.log(mu_fraction) - np.log1p(-mu_fraction)
    return model, active[None], params[None], np.array([[g]])


def test_log_likelihood_is_the_target_of_its_kind(target, oracle_models):
    """paper: log L = K/2 of LikelihoodTarget; bayes: ln R at μ = f · μ_max."""
    model, active, params, glob = _best_paper_state(target, oracle_models)
    log_lik, log_prior = target.log_density(active, params, glob)
    values, _, _ = target.likelihood.evaluate([model])
    assert np.isfinite(log_prior[0])
    if target.kind == "paper":
        assert log_lik[0] == pytest.approx(0.5 * values.K[0], abs=1e-9)
    else:
        mu = 0.3 * min(values.mu_max[0], 1e4)
        bayes, _, _ = target.likelihood.evaluate_bayes([model], np.array([mu]))
        assert log_lik[0] == pytest.approx(bayes.log_ratio[0], abs=1e-9)
        assert log_lik[0] > 1.0            # the paper's excesses at 30% of the critic bound


def test_gradient_against_finite_differences(target, oracle_models):
    """∂log L/∂(unconstrained entries) at the best paper model and at two perturbed states:
    central differences with h = 1e-5 (≈ 0.01 GeV in mass) agree within 1e-4 relative + 1e-5."""
    _, active, params, glob = _best_paper_state(target, oracle_models)
    rng = np.random.default_rng(2)
    states = np.concatenate([params, params + 0.05 * rng.normal(size=params.shape),
                             params + 0.05 * rng.normal(size=params.shape)])
    active = np.repeat(active, 3, axis=0)
    glob = np.repeat(glob, 3, axis=0)
    gl_p, gl_g, _, _ = target.grad(active, states, glob)
    free = active[:, :, None] & target.layout.param_mask[None]
    h, checked = 1e-5, 0
    for b, j, d in zip(*np.nonzero(free)):
        up, down = states.copy(), states.copy()
        up[b, j, d] += h
        down[b, j, d] -= h
        fd = (target.log_density(active[b:b + 1], up[b:b + 1], glob[b:b + 1])[0][0]
              - target.log_density(active[b:b + 1], down[b:b + 1], glob[b:b + 1])[0][0]) / (2 * h)
        assert gl_p[b, j, d] == pytest.approx(fd, rel=1e-4, abs=1e-5), (b, target.layout.slot_names[j], d)
        checked += 1
    for b in range(3):
        up, down = glob[b:b + 1] + h, glob[b:b + 1] - h
        fd = (target.log_density(active[b:b + 1], states[b:b + 1], up)[0][0]
              - target.log_density(active[b:b + 1], states[b:b + 1], down)[0][0]) / (2 * h)
        assert gl_g[b, 0] == pytest.approx(fd, rel=1e-4, abs=1e-5)
    assert checked >= 30


def test_gradient_after_value_reuses_the_forward_pass(target, oracle_models):
    """MALA asks for the value of a batch of proposals, then for their gradient: the second call
    runs only the backward pass, and gives exactly the uncached ``evaluate`` result."""
    _, active, params, glob = _best_paper_state(target, oracle_models)
    states = np.concatenate([params, params + 0.05 * np.random.default_rng(3).normal(size=params.shape)])
    active, glob = np.repeat(active, 2, axis=0), np.repeat(glob, 2, axis=0)
    fresh = target.evaluate(active, states, glob, gradient=True)
    sampler_view = ProtomodelTarget(target.likelihood, target.kind)
    calls = []
    forward = sampler_view._forward
    sampler_view._forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    log_lik, _ = sampler_view.log_density(active, states, glob)
    gl_p, gl_g, _, _ = sampler_view.grad(active, states, glob)
    assert len(calls) == 1
    np.testing.assert_array_equal(log_lik, fresh["log_lik"])
    np.testing.assert_array_equal(gl_p, fresh["grad_params"])
    np.testing.assert_array_equal(gl_g, fresh["grad_globals"])


def test_prior_of_the_last_batch_is_reused(target, oracle_models):
    """log_density and then grad of the same batch evaluate the prior once (MALA's proposals), with
    the values of a direct call; the arrays handed out are copies, another batch is evaluated anew."""
    _, active, params, glob = _best_paper_state(target, oracle_models)
    view = ProtomodelTarget(target.likelihood, target.kind)
    calls = []
    log_prior = view.prior.log_prior
    view.prior.log_prior = lambda *a: calls.append(1) or log_prior(*a)
    value, g_params, g_globals = log_prior(active, params, glob)
    _, lp = view.log_density(active, params, glob)
    _, _, gp_p, gp_g = view.grad(active, params, glob)
    assert len(calls) == 1
    np.testing.assert_array_equal(lp, value)
    np.testing.assert_array_equal(gp_p, g_params)
    np.testing.assert_array_equal(gp_g, g_globals)
    lp += 1.0
    gp_p += 1.0
    _, _, again, _ = view.grad(active, params, glob)
    np.testing.assert_array_equal(again, g_params)
    assert view.log_density(active, params, glob)[1] == value
    view.grad(active, params + 0.01, glob)
    assert len(calls) == 2


def test_short_run_output_layout(target, tmp_path):
    from tdmcmc.output import to_datatree, write
    from tdmcmc.sampler import SamplerConfig, sample

    run = sample(target, SamplerConfig(chains=2, draws=6, tune=4, seed=1, sharpened=1, min_temperature=0.5))
    path = tmp_path / "run.nc"
    write(to_datatree(run, target), path)
    tree = xr.open_datatree(path, engine="h5netcdf")
    post = tree["posterior"]
    assert post["mass"].dims == ("chain", "draw", "particle") and post["mass"].attrs["units"] == "GeV"
    assert set(post["particle"].values) == {"XZ1", "XZ2", "XW1", "Xg", "Xd", "Xt"}
    for name in ("active", "br", "kappa", "mu", "n_particles", "model", "K", "Z", "r_max", "mu_max"):
        assert name in post, name
    assert np.all(post["active"].sel(particle="XZ1").values == 1)
    assert np.isnan(post["mass"].values[post["active"].values == 0]).all()
    assert tree.attrs["database_content_hash"] == target.likelihood.compiled.database.content_hash
    assert tree.attrs["target"] == target.kind
    import arviz as az                     # the output issue: ArviZ reads the file as it is

    az.summary(tree, var_names=["n_particles", "K", "mu", "mass"])
    az.rhat(tree, var_names=["n_particles", "mass"])
    az.ess(tree, var_names=["n_particles", "mass"])
    best = tree["best"]
    assert np.all(best["log_likelihood"].values >= tree["sample_stats"]["log_likelihood_total"].values.max(axis=1) - 1e-12)
    if target.kind == "paper":     # log L = K/2
        np.testing.assert_allclose(best["K"].values, 2 * best["log_likelihood"].values, atol=1e-9)


def test_evaluate_cli_bayes_target(oracle_space_target, oracle):
    """``evaluate --target bayes --mu 0.8``: ln R(0.8) as LikelihoodTarget.evaluate_bayes gives it (the
    CLI builds its own target on the model's particles only), plus the paper fields."""
    from tdmcmc.models.protomodel.cli import evaluate_target
    from tdmcmc.models.protomodel.model import read_protomodel

    path = oracle / "models" / "best_paper.json"
    doc = evaluate_target(path, oracle_space_target.compiled.database.path, target="bayes", mu=0.8,
                          combination_matrix=oracle.parent / "data" / "raw" / "protomodels" / "combination-matrix")
    model = read_protomodel(path, oracle_space_target.space)
    bayes, _, _ = oracle_space_target.evaluate_bayes([model], np.array([0.8]))
    assert doc["log_ratio"] == pytest.approx(bayes.log_ratio[0], abs=1e-9)
    assert doc["mu_in_support"] and doc["K"] == pytest.approx(6.9, abs=0.5)
    assert {"nll_mu0", "nll_mu1"} <= doc["predictions"][0].keys()
