"""The proposal moves of the greedy walker: firing probabilities (method reference §2.3), the space
is never left, and the deterministic prune / merge / renormalisation steps (§2.4, §1.5)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from tdmcmc.models.protomodel.model import protomodel_from_dict
from tdmcmc.models.protomodel.xsec import cross_sections

from .conftest import LSP, XC, XD, XG, XS, XT, XT2, XU, make_state, manipulator

N_DRAWS = 20000
# binomial sd at N_DRAWS is at most 0.0035; 4.5 sd
TOL = 0.016


def _frequency(fire, n_draws=N_DRAWS) -> float:
    return sum(fire() for _ in range(n_draws)) / n_draws


# §2.3's tabulated numbers (2 digits) and the exact formulas behind them
BIRTH = [(0.0, 2, 0.66), (0.0, 3, 0.62), (0.0, 4, 0.58), (3.0, 3, 0.91), (3.0, 5, 0.87)]
DEATH = [(0.0, 3, 0.31), (0.0, 4, 0.34), (3.0, 3, 0.54), (3.0, 5, 0.62)]
PARTNERS = [XT, XD, XG, 1000011]        # non-LSP particles added in this order


def _state_with(space, man, n):
    masses = {LSP: 100.0} | {p: m for p, m in zip(PARTNERS[: n - 1], (1150.0, 750.0, 1500.0, 400.0))}
    return make_state(man, masses)


@pytest.mark.parametrize("z, n, table", BIRTH)
def test_birth_probability(space, z, n, table):
    exact = 1.0 - norm.cdf((n / 20 - (1.0 - 0.7 / max(1.0, z + 1.0))) / 0.5)
    assert exact == pytest.approx(table, abs=0.006)
    man = manipulator(space, seed=n)
    base = _state_with(space, man, n)
    freq = _frequency(lambda: man.randomly_unfreeze(base.copy(), z))
    assert freq == pytest.approx(exact, abs=TOL)


@pytest.mark.parametrize("z, n, table", DEATH)
def test_death_probability(space, z, n, table):
    exact = norm.cdf((n / 20 - 0.4 / max(1.0, z + 1.0)) / 0.5)
    assert exact == pytest.approx(table, abs=0.006)
    man = manipulator(space, seed=10 + n)
    base = _state_with(space, man, n)
    assert man.randomly_freeze(make_state(man, {LSP: 100.0, XT: 900.0}), z) == 0   # n = 2: never
    freq = _frequency(lambda: man.randomly_freeze(base.copy(), z))
    assert freq == pytest.approx(exact, abs=TOL)


def test_birth_always_with_lsp_only(space):
    man = manipulator(space, seed=3)
    assert all(man.randomly_unfreeze(make_state(man, {LSP: 300.0}), 5.0) == 1 for _ in range(200))


def test_branching_kappa_mass_move_rates(space):
    man = manipulator(space, seed=4)
    base = make_state(man, {LSP: 100.0, 1000023: 600.0, XG: 1500.0})   # both with >= 2 open channels
    assert _frequency(lambda: man.randomly_change_branchings(base.copy())) == pytest.approx(0.2, abs=TOL)
    assert _frequency(lambda: man.randomly_change_kappas(base.copy())) == pytest.approx(0.25, abs=TOL)
    assert _frequency(lambda: man.randomly_change_masses(base.copy(), 0.05)) == pytest.approx(0.05, abs=TOL)
    assert _frequency(lambda: man.randomly_change_masses(base.copy(), 1.0), 500) == 1.0
    # a single non-LSP particle: κ and BRs are never changed by moves (weak point §12.11)
    single = make_state(man, {LSP: 100.0, XG: 1500.0})
    assert _frequency(lambda: man.randomly_change_branchings(single.copy()), 2000) == 0.0
    assert _frequency(lambda: man.randomly_change_kappas(single.copy()), 2000) == 0.0


def _check_in_space(space, man, s):
    """Every invariant a state must keep."""
    m_lsp = s.masses[LSP]
    for p, m in s.masses.items():
        part = space.particles[p]
        assert part.mass_min <= m <= part.mass_max, (p, m)
        if p != LSP:
            assert m > m_lsp
            assert s.decays[p] and abs(sum(s.decays[p].values()) - 1.0) < 1e-9, (p, s.decays[p])
            opened = {ch for u in man.open_units(s, p) for ch in u}
            assert set(s.decays[p]) <= opened, (p, s.decays[p], opened)
    for light, heavy in space.ordering:
        if heavy in s.masses:
            assert light in s.masses and s.masses[light] <= s.masses[heavy]
    for veto in space.vetoes:
        for p in veto.particles:
            if p in s.masses:
                assert not (s.masses[p] < veto.max_mass and veto.min_gap < s.masses[p] - m_lsp < veto.max_gap)
    classes = space.kappa_classes()
    for key, value in s.kappas.items():
        assert key in classes and value >= 0.0
        assert {abs(key[0]), abs(key[1])} <= s.masses.keys()
    # and the record validates against the space
    protomodel_from_dict(s.to_protomodel().to_dict(), space)


@pytest.mark.parametrize("seed", range(4))
def test_moves_never_leave_the_space(space, seed):
    man = manipulator(space, seed=seed)
    s = make_state(man, {LSP: 250.0})
    rng = np.random.default_rng(100 + seed)
    for _ in range(400):
        man.propose(s)
        if rng.random() < 0.3:
            merged = man.simplified(s)
            if merged is not None:
                _check_in_space(space, man, merged)
        _check_in_space(space, man, s)


def test_renormalisation_rescales_kappas(space):
    man = manipulator(space, seed=5)
    s = make_state(man, {LSP: 100.0, 1000023: 600.0, XG: 1500.0},
                   decays={XG: {(1000022, 21): 0.25, (1000023, 21): 0.75}, 1000023: {(1000022, 23): 1.0}})
    s.kappas[(1000021, 1000021)] = 2.0
    man.freeze(s, 1000023, force=True)
    assert s.decays[XG] == {(1000022, 21): 1.0}
    assert s.kappas[(1000021, 1000021)] == pytest.approx(2.0 * 0.25 ** 2)     # pair production: × BR_tot²


def test_prune(space):
    man = manipulator(space, seed=6)
    from tdmcmc.models.greedy.objective import PaperScore

    def score(contributing):
        return PaperScore(K=1.0, Z=1.0, mu_hat=1.0, mu_max=1.0, r_max=1.0, log_prior=0.0,
                          contributing=frozenset(contributing))

    s = make_state(man, {LSP: 100.0, XT: 1150.0, XD: 750.0, XG: 1800.0})
    s.score = score({LSP, XT})
    assert man.prune(s) == 2 and set(s.masses) == {LSP, XT}
    s = make_state(man, {LSP: 100.0, XG: 1800.0})          # never the last non-LSP particle
    s.score = score({LSP})
    assert man.prune(s) == 0 and XG in s.masses
    s = make_state(man, {LSP: 100.0, XT: 700.0, XT2: 900.0, XG: 1800.0})
    s.score = score({LSP, XT2, XG})                       # t1 may not go while t2 is there
    assert man.prune(s) == 0 and XT in s.masses
    s.score = None                                         # no best combination: nothing happens
    assert man.prune(s) == 0


def test_merge_light_squarks(space):
    man = manipulator(space, seed=7)
    s = make_state(man, {LSP: 100.0, XD: 700.0, XU: 800.0, XG: 1500.0},
                   decays={XD: {(1000022, 1): 1.0}, XU: {(1000022, 2): 1.0},
                           XG: {(1000002, 2): 0.5, (1000022, 21): 0.5}},
                   kappas={(-1000001, 1000001): 0.5, (-1000002, 1000002): 2.0})
    before = cross_sections(space, s.masses, s.kappas, 13)
    merged = man.simplified(s)
    assert merged is not None
    assert set(merged.masses) == {LSP, XD, XG} and merged.masses[XD] == pytest.approx(750.0)
    assert merged.decays[XD] == {(1000022, 1): 1.0}           # Xu -> N1 u added into Xd -> N1 d
    assert merged.decays[XG] == {(1000001, 1): 0.5, (1000022, 21): 0.5}   # g -> Xu u redirected
    after = cross_sections(space, merged.masses, merged.kappas, 13)
    key = (-1000001, 1000001)
    assert after[key] == pytest.approx(before[key] + before[(-1000002, 1000002)], rel=1e-9)
    assert s.masses[XU] == 800.0                              # the original is untouched


def test_merge_refusals(space):
    man = manipulator(space, seed=8)
    # against the PDG-id hierarchy (Xd heavier than Xc): refused, and merging stops
    s = make_state(man, {LSP: 100.0, XD: 900.0, XC: 850.0})
    assert man.simplified(s) is None
    # merges repeat while possible: Xs+Xc (90 GeV apart) first, then Xd+Xs
    merged = man.simplified(make_state(man, {LSP: 100.0, XD: 600.0, XS: 700.0, XC: 790.0}))
    assert set(merged.masses) == {LSP, XD} and merged.masses[XD] == pytest.approx(0.5 * (600.0 + 745.0))
    # stops whose mean lands in the corridor
    s = make_state(man, {LSP: 30.0, 1000024: 120.0, XT: 175.0, XT2: 245.0})   # mean 210: gap 180
    assert man.simplified(s) is None
    # too far apart
    assert man.simplified(make_state(man, {LSP: 100.0, XT: 700.0, XT2: 950.0})) is None
