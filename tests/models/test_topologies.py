"""Decay chains, compressed forms, label matching and the run-time compression rule of the topology
table, checked against hand-derived cases, probability conservation and (for compression) the
equivalence SModelS implies: a compressed element is the element of the model without that decay."""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.models.protomodel import default_space
from tdmcmc.models.protomodel.decays import DecayGraph
from tdmcmc.models.protomodel.model import protomodel_from_dict
from tdmcmc.models.protomodel.predictions import Predictor
from tdmcmc.models.protomodel.topologies import (
    MAX_COMPRESSIONS, MINMASSGAP_GEV, _branch_matches, branch_forms, load_table, restrict_space)

SPACE = default_space()
N1, N2, C1, XD, XNUE, XE, GLUINO, XT, XB = 1000022, 1000023, 1000024, 1000001, 1000012, 1000011, 1000021, 1000006, 1000005


def _signed(graph: DecayGraph, mother: int, channel: tuple[int, ...]) -> set[tuple[int, tuple[int, ...], float]]:
    return {(d.bsm, d.sm, d.share) for d in graph.decays(mother) if d.channel == channel}


def test_signed_decays_by_hand():
    g = DecayGraph(SPACE)
    assert _signed(g, N2, (1000024, 24)) == {(C1, (-24,), 0.5), (-C1, (24,), 0.5)}
    assert _signed(g, XT, (1000005, 24)) == {(XB, (24,), 1.0)}  # t~(+2/3) -> b~(-1/3) W+
    assert _signed(g, XB, (1000006, 24)) == {(XT, (-24,), 1.0)}
    assert _signed(g, GLUINO, (1000024, 5, 6)) == {(C1, (-6, 5), 0.5), (-C1, (-5, 6), 0.5)}
    assert _signed(g, GLUINO, (1000006, 6)) == {(XT, (-6,), 0.5), (-XT, (6,), 0.5)}
    assert _signed(g, XNUE, (1000024, 11)) == {(C1, (11,), 0.5), (-C1, (-11,), 0.5)}
    assert _signed(g, XE, (1000024, 12)) == {(-C1, (12,), 1.0)}
    assert _signed(g, -XE, (1000022, 11)) == {(N1, (-11,), 1.0)}
    assert _signed(g, -C1, (1000022, 11, 12)) == {(N1, (11, 12), 1.0)}


def test_chain_probabilities_sum_to_one():
    """With physical (descending) masses and random BRs over the open channels, the chains of every
    particle carry total probability 1: the enumeration misses no path and counts none twice."""
    rng = np.random.default_rng(7)
    g = DecayGraph(SPACE)
    for trial in range(3):
        masses = {p: rng.uniform(100, 2000) for p in SPACE.particles}
        masses[SPACE.lsp] = 50.0
        br = {}
        for p, particle in SPACE.particles.items():
            open_ = [ch for ch in particle.decays if all(masses.get(d, 0) < masses[p] for d in ch)]
            for ch, value in zip(open_, rng.dirichlet(np.ones(len(open_))) if open_ else []):
                br[(p, ch)] = value
        for head in (GLUINO, XD, -XT, 2000006, XNUE, -1000037):
            total = sum(np.prod([br.get((abs(d.mother), d.channel), 0.0) * d.share for d in chain])
                        for chain in g.chains(head))
            assert total == pytest.approx(1.0, abs=1e-12), (trial, head)


def test_branch_forms_mass_and_invisible_compression():
    g = DecayGraph(SPACE)
    chain = next(c for c in g.chains(XD) if [(d.bsm, d.channel) for d in c] ==
                 [(N2, (1000023, 1)), (N1, (1000022, 2, 2))])
    forms = {(f.vertices, f.nodes, f.compressed) for f in
             branch_forms(0, chain, XD, SPACE, MINMASSGAP_GEV, MAX_COMPRESSIONS, 2)}
    assert forms == {
        ((("d",), ("u", "u")), (XD, N2, N1), ()),  # raw
        ((("u", "u"),), (N2, N1), (0,)),  # Xd -> N2 d compressed
        ((("d",),), (XD, N1), (1,)),  # N2 -> N1 u u compressed
        ((), (N1,), (0, 1)),
    }
    # a decay emitting a W can never have a gap below 10 GeV: no compressed forms
    chain_w = next(c for c in g.chains(XD) if [d.channel for d in c] == [(1000023, 1), (1000024, 24), (1000022, 24)])
    assert {f.compressed for f in branch_forms(0, chain_w, XD, SPACE, MINMASSGAP_GEV, MAX_COMPRESSIONS, 3)} == {(), (0,)}
    # invisible compression: the sneutrino becomes the invisible final state
    chain_nu = next(c for c in g.chains(XNUE) if [d.channel for d in c] == [(1000022, 12)])
    inv = {(f.vertices, f.nodes, f.invisible) for f in
           branch_forms(0, chain_nu, XNUE, SPACE, MINMASSGAP_GEV, 0, 2)}
    assert inv == {((("nue",),), (XNUE, N1), False), ((), (XNUE,), True)}


@pytest.mark.parametrize("branch, vertices, expected", [
    ((("jet",),), (("c",),), True),
    ((("jet",),), (("b",),), False),
    ((("l", "nu"),), (("e-", "nue"),), True),
    ((("nu", "l"),), (("e-", "nue"),), True),
    ((("L-",),), (("ta-",),), True),
    ((("l-",),), (("ta-",),), False),
    ((("W",),), (("W-",),), True),
    ((("t+",),), (("t-",),), False),
    ((("b",), ("W",)), (("b",), ("W+",)), True),
    ((("b",), ("W",)), (("b",),), False),
])
def test_label_matching(branch, vertices, expected):
    assert _branch_matches(branch, vertices) is expected


def test_restrict_space_keeps_only_listed_particles():
    sub = restrict_space(SPACE, [XD, N2])
    assert set(sub.particles) == {N1, N2, XD}
    assert sub.particles[XD].decays == ((1000022, 1), (1000023, 1))
    assert {c.key for c in sub.productions} == {(-XD, XD)}


@pytest.fixture(scope="module")
def compression_predictor(db124_compiled):
    space = restrict_space(SPACE, [XD, N2])
    return Predictor(load_table(space, db124_compiled), db124_compiled, space)


def _squark_model(space, masses: dict[int, float], decays: dict) -> object:
    xsecs = [{"pids": [-XD, XD], "sqrts": s, "xsec_pb": x} for s, x in ((8, 0.0011), (13, 0.0146))]
    return protomodel_from_dict({"masses": {str(k): v for k, v in masses.items()}, "decays": decays,
                                 "xsecs": xsecs}, space)


@pytest.mark.realdata
def test_mass_compression_reproduces_the_direct_decay(compression_predictor):
    """Xd -> N2 d, N2 -> N1 u u with m(N2) - m(N1) = 5 GeV compresses to Xd -> N1 d: every T2
    prediction equals the one of the model where Xd decays to N1 directly. With a 20 GeV gap there
    is no compression and hence no T2 prediction at all."""
    p = compression_predictor
    direct = _squark_model(p.space, {N1: 100.0, XD: 800.0}, {str(XD): {"1000022 1": 1.0}})
    chain = {str(XD): {"1000023 1": 1.0}, str(N2): {"1000022 2 2": 1.0}}
    compressed = _squark_model(p.space, {N1: 100.0, N2: 105.0, XD: 800.0}, chain)
    open_gap = _squark_model(p.space, {N1: 100.0, N2: 120.0, XD: 800.0}, chain)

    def t2(model):
        return {(x.analysis, x.dataset): x for x in p.predict(model) if x.txnames == ("T2",)}

    ref = t2(direct)
    assert len(ref) > 30
    got = t2(compressed)
    assert got.keys() == ref.keys()
    for key, x in ref.items():
        assert got[key].xsec_fb == pytest.approx(x.xsec_fb, rel=1e-9)
        assert got[key].r_obs == pytest.approx(x.r_obs, rel=1e-9)
    assert t2(open_gap) == {}


@pytest.mark.realdata
def test_sigmacut_drops_small_elements(compression_predictor):
    """An element is kept iff max over √s of σ·BR >= 0.02 fb (SModelS' decomposition)."""
    p = compression_predictor
    decays = {str(XD): {"1000022 1": 1.0}}

    def model(xsec_13_fb):
        return protomodel_from_dict({"masses": {str(N1): 100.0, str(XD): 800.0}, "decays": decays,
                                     "xsecs": [{"pids": [-XD, XD], "sqrts": 13, "xsec_pb": xsec_13_fb / 1000}]},
                                    p.space)

    assert p.predict(model(0.021))
    assert p.predict(model(0.019)) == []
