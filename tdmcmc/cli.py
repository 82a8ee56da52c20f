"""The ``tdmcmc`` command line. The one place that wires engine, models and diagnostics together;
each subcommand group lives with its layer and is imported lazily, so ``tdmcmc --help`` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tdmcmc import __version__
from tdmcmc.errors import UserError


def _register_db(sub: argparse._SubParsersAction) -> None:
    from tdmcmc.models.database import cli as db_cli

    db_cli.register(sub)


# Each entry adds one top-level subcommand (with its own sub-subcommands).
_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_register_db, lambda sub: __import__("tdmcmc.sample_cli", fromlist=["register"]).register(sub), lambda sub: __import__("tdmcmc.diagnostics.cli", fromlist=["register"]).register(sub), lambda sub: __import__("tdmcmc.models.protomodel.cli", fromlist=["register"]).register(sub), lambda sub: __import__("tdmcmc.models.greedy.cli", fromlist=["register"]).register(sub)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdmcmc",
        description="Reversible-jump MCMC over SModelS protomodels.",
    )
    parser.add_argument("--version", action="version", version=f"tdmcmc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"tdmcmc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
