"""Densities, clustering and sampling of a Gaussian mixture."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src.chunking import chunk_rows, chunked_map
from jaxem._src.family import log_joint, log_weights, mixture_center
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.params import GMMParams
from jaxem._src.validation import as_data, check_static_int

__all__ = ["log_prob", "predict", "predict_proba", "sample", "weighted_log_prob"]


def component_log_prob(params: GMMParams, x: jax.Array) -> jax.Array:
    """(N, K) ``log N(x_n | μ_k, Σ_k)``, through the precision Cholesky factors."""
    module = cov_lib.get(params.covariance_type)
    n_features = x.shape[-1]
    center = mixture_center(params)  # float32 keeps its digits far from the origin
    maha = module.mahalanobis(x - center, params.means - center, params.precisions_cholesky)
    log_det = module.log_det_cholesky(params.precisions_cholesky, n_features)
    return -0.5 * (n_features * math.log(2 * math.pi) + maha) + log_det


def weighted_log_prob(params: GMMParams, x: jax.Array) -> jax.Array:
    """(N, K) ``log π_k + log N(x_n | μ_k, Σ_k)``; ``-inf`` for inactive components."""
    return log_joint(component_log_prob(params, x), params.weights)


def density_chunk_rows(params: GMMParams, x: jax.Array) -> int:
    """Rows per chunk that bound the (rows, K, D) intermediates of the densities."""
    return chunk_rows(x.shape[0], params.n_components * params.n_features)


def _rowwise(params: GMMParams, x: jax.Array, fn) -> jax.Array:
    """``fn(weighted_log_prob)`` row by row, in chunks of rows."""
    rows = density_chunk_rows(params, x)
    return chunked_map(lambda xb: fn(weighted_log_prob(params, xb)), x, rows)


def check_data_for(params: GMMParams, x: ArrayLike) -> jax.Array:
    """Validate ``params`` and data ``x`` (N, D) against each other."""
    if not isinstance(params, GMMParams):
        raise TypeError(f"params must be a GMMParams; got {type(params).__name__}")
    x = as_data(x)
    if x.shape[1] != params.n_features:
        raise ValueError(
            f"x has {x.shape[1]} features but params have {params.n_features} "
            f"(means shape {params.means.shape})"
        )
    return jnp.asarray(x, jnp.result_type(x, params.dtype))


def log_prob(params: GMMParams, x: ArrayLike) -> jax.Array:
    """Log-density of the mixture at each sample.

    ``log p(x_n) = logsumexp_k (log π_k + log N(x_n | μ_k, Σ_k))``; differentiable
    in both ``params`` and ``x``.

    Args:
        params: the mixture.
        x: (N, D) points.

    Returns:
        (N,) log-densities (scikit-learn's ``score_samples``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
        >>> gmm.log_prob(p, jnp.zeros((1, 1))).round(4).tolist()  # log(1 / sqrt(2 pi))
        [-0.9189]
    """
    x = check_data_for(params, x)
    return _rowwise(params, x, lambda wlp: jax.nn.logsumexp(wlp, axis=-1))


def predict_proba(params: GMMParams, x: ArrayLike) -> jax.Array:
    """(N, K) posterior probabilities of the components (the responsibilities).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]),
        ...                     jnp.ones(2), covariance_type="spherical")
        >>> gmm.predict_proba(p, jnp.zeros((1, 1))).tolist()
        [[0.5, 0.5]]
    """
    x = check_data_for(params, x)
    return _rowwise(params, x, lambda wlp: jax.nn.softmax(wlp, axis=-1))


def predict(params: GMMParams, x: ArrayLike) -> jax.Array:
    """(N,) index of the most probable component for each sample.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]),
        ...                     jnp.ones(2), covariance_type="spherical")
        >>> gmm.predict(p, jnp.array([[-3.0], [2.0]])).tolist()
        [0, 1]
    """
    x = check_data_for(params, x)
    return _rowwise(params, x, lambda wlp: jnp.argmax(wlp, axis=-1))


def sample(key: jax.Array, params: GMMParams, n_samples: int) -> tuple[jax.Array, jax.Array]:
    """Draw ``n_samples`` points from the mixture.

    Args:
        key: a JAX PRNG key.
        params: the mixture.
        n_samples: number of points (static).

    Returns:
        ``(x, labels)``: (n_samples, D) points and (n_samples,) the index of the
        component each was drawn from (inactive components are never drawn).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.ones(1), jnp.zeros((1, 2)), jnp.ones((1, 2)), "diag")
        >>> x, labels = gmm.sample(jax.random.key(0), p, 5)
        >>> x.shape, labels.shape
        ((5, 2), (5,))
    """
    n_samples = check_static_int("n_samples", n_samples, minimum=1)
    module = cov_lib.get(params.covariance_type)
    key_labels, key_noise = jax.random.split(key)
    logits = log_weights(params.weights, -jnp.inf)
    labels = jax.random.categorical(key_labels, logits, shape=(n_samples,))
    z = jax.random.normal(key_noise, (n_samples, params.n_features), params.dtype)
    x = params.means[labels] + module.scale_noise(z, params.covariances, labels)
    return x, labels
