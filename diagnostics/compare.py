"""The greedy walk (``tdmcmc greedy`` JSON) side by side with a sampler run (run file): best K against CPU
seconds, particle-content frequencies, and the greedy hiscores placed in the sampler's posterior.

Conventions (see docs/compare.md):

- CPU axis of the sampler: the run's ``tune_cpu_seconds`` + ``sampling_cpu_seconds`` attributes (all chains
  and temperature levels); draw d (0-based) of D is reached at ``tune + sampling × (d + 1)/D`` (uniform cost
  per draw: the run file has no per-draw timing). Tuning draws are not stored, so the curve starts after
  the tuning CPU. Without CPU attributes the wall ``tune_seconds`` / ``sampling_seconds`` are used and a
  warning says so.
- CPU axis of the greedy walk: the W walkers run in parallel and their joint best is the maximum over
  walkers, so step s (1-based) of S costs ``Σ_w cpu_seconds_w × s/S`` (the summed CPU at equal steps,
  uniform cost per step: the JSON has no per-step timing). The main process (database build) is left out.
- best K: greedy, the running maximum of the *proposals'* K (what enters the hiscores); sampler, the
  running maximum over chains of ``posterior.K`` (the cold chain's states; proposals are not stored),
  or, for ``paper``-target runs with a ``best`` group, twice its per-iteration best log L (= K/2 of
  the best state of any temperature level) against the measured CPU seconds of every iteration.
- particle sets: a set is the active particles of a state. Sampler: posterior visit frequency.
  Greedy: frequency among the hiscore entries, and among the accepted states (the state kept at each
  step whose proposal was accepted, each acceptance counted once; needs the walkers' per-step
  ``particles``, otherwise only their ``n_particles`` enter the size table).
- quantile of a value v among draws x: (#{x < v} + ½ #{x = v}) / n.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tdmcmc.diagnostics.diagnose import json_ready
from tdmcmc.diagnostics.model_probabilities import index_models, indicator_stats, model_label
from tdmcmc.diagnostics.run_file import Run
from tdmcmc.diagnostics.summary import QUANTILES
from tdmcmc.errors import UserError

OTHER = "other"


@dataclass(frozen=True)
class GreedyRun:
    """The parts of a ``tdmcmc greedy`` output document the comparison uses.

    ``K_proposed`` (walker, step) is NaN where the proposal was not scorable; ``cpu_seconds`` per walker;
    ``particles`` per walker and step the PDG ids of the state kept after the step, None when not recorded.
    """

    path: Path
    K_proposed: np.ndarray
    accepted: np.ndarray
    n_particles: np.ndarray
    cpu_seconds: np.ndarray
    particles: list[list[tuple[int, ...]]] | None
    hiscores: list[dict]
    database_hash: str | None

    @property
    def n_walkers(self) -> int:
        return self.K_proposed.shape[0]

    @property
    def n_steps(self) -> int:
        return self.K_proposed.shape[1]


def read_greedy(path: str | Path) -> GreedyRun:
    """Read a ``tdmcmc greedy`` JSON document; errors name the file and the missing key."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("command") != "greedy":
        raise UserError(f"{path}: not a `tdmcmc greedy` output (no \"command\": \"greedy\")")
    walkers = doc.get("walkers") or []
    needed = ("K_proposed", "accepted", "n_particles", "cpu_seconds")
    for i, w in enumerate(walkers):
        missing = [k for k in needed if k not in w]
        if missing:
            raise UserError(f"{path}: walkers[{i}] has no {', '.join(missing)}")
    if not walkers or len({len(w["K_proposed"]) for w in walkers}) != 1 or not walkers[0]["K_proposed"]:
        raise UserError(f"{path}: 'walkers' must list walkers with the same number (≥ 1) of steps")
    if "hiscores" not in doc:
        raise UserError(f"{path}: no 'hiscores'")
    k = np.array([[np.nan if v is None else v for v in w["K_proposed"]] for w in walkers], dtype=float)
    has_particles = all("particles" in w for w in walkers)
    return GreedyRun(
        path=path,
        K_proposed=k,
        accepted=np.array([w["accepted"] for w in walkers], dtype=bool),
        n_particles=np.array([w["n_particles"] for w in walkers], dtype=int),
        cpu_seconds=np.array([w["cpu_seconds"] for w in walkers], dtype=float),
        particles=[[tuple(int(p) for p in s) for s in w["particles"]] for w in walkers] if has_particles else None,
        hiscores=list(doc["hiscores"]),
        database_hash=(doc.get("database") or {}).get("content_hash"),
    )


def particle_namer(slot_names: tuple[str, ...]) -> Callable[[int], str]:
    """PDG id → the run's particle name: the id itself when the run's particles are PDG ids, else the
    name in the default protomodel space (``1000006`` → ``Xt``); ids outside the space stay numbers."""
    if all(n.lstrip("-").isdigit() for n in slot_names):
        return str
    from tdmcmc.models.protomodel.space import default_space

    particles = default_space().particles
    return lambda pid: particles[pid].name if pid in particles else str(pid)


def set_label(names: set[str] | frozenset[str], slot_names: tuple[str, ...]) -> str:
    """The run's model label of a particle set (slot order; particles outside the run appended, sorted)."""
    ordered = [n for n in slot_names if n in names] + sorted(set(names) - set(slot_names))
    return "+".join(ordered) if ordered else model_label(np.zeros(len(slot_names), bool), slot_names)


def set_draws(run: Run, label: str) -> np.ndarray:
    """Bool (chain, draw): the draws whose active particles are the set ``label``."""
    models = index_models(run.active)
    labels = models.labels(run.slot_names)
    return models.index == labels.index(label) if label in labels else np.zeros(run.active.shape[:2], bool)


def quantile_of(value: float, draws: np.ndarray) -> float:
    """(#{x < v} + ½ #{x = v}) / n over the finite draws; NaN if none."""
    x = draws[np.isfinite(draws)]
    if x.size == 0 or not np.isfinite(value):
        return np.nan
    return float((np.sum(x < value) + 0.5 * np.sum(x == value)) / x.size)


# --- best K against CPU seconds -------------------------------------------------------------------


def greedy_best_k(greedy: GreedyRun) -> pd.DataFrame:
    """Per step: summed walker CPU seconds at that step and the best proposal K over all walkers so far."""
    steps = np.arange(1, greedy.n_steps + 1)
    best = np.fmax.reduce(np.fmax.accumulate(greedy.K_proposed, axis=1), axis=0)
    cpu = greedy.cpu_seconds.sum() * steps / greedy.n_steps
    return pd.DataFrame({"step": steps, "cpu_seconds": cpu, "best_K": best})


def sampler_timing(attrs: dict) -> tuple[float, float, str]:
    """(tuning, sampling) seconds of a run and their kind, ``"CPU"`` or ``"wall"`` (see module docstring)."""
    for kind, tune, sampling in (("CPU", "tune_cpu_seconds", "sampling_cpu_seconds"),
                                 ("wall", "tune_seconds", "sampling_seconds")):
        if sampling in attrs:
            return float(attrs.get(tune, 0.0)), float(attrs[sampling]), kind
    raise UserError("run has no timing attributes (sampling_cpu_seconds or sampling_seconds)")


def uses_best_states(run: Run) -> bool:
    """Whether the sampler's best-K curve comes from the run's ``best`` group (paper target)."""
    return run.attrs.get("target") == "paper" and "best" in run.tree.children


def sampler_best_k(run: Run) -> pd.DataFrame:
    """Per draw: CPU (or wall) seconds at that draw and the best K over all chains so far.

    A ``paper``-target run file with a ``best`` group (log L = K/2 of the best state of any
    temperature level, per iteration, with measured cumulative CPU seconds) gives the exact curve
    from the first iteration on, warm-up and sharpened levels included."""
    if uses_best_states(run):
        best = run.tree["best"].dataset
        k = 2.0 * np.fmax.reduce(np.asarray(best["best_log_likelihood"].values, dtype=float), axis=0)
        cpu = np.asarray(best["cpu_seconds"].values, dtype=float)
        done = np.isfinite(cpu)
        return pd.DataFrame({"draw": np.asarray(best["iteration"].values)[done] - 1, "cpu_seconds": cpu[done],
                             "best_K": k[done]})
    if "K" not in run.scalars:
        raise UserError("posterior has no 'K' variable")
    tune, sampling, _ = sampler_timing(run.attrs)
    draws = np.arange(1, run.n_draws + 1)
    best = np.fmax.accumulate(np.fmax.reduce(run.scalars["K"], axis=0))
    return pd.DataFrame({"draw": draws - 1, "cpu_seconds": tune + sampling * draws / run.n_draws, "best_K": best})


def best_k_at(curve: pd.DataFrame, seconds: np.ndarray) -> np.ndarray:
    """The best K a curve has reached by each of ``seconds`` (NaN before its first point)."""
    i = np.searchsorted(curve["cpu_seconds"].to_numpy(), seconds, side="right") - 1
    k = curve["best_K"].to_numpy()
    return np.where(i >= 0, k[np.clip(i, 0, None)], np.nan)


def best_k_table(greedy_curve: pd.DataFrame, sampler_curve: pd.DataFrame, n_points: int = 10) -> pd.DataFrame:
    """Both curves read at ``n_points`` CPU times evenly spaced up to the longer of the two runs."""
    end = max(greedy_curve["cpu_seconds"].iloc[-1], sampler_curve["cpu_seconds"].iloc[-1])
    t = end * np.arange(1, n_points + 1) / n_points
    return pd.DataFrame({"cpu_seconds": t, "greedy_best_K": best_k_at(greedy_curve, t),
                         "sampler_best_K": best_k_at(sampler_curve, t)})


def change_points(curve: pd.DataFrame) -> pd.DataFrame:
    """The rows where best K changes, and the last row: the step function exactly, in few rows."""
    k = curve["best_K"].to_numpy()
    changed = np.r_[True, ~((k[1:] == k[:-1]) | (np.isnan(k[1:]) & np.isnan(k[:-1])))]
    changed[-1] = True
    return curve[changed].reset_index(drop=True)


# --- particle contents ----------------------------------------------------------------------------


def _frequencies(sets: list[str]) -> dict[str, float]:
    counts = Counter(sets)
    return {s: c / len(sets) for s, c in counts.items()} if sets else {}


def content_frames(run: Run, greedy: GreedyRun, max_sets: int = 15) -> dict[str, pd.DataFrame]:
    """Side-by-side frequencies: ``sets`` (particle sets), ``inclusion`` (per particle), ``sizes`` (number
    of particles). Columns ``posterior`` (sampler), ``greedy_hiscores``, ``greedy_accepted`` (NaN when the
    walkers' particles were not recorded; the sizes always have it). Sets: the ``max_sets`` most frequent
    of each column, the rest summed as ``other``; ``rank`` is the posterior rank among visited sets."""
    name = particle_namer(run.slot_names)
    models = index_models(run.active)
    post_labels = models.labels(run.slot_names)
    post = dict(zip(post_labels, models.counts / models.counts.sum()))
    rank = {lab: i + 1 for i, lab in enumerate(post_labels)}
    hs_sets = [frozenset(name(int(p)) for p in e["masses"]) for e in greedy.hiscores]
    hs = _frequencies([set_label(s, run.slot_names) for s in hs_sets])
    acc_sets: list[frozenset[str]] = []
    if greedy.particles is not None:
        acc_sets = [frozenset(name(p) for p in greedy.particles[w][s]) for w, s in zip(*np.nonzero(greedy.accepted))]
    acc = _frequencies([set_label(s, run.slot_names) for s in acc_sets]) if greedy.particles is not None else None

    shown: list[str] = []
    for freq in (post, hs, acc or {}):
        for label in sorted(freq, key=lambda s: -freq[s])[:max_sets]:
            if label not in shown:
                shown.append(label)
    shown.sort(key=lambda s: (-post.get(s, 0.0), -hs.get(s, 0.0), -(acc or {}).get(s, 0.0)))

    def column(freq: dict[str, float] | None) -> list[float]:
        if freq is None:
            return [np.nan] * (len(shown) + 1)
        values = [freq.get(s, 0.0) for s in shown]
        return values + [max(0.0, 1.0 - sum(values))]

    sets = pd.DataFrame({
        "set": shown + [OTHER],
        "rank": pd.array([rank.get(s) for s in shown] + [None], dtype="Int64"),
        "posterior": column(post), "greedy_hiscores": column(hs), "greedy_accepted": column(acc),
    })
    columns = ["posterior", "greedy_hiscores", "greedy_accepted"]
    sets = sets[(sets["set"] != OTHER) | (sets[columns].fillna(0).sum(axis=1) > 1e-12)]

    greedy_names = sorted({n for s in hs_sets + acc_sets for n in s} - set(run.slot_names))
    particles = list(run.slot_names) + greedy_names
    p_post = dict(zip(run.slot_names, run.active.mean(axis=(0, 1))))
    inclusion = pd.DataFrame({
        "particle": particles,
        "posterior": [p_post.get(p, 0.0) for p in particles],
        "greedy_hiscores": [np.mean([p in s for s in hs_sets]) if hs_sets else np.nan for p in particles],
        "greedy_accepted": [np.mean([p in s for s in acc_sets]) if acc_sets else np.nan for p in particles],
    })
    inclusion = inclusion[inclusion[columns].fillna(0).sum(axis=1) > 0]

    n_post = run.active.sum(axis=2).ravel()
    n_hs = np.array([len(s) for s in hs_sets])
    n_acc = greedy.n_particles[greedy.accepted]
    sizes_seen = sorted(set(n_post.tolist()) | set(n_hs.tolist()) | set(n_acc.tolist()))
    sizes = pd.DataFrame({
        "n_particles": sizes_seen,
        "posterior": [np.mean(n_post == n) for n in sizes_seen],
        "greedy_hiscores": [np.mean(n_hs == n) if n_hs.size else np.nan for n in sizes_seen],
        "greedy_accepted": [np.mean(n_acc == n) if n_acc.size else np.nan for n in sizes_seen],
    })
    return {"sets": sets.reset_index(drop=True), "inclusion": inclusion.reset_index(drop=True), "sizes": sizes}


# --- a hiscore in the posterior -------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """One greedy hiscore entry placed in the sampler's posterior.

    ``p_set`` ± ``p_set_mcse``: posterior probability of its particle set (``rank`` among the
    ``n_sets`` visited sets, None when never visited; ``n_set_draws`` draws of it); ``K_quantile``:
    quantile of its K among all posterior K draws (``K_quantile_set``: among the draws of its set);
    ``particles``: per particle its greedy mass (GeV), the conditioning used (``set``, ``active`` or
    ``absent``), the number of draws, the posterior mass quantiles (GeV) and the greedy mass's quantile."""

    entry: int
    label: str
    K: float
    Z: float
    p_set: float
    p_set_mcse: float
    rank: int | None
    n_sets: int
    n_set_draws: int
    K_quantile: float
    K_quantile_set: float
    K_posterior: dict[str, float]
    particles: pd.DataFrame = field(repr=False)


def place_hiscore(run: Run, entry: dict, index: int = 0, min_set_draws: int = 100) -> Placement:
    """Place hiscore ``entry`` (a dict of the greedy JSON) in the posterior of ``run``.

    Mass intervals are conditional on the hiscore's particle set when the posterior has at least
    ``min_set_draws`` draws of it, else on each particle being active (any set)."""
    if "K" not in run.scalars:
        raise UserError("posterior has no 'K' variable")
    name = particle_namer(run.slot_names)
    masses = {name(int(p)): float(m) for p, m in entry["masses"].items()}
    label = set_label(set(masses), run.slot_names)
    labels = index_models(run.active).labels(run.slot_names)
    in_set = set_draws(run, label)
    n_set = int(in_set.sum())
    use_set = n_set >= min_set_draws
    stats = indicator_stats(in_set)
    k = run.scalars["K"]
    mass = run.slot_params.get("mass")
    rows = []
    for pname, m in sorted(masses.items(), key=lambda x: x[1]):
        row = {"particle": pname, "mass_greedy": m}
        if pname not in run.slot_names or mass is None or not run.active[:, :, run.slot_names.index(pname)].any():
            rows.append(row | {"condition": "absent", "n_draws": 0} | dict.fromkeys(QUANTILES, np.nan)
                        | {"quantile": np.nan})
            continue
        i = run.slot_names.index(pname)
        values = np.asarray(mass.isel({run.slot_dim: i}).values, dtype=float)
        cond = in_set if use_set else run.active[:, :, i]
        x = values[cond & np.isfinite(values)]
        rows.append(row | {"condition": "set" if use_set else "active", "n_draws": int(x.size)}
                    | dict(zip(QUANTILES, np.quantile(x, list(QUANTILES.values()))))
                    | {"quantile": quantile_of(m, x)})
    finite_k = k[np.isfinite(k)]
    return Placement(
        entry=index, label=label, K=float(entry["K"]), Z=float(entry["Z"]),
        p_set=stats["mean"], p_set_mcse=stats["mcse"], rank=labels.index(label) + 1 if label in labels else None,
        n_sets=len(labels), n_set_draws=n_set,
        K_quantile=quantile_of(entry["K"], k), K_quantile_set=quantile_of(entry["K"], k[in_set]),
        K_posterior=(dict(zip(QUANTILES, np.quantile(finite_k, list(QUANTILES.values()))))
                     | {"max": float(finite_k.max())}) if finite_k.size else {},
        particles=pd.DataFrame(rows),
    )


# --- the whole comparison -------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Everything ``tdmcmc compare`` shows; curves are per step / per draw (see module docstring)."""

    run_name: str
    greedy_name: str
    time_kind: str
    sampler_tune_seconds: float
    greedy_curve: pd.DataFrame
    sampler_curve: pd.DataFrame
    best_k: pd.DataFrame
    contents: dict[str, pd.DataFrame]
    placements: list[Placement]
    greedy_walkers: int
    greedy_steps: int
    run_chains: int
    run_draws: int
    warnings: list[str]
    sampler_best_states: bool = False

    def to_dict(self) -> dict:
        """JSON-ready (NaN as None); the curves as their change points."""
        def records(frame: pd.DataFrame) -> list[dict]:
            return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")

        return json_ready({
            "run": self.run_name, "greedy": self.greedy_name, "time_kind": self.time_kind,
            "sampler_tune_seconds": self.sampler_tune_seconds,
            "greedy_walkers": self.greedy_walkers, "greedy_steps": self.greedy_steps,
            "run_chains": self.run_chains, "run_draws": self.run_draws,
            "sampler_best_states": self.sampler_best_states,
            "greedy_best_K": records(change_points(self.greedy_curve)),
            "sampler_best_K": records(change_points(self.sampler_curve)),
            "best_K_table": records(self.best_k),
            **{k: records(v) for k, v in self.contents.items()},
            "hiscores": [
                {k: v for k, v in p.__dict__.items() if k != "particles"} | {"particles": records(p.particles)}
                for p in self.placements
            ],
            "warnings": self.warnings,
        })


def compare(run: Run, greedy: GreedyRun, *, run_name: str = "run", max_sets: int = 15, n_hiscores: int = 1,
            min_set_draws: int = 100) -> Comparison:
    """Compare a sampler run with a greedy walk; ``n_hiscores`` best hiscore entries are placed."""
    tune, _, kind = sampler_timing(run.attrs)
    warnings = []
    if kind == "wall":
        warnings.append("the run has no CPU timings (sampling_cpu_seconds); its time axis is wall seconds")
    run_hash = run.attrs.get("database_content_hash")
    if run_hash and greedy.database_hash and run_hash != greedy.database_hash:
        warnings.append(f"different databases: run {run_hash}, greedy {greedy.database_hash}")
    if greedy.particles is None:
        warnings.append("the greedy walkers did not record their particles per step: no set frequencies "
                        "among accepted states (sizes only)")
    gc, sc = greedy_best_k(greedy), sampler_best_k(run)
    return Comparison(
        run_name=run_name, greedy_name=str(greedy.path), time_kind=kind, sampler_tune_seconds=tune,
        greedy_curve=gc, sampler_curve=sc, best_k=best_k_table(gc, sc),
        contents=content_frames(run, greedy, max_sets=max_sets),
        placements=[place_hiscore(run, e, i, min_set_draws) for i, e in enumerate(greedy.hiscores[:n_hiscores])],
        greedy_walkers=greedy.n_walkers, greedy_steps=greedy.n_steps, run_chains=run.n_chains,
        run_draws=run.n_draws, warnings=warnings, sampler_best_states=uses_best_states(run),
    )


def _text(frame: pd.DataFrame) -> str:
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        return frame.to_string(index=False) if len(frame) else "(none)"


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if np.isfinite(x) else "n/a"


def format_comparison(c: Comparison) -> str:
    """The comparison as plain text for the terminal."""
    g_end, s_end = c.greedy_curve.iloc[-1], c.sampler_curve.iloc[-1]
    parts = [
        f"greedy {c.greedy_name}: {c.greedy_walkers} walkers × {c.greedy_steps} steps, "
        f"{g_end.cpu_seconds:.1f} CPU s, best K {g_end.best_K:.3f}",
        f"sampler {c.run_name}: {c.run_chains} chains × {c.run_draws} draws, "
        f"{s_end.cpu_seconds:.1f} {c.time_kind} s (incl. tuning), best K {s_end.best_K:.3f}",
        *[f"WARNING: {w}" for w in c.warnings],
        "", f"Best K so far against {c.time_kind} seconds (greedy: summed walker CPU at equal steps)",
        _text(c.best_k),
        "", "Particle sets: posterior probability (rank), frequency among greedy hiscores and accepted states",
        _text(c.contents["sets"]),
        "", "Inclusion per particle", _text(c.contents["inclusion"]),
        "", "Number of particles", _text(c.contents["sizes"]),
    ]
    for p in c.placements:
        rank = "never visited" if p.rank is None else f"rank {p.rank} of {p.n_sets}"
        cond = (f"the set ({p.n_set_draws} draws)" if (p.particles["condition"] == "set").any()
                else "each particle being active (set has too few draws)")
        parts += [
            "", f"Greedy hiscore #{p.entry + 1} (K = {p.K:.3f}, Z = {p.Z:.3f}) in the posterior: set {p.label}",
            f"  P(set) = {p.p_set:.4g} ± {_fmt(p.p_set_mcse, '.2g')} (MCSE), {rank}",
            f"  K quantile among all posterior draws {_fmt(p.K_quantile, '.3f')}, "
            f"among draws of its set {_fmt(p.K_quantile_set, '.3f')}; "
            f"posterior K median {_fmt(p.K_posterior.get('median', np.nan), '.3f')}, max {_fmt(p.K_posterior.get('max', np.nan), '.3f')}",
            f"  masses [GeV]: posterior quantiles conditional on {cond}; 'quantile' = where the greedy mass falls",
            _text(p.particles),
        ]
    return "\n".join(parts)
