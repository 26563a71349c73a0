"""VEI: diagonal covariances of one shape, ``Σ_k = λ_k A``; stored as ``diag`` (K, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import diag, eigen

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D) ``λ_k A`` by mclust's alternation (``msvei``): ``λ_k = tr(W_k A⁻¹) /
    (D n_k)``, then ``A ∝ Σ_k diag W_k / λ_k`` with ``det A = 1``, until the
    largest relative change is under :data:`eigen.INNER_TOL`; warm-started from
    ``previous`` (K, D) covariances (ones: ``λ = 1``, ``A = I``, as mclust)."""
    used = eigen.occupied(nk)
    w = eigen.scatter_diagonal(sxx, nk, delta, reg_covar, used)
    d = w.shape[-1]
    if previous is None:
        previous = jnp.ones_like(w)
    previous = jnp.where(used[:, None], previous, 1)
    scale = eigen.geometric_mean(previous)
    log_shape = jnp.log(previous / scale[:, None])
    shape = jnp.exp(
        jnp.sum(jnp.where(used[:, None], log_shape, 0), axis=0) / jnp.maximum(jnp.sum(used), 1)
    )

    def step(state):
        old_scale, old_shape = state
        new_scale = jnp.where(used, jnp.sum(w / old_shape, axis=1) / (d * nk), 1)
        new_shape = jnp.sum(jnp.where(used[:, None], w / new_scale[:, None], 0), axis=0)
        new_shape = new_shape / eigen.geometric_mean(new_shape)
        error = jnp.maximum(
            eigen.relative_change(old_scale, new_scale), eigen.relative_change(old_shape, new_shape)
        )
        return (new_scale, new_shape), error

    scale, shape = eigen.iterate(step, (scale, shape), eigen.inner_tol(w.dtype))
    return scale[:, None] * shape[None, :]


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return n_components + n_features - 1


eigen.inherit(globals(), diag, "VEI")
