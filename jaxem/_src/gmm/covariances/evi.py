"""EVI: diagonal covariances of equal volume, ``Σ_k = λ A_k``; stored as ``diag`` (K, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import diag, eigen

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D) ``A_k = diag W_k / |diag W_k|^(1/D)``, ``λ = Σ_k |diag W_k|^(1/D) / N``
    (Celeux & Govaert 1995)."""
    used = eigen.occupied(nk)
    w = eigen.scatter_diagonal(sxx, nk, delta, reg_covar, used)
    volume = eigen.geometric_mean(w)
    scale = jnp.sum(jnp.where(used, volume, 0)) / jnp.sum(jnp.where(used, nk, 0))
    return scale * w / volume[:, None]


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return 1 + n_components * (n_features - 1)


eigen.inherit(globals(), diag, "EVI")
