"""Which txnames the topology table serves (`unserved_reason`), and predictions on the 3.0.0
txnames it serves since the empty-branch constraints were admitted (TChiQ, TChiZoff), checked
against the map's grid values by hand and against SModelS 3.2.1."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from tdmcmc.models.database.constraints import parse_constraint
from tdmcmc.models.database.maps import Coordinate
from tdmcmc.models.protomodel import default_space
from tdmcmc.models.protomodel.model import protomodel_from_dict
from tdmcmc.models.protomodel.predictions import Predictor
from tdmcmc.models.protomodel.topologies import UNSERVED_REASONS, load_table, restrict_space, unserved_reason

SPACE = default_space()
N1, N2, C1, XD, GLUINO = 1000022, 1000023, 1000024, 1000001, 1000021


def _reasons(compiled) -> Counter:
    return Counter(unserved_reason(tx) for r in compiled.database.results for ds in r.datasets for tx in ds.txnames)


@pytest.mark.realdata
def test_inventory_of_the_300_extras(db300_compiled):
    """The table of docs/predictions.md ("What is matched"): 712 of 1036 served."""
    assert _reasons(db300_compiled) == {None: 712, "non-MET final state": 116, "width column": 109,
                                        "resonance": 76, "all-zero": 16, "R-parity violation": 7}


@pytest.mark.realdata
def test_inventory_of_124(db124_compiled):
    assert _reasons(db124_compiled) == {None: 923, "non-MET final state": 14, "all-zero": 14}


def _txname(constraint: str, layout: tuple[Coordinate, ...], final_state=("MET", "MET")) -> SimpleNamespace:
    return SimpleNamespace(constraint=parse_constraint(constraint), all_zero=False, final_state=list(final_state),
                           grid=SimpleNamespace(layout=layout))


MASSES_1_2 = (Coordinate("mass", node=1), Coordinate("mass", node=2))


@pytest.mark.parametrize("constraint, layout, reason", [
    # served: generic labels, mass-only map
    ("{(PV > anyBSM(1),anyBSM(2)), (anyBSM(1) > W,MET(3)), (anyBSM(2) > Z,MET(4))}", MASSES_1_2, None),
    # a specific state, even one of the space (C1+ = chargino): not served
    ("{(PV > C1+(1),anyBSM(2)), (C1+(1) > W,MET(3)), (anyBSM(2) > Z,MET(4))}", MASSES_1_2, "specific BSM state"),
    ("{(PV > Zprime(1)), (Zprime(1) > MET(2),MET(3))}", MASSES_1_2, "resonance"),
    ("{(PV > anyBSM(1),anyBSM(2)), (anyBSM(1) > jet,jet,jet), (anyBSM(2) > jet,jet,jet)}", MASSES_1_2,
     "R-parity violation"),
    ("{(PV > anyBSM(1),anyBSM(2)), (anyBSM(1) > W,MET(3)), (anyBSM(2) > Z,MET(4))}",
     (Coordinate("mass", node=1), Coordinate("width", node=1)), "width column"),
    ("{(PV > anyBSM(1),anyBSM(2)), (anyBSM(1) > W,MET(3)), (anyBSM(2) > Z,MET(4))}"
     " + {(PV > anyBSM(1),anyBSM(2)), (anyBSM(1) > Z,MET(3)), (anyBSM(2) > Z,MET(4))}", MASSES_1_2, "sum of graphs"),
    ("{(PV > anyBSM(1),anyBSM(2)), (anyBSM(1) > MET(3),MET(4)), (anyBSM(2) > Z,MET(5))}", MASSES_1_2,
     "no bracket form"),
    ("{(PV > anyBSM(1),anyBSM(2)), (anyBSM(1) > W,MET(3)), (anyBSM(2) > Z,MET(4))}",
     (Coordinate("mass", node=1), Coordinate("mass", node=7)), "layout"),
])
def test_unserved_reason_of_graphs(constraint, layout, reason):
    assert unserved_reason(_txname(constraint, layout)) == reason
    assert reason is None or reason in UNSERVED_REASONS


def test_empty_branches():
    bracket = (Coordinate("mass", 0, 0), Coordinate("mass", 0, 1), Coordinate("mass", 1, 0))
    assert unserved_reason(_txname("[[['jet']],[]]", bracket)) is None
    assert unserved_reason(_txname("[[],[]]", (Coordinate("mass", 0, 0), Coordinate("mass", 1, 0)))) == "pure MET"
    assert unserved_reason(_txname("[[],[]]", bracket[:2], ("HSCP", "HSCP"))) == "non-MET final state"


# ---------------------------------------------------------------------------------------------
# TChiQ [[jet]],[] of ATLAS-SUSY-2018-22 (EM): g~ d~ with d~ -> d N1 mass-compressed (5 GeV gap)
# leaves the d~ branch empty; g~ -> g N1 gives the jet. Masses on the grid point (700, 150 | 150).

SIGMA_GD_FB = {(XD, GLUINO): 50.0, (-XD, GLUINO): 20.0}

# SModelS 3.2.1 on a copy of ATLAS-SUSY-2018-22-eff (TRV1 files removed: SModelS cannot read the
# Zprime label without the release's databaseParticles.py), SLHA from `tdmcmc export-slha`:
# (σ·ε fb, r). Its interpolation at the grid vertex differs from the grid value by up to 3e-6.
SMODELS_TCHIQ = {
    "SR2j_1600": (0.6020014, 0.40841343283582093), "SR2j_2200": (0.3500007, 0.4505093319603553),
    "SR2j_2800": (0.04200007, 0.32183961685823753), "SR4j_1000": (0.10500070000000002, 0.18960039725532685),
    "SR4j_2200": (0.028000070000000002, 0.2045293644996348), "SR4j_3400": (0.007000000000000001, 0.20278099652375436),
    "SR5j_1600": (0.04900027999999999, 0.12606195009004373),
}


def _model(space, masses, decays, xsecs):
    return protomodel_from_dict({"masses": {str(k): v for k, v in masses.items()}, "decays": decays,
                                 "xsecs": xsecs}, space)


def _gd_model(space, m_squark: float):
    return _model(space, {N1: 150.0, XD: m_squark, GLUINO: 700.0},
                      {str(GLUINO): {"1000022 21": 1.0}, str(XD): {"1000022 1": 1.0}},
                      [{"pids": list(p), "sqrts": 13, "xsec_pb": x / 1000} for p, x in SIGMA_GD_FB.items()])


@pytest.fixture(scope="module")
def gd_predictor(db300_compiled):
    space = restrict_space(SPACE, [GLUINO, XD])
    return Predictor(load_table(space, db300_compiled), db300_compiled, space)


def _tchiq(predictions) -> dict:
    return {x.dataset: x for x in predictions if x.analysis == "ATLAS-SUSY-2018-22" and x.txnames == ("TChiQ",)}


def _grid_value(dataset, name: str, point: tuple[float, ...]) -> float:
    tx = next(t for t in dataset.txnames if t.name == name)
    hit = np.flatnonzero(np.all(tx.grid.coords == point, axis=1))
    assert len(hit) == 1, f"{point} is not a grid point of {name}"
    return float(tx.grid.values[hit[0]])


@pytest.mark.realdata
def test_tchiq_by_hand_and_against_smodels(gd_predictor, db300_compiled):
    """σ·ε = (50 + 20) fb × BR 1 × 1 × ε(700, 150, 150) read from each SR's grid; r = σ·ε / UL_obs.
    The grid value is reproduced to 1e-9 (the point is a vertex of the triangulation); SModelS to
    1e-5 (its vertex interpolation differs by 3e-6). The same set of SRs: those with ε > 0."""
    got = _tchiq(gd_predictor.predict(_gd_model(gd_predictor.space, 155.0)))
    assert got.keys() == SMODELS_TCHIQ.keys()
    datasets = {ds.data_id: ds for r in db300_compiled.database.results if r.folder == "ATLAS-SUSY-2018-22-eff"
                for ds in r.datasets}
    for sr, x in got.items():
        eff = _grid_value(datasets[sr], "TChiQ", (700.0, 150.0, 150.0))
        assert x.xsec_fb == pytest.approx(sum(SIGMA_GD_FB.values()) * eff, rel=1e-9)
        assert x.r_obs == pytest.approx(x.xsec_fb / datasets[sr].upper_limit, rel=1e-9)
        assert (x.xsec_fb, x.r_obs) == pytest.approx(SMODELS_TCHIQ[sr], rel=1e-5)


@pytest.mark.realdata
def test_tchiq_needs_the_compression(gd_predictor):
    """With a 15 GeV d~-N1 gap nothing is compressed: no empty branch, no TChiQ."""
    assert _tchiq(gd_predictor.predict(_gd_model(gd_predictor.space, 165.0))) == {}


# ---------------------------------------------------------------------------------------------
# TChiZoff [[e+,e-]],[] + [[mu+,mu-]],[] of ATLAS-SUSY-2018-16-hino (EM): C1 N2 with C1 -> N1 u d
# compressed (5 GeV) and N2 -> N1 e e (10 GeV, not compressed). The uncompressed element matches
# TChiWZoff of the same SRs; SModelS counts both (the original is not "related" to its compressed
# form after matching), so the SR's σ·ε is the sum of the two txnames.

SMODELS_TCHIZOFF = {  # SModelS 3.2.1, copy of ATLAS-SUSY-2018-16-hino-eff: (σ·ε fb, r)
    "SR_ewk_2l_high": (6.263325, 32.07027649769585), "SR_ewk_2l_low": (2.5359165, 9.430704722945334),
    "SR_ewk_2l_med": (2.8510485, 4.480667138142386),
}


@pytest.mark.realdata
def test_tchizoff_against_smodels(db300_compiled):
    space = restrict_space(SPACE, [C1, N2])
    model = _model(space, {N1: 165.0, C1: 170.0, N2: 175.0},
                       {str(C1): {"1000022 2 1": 1.0}, str(N2): {"1000022 11 11": 1.0}},
                       [{"pids": [N2, C1], "sqrts": 13, "xsec_pb": 0.9}, {"pids": [-C1, N2], "sqrts": 13, "xsec_pb": 0.6}])
    got = {x.dataset: x for x in Predictor(load_table(space, db300_compiled), db300_compiled, space).predict(model)
           if x.analysis == "ATLAS-SUSY-2018-16-hino"}
    assert got.keys() == SMODELS_TCHIZOFF.keys()
    for sr, x in got.items():
        assert set(x.txnames) == {"TChiZoff", "TChiWZoff"}
        assert (x.xsec_fb, x.r_obs) == pytest.approx(SMODELS_TCHIZOFF[sr], rel=1e-5)
