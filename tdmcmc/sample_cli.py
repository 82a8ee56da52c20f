"""``tdmcmc sample``: run the reversible-jump sampler on a model and write a DataTree (.nc).

Models are imported lazily here (the engine itself never imports :mod:`tdmcmc.models`):
``linear-selection`` reads its data from an npz (``X``, ``y``, ``sigma``, ``tau``, ``lam``);
``protomodel`` samples protomodels on an SModelS database (``tdmcmc.models.protomodel.sampling``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tdmcmc.errors import UserError

MODELS = ("protomodel", "linear-selection")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample`` subcommand."""
    p = subparsers.add_parser(
        "sample",
        help="sample the posterior with reversible-jump MCMC",
        description="Sample a trans-dimensional posterior and write it as an ArviZ DataTree (netCDF).",
    )
    p.add_argument("--database", type=Path, help="SModelS database folder (protomodel only)")
    p.add_argument("--model", choices=MODELS, default="protomodel", help="model to sample (default: protomodel)")
    p.add_argument("--data", type=Path, help="npz with X, y, sigma, tau, lam (linear-selection)")
    p.add_argument("--target", choices=("bayes", "paper"), default="bayes", help="protomodel target (default: bayes)")
    p.add_argument("--prior-only", action="store_true", help="switch the likelihood off (sample the prior)")
    p.add_argument("--space", type=Path, help="protomodel space TOML (default: the paper's 20-particle space)")
    p.add_argument("--combination-matrix", type=Path,
                   help="combination allow-lists (default: ../shared/data/raw/protomodels/combination-matrix if found)")
    p.add_argument("--lam", type=float, default=1.0, help="protomodel prior exp(-lam * n_particles) (default 1)")
    p.add_argument("--r-threshold", type=float, default=1.3, help="critic threshold: mu_max = r_thr / r_max (default 1.3)")
    p.add_argument("--sr-selection", choices=("paper", "best-expected", "combined"), default="paper",
                   help="signal region(s) per EM result: the paper's, best expected, or the combined "
                        "simplified likelihood where a covariance exists (default paper)")
    p.add_argument("--chains", type=int, required=True, help="number of independent chains")
    p.add_argument("--draws", type=int, required=True, help="recorded iterations per chain")
    p.add_argument("--tune", type=int, required=True, help="warm-up iterations per chain (adaptation)")
    p.add_argument("--temperatures", type=int, default=1, help="parallel-tempering levels (default 1: none)")
    p.add_argument("--max-temperature", type=float, default=100.0, help="hottest temperature (default 100)")
    p.add_argument("--sharpened", type=int, default=None,
                   help="extra levels below T = 1 (likelihood^beta with beta > 1) that search high-likelihood "
                        "states and pass them down by swaps; the recorded T = 1 chain is unchanged "
                        "(default: 2 for protomodels, whose best models are rare in the posterior, 0 for --prior-only "
                        "and other models)")
    p.add_argument("--min-temperature", type=float, default=0.1, help="coldest sharpened temperature (default 0.1)")
    p.add_argument("--birth-death-per-sweep", type=int, default=1, help="birth/death attempts per sweep (default 1)")
    p.add_argument("--seed", type=int, help="random seed (default: fresh entropy, recorded in the output)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="iterations between checkpoints; the output file is rewritten with the draws so far at each (default 1000)")
    p.add_argument("--resume", action="store_true", help="continue from RUN.nc.ckpt (same arguments as the first run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("-o", "--output", type=Path, required=True, help="output file RUN.nc")
    p.set_defaults(func=run_sample)


def _load_target(args: argparse.Namespace):
    if args.model == "protomodel":
        from tdmcmc.models.protomodel.prior import PriorSettings
        from tdmcmc.models.protomodel.sampling import build_target

        return build_target(args.database, kind=args.target, space_path=args.space,
                            combination_matrix=args.combination_matrix, r_threshold=args.r_threshold,
                            settings=PriorSettings(lam=args.lam), prior_only=args.prior_only,
                            sr_selection=args.sr_selection)
    if args.data is None:
        raise UserError("--model linear-selection needs --data FILE.npz (keys X, y, sigma, tau, lam)")
    from tdmcmc.models.toys import linear_selection

    return linear_selection.load(args.data)


def run_sample(args: argparse.Namespace) -> int:
    from tdmcmc.checkpoint import checkpoint_path
    from tdmcmc.output import to_datatree, write
    from tdmcmc.progress import ProgressBar
    from tdmcmc.sampler import SamplerConfig, sample
    from tdmcmc.target import PriorOnly

    target = _load_target(args)
    if args.prior_only:
        target = PriorOnly(target)
    sharpened = args.sharpened if args.sharpened is not None else (
        2 if args.model == "protomodel" and not args.prior_only else 0)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    try:
        config = SamplerConfig(
            chains=args.chains, draws=args.draws, tune=args.tune, temperatures=args.temperatures,
            max_temperature=args.max_temperature, sharpened=sharpened,
            min_temperature=args.min_temperature if sharpened else 1.0, seed=seed,
            birth_death_per_sweep=args.birth_death_per_sweep, checkpoint_every=args.checkpoint_every,
        )
    except ValueError as exc:
        raise UserError(f"sample: {exc}") from exc
    if args.resume and args.seed is None:
        raise UserError("--resume needs the --seed of the interrupted run")
    ckpt = checkpoint_path(args.output)
    progress = None if args.no_progress else ProgressBar(config.tune + config.draws, config.tune)
    try:
        run = sample(target, config, checkpoint=ckpt, resume=args.resume, progress=progress,
                     on_checkpoint=lambda r: write(to_datatree(r, target), args.output))
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same arguments plus --resume (checkpoint {ckpt})", file=sys.stderr)
        return 130
    write(to_datatree(run, target), args.output)
    ckpt.unlink(missing_ok=True)
    return 0
