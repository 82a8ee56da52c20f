"""Maximal cliques of the combinability graph and the combiner over them.

The paper scores a model by its best *maximal clique* c of mutually combinable analyses,
ln R_c(μ) = Σ_{i∈c} r_i(μ) with r_i(μ) = ln L_i(μ s_i) − ln L_i(0). Enumerating global cliques is
hopeless (2.6·10⁶ on the 1.2.4 database), but results at different √s or from different
experiments always combine, so the graph is the *join* of four groups (ATLAS/CMS × 8/13 TeV) and
every global maximal clique is a product of one maximal clique per group. For fixed r therefore

    max_c Σ_{i∈c} r_i        = Σ_g max_{c∈C_g} (M_g r)_c
    ln Σ_c exp Σ_{i∈c} r_i   = Σ_g logsumexp_{c∈C_g} (M_g r)_c

with M_g the (n_cliques_g × n_nodes) 0/1 membership matrix of group g. Results sharing one analysis
id ("twins": UL and EM versions, -agg) are one node; in the paper they are separate, mutually
non-combinable predictions with identical neighbourhoods, so their maximal cliques are those of the
merged graph with one version chosen per node. Both modes factorise over that choice as well: the
node value is max_v r_v (mode ``max``) or logsumexp_v r_v (mode ``logsumexp``). Both identities are
tested against brute-force enumeration of the global cliques.

Inputs are per *database result*: r has shape (..., n_results) (any leading batch/μ-grid axes),
columns in database order, 0 for results without a prediction. The same code builds numpy values
and PyTensor graphs (``xp`` backend, :mod:`.backend`). ``max`` returns the value of the first
maximising clique, so its gradient is that clique's (a subgradient: ``pt.max`` would add the
gradients of all tied cliques, and ties are common because members without a prediction add 0).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from tdmcmc.errors import UserError
from tdmcmc.models.likelihood.backend import NUMPY, backend_of
from tdmcmc.models.likelihood.combinability import CombinabilityGraph

MODES = ("max", "logsumexp", "fixed")
STATE_MEMO = 1 << 16          # states (predicted nodes, veto) of paper_cliques remembered; then forgotten at once


def maximal_cliques(adjacency: np.ndarray) -> list[tuple[int, ...]]:
    """All maximal cliques of an undirected graph (Bron–Kerbosch with Tomita pivoting).

    `adjacency` is a symmetric boolean matrix (the diagonal is ignored). Returns sorted index
    tuples in lexicographic order; isolated vertices are singleton cliques; an empty graph has none.
    Vertex sets are Python int bitsets, so graphs of a few hundred vertices are fine.
    """
    adj = np.asarray(adjacency, bool)
    n = adj.shape[0]
    if adj.shape != (n, n) or not np.array_equal(adj, adj.T):
        raise ValueError("adjacency must be a square symmetric matrix")
    nbr = [sum(1 << int(k) for k in np.flatnonzero(adj[i]) if k != i) for i in range(n)]
    out: list[tuple[int, ...]] = []

    def members(bits: int) -> list[int]:
        return [i for i in range(n) if bits >> i & 1]

    def expand(r: int, p: int, x: int) -> None:
        if not p and not x:
            out.append(tuple(members(r)))
            return
        pivot = max(members(p | x), key=lambda u: (nbr[u] & p).bit_count())
        for v in members(p & ~nbr[pivot]):
            bit = 1 << v
            expand(r | bit, p & nbr[v], x & nbr[v])
            p &= ~bit
            x |= bit

    if n:
        expand(0, (1 << n) - 1, 0)
    return sorted(out)


@dataclass(frozen=True, eq=False)
class CliqueGroup:
    """Maximal cliques of one (experiment, √s) group; ``membership`` is (n_cliques, n_nodes) 0/1
    over *all* nodes of the graph (zero outside the group), so M @ r needs no gathering."""

    experiment: str
    sqrts: float
    nodes: np.ndarray
    membership: np.ndarray

    @property
    def n_cliques(self) -> int:
        return self.membership.shape[0]


@dataclass(frozen=True, eq=False)
class Combiner:
    """Per-group clique membership matrices plus the result → node (twin) reduction.

    ``versions[v]`` is an (n_results, n_nodes) 0/1 matrix picking the v-th result of each node and
    ``has_version[v]`` marks the nodes that have a v-th result.
    """

    graph: CombinabilityGraph
    groups: tuple[CliqueGroup, ...]
    versions: np.ndarray
    has_version: np.ndarray
    _subgraph_cliques: dict = field(default_factory=dict, repr=False)
    _state_cliques: dict = field(default_factory=dict, repr=False)

    @property
    def n_cliques(self) -> dict[tuple[str, float], int]:
        """Number of maximal cliques per (experiment, √s) group."""
        return {(g.experiment, g.sqrts): g.n_cliques for g in self.groups}

    @property
    def n_global_cliques(self) -> int:
        """Number of maximal cliques of the whole graph (the product over groups)."""
        return int(np.prod([g.n_cliques for g in self.groups], dtype=object)) if self.groups else 0

    def node_values(self, r, mode: str = "max", mask=None):
        """Reduce (..., n_results) contributions to (..., n_nodes): max (or logsumexp) over twins.

        With `mask` (..., n_results) only masked-in versions count (−inf where a node has none).
        """
        xp = backend_of(r, mask)
        r = xp.asarray(r)
        present = [self.has_version[v] if mask is None
                   else (xp.matmul(xp.asarray(mask) * 1.0, self.versions[v]) > 0) * self.has_version[v]
                   for v in range(len(self.versions))]
        per_version = [xp.where(present[v] > 0, xp.matmul(r, self.versions[v]), -np.inf)
                       for v in range(len(self.versions))]
        if len(per_version) == 1:
            return per_version[0]
        stacked = xp.stack(per_version, axis=-1)
        if mode == "logsumexp":
            return _logsumexp(stacked, xp)
        return _first_max(stacked, xp)[0]

    def clique_scores(self, r, mode: str = "max") -> list:
        """Per group, ln R_c for every maximal clique c: a list of (..., n_cliques_g) arrays."""
        nodes = self.node_values(r, "logsumexp" if mode == "logsumexp" else "max")
        xp = backend_of(nodes)
        return [xp.matmul(nodes, g.membership.T) for g in self.groups]

    def combine(self, r, mode: str = "max", fixed: Sequence[str] | None = None):
        """ln R of the combination, shape r.shape[:-1].

        ``max``: Σ_g max_c (M_g r)_c (the paper's best maximal clique, at this μ);
        ``logsumexp``: Σ_g logsumexp_c (M_g r)_c = ln Σ_{global c} R_c (smooth);
        ``fixed``: Σ over the analyses in `fixed` (twins reduced by max); see :meth:`fixed_mask`.
        """
        xp = backend_of(r)
        if mode == "fixed":
            if fixed is None:
                raise UserError("combination mode 'fixed' needs a list of analysis ids")
            nodes = self.node_values(r, "max")
            return xp.sum(xp.where(self.fixed_mask(fixed), nodes, 0.0), axis=-1)
        if mode not in MODES:
            raise UserError(f"combination mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if fixed is not None:
            raise UserError(f"a fixed list of analyses is only used by mode 'fixed', not {mode!r}")
        reduce = _logsumexp if mode == "logsumexp" else (lambda s, xp_: _first_max(s, xp_)[0])
        total = xp.sum(xp.zeros_like(xp.asarray(r)), axis=-1)
        for scores in self.clique_scores(r, mode):
            total = total + reduce(scores, xp)
        return total

    def paper_max(self, r, predicted):
        """The paper's per-step max (cliques among predicted results only), as one graph.

        Same value as :meth:`paper_combination` but batched over (..., n_results) and built with
        either backend, so the ``paper`` target needs no per-step enumeration. A static maximal
        clique C of a group is kept iff C ∩ P is maximal among the predicted nodes P, i.e. no
        predicted v ∉ C is adjacent to all of C ∩ P: with D = 1 − A (non-adjacency),
        count[c, v] = Σ_u M[c, u] p_u D[u, v] must be > 0 for every predicted v ∉ C of the group.
        If only one group has predictions, single-node cliques are dropped; −inf when nothing is
        left (the paper's Z = None). Twins take their best *predicted* version.
        """
        xp = backend_of(r, predicted)
        r = xp.asarray(r)
        p_res = xp.asarray(predicted) > 0
        node_pred = xp.matmul(p_res * 1.0, self.versions.sum(axis=0)) > 0       # (..., n_nodes)
        nodes = xp.where(node_pred, self.node_values(r, "max", mask=p_res), 0.0)
        p = node_pred * 1.0
        not_adj = 1.0 - self.graph.adjacency - np.eye(self.graph.n_nodes)
        in_group = [np.isin(np.arange(self.graph.n_nodes), g.nodes) * 1.0 for g in self.groups]
        k_groups = [xp.sum(p * m, axis=-1) for m in in_group]
        total = xp.sum(xp.zeros_like(r), axis=-1)
        n_pred_groups = total + sum((k > 0) * 1.0 for k in k_groups)
        for g, m, k in zip(self.groups, in_group, k_groups):
            members_p = xp.expand_dims(p, -2) * g.membership                     # (..., n_c, n_nodes)
            blockers = xp.matmul(members_p, not_adj)                             # count[c, v]
            extends = xp.expand_dims(p * m, -2) * (1.0 - g.membership) * (blockers < 0.5)
            size = xp.sum(members_p, axis=-1)
            single = xp.expand_dims((n_pred_groups < 1.5) * (k > 0), -1) * (size < 1.5)
            keep = (xp.sum(extends, axis=-1) < 0.5) * (1.0 - single) > 0.5
            scores = xp.where(keep, xp.matmul(nodes, g.membership.T), -np.inf)
            total = total + _first_max(scores, xp)[0]
        return xp.where(n_pred_groups > 0.5, total, -np.inf)

    def best_cliques(self, r) -> list[np.ndarray]:
        """Per group, the index of the first maximising clique, shape r.shape[:-1] (numpy only)."""
        return [_first_max(s, NUMPY)[1] for s in self.clique_scores(np.asarray(r, float))]

    def best_combination(self, r, *, with_zero: bool = False) -> tuple[tuple[str, int], ...]:
        """The best global combination for one contribution vector r (n_results,), numpy only.

        Returns (analysis id, database result index of the chosen version) per member, in node order.
        Members with r = 0 exactly (no prediction) are left out unless `with_zero`.
        """
        r = np.asarray(r, float)
        if r.ndim != 1:
            raise ValueError("best_combination takes one contribution vector (n_results,)")
        out = []
        for g, k in zip(self.groups, self.best_cliques(r)):
            for node in np.flatnonzero(g.membership[int(k)]):
                res = np.flatnonzero(self.graph.result_node == node)
                j = int(res[np.argmax(r[res])])
                if with_zero or r[j] != 0.0:
                    out.append((node, self.graph.analyses[node], j))
        return tuple((a, j) for _, a, j in sorted(out))

    def paper_combination(self, r, predicted, vetoed: Iterable[tuple[int, int]] = ()
                          ) -> tuple[float, tuple[tuple[str, int], ...]]:
        """The paper's per-step definition, for one state (numpy only; reference and greedy walk).

        Maximal cliques are enumerated among the results with a prediction (`predicted`, bool per
        result) only, twins being mutually exclusive members, and single-result cliques are never
        scored. `vetoed`: node pairs that do not combine in this state although the graph allows
        it (the paper's ``hasOverlap``). Returns (max_c Σ_{i∈c} r_i, members as (analysis id,
        result index)), or (nan, ()) when no two predicted results combine (the paper's Z = None).
        """
        r = np.asarray(r, float)
        predicted = np.asarray(predicted, bool) & (self.graph.result_node >= 0)
        # Per node, its best predicted version (twins share neighbourhoods, so choosing is exact).
        version = {}
        for j in np.flatnonzero(predicted):
            n = int(self.graph.result_node[j])
            if n not in version or r[j] > r[version[n]]:
                version[n] = int(j)
        veto = _veto_set(vetoed)
        per_group = []
        for g in self.groups:
            nodes = tuple(int(n) for n in g.nodes if int(n) in version)
            if nodes:
                per_group.append([[version[n] for n in c] for c in self._cliques_among(nodes, veto)])
        if len(per_group) == 1:      # one group only: drop single-result cliques
            per_group[0] = [c for c in per_group[0] if len(c) > 1]
        if not per_group or not per_group[0]:
            return float("nan"), ()
        members = [max(cliques, key=lambda c: sum(r[j] for j in c)) for cliques in per_group]
        chosen = sorted(j for c in members for j in c)
        return (float(sum(r[j] for j in chosen)),
                tuple((self.graph.analyses[self.graph.result_node[j]], j) for j in chosen))

    def paper_cliques(self, node_predicted: np.ndarray, vetoed: Sequence[Iterable[tuple[int, int]]] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The paper's per-step cliques of a batch, padded, for :meth:`paper_clique_max` (numpy).

        `node_predicted` (B, n_nodes) bool; `vetoed` per state the node pairs that do not combine in
        that state (``hasOverlap``), or None. Per state and group: the maximal cliques of the
        predicted nodes with the vetoed edges removed; single-node cliques dropped when only one
        group has predictions; a group without predictions contributes the empty clique; a state
        without any clique left (the paper's Z = None) has no valid row at all (memoised per state).
        Returns ``members`` (B, n_groups, C, n_nodes) 0/1 and ``valid`` (B, n_groups, C) 0/1, C the
        largest clique count in the batch (at least 1).
        """
        node_predicted = np.asarray(node_predicted, bool)
        n_b, n_groups = node_predicted.shape[0], len(self.groups)
        n = self.graph.n_nodes
        group_of = np.full(n, -1)
        for k, g in enumerate(self.groups):
            group_of[g.nodes] = k
        # the vetoed pairs that matter, a·n + b (a < b, both predicted, one group), per state
        pairs = [np.asarray(v if isinstance(v, np.ndarray) else list(v), dtype=np.int64).reshape(-1, 2)
                 for v in vetoed] if vetoed is not None else []
        state = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
        pairs = np.sort(np.concatenate(pairs + [np.zeros((0, 2), np.int64)]), axis=1)
        inside = (node_predicted[state, pairs[:, 0]] & node_predicted[state, pairs[:, 1]]
                  & (group_of[pairs[:, 0]] == group_of[pairs[:, 1]]))
        code = np.unique((state[inside] * n + pairs[inside, 0]) * n + pairs[inside, 1])
        bounds = np.searchsorted(code // (n * n), np.arange(n_b + 1))
        code %= n * n
        states = []
        # the memo keys: a state's row and vetoed pairs as bytes, cut from two buffers (fewer numpy calls)
        rows, vetoes, bounds = np.ascontiguousarray(node_predicted).tobytes(), code.tobytes(), bounds.tolist()
        width = code.itemsize
        for b in range(n_b):
            key = rows[b * n:(b + 1) * n] + vetoes[bounds[b] * width:bounds[b + 1] * width]
            if key not in self._state_cliques:
                if len(self._state_cliques) >= STATE_MEMO:
                    self._state_cliques.clear()
                self._state_cliques[key] = self._state_rows(node_predicted[b], code[bounds[b]:bounds[b + 1]])
            states.append(self._state_cliques[key])
        counts = np.array([s[0] for s in states], dtype=np.int64).reshape(n_b, n_groups)
        n_c = max(int(counts.max(initial=0)), 1)
        valid = (np.arange(n_c) < counts[:, :, None]) * 1.0
        members = np.zeros((n_b, n_groups, n_c, self.graph.n_nodes))
        sizes = [s[1].shape[1] for s in states]
        if sum(sizes):
            g, c, node = np.concatenate([s[1] for s in states], axis=1)
            members[np.repeat(np.arange(n_b), sizes), g, c, node] = 1.0
        return members, valid

    def _state_rows(self, predicted: np.ndarray, vetoed: np.ndarray) -> tuple[list[int], np.ndarray]:
        """One state of :meth:`paper_cliques`: the clique count per group and the (group, clique,
        node) index of every membership; `vetoed` the pairs a·n_nodes + b (a < b) inside one group."""
        n = self.graph.n_nodes
        veto = frozenset(zip((vetoed // n).tolist(), (vetoed % n).tolist()))
        per_group = [tuple(g.nodes[predicted[g.nodes]].tolist()) for g in self.groups]
        cliques = [self._cliques_among(nodes, veto) if nodes else [()] for nodes in per_group]
        if sum(bool(nodes) for nodes in per_group) == 1:
            cliques = [[c for c in cs if len(c) > 1] if nodes else cs for cs, nodes in zip(cliques, per_group)]
        if not any(per_group) or not all(cliques):
            cliques = [[] for _ in per_group]
        index = [(g, c, node) for g, cs in enumerate(cliques) for c, clique in enumerate(cs) for node in clique]
        return [len(cs) for cs in cliques], np.array(index, dtype=np.int64).reshape(-1, 3).T

    def slot_cliques(self, members: np.ndarray, valid: np.ndarray, slot_node: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The cliques of :meth:`paper_cliques` over a state's *slots* (its predicted results, in
        any order), for :meth:`paper_clique_max` (numpy).

        `slot_node` (B, S): the graph node of each slot, -1 for padding. Returns ``members``
        (B, S, n_groups, C') 0/1 and ``valid`` (B, n_groups, C'). Twins (two slots on one node: the
        -agg versions of an analysis) are mutually exclusive versions: a clique holding that node
        becomes one clique per choice of version, so that Σ over a clique's slots takes one
        version and the max over cliques takes the best one (the node value of :meth:`node_values`).
        """
        n_b, n_s = slot_node.shape
        real = slot_node >= 0
        # (B, S, n_groups, C): the advanced indices' axes come first
        out = members[np.arange(n_b)[:, None], :, :, np.maximum(slot_node, 0)] * real[:, :, None, None]
        nodes = np.sort(np.where(real, slot_node, -1 - np.arange(n_s)), axis=1)
        twins = np.flatnonzero(np.any(nodes[:, 1:] == nodes[:, :-1], axis=1))
        if not len(twins):
            return out, valid
        out = out.transpose(0, 2, 3, 1)                                   # (B, n_groups, C, S)
        rows = [[[] for _ in range(len(self.groups))] for _ in range(n_b)]
        for b in range(n_b):
            for g in range(len(self.groups)):
                for c in np.flatnonzero(valid[b, g] > 0):
                    slots = np.flatnonzero(out[b, g, c] > 0)
                    if b not in twins:
                        rows[b][g].append(slots)
                        continue
                    versions = [slots[slot_node[b, slots] == n] for n in np.unique(slot_node[b, slots])]
                    rows[b][g] += [np.array(choice, dtype=np.int64) for choice in itertools.product(*versions)]
        n_c = max([len(r) for state in rows for r in state] + [1])
        slot_members, slot_valid = np.zeros((n_b, n_s, len(self.groups), n_c)), np.zeros((n_b, len(self.groups), n_c))
        for b, state in enumerate(rows):
            for g, cliques in enumerate(state):
                slot_valid[b, g, :len(cliques)] = 1.0
                for c, slots in enumerate(cliques):
                    slot_members[b, slots, g, c] = 1.0
        return slot_members, slot_valid

    @staticmethod
    def paper_clique_max(r, members, valid, first: bool = True):
        """Σ_g max over the valid cliques c of group g of Σ_{s∈c} r_s, either backend.

        `r` (B, k, S) the slots' contributions (k: e.g. a μ grid), `members` (B, S, n_groups, C)
        and `valid` (B, n_groups, C) from :meth:`slot_cliques`. Returns (B, k), −inf where a state
        has no valid clique (Z = None). `first`: the gradient flows to the first maximising clique
        only (else: a plain max, for values whose gradient is not taken; same value).
        """
        xp = backend_of(r, members, valid)
        r, members, valid = xp.asarray(r), xp.asarray(members), xp.asarray(valid)
        n_b, n_s = members.shape[0], members.shape[1]
        flat = members.reshape((n_b, n_s, -1))
        scores = xp.matmul(r, flat).reshape((n_b, r.shape[1]) + tuple(valid.shape[1:]))
        scores = xp.where(xp.expand_dims(valid, 1) > 0.5, scores, -np.inf)
        best = _first_max(scores, xp)[0] if first else scores.max(axis=-1)
        return xp.sum(best, axis=-1)

    def _cliques_among(self, nodes: tuple[int, ...], vetoed: frozenset = frozenset()) -> list[tuple[int, ...]]:
        """Maximal cliques of the subgraph induced by `nodes` (one group) without the `vetoed`
        edges (pairs (a, b), a < b), memoised."""
        key = (nodes, frozenset((a, b) for a, b in vetoed if a in nodes and b in nodes))
        if key not in self._subgraph_cliques:
            sub = self.graph.adjacency[np.ix_(nodes, nodes)].copy()
            index = {n: i for i, n in enumerate(nodes)}
            for a, b in key[1]:
                sub[index[a], index[b]] = sub[index[b], index[a]] = False
            self._subgraph_cliques[key] = [tuple(nodes[i] for i in c) for c in maximal_cliques(sub)]
        return self._subgraph_cliques[key]

    def fixed_mask(self, analyses: Sequence[str], check: bool = True) -> np.ndarray:
        """Node mask of a user combination; with `check`, every pair must be combinable."""
        idx = sorted({self.graph.node(a) for a in analyses})
        if check:
            for i, a in enumerate(idx):
                for b in idx[i + 1:]:
                    if not self.graph.adjacency[a, b]:
                        raise UserError(f"fixed combination: {self.graph.analyses[a]} and "
                                        f"{self.graph.analyses[b]} may not be combined")
        mask = np.zeros(self.graph.n_nodes, bool)
        mask[idx] = True
        return mask


def _veto_set(pairs: Iterable[tuple[int, int]]) -> frozenset[tuple[int, int]]:
    return frozenset((min(int(a), int(b)), max(int(a), int(b))) for a, b in pairs)


def _first_max(scores, xp: SimpleNamespace):
    """(value, index) of the first maximum along the last axis; the gradient flows to it only.
    The value is a masked sum with one term (exact): elementwise ops, where PyTensor's advanced
    indexing is a Python Op."""
    k = xp.argmin(-scores, axis=-1)
    first = xp.eq(xp.expand_dims(k, -1), xp.arange(scores.shape[-1]))
    return xp.sum(xp.where(first, scores, 0.0), axis=-1), k


def _logsumexp(scores, xp: SimpleNamespace):
    m = xp.stop_gradient(_first_max(scores, xp)[0])
    m = xp.where(m > -np.inf, m, 0.0)
    return m + xp.log(xp.sum(xp.exp(scores - xp.expand_dims(m, -1)), axis=-1))


def build_combiner(graph: CombinabilityGraph) -> Combiner:
    """Enumerate the maximal cliques of each (experiment, √s) group once and build the matrices."""
    groups = []
    for (experiment, sqrts), nodes in graph.groups():
        cliques = maximal_cliques(graph.adjacency[np.ix_(nodes, nodes)])
        member = np.zeros((len(cliques), graph.n_nodes))
        for c, clique in enumerate(cliques):
            member[c, nodes[list(clique)]] = 1.0
        groups.append(CliqueGroup(experiment, sqrts, nodes, member))
    n_res = len(graph.result_node)
    slots: list[list[int]] = [[] for _ in range(graph.n_nodes)]
    for j, node in enumerate(graph.result_node):
        if node >= 0:
            slots[node].append(j)
    n_ver = max([len(s) for s in slots] + [1])
    versions = np.zeros((n_ver, n_res, graph.n_nodes))
    has = np.zeros((n_ver, graph.n_nodes), bool)
    for node, res in enumerate(slots):
        for v, j in enumerate(res):
            versions[v, j, node] = 1.0
            has[v, node] = True
    return Combiner(graph, tuple(groups), versions, has)
