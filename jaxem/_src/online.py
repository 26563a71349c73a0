"""Online (stepwise) EM over a stream of mini-batches, for any family.

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

Statistics whose frame depends on the parameters (the Gaussian family's
second moments about the current means) are re-expressed in the new frame by
:meth:`Family.reframe` before they are interpolated (an exact identity).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.family import Family
from jaxem._src.sources import summed_pass
from jaxem._src.validation import check_sample_weight

__all__ = ["BatchInfo", "OnlineResult", "fit_online", "step_size", "stepwise_update"]

PyTree = Any


def step_size(
    t: ArrayLike, *, alpha: ArrayLike = 0.6, t0: ArrayLike = 2, dtype: Any = jnp.float32
) -> jax.Array:
    """``γ_t = (t + t₀)^(−α)`` for update ``t = 1, 2, …``, in ``dtype`` (float32 by
    default; :func:`fit_online` takes its parameters' dtype)."""
    return (jnp.asarray(t, dtype) + t0) ** (-jnp.asarray(alpha, dtype))


def _scale(stats: PyTree, c: ArrayLike) -> PyTree:
    return jax.tree.map(lambda a: a * c, stats)


def stepwise_update(
    family: Family,
    stats: PyTree,
    frame: PyTree,
    params: PyTree,
    x: Any,
    w: jax.Array,
    gamma: ArrayLike,
    context: PyTree,
) -> tuple[PyTree, jax.Array, jax.Array]:
    """One interpolation ``s ← (1 − γ) s + γ s̄(batch; params)`` (pure, no M-step).

    Args:
        family: the model family.
        stats: running per-sample statistics, in the frame of ``frame`` params.
        frame: the parameters ``stats`` were expressed under.
        params: current parameters (the E-step's).
        x: the mini-batch.
        w: (B,) non-negative weights.
        gamma: () step size in (0, 1]; 1 replaces the statistics.
        context: the family's data context.

    Returns:
        ``(stats in the frame of params, mean log-likelihood of the batch under
        params, the batch's total weight)``.
    """
    features = family.has_features
    mode = "features" if features else "raw"
    batch, ll_sum = summed_pass(
        family, params, x, w, context, featurize=features, batch=1, mode=mode
    )
    total = jnp.sum(w)
    gamma = jnp.asarray(gamma, total.dtype)
    if stats is None:  # the first batch (γ = 1): nothing to interpolate with
        return jax.tree.map(lambda b: b / total, batch), ll_sum / total, total
    old = family.reframe(stats, frame, params)
    new = jax.tree.map(lambda a, b: (1 - gamma) * a + gamma * b / total, old, batch)
    return new, ll_sum / total, total


@jax.jit
def _update(family, stats, frame, params, x, w, gamma, context):
    return stepwise_update(family, stats, frame, params, x, w, gamma, context)


@jax.jit
def _maximize(family, stats, params, context, seen):
    if family.has_prior:  # MAP: the prior weighs against the samples seen so far
        stats = _scale(stats, seen)
    return family.maximize(stats, params, context)


class _Average(NamedTuple):
    """A running mean of parameter iterates as ``ref + delta``: ``ref`` the
    first iterate averaged, ``delta`` the mean of the iterates' differences from
    it. Accumulated as ``a + (b − a)/m`` about the origin, each increment below
    half an ulp of the parameters rounded away: float32 means 1e4 from the
    origin drifted 3e-2 from the exact mean of the iterates (found by a sweep)."""

    ref: PyTree
    delta: PyTree

    def value(self) -> PyTree:
        return jax.tree.map(jnp.add, self.ref, self.delta)


def _start_average(params: PyTree) -> _Average:
    return _Average(params, jax.tree.map(jnp.zeros_like, params))


@jax.jit
def _average(avg: _Average, params: PyTree, m: jax.Array) -> _Average:
    """The running mean with one more iterate (``m``: iterates so far)."""
    delta = jax.tree.map(lambda d, b, r: d + ((b - r) - d) / m, avg.delta, params, avg.ref)
    return avg._replace(delta=delta)


@jax.jit
def _context(family, x, w):
    ref = jax.tree.map(lambda a: a[0], x)
    return family.context(family.summarize(x, w, ref), ref)


@jax.jit
def _canonical(family, params):
    return family.canonical(params)


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
    params: PyTree


@dataclasses.dataclass(frozen=True)
class OnlineResult:
    """The outcome of :func:`fit_online`.

    Attributes:
        params: final parameters (the Polyak average when ``polyak``).
        last_params: the last iterate ``maximize(s_T)``.
        stats: running per-sample statistics ``s_T``, in the frame of
            :attr:`stats_params` (the state :func:`stepwise_update` continues
            from, for a stream resumed by hand).
        stats_params: the parameters of the E-step that produced ``stats``.
        n_updates: stepwise updates with the schedule's step ``γ_t`` (the
            batches after the warm-up). The M-steps number one more (the first
            follows the warm-up's average), or one for a stream shorter than
            the warm-up.
        samples_seen: (T,) NumPy, total sample weight after each batch.
        batch_log_likelihood: (T,) NumPy, mean log-likelihood of each batch under
            the parameters *before* it was used (a progressive, held-out estimate).
    """

    params: PyTree
    last_params: PyTree
    stats: PyTree
    stats_params: PyTree
    n_updates: int
    samples_seen: np.ndarray
    batch_log_likelihood: np.ndarray


def fit_online(
    family: Family,
    params: PyTree,
    batches: Iterable[Any],
    *,
    alpha: float = 0.6,
    t0: float = 2.0,
    warmup: int = 5,
    polyak: bool = False,
    polyak_start: int = 50,
    max_batches: int | None = None,
    callback: Callable[[BatchInfo], Any] | None = None,
) -> OnlineResult:
    """Stepwise (online) EM over a stream of mini-batches, from ``params``.

    Batch ``t`` (1-based after the warm-up) updates the per-sample statistics
    with ``γ_t = (t + t₀)^(−α)`` (:func:`stepwise_update`), then does one M-step.
    The step is per unit of sample weight: a batch of weight ``W_t`` takes
    ``min(1, γ_t · W_t / W̄)`` with ``W̄`` the mean weight of the batches before
    it, so batches of equal size step ``γ_t`` and a short last batch (``N`` not
    a multiple of the batch size) moves the fit in proportion to its rows
    rather than as much as a full batch.
    During the first ``warmup`` batches the parameters stay at ``params`` and the
    statistics are the weighted average of those batches; the first M-step
    follows the warm-up. The family's data context (for example a centre) is
    taken from the first batch. With a prior, each M-step is the MAP step for
    the statistics ``n·s_t`` with ``n`` the sample weight seen so far, so the
    prior's influence fades as ``1/n`` as in batch MAP EM.

    Args:
        family: the model family.
        params: starting parameters (inactive components stay inactive).
        batches: an iterable (one pass; a generator is fine) of mini-batches or
            ``(x, sample_weight)`` pairs. A fixed batch size compiles once.
        alpha: step-size exponent, in (0.5, 1].
        t0: step-size offset ``t₀ ≥ 0`` (larger: smaller early steps).
        warmup: batches averaged before the first M-step (≥ 1).
        polyak: return the average of the parameter iterates after
            ``polyak_start`` M-steps (``last_params`` keeps the last iterate).
        polyak_start: M-steps before the averaging starts.
        max_batches: stop after this many batches (for endless streams).
        callback: called on the host with a :class:`BatchInfo` after each batch
            (it synchronises: use it for progress or to evaluate checkpoints).

    Returns:
        :class:`OnlineResult`.
    """
    from jaxem._src.validation import check_static_int

    if not 0.5 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in (0.5, 1]; got {alpha!r}")
    if float(t0) < 0:
        raise ValueError(f"t0 must be >= 0; got {t0!r}")
    warmup = check_static_int("warmup", warmup, minimum=1)
    polyak_start = check_static_int("polyak_start", polyak_start, minimum=0)
    if max_batches is not None:
        max_batches = check_static_int("max_batches", max_batches, minimum=1)
    dtype = jax.tree.leaves(params)[0].dtype
    family = family.one_pass()  # no full passes here for a conditional cycle

    stats = frame = context = None
    avg, n_avg = None, 0
    seen_total = 0.0
    n_updates = 0
    seen, lls = [], []
    for index, item in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        xb, wb = item if isinstance(item, tuple) else (item, None)
        xb = family.check_data_for(params, np.asarray(xb), name="batch")
        xb = jax.tree.map(lambda a: jnp.asarray(a, dtype), xb)
        n_rows = jax.tree.leaves(xb)[0].shape[0]
        if wb is None:
            wb = jnp.ones(n_rows, dtype)
        else:  # a batch of weight 0 has no statistics to step towards
            try:
                wb = check_sample_weight(np.asarray(wb, dtype), jax.tree.leaves(xb)[0])
            except ValueError as error:
                raise ValueError(f"batch {index}'s sample weights: {error}") from error
        if context is None:
            family.check_start(params, xb)  # a start outside the parameter space
            context = _context(family, xb, wb)
            # hyperparameters that depend on the data (the variational family's
            # priors) from the first batch, as the context
            weights = getattr(params, "weights", None)
            n_active = family.n_components_of(params) if weights is None else jnp.sum(weights > 0)
            family = family.bind(context, n_active)
            frame = params
            batch_shape = jax.eval_shape(
                lambda f, p, x, w, c: stepwise_update(f, None, p, p, x, w, 1.0, c)[0],
                family,
                params,
                xb,
                wb,
                context,
            )
            stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), batch_shape)
        weight = float(jnp.sum(wb))
        if index < warmup:  # cumulative weighted average; parameters held at the start
            gamma = weight / (seen_total + weight)
        else:
            # per unit of weight: a batch lighter than those before it (a partial
            # last batch) steps proportionally less; equal batches step γ_t
            n_updates += 1
            typical = seen_total / index
            gamma = float(step_size(n_updates, alpha=alpha, t0=t0, dtype=dtype))
            gamma = min(1.0, gamma * weight / typical) if typical > 0 else gamma
        stats, ll, _ = _update(
            family, stats, frame, params, xb, wb, jnp.asarray(gamma, dtype), context
        )
        frame = params
        seen_total += weight
        if index + 1 >= warmup:
            params = _maximize(family, stats, frame, context, jnp.asarray(seen_total, dtype))
            if polyak and n_updates >= polyak_start:
                n_avg += 1
                if avg is None:
                    avg = _start_average(params)
                else:
                    avg = _average(avg, params, jnp.asarray(n_avg, dtype))
        seen.append(seen_total)
        lls.append(float(ll))
        if callback is not None:
            current = params if avg is None else _canonical(family, avg.value())
            callback(BatchInfo(index, seen_total, lls[-1], current))
    if not seen:
        raise ValueError("the stream yielded no batches")
    if len(seen) < warmup:  # shorter than the warm-up: one M-step on what was seen
        params = _maximize(family, stats, frame, context, jnp.asarray(seen_total, dtype))
    return OnlineResult(
        params=params if avg is None else _canonical(family, avg.value()),
        last_params=params,
        stats=stats,
        stats_params=frame,
        n_updates=n_updates,
        samples_seen=np.asarray(seen),
        batch_log_likelihood=np.asarray(lls),
    )
