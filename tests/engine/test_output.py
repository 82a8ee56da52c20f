"""DataTree output: groups, dims, NaN on inactive slots, netCDF round trip, ArviZ can read it."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import xarray as xr

from tdmcmc.output import to_datatree, write
from tdmcmc.sampler import SamplerConfig, sample

from tests.engine.independent_toy import IndependentSlots


def test_written_run_reads_back_and_arviz_summarises_it(tmp_path):
    target = IndependentSlots()
    run = sample(target, SamplerConfig(chains=2, draws=120, tune=60, temperatures=2, max_temperature=4.0, seed=1))
    path = tmp_path / "run.nc"
    write(to_datatree(run, target), path)
    tree = xr.open_datatree(path, engine="h5netcdf")

    post, stats = tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset()
    assert post["active"].dims == ("chain", "draw", "slot") and post["active"].dtype == np.int8
    assert post["theta"].dims == ("chain", "draw", "slot", "component")
    assert post["g"].dims == ("chain", "draw")
    assert list(post["slot"].values) == ["solo", "g1", "g2", "g3"]
    off = post["active"].values == 0
    assert off.any() and (~off).any()
    assert np.isnan(post["theta"].values[off]).all()
    assert not np.isnan(post["theta"].values[~off][:, 0]).any()
    np.testing.assert_array_equal(post["n_active"].values, post["active"].values.sum(-1))
    np.testing.assert_array_equal(post["active"].values, run.trace.active)

    for name in ("lp", "log_prior", "accept_birth_death", "accept_mala", "accept_split_merge", "swap_accept", "temperature"):
        assert name in stats, name
    assert stats["swap_accept"].dims == ("chain", "draw", "pair")
    assert json.loads(tree.attrs["config"])["seed"] == 1
    assert tree.attrs["sampling_seconds"] > 0

    summary = az.summary(tree)
    assert np.isfinite(summary.loc["g", "mean"])
    assert np.isfinite(az.ess(tree)["n_active"].values)
    assert np.isfinite(az.rhat(tree)["active"].values).all()


def test_file_written_at_a_checkpoint_holds_the_draws_so_far(tmp_path):
    """sample --checkpoint-every rewrites RUN.nc with the recorded draws; an interrupted run keeps them."""
    from tdmcmc.sampler import advance, start

    target = IndependentSlots()
    cfg = SamplerConfig(chains=2, draws=50, tune=20, seed=4, checkpoint_every=10)
    path = tmp_path / "run.nc"
    run = advance(start(target, cfg), target, stop_at=50, checkpoint=tmp_path / "run.nc.ckpt",
                  on_checkpoint=lambda r: write(to_datatree(r, target), path))
    tree = xr.open_datatree(path, engine="h5netcdf")
    assert tree.attrs["draws_recorded"] == 30 and tree.attrs["complete"] == 0
    assert tree["posterior"].sizes["draw"] == 30
    np.testing.assert_array_equal(tree["posterior"]["active"].values, run.trace.active[:, :30])
    whole = to_datatree(advance(run, target), target)
    assert whole.attrs["complete"] == 1 and whole["posterior"].sizes["draw"] == 50


def test_best_states_record_the_largest_likelihood_of_any_level(tmp_path):
    """The ``best`` group: per chain the largest log L over every level and iteration (so at least
    the recorded T = 1 maximum), its state re-evaluates to that value, and the running maximum
    never decreases; CPU seconds accumulate."""
    target = IndependentSlots()
    run = sample(target, SamplerConfig(chains=2, draws=80, tune=40, temperatures=2, max_temperature=4.0,
                                       sharpened=1, min_temperature=0.5, seed=3))
    best = run.best
    assert np.all(best.log_lik >= run.trace.log_lik.max(axis=1))
    again, _ = target.log_density(best.active, best.params, best.globals)
    np.testing.assert_allclose(again, best.log_lik)
    assert np.all(np.diff(best.history, axis=1) >= 0) and np.all(np.diff(best.cpu_seconds) >= 0)
    path = tmp_path / "run.nc"
    write(to_datatree(run, target), path)
    group = xr.open_datatree(path, engine="h5netcdf")["best"]
    np.testing.assert_allclose(group["log_likelihood"].values, best.log_lik)
    assert group["best_log_likelihood"].dims == ("chain", "iteration") and group.sizes["iteration"] == 120
    assert group["theta"].dims == ("chain", "slot", "component")
