"""The sampler's direct path from slot parameters to the predictor's table arrays
(models/protomodel/parameters.py: ``SlotParameters.physical``, ``SlotTableMap``) and back
(``SlotTableMap.unconstrained_gradient``), on the real 1.2.4 database over the oracle models'
particles. The compiled kernels must give, to the bit, what the readable numpy formulations below
give (those the kernels replaced), and the table arrays must be exactly those of the
:class:`Protomodel` objects of the same states."""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.models.protomodel.parameters import sigmoid
from tdmcmc.models.protomodel.predictions import ModelArraysBatch
from tdmcmc.models.protomodel.sampling import ProtomodelTarget

N_STATES = 300


@pytest.fixture(scope="module")
def target(oracle_space_target):
    return ProtomodelTarget(oracle_space_target, "bayes")


@pytest.fixture(scope="module")
def states(target, oracle_models):
    """The oracle models' states, perturbed, and random states: random particle sets (LSP active
    but in a few), entries N(0, 2²) (masses over most of their range, BRs from one-hot to even, many
    units closed), μ fraction N(0, 1)."""
    from tdmcmc.models.protomodel.model import protomodel_from_dict

    p = target.params
    rng = np.random.default_rng(11)
    pairs = []
    for data, _ in oracle_models.values():
        data = {k: v for k, v in data.items() if k != "xsecs"}
        pairs.append(p.from_protomodel(protomodel_from_dict(data, target.likelihood.space), rng))
    n_oracle = len(pairs)
    active = np.zeros((N_STATES, len(p.pdgs)), bool)
    params = 2.0 * rng.normal(size=(N_STATES,) + target.layout.param_mask.shape)
    for b in range(N_STATES):
        a, x = pairs[b % n_oracle]
        if b < 4 * n_oracle:
            active[b], params[b] = a, x + (0.1 * b // n_oracle) * rng.normal(size=x.shape)
        else:
            active[b] = rng.random(len(p.pdgs)) < rng.uniform(0.2, 0.9)
            active[b, p.lsp_slot] = rng.random() < 0.97
    return active, params, rng.normal(size=(N_STATES, 1))


def _physical_numpy(p, active, params):
    """(masses NaN where inactive, unit BRs, κ): the numpy formulation of ``SlotParameters.physical``."""
    masses = p.masses(params)
    d = p.unit_daughter
    open_ = (p.unit_valid[None] & active[:, d] & (masses[:, :, None] > masses[:, d] + p.unit_threshold[None])
             & active[:, :, None])
    two_body_open = (open_ & ~p.unit_three_body[None]).any(axis=2, keepdims=True)
    open_ &= ~(p.offshell_rule[None, :, None] & p.unit_three_body[None] & two_body_open)
    logits = np.zeros(open_.shape)
    for j in range(len(p.pdgs)):
        logits[:, j, :p.n_units[j]] = params[:, j, p.logit_start[j]:p.logit_start[j] + p.n_units[j]]
    logits = np.where(open_, logits, -np.inf)
    top = np.max(logits, axis=2, keepdims=True)
    weights = np.where(open_, np.exp(logits - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = weights.sum(axis=2, keepdims=True)
    unit_br = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    both = active[:, p.kappa_members].all(axis=2)
    kappa = np.where(both, np.exp(params[:, p.kappa_slot, p.kappa_entry]), np.nan)
    return np.where(active, masses, np.nan), unit_br, kappa


def _unconstrained_numpy(p, tm, batch, params, g_masses, g_brs, g_kappas):
    """The numpy formulation of ``SlotTableMap.unconstrained_gradient``."""
    out = np.zeros_like(params)
    active, lsp = batch.active, p.lsp_slot
    f = sigmoid(params[:, :, 0])
    m_lsp = batch.masses[:, lsp]
    g_m = g_masses[:, tm.slot_particle]
    dm_dz = (p.mass_hi - p.lower_bounds(m_lsp)) * f * (1.0 - f)
    follows = active & (m_lsp[:, None] > p.mass_lo) & (np.arange(len(p.pdgs)) != lsp)
    out[:, :, 0] = np.where(active, g_m * dm_dz, 0.0)
    out[:, lsp, 0] = (g_m[:, lsp] + np.sum(np.where(follows, g_m * (1.0 - f), 0.0), axis=1)) * dm_dz[:, lsp]
    brs = np.concatenate([g_brs, np.zeros((len(params), 1))], axis=1)
    g_unit = (np.sum(np.where(tm.unit_mask, brs[:, tm.unit_columns], 0.0), axis=3)
              / np.maximum(tm.unit_mask.sum(axis=2), 1))
    br = batch.unit_br
    g_logit = br * (g_unit - np.sum(br * g_unit, axis=2, keepdims=True))
    b, j, k = np.nonzero(active[:, :, None] & (tm.logit_entry >= 0))
    out[b, j, tm.logit_entry[j, k]] = g_logit[b, j, k]
    kappas = np.concatenate([g_kappas, np.zeros((len(params), 1))], axis=1)
    g_kappa = np.where(np.isfinite(batch.kappa), np.nan_to_num(batch.kappa) * kappas[:, tm.kappa_column], 0.0)
    out[np.arange(len(params))[:, None], p.kappa_slot, p.kappa_entry] = g_kappa
    return out


def _assert_same(batch, masses, unit_br, kappa):
    """Masses to the bit; BRs and κ to the bit unless numpy's float64 exp is its AVX-512 loop (numba
    calls the C library's; without AVX-512 both agreed on all of 2·10⁶ random values when written),
    else within 1e-15 relative."""
    assert np.array_equal(batch.masses, masses, equal_nan=True)
    assert np.array_equal(np.isnan(batch.kappa), np.isnan(kappa))
    np.testing.assert_allclose(batch.unit_br, unit_br, rtol=1e-15, atol=0.0)
    np.testing.assert_allclose(batch.kappa, kappa, rtol=1e-15, atol=0.0)
    if not _numpy_simd_exp():
        assert np.array_equal(batch.unit_br, unit_br)
        assert np.array_equal(batch.kappa, kappa, equal_nan=True)


def _numpy_simd_exp() -> bool:
    """Whether numpy's float64 exp runs its AVX-512 loop here (numpy ≥ 2.3 tells which it uses)."""
    info = getattr(np.lib, "introspect", None)
    if info is None or not hasattr(info, "opt_func_info"):
        return True
    current = info.opt_func_info("exp").get("exp", {}).get("dd", {}).get("current", "")
    return "V4" in current or "AVX512" in current


def test_physical_values_equal_the_numpy_formulation(target, states):
    active, params, globals_ = states
    batch = target.params.physical(active, params, globals_)
    masses, unit_br, kappa = _physical_numpy(target.params, active, params)
    _assert_same(batch, masses, unit_br, kappa)
    assert np.array_equal(batch.mass_fraction, sigmoid(params[:, :, 0]))
    # the states cover closed and open units, and κ of absent pairs
    assert 0 < np.count_nonzero(unit_br) < unit_br[active].size
    assert np.isnan(kappa).any() and np.isfinite(kappa).any()


def test_table_arrays_equal_those_of_the_protomodels(target, states):
    """``SlotTableMap.arrays`` == ``model_arrays_batch(protomodels(batch))``, exactly."""
    p, predictor = target.params, target.likelihood.predictor
    active, params, globals_ = states
    batch = p.physical(active, params, globals_)
    direct = p.table_map(predictor).arrays(batch)
    ref = predictor.model_arrays_batch(p.protomodels(batch))
    for field in ("masses", "br", "xsec", "present", "dlog_xsec", "kappa", "fitted"):
        assert np.array_equal(getattr(direct, field), getattr(ref, field), equal_nan=True), field
    assert direct.present.dtype == ref.present.dtype == np.uint64
    assert np.count_nonzero(direct.xsec) > 1000


def test_unconstrained_gradient_equals_the_numpy_formulation(target, states):
    p = target.params
    tm = p.table_map(target.likelihood.predictor)
    active, params, globals_ = states
    batch = p.physical(active, params, globals_)
    rng = np.random.default_rng(5)
    g = [rng.normal(size=(len(params), n)) for n in (tm.n_particles, tm.n_br, len(tm.predictor.xsecs.kappa_keys))]
    got = tm.unconstrained_gradient(batch, *g, params.shape)
    assert np.array_equal(got, _unconstrained_numpy(p, tm, batch, params, *g), equal_nan=True)   # NaN: LSP off
    assert np.count_nonzero(got[:, :, 0]) > 0.5 * active.sum()


def test_model_arrays_pass_through_the_predictor(target, states):
    """ModelArrays (stacked or one by one) go through ``model_arrays_batch`` and ``evaluate_batch``
    unchanged; neither target builds Protomodel objects (ln π_paper comes from the arrays)."""
    p, predictor = target.params, target.likelihood.predictor
    active, params, globals_ = states
    batch = p.physical(active[:8], params[:8], globals_[:8])
    arrays = p.table_map(predictor).arrays(batch)
    assert predictor.model_arrays_batch(arrays) is arrays
    items = list(arrays)
    assert predictor.model_arrays_batch(items)[3] is items[3]
    assert ModelArraysBatch.of(items).xsec.tobytes() == arrays.xsec.tobytes()
    a = predictor.evaluate_batch(arrays)
    b = predictor.evaluate_batch(p.protomodels(batch))
    assert np.array_equal(a.xsec_fb, b.xsec_fb) and np.array_equal(a.ul_obs_fb, b.ul_obs_fb, equal_nan=True)
    assert target._forward(active[:8], params[:8], globals_[:8]).models.built is False
    paper = ProtomodelTarget(target.likelihood, "paper")
    assert paper._forward(active[:8], params[:8], globals_[:8]).models.built is False


def test_physical_values_on_the_full_space():
    """The whole paper space (20 slots, up to 29 decay units: the softmax normaliser is then a
    pairwise sum, which the kernel must reproduce), random states."""
    from tdmcmc.models.protomodel import default_space
    from tdmcmc.models.protomodel.parameters import SlotParameters

    p = SlotParameters(default_space())
    rng = np.random.default_rng(4)
    active = rng.random((400, len(p.pdgs))) < 0.6
    active[:, p.lsp_slot] = True
    params = 3.0 * rng.normal(size=(400,) + p.layout.param_mask.shape)
    batch = p.physical(active, params, np.zeros((400, 1)))
    masses, unit_br, kappa = _physical_numpy(p, active, params)
    _assert_same(batch, masses, unit_br, kappa)
    assert ((unit_br > 0).sum(axis=2) >= 8).any()
