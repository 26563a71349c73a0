"""EEV: covariances of one volume and shape, ``Σ_k = λ D_k A D_kᵀ``; stored as
``full`` (K, D, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import eigen, full

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D, D) ``λ D_k A D_kᵀ``: ``W_k = D_k Ω_k D_kᵀ`` (eigenvalues in order),
    ``A = Σ_k Ω_k / |Σ_k Ω_k|^(1/D)``, ``λ = |Σ_k Ω_k|^(1/D) / N`` (Celeux &
    Govaert 1995; mclust's ``mseev``)."""
    used = eigen.occupied(nk)
    w = eigen.scatter_full(sxx, nk, delta, reg_covar, used)
    omega, orientation = jnp.linalg.eigh(w)
    pooled = jnp.sum(jnp.where(used[:, None], omega, 0), axis=0)
    volume = eigen.geometric_mean(pooled)
    scale = volume / jnp.sum(jnp.where(used, nk, 0))
    return eigen.compose(jnp.broadcast_to(scale, nk.shape), orientation, pooled / volume)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    d = n_features
    return d + n_components * (d * (d - 1) // 2)


eigen.inherit(globals(), full, "EEV")
