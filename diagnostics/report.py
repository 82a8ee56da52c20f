"""HTML run report: warnings, diagnostics and summary tables, and PNG figures linked from ``index.html``.

The folder written holds ``index.html`` and one PNG per figure (relative links, so the folder can be
moved or archived as a whole).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tdmcmc.diagnostics import plots
from tdmcmc.diagnostics.diagnose import Diagnosis, diagnose, model_invariant_scalars
from tdmcmc.diagnostics.model_probabilities import index_models
from tdmcmc.diagnostics.run_file import Run
from tdmcmc.diagnostics.summary import inclusion_frame, model_frame, parameter_frame, sampler_frame, size_frame

_SHOWN = 8  # warnings listed before the rest are folded away

PAGE_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
.warn { background: #fff0f0; border-left: 4px solid #c00; padding: 0.5em 1em; }
.ok { background: #f0fff0; border-left: 4px solid #080; padding: 0.5em 1em; }
figure { margin: 1em 0 2em; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
"""


def html_table(frame: pd.DataFrame) -> str:
    nullable_int = [c for c in frame.columns if isinstance(frame[c].dtype, pd.Int64Dtype)]
    frame = frame.astype({c: object for c in nullable_int})
    for c in nullable_int:
        frame[c] = frame[c].where(frame[c].notna(), None)
    return frame.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="–", border=0)


def _diagnostic_frames(run: Run, dx: Diagnosis) -> dict[str, pd.DataFrame]:
    slots = []
    for name, rec in dx.slots.items():
        row = {
            run.slot_dim: name,
            "p_incl": rec["inclusion"],
            "indicator ESS": rec["indicator_ess"],
            "indicator R-hat": rec["indicator_rhat"],
        }
        for label, cond in rec["parameters"].items():
            row |= {f"{label} R-hat|active": cond["rhat"], f"{label} ESS|active": cond["ess_bulk"]}
        slots.append(row)
    scalars = pd.DataFrame([{"quantity": k} | v for k, v in dx.scalars.items()])
    bg = pd.DataFrame([{"quantity": k} | v for k, v in dx.brooks_giudici.items()])
    return {"slots": pd.DataFrame(slots), "scalars": scalars, "brooks_giudici": bg}


def _figures(run: Run, dx: Diagnosis, out: Path, frames: dict[str, pd.DataFrame]) -> list[tuple[str, str]]:
    """Write the PNGs; return (file name, caption) pairs."""
    figs = [
        ("traces.png", plots.traces(run), f"Number of active {run.slot_dim}s and log target per chain over the run."),
        (
            "inclusion.png",
            plots.inclusion(run, frames["inclusion"]),
            f"Inclusion probability per {run.slot_dim} (bar, ±2 MCSE) and per chain (dots).",
        ),
        (
            "models.png",
            plots.model_probabilities(frames["models"]),
            "Most probable models: visit frequency, Heck et al. (2019) 95 % interval, ±2 MCSE.",
        ),
    ]
    for name, da in run.slot_params.items():
        if da.ndim == 3 and np.isfinite(da.values).any():
            figs.append(
                (
                    f"posterior_{name}.png",
                    plots.parameter_posteriors(run, name),
                    f"{name} given the {run.slot_dim} is present: pooled (grey), per chain (lines), "
                    "median and 68 % band (blue).",
                )
            )
    for name in ("K", "Z", "r_max", "mu_max"):
        if name in run.scalars:
            figs.append(
                (
                    f"trace_{name}.png",
                    plots.scalar_trace(run, name),
                    f"{name} over the run per chain, and its histogram.",
                )
            )
    models = index_models(run.active)
    for name in dx.brooks_giudici:
        figs.append(
            (
                f"brooks_giudici_{name}.png",
                plots.brooks_giudici(model_invariant_scalars(run, models)[name], models.index, name),
                f"Brooks–Giudici variance components of {name} on the first t draws; each pair should meet and settle.",
            )
        )
    for file, fig, _ in figs:
        plots.save(fig, out / file)
    return [(file, caption) for file, _, caption in figs]


def _attributes(run: Run) -> str:
    rows = []
    for key, value in run.attrs.items():
        text = value if isinstance(value, str) else json.dumps(value.tolist() if hasattr(value, "tolist") else value)
        rows.append(
            f"<tr><th>{html.escape(str(key))}</th><td style='text-align:left'>{html.escape(str(text))}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _status(dx: Diagnosis) -> str:
    if not dx.warnings:
        return "<div class='ok'>All diagnostics pass their thresholds.</div>"
    items = [f"<li>{html.escape(w)}</li>" for w in dx.warnings]
    shown, folded = "".join(items[:_SHOWN]), "".join(items[_SHOWN:])
    more = f"<details><summary>{len(items) - _SHOWN} more</summary><ul>{folded}</ul></details>" if folded else ""
    return f"<div class='warn'><b>{len(items)} diagnostics failed their thresholds:</b><ul>{shown}</ul>{more}</div>"


def _overview(run: Run, dx: Diagnosis) -> list[str]:
    th = dx.thresholds
    return [
        f"<p>{run.n_chains} chains × {run.n_draws} draws; {len(run.slot_names)} {run.slot_dim}s; "
        f"{dx.models.n_models} distinct models visited; "
        f"Heck et al. effective sample size of the model sequence: {dx.models.heck_ess:.0f}.</p>",
        _status(dx),
        f"<p>Thresholds: R-hat &lt; {th.rhat_max}, ESS ≥ {th.ess_min_per_chain:g} per chain, "
        f"Brooks–Giudici ratios &lt; {th.bg_ratio_max}; "
        f"conditional diagnostics use chains with ≥ {th.min_active_draws} active draws.</p>",
    ]


def html_figure(file: str, caption: str) -> str:
    text = html.escape(caption)
    return f"<figure><img src='{file}' alt='{text}'><figcaption>{text}</figcaption></figure>"


def write_report(run: Run, out: str | Path, title: str = "tdmcmc run report") -> Path:
    """Write ``out/index.html`` and its figures; return the path of ``index.html``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dx = diagnose(run)
    frames = {
        "models": model_frame(dx.models),
        "inclusion": inclusion_frame(run),
        "size": size_frame(run),
        "parameters": parameter_frame(run),
    }
    figures = _figures(run, dx, out, frames)
    diag = _diagnostic_frames(run, dx)
    sampler = sampler_frame(run)
    sections = [
        ("h2", "Figures", "".join(html_figure(file, caption) for file, caption in figures)),
        ("h2", "Posterior model probabilities", html_table(frames["models"])),
        ("h2", "Inclusion probabilities", html_table(frames["inclusion"])),
        ("h2", f"Number of active {run.slot_dim}s", html_table(frames["size"])),
        ("h2", f"Parameters given the {run.slot_dim} is present", html_table(frames["parameters"])),
        ("h2", "Convergence diagnostics", ""),
        ("h3", f"Per {run.slot_dim}", html_table(diag["slots"])),
        ("h3", "Scalar quantities", html_table(diag["scalars"])),
        ("h3", "Brooks–Giudici", html_table(diag["brooks_giudici"]) if len(diag["brooks_giudici"]) else ""),
        ("h3", "Acceptance rates (mean over draws)", html_table(sampler) if len(sampler) else ""),
        ("h2", "Run attributes", _attributes(run)),
    ]
    body = [f"<h1>{html.escape(title)}</h1>", *_overview(run, dx)]
    body += [
        f"<{tag}>{html.escape(head)}</{tag}>{content}" for tag, head, content in sections if content or tag == "h2"
    ]
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{PAGE_STYLE}</style>"
    index = out / "index.html"
    index.write_text(f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(body)}</body></html>", encoding="utf-8")
    return index
