"""Data sources: how one pass of a family over the data is reduced.

Every source gives the engine's pipeline (:func:`jaxem._src.engine.pipeline`)
the same five things: the family's data context (its summary summed over the
whole data), the rows to initialise on, the per-fit preparation (features a
family builds once), the pass summed over all rows, and EM over a batch of
restarts. The family never knows which source it runs on.

* :class:`InMemory`: arrays in memory; the pass is summed chunk by chunk inside
  the compiled loop (``lax.scan``), over features built once per fit when they
  fit in :data:`FEATURE_CACHE_BYTES`.
* :class:`Sharded`: rows split over the devices of a mesh; each device sums its
  rows inside :func:`jax.shard_map` and the statistics are reduced with
  ``psum``, so the EM ``while_loop`` outside sees one replicated value and every
  device stops at the same iteration.
* :class:`HostChunks`: data read chunk by chunk on the host (a memmap, a
  sequence of arrays, a generator function): out-of-core EM. The loop runs on
  the host with the same carry and the same update as the compiled loop
  (:func:`jaxem._src.loop.update`), so it gives the same results.

Stepwise (online) EM is :mod:`jaxem._src.online`.
"""

from __future__ import annotations

import dataclasses
import functools
import mmap
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxem._src import acceleration, loop
from jaxem._src.chunking import chunked_sum, unaliased
from jaxem._src.engine import Starts, objective, restart_layout, run_em, run_em_refined
from jaxem._src.family import ChunkedRows, Family
from jaxem._src.programs import full_precision
from jaxem._src.validation import check_static_int

__all__ = [
    "FEATURE_CACHE_BYTES",
    "HostChunks",
    "InMemory",
    "PassInfo",
    "Sharded",
    "array_chunks",
    "pad_rows",
    "print_progress",
    "row_bucket",
    "shard_rows",
]

PyTree = Any

#: Largest per-fit feature array (:meth:`Family.featurize`), in bytes, that an
#: in-memory fit keeps for all its passes instead of rebuilding it chunk by chunk
#: in every pass (the Gaussian family's moment features: N = 10⁶, D = 32, full,
#: 2.2 GB in float32, are rebuilt per chunk). 0 never keeps them.
FEATURE_CACHE_BYTES = 1 << 30


def _first_row(x: PyTree) -> PyTree:
    return jax.tree.map(lambda a: a[0], x)


def _nbytes(tree: PyTree) -> int:
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))


def summed_pass(family: Family, params, rows, w, context, *, featurize: bool, batch: int, mode):
    """``(stats, Σ w log p)`` of ``family`` over all ``rows``, chunk by chunk."""

    def chunk(rb, wb):
        features = family.featurize(rb, context) if featurize else rb
        return family.pass_(params, features, wb, context)

    n = w.shape[0]
    return chunked_sum(chunk, (rows, w), family.chunk_rows(n, params, rows, batch, mode))


def chunkwise_pass(family: Family, params, prepared: ChunkedRows, context):
    """``(stats, Σ w log p)`` of ``family`` over the chunks of a
    :class:`ChunkedRows` up to the last one of positive weight (the chunks
    after it, padding, are skipped; one of weight zero before it is computed,
    its rows absent), in order, each chunk passed the state the ones before
    it left (:meth:`Family.layout_pass`).

    A loop of a data-dependent length, not a ``cond`` per chunk: with no
    branch around the chunk, XLA moves what depends only on the parameters
    (a Gaussian's precisions, its accuracy check's eigenvalue bounds) out of
    the loop. One pass of 100 000 × 16, K = 16, full covariances: about 5 100
    kernels → 2 900, 1.09–1.19× faster; 20 000 × 4, K = 4: 1.6× (same
    statistics to the bit, 2 CPU cores, float32)."""
    items, weights = prepared.items, prepared.weights

    def one(i, state):
        item = jax.tree.map(lambda a: a[i], items)
        return family.layout_pass(params, item, weights[i], context, state)

    state = family.layout_state(params, weights)
    shapes = jax.eval_shape(one, 0, state)[0]
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    used = jnp.any(weights > 0, axis=1)
    n_used = jnp.max(jnp.where(used, jnp.arange(1, used.shape[0] + 1), 0))

    def body(i, carry):
        total, state = carry
        out, state = one(i, state)
        return jax.tree.map(jnp.add, total, out), state

    return jax.lax.fori_loop(0, n_used, body, (zero, state))[0]


# ---------------------------------------------------------------------- in memory


def row_bucket(n: int) -> int:
    """The number of rows an in-memory fit of ``n`` rows is compiled for.

    ``n`` rounded up to the next of 16 sizes per octave (a multiple of
    ``2^(⌊log₂ n⌋ − 4)``; ``n`` itself below 32): at most 6.25% more rows, so
    that a new ``n`` in the same bucket reuses the compiled program. Powers of
    two up to 512 are bucket sizes (:data:`jaxem._src.init.HC_MAX_SAMPLES` is
    one). From 1024 rows a size that is a multiple of 256 is moved by 8 rows
    (down where that still holds ``n``, else up, a bucket of 8 sizes): the
    moment products over a chunk of such a row count ran 1.5–2.4× slower
    (:func:`jaxem._src.chunking.unaliased`; 5 000 × 8, K = 5, one chunk of
    the whole data: 0.29 µs a row at 5 120 rows, 0.12 at 5 112 or 5 128).
    """
    if n < 32:
        return n
    step = 1 << (n.bit_length() - 5)
    size = -(-n // step) * step
    if size >= 1024 and unaliased(size) != size:
        size = unaliased(size) if unaliased(size) >= n else size + 8
    return size


def pad_rows(x: PyTree, w: jax.Array, n_rows: int) -> tuple[PyTree, jax.Array]:
    """``x`` and ``w`` extended to ``n_rows`` rows by copies of the first row
    with weight zero: every family's pass, statistics and initialisation treat
    a row of weight zero as absent, so the fit is that of the unpadded data
    (up to the initialisers' random draws, which depend on the row count)."""
    n = w.shape[0]
    if n_rows == n:
        return x, w

    def pad(a):
        return jnp.concatenate([a, jnp.broadcast_to(a[:1], (n_rows - n, *a.shape[1:]))])

    return jax.tree.map(pad, x), jnp.concatenate([w, jnp.zeros(n_rows - n, w.dtype)])


@functools.partial(jax.jit, static_argnames=("n", "dtype"))
def _ones(n: int, dtype) -> jax.Array:
    return jnp.ones(n, dtype)


@functools.partial(jax.jit, static_argnames=("n_rows",))
def _padded(x: PyTree, w: jax.Array | None, n_rows: int) -> tuple[PyTree, jax.Array]:
    """``x`` and its weights (all one when None) padded to ``n_rows`` rows."""
    leaf = jax.tree.leaves(x)[0]
    w = jnp.ones(leaf.shape[0], leaf.dtype) if w is None else w
    return pad_rows(x, w, n_rows)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class InMemory:
    """Data in memory: ``x`` any pytree of arrays with N leading rows, ``w`` (N,)."""

    x: PyTree
    w: jax.Array

    @classmethod
    def of(cls, family: Family, x: PyTree, w: jax.Array | None) -> InMemory:
        """The source of checked data ``x`` and sample weights ``w`` (None: all
        one), its rows padded to :func:`row_bucket` when the family's rows are
        independent (:attr:`Family.row_buckets`)."""
        n = jax.tree.leaves(x)[0].shape[0]
        n_rows = row_bucket(n) if family.row_buckets else n
        # small compiled programs rather than eager operations (~0.1 ms each)
        if n_rows == n:
            return cls(x, _ones(n, jnp.dtype(jax.tree.leaves(x)[0].dtype)) if w is None else w)
        return cls(*_padded(x, w, n_rows))

    def context(self, family: Family) -> PyTree:
        ref = _first_row(self.x)
        return family.context(family.summarize(self.x, self.w, ref), ref)

    def init_data(self, key: jax.Array) -> tuple[PyTree, jax.Array]:
        return self.x, self.w

    @staticmethod
    def compile(fn: Callable) -> Callable:
        return fn  # traced inside the caller's program

    def prepare(
        self, family: Family, context: PyTree, n_components: int | None = None
    ) -> PyTree | None:
        """The family's features of every row, when it has some and they fit:
        in the family's own chunks (:meth:`Family.layout`, given the number of
        components) when it arranges them, else in the rows' order. Where
        the features do not fit, the family's chunks of rows whose features
        each pass builds (``layout(..., features=False)``), when it has them
        and they fit."""
        if not family.has_features:
            return None
        if n_components is not None:
            for features in (True, False):
                make = functools.partial(
                    family.layout, n_components=n_components, features=features
                )
                shape = jax.eval_shape(make, self.x, self.w, context)
                if shape is None:
                    break
                if _nbytes(shape) <= FEATURE_CACHE_BYTES:
                    layout = make(self.x, self.w, context)
                    n_rows = jax.tree.leaves(self.x)[0].shape[0]
                    if features and family.tries_whole_pass(n_rows, n_components):
                        whole = jax.eval_shape(family.featurize, self.x, context)
                        if _nbytes(shape) + _nbytes(whole) <= FEATURE_CACHE_BYTES:
                            layout = layout._replace(whole=family.featurize(self.x, context))
                    return layout
        shape = jax.eval_shape(family.featurize, self.x, context)
        if _nbytes(shape) > FEATURE_CACHE_BYTES:
            return None
        return family.featurize(self.x, context)

    def reduce(self, family: Family, params, prepared, context, batch: int):
        if isinstance(prepared, ChunkedRows):

            def loop(p):
                return chunkwise_pass(family, p, prepared, context)

            def chunks(p):
                return family.chunks_pass(p, prepared.items, prepared.weights, context, loop, batch)

            if prepared.whole is None:
                stats, ll_sum = chunks(params)
            else:
                stats, ll_sum = family.whole_pass(
                    params, prepared.whole, self.w, context, chunks, batch
                )
            return stats, ll_sum, jnp.sum(self.w)
        if prepared is not None:
            rows, featurize, mode = prepared, False, "cached"
        else:
            rows, featurize = self.x, family.has_features
            mode = "features" if featurize else "raw"
        stats, ll_sum = summed_pass(
            family, params, rows, self.w, context, featurize=featurize, batch=batch, mode=mode
        )
        return stats, ll_sum, jnp.sum(self.w)

    def run(self, family, prepared, context, starts, *, tol, max_iter, criterion, accelerate=None):
        sequential, batch = restart_layout(self.x, starts)

        def reduce(params, view=family):
            return self.reduce(view, params, prepared, context, batch)

        return run_em(
            family, reduce, context, starts, tol=tol, max_iter=max_iter, criterion=criterion,
            accelerate=accelerate, sequential=sequential,
        )  # fmt: skip

    def refines_in_loop(self, accelerate) -> bool:
        """Whether screening and refinement run as one loop (:meth:`run_refined`):
        for plain EM."""
        return accelerate is None

    def run_refined(self, family, prepared, context, starts, **kwargs):
        """:func:`~jaxem._src.engine.run_em_refined` on all the rows, each pass
        sized for the restarts its slots compute at once."""
        sequential = restart_layout(self.x, starts)[0]
        batch = 1 if sequential else kwargs["n_refine"]

        def reduce(params, view=family):
            return self.reduce(view, params, prepared, context, batch)

        return run_em_refined(family, reduce, context, starts, sequential=sequential, **kwargs)


# ------------------------------------------------------------------- several devices


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Sharded:
    """Rows split over the mesh axis ``axis_name`` (global arrays ``x``, ``w``).

    ``init_rows`` (replicated) are the rows the restarts are initialised on: the
    whole data gathered, or a random subset for data too large for one device.
    """

    x: PyTree
    w: jax.Array
    init_rows: PyTree
    init_w: jax.Array
    mesh: Mesh = dataclasses.field(metadata=dict(static=True))
    axis_name: str = dataclasses.field(metadata=dict(static=True))

    def _map(self, fn, in_specs, out_specs):
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs)

    def context(self, family: Family) -> PyTree:
        ref = _first_row(self.init_rows)
        axis = self.axis_name

        def local(x, w, ref):
            return jax.lax.psum(family.summarize(x, w, ref), axis)

        summary = self._map(local, (P(axis), P(axis), P()), P())(self.x, self.w, ref)
        return family.context(summary, ref)

    def init_data(self, key: jax.Array):
        return self.init_rows, self.init_w

    @staticmethod
    def compile(fn: Callable) -> Callable:
        return fn

    def prepare(
        self, family: Family, context: PyTree, n_components: int | None = None
    ) -> PyTree | None:
        if not family.has_features:
            return None
        n_devices = self.mesh.shape[self.axis_name]
        shape = jax.eval_shape(family.featurize, self.x, context)
        if _nbytes(shape) // n_devices > FEATURE_CACHE_BYTES:
            return None
        axis = self.axis_name
        return self._map(lambda x, c: family.featurize(x, c), (P(axis), P()), P(axis))(
            self.x, context
        )

    def run(self, family, prepared, context, starts, *, tol, max_iter, criterion, accelerate=None):
        sequential, batch = restart_layout(self.x, starts)
        axis = self.axis_name
        cached = prepared is not None
        rows = prepared if cached else self.x
        featurize = family.has_features and not cached
        mode = "cached" if cached else ("features" if featurize else "raw")

        def local(view, params, rows, w, context):
            stats, ll_sum = summed_pass(
                view, params, rows, w, context, featurize=featurize, batch=batch, mode=mode
            )
            return jax.lax.psum((stats, ll_sum, jnp.sum(w)), axis)

        summed = self._map(local, (P(), P(), P(axis), P(axis), P()), P())

        def reduce(params, view=family):
            return summed(view, params, rows, self.w, context)

        return run_em(
            family, reduce, context, starts, tol=tol, max_iter=max_iter, criterion=criterion,
            accelerate=accelerate, sequential=sequential,
        )  # fmt: skip


def shard_rows(
    x: Any, mesh: Mesh, axis_name: str | None = None, sample_weight: Any = None
) -> tuple[jax.Array, jax.Array]:
    """Place (N, D) host data on ``mesh``, rows split over ``axis_name``.

    N is padded with zero-weight rows to a multiple of the axis size (padding
    rows contribute nothing to any statistic).

    Returns:
        ``(x, sample_weight)`` as sharded global arrays of Nₚ ≥ N rows.
    """
    if axis_name is None:
        axis_name = mesh.axis_names[0]
    n_shards = mesh.shape[axis_name]
    x = np.asarray(x)
    n = x.shape[0]
    w = np.ones(n, x.dtype) if sample_weight is None else np.asarray(sample_weight, x.dtype)
    pad = -n % n_shards
    if pad:
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        w = np.concatenate([w, np.zeros(pad, x.dtype)])
    sharding = NamedSharding(mesh, P(axis_name))
    return jax.device_put(x, sharding), jax.device_put(w, sharding)


# ------------------------------------------------------------------- host chunks


@dataclasses.dataclass(frozen=True)
class PassInfo:
    """What the progress callback of a chunked fit is given after each pass.

    Attributes:
        iteration: 1-based index of the pass (``n_iter`` so far); 0 for the final
            pass that computes the log-likelihood of the returned parameters.
        log_likelihood: objective computed in the pass (of the best restart
            still running, for a batch of restarts).
        change: ``log_likelihood`` minus that of the previous pass (inf at first).
        n_samples: total sample weight seen in the pass.
        n_chunks: number of chunks read.
        seconds: wall-clock seconds of the pass.
        formulation: what the family computed (``"moments"`` or ``"direct"``
            for the Gaussian family, ``""`` for others).
    """

    iteration: int
    log_likelihood: float
    change: float
    n_samples: float
    n_chunks: int
    seconds: float
    formulation: str = ""


def print_progress(info: PassInfo) -> None:
    """A ready-made callback for chunked fits: one line per pass to stderr."""
    what = "final" if info.iteration == 0 else f"pass {info.iteration:4d}"
    print(
        f"[jaxem] {what}: ll={info.log_likelihood:.8g} change={info.change:.3g} "
        f"({info.n_chunks} chunks, {info.n_samples:.0f} samples, {info.seconds:.2f} s"
        + (f", {info.formulation})" if info.formulation else ")"),
        file=sys.stderr,
        flush=True,
    )


#: Default rows per chunk of an array source: about 4M elements (16 MB of float32).
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def array_chunks(x: Any, chunk_size: int, sample_weight: Any = None) -> Callable[[], Iterator]:
    """A re-iterable chunk source over an array-like on disk or in memory.

    ``x`` is anything with ``shape`` and row slicing that gives NumPy arrays:
    :class:`numpy.memmap`, :func:`numpy.load` with ``mmap_mode="r"``, an
    ``h5py``/``zarr`` dataset. Only one chunk is read into memory at a time.

    Args:
        x: (N, D) array-like.
        chunk_size: rows per chunk.
        sample_weight: optional (N,) array-like of weights, sliced alongside.

    Returns:
        A callable returning a fresh iterator of ``x`` chunks (or ``(x, w)`` pairs).

    Example:
        >>> import numpy as np
        >>> from jaxem.gmm import array_chunks
        >>> source = array_chunks(np.zeros((10, 2)), 4)
        >>> [c.shape[0] for c in source()]
        [4, 4, 2]
    """
    chunk_size = check_static_int("chunk_size", chunk_size, minimum=1)
    n = x.shape[0]

    def chunks():
        for start in range(0, n, chunk_size):
            xb = x[start : start + chunk_size]
            if sample_weight is None:
                yield xb
            else:
                yield xb, sample_weight[start : start + chunk_size]
            _release_pages(x)
            _release_pages(sample_weight)

    return chunks


def _release_pages(a: Any) -> None:
    """Drop the pages of a read memmap from this process's resident set.

    Pages of a file mapping that have been read count as resident memory until
    the kernel reclaims them, so a pass over a memmap would otherwise grow the
    resident set to the file's size. ``MADV_DONTNEED`` on a shared or read-only
    mapping loses nothing (the data stay in the file and the page cache); a
    copy-on-write mapping (``mode="c"``) is left alone.
    """
    mapping = getattr(a, "_mmap", None)
    if mapping is None or getattr(a, "mode", "c") == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        mapping.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        pass


def as_chunk_source(chunks: Any, chunk_size: int | None) -> Callable[[], Iterator]:
    """A callable returning a fresh iterator of chunks, from what a user passes."""
    if callable(chunks):
        return chunks
    if hasattr(chunks, "shape") and hasattr(chunks, "__getitem__") and len(chunks.shape) == 2:
        rows = chunk_size or max(1024, DEFAULT_CHUNK_ELEMENTS // max(chunks.shape[1], 1))
        return array_chunks(chunks, rows)
    if isinstance(chunks, Iterator):
        raise TypeError(
            "chunks must be re-iterable (EM reads the data once per iteration): pass a "
            "sequence of arrays, an array-like with chunk_size, or a callable returning "
            "a fresh iterator; got a one-shot iterator"
        )
    if isinstance(chunks, Iterable):
        return lambda: iter(chunks)
    raise TypeError(
        "chunks must be an (N, D) array-like, a sequence of arrays or a callable "
        f"returning an iterator of arrays; got {type(chunks).__name__}"
    )


def _host_chunk(item: Any, dtype, n_features: int, rows: int | None):
    """One chunk as contiguous NumPy ``(x, w)``, zero-weight padded up to ``rows``."""
    if isinstance(item, tuple):
        xb, wb = item
    elif isinstance(item, list) and len(item) == 2 and np.ndim(item[0]) == 2:
        raise TypeError(
            "a chunk with sample weights is a tuple (x, w); got a list [x, w] (NumPy read "
            "it as rows of another shape)"
        )
    else:
        xb, wb = item, None
    xb = np.array(xb, dtype=dtype, order="C")  # a copy: never a view on a memmap
    if xb.ndim != 2 or (n_features is not None and xb.shape[1] != n_features):
        wanted = "(rows, n_features)" if n_features is None else f"(rows, {n_features})"
        raise ValueError(
            f"every chunk must have shape {wanted} to match the data; got {xb.shape}"
            + (" (reshape 1-D chunks with xb[:, None])" if xb.ndim == 1 else "")
        )
    wb = np.ones(xb.shape[0], dtype) if wb is None else np.array(wb, dtype=dtype, order="C")
    if wb.shape != (xb.shape[0],):
        raise ValueError(f"chunk sample weights must have shape ({xb.shape[0]},); got {wb.shape}")
    if rows is not None and xb.shape[0] < rows:  # pad: one compiled shape for all chunks
        pad = rows - xb.shape[0]
        xb = np.concatenate([xb, np.zeros((pad, xb.shape[1]), dtype)])
        wb = np.concatenate([wb, np.zeros(pad, dtype)])
    return xb, wb


@jax.jit
def _summarize(family, x, w, ref):
    return family.summarize(x, w, ref)


@jax.jit
def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


@jax.jit
def _context(family, summary, ref):
    return family.context(summary, ref)


@functools.partial(jax.jit, static_argnames=("mode",))
def _chunk_sums(family, params, x, w, context, *, mode):
    """``(stats, Σ w log p, Σ w)`` of one chunk for a batch of restarts."""
    featurize = mode == "features"

    def one(p):
        return summed_pass(family, p, x, w, context, featurize=featurize, batch=1, mode=mode)

    stats, ll_sum = jax.vmap(one)(params)
    return stats, ll_sum, jnp.sum(w)


@functools.partial(jax.jit, static_argnames=("mode",))
def _cycle_sums(family, state, params, x, w, context, *, mode):
    """``(stats, Σ w log p, Σ w)`` of one chunk of each restart's conditional
    cycle pass (:meth:`Family.cycle_view` of its state, at its parameters)."""
    featurize = mode == "features"

    def one(s, p):
        view = family.cycle_view(s)
        return summed_pass(view, p, x, w, context, featurize=featurize, batch=1, mode=mode)

    stats, ll_sum = jax.vmap(one)(state, params)
    return stats, ll_sum, jnp.sum(w)


@jax.jit
def _cycle_start(family, params, context):
    state = jax.vmap(lambda p: family.cycle_start(p, context))(params)
    return state, jax.vmap(family.cycle_running)(state)


@jax.jit
def _cycle_update(family, state, stats, params):
    """One pass's update of every restart still searching (the others kept, as
    ``vmap`` of a ``while_loop`` keeps them)."""

    def one(s, st, p):
        return loop.tree_where(family.cycle_running(s), family.cycle_update(s, st, p), s)

    state = jax.vmap(one)(state, stats, params)
    return state, jax.vmap(family.cycle_running)(state)


@jax.jit
def _cycle_finish(family, state, params, context, keep):
    """The cycle's parameters where ``keep`` (restarts past their first M-step)."""
    return jax.vmap(lambda k, s, p: loop.tree_where(k, family.cycle_finish(s, p, context), p))(
        keep, state, params
    )


@functools.partial(jax.jit, static_argnames=("max_iter", "accelerate"))
def _begin(starts, *, max_iter, accelerate):
    dtype = jax.tree.leaves(starts.stats)[0].dtype
    if accelerate is not None:
        return jax.vmap(
            lambda s: acceleration.begin(
                s.params, s.stats, s.have_stats, max_iter, dtype, accelerate
            )
        )(starts)
    return jax.vmap(lambda s: loop.begin(s.params, s.stats, s.have_stats, max_iter, dtype))(starts)


@functools.partial(jax.jit, static_argnames=("accelerate",))
def _next_params(family, carry, context, *, accelerate=None):
    def maximize(stats, params):
        return family.maximize(stats, params, context)

    if accelerate is not None:
        # the next point of each SQUAREM cycle, and the carry that remembers it
        coordinates = acceleration.family_coordinates(family, accelerate)
        return jax.vmap(lambda c: acceleration.next_point(c, maximize, *coordinates))(carry)
    return jax.vmap(lambda c: loop.next_params(c, maximize))(carry), carry


@jax.jit
def _all_fast(family, params, context):
    return jnp.all(jax.vmap(lambda p: family.fast(p, context))(params))


@functools.partial(jax.jit, static_argnames=("criterion", "max_iter", "accelerate"))
def _record(carry, family, params, sums, tol, *, criterion, max_iter, accelerate):
    stats, ll_sum, total = sums

    # the "relative" rule is mclust's with the total sample weight, as in memory
    n = total if criterion == "relative" else None

    def one(c, p, s, ll):
        value = objective(family, p, s, ll, total, criterion)
        if accelerate is None:
            new = loop.record(
                c, p, s, value, tol=tol, max_iter=max_iter, criterion=criterion, total=n
            )
        else:
            new = acceleration.record(
                c, p, s, value, tol=tol, max_iter=max_iter, criterion=criterion,
                config=accelerate, total=n,
            )  # fmt: skip
        return loop.keep_finished(c, new), value

    return jax.vmap(one)(carry, params, stats, ll_sum)


@dataclasses.dataclass(frozen=True)
class HostChunks:
    """Data read chunk by chunk on the host, once per EM iteration (out of core).

    Attributes:
        source: a callable returning a fresh iterator of chunks ((rows, D)
            arrays or ``(x, sample_weight)`` pairs).
        dtype: the computing dtype (chunks are converted on the host).
        init_size: rows (a uniform random sample over one pass, reservoir
            sampling) the restarts are initialised on.
        prefetch: chunks in flight on the device while the host reads the next.
        callback: called with a :class:`PassInfo` after every pass.
    """

    source: Callable[[], Iterator]
    dtype: Any
    init_size: int = 20_000
    prefetch: int = 2
    callback: Callable[[PassInfo], Any] | None = None

    def _chunks(self):
        rows = n_features = None
        for item in self.source():
            xb, wb = _host_chunk(item, self.dtype, n_features, rows)
            n_features = xb.shape[1]
            if xb.shape[0] == 0:  # an empty chunk adds nothing
                continue
            rows = rows or xb.shape[0]
            yield xb, wb

    def context(self, family: Family) -> PyTree:
        """The data's summary, from a first pass that also checks every chunk
        as the family checks data in memory (values and sample weights)."""
        acc, ref, total = None, None, 0.0
        for xb, wb in self._chunks():
            family.check_data(xb, name="a chunk")
            if not np.all(np.isfinite(wb)) or np.any(wb < 0):
                raise ValueError("chunk sample weights must be finite and non-negative")
            total += float(np.sum(wb, dtype=np.float64))
            if ref is None:
                ref = xb[0]
            summary = _summarize(family, xb, wb, ref)
            acc = summary if acc is None else _add(acc, summary)
        if ref is None:
            raise ValueError("the chunk source yielded no chunks")
        if total <= 0:
            raise ValueError("the chunks' sample weights are all zero")
        return _context(family, acc, ref)

    def init_data(self, key: jax.Array):
        """A uniform random sample of at most ``init_size`` rows (weights kept)."""
        seed = np.asarray(jax.random.key_data(key)).ravel()
        rng = np.random.default_rng(seed.astype(np.uint64))
        kept_x, kept_w, keys = None, None, None
        for xb, wb in self._chunks():
            live = wb > 0
            xb, wb = xb[live], wb[live]
            u = rng.random(xb.shape[0])
            if kept_x is None:
                kept_x, kept_w, keys = xb, wb, u
            else:
                kept_x = np.concatenate([kept_x, xb])
                kept_w = np.concatenate([kept_w, wb])
                keys = np.concatenate([keys, u])
            if keys.shape[0] > self.init_size:
                top = np.argsort(keys)[: self.init_size]
                top.sort()
                kept_x, kept_w, keys = kept_x[top], kept_w[top], keys[top]
        if kept_x is None:
            raise ValueError("the chunk source yielded no chunks")
        return jnp.asarray(kept_x), jnp.asarray(kept_w)

    @staticmethod
    def compile(fn: Callable) -> Callable:
        return jax.jit(full_precision(fn), static_argnames=("n_components", "methods"))

    def prepare(self, family: Family, context: PyTree, n_components: int | None = None) -> None:
        return None

    def _pass(self, family, params, context, cycle_state=None):
        """The summed pass of every restart over all chunks; with
        ``cycle_state``, the family's conditional-cycle pass instead."""
        mode = "features" if family.has_features else "raw"
        acc, in_flight, n_chunks = None, [], 0
        for xb, wb in self._chunks():
            if cycle_state is None:
                sums = _chunk_sums(family, params, xb, wb, context, mode=mode)
            else:
                sums = _cycle_sums(family, cycle_state, params, xb, wb, context, mode=mode)
            acc = sums if acc is None else _add(acc, sums)
            n_chunks += 1
            in_flight.append(acc)
            if len(in_flight) > self.prefetch:  # bound the chunks held in device memory
                jax.block_until_ready(in_flight.pop(0))
        if acc is None:
            raise ValueError("the chunk source yielded no chunks")
        return acc, n_chunks

    def _cycle(self, family, params, context, keep):
        """The family's conditional cycle, a pass over the chunks per step."""
        state, running = _cycle_start(family, params, context)
        while bool(jnp.any(running)):
            sums, _ = self._pass(family, params, context, cycle_state=state)
            state, running = _cycle_update(family, state, sums[0], params)
        return _cycle_finish(family, state, params, context, keep)

    def run(self, family, prepared, context, starts, *, tol, max_iter, criterion, accelerate=None):
        if family.has_cycle and accelerate is not None:
            raise ValueError(
                "accelerated EM of a family with a conditional cycle (a Student-t "
                "mixture's ECME) needs the data in memory or on devices; from chunks "
                "use accelerate=None, or the family's plain EM (StudentT(dof_method='em'))"
            )
        if not isinstance(starts, Starts):
            mode = "features" if family.has_features else "raw"
            xb, wb = next(iter(self._chunks()))
            shapes = jax.eval_shape(
                functools.partial(_chunk_sums, mode=mode), family, starts, xb, wb, context
            )
            n = jax.tree.leaves(starts)[0].shape[0]
            stats = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes[0])
            starts = Starts(starts, stats, jnp.zeros(n, bool))
        tol = jnp.asarray(tol, jnp.dtype(self.dtype))
        carry = _begin(starts, max_iter=max_iter, accelerate=accelerate)
        previous = -np.inf
        iteration = 0
        while not bool(jnp.all(carry.finished)):
            started = time.perf_counter()
            params, carry = _next_params(family, carry, context, accelerate=accelerate)
            if family.has_cycle:
                params = self._cycle(family, params, context, carry.have_stats)
            sums, n_chunks = self._pass(family, params, context)
            running = ~np.asarray(carry.state.done | (carry.state.n_iter >= max_iter))
            carry, values = _record(
                carry, family, params, sums, tol, criterion=criterion, max_iter=max_iter,
                accelerate=accelerate,
            )  # fmt: skip
            if self.callback is not None:
                values = np.asarray(values)
                shown = float(np.max(values[running])) if running.any() else float(values.max())
                iteration = iteration + 1 if running.any() else 0
                self.callback(
                    PassInfo(
                        iteration,
                        shown,
                        shown - previous,
                        float(sums[2]),
                        n_chunks,
                        time.perf_counter() - started,
                        family.pass_name(bool(_all_fast(family, params, context))),
                    )
                )
                previous = shown
        return jax.vmap(acceleration.end if accelerate else loop.end)(carry)
