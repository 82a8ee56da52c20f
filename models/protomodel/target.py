"""The likelihood of protomodels as one compiled PyTensor function, batched over chains.

Stages (docs/likelihood-graph.md):

1. predictions, numpy (:meth:`Predictor.evaluate_batch`, all protomodels of the batch at once);
2. per database result, in numpy from the flat predictions: the one prediction that enters the
   likelihood (SR selection ``paper``: the largest UL_obs/UL_exp, or ``best-expected``: the largest
   r_exp; one per analysis id, so UL and EM versions compete; ``combined``: best-expected, except
   that results with a covariance matrix enter with all their SRs, ``sl_signal``, and the
   simplified likelihood) and the critic's r (UL predictions,
   and the best-expected SR of EM results; 23 without an UL, as the original);
   these are dense (B, n_results) :class:`ResultInputs`, with each state's *slots* (its selected
   result columns, padded to the batch's largest number);
   and the state's cliques: the maximal cliques among the predicted results of each (experiment,
   √s) group, with the paper-era ``hasOverlap`` veto (chosen predictions sharing a contributing
   element do not combine; on by default) (:meth:`Combiner.paper_cliques`), over its slots
   (:meth:`Combiner.slot_cliques`);
3. one compiled graph on those arrays: r_max, μ_max, the per-result contributions
   ln L_i(μ s_i) − ln L_i(0) (:mod:`tdmcmc.models.likelihood`, either variant) on the slots only
   (the inputs gathered once; the dense columns of the other results would cost ~7× more), the
   paper's max over the state's cliques (:meth:`Combiner.paper_clique_max`) profiled in μ
   (:func:`profile_mu`), Z,
   K = Z² + 2 ln π_paper; and per prediction −ln L at μ = 0 and 1;
4. the ``bayes`` function: ln R(μ) at a given μ with the static combiner (``max``, ``logsumexp``,
   ``fixed``; no veto), the same contributions (on the slots, then scattered to the dense
   columns) and critic, and its gradients.

Gradients of the graph with respect to its inputs (signals, critic r, ...) are exact; the chain to
masses/BRs/κ through stage 1 is not part of this module (see the docs).

The max over cliques and the max over μ commute, so max_c max_μ ln R_c(μ) (the paper: profile μ
per clique, then take the best clique) equals max_μ max_c ln R_c(μ), which is what is computed.
The μ profile then runs on a maximum of log-concave functions, not log-concave itself: the grid
(``n_grid`` points) plus the refinement steps of :func:`profile_mu` (vectorised parabola/bisection)
can miss a second local maximum narrower than a grid cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tdmcmc.errors import UserError
from tdmcmc.models.greedy.objective import (MU_MAX_SAFETY, MU_MAX_UNBOUNDED, R_THRESHOLD, PaperScore,
                                            ContributingRows, PaperPrior, default_combination_matrix,
                                            paper_prior)
from tdmcmc.models.likelihood.options import PAPER, LikelihoodChoice
from tdmcmc.models.protomodel.model import Protomodel
from tdmcmc.models.protomodel.predictions import ModelArrays, ModelArraysBatch, PredictionArrays
from tdmcmc.models.protomodel.result_columns import VALUE_ROWS, result_columns

SR_SELECTIONS = ("paper", "best-expected", "combined")
_GRAPH_OUTPUTS = ("K", "Z", "mu_hat", "mu_max", "r_max", "log_prior", "contributions", "grad_signal",
                  "grad_critic_r", "grad_ul_obs", "grad_ul_exp", "grad_sl_signal")
_BAYES_OUTPUTS = ("log_ratio", "mu_max", "r_max", "grad_mu", "grad_signal", "grad_ul_obs", "grad_ul_exp",
                  "contributions", "grad_sl_signal")
COMBINATIONS = ("max", "logsumexp", "fixed")
# Newton steps of the combined results' θ̂, written out in the graph (a scan nested in the μ
# profile's scan made one paper evaluation take ~20 s per model). From SModelS' starting guess,
# 10 steps reproduce the 30-step value to 5e-12 (8 steps: 5e-3) on CMS-PAS-SUS-16-052-agg for 250
# signal vectors × 41 μ in [0, 5]; 16 leave a margin.
SL_NEWTON_STEPS = 16
N_GRID = 64


@dataclass(frozen=True)
class ResultInputs:
    """Dense per-result inputs of the compiled graph, shape (B, n_results), database result order.

    ``selected``: 1 where the result has a prediction in the likelihood; ``signal`` the EM signal
    events at μ = 1 or the UL σ×BR (fb); ``n, b, db`` the selected SR's counts (EM);
    ``ul_obs, ul_exp`` (fb), ``lumi`` (fb⁻¹) (UL); ``critic_r`` the critic's largest r of the
    result (0 without prediction), ``critic_choice`` the flat prediction attaining it (UL: the first
    of largest σ/UL_obs by (dataset, txname); EM: the SR of largest r_exp; -1 without prediction);
    ``log_prior`` (B,) ln π_paper. Unused entries hold harmless
    values (n = b = db = 1, limits 1) so every branch stays finite. ``clique_members``
    (B, n_groups, C, n_nodes) and ``clique_valid`` (B, n_groups, C): the paper's cliques among the
    predicted results of each state (:meth:`Combiner.paper_cliques`, with the ``hasOverlap`` veto
    when it is on).

    SR selection ``combined``: ``sl_signal`` (B, n_sl) the signal events at μ = 1 of every SR of the
    results with a covariance matrix (:attr:`LikelihoodTarget.sl_results`), their SRs concatenated
    in datasetOrder (0 for an SR without a prediction); ``sl_choice`` the flat prediction of each
    (-1 if none). For those results ``choice``/``signal`` hold the best-expected SR (a representative
    for the critic, ``best_combination`` and the hasOverlap veto; the graph does not use its
    ``signal``). Other selections: (B, 0).

    The ``paper`` graph evaluates the likelihood on *slots*, the few results each state selects
    (dense columns would cost ~7× more): ``em_slots`` (B, S_em) and ``ul_slots`` (B, S_ul) the
    selected EM and UL result columns of each state (ordered by graph node; padded with a column
    the state does not select, whose values are harmless), then the combined results
    (:attr:`LikelihoodTarget.sl_results`, fixed columns); ``slot_members`` (B, S, n_groups, C') and
    ``slot_valid`` (B, n_groups, C') the state's cliques over those slots
    (:meth:`Combiner.slot_cliques`; none valid with ``paper`` False).
    """

    selected: np.ndarray
    signal: np.ndarray
    n: np.ndarray
    b: np.ndarray
    db: np.ndarray
    ul_obs: np.ndarray
    ul_exp: np.ndarray
    lumi: np.ndarray
    critic_r: np.ndarray
    log_prior: np.ndarray
    clique_members: np.ndarray
    clique_valid: np.ndarray
    choice: np.ndarray          # (B, n_results) index of the chosen prediction (flat), -1 if none
    sl_signal: np.ndarray
    sl_choice: np.ndarray
    em_slots: np.ndarray
    ul_slots: np.ndarray
    slot_members: np.ndarray
    slot_valid: np.ndarray
    critic_choice: np.ndarray   # (B, n_results) flat prediction attaining critic_r, -1 if none


@dataclass(frozen=True)
class TargetValues:
    """Outputs of the compiled function for a batch (arrays of length B unless said otherwise).

    ``K``, ``Z``: NaN when no two predicted results combine; ``contributions`` (B, n_results)
    ln L_i(μ̂ s_i) − ln L_i(0); ``grad_signal``, ``grad_critic_r``, ``grad_ul_obs``, ``grad_ul_exp``
    (B, n_results): ∂K/∂ of the per-result inputs (0 where K is NaN); ``grad_sl_signal`` (B, n_sl):
    ∂K/∂ of the combined results' per-SR signals; ``nll_mu0``, ``nll_mu1``: per flat prediction (NaN
    without a likelihood)."""

    K: np.ndarray
    Z: np.ndarray
    mu_hat: np.ndarray
    mu_max: np.ndarray
    r_max: np.ndarray
    log_prior: np.ndarray
    contributions: np.ndarray
    grad_signal: np.ndarray
    grad_critic_r: np.ndarray
    grad_ul_obs: np.ndarray
    grad_ul_exp: np.ndarray
    grad_sl_signal: np.ndarray
    nll_mu0: np.ndarray
    nll_mu1: np.ndarray


@dataclass(frozen=True)
class BayesValues:
    """Outputs of the ``bayes`` function at given μ, arrays over the batch.

    ``log_ratio`` (B,): ln R(μ) = combine_c Σ_{i∈c} [ln L_i(μ s_i) − ln L_i(0)] (0 when no result is
    predicted; mode ``logsumexp`` is shifted by −ln N_cliques so that holds there too); ``mu_max``,
    ``r_max``: the critic's bound and largest r (μ_max = +inf when r_max = 0); ``grad_mu`` (B,)
    ∂ln R/∂μ; ``grad_signal``, ``grad_ul_obs``, ``grad_ul_exp`` (B, n_results): ∂ln R/∂ of the
    per-result inputs (∂ln R/∂(critic r) is 0: μ is given); ``contributions`` (B, n_results)
    ln L_i(μ s_i) − ln L_i(0); ``grad_sl_signal`` (B, n_sl) ∂ln R/∂ of the combined results' per-SR
    signals (SR selection ``combined``).
    """

    log_ratio: np.ndarray
    mu_max: np.ndarray
    r_max: np.ndarray
    grad_mu: np.ndarray
    grad_signal: np.ndarray
    grad_ul_obs: np.ndarray
    grad_ul_exp: np.ndarray
    contributions: np.ndarray
    grad_sl_signal: np.ndarray


class LikelihoodTarget:
    """The ``paper`` and ``bayes`` targets on one database, compiled once each, batched over protomodels.

    :param database: SModelS database folder
    :param combination_matrix: allow-lists; None: :func:`default_combination_matrix` (without one,
        only results of different experiments or √s combine, with a warning)
    :param likelihood: EM/UL likelihood variants (default: the paper's ``2020``)
    :param r_threshold: the critic's r_thr (μ_max = 0.999 r_thr / r_max)
    :param sr_selection: one of :data:`SR_SELECTIONS`: ``paper`` (largest UL_obs/UL_exp),
        ``best-expected`` (largest r_exp), ``combined`` (EM results with a covariance matrix enter
        with the simplified likelihood SLv1/SLv2 over all their SRs; the others best-expected,
        including results with a pyhf workspace, with a warning: see :meth:`combined_likelihoods`)
    :param space: protomodel space (default: the paper's; a restricted space gives a small table)
    :param element_overlap: ``paper`` target: the paper-era ``hasOverlap`` veto (two predictions of
        the same experiment and √s sharing a contributing element do not combine)
    :param combination: ``bayes`` target: one of :data:`COMBINATIONS` (static maximal cliques over
        all results; no ``hasOverlap`` veto)
    :param fixed_analyses: analysis ids of the combination ``fixed``
    """

    def __init__(self, database: str | Path, combination_matrix: str | Path | None = None, *,
                 likelihood: LikelihoodChoice = PAPER, r_threshold: float = R_THRESHOLD,
                 sr_selection: str = "paper", kappa_clustering: str = "bins", space=None,
                 compiled=None, n_grid: int = N_GRID, mode: Any = None, element_overlap: bool = True,
                 combination: str = "max", fixed_analyses: Sequence[str] | None = None):
        import warnings

        from tdmcmc.models.database.compiled import load_compiled
        from tdmcmc.models.likelihood.cliques import build_combiner
        from tdmcmc.models.likelihood.combinability import AllowLists, graph_for_database, read_allow_lists
        from tdmcmc.models.protomodel.predictions import MapInterpolators, Predictor
        from tdmcmc.models.protomodel.space import default_space
        from tdmcmc.models.protomodel.topologies import load_table

        if sr_selection not in SR_SELECTIONS:
            raise ValueError(f"sr_selection: expected one of {SR_SELECTIONS}, got {sr_selection!r}")
        if combination not in COMBINATIONS:
            raise UserError(f"combination: expected one of {', '.join(COMBINATIONS)}, got {combination!r}")
        if (combination == "fixed") != (fixed_analyses is not None):
            raise UserError("fixed_analyses is needed by, and only by, combination 'fixed'")
        self.space = space or default_space()
        self.compiled = compiled or load_compiled(Path(database))
        matrix = Path(combination_matrix) if combination_matrix else default_combination_matrix(Path(database))
        if matrix is None:
            warnings.warn(f"no combination matrix for {database}: only results of different experiments "
                          "or sqrt(s) combine", stacklevel=2)
        self.graph = graph_for_database(self.compiled.arrays, read_allow_lists(matrix) if matrix else AllowLists({}, {}))
        self.combiner = build_combiner(self.graph)
        self.table = load_table(self.space, self.compiled)
        self.predictor = Predictor(self.table, self.compiled, self.space, MapInterpolators(self.compiled, cache=True))
        self._contributing_rows = ContributingRows(self.predictor)
        self.likelihood, self.r_threshold = likelihood, r_threshold
        self.sr_selection, self.kappa_clustering, self.n_grid = sr_selection, kappa_clustering, n_grid
        self.element_overlap, self.combination = element_overlap, combination
        self.fixed_analyses = tuple(fixed_analyses) if fixed_analyses is not None else None
        if self.fixed_analyses is not None:
            self.combiner.fixed_mask(self.fixed_analyses)            # unknown or non-combinable ids: UserError
        a = self.compiled.arrays
        _, self._analysis_code = np.unique(np.asarray(a.result_id, dtype=str), return_inverse=True)
        d = a.dataset_result
        self._em_ok = np.isfinite(a.observed_n) & np.isfinite(a.expected_bg) & (np.nan_to_num(a.bg_error) > 0)
        self._dataset_em = np.asarray(a.result_is_em, bool)[d]
        self._in_graph = self.graph.result_node >= 0
        self._group_index = np.zeros(self.graph.n_nodes, np.int64)         # group of each node
        for k, group in enumerate(self.combiner.groups):
            self._group_index[group.nodes] = k
        self._function = self._nll_function = self._bayes_function = None
        self.mode = mode if mode is not None else _default_mode()
        self.sl_results, self._sl_models, self._sl_nll0, self._sl_column = self.combined_likelihoods()

    def combined_likelihoods(self) -> tuple[tuple[int, ...], tuple, np.ndarray, np.ndarray]:
        """SR selection ``combined``: the results that enter with a simplified likelihood (EM, in the
        combinability graph, with a covariance matrix; SLv2 where third moments are given), their
        :class:`SimplifiedLikelihood`, −ln L(μ = 0) of each and the ``sl_signal`` column of every
        dataset (-1 elsewhere). Results with a pyhf workspace keep their best-expected SR: the pyhf
        backend fits with pyhf in Python (0.1–2 s per point), and the paper profile alone needs
        ~100 points per model; a warning names them. Empty for the other selections."""
        import warnings

        from tdmcmc.models.likelihood.simplified import SimplifiedLikelihood, sl_nll

        a = self.compiled.arrays
        column = np.full(len(a.dataset_result), -1)
        if self.sr_selection != "combined":
            return (), (), np.zeros(0), column
        results = tuple(sorted(r for r in a.covariances if a.result_is_em[r] and self._in_graph[r]))
        models = tuple(SimplifiedLikelihood.from_compiled(a, r) for r in results)
        start = 0
        for r in results:
            datasets = a.covariances[r][0]
            column[datasets] = start + np.arange(len(datasets))
            start += len(datasets)
        pyhf = [str(a.result_id[r]) for r, res in enumerate(self.compiled.database.results)
                if res.info.json_files and a.result_is_em[r] and self._in_graph[r] and r not in results]
        if pyhf:
            warnings.warn("sr_selection 'combined': pyhf likelihoods cannot run inside the compiled graph; "
                          f"these results use their best-expected signal region: {', '.join(pyhf)}", stacklevel=3)
        nll0 = np.array([float(sl_nll(0.0, np.zeros(len(m.n)), m)) for m in models])
        return results, models, nll0, column

    @property
    def n_results(self) -> int:
        return len(self.compiled.arrays.result_id)

    # -- stage 2: per-result inputs --------------------------------------------------------------

    def result_inputs(self, preds: PredictionArrays, models: Sequence[Protomodel],
                      arrays: Sequence[ModelArrays] | None = None, *, paper: bool = True) -> ResultInputs:
        """Dense per-result inputs from the flat predictions of a batch of `models` (`arrays`: their
        :meth:`Predictor.model_arrays`; when None and needed, those of the predictions' trace, or
        recomputed). `paper` False leaves out what only the ``paper`` function reads (ln π_paper:
        NaN; the state's cliques: none valid), for the ``bayes`` function."""
        n_b = len(models)
        critic, critic_choice, chosen, selected, signal, choice, values, em_slots, ul_slots, slot_node = result_columns(
            n_b, preds.model, preds.dataset, preds.txname, preds.xsec_fb, preds.ul_obs_fb, preds.ul_exp_fb,
            *self._column_tables)
        out = dict(zip(VALUE_ROWS, values))
        if paper:
            if arrays is None:
                arrays = preds.trace.models if preds.trace is not None else self.predictor.model_arrays_batch(models)
            log_prior = self._log_prior(models, arrays)
            cm, cr = preds.model[chosen], self.compiled.arrays.dataset_result[preds.dataset[chosen]]
            members, valid = self._paper_cliques(preds, cm, cr, chosen, arrays)
            slot_members, slot_valid = self.combiner.slot_cliques(members, valid, slot_node)
        else:
            log_prior = np.full(n_b, np.nan)
            members = np.zeros((n_b, len(self.combiner.groups), 1, self.graph.n_nodes))
            valid = np.zeros((n_b, len(self.combiner.groups), 1))
            slot_members, slot_valid = np.zeros((n_b, slot_node.shape[1]) + valid.shape[1:]), valid
        sl_signal, sl_choice = self._sl_inputs(preds, n_b)
        return ResultInputs(selected=selected, signal=signal, critic_r=critic, log_prior=log_prior,
                            clique_members=members, clique_valid=valid, choice=choice, sl_signal=sl_signal,
                            sl_choice=sl_choice, em_slots=em_slots, ul_slots=ul_slots, slot_members=slot_members,
                            slot_valid=slot_valid, critic_choice=critic_choice, **out)

    @cached_property
    def _column_tables(self) -> tuple:
        """The database's arguments of :func:`result_columns` after the predictions: per dataset and
        per result, the analysis ids' codes, the SR selection's key, the EM and the UL result columns
        that can be slots (in the combinability graph, not combined; each ordered by graph node),
        the combined results and the graph node of each result."""
        a = self.compiled.arrays
        is_em = np.asarray(a.result_is_em, bool)
        candidate = self._in_graph.copy()
        candidate[list(self.sl_results)] = False
        slot_columns = []
        for kind in (is_em, ~is_em):
            cols = np.flatnonzero(candidate & kind)
            slot_columns.append(cols[np.argsort(self.graph.result_node[cols], kind="stable")].astype(np.int64))
        f64 = lambda v: np.ascontiguousarray(v, dtype=np.float64)      # noqa: E731
        return (np.ascontiguousarray(a.dataset_result, dtype=np.int64), np.ascontiguousarray(self._dataset_em),
                np.ascontiguousarray(self._em_ok), np.ascontiguousarray(self._in_graph),
                self._analysis_code.astype(np.int64), int(self._analysis_code.max(initial=-1)) + 1,
                f64(a.observed_n), f64(a.expected_bg), f64(a.bg_error), f64(a.result_lumi),
                self.sr_selection == "paper", *slot_columns, np.asarray(self.sl_results, dtype=np.int64),
                np.ascontiguousarray(self.graph.result_node, dtype=np.int64))

    @cached_property
    def _paper_prior(self) -> PaperPrior:
        return PaperPrior(self.space, self.kappa_clustering)

    @cached_property
    def _prior_columns(self) -> tuple[int, np.ndarray] | None:
        """(√s index of 13 TeV, table channel of each production channel of the space) for reading the
        prior's σ from the models' table arrays; None when the table lacks either."""
        pr = self.predictor
        columns = np.array([pr.channel_index.get(c.key, -1) for c in self.space.productions], dtype=np.int64)
        return (pr.sqrts.index(13), columns) if 13 in pr.sqrts and np.all(columns >= 0) else None

    def _log_prior(self, models: Sequence[Protomodel | ModelArrays], arrays: Sequence[ModelArrays]) -> np.ndarray:
        """ln π_paper (B,) of :class:`PaperPrior`: from the models' table arrays where σ comes from the
        fits (then `models` may be the arrays themselves), from the fits of the protomodels
        elsewhere (injected σ: the prior's σ is the fitted one)."""
        batch = ModelArraysBatch.of(arrays)
        fitted = batch.fitted if self._prior_columns is not None else np.zeros(len(batch), bool)
        if fitted.all() and self._prior_columns is not None:
            s13, columns = self._prior_columns
            return self._paper_prior.from_arrays(self.predictor, batch, batch.xsec[:, columns, s13])[0]
        out = np.empty(len(batch))
        if fitted.any():
            out[fitted] = self._log_prior([], [batch[b] for b in np.flatnonzero(fitted)])
        out[~fitted] = self._paper_prior([models[b] for b in np.flatnonzero(~fitted)])[0]
        return out

    def _paper_cliques(self, preds: PredictionArrays, cm: np.ndarray, cr: np.ndarray, chosen: np.ndarray,
                       arrays: Sequence[ModelArrays]) -> tuple[np.ndarray, np.ndarray]:
        """The states' cliques (:meth:`Combiner.paper_cliques`) of the chosen predictions `chosen`
        (of models `cm`, results `cr`), with the ``hasOverlap`` veto when it is on."""
        node = self.graph.result_node[cr]                  # chosen results are in the graph
        node_predicted = np.zeros((len(arrays), self.graph.n_nodes), bool)
        node_predicted[cm, node] = True
        if not self.element_overlap:
            return self.combiner.paper_cliques(node_predicted)
        state, vetoed = self._contributing_rows.vetoed_node_pairs(
            arrays, cm, node, chosen, preds.part_prediction, preds.part_txname, self._group_index,
            self.graph.adjacency, preds.trace)
        return self.combiner.paper_cliques_flat(node_predicted, state, vetoed)

    def _sl_inputs(self, preds: PredictionArrays, n_b: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, n_sl) signal events at μ = 1 of the combined results' SRs and their flat predictions
        (one EM prediction per model and dataset)."""
        n_sl = sum(len(m.n) for m in self._sl_models)
        sl_signal, sl_choice = np.zeros((n_b, n_sl)), np.full((n_b, n_sl), -1)
        if n_sl:
            col = self._sl_column[preds.dataset]
            k = np.flatnonzero(col >= 0)
            lumi = self.compiled.arrays.result_lumi[self.compiled.arrays.dataset_result[preds.dataset[k]]]
            sl_signal[preds.model[k], col[k]] = preds.xsec_fb[k] * lumi
            sl_choice[preds.model[k], col[k]] = k
        return sl_signal, sl_choice

    # -- stage 3: the compiled graph -------------------------------------------------------------

    def graph_outputs(self, x: dict[str, Any]) -> dict[str, Any]:
        """The ``paper`` target's symbolic outputs from symbolic inputs `x` (:meth:`symbolic_inputs`).
        Exposed so that gradients can be taken of any output."""
        import pytensor
        import pytensor.tensor as pt

        from tdmcmc.models.likelihood import PYTENSOR as xp
        from tdmcmc.models.likelihood import profile_mu

        slots = self._slots_of(x)
        contributions = self._slot_contributions(x, slots)
        cliques = x["slot_members"], x["slot_valid"]
        r_max, mu_max = self._critic(x)
        top = pt.minimum(mu_max, MU_MAX_UNBOUNDED)
        combines = pt.any(x["slot_valid"] > 0.5, axis=(1, 2))         # else the paper's Z = None

        def nll(mu, first=False):   # −max_c ln R_c(μ), the state's cliques; 0 where nothing combines
            best = self.combiner.paper_clique_max(contributions(mu), *cliques, first=first)
            return pt.switch(combines[:, None], -best, 0.0)

        # max_μ max_c = max_c max_μ: one profile of the max over cliques (grid, then 6 vectorised
        # parabola/bisection steps around the best grid point) on stopped values (a plain max over
        # cliques); at μ̂ the first maximising clique's value, whose gradient is the best clique's
        # (envelope theorem).
        # Everything inside the profile depends on the function's inputs directly: a μ-independent
        # intermediate computed from a μ grid would be recomputed at every step. The profile's steps
        # are written out in the graph; the mode in force here is for the combined results' Newton
        # scan built inside `contributions` (the default Numba linker compiled a scan at the first
        # call, ~20 s, and ran it 3× slower).
        with pytensor.config.change_flags(mode=self.mode):
            mu_hat = profile_mu(nll, top, xp=xp, n_grid=self.n_grid)[0]
            at_mu_hat = contributions(mu_hat[:, None])
        nll_min = nll(mu_hat[:, None], first=True)[:, 0]
        z2 = pt.maximum(0.0, -2.0 * nll_min)          # Z² without a √ (its gradient at 0 is NaN)
        z = pt.sqrt(z2)
        k = z2 + 2.0 * x["log_prior"]
        return {"K": pt.switch(combines, k, np.nan), "Z": pt.switch(combines, z, np.nan), "mu_hat": mu_hat,
                "mu_max": mu_max, "r_max": r_max, "log_prior": x["log_prior"],
                "contributions": self._dense(x, slots, at_mu_hat[:, 0, :])}

    def bayes_outputs(self, x: dict[str, Any]) -> dict[str, Any]:
        """The ``bayes`` log-likelihood ratio at the given μ: `x` as :meth:`symbolic_inputs` plus
        ``mu`` (B,). Outputs ``log_ratio`` (B,), ``mu_max``, ``r_max``, ``contributions`` (B, n_results)."""
        import pytensor
        import pytensor.tensor as pt

        slots = self._slots_of(x)
        with pytensor.config.change_flags(mode=self.mode):     # the combined SL's Newton scan
            r = self._dense(x, slots, self._slot_contributions(x, slots)(x["mu"][:, None])[:, 0, :])
        # ln N_cliques for logsumexp (0 for max, fixed): ln R = 0 without any prediction
        offset = self.combiner.combine(np.zeros(self.n_results), self.combination, self.fixed_analyses)
        log_ratio = self.combiner.combine(r, self.combination, self.fixed_analyses) - float(offset)
        r_max, mu_max = self._critic(x)
        return {"log_ratio": pt.as_tensor_variable(log_ratio), "mu_max": mu_max, "r_max": r_max,
                "contributions": r}

    def _slots_of(self, x: dict[str, Any]):
        """The states' slots (B, S): the result columns ``em_slots``, ``ul_slots``, then the
        combined results (:class:`ResultInputs`)."""
        import pytensor.tensor as pt

        fixed = pt.zeros((x["em_slots"].shape[0], len(self.sl_results)), dtype="int64") + np.asarray(self.sl_results, dtype=np.int64)
        return pt.concatenate([x["em_slots"], x["ul_slots"], fixed], axis=1)

    @staticmethod
    def _dense(x: dict[str, Any], slots, values):
        """(B, n_results) with the slots' `values` (B, S) in their columns, 0 elsewhere (padding slots
        hold 0 and sit in columns the state does not select)."""
        from tdmcmc.models.protomodel.slot_indexing import scatter

        return scatter(slots, values, x["signal"].shape[1])

    def _slot_contributions(self, x: dict[str, Any], slots):
        """The function μ (B, k) -> (B, k, S) of r_i(μ) on the states' slots `slots` (B, S): the
        columns ``em_slots``, ``ul_slots`` then the combined results (0 where not selected)."""
        import pytensor.tensor as pt

        from tdmcmc.models.protomodel.slot_indexing import gather

        terms = self._terms(*([v[:, None, :] for v in gather(x[kind], *(x[k] for k in fields))]
                              for kind, fields in (("em_slots", ("signal", "n", "b", "db")),
                                                   ("ul_slots", ("signal", "ul_obs", "ul_exp", "lumi")))))
        combined = self._combined_terms(x)
        selected = gather(slots, x["selected"])[0][:, None, :] > 0

        def contributions(mu):
            values = [*terms(mu)] + ([pt.stack([v for _, v in combined(mu)], axis=-1)] if self.sl_results else [])
            return pt.switch(selected, pt.concatenate(values, axis=-1), 0.0)

        return contributions

    def _terms(self, em_data: list, ul_data: list):
        """The function μ (B, k) -> (EM (B, k, n_em), UL (B, k, n_ul)) of ln L(μ s) − ln L(0) from the
        EM data (signal, n, b, db) and UL data (signal, UL_obs, UL_exp, lumi), (B, 1, n) each."""
        from tdmcmc.models.likelihood import PYTENSOR as xp
        from tdmcmc.models.likelihood import em_nll, ul_nll

        em0 = em_nll(0.0, *em_data, variant=self.likelihood.em, xp=xp)
        ul0, ul1, ul2 = (ul_nll(mu, *ul_data, variant=self.likelihood.ul, xp=xp) for mu in (0.0, 1.0, 2.0))
        # The truncated Gaussian's −ln L is exactly quadratic in μ (its mode does not depend on μ):
        # its coefficients from μ = 0, 1, 2 keep the mode's Newton solve (one Op call) out of the
        # μ grid and the profile's refinement steps.
        quad = 0.5 * (ul2 - 2.0 * ul1 + ul0)
        lin = ul1 - ul0 - quad

        def terms(mu):
            mu = mu[:, :, None]
            return em0 - em_nll(mu, *em_data, variant=self.likelihood.em, xp=xp), -(quad * mu + lin) * mu

        return terms

    def _combined_terms(self, x: dict[str, Any]):
        """The function μ (B, k) -> [(result, (B, k) ln L(μ s) − ln L(0))] of the combined results:
        the simplified likelihood over all their SRs (θ profiled, SModelS 3.2.1 semantics)."""
        from tdmcmc.models.likelihood import PYTENSOR as xp
        from tdmcmc.models.likelihood.simplified import sl_nll

        blocks, start = [], 0
        for r, model, nll0 in zip(self.sl_results, self._sl_models, self._sl_nll0):
            blocks.append((r, model, nll0, x["sl_signal"][:, None, start:start + len(model.n)]))
            start += len(model.n)

        def terms(mu):
            return [(r, nll0 - sl_nll(mu, signal, model, xp=xp, unrolled=SL_NEWTON_STEPS))
                    for r, model, nll0, signal in blocks]

        return terms

    def _critic(self, x: dict[str, Any]):
        """(r_max, μ_max) of the batch: μ_max = 0.999 r_thr / r_max, +inf when r_max = 0."""
        import pytensor.tensor as pt

        r_max = pt.max(x["critic_r"], axis=-1)
        mu_max = pt.switch(r_max > 0, MU_MAX_SAFETY * self.r_threshold / pt.maximum(r_max, 1e-300), np.inf)
        return r_max, mu_max

    def _nll(self, mu, signal, n, b, db, obs, exp, lumi, em_mask):
        """−ln L of EM SRs (where `em_mask`) or UL results (elsewhere), the chosen variants."""
        import pytensor.tensor as pt

        from tdmcmc.models.likelihood import PYTENSOR, em_nll, ul_nll

        e = em_nll(mu, signal, n, b, db, variant=self.likelihood.em, xp=PYTENSOR)
        u = ul_nll(mu, signal, obs, exp, lumi, variant=self.likelihood.ul, xp=PYTENSOR)
        return pt.switch(em_mask, e, u)

    def symbolic_inputs(self) -> dict[str, Any]:
        """The inputs of :meth:`graph_outputs`, named as the fields of :class:`ResultInputs`:
        (B, n_results) matrices, ``sl_signal`` (B, n_sl), ``log_prior`` (B,), ``em_slots``,
        ``ul_slots`` (B, S_em), (B, S_ul), ``slot_members`` (B, S, n_groups, C) and ``slot_valid``
        (B, n_groups, C)."""
        import pytensor.tensor as pt

        names = ("selected", "signal", "n", "b", "db", "ul_obs", "ul_exp", "lumi", "critic_r", "sl_signal")
        x = {k: pt.matrix(k, dtype="float64") for k in names}
        x["log_prior"] = pt.vector("log_prior", dtype="float64")
        x["em_slots"] = pt.matrix("em_slots", dtype="int64")
        x["ul_slots"] = pt.matrix("ul_slots", dtype="int64")
        x["slot_members"] = pt.tensor4("slot_members", dtype="float64")
        x["slot_valid"] = pt.tensor3("slot_valid", dtype="float64")
        return x

    def function(self):
        """The compiled target (built on first use): inputs of :meth:`symbolic_inputs` in order ->
        outputs in :class:`TargetValues` order (without the per-prediction fields)."""
        if self._function is None:
            import pytensor

            x = self.symbolic_inputs()
            out = self.graph_outputs(x)
            # ∂K/∂(inputs): the envelope theorem at μ̂ plus μ_max's when μ̂ = μ_max
            k = pytensor.tensor.switch(pytensor.tensor.isnan(out["K"]), 0.0, out["K"])
            self._inputs, self._function = self._compile(x, out, k, ("signal", "critic_r", "ul_obs", "ul_exp",
                                                                     "sl_signal"), _GRAPH_OUTPUTS)
        return self._function

    def bayes_function(self):
        """The compiled ``bayes`` function (built on first use): inputs of :meth:`symbolic_inputs`
        then ``mu`` -> outputs in :class:`BayesValues` order."""
        if self._bayes_function is None:
            import pytensor.tensor as pt

            x = self.symbolic_inputs()
            x["mu"] = pt.vector("mu", dtype="float64")
            out = self.bayes_outputs(x)
            self._bayes_inputs, self._bayes_function = self._compile(
                x, out, out["log_ratio"], ("mu", "signal", "ul_obs", "ul_exp", "sl_signal"), _BAYES_OUTPUTS)
        return self._bayes_function

    def _compile(self, x: dict[str, Any], out: dict[str, Any], objective, wrt: tuple[str, ...],
                 names: tuple[str, ...]):
        """(input names, compiled function) from the inputs `x` the outputs `names` of `out` depend on
        to those outputs, where ``grad_<w>`` is ∂(Σ_batch objective)/∂x[w] (each batch element's
        own gradient). The function trusts its inputs (no type checks: ~3 µs each per call); its
        callers pass the float64/int64 arrays of :class:`ResultInputs`."""
        import pytensor
        from pytensor.graph.traversal import graph_inputs

        grads = pytensor.grad(objective.sum(), [x[w] for w in wrt], disconnected_inputs="ignore")
        out = out | {f"grad_{w}": g for w, g in zip(wrt, grads)}
        outputs = [out[k] for k in names]
        used = set(graph_inputs(outputs))
        x = {k: v for k, v in x.items() if v in used}
        function = pytensor.function(list(x.values()), outputs, mode=self.mode)
        function.trust_input = True
        return list(x), function

    def nll_function(self):
        """Compiled −ln L at μ = 0 and 1 of flat predictions (inputs ``p_*`` of
        :meth:`prediction_inputs`); a separate small graph so that it compiles in seconds."""
        if self._nll_function is None:
            import pytensor
            import pytensor.tensor as pt

            x = {f"p_{k}": pt.vector(f"p_{k}", dtype="float64")
                 for k in ("em", "signal", "n", "b", "db", "ul_obs", "ul_exp", "lumi")}
            data = [x[f"p_{k}"] for k in ("signal", "n", "b", "db", "ul_obs", "ul_exp", "lumi")]
            self._nll_inputs = list(x)
            self._nll_function = pytensor.function(
                list(x.values()), [self._nll(0.0, *data, x["p_em"] > 0), self._nll(1.0, *data, x["p_em"] > 0)],
                mode=self.mode, on_unused_input="ignore")     # lumi: 2020 UL variant only
        return self._nll_function

    # -- evaluation --------------------------------------------------------------------------------

    def evaluate(self, models: Sequence[Protomodel], per_prediction: bool = True
                 ) -> tuple[TargetValues, PredictionArrays, ResultInputs]:
        """``paper`` target values of a batch, with the flat predictions and the per-result inputs
        (`per_prediction` False: ``nll_mu0``/``nll_mu1`` are left NaN, e.g. for the sampler)."""
        return self._evaluate(models, per_prediction)[:3]

    def _evaluate(self, models: Sequence[Protomodel], per_prediction: bool = True):
        preds, inputs, arrays = self._prepared(models)
        out = self.function()(*[getattr(inputs, k) for k in self._inputs])
        nll = self.prediction_nll(preds) if per_prediction else (np.full(len(preds.xsec_fb), np.nan),) * 2
        return TargetValues(*out, *nll), preds, inputs, arrays

    def evaluate_bayes(self, models: Sequence[Protomodel], mu: np.ndarray
                       ) -> tuple[BayesValues, PredictionArrays, ResultInputs]:
        """``bayes`` values of a batch at signal strengths `mu` (B,), with the flat predictions and the
        per-result inputs (without the ``paper`` function's: :meth:`result_inputs`)."""
        preds, inputs = self.prepare(models, paper=False)
        return self.bayes_values(inputs, mu), preds, inputs

    def bayes_values(self, inputs: ResultInputs, mu: np.ndarray) -> BayesValues:
        """``bayes`` values at signal strengths `mu` (B,) from per-result inputs (:meth:`prepare`),
        e.g. when μ is set from the critic's μ_max of the same inputs."""
        f = self.bayes_function()
        mu = np.ascontiguousarray(np.broadcast_to(np.asarray(mu, dtype=float), (len(inputs.signal),)))
        return BayesValues(*f(*[mu if k == "mu" else getattr(inputs, k) for k in self._bayes_inputs]))

    def prepare(self, models: Sequence[Protomodel], *, paper: bool = True) -> tuple[PredictionArrays, ResultInputs]:
        """Flat predictions and per-result inputs of a batch (stages 1 and 2); `paper` False: without
        the inputs only the ``paper`` function reads (:meth:`result_inputs`), for the ``bayes`` one."""
        return self._prepared(models, paper)[:2]

    def _prepared(self, models: Sequence[Protomodel], paper: bool = True
                  ) -> tuple[PredictionArrays, ResultInputs, list[ModelArrays]]:
        """Flat predictions, per-result inputs (`paper`: :meth:`result_inputs`) and the models'
        table arrays of a batch."""
        arrays = self.predictor.model_arrays_batch(models)
        preds = self.predictor.evaluate_batch(arrays, jacobian=True)     # the gradients reuse its trace
        return preds, self.result_inputs(preds, models, arrays, paper=paper), arrays

    def prediction_nll(self, preds: PredictionArrays) -> tuple[np.ndarray, np.ndarray]:
        """−ln L at μ = 0 and μ = 1 of every flat prediction (NaN without a likelihood)."""
        g = self.nll_function()
        flat = self.prediction_inputs(preds)
        nll0, nll1 = g(*[flat[k] for k in self._nll_inputs])
        has = self.has_likelihood(preds)
        return np.where(has, nll0, np.nan), np.where(has, nll1, np.nan)

    def prediction_inputs(self, preds: PredictionArrays) -> dict[str, np.ndarray]:
        """Flat per-prediction likelihood inputs (``p_*``)."""
        a = self.compiled.arrays
        ds = preds.dataset
        em = self._dataset_em[ds]
        lumi = a.result_lumi[a.dataset_result[ds]]

        def safe(v, low=0.0):       # stand-ins for absent values (those rows are masked out)
            v = np.asarray(v, float)
            return np.where(np.isfinite(v) & (v > low), v, 1.0)

        return {"p_em": em * 1.0, "p_signal": np.where(em, preds.xsec_fb * lumi, preds.xsec_fb),
                "p_n": safe(a.observed_n[ds], -1.0), "p_b": safe(a.expected_bg[ds], -1.0),
                "p_db": safe(a.bg_error[ds]), "p_ul_obs": safe(preds.ul_obs_fb), "p_ul_exp": safe(preds.ul_exp_fb),
                "p_lumi": lumi.astype(float)}

    def has_likelihood(self, preds: PredictionArrays) -> np.ndarray:
        """Per flat prediction: whether it has a likelihood (EM with counts, UL with expected UL)."""
        ds = preds.dataset
        em = self._dataset_em[ds]
        return np.where(em, self._em_ok[ds], np.isfinite(preds.ul_exp_fb) & (np.nan_to_num(preds.ul_exp_fb) > 0))

    def best_combination(self, values: TargetValues, inputs: ResultInputs, b: int) -> tuple[int, ...]:
        """Flat prediction indices of model `b`'s best combination at μ̂ (the first maximising clique
        per group among the state's cliques, as in the graph)."""
        if not np.isfinite(values.Z[b]):
            return ()
        selected = inputs.selected[b] > 0
        nodes = np.nan_to_num(self.combiner.node_values(values.contributions[b], "max", mask=selected),
                              neginf=0.0)
        scores = np.where(inputs.clique_valid[b] > 0, inputs.clique_members[b] @ nodes, -np.inf)
        best = np.argmax(scores, axis=-1)
        chosen = inputs.clique_members[b][np.arange(len(best)), best].sum(axis=0) > 0
        results = np.flatnonzero(selected & self._in_graph & chosen[np.maximum(self.graph.result_node, 0)])
        return tuple(int(inputs.choice[b, j]) for j in results)

    def __call__(self, models: Sequence[Protomodel]) -> list[PaperScore]:
        """The :class:`~tdmcmc.models.greedy.objective.PaperObjective` protocol."""
        values, preds, inputs, arrays = self._evaluate(models)
        flat = self.predictor.to_predictions(preds, len(models))
        order_parts = np.argsort(preds.part_prediction, kind="stable")
        starts = np.searchsorted(preds.part_prediction[order_parts], np.arange(len(preds.xsec_fb) + 1))
        best = [self.best_combination(values, inputs, b) for b in range(len(models))]
        wanted = [[np.concatenate([preds.part_txname[order_parts[starts[i]:starts[i + 1]]] for i in members]
                                  + [np.zeros(0, np.int64)])] for members in best]
        rows = self._contributing_rows(arrays, wanted)
        order = [np.flatnonzero(preds.model == b)[np.lexsort((preds.txname[preds.model == b],
                                                               preds.dataset[preds.model == b]))]
                 for b in range(len(models))]
        out = []
        for b, model in enumerate(models):
            position = {int(i): k for k, i in enumerate(order[b])}
            members = [flat[b][position[i]] for i in best[b]]
            counts = paper_prior(self.space, model, self.kappa_clustering)[1]
            finite = bool(np.isfinite(values.Z[b]))
            out.append(PaperScore(
                K=float(values.K[b]) if finite else None, Z=float(values.Z[b]) if finite else None,
                mu_hat=float(values.mu_hat[b]) if finite else 0.0, mu_max=float(values.mu_max[b]),
                r_max=float(values.r_max[b]), log_prior=float(values.log_prior[b]), prior_counts=counts,
                best_combination=tuple(f"{p.analysis}:{p.dataset or 'UL'}" for p in members),
                contributing=self._contributing_rows.particles(rows[b][0]), n_predictions=len(flat[b])))
        return out


def _default_mode():
    """PyTensor's C virtual machine. The default (Numba) linker takes minutes to compile these graphs
    on a cold cache (5 min for the bayes graph on this 2-core machine under load, ~10 s warm) and
    runs them in object mode wherever an Op has no Numba implementation (our slot gathers and the
    μ profile's bracket Op have C code only); the C linker compiles in seconds."""
    from pytensor.compile.mode import Mode

    return Mode(linker="cvm", optimizer="fast_run")

