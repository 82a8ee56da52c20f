"""Stage-2 benchmark: LikelihoodTarget.result_inputs (per-result inputs from the flat predictions),
whole 1.2.4 database, the five oracle protomodels and variants (fitted σ), one and 64 batched.

Goals (issue 4, gradient speed): ``bayes`` path (``paper=False``: no ln π_paper, no cliques, no
hasOverlap veto) <= 3 ms for 64 models and <= 0.2 ms for one; ``paper`` path <= 10 ms for 64.
Before (commit 361812b, the same models through /tmp/s3, median of 20, both paths computing the
paper inputs): 66.4 ms for 64 models, 1.79 ms for one.
Run: ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_result_inputs.py``.
"""

from __future__ import annotations

import json
import timeit

import numpy as np

from tdmcmc.models.protomodel import default_space
from tdmcmc.models.protomodel.model import protomodel_from_dict
from tdmcmc.models.protomodel.target import LikelihoodTarget

from .bench_predictions import MODELS, _variants

BATCH = 64
TARGETS_MS = {("bayes", BATCH): 3.0, ("bayes", 1): 0.2, ("paper", BATCH): 10.0}
BEFORE_MS = {BATCH: 66.4, 1: 1.79}


def _best_ms(fn, number: int) -> float:
    """The fastest of 30 means over `number` calls (the machine is shared: the minimum is the
    least disturbed figure)."""
    return min(timeit.repeat(fn, number=number, repeat=30)) / number * 1000.0


def test_result_inputs_speed(db124, oracle, shared):
    space = default_space()
    tgt = LikelihoodTarget(db124, shared / "data" / "raw" / "protomodels" / "combination-matrix", space=space)
    datas = [json.loads((oracle / "models" / f"{n}.json").read_text()) for n in MODELS]
    models = _variants([protomodel_from_dict(d, space) for d in datas], BATCH, np.random.default_rng(1))
    cases = {}
    for n in (BATCH, 1):
        arrays = tgt.predictor.model_arrays_batch(models[:n])
        cases[n] = (tgt.predictor.evaluate_batch(arrays, jacobian=True), models[:n], arrays)
    print()
    for kind in ("bayes", "paper"):
        for n, (preds, batch, arrays) in cases.items():
            def run():
                tgt.result_inputs(preds, batch, arrays, paper=kind == "paper")
            run()                                        # the per-state clique memo, warm as in a run
            ms = _best_ms(run, 5 if n > 1 else 50)
            goal = TARGETS_MS.get((kind, n))
            ratio = f", {ms / goal:.2f} of the goal {goal} ms" if goal else ""
            print(f"result_inputs {kind:5s} {n:2d} model(s): {ms:7.3f} ms{ratio}; before {BEFORE_MS[n]} ms "
                  f"({BEFORE_MS[n] / ms:.0f}x)")
