"""Stage 2 of the likelihood target (LikelihoodTarget.result_inputs) on the real 1.2.4 database.

The hasOverlap veto's contributing rows (from the predictor's matches of the whole batch) against a
scan of every match of the topology table with the public per-model element weights (the vetoed
pairs against their intersections: tests/models/greedy/test_vetoed_pairs.py); the bayes path's inputs (``paper=False``)
against the full ones; ln π_paper read from the table arrays against the fitted cross sections.
Batch: the five oracle models (injected σ) and 16 random protomodels of their space (fitted σ).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ORACLE_MODELS
from tests.models.test_target import _random_models


@pytest.fixture(scope="module")
def batch(oracle_space_target, oracle_models):
    from tdmcmc.models.protomodel.model import protomodel_from_dict

    tgt = oracle_space_target
    models = [protomodel_from_dict(oracle_models[n][0], tgt.space) for n in ORACLE_MODELS]
    models += _random_models(tgt.space, 16, seed=7)
    arrays = [tgt.predictor.model_arrays(m) for m in models]
    return models, arrays, tgt.predictor.evaluate_batch(arrays)


def _scanned_matches(tgt, m, txnames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(txname, row) of the matches that count in model arrays `m`: every match of the table with
    one of `txnames`, the model's particles, a weight > 0 at the txname's √s
    (Predictor.element_weights) and ε > 0 or inside the UL grid."""
    from tdmcmc.models.protomodel.predictions import EFF_ZERO

    t, pr = tgt.table, tgt.predictor
    idx = np.flatnonzero(np.isin(t.m_txname, txnames))
    rows = np.searchsorted(t.match_start, idx, side="right") - 1
    inside = (t.el_particles[rows] & np.uint64(~m.present & 0xFFFFFFFFFFFFFFFF)) == 0
    idx, rows = idx[inside], rows[inside]
    kept, w = pr.element_weights(m, np.unique(rows))
    at = np.minimum(np.searchsorted(kept, rows), len(kept) - 1)
    tx = t.m_txname[idx]
    live = (kept[at] == rows) & (w[at, pr.tx_sqrts[tx]] > 0)
    idx, rows, tx = idx[live], rows[live], tx[live]
    coords = t.m_coords[idx]
    values = pr.interps.evaluate(pr.tx_map[tx], np.where(coords >= 0, m.masses[np.maximum(coords, 0)], 0.0))
    good = ~np.isnan(values) & (~pr.tx_is_em[tx] | (np.abs(np.nan_to_num(values)) >= EFF_ZERO))
    return tx[good], rows[good]


def _scanned_rows(tgt, m, txnames: np.ndarray) -> np.ndarray:
    tx, rows = _scanned_matches(tgt, m, txnames)
    return np.unique(rows[np.isin(tx, txnames)])


def _txnames(preds, i: int) -> np.ndarray:
    return preds.part_txname[preds.part_prediction == i]


def test_contributing_rows_against_table_scan(oracle_space_target, batch):
    """ContributingRows (the batch's matches, one interpolation per match) gives exactly the rows of
    the full-table scan, for every prediction of the 21 models."""
    tgt = oracle_space_target
    models, arrays, preds = batch
    wanted = [[_txnames(preds, i) for i in np.flatnonzero(preds.model == b)] for b in range(len(models))]
    got = tgt._contributing_rows(arrays, wanted)
    n_rows = 0
    for b in range(len(models)):
        tx, rows = _scanned_matches(tgt, arrays[b], np.concatenate(wanted[b] + [np.zeros(0, np.int64)]))
        for k, i in enumerate(np.flatnonzero(preds.model == b)):
            ref = np.unique(rows[np.isin(tx, wanted[b][k])])
            assert np.array_equal(got[b][k], ref), (b, int(i))
            n_rows += len(ref)
    assert n_rows > 1000


def test_bayes_inputs_skip_paper_parts(oracle_space_target, batch):
    """prepare(paper=False): the same dense inputs bit for bit, ln π_paper NaN, no valid clique;
    the next prepare computes the paper inputs again."""
    tgt = oracle_space_target
    models = batch[0]
    _, lean = tgt.prepare(models, paper=False)
    _, full = tgt.prepare(models)
    for name in ("selected", "signal", "n", "b", "db", "ul_obs", "ul_exp", "lumi", "critic_r", "choice",
                 "sl_signal", "sl_choice"):
        assert np.array_equal(getattr(lean, name), getattr(full, name)), name
    assert np.all(np.isnan(lean.log_prior)) and not lean.clique_valid.any()
    assert np.all(np.isfinite(full.log_prior)) and full.clique_valid.any()


def test_log_prior_from_table_arrays_equals_fits(oracle_space_target, batch):
    """ln π_paper of result_inputs (σ read from the models' table arrays, or from the fits for the
    oracle models' injected σ) equals paper_prior per model (σ from the fits), exactly."""
    from tdmcmc.models.greedy.objective import paper_prior

    tgt = oracle_space_target
    models, arrays, preds = batch
    inputs = tgt.result_inputs(preds, models, arrays)
    ref = [paper_prior(tgt.space, m, tgt.kappa_clustering)[0] for m in models]
    assert inputs.log_prior.tolist() == ref
    assert len(set(ref)) >= 3


def _variants(models, n: int, rng):
    """Fitted-σ variants of `models`: masses ×U(0.9, 1.1), Dirichlet BRs (every other model with
    two equal BRs per parent: one cluster), κ ×U(0.5, 2) (one κ below the counted 1e-4), and one
    particle frozen at 1e5 GeV in every third model."""
    from tdmcmc.models.protomodel.model import Protomodel

    out = []
    while len(out) < n:
        base = models[len(out) % len(models)]
        lsp = base.masses[1000022] * rng.uniform(0.9, 1.1)
        masses = {p: (lsp if p == 1000022 else max(m * rng.uniform(0.9, 1.1), lsp + 50.0)) for p, m in base.masses.items()}
        if len(out) % 3 == 0:
            masses[max(p for p in masses if p != 1000022)] = 1e5
        decays = {}
        for p, ch in base.decays.items():
            brs = rng.dirichlet(np.ones(len(ch)))
            if len(out) % 2 and len(ch) >= 2:
                brs[:2] = brs[:2].sum() / 2
            decays[p] = dict(zip(ch, brs))
        kappas = {k: v * rng.uniform(0.5, 2.0) for k, v in base.kappas.items()}
        if kappas and len(out) % 4 == 1:
            kappas[next(iter(kappas))] = 5e-5
        out.append(Protomodel(name=f"{base.name}-{len(out)}", masses=masses, decays=decays, kappas=kappas))
    return out


def test_table_arrays_in_place_of_protomodels(oracle_space_target, oracle_models):
    """With the models' table arrays in place of the Protomodels (fitted σ), result_inputs and
    evaluate give the same values bit for bit; ln π_paper and its counts from the arrays
    (PaperPrior.from_arrays) equal those of the Protomodels (PaperPrior.__call__), on 24 variants
    of the oracle models with random BRs, κ and frozen particles."""
    from tdmcmc.models.protomodel.model import protomodel_from_dict

    tgt = oracle_space_target
    bases = [protomodel_from_dict(oracle_models[n][0], tgt.space) for n in ORACLE_MODELS]
    models = _variants(bases, 24, np.random.default_rng(5))
    arrays = tgt.predictor.model_arrays_batch(models)
    assert np.all(arrays.fitted)
    channel = arrays.xsec[:, tgt._prior_columns[1], tgt._prior_columns[0]]
    prior = tgt._paper_prior
    want, got = prior(models, channel), prior.from_arrays(tgt.predictor, arrays, channel)
    assert want[0].tolist() == got[0].tolist()
    assert all(want[1][k].tolist() == got[1][k].tolist() for k in want[1])
    assert len(set(want[1]["n_br"].tolist())) >= 3 and len(set(want[1]["n_ssm"].tolist())) >= 3
    preds = tgt.predictor.evaluate_batch(arrays, jacobian=True)
    ref, mine = tgt.result_inputs(preds, models, arrays), tgt.result_inputs(preds, list(arrays), arrays)
    for name in ref.__dataclass_fields__:
        assert np.array_equal(getattr(ref, name), getattr(mine, name), equal_nan=True), name
    values = [tgt.evaluate(m, per_prediction=False)[0] for m in (models[:6], list(arrays)[:6])]
    for name in ("K", "Z", "mu_hat", "log_prior", "grad_signal"):
        assert np.array_equal(getattr(values[0], name), getattr(values[1], name), equal_nan=True), name
