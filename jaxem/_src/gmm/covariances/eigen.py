"""Shared pieces of mclust's eigen-decomposed covariance models.

``Σ_k = λ_k D_k A_k D_kᵀ`` (Celeux & Govaert 1995): volume ``λ``, shape ``A``
(diagonal, ``det A = 1``) and orientation ``D`` each equal (E) or varying (V)
across components, or the axes fixed (I). The ten models beyond scikit-learn's
four (``EII``, ``EEI``, ``VEI``, ``EVI``, ``VEE``, ``EVE``, ``VVE``, ``EEV``,
``VEV``, ``EVV``) each have a module that stores its covariances in the shape
of an existing one (``spherical`` (K,), ``diag`` (K, D) or ``full`` (K, D, D))
and takes every function of that storage module except the maximization, the
parameter count and what it cannot support (:func:`inherit`).

Their maximizations work on the scatter matrices ``W_k = n_k (S_k + reg·I)``
(``S_k`` the responsibility-weighted covariance about the new mean). Those
without a closed form iterate inside the compiled M-step (a
:func:`jax.lax.while_loop`) with mclust's inner tolerance and warm start, so
that from the same responsibilities a fit follows R mclust's ``me()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem._src.gmm.covariances import diag, full
from jaxem._src.gmm.covariances.interface import INTERFACE

#: mclust's inner tolerance ``emControl()$tol[2]``: √ε of float64. In a dtype
#: that cannot resolve it the loop stops at ``4ε`` of that dtype instead, or
#: where its error has reached the dtype's rounding (:func:`iterate`).
INNER_TOL = math.sqrt(float(np.finfo(np.float64).eps))
#: The most inner iterations of one M-step (mclust's default is unlimited; the
#: first M-step of EVE on wine from D = I takes about 10⁴).
INNER_MAX_ITER = 100_000
#: In a dtype that cannot resolve :data:`INNER_TOL`, an inner loop whose least
#: error is within this many units of the dtype's rounding stops after
#: :data:`SETTLED_STEPS` steps that do not lower it (:func:`iterate`).
SETTLED_EPS = 64
SETTLED_STEPS = 32

#: The parts of the interface the eigen models do not support (yet): the
#: conjugate prior, the variational posterior and the unconstrained map.
UNSUPPORTED = (
    "prior_scale",
    "prior_scale_shape",
    "prior_dof_bound",
    "posterior_covariances",
    "log_prior",
    "wishart_prior_scale",
    "wishart_dof",
    "wishart_covariances",
    "to_unconstrained",
    "from_unconstrained",
    "unconstrained_shape",
)


def inherit(namespace: dict[str, Any], storage: ModuleType, name: str) -> None:
    """Fill ``namespace`` (a module's globals) with ``storage``'s functions for
    every interface name it does not define; the :data:`UNSUPPORTED` ones raise
    ``NotImplementedError`` naming the covariance type."""
    for item in INTERFACE:
        if item in namespace:
            continue
        if item in UNSUPPORTED:
            namespace[item] = _unsupported(name, item)
        else:
            namespace[item] = getattr(storage, item)
    namespace.setdefault("STORAGE", storage.STORAGE)


def _unsupported(name: str, item: str) -> Callable:
    def raise_(*args, **kwargs):
        raise NotImplementedError(
            f"covariance_type={name!r} does not support {item} (the conjugate prior, the "
            "variational posterior, gradient fits, implicit=True, standard errors and "
            "SQUAREM with coordinates='unconstrained' need one of 'full', 'tied', 'diag', "
            "'spherical' and their aliases 'VVV', 'EEE', 'VVI', 'VII'; SQUAREM's default "
            "coordinates work for every model)"
        )

    raise_.__name__ = item
    return raise_


# ----------------------------------------------------------------- helpers


def occupied(nk: jax.Array) -> jax.Array:
    """(K,) whether a component takes part in the pooled parameters: ``n_k``
    above rounding (the M-step passes ``n_k + 10ε``; an inactive component has
    ``n_k = 0``)."""
    return nk > 11 * jnp.finfo(nk.dtype).eps


def inner_tol(dtype) -> float:
    return max(INNER_TOL, 4 * float(jnp.finfo(dtype).eps))


def geometric_mean(values: jax.Array) -> jax.Array:
    """(...,) ``exp(mean log v)`` over the last axis (``det^(1/D)`` of a diagonal)."""
    return jnp.exp(jnp.mean(jnp.log(values), axis=-1))


def scatter_diagonal(sxx, nk, delta, reg_covar, used) -> jax.Array:
    """(K, D) ``diag W_k = n_k (s_kd + reg)``, ones for unused components."""
    w = nk[:, None] * diag.covariances(sxx, nk, delta, reg_covar)
    return jnp.where(used[:, None], w, 1)


def scatter_full(sxx, nk, delta, reg_covar, used) -> jax.Array:
    """(K, D, D) ``W_k = n_k (S_k + reg·I)``, identities for unused components."""
    w = nk[:, None, None] * full.covariances(sxx, nk, delta, reg_covar)
    eye = jnp.eye(sxx.shape[-1], dtype=sxx.dtype)
    return jnp.where(used[:, None, None], w, eye)


def symmetric(matrices: jax.Array) -> jax.Array:
    return 0.5 * (matrices + jnp.swapaxes(matrices, -1, -2))


def compose(scale: jax.Array, orientation: jax.Array, shape: jax.Array) -> jax.Array:
    """(K, D, D) ``λ_k D_k diag(a_k) D_kᵀ`` (``scale`` (K,), ``orientation``
    (K, D, D) or (D, D), ``shape`` (K, D) or (D,))."""
    o = jnp.broadcast_to(orientation, (scale.shape[0], *orientation.shape[-2:]))
    a = jnp.broadcast_to(shape, o.shape[:-1])
    return symmetric(scale[:, None, None] * jnp.einsum("kij,kj,klj->kil", o, a, o))


def iterate(step: Callable, state: Any, tol: float, max_iter: int = INNER_MAX_ITER):
    """Run ``state, error = step(state)`` at least once and until ``error <= tol``
    or ``max_iter`` steps (mclust's inner loops): the final state.

    In a dtype that cannot resolve mclust's :data:`INNER_TOL` (float32) the
    relative error can settle a little above ``4ε`` in rounding noise and never
    reach ``tol``: the VEV and VVE M-steps of Old Faithful then ran all
    100 000 inner steps (stalled at 4.8e-7–5.4e-7), and a default fit with 10
    restarts took 0.3–1.2 s instead of about 20 ms. There the loop also stops
    once its least error so far is within :data:`SETTLED_EPS` units of
    rounding and :data:`SETTLED_STEPS` steps have not lowered it; a dtype that
    resolves the tolerance (float64) keeps mclust's rule alone."""
    dtype = jax.tree.leaves(state)[0].dtype
    eps = float(jnp.finfo(dtype).eps)
    settles = 4 * eps > INNER_TOL  # the dtype's rounding is above mclust's tolerance

    def cond(carry):
        i, _, error, least, since = carry
        going = (error > tol) & (i < max_iter)
        if settles:
            going = going & ~((least <= SETTLED_EPS * eps) & (since >= SETTLED_STEPS))
        return going

    def body(carry):
        i, s, _, least, since = carry
        s, error = step(s)
        lower = error < least
        return i + 1, s, error, jnp.minimum(least, error), jnp.where(lower, 0, since + 1)

    inf = jnp.asarray(jnp.inf, dtype)
    zero = jnp.asarray(0, jnp.int32)
    return jax.lax.while_loop(cond, body, (zero, state, inf, inf, zero))[1]


def is_unit(previous: jax.Array | None) -> jax.Array | bool:
    """Whether ``previous`` covariances are the identity placeholders of an
    initialisation (no warm start): True for ``None``."""
    if previous is None:
        return True
    eye = np.eye(previous.shape[-1], dtype=previous.dtype)
    return jnp.all(previous == eye)


def relative_change(old: jax.Array, new: jax.Array) -> jax.Array:
    """``max |old − new| / (1 + |new|)`` (mclust's inner errors)."""
    return jnp.max(jnp.abs(old - new) / (1 + jnp.abs(new)))


# ------------------------------------------- common orientation (EVE, VVE)


def common_orientation(previous, used, cold):
    """``(D, A)``: the common orientation (D, D) and shapes (K, D), ``det A_k = 1``,
    of ``previous`` covariances ``λ_k D A_k Dᵀ``; the identity and ones when
    ``cold``. ``D`` diagonalises ``Σ_k c_k Σ_k / λ_k`` (distinct weights ``c_k``
    over the used components: distinct eigenvalues unless the shapes tie), so it
    is mclust's orientation up to the order and signs of its columns, which the
    MM iterations carry along."""
    k, d = previous.shape[:2]
    eye = jnp.eye(d, dtype=previous.dtype)
    prev = jnp.where(used[:, None, None], previous, eye)
    volume = geometric_mean(jnp.linalg.eigvalsh(prev))
    weights = jnp.where(used, jnp.arange(1, k + 1, dtype=prev.dtype), 0)
    mix = jnp.sum((weights / volume)[:, None, None] * prev, axis=0)
    _, orientation = jnp.linalg.eigh(symmetric(mix))
    shape = jnp.einsum("ij,kil,lj->kj", orientation, prev, orientation)
    shape = shape / geometric_mean(shape)[:, None]
    shape = jnp.where(used[:, None], shape, 1)
    orientation = jnp.where(cold, eye, orientation)
    shape = jnp.where(cold, jnp.ones_like(shape), shape)
    return orientation, shape


def mm_start(sxx, nk, delta, reg_covar, previous):
    """What the MM models (EVE, VVE) start their inner iterations from: the
    occupied components, their scatter matrices ``W_k`` (zero when empty), the
    largest eigenvalue of each (the MM majorizer's constant) and the starting
    orientation and shapes (``D = I``, ``A_k = I`` cold, as mclust; else those of
    ``previous``)."""
    used = occupied(nk)
    w = scatter_full(sxx, nk, delta, reg_covar, used)
    w = jnp.where(used[:, None, None], w, 0)
    omega = jnp.linalg.eigvalsh(w)[:, -1]
    if previous is None:
        d = w.shape[-1]
        orientation, shape = jnp.eye(d, dtype=w.dtype), jnp.ones(w.shape[:2], w.dtype)
    else:
        orientation, shape = common_orientation(previous, used, is_unit(previous))
    return used, w, omega, orientation, shape


def mm_orientation(orientation, shape, w, omega):
    """One pass of Browne & McNicholas's (2014) MM 1 and MM 2 for the common
    orientation ``D`` given shapes ``A_k`` (mclust's ``mseve``/``msvve``).

    MM 1: ``F = Σ_k A_k⁻¹ Dᵀ W_k − ω_k A_k⁻¹ Dᵀ`` (``ω_k`` the largest eigenvalue
    of ``W_k``), ``F = P B Rᵀ``, ``D = R Pᵀ``; MM 2: ``F = Σ_k W_k D A_k⁻¹ −
    max(A_k⁻¹) W_k D``, ``F = P B Rᵀ``, ``D = P Rᵀ``.
    """
    inv = 1 / shape  # (K, D)
    t = inv[:, :, None] * orientation.T[None]  # A_k⁻¹ Dᵀ
    f = jnp.sum(t @ w - omega[:, None, None] * t, axis=0)
    p, _, rt = jnp.linalg.svd(f)
    orientation = (p @ rt).T
    wd = w @ orientation  # W_k D
    f = jnp.sum(wd * inv[:, None, :] - jnp.max(inv, axis=1)[:, None, None] * wd, axis=0)
    p, _, rt = jnp.linalg.svd(f)
    return p @ rt


def rotated_diagonal(orientation, w):
    """(K, D) ``diag(Dᵀ W_k D)``."""
    return jnp.einsum("ij,kil,lj->kj", orientation, w, orientation)
