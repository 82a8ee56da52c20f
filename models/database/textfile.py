"""Splitting a SModelS ``*.txt`` file into ``key: value`` entries with their line numbers.

Rules, following SModelS' own reader (``concatenateLines``) and extended for release 3.x:
- ``#`` starts a comment at the start of a line or after white space, outside quotes
  (``index.html#fig`` in a URL is not a comment);
- a value continues on the next line while the current line ends with ``,`` or ``\\`` (SModelS'
  rule, used by maps and by multi-line ``figureUrl``);
- otherwise a line starting (in column 1) with ``key:`` starts a new entry, and any other line
  continues a value whose brackets are still open (3.x multi-line ``jsonFiles`` dicts). A value
  left with an open bracket therefore does not swallow the next entry: its own parser reports
  the unbalanced bracket on its own key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tdmcmc.errors import UserError

_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*:(.*)\Z", re.S)


class DatabaseError(UserError):
    """Bad database input, naming the file, the line and the key."""

    def __init__(self, path: Path | str, message: str, line: int | None = None, key: str | None = None) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if key is not None:
            where += f", key {key!r}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line
        self.key = key
        self.reason = message


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``key: value`` entry; ``line`` is 1-based, ``value`` keeps inner newlines."""

    key: str
    value: str
    line: int

    def line_of(self, offset: int) -> int:
        """The file line holding character `offset` of the value."""
        return self.line + self.value.count("\n", 0, offset)


def strip_comment(line: str) -> str:
    """Drop a trailing ``# comment`` (outside quotes, at line start or after white space)."""
    if "#" not in line:
        return line
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _depth(text: str) -> int:
    return text.count("[") + text.count("(") + text.count("{") - text.count("]") - text.count(")") - text.count("}")


def read_entries(path: Path, text: str | None = None) -> list[Entry]:
    """Parse `path` (or its already-read `text`) into entries, in file order.

    Raises :class:`DatabaseError` for a line that is neither an entry nor a continuation, and for
    a key that appears twice.
    """
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DatabaseError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    parts: list[str] = []
    key = ""
    start = 0
    depth = 0

    def flush() -> None:
        if key:
            if key in seen:
                raise DatabaseError(path, f"key given twice (first on line {seen[key]})", start, key)
            seen[key] = start
            entries.append(Entry(key, "\n".join(parts).strip(), start))

    continuing = False
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = strip_comment(raw).rstrip()
        if not line.strip():
            continue
        m = None if continuing else _KEY.match(line)
        if m is None and (continuing or depth > 0):
            parts.append(line)
        else:
            if m is None:
                raise DatabaseError(path, f"expected 'key: value', found {line.strip()[:60]!r}", lineno)
            flush()
            key, start, depth = m.group(1), lineno, 0
            parts = [m.group(2)]
            line = m.group(2)
        depth += _depth(line)
        stripped = line.rstrip()
        continuing = stripped.endswith((",", "\\"))
        if stripped.endswith("\\"):
            parts[-1] = parts[-1].rstrip()[:-1]
    flush()
    return entries
