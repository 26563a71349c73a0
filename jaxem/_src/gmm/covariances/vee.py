"""VEE: covariances of one shape and orientation, ``Σ_k = λ_k C`` (``det C = 1``);
stored as ``full`` (K, D, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import eigen, full

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D, D) ``λ_k C`` by mclust's alternation (``msvee``, Celeux & Govaert
    1995 p. 785): ``C ∝ Σ_k W_k / λ_k`` with ``det C = 1``, then ``λ_k = tr(W_k
    C⁻¹) / (D n_k)``, from ``λ_k = 1`` at every M-step (as mclust), until the
    relative change of ``D Σ_k n_k (1 + log λ_k)`` is under :data:`eigen.INNER_TOL`."""
    used = eigen.occupied(nk)
    w = eigen.scatter_full(sxx, nk, delta, reg_covar, used)
    d = w.shape[-1]
    counts = jnp.where(used, nk, 0)
    eye = jnp.eye(d, dtype=w.dtype)

    def step(state):
        scale, _, old_target = state
        c = jnp.sum(jnp.where(used[:, None, None], w / scale[:, None, None], 0), axis=0)
        c = eigen.symmetric(c / eigen.geometric_mean(jnp.linalg.eigvalsh(c)))
        chol = jnp.linalg.cholesky(c)
        inverse = jax.scipy.linalg.cho_solve((chol, True), eye)
        new_scale = jnp.einsum("kij,ji->k", w, inverse) / (d * nk)
        new_scale = jnp.where(used, new_scale, 1)
        target = d * jnp.sum(counts) + d * jnp.sum(counts * jnp.log(new_scale))
        error = jnp.abs(target - old_target) / (1 + jnp.abs(target))
        return (new_scale, c, target), error

    big = jnp.asarray(jnp.finfo(w.dtype).max / 2, w.dtype)
    start = (jnp.ones_like(nk), eye, big)
    scale, c, _ = eigen.iterate(step, start, eigen.inner_tol(w.dtype))
    return eigen.symmetric(scale[:, None, None] * c)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    d = n_features
    return n_components + (d - 1) + d * (d - 1) // 2


eigen.inherit(globals(), full, "VEE")
