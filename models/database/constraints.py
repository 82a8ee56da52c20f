"""Parser for SModelS txname ``constraint:`` and ``condition:`` values (never ``eval``).

Grammar, a superset of every form in the v1.2.4 and 3.0.0 files; white space is free::

    constraint := expr
    expr       := term ('+' term)*
    term       := factor (('*' | '/') factor)*      2.23*[...], 9./4.*[...], 71.*(a + b)
    factor     := NUMBER | element | graph | '(' expr ')'
    element    := '[' branch ',' branch ']'
    branch     := '[' [vertex (',' vertex)*] ']'    [] is an empty branch (direct HSCP production)
    vertex     := '[' label (',' label)* ']'
    label      := QUOTE* NAME QUOTE*                 quoted or not; see "quotes" below
    graph      := '{' decay (',' decay)* '}'         v3 syntax (SModelS 3.x)
    decay      := '(' node '>' node (',' node)* ')'
    node       := NAME ['(' INTEGER ')']
    conditions := 'None' | call (';' call)* [';']
    call       := NAME '(' expr (',' expr)* ')'     NAME is Cgtr or Csim in any letter case

An expression is a linear combination of elements (or of graphs, never both): prefactors
distribute over sums, and equal elements are merged by adding their coefficients (a constraint's
weight is the same linear combination of element weights). There is no '-' operator: it occurs in
no real file, and '-' ends labels such as ``e-``.

Forms found by scanning every txname of ``smodels-db`` (1.2.4) and ``smodels-db-300-extra`` (3.0.0),
all accepted:

- quotes: labels appear quoted (``'t'``), unquoted (``[[[b, W]],[[b, W]]]``) and with broken
  quoting: ``[''l-','nu'']`` (constraint of CMS-SUS-16-035 T5WWoff) and ``[L-']``, ``[ta-']``,
  ``[e-']`` (conditions of the 15 TChipChimSlepSnu files). SModelS deletes every single quote before
  parsing (``smsInStr`` and ``bracketToProcessStr`` in smodels/experiment/expAuxiliaryFuncs.py), so
  quotes here are likewise ignored around a label rather than required to balance;
- prefactors written as fractions (``9./4.*``, ``27./8.*``, ``81./4.*``), with spaces around ``*``,
  and applied to a parenthesised sum (``2.25*( ... + ... )``);
- conditions in lower-case ``cGtr``/``cSim``, ``;`` with or without a following space, a ``Csim``
  with a single argument, a sum (ATLAS-SUSY-2016-27 T5Zg; probably meant as three arguments, but
  SModelS' ``cSim`` of one weight is 0, so as written it is always satisfied);
- bracket elements holding the v3 inclusive label ``*anySM`` (``[[[*anySM]],[]]``);
- v3 graphs with unindexed SM daughters (``jet,jet``), indexed terminal BSM states (``MET(2)``),
  ``PV`` producing a terminal state directly (``(PV > C1(1),MET(3))``) and decays to SM particles
  only (``(anyBSM(2) > jet,b)``, R-parity violating). No file has a sum or prefactor of graphs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Mapping

Vertex = tuple[str, ...]
Branch = tuple[Vertex, ...]

# ---------------------------------------------------------------------------------------------
# Particle labels
#
# Source: the particle definitions of SModelS (GitHub), read in these files:
#   SModelS/smodels-database-release: databaseParticles.py (3.x; ships with the database),
#   SModelS/smodels: smodels/experiment/databaseParticles.py (2.x),
#   SModelS/smodels: smodels/experiment/finalStateParticles.py (MultiParticle groups, 1.2 era),
#   SModelS/smodels: smodels/particles.py (1.x `ptcDic`, `*` = every R-even label).
# The groups agree in all of them; `jetb`, `anySM` and `pion` are 3.x names, `pi` the 1.x one.
# States that no label tells apart are merged, as SModelS merges them: a quark and its
# antiquark, the three neutrinos with their antineutrinos, g/photon/Z/higgs with themselves.

SM_STATES: frozenset[str] = frozenset(
    "e- e+ mu- mu+ ta- ta+ nue numu nuta u d s c b t+ t- g photon Z W+ W- higgs pi+ pi- pi0".split()
)
"""Elementary SM final states that database labels can distinguish."""

_GROUPS = {
    "e": "e- e+",
    "mu": "mu- mu+",
    "ta": "ta- ta+",
    "l+": "e+ mu+",
    "l-": "e- mu-",
    "l": "e- mu- e+ mu+",
    "L+": "e+ mu+ ta+",
    "L-": "e- mu- ta-",
    "L": "e- mu- ta- e+ mu+ ta+",
    "nu": "nue numu nuta",
    "q": "u d s",
    "W": "W+ W-",
    "t": "t+ t-",
    "pion": "pi+ pi- pi0",
    "pi": "pi+ pi- pi0",
    "jet": "u d s c g pi+ pi- pi0",  # no b, as in SModelS
    "jetb": "u d s c g b",  # 3.x only; no pions
}

SM_LABELS: Mapping[str, frozenset[str]] = MappingProxyType(
    {state: frozenset({state}) for state in SM_STATES}
    | {label: frozenset(states.split()) for label, states in _GROUPS.items()}
    | {"*": SM_STATES, "anySM": SM_STATES}
)
"""Every SM label of the database, mapped to the elementary states it stands for.

``l`` = e±, mu±; ``L`` = e±, mu±, ta±; ``l+``/``l-``/``L+``/``L-`` the charged subsets;
``e``/``mu``/``ta``/``W``/``t`` both charges; ``nu`` = all neutrinos; ``q`` = u, d, s (and
antiquarks); ``jet`` = q, c, g, pions (not b); ``jetb`` = q, c, g, b; ``*`` and ``anySM`` = any SM state.
A leading ``*`` on a v3 label (``*anySM``) makes it an inclusive list (any number of such
particles); :func:`matches` ignores it.
"""

BSM_LABELS: frozenset[str] = frozenset(
    "MET HSCP HSCP+ HSCP- RHadronG RHadronU RHadronU+ RHadronD RHadronD- RHadronQ anyBSM anyOdd "
    "gluino C1+ C1- C1 H+ H- Hpm Zprime Vprime H0 N Nb Lp Lm VLN VLC VL".split()
)
"""BSM labels of the same files (final states and v3 intermediate states)."""


def sm_states(label: str) -> frozenset[str]:
    """The elementary SM states a database label stands for; ValueError if it is not an SM label."""
    try:
        return SM_LABELS[label[1:] if label.startswith("*") and len(label) > 1 else label]
    except KeyError:
        raise ValueError(f"unknown SM particle label {label!r}") from None


def matches(label: str, sm_particle: str) -> bool:
    """Whether database `label` covers every state of `sm_particle` (e.g. ``matches('L', 'ta-')``).

    `sm_particle` is normally an elementary state of :data:`SM_STATES`; when it is itself a group
    the answer is True only if the whole group is covered (``matches('t+', 't')`` is False), which
    never over-counts a charge-summed emission. SModelS compares two groups by overlap instead; for
    elementary states the two rules agree.
    """
    return sm_states(sm_particle) <= sm_states(label)


# ---------------------------------------------------------------------------------------------
# Result types


def _canonical(branches: tuple[Branch, Branch]) -> tuple[Branch, Branch]:
    # SModelS sorts the particles inside a vertex and treats the two branches as unordered.
    sorted_branches = [tuple(tuple(sorted(vertex)) for vertex in branch) for branch in branches]
    first, second = sorted(sorted_branches, key=lambda branch: (len(branch), branch))
    return first, second


def _quote_branch(branch: Branch) -> str:
    return "[" + ",".join("[" + ",".join(f"'{p}'" for p in vertex) + "]" for vertex in branch) + "]"


@dataclass(frozen=True, slots=True)
class Element:
    """A bracket-notation element: two branches, each a tuple of vertices of SM labels.

    ``branches`` keeps the written order (``str()`` prints it back in bracket form); equality and
    hashing use :attr:`key`, the canonical form, so an element equals itself with its branches
    swapped or with the particles of a vertex permuted, as in SModelS.
    """

    branches: tuple[Branch, Branch] = field(compare=False)
    key: tuple[Branch, Branch] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.branches) != 2:
            raise ValueError(f"an element has two branches, got {len(self.branches)}")
        branches = tuple(tuple(tuple(vertex) for vertex in branch) for branch in self.branches)
        object.__setattr__(self, "branches", branches)
        object.__setattr__(self, "key", _canonical(branches))

    @property
    def n_vertices(self) -> tuple[int, int]:
        """Number of vertices (decay steps) in each branch, in written order."""
        return len(self.branches[0]), len(self.branches[1])

    def canonical(self) -> Element:
        """The same element written in canonical order."""
        return Element(self.key)

    def __str__(self) -> str:
        return "[" + ",".join(_quote_branch(branch) for branch in self.branches) + "]"


@dataclass(frozen=True, slots=True)
class Graph:
    """A v3 process graph: ``nodes`` maps index -> label (``PV`` is node 0, the root) and
    ``edges`` maps each decaying node to its daughters, both sorted by index.

    Labels are kept as written (``C1+``, ``MET``, ``*anySM``). Daughters written without an index
    are numbered after the largest written index, in order of appearance, as SModelS does
    (``ExpSMS.from_string``), so the node indices of ``dataMap`` stay valid.
    """

    nodes: tuple[tuple[int, str], ...]
    edges: tuple[tuple[int, tuple[int, ...]], ...]

    def label(self, index: int) -> str:
        """The label of node `index`."""
        return dict(self.nodes)[index]

    def daughters(self, index: int) -> tuple[int, ...]:
        """Daughter indices of node `index` (empty for a final state)."""
        return dict(self.edges).get(index, ())

    def is_bsm(self, index: int) -> bool:
        """True for a BSM node: one that decays, or a final state with a label in :data:`BSM_LABELS`."""
        if index == 0:
            return False
        return bool(self.daughters(index)) or self.label(index).lstrip("*") in BSM_LABELS

    def to_element(self) -> Element | None:
        """The equivalent bracket element, or None when the graph has no bracket form.

        A bracket form exists when PV produces exactly two BSM nodes and every BSM node decays to
        SM particles plus exactly one BSM node, until a BSM final state (MET, anyBSM, C1, ...) ends
        the branch; each decay gives one vertex of its SM labels. Resonances (``PV > Zprime``),
        decays into two BSM nodes and decays into SM particles only (R-parity violating) give None,
        because bracket notation always ends a branch on a BSM final state.

        Lost in the conversion: the BSM labels (``C1+``, ``anyBSM``, ``MET``: brackets take their
        intermediate states from the ``intermediateState`` key and their final states from
        ``finalState``), and the node indices that ``dataMap`` uses for masses and widths.
        Widths themselves are never part of a constraint.
        """
        children = dict(self.edges)
        top = children.get(0, ())
        if len(top) != 2 or not all(self.is_bsm(i) for i in top):
            return None
        branches = []
        for node in top:
            vertices = []
            while children.get(node):
                daughters = children[node]
                bsm = [d for d in daughters if self.is_bsm(d)]
                if len(bsm) != 1:
                    return None
                vertices.append(tuple(self.label(d) for d in daughters if d != bsm[0]))
                node = bsm[0]
            branches.append(tuple(vertices))
        return Element((branches[0], branches[1]))

    def __str__(self) -> str:
        def name(i: int) -> str:
            return "PV" if i == 0 else f"{self.label(i)}({i})"

        decays = (f"({name(m)} > {','.join(name(d) for d in ds)})" for m, ds in self.edges)
        return "{" + ", ".join(decays) + "}"


def _format_terms(terms: tuple[tuple[float, object], ...]) -> str:
    return " + ".join(str(item) if coef == 1.0 else f"{coef!r}*{item}" for coef, item in terms)


@dataclass(frozen=True, slots=True)
class Constraint:
    """A linear combination of bracket elements: ``terms`` = ((coefficient, element), ...) in order
    of first appearance, each element once."""

    terms: tuple[tuple[float, Element], ...]

    @property
    def elements(self) -> tuple[Element, ...]:
        """The elements, without coefficients."""
        return tuple(element for _, element in self.terms)

    def __str__(self) -> str:
        return _format_terms(self.terms)


@dataclass(frozen=True, slots=True)
class GraphConstraint:
    """A linear combination of v3 graphs: ``terms`` = ((coefficient, graph), ...)."""

    terms: tuple[tuple[float, Graph], ...]

    @property
    def graphs(self) -> tuple[Graph, ...]:
        """The graphs, without coefficients."""
        return tuple(graph for _, graph in self.terms)

    def __str__(self) -> str:
        return _format_terms(self.terms)


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition: ``gtr`` = first argument >= second (SModelS ``cGtr``), ``sim`` = all
    arguments similar (``cSim``)."""

    kind: Literal["gtr", "sim"]
    args: tuple[Constraint | GraphConstraint, ...]

    def __str__(self) -> str:
        return f"C{self.kind}(" + ", ".join(str(arg) for arg in self.args) + ")"


class ConstraintSyntaxError(ValueError):
    """A constraint or condition that cannot be parsed.

    ``column`` is 1-based and ``offset`` 0-based, both into the text given to the parser (for a
    value spanning several lines, map ``offset`` to a line yourself); the message reads like
    ``unbalanced bracket at column 17: '[' is never closed``.
    """

    def __init__(self, what: str, offset: int, detail: str = "") -> None:
        super().__init__(f"{what} at column {offset + 1}" + (f": {detail}" if detail else ""))
        self.offset = offset
        self.column = offset + 1


# ---------------------------------------------------------------------------------------------
# Parser

_NAME = re.compile(r"\*?[A-Za-z][A-Za-z0-9_]*[+-]?|\*")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_QUOTES = "'\""
_CLOSING = {"[": "]", "(": ")", "{": "}"}
_CONDITIONS: dict[str, Literal["gtr", "sim"]] = {"cgtr": "gtr", "csim": "sim"}

# A linear combination of Elements or of Graphs, in order of first appearance.
_Linear = dict


@dataclass(frozen=True, slots=True)
class _NodeRef:
    name: str
    index: int | None
    offset: int


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._check_brackets()

    # -- scanning ------------------------------------------------------------------------------

    def _check_brackets(self) -> None:
        # Done first so that a missing bracket is reported where it is, not where parsing stalls.
        stack: list[tuple[str, int]] = []
        for pos, char in enumerate(self.text):
            if char in _CLOSING:
                stack.append((char, pos))
            elif char in _CLOSING.values():
                if not stack:
                    raise ConstraintSyntaxError("unbalanced bracket", pos, f"{char!r} has no opening bracket")
                opener, start = stack.pop()
                if _CLOSING[opener] != char:
                    raise ConstraintSyntaxError(
                        "unbalanced bracket", pos, f"{char!r} does not close {opener!r} from column {start + 1}"
                    )
        if stack:
            opener, start = stack[-1]
            raise ConstraintSyntaxError("unbalanced bracket", start, f"{opener!r} is never closed")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def accept(self, char: str) -> bool:
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def expect(self, char: str, expected: str | None = None) -> int:
        if not self.accept(char):
            raise self.unexpected(expected or repr(char))
        return self.pos - 1

    def unexpected(self, expected: str) -> ConstraintSyntaxError:
        self.peek()
        if self.pos >= len(self.text):
            return ConstraintSyntaxError("unexpected end of text", self.pos, f"expected {expected}")
        for pattern in (_QUOTED, _NUMBER, _NAME):
            match = pattern.match(self.text, self.pos)
            if match:
                break
        token = match.group() if match else self.text[self.pos]
        return ConstraintSyntaxError(f"unexpected token {token!r}", self.pos, f"expected {expected}")

    def name(self, expected: str) -> tuple[str, int]:
        self.peek()
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.unexpected(expected)
        self.pos = match.end()
        return match.group(), match.start()

    def end(self) -> None:
        if self.peek():
            raise self.unexpected("'+' or the end of the text")

    # -- expressions -----------------------------------------------------------------------------

    def linear(self) -> Constraint | GraphConstraint:
        self.peek()
        start = self.pos
        value = self.expr()
        if not isinstance(value, dict):
            raise ConstraintSyntaxError("a number is not a constraint", start, "expected an element '[...]' or a graph '{...}'")
        terms = tuple((coef, item) for item, coef in value.items())
        if isinstance(terms[0][1], Element):
            return Constraint(terms)
        return GraphConstraint(terms)

    def expr(self) -> float | _Linear:
        total = self.term()
        while self.accept("+"):
            self.peek()
            offset = self.pos
            total = _add(total, self.term(), offset)
        return total

    def term(self) -> float | _Linear:
        value = self.factor()
        while self.peek() in ("*", "/"):
            operator, offset = self.text[self.pos], self.pos
            self.pos += 1
            value = _multiply(value, self.factor(), operator, offset)
        return value

    def factor(self) -> float | _Linear:
        char = self.peek()
        if char == "[":
            return {self.element(): 1.0}
        if char == "{":
            return {self.graph(): 1.0}
        if char == "(":
            self.pos += 1
            value = self.expr()
            self.expect(")", "'+' or ')'")
            return value
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return float(match.group())
        raise self.unexpected("a number, an element '[...]', a graph '{...}' or '('")

    # -- bracket elements ------------------------------------------------------------------------

    def element(self) -> Element:
        self.expect("[")
        first = self.branch()
        self.expect(",", "',' between the two branches")
        second = self.branch()
        if self.peek() == ",":
            raise ConstraintSyntaxError("a third branch", self.pos, "an element has exactly two branches")
        self.expect("]", "']' closing the element")
        return Element((first, second))

    def branch(self) -> Branch:
        self.expect("[", "'[' opening a branch")
        if self.accept("]"):
            return ()
        vertices = [self.vertex()]
        while self.accept(","):
            vertices.append(self.vertex())
        self.expect("]", "',' or ']' after a vertex")
        return tuple(vertices)

    def vertex(self) -> Vertex:
        self.expect("[", "'[' opening a vertex")
        labels = [self.label()]
        while self.accept(","):
            labels.append(self.label())
        self.expect("]", "',' or ']' after a particle label")
        return tuple(labels)

    def label(self) -> str:
        while self.peek() in _QUOTES and self.peek():
            self.pos += 1
        label, _ = self.name("a particle label")
        while self.pos < len(self.text) and self.text[self.pos] in _QUOTES:
            self.pos += 1
        return label

    # -- v3 graphs -------------------------------------------------------------------------------

    def graph(self) -> Graph:
        start = self.expect("{")
        decays = [self.decay()]
        while self.accept(","):
            decays.append(self.decay())
        self.expect("}", "',' or '}' after a decay")
        return _build_graph(decays, start)

    def decay(self) -> tuple[_NodeRef, list[_NodeRef]]:
        self.expect("(", "'(' opening a decay")
        mother = self.node()
        self.expect(">", "'>' after the decaying node")
        daughters = [self.node()]
        while self.accept(","):
            daughters.append(self.node())
        self.expect(")", "',' or ')' after a daughter")
        return mother, daughters

    def node(self) -> _NodeRef:
        name, offset = self.name("a particle label")
        if not self.accept("("):
            return _NodeRef(name, None, offset)
        self.peek()
        match = _INTEGER.match(self.text, self.pos)
        if not match:
            raise self.unexpected("a node index")
        self.pos = match.end()
        self.expect(")", "')' after the node index")
        return _NodeRef(name, int(match.group()), offset)

    # -- conditions ------------------------------------------------------------------------------

    def condition(self) -> Condition:
        name, offset = self.name("a condition Cgtr(...) or Csim(...)")
        kind = _CONDITIONS.get(name.lower())
        if kind is None:
            raise ConstraintSyntaxError(f"unknown condition {name!r}", offset, "expected Cgtr or Csim")
        self.expect("(", f"'(' after {name}")
        args = [self.linear()]
        while self.accept(","):
            args.append(self.linear())
        self.expect(")", "',' or ')' after an argument")
        if kind == "gtr" and len(args) != 2:
            raise ConstraintSyntaxError(f"{name} with {len(args)} arguments", offset, "Cgtr takes two")
        return Condition(kind, tuple(args))


def _add(left: float | _Linear, right: float | _Linear, offset: int) -> float | _Linear:
    if not isinstance(left, dict) and not isinstance(right, dict):
        return left + right
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise ConstraintSyntaxError("a number added to an element", offset, "prefactors need '*'")
    if type(next(iter(left))) is not type(next(iter(right))):
        raise ConstraintSyntaxError("an element added to a graph", offset, "bracket and graph syntax cannot mix")
    total = dict(left)
    for item, coef in right.items():
        total[item] = total.get(item, 0.0) + coef
    return total


def _multiply(left: float | _Linear, right: float | _Linear, operator: str, offset: int) -> float | _Linear:
    if isinstance(right, dict):
        if operator == "/":
            raise ConstraintSyntaxError("division by an element", offset, "only numbers can divide")
        if isinstance(left, dict):
            raise ConstraintSyntaxError("a product of two elements", offset, "a constraint is linear in its elements")
        left, right = right, left
    if operator == "/" and right == 0.0:
        raise ConstraintSyntaxError("division by zero", offset)

    def apply(coef: float) -> float:
        return coef / right if operator == "/" else coef * right

    if isinstance(left, dict):
        return {item: apply(coef) for item, coef in left.items()}
    return apply(left)


def _build_graph(decays: list[tuple[_NodeRef, list[_NodeRef]]], start: int) -> Graph:
    labels: dict[int, str] = {0: "PV"}
    first_seen: dict[int, int] = {}
    for mother, daughters in decays:
        for ref in (mother, *daughters):
            if ref.name == "PV":
                if ref.index not in (None, 0):
                    raise ConstraintSyntaxError(f"PV({ref.index})", ref.offset, "the primary vertex PV is node 0")
            elif ref.index is not None:
                if ref.index == 0:
                    raise ConstraintSyntaxError(f"{ref.name}(0)", ref.offset, "node 0 is the primary vertex PV")
                if labels.setdefault(ref.index, ref.name) != ref.name:
                    raise ConstraintSyntaxError(
                        f"{ref.name}({ref.index})", ref.offset, f"node {ref.index} is already {labels[ref.index]!r}"
                    )
                first_seen.setdefault(ref.index, ref.offset)
    next_index = max(labels) + 1
    children: dict[int, tuple[int, ...]] = {}
    produced: set[int] = set()
    for mother, daughters in decays:
        index = 0 if mother.name == "PV" else mother.index
        if index is None:
            raise ConstraintSyntaxError(f"decaying node {mother.name!r}", mother.offset, "it needs an index, as in X(1)")
        if index in children:
            raise ConstraintSyntaxError(f"second decay of node {index}", mother.offset, "each node decays once")
        indices = []
        for ref in daughters:
            if ref.name == "PV":
                raise ConstraintSyntaxError("PV as a daughter", ref.offset, "PV is the root")
            if ref.index is None:
                labels[next_index], first_seen[next_index] = ref.name, ref.offset
                ref = _NodeRef(ref.name, next_index, ref.offset)
                next_index += 1
            if ref.index in produced:
                raise ConstraintSyntaxError(f"{ref.name}({ref.index}) produced twice", ref.offset, "a node has one mother")
            produced.add(ref.index)
            indices.append(ref.index)
        children[index] = tuple(sorted(indices))
    if 0 not in children:
        raise ConstraintSyntaxError("graph without a decay of PV", start, "expected (PV > ...)")
    reached, stack = set(), [0]
    while stack:
        node = stack.pop()
        if node not in reached:
            reached.add(node)
            stack.extend(children.get(node, ()))
    for index in sorted(set(labels) - reached):
        raise ConstraintSyntaxError(f"{labels[index]}({index}) not connected to PV", first_seen[index], "it is never produced")
    return Graph(tuple(sorted(labels.items())), tuple(sorted(children.items())))


# ---------------------------------------------------------------------------------------------
# Entry points


def parse_constraint(text: str) -> Constraint | GraphConstraint:
    """Parse a ``constraint:`` value (comment already stripped): bracket syntax gives a
    :class:`Constraint`, v3 graph syntax a :class:`GraphConstraint`.

    Raises :class:`ConstraintSyntaxError` naming the column.
    """
    parser = _Parser(text)
    if not parser.peek():
        raise ConstraintSyntaxError("empty constraint", parser.pos)
    result = parser.linear()
    parser.end()
    return result


def parse_condition(text: str) -> tuple[Condition, ...]:
    """Parse a ``condition:`` value: ``None`` (any letter case) gives (), otherwise one
    :class:`Condition` per ``;``-separated ``Cgtr``/``Csim`` call.

    Raises :class:`ConstraintSyntaxError` naming the column.
    """
    if text.strip().lower() == "none":
        return ()
    parser = _Parser(text)
    conditions = [parser.condition()]
    while parser.accept(";"):
        if not parser.peek():
            break
        conditions.append(parser.condition())
    if parser.peek():
        raise parser.unexpected("';' or the end of the text")
    return tuple(conditions)
