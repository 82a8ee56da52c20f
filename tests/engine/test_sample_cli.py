"""``tdmcmc sample`` end to end on linear-selection, and its one-line user errors."""

from __future__ import annotations

import numpy as np
import xarray as xr

from tdmcmc.cli import main
from tdmcmc.models.toys.linear_selection import save, simulate


def _args(data, out, *extra):
    return ["sample", "--model", "linear-selection", "--data", str(data), "--chains", "2", "--draws", "60",
            "--tune", "30", "--seed", "4", "-o", str(out), *extra]


def test_sample_linear_selection_writes_run(tmp_path, capsys):
    save(simulate(n=30, n_regressors=5), tmp_path / "d.npz")
    out = tmp_path / "run.nc"
    assert main(_args(tmp_path / "d.npz", out)) == 0
    assert "sampling" in capsys.readouterr().err  # progress bar on stderr
    tree = xr.open_datatree(out, engine="h5netcdf")
    active = tree["posterior"]["active"]
    assert active.dims == ("chain", "draw", "slot") and active.shape == (2, 60, 5)
    assert not (tmp_path / "run.nc.ckpt").exists()

    again = tmp_path / "again.nc"
    assert main(_args(tmp_path / "d.npz", again, "--no-progress")) == 0
    second = xr.open_datatree(again, engine="h5netcdf")
    np.testing.assert_array_equal(second["posterior"]["beta"].values, tree["posterior"]["beta"].values)


def test_prior_only_flag(tmp_path):
    save(simulate(n=30, n_regressors=5), tmp_path / "d.npz")
    out = tmp_path / "prior.nc"
    assert main(_args(tmp_path / "d.npz", out, "--prior-only", "--no-progress")) == 0
    lik = xr.open_datatree(out, engine="h5netcdf")["sample_stats"]["log_likelihood_total"].values
    assert np.all(lik == 0.0)


def test_user_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "x.nc"
    base = ["sample", "--chains", "1", "--draws", "5", "--tune", "5", "-o", str(out)]
    assert main(base + ["--lam", "-1"]) == 2
    assert "lambda must be >= 0" in capsys.readouterr().err
    assert main(base + ["--model", "linear-selection"]) == 2
    assert "needs --data" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", X=np.ones((3, 2)))
    assert main(base + ["--model", "linear-selection", "--data", str(tmp_path / "bad.npz")]) == 2
    assert "missing key(s) y, sigma, tau, lam" in capsys.readouterr().err
    save(simulate(n=10, n_regressors=3), tmp_path / "d.npz")
    assert main(_args(tmp_path / "d.npz", out, "--resume")) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_interrupted_cli_run_resumes_to_the_same_draws(tmp_path, monkeypatch, capsys):
    from tdmcmc import progress

    save(simulate(n=30, n_regressors=5), tmp_path / "d.npz")
    whole, part = tmp_path / "whole.nc", tmp_path / "part.nc"
    extra = ["--checkpoint-every", "10"]
    assert main(_args(tmp_path / "d.npz", whole, "--no-progress", *extra)) == 0

    original = progress.ProgressBar.update

    def interrupt_at_55(self, iteration):
        if iteration == 55:
            raise KeyboardInterrupt
        original(self, iteration)

    monkeypatch.setattr(progress.ProgressBar, "update", interrupt_at_55)
    assert main(_args(tmp_path / "d.npz", part, *extra)) == 130
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "part.nc.ckpt").exists()
    partial = xr.open_datatree(part, engine="h5netcdf")          # written at the checkpoint of iteration 50
    assert partial.attrs["complete"] == 0 and partial["posterior"].sizes["draw"] == partial.attrs["draws_recorded"]
    monkeypatch.setattr(progress.ProgressBar, "update", original)
    assert main(_args(tmp_path / "d.npz", part, "--resume", *extra)) == 0

    a = xr.open_datatree(whole, engine="h5netcdf")["posterior"]
    b = xr.open_datatree(part, engine="h5netcdf")["posterior"]
    np.testing.assert_array_equal(a["active"].values, b["active"].values)
    np.testing.assert_array_equal(a["beta"].values, b["beta"].values)
