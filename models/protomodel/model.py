"""The protomodel record: masses (GeV) by PDG id, decay branching ratios, signal-strength
multipliers κ and optional injected cross sections; read and written as JSON or TOML.

The format is the one of ``oracle-reference/models`` (and of the original code's dict files)::

    {"name": "...", "masses": {"1000022": 100.0, ...},
     "decays": {"1000023": {"1000022 23": 0.5, "1000022 25": 0.5}},
     "ssmultipliers": {"-1000001,1000001": 0.9, ...},
     "xsecs": [{"pids": [-1000001, 1000001], "sqrts": 13, "xsec_pb": 0.028}]}   # optional

Decay keys list the *unsigned* daughter ids separated by spaces; κ keys are signed sorted pairs
"a,b" (pairs without a key have κ = 1). ``xsecs``, when given, replaces the computed cross
sections: ``xsec_pb`` is the full σ of that signed pair at √s (TeV), κ already included, so κ is
not applied again (as in the oracle outputs). TOML files hold the same tables (``[masses]``,
``[decays."1000023"]``, ``[ssmultipliers]``, ``[[xsecs]]``).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdmcmc.errors import UserError

from .space import Pair, ProtomodelSpace

BR_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class InjectedXsec:
    """σ (fb, κ included) of one signed, sorted production pair at √s (TeV)."""

    pair: Pair
    sqrts: int
    xsec_fb: float


@dataclass(frozen=True)
class Protomodel:
    """A protomodel: ``masses`` GeV by positive PDG id (the particles present); ``decays``
    parent -> {daughter ids (as in the space's decay list): BR}; ``kappas`` by signed sorted pair;
    ``xsecs`` optional injected cross sections (None: compute them from the fits)."""

    name: str
    masses: dict[int, float]
    decays: dict[int, dict[tuple[int, ...], float]]
    kappas: dict[Pair, float] = field(default_factory=dict)
    xsecs: tuple[InjectedXsec, ...] | None = None
    comment: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON/TOML structure (string keys)."""
        out: dict[str, Any] = {"name": self.name}
        if self.comment:
            out["comment"] = self.comment
        out["masses"] = {str(p): m for p, m in sorted(self.masses.items())}
        out["decays"] = {str(p): {" ".join(map(str, d)): br for d, br in ch.items()}
                         for p, ch in sorted(self.decays.items())}
        out["ssmultipliers"] = {f"{a},{b}": k for (a, b), k in sorted(self.kappas.items())}
        if self.xsecs is not None:
            out["xsecs"] = [{"pids": list(x.pair), "sqrts": x.sqrts, "xsec_pb": x.xsec_fb / 1000.0}
                            for x in self.xsecs]
        return out


def read_protomodel(path: str | Path, space: ProtomodelSpace) -> Protomodel:
    """Read a protomodel from a ``.json`` or ``.toml`` file and validate it against `space`.

    Raises :class:`UserError` naming the file, the key and the offending value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read protomodel file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: invalid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object with masses, decays, ssmultipliers")
    return protomodel_from_dict(data, space, source=str(path), default_name=path.stem)


def write_protomodel(model: Protomodel, path: str | Path) -> None:
    """Write `model` as JSON or TOML (by the file suffix)."""
    path = Path(path)
    data = model.to_dict()
    if path.suffix.lower() == ".toml":
        import tomli_w

        path.write_text(tomli_w.dumps(data), encoding="utf-8")
    else:
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def protomodel_from_dict(data: dict[str, Any], space: ProtomodelSpace, source: str = "<dict>",
                         default_name: str = "protomodel") -> Protomodel:
    """Validate the JSON/TOML structure against `space` (see the module docstring)."""
    v = _Validator(source, space)
    masses = v.masses(data.get("masses"))
    decays = v.decays(data.get("decays", {}), masses)
    kappas = v.kappas(data.get("ssmultipliers", {}))
    xsecs = v.xsecs(data["xsecs"]) if data.get("xsecs") is not None else None
    name = data.get("name", default_name)
    if not isinstance(name, str):
        raise v.fail("name", f"expected a string, got {name!r}")
    comment = data.get("comment", "")
    return Protomodel(name=name, masses=masses, decays=decays, kappas=kappas, xsecs=xsecs,
                      comment=comment if isinstance(comment, str) else "")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pdg(key: Any) -> int | None:
    try:
        return int(str(key).strip())
    except ValueError:
        return None


class _Validator:
    def __init__(self, source: str, space: ProtomodelSpace):
        self.source = source
        self.space = space

    def fail(self, key: str, message: str) -> UserError:
        return UserError(f"{self.source}: {key}: {message}")

    def masses(self, table: Any) -> dict[int, float]:
        if not isinstance(table, dict) or not table:
            raise self.fail("masses", "expected a non-empty table of PDG id -> mass in GeV")
        masses: dict[int, float] = {}
        for key, value in table.items():
            pdg = _pdg(key)
            where = f"masses.{key}"
            if pdg is None or pdg <= 0:
                raise self.fail(where, "keys must be positive PDG ids")
            if pdg not in self.space.particles:
                raise self.fail(where, f"unknown particle {pdg} (not in space {self.space.name!r})")
            if not _number(value) or value <= 0:
                raise self.fail(where, f"mass must be a positive number of GeV, got {value!r}")
            masses[pdg] = float(value)
        lsp = self.space.lsp
        if lsp not in masses:
            raise self.fail("masses", f"the LSP {lsp} ({self.space.particles[lsp].name}) must be present")
        lighter = [p for p, m in masses.items() if p != lsp and m <= masses[lsp]]
        if lighter:
            raise self.fail(f"masses.{lighter[0]}", f"{masses[lighter[0]]} GeV is not above the LSP mass "
                            f"{masses[lsp]} GeV")
        return masses

    def decays(self, table: Any, masses: dict[int, float]) -> dict[int, dict[tuple[int, ...], float]]:
        if not isinstance(table, dict):
            raise self.fail("decays", f"expected a table parent -> {{daughters: BR}}, got {table!r}")
        decays: dict[int, dict[tuple[int, ...], float]] = {}
        for key, channels in table.items():
            parent = _pdg(key)
            where = f"decays.{key}"
            if parent is None or parent not in masses:
                raise self.fail(where, f"parent {key!r} is not a particle with a mass in this model")
            if not isinstance(channels, dict):
                raise self.fail(where, f"expected a table of daughters -> BR, got {channels!r}")
            allowed = {tuple(sorted(d)): d for d in self.space.particles[parent].decays}
            out: dict[tuple[int, ...], float] = {}
            for dkey, br in channels.items():
                dwhere = f"{where}.{dkey!r}"
                try:
                    daughters = tuple(abs(int(t)) for t in str(dkey).replace(",", " ").split())
                except ValueError:
                    raise self.fail(dwhere, "daughters must be PDG ids separated by spaces") from None
                channel = allowed.get(tuple(sorted(daughters)))
                if channel is None:
                    raise self.fail(dwhere, f"{self.space.particles[parent].name} has no decay channel "
                                    f"{list(daughters)} in space {self.space.name!r}")
                if not _number(br) or not 0.0 <= br <= 1.0 + BR_TOLERANCE:
                    raise self.fail(dwhere, f"BR must be a number in [0, 1], got {br!r}")
                missing = [d for d in channel if d in self.space.particles and d not in masses]
                if missing and br > 0:
                    raise self.fail(dwhere, f"daughter {missing[0]} has no mass in this model")
                threshold = sum(masses[d] if d in self.space.particles else self.space.sm_masses.get(d, 0.0)
                                for d in channel)
                if br > 0 and masses[parent] <= threshold:
                    raise self.fail(dwhere, f"channel is closed: {masses[parent]} GeV <= {threshold:g} GeV "
                                    "(sum of the daughter masses)")
                out[channel] = out.get(channel, 0.0) + float(br)
            total = sum(out.values())
            if out and abs(total - 1.0) > BR_TOLERANCE:
                raise self.fail(where, f"branching ratios sum to {total:.9g}, not 1 (tolerance {BR_TOLERANCE})")
            decays[parent] = out
        for pdg in masses:
            if pdg != self.space.lsp and not decays.get(pdg):
                raise self.fail(f"decays.{pdg}", f"{self.space.particles[pdg].name} has a mass but no decays")
        if decays.get(self.space.lsp):
            raise self.fail(f"decays.{self.space.lsp}", "the LSP is stable and has no decays")
        return decays

    def pair(self, key: Any, where: str) -> Pair:
        try:
            parts = key.split(",") if isinstance(key, str) else list(key)
            a, b = (int(p) for p in parts)
        except (TypeError, ValueError):
            raise self.fail(where, f"expected a signed PDG pair like '-1000001,1000001', got {key!r}") from None
        for p in (a, b):
            if abs(p) not in self.space.particles:
                raise self.fail(where, f"unknown particle {p}")
        return (min(a, b), max(a, b))

    def kappas(self, table: Any) -> dict[Pair, float]:
        if not isinstance(table, dict):
            raise self.fail("ssmultipliers", f"expected a table 'a,b' -> kappa, got {table!r}")
        kappas: dict[Pair, float] = {}
        for key, value in table.items():
            where = f"ssmultipliers.{key!r}"
            pair = self.pair(key, where)
            if not _number(value) or value < 0:
                raise self.fail(where, f"kappa must be a number >= 0, got {value!r}")
            kappas[pair] = float(value)
        return kappas

    def xsecs(self, entries: Any) -> tuple[InjectedXsec, ...]:
        if not isinstance(entries, list):
            raise self.fail("xsecs", "expected a list of {pids, sqrts, xsec_pb}")
        out, seen = [], set()
        for i, entry in enumerate(entries):
            where = f"xsecs[{i}]"
            if not isinstance(entry, dict) or not {"pids", "sqrts", "xsec_pb"} <= entry.keys():
                raise self.fail(where, "expected a table with pids, sqrts and xsec_pb")
            pair = self.pair(entry["pids"], f"{where}.pids")
            sqrts, xsec = entry["sqrts"], entry["xsec_pb"]
            if not _number(sqrts) or sqrts <= 0:
                raise self.fail(f"{where}.sqrts", f"expected √s in TeV, got {sqrts!r}")
            if not _number(xsec) or xsec < 0:
                raise self.fail(f"{where}.xsec_pb", f"expected a cross section >= 0 pb, got {xsec!r}")
            if (pair, int(sqrts)) in seen:
                raise self.fail(where, f"duplicate cross section for {list(pair)} at {sqrts} TeV")
            seen.add((pair, int(sqrts)))
            out.append(InjectedXsec(pair=pair, sqrts=int(sqrts), xsec_fb=1000.0 * float(xsec)))
        return tuple(out)
