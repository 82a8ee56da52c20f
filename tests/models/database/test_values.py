"""The literal value parser: units, containers, errors; property-based round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdmcmc.models.database.units import ENERGY, INV_XSEC, XSEC, Quantity
from tdmcmc.models.database.values import ValueSyntaxError, parse_value


@pytest.mark.parametrize(
    ("text", "value", "dim"),
    [
        ("13*TeV", 13000.0, ENERGY),
        ("13.0*TeV", 13000.0, ENERGY),
        ("8.0*TeV", 8000.0, ENERGY),
        ("36.1/fb", 36.1, INV_XSEC),
        ("139./fb", 139.0, INV_XSEC),
        ("20.3/pb", 0.0203, INV_XSEC),
        ("0.861*fb", 0.861, XSEC),
        ("9.5035E+01*pb", 95035.0, XSEC),
        ("1.8613E+02*GeV", 186.13, ENERGY),
        ("500*MeV", 0.5, ENERGY),
    ],
)
def test_units_convert_to_canonical(text: str, value: float, dim: tuple[int, int]) -> None:
    q = parse_value(text)
    assert isinstance(q, Quantity)
    assert q.dim == dim
    assert q.value == pytest.approx(value, rel=1e-12)


def test_containers_and_constants() -> None:
    assert parse_value('"ar1","ar2", "ar3"') == ("ar1", "ar2", "ar3")
    assert parse_value("[[35.36, 260.9], [260.9, 7273]]") == [[35.36, 260.9], [260.9, 7273]]
    assert parse_value("{'a.json': ['SRlow', 'SRhigh']}") == {"a.json": ["SRlow", "SRhigh"]}
    assert parse_value("{0: (1, 'mass', GeV)}") == {0: (1, "mass", Quantity(1.0, ENERGY))}
    assert parse_value("None") is None and parse_value("True") is True and parse_value("False") is False
    assert parse_value("['MET', 'MET']") == ["MET", "MET"]
    assert parse_value("[b, W]") == ["b", "W"]
    assert parse_value("1e-05") == 1e-05 and parse_value("611.0") == 611.0 and parse_value("68") == 68
    assert parse_value("-2.5") == -2.5


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("[1, 2", 0, "unbalanced"),
        ("[1 2]", 3, "expected ','"),
        ("13*TeVV", 3, "unknown unit"),
        ("3*", 2, "end of value"),
        ("[1, 2]]", 6, "after the value"),
        ("1.0 $", 4, "unexpected character"),
        ("", 0, "empty"),
    ],
)
def test_errors_carry_offsets(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(ValueSyntaxError) as err:
        parse_value(text)
    assert err.value.offset == offset
    assert fragment in str(err.value)


# ---- property-based: printing a random nested value and parsing it back gives it again

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z").filter(
    lambda s: s not in {"None", "True", "False", "none", "true", "false", "eV", "keV", "MeV", "GeV", "TeV",
                        "ab", "fb", "pb", "nb"})
scalars = st.one_of(st.integers(-10**12, 10**12), finite, st.booleans(), st.none(), names,
                    st.text("abcXYZ 0123-_.:/", max_size=12).map(lambda s: ("str", s)))
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.lists(children, max_size=4).map(tuple),
                               st.dictionaries(st.integers(0, 99), children, max_size=3)),
    max_leaves=20,
)


def _render(v) -> str:
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "str" and isinstance(v[1], str):
        return repr(v[1])
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + ", ".join(_render(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(_render(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return "{" + ", ".join(f"{k}: {_render(x)}" for k, x in v.items()) + "}"


def _expected(v):
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "str" and isinstance(v[1], str):
        return v[1]
    if isinstance(v, list):
        return [_expected(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_expected(x) for x in v)
    if isinstance(v, dict):
        return {k: _expected(x) for k, x in v.items()}
    return v


@settings(max_examples=300, deadline=None)
@given(values)
def test_render_parse_round_trip(v) -> None:
    assert parse_value(_render(v)) == _expected(v)


@settings(max_examples=300, deadline=None)
@given(finite.filter(lambda x: abs(x) < 1e300), st.sampled_from(["GeV", "TeV", "fb", "pb"]))
def test_quantities_round_trip(x: float, unit_name: str) -> None:
    factor = {"GeV": 1.0, "TeV": 1e3, "fb": 1.0, "pb": 1e3}[unit_name]
    q = parse_value(f"{x!r}*{unit_name}")
    assert math.isclose(q.value, x * factor, rel_tol=1e-15, abs_tol=0.0)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_fails_only_with_value_syntax_error(text: str) -> None:
    try:
        parse_value(text)
    except ValueSyntaxError as exc:
        assert 0 <= exc.offset <= len(text)
