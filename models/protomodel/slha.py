"""A protomodel as an SLHA file with MASS, DECAY and XSECTION blocks, so that SModelS users can
run it (``runSModelS.py -f model.slha``) and compare.

Conventions (those of the protomodels code, method reference §1.2 and §3):
- every particle of the space is listed; particles absent from the model get 1.0E+06 GeV and no
  decays (frozen);
- unstable particles get a total width of ``PROMPT_WIDTH_GEV`` (prompt decays: SModelS applies no
  lifetime reweighting); decays are written for the particle with PDG id > 0, signed as in
  :mod:`.decays` (a self-conjugate parent decaying into a charged pair gets both charge assignments,
  half of the BR each);
- XSECTION blocks hold σ in pb per signed production pair and √s (8 and 13 TeV), κ included:
  the model's injected ``xsecs`` when present, otherwise the fitted cross sections (:mod:`.xsec`).
"""

from __future__ import annotations

from .decays import DecayGraph
from .model import Protomodel
from .space import ProtomodelSpace
from .xsec import cross_sections

FROZEN_MASS_GEV = 1.0e6
PROMPT_WIDTH_GEV = 1.0
SQRTS_TEV = (8, 13)
XSEC_ORDER = 3  # SModelS' order code of the reference tables (NNLO+NNLL / NLO+NLL; one order per process)


def model_xsecs(model: Protomodel, space: ProtomodelSpace,
                sqrts: tuple[int, ...] = SQRTS_TEV) -> dict[tuple[tuple[int, int], int], float]:
    """σ in fb (κ included) by (signed sorted pair, √s in TeV): injected if given, else fitted."""
    if model.xsecs is not None:
        return {(x.pair, x.sqrts): x.xsec_fb for x in model.xsecs if x.sqrts in sqrts}
    out = {}
    for s in sqrts:
        for pair, value in cross_sections(space, model.masses, model.kappas, s).items():
            out[(pair, s)] = value
    return out


def to_slha(model: Protomodel, space: ProtomodelSpace) -> str:
    """The SLHA text of `model` (see the module docstring)."""
    graph = DecayGraph(space)
    lines = [f"# protomodel {model.name} written by tdmcmc", "BLOCK MASS"]
    for pdg, particle in sorted(space.particles.items()):
        mass = model.masses.get(pdg, FROZEN_MASS_GEV)
        lines.append(f"   {pdg:>8d}  {mass:.6E}  # {particle.name}")
    for pdg, particle in sorted(space.particles.items()):
        branchings = model.decays.get(pdg, {})
        if pdg not in model.masses or not branchings:
            lines.append(f"DECAY  {pdg:>8d}  {0.0:.6E}  # {particle.name}")
            continue
        lines.append(f"DECAY  {pdg:>8d}  {PROMPT_WIDTH_GEV:.6E}  # {particle.name}")
        for decay in graph.decays(pdg):
            br = branchings.get(decay.channel, 0.0) * decay.share
            if br > 0:
                ids = (decay.bsm, *decay.sm)
                lines.append(f"   {br:.6E}  {len(ids)}  " + "  ".join(f"{i:>8d}" for i in ids))
    for (pair, sqrts), xsec_fb in sorted(model_xsecs(model, space).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if xsec_fb <= 0:
            continue
        lines.append(f"XSECTION  {1000.0 * sqrts:.2E}  2212 2212 2 {pair[0]} {pair[1]}  # kappa included")
        lines.append(f"  0  {XSEC_ORDER}  0  0  0  0  {xsec_fb / 1000.0:.6E}  tdmcmc")
    return "\n".join(lines) + "\n"
