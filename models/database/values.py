"""Parser for the literal values of SModelS database files (never ``eval``).

Grammar (a superset of what the real files use)::

    value    := product (',' product)* [',']        top-level commas make a tuple (datasetOrder)
    product  := unary (('*' | '/') unary)*          units multiply: 13*TeV, 36.1/fb
    unary    := '-' unary | atom
    atom     := NUMBER | STRING | NAME | list | tuple | dict
    list     := '[' [product (',' product)* [',']] ']'
    tuple    := '(' [product (',' product)* [',']] ')'
    dict     := '{' [product ':' product (',' ...)* [',']] '}'

NAME is a unit (GeV, TeV, fb, pb, ...) giving a :class:`~.units.Quantity`, one of None/True/False,
or any other bare word, kept as a string (``[b, W]``, ``x``). Numbers multiplied by units become
Quantities in canonical units; plain numbers stay int or float. Errors carry the offset into the
text so callers can name the line and column.
"""

from __future__ import annotations

import re
from typing import Any

from tdmcmc.models.database.units import UNITS, Quantity, unit

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>'[^'\n]*'|"[^"\n]*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>[\[\](){},:*/\-+])
    """,
    re.VERBOSE,
)

_CONSTANTS = {"None": None, "True": True, "False": False, "none": None, "true": True, "false": False}
_CLOSERS = {"[": "]", "(": ")", "{": "}"}


class ValueSyntaxError(ValueError):
    """A value could not be parsed; ``offset`` is the 0-based character position in the text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split `text` into (kind, token, offset) triples, whitespace dropped."""
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueSyntaxError(f"unexpected character {text[pos]!r}", pos)
        kind = m.lastgroup
        if kind != "ws":
            tokens.append((kind, m.group(), pos))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def offset(self) -> int:
        tok = self.peek()
        return tok[2] if tok else len(self.text)

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise ValueSyntaxError(
                f"unexpected end of value, expected {expected!r}" if expected else "unexpected end of value",
                len(self.text),
            )
        if expected is not None and tok[1] != expected:
            raise ValueSyntaxError(f"expected {expected!r} but found {tok[1]!r}", tok[2])
        self.i += 1
        return tok

    def at(self, symbol: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] == symbol

    def value(self) -> Any:
        first = self.product()
        if not self.at(","):
            return first
        items = [first]
        while self.at(","):
            self.take(",")
            if self.peek() is None:
                break
            items.append(self.product())
        return tuple(items)

    def product(self) -> Any:
        left_pos = self.offset()
        left = self.unary()
        while self.at("*") or self.at("/"):
            _, op, _ = self.take()
            right_pos = self.offset()
            right = self.unary()
            left = _combine(left, op, right, left_pos, right_pos)
        return left

    def unary(self) -> Any:
        if self.at("-") or self.at("+"):
            _, sign, pos = self.take()
            operand = self.unary()
            if isinstance(operand, bool) or not isinstance(operand, (int, float, Quantity)):
                raise ValueSyntaxError(f"sign {sign!r} before a non-number", pos)
            return -operand if sign == "-" else operand
        return self.atom()

    def atom(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise ValueSyntaxError("unexpected end of value", len(self.text))
        kind, token, pos = tok
        if kind == "number":
            self.i += 1
            return float(token) if any(c in token for c in ".eE") else int(token)
        if kind == "string":
            self.i += 1
            return token[1:-1]
        if kind == "name":
            self.i += 1
            if token in _CONSTANTS:
                return _CONSTANTS[token]
            if token in UNITS:
                return unit(token)
            return token
        if token in _CLOSERS:
            return self.container(token)
        raise ValueSyntaxError(f"unexpected {token!r}", pos)

    def container(self, opener: str) -> Any:
        closer = _CLOSERS[opener]
        start = self.take(opener)[2]
        items: list[Any] = []
        keys: list[Any] = []
        while not self.at(closer):
            if self.peek() is None:
                raise ValueSyntaxError(f"unbalanced {opener!r} opened at column {start + 1}", start)
            if opener == "{":
                keys.append(self.product())
                self.take(":")
            items.append(self.product())
            if not self.at(closer):
                tok = self.peek()
                if tok is None:
                    raise ValueSyntaxError(f"unbalanced {opener!r} opened at column {start + 1}", start)
                if tok[1] != ",":
                    raise ValueSyntaxError(f"expected ',' or {closer!r} but found {tok[1]!r}", tok[2])
                self.take(",")
        self.take(closer)
        if opener == "{":
            return dict(zip(keys, items, strict=True))
        return items if opener == "[" else tuple(items)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, Quantity)) and not isinstance(v, bool)


def _combine(left: Any, op: str, right: Any, left_pos: int, right_pos: int) -> Any:
    """`left op right` for numbers and units; an error points at the operand that is neither."""
    for operand, pos in ((right, right_pos), (left, left_pos)):
        if not _is_number(operand):
            raise ValueSyntaxError(f"cannot apply {op!r} to {operand!r} (unknown unit?)", pos)
    if not isinstance(left, Quantity):
        left = Quantity(float(left), (0, 0))
    if not isinstance(right, Quantity):
        right = Quantity(float(right), (0, 0))
    if op == "/" and right.value == 0:
        raise ValueSyntaxError("division by zero", right_pos)
    return left * right if op == "*" else left / right


def parse_value(text: str) -> Any:
    """Parse one database value; raises :class:`ValueSyntaxError` with the offending offset."""
    parser = _Parser(text)
    if parser.peek() is None:
        raise ValueSyntaxError("empty value", 0)
    result = parser.value()
    if parser.peek() is not None:
        raise ValueSyntaxError(f"unexpected {parser.peek()[1]!r} after the value", parser.offset())
    return result
