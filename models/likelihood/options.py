"""Command-line choice of the likelihood variants, shared by every command that evaluates them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .counting import EM_VARIANTS
from .limits import UL_VARIANTS


@dataclass(frozen=True)
class LikelihoodChoice:
    """Which EM and UL likelihoods to use (see docs/likelihoods.md)."""

    em: str = "smodels3"
    ul: str = "smodels3"

    def __post_init__(self) -> None:
        if self.em not in EM_VARIANTS:
            raise ValueError(f"unknown EM likelihood {self.em!r}; choose one of {EM_VARIANTS}")
        if self.ul not in UL_VARIANTS:
            raise ValueError(f"unknown UL likelihood {self.ul!r}; choose one of {UL_VARIANTS}")


PAPER = LikelihoodChoice(em="2020", ul="2020")


def add_likelihood_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--em-likelihood`` and ``--ul-likelihood`` (defaults: SModelS 3.2.1)."""
    parser.add_argument("--em-likelihood", choices=EM_VARIANTS, default="smodels3",
                        help="EM signal-region likelihood: 2020 = the paper's code (profiled, counts "
                             "rounded), smodels3 = exactly SModelS 3.2.1 (profiled), marginal = "
                             "background nuisance integrated (default: %(default)s)")
    parser.add_argument("--ul-likelihood", choices=UL_VARIANTS, default="smodels3",
                        help="UL-map truncated Gaussian: 2020 = no correction, excess capped at "
                             "dr = 0.338; smodels3 = SModelS 3.2.1, corr = 0.6 (default: %(default)s)")


def likelihood_choice(args: argparse.Namespace) -> LikelihoodChoice:
    """The choice parsed by :func:`add_likelihood_arguments`."""
    return LikelihoodChoice(em=args.em_likelihood, ul=args.ul_likelihood)
