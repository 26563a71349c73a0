"""Spherical covariances: one variance per component, shape (K,)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components,)


def precisions_cholesky(covariances: jax.Array) -> jax.Array:
    """(K,) ``1 / σ_k``."""
    return jax.lax.rsqrt(covariances)


def log_det_cholesky(precisions_cholesky: jax.Array, n_features: int) -> jax.Array:
    """(K,) ``D log p_k``."""
    return n_features * jnp.log(precisions_cholesky)


def mahalanobis(x: jax.Array, means: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(N, K) ``‖x_n − μ_k‖² p_k²``."""
    diff = x[:, None, :] - means[None, :, :]
    return jnp.sum(diff * diff, axis=-1) * precisions_cholesky[None, :] ** 2


def second_moments(resp: jax.Array, x: jax.Array, shift: jax.Array) -> jax.Array:
    """(K,) ``Σ_n r_nk ‖x_n − s_k‖²``."""
    diff = x[:, None, :] - shift[None, :, :]
    return jnp.einsum("nk,nk->k", resp, jnp.sum(diff * diff, axis=-1))


def covariances(sxx: jax.Array, nk: jax.Array, delta: jax.Array, reg_covar: jax.Array) -> jax.Array:
    """(K,) ``σ²_k = (S_k / n_k − ‖δ_k‖²) / D + reg``, floored at ``reg``."""
    n_features = delta.shape[-1]
    var = (sxx / nk - jnp.sum(delta * delta, axis=-1)) / n_features
    return jnp.maximum(var, 0) + reg_covar


def ensure_positive_definite(covariances: jax.Array) -> jax.Array:
    """Floor zero variances at ``tiny^¼`` and subnormal ones at ``tiny/ε`` (where
    ``1/σ`` would overflow)."""
    finfo = jnp.finfo(covariances.dtype)
    floored = jnp.maximum(covariances, finfo.tiny / finfo.eps)
    return jnp.where(covariances > 0, floored, finfo.tiny**0.25)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return n_components


def scale_noise(z: jax.Array, covariances: jax.Array, labels: jax.Array) -> jax.Array:
    return z * jnp.sqrt(covariances)[labels][:, None]


def prior_scale(covariance: jax.Array) -> jax.Array:
    """() mclust's ``tr(cov) / D``."""
    return jnp.trace(covariance) / covariance.shape[-1]


def smallest_standardized_eigenvalue(
    covariances: jax.Array, variances: jax.Array, reg_covar: jax.Array
) -> jax.Array:
    """(K,) ``(σ²_k − reg) / mean_d var_d``."""
    return (covariances - reg_covar) / jnp.mean(variances)


def unit(n_components: int, n_features: int, dtype) -> jax.Array:
    """(K,) ones."""
    return jnp.ones(shape(n_components, n_features), dtype)
