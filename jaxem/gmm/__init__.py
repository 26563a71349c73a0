"""Gaussian mixture models on the generic EM loop.

Parameters are :class:`GMMParams` pytrees; every function is pure and works
under ``jit``, ``vmap`` and ``grad``.
"""

from jaxem.gmm import missing, unconstrained
from jaxem.gmm.covariances import COVARIANCE_TYPES
from jaxem.gmm.criteria import aic, bic, n_parameters
from jaxem.gmm.density import log_prob, predict, predict_proba, sample
from jaxem.gmm.fit import FitResult, fit
from jaxem.gmm.gradient import fit_gradient
from jaxem.gmm.init import INIT_METHODS, init
from jaxem.gmm.interop import from_sklearn
from jaxem.gmm.missing import impute
from jaxem.gmm.online import OnlineResult, fit_online, stepwise_update
from jaxem.gmm.outofcore import array_chunks, fit_chunks, print_progress
from jaxem.gmm.params import GMMParams, make_params
from jaxem.gmm.prior import Prior, default_prior, log_prior
from jaxem.gmm.select import SelectionResult, select
from jaxem.gmm.sharded import fit_sharded, fit_sharded_from, shard_rows
from jaxem.gmm.steps import SuffStats, e_step, m_step, maximize, reshift, suff_stats

__all__ = [
    "COVARIANCE_TYPES",
    "INIT_METHODS",
    "FitResult",
    "GMMParams",
    "OnlineResult",
    "Prior",
    "SelectionResult",
    "SuffStats",
    "aic",
    "array_chunks",
    "bic",
    "default_prior",
    "e_step",
    "fit",
    "fit_chunks",
    "fit_gradient",
    "fit_online",
    "fit_sharded",
    "fit_sharded_from",
    "from_sklearn",
    "impute",
    "init",
    "log_prior",
    "log_prob",
    "m_step",
    "make_params",
    "maximize",
    "missing",
    "n_parameters",
    "predict",
    "predict_proba",
    "print_progress",
    "reshift",
    "sample",
    "select",
    "shard_rows",
    "stepwise_update",
    "suff_stats",
    "unconstrained",
]
