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

# About 2.4 MB of float32 per chunk: measured fastest for the fused E+M pass
# on a 2-core x86 machine (experiments/benchmark.py); larger chunks spill the cache.
TARGET_CHUNK_ELEMENTS = 600_000


def chunk_rows(n_samples: int, elements_per_row: int, target: int | None = None) -> int:
    """Rows per chunk so that a chunk holds about ``target`` elements (static; by
    default :data:`TARGET_CHUNK_ELEMENTS`), at least 256."""
    target = TARGET_CHUNK_ELEMENTS if target is None else target
    rows = max(256, target // max(elements_per_row, 1))
    rows = (rows // 8) * 8
    return n_samples if n_samples <= rows else rows


def _split(arrays: tuple[jax.Array, ...], rows: int) -> tuple[jax.Array, ...]:
    """Zero-pad the leading axis to a multiple of ``rows`` and split it into chunks."""
    n = arrays[0].shape[0]
    n_chunks = -(-n // rows)
    pad = n_chunks * rows - n

    def split(a):
        if pad:
            a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)])
        return a.reshape(n_chunks, rows, *a.shape[1:])

    return tuple(split(a) for a in arrays)


def chunked_sum(fn: Callable[..., Any], arrays: tuple[jax.Array, ...], rows: int) -> Any:
    """``Σ_chunks fn(*chunks)`` over the leading (sample) axis of ``arrays``.

    The last chunk is padded with zero rows, so ``fn`` must return a pytree of
    sums to which a row that is zero in a weighting array (sample weights,
    responsibilities) contributes nothing.
    """
    if rows >= arrays[0].shape[0]:
        return fn(*arrays)
    chunks = _split(arrays, rows)
    first = fn(*(c[0] for c in chunks))

    def body(acc, chunk):
        return jax.tree.map(jnp.add, acc, fn(*chunk)), None

    total, _ = jax.lax.scan(body, first, tuple(c[1:] for c in chunks))
    return total


def chunked_map(fn: Callable[[jax.Array], Any], x: jax.Array, rows: int) -> Any:
    """``fn`` applied to chunks of rows and concatenated (outputs have N leading rows)."""
    n = x.shape[0]
    if rows >= n:
        return fn(x)
    (xs,) = _split((x,), rows)
    out = jax.lax.map(fn, xs)
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)
