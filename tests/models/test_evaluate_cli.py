"""``tdmcmc evaluate`` and ``tdmcmc export-slha``: output format, JSON/TOML input, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdmcmc.cli import main
from tdmcmc.models.protomodel import default_space
from tdmcmc.models.protomodel.model import protomodel_from_dict, read_protomodel, write_protomodel

SQUARK = {
    "name": "sqd900",
    "masses": {"1000022": 100.0, "1000001": 900.0},
    "decays": {"1000001": {"1000022 1": 1.0}},
    "ssmultipliers": {"-1000001,1000001": 1.0},
}
PREDICTION_KEYS = {"analysis", "dataset", "datatype", "txnames", "xsec_fb", "signal_events", "ul_obs_fb",
                   "ul_exp_fb", "r_obs", "r_exp"}


def _write(tmp_path: Path, data: dict, name: str = "model.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_json_on_demo_database(tmp_path, capsys):
    code, out, _ = _run(capsys, "evaluate", str(_write(tmp_path, SQUARK)), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["model"] == "sqd900"
    assert {"path", "version", "content_hash"} <= doc["database"].keys()
    preds = doc["predictions"]
    assert preds, "the demo database has T2 results"
    for p in preds:
        assert PREDICTION_KEYS <= p.keys()
        assert p["txnames"] == ["T2"]
        if p["datatype"] == "upperLimit":
            assert p["dataset"] is None and p["signal_events"] is None
        else:
            assert p["signal_events"] == pytest.approx(p["xsec_fb"] * p["lumi_ifb"])
        if p["ul_obs_fb"]:
            assert p["r_obs"] == pytest.approx(p["xsec_fb"] / p["ul_obs_fb"])
    r = [p["r_obs"] or 0.0 for p in preds]
    assert r == sorted(r, reverse=True)
    # text mode: one line per prediction after the two header lines
    code, text, _ = _run(capsys, "evaluate", str(_write(tmp_path, SQUARK)))
    assert code == 0 and len(text.strip().splitlines()) == len(preds) + 2


def test_best_dataset_keeps_one_signal_region_per_analysis(tmp_path, capsys):
    _, full, _ = _run(capsys, "evaluate", str(_write(tmp_path, SQUARK)), "--json")
    _, best, _ = _run(capsys, "evaluate", str(_write(tmp_path, SQUARK)), "--json", "--best-dataset")
    full, best = json.loads(full)["predictions"], json.loads(best)["predictions"]
    em = [p for p in best if p["datatype"] == "efficiencyMap"]
    assert len({p["analysis"] for p in em}) == len(em) >= 1
    for p in em:  # the largest expected r of its analysis
        r_exp = [q["r_exp"] for q in full if q["analysis"] == p["analysis"] and q["datatype"] == "efficiencyMap"]
        assert p["r_exp"] == max(r_exp)
    assert [p for p in best if p["datatype"] == "upperLimit"] == [p for p in full if p["datatype"] == "upperLimit"]


def test_toml_input_gives_the_same_predictions(tmp_path, capsys):
    space = default_space()
    model = read_protomodel(_write(tmp_path, SQUARK), space)
    write_protomodel(model, tmp_path / "model.toml")
    assert read_protomodel(tmp_path / "model.toml", space) == model
    _, js, _ = _run(capsys, "evaluate", str(tmp_path / "model.json"), "--json")
    _, tm, _ = _run(capsys, "evaluate", str(tmp_path / "model.toml"), "--json")
    assert json.loads(js)["predictions"] == json.loads(tm)["predictions"]


def test_injected_xsecs_are_used_without_kappa(tmp_path, capsys):
    data = dict(SQUARK, ssmultipliers={"-1000001,1000001": 3.0},
                xsecs=[{"pids": [-1000001, 1000001], "sqrts": 13, "xsec_pb": 0.0146},
                       {"pids": [1000022, 1000001], "sqrts": 13, "xsec_pb": 0.01}])
    _, out, _ = _run(capsys, "evaluate", str(_write(tmp_path, data)), "--json")
    ul = [p for p in json.loads(out)["predictions"] if p["datatype"] == "upperLimit" and p["sqrts_TeV"] == 13]
    assert ul and all(p["xsec_fb"] == pytest.approx(14.6) for p in ul)
    assert json.loads(out)["settings"]["xsecs"] == "injected"
    assert json.loads(out)["ignored_xsecs"] == [[1000001, 1000022]]  # not a production channel of the space


@pytest.mark.parametrize("change, message", [
    ({"decays": {"1000001": {"1000022 1": 0.7}}}, "decays.1000001: branching ratios sum to 0.7"),
    ({"masses": {"1000022": 100.0, "1000001": 900.0, "9999999": 5.0}}, "masses.9999999: unknown particle"),
    ({"masses": {"1000001": 900.0}}, "the LSP 1000022"),
    ({"decays": {"1000001": {"1000022 6": 1.0}}}, "has no decay channel [1000022, 6]"),
    ({"masses": {"1000022": 100.0, "1000001": -1}}, "masses.1000001: mass must be a positive number"),
    ({"decays": {}}, "decays.1000001: Xd has a mass but no decays"),
    ({"decays": {"1000001": {"1000022 1": 0.5, "1000023 1": 0.5}},
      "masses": {"1000022": 100.0, "1000023": 950.0, "1000001": 900.0}}, "channel is closed: 900.0 GeV <= 950 GeV"),
    ({"ssmultipliers": {"a,b": 1.0}}, "ssmultipliers.'a,b'"),
])
def test_bad_models_give_one_line_errors(tmp_path, capsys, change, message):
    path = _write(tmp_path, {**SQUARK, **change})
    code, _, err = _run(capsys, "evaluate", str(path))
    assert code == 2
    assert str(path) in err and message in err
    assert len(err.strip().splitlines()) == 1


def test_unreadable_files(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = _run(capsys, "evaluate", str(bad))
    assert code == 2 and "invalid JSON" in err
    code, _, err = _run(capsys, "evaluate", str(tmp_path / "missing.toml"))
    assert code == 2 and "cannot read protomodel file" in err


def test_export_slha(tmp_path, capsys):
    data = dict(SQUARK, xsecs=[{"pids": [-1000001, 1000001], "sqrts": 13, "xsec_pb": 0.0146}])
    out_file = tmp_path / "model.slha"
    code, _, _ = _run(capsys, "export-slha", str(_write(tmp_path, data)), "-o", str(out_file))
    assert code == 0
    lines = out_file.read_text().splitlines()
    block = lines[lines.index("BLOCK MASS") + 1:]
    block = block[:next(i for i, l in enumerate(block) if l.startswith("DECAY"))]
    mass = {int(l.split()[0]): float(l.split()[1]) for l in block}
    assert len(mass) == 20
    assert mass[1000001] == 900.0 and mass[1000022] == 100.0 and mass[1000021] == 1.0e6
    decay = lines.index(next(l for l in lines if l.startswith("DECAY   1000001")))
    assert lines[decay + 1].split() == ["1.000000E+00", "2", "1000022", "1"]
    xsec = lines.index(next(l for l in lines if l.startswith("XSECTION")))
    assert lines[xsec].split()[:6] == ["XSECTION", "1.30E+04", "2212", "2212", "2", "-1000001"]
    assert float(lines[xsec + 1].split()[6]) == pytest.approx(0.0146)


def test_slha_without_injected_xsecs_uses_the_fits(capsys, tmp_path):
    code, out, _ = _run(capsys, "export-slha", str(_write(tmp_path, SQUARK)))
    assert code == 0
    values = [float(l.split()[6]) for l in out.splitlines() if l.startswith("  0  ")]
    assert len(values) == 2  # squark pair at 8 and 13 TeV
    model = protomodel_from_dict(SQUARK, default_space())
    from tdmcmc.models.protomodel.xsec import cross_sections

    expected = cross_sections(default_space(), model.masses, model.kappas, 13)[(-1000001, 1000001)] / 1000
    assert max(values) == pytest.approx(expected, rel=1e-6)
