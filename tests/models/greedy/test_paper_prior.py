"""The batched ln π_paper (objective.PaperPrior) against the per-model dict form
(likelihood.prior.paper_log_prior with the fitted 13-TeV cross sections), on random protomodels of
the paper's space built to hit every counting rule: frozen particles, BRs below 1e-5 and within the
2.5 % clustering tolerance, κ below 1e-4, on int(100 κ) bin edges, within 3 % of each other, σ near
the 0.001 fb cut, κ given through either member of a charge-conjugate class."""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.errors import UserError
from tdmcmc.models.greedy.objective import PaperPrior, paper_prior
from tdmcmc.models.likelihood.prior import paper_log_prior
from tdmcmc.models.protomodel.model import Protomodel
from tdmcmc.models.protomodel.xsec import cross_sections, kappa_lookup


def _reference(space, model: Protomodel, clustering: str) -> tuple[float, dict[str, float]]:
    """The dict form: κ and σ (summed per κ class in the space's channel order) for paper_log_prior."""
    xsec13 = cross_sections(space, model.masses, model.kappas, 13)
    kappa = kappa_lookup(space, model.kappas)
    class_kappas = {key: kappa.get(key, 1.0) for key, channels in space.kappa_classes().items()
                    if all(abs(p) in model.masses for p in channels[0].pair)}
    class_xsecs: dict = {}
    for channel in space.productions:
        if channel.key in xsec13:
            class_xsecs[channel.kappa_key] = class_xsecs.get(channel.kappa_key, 0.0) + xsec13[channel.key]
    return paper_log_prior(model.masses, model.decays, class_kappas, class_xsecs, clustering=clustering,
                           lsp=space.lsp)


def _random_models(space, n: int, seed: int) -> list[Protomodel]:
    rng = np.random.default_rng(seed)
    others = sorted(p for p in space.particles if p != space.lsp)
    classes = space.kappa_classes()
    out = []
    for i in range(n):
        masses = {space.lsp: float(rng.uniform(50, 500))}
        for p in others:
            if rng.random() < 0.4:
                masses[p] = float(rng.uniform(600, 4000)) if rng.random() < 0.9 else 1.0e5 + 1.0   # frozen
        decays = {}
        for p in masses:
            if p == space.lsp:
                continue
            channels = space.particles[p].decays[:int(rng.integers(1, len(space.particles[p].decays) + 1))]
            base = rng.choice([0.3, 0.2, 1e-6, 0.5], size=len(channels))
            brs = base * (1.0 + rng.choice([0.0, 0.02, 0.06], size=len(channels)))   # 2.5 % tolerance
            decays[p] = {c: float(v) for c, v in zip(channels, rng.permutation(brs))}
        kappas = {}
        for key, channels in classes.items():
            if rng.random() < 0.7:
                value = float(rng.choice([10 ** rng.uniform(-5, 0.5), 0.4999999, 0.5, 0.51, 1.0, 1.02, 5e-5]))
                pair = channels[-1].pair if rng.random() < 0.5 else key        # either member of the class
                kappas[tuple(sorted(pair))] = value
        out.append(Protomodel(name=f"random{i}", masses=masses, decays=decays, kappas=kappas))
    return out


@pytest.mark.parametrize("clustering", ["bins", "relative"])
def test_batch_equals_dict_form(space, clustering):
    """Every count and ln π of a batch of 60 equals the dict form exactly (same arithmetic); the batch
    spans several values of each count."""
    models = _random_models(space, 60, seed=3)
    log_prior, counts = PaperPrior(space, clustering)(models)
    ref = [_reference(space, m, clustering) for m in models]
    assert log_prior.tolist() == [r[0] for r in ref]
    for name in ("n_particles", "n_br", "n_ssm"):
        assert counts[name].tolist() == [r[1][name] for r in ref], name
        assert len(set(counts[name].tolist())) >= 4, name
    assert [paper_prior(space, m, clustering) for m in models[:5]] == ref[:5]


def test_given_cross_sections_are_used(space):
    """σ passed in (here: the fits' own, and the fits' scaled below the 0.001 fb cut) replace the fits."""
    models = _random_models(space, 20, seed=5)
    prior = PaperPrior(space)
    xsecs = np.stack([prior.channel_xsecs(m) for m in models])
    assert prior(models, xsecs)[0].tolist() == prior(models)[0].tolist()
    nothing = prior(models, np.zeros_like(xsecs))[1]["n_ssm"]
    assert not nothing.any() and prior(models)[1]["n_ssm"].any()


def test_conflicting_kappas_of_a_class(space):
    """One class given two κ through its two members: kappa_lookup's error."""
    key, channels = next((k, c) for k, c in space.kappa_classes().items() if len(c) > 1)
    a, b = (tuple(sorted(c.pair)) for c in channels[:2])
    model = Protomodel(name="m", masses={space.lsp: 100.0, 1000021: 1000.0, abs(key[0]): 900.0},
                       decays={}, kappas={a: 1.0, b: 2.0})
    with pytest.raises(UserError, match="charge-conjugate channels share one kappa"):
        PaperPrior(space)([model])


def test_empty_batch(space):
    log_prior, counts = PaperPrior(space)([])
    assert log_prior.shape == (0,) and all(v.shape == (0,) for v in counts.values())
