"""Figures and the HTML page of ``tdmcmc compare`` (see :mod:`tdmcmc.diagnostics.compare`)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tdmcmc.diagnostics import plots
from tdmcmc.diagnostics.compare import Comparison, Placement, set_draws
from tdmcmc.diagnostics.report import PAGE_STYLE, html_figure, html_table
from tdmcmc.diagnostics.run_file import Run

_COLUMNS = {"posterior": ("sampler posterior", "C0"), "greedy_hiscores": ("greedy hiscores", "C3"),
            "greedy_accepted": ("greedy accepted states", "C1")}


def best_k(c: Comparison) -> Figure:
    """Best K so far against seconds, greedy and sampler, as step functions with their end points marked."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    sampler = (f"sampler ({c.run_chains} chains, best state of any level)" if c.sampler_best_states
               else f"sampler ({c.run_chains} chains, after tuning)")
    for curve, label, color in ((c.greedy_curve, f"greedy ({c.greedy_walkers} walkers, summed CPU)", "C3"),
                                (c.sampler_curve, sampler, "C0")):
        ok = np.isfinite(curve["best_K"].to_numpy())
        x, k = curve["cpu_seconds"].to_numpy()[ok], curve["best_K"].to_numpy()[ok]
        if x.size:
            ax.step(x, k, where="post", color=color, lw=1.8, label=f"{label}: {k[-1]:.2f}")
            ax.plot(x[-1], k[-1], "o", color=color)
    if c.sampler_tune_seconds > 0:
        ax.axvspan(0, c.sampler_tune_seconds, color="C0", alpha=0.08,
                   label="sampler warm-up" if c.sampler_best_states else "sampler tuning (draws not stored)")
    ax.set_xlabel(f"{c.time_kind} seconds")
    ax.set_ylabel("best K so far")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def contents(c: Comparison, max_sets: int = 12) -> Figure:
    """Grouped horizontal bars: particle-set frequencies (left) and per-particle inclusion (right)."""
    sets = c.contents["sets"].head(max_sets)
    inc = c.contents["inclusion"]
    n = max(len(sets), len(inc))
    fig = Figure(figsize=(12, 0.38 * n + 1.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.3, 1])
    for ax, frame, key, title in ((left, sets, "set", "particle sets"), (right, inc, "particle", "inclusion")):
        cols = [col for col in _COLUMNS if frame[col].notna().any()]
        y = np.arange(len(frame))
        h = 0.8 / len(cols)
        for j, col in enumerate(cols):
            label, color = _COLUMNS[col]
            ax.barh(y - 0.4 + h * (j + 0.5), frame[col].fillna(0), height=h, color=color, label=label)
        ax.set_yticks(y, frame[key])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("frequency" if key == "set" else "inclusion probability / frequency")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    left.legend(loc="lower right", fontsize="small")
    return fig


def hiscore(run: Run, p: Placement) -> Figure:
    """The hiscore in the posterior: K histogram and per-particle mass histograms (conditional as in the
    table), 68 % / 95 % bands, the greedy value as a red line."""
    panels = [row for _, row in p.particles.iterrows() if row["condition"] != "absent"]
    n = len(panels) + 1
    ncol = min(4, n)
    nrow = -(-n // ncol)
    fig = Figure(figsize=(3.4 * ncol, 2.8 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    k = run.scalars["K"]
    _histogram(axes[0], k[np.isfinite(k)], p.K, "K", f"K (greedy at quantile {p.K_quantile:.2f})")
    in_set = set_draws(run, p.label)
    mass = run.slot_params["mass"] if panels else None
    for ax, row in zip(axes[1:], panels):
        i = run.slot_names.index(row["particle"])
        values = np.asarray(mass.isel({run.slot_dim: i}).values, dtype=float)
        cond = in_set if row["condition"] == "set" else run.active[:, :, i]
        _histogram(ax, values[cond & np.isfinite(values)], row["mass_greedy"], "mass [GeV]",
                   f"{row['particle']} | {row['condition']} (q = {row['quantile']:.2f})")
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize="x-small", loc="upper left")
    absent = p.particles.loc[p.particles["condition"] == "absent", "particle"].tolist()
    fig.suptitle(f"greedy hiscore #{p.entry + 1} ({p.label}, K = {p.K:.2f}) in the sampler posterior; "
                 f"P(set) = {p.p_set:.3g}" + (f"; never active: {', '.join(absent)}" if absent else ""),
                 fontsize="medium")
    return fig


def _histogram(ax, x: np.ndarray, value: float, xlabel: str, title: str) -> None:
    if x.size:
        ax.hist(x, bins=40, color="0.75")
        q = np.quantile(x, [0.025, 0.16, 0.5, 0.84, 0.975])
        ax.axvspan(q[0], q[4], color="C0", alpha=0.1, label="95 %")
        ax.axvspan(q[1], q[3], color="C0", alpha=0.2, label="68 %")
        ax.axvline(q[2], color="C0", label="median")
    ax.axvline(value, color="C3", lw=2, label="greedy")
    ax.set_xlabel(xlabel)
    ax.set_yticks([])
    ax.set_title(title, fontsize="medium")


def write_compare_report(run: Run, c: Comparison, out: str | Path) -> Path:
    """Write ``out/index.html`` with the tables and PNG figures of a comparison; return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = [("best_k.png", best_k(c), f"Best K so far against {c.time_kind} seconds. Greedy: maximum over walkers "
             "of the proposals' K, at the summed walker CPU of equal steps. Sampler: maximum over chains of the "
             "stored draws' K, after the tuning time."),
            ("contents.png", contents(c), "Particle-set frequencies (left) and inclusion per particle (right): "
             "sampler posterior, greedy hiscores, greedy accepted states.")]
    figs += [(f"hiscore_{p.entry + 1}.png", hiscore(run, p), f"Greedy hiscore #{p.entry + 1} in the posterior: "
              "posterior K and masses (grey), 68/95 % bands and median (blue), greedy value (red).")
             for p in c.placements]
    for file, fig, _ in figs:
        plots.save(fig, out / file)
    sections = [f"<h1>{html.escape(f'{c.run_name} vs greedy {Path(c.greedy_name).name}')}</h1>"]
    sections += [f"<div class='warn'>{html.escape(w)}</div>" for w in c.warnings]
    sections += [html_figure(file, caption) for file, _, caption in figs]
    sections += [f"<h2>Best K against {c.time_kind} seconds</h2>", html_table(c.best_k),
                 "<h2>Particle sets</h2>", html_table(c.contents["sets"]),
                 "<h2>Inclusion per particle</h2>", html_table(c.contents["inclusion"]),
                 "<h2>Number of particles</h2>", html_table(c.contents["sizes"])]
    for p in c.placements:
        rank = "never visited" if p.rank is None else f"rank {p.rank} of {p.n_sets}"
        sections += [f"<h2>Greedy hiscore #{p.entry + 1} in the posterior</h2>",
                     f"<p>set {html.escape(p.label)}: P = {p.p_set:.4g} ± {p.p_set_mcse:.2g}, {rank}; "
                     f"K = {p.K:.3f} at posterior quantile {p.K_quantile:.3f}</p>",
                     html_table(p.particles)]
    index = out / "index.html"
    head = f"<meta charset='utf-8'><title>tdmcmc compare</title><style>{PAGE_STYLE}</style>"
    index.write_text(f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(sections)}</body></html>",
                     encoding="utf-8")
    return index
