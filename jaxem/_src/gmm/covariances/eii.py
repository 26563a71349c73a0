"""EII: one variance for every component and feature, ``Σ_k = λ I``; stored as
``spherical`` (K,), the same value for every component."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import eigen, spherical

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K,) ``λ = Σ_k tr W_k / (N D)``, the pooled variance (plus ``reg``)."""
    used = eigen.occupied(nk)
    var = spherical.covariances(sxx, nk, delta, reg_covar)
    total = jnp.sum(jnp.where(used, nk, 0))
    pooled = jnp.sum(jnp.where(used, nk * var, 0)) / total
    return jnp.broadcast_to(pooled, nk.shape)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return jnp.ones_like(n_components)


eigen.inherit(globals(), spherical, "EII")
