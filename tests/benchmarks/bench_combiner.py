"""Combiner benchmark on the 1.2.4 database: compiled PyTensor graphs (default mode) vs numpy.

Figures printed: cold build of the combiner (matrix read, graph, per-group Bron–Kerbosch), PyTensor
compile time (default C mode), time per state for `max`, `logsumexp` and `paper_max` (64 chains ×
40 μ values, value + gradient), and the ratio to the reference: the paper's clique stage took
2–4 s per step for 42 maximal combinations (method reference §10); target ≤ 1 ms per state.
The compiled values are checked against the numpy path (the default suite checks the graphs only
without C compilation).
Run: ``make bench`` or ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_combiner.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pytensor
import pytensor.tensor as pt

from tdmcmc.models.database.compiled import load_compiled
from tdmcmc.models.likelihood.cliques import build_combiner
from tdmcmc.models.likelihood.combinability import graph_for_database, read_allow_lists

TARGET_S_PER_STATE = 1e-3
PAPER_S_PER_STEP = 2.0
CHAINS, N_MU = 64, 40


def test_combiner_on_real_database(db124, shared):
    arrays = load_compiled(db124).arrays
    t0 = time.perf_counter()
    allow = read_allow_lists(shared / "data" / "raw" / "protomodels" / "combination-matrix")
    combiner = build_combiner(graph_for_database(arrays, allow))
    t_build = time.perf_counter() - t0
    print(f"\nbuild: {t_build:.3f} s, cliques per group {combiner.n_cliques}, "
          f"global {combiner.n_global_cliques}")

    rng = np.random.default_rng(0)
    n_res = len(arrays.result_id)
    predicted = rng.random((CHAINS, N_MU, n_res)) < 0.2
    r = np.where(predicted, rng.normal(0.2, 1.0, predicted.shape), 0.0)
    x, p = pt.tensor3("r"), pt.tensor3("p")
    outputs = {"max": combiner.combine(x, "max"), "logsumexp": combiner.combine(x, "logsumexp"),
               "paper_max": combiner.paper_max(x, p)}
    reference = {"max": combiner.combine(r, "max"), "logsumexp": combiner.combine(r, "logsumexp"),
                 "paper_max": combiner.paper_max(r, predicted)}
    n_states = CHAINS * N_MU
    for name, out in outputs.items():
        finite = pt.switch(pt.isinf(out), 0.0, out)
        t0 = time.perf_counter()
        f = pytensor.function([x, p], [out, pytensor.grad(finite.sum(), x)], on_unused_input="ignore")
        t_compile = time.perf_counter() - t0
        value, _ = f(r, predicted * 1.0)
        np.testing.assert_allclose(value, reference[name], rtol=1e-12, atol=1e-12)
        t0 = time.perf_counter()
        for _ in range(10):
            f(r, predicted * 1.0)
        per_state = (time.perf_counter() - t0) / 10 / n_states
        print(f"{name:10s} compile {t_compile:6.1f} s, value+grad {per_state * 1e6:7.2f} µs/state, "
              f"ratio to target {per_state / TARGET_S_PER_STATE:.3f}, "
              f"speed-up vs paper step {PAPER_S_PER_STEP / per_state:.0f}×")
        assert per_state < TARGET_S_PER_STATE
