"""The objective of the greedy walk: the ``paper`` target K of a protomodel, as a small protocol.

The walker (:mod:`.walker`) only needs, per protomodel, the numbers of :class:`PaperScore`; anything
that implements :class:`PaperObjective` can drive it (the lead's compiled ``paper`` graph, or a
test objective). :class:`NumpyPaperObjective` is a straightforward numpy composition of the
existing pieces, the paper's per-step definition (method reference §4–§6):

1. predictions of the model (:class:`~tdmcmc.models.protomodel.predictions.Predictor`);
2. critic: r_obs of every UL prediction and of the best-*expected* SR of every EM result (largest
   r_exp; r_obs where no expected UL exists; a missing r counts 23 as in the original);
   μ_max = 0.999 · r_thr / r_max (r_thr = 1.3);
3. combiner set: predictions with a likelihood (EM SRs; UL results with an expected UL), one per
   result: the largest UL_obs/UL_exp (the paper's ``selectMostSignificantSR``); likelihoods in the
   ``2020`` variants (:func:`~tdmcmc.models.likelihood.em_nll`, :func:`~tdmcmc.models.likelihood.ul_nll`);
4. maximal cliques of the combinability graph *among these predictions* (one node per result; the
   UL and EM versions of an analysis never combine), cliques of size 1 never scored;
5. per clique, μ̂_c maximises ln L_c on [0, μ_max] (:func:`~tdmcmc.models.likelihood.profile_mu`),
   Z_c = √(2 [ln L_c(μ̂_c) − ln L_c(0)]); the best clique has the largest Z_c (first on ties);
6. K = Z² + 2 ln π_paper (expo1, κ clustered in int(100 κ) bins as in the production runs).

If no two predictions combine, Z and K are None (the paper's "Z = None": the step is reverted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numba
import numpy as np

from tdmcmc.models.likelihood.prior import CLUSTERINGS, branching_count, is_counted_ssm, ssm_count
from tdmcmc.models.protomodel.model import Protomodel

R_THRESHOLD = 1.3
MU_MAX_SAFETY = 0.999           # the original's μ_max = 0.999 · r_thr / r_max
MISSING_R = 23.0                # the original's r for a prediction without an UL
MU_MAX_UNBOUNDED = 1.0e4        # μ_max when no critic prediction exists (the original: ∞)


@dataclass(frozen=True)
class PaperScore:
    """The paper target of one protomodel.

    ``K``, ``Z``: None when no combination of ≥ 2 combinable predictions exists. ``mu_hat``: the
    best clique's μ̂ in [0, ``mu_max``]; ``r_max``: the critic's largest observed r (at μ = 1);
    ``log_prior``: ln π_paper, ``prior_counts``: its n_particles, n_br, n_ssm;
    ``best_combination``: the best clique's members as "result-id:dataset" labels (UL: "result-id:UL");
    ``contributing``: positive PDG ids occurring in the elements of the best clique's predictions
    (the original's ``getAllPidsOfBestCombo``, used by the walker's prune step).
    """

    K: float | None
    Z: float | None
    mu_hat: float
    mu_max: float
    r_max: float
    log_prior: float
    prior_counts: dict[str, float] = field(default_factory=dict)
    best_combination: tuple[str, ...] = ()
    contributing: frozenset[int] = frozenset()
    n_predictions: int = 0

    def to_dict(self) -> dict:
        return {"K": self.K, "Z": self.Z, "mu_hat": self.mu_hat, "mu_max": _finite_or_none(self.mu_max),
                "r_max": self.r_max, "log_prior": self.log_prior, "prior_counts": dict(self.prior_counts),
                "best_combination": list(self.best_combination), "contributing": sorted(self.contributing),
                "n_predictions": self.n_predictions}


class PaperObjective(Protocol):
    """Scores protomodels with the ``paper`` target. Called with the (one or two) models a walker
    step evaluates (the proposal and its merged copy); must return one score per model, in order.
    Must be picklable or constructible in a worker process (see :mod:`.cli`)."""

    def __call__(self, models: Sequence[Protomodel]) -> list[PaperScore]: ...


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def default_combination_matrix(database: Path) -> Path | None:
    """``<database>/../raw/protomodels/combination-matrix`` if it exists (the shared data layout)."""
    candidate = Path(database).resolve().parent / "raw" / "protomodels" / "combination-matrix"
    return candidate if candidate.is_dir() else None


class NumpyPaperObjective:
    """The paper target of the module docstring on one database (numpy, one model at a time).

    :param database: SModelS database folder
    :param combination_matrix: folder/file of allow-lists; None: :func:`default_combination_matrix`,
        and without one only results of different experiments or √s combine
    :param r_threshold: the critic threshold r_thr
    :param kappa_clustering: n_SSM clustering of the prior, ``"bins"`` (production runs) or ``"relative"``
    :param element_overlap: the paper's ``hasOverlap`` veto: two predictions of the same experiment and
        √s that share a contributing element do not combine
    """

    def __init__(self, database: str | Path, combination_matrix: str | Path | None = None, *,
                 r_threshold: float = R_THRESHOLD, kappa_clustering: str = "bins", space=None,
                 element_overlap: bool = True):
        from tdmcmc.models.database.compiled import load_compiled
        from tdmcmc.models.likelihood.cliques import build_combiner
        from tdmcmc.models.likelihood.combinability import AllowLists, graph_for_database, read_allow_lists
        from tdmcmc.models.protomodel.predictions import MapInterpolators, Predictor
        from tdmcmc.models.protomodel.space import default_space
        from tdmcmc.models.protomodel.topologies import load_table

        self.space = space or default_space()
        self.compiled = load_compiled(Path(database))
        matrix = Path(combination_matrix) if combination_matrix else default_combination_matrix(Path(database))
        self.combination_matrix = matrix
        allow = read_allow_lists(matrix) if matrix else AllowLists({}, {})
        self.graph = graph_for_database(self.compiled.arrays, allow)
        self.combiner = build_combiner(self.graph)
        self.table = load_table(self.space, self.compiled)
        self.predictor = Predictor(self.table, self.compiled, self.space,
                                   MapInterpolators(self.compiled, cache=True))
        self.contributing_rows = ContributingRows(self.predictor)
        self.r_threshold = r_threshold
        self.kappa_clustering = kappa_clustering
        self.element_overlap = element_overlap
        a = self.compiled.arrays
        # results are (id, is EM): UL and EM versions of an analysis can share an id
        self._result_index = {(str(r), bool(em)): i for i, (r, em) in enumerate(zip(a.result_id, a.result_is_em))}
        self._txnames: dict[tuple[int, str], list[int]] = {}      # (dataset, txname) -> table txnames
        for i, ref in enumerate(self.table.txnames):
            self._txnames.setdefault((int(ref.dataset), ref.name), []).append(i)
        self._dataset_index: dict[tuple[int, str | None], int] = {}
        for d, (r, ds) in enumerate(zip(a.dataset_result, a.dataset_id)):
            self._dataset_index[(int(r), None if not a.result_is_em[r] else str(ds))] = d

    def __call__(self, models: Sequence[Protomodel]) -> list[PaperScore]:
        return [self.score(m) for m in models]

    # -- one model ---------------------------------------------------------------------------------

    def score(self, model: Protomodel) -> PaperScore:
        """The :class:`PaperScore` of one protomodel."""
        arrays = self.predictor.model_arrays(model)
        predictions = self.predictor.predict(arrays)
        r_max = self._critic(predictions)
        mu_max = MU_MAX_SAFETY * self.r_threshold / r_max if r_max > 0 else np.inf
        log_prior, counts = paper_prior(self.space, model, self.kappa_clustering)
        selected = self._combiner_set(predictions)
        base = dict(mu_max=mu_max, r_max=r_max, log_prior=log_prior, prior_counts=counts,
                    n_predictions=len(predictions))
        cliques = self._cliques(selected, arrays)
        if not cliques:
            return PaperScore(K=None, Z=None, mu_hat=0.0, **base)
        z, mu_hat, best = self._best_clique(selected, cliques, mu_max)
        members = [selected[i] for i in best]
        return PaperScore(K=z * z + 2.0 * log_prior, Z=z, mu_hat=mu_hat, **base,
                          best_combination=tuple(f"{p.analysis}:{p.dataset or 'UL'}" for p in members),
                          contributing=self._contributing(arrays, members))

    def _result(self, p) -> int:
        return self._result_index[(p.analysis, p.datatype == "efficiencyMap")]

    def _critic(self, predictions) -> float:
        best_em: dict[str, tuple[float, float]] = {}
        r_values = [0.0]
        for p in predictions:
            r_obs = p.r_obs if p.r_obs is not None else MISSING_R
            if p.datatype == "upperLimit":
                r_values.append(r_obs)
                continue
            key = p.r_exp if p.r_exp is not None else r_obs
            if p.analysis not in best_em or key > best_em[p.analysis][0]:
                best_em[p.analysis] = (key, r_obs)
        r_values += [r for _, r in best_em.values()]
        return float(max(r_values))

    def _combiner_set(self, predictions) -> list:
        """One prediction with a likelihood per result: the largest UL_obs/UL_exp."""
        best: dict[str, tuple[float, object]] = {}
        a = self.compiled.arrays
        for p in predictions:
            if p.ul_obs_fb is None or p.ul_exp_fb is None or not p.ul_exp_fb > 0:
                continue
            r = self._result(p)
            if self.graph.result_node[r] < 0:
                continue
            if p.datatype == "efficiencyMap":
                d = self._dataset_index[(r, p.dataset)]
                if not (np.isfinite(a.observed_n[d]) and np.isfinite(a.expected_bg[d]) and a.bg_error[d] > 0):
                    continue
            ratio = p.ul_obs_fb / p.ul_exp_fb
            if p.analysis not in best or ratio > best[p.analysis][0]:
                best[p.analysis] = (ratio, p)
        return [p for _, p in best.values()]

    def _cliques(self, selected, arrays) -> list[tuple[int, ...]]:
        from tdmcmc.models.likelihood.cliques import maximal_cliques

        nodes = np.array([self.graph.result_node[self._result(p)] for p in selected], dtype=int)
        if len(nodes) < 2:
            return []
        adjacency = self.graph.adjacency[np.ix_(nodes, nodes)] & (nodes[:, None] != nodes[None, :])
        if self.element_overlap:
            adjacency &= ~self._overlaps(selected, arrays)
        return [c for c in maximal_cliques(adjacency) if len(c) >= 2]

    def vetoed_pairs(self, model: Protomodel, selected) -> list[tuple[int, int]]:
        """The graph-node pairs of the `selected` predictions (:meth:`_combiner_set`) that the
        ``hasOverlap`` veto separates, for :meth:`Combiner.paper_combination` (empty when off)."""
        if not self.element_overlap:
            return []
        overlap = self._overlaps(selected, self.predictor.model_arrays(model))
        nodes = [int(self.graph.result_node[self._result(p)]) for p in selected]
        return [(nodes[i], nodes[j]) for i, j in zip(*np.nonzero(np.triu(overlap)))]

    def _overlaps(self, selected, arrays) -> np.ndarray:
        """(n, n) bool: same experiment and √s, and a contributing element (table row) in common."""
        g = self.graph
        nodes = [g.result_node[self._result(p)] for p in selected]
        group = [(g.experiment[n], g.sqrts[n]) for n in nodes]
        rows = self.contributing_rows([arrays], [[self._table_txnames(p) for p in selected]])[0]
        out = np.zeros((len(selected), len(selected)), bool)
        for i in range(len(selected)):
            for j in range(i):
                out[i, j] = out[j, i] = group[i] == group[j] and bool(np.intersect1d(rows[i], rows[j]).size)
        return out

    def _table_txnames(self, p) -> np.ndarray:
        """Table txname indices of a prediction."""
        d = self._dataset_index[(self._result(p), p.dataset)]
        return np.array([i for name in p.txnames for i in self._txnames.get((d, name), ())], dtype=np.int64)

    def _nll_terms(self, selected):
        """A function μ (any shape) -> −ln L_i(μ) + ln L_i(0) for the selected predictions, shape
        μ.shape + (n,); EM and UL terms are each one vectorised call."""
        from tdmcmc.models.likelihood import em_nll, ul_nll

        a = self.compiled.arrays
        em = np.array([p.datatype == "efficiencyMap" for p in selected], dtype=bool)
        d = [self._dataset_index[(self._result(p), p.dataset)] for p in selected]
        em_args = tuple(np.array(v, dtype=float)[em] for v in (
            [p.signal_events or 0.0 for p in selected], a.observed_n[d], a.expected_bg[d], a.bg_error[d]))
        ul_args = tuple(np.array([getattr(p, k) or 0.0 for p in selected], dtype=float)[~em]
                        for k in ("xsec_fb", "ul_obs_fb", "ul_exp_fb", "lumi_ifb"))
        em0 = em_nll(0.0, *em_args, variant="2020")
        ul0 = ul_nll(0.0, *ul_args, variant="2020")

        def terms(mu: np.ndarray) -> np.ndarray:
            mu = np.asarray(mu, dtype=float)[..., None]
            out = np.empty(mu.shape[:-1] + (len(selected),))
            out[..., em] = em_nll(mu, *em_args, variant="2020") - em0
            out[..., ~em] = ul_nll(mu, *ul_args, variant="2020") - ul0
            return out

        return terms

    def _best_clique(self, selected, cliques, mu_max: float) -> tuple[float, float, tuple[int, ...]]:
        from tdmcmc.models.likelihood import profile_mu

        membership = np.zeros((len(cliques), len(selected)))
        for c, clique in enumerate(cliques):
            membership[c, list(clique)] = 1.0
        top = np.full(len(cliques), min(mu_max, MU_MAX_UNBOUNDED))

        terms = self._nll_terms(selected)

        def nll(mu):      # mu (n_cliques, k) -> (n_cliques, k)
            return np.einsum("ckn,cn->ck", terms(mu), membership)

        mu_hat, nll_min = profile_mu(nll, top)
        z = np.sqrt(np.maximum(0.0, -2.0 * nll_min))
        best = int(np.argmax(z))
        return float(z[best]), float(mu_hat[best]), cliques[best]

    def _contributing(self, arrays, members) -> frozenset[int]:
        """PDG ids of the table rows that contribute to the members' predictions (ε > 0 or inside
        the UL grid), i.e. the particles SModelS lists in those theory predictions' elements."""
        wanted = np.concatenate([self._table_txnames(p) for p in members])
        return self.contributing_rows.particles(self.contributing_rows([arrays], [[wanted]])[0][0])


class ContributingRows:
    """The elements (topology-table rows: production channel and both decay chains, mass-compressed
    forms being rows of their own) behind predictions, i.e. SModelS' ``TheoryPrediction.elements``.

    A row counts for a prediction if it survives σ-cut and compression, has a weight > 0 at the
    txname's √s and ε > 0 (efficiency map) or lies inside the grid (upper-limit map). For an UL
    txname with several mass clusters the rows of all its clusters are returned (the chosen cluster
    is not recorded in the prediction arrays). The rows are read from the predictor's matches of
    the models (:meth:`Predictor.entries`, or a forward trace holding them).
    """

    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, arrays: Sequence, wanted: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        """`arrays`: per model its :class:`~tdmcmc.models.protomodel.predictions.ModelArrays`;
        `wanted`: per model, per prediction the table txname indices of the prediction. Returns per
        model, per prediction the sorted unique row indices (:meth:`rows`)."""
        sizes = [len(want) for want in wanted]
        tx = [np.asarray(w, dtype=np.int64) for want in wanted for w in want]
        owner_model = np.repeat(np.arange(len(wanted)), sizes)
        owner, rows = self.rows(arrays, owner_model, np.repeat(np.arange(len(tx)), [len(w) for w in tx]),
                                np.concatenate(tx + [np.zeros(0, np.int64)]))
        bounds = np.searchsorted(owner, np.arange(len(tx) + 1))
        flat = [rows[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return [flat[lo:hi] for lo, hi in zip(starts[:-1], starts[1:])]

    def rows(self, arrays: Sequence, owner_model: np.ndarray, tx_owner: np.ndarray, tx: np.ndarray,
             trace=None) -> tuple[np.ndarray, np.ndarray]:
        """The contributing rows of several *owners* (predictions, or any set of txnames) of a batch,
        vectorised over the batch (the predictor's matches of all models, one interpolator call).

        `arrays`: per model its :class:`~tdmcmc.models.protomodel.predictions.ModelArrays`;
        `owner_model` (n_owners,) the model of each owner (index into `arrays`); (`tx_owner`, `tx`)
        the owners' table txnames, one pair per entry; `trace`: the
        :class:`~tdmcmc.models.protomodel.predictions.ForwardTrace` of `arrays`, if at hand (its
        matches and map values are used, nothing is recomputed). Returns (owner, row), sorted,
        unique: row contributes to owner.
        """
        e, entry, owner = self._reach(arrays, owner_model, tx_owner, tx, trace)
        n_rows = len(self.predictor.table.match_start) - 1
        good = self._counts(e, entry, trace)
        found = np.unique((owner * n_rows + e["row"][entry])[good])
        return found // n_rows, found % n_rows

    def overlapping(self, arrays: Sequence, owner_model: np.ndarray, tx_owner: np.ndarray, tx: np.ndarray,
                    allowed: Callable[[np.ndarray, np.ndarray], np.ndarray], trace=None) -> np.ndarray:
        """The pairs of owners (as in :meth:`rows`) of one model that share a contributing row, among
        the pairs (a, b), a < b, for which `allowed(a, b)` (vectorised) is true: (n_pairs, 2), sorted.
        Only the matches of rows that allowed pairs both reach are looked at (interpolated, without
        a `trace`)."""
        pr = self.predictor
        e = trace.entries if trace is not None else pr.entries(arrays)
        n_owners = len(owner_model)
        entry, reach, a, b, at = _candidate_pairs(
            e["model"], e["tx"], e["row"], len(pr.table.txnames), len(pr.table.match_start) - 1,
            np.asarray(owner_model, dtype=np.int64), np.asarray(tx_owner, dtype=np.int64),
            np.asarray(tx, dtype=np.int64))
        needed, a, b, at = _needed_matches(reach, a, b, at, np.asarray(allowed(a, b), dtype=bool), n_owners)
        return _shared_pairs(reach[needed], self._counts(e, entry[needed], trace), a, b, at, n_owners)

    def vetoed_node_pairs(self, arrays: Sequence, model: np.ndarray, node: np.ndarray, chosen: np.ndarray,
                          part_prediction: np.ndarray, part_txname: np.ndarray, node_group: np.ndarray,
                          adjacency: np.ndarray, trace=None) -> tuple[np.ndarray, np.ndarray]:
        """The paper's ``hasOverlap`` veto of a batch, flat: (state (k,), node pairs (k, 2)), by state,
        for :meth:`~tdmcmc.models.likelihood.cliques.Combiner.paper_cliques_flat`.

        `model`, `node`, `chosen` (n,): per predicted graph node of a state, the state (index into
        `arrays`), the node and its chosen flat prediction, whose table txnames are the
        `part_txname` of its parts (`part_prediction`). A pair is vetoed if both nodes are of one
        (experiment, √s) group (`node_group`), combinable (`adjacency`) and their predictions share a
        contributing row (:meth:`overlapping`). Only groups with two or more predicted nodes are looked at.
        """
        owner, tx_owner, tx = _crowded_owners(np.asarray(model, dtype=np.int64), np.asarray(node, dtype=np.int64),
                                              np.asarray(chosen, dtype=np.int64), len(arrays), node_group,
                                              part_prediction, part_txname)
        if not len(owner):
            return np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
        model, node, group = model[owner], node[owner], node_group[node[owner]]
        pairs = self.overlapping(arrays, model, tx_owner, tx,
                                 lambda a, c: (group[a] == group[c]) & adjacency[node[a], node[c]], trace)
        return _by_state(model, node, pairs)

    def _reach(self, arrays: Sequence, owner_model: np.ndarray, tx_owner: np.ndarray, tx: np.ndarray, trace
               ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """The models' matches with a weight > 0 at their √s (:meth:`Predictor.entries`, or the
        trace's) and the (entry, owner) pairs of the owners wanting the entry's (model, txname)."""
        n_tx = len(self.predictor.table.txnames)
        e = trace.entries if trace is not None else self.predictor.entries(arrays)
        return (e,) + _wanted_entries(e["model"], e["tx"], n_tx, np.asarray(owner_model, dtype=np.int64),
                                      np.asarray(tx_owner, dtype=np.int64), np.asarray(tx, dtype=np.int64))

    def _counts(self, e: dict[str, np.ndarray], entry: np.ndarray, trace) -> np.ndarray:
        """Whether each of the `entry` matches counts: ε > 0 (efficiency map) or inside the grid
        (upper-limit map); the trace's map values, else each distinct match interpolated once."""
        from tdmcmc.models.protomodel.predictions import EFF_ZERO

        pr = self.predictor
        if trace is not None:
            values = trace.values[entry]
        else:
            needed, back = np.unique(entry, return_inverse=True)
            values = pr.interps.evaluate(pr.tx_map[e["tx"][needed]], e["points"][needed])[back]
        return _counting(values, e["tx"][entry], pr.tx_is_em, EFF_ZERO)

    def particles(self, rows: np.ndarray) -> frozenset[int]:
        """PDG ids (positive) of the particles in the given rows' elements."""
        if not len(rows):
            return frozenset()
        t = self.predictor.table
        bits = int(np.bitwise_or.reduce(t.el_particles[rows].astype(np.uint64)))
        return frozenset(int(p) for i, p in enumerate(t.particles) if bits >> i & 1)


@numba.njit(cache=True)
def _counting(values: np.ndarray, tx: np.ndarray, tx_is_em: np.ndarray, eff_zero: float) -> np.ndarray:
    """Whether matches with map values `values` of txnames `tx` count: not NaN, and ε ≥ `eff_zero`
    for efficiency maps."""
    out = np.empty(len(values), np.bool_)
    for i in range(len(values)):
        out[i] = not np.isnan(values[i]) and (not tx_is_em[tx[i]] or abs(values[i]) >= eff_zero)
    return out


@numba.njit(cache=True)
def _wanted_entries(model: np.ndarray, tx: np.ndarray, n_tx: int, owner_model: np.ndarray, tx_owner: np.ndarray,
                    owner_tx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entry, owner) of the entries (`model`, `tx`) that owners want: owner `tx_owner[k]` wants
    txname `owner_tx[k]` of its model; by entry, then by owner's want (stable)."""
    wanted = owner_model[tx_owner] * n_tx + owner_tx
    by_key = np.argsort(wanted, kind="mergesort")
    return _wanting(model, tx, n_tx, wanted[by_key], tx_owner[by_key])


@numba.njit(cache=True)
def _candidate_pairs(model: np.ndarray, tx: np.ndarray, row: np.ndarray, n_tx: int, n_rows: int,
                     owner_model: np.ndarray, tx_owner: np.ndarray, owner_tx: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For :meth:`ContributingRows.overlapping`: the wanted entries, their codes
    ((model · n_rows + row) · n_owners + owner) and the candidate pairs (a, b, (model, row) code):
    two owners reaching one (model, row), a < b."""
    n_owners = len(owner_model)
    entry, who = _wanted_entries(model, tx, n_tx, owner_model, tx_owner, owner_tx)
    reach = (model[entry] * n_rows + row[entry]) * n_owners + who
    code = _unique(reach)
    a, b, at = _run_pairs(code // n_owners, code % n_owners)
    return entry, reach, a, b, at


@numba.njit(cache=True)
def _needed_matches(reach: np.ndarray, a: np.ndarray, b: np.ndarray, at: np.ndarray, keep: np.ndarray,
                    n_owners: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept candidate pairs and the indices of the `reach` entries that one of them needs."""
    a, b, at = a[keep], b[keep], at[keep]
    needed = _in_sorted(reach, np.sort(np.concatenate((at * n_owners + a, at * n_owners + b))))
    return np.flatnonzero(needed), a, b, at


@numba.njit(cache=True)
def _shared_pairs(reach: np.ndarray, good: np.ndarray, a: np.ndarray, b: np.ndarray, at: np.ndarray,
                  n_owners: int) -> np.ndarray:
    """The pairs (a, b) both of whose entries at their (model, row) count (`good`): (n, 2), sorted."""
    hit = _unique(reach[good])
    both = _in_sorted(at * n_owners + a, hit) & _in_sorted(at * n_owners + b, hit)
    pairs = _unique(a[both] * n_owners + b[both])
    out = np.empty((len(pairs), 2), np.int64)
    out[:, 0], out[:, 1] = pairs // n_owners, pairs % n_owners
    return out


@numba.njit(cache=True)
def _crowded_owners(model: np.ndarray, node: np.ndarray, chosen: np.ndarray, n_b: int, node_group: np.ndarray,
                    part_prediction: np.ndarray, part_txname: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For :meth:`ContributingRows.vetoed_node_pairs`: the (model, node) entries whose group has two or
    more predicted nodes in their model (as indices, in order), and the owner (index into them) and
    table txname of each of their chosen predictions' parts (by owner, then part order)."""
    n_nodes = len(node_group)
    predicted = np.zeros((n_b, n_nodes), np.bool_)
    for i in range(len(model)):
        predicted[model[i], node[i]] = True
    crowd = np.zeros((n_b, node_group.max() + 1 if n_nodes else 1), np.int64)
    for b in range(n_b):
        for n in range(n_nodes):
            crowd[b, node_group[n]] += predicted[b, n]
    crowded = np.zeros(len(model), np.bool_)
    for i in range(len(model)):
        crowded[i] = crowd[model[i], node_group[node[i]]] > 1
    owner = np.flatnonzero(crowded)
    # the parts of each prediction, in order (a stable counting sort by prediction)
    n_pred = max(part_prediction.max() + 1 if len(part_prediction) else 0, chosen.max() + 1 if len(chosen) else 0)
    start = np.zeros(n_pred + 1, np.int64)
    for p in part_prediction:
        start[p + 1] += 1
    start = np.cumsum(start)
    order, fill = np.empty(len(part_prediction), np.int64), start[:-1].copy()
    for k in range(len(part_prediction)):
        order[fill[part_prediction[k]]] = k
        fill[part_prediction[k]] += 1
    n_parts = 0
    for o in owner:
        n_parts += start[chosen[o] + 1] - start[chosen[o]]
    tx_owner, tx = np.empty(n_parts, np.int64), np.empty(n_parts, np.int64)
    k = 0
    for j in range(len(owner)):
        for q in range(start[chosen[owner[j]]], start[chosen[owner[j]] + 1]):
            tx_owner[k], tx[k] = j, part_txname[order[q]]
            k += 1
    return owner, tx_owner, tx


@numba.njit(cache=True)
def _by_state(model: np.ndarray, node: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owner pairs (k, 2) as (state, node pairs), stably sorted by state."""
    order = np.argsort(model[pairs[:, 0]], kind="mergesort")
    state, out = np.empty(len(pairs), np.int64), np.empty((len(pairs), 2), np.int64)
    for k in range(len(pairs)):
        state[k] = model[pairs[order[k], 0]]
        out[k, 0], out[k, 1] = node[pairs[order[k], 0]], node[pairs[order[k], 1]]
    return state, out


@numba.njit(cache=True)
def _wanting(model: np.ndarray, tx: np.ndarray, n_tx: int, wanted: np.ndarray, owner: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(entry, owner) for every entry of (`model`, `tx`) and every owner whose key in the sorted
    `wanted` (model · `n_tx` + txname) is the entry's, by entry then by position in `wanted`."""
    lo, hi = np.zeros(len(model), np.int64), np.zeros(len(model), np.int64)
    top = wanted[-1] if len(wanted) else -1
    is_wanted = np.zeros(top + 1, np.bool_)    # most entries are nobody's: skip their search
    for w in wanted:
        is_wanted[w] = True
    for i in range(len(model)):
        key = model[i] * n_tx + tx[i]
        if key > top or not is_wanted[key]:
            continue
        a, b = 0, len(wanted)                  # the first position with wanted >= key
        while a < b:
            m = (a + b) // 2
            if wanted[m] < key:
                a = m + 1
            else:
                b = m
        lo[i] = hi[i] = a
        while hi[i] < len(wanted) and wanted[hi[i]] == key:
            hi[i] += 1
    entry, who = np.empty((hi - lo).sum(), np.int64), np.empty((hi - lo).sum(), np.int64)
    k = 0
    for i in range(len(model)):
        for j in range(lo[i], hi[i]):
            entry[k], who[k] = i, owner[j]
            k += 1
    return entry, who


@numba.njit(cache=True)
def _unique(x: np.ndarray) -> np.ndarray:
    """np.unique of an integer array in one compiled call (np.unique hashes, then sorts)."""
    s = np.sort(x)
    keep = np.ones(len(s), np.bool_)
    for i in range(1, len(s)):
        keep[i] = s[i] != s[i - 1]
    return s[keep]


@numba.njit(cache=True)
def _run_pairs(key: np.ndarray, who: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(who[i], who[j], key[j]) for every i < j in one run of equal values of the sorted `key`."""
    n_pairs, start = 0, 0
    for j in range(len(key)):
        if j and key[j] != key[j - 1]:
            start = j
        n_pairs += j - start
    first, second, at = np.empty(n_pairs, np.int64), np.empty(n_pairs, np.int64), np.empty(n_pairs, np.int64)
    k, start = 0, 0
    for j in range(len(key)):
        if j and key[j] != key[j - 1]:
            start = j
        for i in range(start, j):
            first[k], second[k], at[k] = who[i], who[j], key[j]
            k += 1
    return first, second, at


@numba.njit(cache=True)
def _in_sorted(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.isin(x, values) for sorted `values` (a binary search)."""
    if not len(values):
        return np.zeros(len(x), np.bool_)
    return values[np.minimum(np.searchsorted(values, x), len(values) - 1)] == x


class PaperPrior:
    """ln π_paper (expo1, :mod:`tdmcmc.models.likelihood.prior`) of batches of protomodels of one
    space, the counts of all models in one compiled pass over padded arrays of BRs, κ and σ (the
    rules of :mod:`~tdmcmc.models.likelihood.prior` per row, bit for bit those of its array
    functions), from :class:`Protomodel` objects or from their table arrays (:meth:`from_arrays`).

    n_SSM counts κ of the classes whose channels' particles are present, with their 13-TeV σ (κ
    applied, summed over the class's channels in the space's order, fb). κ keys are resolved with
    :func:`~tdmcmc.models.protomodel.xsec.kappa_lookup` (once per distinct key; a model giving one
    class two different κ goes through it whole, for its error).
    """

    def __init__(self, space, clustering: str = "bins"):
        classes = space.kappa_classes()
        self.space, self.clustering = space, clustering
        self._keys = tuple(classes)
        self._pindex = {p: i for i, p in enumerate(space.particles)}
        self._needs = np.array([[self._pindex[abs(p)] for p in channels[0].pair] for channels in classes.values()],
                               dtype=np.int64).reshape(-1, 2)
        self._key_particles = np.array([[self._pindex[abs(p)] for p in key] for key in self._keys],
                                       dtype=np.int64).reshape(-1, 2)
        column = {key: k for k, key in enumerate(self._keys)}
        self._channel_class = np.array([column[c.kappa_key] for c in space.productions], dtype=np.int64)
        members = [np.flatnonzero(self._channel_class == k) for k in range(len(self._keys))]
        self._class_channels = np.full((len(members), max([len(m) for m in members] + [1])), -1, dtype=np.int64)
        for k, m in enumerate(members):
            self._class_channels[k, :len(m)] = m
        self._kappa_column: dict = {}          # user κ key -> class column (-1: not produced)
        self._layouts: dict = {}               # id(predictor) -> (predictor, index arrays of from_arrays)

    def __call__(self, models: Sequence[Protomodel], channel_xsecs: np.ndarray | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(ln π (B,), counts {"n_particles", "n_br", "n_ssm"} (B,) each) of `models`.
        `channel_xsecs` (B, n_productions): κ × σ at 13 TeV (fb) of each of the space's production
        channels, 0 where a particle is absent or no fit exists; None: from the fits
        (:func:`~tdmcmc.models.protomodel.xsec.cross_sections`)."""
        n_b, lsp = len(models), self.space.lsp
        if channel_xsecs is None:
            channel_xsecs = np.stack([self.channel_xsecs(m) for m in models]) if n_b else np.zeros((0, 0))
        alive = [{p for p, m in model.masses.items() if abs(m) < 1e5} for model in models]
        brs = [[list(model.decays.get(p, {}).values()) for p in sorted(a - {lsp})] for model, a in zip(models, alive)]
        n_others = max([len(b) for b in brs] + [1])
        width = max([len(v) for b in brs for v in b] + [1])
        br, br_active = np.zeros((n_b, n_others, width)), np.zeros((n_b, n_others), bool)
        for b, rows in enumerate(brs):
            br_active[b, :len(rows)] = True
            for i, values in enumerate(rows):
                br[b, i, :len(values)] = values
        kappa = np.stack([self._kappas(m.kappas) for m in models]) if n_b else np.zeros((0, len(self._keys)))
        given, living = np.zeros((n_b, len(self._pindex) + 1), bool), np.zeros((n_b, len(self._pindex) + 1), bool)
        for b, (model, a) in enumerate(zip(models, alive)):      # column -1: particles outside the space
            given[b, [self._pindex.get(p, -1) for p in model.masses]] = True
            living[b, [self._pindex.get(p, -1) for p in a]] = True
        n_particles = np.array([float(len(a)) for a in alive])
        out = _prior_of_counts(n_particles, br.reshape(n_b, n_others * width),
                               np.arange(n_others * width).reshape(n_others, width), br_active, given, living,
                               kappa, np.arange(len(self._keys)), channel_xsecs, *self._ssm_layout())
        return out[0], dict(zip(("n_particles", "n_br", "n_ssm"), out[1:]))

    def from_arrays(self, predictor, arrays, channel_xsecs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """As :meth:`__call__`, from the models' table arrays (a
        :class:`~tdmcmc.models.protomodel.predictions.ModelArraysBatch` of `predictor`'s table, σ
        from the fits: κ is read from them). A particle's BRs are clustered in the space's channel
        order (:meth:`__call__`: the model's): the same counts unless that order changes which
        BRs open a cluster."""
        particle, br_rows, class_channel = self._layout(predictor)
        if not np.all(arrays.fitted):
            raise ValueError("ln π_paper from table arrays needs the models' κ: σ must come from the fits")
        out = _prior_of_tables(np.asarray(arrays.present, dtype=np.uint64), arrays.masses, arrays.br, arrays.kappa,
                               channel_xsecs, particle, self._pindex[self.space.lsp], br_rows, class_channel,
                               *self._ssm_layout())
        return out[0], dict(zip(("n_particles", "n_br", "n_ssm"), out[1:]))

    def _layout(self, predictor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For :meth:`from_arrays`: the table index of each particle of the space, the BR indices of
        each particle's channels (space order; -1 padding) and one production channel per κ class."""
        if id(predictor) not in self._layouts:
            particles = list(self._pindex)
            particle = np.array([predictor.pindex[p] for p in particles], dtype=np.int64)
            channels = [[predictor.br_index[(p, ch)] for ch in self.space.particles[p].decays] for p in particles]
            br_rows = np.full((len(particles), max([len(c) for c in channels] + [1])), -1, dtype=np.int64)
            for i, c in enumerate(channels):
                br_rows[i, :len(c)] = c
            class_channel = self._class_channels[:, 0]
            self._layouts[id(predictor)] = (predictor, (particle, br_rows, class_channel))
        return self._layouts[id(predictor)][1]

    def _ssm_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """The κ classes' particle pairs (channels present; κ key unfrozen), production channels and
        the clustering, as the compiled prior takes them."""
        if self.clustering not in CLUSTERINGS:
            raise ValueError(f"clustering: expected one of {CLUSTERINGS}, got {self.clustering!r}")
        return self._needs, self._key_particles, self._class_channels, self.clustering == "bins"

    def channel_xsecs(self, model: Protomodel) -> np.ndarray:
        """κ × σ at 13 TeV (fb) of each production channel of the space (0 where absent), from the fits."""
        from tdmcmc.models.protomodel.xsec import cross_sections

        xsec13 = cross_sections(self.space, model.masses, model.kappas, 13)
        return np.array([xsec13.get(c.key, 0.0) for c in self.space.productions])

    def _kappas(self, kappas) -> np.ndarray:
        """κ per class column (1 where not given)."""
        from tdmcmc.models.protomodel.xsec import kappa_lookup

        out, given = np.ones(len(self._keys)), {}
        for raw, value in kappas.items():
            if raw not in self._kappa_column:
                resolved = kappa_lookup(self.space, {raw: 1.0})
                self._kappa_column[raw] = self._keys.index(next(iter(resolved))) if resolved else -1
            k = self._kappa_column[raw]
            if k >= 0:
                if given.setdefault(k, float(value)) != float(value):
                    kappa_lookup(self.space, kappas)                 # raises, naming both keys
                out[k] = float(value)
        return out


@numba.njit(cache=True)
def _prior_of_tables(present: np.ndarray, masses: np.ndarray, br: np.ndarray, kappa: np.ndarray, xsecs: np.ndarray,
                     particle: np.ndarray, lsp: int, br_rows: np.ndarray, kappa_column: np.ndarray,
                     needs: np.ndarray, key_particles: np.ndarray, class_channels: np.ndarray, bins: bool
                     ) -> np.ndarray:
    """:meth:`PaperPrior.from_arrays` in one compiled pass: the space's particle `particle[i]` is given
    if its bit is set in `present` (B,), unfrozen if also |mass| < 1e5 GeV (not NaN); the others'
    BRs are the table columns `br_rows` (-1: padding). Returns (4, B): ln π, n_particles, n_BR, n_SSM."""
    n_b, n_p = len(present), len(particle)
    given, living = np.zeros((n_b, n_p), np.bool_), np.zeros((n_b, n_p), np.bool_)
    for b in range(n_b):
        for i in range(n_p):
            given[b, i] = (present[b] >> np.uint64(particle[i])) & np.uint64(1) != 0
            living[b, i] = given[b, i] and abs(masses[b, particle[i]]) < 1e5
    active = living.copy()
    active[:, lsp] = False
    return _prior_of_counts(living.sum(axis=1) * 1.0, br, br_rows, active, given, living, kappa, kappa_column,
                            xsecs, needs, key_particles, class_channels, bins)


@numba.njit(cache=True)
def _prior_of_counts(n_particles: np.ndarray, br: np.ndarray, br_rows: np.ndarray, br_active: np.ndarray,
                     given: np.ndarray, living: np.ndarray, kappa: np.ndarray, kappa_column: np.ndarray,
                     xsecs: np.ndarray, needs: np.ndarray, key_particles: np.ndarray, class_channels: np.ndarray,
                     bins: bool) -> np.ndarray:
    """ln π and the counts (4, B) as :func:`_prior_rows` (for :meth:`PaperPrior.__call__`)."""
    out = np.empty((4, len(n_particles)))
    _prior_rows(n_particles, br, br_rows, br_active, given, living, kappa, kappa_column, xsecs, needs, key_particles,
                class_channels, bins, out)
    return out


@numba.njit(cache=True)
def _prior_rows(n_particles: np.ndarray, br: np.ndarray, br_rows: np.ndarray, br_active: np.ndarray,
                given: np.ndarray, living: np.ndarray, kappa: np.ndarray, kappa_column: np.ndarray,
                xsecs: np.ndarray, needs: np.ndarray, key_particles: np.ndarray, class_channels: np.ndarray,
                bins: bool, out: np.ndarray) -> None:
    """ln π_paper and its counts into `out` (4, B). Per model b: n_BR sums the BR terms of the
    particles `br_active[b]`, whose BRs are `br[b, br_rows[i]]` (-1: 0); κ class k has
    κ = `kappa[b, kappa_column[k]]` and σ = Σ `xsecs[b, class_channels[k]]` (-1: none; at most two
    channels, so the order of the sum does not matter); it is counted if the particles `needs[k]`
    are given and `key_particles[k]` unfrozen (masks over the space's particles)."""
    n_b, n_classes = len(n_particles), len(kappa_column)
    values = np.zeros(br_rows.shape[1])
    class_kappa, counted = np.zeros(n_classes), np.zeros(n_classes, np.bool_)
    for b in range(n_b):
        n_br = 0.0
        for i in range(br_rows.shape[0]):
            if br_active[b, i]:
                for w in range(br_rows.shape[1]):
                    values[w] = br[b, br_rows[i, w]] if br_rows[i, w] >= 0 else 0.0
                n_br += branching_count(values)
        for k in range(n_classes):
            xsec = 0.0
            for c in class_channels[k]:
                if c >= 0:
                    xsec += xsecs[b, c]
            class_kappa[k] = kappa[b, kappa_column[k]]
            pair = (given[b, needs[k, 0]] and given[b, needs[k, 1]]
                    and living[b, key_particles[k, 0]] and living[b, key_particles[k, 1]])
            counted[k] = is_counted_ssm(pair, class_kappa[k], xsec)
        n_ssm = ssm_count(class_kappa, counted, bins)
        out[0, b] = -(0.5 * n_particles[b] + 0.25 * n_br + 0.125 * n_ssm)     # log_prior_expo1
        out[1, b], out[2, b], out[3, b] = n_particles[b], n_br, n_ssm


def paper_prior(space, model: Protomodel, clustering: str = "bins") -> tuple[float, dict[str, float]]:
    """ln π_paper (expo1) of one protomodel and its counts (:class:`PaperPrior`)."""
    log_prior, counts = PaperPrior(space, clustering)([model])
    return float(log_prior[0]), {k: float(v[0]) for k, v in counts.items()}
