"""VVE: covariances of one orientation, ``Σ_k = λ_k D A_k Dᵀ``; stored as ``full`` (K, D, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import eigen, full

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D, D) ``λ_k D A_k Dᵀ`` by mclust's ``msvve``: Browne & McNicholas's MM
    iterations for ``D`` (:func:`eigen.mm_orientation`), then ``λ_k A_k =
    diag(Dᵀ W_k D) / n_k`` (``det A_k = 1``), until the relative change of
    ``Σ_k tr(W_k D A_k⁻¹ Dᵀ)`` is under :data:`eigen.INNER_TOL`. Warm-started
    from ``previous`` (from ``D = I``, ``A_k = I``, as mclust)."""
    used, w, omega, orientation, shape = eigen.mm_start(sxx, nk, delta, reg_covar, previous)

    def step(state):
        orient, shp, _, old_target = state
        orient = eigen.mm_orientation(orient, shp, w, omega)
        rotated = eigen.rotated_diagonal(orient, w)
        safe = jnp.where(used[:, None], rotated / nk[:, None], 1)
        scale = jnp.where(used, eigen.geometric_mean(safe), 1)
        shp = jnp.where(used[:, None], safe / scale[:, None], 1)
        target = jnp.sum(rotated / shp)
        error = jnp.abs(target - old_target) / (1 + jnp.abs(target))
        return (orient, shp, scale, target), error

    big = jnp.asarray(jnp.finfo(w.dtype).max / 2, w.dtype)
    start = (orientation, shape, jnp.ones_like(nk), big)
    orientation, shape, scale, _ = eigen.iterate(step, start, eigen.inner_tol(w.dtype))
    return eigen.compose(scale, orientation, shape)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    d = n_features
    return n_components * d + d * (d - 1) // 2


eigen.inherit(globals(), full, "VVE")
