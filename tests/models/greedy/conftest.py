"""A cheap objective with the PaperObjective protocol, and helpers to build walker states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tdmcmc.models.greedy.objective import PaperScore
from tdmcmc.models.greedy.walker import Manipulator, WalkerSettings, WalkerState
from tdmcmc.models.protomodel.space import default_space

LSP, XD, XU, XS, XC, XT, XT2, XG = 1000022, 1000001, 1000002, 1000003, 1000004, 1000006, 2000006, 1000021


class BumpObjective:
    """Z² = 6 exp(−((m_t̃ − 1150)/250)²) + 4 exp(−((m_d̃ − 750)/200)²), ln π = −n_particles/2.

    Particles other than the LSP, t̃ and d̃ never 'contribute' (the prune step removes them).
    ``mu_hat`` is returned as μ̂ (μ_max = 2, r_max = 0.65); ``calls`` counts evaluated models.
    """

    def __init__(self, mu_hat: float = 1.0, k_values=None):
        self.mu_hat = mu_hat
        self.k_values = iter(k_values) if k_values is not None else None
        self.calls = 0

    def __call__(self, models):
        out = []
        for m in models:
            self.calls += 1
            z2 = 0.0
            if XT in m.masses:
                z2 += 6.0 * math.exp(-((m.masses[XT] - 1150.0) / 250.0) ** 2)
            if XD in m.masses:
                z2 += 4.0 * math.exp(-((m.masses[XD] - 750.0) / 200.0) ** 2)
            log_prior = -0.5 * len(m.masses)
            k = z2 + 2.0 * log_prior if self.k_values is None else next(self.k_values)
            out.append(PaperScore(K=k, Z=None if k is None else math.sqrt(z2), mu_hat=self.mu_hat, mu_max=2.0,
                                  r_max=0.65, log_prior=log_prior, best_combination=("A-1:SR",),
                                  contributing=frozenset(p for p in m.masses if p in (LSP, XT, XD))))
        return out


@pytest.fixture(scope="session")
def space():
    return default_space()


def manipulator(space, seed: int = 0, **settings) -> Manipulator:
    return Manipulator(space, np.random.default_rng(seed), WalkerSettings(**settings))


def make_state(man: Manipulator, masses: dict[int, float], decays=None, kappas=None) -> WalkerState:
    """A state with the given masses; BRs random over open channels unless given; κ = 1 (or given)."""
    s = WalkerState(masses=dict(masses), decays={}, kappas={})
    for p in masses:
        if p == man.lsp:
            continue
        if decays and p in decays:
            s.decays[p] = dict(decays[p])
        else:
            assert man.set_random_branchings(s, p)
    for p in masses:
        man.init_kappas(s, p)
    if kappas:
        s.kappas.update(kappas)
    return s
