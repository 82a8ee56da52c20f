"""The reader on the real databases: the counts of the foundation issue, every per-SR number
against an independent line-by-line read of the files, and every file of both folders read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tdmcmc.models.database.records import EFFICIENCY_MAP
from tdmcmc.models.database.summary import summarize

pytestmark = pytest.mark.realdata


def test_counts_of_the_1_2_4_database(db124_compiled) -> None:
    info = summarize(db124_compiled.database)
    expected = {"n_results": 103, "n_analyses": 80, "n_em_datasets": 266, "n_ul_datasets": 74, "n_txnames": 951,
                "n_txnames_all_zero": 14, "n_covariance_results": 1, "n_pyhf_results": 3, "version": "1.2.4"}
    assert {k: info[k] for k in expected} == expected
    assert info["missing_json_files"] == ["ATLAS-SUSY-2019-08-eff/BkgOnly.json"]  # absent from the source release
    assert info["skipped"] == []


def test_counts_of_the_3_0_0_extras(db300_compiled) -> None:
    info = summarize(db300_compiled.database)
    expected = {"n_results": 55, "n_analyses": 45, "n_em_datasets": 446, "n_ul_datasets": 28, "n_txnames": 1036,
                "n_txnames_all_zero": 16, "n_covariance_results": 6, "n_third_moment_datasets": 22,
                "n_pyhf_results": 3, "version": "3.0.0"}
    assert {k: info[k] for k in expected} == expected


def _every_file(root: Path) -> set[Path]:
    return {p for p in root.rglob("*.txt") if p.name != "README.rst"}


@pytest.mark.parametrize("which", ["db124_compiled", "db300_compiled"])
def test_every_text_file_is_read(which: str, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue(which).database
    read = {r.path / "globalInfo.txt" for r in db.results}
    read |= {ds.path / "dataInfo.txt" for ds in db.datasets}
    read |= {tx.path for tx in db.txnames}
    assert _every_file(db.path) == read


_FIELD = re.compile(r"^(observedN|expectedBG|bgError|upperLimit|expectedUpperLimit|thirdMoment):\s*([^#\s]+)", re.M)
_UNITS = {"fb": 1.0, "pb": 1000.0}


def _independent(path: Path) -> dict[str, float]:
    """Numbers of a dataInfo.txt by a regular expression: an independent read of the same file."""
    out = {}
    for key, raw in _FIELD.findall(path.read_text()):
        number, _, unit = raw.partition("*")
        out[key] = float(number) * _UNITS.get(unit, 1.0)
    return out


@pytest.mark.parametrize("which", ["db124_compiled", "db300_compiled"])
def test_every_signal_region_number_equals_the_file(which: str, request: pytest.FixtureRequest) -> None:
    compiled = request.getfixturevalue(which)
    arrays = compiled.arrays
    n_checked = 0
    for i, ds in enumerate(compiled.database.datasets):
        if ds.data_type != EFFICIENCY_MAP:
            assert np.isnan(arrays.observed_n[i])
            continue
        ref = _independent(ds.path / "dataInfo.txt")
        got = {"observedN": ds.observed_n, "expectedBG": ds.expected_bg, "bgError": ds.bg_error,
               "upperLimit": ds.upper_limit, "expectedUpperLimit": ds.expected_upper_limit,
               "thirdMoment": ds.third_moment}
        assert {k: got[k] for k in ref} == ref, ds.path
        for key, col in (("observedN", arrays.observed_n), ("expectedBG", arrays.expected_bg),
                         ("bgError", arrays.bg_error)):
            assert col[i] == ref[key]
        n_checked += 1
    assert n_checked == {"db124_compiled": 266, "db300_compiled": 446}[which]


def test_covariance_and_grids_of_known_results(db124_compiled) -> None:
    db = db124_compiled.database
    agg = next(r for r in db.results if r.id == "CMS-PAS-SUS-16-052-agg")
    assert agg.info.covariance.shape == (17, 17) and agg.info.covariance[0, 0] == 35.36
    assert agg.info.dataset_order[:2] == ("ar1", "ar2")
    ar1 = next(ds for ds in agg.datasets if ds.data_id == "ar1")
    assert np.sqrt(agg.info.covariance[0, 0]) == pytest.approx(ar1.bg_error, rel=1e-4)  # 5.9464 = sqrt(35.36)
    cms19006 = next(r for r in db.results if r.folder == "CMS-SUS-19-006")
    t2tt = next(tx for tx in cms19006.datasets[0].txnames if tx.name == "T2tt")
    # First point of the file: [[1.8613E+02*GeV,4.5906E+00*GeV],...], 9.5035E+01*pb
    np.testing.assert_allclose(t2tt.upper_limits.coords[0], [186.13, 4.5906, 186.13, 4.5906])
    assert t2tt.upper_limits.values[0] == pytest.approx(95035.0)
    assert t2tt.expected_upper_limits.values[0] == pytest.approx(94073.0)  # 9.4073E+01*pb (line 13908)
    sr = next(r for r in db.results if r.folder == "ATLAS-SUSY-2016-16-eff")
    bwn = next(ds for ds in sr.datasets if ds.data_id == "bWN")
    assert (bwn.observed_n, bwn.expected_bg, bwn.bg_error, bwn.upper_limit, bwn.expected_upper_limit) == (
        68, 71, 16, 0.861, 0.917)
    assert sr.info.lumi == pytest.approx(36.0) and sr.info.sqrts == 13.0


def test_pyhf_workspaces_load_lazily(db124_compiled) -> None:
    res = next(r for r in db124_compiled.database.results if r.folder == "ATLAS-SUSY-2018-04-eff")
    assert {ch.smodels for ch in res.info.json_files["SRcombined.json"]} == {"SRlow", "SRhigh"}
    ws = res.load_json("SRcombined.json")
    assert {"channels", "observations", "measurements", "version"} <= set(ws)


def test_v3_txnames_keep_data_map_and_graph(db300_compiled) -> None:
    db = db300_compiled.database
    tx = next(t for t in db.txnames if t.name == "TRV1jj" and "CMS-EXO-19-012" in str(t.path))
    assert tx.data_map[1][1] == "totalwidth"
    assert tx.upper_limits.layout[1].quantity == "width" and tx.upper_limits.layout[0].node == 1
    np.testing.assert_allclose(tx.upper_limits.coords[0], [1800.0, 2e-13])
    assert tx.upper_limits.values[0] == pytest.approx(218.2359)
    third = [ds for ds in db.datasets if ds.third_moment is not None]
    assert len(third) == 22 and all(ds.path.parent.name == "CMS-SUS-20-004-eff" for ds in third)
