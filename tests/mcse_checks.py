"""Statistical assertions on chains: a posterior mean against an exact value within its Monte-Carlo
standard error (arviz-stats' MCSE, so autocorrelation counts)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from arviz_stats import mcse


def mcse_of(series: np.ndarray) -> float:
    """MCSE of the mean of a (chain, draw) series."""
    return float(mcse(xr.DataArray(series, dims=("chain", "draw"))))


def assert_within_mcse(name: str, series: np.ndarray, truth: float) -> None:
    """Mean within 4 MCSE + 0.005 (warm-up bias) of `truth`, and the MCSE itself below 0.03 (the
    check must have power)."""
    se = mcse_of(series)
    assert se < 0.03, f"{name}: Monte-Carlo error {se:.3f} too large"
    assert abs(series.mean() - truth) < 4 * se + 0.005, f"{name}: {series.mean():.4f} vs exact {truth:.4f} (mcse {se:.4f})"
