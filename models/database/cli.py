"""``tdmcmc db info|validate|compile|fetch``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path



def _progress(label: str):
    """A one-line progress display on stderr when it is a terminal (no output otherwise)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int | None) -> None:
        end = "\n" if total is not None and done >= total else ""
        print(f"\r{label} {done}/{total if total else '?'}", end=end, file=sys.stderr, flush=True)

    return show


def default_database() -> Path:
    """The shipped synthetic demo database, used when no path is given."""
    from tdmcmc.models.database.synthetic import demo_database_path

    return demo_database_path()


def _load(args: argparse.Namespace, *, use_cache: bool = True):
    from tdmcmc.models.database.compiled import load_compiled

    path = Path(args.path) if args.path else default_database()
    return load_compiled(path, skip_invalid=args.skip_invalid, use_cache=use_cache,
                         progress=_progress("reading results"))


def _info(args: argparse.Namespace) -> int:
    from tdmcmc.models.database.summary import format_summary, summarize

    info = summarize(_load(args, use_cache=not args.no_cache).database)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from tdmcmc.models.database.reader import read_database

    path = Path(args.path) if args.path else default_database()
    db = read_database(path, skip_invalid=True, progress=_progress("checking results"))
    problems = [{"path": str(s.path), "reason": s.reason} for s in db.skipped]
    if args.json:
        print(json.dumps({"path": str(db.path), "n_results": len(db.results), "problems": problems}, indent=2))
    else:
        for p in problems:
            print(p["reason"])
        print(f"{db.path}: {len(db.results)} results read, {len(problems)} problem(s)")
    return 1 if problems else 0


def _compile(args: argparse.Namespace) -> int:
    from tdmcmc.disk_cache import cache_dir

    start = time.perf_counter()
    compiled = _load(args)
    db = compiled.database
    print(f"{db.path}: {len(db.results)} results, {len(compiled.arrays.map_values)} grids, "
          f"content hash {db.content_hash}, cache {cache_dir() / 'db'} ({time.perf_counter() - start:.2f} s)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from tdmcmc.models.database.fetch import fetch

    root = fetch(args.name, url=args.url, dest=Path(args.dest) if args.dest else None, force=args.force,
                 progress=_progress("downloaded bytes"))
    print(root)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="read, check, compile and fetch SModelS databases",
                        description="Read, check, compile and fetch SModelS text databases.")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    def with_path(p: argparse.ArgumentParser) -> None:
        p.add_argument("path", nargs="?", help="database folder (default: the shipped synthetic demo database)")
        p.add_argument("--skip-invalid", action="store_true",
                       help="load what can be read and list the invalid files instead of stopping at the first")

    info = dbsub.add_parser("info", help="counts of results, datasets, txnames, grids")
    with_path(info)
    info.add_argument("--json", action="store_true", help="print a JSON object")
    info.add_argument("--no-cache", action="store_true", help="parse the text files even if a compiled copy exists")
    info.set_defaults(func=_info)

    validate = dbsub.add_parser("validate", help="check every file and list all problems (exit 1 if any)")
    validate.add_argument("path", nargs="?", help="database folder (default: the demo database)")
    validate.add_argument("--json", action="store_true", help="print a JSON object")
    validate.set_defaults(func=_validate)

    comp = dbsub.add_parser("compile", help="build the compiled (numpy) form into the cache")
    with_path(comp)
    comp.set_defaults(func=_compile)

    fetch = dbsub.add_parser("fetch", help="download and unpack an official SModelS database release")
    fetch.add_argument("name", help="release name (e.g. 1.2.4, 3.0.0) or an archive URL")
    fetch.add_argument("--url", help="archive URL to use instead of the release's (https://, file://)")
    fetch.add_argument("--dest", help="cache folder (default: $TDMCMC_CACHE_DIR or ~/.cache/tdmcmc)")
    fetch.add_argument("--force", action="store_true", help="download again even if already unpacked")
    fetch.set_defaults(func=_fetch)


