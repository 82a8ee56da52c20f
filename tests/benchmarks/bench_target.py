"""Target benchmark: the ``paper`` and ``bayes`` targets of one protomodel and of 64 batched, whole 1.2.4 database.

Goals (issue 4): log target + gradient <= 1 ms for one protomodel, <= 10 ms for 64 chains. The
gradient with respect to the protomodel parameters is not implemented yet: this measures the value
and ∂/∂(per-result inputs) (predictions + per-result inputs + the compiled graph), split by stage,
for the ``paper`` target (with and without the hasOverlap veto) and the ``bayes`` ln R at given μ.
Reference: SModelS 3.2.1 decomposition + theory predictions + likelihoods at μ = 0, 1 per protomodel,
measured in the same run when ``$TDMCMC_SMODELS_PYTHON`` names a Python with smodels 3.2.1 (the
database is copied to a temporary folder first: SModelS writes its pickle next to it); otherwise the
oracle's own timings are quoted.
Run: ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_target.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import numpy as np

from tdmcmc.models.protomodel import default_space
from tdmcmc.models.protomodel.model import protomodel_from_dict
from tdmcmc.models.protomodel.slha import to_slha
from tdmcmc.models.protomodel.target import LikelihoodTarget

from .bench_predictions import MODELS, _variants

TARGET_ONE_MS, TARGET_BATCH_MS, BATCH = 1.0, 10.0, 64

SMODELS = """
import json, sys, time
from smodels.base.physicsUnits import fb, GeV
from smodels.share.models.SMparticles import SMList
from smodels.share.models.mssm import BSMList
from smodels.base.model import Model
from smodels.decomposition import decomposer
from smodels.matching.theoryPrediction import theoryPredictionsFor
from smodels.experiment.databaseObj import Database
db = Database(sys.argv[1])
times = []
for slha in sys.argv[2:]:
    t = time.perf_counter()
    model = Model(BSMparticles=BSMList, SMparticles=SMList)
    model.updateParticles(inputFile=slha)
    top = decomposer.decompose(model, sigmacut=0.02 * fb, massCompress=True, invisibleCompress=True,
                               minmassgap=10 * GeV)
    for tp in theoryPredictionsFor(db, top, useBestDataset=False, combinedResults=False):
        tp.computeStatistics()
        tp.likelihood(mu=1.0)
        tp.likelihood(mu=0.0)
    times.append(time.perf_counter() - t)
print(json.dumps({"seconds": times}))
"""


def test_target_speed(db124, oracle, shared, tmp_path):
    space = default_space()
    t = time.perf_counter()
    tgt = LikelihoodTarget(db124, shared / "data" / "raw" / "protomodels" / "combination-matrix", space=space)
    tgt.function()
    print(f"\nsetup (full-space table, combiner, paper compilation): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    tgt.bayes_function()
    print(f"bayes compilation: {time.perf_counter() - t:.1f} s")
    datas = [json.loads((oracle / "models" / f"{n}.json").read_text()) for n in MODELS]
    models = _variants([protomodel_from_dict(d, space) for d in datas], BATCH, np.random.default_rng(1))
    tgt.evaluate(models)                        # builds every interpolator the batch needs

    def stages(batch, veto=True):
        """seconds: predictions, per-result inputs + prior + cliques, paper graph, bayes graph"""
        tgt.element_overlap = veto
        t0 = time.perf_counter()
        arrays = [tgt.predictor.model_arrays(m) for m in batch]
        preds = tgt.predictor.evaluate_batch(arrays)
        t1 = time.perf_counter()
        inputs = tgt.result_inputs(preds, batch, arrays)
        t2 = time.perf_counter()
        tgt.function()(*[getattr(inputs, k) for k in tgt._inputs])
        t3 = time.perf_counter()
        args = {k: getattr(inputs, k) for k in tgt._bayes_inputs if k != "mu"}
        args["mu"] = np.full(len(batch), 0.5)
        tgt.bayes_function()(*[args[k] for k in tgt._bayes_inputs])
        t4 = time.perf_counter()
        return np.array([t1 - t0, t2 - t1, t3 - t2, t4 - t3])

    repeat = 10
    results = {}
    for veto in (False, True):
        one = np.median([sum(stages([m], veto) for m in models[:len(MODELS)]) / len(MODELS) for _ in range(repeat)],
                        axis=0)
        batch = np.median([stages(models, veto) for _ in range(3)], axis=0)
        results[veto] = one, batch
        print(f"hasOverlap veto {'on' if veto else 'off'}:")
        for label, s, goal in (("one protomodel", one, TARGET_ONE_MS), (f"{BATCH} batched", batch, TARGET_BATCH_MS)):
            paper, bayes = 1000.0 * s[:3].sum(), 1000.0 * (s[:2].sum() + s[3])
            print(f"  {label}: paper {paper:.1f} ms (K + dK/d(per-result inputs); goal {goal} ms with the full "
                  f"gradient, ratio {paper / goal:.0f}), bayes {bayes:.1f} ms (ratio {bayes / goal:.0f}); "
                  f"predictions {1000 * s[0]:.1f} ms, per-result inputs + prior + cliques {1000 * s[1]:.1f} ms, "
                  f"paper graph {1000 * s[2]:.1f} ms, bayes graph {1000 * s[3]:.1f} ms")
    one, batch = results[True]
    one_ms = 1000.0 * one[:3].sum()              # paper target, veto on
    smodels_python = os.environ.get("TDMCMC_SMODELS_PYTHON")
    if smodels_python:
        db = tmp_path / "smodels-db"
        shutil.copytree(db124, db)
        files = []
        for name, d in zip(MODELS, datas):
            path = tmp_path / f"{name}.slha"
            path.write_text(to_slha(protomodel_from_dict(d, space), space))
            files.append(str(path))
        out = subprocess.run([smodels_python, "-c", SMODELS, str(db), *files], capture_output=True, text=True,
                             check=True)
        seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        ref_ms = 1000.0 * float(np.median(seconds))
        print(f"SModelS 3.2.1 (same run): {ref_ms:.0f} ms per protomodel (median of {len(seconds)}); "
              f"ratio tdmcmc/SModelS one {one_ms / ref_ms:.4f}, "
              f"batched per model {1000 * batch[:3].sum() / BATCH / ref_ms:.4f}")
    else:
        refs = [json.loads((oracle / "out" / f"{n}.json").read_text())["summary"]["median_timings_s"]["wall"]
                for n in MODELS]
        ref_ms = 1000.0 * float(np.median([r["total"] for r in refs]))
        print(f"SModelS not measured (set TDMCMC_SMODELS_PYTHON); oracle timings {ref_ms:.0f} ms per protomodel: "
              f"ratio one {one_ms / ref_ms:.4f}")
