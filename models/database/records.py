"""Typed records of a SModelS database, units converted once: GeV, TeV (for √s), fb, fb⁻¹.

The hierarchy follows SModelS: a :class:`Database` holds :class:`Result` s (one analysis folder,
SModelS' ``ExpResult``), each with :class:`Dataset` s (one signal region, or the single ``data``
folder of an upper-limit result), each with :class:`TxName` s (one simplified-model map).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tdmcmc.models.database.axes import Plane
from tdmcmc.models.database.maps import MapData

UPPER_LIMIT = "upperLimit"
EFFICIENCY_MAP = "efficiencyMap"


@dataclass(frozen=True, slots=True)
class JsonChannel:
    """One channel of a pyhf workspace named in ``jsonFiles``: the SModelS dataset it models
    (None for control regions without one), its pyhf channel name and its type (SR, CR, VR)."""

    smodels: str | None
    pyhf: str
    type: str = "SR"


@dataclass(frozen=True, eq=False)
class TxName:
    """One simplified-model map of a dataset (a ``<TxName>.txt`` file).

    ``upper_limits``/``expected_upper_limits`` are in fb; ``efficiency_map`` values are plain
    numbers. ``constraint``/``condition`` hold the parsed structures of
    :mod:`tdmcmc.models.database.constraints`; ``constraint_text`` keeps the original.
    """

    name: str
    path: Path
    constraint_text: str
    constraint: Any
    condition_text: str | None
    condition: tuple
    validated: str
    source: str | None
    axes: tuple[Plane, ...] | None
    axes_map: tuple | None
    data_map: dict | None
    final_state: Any
    intermediate_state: Any
    upper_limits: MapData | None = None
    expected_upper_limits: MapData | None = None
    efficiency_map: MapData | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def grid(self) -> MapData:
        """The observed map: upper limits (fb) or efficiencies."""
        grid = self.upper_limits if self.upper_limits is not None else self.efficiency_map
        assert grid is not None  # the reader guarantees one of them
        return grid

    @property
    def all_zero(self) -> bool:
        """True for an efficiency map whose efficiencies are all zero (SModelS drops these)."""
        return self.efficiency_map is not None and not np.any(self.efficiency_map.values)

    @property
    def is_validated(self) -> bool | None:
        """True/False for ``validated: True/False``; None for N/A, tbd or a missing key."""
        v = self.validated.strip().lower()
        return True if v == "true" else False if v == "false" else None


@dataclass(frozen=True, eq=False)
class Dataset:
    """A signal region (efficiency-map type) or the ``data`` folder of an upper-limit result.

    Counts are events; ``upper_limit``/``expected_upper_limit`` are 95% CL limits on the fiducial
    cross section in fb; ``bg_error`` is the absolute 1σ background uncertainty in events.
    """

    data_id: str | None
    data_type: Literal["upperLimit", "efficiencyMap"]
    path: Path
    txnames: tuple[TxName, ...]
    observed_n: float | None = None
    expected_bg: float | None = None
    bg_error: float | None = None
    upper_limit: float | None = None
    expected_upper_limit: float | None = None
    third_moment: float | None = None
    aggregated: tuple[str, ...] | None = None
    jsonfile: str | None = None
    comment: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class GlobalInfo:
    """The ``globalInfo.txt`` of a result: √s in TeV, luminosity in fb⁻¹, covariance in events²."""

    id: str
    sqrts: float
    lumi: float
    url: str | None = None
    arxiv: str | None = None
    publication: str | None = None
    contact: str | None = None
    implemented_by: str | None = None
    last_update: str | None = None
    supersedes: str | None = None
    superseded_by: str | None = None
    type: str | None = None
    private: bool = False
    dataset_order: tuple[str, ...] | None = None
    covariance: np.ndarray | None = None
    json_files: dict[str, tuple[JsonChannel, ...]] | None = None
    json_files_full: dict[str, tuple[JsonChannel, ...]] | None = None
    include_crs: bool | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Result:
    """One analysis folder (SModelS' ``ExpResult``): an UL result or an EM result with its SRs."""

    info: GlobalInfo
    path: Path
    experiment: str
    datasets: tuple[Dataset, ...]

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def folder(self) -> str:
        return self.path.name

    @property
    def data_type(self) -> str:
        return self.datasets[0].data_type if self.datasets else UPPER_LIMIT

    @property
    def missing_json_files(self) -> tuple[str, ...]:
        """pyhf files named in ``jsonFiles`` that are not in the folder."""
        names = list(self.info.json_files or {})
        return tuple(n for n in names if not (self.path / n).exists())

    def load_json(self, name: str) -> dict:
        """Load a pyhf workspace named in ``jsonFiles`` (read on demand, not cached)."""
        if name not in (self.info.json_files or {}) and name not in (self.info.json_files_full or {}):
            raise KeyError(f"{self.path / 'globalInfo.txt'}: no jsonFiles entry {name!r}")
        with open(self.path / name, encoding="utf-8") as fh:
            return json.load(fh)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file left out under ``skip_invalid``, with the reason."""

    path: Path
    reason: str


@dataclass(frozen=True, eq=False)
class Database:
    """A loaded SModelS database. ``skipped`` lists what ``skip_invalid`` left out."""

    path: Path
    version: str
    results: tuple[Result, ...]
    content_hash: str
    skipped: tuple[Skipped, ...] = ()

    @cached_property
    def datasets(self) -> tuple[Dataset, ...]:
        return tuple(ds for r in self.results for ds in r.datasets)

    @cached_property
    def txnames(self) -> tuple[TxName, ...]:
        return tuple(tx for ds in self.datasets for tx in ds.txnames)
