"""Per-result likelihoods as one definition for numpy values and PyTensor graphs.

- :mod:`.counting` — EM signal regions (``em_nll``; variants ``2020``, ``smodels3``, ``marginal``)
- :mod:`.limits` — UL maps: ``r_value`` and the truncated Gaussian (``ul_nll``; ``2020``, ``smodels3``)
- :mod:`.simplified` — SR combinations: ``SimplifiedLikelihood`` (SLv1/SLv2 data), ``sl_nll``
- :mod:`.mu` — ``profile_mu``: batched μ̂ of a sum of log-likelihoods on [0, μ_max]
- :mod:`.options` — ``--em-likelihood`` / ``--ul-likelihood`` (``add_likelihood_arguments``)
- :mod:`.backend` — the ``NUMPY`` / ``PYTENSOR`` namespaces the formulas are written against

Formulas, constants and how they differ between SModelS 3.2.1 and the 2020 code:
docs/likelihoods.md.
"""

from .backend import NUMPY, PYTENSOR
from .counting import EM_VARIANTS, em_nll
from .limits import UL_VARIANTS, r_value, ul_nll
from .mu import profile_mu
from .options import LikelihoodChoice, add_likelihood_arguments, likelihood_choice
from .simplified import SimplifiedLikelihood, sl_nll

__all__ = ["EM_VARIANTS", "NUMPY", "PYTENSOR", "UL_VARIANTS", "LikelihoodChoice", "SimplifiedLikelihood",
           "add_likelihood_arguments", "em_nll", "likelihood_choice", "profile_mu", "r_value", "sl_nll",
           "ul_nll"]
