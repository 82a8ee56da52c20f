"""Oracle predictions (SModelS 3.2.1 outputs for five protomodels) as numpy columns per model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytensor
import pytest

_COLUMNS = {
    "efficiencyMap": ("obs_n", "exp_bg", "bg_err", "xsec_fb", "lumi_ifb", "signal_yield",
                      "nll_mu0", "nll_mu1"),
    "upperLimit": ("xsec_fb", "ul_obs_fb", "ul_exp_fb", "lumi_ifb", "nll_mu0", "nll_mu1",
                   "nll_mu0_negok", "nll_mu1_negok"),
}


def _columns(oracle: Path, datatype: str) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted((oracle / "out").glob("*.json")):
        data = json.loads(path.read_text())
        if "predictions" not in data:
            continue
        rows = [p for p in data["predictions"]
                if p["datatype"] == datatype and p.get("nll_mu0") is not None]
        out[path.stem] = {key: np.array([p[key] for p in rows], dtype=float)
                          for key in _COLUMNS[datatype]}
    return out


@pytest.fixture(scope="session")
def oracle_em(oracle: Path) -> dict[str, dict[str, np.ndarray]]:
    """EM signal-region predictions with SModelS' nll at μ = 0, 1, by model."""
    return _columns(oracle, "efficiencyMap")


@pytest.fixture(scope="session")
def oracle_ul(oracle: Path) -> dict[str, dict[str, np.ndarray]]:
    """UL predictions that have a likelihood (expected ULs exist), by model."""
    return _columns(oracle, "upperLimit")


@pytest.fixture
def python_linker():
    """Build and compile graphs with the Python linker: values and gradients are the same, and the
    suite does not pay cold-cache C compilation (tens of seconds for scan inner graphs)."""
    mode = pytensor.compile.mode.Mode(linker="py", optimizer="fast_compile")
    with pytensor.config.change_flags(mode=mode):
        yield
