"""Checkpoints: the whole :class:`~tdmcmc.sampler.Run` (state, adaptation, generator states,
draws so far) pickled next to the output as ``RUN.nc.ckpt``. Written atomically (temporary file,
then rename) so an interruption while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from tdmcmc.disk_cache import save_pickle
from tdmcmc.errors import UserError

_FORMAT = 3  # 2: runs carry CPU seconds; 3: SamplerConfig.slot_random_walk, sharpened levels, best states


def checkpoint_path(output: str | Path) -> Path:
    """The checkpoint file belonging to an output file."""
    return Path(f"{output}.ckpt")


def save_checkpoint(run, path: Path) -> None:
    save_pickle(path, {"format": _FORMAT, "run": run})


def load_checkpoint(path: Path, config=None):
    """Load a run; if ``config`` is given it must match the checkpoint's settings."""
    if not path.exists():
        raise UserError(f"{path}: no checkpoint to resume from")
    with open(path, "rb") as fh:
        payload = pickle.load(fh)
    if payload.get("format") != _FORMAT:
        raise UserError(f"{path}: checkpoint format {payload.get('format')} is not {_FORMAT}")
    run = payload["run"]
    if config is not None and run.config != config:
        raise UserError(f"{path}: checkpoint was written with different settings ({run.config})")
    return run
