"""The sampling loop: warm-up with adaptation, then fixed kernels; checkpoint and resume.

One iteration is a sweep of the moves in order (refresh inactive slots, birth/death, random walk,
MALA when the target has gradients, identity swap and split/merge when the layout has exchangeable
groups, replica exchange when there are several temperatures). Each move leaves the product-space
target π̃ invariant, so the sweep does. Warm-up iterations adapt step sizes, proposal scales, the
temperature ladder and (at the middle and the end of warm-up) the pseudo-prior used as birth
proposal; then everything is frozen and ``draws`` iterations of the T = 1 chains are recorded.

All mutable sampler state — the product-space state, every move's adaptation state, the ladder,
the pseudo-prior, the per-chain generators and the draws so far — lives in one picklable
:class:`Run` (the target is passed separately, it may hold compiled code), so a checkpoint is the
pickled ``Run`` and a resumed run continues bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tdmcmc.adaptation import MaskedMoments, PseudoPriorFit
from tdmcmc.best import BestStates
from tdmcmc.moves.base import Move, MoveContext
from tdmcmc.moves.birth_death import BirthDeath
from tdmcmc.moves.random_walk import RandomWalk
from tdmcmc.moves.refresh import RefreshInactive
from tdmcmc.randomness import ChainRandom
from tdmcmc.state import State
from tdmcmc.target import GaussianPseudoPrior, PseudoPrior, Target, evaluate, is_differentiable
from tdmcmc.tempering import ReplicaExchange, TemperatureLadder


@dataclass(frozen=True)
class SamplerConfig:
    """Run settings. ``birth_death_per_sweep`` repeats the birth/death move within a sweep;
    ``sharpened`` levels with temperatures from ``min_temperature`` (< 1) up to 1 join the ladder
    below the recorded T = 1 level (:mod:`tdmcmc.tempering`); ``slot_random_walk`` adds the one-slot-at-a-time random walk to the sweep when slots have
    several parameters; ``exclude_moves`` drops move families from the default sweep by name
    (e.g. ``("mala",)``)."""

    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    temperatures: int = 1
    max_temperature: float = 100.0
    sharpened: int = 0
    min_temperature: float = 1.0
    seed: int = 0
    birth_death_per_sweep: int = 1
    use_gradient: bool = True
    slot_random_walk: bool = True
    adapt_pseudo_prior: bool = True
    checkpoint_every: int = 1000
    exclude_moves: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("chains", "temperatures", "birth_death_per_sweep"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1")
        for key in ("draws", "tune", "sharpened"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be non-negative")
        if self.sharpened and not 0.0 < self.min_temperature < 1.0:
            raise ValueError("min_temperature must lie in (0, 1) with sharpened levels")


@dataclass
class Trace:
    """Cold-chain draws, preallocated: arrays of shape (chains, draws, ...)."""

    active: np.ndarray
    params: np.ndarray
    globals: np.ndarray
    log_lik: np.ndarray
    log_prior: np.ndarray
    accept: dict[str, np.ndarray]
    swap_accept: np.ndarray
    temperatures: np.ndarray

    @classmethod
    def empty(cls, state_shape: tuple[int, int, int], n_globals: int, chains: int, draws: int,
              move_names: list[str], n_levels: int) -> Trace:
        s, d = state_shape[1], state_shape[2]
        return cls(
            active=np.zeros((chains, draws, s), dtype=np.int8),
            params=np.full((chains, draws, s, d), np.nan),
            globals=np.full((chains, draws, n_globals), np.nan),
            log_lik=np.full((chains, draws), np.nan),
            log_prior=np.full((chains, draws), np.nan),
            accept={name: np.full((chains, draws), np.nan) for name in move_names},
            swap_accept=np.full((chains, draws, max(n_levels - 1, 0)), np.nan),
            temperatures=np.full((draws, n_levels), np.nan),
        )


    def first(self, n: int) -> Trace:
        """The first ``n`` draws (views)."""
        return Trace(self.active[:, :n], self.params[:, :n], self.globals[:, :n], self.log_lik[:, :n],
                     self.log_prior[:, :n], {k: v[:, :n] for k, v in self.accept.items()},
                     self.swap_accept[:, :n], self.temperatures[:n])


@dataclass
class Run:
    """Everything a checkpoint holds (see module docstring)."""

    config: SamplerConfig
    state: State
    moves: list[tuple[Move, int]]
    ladder: TemperatureLadder
    pseudo: PseudoPrior
    pseudo_fit: PseudoPriorFit | None
    rng: ChainRandom
    trace: Trace
    best: BestStates
    iteration: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"tune": 0.0, "draws": 0.0})
    cpu_seconds: dict[str, float] = field(default_factory=lambda: {"tune": 0.0, "draws": 0.0})

    @property
    def total(self) -> int:
        return self.config.tune + self.config.draws

    @property
    def move_names(self) -> list[str]:
        return [m.name for m, _ in self.moves]


def default_moves(target: Target, config: SamplerConfig, ladder: TemperatureLadder,
                  pseudo: PseudoPrior) -> list[tuple[Move, int]]:
    """The sweep used by :func:`start` (see module docstring)."""
    layout = target.layout
    scale = pseudo.std if isinstance(pseudo, GaussianPseudoPrior) else np.ones((layout.n_slots, layout.max_dim))
    moves: list[tuple[Move, int]] = [
        (RefreshInactive(), 1),
        (BirthDeath(), config.birth_death_per_sweep),
        (RandomWalk(layout, ladder.n_levels, scale), 1),
    ]
    if config.slot_random_walk and layout.max_dim > 1:
        moves.append((RandomWalk(layout, ladder.n_levels, scale, blocks=True), 1))
    if config.use_gradient and is_differentiable(target):
        from tdmcmc.moves.langevin import Langevin

        moves.append((Langevin(layout, ladder.n_levels, scale), 1))
    if layout.group_members():
        from tdmcmc.moves.identity_swap import IdentitySwap
        from tdmcmc.moves.split_merge import SplitMerge

        moves.append((IdentitySwap(), 1))
        moves.append((SplitMerge(layout, scale), 1))
    if ladder.n_levels > 1:
        moves.append((ReplicaExchange(ladder), 1))
    unknown = set(config.exclude_moves) - {m.name for m, _ in moves}
    if unknown:
        raise ValueError(f"cannot exclude {sorted(unknown)}: the sweep has {[m.name for m, _ in moves]}")
    return [(m, r) for m, r in moves if m.name not in config.exclude_moves]


def start(target: Target, config: SamplerConfig) -> Run:
    """A fresh run at iteration 0: initial point from the target, generators from the seed."""
    ladder = TemperatureLadder.geometric(config.temperatures, config.max_temperature, config.sharpened,
                                         config.min_temperature)
    rng = ChainRandom(config.seed, config.chains, ladder.n_levels)
    pseudo = target.pseudo_prior()
    active, params, globals_ = target.initial_point(rng)
    state = evaluate(target, pseudo, active, params, globals_)
    if not np.all(np.isfinite(state.log_target(ladder.betas(config.chains)))):
        raise ValueError("the target's initial point has zero density")
    layout = target.layout
    fit = None
    if config.adapt_pseudo_prior and isinstance(pseudo, GaussianPseudoPrior):
        fit = PseudoPriorFit(MaskedMoments(1, (layout.n_slots, layout.max_dim)))
    moves = default_moves(target, config, ladder, pseudo)
    trace = Trace.empty(params.shape, layout.n_globals, config.chains, config.draws,
                        [m.name for m, _ in moves if m.name != ReplicaExchange.name], ladder.n_levels)
    return Run(config, state, moves, ladder, pseudo, fit, rng, trace,
               BestStates.empty(state, config.chains, config.tune + config.draws))


def _refit_pseudo_prior(run: Run, ctx: MoveContext, target: Target) -> None:
    pseudo = run.pseudo
    mean, std = run.pseudo_fit.fitted(pseudo.mean, pseudo.std)
    run.pseudo = GaussianPseudoPrior(mean, std, pseudo.mask)
    ctx.pseudo = run.pseudo
    s = run.state
    run.state = evaluate(target, run.pseudo, s.active, s.params, s.globals)


def _sweep(run: Run, ctx: MoveContext) -> dict[str, np.ndarray]:
    """One pass over the moves; returns each move's accepted fraction of attempts (B,), NaN if none."""
    rates: dict[str, np.ndarray] = {}
    for move, repeats in run.moves:
        accepted = np.zeros(run.state.batch_size)
        attempted = np.zeros(run.state.batch_size)
        for _ in range(repeats):
            run.state, info = move.step(run.state, ctx, run.rng)
            if ctx.tuning:
                move.adapt(run.state, info, ctx)
            accepted += info.accepted & info.attempted
            attempted += info.attempted
        with np.errstate(invalid="ignore"):
            rates[move.name] = accepted / attempted
    return rates


def _record(run: Run, rates: dict[str, np.ndarray], draw: int) -> None:
    c = run.config.chains
    ref = run.ladder.reference_rows(c)
    s, tr = run.state, run.trace
    tr.active[:, draw] = s.active[ref]
    tr.params[:, draw] = s.params[ref]
    tr.globals[:, draw] = s.globals[ref]
    tr.log_lik[:, draw] = s.log_lik[ref]
    tr.log_prior[:, draw] = s.log_prior[ref]
    for name, rate in rates.items():
        if name == ReplicaExchange.name:  # entry t·C + c is pair (t, t+1) of chain c
            tr.swap_accept[:, draw] = rate[:-c].reshape(-1, c).T
        else:
            tr.accept[name][:, draw] = rate[ref]
    tr.temperatures[draw] = run.ladder.temperatures


def advance(run: Run, target: Target, stop_at: int | None = None,
            checkpoint: Path | None = None, progress=None, on_checkpoint=None) -> Run:
    """Iterate until the run is done (or until iteration ``stop_at``), checkpointing on the way.

    ``progress`` is an object with ``update(iteration)`` (see :mod:`tdmcmc.progress`);
    ``on_checkpoint(run)`` is called after every periodic checkpoint (e.g. to write the draws so far).
    """
    from tdmcmc.checkpoint import save_checkpoint

    cfg = run.config
    end = run.total if stop_at is None else min(stop_at, run.total)
    ctx = MoveContext(target, run.pseudo, run.ladder.betas(cfg.chains), cfg.chains, reference=run.ladder.reference)
    ref = run.ladder.reference_rows(cfg.chains)
    refit_at = {cfg.tune // 2, cfg.tune} if run.pseudo_fit is not None else set()
    while run.iteration < end:
        t0, c0 = time.perf_counter(), time.process_time()
        ctx.tuning = run.iteration < cfg.tune
        rates = _sweep(run, ctx)
        if ctx.tuning and run.pseudo_fit is not None:
            run.pseudo_fit.update(run.state.params[ref], run.state.active[ref, :, None], cfg.chains)
        run.iteration += 1
        if run.iteration in refit_at and run.iteration > 0:
            _refit_pseudo_prior(run, ctx, target)
        if not ctx.tuning:
            _record(run, rates, run.iteration - cfg.tune - 1)
        phase = "tune" if ctx.tuning else "draws"
        run.seconds[phase] += time.perf_counter() - t0
        run.cpu_seconds[phase] += time.process_time() - c0
        run.best.update(run.state, cfg.chains, run.iteration, sum(run.cpu_seconds.values()))
        if progress is not None:
            progress.update(run.iteration)
        if checkpoint is not None and cfg.checkpoint_every and run.iteration % cfg.checkpoint_every == 0:
            save_checkpoint(run, checkpoint)
            if on_checkpoint is not None:
                on_checkpoint(run)
    if checkpoint is not None:
        save_checkpoint(run, checkpoint)
    return run


def sample(target: Target, config: SamplerConfig, checkpoint: Path | None = None,
           resume: bool = False, progress=None, on_checkpoint=None) -> Run:
    """Run (or, with ``resume``, continue from ``checkpoint``) to completion."""
    from tdmcmc.checkpoint import load_checkpoint

    if resume:
        if checkpoint is None:
            raise ValueError("resume needs a checkpoint path")
        run = load_checkpoint(checkpoint, config)
    else:
        run = start(target, config)
    return advance(run, target, checkpoint=checkpoint, progress=progress, on_checkpoint=on_checkpoint)

