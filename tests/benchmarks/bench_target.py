"""Target benchmark (issue 4): the log target and its gradient in the sampler's unconstrained
coordinates, for one protomodel and for 64 batched, on the whole 1.2.4 database (full-space table).

Goals: <= 1 ms for one protomodel, <= 10 ms for 64. What is timed is exactly what MALA asks of the
target for a new state, without the per-state caches: the log prior with its gradient
(``ProtomodelTarget.prior.log_prior``) plus ``ProtomodelTarget.evaluate(..., gradient=True)`` — the
parameters to the table arrays (masses, BRs, σ of every production channel), the predictions, the
per-result inputs, the compiled graph (log L and its gradient w.r.t. the per-result inputs) and the
chain rule back to masses, BRs, κ and then to the unconstrained coordinates. Both targets: ``bayes`` (the default,
ln R at μ = f·μ_max) and ``paper`` (K/2: the μ profile over the state's cliques, hasOverlap veto on,
and the per-prediction −ln L at μ = 0, 1 that the output records). The stages are timed by wrapping
the methods that implement them; "other" is the rest.

Models: the five oracle protomodels and 59 variants (masses × U(0.9, 1.1), random BRs), as in
``bench_predictions``. One protomodel: the median over 10 repeats of the mean over the five oracle
models evaluated one at a time; 64: the median of 5 batched calls.
Reference: SModelS 3.2.1 decomposition + theory predictions + likelihoods at μ = 0, 1 per
protomodel, measured in the same run when ``smodels`` is importable here or ``$TDMCMC_SMODELS_PYTHON``
names a Python that has it (the database is copied to a temporary folder first: SModelS writes its
pickle next to it); otherwise the oracle's own timings are quoted.
Run: ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_target.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np

from tdmcmc.models.protomodel import default_space, sampling
from tdmcmc.models.protomodel.model import protomodel_from_dict
from tdmcmc.models.protomodel.sampling import ProtomodelTarget
from tdmcmc.models.protomodel.slha import to_slha
from tdmcmc.models.protomodel.target import LikelihoodTarget

from .bench_predictions import MODELS, _timed, _variants

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


class Stages:
    """Wall seconds spent in wrapped callables, by stage name (one counter a stage, shared by the
    callables of that stage)."""

    def __init__(self) -> None:
        self.counters: dict[str, list[float]] = defaultdict(lambda: [0.0])

    def wrap(self, owner, attribute: str, stage: str) -> None:
        _timed(owner, attribute, self.counters[stage])

    def take(self) -> dict[str, float]:
        out = {k: c[0] for k, c in self.counters.items() if c[0]}        # the stages that ran
        for c in self.counters.values():
            c[0] = 0.0
        return out


def _instrument(owners: list[tuple[object, str, str]], stages: Stages) -> None:
    for owner, attribute, stage in owners:
        stages.wrap(owner, attribute, stage)


def _target_stages(target: ProtomodelTarget) -> list[tuple[object, str, str]]:
    table_map = target.params.table_map(target.likelihood.predictor)
    return [(target.prior, "log_prior", "prior"),
            (target.params, "physical", "parameters -> table arrays (incl. sigma)"),
            (table_map, "arrays", "parameters -> table arrays (incl. sigma)"),
            (target, "_unconstrained_gradient", "to unconstrained coordinates")]


def _likelihood_stages(lt: LikelihoodTarget) -> list[tuple[object, str, str]]:
    """The stages of the shared likelihood; its compiled graphs through holders of the functions."""
    out = [(lt.predictor, "evaluate_batch", "predictions"),
           (lt, "result_inputs", "per-result inputs"),
           (lt, "prediction_nll", "per-prediction nll (output)"),
           (sampling, "chain_to_parameters", "gradient chain to masses, BRs, kappa")]
    for factory in ("function", "bayes_function"):
        holder = type("Compiled", (), {"call": staticmethod(getattr(lt, factory)())})
        setattr(lt, factory, lambda h=holder: h.call)
        out.append((holder, "call", "compiled graph"))
    return out


def _call(target: ProtomodelTarget, active, params, globals_) -> None:
    target.prior.log_prior(active, params, globals_)
    target.evaluate(active, params, globals_, gradient=True)


def _measure(target: ProtomodelTarget, stages: Stages, states, n_one: int) -> dict[str, dict[str, float]]:
    """ms per call (one protomodel, and the batch): total and per stage (medians)."""
    active, params, globals_ = states
    rows = {}
    for label, calls, repeats in (("one", [slice(b, b + 1) for b in range(n_one)], 10),
                                  ("batch", [slice(None)], 5)):
        totals, parts = [], []
        for _ in range(repeats):
            stages.take()
            t = time.perf_counter()
            for s in calls:
                _call(target, active[s], params[s], globals_[s])
            totals.append((time.perf_counter() - t) / len(calls))
            parts.append({k: v / len(calls) for k, v in stages.take().items()})
        row = {"total": 1000.0 * float(np.median(totals))}
        for k in parts[0]:
            row[k] = 1000.0 * float(np.median([p.get(k, 0.0) for p in parts]))
        rows[label] = row
    return rows


def _smodels_ms(db124, datas, space, tmp_path) -> float | None:
    python = sys.executable if importlib.util.find_spec("smodels") else os.environ.get("TDMCMC_SMODELS_PYTHON")
    if not python:
        return None
    db = tmp_path / "smodels-db"
    shutil.copytree(db124, db)
    files = []
    for name, d in zip(MODELS, datas):
        path = tmp_path / f"{name}.slha"
        path.write_text(to_slha(protomodel_from_dict(d, space), space))
        files.append(str(path))
    out = subprocess.run([python, "-c", SMODELS, str(db), *files], capture_output=True, text=True, check=True)
    return 1000.0 * float(np.median(json.loads(out.stdout.strip().splitlines()[-1])["seconds"]))


def test_target_speed(db124, oracle, shared, tmp_path):
    space = default_space()
    t = time.perf_counter()
    lt = LikelihoodTarget(db124, shared / "data" / "raw" / "protomodels" / "combination-matrix", space=space)
    lt.function()
    lt.bayes_function()
    print(f"\nsetup (full-space table, combiner, compilation of both graphs): {time.perf_counter() - t:.1f} s")
    datas = [json.loads((oracle / "models" / f"{n}.json").read_text()) for n in MODELS]
    models = _variants([protomodel_from_dict(d, space) for d in datas], BATCH, np.random.default_rng(1))
    stages = Stages()
    targets = {kind: ProtomodelTarget(lt, kind) for kind in ("bayes", "paper")}
    pairs = [targets["bayes"].params.from_protomodel(m) for m in models]
    states = (np.stack([a for a, _ in pairs]), np.stack([p for _, p in pairs]), np.full((BATCH, 1), 0.5))
    for target in targets.values():
        _call(target, *states)                           # builds every interpolator the batch needs
        _instrument(_target_stages(target), stages)
    _instrument(_likelihood_stages(lt), stages)
    results = {kind: _measure(target, stages, states, len(MODELS)) for kind, target in targets.items()}
    ref_ms = _smodels_ms(db124, datas, space, tmp_path)
    source = "SModelS 3.2.1, same run"
    if ref_ms is None:
        refs = [json.loads((oracle / "out" / f"{n}.json").read_text())["summary"]["median_timings_s"]["wall"]["total"]
                for n in MODELS]
        ref_ms, source = 1000.0 * float(np.median(refs)), "oracle's own timings (smodels not installed)"
    print(f"reference: {ref_ms:.0f} ms per protomodel ({source})")
    for kind, rows in results.items():
        for label, goal, n in (("one protomodel", TARGET_ONE_MS, 1), (f"{BATCH} batched", TARGET_BATCH_MS, BATCH)):
            row = rows["one" if n == 1 else "batch"]
            total = row.pop("total")
            print(f"{kind}, {label}: log target + gradient {total:.2f} ms (goal {goal} ms, ratio {total / goal:.1f}; "
                  f"per protomodel {total / n:.3f} ms = {total / n / ref_ms:.2e} of SModelS)")
            for stage, ms in sorted(row.items(), key=lambda kv: -kv[1]):
                print(f"    {stage:40s} {ms:8.2f} ms")
            print(f"    {'other':40s} {total - sum(row.values()):8.2f} ms")
