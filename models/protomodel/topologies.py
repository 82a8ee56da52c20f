"""The topology table: every (production channel, chain A, chain B) of a space, in every compressed
form SModelS would produce, matched once to the txname constraints of a database.

Built once per (space, database); evaluating a protomodel on it is array arithmetic
(:mod:`.predictions`). Conventions follow SModelS 3.2.1 (``decomposition/decomposer.py``,
``decomposition/theorySMS.py``, ``experiment/txnameObj.py``, ``matching/theoryPrediction.py``):

*Elements.* A production channel (a, b) and one chain of each particle (:mod:`.decays`) give an
element; its weight at √s is σ(a b, √s) × BR(chain A) × BR(chain B), and it is kept only if its
largest weight over √s is at least ``sigmacut`` (SModelS prunes decay trees exactly so). Ordered
chain pairs are separate rows, so g̃g̃ → (A, B) and (B, A) add up, as SModelS' merged SMS does.

*Compression.* SModelS keeps the original element and adds its compressed forms, all with the
original weight; compressed forms of one element are *related* (same ancestor): a theory
prediction uses at most one of them (the one with the largest σ·BR·ε; ``clusterTools.clusterSMS``).
The original element is not related to its own compressed forms there: ``isRelatedTo`` compares
object ids, the matched SMS is a copy of the original and an SMS' ancestors exclude itself, so an
EM dataset whose txnames match both (TChiWZoff and the compressed TChiZoff of ATLAS-SUSY-2018-16)
counts both, and so does the table (``el_origin``: one id for the original, one for its forms).
- Mass compression removes every decay X → Y + SM with m_X − m_Y < ``minmassgap`` at once
  (``massCompress``). Which decays that is depends on the masses, so the table holds one row per
  *set* S of compressed decays (|S| ≤ ``max_compressions``, only decays whose SM daughters are
  lighter than ``minmassgap`` together, since others are kinematically closed), and the row is
  active when S is exactly the set of decays with a gap below ``minmassgap`` — evaluated per
  protomodel. If compression would leave both branches empty (pure MET), SModelS redoes it with
  0.999 × the largest compressed gap; the run-time rule applies the same.
- Invisible compression removes final decays into neutrinos (X → LSP ν makes X the invisible final
  state); it does not depend on masses. It acts on both branches at once, after mass compression.
- Not reproduced: invisible-then-mass compression when it differs from mass-then-invisible (only
  when a mass-degenerate decay sits inside an invisible tail), and rows that need more than
  ``max_compressions`` simultaneous compressions (default 2).

*Matching.* A form matches a constraint element when its branches match the element's branches
vertex by vertex (each vertex a permutation of labels covering the SM states; branch order free).
Every txname with only MET final states, mass-only maps and a bracket constraint (v1/v2) is matched,
including constraints with one empty branch (a branch compressed to its final state); a v3 graph
constraint is matched through :meth:`Graph.to_element` when it has a bracket form and names no
specific BSM state (:func:`unserved_reason` says what is left out and why). A match stores the
prefactor of the matched term and the particle behind every mass coordinate of the txname's
maps, in the map's column order (branch swap included).

*Layout for evaluation.* Element rows are sorted by the set of particles they involve (a bitmask);
a protomodel's rows are the blocks whose set lies inside its particle content. Matches are stored
by element (CSR: ``match_start``), so a prediction is gathers, products and segment sums.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from itertools import combinations, permutations
from typing import Any, Sequence

import numpy as np

from tdmcmc.errors import UserError
from tdmcmc.disk_cache import cache_dir, load_pickle, save_pickle
from tdmcmc.models.database.constraints import Constraint, Element, GraphConstraint, matches
from tdmcmc.models.database.records import EFFICIENCY_MAP, Database

from .decays import INVISIBLE_SM, Chain, DecayGraph, sm_state
from .space import ProtomodelSpace

MINMASSGAP_GEV = 10.0
SIGMACUT_FB = 0.02
MAX_COMPRESSIONS = 2
TABLE_VERSION = "5"  # bump when enumeration or matching rules change: cached tables are rebuilt

Vertex = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BranchForm:
    """One branch of an element after compression: ``vertices`` (SM states per decay, sorted),
    ``nodes`` (signed BSM ids: the mothers of the remaining decays, then the final state),
    ``compressed`` (positions in the chain of mass-compressed decays), ``invisible`` (whether a
    neutrino tail was removed) and ``tail`` (whether the uncompressed-invisible form has one)."""

    chain: int
    vertices: tuple[Vertex, ...]
    nodes: tuple[int, ...]
    compressed: tuple[int, ...]
    invisible: bool
    tail: bool


@dataclass(frozen=True, eq=False)
class TxnameRef:
    """A txname of the database as the table sees it: its dataset (index in ``DatabaseArrays``),
    map rows (``map_obs``/``map_exp`` for UL, ``map_eff`` for EM; -1 if absent) and its conditions
    as (kind "gtr"/"sim", arguments), each argument ((coefficient, condition-element index), ...);
    a match's ``m_cond_bits`` says which condition elements its element matches."""

    dataset: int
    name: str
    is_em: bool
    map_obs: int
    map_exp: int
    map_eff: int
    n_coords: int
    conditions: tuple[tuple[str, tuple[tuple[tuple[float, int], ...], ...]], ...] = ()


@dataclass(frozen=True, eq=False)
class TopologyTable:
    """The table (see the module docstring). Particle index i is ``particles[i]`` (positive PDG);
    BR index j is ``br_channels[j]`` = (parent, channel) and index ``len(br_channels)`` is the
    constant 1 used for padding. Shapes: E element rows, V = decay slots of both chains, M matches."""

    space_name: str
    database_hash: str
    minmassgap: float
    sigmacut: float
    max_compressions: int
    particles: np.ndarray                 # (P,) positive PDG ids
    br_channels: tuple[tuple[int, tuple[int, ...]], ...]
    channels: tuple[tuple[int, int], ...]  # production channels (signed sorted pairs), by index
    txnames: tuple[TxnameRef, ...]
    el_channel: np.ndarray                # (E,) production channel index
    el_origin: np.ndarray                 # (E,) related rows: (channel, chain A, chain B, original?)
    el_br: np.ndarray                     # (E, V) BR indices (padding: the constant 1)
    el_share: np.ndarray                  # (E,) product of sign-assignment shares
    el_gap: np.ndarray                    # (E, V, 2) particle indices (mother, daughter); -1 pad
    el_mask: np.ndarray                   # (E, V) bool: decay is mass-compressed in this row
    el_particles: np.ndarray              # (E,) uint64 bitmask of particles involved
    block_keys: np.ndarray                # (K,) distinct bitmasks, rows sorted by them
    block_start: np.ndarray               # (K+1,)
    match_start: np.ndarray               # (E+1,) CSR into the match arrays
    m_txname: np.ndarray                  # (M,) index into txnames
    m_coef: np.ndarray                    # (M,) prefactor of the matched term
    m_shape: np.ndarray                   # (M,) topology-shape id of the matched term
    m_coords: np.ndarray                  # (M, C) particle index per map column; -1 pad
    m_cond_bits: np.ndarray               # (M,) uint64: condition elements matched (bit j)

    @property
    def n_rows(self) -> int:
        return len(self.el_channel)

    @property
    def n_matches(self) -> int:
        return len(self.m_txname)

    def particle_index(self) -> dict[int, int]:
        return {int(p): i for i, p in enumerate(self.particles)}


# ---------------------------------------------------------------------------------------------
# Branch forms


def _compressible(decay, space: ProtomodelSpace, minmassgap: float) -> bool:
    """A decay can be mass-compressed only if it can be open with a gap below minmassgap."""
    return sum(space.sm_masses.get(abs(p), 0.0) for p in decay.sm) < minmassgap


def branch_forms(chain_id: int, chain: Chain, head: int, space: ProtomodelSpace, minmassgap: float,
                 max_compressions: int, max_vertices: int) -> list[BranchForm]:
    """Every form of one chain with at most `max_compressions` mass compressions and at most
    `max_vertices` decays left; without and with invisible compression."""
    n = len(chain)
    nodes_all = (head, *(d.bsm for d in chain))
    candidates = [i for i, d in enumerate(chain) if _compressible(d, space, minmassgap)]
    forms = []
    need = max(0, n - max_vertices)
    tail_max = _tail_length(chain, range(n))
    if need - tail_max > min(max_compressions, len(candidates)):
        return forms
    for k in range(0, min(max_compressions, len(candidates)) + 1):
        for subset in combinations(candidates, k):
            keep = [i for i in range(n) if i not in subset]
            tail = _tail_length(chain, keep)
            for invisible in (False, True) if tail else (False,):
                kept = keep[:len(keep) - tail] if invisible else keep
                if len(kept) > max_vertices:
                    continue
                vertices = tuple(tuple(sorted(sm_state(p) for p in chain[i].sm)) for i in kept)
                final = nodes_all[keep[len(keep) - tail]] if invisible else nodes_all[n]
                nodes = (*(nodes_all[i] for i in kept), final)
                forms.append(BranchForm(chain_id, vertices, nodes, tuple(subset), invisible, bool(tail)))
    return forms


def _tail_length(chain: Chain, keep: Sequence[int]) -> int:
    """Number of trailing kept decays whose SM daughters are all neutrinos."""
    count = 0
    for i in reversed(list(keep)):
        if all(abs(p) in INVISIBLE_SM for p in chain[i].sm):
            count += 1
        else:
            break
    return count


# ---------------------------------------------------------------------------------------------
# Matching


def _vertex_matches(labels: tuple[str, ...], states: Vertex) -> bool:
    if len(labels) != len(states):
        return False
    return any(all(matches(lab, st) for lab, st in zip(perm, states)) for perm in set(permutations(labels)))


def _branch_matches(branch: tuple[tuple[str, ...], ...], vertices: tuple[Vertex, ...]) -> bool:
    return len(branch) == len(vertices) and all(_vertex_matches(b, v) for b, v in zip(branch, vertices))


def _met_only(final_state: Any) -> bool:
    if final_state is None:
        return True
    return all(str(s).strip() == "MET" for s in final_state)


def _elements(constraint: Any) -> list[tuple[float, Element]] | None:
    """(coefficient, element) terms of a constraint, or None if it has no bracket form."""
    if isinstance(constraint, Constraint):
        return list(constraint.terms)
    if isinstance(constraint, GraphConstraint):
        out = []
        for coef, graph in constraint.terms:
            element = graph.to_element()
            if element is None:
                return None
            out.append((coef, element))
        return out
    return None


@dataclass(frozen=True, eq=False)
class _ConstraintClass:
    """Txnames sharing one constraint and condition (and MET final states); ``cond_elements`` are
    the distinct elements of the conditions, ``conditions`` refer to them by index."""

    terms: tuple[tuple[float, Element], ...]
    cond_elements: tuple[Element, ...]
    conditions: tuple[tuple[str, tuple[tuple[tuple[float, int], ...], ...]], ...]
    txnames: list[int]


def _condition_elements(conditions) -> tuple[tuple[Element, ...], tuple]:
    """Distinct elements of parsed conditions and the conditions in terms of their indices
    (conditions in graph syntax, or with an argument without a bracket form, are left out)."""
    elements: list[Element] = []
    out = []
    for cond in conditions:
        args = []
        for arg in cond.args:
            terms = _elements(arg)
            if terms is None:
                break
            for _, element in terms:
                if element not in elements:
                    elements.append(element)
            args.append(tuple((coef, elements.index(element)) for coef, element in terms))
        else:
            out.append((cond.kind, tuple(args)))
    return tuple(elements), tuple(out)


def _txname_refs(db: Database, arrays) -> tuple[list[TxnameRef], list[Any]]:
    """TxnameRefs and the txname records, in database order; map rows from ``compile_arrays``."""
    maps: dict[tuple[int, str], dict[int, int]] = {}
    for row, (d, name, kind) in enumerate(zip(arrays.map_dataset, arrays.map_txname, arrays.map_kind)):
        maps.setdefault((int(d), str(name)), {})[int(kind)] = row
    refs, records = [], []
    for d, ds in enumerate(db.datasets):
        for tx in ds.txnames:
            rows = maps.get((d, tx.name), {})
            refs.append(TxnameRef(dataset=d, name=tx.name, is_em=ds.data_type == EFFICIENCY_MAP,
                                  map_obs=rows.get(0, -1), map_exp=rows.get(1, -1), map_eff=rows.get(2, -1),
                                  n_coords=len(tx.grid.layout)))
            records.append(tx)
    return refs, records


def build_table(space: ProtomodelSpace, compiled, *, minmassgap: float = MINMASSGAP_GEV,
                sigmacut: float = SIGMACUT_FB, max_compressions: int = MAX_COMPRESSIONS) -> TopologyTable:
    """Enumerate and match (minutes for the full space and database; use :func:`load_table`)."""
    db, arrays = compiled.database, compiled.arrays
    refs, records = _txname_refs(db, arrays)
    classes: dict[str, _ConstraintClass] = {}
    for t, tx in enumerate(records):
        if unserved_reason(tx) is not None:
            continue
        terms = _elements(tx.constraint)
        key = f"{tx.constraint} | {tx.condition_text}"
        if key not in classes:
            classes[key] = _ConstraintClass(tuple(terms), *_condition_elements(tx.condition), [])
        classes[key].txnames.append(t)
    for cls in classes.values():
        for t in cls.txnames:
            refs[t] = replace(refs[t], conditions=cls.conditions)
    max_vertices = max(max(e.n_vertices) for c in classes.values() for _, e in c.terms)

    if len(space.particles) > 64:
        raise UserError(f"{space.source}: the topology table supports up to 64 particles, "
                        f"the space has {len(space.particles)}")
    graph = DecayGraph(space)
    particles = np.array(sorted(space.particles), dtype=np.int64)
    pindex = {int(p): i for i, p in enumerate(particles)}
    br_channels = tuple((p, ch) for p in sorted(space.particles) for ch in space.particles[p].decays)
    br_index = {key: j for j, key in enumerate(br_channels)}
    channels = tuple(c.key for c in space.productions)

    heads = sorted({p for c in channels for p in c})
    forms = {h: [f for i, ch in enumerate(graph.chains(h))
                 for f in branch_forms(i, ch, h, space, minmassgap, max_compressions, max_vertices)]
             for h in heads}
    by_sig: dict[int, dict[tuple, list[int]]] = {}
    for h, fs in forms.items():
        sigs: dict[tuple, list[int]] = {}
        for i, f in enumerate(fs):
            sigs.setdefault(f.vertices, []).append(i)
        by_sig[h] = sigs

    sig_cache: dict[tuple, bool] = {}

    def sig_matches(sig: tuple, branch: tuple) -> bool:
        key = (sig, branch)
        if key not in sig_cache:
            sig_cache[key] = _branch_matches(branch, sig)
        return sig_cache[key]

    class_list = list(classes.values())
    # element rows: (channel, form A, form B) -> {class index: (term index, swap)}
    rows: dict[tuple[int, int, int], dict[int, tuple[int, bool]]] = {}
    for c_i, (a, b) in enumerate(channels):
        for k, cls in enumerate(class_list):
            for ti, (_, element) in enumerate(cls.terms):
                w0, w1 = element.branches
                for swap, (wa, wb) in ((False, (w0, w1)), (True, (w1, w0))):
                    sa = [s for s in by_sig[a] if sig_matches(s, wa)]
                    if not sa:
                        continue
                    sb = [s for s in by_sig[b] if sig_matches(s, wb)]
                    for s1 in sa:
                        for s2 in sb:
                            for fa in by_sig[a][s1]:
                                for fb in by_sig[b][s2]:
                                    if not _consistent(forms[a][fa], forms[b][fb], max_compressions):
                                        continue
                                    rows.setdefault((c_i, fa, fb), {}).setdefault(k, (ti, swap))
    return _assemble(space, db, refs, records, class_list, rows, forms, graph, channels, particles, pindex,
                     br_channels, br_index, minmassgap, sigmacut, max_compressions)


GENERIC_BSM = frozenset({"MET", "anyBSM", "anyOdd"})

UNSERVED_REASONS = {
    "all-zero": "every map value is 0",
    "resonance": "PV produces a single BSM state (Zprime): no such particle in the space",
    "R-parity violation": "a BSM state decays to SM particles only: the LSP of a protomodel is stable",
    "non-MET final state": "HSCP or R-hadron final states: the only final state of a protomodel is the LSP",
    "width column": "the map depends on a total width (long-lived states): protomodel decays are prompt",
    "specific BSM state": "the graph names a BSM state other than MET/anyBSM/anyOdd",
    "sum of graphs": "a linear combination of several graphs",
    "no bracket form": "a graph that is not two chains of one-BSM-daughter decays (a decay into two BSM states)",
    "pure MET": "both branches empty",
    "layout": "a map column is not a node of the branches",
}
"""Why :func:`unserved_reason` leaves a txname out of the table, keyed by the reason it returns."""


def unserved_reason(tx) -> str | None:
    """None when the table matches txname `tx`, else the first reason (a key of
    :data:`UNSERVED_REASONS`, checked in that order) why it does not."""
    constraint = tx.constraint
    graphs = constraint.graphs if isinstance(constraint, GraphConstraint) else ()
    if tx.all_zero:
        return "all-zero"
    if any(len(g.daughters(0)) == 1 for g in graphs):
        return "resonance"
    if any(g.daughters(i) and not any(g.is_bsm(d) for d in g.daughters(i)) for g in graphs for i, _ in g.nodes if i):
        return "R-parity violation"
    if not _met_only(tx.final_state):
        return "non-MET final state"
    if any(c.quantity != "mass" for c in tx.grid.layout):
        return "width column"
    if any(g.label(i).lstrip("*") not in GENERIC_BSM for g in graphs for i, _ in g.nodes if g.is_bsm(i)):
        return "specific BSM state"
    if len(graphs) > 1:
        return "sum of graphs"
    terms = _elements(constraint)
    # One empty branch (TChiQ [[jet]],[]: a branch compressed to its final state) is matched;
    # two are pure MET, which SModelS' compression never leaves (it redoes it with a smaller gap).
    if terms is None:
        return "no bracket form"
    if any(max(e.n_vertices) == 0 for _, e in terms):
        return "pure MET"
    if map_positions(tx) is None:
        return "layout"
    return None


def map_positions(tx) -> tuple[tuple[int, int], ...] | None:
    """(branch, position) of the BSM node behind every column of the maps of a txname that
    :func:`unserved_reason` does not leave out (v3 ``dataMap`` nodes located on the branches of
    :meth:`Graph.to_element`), or None when a column is not on a branch."""
    layout = tx.grid.layout
    if all(c.branch is not None for c in layout):
        return tuple((c.branch, c.position) for c in layout)
    graph = tx.constraint.terms[0][1]
    where = {}
    for b, node in enumerate(graph.daughters(0)):  # the same walk as Graph.to_element
        p = 0
        while True:
            where[node] = (b, p)
            bsm = [d for d in graph.daughters(node) if graph.is_bsm(d)]
            if not bsm:
                break
            node, p = bsm[0], p + 1
    if any(c.node not in where for c in layout):
        return None
    return tuple(where[c.node] for c in layout)


def _element_matches(element: Element, fa: BranchForm, fb: BranchForm) -> bool:
    w0, w1 = element.branches
    return ((_branch_matches(w0, fa.vertices) and _branch_matches(w1, fb.vertices))
            or (_branch_matches(w1, fa.vertices) and _branch_matches(w0, fb.vertices)))


def _consistent(fa: BranchForm, fb: BranchForm, max_compressions: int) -> bool:
    """Both branches belong to one compressed element: within the compression budget, and
    invisible compression applied to both branches or to neither."""
    if len(fa.compressed) + len(fb.compressed) > max_compressions:
        return False
    if fa.invisible or fb.invisible:
        return (fa.invisible or not fa.tail) and (fb.invisible or not fb.tail)
    return True


def _assemble(space, db, refs, records, class_list, rows, forms, graph, channels, particles, pindex,
              br_channels, br_index, minmassgap, sigmacut, max_compressions) -> TopologyTable:
    n_br = len(br_channels)
    keys = list(rows)
    origins: dict[tuple[int, int, int], int] = {}
    shapes: dict[tuple, int] = {}
    el = {"channel": [], "origin": [], "br": [], "share": [], "gap": [], "mask": [], "bits": []}
    matches_per_row: list[list[tuple[int, float, int, tuple[int, ...]]]] = []
    layouts = {t: map_positions(records[t]) for cls in class_list for t in cls.txnames}
    for c_i, fa_i, fb_i in keys:
        a, b = channels[c_i]
        fa, fb = forms[a][fa_i], forms[b][fb_i]
        ca, cb = graph.chains(a)[fa.chain], graph.chains(b)[fb.chain]
        decays = (*ca, *cb)
        el["channel"].append(c_i)
        original = not (fa.compressed or fb.compressed or fa.invisible or fb.invisible)
        el["origin"].append(origins.setdefault((c_i, fa.chain, fb.chain, original), len(origins)))
        el["br"].append([br_index[(abs(d.mother), d.channel)] for d in decays])
        el["share"].append(float(np.prod([d.share for d in decays])) if decays else 1.0)
        el["gap"].append([(pindex[abs(d.mother)], pindex[abs(d.bsm)]) for d in decays])
        el["mask"].append({*fa.compressed, *(len(ca) + i for i in fb.compressed)})
        bits = 0
        for p in (a, b, *(d.bsm for d in decays)):
            bits |= 1 << pindex[abs(p)]
        el["bits"].append(bits)
        row_matches = []
        for k, (ti, swap) in rows[(c_i, fa_i, fb_i)].items():
            cls = class_list[k]
            coef, element = cls.terms[ti]
            shape = shapes.setdefault(tuple(tuple(len(v) for v in br) for br in element.branches), len(shapes))
            sides = (fb.nodes, fa.nodes) if swap else (fa.nodes, fb.nodes)
            cond_bits = sum(1 << j for j, e in enumerate(cls.cond_elements) if _element_matches(e, fa, fb))
            for t in cls.txnames:
                coords = tuple(pindex[abs(sides[br][pos])] for br, pos in layouts[t])
                row_matches.append((t, coef, shape, coords, cond_bits))
        matches_per_row.append(row_matches)

    n = len(keys)
    v = max((len(x) for x in el["br"]), default=1) or 1
    el_br = np.full((n, v), n_br, dtype=np.int32)
    el_gap = np.full((n, v, 2), -1, dtype=np.int16)
    el_mask = np.zeros((n, v), dtype=bool)
    for i in range(n):
        k = len(el["br"][i])
        el_br[i, :k] = el["br"][i]
        if k:
            el_gap[i, :k] = el["gap"][i]
        el_mask[i, list(el["mask"][i])] = True
    bits = np.array(el["bits"], dtype=np.uint64)
    order = np.lexsort((np.arange(n), bits))
    block_keys, block_first = np.unique(bits[order], return_index=True)
    counts = np.array([len(matches_per_row[i]) for i in order], dtype=np.int64)
    match_start = np.concatenate([[0], np.cumsum(counts)])
    flat = [m for i in order for m in matches_per_row[i]]
    n_coords = max((len(m[3]) for m in flat), default=1)
    m_coords = np.full((len(flat), n_coords), -1, dtype=np.int16)
    for j, m in enumerate(flat):
        m_coords[j, :len(m[3])] = m[3]
    return TopologyTable(
        space_name=space.name, database_hash=db.content_hash, minmassgap=minmassgap, sigmacut=sigmacut,
        max_compressions=max_compressions, particles=particles, br_channels=br_channels, channels=channels,
        txnames=tuple(refs),
        el_channel=np.array(el["channel"], dtype=np.int32)[order],
        el_origin=np.array(el["origin"], dtype=np.int64)[order],
        el_br=el_br[order], el_share=np.array(el["share"])[order], el_gap=el_gap[order], el_mask=el_mask[order],
        el_particles=bits[order], block_keys=block_keys,
        block_start=np.concatenate([block_first, [n]]).astype(np.int64),
        match_start=match_start,
        m_txname=np.array([m[0] for m in flat], dtype=np.int32),
        m_coef=np.array([m[1] for m in flat], dtype=float),
        m_shape=np.array([m[2] for m in flat], dtype=np.int16),
        m_coords=m_coords,
        m_cond_bits=np.array([m[4] for m in flat], dtype=np.uint64))


# ---------------------------------------------------------------------------------------------
# Sub-spaces and the on-disk cache


def restrict_space(space: ProtomodelSpace, pdgs: Sequence[int]) -> ProtomodelSpace:
    """The part of `space` with only the particles `pdgs` (the LSP is always kept): decays into
    other particles and their production channels are left out. A protomodel made of these
    particles has the same predictions on the smaller table, which is much faster to build."""
    keep = {abs(int(p)) for p in pdgs} | {space.lsp}
    unknown = keep - set(space.particles)
    if unknown:
        raise UserError(f"particles {sorted(unknown)} are not in space {space.name!r}")
    particles = {}
    for p in sorted(keep):
        part = space.particles[p]
        decays = tuple(d for d in part.decays if all(x in keep or x not in space.particles for x in d))
        groups = tuple(g for g in (tuple(d for d in g if d in decays) for g in part.decay_groups) if g)
        particles[p] = replace(part, decays=decays, decay_groups=groups)
    return replace(
        space, name=f"{space.name}[{','.join(map(str, sorted(keep)))}]", particles=particles,
        ordering=tuple(o for o in space.ordering if set(o) <= keep),
        exchangeable=tuple(g for g in (tuple(p for p in g if p in keep) for g in space.exchangeable) if len(g) > 1),
        productions=tuple(c for c in space.productions if {abs(p) for p in c.pair} <= keep))


def _space_digest(space: ProtomodelSpace) -> str:
    text = repr((space.name, space.lsp, sorted((p, repr(v)) for p, v in space.particles.items()),
                 sorted(space.sm_masses.items()), [repr(c) for c in space.productions]))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def load_table(space: ProtomodelSpace, compiled, *, minmassgap: float = MINMASSGAP_GEV,
               sigmacut: float = SIGMACUT_FB, max_compressions: int = MAX_COMPRESSIONS,
               use_cache: bool = True) -> TopologyTable:
    """The table of (`space`, database), from the cache (``<cache dir>/topologies``) when built before."""
    if not use_cache:
        return build_table(space, compiled, minmassgap=minmassgap, sigmacut=sigmacut,
                           max_compressions=max_compressions)
    key = hashlib.blake2b(repr((TABLE_VERSION, _space_digest(space), compiled.database.content_hash,
                                float(minmassgap), float(sigmacut), int(max_compressions))).encode(),
                          digest_size=20).hexdigest()
    path = cache_dir() / "topologies" / f"{key}.pkl"
    table = load_pickle(path, TopologyTable)
    if table is None:
        table = build_table(space, compiled, minmassgap=minmassgap, sigmacut=sigmacut,
                            max_compressions=max_compressions)
        save_pickle(path, table)
    return table
