"""Online (stepwise) EM over a stream of mini-batches.

Stepwise EM (Cappé & Moulines 2009; Liang & Klein 2009) interpolates the
*sufficient statistics*, not the parameters. With ``s̄_t`` the statistics of
mini-batch ``t`` under the current parameters, normalised per sample (divided
by the batch's total weight),

    s_t = (1 − γ_t) s_{t−1} + γ_t s̄_t,    γ_t = (t + t₀)^(−α),  α ∈ (0.5, 1],
    θ_t = maximize(s_t).

``α ≤ 1`` and ``α > ½`` are the Robbins–Monro conditions (``Σγ = ∞``,
``Σγ² < ∞``). The first ``warmup`` batches are averaged with the starting
parameters held fixed before the first M-step, so the first M-step does not see
one noisy mini-batch alone. Optional Polyak–Ruppert averaging returns the mean
of the parameter iterates after ``polyak_start`` M-steps, which restores the
``O(1/n)`` rate with ``α < 1``.

**Shifts.** :class:`SuffStats` hold sums about a per-component shift, for
accuracy. A mini-batch's statistics are taken about the current means (the
direct pass); the running statistics are re-expressed about the same point by
:func:`reshift` before they are interpolated (an exact identity:
``Σ r (x−s')(x−s')ᵀ = S + Σ_x δᵀ + δ Σ_xᵀ + n δδᵀ`` with ``δ = s − s'``). Because
the new shift is the mean the running statistics themselves give, the
correction is the usual ``S − Σ_x Σ_xᵀ / n`` with a small ``Σ_x``: no cancellation
of raw second moments, so float32 is safe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._validation import check_scalar, check_static_int
from jaxem.gmm import covariances as cov_lib
from jaxem.gmm.params import GMMParams, from_covariances
from jaxem.gmm.passes import direct_pass
from jaxem.gmm.prior import Prior, check_prior
from jaxem.gmm.steps import SuffStats, maximize, reshift

__all__ = [
    "BatchInfo",
    "OnlineResult",
    "fit_online",
    "step_size",
    "stepwise_update",
]


def step_size(t: ArrayLike, *, alpha: ArrayLike = 0.6, t0: ArrayLike = 2) -> jax.Array:
    """``γ_t = (t + t₀)^(−α)`` for update ``t = 1, 2, …``."""
    return (jnp.asarray(t, jnp.float32) + t0) ** (-jnp.asarray(alpha, jnp.float32))


def _batch_stats(params: GMMParams, x: jax.Array, w: jax.Array):
    """Per-sample statistics of a batch (about the current means), its mean ll, weight."""
    stats, ll = direct_pass(params, x, w)
    total = jnp.sum(w)
    return stats.scale(1 / total), ll, total


def stepwise_update(
    stats: SuffStats,
    params: GMMParams,
    x: ArrayLike,
    sample_weight: ArrayLike,
    gamma: ArrayLike,
) -> tuple[SuffStats, jax.Array]:
    """One stepwise interpolation ``s ← (1 − γ) s + γ s̄(batch; params)`` (pure).

    No M-step: call :func:`maximize` on the result. Traceable, so a whole stream
    can run in ``lax.scan``.

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
    batch, ll, _ = _batch_stats(params, x, w)
    gamma = jnp.asarray(gamma, params.dtype)
    old = reshift(stats, batch.shift)
    new = dataclasses.replace(
        batch,
        nk=(1 - gamma) * old.nk + gamma * batch.nk,
        sum_x=(1 - gamma) * old.sum_x + gamma * batch.sum_x,
        sum_xx=(1 - gamma) * old.sum_xx + gamma * batch.sum_xx,
    )
    return new, ll


@jax.jit
def _update(stats, params, x, w, gamma):
    stats, ll = stepwise_update(stats, params, x, w, gamma)
    return stats, ll, jnp.sum(w)


@jax.jit
def _maximize(stats, reg_covar, prior, seen):
    if prior is not None:  # MAP: the prior weighs against the samples seen so far
        stats = stats.scale(seen)
    return maximize(stats, reg_covar=reg_covar, prior=prior)


@jax.jit
def _average(avg: GMMParams, params: GMMParams, m):
    """Running mean of the weights, means and covariances (``m``: iterates so far)."""

    def mix(a, b):
        return a + (b - a) / m

    return dataclasses.replace(
        avg,
        weights=mix(avg.weights, params.weights),
        means=mix(avg.means, params.means),
        covariances=mix(avg.covariances, params.covariances),
    )


@dataclasses.dataclass(frozen=True)
class BatchInfo:
    """What the callback of :func:`fit_online` is given after each batch.

    Attributes:
        index: 0-based index of the batch.
        samples_seen: total sample weight so far.
        log_likelihood: mean log-likelihood of the batch under the parameters
            before it was used.
        params: the current estimate (the Polyak average once it has started).
    """

    index: int
    samples_seen: float
    log_likelihood: float
    params: GMMParams


@dataclasses.dataclass(frozen=True)
class OnlineResult:
    """The outcome of :func:`fit_online`.

    Attributes:
        params: final :class:`GMMParams` (the Polyak average when ``polyak``).
        last_params: the last iterate ``maximize(s_T)``.
        stats: running per-sample :class:`SuffStats` ``s_T`` (resume with them).
        n_updates: number of M-steps done (batches after the warm-up).
        samples_seen: (T,) NumPy, total sample weight after each batch.
        batch_log_likelihood: (T,) NumPy, mean log-likelihood of each batch under
            the parameters *before* it was used (a progressive, held-out estimate).
    """

    params: GMMParams
    last_params: GMMParams
    stats: SuffStats
    n_updates: int
    samples_seen: np.ndarray
    batch_log_likelihood: np.ndarray


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
    """Stepwise (online) EM over a stream of mini-batches.

    Batch ``t`` (1-based after the warm-up) updates the per-sample statistics
    with ``γ_t = (t + t₀)^(−α)`` (:func:`stepwise_update`), then does one M-step.
    During the first ``warmup`` batches the parameters stay at ``params`` and the
    statistics are the weighted average of those batches; the first M-step
    follows the warm-up.

    Args:
        params: starting :class:`GMMParams` (any covariance type; inactive
            components, weight 0, stay inactive). Its dtype is the computing dtype.
        batches: an iterable (one pass; a generator is fine) of (B, D) arrays
            or ``(x, sample_weight)`` pairs. A fixed batch size compiles once.
        alpha: step-size exponent, in (0.5, 1].
        t0: step-size offset ``t₀ ≥ 0`` (larger: smaller early steps).
        warmup: batches averaged before the first M-step (≥ 1).
        reg_covar: added to the covariance diagonal in every M-step.
        prior: optional conjugate prior (:class:`~jaxem.gmm.prior.Prior`): each
            M-step is the MAP step for the statistics ``n·s_t`` with ``n`` the
            sample weight seen so far, so the prior's influence fades as ``1/n``
            as in batch MAP EM.
        polyak: return the average of the parameter iterates after
            ``polyak_start`` M-steps (``last_params`` keeps the last iterate).
        polyak_start: M-steps before the averaging starts.
        max_batches: stop after this many batches (for endless streams).
        callback: called on the host with a :class:`BatchInfo` after each batch
            (it synchronises: use it for progress or to evaluate checkpoints).

    Returns:
        :class:`OnlineResult`.

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
    if not 0.5 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in (0.5, 1]; got {alpha!r}")
    if float(t0) < 0:
        raise ValueError(f"t0 must be >= 0; got {t0!r}")
    warmup = check_static_int("warmup", warmup, minimum=1)
    polyak_start = check_static_int("polyak_start", polyak_start, minimum=0)
    if max_batches is not None:
        max_batches = check_static_int("max_batches", max_batches, minimum=1)
    check_scalar("reg_covar", reg_covar)
    check_prior(prior, params.covariance_type, params.n_features)
    dtype = params.dtype
    d = params.n_features
    reg = jnp.asarray(reg_covar, dtype)

    stats = _empty_stats(params)
    avg, n_avg = None, 0
    seen_total = 0.0
    n_updates = 0
    seen, lls = [], []
    for index, item in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        xb, wb = item if isinstance(item, tuple) else (item, None)
        xb = jnp.asarray(xb, dtype)
        if xb.ndim != 2 or xb.shape[1] != d:
            raise ValueError(f"every batch must have shape (B, {d}); got {xb.shape}")
        wb = jnp.ones(xb.shape[0], dtype) if wb is None else jnp.asarray(wb, dtype)
        if index < warmup:  # cumulative weighted average; parameters held at the start
            weight = float(jnp.sum(wb))
            gamma = weight / (seen_total + weight)
        else:
            n_updates += 1
            gamma = float(step_size(n_updates, alpha=alpha, t0=t0))
        stats, ll, weight = _update(stats, params, xb, wb, jnp.asarray(gamma, dtype))
        seen_total += float(weight)
        if index + 1 >= warmup:
            params = _maximize(stats, reg, prior, jnp.asarray(seen_total, dtype))
            if polyak and n_updates >= polyak_start:
                n_avg += 1
                avg = params if avg is None else _average(avg, params, jnp.asarray(n_avg, dtype))
        seen.append(seen_total)
        lls.append(float(ll))
        if callback is not None:
            current = params if avg is None else _finalize(avg)
            callback(BatchInfo(index, seen_total, lls[-1], current))
    if not seen:
        raise ValueError("the stream yielded no batches")
    if len(seen) < warmup:  # shorter than the warm-up: one M-step on what was seen
        params = _maximize(stats, reg, prior, jnp.asarray(seen_total, dtype))
    return OnlineResult(
        params=params if avg is None else _finalize(avg),
        last_params=params,
        stats=stats,
        n_updates=n_updates,
        samples_seen=np.asarray(seen),
        batch_log_likelihood=np.asarray(lls),
    )


@jax.jit
def _finalize(avg: GMMParams) -> GMMParams:
    """Averaged weights, means and covariances with their precision factors."""
    return from_covariances(avg.weights, avg.means, avg.covariances, avg.covariance_type)


def _empty_stats(params: GMMParams) -> SuffStats:
    """Zero statistics about the current means, of the parameters' covariance type."""
    module = cov_lib.get(params.covariance_type)
    k, d = params.means.shape
    zero_resp = jnp.zeros((1, k), params.dtype)
    sxx = module.second_moments(zero_resp, params.means[:1], params.means)
    return SuffStats(
        jnp.zeros(k, params.dtype),
        jnp.zeros((k, d), params.dtype),
        sxx,
        params.means,
        params.covariance_type,
    )
