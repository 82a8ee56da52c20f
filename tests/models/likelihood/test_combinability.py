"""Combination-matrix reader and the combinability graph (rules of method reference §6.1)."""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.errors import UserError
from tdmcmc.models.likelihood.combinability import (analysis_id, build_graph, graph_for_database,
                                                    parse_allow_lists, read_allow_lists,
                                                    results_with_likelihood)

SAMPLE = """---
A-1: # comment after a key
- A-2
- A-3 # trailing comment
# - A-4   (commented out)
A-2:
A-3: [A-5, 'A-6']
A-3:SR1:
- A-2:SRx
A-7-agg:
  - A-9*
...
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_parse_subset_with_line_numbers():
    parsed = parse_allow_lists(SAMPLE, "m.yaml")
    assert parsed == {"A-1": (2, [("A-2", 3), ("A-3", 4)]), "A-2": (6, []),
                      "A-3": (7, [("A-5", 7), ("A-6", 7)]), "A-3:SR1": (8, [("A-2:SRx", 9)]),
                      "A-7-agg": (10, [("A-9*", 11)])}


@pytest.mark.parametrize("text, line, words", [
    ("- A-1\nA-2:\n", 1, "before any analysis key"),
    ("A-1:\n- A-2\nA-1:\n", 3, "duplicate key 'A-1' (first at line 1)"),
    ("A-1:\n- A-2\njunk here\n", 3, "expected 'analysis-id:'"),
    ("A-1:\n\t- A-2\n", 2, "tab in indentation"),
    ("A-1:\n  A-2:\n", 2, "unexpected indented line"),
    ("A-1: A-2\n", 1, "expected a list after the key"),
    ("A-1:\n- {A-2}\n", 2, "expected an analysis id"),
])
def test_parse_errors_name_file_and_line(text, line, words):
    with pytest.raises(UserError) as err:
        parse_allow_lists(text, "bad.yaml")
    assert f"bad.yaml:{line}:" in str(err.value) and words in str(err.value)


def test_read_merges_suffixes_and_skips_signal_regions(tmp_path):
    _write(tmp_path, "X8.yaml", SAMPLE)
    _write(tmp_path, "Y13.yaml", "A-7:\n- A-8-eff\n")
    allow = read_allow_lists(tmp_path)
    assert allow.entries == {"A-1": ("A-2", "A-3"), "A-2": (), "A-3": ("A-5", "A-6"),
                             "A-7": ("A-9*", "A-8")}
    assert allow.ignored_sr_keys == 1
    assert allow.sources["A-7"] == "X8.yaml:10, Y13.yaml:1"
    with pytest.raises(UserError, match="already defined"):
        read_allow_lists([tmp_path / "X8.yaml", _write(tmp_path, "Z.yml", "A-2:\n")])
    with pytest.raises(UserError, match="not found"):
        read_allow_lists(tmp_path / "missing.yaml")


def test_symmetrisation_is_either_side(tmp_path):
    allow = read_allow_lists(_write(tmp_path, "m.yaml", SAMPLE))
    assert allow.allows("A-1", "A-2") and allow.allows("A-2", "A-1")   # only A-1 lists A-2
    assert allow.lists("A-1", "A-2") and not allow.lists("A-2", "A-1")
    assert allow.allows("A-7-eff", "A-99-agg") and allow.allows("A-99", "A-7")  # wildcard, suffixes
    assert not allow.allows("A-2", "A-5")            # neither lists the other
    assert not allow.allows("A-1", "A-1-eff")        # an analysis never combines with itself
    assert allow.one_sided() == [("A-1", "A-2"), ("A-1", "A-3")]


def test_analysis_id():
    assert analysis_id("CMS-PAS-SUS-16-052-agg") == "CMS-PAS-SUS-16-052"
    assert analysis_id("ATLAS-SUSY-2016-07-eff") == "ATLAS-SUSY-2016-07"
    assert analysis_id("CMS-SUS-16-048-ma5") == "CMS-SUS-16-048"
    assert analysis_id("ATLAS-SUSY-2018-05-ewk") == "ATLAS-SUSY-2018-05-ewk"


def test_graph_rules_and_twins(tmp_path):
    allow = read_allow_lists(_write(tmp_path, "m.yaml", "A-1:\n- A-2\n"))
    ids = ["A-1", "A-1-eff", "A-2", "A-3", "B-1", "A-1"]
    exp = ["ATLAS", "ATLAS", "ATLAS", "ATLAS", "CMS", "ATLAS"]
    sqrts = [13, 13, 13, 13, 13, 8]
    with pytest.raises(ValueError, match="disagree"):
        build_graph(ids, exp, sqrts, allow)
    g = build_graph(ids[:5] + ["A-4"], exp, sqrts, allow)
    assert g.analyses == ("A-4", "A-1", "A-2", "A-3", "B-1")       # sorted by (experiment, sqrts, id)
    assert g.result_node.tolist() == [1, 1, 2, 3, 4, 0]
    expected = {("A-1", "A-2"), ("A-4", "A-1"), ("A-4", "A-2"), ("A-4", "A-3"), ("A-4", "B-1"),
                ("A-1", "B-1"), ("A-2", "B-1"), ("A-3", "B-1")}
    got = {(g.analyses[i], g.analyses[k]) for i, k in zip(*np.nonzero(np.triu(g.adjacency)))}
    assert got == expected
    assert np.array_equal(g.adjacency, g.adjacency.T) and not g.adjacency.diagonal().any()
    assert g.combinable("A-1-eff", "A-2") and not g.combinable("A-1", "A-3")
    with pytest.raises(UserError, match="not in the combination graph"):
        g.node("C-9")
    sub = build_graph(ids[:5] + ["A-4"], exp, sqrts, allow, include=[1, 0, 1, 1, 0, 1])
    assert sub.analyses == ("A-4", "A-1", "A-2", "A-3") and sub.result_node.tolist() == [1, -1, 2, 3, -1, 0]


@pytest.fixture(scope="module")
def matrix(shared):
    return read_allow_lists(shared / "data" / "raw" / "protomodels" / "combination-matrix")


def test_real_matrix_facts(matrix):
    assert len(matrix.entries) == 113 and matrix.ignored_sr_keys == 264
    assert len(matrix.one_sided()) == 105
    # Listed by ATLAS-SUSY-2015-09 only: combinable under the either-side rule.
    assert matrix.lists("ATLAS-SUSY-2015-09", "ATLAS-SUSY-2018-32")
    assert not matrix.lists("ATLAS-SUSY-2018-32", "ATLAS-SUSY-2015-09")
    assert matrix.allows("ATLAS-SUSY-2018-32", "ATLAS-SUSY-2015-09")
    # The toy-walk pair (method reference §9): neither lists the other.
    assert not matrix.allows("CMS-SUS-16-050", "CMS-SUS-19-006")
    # Two members of the paper's best combination (§8.1).
    assert matrix.allows("ATLAS-SUSY-2016-07", "ATLAS-SUSY-2016-16")


def test_real_database_graph(db124_compiled, matrix):
    arrays = db124_compiled.arrays
    g_all = graph_for_database(arrays, matrix, "all")
    assert g_all.n_nodes == 79            # 103 folders, 80 ids, -agg merged with its UL twin
    assert [len(n) for _, n in g_all.groups()] == [17, 23, 18, 21]
    assert g_all.node("CMS-PAS-SUS-16-052-agg") == g_all.node("CMS-PAS-SUS-16-052")
    llhd = results_with_likelihood(arrays)
    assert llhd.sum() == 48 and llhd[np.asarray(arrays.result_is_em, bool)].all()
    g = graph_for_database(arrays, matrix)
    assert g.n_nodes == 45 and [len(n) for _, n in g.groups()] == [9, 11, 12, 13]
    # The paper's best combination (§8.1) and the website's variant (+ATLAS-SUSY-2013-15) are
    # cliques here too, although the paper used the 2020 lists, not this 2024 matrix.
    best = ["ATLAS-SUSY-2013-02", "ATLAS-SUSY-2016-07", "ATLAS-SUSY-2016-16", "CMS-SUS-13-012",
            "CMS-SUS-16-050", "ATLAS-SUSY-2013-15"]
    assert all(g.combinable(a, b) for i, a in enumerate(best) for b in best[i + 1:])
    with pytest.raises(UserError, match="include"):
        graph_for_database(arrays, matrix, "some")
