"""Gaussian mixtures with a uniform noise component (Banfield & Raftery 1993), as
R mclust's ``Vinv``. See :mod:`jaxem._src.gmm.noise`."""

from jaxem._src.gmm.noise import (
    NoiseParams,
    e_step,
    fit_from_resp,
    log_hypervolume,
    n_parameters,
    predict,
    select,
)

__all__ = [
    "NoiseParams",
    "e_step",
    "fit_from_resp",
    "log_hypervolume",
    "n_parameters",
    "predict",
    "select",
]
