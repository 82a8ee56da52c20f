"""The protomodel prior and slot parameters (models/protomodel/{parameters,prior,sampling}.py).

* the allowed particle sets and P(n), inclusion probabilities against a pure-Python enumeration;
* the structural normalisers: π(θ | γ) integrates to one (Monte Carlo over the prior's own
  coordinates, with the ordering constraint and the stop-corridor veto), gradient vs finite differences;
* parameters ↔ protomodel round trip (the paper's best model);
* prior-only sampling with the engine on the full 20-particle space: inclusion, P(n) and mass
  marginals (LSP uniform; gluino and a slepton from a scipy integral of the conditional uniform
  law) within 4 Monte-Carlo standard errors (arviz-stats mcse) + 0.005.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr
from scipy import integrate

from tdmcmc.models.protomodel.parameters import SlotParameters
from tdmcmc.models.protomodel.prior import PriorSettings, ProtomodelPrior
from tdmcmc.models.protomodel.space import default_space

from tests.mcse_checks import assert_within_mcse


@pytest.fixture(scope="module")
def slots():
    return SlotParameters(default_space())


@pytest.fixture(scope="module")
def prior(slots):
    return ProtomodelPrior(slots, PriorSettings(lam=1.0))


def test_allowed_sets_and_n_particles_against_enumeration(slots, prior):
    space = slots.space
    others = [p for p in space.particles if p != space.lsp]
    counts: dict[int, int] = {}
    inclusion = dict.fromkeys(space.particles, 0.0)
    total = 0.0
    for bits in itertools.product((False, True), repeat=len(others)):
        present = {p for p, b in zip(others, bits) if b} | {space.lsp}
        if any(heavy in present and light not in present for light, heavy in space.ordering):
            continue
        counts[len(present)] = counts.get(len(present), 0) + 1
        w = np.exp(-len(present))
        total += w
        for p in present:
            inclusion[p] += w
    assert len(prior.allowed_sets()) == sum(counts.values()) == 103680
    z = sum(c * np.exp(-n) for n, c in counts.items())
    for n, p in prior.exact_n_particles().items():
        assert p == pytest.approx(counts[n] * np.exp(-n) / z, rel=1e-12)
    np.testing.assert_allclose(prior.exact_inclusion(), [inclusion[p] / total for p in slots.pdgs], rtol=1e-10)


def _states(slots, present, n, rng):
    active = np.zeros((n, slots.layout.n_slots), bool)
    active[:, [slots.slot[p] for p in present]] = True
    params = rng.normal(size=(n, slots.layout.n_slots, slots.layout.max_dim))
    return active, params


@pytest.mark.parametrize("present", [(1000022, 1000006, 2000006), (1000022, 1000001, 1000002, 1000003, 1000021)])
def test_mass_density_integrates_to_one(slots, prior, present):
    """E_q[π(θ|γ)/q(θ)] = 1 with q the logistic law of every mass entry (the prior's coordinates
    without the structure): checks the veto and ordering normalisers (stops: veto + t1 < t2;
    squarks: d < u, d < s, 2 of 3! orders). 200,000 draws: standard error ≈ 0.005."""
    rng = np.random.default_rng(4)
    active, params = _states(slots, present, 200_000, rng)
    u = rng.uniform(size=params.shape[:2])
    params[:, :, 0] = np.log(u) - np.log1p(-u)
    structural, _ = prior.structural(active, params)
    log_gamma = -len(present) - prior.log_norm_gamma
    ratio = np.exp(np.where(np.isfinite(structural), structural - log_gamma, -np.inf))
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    assert (ratio == 0).mean() > 0.3          # the constraints do cut (ordering alone: ≥ 1/2)


def test_log_prior_gradient_against_finite_differences(slots, prior):
    rng = np.random.default_rng(5)
    active, params = _states(slots, (1000022, 1000006, 2000006, 1000021, 1000024), 3, rng)
    params[:, slots.lsp_slot, 0] = -3.0                       # m_LSP ≈ 120 GeV: the stop veto is live
    params[:, slots.slot[1000006], 0] = -1.0
    params[:, slots.slot[2000006], 0] = 2.0
    glob = rng.normal(size=(3, 1))
    value, grad, grad_g = prior.log_prior(active, params, glob)
    assert np.all(np.isfinite(value))
    mask = active[:, :, None] & slots.layout.param_mask[None]
    h = 1e-6
    for b, j, d in zip(*np.nonzero(mask)):
        up, down = params.copy(), params.copy()
        up[b, j, d] += h
        down[b, j, d] -= h
        fd = (prior.log_prior(active, up, glob)[0][b] - prior.log_prior(active, down, glob)[0][b]) / (2 * h)
        assert grad[b, j, d] == pytest.approx(fd, abs=1e-6), (slots.layout.slot_names[j], d)
    fd = (prior.log_prior(active, params, glob + h)[0] - prior.log_prior(active, params, glob - h)[0]) / (2 * h)
    np.testing.assert_allclose(grad_g[:, 0], fd, atol=1e-6)


def test_protomodel_round_trip(slots, shared):
    from tdmcmc.models.protomodel.model import read_protomodel

    model = read_protomodel(shared / "oracle-reference" / "models" / "best_paper.json", slots.space)
    active, params = slots.from_protomodel(model)
    back = slots.protomodels(slots.physical(active[None], params[None], np.zeros((1, 1))))[0]
    assert back.masses.keys() == model.masses.keys()
    for p, m in model.masses.items():
        assert back.masses[p] == pytest.approx(m, rel=1e-12)
    assert back.decays == {p: {ch: pytest.approx(br) for ch, br in d.items()} for p, d in model.decays.items()}
    for key, k in back.kappas.items():
        assert k == pytest.approx(model.kappas[key], rel=1e-12)


def test_closed_channels_and_offshell_rule(slots):
    """A light stop (m − m_LSP < m_t) has only t̃ → b C1 etc.; N2 decays three-body only when
    no two-body channel is open."""
    active, params = _states(slots, (1000022, 1000023, 1000006), 1, np.random.default_rng(6))
    params[0, slots.lsp_slot, 0] = -4.0             # ≈ 53 GeV
    batch = slots.physical(active, params, np.zeros((1, 1)))
    m = batch.masses[0]
    j_n2 = slots.slot[1000023]
    open_n2 = {slots.units[j_n2][k] for k in np.flatnonzero(batch.unit_br[0, j_n2] > 0)}
    two_body = any(m[j_n2] > m[slots.lsp_slot] + t for t in (92.0, 125.0))
    assert all((len(u[0]) == 2) == two_body for u in open_n2)
    j_t = slots.slot[1000006]
    if m[j_t] - m[slots.lsp_slot] < 173.0:
        assert batch.unit_br[0, j_t].sum() == 0.0
    else:
        assert batch.unit_br[0, j_t].sum() == pytest.approx(1.0)


def _conditional_uniform_cdf(x: float, lo: float, hi: float, lsp_lo: float = 10.0, lsp_hi: float = 2400.0) -> float:
    """P(m ≤ x) for m | m_LSP ~ U(max(lo, m_LSP), hi), m_LSP ~ U(lsp_lo, lsp_hi): scipy quad."""
    def cdf_given(ml):
        a = max(lo, ml)
        return min(max((x - a) / (hi - a), 0.0), 1.0)
    return integrate.quad(cdf_given, lsp_lo, lsp_hi, points=[lo, x], limit=200)[0] / (lsp_hi - lsp_lo)


def test_prior_only_sampling_matches_the_prior(tmp_path):
    """4 chains × 3,000 draws of the full space with the likelihood off. Power: the Monte-Carlo
    errors are 0.005–0.015, so a 0.06 error in any inclusion probability, P(n) or CDF value fails."""
    from tdmcmc.cli import main

    out = tmp_path / "prior.nc"
    assert main(["sample", "--model", "protomodel", "--prior-only", "--chains", "4", "--draws", "3000",
                 "--tune", "600", "--birth-death-per-sweep", "3", "--seed", "3", "--no-progress", "-o", str(out)]) == 0
    post = xr.open_datatree(out, engine="h5netcdf")["posterior"]
    slots = SlotParameters(default_space())
    prior = ProtomodelPrior(slots)
    active = post["active"].values
    for j, p in enumerate(prior.exact_inclusion()):
        assert_within_mcse(f"P({slots.layout.slot_names[j]})", active[..., j].astype(float), p)
    n = post["n_particles"].values
    for k, p in prior.exact_n_particles().items():
        if p > 0.01:
            assert_within_mcse(f"P(n={k})", (n == k).astype(float), p)
    mass = post["mass"]
    for name, lo in (("XZ1", None), ("Xg", 310.0), ("Xe", 10.0)):
        m = mass.sel(particle=name).values
        on = ~np.isnan(m)
        for x in (300.0, 800.0, 1500.0, 2100.0):
            truth = (x - 10.0) / 2390.0 if lo is None else _conditional_uniform_cdf(x, lo, 2400.0)
            # conditional on the particle being active: P(m ≤ x | on) estimated as a ratio of means
            series = np.where(on, m <= x, False).astype(float) - truth * on
            assert_within_mcse(f"P(m_{name} <= {x} | active) - truth", series, 0.0)
