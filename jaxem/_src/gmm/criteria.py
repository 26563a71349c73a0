"""Information criteria for model selection (scikit-learn's conventions: lower is better)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.density import log_prob
from jaxem._src.gmm.params import GMMParams

__all__ = ["aic", "bic", "n_parameters"]


def n_parameters(params: GMMParams) -> jax.Array:
    """Number of free parameters, counting active components (weight > 0) only.

    ``(K−1) + K·D + covariance parameters`` (``full`` K·D(D+1)/2, ``tied``
    D(D+1)/2, ``diag`` K·D, ``spherical`` K), as scikit-learn's ``_n_parameters``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.5, 0.5]), jnp.zeros((2, 3)), jnp.ones(2), "spherical")
        >>> int(gmm.n_parameters(p))
        9
    """
    module = cov_lib.get(params.covariance_type)
    n_active = jnp.sum(params.weights > 0)
    n_features = params.n_features
    return module.n_parameters(n_active, n_features) + n_active * n_features + n_active - 1


def _total_log_likelihood(params: GMMParams, x: ArrayLike) -> tuple[jax.Array, int]:
    lp = log_prob(params, x)
    return jnp.sum(lp), lp.shape[0]


def bic(params: GMMParams, x: ArrayLike) -> jax.Array:
    """Bayesian information criterion ``−2 log L + p log N`` on ``x`` (N, D).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> round(float(gmm.bic(p, jnp.zeros((1, 1)))), 4)  # -2 log(1/sqrt(2 pi)) + 2 log(1)
        1.8379
    """
    total, n = _total_log_likelihood(params, x)
    return -2 * total + n_parameters(params) * jnp.log(jnp.asarray(n, total.dtype))


def aic(params: GMMParams, x: ArrayLike) -> jax.Array:
    """Akaike information criterion ``−2 log L + 2p`` on ``x`` (N, D)."""
    total, _ = _total_log_likelihood(params, x)
    return -2 * total + 2 * n_parameters(params)
