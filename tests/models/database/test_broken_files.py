"""Deliberately broken copies of real files: one error naming file, line and key; --skip-invalid
loads the rest and lists what it skipped."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tdmcmc.models.database.reader import read_database
from tdmcmc.models.database.textfile import DatabaseError

pytestmark = pytest.mark.realdata

EM = "13TeV/ATLAS/ATLAS-SUSY-2016-16-eff"
UL = "8TeV/ATLAS/ATLAS-CONF-2013-089"
COV = "13TeV/CMS/CMS-PAS-SUS-16-052-agg"


@pytest.fixture()
def small_db(db124: Path, tmp_path: Path) -> Path:
    """Three real results (EM, UL with axes, covariance) copied into a scratch database."""
    root = tmp_path / "db"
    for rel in (EM, UL, COV):
        shutil.copytree(db124 / rel, root / rel)
    shutil.copy(db124 / "version", root / "version")
    return root


def _edit(path: Path, pattern: str, replacement: str, count: int = 1) -> int:
    """Replace the first match of `pattern`; returns the 1-based line it was on."""
    text = path.read_text()
    m = re.search(pattern, text, flags=re.M)
    assert m, f"{pattern!r} not in {path}"
    path.write_text(text[: m.start()] + re.sub(pattern, replacement, m.group(), flags=re.M) + text[m.end():])
    return text.count("\n", 0, m.start()) + 1


CASES = [
    # (file, pattern, replacement, key, message fragment)
    (f"{EM}/bWN/dataInfo.txt", r"^upperLimit: 0.861\*fb", "upperLimit: 0.861*fbb", "upperLimit", "unknown unit"),
    (f"{EM}/bWN/dataInfo.txt", r"^observedN: 68", "observedN: sixty-eight", "observedN", ""),
    (f"{EM}/bWN/dataInfo.txt", r"^bgError: 16", "bgError: -16", "bgError", ">= 0.0"),
    (f"{EM}/bWN/dataInfo.txt", r"^dataType: efficiencyMap", "dataType: efficiency", "dataType", "dataType must be"),
    (f"{EM}/bWN/dataInfo.txt", r"^upperLimit: 0.861\*fb", "upperLimit: 0.861*GeV", "upperLimit",
     "expected cross section (fb), got energy (GeV)"),
    (f"{EM}/bWN/T2ttoff.txt", r"^constraint: \[\[\[b, W\]\],\[\[b, W\]\]\]", "constraint: [[[b, W]],[[b, W]]",
     "constraint", "unbalanced"),
    (f"{EM}/bWN/T2ttoff.txt", r"^efficiencyMap: \[\[\[\[2.5000E\+02\*GeV", "efficiencyMap: [[[[2.5000E+02*GeX",
     "efficiencyMap", "unknown unit"),
    (f"{EM}/globalInfo.txt", r"^lumi: 36/fb", "lumi: 36*fb", "lumi", "expected luminosity (1/fb)"),
    (f"{UL}/data/T6WW.txt", r"^axes: \[\[x, 0.5\*x \+ 0.5\*y, y\]", "axes: [[x, 0.5*x + 0.5*y]",
     "axes", "axes plane 1 has branch lengths [2, 3]"),
    (f"{UL}/data/T6WW.txt", r"^\[\[\[2.6500E\+02\*GeV,1.8500E\+02\*GeV,1.0500E\+02\*GeV\]",
     "[[[2.6500E+02*GeV,1.8500E+02*GeV]", "upperLimits", "has 5 coordinates, the first point has 6"),
    (f"{UL}/data/T6WW.txt", r"\]\],1.3[0-9.E+-]*\*pb\],$", "]],-1.0*pb],", "upperLimits", "must be finite and >= 0"),
    (f"{COV}/globalInfo.txt", r'^datasetOrder: "ar1",', "datasetOrder: ", "covariance",
     "datasetOrder names 16 datasets"),
]


@pytest.mark.parametrize(("rel", "pattern", "replacement", "key", "fragment"), CASES,
                         ids=[f"{c[3]}:{c[2][:24]}" for c in CASES])
def test_one_error_naming_file_line_and_key(small_db: Path, rel: str, pattern: str, replacement: str,
                                            key: str, fragment: str) -> None:
    line = _edit(small_db / rel, pattern, replacement)
    with pytest.raises(DatabaseError) as err:
        read_database(small_db)
    exc = err.value
    assert exc.path == small_db / rel
    assert exc.key == key
    assert fragment in exc.reason
    if key not in ("covariance",):  # the covariance error points at its own line, not the edited one
        assert exc.line == line, str(exc)
    assert str(exc).startswith(f"{small_db / rel}, line {exc.line}, key '{key}': ")


def test_missing_key(small_db: Path) -> None:
    _edit(small_db / EM / "bWN/dataInfo.txt", r"^expectedBG: 71\n", "")
    with pytest.raises(DatabaseError, match=r"dataInfo.txt, key 'expectedBG': required key is missing"):
        read_database(small_db)


def test_skip_invalid_loads_the_rest_and_lists_what_it_skipped(small_db: Path) -> None:
    _edit(small_db / EM / "bWN/T2ttoff.txt", r"^constraint: .*$", "constraint: [[[b, W]],[[b, W]]")
    _edit(small_db / EM / "bWN/dataInfo.txt", r"^bgError: 16", "bgError: -16")
    _edit(small_db / COV / "globalInfo.txt", r"^lumi: .*$", "lumi: 35.9*fb")
    db = read_database(small_db, skip_invalid=True)
    assert [r.folder for r in db.results] == ["ATLAS-SUSY-2016-16-eff", "ATLAS-CONF-2013-089"] or \
        sorted(r.folder for r in db.results) == ["ATLAS-CONF-2013-089", "ATLAS-SUSY-2016-16-eff"]
    skipped = {s.path.relative_to(small_db).as_posix(): s.reason for s in db.skipped}
    # The broken dataInfo takes its dataset (and the broken txname in it) out; the broken
    # globalInfo takes its result out; everything else is read.
    assert set(skipped) == {f"{EM}/bWN", COV}
    assert "bgError" in skipped[f"{EM}/bWN"] and "lumi" in skipped[COV]
    em = next(r for r in db.results if r.folder == "ATLAS-SUSY-2016-16-eff")
    assert "bWN" not in {ds.data_id for ds in em.datasets} and len(em.datasets) > 5


def test_skip_invalid_keeps_a_dataset_without_its_broken_txname(small_db: Path) -> None:
    _edit(small_db / EM / "bWN/T2ttoff.txt", r"^constraint: .*$", "constraint: [[[b, W]],[[b, W]]")
    db = read_database(small_db, skip_invalid=True)
    assert [s.path.name for s in db.skipped] == ["T2ttoff.txt"]
    bwn = next(ds for ds in db.datasets if ds.data_id == "bWN")
    assert bwn.txnames == ()
