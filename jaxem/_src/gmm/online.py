"""Online (stepwise) EM for Gaussian mixtures: the Gaussian family on
:func:`jaxem.fit_online` (:mod:`jaxem._src.online`), with its statistics as
:class:`~jaxem.gmm.SuffStats`.

Each mini-batch's statistics are taken about the current means (the direct
pass); the running statistics are re-expressed about the same point by
:func:`~jaxem.gmm.reshift` before they are interpolated (an exact identity:
``Σ r (x−s')(x−s')ᵀ = S + Σ_x δᵀ + δ Σ_xᵀ + n δδᵀ`` with ``δ = s − s'``). Because
the new shift is the mean the running statistics themselves give, the
correction is the usual ``S − Σ_x Σ_xᵀ / n`` with a small ``Σ_x``: no
cancellation of raw second moments, so float32 is safe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src import online
from jaxem._src.gmm.fit import family as gaussian_family
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.passes import Moments
from jaxem._src.gmm.prior import Prior
from jaxem._src.gmm.steps import SuffStats
from jaxem._src.online import BatchInfo, OnlineResult

__all__ = ["BatchInfo", "OnlineResult", "fit_online", "step_size", "stepwise_update"]

step_size = online.step_size


def _family(params: GMMParams, reg_covar, prior):
    return gaussian_family(
        params.covariance_type,
        reg_covar=reg_covar,
        prior=prior,
        formulation="direct",
        n_features=params.n_features,
    )


def _suff_stats(stats: Moments, params: GMMParams) -> SuffStats:
    return SuffStats(stats.nk, stats.sum_x, stats.sum_xx, params.means, params.covariance_type)


def stepwise_update(
    stats: SuffStats,
    params: GMMParams,
    x: ArrayLike,
    sample_weight: ArrayLike,
    gamma: ArrayLike,
) -> tuple[SuffStats, jax.Array]:
    """One stepwise interpolation ``s ← (1 − γ) s + γ s̄(batch; params)`` (pure).

    No M-step: call :func:`~jaxem.gmm.maximize` on the result. Traceable, so a
    whole stream can run in ``lax.scan``.

    Args:
        stats: running per-sample statistics (any shift).
        params: current parameters (the E-step's).
        x: (B, D) mini-batch.
        sample_weight: (B,) non-negative weights (ones for plain EM).
        gamma: () step size in (0, 1]; 1 replaces the statistics.

    Returns:
        ``(stats about params.means, mean log-likelihood of the batch under params)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (64, 2))
        >>> p = gmm.init(jax.random.key(1), x, 2)
        >>> s, ll = gmm.stepwise_update(gmm.suff_stats(jnp.ones((64, 2)) / 2, x), p, x,
        ...                             jnp.ones(64), 0.5)
        >>> gmm.maximize(s).means.shape
        (2, 2)
    """
    x = jnp.asarray(x, params.dtype)
    w = jnp.asarray(sample_weight, params.dtype)
    family = _family(params, 1e-6, None)
    frame = dataclasses.replace(params, means=jnp.broadcast_to(stats.shift, params.means.shape))
    moments = Moments(stats.nk, stats.sum_x, stats.sum_xx)
    new, ll, _ = online.stepwise_update(family, moments, frame, params, x, w, gamma, None)
    return _suff_stats(new, params), ll


def fit_online(
    params: GMMParams,
    batches: Iterable[Any],
    *,
    alpha: float = 0.6,
    t0: float = 2.0,
    warmup: int = 5,
    reg_covar: ArrayLike = 1e-6,
    prior: Prior | None = None,
    polyak: bool = False,
    polyak_start: int = 50,
    max_batches: int | None = None,
    callback: Callable[[BatchInfo], Any] | None = None,
) -> OnlineResult:
    """Stepwise (online) EM for a Gaussian mixture over a stream of mini-batches.

    :func:`jaxem.fit_online` with the Gaussian family (direct passes); see there
    for the algorithm and the arguments.

    Args:
        params: starting :class:`GMMParams` (any covariance type; inactive
            components, weight 0, stay inactive). Its dtype is the computing dtype.
        batches: an iterable (one pass; a generator is fine) of (B, D) arrays
            or ``(x, sample_weight)`` pairs. A fixed batch size compiles once.
        alpha, t0, warmup, polyak, polyak_start, max_batches, callback: as
            :func:`jaxem.fit_online`.
        reg_covar: added to the covariance diagonal in every M-step.
        prior: optional conjugate prior (:class:`~jaxem.gmm.Prior`): each
            M-step is the MAP step for the statistics ``n·s_t`` with ``n`` the
            sample weight seen so far.

    Returns:
        :class:`~jaxem.OnlineResult` (``stats`` as :class:`~jaxem.gmm.SuffStats`).

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> key = jax.random.key(0)
        >>> stream = (jax.random.normal(k, (100, 2)) for k in jax.random.split(key, 50))
        >>> start = gmm.init(jax.random.key(1), jax.random.normal(key, (100, 2)), 2)
        >>> result = gmm.fit_online(start, stream)
        >>> result.samples_seen[-1]
        np.float64(5000.0)
    """
    if not isinstance(params, GMMParams):
        raise TypeError(f"params must be a GMMParams; got {type(params).__name__}")
    family = _family(params, reg_covar, prior)
    result = online.fit_online(
        family,
        params,
        batches,
        alpha=alpha,
        t0=t0,
        warmup=warmup,
        polyak=polyak,
        polyak_start=polyak_start,
        max_batches=max_batches,
        callback=callback,
    )
    return dataclasses.replace(result, stats=_suff_stats(result.stats, result.stats_params))
