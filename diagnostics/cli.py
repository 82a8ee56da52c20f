"""``tdmcmc summary``, ``tdmcmc diagnose`` and ``tdmcmc report`` on a run file (netCDF or zarr)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``summary``, ``diagnose`` and ``report`` subcommands."""
    p = subparsers.add_parser(
        "summary",
        help="posterior summary tables of a run",
        description="Model probabilities (with uncertainties), inclusion probabilities and "
        "parameter posteriors (median, 68/95 % intervals) of a run file.",
    )
    p.add_argument("run", type=Path, metavar="RUN.nc", help="run file written by `tdmcmc sample`")
    p.add_argument(
        "--max-models", type=int, default=20, help="models listed before lumping the rest as 'other' (default 20)"
    )
    p.set_defaults(func=run_summary)

    p = subparsers.add_parser(
        "diagnose",
        help="convergence diagnostics of a run",
        description="R-hat/ESS/MCSE of model-invariant quantities and inclusion indicators, "
        "conditional R-hat of parameters given their particle is present, "
        "model-probability uncertainty (Heck et al. 2019), Brooks–Giudici check.",
    )
    p.add_argument("run", type=Path, metavar="RUN.nc", help="run file written by `tdmcmc sample`")
    p.add_argument("--json", action="store_true", help="print every diagnostic as JSON (NaN as null)")
    p.set_defaults(func=run_diagnose)

    p = subparsers.add_parser(
        "report",
        help="HTML report with tables and figures",
        description="Write DIR/index.html with summary and diagnostic tables and PNG figures.",
    )
    p.add_argument("run", type=Path, metavar="RUN.nc", help="run file written by `tdmcmc sample`")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DIR", help="folder to write (created if absent)"
    )
    p.set_defaults(func=run_report)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run_summary(args: argparse.Namespace) -> int:
    from tdmcmc.diagnostics.run_file import open_run
    from tdmcmc.diagnostics.summary import format_summary, summary_tables

    run = open_run(args.run)
    print(format_summary(run, summary_tables(run, max_models=args.max_models)))
    return 0


def run_diagnose(args: argparse.Namespace) -> int:
    from tdmcmc.diagnostics.diagnose import diagnose
    from tdmcmc.diagnostics.run_file import open_run

    run = open_run(args.run)
    dx = diagnose(run)
    if args.json:
        print(json.dumps(dx.to_dict(), indent=1, allow_nan=False))
        return 0
    th = dx.thresholds
    print(
        f"{args.run}: {_plural(dx.n_chains, 'chain')} × {dx.n_draws} draws, {len(dx.slots)} {dx.slot_dim}s, "
        f"{dx.models.n_models} models visited, model-sequence ESS {dx.models.heck_ess:.0f} (Heck et al. 2019)"
    )
    print(
        f"thresholds: R-hat < {th.rhat_max}, ESS ≥ {th.ess_min_per_chain:g} per chain, "
        f"Brooks–Giudici ratios < {th.bg_ratio_max}"
    )
    if dx.ok:
        print("all diagnostics pass")
    for w in dx.warnings:
        print(f"WARNING: {w}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from tdmcmc.diagnostics.report import write_report
    from tdmcmc.diagnostics.run_file import open_run

    index = write_report(open_run(args.run), args.output, title=f"tdmcmc report: {args.run.name}")
    print(index)
    return 0
