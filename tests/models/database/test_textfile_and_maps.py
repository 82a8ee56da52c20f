"""Entry splitting (comments, continuations, line numbers) and grid parsing (fast vs slow path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tdmcmc.models.database.maps import MapError, _slow_path, read_map
from tdmcmc.models.database.textfile import DatabaseError, read_entries, strip_comment
from tdmcmc.models.database.units import DIMENSIONLESS, XSEC, Quantity


def test_comments_outside_quotes_and_urls() -> None:
    assert strip_comment("upperLimit: 0.861*fb\t# official number") == "upperLimit: 0.861*fb\t"
    assert strip_comment("url: http://x.org/index.html#Figure") == "url: http://x.org/index.html#Figure"
    assert strip_comment("comment: 'a # b'  # c") == "comment: 'a # b'  "
    assert strip_comment("# whole line") == ""


def test_continuations_and_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "T.txt"
    f.write_text(
        "# header\n"
        "txName: T2\n"
        "figureUrl: https://a/1.png,\n"
        "https://a/2.png\n"
        "jsonFiles: {\n"
        "  'a.json': ['SR1',\n"
        "             'SR2']}\n"
        "upperLimits: [[[[1.0*GeV,0.0*GeV],[1.0*GeV,0.0*GeV]],2.0*fb],\n"
        "[[[2.0*GeV,0.0*GeV],[2.0*GeV,0.0*GeV]],3.0*fb]]\n"
    )
    entries = {e.key: e for e in read_entries(f)}
    assert list(entries) == ["txName", "figureUrl", "jsonFiles", "upperLimits"]
    assert entries["figureUrl"].value == "https://a/1.png,\nhttps://a/2.png"
    assert entries["jsonFiles"].line == 5 and entries["upperLimits"].line == 8
    ul = entries["upperLimits"]
    assert ul.line_of(ul.value.index("3.0*fb")) == 9


def test_duplicate_key_and_stray_line(tmp_path: Path) -> None:
    f = tmp_path / "dataInfo.txt"
    f.write_text("dataId: a\ndataType: efficiencyMap\ndataId: b\n")
    with pytest.raises(DatabaseError, match=r"line 3, key 'dataId': key given twice \(first on line 1\)"):
        read_entries(f)
    f.write_text("dataId: a\n  stray words\n")
    with pytest.raises(DatabaseError, match=r"dataInfo.txt, line 2: expected 'key: value'"):
        read_entries(f)


def test_grid_with_widths_and_v3_datamap() -> None:
    widths = "[[[(1.5E+02*GeV,6.8E-20*GeV)],[1.55E+02*GeV,(1.5E+02*GeV,6.8E-20*GeV)]],0.5*pb]"
    grid = read_map(f"[{widths},\n{widths}]", value_dim=XSEC)
    assert grid.coords.shape == (2, 5)
    assert [c.quantity for c in grid.layout] == ["mass", "width", "mass", "mass", "width"]
    np.testing.assert_allclose(grid.values, [500.0, 500.0])
    gev, tev = Quantity(1.0, (1, 0)), Quantity(1000.0, (1, 0))
    v3 = read_map("[[[1800.0,2e-13],2.182359E-01*pb],\n[[1.9,1e-13],1.0*fb]]", value_dim=XSEC,
                  data_map={0: (1, "mass", tev), 1: (1, "totalwidth", gev)})
    np.testing.assert_allclose(v3.coords, [[1.8e6, 2e-13], [1900.0, 1e-13]])
    np.testing.assert_allclose(v3.values, [218.2359, 1.0])
    assert v3.layout[1].node == 1 and v3.layout[1].quantity == "width"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[[[1*GeV,0*GeV],[1*GeV,0*GeV]],2*fb],\n[[[1*GeV,0*GeV],[1*GeV]],2*fb]]", "has 3 coordinates"),
        ("[[[[1*GeV,0*GeV],[1*GeV,0*GeV]],2*fb],\n[[[1*GeV,0*GeV],[1*GeV,0]],2*fb]]", "no energy unit"),
        ("[[[[1*GeV,0*GeV],[1*GeV,0*GeV]],2*fb],\n[[[1*GeV,0*GeV],[1*GeV,0*GeV]],2]]", "cross-section unit"),
        ("[[[[1*GeV,0*GeV],[1*GeV,0*GeV]],2*fb],\n[[[1*GeV,0*GeV],[1*GeV,0*GeV]],2*fb]", "not closed"),
    ],
)
def test_grid_errors_point_at_the_second_line(text: str, message: str) -> None:
    with pytest.raises(MapError, match=message) as err:
        read_map(text, value_dim=XSEC)
    assert text.count("\n", 0, err.value.offset) == 1


def test_efficiencies_must_be_plain_numbers() -> None:
    with pytest.raises(MapError, match="not a plain number"):
        read_map("[[[[1*GeV,0*GeV],[1*GeV,0*GeV]],0.1*fb]]", value_dim=DIMENSIONLESS)


@pytest.mark.realdata
@pytest.mark.parametrize(("rel", "key"), [
    ("13TeV/CMS/CMS-SUS-19-006/data/T2tt.txt", "expectedUpperLimits"),
    ("8TeV/CMS/CMS-SUS-13-002/data/T1tttt.txt", "upperLimits"),
    ("13TeV/ATLAS/ATLAS-SUSY-2018-31-eff/SRA_L/T6bbHH.txt", "efficiencyMap"),
])
def test_fast_path_equals_point_by_point_parse(db124: Path, rel: str, key: str) -> None:
    entry = {e.key: e for e in read_entries(db124 / rel)}[key]
    dim = DIMENSIONLESS if key == "efficiencyMap" else XSEC
    fast = read_map(entry.value, value_dim=dim)
    slow = _slow_path(entry.value.strip(), fast.layout, np.ones(len(fast.layout)), dim, True)
    assert fast.n_points > 100
    np.testing.assert_array_equal(fast.coords, slow.coords)
    np.testing.assert_array_equal(fast.values, slow.values)
