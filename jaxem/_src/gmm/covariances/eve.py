"""EVE: covariances of one volume and orientation, ``Σ_k = λ D A_k Dᵀ``; stored as
``full`` (K, D, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._src.gmm.covariances import eigen, full

SHARED = False


def covariances(sxx, nk, delta, reg_covar, previous=None) -> jax.Array:
    """(K, D, D) ``λ D A_k Dᵀ`` by mclust's ``mseve``: Browne & McNicholas's MM
    iterations for ``D`` (:func:`eigen.mm_orientation`), then ``A_k ∝ diag(Dᵀ W_k
    D)`` (``det A_k = 1``), until the relative change of ``Σ_k tr(W_k D A_k⁻¹ Dᵀ)``
    is under :data:`eigen.INNER_TOL`; ``λ`` is that sum over ``N D``.
    Warm-started from ``previous`` (from ``D = I``, ``A_k = I``, as mclust)."""
    used, w, omega, orientation, shape = eigen.mm_start(sxx, nk, delta, reg_covar, previous)
    d = w.shape[-1]

    def step(state):
        orient, shp, old_target = state
        orient = eigen.mm_orientation(orient, shp, w, omega)
        rotated = eigen.rotated_diagonal(orient, w)
        safe = jnp.where(used[:, None], rotated, 1)
        shp = jnp.where(used[:, None], safe / eigen.geometric_mean(safe)[:, None], 1)
        target = jnp.sum(rotated / shp)
        error = jnp.abs(target - old_target) / (1 + jnp.abs(target))
        return (orient, shp, target), error

    big = jnp.asarray(jnp.finfo(w.dtype).max / 2, w.dtype)
    orientation, shape, target = eigen.iterate(
        step, (orientation, shape, big), eigen.inner_tol(w.dtype)
    )
    scale = target / (jnp.sum(jnp.where(used, nk, 0)) * d)
    return eigen.compose(jnp.broadcast_to(scale, nk.shape), orientation, shape)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    d = n_features
    return 1 + n_components * (d - 1) + d * (d - 1) // 2


eigen.inherit(globals(), full, "EVE")
