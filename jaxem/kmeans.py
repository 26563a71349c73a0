"""k-means in JAX: greedy k-means++ seeding and Lloyd iterations (public API).

The functions are compiled (``jax.jit``); called with concrete arrays they first
check them as a fit does (finite (N, D) data, non-negative sample weights that
are not all zero, ``1 ≤ n_clusters ≤ N``), so that bad input is an error rather
than NaN centres. Under an outer ``jit`` or ``vmap`` the checks of values are
skipped (shapes are still checked by the computation itself).
"""

import functools

from jaxem._src import kmeans as _kmeans
from jaxem._src.kmeans import KMeansResult, nearest
from jaxem._src.validation import as_data, check_sample_weight, check_static_int, concrete

__all__ = ["KMeansResult", "kmeans", "kmeans_plusplus", "lloyd", "nearest"]


def _checked(x, sample_weight, n_clusters=None):
    """``x`` checked where concrete (tracers pass through), and the weights and K."""
    if concrete(x) is not None:
        x = as_data(x)
        check_sample_weight(sample_weight, x)
        if n_clusters is not None:
            check_static_int("n_clusters", n_clusters, minimum=1)
            if n_clusters > x.shape[0]:
                raise ValueError(
                    f"n_clusters={n_clusters} must be <= the number of samples ({x.shape[0]})"
                )
    return x


@functools.wraps(_kmeans.kmeans)
def kmeans(key, x, n_clusters, *, sample_weight=None, **kwargs):
    x = _checked(x, sample_weight, n_clusters)
    return _kmeans.kmeans(key, x, n_clusters, sample_weight=sample_weight, **kwargs)


@functools.wraps(_kmeans.kmeans_plusplus)
def kmeans_plusplus(key, x, n_clusters, n_active=None, sample_weight=None, **kwargs):
    x = _checked(x, sample_weight, n_clusters)
    return _kmeans.kmeans_plusplus(key, x, n_clusters, n_active, sample_weight, **kwargs)


@functools.wraps(_kmeans.lloyd)
def lloyd(x, centers, *, sample_weight=None, **kwargs):
    x = _checked(x, sample_weight)
    return _kmeans.lloyd(x, centers, sample_weight=sample_weight, **kwargs)
