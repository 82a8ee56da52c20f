"""Hiscore lists (method reference §2.7): the best *evaluated proposals* of a walk, by K.

Every scored proposal (after μ̂ absorption, before the accept/reject decision) is offered. It
enters if K > 0 and, when the list is full, K exceeds the current minimum; near-duplicates of an
entry already in the list are skipped (same particles, masses within 1e-5 relative, κ and BRs
within 1e-6 relative), as ``Hiscores.newResult`` / ``almostSameAs`` do. The per-run result merges
the walkers' lists (:func:`merge_hiscores`), sorted by K, as ``hiscoreTools`` did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tdmcmc.models.protomodel.space import ProtomodelSpace

if TYPE_CHECKING:
    from .walker import WalkerState

MASS_REL_TOL = 1e-5
VALUE_REL_TOL = 1e-6


@dataclass
class Hiscores:
    """The `keep` best entries (dicts, see :meth:`entry`), K descending."""

    keep: int = 10
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, state: WalkerState, walker: int, step: int) -> bool:
        """Offer a scored state; True if it entered the list."""
        k = state.K
        if k is None or k <= 0.0:
            return False
        if len(self.entries) >= self.keep and k <= self.entries[-1]["K"]:
            return False
        entry = self.entry(state, walker, step)
        if any(almost_same(entry, other) for other in self.entries):
            return False
        self.entries.append(entry)
        self.entries.sort(key=lambda e: -e["K"])
        del self.entries[self.keep:]
        return True

    @staticmethod
    def entry(state: WalkerState, walker: int, step: int) -> dict[str, Any]:
        """A JSON-ready hiscore entry: the protomodel record (κ after μ̂ absorption) and its score."""
        score = state.score
        record = state.to_protomodel(f"walker{walker}-step{step}").to_dict()
        return {"K": state.K, "Z": score.Z, "walker": walker, "step": step,
                "mu_hat": score.mu_hat, "mu_max": state.mu_max if state.mu_max != float("inf") else None,
                "r_max": state.r_max, "log_prior": score.log_prior, "prior_counts": dict(score.prior_counts),
                "best_combination": list(score.best_combination),
                "masses": record["masses"], "decays": record["decays"], "ssmultipliers": record["ssmultipliers"]}


def _close(a: dict[str, float], b: dict[str, float], rel: float) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= rel * max(abs(a[k]), abs(b[k])) for k in a)


def almost_same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same particles, masses within 1e-5 relative, κ and BRs within 1e-6 relative."""
    if not _close(a["masses"], b["masses"], MASS_REL_TOL):
        return False
    if not _close(a["ssmultipliers"], b["ssmultipliers"], VALUE_REL_TOL):
        return False
    return a["decays"].keys() == b["decays"].keys() and all(
        _close(a["decays"][p], b["decays"][p], VALUE_REL_TOL) for p in a["decays"])


def merge_hiscores(lists: Iterable[list[dict[str, Any]]], keep: int = 20) -> list[dict[str, Any]]:
    """The `keep` best entries over several lists, K descending, near-duplicates dropped."""
    out: list[dict[str, Any]] = []
    for entry in sorted((e for lst in lists for e in lst), key=lambda e: -e["K"]):
        if not any(almost_same(entry, other) for other in out):
            out.append(entry)
        if len(out) == keep:
            break
    return out


def describe(entry: dict[str, Any], space: ProtomodelSpace) -> str:
    """One line: K, Z and the particles with masses, e.g. ``K=6.90 Z=3.24: XZ1 163, Xd 735, Xt 1166``."""
    parts = sorted(((int(p), m) for p, m in entry["masses"].items()), key=lambda x: x[1])
    names = ", ".join(f"{space.particles[p].name} {m:.0f}" for p, m in parts)
    return f"K={entry['K']:.3f} Z={entry['Z']:.3f}: {names}"
