"""Gaussian mixture models: the first family of the engine.

Parameters are :class:`GMMParams` pytrees; every function is pure and works
under ``jit``, ``vmap`` and ``grad``. :func:`fit`, :func:`select`,
:func:`fit_chunks`, :func:`fit_online` and :func:`fit_sharded` are the engine
(:func:`jaxem.fit` and friends) with the Gaussian family (:func:`family`).
"""

from jaxem._src.engine import FitResult, SelectionResult
from jaxem._src.gmm.arranged import ArrangedData, arrange
from jaxem._src.gmm.covariances import COVARIANCE_TYPES, MCLUST_MODELS
from jaxem._src.gmm.criteria import aic, bic, n_parameters
from jaxem._src.gmm.density import log_prob, predict, predict_proba, sample
from jaxem._src.gmm.family import (
    DEGENERATE_THRESHOLD,
    TIE_THRESHOLD,
    GaussianFamily,
    degenerate,
    portfolio,
)
from jaxem._src.gmm.fit import (
    family,
    fit,
    fit_chunks,
    fit_from,
    fit_sharded,
    fit_sharded_from,
    select,
)
from jaxem._src.gmm.gradient import fit_gradient
from jaxem._src.gmm.init import INIT_METHODS, init
from jaxem._src.gmm.interop import from_sklearn, to_sklearn
from jaxem._src.gmm.missing import impute
from jaxem._src.gmm.online import OnlineResult, fit_online, stepwise_update
from jaxem._src.gmm.params import GMMParams, make_params
from jaxem._src.gmm.prior import Prior, default_prior, log_prior
from jaxem._src.gmm.steps import SuffStats, e_step, m_step, maximize, reshift, suff_stats
from jaxem._src.sources import PassInfo, array_chunks, print_progress, shard_rows
from jaxem.gmm import missing, noise, unconstrained, variational

__all__ = [
    "COVARIANCE_TYPES",
    "DEGENERATE_THRESHOLD",
    "INIT_METHODS",
    "MCLUST_MODELS",
    "TIE_THRESHOLD",
    "ArrangedData",
    "FitResult",
    "GMMParams",
    "GaussianFamily",
    "OnlineResult",
    "PassInfo",
    "Prior",
    "SelectionResult",
    "SuffStats",
    "aic",
    "arrange",
    "array_chunks",
    "bic",
    "default_prior",
    "degenerate",
    "e_step",
    "family",
    "fit",
    "fit_chunks",
    "fit_from",
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
    "noise",
    "portfolio",
    "predict",
    "predict_proba",
    "print_progress",
    "reshift",
    "sample",
    "select",
    "shard_rows",
    "stepwise_update",
    "suff_stats",
    "to_sklearn",
    "unconstrained",
    "variational",
]
