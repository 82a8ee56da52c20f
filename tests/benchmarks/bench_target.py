"""Target benchmark: the ``paper`` target of one protomodel and of 64 batched, whole 1.2.4 database.

Goals (issue 4): log target + gradient <= 1 ms for one protomodel, <= 10 ms for 64 chains. The
gradient with respect to the protomodel parameters is not implemented yet: this measures the value
and ∂K/∂(per-result inputs) (predictions + per-result inputs + the compiled graph), split by stage.
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
    print(f"\nsetup (full-space table, combiner, compilation): {time.perf_counter() - t:.1f} s")
    datas = [json.loads((oracle / "models" / f"{n}.json").read_text()) for n in MODELS]
    models = _variants([protomodel_from_dict(d, space) for d in datas], BATCH, np.random.default_rng(1))
    tgt.evaluate(models)                        # builds every interpolator the batch needs

    def stages(batch):
        t0 = time.perf_counter()
        preds = tgt.predictor.evaluate_batch(batch)
        t1 = time.perf_counter()
        inputs = tgt.result_inputs(preds, batch)
        t2 = time.perf_counter()
        tgt.function()(*[getattr(inputs, k) for k in tgt._inputs])
        t3 = time.perf_counter()
        return np.array([t1 - t0, t2 - t1, t3 - t2])

    repeat = 10
    one = np.median([sum(stages([m]) for m in models[:len(MODELS)]) / len(MODELS) for _ in range(repeat)],
                    axis=0)
    batch = np.median([stages(models) for _ in range(3)], axis=0)
    for label, s, goal in (("one protomodel", one, TARGET_ONE_MS), (f"{BATCH} batched", batch, TARGET_BATCH_MS)):
        total = 1000.0 * s.sum()
        print(f"{label}: {total:.1f} ms (K + dK/d(per-result inputs); goal {goal} ms with the full gradient, ratio {total / goal:.0f}); "
              f"predictions {1000 * s[0]:.1f} ms, per-result inputs + prior {1000 * s[1]:.1f} ms, "
              f"compiled graph {1000 * s[2]:.1f} ms")
    one_ms = 1000.0 * one.sum()
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
              f"batched per model {1000 * batch.sum() / BATCH / ref_ms:.4f}")
    else:
        refs = [json.loads((oracle / "out" / f"{n}.json").read_text())["summary"]["median_timings_s"]["wall"]
                for n in MODELS]
        ref_ms = 1000.0 * float(np.median([r["total"] for r in refs]))
        print(f"SModelS not measured (set TDMCMC_SMODELS_PYTHON); oracle timings {ref_ms:.0f} ms per protomodel: "
              f"ratio one {one_ms / ref_ms:.4f}")
