"""Protomodel sampler on the real 1.2.4 database: the acceptance run of the engine issue.

``tdmcmc sample --model protomodel --target paper`` from the empty model (LSP only), 4 chains,
2 sharpened levels (T = 0.1, 0.32) below the recorded T = 1 level: the best states must reach
K >= 6 (the paper's best model: K = 6.9) and the posterior reports inclusion probabilities.
Printed: chain-sweeps per CPU-second (all levels count as chains: the cost of one target
evaluation per state), effective samples per second of n_particles and of the log target, the best
K per chain and where it was found, and the ratio to the greedy walk (the original method) run in
the same process for the same number of target evaluations per chain-step.
Run: ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_protomodel_sampler.py``.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr
from arviz_stats import ess

from tdmcmc.models.protomodel.sampling import build_target
from tdmcmc.output import to_datatree
from tdmcmc.sampler import SamplerConfig, sample

TARGET_K = 6.0
CHAINS, TUNE, DRAWS, SHARPENED = 4, 300, 300, 2


def test_paper_target_finds_k6_from_the_empty_model(db124, shared):
    target = build_target(db124, kind="paper",
                          combination_matrix=shared / "data" / "raw" / "protomodels" / "combination-matrix")
    config = SamplerConfig(chains=CHAINS, draws=DRAWS, tune=TUNE, sharpened=SHARPENED, min_temperature=0.1, seed=21)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = sample(target, config)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    tree = to_datatree(run, target)
    post, best = tree["posterior"], tree["best"]
    levels = SHARPENED + 1
    sweeps = CHAINS * levels * (TUNE + DRAWS)
    n_ess = float(ess(xr.DataArray(post["n_particles"].values.astype(float), dims=("chain", "draw"))))
    lp_ess = float(ess(xr.DataArray(tree["sample_stats"]["lp"].values, dims=("chain", "draw"))))
    seconds = run.seconds["draws"]

    from tdmcmc.models.greedy.cli import run_greedy

    steps = 30
    doc = run_greedy(db124, walkers=2, steps=steps, seed=1, jobs=1,
                     combination_matrix=shared / "data" / "raw" / "protomodels" / "combination-matrix")
    greedy_cpu_per_step = doc["cpu_seconds_walkers"] / (2 * steps)

    print()
    print(f"protomodel sampler, paper target, {CHAINS} chains x {levels} levels, {TUNE} + {DRAWS} sweeps")
    print(f"  CPU {cpu:.0f} s, wall {wall:.0f} s (machine shared)")
    print(f"  chain-sweeps per CPU-second   {sweeps / cpu:8.2f}   (greedy steps per CPU-second "
          f"{1 / greedy_cpu_per_step:.2f}; ratio {sweeps / cpu * greedy_cpu_per_step:.2f})")
    print(f"  ESS n_particles / lp          {n_ess:8.0f} / {lp_ess:.0f}  "
          f"({n_ess / seconds:.2f} / {lp_ess / seconds:.2f} per second of sampling)")
    print(f"  best K per chain              {np.round(best['K'].values, 2)} at iterations "
          f"{best['found_at_iteration'].values}  (ratio to {TARGET_K}: {np.nanmax(best['K'].values) / TARGET_K:.2f})")
    for c in range(CHAINS):
        m = best["mass"].values[c]
        print(f"    chain {c}: {best['model'].values[c]}  masses {np.round(m[np.isfinite(m)])} GeV")
    incl = post["active"].mean(("chain", "draw"))
    print("  inclusion", {str(k): round(float(v), 3) for k, v in zip(post["particle"].values, incl.values)})
    assert np.nanmax(best["K"].values) >= TARGET_K
