"""Gaussian mixture models on the generic EM loop.

Parameters are :class:`GMMParams` pytrees; every function is pure and works
under ``jit``, ``vmap`` and ``grad``.
"""

from jaxem.gmm import unconstrained
from jaxem.gmm.covariances import COVARIANCE_TYPES
from jaxem.gmm.criteria import aic, bic, n_parameters
from jaxem.gmm.density import log_prob, predict, predict_proba, sample
from jaxem.gmm.fit import FitResult, fit
from jaxem.gmm.gradient import fit_gradient
from jaxem.gmm.init import INIT_METHODS, init
from jaxem.gmm.interop import from_sklearn
from jaxem.gmm.params import GMMParams, make_params
from jaxem.gmm.select import SelectionResult, select
from jaxem.gmm.steps import SuffStats, e_step, m_step, maximize, suff_stats

__all__ = [
    "COVARIANCE_TYPES",
    "INIT_METHODS",
    "FitResult",
    "GMMParams",
    "SelectionResult",
    "SuffStats",
    "aic",
    "bic",
    "e_step",
    "fit",
    "fit_gradient",
    "from_sklearn",
    "init",
    "log_prob",
    "m_step",
    "make_params",
    "maximize",
    "n_parameters",
    "predict",
    "predict_proba",
    "sample",
    "select",
    "suff_stats",
    "unconstrained",
]
