"""The compiled form of a database (numpy arrays) and its on-disk cache.

:func:`load_database` is the entry point the rest of tdmcmc uses. A cold load parses the text
files (:mod:`.reader`) and builds :class:`DatabaseArrays`; both are pickled under a key made of
the database's content hash and the reader's format version, so a later load of the same content
is a single unpickle. The content hash (BLAKE2b over the sorted relative paths and bytes of every
file) is memoised against a manifest of (path, size, mtime) so that a warm load does not re-read
100 MB to find its key.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tdmcmc.models.database.reader import PROGRESS, read_database
from tdmcmc.disk_cache import atomic_write, cache_dir, load_pickle, save_pickle
from tdmcmc.models.database.records import EFFICIENCY_MAP, Database

# Part of every cache key: the reader's own source, so any change to parsing, records or arrays
# makes old entries unreachable (a stale pickle could otherwise hold objects of an older layout).
_READER_MODULES = ("axes", "compiled", "constraints", "maps", "reader", "records", "textfile", "units", "values")


def _reader_version() -> str:
    h = hashlib.blake2b(digest_size=6)
    for name in _READER_MODULES:
        h.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class DatabaseArrays:
    """Flat numpy views of a database, indexed by result, dataset and map.

    Datasets are numbered in database order (results sorted by folder path, datasets by name);
    per-SR columns are NaN for upper-limit datasets. Units: √s in TeV, luminosity in fb⁻¹, limits
    in fb, counts in events. ``map_*`` rows are one per (dataset, txname, grid), with ``map_kind``
    0 = observed UL, 1 = expected UL, 2 = efficiency; ``map_coords[i]`` is (n_points, n_coords) GeV.
    ``covariances`` maps a result index to (dataset indices in datasetOrder order, matrix events²).
    """

    result_id: np.ndarray
    result_folder: np.ndarray
    result_experiment: np.ndarray
    result_sqrts: np.ndarray
    result_lumi: np.ndarray
    result_is_em: np.ndarray
    dataset_result: np.ndarray
    dataset_id: np.ndarray
    observed_n: np.ndarray
    expected_bg: np.ndarray
    bg_error: np.ndarray
    upper_limit: np.ndarray
    expected_upper_limit: np.ndarray
    third_moment: np.ndarray
    map_dataset: np.ndarray
    map_txname: np.ndarray
    map_kind: np.ndarray
    map_coords: tuple[np.ndarray, ...]
    map_values: tuple[np.ndarray, ...]
    covariances: dict[int, tuple[np.ndarray, np.ndarray]]


MAP_OBSERVED_UL, MAP_EXPECTED_UL, MAP_EFFICIENCY = 0, 1, 2


def compile_arrays(db: Database) -> DatabaseArrays:
    """Build the flat arrays of `db` (cheap next to parsing; done once per cold load)."""
    res_rows, ds_rows, map_rows, coords, values, covs = [], [], [], [], [], {}
    for r_i, res in enumerate(db.results):
        res_rows.append((res.id, res.folder, res.experiment, res.info.sqrts, res.info.lumi,
                         res.data_type == EFFICIENCY_MAP))
        first = len(ds_rows)
        for ds in res.datasets:
            d_i = len(ds_rows)
            ds_rows.append((r_i, ds.data_id or "", *(np.nan if v is None else v for v in (
                ds.observed_n, ds.expected_bg, ds.bg_error, ds.upper_limit, ds.expected_upper_limit,
                ds.third_moment))))
            for tx in ds.txnames:
                for kind, grid in ((MAP_OBSERVED_UL, tx.upper_limits), (MAP_EXPECTED_UL, tx.expected_upper_limits),
                                   (MAP_EFFICIENCY, tx.efficiency_map)):
                    if grid is not None:
                        map_rows.append((d_i, tx.name, kind))
                        coords.append(grid.coords)
                        values.append(grid.values)
        if res.info.covariance is not None:
            index = {res.datasets[k].data_id: first + k for k in range(len(res.datasets))}
            covs[r_i] = (np.array([index[d] for d in res.info.dataset_order]), res.info.covariance)
    rc = list(zip(*res_rows)) or [()] * 6
    dc = list(zip(*ds_rows)) or [()] * 8
    mc = list(zip(*map_rows)) or [()] * 3
    return DatabaseArrays(
        result_id=np.array(rc[0], dtype=str), result_folder=np.array(rc[1], dtype=str),
        result_experiment=np.array(rc[2], dtype=str), result_sqrts=np.array(rc[3], dtype=float),
        result_lumi=np.array(rc[4], dtype=float), result_is_em=np.array(rc[5], dtype=bool),
        dataset_result=np.array(dc[0], dtype=np.int64), dataset_id=np.array(dc[1], dtype=str),
        observed_n=np.array(dc[2], dtype=float), expected_bg=np.array(dc[3], dtype=float),
        bg_error=np.array(dc[4], dtype=float), upper_limit=np.array(dc[5], dtype=float),
        expected_upper_limit=np.array(dc[6], dtype=float), third_moment=np.array(dc[7], dtype=float),
        map_dataset=np.array(mc[0], dtype=np.int64), map_txname=np.array(mc[1], dtype=str),
        map_kind=np.array(mc[2], dtype=np.int8), map_coords=tuple(coords), map_values=tuple(values),
        covariances=covs,
    )


@dataclass(frozen=True, eq=False)
class CompiledDatabase:
    """A database's records and arrays, as stored in the cache."""

    database: Database
    arrays: DatabaseArrays


def _manifest(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime) of every database file. SModelS writes its own pickles
    (``db3.pcl``, ``.db3.pcl`` in every result folder) into the database it reads; they are not
    database content and are left out, so running SModelS on a folder does not invalidate ours."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(n for n in filenames if not n.endswith(".pcl")):
            st = os.stat(os.path.join(dirpath, name))
            rows.append((os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns))
    return rows


def content_hash(root: Path, manifest: list[tuple[str, int, int]] | None = None) -> str:
    """BLAKE2b-160 over the sorted relative paths and contents of every file below `root`."""
    h = hashlib.blake2b(digest_size=20)
    for rel, _, _ in manifest if manifest is not None else _manifest(root):
        h.update(rel.encode() + b"\0")
        h.update((root / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def cached_content_hash(root: Path, where: Path) -> str:
    """The content hash of `root`, recomputed only when its manifest changed since last time."""
    root = root.resolve()
    manifest = _manifest(root)
    memo = where / "manifests" / (hashlib.blake2b(str(root).encode(), digest_size=12).hexdigest() + ".json")
    digest = hashlib.blake2b(json.dumps(manifest).encode(), digest_size=20).hexdigest()
    try:
        saved = json.loads(memo.read_text())
        if saved["manifest"] == digest:
            return saved["content_hash"]
    except (OSError, ValueError, KeyError):
        pass
    chash = content_hash(root, manifest)
    atomic_write(memo, json.dumps({"root": str(root), "manifest": digest, "content_hash": chash}).encode())
    return chash


def load_compiled(root: Path | str, *, skip_invalid: bool = False, use_cache: bool = True,
                  progress: PROGRESS | None = None) -> CompiledDatabase:
    """Load `root` with its arrays, from the cache when its content was compiled before."""
    root = Path(root)
    where = cache_dir()
    if not use_cache:
        db = read_database(root, skip_invalid=skip_invalid, content_hash=content_hash(root.resolve()),
                           progress=progress)
        return CompiledDatabase(db, compile_arrays(db))
    if not root.is_dir():
        read_database(root)  # raises the reader's error for a missing folder
    chash = cached_content_hash(root, where)
    entry = where / "db" / f"{chash}-{_reader_version()}{'-skip' if skip_invalid else ''}.pkl"
    compiled = load_pickle(entry, CompiledDatabase)
    if compiled is None:
        db = read_database(root, skip_invalid=skip_invalid, content_hash=chash, progress=progress)
        compiled = CompiledDatabase(db, compile_arrays(db))
        save_pickle(entry, compiled)
    return compiled


def load_database(root: Path | str, **kwargs) -> Database:
    """Load a SModelS database folder into records (cached; see :func:`load_compiled`)."""
    return load_compiled(root, **kwargs).database
