"""Selecting results, datasets and txnames, with SModelS' semantics.

Mirrors ``Database.getExpResults(analysisIDs, datasetIDs, txnames, dataTypes, useNonValidated)``:
patterns are shell-style (``*`` wildcards, as SModelS' ``fnmatch``), an empty selection means all.
Superseded results (``supersededBy`` set) are left out unless asked for, as with the paper's
``--nosuperseded``. Validation follows SModelS: by default a txname is dropped only when its
``validated`` flag is ``False`` (``N/A``, ``tbd`` and a missing flag are kept); ``"strict"`` keeps
only ``True`` (the paper's ``--onlyvalidated``); ``"all"`` keeps everything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Literal

from tdmcmc.models.database.records import Database, Dataset, Result, TxName

Validation = Literal["smodels", "strict", "all"]


def _match(name: str | None, patterns: Sequence[str] | None) -> bool:
    return not patterns or any(fnmatchcase(name or "None", p) for p in patterns)


def _keep_txname(tx: TxName, validation: Validation) -> bool:
    if validation == "all":
        return True
    flag = tx.is_validated
    return flag is True if validation == "strict" else flag is not False


def select(
    db: Database,
    *,
    analyses: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    txnames: Sequence[str] | None = None,
    data_types: Sequence[str] | None = None,
    validation: Validation = "smodels",
    include_superseded: bool = False,
    only_with_expected: bool = False,
    drop_empty: bool = True,
) -> Database:
    """A filtered copy of `db`.

    Args:
        analyses: id patterns (matched against the analysis id and the folder name, so both
            ``CMS-SUS-16-050`` and ``ATLAS-SUSY-2016-16-eff`` work).
        datasets: dataset id patterns (``None`` is the id of UL datasets).
        txnames: txname patterns, e.g. ``["T2*", "TChiWZ"]``.
        data_types: ``upperLimit`` and/or ``efficiencyMap``.
        validation: ``smodels`` (drop ``validated: False``), ``strict`` (keep only True), ``all``.
        include_superseded: keep results whose globalInfo has ``supersededBy``.
        only_with_expected: keep UL txnames only when they have expected upper limits.
        drop_empty: drop datasets and results left without txnames.
    """
    if validation not in ("smodels", "strict", "all"):
        raise ValueError(f"validation must be 'smodels', 'strict' or 'all', not {validation!r}")
    results: list[Result] = []
    for res in db.results:
        if res.info.superseded_by and not include_superseded:
            continue
        if not (_match(res.id, analyses) or _match(res.folder, analyses)):
            continue
        kept: list[Dataset] = []
        for ds in res.datasets:
            if not _match(ds.data_id, datasets) or (data_types and ds.data_type not in data_types):
                continue
            txs = tuple(tx for tx in ds.txnames if _match(tx.name, txnames) and _keep_txname(tx, validation)
                        and not (only_with_expected and tx.upper_limits is not None
                                 and tx.expected_upper_limits is None))
            if txs or not drop_empty:
                kept.append(dataclasses.replace(ds, txnames=txs))
        if kept or not drop_empty:
            results.append(dataclasses.replace(res, datasets=tuple(kept)))
    return dataclasses.replace(db, results=tuple(results))
