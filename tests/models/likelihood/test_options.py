"""--em-likelihood / --ul-likelihood parsing."""

from __future__ import annotations

import argparse

import pytest

from tdmcmc.models.likelihood.options import PAPER, LikelihoodChoice, add_likelihood_arguments, likelihood_choice


def _parse(*argv: str) -> LikelihoodChoice:
    parser = argparse.ArgumentParser()
    add_likelihood_arguments(parser)
    return likelihood_choice(parser.parse_args(list(argv)))


def test_defaults_are_smodels_321_and_paper_choice_parses():
    assert _parse() == LikelihoodChoice("smodels3", "smodels3")
    assert _parse("--em-likelihood", "2020", "--ul-likelihood", "2020") == PAPER
    assert _parse("--em-likelihood", "marginal").em == "marginal"


def test_unknown_variants_are_rejected():
    with pytest.raises(SystemExit):
        _parse("--ul-likelihood", "marginal")
    with pytest.raises(ValueError, match="choose one of"):
        LikelihoodChoice(em="profiled")
