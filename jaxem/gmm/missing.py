"""EM for Gaussian mixtures on data with missing entries (NaN marks a missing entry).

See :mod:`jaxem._src.gmm.missing` for the method (Ghahramani & Jordan 1994).
"""

from jaxem._src.gmm.missing import (
    GaussianMissingFamily,
    e_step,
    fit,
    fit_from,
    impute,
    log_prob,
    m_step,
    predict,
    predict_proba,
    suff_stats,
)

__all__ = [
    "GaussianMissingFamily",
    "e_step",
    "fit",
    "fit_from",
    "impute",
    "log_prob",
    "m_step",
    "predict",
    "predict_proba",
    "suff_stats",
]
