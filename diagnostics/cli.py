"""``tdmcmc summary``, ``tdmcmc diagnose``, ``tdmcmc report`` on a run file (netCDF or zarr), and
``tdmcmc compare`` of a run with a greedy walk."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``summary``, ``diagnose``, ``report`` and ``compare`` subcommands."""
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

    p = subparsers.add_parser(
        "compare",
        help="a sampler run side by side with a greedy walk",
        description="Best K against CPU seconds for both, particle-set and inclusion frequencies "
        "(posterior vs greedy hiscores and accepted states), and the greedy hiscores placed in the "
        "posterior (set probability and rank, K and mass quantiles). See docs/compare.md.",
    )
    p.add_argument("run", type=Path, metavar="RUN.nc", help="run file written by `tdmcmc sample`")
    p.add_argument("greedy", type=Path, metavar="GREEDY.json", help="output of `tdmcmc greedy`")
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="also write DIR/index.html and PNG figures")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (NaN as null)")
    p.add_argument("--hiscores", type=int, default=1, help="hiscore entries placed in the posterior (default 1)")
    p.add_argument("--max-sets", type=int, default=15, help="particle sets listed per column (default 15)")
    p.add_argument(
        "--min-set-draws",
        type=int,
        default=100,
        help="mass intervals conditional on the hiscore's particle set when it has this many draws, "
        "else on each particle being active (default 100)",
    )
    p.set_defaults(func=run_compare)


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


def run_compare(args: argparse.Namespace) -> int:
    from tdmcmc.diagnostics.compare import compare, format_comparison, read_greedy
    from tdmcmc.diagnostics.run_file import open_run

    run = open_run(args.run)
    comparison = compare(
        run,
        read_greedy(args.greedy),
        run_name=str(args.run),
        max_sets=args.max_sets,
        n_hiscores=args.hiscores,
        min_set_draws=args.min_set_draws,
    )
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=1, allow_nan=False))
    else:
        print(format_comparison(comparison))
    if args.output is not None:
        from tdmcmc.diagnostics.compare_plots import write_compare_report

        index = write_compare_report(run, comparison, args.output)
        if not args.json:
            print(f"wrote {index}")
    return 0
