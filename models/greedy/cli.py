"""``tdmcmc greedy``: the original greedy walk (method reference §2) with W walkers in parallel
processes on the ``paper`` objective; writes hiscores, K trajectories and CPU times as JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tdmcmc.errors import UserError

from .hiscores import describe, merge_hiscores
from .walker import VARIANTS, WalkerSettings

_OBJECTIVES: dict[tuple, Any] = {}


def numpy_objective(database: str, matrix: str | None):
    """The default objective factory: :class:`~.objective.NumpyPaperObjective`."""
    from .objective import NumpyPaperObjective

    return NumpyPaperObjective(database, matrix)


def _objective(database: str, matrix: str | None, factory=numpy_objective):
    """One objective per process and (factory, database, matrix), reused by its walkers."""
    key = (factory, database, matrix)
    if key not in _OBJECTIVES:
        _OBJECTIVES[key] = factory(database, matrix)
    return _OBJECTIVES[key]


def run_walker(database: str, matrix: str | None, seed: int, walker_id: int, steps: int,
               settings: WalkerSettings, keep: int, factory=numpy_objective) -> dict[str, Any]:
    """Run one walker in this process; returns its trajectory, hiscores and timings (JSON-ready)."""
    from .hiscores import Hiscores
    from .walker import Walker

    cpu0, wall0 = time.process_time(), time.perf_counter()
    objective = _objective(database, matrix, factory)
    walker = Walker(objective.space, objective, seed=seed, walker_id=walker_id, settings=settings,
                    hiscores=Hiscores(keep=keep))
    records = walker.walk(steps)
    return {"walker": walker_id, "seed": seed,
            "K": [r.K for r in records], "K_proposed": [r.K_proposed for r in records],
            "accepted": [r.accepted for r in records], "n_particles": [r.n_particles for r in records],
            "particles": [list(r.particles) for r in records],
            "best_K": max((r.K_proposed for r in records if r.K_proposed is not None), default=None),
            "hiscores": walker.hiscores.entries,
            "cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0}


def run_greedy(database: str | Path, *, walkers: int, steps: int, seed: int, jobs: int | None = None,
               combination_matrix: str | Path | None = None, settings: WalkerSettings | None = None,
               keep: int = 20, log=None, objective_factory=numpy_objective) -> dict[str, Any]:
    """Run `walkers` walkers of `steps` steps (walker i seeded with seed + i) and return the
    output document (see docs/greedy.md).

    ``objective_factory(database, matrix)`` builds the :class:`~.objective.PaperObjective` once per
    process (a module-level function, so that worker processes can call it); the objective must
    have ``space``, ``compiled`` (its ``database``), ``r_threshold`` and ``kappa_clustering``."""
    from .objective import default_combination_matrix

    if walkers < 1 or steps < 1:
        raise UserError(f"--walkers and --steps must be >= 1 (got {walkers}, {steps})")
    database = Path(database)
    if not database.is_dir():
        raise UserError(f"--database {database}: not a folder")
    matrix = Path(combination_matrix) if combination_matrix else default_combination_matrix(database)
    settings = settings or WalkerSettings()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    # build (and cache on disk) the database, topology table and combiner once, before the workers
    objective = _objective(str(database), str(matrix) if matrix else None, objective_factory)
    jobs = max(1, min(walkers, jobs or os.cpu_count() or 1))
    args = [(str(database), str(matrix) if matrix else None, seed + i, i, steps, settings, keep, objective_factory)
            for i in range(walkers)]
    results = []
    if jobs == 1:
        for a in args:
            results.append(run_walker(*a))
            _report(log, results[-1])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for result in pool.map(run_walker, *zip(*args)):
                results.append(result)
                _report(log, result)
    db = objective.compiled.database
    hiscores = merge_hiscores((r.pop("hiscores") for r in results), keep=keep)
    return {
        "command": "greedy",
        "database": {"path": str(db.path), "version": db.version, "content_hash": db.content_hash},
        "combination_matrix": str(matrix) if matrix else None,
        "settings": {**asdict(settings), "walkers": walkers, "steps": steps, "seed": seed, "jobs": jobs,
                     "r_threshold": objective.r_threshold, "kappa_clustering": objective.kappa_clustering},
        "hiscores": hiscores,
        "walkers": results,
        "cpu_seconds_walkers": sum(r["cpu_seconds"] for r in results),
        "cpu_seconds_main": time.process_time() - cpu0,
        "wall_seconds": time.perf_counter() - wall0,
    }


def _report(log, result: dict[str, Any]) -> None:
    if log is not None:
        best = result["best_K"]
        print(f"walker {result['walker']}: best K {'-' if best is None else f'{best:.3f}'}, "
              f"{result['cpu_seconds']:.1f} CPU s", file=log, flush=True)


def _greedy(args: argparse.Namespace) -> int:
    from tdmcmc.models.database.cli import default_database
    from tdmcmc.models.protomodel.space import default_space

    settings = WalkerSettings(variant=args.variant)
    doc = run_greedy(args.database or default_database(), walkers=args.walkers, steps=args.steps,
                     seed=args.seed, jobs=args.jobs, combination_matrix=args.combination_matrix,
                     settings=settings, keep=args.keep, log=sys.stderr)
    out = Path(args.output)
    try:
        out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"-o {out}: cannot write ({exc.strerror})") from None
    space = default_space()
    print(f"{args.walkers} walkers x {args.steps} steps: {doc['cpu_seconds_walkers']:.1f} CPU s in walkers, "
          f"{doc['wall_seconds']:.1f} s wall; wrote {out}")
    for entry in doc["hiscores"][:5]:
        print("  " + describe(entry, space))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("greedy", help="the original greedy walk (arXiv:2012.12246) as a baseline",
                       description="Run the greedy random walk of the protomodels paper (arXiv:2012.12246) on "
                                   "the paper target K; walkers run in parallel processes. See docs/greedy.md.")
    p.add_argument("--database", help="SModelS database folder (default: the shipped synthetic demo database)")
    p.add_argument("--combination-matrix",
                   help="combination allow-lists (folder of YAML files or one file); default: "
                        "<database>/../raw/protomodels/combination-matrix if present, else none "
                        "(then only different experiments or sqrt(s) combine)")
    p.add_argument("--walkers", type=int, default=10, help="number of walkers (default 10)")
    p.add_argument("--steps", type=int, default=300, help="steps per walker (default 300)")
    p.add_argument("--seed", type=int, default=0, help="walker i uses seed + i (default 0)")
    p.add_argument("--jobs", type=int, help="worker processes (default: number of CPUs)")
    p.add_argument("--keep", type=int, default=20, help="hiscore entries kept (default 20)")
    p.add_argument("--variant", choices=VARIANTS, default="paper",
                   help="paper (default): the 2020 production code; head: 2024 mass-redraw limit")
    p.add_argument("-o", "--output", required=True, help="output JSON file")
    p.set_defaults(func=_greedy)
