"""Differentiation through EM loops: forward mode, and a clear error for reverse mode.

An EM fit is a ``lax.while_loop`` whose trip count depends on the data, so JAX
cannot reverse-differentiate it; forward mode (``jax.jvp``, ``jax.jacfwd``)
works and is exact for the iterations run. :func:`forward_mode_only` wraps such a
function so that forward mode is unchanged and reverse mode (``jax.grad``,
``jax.vjp``) raises a :class:`TypeError` that says what to use instead, rather
than JAX's message about ``while_loop`` transposes; the message points to
``implicit=True`` (:mod:`jaxem._src.implicit`), which differentiates the
fixed point in reverse mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["REVERSE_MODE_MESSAGE", "forward_mode_only"]

REVERSE_MODE_MESSAGE = (
    "reverse-mode differentiation (jax.grad, jax.vjp) does not pass through an EM fit: "
    "it is a lax.while_loop that runs until a data-dependent stopping rule holds. For "
    "gradients of the fitted parameters or log-likelihood, pass implicit=True (jaxem.em, "
    "jaxem.iterate, jaxem.fit, jaxem.gmm.fit, jaxem.gmm.fit_from): the fixed point is then "
    "differentiated by the implicit function theorem, with respect to the data, sample "
    "weights and hyperparameters (converge tightly). Or use forward mode instead (jax.jvp, "
    "jax.jacfwd, or jax.linearize for many outputs), which is exact for the iterations run."
)

# An identity on tangents whose transpose raises: placed at the outputs of a
# forward-mode rule, it is the first thing reverse mode meets.
_guard_p = Primitive("jaxem_forward_mode_only")
_guard_p.def_impl(lambda t: t)
_guard_p.def_abstract_eval(lambda t: t)


def _transpose(cotangent: Any, tangent: Any) -> Any:
    raise TypeError(REVERSE_MODE_MESSAGE)


ad.deflinear2(_guard_p, _transpose)
batching.defvectorized(_guard_p)
mlir.register_lowering(_guard_p, lambda ctx, t: [t])


def _guard(tangent: Any) -> Any:
    dtype = getattr(tangent, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
        return tangent  # float0 tangents of integer and boolean outputs
    return _guard_p.bind(tangent)


def forward_mode_only(fun: Callable[..., Any]) -> Callable[..., Any]:
    """``fun`` (positional array/pytree arguments only) with JAX's own forward-mode
    derivative and a clear error in reverse mode (:data:`REVERSE_MODE_MESSAGE`)."""

    @jax.custom_jvp
    @functools.wraps(fun)
    def wrapped(*args):
        return fun(*args)

    @wrapped.defjvp
    def jvp(primals, tangents):
        out, tangent_out = jax.jvp(fun, primals, tangents)
        return out, jax.tree.map(_guard, tangent_out)

    return wrapped
