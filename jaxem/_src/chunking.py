"""Bounded-memory reductions and maps over the sample axis.

Per-sample intermediates such as (N, K) responsibilities, (N, K, D) differences
or (N, F) moment features are built one chunk of rows at a time inside a
``lax.scan``, so peak memory is set by the chunk, not by N, and a chunk stays in
the CPU cache between the E-step and the statistics of the M-step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# About 2.4 MB of float32 per chunk: measured fastest for the direct E+M pass
# (jaxem._src.gmm.passes.direct_pass) on a 2-core x86 machine (100k × 16, K = 16: 68 ms
# per pass at 600k elements, 113 ms at 8M); larger chunks spill the cache. The
# moment pass, whose chunks are matrix products, sets its own larger target.
TARGET_CHUNK_ELEMENTS = 600_000


def unaliased(rows: int) -> int:
    """``rows`` (a multiple of 8) made not a multiple of 256, by 8 fewer.

    XLA:CPU's moment products over chunks whose row count is a multiple of
    256 ran 1.5–2× slower (cache sets aliased along the rows; a chunk's E-step
    product, softmax and M-step product, 2 cores, float32: D = 16, K = 16,
    1 536 / 2 048 rows 0.59 / 0.69 µs a row against 0.29–0.33 at 1 544–1 600;
    D = K = 32, 7 680 / 7 936 rows 2.0–2.6 against 1.3–1.4 at 7 688–7 808).
    The direct pass showed no such effect (256 against 248 or 264 rows).
    """
    return rows - 8 if rows % 256 == 0 and rows > 8 else rows


def chunk_rows(n_samples: int, elements_per_row: int, target: int | None = None) -> int:
    """Rows per chunk so that a chunk holds about ``target`` elements (static; by
    default :data:`TARGET_CHUNK_ELEMENTS`), at least 256."""
    target = TARGET_CHUNK_ELEMENTS if target is None else target
    rows = max(256, target // max(elements_per_row, 1))
    rows = (rows // 8) * 8
    return n_samples if n_samples <= rows else rows


def _chunk(arrays: tuple[Any, ...], start: Any, rows: int) -> tuple[Any, ...]:
    """Rows ``start : start + rows`` of every array of the pytrees ``arrays`` (a
    slice read in place, no copy of the whole array)."""
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, rows), arrays)


def chunked_sum(fn: Callable[..., Any], arrays: tuple[Any, ...], rows: int) -> Any:
    """``Σ_chunks fn(*chunks)`` over the leading (sample) axis of ``arrays`` (a
    tuple of arrays or of pytrees of arrays with the same number of rows).

    Full chunks of ``rows`` rows are sliced in place inside a ``lax.scan``; the
    remaining ``N mod rows`` rows are one more, smaller call. Nothing is padded or
    copied, so the arrays are never duplicated in memory.
    """
    n = jax.tree.leaves(arrays)[0].shape[0]
    if rows >= n:
        return fn(*arrays)
    n_full, rest = divmod(n, rows)
    total = fn(*_chunk(arrays, 0, rows))
    if n_full > 1:

        def body(acc, i):
            return jax.tree.map(jnp.add, acc, fn(*_chunk(arrays, i * rows, rows))), None

        total, _ = jax.lax.scan(body, total, jnp.arange(1, n_full))
    if rest:
        tail = jax.tree.map(lambda a: a[n_full * rows :], arrays)
        total = jax.tree.map(jnp.add, total, fn(*tail))
    return total


def chunked_map(fn: Callable[[jax.Array], Any], x: jax.Array, rows: int) -> Any:
    """``fn`` applied to chunks of rows and concatenated (outputs have N leading rows)."""
    n = x.shape[0]
    if rows >= n:
        return fn(x)
    n_full, rest = divmod(n, rows)
    out = jax.lax.map(
        lambda i: fn(jax.lax.dynamic_slice_in_dim(x, i * rows, rows)), jnp.arange(n_full)
    )
    out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)
    if rest:
        tail = fn(x[n_full * rows :])
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, tail)
    return out
