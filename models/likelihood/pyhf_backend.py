"""pyhf JSON likelihoods through pyhf (optional dependency: ``pip install tdmcmc[pyhf]``).

Semantics of SModelS 3.2.1 (statistics/pyhfInterface.py): the signal enters every SR bin as a
sample ``bsm`` with the modifiers ``normfactor mu_SIG`` and ``lumi`` (``patchMaker``, 543–600);
control and validation regions are removed unless the result includes CRs; the value is pyhf's
profiled ``twice_nll / 2`` at fixed signal strength (``nll``, 712–801) — with every constant of
pyhf's ``logpdf`` (Poisson terms with ln Γ, normalised auxiliary constraints). SModelS scales the
signal by μ and fits at mu_SIG = 1; we keep the signal and fix mu_SIG = μ, which is the same model.

Gradients (envelope theorem at the fitted nuisances θ̂): with ν_b the expected count and n_b the
observed count in bin b, the bsm yield in b is μ s_b ℓ̂ (ℓ̂ the fitted lumi factor), so
∂(−ln L)/∂s_b = μ ℓ̂ (1 − n_b/ν_b) and ∂(−ln L)/∂μ = Σ_b s_b ℓ̂ (1 − n_b/ν_b). Every evaluation
builds a pyhf model and runs a fit (tens of milliseconds or more): this backend is for checks and
small runs until a native graph exists.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from tdmcmc.errors import UserError


def _pyhf():
    try:
        import pyhf
    except ImportError as exc:  # an optional backend: say how to get it
        raise UserError("pyhf results need the optional dependency pyhf: pip install 'tdmcmc[pyhf]'") from exc
    return pyhf


def region_type(channel: str) -> str:
    """SModelS' guess of a pyhf channel's type from its name (``guessPyhfType``): CR, VR or SR."""
    if channel.startswith("CR"):
        return "CR"
    if channel.startswith("VR"):
        return "VR"
    if channel.startswith("SR"):
        return "SR"
    return "CR" if "CR" in channel else "SR"


def signal_bins_for(workspace: dict, sr_names: Sequence[str]) -> list[tuple[str, int]]:
    """(channel, bin) of each SR named in a list-style ``jsonFiles`` entry (1.2.4 format).

    SModelS' convention for that format (``PyhfData.getWSInfo``): the SR-type channels, in the
    order of the workspace's observations, bin by bin, are the listed SRs in order.
    """
    slots = [(o["name"], b) for o in workspace["observations"] if region_type(o["name"]) == "SR"
             for b in range(len(o["data"]))]
    if len(slots) != len(sr_names):
        raise UserError(f"pyhf workspace has {len(slots)} SR bins ({slots}) but jsonFiles lists "
                        f"{len(sr_names)} signal regions ({list(sr_names)})")
    return slots


class PyhfLikelihood:
    """One pyhf workspace with a signal in given (channel, bin) slots.

    :param workspace: the background-only workspace (a pyhf JSON dict)
    :param signal_bins: for each signal entry, the (channel name, bin index) it fills
    :param keep: channels to keep (default: those with signal; SModelS drops the others unless
        the result includes CRs)
    """

    def __init__(self, workspace: dict, signal_bins: Sequence[tuple[str, int]],
                 keep: Sequence[str] | None = None):
        self.pyhf = _pyhf()
        names = [c["name"] for c in workspace["channels"]]
        for channel, index in signal_bins:
            if channel not in names:
                raise UserError(f"pyhf workspace has no channel {channel!r} (channels: {names})")
        keep = set(keep if keep is not None else (c for c, _ in signal_bins))
        self.signal_bins = tuple(signal_bins)
        self.poi = workspace["measurements"][0]["config"]["poi"]
        spec = copy.deepcopy(workspace)
        spec["channels"] = [c for c in spec["channels"] if c["name"] in keep]
        spec["observations"] = [o for o in spec["observations"] if o["name"] in keep]
        self._spec = spec
        self._bins = {c["name"]: len(c["samples"][0]["data"]) for c in spec["channels"]}

    def nll(self, mu: Any, signal: Any) -> np.ndarray:
        """−ln L profiled over the nuisances, at signal strength μ (batch) and signal events (batch, k)."""
        return self.value_and_gradients(mu, signal)[0]

    def value_and_gradients(self, mu: Any, signal: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(−ln L, ∂/∂signal, ∂/∂μ), each over the batch shape of ``mu``."""
        mu = np.asarray(mu, dtype=float)
        signal = np.broadcast_to(np.asarray(signal, dtype=float), mu.shape + (len(self.signal_bins),))
        value, d_signal, d_mu = np.empty(mu.shape), np.empty(signal.shape), np.empty(mu.shape)
        for idx in np.ndindex(mu.shape):
            value[idx], d_signal[idx], d_mu[idx] = self._fit(float(mu[idx]), signal[idx])
        return value, d_signal, d_mu

    def _fit(self, mu: float, signal: np.ndarray) -> tuple[float, np.ndarray, float]:
        pyhf = self.pyhf
        workspace = pyhf.Workspace(self._patched(signal))
        model = workspace.model()
        data = workspace.data(model)
        pars, twice_nll = pyhf.infer.mle.fixed_poi_fit(mu, data, model, return_fitted_val=True, maxiter=2000)
        expected = np.asarray(model.expected_actualdata(pars), dtype=float)
        observed = np.asarray(workspace.data(model, include_auxdata=False), dtype=float)
        lumi = float(np.asarray(pars)[model.config.par_slice("lumi")][0]) if "lumi" in model.config.parameters else 1.0
        slots = [model.config.channel_slices[c].start + b for c, b in self.signal_bins]
        residual = (1.0 - observed[slots] / expected[slots]) * lumi
        return float(twice_nll) / 2.0, mu * residual, float(np.dot(signal, residual))

    def _patched(self, signal: np.ndarray) -> dict:
        spec = copy.deepcopy(self._spec)
        yields = {c: [0.0] * n for c, n in self._bins.items()}
        for (channel, index), s in zip(self.signal_bins, signal):
            yields[channel][index] += float(s)
        for channel in spec["channels"]:
            if any(c == channel["name"] for c, _ in self.signal_bins):
                channel["samples"].insert(0, {
                    "name": "bsm", "data": yields[channel["name"]],
                    "modifiers": [{"data": None, "type": "normfactor", "name": self.poi},
                                  {"data": None, "type": "lumi", "name": "lumi"}]})
        return spec

    def graph(self, mu: Any, signal: Any) -> Any:
        """−ln L as a PyTensor variable with gradients w.r.t. μ and the signal."""
        return _PyhfNll(self)(pt.as_tensor_variable(mu), pt.as_tensor_variable(signal))[0]


class _PyhfNll(Op):
    """Outputs (−ln L, ∂/∂signal, ∂/∂μ); the gradient uses the last two."""

    def __init__(self, likelihood: PyhfLikelihood):
        self.likelihood = likelihood

    def make_node(self, mu, signal):
        return Apply(self, [mu, signal], [mu.type(), signal.type(), mu.type()])

    def perform(self, node, inputs, outputs):
        for out, value in zip(outputs, self.likelihood.value_and_gradients(*inputs)):
            out[0] = np.asarray(value, dtype="float64")

    def grad(self, inputs, output_grads):
        _, d_signal, d_mu = self(*inputs)
        g = output_grads[0]
        return [g * d_mu, pt.expand_dims(g, -1) * d_signal]

    def connection_pattern(self, node):
        return [[True, False, False], [True, False, False]]
