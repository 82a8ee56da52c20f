"""Counts and facts about a database, as printed by ``tdmcmc db info``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tdmcmc.models.database.records import EFFICIENCY_MAP, UPPER_LIMIT, Database


def summarize(db: Database) -> dict[str, Any]:
    """The database's counts (JSON-serialisable).

    ``n_results`` counts analysis folders, ``n_analyses`` distinct ids (an UL and an EM folder of
    one analysis share an id). ``n_txnames`` counts txname files read; ``n_txnames_all_zero`` the
    efficiency maps whose efficiencies are all zero, which SModelS drops silently.
    """
    datasets = db.datasets
    txnames = db.txnames
    by_group = Counter(f"{r.experiment} {r.info.sqrts:g} TeV" for r in db.results)
    return {
        "path": str(db.path),
        "version": db.version,
        "content_hash": db.content_hash,
        "n_results": len(db.results),
        "n_analyses": len({r.id for r in db.results}),
        "n_ul_results": sum(r.data_type == UPPER_LIMIT for r in db.results),
        "n_em_results": sum(r.data_type == EFFICIENCY_MAP for r in db.results),
        "n_em_datasets": sum(ds.data_type == EFFICIENCY_MAP for ds in datasets),
        "n_ul_datasets": sum(ds.data_type == UPPER_LIMIT for ds in datasets),
        "n_txnames": len(txnames),
        "n_txnames_all_zero": sum(tx.all_zero for tx in txnames),
        "n_txnames_with_expected_ul": sum(tx.expected_upper_limits is not None for tx in txnames),
        "n_distinct_txnames": len({tx.name for tx in txnames}),
        "n_grid_points": sum(g.n_points for tx in txnames
                             for g in (tx.upper_limits, tx.expected_upper_limits, tx.efficiency_map) if g is not None),
        "n_covariance_results": sum(r.info.covariance is not None for r in db.results),
        "n_third_moment_datasets": sum(ds.third_moment is not None for ds in datasets),
        "n_pyhf_results": sum(bool(r.info.json_files) for r in db.results),
        "missing_json_files": [f"{r.folder}/{name}" for r in db.results for name in r.missing_json_files],
        "n_superseded_results": sum(bool(r.info.superseded_by) for r in db.results),
        "results_by_experiment": dict(sorted(by_group.items())),
        "sqrts_tev": sorted({r.info.sqrts for r in db.results}),
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in db.skipped],
    }


def format_summary(info: dict[str, Any]) -> str:
    """A human-readable table of :func:`summarize`'s output."""
    lines = [f"SModelS database {info['path']}", f"  version       {info['version']}",
             f"  content hash  {info['content_hash']}"]
    labels = {
        "n_results": "analysis folders", "n_analyses": "distinct analysis ids",
        "n_ul_results": "upper-limit results", "n_em_results": "efficiency-map results",
        "n_em_datasets": "EM datasets (signal regions)", "n_ul_datasets": "UL datasets",
        "n_txnames": "txname files", "n_distinct_txnames": "distinct txnames",
        "n_txnames_all_zero": "all-zero efficiency maps", "n_txnames_with_expected_ul": "UL maps with expected ULs",
        "n_grid_points": "grid points", "n_covariance_results": "results with covariance",
        "n_third_moment_datasets": "SRs with third moments", "n_pyhf_results": "results with pyhf JSON",
        "n_superseded_results": "superseded results",
    }
    lines += [f"  {info[k]:>10,}  {label}" for k, label in labels.items()]
    lines.append("  by experiment and sqrt(s): " + ", ".join(f"{k}: {v}" for k, v in info["results_by_experiment"].items()))
    if info["missing_json_files"]:
        lines.append("  pyhf files named but missing: " + ", ".join(info["missing_json_files"]))
    if info["skipped"]:
        lines.append(f"  skipped {len(info['skipped'])} invalid file(s):")
        lines += [f"    {s['reason']}" for s in info["skipped"]]
    return "\n".join(lines)
