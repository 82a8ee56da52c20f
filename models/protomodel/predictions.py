"""Theory predictions of protomodels on a :class:`~.topologies.TopologyTable`: σ·κ·ΠBR(·ε) per
result and signal region, with SModelS 3.2.1 semantics (``matching/theoryPrediction.py``,
``matching/clusterTools.py``), as arrays.

Per protomodel (all steps vectorised over table rows, and over the protomodels of a batch in
:meth:`Predictor.evaluate_batch`, unless said otherwise):

1. Rows: the blocks of the table whose particle set lies inside the model's particles.
2. Element weight at √s: σ(channel, √s) × Π BR × (sign shares); rows whose largest weight over √s
   is below ``sigmacut`` are dropped, as SModelS' decomposition does; mass-compressed rows are kept
   only when their set of compressed decays is the one the masses select.
3. Matches (CSR gather) → the weight at the √s of the txname's result, and the mass point of the
   txname's maps. Efficiency maps give ε (0 outside the grid); upper-limit maps decide whether the
   element is inside the grid (SModelS' ``getEfficiencyFor``: ε = 1 inside, dropped outside).
4. Related rows (compressed forms of the same original element; the original itself is not
   related to them, as in SModelS 3.2.1 where ``isRelatedTo`` compares object ids of copies) count
   once per prediction: the one with the largest σ·BR·ε (``clusterSMS``).
5. EM signal region: σ_SR = Σ coefficient × σ·BR·ε over its txnames; ``signal_events`` = σ_SR × L.
   UL txname: elements with equal masses add up; clusters of different masses are merged with
   SModelS' ``doCluster`` (UL distance 2|UL₁−UL₂|/(UL₁+UL₂) < ``max_mass_dist``, σ-weighted
   average masses rounded to 5 significant digits, every member within the distance of the
   average). This step is a Python loop, but only over UL txnames with more than one mass point.
   r = σ/UL at the cluster's (average) masses. Predictions below 1e-6 fb are dropped.

Lifetime reweighting is not applied (every decay is prompt and the LSP stable: factor 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from tdmcmc.errors import UserError
from tdmcmc.disk_cache import cache_dir, load_pickle, save_pickle

from . import interpolation
from .interpolation import (BatchedInterpolator, DatabaseInterpolators, DegenerateMapError, Evaluation,
                            GridInterpolator, coords_key, map_layouts)
from .model import Protomodel
from .space import ProtomodelSpace
from .topologies import TopologyTable
from .xsec import channel_xsecs

MAX_MASS_DIST = 0.2
MIN_PREDICTION_FB = 1e-6
EFF_ZERO = 1e-14


@dataclass(frozen=True)
class ModelArrays:
    """One protomodel in table coordinates: ``masses`` (P,) GeV (NaN when absent), ``br`` (n_br+1,)
    with the constant 1 last, ``xsec`` (n_channels, n_sqrts) fb (κ included), ``present`` bitmask;
    for the gradients ``dlog_xsec`` (n_channels, n_sqrts, 2) ∂ ln σ/∂(m_a, m_b) in 1/GeV (m_a, m_b:
    the channel's pair; zero where σ is injected) and ``kappa`` (n_channels,) the κ of each channel
    (None when σ is injected: then σ depends on neither masses nor κ)."""

    masses: np.ndarray
    br: np.ndarray
    xsec: np.ndarray
    present: int
    dlog_xsec: np.ndarray
    kappa: np.ndarray | None


@dataclass(frozen=True)
class Prediction:
    """One theory prediction (SModelS ``TheoryPrediction``). Cross sections in fb; ``xsec_fb`` is
    σ×BR (UL) or σ×BR×ε (EM signal region); ``masses_gev`` the (average) mass point of an UL cluster."""

    analysis: str
    dataset: str | None
    datatype: str
    txnames: tuple[str, ...]
    sqrts_tev: float
    lumi_ifb: float
    xsec_fb: float
    signal_events: float | None
    ul_obs_fb: float | None
    ul_exp_fb: float | None
    r_obs: float | None
    r_exp: float | None
    txname_xsec_fb: dict[str, float] | None = None
    masses_gev: tuple[float, ...] | None = None
    max_condition: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"analysis": self.analysis, "dataset": self.dataset, "datatype": self.datatype,
                "txnames": list(self.txnames), "sqrts_TeV": self.sqrts_tev, "lumi_ifb": self.lumi_ifb,
                "xsec_fb": self.xsec_fb, "signal_events": self.signal_events, "ul_obs_fb": self.ul_obs_fb,
                "ul_exp_fb": self.ul_exp_fb, "r_obs": self.r_obs, "r_exp": self.r_exp,
                "txname_xsec_fb": self.txname_xsec_fb, "max_condition": self.max_condition,
                "masses_GeV": None if self.masses_gev is None else list(self.masses_gev)}


class MapInterpolators:
    """Interpolators of the database maps, built on first use and shared by maps with identical
    coordinates (one triangulation, k value columns; see :mod:`.interpolation`).

    With ``cache=True`` each built interpolator is also pickled under ``<cache dir>/interpolators``,
    keyed by its coordinates, values, layout and the source of the interpolation module, so that
    later processes (e.g. repeated ``tdmcmc evaluate``) skip the triangulations.
    """

    def __init__(self, compiled, cache: bool = False):
        arrays = compiled.arrays
        self.arrays = arrays
        self.layouts = map_layouts(compiled)
        members: dict[tuple, list[int]] = {}
        for i, (coords, layout) in enumerate(zip(arrays.map_coords, self.layouts)):
            members.setdefault(coords_key(coords, layout), []).append(i)
        self.map_group = np.empty(len(self.layouts), dtype=np.int64)
        self.map_column = np.empty(len(self.layouts), dtype=np.int64)
        self.members = list(members.values())
        for g, rows in enumerate(self.members):
            self.map_group[rows] = g
            self.map_column[rows] = np.arange(len(rows))
        self._built: dict[int, GridInterpolator | None] = {}
        self._batch_group = np.full(len(self.members), -2, dtype=np.int64)  # -2: not built yet
        self._batched: BatchedInterpolator | None = None
        self._cache = _interpolator_cache_dir() if cache else None

    def group(self, g: int) -> GridInterpolator | None:
        """The interpolator of group `g` (None if SModelS could not triangulate it either)."""
        if g not in self._built:
            rows = self.members[g]
            coords, layout = self.arrays.map_coords[rows[0]], self.layouts[rows[0]]
            values = np.stack([self.arrays.map_values[i] for i in rows], axis=1)
            path = None
            if self._cache is not None:
                digest = hashlib.blake2b(digest_size=20)
                for part in (coords_key(coords, layout)[:2], np.ascontiguousarray(coords).tobytes(),
                             np.ascontiguousarray(values).tobytes()):
                    digest.update(repr(part).encode() if not isinstance(part, bytes) else part)
                path = self._cache / f"{digest.hexdigest()}.pkl"
                cached = load_pickle(path, GridInterpolator)
                if cached is not None:
                    self._built[g] = cached
                    return cached
            try:
                self._built[g] = GridInterpolator(coords, values, layout)
            except DegenerateMapError:
                self._built[g] = None  # fails fast again next time; not worth caching
            if path is not None and self._built[g] is not None:
                save_pickle(path, self._built[g])
        return self._built[g]

    def evaluate(self, map_rows: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Value of map ``map_rows[i]`` at ``points[i]`` (GeV), NaN where SModelS gives None or
        where ``map_rows[i]`` is -1. One vectorised pass over all groups (:class:`BatchedInterpolator`
        over the groups built so far; it is rebuilt, once, when a call needs a new group)."""
        return self.evaluate_with_jacobian(map_rows, points, jacobian=False)[0]

    def evaluate_with_jacobian(self, map_rows: np.ndarray, points: np.ndarray,
                               jacobian: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`evaluate` and, if asked, the exact Jacobian (n, points.shape[1]) per GeV of the
        piecewise-linear interpolation in the same pass (zero where the value is NaN or clamped)."""
        sel, pending = _answerable(map_rows, self.map_group, self._batch_group)
        if len(pending):
            for g in pending:
                self.group(int(g))
            self._rebatch()
            sel, _ = _answerable(map_rows, self.map_group, self._batch_group)
        ev = None
        if len(sel) and self._batched is not None:
            every = len(sel) == len(map_rows)
            ev = self._batched.evaluate(map_rows if every else map_rows[sel], points if every else points[sel],
                                        jacobian=jacobian)
            if every and (not jacobian or ev.jacobian.shape == np.shape(points)):
                return ev.values, ev.jacobian  # the kernels leave the Jacobian rows of NaN values zero
        if ev is None:
            sel, ev = sel[:0], Evaluation(np.zeros(0), np.zeros(0, dtype=bool), np.zeros((0, 0)))
        out, jac = _scatter(len(map_rows), np.shape(points)[1], sel, ev.values,
                            ev.jacobian if jacobian else np.zeros((0, 0)), jacobian)
        return out, jac if jacobian else None

    def _rebatch(self) -> None:
        """One :class:`BatchedInterpolator` over every group built so far."""
        built = [g for g in sorted(self._built) if self._built[g] is not None]
        self._batch_group[:] = -2
        self._batch_group[[g for g, v in self._built.items() if v is None]] = -1
        self._batch_group[built] = np.arange(len(built))
        if not built:
            self._batched = None
            return
        row_group = self._batch_group[self.map_group]
        self._batched = BatchedInterpolator(DatabaseInterpolators(
            tuple(self._built[g] for g in built), np.where(row_group >= 0, row_group, -1), self.map_column, {}))


class Predictor:
    """Evaluates protomodels on one table and database (keeps the interpolators warm)."""

    def __init__(self, table: TopologyTable, compiled, space: ProtomodelSpace,
                 interpolators: MapInterpolators | None = None, max_mass_dist: float = MAX_MASS_DIST):
        if table.database_hash != compiled.database.content_hash:
            raise UserError("the topology table was built for another database "
                            f"({table.database_hash[:12]} != {compiled.database.content_hash[:12]})")
        self.table, self.compiled, self.space = table, compiled, space
        self.arrays = compiled.arrays
        self.interps = interpolators or MapInterpolators(compiled)
        self.max_mass_dist = max_mass_dist
        a = self.arrays
        self.sqrts = tuple(sorted({int(round(s)) for s in a.result_sqrts}))
        tx = table.txnames
        self.tx_dataset = np.array([t.dataset for t in tx], dtype=np.int64)
        self.tx_is_em = np.array([t.is_em for t in tx], dtype=bool)
        self.tx_map = np.array([t.map_eff if t.is_em else t.map_obs for t in tx], dtype=np.int64)
        self.tx_map_exp = np.array([t.map_exp for t in tx], dtype=np.int64)
        self.tx_ncoords = np.array([t.n_coords for t in tx], dtype=np.int64)
        self.tx_has_conditions = np.array([bool(t.conditions) for t in tx], dtype=bool)
        result = a.dataset_result[self.tx_dataset]
        self.tx_sqrts = np.array([self.sqrts.index(int(round(s))) for s in a.result_sqrts[result]], dtype=np.int64)
        self.pindex = table.particle_index()
        self.br_index = {key: j for j, key in enumerate(table.br_channels)}
        self.channel_index = {pair: i for i, pair in enumerate(table.channels)}
        self.xsecs = channel_xsecs(space, self.sqrts)
        if self.xsecs.channels != tuple(table.channels) or self.xsecs.particles != tuple(table.particles.tolist()):
            raise UserError(f"the topology table was built for another model space than {space.name!r}")
        bit = {pdg: np.uint64(1) << np.uint64(i) for pdg, i in self.pindex.items()}
        # particles that must be present for a BR coordinate / production channel to exist
        self.br_required = np.array([np.bitwise_or.reduce([bit[parent], *(bit[d] for d in ch if d in bit)])
                                     for parent, ch in table.br_channels], dtype=np.uint64)
        self.channel_required = np.array([bit[abs(a)] | bit[abs(b)] for a, b in table.channels], dtype=np.uint64)
        self._entry_tables = (table.block_keys, table.block_start, table.el_br, table.el_share, table.el_channel,
                              float(table.sigmacut), table.el_mask, table.el_gap, float(table.minmassgap),
                              table.match_start, table.m_txname, self.tx_sqrts, table.el_origin, table.m_coef,
                              table.m_shape, table.m_cond_bits, table.m_coords, self.tx_map, self.tx_map_exp,
                              self.tx_is_em)

    # -- protomodel -> arrays --------------------------------------------------------------------

    def model_arrays(self, model: Protomodel) -> ModelArrays:
        """Masses, BRs and σ (injected or computed from the fits) in table coordinates."""
        return self.model_arrays_batch([model])[0]

    def model_arrays_batch(self, models: Sequence[Protomodel | ModelArrays]) -> Sequence[ModelArrays]:
        """:meth:`model_arrays` of several protomodels: the σ of every channel, √s and model of the
        batch in one vectorised pass (:class:`.xsec.ChannelXsecs`). :class:`ModelArrays` pass
        unchanged, a :class:`ModelArraysBatch` is returned as is, a :class:`ProtomodelBatch` gives
        its arrays."""
        if isinstance(models, ModelArraysBatch):
            return models
        if isinstance(models, ProtomodelBatch):
            return models.arrays
        protomodels = [x for x in models if isinstance(x, Protomodel)]
        if len(protomodels) == len(models):
            return self._protomodel_arrays(models)
        computed = iter(self._protomodel_arrays(protomodels) if protomodels else [])
        return [next(computed) if isinstance(x, Protomodel) else x for x in models]

    def _protomodel_arrays(self, models: Sequence[Protomodel]) -> ModelArraysBatch:
        t, n_b = self.table, len(models)
        masses = np.full((n_b, len(t.particles)), np.nan)
        br = np.zeros((n_b, len(t.br_channels) + 1))
        br[:, -1] = 1.0
        kappa = np.ones((n_b, len(self.xsecs.kappa_keys)))
        xsec = np.zeros((n_b, len(t.channels), len(self.sqrts)))
        present, fitted = [], []
        for b, model in enumerate(models):
            try:
                index = [self.pindex[pdg] for pdg in model.masses]
            except KeyError:
                outside = sorted(set(model.masses) - set(self.pindex))
                raise UserError(f"protomodel {model.name!r}: particle {outside[0]} is not in the table's space "
                                f"{self.table.space_name!r}") from None
            masses[b, index] = list(model.masses.values())
            present.append(sum(1 << i for i in index))
            br[b, [self.br_index[(parent, channel)] for parent, channels in model.decays.items()
                   for channel in channels]] = [value for channels in model.decays.values() for value in channels.values()]
            if model.xsecs is None:
                fitted.append(b)
                if model.kappas:
                    kappa[b] = self.xsecs.kappa_vector(model.kappas)
                continue
            for x in model.xsecs:
                c = self.channel_index.get(x.pair)
                if c is not None and x.sqrts in self.sqrts:
                    xsec[b, c, self.sqrts.index(x.sqrts)] = x.xsec_fb
        dlog = np.zeros(xsec.shape + (2,))
        xsec[fitted], dlog[fitted] = self.xsecs.evaluate(masses[fitted], kappa[fitted])
        is_fitted = np.zeros(n_b, dtype=bool)
        is_fitted[fitted] = True
        channel_kappa = np.where(is_fitted[:, None], kappa[:, self.xsecs.channel_kappa], 1.0)
        return ModelArraysBatch(masses, br, xsec, np.array(present, dtype=np.uint64), dlog, channel_kappa, is_fitted)

    # -- evaluation ------------------------------------------------------------------------------

    def element_weights(self, m: ModelArrays, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(active rows, weights (n, n_sqrts) fb) after sigmacut and the compression rule."""
        s = ModelArraysBatch.of([m])
        _, rows, w = _active_rows(s.br, s.xsec, s.masses, np.zeros(len(rows), dtype=np.int64), rows,
                                  *self._entry_tables[2:9])
        return rows, w

    def entries(self, ms: Sequence[ModelArrays] | ModelArraysBatch) -> dict[str, np.ndarray]:
        """The matches with a nonzero weight of models `ms`, model by model: ``model`` (index in
        `ms`), ``tx``, ``weight`` (fb, at the txname's √s), ``origin``, ``coef``, ``shape``, ``bits``
        (condition elements), ``row`` (table row), ``sqrts`` (index), ``coords`` (particle index per
        map column, -1 pad) and ``points`` (GeV, map column order, 0 pad)."""
        return self._entries(ms if isinstance(ms, ModelArraysBatch) else ModelArraysBatch.of(ms))[0]

    def _entries(self, s: ModelArraysBatch) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`entries` (one compiled call) and the map queries they make: map rows (the
        txnames' maps of every entry, then the expected-UL maps of the UL entries `ul`) and their
        points (GeV; ``entries["points"]`` is the first part)."""
        model, tx, weight, origin, coef, shape, bits, rows, sqrts, coords, q_rows, q_points, ul = _entries_kernel(
            np.asarray(s.present, dtype=np.uint64), s.br, s.xsec, s.masses, *self._entry_tables)
        e = {"model": model, "tx": tx, "weight": weight, "origin": origin, "coef": coef, "shape": shape, "bits": bits,
             "row": rows, "sqrts": sqrts, "coords": coords, "points": q_points[:len(tx)]}
        return e, q_rows, q_points, ul

    def evaluate_batch(self, models: Sequence[Protomodel | ModelArrays], jacobian: bool = False) -> PredictionArrays:
        """Predictions of several protomodels as flat arrays: every step vectorised over the whole
        batch (no loop over models), one interpolator call for all queries. The result keeps the
        :class:`ForwardTrace` of the batch (with the maps' Jacobians if `jacobian`, for
        :mod:`.gradients`, which otherwise re-runs the forward stages)."""
        if not len(models):
            raise ValueError("evaluate_batch needs at least one protomodel")
        ms = self.model_arrays_batch(models)
        stacked = ModelArraysBatch.of(ms)
        e, values, expected, jac, jac_expected = self._lookup(stacked, jacobian)
        e["index"] = np.arange(len(e["tx"]))
        preds, selection = self._predictions(e, values, expected)
        trace = ForwardTrace(ms, stacked, e, values, expected, jac, jac_expected, selection,
                             (preds["xsec_fb"], preds["ul_obs_fb"], preds["ul_exp_fb"]))
        return PredictionArrays(**preds, trace=trace)

    def _lookup(self, ms: ModelArraysBatch, jacobian: bool):
        """The entries of models `ms` (:meth:`entries`) with the values (and Jacobians) of their maps
        and of the expected-limit maps of the UL entries (NaN, zero for EM), in one interpolator call."""
        e, q_rows, q_points, ul = self._entries(ms)
        both, jac = self.interps.evaluate_with_jacobian(q_rows, q_points, jacobian)
        values, expected, jac, jac_expected = _split_queries(both, jac if jacobian else np.zeros((0, 0)), ul,
                                                             len(e["tx"]), jacobian)
        return e, values, expected, jac if jacobian else None, jac_expected if jacobian else None

    def predict(self, model: Protomodel | ModelArrays) -> list[Prediction]:
        """Every theory prediction of one protomodel (all EM signal regions, all UL clusters)."""
        return self.to_predictions(self.evaluate_batch([model]))[0]

    def predict_many(self, models: Sequence[Protomodel | ModelArrays]) -> list[list[Prediction]]:
        """:meth:`predict` for several protomodels, interpolating all of them together."""
        return self.to_predictions(self.evaluate_batch(models), len(models))

    def _predictions(self, e: dict[str, np.ndarray], values: np.ndarray,
                     expected: np.ndarray) -> tuple[dict[str, np.ndarray], Selection]:
        """The flat predictions (EM signal regions, then UL clusters) of entries `e` with the values
        of their maps (ε or observed UL) and expected ULs, and which entries make them (entries
        ``e["index"]``). Compiled except the merging of UL clusters of different masses."""
        em = _em_stage(e["model"], e["origin"], e["tx"], e["weight"], e["coef"], values, self.tx_is_em, self.tx_dataset,
                       len(self.arrays.dataset_id), len(self.table.txnames), EFF_ZERO, MIN_PREDICTION_FB)
        sel, groups, g_of, g_weight, g_xsec, g_ul, g_exp, owner, single, group_pred, cat = _ul_stage(
            e["model"], e["origin"], e["tx"], e["weight"], e["coef"], e["shape"], e["points"], values, expected,
            self.tx_is_em)
        merged = []
        if not single.all():
            cat, one_point, merged = self._merge_clusters(groups, g_weight, g_xsec, g_ul, g_exp, owner, single,
                                                          group_pred, cat)
        else:
            one_point = single
        (model, dataset, txname, xsec, ul_obs, ul_exp, masses, part_prediction, part_txname, part_xsec, entry, pred,
         point_pred, point_entry, cond_weight, conditions, keep, renumber) = _join(
            *em, self.arrays.upper_limit, self.arrays.expected_upper_limit, *cat, group_pred, one_point, g_of, sel,
            e["weight"], e["tx"], self.tx_ncoords, self.tx_dataset, self.tx_has_conditions, MIN_PREDICTION_FB)
        n_em = len(em[2])
        max_condition = (self._max_conditions(len(xsec), pred, e["tx"][entry], cond_weight, e["bits"][entry])
                         if conditions else np.zeros(len(xsec)))
        g_points = groups[:, 3:]
        selection = Selection(
            entry=e["index"][entry], pred=pred, point_pred=point_pred, point_entry=e["index"][point_entry],
            merged=[MergedCluster(int(renumber[k]) + n_em, t, [e["index"][sel[g_of == g]] for g in gs], g_weight[gs],
                                  g_points[gs, :int(self.tx_ncoords[t])], avg)
                    for k, t, gs, avg in merged if keep[k]])
        preds = {"model": model, "dataset": dataset, "txname": txname, "xsec_fb": xsec, "ul_obs_fb": ul_obs,
                 "ul_exp_fb": ul_exp, "masses": masses, "part_prediction": part_prediction, "part_txname": part_txname,
                 "part_xsec_fb": part_xsec, "max_condition": max_condition}
        return preds, selection

    def _merge_clusters(self, groups, g_weight, g_xsec, g_ul, g_exp, owner, single, group_pred, cat):
        """The UL clusters of the (model, txname)s with several mass points (``single`` False;
        :meth:`_clusters`), after the single ones `cat` (model, txname, σ, UL, expected UL, point):
        all clusters, whether each group makes a prediction at its own point, and the merged ones
        (prediction, txname, groups, mean point). Numbers the groups' predictions in `group_pred`."""
        g_model, g_tx, g_shape = groups[:, 0].astype(np.int64), groups[:, 1].astype(np.int64), groups[:, 2]
        g_points = groups[:, 3:]
        one_point = single.copy()               # the group makes a prediction at its own point
        merged = []
        out: list[list] = [[] for _ in cat]  # model, tx, xsec, ul, exp, points
        next_pred = int(single.sum())
        for o in np.unique(owner[~single]):
            members = np.flatnonzero(owner == o)
            t = int(g_tx[members[0]])
            for members_sel, avg, value, expected_ul in self._clusters(t, g_weight[members], g_shape[members],
                                                                       g_points[members], g_ul[members], g_exp[members]):
                group_pred[members[members_sel]] = next_pred
                if len(members_sel) == 1:
                    one_point[members[members_sel]] = True
                else:
                    merged.append((next_pred, t, members[members_sel], avg))
                next_pred += 1
                full = np.zeros(g_points.shape[1])
                full[:len(avg)] = avg
                for column, x in zip(out, (g_model[members[0]], t, g_xsec[members][members_sel].sum(), value,
                                           np.nan if expected_ul is None else expected_ul, full)):
                    column.append(x)
        cat = tuple(np.concatenate([v, np.array(x, dtype=v.dtype)]) for v, x in zip(cat, out))
        return cat, one_point, merged

    def _max_conditions(self, n: int, entry_pred: np.ndarray, tx: np.ndarray, weight: np.ndarray,
                        bits: np.ndarray) -> np.ndarray:
        """SModelS' ``getmaxCondition`` per prediction: the largest Cgtr/Csim violation over its
        txnames, condition-element weights summed over the prediction's elements (σ·BR, or σ·BR·ε
        for EM). A Python loop over the (prediction, txname) pairs that have conditions only."""
        out = np.zeros(n)
        sel = np.flatnonzero(self.tx_has_conditions[tx] & (entry_pred >= 0))
        if not len(sel):
            return out
        keys = entry_pred[sel] * len(self.table.txnames) + tx[sel]
        for key in np.unique(keys):
            entries = sel[keys == key]
            pred, t = divmod(int(key), len(self.table.txnames))
            conditions = self.table.txnames[t].conditions
            n_el = 1 + max(j for _, args in conditions for arg in args for _, j in arg)
            element_bits = (bits[entries][:, None] >> np.arange(n_el, dtype=np.uint64)) & np.uint64(1)
            w = weight[entries] @ element_bits.astype(float)
            for kind, args in conditions:
                values = [sum(coef * w[j] for coef, j in arg) for arg in args]
                out[pred] = max(out[pred], _condition(kind, values))
        return out

    def _map_value(self, map_row: int, point: np.ndarray) -> float | None:
        if map_row < 0:
            return None
        value = float(self.interps.evaluate(np.array([map_row]), point[None, :])[0])
        return None if np.isnan(value) else value

    def _clusters(self, t: int, weight, shape, points, ul, ul_exp):
        """SModelS' ``doCluster`` for the distinct mass points (groups of identical SMS) of one UL
        txname: yields (selected groups, average mass point, UL, expected UL)."""
        n = int(self.tx_ncoords[t])
        points = points[:, :n]
        clusters = sorted(((np.array([g]), points[g], float(ul[g])) for g in range(len(weight))),
                          key=lambda c: c[2])
        map_row = int(self.tx_map[t])

        def merged(ca, cb):
            members = np.concatenate([ca[0], cb[0]])
            if len({float(x) for x in shape[members]}) > 1:
                return None
            w = weight[members]
            avg = _round_significant(np.sum(points[members] * w[:, None], axis=0) / np.sum(w), 5)
            value = self._map_value(map_row, avg)
            if value is None or any(_distance(value, float(u)) > self.max_mass_dist for u in ul[members]):
                return None
            return members, avg, value

        def dist(ca, cb):
            if shape[ca[0][0]] != shape[cb[0][0]]:
                return np.inf
            return _distance(ca[2], cb[2])

        k = len(clusters)
        d = np.full((k, k), np.inf)
        for i in range(k):
            for j in range(i + 1, k):
                d[i, j] = d[j, i] = dist(clusters[i], clusters[j])
        while len(clusters) > 1 and d.min() < self.max_mass_dist:
            i, j = sorted(np.unravel_index(np.argmin(d), d.shape))
            new = merged(clusters[i], clusters[j])
            if new is None:
                d[i, j] = d[j, i] = 2 * self.max_mass_dist
                continue
            clusters[i] = new
            del clusters[j]
            d = np.delete(np.delete(d, j, 0), j, 1)
            for q in range(len(clusters)):
                if q != i:
                    d[q, i] = d[i, q] = dist(clusters[q], new)
        clusters.sort(key=lambda c: float(np.sum(weight[c[0]])), reverse=True)
        exp_row = int(self.tx_map_exp[t])
        for members, avg, value in clusters:
            expected = float(ul_exp[members[0]]) if len(members) == 1 else self._map_value(exp_row, avg)
            yield members, avg, value, expected

    def to_predictions(self, arrays: PredictionArrays, n_models: int = 1) -> list[list[Prediction]]:
        """:class:`Prediction` records per model, sorted by dataset order."""
        a, names = self.arrays, [t.name for t in self.table.txnames]
        parts: list[dict[str, float]] = [{} for _ in range(len(arrays.xsec_fb))]
        for i, t, x in zip(arrays.part_prediction, arrays.part_txname, arrays.part_xsec_fb):
            parts[i][names[t]] = parts[i].get(names[t], 0.0) + float(x)
        out: list[list[Prediction]] = [[] for _ in range(n_models)]
        for i in np.lexsort((arrays.txname, arrays.dataset, arrays.model)):
            d, r = int(arrays.dataset[i]), int(a.dataset_result[arrays.dataset[i]])
            em = bool(a.result_is_em[r])
            lumi, xsec = float(a.result_lumi[r]), float(arrays.xsec_fb[i])
            ul_obs, ul_exp = _finite(arrays.ul_obs_fb[i]), _finite(arrays.ul_exp_fb[i])
            masses = arrays.masses[i]
            out[int(arrays.model[i])].append(Prediction(
                analysis=str(a.result_id[r]), dataset=str(a.dataset_id[d]) if em else None,
                datatype="efficiencyMap" if em else "upperLimit", txnames=tuple(sorted(parts[i])),
                sqrts_tev=float(a.result_sqrts[r]), lumi_ifb=lumi, xsec_fb=xsec,
                signal_events=xsec * lumi if em else None, ul_obs_fb=ul_obs, ul_exp_fb=ul_exp,
                r_obs=xsec / ul_obs if ul_obs else None, r_exp=xsec / ul_exp if ul_exp else None,
                txname_xsec_fb=parts[i],
                masses_gev=None if em else tuple(float(x) for x in masses[~np.isnan(masses)]),
                max_condition=float(arrays.max_condition[i])))
        return out


@dataclass(frozen=True, eq=False)
class ModelArraysBatch(Sequence[ModelArrays]):
    """:class:`ModelArrays` of a batch stacked along a first axis (B, ...), and a sequence of them
    (item b: views into the stacks). ``present`` (B,) uint64 bitmasks; ``kappa`` (B, n_channels) is 1
    and ``fitted`` False for models with injected σ."""

    masses: np.ndarray
    br: np.ndarray
    xsec: np.ndarray
    present: np.ndarray
    dlog_xsec: np.ndarray
    kappa: np.ndarray
    fitted: np.ndarray

    def __len__(self) -> int:
        return len(self.masses)

    def __getitem__(self, b):
        if isinstance(b, slice):
            return [self[i] for i in range(*b.indices(len(self)))]
        return ModelArrays(self.masses[b], self.br[b], self.xsec[b], int(self.present[b]), self.dlog_xsec[b],
                           self.kappa[b] if self.fitted[b] else None)

    @staticmethod
    def of(ms: Sequence[ModelArrays]) -> ModelArraysBatch:
        """The stacks of `ms` (itself when it is one)."""
        if isinstance(ms, ModelArraysBatch):
            return ms
        return ModelArraysBatch(np.stack([m.masses for m in ms]), np.stack([m.br for m in ms]),
                                np.stack([m.xsec for m in ms]), np.array([m.present for m in ms], dtype=np.uint64),
                                np.stack([m.dlog_xsec for m in ms]),
                                np.stack([np.ones(len(m.xsec)) if m.kappa is None else m.kappa for m in ms]),
                                np.array([m.kappa is not None for m in ms], dtype=bool))


class ProtomodelBatch(Sequence[Protomodel]):
    """Protomodels whose table arrays (``arrays``) were computed without them (e.g. straight from a
    sampler's parameters): the :class:`Protomodel` objects are built by `build` on first access
    only, for what needs them (names, outputs, the paper prior); :meth:`Predictor.model_arrays_batch`
    returns ``arrays``."""

    def __init__(self, arrays: ModelArraysBatch, build: Callable[[], Sequence[Protomodel]]) -> None:
        self.arrays = arrays
        self._build: Callable[[], Sequence[Protomodel]] | None = build
        self._models: Sequence[Protomodel] = ()

    @property
    def built(self) -> bool:
        """Whether the protomodels have been built."""
        return self._build is None

    def _all(self) -> Sequence[Protomodel]:
        if self._build is not None:
            self._models, self._build = self._build(), None
        return self._models

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, b):
        return self._all()[b]


@dataclass(frozen=True)
class MergedCluster:
    """An UL prediction whose point is the W-weighted mean of several groups of identical points:
    its flat prediction index, txname, the entries of each group, the groups' weights W_g (fb) and
    points (g, n_coords) GeV, and the mean point the limits were taken at (rounded as SModelS does)."""

    pred: int
    txname: int
    groups: list[np.ndarray]
    weight: np.ndarray
    points: np.ndarray
    mean: np.ndarray


@dataclass(frozen=True)
class Selection:
    """The discrete choices of the forward pass: the selected entries (one per related family and
    EM dataset or UL txname) and their flat prediction (-1: below 1e-6 fb); the UL predictions at
    one mass point with the entry whose point it is; the merged UL clusters."""

    entry: np.ndarray
    pred: np.ndarray
    point_pred: np.ndarray
    point_entry: np.ndarray
    merged: list[MergedCluster]


@dataclass(frozen=True)
class ForwardTrace:
    """The forward pass of a batch, kept for the gradients: the models' arrays (also stacked), the entries
    (:meth:`Predictor.entries`), per entry the value of its txname's map (ε or observed UL) and of the
    expected-UL map (NaN for EM entries) at its point, their Jacobians (n, C) per GeV if computed
    (zero rows where there is no value), the :class:`Selection`, and the (σ, UL_obs, UL_exp) arrays
    of the predictions it made (so that a user of the trace can tell it belongs to them)."""

    models: Sequence[ModelArrays]
    stacked: ModelArraysBatch
    entries: dict[str, np.ndarray]
    values: np.ndarray
    expected: np.ndarray
    jacobian: np.ndarray | None
    jacobian_expected: np.ndarray | None
    selection: Selection
    outputs: tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class PredictionArrays:
    """Predictions of a batch of protomodels, one entry per prediction: ``model`` (index in the
    batch), ``dataset`` (index in ``DatabaseArrays``), ``txname`` (table txname index for UL
    clusters, -1 for EM signal regions), ``xsec_fb`` (σ·BR or σ·BR·ε), limits in fb (NaN when
    absent), ``masses`` (UL cluster mass point, GeV, NaN-padded), ``max_condition`` (SModelS'
    largest condition violation, 0 without conditions). ``part_*`` split each prediction's σ by
    txname (entry ``part_prediction`` of the prediction arrays). ``trace``: the forward pass of
    :meth:`Predictor.evaluate_batch` (None when built otherwise)."""

    model: np.ndarray
    dataset: np.ndarray
    txname: np.ndarray
    xsec_fb: np.ndarray
    ul_obs_fb: np.ndarray
    ul_exp_fb: np.ndarray
    masses: np.ndarray
    part_prediction: np.ndarray
    part_txname: np.ndarray
    part_xsec_fb: np.ndarray
    max_condition: np.ndarray
    trace: ForwardTrace | None = field(default=None, repr=False, compare=False)

    @property
    def r_obs(self) -> np.ndarray:
        return self.xsec_fb / self.ul_obs_fb

    @property
    def r_exp(self) -> np.ndarray:
        return self.xsec_fb / self.ul_exp_fb


def best_expected(predictions: Sequence[Prediction]) -> list[Prediction]:
    """SModelS' ``useBestDataset=True`` selection (the critic set of the protomodels code): every UL
    prediction, and per efficiency-map analysis the signal region with the largest expected
    r = σ/UL_exp (ties: the larger σ, then the first in dataset order; ``_getBestResult``)."""
    out: list[Prediction] = []
    best: dict[tuple[str, float], Prediction] = {}
    for p in predictions:
        if p.datatype != "efficiencyMap":
            out.append(p)
            continue
        key = (p.analysis, p.sqrts_tev)
        r = p.r_exp if p.r_exp is not None else -np.inf
        current = best.get(key)
        if current is None:
            best[key] = p
            continue
        r0 = current.r_exp if current.r_exp is not None else -np.inf
        if r > r0 or (r == r0 and p.xsec_fb > current.xsec_fb):
            best[key] = p
    return out + list(best.values())


def _condition(kind: str, values: list[float]) -> float:
    """SModelS' cGtr (violation of a >= b in [0, 1]; None -> 0 when a + b = 0) and cSim (largest
    pairwise |a - b|/(a + b)), ``experiment/expAuxiliaryFuncs.py``."""
    if kind == "gtr":
        a, b = values
        return 0.0 if a + b == 0 else (abs(a - b) - (a - b)) / (2.0 * (a + b))
    x = np.asarray(values, dtype=float)
    d, s = np.abs(x[:, None] - x[None, :]), np.abs(x[:, None] + x[None, :])
    return float((d[s != 0] / s[s != 0]).max()) if np.any(s != 0) else 0.0


def _finite(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _distance(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2.0 * abs(a - b) / (a + b)


def _round_significant(x: np.ndarray, digits: int) -> np.ndarray:
    out = np.array(x, dtype=float)
    nz = out != 0
    mag = np.floor(np.log10(np.abs(out[nz])))
    out[nz] = np.round(out[nz] / 10 ** (mag - digits + 1)) * 10 ** (mag - digits + 1)
    return out


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of arange(start, stop) for each pair, without a Python loop."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return offsets + np.arange(total)


@numba.njit(cache=True)
def _row_less(key, a, b):
    for c in range(key.shape[1]):
        if key[a, c] != key[b, c]:
            return key[a, c] < key[b, c]
    return False


@numba.njit(cache=True)
def _unique_rows_kernel(key):
    """``np.unique(key, axis=0, return_inverse=True)`` of a 2-D float array without NaN (the same
    sorted rows and inverse; equal rows keep their first one in a stable sort)."""
    n = key.shape[0]
    order = np.arange(n)
    buffer = np.empty(n, dtype=np.int64)
    width = 1
    while width < n:  # bottom-up merge sort of the row indices: stable, like np.lexsort
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            a, b, k = lo, mid, lo
            while a < mid and b < hi:
                if _row_less(key, order[b], order[a]):
                    buffer[k] = order[b]
                    b += 1
                else:
                    buffer[k] = order[a]
                    a += 1
                k += 1
            while a < mid:
                buffer[k] = order[a]
                a += 1
                k += 1
            while b < hi:
                buffer[k] = order[b]
                b += 1
                k += 1
        order, buffer = buffer, order
        width *= 2
    inverse = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    g = -1
    for i in range(n):
        if i == 0 or _row_less(key, order[i - 1], order[i]):
            g += 1
            first[g] = order[i]
        inverse[order[i]] = g
    rows = np.empty((g + 1, key.shape[1]))
    for r in range(g + 1):
        rows[r] = key[first[r]]
    return rows, inverse


@numba.njit(cache=True)
def _first_of_max_kernel(keys, weight):
    """Indices of one entry per distinct key column (non-negative integers (k, n)): the largest
    weight, the first on ties; in key order. Weights must not be NaN."""
    n = weight.size
    key = np.zeros(n, dtype=np.int64)
    for r in range(keys.shape[0]):  # mixed radix: one int64 per key column
        radix = keys[r].max() + 1 if n else 1
        for i in range(n):
            key[i] = key[i] * radix + keys[r, i]
    order = np.argsort(key, kind="mergesort")  # stable: within a key, original order
    out = np.empty(n, dtype=np.int64)
    k = 0
    i = 0
    while i < n:
        best = order[i]
        j = i + 1
        while j < n and key[order[j]] == key[order[i]]:
            if weight[order[j]] > weight[best]:
                best = order[j]
            j += 1
        out[k] = best
        k += 1
        i = j
    return out[:k].copy()


@numba.njit(cache=True)
def _em_sums(model, dataset, tx, value, n_datasets, n_tx, cut):
    """The EM predictions of the selected entries (σ·BR·ε·coefficient `value`): per (model,
    dataset) in key order, σ summed per txname ("parts") then over the parts, each in entry order
    as ``np.bincount`` adds; predictions below `cut` dropped. Returns (model, dataset, σ) of the
    predictions, (prediction, txname, σ) of their parts, and each entry's prediction (-1: none)."""
    n = len(value)
    key = (model * n_datasets + dataset) * n_tx + tx
    order = np.argsort(key, kind="mergesort")
    part_of = np.empty(n, dtype=np.int64)
    part_key = np.empty(n, dtype=np.int64)
    n_parts = 0
    for i in range(n):
        o = order[i]
        if i == 0 or key[o] != part_key[n_parts - 1]:
            part_key[n_parts] = key[o]
            n_parts += 1
        part_of[o] = n_parts - 1
    part_xsec = np.zeros(n_parts)
    for i in range(n):
        part_xsec[part_of[i]] += value[i]
    part_pred = np.empty(n_parts, dtype=np.int64)
    pred_key = np.empty(n_parts, dtype=np.int64)
    n_preds = 0
    for q in range(n_parts):
        k = part_key[q] // n_tx
        if q == 0 or k != pred_key[n_preds - 1]:
            pred_key[n_preds] = k
            n_preds += 1
        part_pred[q] = n_preds - 1
    xsec = np.zeros(n_preds)
    for q in range(n_parts):
        xsec[part_pred[q]] += part_xsec[q]
    renumber = np.full(n_preds, -1, dtype=np.int64)
    n_kept = 0
    for p in range(n_preds):
        if xsec[p] >= cut:
            renumber[p] = n_kept
            n_kept += 1
    pred_model = np.empty(n_kept, dtype=np.int64)
    pred_dataset = np.empty(n_kept, dtype=np.int64)
    kept_xsec = np.empty(n_kept)
    for p in range(n_preds):
        if renumber[p] >= 0:
            pred_model[renumber[p]] = pred_key[p] // n_datasets
            pred_dataset[renumber[p]] = pred_key[p] % n_datasets
            kept_xsec[renumber[p]] = xsec[p]
    n_kept_parts = 0
    for q in range(n_parts):
        if renumber[part_pred[q]] >= 0:
            n_kept_parts += 1
    part_prediction = np.empty(n_kept_parts, dtype=np.int64)
    part_tx = np.empty(n_kept_parts, dtype=np.int64)
    kept_part_xsec = np.empty(n_kept_parts)
    r = 0
    for q in range(n_parts):
        if renumber[part_pred[q]] >= 0:
            part_prediction[r] = renumber[part_pred[q]]
            part_tx[r] = part_key[q] % n_tx
            kept_part_xsec[r] = part_xsec[q]
            r += 1
    entry_pred = np.empty(n, dtype=np.int64)
    for i in range(n):
        entry_pred[i] = renumber[part_pred[part_of[i]]]
    return pred_model, pred_dataset, kept_xsec, part_prediction, part_tx, kept_part_xsec, entry_pred


@numba.njit(cache=True)
def _ul_groups(groups, g_of, weight, coef, ul, ul_exp):
    """Per group of identical UL points (sorted rows `groups` of (model, txname, shape, point);
    entry i in group ``g_of[i]``): Σ weight and Σ coefficient·weight in entry order (as
    ``np.bincount``), the limits (of the group's last entry: all are equal), the (model, txname)
    it belongs to (numbered in order) and whether it is that one's only group."""
    n_g = groups.shape[0]
    g_weight = np.zeros(n_g)
    g_xsec = np.zeros(n_g)
    g_ul = np.empty(n_g)
    g_exp = np.empty(n_g)
    for i in range(len(g_of)):
        g = g_of[i]
        g_weight[g] += weight[i]
        g_xsec[g] += coef[i] * weight[i]
        g_ul[g] = ul[i]
        g_exp[g] = ul_exp[i]
    owner = np.empty(n_g, dtype=np.int64)
    size = np.zeros(n_g, dtype=np.int64)
    for g in range(n_g):
        owner[g] = 0 if g == 0 else owner[g - 1] + (groups[g, 0] != groups[g - 1, 0] or groups[g, 1] != groups[g - 1, 1])
        size[owner[g]] += 1
    single = np.empty(n_g, dtype=np.bool_)
    for g in range(n_g):
        single[g] = size[owner[g]] == 1
    return g_weight, g_xsec, g_ul, g_exp, owner, single


@numba.njit(cache=True)
def _ul_renumber(keep, group_pred, g_of):
    """The kept predictions' numbers (``renumber``: cumsum(keep) - 1), each entry's and each group's
    final prediction (-1: none or dropped) and each group's first entry."""
    renumber = np.empty(len(keep), dtype=np.int64)
    k = 0
    for p in range(len(keep)):
        k += keep[p]
        renumber[p] = k - 1
    final = np.empty(len(group_pred), dtype=np.int64)
    first_entry = np.full(len(group_pred), -1, dtype=np.int64)
    for g in range(len(group_pred)):
        p = group_pred[g]
        final[g] = renumber[p] if p >= 0 and keep[p] else -1
    entry_pred = np.empty(len(g_of), dtype=np.int64)
    for i in range(len(g_of)):
        entry_pred[i] = final[g_of[i]]
        if first_entry[g_of[i]] < 0:
            first_entry[g_of[i]] = i
    return renumber, entry_pred, final, first_entry


@numba.njit(cache=True)
def _candidate_rows(block_keys, block_start, present):
    """(model, row) of the table rows whose blocks' particles are all in `present` (bitmasks), model
    by model, rows in table order."""
    n = 0
    for b in range(len(present)):
        for k in range(len(block_keys)):
            if block_keys[k] & ~present[b] == 0:
                n += block_start[k + 1] - block_start[k]
    model = np.empty(n, dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    i = 0
    for b in range(len(present)):
        for k in range(len(block_keys)):
            if block_keys[k] & ~present[b] == 0:
                for r in range(block_start[k], block_start[k + 1]):
                    model[i] = b
                    rows[i] = r
                    i += 1
    return model, rows


@numba.njit(cache=True)
def _matches(rows, w, match_start, m_txname, tx_sqrts):
    """The matches (CSR) of table rows `rows` with weights `w` (rows, n_sqrts) > 0 at their
    txname's √s: (match, position in `rows`, √s index, weight), in row order."""
    n = 0
    for r in range(len(rows)):
        n += match_start[rows[r] + 1] - match_start[rows[r]]
    idx = np.empty(n, dtype=np.int64)
    local = np.empty(n, dtype=np.int64)
    sqrts = np.empty(n, dtype=np.int64)
    weight = np.empty(n)
    k = 0
    for r in range(len(rows)):
        for m in range(match_start[rows[r]], match_start[rows[r] + 1]):
            j = tx_sqrts[m_txname[m]]
            if w[r, j] > 0:
                idx[k], local[k], sqrts[k], weight[k] = m, r, j, w[r, j]
                k += 1
    return idx[:k].copy(), local[:k].copy(), sqrts[:k].copy(), weight[:k].copy()


@numba.njit(cache=True)
def _weights_above_cut(br, xsec, model, rows, el_br, el_share, el_channel, sigmacut):
    """(model, rows, weights (n, n_sqrts) fb) of the rows whose σ·ΠBR·share reaches `sigmacut` at
    some √s (NaN does not) with ΠBR > 0; the product left to right as ``np.prod``."""
    n, n_br, n_sqrts = len(rows), el_br.shape[1], xsec.shape[2]
    w = np.empty((n, n_sqrts))
    keep = np.zeros(n, dtype=np.bool_)
    n_kept = 0
    for i in range(n):
        b, r = model[i], rows[i]
        brs = br[b, el_br[r, 0]]
        for j in range(1, n_br):
            brs *= br[b, el_br[r, j]]
        brs *= el_share[r]
        top, nan = -np.inf, False
        for c in range(n_sqrts):
            w[i, c] = xsec[b, el_channel[r], c] * brs
            nan |= w[i, c] != w[i, c]
            top = max(top, w[i, c])
        keep[i] = not nan and top >= sigmacut and brs > 0
        n_kept += keep[i]
    out_model = np.empty(n_kept, dtype=model.dtype)
    out_rows = np.empty(n_kept, dtype=rows.dtype)
    out_w = np.empty((n_kept, n_sqrts))
    k = 0
    for i in range(n):
        if keep[i]:
            out_model[k], out_rows[k], out_w[k] = model[i], rows[i], w[i]
            k += 1
    return out_model, out_rows, out_w


@numba.njit(cache=True)
def _points(masses, model, coords):
    """The mass (GeV) of particle ``coords[i, c]`` of model ``model[i]``; 0 where the index is -1."""
    n, n_coords = coords.shape
    out = np.zeros((n, n_coords))
    for i in range(n):
        for c in range(n_coords):
            if coords[i, c] >= 0:
                out[i, c] = masses[model[i], coords[i, c]]
    return out


@numba.njit(cache=True)
def _compression_kept(masses, model, rows, el_mask, el_gap, minmassgap):
    """Whether each mass-compressed row's set of compressed decays (``el_mask``) is the one the
    masses select: the mass gaps ``el_gap`` below `minmassgap` GeV, or, when every gap is below it,
    those below 0.999 × the largest (NaN largest if a gap is NaN, as ``np.max``); rows without
    compressed decays pass."""
    n, k = len(rows), el_mask.shape[1]
    ok = np.ones(n, dtype=np.bool_)
    gaps = np.empty(k)
    small = np.empty(k, dtype=np.bool_)
    for i in range(n):
        r = rows[i]
        compressed = False
        for j in range(k):
            compressed |= el_mask[r, j]
        if not compressed:
            continue
        full = True
        for j in range(k):
            a, b = el_gap[r, j, 0], el_gap[r, j, 1]
            gaps[j] = masses[model[i], a] - masses[model[i], b] if a >= 0 else np.inf
            small[j] = gaps[j] < minmassgap
            full &= small[j] or a < 0
        if full:
            top = -np.inf
            for j in range(k):
                if el_gap[r, j, 0] >= 0:
                    top = np.nan if gaps[j] != gaps[j] or top != top else max(top, gaps[j])
            for j in range(k):
                small[j] = gaps[j] < 0.999 * top
        for j in range(k):
            if el_gap[r, j, 0] >= 0 and small[j] != el_mask[r, j]:
                ok[i] = False
    return ok


@numba.njit(cache=True)
def _active_rows(br, xsec, masses, model, rows, el_br, el_share, el_channel, sigmacut, el_mask, el_gap, minmassgap):
    """(model, rows, weights (n, n_sqrts) fb) of the rows of models `model` that pass sigmacut
    (:func:`_weights_above_cut`) and the compression rule (:func:`_compression_kept`)."""
    model, rows, w = _weights_above_cut(br, xsec, model, rows, el_br, el_share, el_channel, sigmacut)
    ok = _compression_kept(masses, model, rows, el_mask, el_gap, minmassgap)
    return model[ok], rows[ok], w[ok]


@numba.njit(cache=True)
def _entries_kernel(present, br, xsec, masses, block_keys, block_start, el_br, el_share, el_channel, sigmacut,
                    el_mask, el_gap, minmassgap, match_start, m_txname, tx_sqrts, el_origin, m_coef, m_shape,
                    m_cond_bits, m_coords, tx_map, tx_map_exp, tx_is_em):
    """:meth:`Predictor.entries` of models with bitmasks `present`: (model, tx, weight, origin,
    coef, shape, bits, row, sqrts, coords) per match, then the map queries: rows (the txnames' maps,
    then the expected-UL maps of the UL entries) and points (n + n_ul, C) GeV, and the UL entries."""
    model, rows = _candidate_rows(block_keys, block_start, present)
    model, rows, w = _active_rows(br, xsec, masses, model, rows, el_br, el_share, el_channel, sigmacut, el_mask, el_gap,
                                  minmassgap)
    idx, local, sqrts, weight = _matches(rows, w, match_start, m_txname, tx_sqrts)
    n, n_coords = len(idx), m_coords.shape[1]
    tx = m_txname[idx]
    model, rows = model[local], rows[local]
    coords = np.empty((n, n_coords), dtype=np.int64)
    shape = np.empty(n, dtype=np.int64)
    n_ul = 0
    for i in range(n):
        for c in range(n_coords):
            coords[i, c] = m_coords[idx[i], c]
        shape[i] = m_shape[idx[i]]
        n_ul += not tx_is_em[tx[i]]
    ul = np.empty(n_ul, dtype=np.int64)
    q_rows = np.empty(n + n_ul, dtype=np.int64)
    q_points = np.empty((n + n_ul, n_coords))
    q_points[:n] = _points(masses, model, coords)
    k = 0
    for i in range(n):
        q_rows[i] = tx_map[tx[i]]
        if not tx_is_em[tx[i]]:
            ul[k] = i
            q_rows[n + k] = tx_map_exp[tx[i]]
            q_points[n + k] = q_points[i]
            k += 1
    return (model, tx, weight, el_origin[rows], m_coef[idx], shape, m_cond_bits[idx], rows, sqrts, coords, q_rows,
            q_points, ul)


@numba.njit(cache=True)
def _em_stage(model, origin, tx, weight, coef, values, tx_is_em, tx_dataset, n_datasets, n_tx, eff_zero, cut):
    """The EM signal regions of the entries (ε `values`; |ε| < `eff_zero` or NaN dropped): per
    (model, related family, dataset) the entry of largest σ·BR·ε (:func:`_first_of_max_kernel`),
    summed per dataset (:func:`_em_sums`). Returns the predictions' (model, dataset, σ), their
    parts (prediction, txname, σ), the selected entries, their prediction and σ·BR·ε."""
    n = len(tx)
    em = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        if tx_is_em[tx[i]] and abs(values[i]) >= eff_zero:
            em[k] = i
            k += 1
    em = em[:k]
    w = weight[em] * values[em]
    keys = np.empty((3, k), dtype=np.int64)
    for j in range(k):
        keys[0, j], keys[1, j], keys[2, j] = model[em[j]], origin[em[j]], tx_dataset[tx[em[j]]]
    first = _first_of_max_kernel(keys, w)
    entry = em[first]
    w_first = w[first]
    pred_model, pred_dataset, xsec, part_prediction, part_tx, part_xsec, entry_pred = _em_sums(
        model[entry], keys[2][first], tx[entry], coef[entry] * w_first, n_datasets, n_tx, cut)
    return pred_model, pred_dataset, xsec, part_prediction, part_tx, part_xsec, entry, entry_pred, w_first


@numba.njit(cache=True)
def _ul_stage(model, origin, tx, weight, coef, shape, points, values, expected, tx_is_em):
    """The UL entries with a limit: per (model, related family, txname) the one of largest σ·BR
    (``sel``), grouped by identical (model, txname, shape, point) (sorted rows ``groups``, entry j
    of `sel` in group ``g_of[j]``), with the groups' sums and limits (:func:`_ul_groups`). The
    groups alone in their (model, txname) are predictions at their point, numbered in group order
    (``group_pred``, -1 for the others) with their (model, txname, σ, UL, expected UL, point)."""
    n = len(tx)
    ul = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        if not tx_is_em[tx[i]] and values[i] == values[i]:
            ul[k] = i
            k += 1
    ul = ul[:k]
    keys = np.empty((3, k), dtype=np.int64)
    for j in range(k):
        keys[0, j], keys[1, j], keys[2, j] = model[ul[j]], origin[ul[j]], tx[ul[j]]
    sel = ul[_first_of_max_kernel(keys, weight[ul])]
    m, n_coords = len(sel), points.shape[1]
    key = np.empty((m, 3 + n_coords))
    for j in range(m):
        key[j, 0], key[j, 1], key[j, 2] = model[sel[j]], tx[sel[j]], shape[sel[j]]
        for c in range(n_coords):
            key[j, 3 + c] = points[sel[j], c]
    groups, g_of = _unique_rows_kernel(key)
    g_weight, g_xsec, g_ul, g_exp, owner, single = _ul_groups(groups, g_of, weight[sel], coef[sel], values[sel],
                                                              expected[sel])
    n_g = len(groups)
    group_pred = np.full(n_g, -1, dtype=np.int64)
    n_single = 0
    for g in range(n_g):
        if single[g]:
            group_pred[g] = n_single
            n_single += 1
    c_model = np.empty(n_single, dtype=np.int64)
    c_tx = np.empty(n_single, dtype=np.int64)
    c_xsec = np.empty(n_single)
    c_ul = np.empty(n_single)
    c_exp = np.empty(n_single)
    c_points = np.empty((n_single, n_coords))
    for g in range(n_g):
        p = group_pred[g]
        if p >= 0:
            c_model[p], c_tx[p], c_xsec[p], c_ul[p], c_exp[p] = groups[g, 0], groups[g, 1], g_xsec[g], g_ul[g], g_exp[g]
            c_points[p] = groups[g, 3:]
    return (sel, groups, g_of, g_weight, g_xsec, g_ul, g_exp, owner, single, group_pred,
            (c_model, c_tx, c_xsec, c_ul, c_exp, c_points))


@numba.njit(cache=True)
def _join(em_model, em_dataset, em_xsec, em_part_prediction, em_part_tx, em_part_xsec, em_entry, em_pred, em_weight,
          upper_limit, expected_upper_limit, c_model, c_tx, c_xsec, c_ul, c_exp, c_points, group_pred, one_point, g_of,
          sel, weight, tx, tx_ncoords, tx_dataset, tx_has_conditions, cut):
    """The flat predictions: the EM ones (:func:`_em_stage`), then the UL clusters (model, txname,
    σ, UL, expected UL, point) above `cut` fb, with the UL maps' unused columns NaN; the selected
    entries and their prediction; the UL predictions at one group's point with that group's first
    entry; each selected entry's condition weight (σ·BR·ε or σ·BR); whether a selected entry with a
    prediction has conditions; which clusters are kept and their UL-local numbers."""
    n_em, n_sel_em = len(em_xsec), len(em_entry)
    keep = np.empty(len(c_xsec), dtype=np.bool_)
    for k in range(len(c_xsec)):
        keep[k] = c_xsec[k] >= cut
    renumber, entry_pred, final, first_entry = _ul_renumber(keep, group_pred, g_of)
    n_ul = renumber[-1] + 1 if len(renumber) else 0
    n, n_coords = n_em + n_ul, c_points.shape[1]
    model = np.empty(n, dtype=np.int64)
    dataset = np.empty(n, dtype=np.int64)
    txname = np.empty(n, dtype=np.int64)
    xsec = np.empty(n)
    ul_obs = np.empty(n)
    ul_exp = np.empty(n)
    masses = np.full((n, n_coords), np.nan)
    for p in range(n_em):
        model[p], dataset[p], txname[p], xsec[p] = em_model[p], em_dataset[p], -1, em_xsec[p]
        ul_obs[p], ul_exp[p] = upper_limit[em_dataset[p]], expected_upper_limit[em_dataset[p]]
    p = n_em
    for k in range(len(c_xsec)):
        if keep[k]:
            t = c_tx[k]
            model[p], dataset[p], txname[p], xsec[p] = c_model[k], tx_dataset[t], t, c_xsec[k]
            ul_obs[p], ul_exp[p] = c_ul[k], c_exp[k]
            for c in range(min(tx_ncoords[t], n_coords)):
                masses[p, c] = c_points[k, c]
            p += 1
    n_parts = len(em_part_xsec) + n_ul
    part_prediction = np.empty(n_parts, dtype=np.int64)
    part_txname = np.empty(n_parts, dtype=np.int64)
    part_xsec = np.empty(n_parts)
    part_prediction[:len(em_part_xsec)] = em_part_prediction
    part_txname[:len(em_part_xsec)] = em_part_tx
    part_xsec[:len(em_part_xsec)] = em_part_xsec
    for j in range(n_ul):
        q = len(em_part_xsec) + j
        part_prediction[q], part_txname[q], part_xsec[q] = n_em + j, txname[n_em + j], xsec[n_em + j]
    n_sel = n_sel_em + len(sel)
    entry = np.empty(n_sel, dtype=np.int64)
    pred = np.empty(n_sel, dtype=np.int64)
    cond_weight = np.empty(n_sel)
    entry[:n_sel_em], pred[:n_sel_em], cond_weight[:n_sel_em] = em_entry, em_pred, em_weight
    for j in range(len(sel)):
        q = n_sel_em + j
        entry[q], pred[q], cond_weight[q] = sel[j], entry_pred[j] + n_em if entry_pred[j] >= 0 else -1, weight[sel[j]]
    conditions = False
    for j in range(n_sel):
        conditions |= pred[j] >= 0 and tx_has_conditions[tx[entry[j]]]
    n_points = 0
    for g in range(len(final)):
        n_points += one_point[g] and final[g] >= 0
    point_pred = np.empty(n_points, dtype=np.int64)
    point_entry = np.empty(n_points, dtype=np.int64)
    j = 0
    for g in range(len(final)):
        if one_point[g] and final[g] >= 0:
            point_pred[j], point_entry[j] = final[g] + n_em, sel[first_entry[g]]
            j += 1
    return (model, dataset, txname, xsec, ul_obs, ul_exp, masses, part_prediction, part_txname, part_xsec, entry, pred,
            point_pred, point_entry, cond_weight, conditions, keep, renumber)


@numba.njit(cache=True)
def _answerable(map_rows, map_group, batch_group):
    """The queries (in order) whose map row (-1: none) has a batched interpolator (``batch_group``
    >= 0; -1: SModelS cannot triangulate the map either), and the groups of the others whose
    interpolator is not built yet (-2), sorted."""
    sel = np.empty(len(map_rows), dtype=np.int64)
    pending = np.zeros(len(batch_group), dtype=np.bool_)
    k = 0
    for i in range(len(map_rows)):
        if map_rows[i] < 0:
            continue
        g = map_group[map_rows[i]]
        if batch_group[g] >= 0:
            sel[k] = i
            k += 1
        elif batch_group[g] == -2:
            pending[g] = True
    return sel[:k].copy(), np.flatnonzero(pending)


@numba.njit(cache=True)
def _scatter(n, width, sel, values, jac, jacobian):
    """Values (n,) NaN but at the queries `sel`, and if `jacobian` the Jacobian (n, width) zero
    but at their rows (the first min(width, jac columns) columns)."""
    out = np.full(n, np.nan)
    full = np.zeros((n if jacobian else 0, width))
    c = min(width, jac.shape[1])
    for k in range(len(sel)):
        out[sel[k]] = values[k]
        if jacobian:
            for j in range(c):
                full[sel[k], j] = jac[k, j]
    return out, full


@numba.njit(cache=True)
def _split_queries(both, jac, ul, n, jacobian):
    """The map queries of the entries (the first `n`) and of the expected-UL maps of the UL entries
    `ul` split into values, expected ULs (NaN for the others) and their Jacobians (zero rows)."""
    expected = np.full(n, np.nan)
    jac_expected = np.zeros((n if jacobian else 0, jac.shape[1]))
    for k in range(len(ul)):
        expected[ul[k]] = both[n + k]
        if jacobian:
            jac_expected[ul[k]] = jac[n + k]
    return both[:n], expected, jac[:n], jac_expected


def _interpolator_cache_dir() -> Path:
    source = Path(interpolation.__file__).read_bytes()
    return cache_dir() / "interpolators" / hashlib.blake2b(source, digest_size=8).hexdigest()


