"""Model-based hierarchical agglomeration, in JAX.

Agglomerative clustering that starts from singletons and merges, at every step,
the pair of clusters whose merge lowers the classification log-likelihood of a
Gaussian model the least (Banfield and Raftery 1993; Fraley 1998, *Algorithms
for model-based Gaussian hierarchical clustering*), for two of mclust's models:

* :func:`ward_tree`: equal spherical covariances (mclust's ``EII``), whose cost
  is Ward's ``Δ(i, j) = n_i n_j / (n_i + n_j) · ‖c_i − c_j‖²``;
* :func:`vvv_tree`: unconstrained covariances (mclust's ``VVV``, its default
  start for EM), with mclust's regularised criterion (see its docstring).

A tree does not depend on the number of clusters: it is built once (``m − 1``
merges, ``O(m²)`` memory; each merge recomputes the costs of one cluster
against all the others, and a cached nearest neighbour per cluster avoids
rescanning the cost matrix), so use it on a subset of a few hundred to a few
thousand points, as mclust does; :func:`cut` gives the partition into any ``k``
clusters, ``k`` traced. Equal costs merge in mclust's order (see
:func:`_agglomerate`): on data with many equal distances (Old Faithful's waiting
times are whole minutes) which tied pair merges first changes the tree.

Rows of weight zero are absent: they never merge with anything (the tree's
first ``m − 1 − z`` merges, z the number of such rows, are those of the other
rows alone, in the same order), and :func:`cut` given the weights labels them
−1. Padding the data with zero-weight rows therefore leaves the partition of
the other rows unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["cut", "vvv_tree", "ward_tree"]

# Stale nearest neighbours recomputed per iteration of a step's inner loop (one
# row of the cost matrix each, batched). A VVV merge leaves about 12 stale on
# average on Old Faithful (up to 59), a Ward merge about 3; with one per iteration
# the loop's fixed cost was at least a third of a VVV tree's time. Measured on 2 CPU cores
# (float32, medians of 50-100 runs): VVV on Old Faithful 19 -> 13 ms, on 256 rows
# of 5 000 x 8 17-25 -> 14-15 ms; Ward on those 256 rows 3.8 -> 2.8 ms.
STALE_PER_ITERATION = 4


def _agglomerate(
    costs: jax.Array,
    stats: Any,
    merge: Callable[[Any, jax.Array, jax.Array], Any],
    row_costs: Callable[[Any, jax.Array], jax.Array],
    present: jax.Array,
) -> jax.Array:
    """Greedy agglomeration in mclust's order: the (m − 1, 2) merges ``(i, j)``, ``i < j``.

    The order among equal costs is mclust's (its Fortran ``hc*`` routines): the
    live clusters sit in slots ``0..g−1`` (at first the present rows in order);
    of the pairs of least cost, the one with the largest larger slot, then the
    largest smaller slot, merges (mclust scans the pairs by the larger slot,
    then the smaller, and keeps the last minimum); the merged cluster keeps the
    smaller slot and the cluster in slot ``g − 1`` moves into the freed one.
    Clusters are named by their first row (the merged one by the smaller name).

    The nearest neighbour of every cluster is cached under that order: among
    the clusters of least cost, the one in the largest slot (for a fixed
    cluster r the larger slot of the pair, then the smaller, is largest exactly
    when the partner's slot is). A step costs one ``row_costs`` plus ``O(m)`` per
    cluster whose cached neighbour was one of the pair or the moved cluster
    (recomputed :data:`STALE_PER_ITERATION` at a time).

    Absent rows (``present`` False) have no slot and infinite costs, so they
    never merge; the loop stops when one present cluster is left (a tree of
    rows padded with absent ones costs what the present rows cost), and the
    merges after that (one per absent row) are placeholders ``(0, 0)`` that
    :func:`cut` never applies.

    Args:
        costs: (m, m) symmetric costs of merging each pair of singletons, ``inf``
            on the diagonal.
        stats: pytree of the clusters' statistics (what ``merge`` and ``row_costs`` read).
        merge: ``(stats, i, j) -> stats`` with cluster j merged into cluster i.
        row_costs: ``(stats, i) -> (m,)`` costs of merging cluster i with each
            cluster (entries of dead clusters and of i itself are ignored).
        present: (m,) bool, the rows that take part (positive weight).
    """
    m = costs.shape[0]
    rows = jnp.arange(m)
    inf = jnp.asarray(jnp.inf, costs.dtype)
    costs = jnp.where(present[:, None] & present[None, :], costs, inf)
    slot = jnp.where(present, jnp.cumsum(present) - 1, -1).astype(jnp.int32)  # −1: none
    occupant = jnp.zeros(m, rows.dtype).at[jnp.where(present, slot, m)].set(rows, mode="drop")
    n_present = jnp.sum(present)

    def nearest(row, slot):
        """The least cost of a row and, among its partners of that cost, the one in
        the largest slot."""
        least = jnp.min(row)
        return least, jnp.argmax(jnp.where(row == least, slot, -1))

    nn_cost, nn_idx = jax.vmap(nearest, in_axes=(0, None))(costs, slot)

    def step(s, state):
        costs, nn_cost, nn_idx, slot, occupant, stats, merges = state
        # Of the pairs of least cost, the largest larger slot is that of the cluster
        # of least cost in the largest slot, and the largest smaller slot is then
        # its cached neighbour's.
        least = jnp.min(nn_cost)
        a = jnp.argmax(jnp.where(nn_cost == least, slot, -1))
        b = nn_idx[a]
        i, j = jnp.minimum(a, b), jnp.maximum(a, b)
        # slots: the merged cluster keeps the smaller, the last one fills the other
        last = occupant[jnp.maximum(n_present - s - 1, 0)]
        moved = (last != a) & (last != b)
        low_slot, high_slot = jnp.minimum(slot[a], slot[b]), jnp.maximum(slot[a], slot[b])
        slot = slot.at[last].set(jnp.where(moved, high_slot, slot[last]))
        slot = slot.at[j].set(-1).at[i].set(low_slot)
        occupant = occupant.at[high_slot].set(last).at[low_slot].set(i)
        alive = slot >= 0
        stats = merge(stats, i, j)
        row = jnp.where(alive & (rows != i), row_costs(stats, i), inf)
        costs = costs.at[i, :].set(row).at[:, i].set(row)
        costs = costs.at[j, :].set(inf).at[:, j].set(inf)
        # neighbours to recompute: those that were one of the pair or the moved cluster
        stale = alive & ((nn_idx == i) | (nn_idx == j) | (moved & (nn_idx == last)))
        closer = alive & ((row < nn_cost) | ((row == nn_cost) & (slot[i] > slot[nn_idx])))
        nn_idx = jnp.where(closer, i, nn_idx)
        nn_cost = jnp.where(closer, row, nn_cost)
        least, partner = nearest(row, slot)
        nn_cost = nn_cost.at[j].set(inf).at[i].set(least)
        nn_idx = nn_idx.at[i].set(partner)

        def more(state):
            return jnp.any(state[0])

        def one(state):
            stale, nn_cost, nn_idx = state
            r = jnp.nonzero(stale, size=STALE_PER_ITERATION, fill_value=m)[0]
            # their rows as dynamic slices (clamped: the fill m reads row m − 1,
            # dropped below), not one gather: a Ward tree of 1024 rows of 16
            # features 58-65 -> 51 ms
            picked = jnp.stack([jax.lax.dynamic_index_in_dim(costs, k, keepdims=False) for k in r])
            least, partner = jax.vmap(nearest, in_axes=(0, None))(picked, slot)
            return (
                stale.at[r].set(False, mode="drop"),
                nn_cost.at[r].set(least, mode="drop"),
                nn_idx.at[r].set(partner, mode="drop"),
            )

        stale = stale.at[i].set(False)
        _, nn_cost, nn_idx = jax.lax.while_loop(more, one, (stale, nn_cost, nn_idx))
        merges = merges.at[s].set(jnp.stack([i, j]).astype(jnp.int32))
        return costs, nn_cost, nn_idx, slot, occupant, stats, merges

    merges = jnp.zeros((max(m - 1, 0), 2), jnp.int32)
    if m < 2:  # one row: no merge (the loop's body would index an empty array)
        return merges
    state = (costs, nn_cost, nn_idx, slot, occupant, stats, merges)
    return jax.lax.fori_loop(0, jnp.maximum(n_present - 1, 0), step, state)[-1]


def _as_float(x: ArrayLike) -> jax.Array:
    """``x`` as an array of JAX's default float type if it is not floating
    (integer data, such as whole-minute waiting times: the trees' carries and
    the cluster sizes are floating)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


def _sizes(x: jax.Array, sample_weight: ArrayLike | None) -> jax.Array:
    m = x.shape[0]
    return jnp.ones(m, x.dtype) if sample_weight is None else jnp.asarray(sample_weight, x.dtype)


def _pair_factor(size: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(n_i + n, n_i n / (n_i + n))`` for every cluster size n_i (0 where both are 0)."""
    total = size + n
    return total, jnp.where(total > 0, size * n / jnp.where(total > 0, total, 1), 0)


def _ward_costs(centroid: jax.Array, size: jax.Array, c: jax.Array, n: jax.Array) -> jax.Array:
    """(m,) Ward cost of merging the cluster ``(c, n)`` with each cluster."""
    return _pair_factor(size, n)[1] * jnp.sum((centroid - c) ** 2, axis=-1)


def _merge_means(centroid, size, pending, i, j):
    """Cluster j merged into cluster i: ``(centroid, size, pending)``.

    The merged cluster's centroid and size are not written into the arrays here
    but returned as ``pending = (i, c, n)`` and written at the start of the next
    merge (``pending`` starts as a write of row 0's own values). Written in the
    merge that computes them from two rows of the same arrays, the in-place
    update must not overwrite what it reads, and XLA:CPU copied the whole
    arrays twice per step (and the VVV tree's (m, D, D) scatter matrices, the
    same way: a VVV tree of 1024 rows of 16 features 341 -> 206 ms without
    those copies, a Ward tree 51 -> 47 ms; the same trees). Until
    the write, a row's costs read cluster i from ``pending``; the stale row i
    is read only for the pair (i, i), whose cost is ignored.
    """
    last, c_last, n_last = pending
    centroid, size = centroid.at[last].set(c_last), size.at[last].set(n_last)
    n = size[i] + size[j]
    c = jnp.where(
        n > 0, (size[i] * centroid[i] + size[j] * centroid[j]) / jnp.where(n > 0, n, 1), centroid[i]
    )
    return centroid, size, (i, c, n)


def _no_merge(centroid, size):
    """The ``pending`` write of :func:`_merge_means` before the first merge."""
    return jnp.zeros((), int), centroid[0], size[0]


@jax.jit
def ward_tree(x: ArrayLike, sample_weight: ArrayLike | None = None) -> jax.Array:
    """The ``m − 1`` merges of Ward agglomeration of the rows of ``x``.

    Equal costs merge in mclust's order (see :func:`_agglomerate`), but the
    costs are not computed in the arithmetic of mclust's ``hcEII``, so on data
    with many equal distances the tree can differ from ``hc(X, "EII")`` for
    large k (Old Faithful: the same partitions for k ≤ 9, not for 23 of the 272
    values of k).

    Args:
        x: (m, D) points.
        sample_weight: optional (m,) non-negative initial cluster sizes (a point
            of weight w counts as w coincident points).

    Returns:
        (m − 1, 2) int32 merges ``(i, j)``, ``i < j``, in order: cluster ``j`` is
        absorbed into cluster ``i`` (clusters are named by their first row).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem.hierarchical import cut, ward_tree
        >>> x = jnp.array([[0.0], [0.1], [5.0], [5.2], [9.0]])
        >>> cut(ward_tree(x), 3).tolist()
        [0, 0, 1, 1, 2]
    """
    x = _as_float(x)
    size = _sizes(x, sample_weight)
    costs = jax.vmap(lambda c, n: _ward_costs(x, size, c, n))(x, size)
    costs = jnp.where(jnp.eye(x.shape[0], dtype=bool), jnp.inf, costs)

    def merge(stats, i, j):
        return _merge_means(*stats, i, j)

    def row_costs(stats, i):
        centroid, size, (_, c, n) = stats
        return _ward_costs(centroid, size, c, n)

    return _agglomerate(costs, (x, size, _no_merge(x, size)), merge, row_costs, size > 0)


@jax.jit
def vvv_tree(
    x: ArrayLike,
    sample_weight: ArrayLike | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> jax.Array:
    """The ``m − 1`` merges of mclust's VVV agglomeration of the rows of ``x``.

    The classification log-likelihood of a mixture with one unconstrained
    covariance per cluster is ``−½ Σ_k n_k log det(W_k / n_k)`` up to constants
    (W_k: the cluster's scatter matrix, the sum of squared deviations from its
    mean), which is −∞ for every cluster of at most D points. mclust's
    ``hcVVV`` (Fraley 1998) merges instead the pair that increases
    ``Σ_k T(n_k, W_k)`` the least, with the regularised term

        T(n, W) = n log(β (tr W + α) / n)                   if n ≤ D,
        T(n, W) = n log(det(W / n) + β (tr W + α) / n)      otherwise,

    and ``α ← α · tr(W_all) / (m D)`` (mclust's ``alpha * traceW(x / sqrt(m D))``;
    at least machine epsilon). The defaults ``alpha = beta = 1`` are mclust's.
    mclust runs it on its ``"SVD"`` transform of the data (see
    :func:`jaxem._src.init.svd_transform`).

    Equal costs merge in mclust's order (see :func:`_agglomerate`), and the
    cost of two single points is computed with mclust's arithmetic,
    ``2 log(β (‖(x_i − x_j)/√2‖² + α) / 2) − 2 log(αβ)`` summed over the
    features in order, so that the same pairs tie. In float64 the tree of the
    SVD-transformed data is then mclust 6.0.0's ``hc(X, "VVV")`` for every
    number of clusters on Old Faithful, iris and wine (every k = 1…m; without
    mclust's order the partitions differed from K = 2 on Old Faithful). In
    float32 other costs can tie or swap places: on these data sets the
    partitions for k ≤ 9 are still mclust's, but iris's differ for some k > 90.

    Args:
        x: (m, D) points.
        sample_weight: optional (m,) non-negative initial cluster sizes (a point
            of weight w counts as w coincident points).
        alpha, beta: mclust's regularisation (positive).

    Returns:
        (m − 1, 2) int32 merges, as :func:`ward_tree`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem.hierarchical import cut, vvv_tree
        >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.2, 5.1]])
        >>> cut(vvv_tree(x), 2).tolist()
        [0, 0, 0, 1, 1]
    """
    x = _as_float(x)
    m, d = x.shape
    size = _sizes(x, sample_weight)
    total = jnp.sum(size)
    mean = jnp.sum(size[:, None] * x, axis=0) / total
    spread = jnp.sum(size[:, None] * (x - mean) ** 2) / (total * d)
    alpha = jnp.maximum(alpha * spread, jnp.finfo(x.dtype).eps)

    def term(n, logdet, trace):
        """T(n, W) from n, log det W (−inf when singular) and tr W; 0 when n = 0."""
        safe = jnp.where(n > 0, n, 1)
        reg = jnp.log(beta * (trace + alpha) / safe)
        det = jnp.where(n > d, logdet - d * jnp.log(safe), -jnp.inf)
        return jnp.where(n > 0, n * jnp.logaddexp(det, reg), 0)

    # Two points: W = n_i n_j / (n_i + n_j) · δδᵀ has rank one (det 0 unless D = 1).
    n, factor = jax.vmap(lambda w: _pair_factor(size, w))(size)
    delta = x[:, None, :] - x[None, :, :]
    trace = factor * jnp.sum(delta**2, axis=-1)
    pair_logdet = jnp.log(trace) if d == 1 else jnp.full_like(trace, -jnp.inf)
    single = term(size, -jnp.inf, jnp.zeros_like(size))
    costs = term(n, pair_logdet, trace) - single[:, None] - single[None, :]
    if d > 1:  # two single points in mclust's arithmetic, so that equal costs tie as there
        root_half = jnp.sqrt(jnp.asarray(0.5, x.dtype))

        def half(k):
            # From 8 features, each feature's differences from x's columns rather
            # than from ``delta``: a second reader of ``delta`` made XLA write the
            # (m, m, D) array out (a tree of 1024 rows of 16 features 207-213 ->
            # 168-174 ms, 512 rows 50-51 -> 37-40 ms; the same at 5 and 8
            # features, but 12.1 -> 13.4-15.0 ms for Old Faithful's 2). The same
            # arithmetic either way.
            if d >= 8:
                return (x[:, None, k] - x[None, :, k]) * root_half
            return delta[..., k] * root_half

        trace = half(0) ** 2
        for k in range(1, d):  # in order, as BLAS ddot
            trace = trace + half(k) ** 2
        unit = jnp.log(alpha * beta)
        mclust = 2 * jnp.log(beta * (trace + alpha) / 2) - (unit + unit)
        costs = jnp.where((size[:, None] == 1) & (size[None, :] == 1), mclust, costs)
    costs = jnp.where(jnp.eye(m, dtype=bool), jnp.inf, costs)

    logdet = _logdet_unrolled if d <= UNROLL_MAX_FEATURES else _logdet_lapack

    # the merged scatter matrix ``w_last`` is written at the next merge, into the
    # row of the pending centroid (_merge_means)
    def merge(stats, i, j):
        centroid, size, pending, scatter, terms, w_last = stats
        scatter = scatter.at[pending[0]].set(w_last)
        centroid, size, pending = _merge_means(centroid, size, pending, i, j)
        delta = centroid[i] - centroid[j]
        factor = _pair_factor(size[i], size[j])[1]
        w = scatter[i] + scatter[j] + factor * jnp.outer(delta, delta)
        t = term(pending[2], logdet(w), jnp.trace(w))
        return centroid, size, pending, scatter, terms.at[i].set(t), w

    def row_costs(stats, i):
        centroid, size, (_, c, n_i), scatter, terms, w_i = stats
        delta = centroid - c
        n, factor = _pair_factor(size, n_i)
        # T(n, W) needs log det W only where n > D. The trace alone comes from the
        # diagonals (the same arithmetic as W's), and the determinants are
        # computed only in the merges where some pair has n > D: early in a tree
        # of many rows no pair has. One CPU core, float32, a tree of the SVD
        # transform (the same merges, checked in float32 and float64 with ties
        # and weights): 1024 rows of 16 features 675-735 -> 132-138 ms,
        # 512 × 12 100-108 -> 38-41 ms, wine 14-16 -> 5-7 ms, Old Faithful
        # 11-12 -> 10 ms.
        diag = jnp.diagonal(scatter, axis1=-2, axis2=-1) + jnp.diagonal(w_i)
        diag = diag + factor[:, None] * delta * delta
        trace = sum((diag[:, k] for k in range(1, d)), start=diag[:, 0])

        def determinants():
            w = scatter + w_i + factor[:, None, None] * delta[:, :, None] * delta[:, None, :]
            return logdet(w)

        det = jax.lax.cond(
            jnp.any(n > d), determinants, lambda: jnp.full(n.shape, -jnp.inf, n.dtype)
        )
        merged = term(n, det, trace)
        return merged - terms - terms[i]

    scatter = jnp.zeros((m, d, d), x.dtype)
    stats = (x, size, _no_merge(x, size), scatter, single, scatter[0])
    return _agglomerate(costs, stats, merge, row_costs, size > 0)


# Up to this many features the VVV agglomeration's determinants are an unrolled
# Cholesky elimination (D³/6 multiply-adds, each a vector operation over the m
# clusters of a row): measured on one CPU core, 15 to 60 times faster than a
# batch of LAPACK slogdets (one small matrix at a time), for m = 128…512 and
# D = 8…16. The program grows as D³, so wider data keeps LAPACK.
UNROLL_MAX_FEATURES = 16


def _logdet_lapack(w: jax.Array) -> jax.Array:
    """log det of each symmetric matrix of ``w`` (..., D, D); −inf when it is not
    positive definite."""
    sign, value = jnp.linalg.slogdet(w)
    return jnp.where(sign > 0, value, -jnp.inf)


def _logdet_unrolled(w: jax.Array) -> jax.Array:
    """:func:`_logdet_lapack` as an unrolled Cholesky elimination of the lower
    triangle (a pivot ≤ 0: −inf)."""
    d = w.shape[-1]
    factor: dict[tuple[int, int], jax.Array] = {}
    logdet = jnp.zeros(w.shape[:-2], w.dtype)
    ok = jnp.ones(w.shape[:-2], bool)
    for j in range(d):
        pivot = w[..., j, j] - sum((factor[j, k] ** 2 for k in range(j)), jnp.zeros_like(logdet))
        ok = ok & (pivot > 0)
        pivot = jnp.where(pivot > 0, pivot, 1)
        logdet = logdet + jnp.log(pivot)
        inverse = jax.lax.rsqrt(pivot)
        for i in range(j + 1, d):
            dot = sum((factor[i, k] * factor[j, k] for k in range(j)), jnp.zeros_like(logdet))
            factor[i, j] = (w[..., i, j] - dot) * inverse
    return jnp.where(ok, logdet, -jnp.inf)


@jax.jit
def cut(merges: jax.Array, k: ArrayLike, sample_weight: ArrayLike | None = None) -> jax.Array:
    """Cluster labels ``0..k−1`` of the partition after the first ``m − k − z`` merges.

    Args:
        merges: (m − 1, 2) from :func:`ward_tree` or :func:`vvv_tree`.
        k: number of clusters, ``1 ≤ k ≤ m − z`` (traced).
        sample_weight: the (m,) weights the tree was built with, if any: its
            ``z`` rows of weight zero were left out of the tree and get label −1.

    Returns:
        (m,) int32 labels, numbered in order of each cluster's first row.
    """
    merges = jnp.asarray(merges)
    m = merges.shape[0] + 1
    if sample_weight is None:
        present = jnp.ones(m, bool)
    else:
        present = jnp.asarray(sample_weight) > 0
    n_merges = jnp.sum(present) - jnp.asarray(k)

    def apply(s, labels):
        i, j = merges[s, 0], merges[s, 1]
        return jnp.where((s < n_merges) & (labels == j), i, labels)

    labels = jnp.arange(m)
    if m > 1:  # (one row: no merge to apply; the body would index an empty array)
        labels = jax.lax.fori_loop(0, m - 1, apply, labels)
    is_root = jnp.zeros(m, bool).at[labels].set(True) & present
    return jnp.where(present, jnp.cumsum(is_root) - 1, -1)[labels].astype(jnp.int32)
