"""Tests of the constraint/condition parser: grammar, errors, round trips and every real txname."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdmcmc.models.database.constraints import (
    BSM_LABELS,
    SM_LABELS,
    Condition,
    Constraint,
    ConstraintSyntaxError,
    Element,
    GraphConstraint,
    matches,
    parse_condition,
    parse_constraint,
    sm_states,
)

A = "[[['b','W']],[['b','W']]]"
B = "[[['t']],[['t']]]"
EL_A = Element(((("b", "W"),), (("b", "W"),)))
EL_B = Element(((("t",),), (("t",),)))


def terms(text: str) -> list[tuple[float, tuple]]:
    """(coefficient, branches as written) of a parsed bracket constraint."""
    constraint = parse_constraint(text)
    assert isinstance(constraint, Constraint)
    return [(coef, element.branches) for coef, element in constraint.terms]


# ---------------------------------------------------------------------------------------------
# Grammar


def test_single_element_quoted_and_unquoted_give_the_same_structure():
    assert terms(B) == [(1.0, ((("t",),), (("t",),)))]
    assert terms("[[[b, W]],[[b, W]]]") == [(1.0, ((("b", "W"),), (("b", "W"),)))]
    assert terms('[[["b", "W"]], [["b", "W"]]]') == terms(A)


def test_two_step_chain_and_empty_branches():
    assert terms("[[['b'],['higgs']],[['b'],['higgs']]]") == [(1.0, ((("b",), ("higgs",)), (("b",), ("higgs",))))]
    assert terms("[[],[['*','*']]]") == [(1.0, ((), (("*", "*"),)))]
    assert terms("[[],[]]") == [(1.0, ((), ()))]
    assert terms("[[[*anySM]],[]]") == [(1.0, ((("*anySM",),), ()))]


def test_sum_keeps_order_of_appearance():
    text = "[[['e+']],[['e-']]]+[[['mu+']],[['mu-']]]"
    assert terms(text) == [(1.0, ((("e+",),), (("e-",),))), (1.0, ((("mu+",),), (("mu-",),)))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"2.228*({A})", [2.228]),
        (f"3.375*{A}", [3.375]),
        (f"2.23 * {A}", [2.23]),
        (f"71.*({A} + {B})", [71.0, 71.0]),
        (f"9./4.*{A}", [2.25]),
        (f"27./8.*{A}", [3.375]),
        (f"{A}*2", [2.0]),
        (f"{A}/4", [0.25]),
        (f"2*(3*{A} + ({B} + {A}))", [8.0, 2.0]),
        (f"2.*( {A} + 0.5*({B}) )", [2.0, 1.0]),
    ],
)
def test_prefactors_distribute(text, expected):
    got = terms(text)
    assert [coef for coef, _ in got] == pytest.approx(expected, rel=1e-15)
    assert [branches for _, branches in got] == [EL_A.branches, EL_B.branches][: len(expected)]


def test_duplicate_elements_merge_and_keep_the_first_spelling():
    swapped = "[[['mu+']],[['e+']]]"
    got = terms(f"[[['e+']],[['mu+']]] + 2*{swapped}")
    assert got == [(3.0, ((("e+",),), (("mu+",),)))]


def test_canonical_order_ignores_branch_order_and_particle_order_in_a_vertex():
    x = Element(((("t",), ("jet", "b")), (("W",),)))
    swapped = Element(((("W",),), (("t",), ("b", "jet"))))
    assert x == swapped and hash(x) == hash(swapped)
    assert x.branches != swapped.branches  # written order is kept for printing
    assert x.canonical().branches == ((("W",),), (("t",), ("b", "jet")))
    assert x.n_vertices == (2, 1) and swapped.n_vertices == (1, 2)
    # the order of the vertices along a branch is physics, not notation
    assert Element(((("t",), ("jet",)), ())) != Element(((("jet",), ("t",)), ()))
    assert len({x, swapped, x.canonical()}) == 1


def test_broken_quoting_of_real_files_parses_like_smodels():
    # CMS-SUS-16-035 T5WWoff constraint with ''l-','nu'', TChipChimSlepSnu conditions with [L-']
    text = "45.35*([[['jet','jet'],['l+','nu']],[['jet','jet'],['l+','nu']]]+[[['jet','jet'],['l-','nu']],[['jet','jet'],[''l-','nu'']]])"
    assert terms(text)[1] == (45.35, ((("jet", "jet"), ("l-", "nu")), (("jet", "jet"), ("l-", "nu"))))
    assert terms("[[['nu'],['L+']],[['nu'],[L-']]]") == [(1.0, ((("nu",), ("L+",)), (("nu",), ("L-",))))]


def test_str_prints_bracket_form_and_round_trips():
    constraint = parse_constraint(f"2.25*([[[b, W]],[[b, W]]] + {B})")
    assert str(constraint) == f"2.25*{A} + 2.25*{B}"
    assert parse_constraint(str(constraint)) == constraint
    assert str(EL_A) == A


def test_condition_none_and_calls():
    assert parse_condition("None") == () and parse_condition(" none ") == ()
    conditions = parse_condition(
        "Cgtr([[['L-'],['nu']],[['nu'],['L+']]],3.*[[['ta-'],['nu']],[['nu'],['L+']]]); cSim([[['t']],[['t']]],2.0*([[['b']],[['b']]]));"
    )
    assert [c.kind for c in conditions] == ["gtr", "sim"]
    gtr, sim = conditions
    assert [a.terms[0][0] for a in gtr.args] == [1.0, 3.0]
    assert gtr.args[1].elements == (Element(((("ta-",), ("nu",)), (("nu",), ("L+",)))),)
    assert sim.args[1].terms == ((2.0, Element(((("b",),), (("b",),)))),)
    assert parse_condition(";".join(str(c) for c in conditions)) == conditions


def test_single_argument_csim_and_lowercase_cgtr():
    (sim,) = parse_condition(f"Csim({A}+2.*{B})")
    assert sim == Condition("sim", (Constraint(((1.0, EL_A), (2.0, EL_B))),))
    (gtr,) = parse_condition(f"cGtr({A},{B})")
    assert gtr.kind == "gtr" and gtr.args[0].elements == (EL_A,)


# ---------------------------------------------------------------------------------------------
# v3 graphs


def test_graph_structure_with_automatic_numbering():
    constraint = parse_constraint("{(PV > Zprime(1)),(Zprime(1) > jetb(2),jetb(3))}")
    assert isinstance(constraint, GraphConstraint)
    ((coef, graph),) = constraint.terms
    assert coef == 1.0
    assert graph.nodes == ((0, "PV"), (1, "Zprime"), (2, "jetb"), (3, "jetb"))
    assert graph.edges == ((0, (1,)), (1, (2, 3)))
    assert graph.to_element() is None  # a resonance has no bracket form
    # unindexed daughters are numbered after the largest written index, in order of appearance
    (graph,) = parse_constraint("{(PV > C1(1),MET(3)), (C1(1) > *anySM,MET(2))}").graphs
    assert graph.nodes == ((0, "PV"), (1, "C1"), (2, "MET"), (3, "MET"), (4, "*anySM"))
    assert graph.daughters(1) == (2, 4) and graph.daughters(3) == ()
    assert graph.to_element() == Element(((("*anySM",),), ()))
    assert parse_constraint(str(graph)).graphs == (graph,)


def test_graph_to_element_chain_and_rpv():
    text = (
        "{(PV > anyBSM(1), anyBSM(4)), (anyBSM(1) > t,anyBSM(2)), (anyBSM(4) > t,anyBSM(5)),"
        " (anyBSM(2) > W,MET(3)), (anyBSM(5) > W,MET(6))}"
    )
    element = parse_constraint(text).graphs[0].to_element()
    assert element.branches == ((("t",), ("W",)), (("t",), ("W",)))
    rpv = "{(PV > anyBSM(1), anyBSM(3)), (anyBSM(1) > t,anyBSM(2)), (anyBSM(3) > t,anyBSM(4)), (anyBSM(2) > jet,b), (anyBSM(4) > jet,b)}"
    assert parse_constraint(rpv).graphs[0].to_element() is None
    split = "{(PV > anyBSM(1),MET(2)), (anyBSM(1) > anyBSM(3),anyBSM(4))}"
    assert parse_constraint(split).graphs[0].to_element() is None


def test_sums_of_graphs():
    g1 = "{(PV > Zprime(1)),(Zprime(1) > b(2),b(3))}"
    g2 = "{(PV > Zprime(1)),(Zprime(1) > t(2),t(3))}"
    constraint = parse_constraint(f"2*({g1} + {g2}) + {g1}")
    assert [coef for coef, _ in constraint.terms] == [3.0, 2.0]
    assert constraint.graphs[1].label(2) == "t"


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("text", "column", "start"),
    [
        ("[[['t']],[['t']]", 1, "unbalanced bracket at column 1"),  # never closed
        ("[[['t']],[['t']]]]", 18, "unbalanced bracket at column 18"),  # one too many
        ("[[['t')],[['t']]]", 7, "unbalanced bracket at column 7"),  # wrong kind
        ("2.*([[['t']],[['t']]]", 4, "unbalanced bracket at column 4"),
        ("[[['t']] [['t']]]", 10, "unexpected token '[' at column 10"),  # missing comma between branches
        ("[[['t' 'b']],[['t']]]", 8, "unexpected token \"'b'\" at column 8"),  # missing comma in a vertex
        ("[[['t']],[['t']]] & x", 19, "unexpected token '&' at column 19"),
        ("[[['t']],[['t']]] + ", 21, "unexpected end of text at column 21"),
        ("[[[t]],[[t]],[[t]]]", 13, "a third branch at column 13"),
        ("[[[]],[[t]]]", 4, "unexpected token ']' at column 4"),  # empty vertex
        ("2*3", 1, "a number is not a constraint at column 1"),
        ("[[[t]],[[t]]] + 2", 17, "a number added to an element at column 17"),
        ("[[[t]],[[t]]]*[[[b]],[[b]]]", 14, "a product of two elements at column 14"),
        ("", 1, "empty constraint at column 1"),
        ("{(PV > X(1)), (X(1) > Y(2)), (Y(3) > b)}", 31, "Y(3) not connected to PV at column 31"),
        ("{(PV > X(1)), (Z(1) > b)}", 16, "Z(1) at column 16"),
        ("{(PV > X(1)), (X > b)}", 16, "decaying node 'X' at column 16"),
    ],
)
def test_constraint_errors_name_the_column(text, column, start):
    with pytest.raises(ConstraintSyntaxError) as info:
        parse_constraint(text)
    assert info.value.column == column
    assert str(info.value).startswith(start)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "column", "start"),
    [
        (f"Cfoo({A},{B})", 1, "unknown condition 'Cfoo' at column 1"),
        (f"Cgtr({A})", 1, "Cgtr with 1 arguments at column 1"),
        (f"Cgtr({A},{B}) Csim({A})", 51, "unexpected token 'Csim' at column 51"),
        (f"Cgtr({A},{B}", 5, "unbalanced bracket at column 5"),
    ],
)
def test_condition_errors_name_the_column(text, column, start):
    with pytest.raises(ConstraintSyntaxError) as info:
        parse_condition(text)
    assert info.value.column == column
    assert str(info.value).startswith(start)


# ---------------------------------------------------------------------------------------------
# Labels


def test_multi_particle_labels_follow_smodels_database_particles():
    assert matches("L", "ta-") and matches("L", "e+") and not matches("l", "ta+")
    assert matches("l+", "mu+") and not matches("l+", "mu-") and not matches("L-", "ta+")
    assert matches("jet", "g") and matches("jet", "c") and matches("jet", "pi0") and not matches("jet", "b")
    assert matches("jetb", "b") and not matches("jetb", "pi+")
    assert matches("t", "t+") and not matches("t+", "t") and matches("W", "W-")
    assert matches("nu", "nuta") and matches("q", "s") and not matches("q", "c")
    assert all(matches(any_sm, "higgs") for any_sm in ("*", "anySM", "*anySM"))
    assert matches("jet", "q")  # a group covered by a larger group
    with pytest.raises(ValueError, match="unknown SM particle label 'MET'"):
        matches("MET", "e-")
    assert len(SM_LABELS["L"]) == 6 and len(SM_LABELS["l"]) == 4 and len(SM_LABELS["jet"]) == 8


# ---------------------------------------------------------------------------------------------
# Property tests: random expressions printed to text parse back to the same structure

SM_POOL = ["t", "b", "W", "W+", "Z", "higgs", "jet", "e+", "mu-", "ta", "l", "L+", "nu", "photon", "q", "c", "*", "*anySM"]
QUOTES = ["", "'", '"']

vertices = st.lists(st.sampled_from(SM_POOL), min_size=1, max_size=3).map(tuple)
branches = st.lists(vertices, max_size=3).map(tuple)
elements = st.tuples(branches, branches)
prefactors = st.sampled_from([("2", 2.0), ("2.25", 2.25), ("71.", 71.0), ("9./4.", 2.25), ("3.375", 3.375), (".5", 0.5)])


@st.composite
def element_texts(draw) -> tuple[str, tuple]:
    branches_ = draw(elements)
    space = draw(st.sampled_from(["", " "]))

    def label(name: str) -> str:
        quote = draw(st.sampled_from(QUOTES))
        return f"{quote}{name}{quote}"

    def branch(b: tuple) -> str:
        return "[" + f",{space}".join("[" + f",{space}".join(label(p) for p in v) + "]" for v in b) + "]"

    return "[" + f",{space}".join(branch(b) for b in branches_) + "]", branches_


@st.composite
def expressions(draw, depth: int = 0) -> tuple[str, list[tuple[float, tuple]]]:
    """(text, [(coefficient, branches), ...]) with duplicates not yet merged."""
    kind = draw(st.sampled_from(["element", "sum", "scaled"] if depth < 3 else ["element"]))
    if kind == "element":
        text, branches_ = draw(element_texts())
        return text, [(1.0, branches_)]
    if kind == "sum":
        parts = [draw(expressions(depth + 1)) for _ in range(draw(st.integers(2, 3)))]
        joiner = draw(st.sampled_from(["+", " + "]))
        return joiner.join(text for text, _ in parts), [term for _, part in parts for term in part]
    (factor_text, factor), (text, inner) = draw(prefactors), draw(expressions(depth + 1))
    text = f"({text})"
    scaled = f"{factor_text}*{text}" if draw(st.booleans()) else f"{text} * {factor_text}"
    return scaled, [(factor * coef, branches_) for coef, branches_ in inner]


def merged(raw: list[tuple[float, tuple]]) -> list[tuple[float, tuple]]:
    """Merge equal elements by their canonical form, written independently of the parser."""
    out: dict[tuple, list] = {}
    for coef, (b1, b2) in raw:
        key = tuple(sorted((tuple(tuple(sorted(v)) for v in b) for b in (b1, b2)), key=lambda b: (len(b), b)))
        out.setdefault(key, [0.0, (b1, b2)])[0] += coef
    return [(coef, branches_) for coef, branches_ in out.values()]


@settings(max_examples=300, deadline=None)
@given(expressions())
def test_random_expressions_parse_to_the_generated_structure(case):
    text, raw = case
    expected = merged(raw)
    got = terms(text)
    assert [branches_ for _, branches_ in got] == [branches_ for _, branches_ in expected]
    for (coef, _), (want, _) in zip(got, expected, strict=True):
        assert math.isclose(coef, want, rel_tol=1e-12)
    constraint = parse_constraint(text)
    assert parse_constraint(str(constraint)) == constraint  # printing round-trips exactly


def graph_text(branches_: tuple) -> str:
    """The v3 form of a bracket element, built like SModelS' bracketToProcessStr (anyBSM, MET)."""
    count = iter(range(1, 1000))
    tops, decays = [], []
    for branch in branches_:
        mother = next(count)
        tops.append(f"{'anyBSM' if branch else 'MET'}({mother})")
        for step, vertex in enumerate(branch):
            daughter = next(count)
            bsm = f"{'anyBSM' if step + 1 < len(branch) else 'MET'}({daughter})"
            decays.append(f"(anyBSM({mother}) > {bsm}," + ",".join(vertex) + ")")
            mother = daughter
    return "{" + ", ".join([f"(PV > {','.join(tops)})", *decays]) + "}"


@settings(max_examples=200, deadline=None)
@given(elements)
def test_graph_of_a_bracket_element_converts_back(branches_):
    constraint = parse_constraint(graph_text(branches_))
    (graph,) = constraint.graphs
    assert graph.to_element().branches == branches_
    assert parse_constraint(str(graph)).graphs == (graph,)


# ---------------------------------------------------------------------------------------------
# Real data: every constraint and condition of both databases


def txname_values(root: Path) -> list[tuple[Path, str, str]]:
    """(file, constraint, condition) for every txname file; keys sit in the first lines."""
    found = []
    for path in sorted(root.rglob("*.txt")):
        if path.name in ("globalInfo.txt", "dataInfo.txt"):
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            head = [line for _, line in zip(range(40), handle)]
        keys = {}
        for line in head:
            key, sep, value = line.partition(":")
            if sep and key in ("txName", "constraint", "condition"):
                keys[key] = value.split("#")[0].strip()  # no '#' in the grammar
        if "txName" in keys:
            found.append((path, keys["constraint"], keys["condition"]))
    return found


def measure(root: Path) -> tuple[Counter, set[str], set[str]]:
    counts: Counter = Counter()
    sm_labels: set[str] = set()
    graph_labels: set[str] = set()
    failures = []
    for path, constraint_text, condition_text in txname_values(root):
        counts["files"] += 1
        try:
            constraint = parse_constraint(constraint_text)
            conditions = parse_condition(condition_text)
        except ConstraintSyntaxError as error:
            failures.append(f"{path}: {error}")
            continue
        if isinstance(constraint, GraphConstraint):
            counts["graph"] += 1
            for graph in constraint.graphs:
                graph_labels.update(label for _, label in graph.nodes)
                counts["graph with bracket form"] += graph.to_element() is not None
        else:
            counts["elements"] += len(constraint.terms)
            counts["sum"] += len(constraint.terms) > 1
            counts["prefactor"] += any(coef != 1.0 for coef, _ in constraint.terms)
            counts["both branches empty"] += any(e.n_vertices == (0, 0) for e in constraint.elements)
        counts["with conditions"] += bool(conditions)
        counts["conditions"] += len(conditions)
        for item in [constraint, *(arg for c in conditions for arg in c.args)]:
            for element in getattr(item, "elements", ()):
                sm_labels.update(label for branch in element.branches for vertex in branch for label in vertex)
    assert failures == []
    return counts, sm_labels, graph_labels


@pytest.mark.realdata
def test_every_constraint_and_condition_of_release_124(db124):
    counts, sm_labels, graph_labels = measure(db124)
    assert dict(counts) == {
        "files": 951,
        "elements": 1091,
        "sum": 59,
        "prefactor": 90,
        "both branches empty": 14,
        "with conditions": 63,
        "conditions": 336,
    }
    assert graph_labels == set()
    assert len(sm_labels) == 28 and all(sm_states(label) for label in sm_labels)  # raises if unknown


@pytest.mark.realdata
def test_every_constraint_and_condition_of_release_300_extra(db300extra):
    counts, sm_labels, graph_labels = measure(db300extra)
    assert dict(counts) == {
        "files": 1036,
        "graph": 154,
        "graph with bracket form": 61,
        "elements": 994,
        "sum": 64,
        "prefactor": 13,
        "both branches empty": 116,
        "with conditions": 3,
        "conditions": 5,
    }
    assert len(sm_labels) == 29 and all(sm_states(label) for label in sm_labels)  # raises if unknown
    assert graph_labels == {"PV", "Zprime", "anyBSM", "MET", "C1", "C1+", "C1-", "*anySM", "jet", "jetb", "b", "t", "W", "mu+", "mu-"}
    assert all(label.lstrip("*") in SM_LABELS or label in BSM_LABELS | {"PV"} for label in graph_labels)
