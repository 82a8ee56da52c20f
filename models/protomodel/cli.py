"""``tdmcmc evaluate MODEL`` (theory predictions and r-values of one protomodel) and
``tdmcmc export-slha MODEL`` (the protomodel as SLHA with XSECTION blocks)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tdmcmc.errors import UserError
from tdmcmc.models.database.cli import default_database
from tdmcmc.models.likelihood.counting import EM_VARIANTS
from tdmcmc.models.likelihood.limits import UL_VARIANTS
from tdmcmc.models.protomodel.target import SR_SELECTIONS


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
    compiled = load_compiled(Path(database) if database else default_database())
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


def evaluate_target(model_path: str | Path, database: str | Path | None = None, *, target: str = "paper",
                    space_path: str | Path | None = None, em_likelihood: str = "2020", ul_likelihood: str = "2020",
                    r_threshold: float = 1.3, combination_matrix: str | Path | None = None, mu: float = 1.0,
                    combination: str = "max", sr_selection: str = "paper") -> dict[str, Any]:
    """The ``--target paper|bayes`` document: K, Z, μ̂, μ_max, r_max, the best combination (paper
    definition) and, per prediction, −ln L at μ = 0 and 1 (``nll_mu0``, ``nll_mu1``; None without a
    likelihood). ``bayes`` adds ``log_ratio`` = ln R(μ) at the given `mu` with the static maximal
    cliques combined by `combination` (``max`` or ``logsumexp``), and ``mu_in_support`` (μ ≤ μ_max).
    `sr_selection`: ``paper``, ``best-expected`` or ``combined`` (:class:`LikelihoodTarget`).

    Uses the topology table of the model's particles (:func:`restrict_space`), like :func:`evaluate_file`.
    """
    from tdmcmc.models.likelihood.options import LikelihoodChoice
    from tdmcmc.models.protomodel.model import read_protomodel
    from tdmcmc.models.protomodel.space import default_space, load_space
    from tdmcmc.models.protomodel.target import LikelihoodTarget
    from tdmcmc.models.protomodel.topologies import restrict_space

    if target not in ("paper", "bayes"):
        raise UserError(f"--target {target}: expected paper or bayes")
    if not (np.isfinite(mu) and mu >= 0):
        raise UserError(f"--mu: expected a signal strength >= 0, got {mu}")
    space = load_space(space_path) if space_path else default_space()
    model = read_protomodel(model_path, space)
    db = Path(database) if database else default_database()
    tgt = LikelihoodTarget(db, combination_matrix, space=restrict_space(space, list(model.masses)),
                           likelihood=LikelihoodChoice(em=em_likelihood, ul=ul_likelihood), r_threshold=r_threshold,
                           combination=combination, sr_selection=sr_selection)
    values, preds, inputs = tgt.evaluate([model])
    flat = tgt.predictor.to_predictions(preds, 1)[0]
    order = np.lexsort((preds.txname, preds.dataset))           # the order of to_predictions
    position = {int(i): k for k, i in enumerate(order)}
    has = tgt.has_likelihood(preds)
    rows = []
    for k, i in enumerate(order):
        row = flat[k].to_dict()
        row["nll_mu0"] = float(values.nll_mu0[i]) if has[i] else None
        row["nll_mu1"] = float(values.nll_mu1[i]) if has[i] else None
        rows.append(row)
    members = [flat[position[i]] for i in tgt.best_combination(values, inputs, 0)]

    def num(x) -> float | None:
        return float(x) if np.isfinite(x) else None

    c = tgt.compiled.database
    extra: dict[str, Any] = {}
    if target == "bayes":
        bayes = tgt.bayes_values(inputs, np.array([mu]))
        extra = {"mu": mu, "log_ratio": float(bayes.log_ratio[0]), "combination_mode": combination,
                 "mu_in_support": bool(mu <= bayes.mu_max[0])}
    doc = {"model": model.name, "model_file": str(model_path), "target": target,
            "database": {"path": str(c.path), "version": c.version, "content_hash": c.content_hash},
            "settings": {"em_likelihood": em_likelihood, "ul_likelihood": ul_likelihood, "r_threshold": r_threshold,
                         "sr_selection": tgt.sr_selection, "combination": "max over maximal cliques (paper)",
                         "combination_matrix": None if _matrix_path(db, combination_matrix) is None
                         else str(_matrix_path(db, combination_matrix)),
                         "xsecs": "injected" if model.xsecs is not None else "fitted"},
            "K": num(values.K[0]), "Z": num(values.Z[0]), "mu_hat": float(values.mu_hat[0]),
            "mu_max": num(values.mu_max[0]), "r_max": float(values.r_max[0]), "log_prior": float(values.log_prior[0]),
            "best_combination": [{"analysis": p.analysis, "dataset": p.dataset, "txnames": list(p.txnames)}
                                 for p in members]}
    return doc | extra | {"predictions": sorted(rows, key=lambda r: -(r["r_obs"] or 0.0))}


def _matrix_path(database: Path, combination_matrix: str | Path | None) -> Path | None:
    from tdmcmc.models.greedy.objective import default_combination_matrix

    return Path(combination_matrix) if combination_matrix else default_combination_matrix(database)


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
    if args.target:
        doc = evaluate_target(args.model, args.database, target=args.target, space_path=args.space,
                              em_likelihood=args.em_likelihood or "2020", ul_likelihood=args.ul_likelihood or "2020",
                              r_threshold=args.r_threshold, combination_matrix=args.combination_matrix,
                              mu=args.mu, combination=args.combination, sr_selection=args.sr_selection)
        print(json.dumps(doc, indent=1) if args.json else _format_target(doc))
        return 0
    doc = evaluate_file(args.model, args.database, space_path=args.space, full_table=args.full_table,
                        sigmacut=args.sigmacut, minmassgap=args.minmassgap, best_dataset=args.best_dataset)
    print(json.dumps(doc, indent=1) if args.json else _format(doc))
    return 0


def _format_target(doc: dict[str, Any]) -> str:
    def num(x: float | None) -> str:
        return "None" if x is None else f"{x:.4g}"

    combo = ", ".join(f"{c['analysis']}:{c['dataset'] or 'UL'}" for c in doc["best_combination"])
    bayes = (f"ln R(mu = {doc['mu']:g}) = {doc['log_ratio']:.4g} ({doc['combination_mode']} over cliques"
             f"{'' if doc['mu_in_support'] else '; mu above mu_max'})\n") if "log_ratio" in doc else ""
    return (f"{doc['model']}: target {doc['target']}: K = {num(doc['K'])}, Z = {num(doc['Z'])}, "
            f"mu_hat = {num(doc['mu_hat'])}, mu_max = {num(doc['mu_max'])}, r_max = {num(doc['r_max'])}\n"
            f"{bayes}best combination: {combo or '(none)'}")


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
    ev.add_argument("--target", choices=("paper", "bayes"),
                    help="also evaluate the likelihood target (paper: K = Z^2 + 2 ln pi, mu profiled on [0, mu_max]; "
                         "bayes: in addition ln R(mu) at --mu)")
    ev.add_argument("--mu", type=float, default=1.0, help="signal strength for --target bayes (default 1)")
    ev.add_argument("--combination", choices=("max", "logsumexp"), default="max",
                    help="bayes: combine the static maximal cliques by max or logsumexp (default max)")
    ev.add_argument("--em-likelihood", choices=EM_VARIANTS, default=None,
                    help="EM signal-region likelihood with --target (default for paper: 2020)")
    ev.add_argument("--ul-likelihood", choices=UL_VARIANTS, default=None,
                    help="UL-map truncated Gaussian with --target (default for paper: 2020)")
    ev.add_argument("--sr-selection", choices=SR_SELECTIONS, default="paper",
                    help="signal regions per EM result with --target: paper = largest UL_obs/UL_exp, best-expected "
                         "= largest r_exp, combined = simplified likelihood over all SRs of results with a "
                         "covariance matrix, best-expected for the others (default: paper)")
    ev.add_argument("--r-threshold", type=float, default=1.3, help="critic threshold r_thr (default 1.3)")
    ev.add_argument("--combination-matrix",
                    help="combination allow-lists (default: <database>/../raw/protomodels/combination-matrix)")
    ev.set_defaults(func=_evaluate)

    ex = sub.add_parser("export-slha", help="write a protomodel as SLHA with XSECTION blocks",
                        description="Write a protomodel as an SLHA file (MASS, DECAY, XSECTION blocks) for SModelS.")
    ex.add_argument("model", help="protomodel file (.json or .toml)")
    ex.add_argument("-o", "--output", help="output file (default: standard output)")
    ex.add_argument("--space", help="protomodel space TOML (default: the paper's 20-particle space)")
    ex.set_defaults(func=_export_slha)
