"""Initial responsibilities, in JAX (jit- and vmap-able), for any family.

Every method builds (N, K) responsibilities on a continuous (N, D)
representation of the data (a family's :meth:`~jaxem.Family.init_features`);
the family then does one M-step on them:

* ``"kmeans"``: hard labels of k-means (greedy k-means++ seeding with
  :data:`KMEANS_TRIALS_FACTOR` times scikit-learn's candidates per seed, then
  Lloyd iterations with scikit-learn's stopping rule: until the labels stop
  changing or the centres move less than :data:`KMEANS_TOL` of the mean feature variance, at
  most 300); with more than :data:`KMEANS_MAX_SAMPLES` rows, k-means of a random
  subset of that many rows of positive weight, then every row labelled by its
  nearest centre;
* ``"k-means++"``: one-hot responsibilities on the k-means++ seeds;
* ``"random"``: uniformly random responsibilities, normalised per row;
* ``"random_from_data"``: one-hot responsibilities on random distinct rows
  (drawn with probability proportional to their weight; rows of values
  another seed already has are passed over while the candidates hold others,
  :func:`_distinct_seed_rows`);

and three that look at the data's shape rather than its raw coordinates, for data
whose features have different scales (as R mclust does):

* ``"standardized_kmeans"``: ``"kmeans"`` run on the standardised data (each
  feature centred and scaled to unit variance), its partition used on ``x``
  (computed as k-means of ``x`` with distances scaled per feature, so that it
  shares one program with ``"kmeans"``: :data:`GROUPS`);
* ``"hc"``: model-based hierarchical agglomeration (:mod:`jaxem.hierarchical`,
  Ward's criterion, the classification likelihood of mclust's ``EII`` model) of
  the standardised data, cut into K clusters: of all rows when there are at
  most :data:`HC_MAX_SAMPLES` (then it does not depend on the key), else of a
  random subset of :func:`hc_subset_size` rows (``4 K D`` rounded up to a power
  of two, 128 to 1024, at most all rows: enough to seed EM, which then runs on
  all rows); the M-step uses the subset's partition, as mclust does.
* ``"hc_vvv"``: R mclust's default start: the agglomeration of its ``VVV``
  model (:func:`jaxem.hierarchical.vvv_tree`, one unconstrained covariance per
  cluster) of mclust's ``"SVD"`` transform of the data (:func:`svd_transform`),
  on the same subset as ``"hc"``, cut into K clusters. mclust's ties are broken
  in its own order, so on data with many equal distances the partition can
  differ from mclust's. Sample weights are relative here (the mean positive
  weight counts as one point), since the criterion counts points.

Every method draws the same with no sample weights as with weights all one,
and a row of weight zero is as if absent (never a seed, never agglomerated,
no weight in any mean): padding the data with zero-weight rows changes only
the random draws, which is what lets an in-memory fit reuse its compiled
program for every N of a bucket (:func:`jaxem._src.sources.row_bucket`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src import hierarchical
from jaxem._src import kmeans as kmeans_lib

__all__ = [
    "GROUPS",
    "HC_MAX_SAMPLES",
    "HC_MAX_SUBSET",
    "HC_MIN_SUBSET",
    "INIT_METHODS",
    "KMEANS_MAX_SAMPLES",
    "KMEANS_TOL",
    "KMEANS_TRIALS_FACTOR",
    "SEQUENTIAL",
    "batching",
    "dense_resp",
    "group_of",
    "hc_subset_size",
    "init_resp",
    "init_resp_rows",
    "standardize",
    "svd_transform",
]

INIT_METHODS = (
    "kmeans",
    "k-means++",
    "random",
    "random_from_data",
    "standardized_kmeans",
    "hc",
    "hc_vvv",
)
# Methods whose responsibilities have at most one positive entry per row (labels,
# or a seed row per component): all but "random".
LABEL_METHODS = frozenset(INIT_METHODS) - {"random"}
# Methods computed by one traced program, each restart's method among them a traced
# index (init_resp's ``index``): k-means on the raw and on the standardised data
# differ only in the per-feature scale of the distances, so the restarts of both
# are one vmap (one k-means in the compiled program, not two).
GROUPS = (("kmeans", "standardized_kmeans"),)
# Rows "hc" and "hc_vvv" agglomerate whole (as R mclust does, which takes all rows
# up to 2000): at most this many. A tree is m − 1 dependent steps of O(m) work
# each; measured on 2 CPU cores (float32): "hc_vvv" 0.35 s and "hc" 0.11 s for
# m = 1000 (D = 5), 23 and 7 ms for m = 256 (D = 8). With 1024 here a default fit with
# n_init = 10 of 1000 × 5 points, K = 4, took 0.59 s, of which the two trees were
# 0.45 s, and one of 1100 points (random subsets of 128 rows) 0.06 s. 512 keeps
# the data sets mclust's starts are checked on whole (Old Faithful, iris, wine).
# A power of two, a boundary of the row buckets, so that whether a fit
# agglomerates all rows or a subset is the same in a bucket.
HC_MAX_SAMPLES = 512
# Above HC_MAX_SAMPLES rows, "hc" and "hc_vvv" agglomerate a random subset of
# hc_subset_size(K, D) rows (all rows, in a random order, when that is not fewer):
# 4·D rows per component (a subset cluster has a covariance to start EM from), a
# power of two, at least HC_MIN_SUBSET and at most HC_MAX_SUBSET. The subset only
# seeds EM on all rows, and an agglomeration costs
# m² (Ward) to m² D³ (VVV): 1024 rows of 8 features cost as much as a thousand EM
# iterations of 5 000 rows. Measured (experiments/hc_subset.py, 3-4 keys): on
# 20 000 × 16 overlapping points with K = 16, restarts from 512-row subsets
# (2·D per component) ended 0.8-2 nats per point below those from 1024; on
# 5 000 × 8 with K = 5, 128 rows missed the best optimum in 3 of 8 restarts,
# 256 in none.
HC_MIN_SUBSET = 128
HC_MAX_SUBSET = 1024
# Rows the k-means of "kmeans" and "standardized_kmeans" iterate on: above it a
# random subset (every row is then labelled by its nearest centre). On 100 000 ×
# 16 overlapping points with K = 16, Lloyd takes 160-300 iterations to stop, which
# on all rows cost as much as the whole EM fit; on 16 384 rows (a thousand per
# component) the centres are as good a start, at a sixth of the cost.
KMEANS_MAX_SAMPLES = 1 << 14
# Candidates per k-means++ seed in the initialisers, as a multiple of
# scikit-learn's 2 + ⌊log K⌋ (kmeans_plusplus's trials_factor). With well
# separated clusters in many dimensions the rows of the clusters already seeded
# hold about as much squared distance as one not yet seeded, each candidate
# misses it about half the time, and Lloyd then keeps two centres in one
# cluster and one across two. Measured (the k-means of "standardized_kmeans" or
# "kmeans", 4 data sets × 8 keys each, clusters from experiments/estimators.py's
# make_data; failures: partitions less than 99% pure), factor 1 / 2 / 4:
# 50 000 × 32, K = 32, separation 10: 18 / 7 / 0 of 32; 100 000 × 16, K = 16,
# separation 10: 6 / 0 / 0 ("kmeans") and 10 / 1 / 0 of 30 ("standardized_kmeans",
# 3 × 10); 20 000 × 8, K = 24, separation 8: 19 / 11 / 0. The seeding's
# cost is a small part of the k-means (100 000 × 16, K = 16: 17.5 / 15.4 /
# 14.8 ms the whole initialiser; better seeds end Lloyd sooner).
KMEANS_TRIALS_FACTOR = 4
# Lloyd's tolerance in the initialisers: scikit-learn's KMeans default (its
# GaussianMixture's k-means start uses it), relative to the mean feature variance.
KMEANS_TOL = 1e-4
# Methods whose restarts are computed one after another (lax.map) rather than as
# one vmap: an agglomeration is a loop of m − 1 small dependent steps, each
# updating one row and column of an (m, m) cost matrix, and batched those updates
# become scatters that XLA:CPU runs several times slower per tree than the
# unbatched dynamic updates.
SEQUENTIAL = ("hc", "hc_vvv")


def group_of(method: str) -> tuple[str, ...]:
    """The methods that share ``method``'s traced program (:data:`GROUPS`)."""
    return next((group for group in GROUPS if method in group), (method,))


def hc_subset_size(n_components: int, n_features: int) -> int:
    """Rows "hc" and "hc_vvv" agglomerate when there are more than
    :data:`HC_MAX_SAMPLES` (static): ``4 K D`` rounded up to a power of two,
    clipped to ``[HC_MIN_SUBSET, HC_MAX_SUBSET]`` (all rows when there are not
    more)."""
    wanted = 1 << max(4 * n_components * n_features - 1, 1).bit_length()
    return min(max(wanted, HC_MIN_SUBSET), HC_MAX_SUBSET)


def batching(methods: tuple[str, ...], n_samples: int) -> str:
    """How the restarts of one group of ``methods`` are computed together (static):

    * ``"shared"``: the responsibilities do not depend on the key (``"hc"`` and
      ``"hc_vvv"`` when they agglomerate all ``n_samples ≤ HC_MAX_SAMPLES`` rows):
      computed once and given to every restart of the group;
    * ``"map"``: one restart after another (:data:`SEQUENTIAL`);
    * ``"vmap"``: all at once.
    """
    if set(methods) <= set(SEQUENTIAL):
        return "shared" if n_samples <= HC_MAX_SAMPLES else "map"
    return "vmap"


def _center_and_scale(x: jax.Array, sample_weight: jax.Array | None):
    """Weighted mean and standard deviation of each feature (1 where constant).
    The deviations are divided by their largest before squaring: float32 data
    of magnitude 1e18 have squares near its largest number, and their sum
    overflowed (an infinite deviation, then every distance 0 and one cluster)."""
    w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else sample_weight
    total = jnp.sum(w)
    mean = jnp.sum(w[:, None] * x, axis=0) / total
    deviation = x - mean
    largest = jnp.max(jnp.where(w[:, None] > 0, jnp.abs(deviation), 0), axis=0)
    largest = jnp.where(largest > 0, largest, 1)
    std = largest * jnp.sqrt(jnp.sum(w[:, None] * (deviation / largest) ** 2, axis=0) / total)
    return mean, jnp.where(std > 0, std, 1)


def standardize(x: jax.Array, sample_weight: jax.Array | None = None) -> jax.Array:
    """Each feature centred and scaled to unit (weighted) variance; constant features
    are only centred."""
    mean, scale = _center_and_scale(x, sample_weight)
    return (x - mean) / scale


def svd_transform(x: ArrayLike, sample_weight: ArrayLike | None = None) -> jax.Array:
    """R mclust's ``"SVD"`` transform, the data its hierarchical start sees.

    Each feature is centred and scaled to unit variance (with mclust's N − 1;
    constant features are only centred), then ``Z = X_s V D^{-1/2}`` where
    ``X_s = U D Vᵀ``: the principal axes, each scaled by the inverse square root
    of its singular value (so ``Z = U D^{1/2}``; not whitened). A direction with
    zero singular value is dropped (zero). With weights, a point of weight w
    counts as w points.

    Args:
        x: (N, D) data.
        sample_weight: optional (N,) non-negative weights.

    Returns:
        (N, D) transformed data.
    """
    x = jnp.asarray(x)
    w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else jnp.asarray(sample_weight)
    total = jnp.sum(w)
    # mclust's sd divides by N − 1 (not when the total weight is at most 1)
    z = standardize(x, w) * jnp.where(total > 1, jnp.sqrt((total - 1) / total), 1)
    scatter = (w[:, None] * z).T @ z
    eigvals, vectors = jnp.linalg.eigh(scatter)  # D² and V of the weighted SVD
    singular = jnp.sqrt(jnp.maximum(eigvals, 0))
    keep = singular > jnp.finfo(x.dtype).eps * jnp.maximum(jnp.max(singular), 1)
    scale = jnp.where(keep, 1 / jnp.sqrt(jnp.where(keep, singular, 1)), 0)
    return z @ vectors * scale


def _distinct_rows(key: jax.Array, log_w: jax.Array, m: int) -> jax.Array:
    """(m,) indices of ``m`` distinct rows drawn with probabilities ∝
    ``exp(log_w)`` (Gumbel top-m; rows of weight zero never, the first ``k``
    draws of ``m`` those of ``k``)."""
    return jax.lax.top_k(log_w + jax.random.gumbel(key, log_w.shape, log_w.dtype), m)[1]


#: Draws beyond the ``m`` seeds of ``"random_from_data"`` among which
#: :func:`_distinct_seed_rows` looks for rows of values the seeds do not have yet.
SEED_EXTRA_CANDIDATES = 64


def _distinct_seed_rows(key: jax.Array, x: jax.Array, log_w: jax.Array, m: int) -> jax.Array:
    """(m,) indices of seed rows: :func:`_distinct_rows`' draws, in their
    order, with each row whose values an earlier draw has moved behind the
    rows of new values (the same rows where no value repeats).

    Discrete data (codes, counts, binary features) repeat rows: two seeds of
    one value started two equal components, which EM keeps equal in exact
    arithmetic and rounding then splits, differently in each compiled program
    (one key, different fits in memory and in chunks). The candidates are the
    first ``m +`` :data:`SEED_EXTRA_CANDIDATES` draws (at most every row);
    where they hold fewer than ``m`` values, repeats fill the rest, in order,
    and rows of weight zero come only after them. The comparison of every pair
    of candidates costs ``(m + 64)² D``."""
    n_candidates = min(x.shape[0], m + SEED_EXTRA_CANDIDATES)
    drawn = _distinct_rows(key, log_w, n_candidates)
    rows = x[drawn]
    same = jnp.all(rows[:, None, :] == rows[None, :, :], axis=-1)
    repeat = jnp.any(jnp.tril(same, k=-1), axis=1)  # an earlier candidate has its values
    # new values in draw order, then repeats, then rows of weight zero (drawn
    # only where fewer rows have weight)
    rank = jnp.where(log_w[drawn] > -jnp.inf, repeat.astype(jnp.int32), 2)
    return drawn[jnp.argsort(rank, stable=True)[:m]]


def _largest(keys: jax.Array, m: int) -> jax.Array:
    """(m,) indices of the ``m`` largest of the (N,) ``uint32`` ``keys``, in
    index order (of the keys equal to the m-th largest, the first, as
    ``lax.top_k`` takes them): that threshold by bisection over the 32 bits
    (32 counts over the keys), then the keys above it and enough of those at
    it. On 2 CPU cores, 102 400 keys and m = 16 384, 2.9–3.1 ms against
    6.9–7.4 ms for ``lax.top_k`` of Gumbel keys (a sort; their draw included
    in both)."""

    def halve(_, bounds):  # count(keys >= lo) >= m throughout
        lo, hi = bounds
        span = hi - lo
        mid = lo + (span >> 1) + (span & 1)
        holds = jnp.sum(keys >= mid) >= m
        return jnp.where(holds, mid, lo), jnp.where(holds, hi, mid - 1)

    bounds = (jnp.uint32(0), jnp.uint32(0xFFFFFFFF))
    lo, _ = jax.lax.fori_loop(0, 32, halve, bounds)
    above, at = keys > lo, keys == lo  # fewer than m above: lo is the largest that holds
    take = above | (at & (jnp.cumsum(at) <= m - jnp.sum(above)))
    return jnp.nonzero(take, size=m, fill_value=0)[0].astype(jnp.int32)


#: Most rows whose uniform subset :func:`_uniform_rows` draws by bisection; more
#: take ``lax.top_k`` of Gumbel keys, whose sort then costs less than 32 passes
#: over the keys (2 CPU cores, m = 16 384: 262 144 rows 6.6 against 12.8 ms,
#: 524 288 10.2 against 14.2, 786 432 17.4 against 15.5, 10⁶ 20.0 against 17.3).
BISECT_MAX_ROWS = 1 << 19


def _uniform_rows(key: jax.Array, valid: jax.Array, m: int, dtype) -> jax.Array:
    """(m,) indices of ``m`` distinct rows drawn uniformly among those where
    ``valid`` (N,) holds (all of them, then others, when there are fewer): up to
    :data:`BISECT_MAX_ROWS` rows, in index order, the rows of the ``m`` largest
    random 32-bit keys (:func:`_largest`); above, :func:`_distinct_rows` with
    equal weights (keys of ``dtype``)."""
    if valid.shape[0] > BISECT_MAX_ROWS:
        return _distinct_rows(key, jnp.where(valid, jnp.zeros((), dtype), -jnp.inf), m)
    bits = jax.random.bits(key, valid.shape, jnp.uint32)
    return _largest(jnp.where(valid, jnp.maximum(bits, 1), 0), m)


def _hc_resp(key, x, n_components, n_active, sample_weight, method):
    """``(rows, resp)`` of an agglomeration (:func:`init_resp_rows`)."""
    n_samples = x.shape[0]
    w = jnp.ones(n_samples, x.dtype) if sample_weight is None else sample_weight
    subset = n_samples > HC_MAX_SAMPLES
    if subset:  # a random subset (Gumbel top-m: ∝ weight, no repeats)
        size = min(hc_subset_size(n_components, x.shape[1]), n_samples)
        rows = _distinct_rows(key, jnp.log(w), size)
        x_sub, w_sub = x[rows], w[rows]
    else:
        x_sub, w_sub = x, w
    if method == "hc_vvv":
        # The VVV criterion counts points (a cluster of at most D has no determinant
        # term): weights are taken as relative, the mean positive weight counting 1.
        w_sub = w_sub * jnp.count_nonzero(w_sub > 0) / jnp.sum(w_sub)
        tree = hierarchical.vvv_tree(svd_transform(x_sub, w_sub), w_sub)
    else:  # standardised with the statistics of all rows
        z = standardize(x, sample_weight)
        tree = hierarchical.ward_tree(z[rows] if subset else z, w_sub)
    labels = hierarchical.cut(tree, n_active, w_sub)  # −1 (no column) on zero-weight rows
    return (rows if subset else None), jax.nn.one_hot(labels, n_components, dtype=x.dtype)


def _kmeans_scale(x, sample_weight, methods, index):
    """The per-feature distance scale of each k-means method of ``methods`` (None:
    unscaled), the restart's own chosen by the traced ``index``."""
    if "standardized_kmeans" not in methods:
        return None
    inverse_std = 1 / _center_and_scale(x, sample_weight)[1]
    standardized = jnp.asarray([m == "standardized_kmeans" for m in methods])[index]
    return jnp.where(standardized, inverse_std, 1)


def init_resp(
    key: jax.Array,
    x: jax.Array,
    n_components: int,
    method: str | tuple[str, ...],
    n_active: ArrayLike,
    sample_weight: jax.Array | None = None,
    *,
    index: ArrayLike = 0,
) -> jax.Array:
    """(N, K) initial responsibilities; columns ``n_active..K-1`` are zero.

    ``method`` is one of :data:`INIT_METHODS`, or a group of :data:`GROUPS` with
    the traced ``index`` of the method to use in it (one program for all).
    :func:`init_resp_rows` on every row.
    """
    rows, resp = init_resp_rows(key, x, n_components, method, n_active, sample_weight, index=index)
    return resp if rows is None else dense_resp(rows, resp, x.shape[0])


def dense_resp(rows: jax.Array, resp: jax.Array, n_samples: int) -> jax.Array:
    """(N, K) responsibilities of :func:`init_resp_rows`' ``(rows, resp)``: zero
    on every row not in ``rows``."""
    return jnp.zeros((n_samples, resp.shape[-1]), resp.dtype).at[rows].add(resp)


def init_resp_rows(
    key: jax.Array,
    x: jax.Array,
    n_components: int,
    method: str | tuple[str, ...],
    n_active: ArrayLike,
    sample_weight: jax.Array | None = None,
    *,
    index: ArrayLike = 0,
) -> tuple[jax.Array | None, jax.Array]:
    """``(rows, resp)``: initial responsibilities ``resp`` (M, K) of the rows
    ``rows`` (M,) of ``x``, zero on every other row; ``rows`` None: of all N
    rows in order. M is static: the subset an agglomeration of more than
    :data:`HC_MAX_SAMPLES` rows clusters, the K seed rows of
    ``"random_from_data"`` and ``"k-means++"``, else N. Statistics of the
    responsibilities then read M rows, not N (a restart's first M-step on
    100 000 × 16 rows costs about as much as an EM iteration). Arguments as
    :func:`init_resp`.
    """
    methods = (method,) if isinstance(method, str) else tuple(method)
    if len(methods) > 1 and methods not in GROUPS:
        raise ValueError(f"init methods {methods} do not share one program; groups: {GROUPS}")
    if set(methods) <= {"kmeans", "standardized_kmeans"}:
        # k-means of x, or of standardised x as a distance scale (module docstring)
        scale = _kmeans_scale(x, sample_weight, methods, index)
        n_samples = x.shape[0]
        if n_samples <= KMEANS_MAX_SAMPLES:
            rows, x_sub, w_sub = None, x, sample_weight
        else:  # a uniform random subset of the rows of positive weight
            key, key_rows = jax.random.split(key)
            valid = jnp.ones(n_samples, bool) if sample_weight is None else sample_weight > 0
            rows = _uniform_rows(key_rows, valid, KMEANS_MAX_SAMPLES, x.dtype)
            x_sub = x[rows]
            w_sub = None if sample_weight is None else sample_weight[rows]
        result = kmeans_lib.kmeans(
            key,
            x_sub,
            n_components,
            n_active=n_active,
            tol=KMEANS_TOL,
            sample_weight=w_sub,
            scale=scale,
            trials_factor=KMEANS_TRIALS_FACTOR,
        )
        labels = result.labels
        if rows is not None:
            labels = kmeans_lib.nearest(x, result.centers, n_active=n_active, scale=scale)
        return None, jax.nn.one_hot(labels, n_components, dtype=x.dtype)
    (method,) = methods
    n_samples = x.shape[0]
    active = jnp.arange(n_components) < n_active
    if method == "random":
        resp = jax.random.uniform(key, (n_samples, n_components), x.dtype) * active
        return None, resp / jnp.sum(resp, axis=1, keepdims=True)
    if method in ("hc", "hc_vvv"):
        return _hc_resp(key, x, n_components, n_active, sample_weight, method)
    if method == "k-means++":
        seeds = kmeans_lib.kmeans_plusplus(key, x, n_components, n_active, sample_weight)
    else:  # random_from_data: K rows ∝ weight, of distinct values where the draws have them
        w = jnp.ones(n_samples, x.dtype) if sample_weight is None else sample_weight
        seeds = _distinct_seed_rows(key, x, jnp.log(w), n_components)
    # seed k's row one-hot in column k, inactive columns zero
    return seeds, jnp.diag(active.astype(x.dtype))
