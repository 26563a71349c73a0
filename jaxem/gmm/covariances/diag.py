"""Diagonal covariances: one variance per component and feature, shape (K, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components, n_features)


def precisions_cholesky(covariances: jax.Array) -> jax.Array:
    """(K, D) ``1 / sqrt(σ²_kd)``."""
    return jax.lax.rsqrt(covariances)


def log_det_cholesky(precisions_cholesky: jax.Array, n_features: int) -> jax.Array:
    """(K,) ``Σ_d log p_kd``."""
    return jnp.sum(jnp.log(precisions_cholesky), axis=-1)


def mahalanobis(x: jax.Array, means: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(N, K) ``Σ_d ((x_nd − μ_kd) p_kd)²``."""
    y = (x[:, None, :] - means[None, :, :]) * precisions_cholesky[None, :, :]
    return jnp.sum(y * y, axis=-1)


def second_moments(resp: jax.Array, x: jax.Array, shift: jax.Array) -> jax.Array:
    """(K, D) ``Σ_n r_nk (x_nd − s_kd)²``."""
    diff = x[:, None, :] - shift[None, :, :]
    return jnp.einsum("nk,nkd->kd", resp, diff * diff)


def covariances(sxx: jax.Array, nk: jax.Array, delta: jax.Array, reg_covar: jax.Array) -> jax.Array:
    """(K, D) ``σ²_kd = S_kd / n_k − δ_kd² + reg``, floored at ``reg``."""
    return jnp.maximum(sxx / nk[:, None] - delta * delta, 0) + reg_covar


def ensure_positive_definite(covariances: jax.Array) -> jax.Array:
    """Floor zero variances at ``10·ε·max_d σ²_kd`` (``tiny^¼`` if all are zero)."""
    finfo = jnp.finfo(covariances.dtype)
    scale = jnp.max(covariances, axis=-1, keepdims=True)
    floor = jnp.where(scale > 0, 10 * finfo.eps * scale, finfo.tiny**0.25)
    return jnp.where(covariances > 0, covariances, floor)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return n_components * n_features


def scale_noise(z: jax.Array, covariances: jax.Array, labels: jax.Array) -> jax.Array:
    return z * jnp.sqrt(covariances)[labels]
