"""Reading the data grids of txnames (``upperLimits``, ``expectedUpperLimits``, ``efficiencyMap``).

A v1/v2 point is ``[[[m1*GeV, m2*GeV], [m1*GeV, m2*GeV]], value]``; a branch entry can also be a
``(mass*GeV, width*GeV)`` pair. A v3 point is ``[[c0, c1, ...], value]`` with unit-less coordinates
whose meaning and units come from the txname's ``dataMap``. Either way the result is a
:class:`MapData`: an ``(n_points, n_coords)`` float64 array in GeV plus the values (fb for limits,
plain numbers for efficiencies), and a layout naming what each coordinate is.

The full 1.2.4 database holds millions of mass tokens, so grids take a fast path: check the
bracket skeleton and the unit tokens with C-level string operations, then convert all numbers
at once with numpy. Anything the fast path does not recognise goes through the general value
parser point by point, which also locates errors to the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from tdmcmc.models.database.units import DIMENSIONLESS, ENERGY, UNITS, XSEC, Quantity
from tdmcmc.models.database.values import ValueSyntaxError, _Parser

_NOT_SKELETON = re.compile(r"[^\[\](),]+")
_UNIT_TOKEN = re.compile(r"\*\s*([A-Za-z]+)")
_TO_SPACES = str.maketrans("[](),", "     ")


@dataclass(frozen=True, slots=True)
class Coordinate:
    """What one column of a grid is: a mass or width of a branch position (v1/v2, ``branch`` and
    ``position`` set) or of a graph node (v3, ``node`` set). Always in GeV."""

    quantity: str  # "mass" or "width"
    branch: int | None = None
    position: int | None = None
    node: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class MapData:
    """One grid: ``coords`` (n_points, n_coords) in GeV, ``values`` (n_points,) in fb or unitless."""

    coords: np.ndarray
    values: np.ndarray
    layout: tuple[Coordinate, ...]

    @property
    def n_points(self) -> int:
        return len(self.values)

    @property
    def masses(self) -> np.ndarray:
        """The mass columns only, (n_points, n_masses) in GeV."""
        cols = [i for i, c in enumerate(self.layout) if c.quantity == "mass"]
        return self.coords[:, cols]


class MapError(ValueError):
    """A grid is malformed; ``offset`` is the character position in the value text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _point_span(text: str, start: int) -> int:
    """End offset (exclusive) of the bracketed item starting at `start`."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth == 0:
                return i + 1
    raise MapError("unbalanced '[' in the grid", start)


def point_offset(text: str, index: int) -> int:
    """Character offset of grid point `index` (0-based) in a grid value; used to report errors."""
    depth, count = 0, -1
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
            if depth == 2:
                count += 1
                if count == index:
                    return i
        elif ch in "])":
            depth -= 1
    return 0


def _v12_layout(point: Any, offset: int) -> tuple[Coordinate, ...]:
    if not (isinstance(point, list) and len(point) == 2 and isinstance(point[0], list)):
        raise MapError("a grid point must be [[branch masses, ...], value]", offset)
    layout = []
    for b, branch in enumerate(point[0]):
        if not isinstance(branch, list):
            raise MapError(f"branch {b} of a grid point is not a list of masses", offset)
        for p, entry in enumerate(branch):
            layout.append(Coordinate("mass", branch=b, position=p))
            if isinstance(entry, tuple):
                layout.append(Coordinate("width", branch=b, position=p))
    return tuple(layout)


def _flatten_v12(point: Any, offset: int) -> list[Any]:
    flat: list[Any] = []
    for branch in point[0]:
        for entry in branch:
            flat.extend(entry if isinstance(entry, tuple) else (entry,))
    return flat


def read_map(text: str, *, value_dim: tuple[int, int], data_map: dict[int, tuple] | None = None) -> MapData:
    """Parse a grid value.

    Args:
        text: the value after ``upperLimits:``/``efficiencyMap:`` etc., lines joined with newlines.
        value_dim: the dimension the values must have: ``units.XSEC`` (limits) or
            ``units.DIMENSIONLESS`` (efficiencies).
        data_map: the v3 ``dataMap`` (column -> (node, 'mass'|'totalwidth', unit)), or None for v1/v2.

    Raises:
        MapError: with the character offset of the offending point.
    """
    text = text.strip()
    if not text.startswith("["):
        raise MapError("a grid must start with '['", 0)
    first_start = text.find("[", 1)
    if first_start < 0:
        raise MapError("empty grid", 0)
    first_end = _point_span(text, first_start)
    first = _parse_point(text, first_start, first_end)
    if data_map is None:
        layout = _v12_layout(first, first_start)
        factors = np.ones(len(layout))
    else:
        layout, factors = _v3_layout(data_map, first, first_start)
    fast = _fast_path(text, text[first_start:first_end], layout, factors, value_dim, data_map is None)
    if fast is not None:
        return fast
    return _slow_path(text, layout, factors, value_dim, data_map is None)


def _parse_point(text: str, start: int, end: int) -> Any:
    try:
        parser = _Parser(text[start:end])
        return parser.product()
    except ValueSyntaxError as exc:
        raise MapError(str(exc), start + exc.offset) from None


def _v3_layout(data_map: dict[int, tuple], point: Any, offset: int) -> tuple[tuple[Coordinate, ...], np.ndarray]:
    if not (isinstance(point, list) and len(point) == 2 and isinstance(point[0], list)):
        raise MapError("a v3 grid point must be [[coordinates...], value]", offset)
    n = len(point[0])
    if sorted(data_map) != list(range(n)):
        raise MapError(f"dataMap has columns {sorted(data_map)} but points have {n} coordinates", offset)
    layout, factors = [], []
    for col in range(n):
        node, what, unit_ = data_map[col]
        quantity = {"mass": "mass", "totalwidth": "width"}.get(what)
        if quantity is None:
            raise MapError(f"dataMap column {col}: unknown quantity {what!r}", offset)
        if not (isinstance(unit_, Quantity) and unit_.dim == ENERGY):
            raise MapError(f"dataMap column {col}: unit {unit_!r} is not an energy", offset)
        layout.append(Coordinate(quantity, node=int(node)))
        factors.append(unit_.value)
    return tuple(layout), np.asarray(factors)


def _fast_path(text: str, first: str, layout: tuple[Coordinate, ...], factors: np.ndarray,
               value_dim: tuple[int, int], with_units: bool) -> MapData | None:
    """All-at-once conversion when every point has the first point's shape and units are uniform."""
    point_skeleton = _NOT_SKELETON.sub("", first)
    skeleton = _NOT_SKELETON.sub("", text)
    body = skeleton[1:-1].rstrip(",")
    n = (len(body) + 1) // (len(point_skeleton) + 1)
    if skeleton[0] != "[" or skeleton[-1] != "]" or body != ",".join([point_skeleton] * n):
        return None
    units = set(_UNIT_TOKEN.findall(text))
    n_coords = len(layout)
    value_unit = None
    if value_dim == XSEC:
        value_units = units - {"GeV"}
        if len(value_units) != 1:
            return None
        value_unit = value_units.pop()
        if UNITS.get(value_unit, (0, None))[1] != XSEC or text.count("*" + value_unit) != n:
            return None
    elif units - {"GeV"}:
        return None
    expected_gev = n * n_coords if with_units else 0
    if text.count("*") != expected_gev + (n if value_unit else 0) or text.count("*GeV") != expected_gev:
        return None
    plain = text.replace("*GeV", "")
    if value_unit:
        plain = plain.replace("*" + value_unit, "")
    try:
        numbers = np.array(plain.translate(_TO_SPACES).split(), dtype=np.float64)
    except ValueError:
        return None
    if numbers.size != n * (n_coords + 1):
        return None
    table = numbers.reshape(n, n_coords + 1)
    values = table[:, -1] * (UNITS[value_unit][0] if value_unit else 1.0)
    return MapData(table[:, :-1] * factors, values, layout)


def _slow_path(text: str, layout: tuple[Coordinate, ...], factors: np.ndarray,
               value_dim: tuple[int, int], with_units: bool) -> MapData:
    """Point-by-point parse; slower, but names the offending point."""
    parser = _Parser(text)
    parser.take("[")
    coords, values = [], []
    while not parser.at("]"):
        if parser.peek() is None:
            raise MapError("unbalanced '[': the grid is not closed", len(text))
        start = parser.offset()
        try:
            point = parser.product()
        except ValueSyntaxError as exc:
            raise MapError(str(exc), exc.offset) from None
        coords.append(_check_point(point, layout, value_dim, with_units, start, len(values)))
        values.append(_value(point[1], value_dim, start))
        if parser.at(","):
            parser.take(",")
        elif parser.peek() is None:
            raise MapError("unbalanced '[': the grid is not closed", len(text))
        elif not parser.at("]"):
            raise MapError("expected ',' between grid points", parser.offset())
    parser.take("]")
    if parser.peek() is not None:
        raise MapError("text after the end of the grid", parser.offset())
    return MapData(np.asarray(coords, dtype=np.float64).reshape(len(values), len(layout)) * factors,
                   np.asarray(values, dtype=np.float64), layout)


def _check_point(point: Any, layout: tuple[Coordinate, ...], value_dim: tuple[int, int],
                 with_units: bool, offset: int, index: int) -> list[float]:
    if not (isinstance(point, list) and len(point) == 2 and isinstance(point[0], list)):
        raise MapError(f"grid point {index + 1} must be [[masses...], value]", offset)
    flat = _flatten_v12(point, offset) if with_units else point[0]
    if len(flat) != len(layout):
        raise MapError(f"grid point {index + 1} has {len(flat)} coordinates, the first point has {len(layout)}", offset)
    out = []
    for x in flat:
        if with_units:
            if not (isinstance(x, Quantity) and x.dim == ENERGY):
                raise MapError(f"grid point {index + 1}: mass {x!r} has no energy unit (e.g. *GeV)", offset)
            out.append(x.value)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out.append(float(x))
        else:
            raise MapError(f"grid point {index + 1}: coordinate {x!r} is not a number", offset)
    return out


def _value(v: Any, value_dim: tuple[int, int], offset: int) -> float:
    if value_dim == DIMENSIONLESS:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise MapError(f"efficiency {v!r} is not a plain number", offset)
    if isinstance(v, Quantity) and v.dim == value_dim:
        return v.value
    raise MapError(f"limit {v!r} needs a cross-section unit (fb, pb)", offset)
