"""EEI: one diagonal covariance for every component, ``Σ_k = λ A``; stored as
``diag`` (K, D), the same row for every component."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import diag, eigen

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D) ``σ²_d = Σ_k [W_k]_dd / N``, the pooled variances."""
    used = eigen.occupied(nk)
    w = eigen.scatter_diagonal(sxx, nk, delta, reg_covar, used)
    pooled = jnp.sum(jnp.where(used[:, None], w, 0), axis=0) / jnp.sum(jnp.where(used, nk, 0))
    return jnp.broadcast_to(pooled, w.shape)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return jnp.full_like(n_components, n_features)


eigen.inherit(globals(), diag, "EEI")
