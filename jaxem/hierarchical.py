"""Model-based hierarchical agglomeration (Ward's criterion), in JAX.

Agglomerative clustering that starts from singletons and merges, at every step,
the pair of clusters whose merge lowers the classification log-likelihood of
a Gaussian model with equal spherical covariances (mclust's ``EII``) the
least; that cost is Ward's ``Δ(i, j) = n_i n_j / (n_i + n_j) · ‖c_i − c_j‖²``
(Fraley 1998, *Algorithms for model-based Gaussian hierarchical clustering*).

The tree does not depend on the number of clusters: :func:`ward_tree` builds
it once (``m − 1`` merges, ``O(m²)`` memory and ``O(m³)`` time, so use it on a
subset of a few hundred to a few thousand points, as mclust does), and
:func:`cut` gives the partition into any ``k`` clusters, ``k`` traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["cut", "ward_tree"]


def _ward_costs(centroid: jax.Array, size: jax.Array, c: jax.Array, n: jax.Array) -> jax.Array:
    """(m,) Ward cost of merging the cluster ``(c, n)`` with each cluster."""
    total = size + n
    factor = jnp.where(total > 0, size * n / jnp.where(total > 0, total, 1), 0)
    return factor * jnp.sum((centroid - c) ** 2, axis=-1)


def ward_tree(x: ArrayLike, sample_weight: ArrayLike | None = None) -> jax.Array:
    """The ``m − 1`` merges of Ward agglomeration of the rows of ``x``.

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
    x = jnp.asarray(x)
    m = x.shape[0]
    size = jnp.ones(m, x.dtype) if sample_weight is None else jnp.asarray(sample_weight, x.dtype)
    rows = jnp.arange(m)
    inf = jnp.asarray(jnp.inf, x.dtype)
    diff = x[:, None, :] - x[None, :, :]
    total = size[:, None] + size[None, :]
    costs = jnp.where(total > 0, size[:, None] * size[None, :] / jnp.where(total > 0, total, 1), 0)
    costs = costs * jnp.sum(diff * diff, axis=-1)
    costs = jnp.where(rows[:, None] == rows[None, :], inf, costs)

    # Nearest neighbour of every cluster, kept up to date: a step costs O(m) plus
    # O(m) per cluster whose nearest neighbour was one of the merged pair.
    nn_cost, nn_idx = jnp.min(costs, axis=1), jnp.argmin(costs, axis=1)

    def refresh(r, state):
        costs, nn_cost, nn_idx = state
        return costs, nn_cost.at[r].set(jnp.min(costs[r])), nn_idx.at[r].set(jnp.argmin(costs[r]))

    def step(s, state):
        costs, nn_cost, nn_idx, centroid, size, merges = state
        a = jnp.argmin(nn_cost)
        b = nn_idx[a]
        i, j = jnp.minimum(a, b), jnp.maximum(a, b)
        n = size[i] + size[j]
        c = jnp.where(
            n > 0,
            (size[i] * centroid[i] + size[j] * centroid[j]) / jnp.where(n > 0, n, 1),
            centroid[i],
        )
        centroid = centroid.at[i].set(c)
        size = size.at[i].set(n)
        alive = jnp.isfinite(costs[j]) | (rows == i)  # every live cluster but j has a finite cost
        alive = alive.at[j].set(False)
        row = jnp.where(alive & (rows != i), _ward_costs(centroid, size, c, n), inf)
        costs = costs.at[i, :].set(row).at[:, i].set(row)
        costs = costs.at[j, :].set(inf).at[:, j].set(inf)
        stale = alive & ((nn_idx == i) | (nn_idx == j))
        closer = row < nn_cost
        nn_idx = jnp.where(closer, i, nn_idx)
        nn_cost = jnp.where(closer, row, nn_cost)
        nn_cost = nn_cost.at[j].set(inf).at[i].set(jnp.min(row))
        nn_idx = nn_idx.at[i].set(jnp.argmin(row))

        def more(state):
            return jnp.any(state[0])

        def one(state):
            stale, inner = state
            r = jnp.argmax(stale)
            return stale.at[r].set(False), refresh(r, inner)

        stale = stale.at[i].set(False)
        _, (costs, nn_cost, nn_idx) = jax.lax.while_loop(
            more, one, (stale, (costs, nn_cost, nn_idx))
        )
        merges = merges.at[s].set(jnp.stack([i, j]).astype(jnp.int32))
        return costs, nn_cost, nn_idx, centroid, size, merges

    merges = jnp.zeros((max(m - 1, 0), 2), jnp.int32)
    state = (costs, nn_cost, nn_idx, x, size, merges)
    merges = jax.lax.fori_loop(0, m - 1, step, state)[-1]
    return merges


def cut(merges: jax.Array, k: ArrayLike) -> jax.Array:
    """Cluster labels ``0..k−1`` of the partition after the first ``m − k`` merges.

    Args:
        merges: (m − 1, 2) from :func:`ward_tree`.
        k: number of clusters, ``1 ≤ k ≤ m`` (traced).

    Returns:
        (m,) int32 labels, numbered in order of each cluster's first row.
    """
    m = merges.shape[0] + 1
    n_merges = m - jnp.asarray(k)

    def apply(s, labels):
        i, j = merges[s, 0], merges[s, 1]
        return jnp.where((s < n_merges) & (labels == j), i, labels)

    labels = jax.lax.fori_loop(0, m - 1, apply, jnp.arange(m))
    is_root = jnp.zeros(m, bool).at[labels].set(True)
    return (jnp.cumsum(is_root) - 1)[labels].astype(jnp.int32)
