"""Initialisation of a Gaussian mixture, in JAX (jit- and vmap-able).

Every method builds responsibilities and ends in an M-step on them, as
scikit-learn does:

* ``"kmeans"``: hard labels of k-means (k-means++ seeding, then Lloyd iterations
  to a fixed point, at most 300);
* ``"k-means++"``: one-hot responsibilities on the k-means++ seeds;
* ``"random"``: uniformly random responsibilities, normalised per row;
* ``"random_from_data"``: one-hot responsibilities on random distinct rows.

Unlike scikit-learn, which leaves the initial weights of the two one-point
methods summing to K/N, weights are always normalised to sum to 1; the
responsibilities of the first E-step are the same either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem import kmeans as kmeans_lib
from jaxem._validation import (
    as_data,
    check_key,
    check_n_active,
    check_sample_weight,
    check_scalar,
    check_static_int,
)
from jaxem.gmm import covariances as cov_lib
from jaxem.gmm.params import GMMParams
from jaxem.gmm.steps import m_step

__all__ = ["INIT_METHODS", "init"]

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def check_method(method: object) -> str:
    if not isinstance(method, str) or method not in INIT_METHODS:
        raise ValueError(f"init method must be one of {INIT_METHODS}; got {method!r}")
    return method


def init_resp(
    key: jax.Array,
    x: jax.Array,
    n_components: int,
    method: str,
    n_active: ArrayLike,
    sample_weight: jax.Array | None = None,
) -> jax.Array:
    """(N, K) initial responsibilities; columns ``n_active..K-1`` are zero."""
    n_samples = x.shape[0]
    active = jnp.arange(n_components) < n_active
    if method == "random":
        resp = jax.random.uniform(key, (n_samples, n_components), x.dtype) * active
        return resp / jnp.sum(resp, axis=1, keepdims=True)
    if method == "kmeans":
        # tol=0: run Lloyd to a fixed point (labels consistent with their means).
        labels = kmeans_lib.kmeans(
            key, x, n_components, n_active=n_active, tol=0.0, sample_weight=sample_weight
        ).labels
        return jax.nn.one_hot(labels, n_components, dtype=x.dtype)
    if method == "k-means++":
        seeds = kmeans_lib.kmeans_plusplus(key, x, n_components, n_active, sample_weight)
    else:  # random_from_data: the first K of a random permutation (nested in K)
        seeds = jax.random.permutation(key, n_samples)[:n_components]
    resp = jnp.zeros((n_samples, n_components), x.dtype)
    return resp.at[seeds, jnp.arange(n_components)].set(active.astype(x.dtype))


def init(
    key: jax.Array,
    x: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    method: str = "kmeans",
    reg_covar: ArrayLike = 1e-6,
    n_active: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> GMMParams:
    """Initial mixture parameters by one of scikit-learn's four methods.

    Args:
        key: JAX PRNG key.
        x: (N, D) data.
        n_components: K, static.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        method: ``"kmeans"``, ``"k-means++"``, ``"random"`` or ``"random_from_data"``.
        reg_covar: added to the covariance diagonal in the M-step (traced).
        n_active: number of active components (traced, ``1 ≤ n_active ≤ K``);
            components ``n_active..K-1`` get weight 0 and stay inactive.
        sample_weight: optional (N,) non-negative weights (k-means and k-means++
            count a point of weight w as w points; the M-step is weighted).

    Returns:
        :class:`GMMParams` with K components.

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (100, 2))
        >>> gmm.init(jax.random.key(1), x, 3, method="k-means++").means.shape
        (3, 2)
    """
    x = as_data(x)
    check_key(key)
    n_components = check_static_int("n_components", n_components, minimum=1)
    if n_components > x.shape[0]:
        raise ValueError(
            f"n_components={n_components} must be <= the number of samples ({x.shape[0]})"
        )
    cov_lib.check_covariance_type(covariance_type)
    check_method(method)
    check_scalar("reg_covar", reg_covar)
    n_active = check_n_active(n_active, n_components)
    sample_weight = check_sample_weight(sample_weight, x)
    resp = init_resp(key, x, n_components, method, n_active, sample_weight)
    return m_step(
        resp, x, covariance_type=covariance_type, reg_covar=reg_covar, sample_weight=sample_weight
    )
