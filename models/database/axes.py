"""The ``axes`` key of v1/v2 txnames: mass planes as expressions in x, y (z, w).

``axes: [[x, y], [x, y]]; [[x, 0.5*x + 0.5*y, y], [x, 0.5*x + 0.5*y, y]]`` has two planes. Each
plane holds one list per branch; an entry is a mass expression or a ``(mass, width)`` pair. The
expressions are arithmetic in the plane variables (``y*(x - 60.0) + 60.0`` occurs), so they are
kept as small syntax trees that can be evaluated, not as affine coefficients. SModelS uses the
axes for plots and validation only; interpolation works on the full mass vectors of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from tdmcmc.models.database.values import ValueSyntaxError, tokenize

VARIABLES = ("x", "y", "z", "w")

Node = Union[float, str, tuple[str, "Node", "Node"]]


@dataclass(frozen=True, slots=True)
class AxisExpr:
    """One mass (or width) expression of an axes plane, in GeV."""

    text: str
    tree: Node

    def variables(self) -> frozenset[str]:
        def walk(node: Node) -> set[str]:
            if isinstance(node, str):
                return {node}
            if isinstance(node, tuple):
                return walk(node[1]) | walk(node[2])
            return set()

        return frozenset(walk(self.tree))

    def __call__(self, **values: float) -> float:
        def ev(node: Node) -> float:
            if isinstance(node, float):
                return node
            if isinstance(node, str):
                return values[node]
            op, a, b = node
            a, b = ev(a), ev(b)
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]

        return ev(self.tree)


# A branch entry is a mass expression or a (mass, width) pair.
AxisEntry = Union[AxisExpr, tuple[AxisExpr, AxisExpr]]
Plane = tuple[tuple[AxisEntry, ...], ...]


class _ExprParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def pos(self) -> int:
        return self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)

    def expect(self, symbol: str) -> None:
        if self.peek() != symbol:
            found = self.peek()
            raise ValueSyntaxError(f"expected {symbol!r} but found {found!r}" if found else
                                   f"expected {symbol!r} at end of axes", self.pos())
        self.i += 1

    def whole_plane(self) -> Plane:
        plane = self.plane()
        if self.peek() is not None:
            raise ValueSyntaxError(f"unexpected {self.peek()!r} after the plane", self.pos())
        return plane

    def plane(self) -> Plane:
        self.expect("[")
        branches = [self.branch()]
        while self.peek() == ",":
            self.i += 1
            branches.append(self.branch())
        self.expect("]")
        return tuple(branches)

    def branch(self) -> tuple[AxisEntry, ...]:
        self.expect("[")
        entries: list[AxisEntry] = []
        while self.peek() != "]":
            if entries:
                self.expect(",")
            entries.append(self.entry())
        self.expect("]")
        return tuple(entries)

    def entry(self) -> AxisEntry:
        if self.peek() == "(":
            # A (mass, width) pair, unless it is a parenthesised expression like (x - y)*2.
            save = self.i
            self.i += 1
            mass = self.expr()
            if self.peek() == ",":
                self.i += 1
                width = self.expr()
                self.expect(")")
                return (mass, width)
            self.i = save
        return self.expr()

    def expr(self) -> AxisExpr:
        start = self.pos()
        tree = self.sum()
        end = self.pos()
        return AxisExpr(self.text[start:end].strip(), tree)

    def sum(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.peek()
            self.i += 1
            node = (op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() in ("*", "/"):
            op = self.peek()
            self.i += 1
            node = (op, node, self.factor())
        return node

    def factor(self) -> Node:
        if self.i >= len(self.tokens):
            raise ValueSyntaxError("unexpected end of axes", len(self.text))
        kind, token, pos = self.tokens[self.i]
        self.i += 1
        if kind == "number":
            return float(token)
        if kind == "name" and token in VARIABLES:
            return token
        if token == "-":
            return ("-", 0.0, self.factor())
        if token == "(":
            node = self.sum()
            self.expect(")")
            return node
        raise ValueSyntaxError(f"unexpected {token!r} in a mass expression", pos)


def parse_axes(text: str) -> tuple[Plane, ...]:
    """Parse an ``axes`` value into its ``;``-separated planes; ValueSyntaxError carries the offset."""
    planes: list[Plane] = []
    offset = 0
    for chunk in text.split(";"):
        try:
            planes.append(_ExprParser(chunk).whole_plane())
        except ValueSyntaxError as exc:
            raise ValueSyntaxError(str(exc), exc.offset + offset) from None
        offset += len(chunk) + 1
    return tuple(planes)


def parse_expression(text: str) -> AxisExpr:
    """Parse one mass expression such as ``'x-100'``."""
    parser = _ExprParser(text)
    expr = parser.expr()
    if parser.peek() is not None:
        raise ValueSyntaxError(f"unexpected {parser.peek()!r} in a mass expression", parser.pos())
    return expr


def parse_axes_map(text: str) -> tuple[Plane, ...] | tuple[dict[int, AxisExpr], ...]:
    """Parse a 3.x ``axesMap``: a list of planes in the ``axes`` bracket form
    (``[[[x, y], [y]]]``), or a list of ``{data column: expression}`` dicts (``[{0: 'x', 1: 'y'}]``)."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ValueSyntaxError("axesMap must be a list", 0)
    if "{" not in body:
        # Split the outer list into planes at depth-0 commas; offsets shift by the removed '['.
        planes, depth, start = [], 0, 1
        for i, ch in enumerate(body[1:-1], start=1):
            depth += ch in "[(" and 1 or ch in "])" and -1 or 0
            if ch == "," and depth == 0:
                planes.append(body[start:i])
                start = i + 1
        planes.append(body[start:-1])
        return parse_axes(";".join(planes))
    from tdmcmc.models.database.values import parse_value

    maps = parse_value(body)
    out = []
    for plane in maps:
        if not isinstance(plane, dict):
            raise ValueSyntaxError("axesMap entries must all be dicts", 0)
        out.append({int(col): parse_expression(str(v)) for col, v in plane.items()})
    return tuple(out)
