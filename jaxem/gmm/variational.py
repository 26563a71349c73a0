"""Variational Bayesian Gaussian mixtures (Bishop 2006 §10.2; Blei & Jordan 2006).

The family of :func:`jaxem.fit` whose parameters are the variational posterior
(:class:`VariationalParams`) and whose monitored objective is the evidence
lower bound; scikit-learn's ``BayesianGaussianMixture`` computations. See
:mod:`jaxem._src.gmm.variational` for the method and
:class:`jaxem.sklearn.BayesianGaussianMixture` for the estimator.
"""

from jaxem._src.gmm.variational import (
    WEIGHT_PRIOR_TYPES,
    VariationalFamily,
    VariationalParams,
    VariationalStats,
    expected_log_weights,
    expected_weights,
    family,
    log_joint,
    lower_bound_terms,
)

__all__ = [
    "WEIGHT_PRIOR_TYPES",
    "VariationalFamily",
    "VariationalParams",
    "VariationalStats",
    "expected_log_weights",
    "expected_weights",
    "family",
    "log_joint",
    "lower_bound_terms",
]
