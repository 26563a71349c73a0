"""VEV: covariances of one shape, ``Σ_k = λ_k D_k A D_kᵀ``; stored as ``full`` (K, D, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import eigen, full

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D, D) ``λ_k D_k A D_kᵀ`` by mclust's alternation (``msvev``): with
    ``W_k = D_k Ω_k D_kᵀ``, ``λ_k = tr(Ω_k A⁻¹) / (D n_k)`` then ``A ∝ Σ_k Ω_k / λ_k``
    (``det A = 1``) until the largest relative change is under
    :data:`eigen.INNER_TOL`. Warm-started from ``previous`` covariances; from
    identities (an initialisation) at EEV's ``A`` and ``λ``, as mclust."""
    used = eigen.occupied(nk)
    w = eigen.scatter_full(sxx, nk, delta, reg_covar, used)
    d = w.shape[-1]
    omega, orientation = jnp.linalg.eigh(w)
    total = jnp.sum(jnp.where(used, nk, 0))
    pooled = jnp.sum(jnp.where(used[:, None], omega, 0), axis=0)
    cold_shape = pooled / eigen.geometric_mean(pooled)
    cold_scale = jnp.broadcast_to(eigen.geometric_mean(pooled) / total, nk.shape)
    if previous is None:
        shape, scale = cold_shape, cold_scale
    else:
        eye = jnp.eye(d, dtype=w.dtype)
        values = jnp.linalg.eigvalsh(jnp.where(used[:, None, None], previous, eye))
        warm_scale = eigen.geometric_mean(values)
        log_shape = jnp.where(used[:, None], jnp.log(values / warm_scale[:, None]), 0)
        warm_shape = jnp.exp(jnp.sum(log_shape, axis=0) / jnp.maximum(jnp.sum(used), 1))
        cold = eigen.is_unit(previous)
        shape = jnp.where(cold, cold_shape, warm_shape)
        scale = jnp.where(cold, cold_scale, jnp.where(used, warm_scale, 1))

    def step(state):
        old_shape, old_scale = state
        new_scale = jnp.where(used, jnp.sum(omega / old_shape, axis=1) / (nk * d), 1)
        new_shape = jnp.sum(jnp.where(used[:, None], omega / new_scale[:, None], 0), axis=0)
        new_shape = new_shape / eigen.geometric_mean(new_shape)
        error = jnp.maximum(
            eigen.relative_change(old_shape, new_shape), eigen.relative_change(old_scale, new_scale)
        )
        return (new_shape, new_scale), error

    shape, scale = eigen.iterate(step, (shape, scale), eigen.inner_tol(w.dtype))
    return eigen.compose(scale, orientation, shape)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    d = n_features
    return n_components + (d - 1) + n_components * (d * (d - 1) // 2)


eigen.inherit(globals(), full, "VEV")
