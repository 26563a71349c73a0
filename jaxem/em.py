"""The generic Expectation–Maximization loop.

Nothing here knows about Gaussians. A model is a pair of pure functions

* ``e_step(params, x) -> (expectations, log_likelihood)``, where
  ``log_likelihood`` is the mean per-sample log-likelihood of ``x`` under
  ``params`` (a scalar), and
* ``m_step(expectations, x) -> params``,

and :func:`em` iterates them in one :func:`jax.lax.while_loop` until the change
in log-likelihood falls under ``tol`` (or, with ``criterion="aitken"``, the gain
still to come as Aitken's extrapolation predicts it) or ``max_iter`` M-steps
have been done.
:func:`iterate` is the same loop over a fused ``step(params) -> (new_params,
log_likelihood)``, for models that compute the E-step and the statistics of the
M-step in one pass over the data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._validation import check_scalar, check_static_int

__all__ = ["CRITERIA", "EMResult", "em", "iterate"]

PyTree = Any

CRITERIA = ("change", "aitken")

# With criterion="aitken" a change this small relative to the log-likelihood is
# rounding: the run has converged whatever the extrapolation says.
_ROUNDING_ULPS = 16


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EMResult:
    """The outcome of an EM run; a pytree, so it can be returned from ``jit``/``vmap``.

    Attributes:
        params: the parameters after the last M-step.
        log_likelihood: () mean per-sample log-likelihood of ``params``.
        history: (max_iter,) ``history[i]`` is the mean log-likelihood computed in
            the E-step of iteration ``i + 1`` (that is, of the parameters before
            its M-step); NaN after the last iteration.
        n_iter: () int, number of M-steps done.
        converged: () bool, whether the change in log-likelihood fell under ``tol``
            before ``max_iter`` iterations.
    """

    params: PyTree
    log_likelihood: jax.Array
    history: jax.Array
    n_iter: jax.Array
    converged: jax.Array


def iterate(
    step: Callable[[PyTree], tuple[PyTree, jax.Array]],
    log_likelihood: Callable[[PyTree], jax.Array],
    params: PyTree,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    criterion: str = "change",
) -> EMResult:
    """Iterate ``params <- step(params)`` until a stopping rule holds.

    ``step(params)`` returns the updated parameters and the mean log-likelihood
    ``ll_i`` of ``params`` (computed in its E-step). The loop stops after the
    iteration ``i`` at which ``criterion`` holds, after ``max_iter`` iterations,
    or as soon as ``ll_i`` is NaN (reported as not converged):

    * ``"change"`` (scikit-learn's rule): ``|ll_i - ll_{i-1}| < tol``.
    * ``"aitken"``: the gain from ``ll_{i-1}`` to the limit that Aitken's Δ²
      extrapolation predicts, ``(ll_i - ll_{i-1}) / (1 - a_i)`` with rate
      ``a_i = (ll_i - ll_{i-1}) / (ll_{i-1} - ll_{i-2})``, is below ``tol``
      (Böhning et al. 1994; McNicholas et al. 2010). EM converges linearly, and
      on a flat ridge (``a_i`` near 1) small steps add up to a large gain that
      the change rule ignores; this rule keeps going there. It needs a rate in
      ``[0, 1)`` from three log-likelihoods, so it never stops before the third
      iteration, except that a change within rounding of ``ll_i``
      (``16·eps·max(1, |ll_i|)``) always stops it.

    Args:
        step: pure function ``params -> (new_params, log_likelihood)``.
        log_likelihood: pure function ``params -> mean log-likelihood``, called
            once after the loop to report the likelihood of the returned params.
        params: starting parameters (any pytree).
        tol: convergence tolerance on the change of the mean log-likelihood; may
            be traced (changing it does not recompile).
        max_iter: maximum number of iterations; static (it fixes ``history``'s
            shape).
        criterion: ``"change"`` or ``"aitken"`` (static), see above.

    Returns:
        An :class:`EMResult`.
    """
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    check_criterion(criterion)
    _, ll_shape = jax.eval_shape(step, params)
    if ll_shape.shape != ():
        raise ValueError(
            f"the log-likelihood returned by the step must be a scalar; got shape {ll_shape.shape}"
        )
    dtype = ll_shape.dtype
    tol = jnp.asarray(tol, dtype)

    def cond(carry):
        i, _, _, _, _, done = carry
        return (i < max_iter) & ~done

    def body(carry):
        i, params, ll_prev, ll_prev2, history, _ = carry
        new_params, ll = step(params)
        ll = jnp.asarray(ll, dtype)
        history = history.at[i].set(ll)
        if criterion == "change":
            converged = jnp.abs(ll - ll_prev) < tol
        else:
            converged = _aitken_converged(ll, ll_prev, ll_prev2, tol)
        return i + 1, new_params, ll, ll_prev, history, converged | jnp.isnan(ll)

    init = (
        jnp.asarray(0, jnp.int32),
        params,
        jnp.asarray(-jnp.inf, dtype),
        jnp.asarray(-jnp.inf, dtype),
        jnp.full((max_iter,), jnp.nan, dtype),
        jnp.asarray(False),
    )
    n_iter, params, ll_last, _, history, done = jax.lax.while_loop(cond, body, init)
    converged = done & ~jnp.isnan(ll_last)
    return EMResult(
        params=params,
        log_likelihood=jnp.asarray(log_likelihood(params), dtype),
        history=history,
        n_iter=n_iter,
        converged=converged,
    )


def check_criterion(criterion: object) -> None:
    """Raise unless ``criterion`` is one of :data:`CRITERIA`."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")


def _aitken_converged(ll, ll_prev, ll_prev2, tol):
    """Aitken's rule (see :func:`iterate`) from the last three log-likelihoods."""
    step = ll - ll_prev
    before = ll_prev - ll_prev2
    usable = jnp.isfinite(before) & (before > 0)
    rate = step / jnp.where(usable, before, 1)
    usable &= (rate >= 0) & (rate < 1)
    gain = step / jnp.where(usable, 1 - rate, 1)
    rounding = _ROUNDING_ULPS * jnp.finfo(ll.dtype).eps * jnp.maximum(1, jnp.abs(ll))
    return (jnp.abs(step) <= rounding) | (usable & (gain < tol))


def em(
    e_step: Callable[[PyTree, jax.Array], tuple[PyTree, jax.Array]],
    m_step: Callable[[PyTree, jax.Array], PyTree],
    params: PyTree,
    x: ArrayLike,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    criterion: str = "change",
) -> EMResult:
    """Run Expectation–Maximization from ``params`` on data ``x``.

    Each iteration ``i`` computes ``expectations, ll_i = e_step(params, x)`` and
    then ``params = m_step(expectations, x)``; the loop stops after the M-step of
    the first iteration with ``|ll_i - ll_{i-1}| < tol`` (scikit-learn's rule; or
    Aitken's rule with ``criterion="aitken"``, see :func:`iterate`), or after
    ``max_iter`` iterations. Works eagerly, under ``jax.jit`` and under
    ``jax.vmap`` (each batch element stops on its own criterion).

    Args:
        e_step: ``(params, x) -> (expectations, mean log-likelihood)``.
        m_step: ``(expectations, x) -> params``; bind hyperparameters with
            :func:`functools.partial`.
        params: starting parameters (any pytree).
        x: the data, passed unchanged to both steps.
        tol: tolerance on the change of the mean log-likelihood (traced).
        max_iter: maximum number of iterations (static).
        criterion: ``"change"`` (default) or ``"aitken"`` (static).

    Returns:
        An :class:`EMResult`; ``result.log_likelihood`` is the mean
        log-likelihood of the returned ``result.params``.

    Example:
        >>> import functools, jax, jax.numpy as jnp, jaxem
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> start = gmm.make_params(jnp.array([0.5, 0.5]),
        ...                         jnp.array([[-1.0, 0.0], [1.0, 0.0]]),
        ...                         jnp.stack([jnp.eye(2)] * 2))
        >>> result = jaxem.em(gmm.e_step, gmm.m_step, start, x, tol=1e-4)
        >>> bool(result.converged)
        True
    """
    x = jnp.asarray(x)

    def step(p):
        expectations, ll = e_step(p, x)
        return m_step(expectations, x), ll

    return iterate(
        step, lambda p: e_step(p, x)[1], params, tol=tol, max_iter=max_iter, criterion=criterion
    )
