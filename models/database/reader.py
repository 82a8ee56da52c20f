"""Loading a SModelS text database folder into typed records (:mod:`.records`).

Layout: ``<db>/version`` and ``<db>/<sqrts>/<experiment>/<folder>/globalInfo.txt``, one sub-folder
per dataset with ``dataInfo.txt`` and one ``<TxName>.txt`` per map. Any folder holding a
``globalInfo.txt`` is a result, as in SModelS.

Every problem raises one :class:`~.textfile.DatabaseError` naming file, line and key. With
``skip_invalid=True`` the offending file's owner is left out instead (a txname file, a dataset, or
a whole result for a bad ``globalInfo.txt``), and listed in ``Database.skipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tdmcmc.models.database import constraints as cparse
from tdmcmc.models.database.axes import parse_axes, parse_axes_map
from tdmcmc.models.database.maps import MapError, point_offset, read_map
from tdmcmc.models.database.records import (
    EFFICIENCY_MAP,
    UPPER_LIMIT,
    Database,
    Dataset,
    GlobalInfo,
    JsonChannel,
    Result,
    Skipped,
    TxName,
)
from tdmcmc.models.database.textfile import DatabaseError, Entry, read_entries
from tdmcmc.models.database.units import DIMENSIONLESS, ENERGY, INV_XSEC, XSEC, Quantity
from tdmcmc.models.database.values import ValueSyntaxError, parse_value

GLOBAL_INFO = "globalInfo.txt"
DATA_INFO = "dataInfo.txt"
PROGRESS = Callable[[int, int], None]


# ---------------------------------------------------------------- value converters


def _parsed(path: Path, entry: Entry) -> Any:
    try:
        return parse_value(entry.value)
    except ValueSyntaxError as exc:
        raise DatabaseError(path, str(exc), entry.line_of(exc.offset), entry.key) from None


def _quantity(path: Path, entry: Entry, dim: tuple[int, int]) -> float:
    value = _parsed(path, entry)
    if isinstance(value, Quantity) and value.dim == dim:
        return value.value
    if dim == DIMENSIONLESS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    want = Quantity(1.0, dim).describe_dim()
    got = value.describe_dim() if isinstance(value, Quantity) else f"{value!r} (no unit)"
    raise DatabaseError(path, f"expected {want}, got {got}", entry.line, entry.key)


def _number(path: Path, entry: Entry, *, minimum: float | None = 0.0) -> float:
    value = _quantity(path, entry, DIMENSIONLESS)
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        raise DatabaseError(path, f"must be a finite number >= {minimum}, got {entry.value!r}", entry.line, entry.key)
    return value


def _string_list(path: Path, entry: Entry) -> tuple[str, ...]:
    value = _parsed(path, entry)
    items = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(v, str) for v in items):
        raise DatabaseError(path, f"expected a list of names, got {entry.value[:60]!r}", entry.line, entry.key)
    return tuple(items)


def _bool(path: Path, entry: Entry) -> bool:
    value = _parsed(path, entry)
    if not isinstance(value, bool):
        raise DatabaseError(path, f"expected True or False, got {entry.value!r}", entry.line, entry.key)
    return value


def _entries(path: Path) -> dict[str, Entry]:
    return {e.key: e for e in read_entries(path)}


def _require(path: Path, entries: dict[str, Entry], *keys: str) -> None:
    for key in keys:
        if key not in entries:
            raise DatabaseError(path, "required key is missing", None, key)


def _text(entries: dict[str, Entry], key: str) -> str | None:
    entry = entries.get(key)
    return entry.value if entry is not None else None


def _extra(entries: dict[str, Entry], known: set[str]) -> dict[str, str]:
    return {k: e.value for k, e in entries.items() if k not in known}


# ---------------------------------------------------------------- globalInfo.txt

_GLOBAL_KEYS = {"id", "sqrts", "lumi", "url", "arxiv", "publication", "contact", "implementedBy", "lastUpdate",
                "supersedes", "supersededBy", "type", "private", "datasetOrder", "covariance", "jsonFiles",
                "jsonFiles_FullLikelihood", "includeCRs"}


def read_global_info(path: Path) -> GlobalInfo:
    """Read and check a ``globalInfo.txt``."""
    e = _entries(path)
    _require(path, e, "id", "sqrts", "lumi")
    order = _string_list(path, e["datasetOrder"]) if "datasetOrder" in e else None
    covariance = _covariance(path, e["covariance"], order) if "covariance" in e else None
    return GlobalInfo(
        id=e["id"].value,
        sqrts=_quantity(path, e["sqrts"], ENERGY) / 1000.0,
        lumi=_positive(path, e["lumi"], INV_XSEC),
        url=_text(e, "url"),
        arxiv=_text(e, "arxiv"),
        publication=_text(e, "publication"),
        contact=_text(e, "contact"),
        implemented_by=_text(e, "implementedBy"),
        last_update=_text(e, "lastUpdate"),
        supersedes=_text(e, "supersedes"),
        superseded_by=_text(e, "supersededBy"),
        type=_text(e, "type"),
        private=_bool(path, e["private"]) if "private" in e else False,
        dataset_order=order,
        covariance=covariance,
        json_files=_json_files(path, e["jsonFiles"]) if "jsonFiles" in e else None,
        json_files_full=_json_files(path, e["jsonFiles_FullLikelihood"]) if "jsonFiles_FullLikelihood" in e else None,
        include_crs=_bool(path, e["includeCRs"]) if "includeCRs" in e else None,
        extra=_extra(e, _GLOBAL_KEYS),
    )


def _positive(path: Path, entry: Entry, dim: tuple[int, int]) -> float:
    value = _quantity(path, entry, dim)
    if not value > 0:
        raise DatabaseError(path, f"must be positive, got {entry.value!r}", entry.line, entry.key)
    return value


def _covariance(path: Path, entry: Entry, order: tuple[str, ...] | None) -> np.ndarray:
    if order is None:
        raise DatabaseError(path, "covariance needs a datasetOrder", entry.line, entry.key)
    value = _parsed(path, entry)
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatabaseError(path, "covariance is not a square matrix of numbers", entry.line, entry.key) from None
    n = len(order)
    if matrix.shape != (n, n):
        raise DatabaseError(path, f"covariance has shape {matrix.shape}, datasetOrder names {n} datasets",
                            entry.line, entry.key)
    if not np.all(np.isfinite(matrix)) or not np.allclose(matrix, matrix.T, rtol=1e-6, atol=0.0):
        raise DatabaseError(path, "covariance is not a finite symmetric matrix", entry.line, entry.key)
    if np.any(np.diag(matrix) < 0):
        raise DatabaseError(path, "covariance has a negative variance on its diagonal", entry.line, entry.key)
    return matrix


def _json_files(path: Path, entry: Entry) -> dict[str, tuple[JsonChannel, ...]]:
    value = _parsed(path, entry)
    if not isinstance(value, dict):
        raise DatabaseError(path, "expected a dict {file name: [datasets]}", entry.line, entry.key)
    out = {}
    for name, items in value.items():
        if not isinstance(name, str) or not isinstance(items, list):
            raise DatabaseError(path, f"entry {name!r} must map a file name to a list", entry.line, entry.key)
        channels = []
        for item in items:
            if isinstance(item, str):  # 1.2.4 form: dataset ids, pyhf name equal to the SModelS one
                channels.append(JsonChannel(item, item, "SR"))
            elif isinstance(item, dict) and isinstance(item.get("pyhf", item.get("smodels")), str):
                smodels = item.get("smodels")
                channels.append(JsonChannel(smodels, item.get("pyhf", smodels), str(item.get("type", "SR"))))
            else:
                raise DatabaseError(path, f"{name!r}: bad channel entry {item!r}", entry.line, entry.key)
        out[name] = tuple(channels)
    return out


# ---------------------------------------------------------------- dataInfo.txt

_DATA_KEYS = {"dataId", "dataType", "observedN", "expectedBG", "bgError", "upperLimit", "expectedUpperLimit",
              "thirdMoment", "aggregated", "jsonfile", "comment"}


def read_data_info(path: Path) -> dict[str, Any]:
    """Read and check a ``dataInfo.txt``; returns the keyword arguments of a :class:`Dataset`."""
    e = _entries(path)
    _require(path, e, "dataType")
    data_type = e["dataType"].value
    if data_type not in (UPPER_LIMIT, EFFICIENCY_MAP):
        raise DatabaseError(path, f"dataType must be {UPPER_LIMIT} or {EFFICIENCY_MAP}, got {data_type!r}",
                            e["dataType"].line, "dataType")
    data_id = _text(e, "dataId")
    fields: dict[str, Any] = {"data_id": None if data_id in (None, "None") else data_id, "data_type": data_type,
                              "jsonfile": _text(e, "jsonfile"), "comment": _text(e, "comment"),
                              "extra": _extra(e, _DATA_KEYS)}
    if data_type == EFFICIENCY_MAP:
        _require(path, e, "dataId", "observedN", "expectedBG", "bgError")
        fields.update(observed_n=_number(path, e["observedN"]), expected_bg=_number(path, e["expectedBG"]),
                      bg_error=_number(path, e["bgError"]))
        for key, name in (("upperLimit", "upper_limit"), ("expectedUpperLimit", "expected_upper_limit")):
            if key in e:
                fields[name] = _positive(path, e[key], XSEC)
        if "thirdMoment" in e:
            fields["third_moment"] = _number(path, e["thirdMoment"], minimum=None)
        if "aggregated" in e:
            fields["aggregated"] = tuple(s.strip() for s in e["aggregated"].value.split(";") if s.strip())
    return fields


# ---------------------------------------------------------------- <TxName>.txt

_TX_KEYS = {"txName", "constraint", "condition", "validated", "source", "axes", "axesMap", "dataMap", "finalState",
            "intermediateState", "upperLimits", "expectedUpperLimits", "efficiencyMap"}


def read_txname(path: Path, data_type: str) -> TxName:
    """Read and check one txname file of a dataset of type `data_type`."""
    e = _entries(path)
    _require(path, e, "txName", "constraint")
    data_key = "upperLimits" if data_type == UPPER_LIMIT else "efficiencyMap"
    wrong = "efficiencyMap" if data_type == UPPER_LIMIT else "upperLimits"
    if wrong in e:
        raise DatabaseError(path, f"{wrong} in a dataset of type {data_type}", e[wrong].line, wrong)
    _require(path, e, data_key)
    data_map = _parsed(path, e["dataMap"]) if "dataMap" in e else None
    if data_map is not None and not (isinstance(data_map, dict) and all(
            isinstance(v, tuple) and len(v) == 3 for v in data_map.values())):
        raise DatabaseError(path, "dataMap must be {column: (node, 'mass'|'totalwidth', unit)}",
                            e["dataMap"].line, "dataMap")
    grids = {key: _grid(path, e[key], XSEC if key != "efficiencyMap" else DIMENSIONLESS, data_map)
             for key in ("upperLimits", "expectedUpperLimits", "efficiencyMap") if key in e}
    axes = _axes(path, e["axes"], parse_axes) if "axes" in e else None
    if axes is not None:
        _check_axes(path, e["axes"], axes, grids[data_key])
    condition_text = _text(e, "condition")
    return TxName(
        name=e["txName"].value,
        path=path,
        constraint_text=e["constraint"].value,
        constraint=_constraint(path, e["constraint"], cparse.parse_constraint),
        condition_text=condition_text,
        condition=_constraint(path, e["condition"], cparse.parse_condition) if condition_text else (),
        validated=_text(e, "validated") or "None",
        source=_text(e, "source"),
        axes=axes,
        axes_map=_axes(path, e["axesMap"], parse_axes_map) if "axesMap" in e else None,
        data_map=data_map,
        final_state=_parsed(path, e["finalState"]) if "finalState" in e else None,
        intermediate_state=_parsed(path, e["intermediateState"]) if "intermediateState" in e else None,
        upper_limits=grids.get("upperLimits"),
        expected_upper_limits=grids.get("expectedUpperLimits"),
        efficiency_map=grids.get("efficiencyMap"),
        extra=_extra(e, _TX_KEYS),
    )


def _axes(path: Path, entry: Entry, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(entry.value)
    except ValueSyntaxError as exc:
        raise DatabaseError(path, str(exc), entry.line_of(exc.offset), entry.key) from None


def _constraint(path: Path, entry: Entry, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(entry.value)
    except cparse.ConstraintSyntaxError as exc:
        line = entry.line_of(max(exc.column - 1, 0)) if exc.column is not None else entry.line
        raise DatabaseError(path, str(exc), line, entry.key) from None


def _grid(path: Path, entry: Entry, dim: tuple[int, int], data_map: dict | None):
    try:
        grid = read_map(entry.value, value_dim=dim, data_map=data_map)
    except MapError as exc:
        raise DatabaseError(path, str(exc), entry.line_of(exc.offset), entry.key) from None
    # Zero limits do occur in real maps (ATLAS-SUSY-2013-02 T5tctc); negative ones never should.
    bad = ~np.isfinite(grid.values) | (grid.values < 0) | ~np.all(np.isfinite(grid.coords), axis=1)
    if np.any(bad):
        i = int(np.argmax(bad))
        what = "upper limit" if dim == XSEC else "efficiency"
        raise DatabaseError(path, f"grid point {i + 1}: {what} {float(grid.values[i])!r} must be finite and >= 0",
                            entry.line_of(point_offset(entry.value, i)), entry.key)
    return grid


def _check_axes(path: Path, entry: Entry, axes, grid) -> None:
    """Each plane must have the branch lengths of the data points (v1/v2 grids only)."""
    if grid.layout[0].branch is None:
        return
    lengths = [0] * (max(c.branch for c in grid.layout) + 1)
    for c in grid.layout:
        if c.quantity == "mass":
            lengths[c.branch] += 1
    for k, plane in enumerate(axes):
        if [len(b) for b in plane] != lengths:
            raise DatabaseError(path, f"axes plane {k + 1} has branch lengths {[len(b) for b in plane]}, "
                                      f"the data points {lengths}", entry.line, entry.key)


# ---------------------------------------------------------------- folders


def _read_all(paths: list[Path], read: Callable[[Path], Any], skip: list[Skipped] | None,
              progress: PROGRESS | None = None) -> list[Any]:
    """`read` every path; without `skip` the first error propagates, with it bad paths are listed."""
    out = []
    for i, path in enumerate(paths):
        try:
            out.append(read(path))
        except DatabaseError as exc:
            if skip is None:
                raise
            skip.append(Skipped(path, str(exc)))
        if progress:
            progress(i + 1, len(paths))
    return out


def _is_txname_file(path: Path) -> bool:
    return path.suffix == ".txt" and path.name not in (DATA_INFO, GLOBAL_INFO)


def read_dataset(folder: Path, skip: list[Skipped] | None) -> Dataset:
    """Read a dataset folder; with `skip` given, bad txname files are skipped into it."""
    fields = read_data_info(folder / DATA_INFO)
    txnames = _read_all(sorted(p for p in folder.iterdir() if _is_txname_file(p)),
                        lambda p: read_txname(p, fields["data_type"]), skip)
    return Dataset(path=folder, txnames=tuple(txnames), **fields)


def read_result(folder: Path, skip: list[Skipped] | None = None) -> Result:
    """Read one analysis folder and check its cross-file consistency."""
    info = read_global_info(folder / GLOBAL_INFO)
    datasets = _read_all(sorted(p for p in folder.iterdir() if (p / DATA_INFO).is_file()),
                         lambda p: read_dataset(p, skip), skip)
    if not datasets:
        raise DatabaseError(folder / GLOBAL_INFO, "result has no dataset folder with a dataInfo.txt")
    types = {ds.data_type for ds in datasets}
    if len(types) > 1:
        raise DatabaseError(folder / GLOBAL_INFO, f"result mixes dataset types {sorted(types)}")
    _check_references(folder, info, datasets)
    experiment = folder.parent.name if folder.parent.name in ("ATLAS", "CMS") else info.id.split("-")[0]
    return Result(info=info, path=folder, experiment=experiment, datasets=tuple(datasets))


def _check_references(folder: Path, info: GlobalInfo, datasets: list[Dataset]) -> None:
    ids = {ds.data_id for ds in datasets}
    path = folder / GLOBAL_INFO
    for name in info.dataset_order or ():
        if name not in ids:
            raise DatabaseError(path, f"datasetOrder names {name!r}, which is not a dataset of this result",
                                None, "datasetOrder")
    for key, files in (("jsonFiles", info.json_files), ("jsonFiles_FullLikelihood", info.json_files_full)):
        for fname, channels in (files or {}).items():
            for ch in channels:
                if ch.smodels is not None and ch.smodels not in ids:
                    raise DatabaseError(path, f"{fname!r} names dataset {ch.smodels!r}, which does not exist",
                                        None, key)


def result_folders(root: Path) -> Iterator[Path]:
    """Every folder below `root` holding a globalInfo.txt, in sorted order."""
    for info in sorted(root.rglob(GLOBAL_INFO)):
        yield info.parent


def read_version(root: Path) -> str:
    version = root / "version"
    return version.read_text(encoding="utf-8").strip() if version.is_file() else "unknown"


def read_database(root: Path, *, skip_invalid: bool = False, content_hash: str = "",
                  progress: PROGRESS | None = None) -> Database:
    """Read every result below `root` (no caching; see :func:`.compiled.load_database`)."""
    root = Path(root)
    if not root.is_dir():
        raise DatabaseError(root, "database folder does not exist")
    folders = list(result_folders(root))
    if not folders:
        raise DatabaseError(root, "no globalInfo.txt found: not a SModelS database folder")
    skip: list[Skipped] | None = [] if skip_invalid else None
    results = _read_all(folders, lambda p: read_result(p, skip), skip, progress)
    return Database(path=root.resolve(), version=read_version(root), results=tuple(results),
                    content_hash=content_hash, skipped=tuple(skip or ()))
