"""Initialisation of a Gaussian mixture (:func:`init`): responsibilities from one
of the methods of :mod:`jaxem._src.init`, then an M-step on them, as
scikit-learn does.

Unlike scikit-learn, which leaves the initial weights of the two one-point
methods summing to K/N, weights are always normalised to sum to 1; the
responsibilities of the first E-step are the same either way.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.steps import m_step
from jaxem._src.init import HC_MAX_SAMPLES, INIT_METHODS, init_resp, standardize, svd_transform
from jaxem._src.sources import pad_rows, row_bucket
from jaxem._src.validation import (
    as_data,
    check_key,
    check_n_active,
    check_sample_weight,
    check_scalar,
    check_static_int,
)

__all__ = [
    "HC_MAX_SAMPLES",
    "INIT_METHODS",
    "check_method",
    "init",
    "standardize",
    "svd_transform",
]


def check_method(method: object, *, allow_auto: bool = False) -> str:
    allowed = (*INIT_METHODS, "auto") if allow_auto else INIT_METHODS
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"init method must be one of {allowed}; got {method!r}")
    return method


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
    """Initial mixture parameters by one of scikit-learn's four methods or three more.

    Args:
        key: JAX PRNG key.
        x: (N, D) data.
        n_components: K, static.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        method: ``"kmeans"``, ``"k-means++"``, ``"random"``, ``"random_from_data"``
            (scikit-learn's), ``"standardized_kmeans"``, ``"hc"`` or ``"hc_vvv"``
            (module docstring).
        reg_covar: added to the covariance diagonal in the M-step (traced).
        n_active: number of active components (traced, ``1 ≤ n_active ≤ K``);
            components ``n_active..K-1`` get weight 0 and stay inactive.
        sample_weight: optional (N,) non-negative weights (k-means and k-means++
            count a point of weight w as w points; the M-step is weighted).

    The rows are padded with zero-weight rows as :func:`jaxem.gmm.fit` pads
    them (:func:`jaxem._src.sources.row_bucket`), so restart ``i`` of ``fit``
    starts here with ``jax.random.split(key, n_init)[i]``; the random draws
    therefore depend on that padded size, not only on N.

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
    # padded as gmm.fit pads its rows, so that fit's restart i starts here with
    # jax.random.split(key, n_init)[i]
    w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else sample_weight
    return _init(
        key, x, w, n_active, reg_covar,
        n_components=n_components, method=method, covariance_type=covariance_type,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("n_components", "method", "covariance_type"))
def _init(key, x, w, n_active, reg_covar, *, n_components, method, covariance_type):
    """:func:`init` on validated arguments, compiled once per shape and method
    (called eagerly, k-means' and the agglomerations' loops were traced and
    compiled again on every call)."""
    x, w = pad_rows(x, w, row_bucket(x.shape[0]))
    resp = init_resp(key, x, n_components, method, n_active, w)
    return m_step(resp, x, covariance_type=covariance_type, reg_covar=reg_covar, sample_weight=w)
