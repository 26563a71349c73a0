"""Moment features in spatially tight chunks, each centred at its own mean.

The moment formulation (:mod:`jaxem._src.gmm.moments`) loses about
``log10 ρ`` digits in float32, ``ρ`` the squared Mahalanobis distance between
the centre of the features and the components that own the rows. About one
global centre, ``ρ`` grows with the separation of the clusters (tens of σ
apart: ``ρ`` in the thousands). But the centre may differ from chunk to chunk:
the chunk's logits use ``W(c_chunk)`` and its statistics are moved to the
components' means chunk by chunk (:func:`jaxem._src.gmm.passes.feature_chunk`),
both exact algebra. So the rows are ordered once per fit by ``G`` tight
groups (:func:`group_labels`: the nearest of farthest-first seeds), every
group is padded with rows of weight zero to
a whole number of chunks of ``B`` rows, and each chunk is centred at the mean
of its rows: a chunk's rows then lie within one group, ``ρ`` is set by how
tight the groups are, not by how far apart they lie, and the pass costs about
the moment pass over ``N + G·B/2`` rows. Chunks made only of padding (the
last ones: the groups fill the first chunks) are skipped. Where the features
of all rows are too large to keep (:data:`jaxem._src.sources.FEATURE_CACHE_BYTES`),
the layout keeps the centred rows (:func:`arrange`, :class:`RowChunk`) and the
pass builds each chunk's features as it reaches it.

A loop over the chunks costs more than its two products (a chunk's features
are copied out of the layout for its products, and each chunk runs some thirty
small kernels): one pass of 100 000 × 16, K = 16, full covariances, float32,
about 15 ms against 6.5 ms for the same products over the features of all rows
about the data's mean. So a layout of features is passed all at once where the
pass's temporaries are small enough
(:func:`jaxem._src.gmm.passes.layout_pass`: one product over all rows for the
quadratic part, each chunk's linear part batched over the chunks; in finer
chunks, :data:`FLAT_CHUNKS_PER_GROUP`), and an ``"auto"`` fit also keeps the
features of all rows about the data's mean where both fit
(:data:`jaxem._src.sources.FEATURE_CACHE_BYTES`) and takes one pass over them
wherever the whole-data check holds, as it does on overlapping clusters, and
the chunks where it fails
(:meth:`jaxem._src.gmm.family.GaussianFamily.whole_pass`).

Measured on 100k × 16, K = 16, full covariances, float32 (the benchmark's
separation sweep, experiments/benchmark.py): after 20 EM iterations the
covariances agree with float64's to about 1e-7 relative when the clusters are
70σ apart (about one global centre: 4e-6, and ``eps·ρ ≈ 9e-3`` made the
fits fall back to the direct formulation).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxem._src.chunking import chunk_rows, chunked_map, unaliased
from jaxem._src.gmm import moments
from jaxem._src.kmeans import lloyd, nearest, sq_distances_t

__all__ = [
    "FLAT_CHUNKS_PER_GROUP",
    "LAYOUT_MIN_ROWS",
    "Arranged",
    "Layout",
    "RowChunk",
    "arrange",
    "build",
    "group_labels",
    "layout_shape",
]

#: Fewest rows for which an in-memory fit orders its features into tight
#: chunks; smaller data keeps one global centre (a smaller compiled program).
LAYOUT_MIN_ROWS = 8192

#: Chunks per group on average: each group is padded by about half a chunk, so
#: the padding is about ``1 / (2 · CHUNKS_PER_GROUP)`` of the rows. Fewer,
#: larger chunks cost less per pass than the padding they add: each chunk is a
#: sequence of small kernels (slice, two products, softmax, check) whose fixed
#: cost shows at a few hundred rows. One pass, 2 CPU cores, float32, 4 against
#: 8 (medians of 11-15 interleaved calls): full covariances 100k × 16, K = 16
#: 23.4 → 20.0 ms (three restarts at once 64.9 → 56.4), 200k × 8, K = 8
#: 14.4 → 12.8 ms, tied 100k × 16 15.7 → 14.2 ms, diagonal and spherical within
#: 3%, 100k × 4, K = 4 3.65 → 3.90 ms (the one loss); 2 was faster still at
#: 100k × 16 (18.0 ms) but slower for diagonal covariances and 400k rows.
CHUNKS_PER_GROUP = 4

#: Fewest rows per chunk (smaller chunks make the pass slower per row).
MIN_CHUNK_ROWS = 256

#: Chunks per group, on average, of a layout whose chunks are passed all at
#: once (:func:`jaxem._src.gmm.passes.layout_pass`): no loop, so no fixed cost
#: per chunk, and smaller chunks pad less (the groups are the same as for
#: :data:`CHUNKS_PER_GROUP`, only cut finer). A fit of 100 000 × 16, K = 16,
#: full covariances, float32, per EM iteration (from one start, 2 CPU cores):
#: clusters 3σ apart 12.6 ms with 4, 11.4 with 12; 10σ apart 11.6 both.
FLAT_CHUNKS_PER_GROUP = 12

#: Fewest rows per chunk of a layout passed all at once.
MIN_FLAT_CHUNK_ROWS = 128


class Layout(NamedTuple):
    """Moment features of the rows in ``C`` chunks of ``B`` rows (padding has weight 0)."""

    features: jax.Array  # (C, B, F) moment features of x − centers[c]
    weights: jax.Array  # (C, B) sample weights, 0 for padding
    centers: jax.Array  # (C, D) the centre of each chunk
    rows: jax.Array  # (C, B) int32: the row of x in each slot, N in a slot of padding


def layout_shape(
    n_rows: int, n_components: int, chunks_per_group: int | None = None
) -> tuple[int, int, int] | None:
    """``(G, C, B)``: groups, chunks and rows per chunk of the layout of
    ``n_rows`` rows for a mixture of ``n_components`` (static), or None when
    the data is too small for one.

    ``G = max(16, K)`` groups (fewer where the chunks would be smaller than
    :data:`MIN_CHUNK_ROWS` rows), about :data:`CHUNKS_PER_GROUP` chunks per
    group, or ``chunks_per_group`` (chunks of at least
    :data:`MIN_FLAT_CHUNK_ROWS` rows: :data:`FLAT_CHUNKS_PER_GROUP`); ``C``
    covers every group padded to whole chunks.
    """
    if n_rows < LAYOUT_MIN_ROWS:
        return None
    n_groups = max(1, min(max(16, n_components), n_rows // (CHUNKS_PER_GROUP * MIN_CHUNK_ROWS)))
    if chunks_per_group is None:
        rows = n_rows // (CHUNKS_PER_GROUP * n_groups)
    else:
        rows = max(MIN_FLAT_CHUNK_ROWS, n_rows // (chunks_per_group * n_groups))
    rows = unaliased(rows // 8 * 8)
    return n_groups, -(-(n_rows + n_groups * (rows - 1)) // rows), rows


def _first_argmax(v: jax.Array) -> jax.Array:
    """``argmax`` of a vector without NaN (the first index of its maximum) as
    two plain reductions: XLA:CPU's (value, index) reduction of ``argmax`` runs
    element by element (100 000 rows: 0.45 ms, against 0.06 ms)."""
    index = jnp.arange(v.shape[0], dtype=jnp.int32)
    return jnp.min(jnp.where(v == jnp.max(v), index, v.shape[0])).astype(jnp.int32)


#: Lloyd iterations that refine the farthest-first groups (:func:`group_labels`).
#: Farthest-first seeds are extreme rows: where clusters overlap their cells
#: cut across the clusters, and a chunk's centre lies between its rows'
#: components, far from each in their thin directions. Measured on the first
#: 200 000 rows of experiments/end_to_end.py's 1M × 32 data (K = 32, s = 4,
#: condition numbers up to 10⁶), after one EM iteration: the chunks' median
#: share of their main component 0.79 → 0.99 / 0.999 after 2 / 5 iterations,
#: the squared Mahalanobis distance of a chunk's centre from it 159 → 0.9 /
#: 0.2, and the chunks that pass :func:`jaxem._src.gmm.moments.chunk_is_accurate`
#: 17 → 91 / 120 of about 146.
LLOYD_ITERATIONS = 10

#: Rows (about) on which :func:`group_labels` runs its Lloyd iterations.
LLOYD_SAMPLE = 16384


def group_labels(x: jax.Array, w: jax.Array, n_groups: int) -> jax.Array:
    """(N,) labels of ``n_groups`` tight groups: the nearest of farthest-first
    seeds among the rows of positive weight (Gonzalez 1985: every row lies
    within twice the smallest possible covering radius of a seed, so clusters
    farther apart than their diameters each get a seed of their own before any
    gets two), refined by at most :data:`LLOYD_ITERATIONS` iterations of
    :func:`jaxem._src.kmeans.lloyd` on every ``N / S``-th row
    (:data:`LLOYD_SAMPLE`), then each row in the group of its nearest mean.
    Deterministic and a small program."""
    xt = x.T  # (D, N): distances feature by feature along the rows
    valid = w > 0

    def sq_distance(j):  # differences: no cancellation far from the origin
        return sq_distances_t(xt, x[j][None], None)[0]

    def seed(i, carry):
        index, d2 = carry
        j = _first_argmax(jnp.where(valid, d2, -1))
        return index.at[i].set(j), jnp.minimum(d2, sq_distance(j))

    # the first seed is row 0 (a seed only: a row of weight zero as well)
    start = (jnp.zeros(n_groups, jnp.int32), sq_distance(0))
    index, _ = jax.lax.fori_loop(1, n_groups, seed, start)
    # Lloyd on every ``stride``-th row: the means of the groups, then every
    # row's nearest mean, chunk by chunk (no (N, G) distances at once)
    stride = max(1, x.shape[0] // LLOYD_SAMPLE)
    ws = w[::stride]
    ws = jnp.where(jnp.sum(ws) > 0, ws, 1)  # a sample of weight 0: its rows alike
    means = lloyd(x[::stride], x[index], tol=0.0, max_iter=LLOYD_ITERATIONS, sample_weight=ws)
    means = means.centers
    rows = chunk_rows(x.shape[0], n_groups + x.shape[1])
    return chunked_map(lambda xb: nearest(xb, means), x, rows)


#: Rows per block of :func:`_ranks`' count (its one-hot block is (RANK_BLOCK, G)).
RANK_BLOCK = 4096


def _ranks(labels: jax.Array, n_groups: int) -> tuple[jax.Array, jax.Array]:
    """``(counts (G,), rank (N,))``: the rows of each label, and each row's rank
    among the earlier rows of its label: a counting sort, block by block (one-hot
    running counts), in place of ``argsort`` (XLA:CPU's comparison sort of 100k
    labels took 17 ms, this 7; 1M: 203 against 63)."""
    n = labels.shape[0]
    n_blocks = -(-n // RANK_BLOCK)
    blocks = jnp.pad(labels, (0, n_blocks * RANK_BLOCK - n), constant_values=n_groups)
    groups = jnp.arange(n_groups, dtype=labels.dtype)

    def block(before, block_labels):
        onehot = (block_labels[:, None] == groups).astype(jnp.int32)
        running = jnp.cumsum(onehot, axis=0)  # this block's rows so far, by label
        rank = jnp.sum(onehot * (running - 1 + before), axis=1)
        return before + running[-1], rank

    counts, rank = jax.lax.scan(
        block, jnp.zeros(n_groups, jnp.int32), blocks.reshape(n_blocks, RANK_BLOCK)
    )
    return counts, rank.reshape(-1)[:n]


class Arranged(NamedTuple):
    """The rows of a layout, centred, without their moment features."""

    centred: jax.Array  # (C, B, D) rows x − centers[c]
    weights: jax.Array  # (C, B) sample weights, 0 for padding
    centers: jax.Array  # (C, D) the centre of each chunk
    rows: jax.Array  # (C, B) int32: the row of x in each slot, N in a slot of padding


class RowChunk(NamedTuple):
    """A chunk of centred rows whose moment features the pass builds itself
    (:meth:`jaxem._src.gmm.family.GaussianFamily.layout` with ``features=False``)."""

    centred: jax.Array  # (B, D) or (C, B, D)
    center: jax.Array  # (D,) or (C, D)


def arrange(x: jax.Array, w: jax.Array, shape: tuple[int, int, int]) -> Arranged:
    """The rows ``x`` (N, D) with weights ``w`` (N,) in the chunks of a layout.

    ``shape`` is :func:`layout_shape`'s. Rows are grouped by
    :func:`group_labels`, sorted by group, and each group padded to a multiple
    of ``B`` rows; the chunk centres are the weighted means of their rows (the
    first row of the data for a chunk of padding only); a slot of padding holds
    a copy of the first row with weight zero. Traceable.
    """
    n, d = x.shape
    n_groups, n_chunks, rows = shape
    labels = group_labels(x, w, n_groups)
    counts, rank = _ranks(labels, n_groups)
    padded = (counts + rows - 1) // rows * rows
    slot = (jnp.cumsum(padded) - padded)[labels] + rank  # each row's place: a stable sort
    total = n_chunks * rows
    index = jnp.zeros(total, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32))
    rows_of_slots = jnp.full(total, n, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32))
    weights = jnp.zeros(total, w.dtype).at[slot].set(w).reshape(n_chunks, rows)
    xs = x[index].reshape(n_chunks, rows, d)
    # centres: means of the rows (as differences from the first row: no
    # cancellation far from the origin)
    ref = x[0]
    count = jnp.sum(weights, axis=1)
    mean = jnp.einsum("cb,cbd->cd", weights, xs - ref) / jnp.where(count > 0, count, 1)[:, None]
    centers = ref + mean
    centred = xs - centers[:, None, :]
    return Arranged(centred, weights, centers, rows_of_slots.reshape(n_chunks, rows))


def build(x: jax.Array, w: jax.Array, covariance_type: str, shape: tuple[int, int, int]) -> Layout:
    """The :class:`Layout` of rows ``x`` (N, D) with weights ``w`` (N,): the
    moment features of :func:`arrange`'s centred chunks. Traceable."""
    arranged = arrange(x, w, shape)
    n_chunks, rows, d = arranged.centred.shape
    # one call over all chunks' rows, not a vmap over chunks: under vmap the
    # full covariance's gathered products came out feature-major and were
    # transposed and copied (100 000 × 16: 2 × 22 ms; the whole build 82 → 42 ms)
    centred = arranged.centred.reshape(n_chunks * rows, d)
    features = moments.features(centred, covariance_type).reshape(n_chunks, rows, -1)
    return Layout(features, arranged.weights, arranged.centers, arranged.rows)
