"""End to end on synthetic runs written to netCDF: a well-mixed run passes, a stuck chain is flagged,
and ArviZ's own summary/rhat/ess run on the file despite the NaN slots."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest

from tdmcmc.diagnostics.diagnose import diagnose
from tdmcmc.diagnostics.run_file import from_tree, open_run
from tdmcmc.errors import UserError

from .synthetic import mixed_and_stuck, protomodel_like, run_tree


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    paths = {}
    for name, stuck in (("mixed", False), ("stuck", True)):
        paths[name] = out / f"{name}.nc"
        mixed_and_stuck(stuck).to_netcdf(paths[name], engine="h5netcdf")
    return paths


@pytest.fixture(scope="module")
def diagnoses(files):
    return {name: diagnose(open_run(path)) for name, path in files.items()}


def test_arviz_runs_on_the_written_file(files):
    tree = az.from_netcdf(files["mixed"])
    summary = az.summary(tree)
    assert "mass[p0]" in summary.index and "active[p0]" in summary.index
    assert np.isnan(summary.loc["mass[p0]", "r_hat"])  # NaN slots: ArviZ cannot, tdmcmc.diagnostics can
    rhat = az.rhat(tree)
    ess = az.ess(tree)
    assert float(rhat["n_particles"]) < 1.01
    assert float(ess["active"].sel(particle="p1")) > 1000


def test_file_conventions_are_detected(files):
    run = open_run(files["mixed"])
    assert run.slot_dim == "particle" and run.slot_names == ("p0", "p1", "p2")
    assert set(run.slot_params) == {"mass"} and set(run.scalars) == {"n_particles", "K", "lp"}
    assert run.active.shape == (4, 2000, 3) and run.active.dtype == bool


def test_well_mixed_run_passes_with_known_inclusion_probabilities(diagnoses):
    dx = diagnoses["mixed"]
    assert dx.ok, dx.warnings
    # stationary inclusion probabilities 0.5, 0.375, 0.25; 4 × 2000 draws, τ = 4, 1.5, 9 → MCSE ≈ 0.011,
    # 0.008, 0.015: compare within 4 MCSE.
    for name, p in {"p0": 0.5, "p1": 0.375, "p2": 0.25}.items():
        rec = dx.slots[name]
        assert abs(rec["inclusion"] - p) < 4 * rec["inclusion_mcse"]
        assert rec["indicator_rhat"] < 1.01
        assert rec["parameters"]["mass"]["rhat"] < 1.01
    # independent slots: τ of p0 is 4, so the indicator ESS ≈ 2000 (within the estimator's ≈ 15 %)
    assert dx.slots["p0"]["indicator_ess"] == pytest.approx(2000, rel=0.15)
    assert dx.brooks_giudici["lp"]["chain_ratio"] == pytest.approx(1.0, abs=0.01)


def test_stuck_chain_is_flagged_by_indicator_rhat_and_brooks_giudici(diagnoses):
    dx = diagnoses["stuck"]
    assert not dx.ok
    assert dx.slots["p0"]["indicator_rhat"] > 1.05
    assert dx.slots["p0"]["per_chain_inclusion"][1] == 0.0
    assert dx.brooks_giudici["lp"]["chain_ratio"] > 1.05
    text = "\n".join(dx.warnings)
    assert "Chains disagree on how often p0 is present" in text
    assert "Brooks–Giudici: chains disagree on lp" in text
    # chain 1 never has p0: conditional diagnostics of its mass use the three other chains
    assert dx.slots["p0"]["parameters"]["mass"]["chains_used"] == [0, 2, 3]
    # the other particles are unaffected
    assert dx.slots["p1"]["indicator_rhat"] < 1.01 and dx.slots["p2"]["indicator_rhat"] < 1.01


def test_json_has_every_particle_with_the_required_fields(diagnoses):
    d = json.loads(json.dumps(diagnoses["stuck"].to_dict(), allow_nan=False))
    for name in ("p0", "p1", "p2"):
        rec = d["slots"][name]
        for key in ("inclusion", "indicator_ess", "indicator_rhat"):
            assert isinstance(rec[key], float)
        assert isinstance(rec["parameters"]["mass"]["rhat"], float)
    assert d["ok"] is False and d["models"]["n_models"] == 8


def test_never_active_particle_gives_nulls_not_errors():
    rng = np.random.default_rng(0)
    active = rng.random((2, 300, 2)) < 0.5
    active[:, :, 1] = False
    tree = run_tree(active, {"mass": rng.normal(100, 5, active.shape)}, rng.standard_normal((2, 300)))
    dx = diagnose(from_tree(tree))
    rec = dx.to_dict()["slots"]["p1"]
    assert rec["inclusion"] == 0.0 and rec["indicator_rhat"] is None
    assert rec["parameters"]["mass"]["rhat"] is None and rec["parameters"]["mass"]["chains_used"] == []
    assert not any("p1" in w for w in dx.warnings)


def test_missing_pieces_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such run file"):
        open_run(tmp_path / "absent.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(UserError, match=r"bad\.nc: cannot read"):
        open_run(bad)
    tree = mixed_and_stuck(False, draws=50)
    tree["posterior"] = tree["posterior"].dataset.drop_vars("active")
    tree.to_netcdf(tmp_path / "noactive.nc", engine="h5netcdf")
    with pytest.raises(UserError, match=r"noactive\.nc: posterior group has no 'active'"):
        open_run(tmp_path / "noactive.nc")


def test_protomodel_layout_with_channels_and_string_labels(tmp_path):
    path = tmp_path / "proto.nc"
    protomodel_like().to_netcdf(path, engine="h5netcdf")
    run = open_run(path)
    assert run.slot_dim == "particle" and set(run.slot_params) == {"mass", "br"}
    assert "model" not in run.scalars  # string labels are not diagnosed
    d = diagnose(run).to_dict()
    xt = d["slots"]["Xt"]["parameters"]
    assert set(xt) == {"mass", "br[t X1]", "br[b X1]"}
    # XZ1 is always present: its inclusion indicator has no R-hat, its mass diagnostics are defined
    assert d["slots"]["XZ1"]["inclusion"] == 1.0 and d["slots"]["XZ1"]["indicator_rhat"] is None
    assert d["slots"]["XZ1"]["parameters"]["mass"]["rhat"] < 1.02
    assert set(d["brooks_giudici"]) == {"K", "lp"}  # n_particles is a function of the model
    assert az.summary(az.from_netcdf(path), var_names=["mass", "K"]).shape[0] == 4


def test_chains_frozen_in_different_states_are_flagged():
    # Every chain constant, two with the particle and two without: within-chain variance is zero, so
    # R-hat is infinite or undefined; either way the particle must be reported.
    rng = np.random.default_rng(1)
    active = np.zeros((4, 500, 1), bool)
    active[:2] = True
    tree = run_tree(active, {"mass": rng.normal(100, 5, active.shape)}, rng.standard_normal((4, 500)))
    dx = diagnose(from_tree(tree))
    assert any(w.startswith("Chains disagree on how often p0 is present") for w in dx.warnings)
