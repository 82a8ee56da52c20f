"""The numpy paper objective on the real database, and the ``tdmcmc greedy`` command on the demo one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tdmcmc.cli import main

from .conftest import LSP, XD, XT

PAPER_COMBINATION = {"ATLAS-SUSY-2013-02", "ATLAS-SUSY-2016-07", "ATLAS-SUSY-2016-16", "CMS-SUS-13-012",
                     "CMS-SUS-16-050"}


@pytest.fixture(scope="module")
def paper_objective(db124, shared):
    from tdmcmc.models.greedy.objective import NumpyPaperObjective
    from tdmcmc.models.protomodel.space import default_space
    from tdmcmc.models.protomodel.topologies import restrict_space

    space = restrict_space(default_space(), [LSP, XD, XT])       # a small table: seconds, not a minute
    return NumpyPaperObjective(db124, shared / "data" / "raw" / "protomodels" / "combination-matrix", space=space)


def test_paper_hiscore_model(paper_objective, oracle):
    """The paper's winner (method reference §8.1): its best combination contains the five analyses
    of the paper's, the prune set is its three particles, and Z²/2 is the best clique's ln R at μ̂,
    checked against Combiner.paper_combination (brute-force tested, with the hasOverlap veto) on a μ grid."""
    from tdmcmc.models.protomodel.model import read_protomodel

    obj = paper_objective
    model = read_protomodel(oracle / "models" / "best_paper.json", obj.space)
    score = obj([model])[0]
    assert score.contributing == {LSP, XD, XT}
    assert PAPER_COMBINATION <= {c.split(":")[0] for c in score.best_combination}
    assert score.prior_counts == {"n_particles": 3.0, "n_br": 0.0, "n_ssm": 2.0}
    assert score.K == pytest.approx(score.Z ** 2 + 2 * score.log_prior)
    assert 0.0 < score.mu_hat <= score.mu_max == pytest.approx(0.999 * 1.3 / score.r_max)
    assert 2.5 < score.Z < 3.5            # the paper: 3.24 (Pythia cross sections; our fits differ)

    predictions = obj.predictor.predict(model)
    selected = obj._combiner_set(predictions)
    terms = obj._nll_terms(selected)
    results = [obj._result(p) for p in selected]
    predicted = np.zeros(len(obj.compiled.arrays.result_id), bool)
    predicted[results] = True

    def best_ln_r(mu):
        r = np.zeros(len(predicted))
        r[results] = -terms(np.array(mu))
        return obj.combiner.paper_combination(r, predicted, obj.vetoed_pairs(model, selected))[0]

    grid = np.linspace(0.0, score.mu_max, 401)
    values = np.array([best_ln_r(mu) for mu in grid])
    assert best_ln_r(score.mu_hat) == pytest.approx(0.5 * score.Z ** 2, abs=1e-9)
    assert values.max() <= 0.5 * score.Z ** 2 + 1e-9
    assert values.max() == pytest.approx(0.5 * score.Z ** 2, abs=2e-3)


def test_greedy_cli_demo(tmp_path, capsys):
    out = tmp_path / "greedy.json"
    assert main(["greedy", "--walkers", "2", "--steps", "10", "--seed", "3", "--jobs", "2", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [w["seed"] for w in doc["walkers"]] == [3, 4]
    for w in doc["walkers"]:
        assert len(w["K"]) == len(w["K_proposed"]) == len(w["accepted"]) == 10
        assert w["cpu_seconds"] > 0
    assert doc["database"]["content_hash"] and doc["settings"]["steps"] == 10
    ks = [e["K"] for e in doc["hiscores"]]
    assert ks == sorted(ks, reverse=True) and all(k > 0 for k in ks)
    assert "2 walkers x 10 steps" in capsys.readouterr().out
    # the same seeds in one process give the same trajectories
    again = tmp_path / "again.json"
    assert main(["greedy", "--walkers", "2", "--steps", "10", "--seed", "3", "--jobs", "1", "-o", str(again)]) == 0
    assert [w["K"] for w in json.loads(again.read_text())["walkers"]] == [w["K"] for w in doc["walkers"]]


def test_greedy_cli_errors(tmp_path, capsys):
    assert main(["greedy", "--walkers", "0", "--steps", "5", "-o", str(tmp_path / "x.json")]) == 2
    assert "--walkers and --steps must be >= 1" in capsys.readouterr().err
    assert main(["greedy", "--database", str(tmp_path / "nope"), "--walkers", "1", "--steps", "1",
                 "-o", str(tmp_path / "x.json")]) == 2
    assert "not a folder" in capsys.readouterr().err
