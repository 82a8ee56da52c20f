"""``tdmcmc evaluate MODEL`` (theory predictions and r-values of one protomodel) and
``tdmcmc export-slha MODEL`` (the protomodel as SLHA with XSECTION blocks)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def evaluate_file(model_path: str | Path, database: str | Path | None = None, *, space_path: str | Path | None = None,
                  full_table: bool = False, sigmacut: float | None = None, minmassgap: float | None = None,
                  best_dataset: bool = False) -> dict[str, Any]:
    """Predictions of the protomodel in `model_path` on `database` as the ``--json`` document.

    By default the topology table is built (and cached) for the sub-space of the model's particles,
    which gives the same predictions as the full space's table, in seconds instead of a minute.
    ``best_dataset`` keeps one signal region per EM analysis, the best expected (SModelS'
    ``useBestDataset=True``, the critic set of the protomodels code).
    """
    from tdmcmc.models.database.compiled import load_compiled
    from tdmcmc.models.protomodel.model import read_protomodel
    from tdmcmc.models.protomodel.predictions import MapInterpolators, Predictor, best_expected
    from tdmcmc.models.protomodel.space import default_space, load_space
    from tdmcmc.models.protomodel.topologies import MINMASSGAP_GEV, SIGMACUT_FB, load_table, restrict_space

    space = load_space(space_path) if space_path else default_space()
    model = read_protomodel(model_path, space)
    compiled = load_compiled(Path(database) if database else _default_database())
    sub = space if full_table else restrict_space(space, list(model.masses))
    table = load_table(sub, compiled, minmassgap=MINMASSGAP_GEV if minmassgap is None else minmassgap,
                       sigmacut=SIGMACUT_FB if sigmacut is None else sigmacut)
    predictor = Predictor(table, compiled, sub, MapInterpolators(compiled, cache=True))
    predictions = predictor.predict(model)
    if best_dataset:
        predictions = best_expected(predictions)
    predictions = sorted(predictions, key=lambda p: -(p.r_obs or 0.0))
    db = compiled.database
    produced = set(table.channels)
    ignored = sorted({x.pair for x in model.xsecs or () if x.pair not in produced})
    return {
        "model": model.name,
        "model_file": str(model_path),
        "database": {"path": str(db.path), "version": db.version, "content_hash": db.content_hash},
        "settings": {"sigmacut_fb": table.sigmacut, "minmassgap_GeV": table.minmassgap,
                     "max_compressions": table.max_compressions, "max_mass_dist": predictor.max_mass_dist,
                     "best_dataset": best_dataset,
                     "xsecs": "injected" if model.xsecs is not None else "fitted"},
        "ignored_xsecs": [list(pair) for pair in ignored],  # injected pairs the space does not produce
        "predictions": [p.to_dict() for p in predictions],
    }


def _default_database() -> Path:
    from tdmcmc.models.database.synthetic import demo_database_path

    return demo_database_path()


def _format(doc: dict[str, Any]) -> str:
    rows = doc["predictions"]
    db = doc["database"]
    head = (f"{doc['model']}: {len(rows)} predictions on {db['path']} (version {db['version']}), "
            f"sigmacut {doc['settings']['sigmacut_fb']} fb, minmassgap {doc['settings']['minmassgap_GeV']} GeV, "
            f"cross sections {doc['settings']['xsecs']}")
    lines = [head, f"{'analysis':<22} {'dataset':<28} {'txnames':<22} {'xsec_fb':>11} {'ul_obs_fb':>11} "
                   f"{'ul_exp_fb':>11} {'r_obs':>8} {'r_exp':>8}"]

    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for p in rows:
        lines.append(f"{p['analysis']:<22} {(p['dataset'] or '(UL)')[:28]:<28} {','.join(p['txnames'])[:22]:<22} "
                     f"{num(p['xsec_fb'], '11.4g')} {num(p['ul_obs_fb'], '11.4g')} {num(p['ul_exp_fb'], '11.4g')} "
                     f"{num(p['r_obs'], '8.3f')} {num(p['r_exp'], '8.3f')}")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    doc = evaluate_file(args.model, args.database, space_path=args.space, full_table=args.full_table,
                        sigmacut=args.sigmacut, minmassgap=args.minmassgap, best_dataset=args.best_dataset)
    print(json.dumps(doc, indent=1) if args.json else _format(doc))
    return 0


def _export_slha(args: argparse.Namespace) -> int:
    from tdmcmc.models.protomodel.model import read_protomodel
    from tdmcmc.models.protomodel.slha import to_slha
    from tdmcmc.models.protomodel.space import default_space, load_space

    space = load_space(args.space) if args.space else default_space()
    text = to_slha(read_protomodel(args.model, space), space)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="theory predictions and r-values of one protomodel",
                        description="Theory predictions (sigma x BR (x eff)) and r-values of a protomodel "
                                    "(JSON or TOML) on a SModelS database, with SModelS 3 semantics.")
    ev.add_argument("model", help="protomodel file (.json or .toml)")
    ev.add_argument("--database", help="SModelS database folder (default: the shipped synthetic demo database)")
    ev.add_argument("--space", help="protomodel space TOML (default: the paper's 20-particle space)")
    ev.add_argument("--json", action="store_true", help="print a JSON document")
    ev.add_argument("--full-table", action="store_true",
                    help="use the topology table of the whole space (built once, about a minute) instead of "
                         "the model's particles only")
    ev.add_argument("--sigmacut", type=float, help="minimal sigma x BR of an element in fb (default 0.02)")
    ev.add_argument("--minmassgap", type=float, help="mass compression threshold in GeV (default 10)")
    ev.add_argument("--best-dataset", action="store_true",
                    help="one signal region per efficiency-map analysis: the best expected (SModelS useBestDataset)")
    ev.set_defaults(func=_evaluate)

    ex = sub.add_parser("export-slha", help="write a protomodel as SLHA with XSECTION blocks",
                        description="Write a protomodel as an SLHA file (MASS, DECAY, XSECTION blocks) for SModelS.")
    ex.add_argument("model", help="protomodel file (.json or .toml)")
    ex.add_argument("-o", "--output", help="output file (default: standard output)")
    ex.add_argument("--space", help="protomodel space TOML (default: the paper's 20-particle space)")
    ex.set_defaults(func=_export_slha)
