"""pyhf backend against SModelS 3.2.1's PyhfUpperLimitComputer, and its gradients."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from tdmcmc.errors import UserError
from tdmcmc.models.likelihood.pyhf_backend import PyhfLikelihood, region_type, signal_bins_for


@pytest.fixture(autouse=True)
def _needs_pyhf(request):
    if request.node.name != "test_missing_pyhf_is_a_clear_error":
        pytest.importorskip("pyhf")

# SModelS 3.2.1: PyhfUpperLimitComputer(PyhfData(nsignals, workspace, regions, includeCRs=False)).nll(μ),
# run in /tmp/smodels-venv with pyhf 0.7.6.
SREE = ("13TeV/ATLAS/ATLAS-SUSY-2018-14-eff/SRee_bkgonly.json", [("SRee_cuts", 0)], [2.5],
        {0.0: -1.7814761090034117, 1.0: 0.7176207461986195, 2.0: 3.2149113650380707})
BKGONLY_A = ("13TeV/ATLAS/ATLAS-SUSY-2018-31-eff/BkgOnlyA.json", [("SR_meff", 0), ("SR_meff", 1), ("SR_meff", 2)],
             [4.0, 2.0, 1.0], {1.0: 48.341275410832395})  # CR and VR removed, as SModelS does


def _load(root, case):
    path, bins, signal, reference = case
    return PyhfLikelihood(json.loads((root / path).read_text()), bins), np.array(signal), reference


@pytest.mark.realdata
def test_single_bin_matches_smodels_321(db300extra):
    likelihood, signal, reference = _load(db300extra, SREE)
    mu = np.array(list(reference))
    assert np.allclose(likelihood.nll(mu, signal), list(reference.values()), rtol=0, atol=1e-6)


@pytest.mark.realdata
def test_multibin_workspace_with_control_regions_matches_smodels_321(db124):
    likelihood, signal, reference = _load(db124, BKGONLY_A)
    assert likelihood.nll(np.array([1.0]), signal)[0] == pytest.approx(reference[1.0], abs=1e-6)
    assert [region_type(c) for c in ("SR_meff", "VRtt_meff", "CRtt_meff")] == ["SR", "VR", "CR"]


@pytest.mark.realdata
def test_list_style_json_files_map_to_sr_bins(db124):
    workspace = json.loads((db124 / BKGONLY_A[0]).read_text())
    assert signal_bins_for(workspace, ["SRA_L", "SRA_M", "SRA_H"]) == BKGONLY_A[1]
    with pytest.raises(UserError, match="3 SR bins"):
        signal_bins_for(workspace, ["SRA_L"])


def _toy_workspace() -> dict:
    """Two SR bins with a normsys and stat errors, one CR (kept)."""
    return {
        "channels": [
            {"name": "SR", "samples": [{"name": "bkg", "data": [5.0, 2.0], "modifiers": [
                {"name": "syst", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},
                {"name": "staterror_SR", "type": "staterror", "data": [1.0, 0.6]}]}]},
            {"name": "CR", "samples": [{"name": "bkg", "data": [50.0], "modifiers": [
                {"name": "syst", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}}]}]},
        ],
        "observations": [{"name": "SR", "data": [9.0, 3.0]}, {"name": "CR", "data": [55.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu_SIG", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]},
            {"name": "mu_SIG", "bounds": [[0.0, 10.0]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }


def test_graph_gradients_match_finite_differences():
    likelihood = PyhfLikelihood(_toy_workspace(), [("SR", 0), ("SR", 1)], keep=["SR", "CR"])
    mu, signal = np.array([0.5, 1.5]), np.array([[3.0, 1.0], [2.0, 0.5]])
    mu_v, s_v = pt.vector("mu"), pt.matrix("s")
    total = likelihood.graph(mu_v, s_v)
    f = pytensor.function([mu_v, s_v], [total, *pytensor.grad(total.sum(), [mu_v, s_v])])
    value, g_mu, g_s = f(mu, signal)
    assert np.allclose(value, likelihood.nll(mu, signal), rtol=1e-12)
    h = 1e-4
    fd_mu = (likelihood.nll(mu + h, signal) - likelihood.nll(mu - h, signal)) / (2 * h)
    fd_s = np.zeros_like(signal)
    for idx in np.ndindex(signal.shape):
        plus, minus = signal.copy(), signal.copy()
        plus[idx] += h
        minus[idx] -= h
        fd_s[idx] = (likelihood.nll(mu, plus).sum() - likelihood.nll(mu, minus).sum()) / (2 * h)
    # the fits converge to ~1e-8 in −ln L, so finite differences are good to ~1e-4
    assert np.allclose(g_mu, fd_mu, rtol=1e-3, atol=1e-4)
    assert np.allclose(g_s, fd_s, rtol=1e-3, atol=1e-4)


def test_missing_pyhf_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyhf", None)
    with pytest.raises(UserError, match="pip install"):
        PyhfLikelihood(_toy_workspace(), [("SR", 0)])


def test_unknown_channel_is_a_clear_error():
    with pytest.raises(UserError, match="no channel 'SRX'"):
        PyhfLikelihood(_toy_workspace(), [("SRX", 0)])
