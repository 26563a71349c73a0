"""One branch decision for a whole ``vmap`` batch.

Under ``vmap`` a ``lax.cond`` whose predicate is batched becomes a ``select``
that computes both branches for every element. Where one branch is a cheap
common case and the other an expensive fallback (the fast moment products and
the direct route; scaled and log-space forward–backward), that costs the
fallback on every call. :func:`batch_decision` makes the predicate one value
for the batch when the data it is judged on are shared by the batch (restarts,
hyperparameters): ``combine`` (all or any) of the elements' predicates, so the
``cond`` stays a branch and takes the fallback for all elements or none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["batch_decision", "element_shapes"]


def batch_decision(
    fn: Callable[[Any, Any], jax.Array],
    varying: Any,
    shared: Any,
    combine: Callable = jnp.all,
    if_shared_varies: bool | None = None,
) -> jax.Array:
    """``fn(varying, shared)`` (booleans), without derivative. Under ``vmap``
    with ``shared`` unbatched, ``combine(·, axis=0)`` of every element's value
    (unbatched); with ``shared`` batched too, each element's own value, or
    with ``if_shared_varies`` given, that constant for the whole batch
    (unbatched, ``fn`` not computed): for a ``cond`` whose other branch
    cannot run under a ``select`` (a ``custom_vmap`` inside it, whose
    constants a batched predicate would batch)."""

    @jax.custom_batching.custom_vmap
    def decide(v, s):
        return fn(v, s)

    @decide.def_vmap
    def rule(axis_size, in_batched, v, s):
        if if_shared_varies is not None and any(jax.tree.leaves(in_batched[1])):
            shape = jax.eval_shape(fn, *element_shapes((v, s), tuple(in_batched)))
            return jnp.full(shape.shape, if_shared_varies), False
        v_axes, s_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
        each = jax.vmap(fn, in_axes=(v_axes, s_axes), axis_size=axis_size)(v, s)
        if not any(jax.tree.leaves(in_batched[1])):
            return combine(each, axis=0), False
        return each, True

    return decide(jax.lax.stop_gradient(varying), jax.lax.stop_gradient(shared))


def element_shapes(tree: Any, batched: Any) -> Any:
    """Shapes of one element of ``tree`` under ``vmap`` (batched leaves lose their leading axis)."""
    return jax.tree.map(
        lambda a, b: jax.ShapeDtypeStruct(a.shape[1:] if b else a.shape, a.dtype), tree, batched
    )
