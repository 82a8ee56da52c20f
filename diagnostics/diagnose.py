"""All diagnostics of a run, with warnings in plain words where a threshold is failed.

:func:`diagnose` gathers, per slot (particle): the inclusion probability, its MCSE, the ESS and R-hat
of its inclusion indicator, the per-chain inclusion frequencies, and the conditional R-hat/ESS of
every slot parameter given the slot is active (:mod:`.convergence`); per scalar quantity: R-hat,
ESS, MCSE; the model-probability table (:mod:`.model_probabilities`); and the Brooks–Giudici ratios
of every model-invariant scalar (:mod:`.brooks_giudici`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tdmcmc.diagnostics.brooks_giudici import brooks_giudici
from tdmcmc.diagnostics.convergence import Thresholds, conditional_diagnostics, scalar_diagnostics
from tdmcmc.diagnostics.model_probabilities import ModelIndex, ModelTable, index_models, indicator_stats, model_table
from tdmcmc.diagnostics.run_file import Run, is_model_function, parameter_elements


@dataclass
class Diagnosis:
    """Result of :func:`diagnose`; :meth:`to_dict` is JSON-ready (NaN → null)."""

    n_chains: int
    n_draws: int
    slot_dim: str
    thresholds: Thresholds
    slots: dict[str, dict] = field(default_factory=dict)
    scalars: dict[str, dict] = field(default_factory=dict)
    models: ModelTable | None = None
    brooks_giudici: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def to_dict(self) -> dict:
        out = {
            "ok": self.ok,
            "n_chains": self.n_chains,
            "n_draws": self.n_draws,
            "slot_dim": self.slot_dim,
            "thresholds": asdict(self.thresholds),
            "warnings": self.warnings,
            "slots": self.slots,
            "scalars": self.scalars,
            "brooks_giudici": self.brooks_giudici,
            "models": {"heck_ess": self.models.heck_ess, "n_models": self.models.n_models, "table": self.models.rows},
        }
        return json_ready(out)


def json_ready(obj):
    """`obj` with NaN and numpy scalars turned into JSON values (NaN -> null)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _fmt_rhat(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _chains(n: int) -> str:
    return f"{n} chain" if n == 1 else f"{n} chains"


def _slot_record(run: Run, i: int, th: Thresholds, warn: list[str]) -> dict:
    name = run.slot_names[i]
    act = run.active[:, :, i]
    ind = indicator_stats(act)
    per_chain = act.mean(axis=1)
    rec = {
        "inclusion": ind["mean"],
        "inclusion_mcse": ind["mcse"],
        "indicator_ess": ind["ess"],
        "indicator_rhat": ind["rhat"],
        "per_chain_inclusion": per_chain.tolist(),
        "parameters": {},
    }
    chains_txt = ", ".join(f"{f:.2f}" for f in per_chain)
    varies = 0.0 < ind["mean"] < 1.0
    if varies and run.n_chains > 1 and not ind["rhat"] <= th.rhat_max:
        warn.append(
            f"Chains disagree on how often {name} is present: R-hat of its inclusion indicator is "
            f"{_fmt_rhat(ind['rhat'])} (threshold {th.rhat_max}); "
            f"fraction of draws with {name} per chain: {chains_txt}."
        )
    if varies and not ind["ess"] >= th.ess_min(run.n_chains):
        warn.append(
            f"Only {_fmt(ind['ess'])} effective draws for the presence of {name} "
            f"(need {th.ess_min(run.n_chains):.0f}): "
            f"its inclusion probability {ind['mean']:.3f} ± {_fmt(ind['mcse'])} is imprecise."
        )
    for da in run.slot_params.values():
        for label, values in parameter_elements(da, run.slot_dim, i):
            cond = conditional_diagnostics(values, act & np.isfinite(values), th.min_active_draws)
            rec["parameters"][label] = cond
            used = len(cond["chains_used"])
            if used >= 2 and not cond["rhat"] <= th.rhat_max:
                warn.append(
                    f"{label} of {name}, given {name} is present, has not converged: R-hat {_fmt_rhat(cond['rhat'])} "
                    f"(threshold {th.rhat_max}) over the {_chains(used)} "
                    f"with at least {th.min_active_draws} draws of {name}."
                )
            if used and not cond["ess_bulk"] >= th.ess_min(used):
                warn.append(
                    f"Only {_fmt(cond['ess_bulk'])} effective draws of {label} of {name} given {name} is present "
                    f"(need {th.ess_min(used):.0f} for {_chains(used)})."
                )
    return rec


def _scalar_checks(name: str, d: dict, n_chains: int, th: Thresholds, warn: list[str]) -> None:
    if n_chains > 1 and np.isfinite(d["rhat"]) and d["rhat"] > th.rhat_max:
        warn.append(f"Chains disagree on {name}: R-hat {_fmt_rhat(d['rhat'])} (threshold {th.rhat_max}).")
    ess = min(d["ess_bulk"], d["ess_tail"])
    if np.isfinite(ess) and ess < th.ess_min(n_chains):
        warn.append(f"Only {_fmt(ess)} effective draws of {name} (bulk/tail; need {th.ess_min(n_chains):.0f}).")


def _model_checks(table: ModelTable, n_chains: int, th: Thresholds, warn: list[str]) -> None:
    if np.isfinite(table.heck_ess) and table.heck_ess < th.ess_min(n_chains):
        warn.append(
            f"The model sequence has an effective sample size of only {table.heck_ess:.0f} (Heck et al. 2019; "
            f"need {th.ess_min(n_chains):.0f}): posterior model probabilities are imprecise."
        )
    for row in table.rows:
        if n_chains > 1 and 0.0 < row["p"] < 1.0 and not row["rhat"] <= th.rhat_max:
            warn.append(
                f"Chains disagree on the probability of model {row['label']} ({row['p']:.3f}): "
                f"R-hat of its indicator {_fmt_rhat(row['rhat'])} (threshold {th.rhat_max})."
            )


def model_invariant_scalars(run: Run, models: ModelIndex) -> dict[str, np.ndarray]:
    """The scalar quantities that vary within models (e.g. ``lp``, ``K``; not ``n_particles``)."""
    return {k: v for k, v in run.scalars.items() if np.all(np.isfinite(v)) and not is_model_function(v, models.index)}


def diagnose(run: Run, thresholds: Thresholds | None = None, max_models: int = 20) -> Diagnosis:
    """Every diagnostic of ``run`` with plain-word warnings (see the module docstring)."""
    th = thresholds or Thresholds()
    dx = Diagnosis(run.n_chains, run.n_draws, run.slot_dim, th)
    if run.n_chains < 2:
        dx.warnings.append("Only one chain: R-hat and the Brooks–Giudici check need at least two chains.")
    for i, name in enumerate(run.slot_names):
        dx.slots[name] = _slot_record(run, i, th, dx.warnings)
    for name, values in run.scalars.items():
        dx.scalars[name] = scalar_diagnostics(values)
        _scalar_checks(name, dx.scalars[name], run.n_chains, th, dx.warnings)
    models = index_models(run.active)
    dx.models = model_table(models, run.slot_names, max_models=max_models)
    _model_checks(dx.models, run.n_chains, th, dx.warnings)
    if run.n_chains > 1:
        for name, values in model_invariant_scalars(run, models).items():
            bg = brooks_giudici(values, models.index)
            dx.brooks_giudici[name] = bg
            if bg["chain_ratio"] > th.bg_ratio_max:
                dx.warnings.append(
                    f"Brooks–Giudici: chains disagree on {name}: total/within-chain variance ratio "
                    f"{bg['chain_ratio']:.3f} (threshold {th.bg_ratio_max})."
                )
            if bg["model_ratio"] > th.bg_ratio_max:
                dx.warnings.append(
                    f"Brooks–Giudici: within a model, chains disagree on {name}: within-model/within-chain-and-model "
                    f"variance ratio {bg['model_ratio']:.3f} (threshold {th.bg_ratio_max})."
                )
    return dx
