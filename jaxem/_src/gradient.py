"""Gradient-based maximum likelihood with any optax optimizer, in EM's loop.

Nothing here knows about Gaussians. :func:`fit_gradient` maximises a
differentiable ``log_likelihood(params)`` with an optax optimizer inside the
same :func:`jax.lax.while_loop` as :func:`jaxem.em` (it is built on
:func:`jaxem.iterate`), so it has the same stopping rule, history and result
type, and an EM run and a gradient run are drop-in comparable, under ``jit`` and
``vmap`` alike.

Optimizers with a line search that stores the objective's value and gradient in
their state (``optax.lbfgs()``, or a chain ending in
``optax.scale_by_zoom_linesearch``/``scale_by_backtracking_linesearch`` with
``store_grad=True``) reuse them through :func:`optax.value_and_grad_from_state`
and receive ``value``, ``grad`` and ``value_fn`` in ``update``, as optax
documents. Other optimizers (``adam``, ``sgd``) get a plain
:func:`jax.value_and_grad`; the extra arguments are ignored by them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxem._src.loop import EMResult, iterate
from jaxem._src.validation import check_scalar, check_static_int

__all__ = ["fit_gradient"]

PyTree = Any


def _stores_value(state: PyTree) -> bool:
    """Whether the optimizer state holds a ``value`` and a ``grad`` (line searches)."""
    try:
        value = optax.tree.get(state, "value")
        grad = optax.tree.get(state, "grad")
    except (KeyError, ValueError):  # several line searches chained: do not guess
        return False
    return value is not None and grad is not None


def fit_gradient(
    log_likelihood: Callable[[PyTree], jax.Array],
    params: PyTree,
    optimizer: optax.GradientTransformation,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
) -> EMResult:
    """Maximise ``log_likelihood(params)`` with an optax optimizer, with EM's stopping rule.

    Iteration ``i`` evaluates ``ll_i = log_likelihood(params)`` and its gradient,
    then applies one optimizer update to ``params`` (minimising ``−ll``). The loop
    stops after the iteration ``i`` for which ``|ll_i − ll_{i−1}| < tol``, after
    ``max_iter`` iterations, or when ``ll_i`` is NaN (not converged), exactly as
    :func:`jaxem.iterate`. Works eagerly, under ``jit`` and under ``vmap``.

    Args:
        log_likelihood: pure function ``params -> ()`` scalar to maximise (use the
            mean per-sample log-likelihood to be comparable with EM); bind the
            data with a closure or :func:`functools.partial`.
        params: starting point (a pytree of floating arrays).
        optimizer: any optax ``GradientTransformation``: ``optax.adam(1e-2)``,
            ``optax.sgd(1e-2, momentum=0.9)``, ``optax.lbfgs()``, ... Its numbers
            (learning rates) may be traced.
        tol: tolerance on the change of the log-likelihood (traced).
        max_iter: maximum number of optimizer updates (static).

    Returns:
        :class:`jaxem.EMResult`: ``params`` after the last update,
        ``log_likelihood`` of those params, ``history[i]`` the log-likelihood
        before update ``i + 1`` (NaN after the last), ``n_iter`` updates done and
        ``converged``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxem
        >>> x = jnp.array([1.0, 2.0, 3.0])
        >>> def ll(mu):  # Gaussian log-likelihood of the mean, up to a constant
        ...     return -0.5 * jnp.mean((x - mu) ** 2)
        >>> result = jaxem.fit_gradient(ll, jnp.array(0.0), optax.lbfgs(), tol=1e-10)
        >>> round(float(result.params), 6), bool(result.converged)
        (2.0, True)
    """
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer must be an optax GradientTransformation; got {type(optimizer).__name__}"
        )
    optimizer = optax.with_extra_args_support(optimizer)
    params = jax.tree.map(jnp.asarray, params)

    def loss(p):
        return -log_likelihood(p)

    state = optimizer.init(params)
    if _stores_value(state):
        value_and_grad = optax.value_and_grad_from_state(loss)
    else:
        plain = jax.value_and_grad(loss)

        def value_and_grad(p, *, state):
            del state
            return plain(p)

    def step(carry):
        p, s = carry
        value, grad = value_and_grad(p, state=s)
        updates, s = optimizer.update(grad, s, p, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(p, updates), s), -value

    result = iterate(
        step, lambda carry: log_likelihood(carry[0]), (params, state), tol=tol, max_iter=max_iter
    )
    return dataclasses.replace(result, params=result.params[0])
