"""Which analyses may be combined: the allow-lists of the combination matrix and the graph they define.

Rules (method reference §6.1, SModelS/protomodels ``analysisCombiner.canCombine``):

1. results at different √s combine;
2. results of different experiments (ATLAS vs CMS) combine;
3. otherwise A and B combine iff B matches an entry of A's allow-list **or** A matches an entry of
   B's (fnmatch wildcards such as ``CMS-SUS-*`` allowed). The "or" is the symmetrisation of the
   original code: a pair listed on one side only (114 such listings in the 2024 matrix) combines.
   An analysis never combines with itself, so its UL and EM versions never combine.

Ids are compared after stripping the version suffixes ``-agg``, ``-ma5``, ``-eff``, ``-adl`` (as the
[HEAD] code does), so ``CMS-PAS-SUS-16-052-agg`` is the same analysis as ``CMS-PAS-SUS-16-052`` and the
matrix key ``CMS-SUS-19-006-agg`` adds to the list of ``CMS-SUS-19-006``. One graph node per analysis
id; the database results sharing an id (UL/EM/-agg versions, "twins") are attached to that node.

The matrix files (``combination-matrix/{ATLAS8,ATLAS13,CMS8,CMS13}.yaml``) are read by a small
parser of the YAML subset they use (PyYAML is not a dependency): a mapping of plain-scalar keys at
column 0 to block sequences (``- item``) or flow sequences (``[a, b]``), ``#`` comments, ``---``/``...``
markers. Anything else is an error naming file and line. Signal-region keys and items
(``ATLAS-SUSY-2016-07:2j_Meff_1200``) are ignored: the graph is at analysis level.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tdmcmc.errors import UserError

VERSION_SUFFIXES = ("-agg", "-ma5", "-eff", "-adl")
_SUFFIX_RE = re.compile("(" + "|".join(re.escape(s) for s in VERSION_SUFFIXES) + ")+$")
_COMMENT_RE = re.compile(r"(^|\s)#.*$")
_KEY_RE = re.compile(r"^('[^']+'|\"[^\"]+\"|[^\s\-\[\]{}#,'\"]\S*?):(?:\s+(.*))?$")
_ITEM_RE = re.compile(r"^(\s*)-\s+(\S.*)$")
_SCALAR_RE = re.compile(r"^[^\s\[\]{}#,'\"&*!|>%@`]\S*$")


def analysis_id(result_id: str) -> str:
    """The analysis id of a result id: trailing version suffixes (-agg, -ma5, -eff, -adl) stripped."""
    return _SUFFIX_RE.sub("", result_id.strip())


def _scalar(token: str, where: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        token = token[1:-1]
    elif not _SCALAR_RE.match(token):
        raise UserError(f"{where}: expected an analysis id, got {token!r}")
    if not token:
        raise UserError(f"{where}: empty analysis id")
    return token


def _flow_items(text: str, where: str) -> list[str]:
    if not (text.startswith("[") and text.endswith("]")):
        raise UserError(f"{where}: expected a list after the key ('- id' lines or [a, b]), "
                        f"got {text!r}")
    inner = text[1:-1].strip()
    return [_scalar(t, where) for t in inner.split(",")] if inner else []


def parse_allow_lists(text: str, source: str) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """Parse one matrix file: key → (its line number, [(item, line number)]), in file order.

    `source` names the file in error messages. Duplicate keys are an error (YAML would silently keep
    the last one).
    """
    out: dict[str, tuple[int, list[tuple[str, int]]]] = {}
    key: str | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        where = f"{source}:{n}"
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise UserError(f"{where}: tab in indentation (YAML forbids it)")
        line = _COMMENT_RE.sub("", raw).rstrip()
        if not line.strip() or line in ("---", "..."):
            continue
        item = _ITEM_RE.match(line)
        if item:
            if key is None:
                raise UserError(f"{where}: list item before any analysis key")
            out[key][1].append((_scalar(item.group(2), where), n))
            continue
        if line[0].isspace():
            raise UserError(f"{where}: unexpected indented line {raw.strip()!r} "
                            "(expected 'key:' at column 0 or '- id')")
        m = _KEY_RE.match(line)
        if not m:
            raise UserError(f"{where}: expected 'analysis-id:' or '- analysis-id', got {raw.strip()!r}")
        key = _scalar(m.group(1), where)
        if key in out:
            raise UserError(f"{where}: duplicate key {key!r} (first at line {out[key][0]})")
        out[key] = (n, [(v, n) for v in _flow_items(m.group(2), where)] if m.group(2) else [])
    return out


@dataclass(frozen=True)
class AllowLists:
    """Analysis-level allow-lists: analysis id (suffix-stripped) → fnmatch patterns.

    ``sources`` names the file(s) and line(s) each key came from; ``ignored_sr_keys`` counts the
    signal-region-level keys that were skipped.
    """

    entries: Mapping[str, tuple[str, ...]]
    sources: Mapping[str, str]
    ignored_sr_keys: int = 0

    def lists(self, a: str, b: str) -> bool:
        """True if `a`'s allow-list has an entry matching `b` (ids suffix-stripped)."""
        b = analysis_id(b)
        return any(b == p or fnmatch.fnmatchcase(b, p) for p in self.entries.get(analysis_id(a), ()))

    def allows(self, a: str, b: str) -> bool:
        """Same-√s, same-experiment rule: different ids and either list names the other."""
        if analysis_id(a) == analysis_id(b):
            return False
        return self.lists(a, b) or self.lists(b, a)

    def one_sided(self) -> list[tuple[str, str]]:
        """Pairs (a, b) with b listed by a (exact id) but a not matched by b's list."""
        return sorted((a, p) for a, pats in self.entries.items() for p in pats
                      if p in self.entries and p != a and not self.lists(p, a))


def matrix_files(path: str | Path | Iterable[str | Path]) -> list[Path]:
    """The ``*.yaml``/``*.yml`` files of a directory (sorted), a single file, or a list of files."""
    if isinstance(path, (str, Path)):
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml"))
            if not files:
                raise UserError(f"{p}: no *.yaml combination-matrix files in this folder")
            return files
        paths = [p]
    else:
        paths = [Path(q) for q in path]
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: combination-matrix file not found")
    return paths


def read_allow_lists(path: str | Path | Iterable[str | Path]) -> AllowLists:
    """Read the combination matrix (a folder of YAML files, one file, or a list of files).

    Keys and items are suffix-stripped; keys that coincide after stripping (``CMS-SUS-19-006`` and
    ``CMS-SUS-19-006-agg``) merge their lists. Signal-region keys (``id:SR``) and items are skipped.
    """
    entries: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}
    raw_keys: dict[str, str] = {}
    ignored = 0
    for f in matrix_files(path):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{f}: cannot read combination matrix ({exc})") from exc
        for key, (line, items) in parse_allow_lists(text, str(f)).items():
            if ":" in key:
                ignored += 1
                continue
            if key in raw_keys:
                raise UserError(f"{f}: key {key!r} already defined in {raw_keys[key]}")
            raw_keys[key] = str(f)
            aid = analysis_id(key)
            lst = entries.setdefault(aid, [])
            lst.extend(analysis_id(v) for v, _ in items if ":" not in v and analysis_id(v) not in lst)
            sources.setdefault(aid, []).append(f"{f.name}:{line}")
    return AllowLists({k: tuple(v) for k, v in entries.items()},
                      {k: ", ".join(v) for k, v in sources.items()}, ignored)


@dataclass(frozen=True, eq=False)
class CombinabilityGraph:
    """Analyses as nodes, "may be combined" as edges.

    Nodes are sorted by (experiment, √s, id). ``result_node[j]`` is the node of database result j
    (-1 if the result was left out); several results may share a node (UL/EM/-agg versions).
    ``sqrts`` in TeV. ``adjacency`` is symmetric with a zero diagonal.
    """

    analyses: tuple[str, ...]
    experiment: np.ndarray
    sqrts: np.ndarray
    adjacency: np.ndarray
    result_node: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.analyses)

    def node(self, analysis: str) -> int:
        """Node index of an analysis or result id (suffixes stripped); UserError if unknown."""
        aid = analysis_id(analysis)
        try:
            return self.analyses.index(aid)
        except ValueError:
            raise UserError(f"analysis {analysis!r} is not in the combination graph "
                            f"(known: {len(self.analyses)} analyses)") from None

    def combinable(self, a: str, b: str) -> bool:
        return bool(self.adjacency[self.node(a), self.node(b)])

    def groups(self) -> list[tuple[tuple[str, float], np.ndarray]]:
        """(experiment, √s) → node indices. Edges between groups are complete (rules 1, 2)."""
        keys = sorted(set(zip(self.experiment.tolist(), self.sqrts.tolist())))
        return [(k, np.flatnonzero((self.experiment == k[0]) & (self.sqrts == k[1]))) for k in keys]


def build_graph(result_ids: Sequence[str], experiments: Sequence[str], sqrts: Sequence[float],
                allow: AllowLists, include: Sequence[bool] | None = None) -> CombinabilityGraph:
    """The combinability graph over the results (ids, 'ATLAS'/'CMS', √s in TeV) kept by `include`."""
    n_res = len(result_ids)
    keep = np.ones(n_res, bool) if include is None else np.asarray(include, bool)
    if keep.shape != (n_res,) or len(experiments) != n_res or len(sqrts) != n_res:
        raise ValueError("result_ids, experiments, sqrts and include must have one entry per result")
    attrs: dict[str, tuple[str, float]] = {}
    for j in np.flatnonzero(keep):
        aid, att = analysis_id(result_ids[j]), (str(experiments[j]), float(sqrts[j]))
        if attrs.setdefault(aid, att) != att:
            raise ValueError(f"results of analysis {aid} disagree on experiment/sqrts: "
                             f"{attrs[aid]} vs {att}")
    order = sorted(attrs, key=lambda a: (attrs[a], a))
    exp = np.array([attrs[a][0] for a in order], dtype=object)
    rs = np.array([attrs[a][1] for a in order], dtype=float)
    n = len(order)
    adj = (exp[:, None] != exp[None, :]) | (rs[:, None] != rs[None, :])
    for i in range(n):
        for k in range(i + 1, n):
            if not adj[i, k] and allow.allows(order[i], order[k]):
                adj[i, k] = True
    adj = adj | adj.T
    np.fill_diagonal(adj, False)
    index = {a: i for i, a in enumerate(order)}
    result_node = np.array([index[analysis_id(r)] if k else -1 for r, k in zip(result_ids, keep)],
                           dtype=np.int64)
    return CombinabilityGraph(tuple(order), exp.astype(str), rs, adj, result_node)


def results_with_likelihood(arrays) -> np.ndarray:
    """Mask of the results of a :class:`DatabaseArrays` that can carry a likelihood.

    EM results always; UL results only when at least one txname has an expected-UL map (without it
    an UL result is critic-only and never a node of the paper's combiner).
    """
    from tdmcmc.models.database.compiled import MAP_EXPECTED_UL

    has_exp = np.zeros(len(arrays.result_id), bool)
    exp_ds = arrays.map_dataset[arrays.map_kind == MAP_EXPECTED_UL]
    has_exp[np.unique(arrays.dataset_result[exp_ds])] = True
    return np.asarray(arrays.result_is_em, bool) | has_exp


def graph_for_database(arrays, allow: AllowLists, include: str | Sequence[bool] = "likelihood",
                       ) -> CombinabilityGraph:
    """The graph over a compiled database's results.

    `include`: ``"likelihood"`` (default; results that can carry a likelihood, see
    :func:`results_with_likelihood`), ``"all"``, or a boolean mask over the results.
    """
    if isinstance(include, str):
        if include == "all":
            mask = None
        elif include == "likelihood":
            mask = results_with_likelihood(arrays)
        else:
            raise UserError(f"include: expected 'likelihood', 'all' or a mask, got {include!r}")
    else:
        mask = include
    return build_graph([str(x) for x in arrays.result_id], [str(x) for x in arrays.result_experiment],
                       np.asarray(arrays.result_sqrts, float), allow, mask)
