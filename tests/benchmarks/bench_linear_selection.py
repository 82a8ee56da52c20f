"""linear-selection benchmark and full-size acceptance test of the engine.

Acceptance (engine issue): J = 10 (1024 models), 4 chains × 20,000 draws: every inclusion
probability and every P(k) within 0.02 of exact enumeration. Figures printed: chain-sweeps per
second on one core, by wall clock and by process CPU time (one sweep = refresh, 5 birth/death, random walk, MALA), the minimum and median
effective sample size of the inclusion indicators (ArviZ bulk ESS) per second of sampling, the
largest errors against exact enumeration and their ratio to the 0.02 target, and the cost of the
exact-enumeration reference itself.
Run: ``make bench`` or ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_linear_selection.py``.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr
from arviz_stats import ess

from tdmcmc.models.toys.linear_selection import exact_posterior, simulate
from tdmcmc.sampler import SamplerConfig, sample

TOLERANCE = 0.02


def test_linear_selection_j10_against_exact_enumeration():
    model = simulate()
    t0 = time.perf_counter()
    exact = exact_posterior(model)
    t_exact = time.perf_counter() - t0

    config = SamplerConfig(chains=4, draws=20_000, tune=2_000, seed=2026, birth_death_per_sweep=5)
    cpu0 = time.process_time()
    run = sample(model, config)
    cpu = time.process_time() - cpu0
    active = run.trace.active.astype(float)
    k = active.sum(axis=2)
    incl_err = np.abs(active.mean(axis=(0, 1)) - exact.inclusion)
    pk = np.array([(k == n).mean() for n in range(active.shape[2] + 1)])
    pk_err = np.abs(pk - exact.size_distribution)
    indicator_ess = ess(xr.DataArray(active, dims=("chain", "draw", "slot")), method="bulk").values
    seconds = run.seconds["draws"]
    sweeps_per_s = config.chains * config.draws / seconds

    print()
    print(f"linear-selection J=10, {config.chains} chains x {config.draws} draws (+{config.tune} warm-up), 1 core")
    print(f"  sampling time               {seconds:8.1f} s  (warm-up {run.seconds['tune']:.1f} s)")
    print(f"  chain-sweeps per second     {sweeps_per_s:8.0f}  wall; "
          f"{config.chains * (config.draws + config.tune) / cpu:.0f} per CPU-second (shared machine)")
    print(f"  indicator ESS min / median  {indicator_ess.min():8.0f} / {np.median(indicator_ess):.0f}")
    print(f"  ESS per second min / median {indicator_ess.min() / seconds:8.1f} / {np.median(indicator_ess) / seconds:.1f}")
    print(f"  max |inclusion - exact|     {incl_err.max():8.4f}  (ratio to {TOLERANCE}: {incl_err.max() / TOLERANCE:.2f})")
    print(f"  max |P(k) - exact|          {pk_err.max():8.4f}  (ratio to {TOLERANCE}: {pk_err.max() / TOLERANCE:.2f})")
    print(f"  exact enumeration (1024 models) {t_exact:.2f} s")
    print("  acceptance rates", {n: round(float(np.nanmean(a)), 3) for n, a in run.trace.accept.items()})
    assert incl_err.max() < TOLERANCE
    assert pk_err.max() < TOLERANCE
