"""EVV: covariances of equal volume, ``Σ_k = λ D_k A_k D_kᵀ``; stored as ``full`` (K, D, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import eigen, full

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D, D) ``λ C_k`` with ``C_k = W_k / |W_k|^(1/D)`` and ``λ = Σ_k |W_k|^(1/D) / N``
    (Celeux & Govaert 1995; mclust's ``msevv``)."""
    used = eigen.occupied(nk)
    w = eigen.scatter_full(sxx, nk, delta, reg_covar, used)
    # a singular W_k (reg_covar = 0, a component of at most D points) has no
    # volume: its eigenvalues are floored at eps times its largest, so that its
    # shape is finite and singular, and the covariance gets the ridge that makes
    # it factorisable as in the other models
    values = jnp.linalg.eigvalsh(w)
    floor = jnp.finfo(w.dtype).eps * jnp.max(values, axis=-1, keepdims=True)
    volume = eigen.geometric_mean(jnp.maximum(values, jnp.maximum(floor, jnp.finfo(w.dtype).tiny)))
    scale = jnp.sum(jnp.where(used, volume, 0)) / jnp.sum(jnp.where(used, nk, 0))
    return eigen.symmetric(w * (scale / volume)[:, None, None])


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    d = n_features
    return 1 + n_components * (d - 1) + n_components * (d * (d - 1) // 2)


eigen.inherit(globals(), full, "EVV")
