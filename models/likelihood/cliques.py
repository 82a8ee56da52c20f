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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import SimpleNamespace

import numba
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
        if vetoed is None:
            return self.paper_cliques_flat(node_predicted, np.zeros(0, np.int64), np.zeros((0, 2), np.int64))
        pairs = [np.asarray(v if isinstance(v, np.ndarray) else list(v), dtype=np.int64).reshape(-1, 2) for v in vetoed]
        return self.paper_cliques_flat(node_predicted, np.repeat(np.arange(len(pairs)), [len(p) for p in pairs]),
                                       np.concatenate(pairs + [np.zeros((0, 2), np.int64)]))

    def paper_cliques_flat(self, node_predicted: np.ndarray, state: np.ndarray, vetoed: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`paper_cliques` with the vetoed node pairs of all states flat: `vetoed` (k, 2), pair i
        of state `state[i]` (any order)."""
        node_predicted = np.ascontiguousarray(node_predicted, dtype=bool)
        n_b, n = node_predicted.shape[0], self.graph.n_nodes
        # the vetoed pairs that matter, a·n + b (a < b, both predicted, one group), per state
        code, bounds = _state_vetoes(node_predicted, np.asarray(state, dtype=np.int64),
                                     np.asarray(vetoed, dtype=np.int64).reshape(-1, 2), self._group_of)
        states = []
        # the memo keys: a state's row and vetoed pairs as bytes, cut from two buffers (fewer numpy calls)
        rows, vetoes, bounds = node_predicted.tobytes(), code.tobytes(), bounds.tolist()
        width = code.itemsize
        for b in range(n_b):
            key = rows[b * n:(b + 1) * n] + vetoes[bounds[b] * width:bounds[b + 1] * width]
            if key not in self._state_cliques:
                if len(self._state_cliques) >= STATE_MEMO:
                    self._state_cliques.clear()
                self._state_cliques[key] = self._state_rows(node_predicted[b], code[bounds[b]:bounds[b + 1]])
            states.append(self._state_cliques[key])
        return _assemble_cliques(states[0] if n_b == 1 else np.concatenate(states + [np.zeros(0, np.int64)]),
                                 n_b, len(self.groups), n)

    @cached_property
    def _group_of(self) -> np.ndarray:
        """The group of each node (-1: none)."""
        out = np.full(self.graph.n_nodes, -1, dtype=np.int64)
        for k, g in enumerate(self.groups):
            out[g.nodes] = k
        return out

    def _state_rows(self, predicted: np.ndarray, vetoed: np.ndarray) -> np.ndarray:
        """One state of :meth:`paper_cliques`, packed for :func:`_assemble_cliques`: the clique count
        per group, the number m of memberships, then the (group, clique, node) of each membership;
        `vetoed` the pairs a·n_nodes + b (a < b) inside one group."""
        n = self.graph.n_nodes
        veto = frozenset(zip((vetoed // n).tolist(), (vetoed % n).tolist()))
        per_group = [tuple(g.nodes[predicted[g.nodes]].tolist()) for g in self.groups]
        cliques = [self._cliques_among(nodes, veto) if nodes else [()] for nodes in per_group]
        if sum(bool(nodes) for nodes in per_group) == 1:
            cliques = [[c for c in cs if len(c) > 1] if nodes else cs for cs, nodes in zip(cliques, per_group)]
        if not any(per_group) or not all(cliques):
            cliques = [[] for _ in per_group]
        index = [(g, c, node) for g, cs in enumerate(cliques) for c, clique in enumerate(cs) for node in clique]
        return np.array([len(cs) for cs in cliques] + [len(index)] + [i for triple in index for i in triple],
                        dtype=np.int64)

    def slot_cliques(self, members: np.ndarray, valid: np.ndarray, slot_node: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The cliques of :meth:`paper_cliques` over a state's *slots* (its predicted results, in
        any order), for :meth:`paper_clique_max` (numpy).

        `slot_node` (B, S): the graph node of each slot, -1 for padding. Returns ``members``
        (B, S, n_groups, C') 0/1 and ``valid`` (B, n_groups, C'). Twins (two slots on one node: the
        -agg versions of an analysis) are mutually exclusive versions: a clique holding that node
        becomes one clique per choice of version (in :func:`itertools.product` order over its nodes,
        ascending), so that Σ over a clique's slots takes one version and the max over cliques takes
        the best one (the node value of :meth:`node_values`). Without twins in the batch C' = C and
        the cliques keep their places.
        """
        out, out_valid = _slot_cliques(np.asarray(members, dtype=float), np.asarray(valid, dtype=float),
                                       np.asarray(slot_node, dtype=np.int64))
        return out, (valid if out_valid is None else out_valid)

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


@numba.njit(cache=True)
def _state_vetoes(node_predicted: np.ndarray, state: np.ndarray, pairs: np.ndarray, group_of: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The vetoed pairs (`state`, `pairs` (k, 2)) whose nodes are both predicted in their state and of
    one group, as sorted unique codes a·n + b (a < b) per state, and each state's bounds (B + 1)."""
    n_b, n = node_predicted.shape
    codes = np.empty(len(state), np.int64)
    m = 0
    for k in range(len(state)):
        a, b, s = min(pairs[k, 0], pairs[k, 1]), max(pairs[k, 0], pairs[k, 1]), state[k]
        if node_predicted[s, a] and node_predicted[s, b] and group_of[a] == group_of[b]:
            codes[m] = (s * n + a) * n + b
            m += 1
    codes = np.sort(codes[:m])
    keep = np.ones(m, np.bool_)
    for k in range(1, m):
        keep[k] = codes[k] != codes[k - 1]
    codes = codes[keep]
    bounds = np.zeros(n_b + 1, np.int64)
    for c in codes:
        bounds[c // (n * n) + 1] += 1
    return codes % (n * n), np.cumsum(bounds)


@numba.njit(cache=True)
def _assemble_cliques(packed: np.ndarray, n_b: int, n_groups: int, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``members``, ``valid`` of :meth:`Combiner.paper_cliques` from the states' packed rows
    (:meth:`Combiner._state_rows`), one after the other."""
    counts = np.zeros((n_b, n_groups), np.int64)
    at = np.zeros(n_b + 1, np.int64)
    for b in range(n_b):
        counts[b] = packed[at[b]:at[b] + n_groups]
        at[b + 1] = at[b] + n_groups + 1 + 3 * packed[at[b] + n_groups]
    n_c = max(counts.max(), 1) if n_b else 1
    members, valid = np.zeros((n_b, n_groups, n_c, n_nodes)), np.zeros((n_b, n_groups, n_c))
    for b in range(n_b):
        for g in range(n_groups):
            valid[b, g, :counts[b, g]] = 1.0
        for q in range(at[b] + n_groups + 1, at[b + 1], 3):
            members[b, packed[q], packed[q + 1], packed[q + 2]] = 1.0
    return members, valid


@numba.njit(cache=True)
def _slot_cliques(members: np.ndarray, valid: np.ndarray, slot_node: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """:meth:`Combiner.slot_cliques`; the valid array is None where it is `valid` itself (no twins)."""
    n_b, n_groups, n_c, _ = members.shape
    n_s = slot_node.shape[1]
    # (B, S, n_groups, C): a slot's membership is its node's (0 for padding)
    out = np.zeros((n_b, n_s, n_groups, n_c))
    twins = np.zeros(n_b, np.bool_)
    for b in range(n_b):
        for s in range(n_s):
            real = slot_node[b, s] >= 0
            node = max(slot_node[b, s], 0)
            for g in range(n_groups):
                for c in range(n_c):
                    out[b, s, g, c] = members[b, g, c, node] * (1.0 if real else 0.0)
            for t in range(s):
                twins[b] |= real and slot_node[b, t] == slot_node[b, s]
    if not twins.any():
        return out, None
    # per valid clique: its slots by node, then slot; one clique per choice of one slot per node
    n_out = np.zeros((n_b, n_groups), np.int64)
    slots, start = np.empty(n_s, np.int64), np.empty(n_s + 1, np.int64)
    for stage in range(2):                      # 0: count the cliques, 1: fill them in
        if stage:
            n_new = max(n_out.max(), 1)
            slot_members, slot_valid = np.zeros((n_b, n_s, n_groups, n_new)), np.zeros((n_b, n_groups, n_new))
            n_out[:] = 0
        for b in range(n_b):
            for g in range(n_groups):
                for c in range(n_c):
                    if not valid[b, g, c] > 0:
                        continue
                    k = 0
                    for s in range(n_s):
                        if out[b, s, g, c] > 0:
                            slots[k] = s
                            k += 1
                    order = np.argsort(slot_node[b, slots[:k]], kind="mergesort")
                    chosen = slots[:k][order]
                    n_nodes, n_choices = 0, 1
                    for i in range(k):
                        if i == 0 or slot_node[b, chosen[i]] != slot_node[b, chosen[i - 1]]:
                            start[n_nodes] = i
                            n_nodes += 1
                    start[n_nodes] = k
                    for i in range(n_nodes):
                        n_choices *= start[i + 1] - start[i]
                    if stage:
                        for t in range(n_choices):
                            rest, col = t, n_out[b, g] + t
                            for i in range(n_nodes - 1, -1, -1):    # itertools.product: the last node fastest
                                size = start[i + 1] - start[i]
                                slot_members[b, chosen[start[i] + rest % size], g, col] = 1.0
                                rest //= size
                            slot_valid[b, g, col] = 1.0
                    n_out[b, g] += n_choices
    return slot_members, slot_valid


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
