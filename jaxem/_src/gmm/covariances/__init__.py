"""Covariance structures of a Gaussian mixture, one module per type.

Each module implements the same small set of pure functions, dispatched on the
static ``covariance_type`` at trace time:

* ``shape(K, D)``: the shape of ``covariances`` (scikit-learn's convention);
* ``precisions_cholesky(covariances)`` and ``log_det_cholesky(prec_chol, D)``;
* ``mahalanobis(x, means, prec_chol) -> (N, K)`` squared distances;
* ``second_moments(resp, x, shift)``: the additive second-order statistic about a
  per-component ``shift`` (K, D);
* ``covariances(sxx, nk, delta, reg_covar)``: the M-step for that type;
* ``ensure_positive_definite(covariances)``: a ridge only where a factorisation
  would fail (singular data with ``reg_covar=0``);
* ``n_parameters(K, D)`` and ``scale_noise(z, covariances, labels)`` (sampling).
"""

from __future__ import annotations

from types import ModuleType

from jaxem._src.gmm.covariances import diag, full, spherical, tied

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

_MODULES = {"full": full, "tied": tied, "diag": diag, "spherical": spherical}


def check_covariance_type(covariance_type: object) -> str:
    if not isinstance(covariance_type, str) or covariance_type not in _MODULES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}"
        )
    return covariance_type


def get(covariance_type: str) -> ModuleType:
    """The module implementing ``covariance_type``."""
    return _MODULES[check_covariance_type(covariance_type)]
