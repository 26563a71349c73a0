"""One pass over the data: the E-step and the M-step's statistics, chunked over N.

Two formulations of the same pass, both returning ``(SuffStats, mean
log-likelihood)`` and both bounded in memory by chunking over samples:

* :func:`direct_pass`: log-densities through ``(x − μ_k) P_k`` and second
  moments about the current means, as scikit-learn; accurate in any regime;
* :func:`moment_pass`: one matrix product each way over moment features
  (:mod:`jaxem.gmm.moments`); several times faster, exact in float64, and in
  float32 while :func:`jaxem.gmm.moments.is_accurate` holds.

The moment features do not depend on the parameters, so a fit whose features fit
in :data:`FEATURE_CACHE_BYTES` builds them once (:func:`feature_cache`) and
every pass is then only the two matrix products (:func:`cached_moment_pass`);
building the features costs more than both products together on a CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxem._chunking import chunk_rows, chunked_sum
from jaxem.gmm import moments
from jaxem.gmm.covariances import get as get_covariance
from jaxem.gmm.density import weighted_log_prob
from jaxem.gmm.params import GMMParams
from jaxem.gmm.steps import SuffStats, shifted_sum

#: Largest (N, F) moment-feature array, in bytes, that a fit keeps in memory for
#: all its passes instead of rebuilding it chunk by chunk in every pass. Above it
#: memory stays bounded by the chunk (N = 10⁶, D = 32, full: F = 561, 2.2 GB in
#: float32, is rebuilt per chunk). Set it to 0 to never cache.
FEATURE_CACHE_BYTES = 1 << 30

# Elements of (rows, F + K) per chunk when the features are built chunk by chunk:
# 8M (32 MB in float32) measured fastest for full covariances on a 2-core x86
# machine (100k × 16, K = 16: 13 ms per pass against 37 ms at 600k elements;
# 200k × 32, K = 32: 232 against 278 ms).
MOMENT_CHUNK_ELEMENTS = 8_000_000

# Rows per chunk over cached features: the products stream the features from
# memory, so chunks only bound the (rows, K) temporaries.
CACHED_CHUNK_ELEMENTS = 4_000_000


def direct_pass(
    params: GMMParams, x: jax.Array, sample_weight: jax.Array, *, rows: int | None = None
) -> tuple[SuffStats, jax.Array]:
    """E-step and statistics about the current means, chunk by chunk.

    Args:
        params: current parameters.
        x: (N, D) data.
        sample_weight: (N,) non-negative weights (ones for plain EM).
        rows: rows per chunk (static); by default about 600k elements of (B, K, D).

    Returns:
        ``(stats, mean log-likelihood)``, the mean weighted by ``sample_weight``.
    """
    covariance_type = params.covariance_type
    module = get_covariance(covariance_type)
    shift = params.means

    def chunk(xb, wb):
        wlp = weighted_log_prob(params, xb)
        log_norm = jax.nn.logsumexp(wlp, axis=1)
        resp = jnp.exp(wlp - log_norm[:, None]) * wb[:, None]
        nk = jnp.sum(resp, axis=0)
        sum_x = shifted_sum(resp, xb, shift)
        return nk, sum_x, module.second_moments(resp, xb, shift), jnp.sum(wb * log_norm)

    k, d = params.means.shape
    rows = rows or chunk_rows(x.shape[0], k * d)
    nk, sum_x, sum_xx, ll = chunked_sum(chunk, (x, sample_weight), rows)
    stats = SuffStats(nk, sum_x, sum_xx, shift, covariance_type)
    return stats, ll / jnp.sum(sample_weight)


def moment_pass(
    params: GMMParams,
    x: jax.Array,
    sample_weight: jax.Array,
    center: jax.Array,
    *,
    rows: int | None = None,
) -> tuple[SuffStats, jax.Array]:
    """E-step and statistics about ``center`` through moment features.

    Args:
        params: current parameters.
        x: (N, D) data.
        sample_weight: (N,) non-negative weights.
        center: (D,) the centre ``c`` of the features (the data mean is best).
        rows: rows per chunk (static); by default :data:`MOMENT_CHUNK_ELEMENTS`
            elements of (B, F + K).

    Returns:
        ``(stats, mean log-likelihood)``; statistics are about ``center``.
    """
    covariance_type = params.covariance_type
    k, d = params.means.shape
    width = moments.n_features_of(covariance_type, d)
    chunk = moments.pass_sums(params, center, moments.natural_weights(params, center))
    rows = rows or chunk_rows(x.shape[0], width + k, target=MOMENT_CHUNK_ELEMENTS)
    summed, extra, ll = chunked_sum(chunk, (x, sample_weight), rows)
    stats = _stats_of(summed, extra, center, covariance_type)
    return stats, ll / jnp.sum(sample_weight)


def _stats_of(summed, extra, center, covariance_type):
    """SuffStats about ``center`` from ``Rᵀ Φ`` (K, F) and the tied ``extra``."""
    k, d = summed.shape[0], center.shape[0]
    nk, sum_x, sum_xx = moments.moments_to_stats(summed, extra, covariance_type, d)
    return SuffStats(nk, sum_x, sum_xx, jnp.broadcast_to(center, (k, d)), covariance_type)


def moment_pass_for(
    x: jax.Array, sample_weight: jax.Array, center: jax.Array, covariance_type: str
):
    """The moment pass of a fit as a function of the parameters alone.

    Over features built here once (:func:`feature_cache`, shared by restarts under
    ``vmap``) when they fit in :data:`FEATURE_CACHE_BYTES`, else :func:`moment_pass`
    rebuilding them chunk by chunk in every pass.
    """
    if caches_features(x, covariance_type):
        cache = feature_cache(x, sample_weight, center, covariance_type)
        return lambda params: cached_moment_pass(params, cache, sample_weight)
    return lambda params: moment_pass(params, x, sample_weight, center)


class FeatureCache(NamedTuple):
    """Moment features of the data, built once per fit (:func:`feature_cache`)."""

    features: jax.Array  # (N, F)
    center: jax.Array  # (D,)
    extra: jax.Array  # (D, D) Σ w x̃x̃ᵀ for a tied covariance, else ()


def caches_features(x: jax.Array, covariance_type: str) -> bool:
    """Whether a fit on ``x`` keeps its moment features (static: shape and dtype)."""
    n, d = x.shape
    size = n * moments.n_features_of(covariance_type, d) * jnp.dtype(x.dtype).itemsize
    return size <= FEATURE_CACHE_BYTES


def feature_cache(
    x: jax.Array, sample_weight: jax.Array, center: jax.Array, covariance_type: str
) -> FeatureCache:
    """The (N, F) moment features of ``x − center`` and, for a tied covariance,
    its weighted second moment."""
    xc = x - center
    phi = moments.features(xc, covariance_type)
    if covariance_type == "tied":
        extra = moments.tied_second_moment(xc, sample_weight)
    else:
        extra = jnp.zeros((), x.dtype)
    return FeatureCache(phi, center, extra)


def cached_moment_pass(
    params: GMMParams, cache: FeatureCache, sample_weight: jax.Array, *, rows: int | None = None
) -> tuple[SuffStats, jax.Array]:
    """:func:`moment_pass` over features built once: two matrix products.

    Under ``vmap`` over the parameters only (restarts sharing the data), the
    restarts are computed together as one product of width ``R·K`` each way
    (about 1.5× faster per restart than ``R`` products of width ``K``); a batch
    of one runs unbatched.
    """

    @jax.custom_batching.custom_vmap
    def run(params, cache, w):
        return _cached_pass(params, cache, w, rows)

    @run.def_vmap
    def rule(axis_size, in_batched, params, cache, w):
        params_batched, cache_batched, w_batched = in_batched
        only_params = all(jax.tree.leaves(params_batched)) and not any(
            jax.tree.leaves((cache_batched, w_batched))
        )
        if only_params:
            out = _wide_pass(params, cache, w, rows, axis_size)
        else:
            in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
            out = jax.vmap(lambda p, c, ww: _cached_pass(p, c, ww, rows), in_axes=in_axes)(
                params, cache, w
            )
        return out, jax.tree.map(lambda _: True, out)

    return run(params, cache, sample_weight)


def _cached_pass(params, cache, sample_weight, rows):
    phi = cache.features
    chunk = moments.feature_sums(params, moments.natural_weights(params, cache.center))
    rows = rows or chunk_rows(phi.shape[0], params.n_components, target=CACHED_CHUNK_ELEMENTS)
    summed, ll = chunked_sum(chunk, (phi, sample_weight), rows)
    stats = _stats_of(summed, cache.extra, cache.center, params.covariance_type)
    return stats, ll / jnp.sum(sample_weight)


def _wide_pass(params, cache, sample_weight, rows, n_batch):
    """:func:`_cached_pass` for a batch of parameters (leading axis)."""
    if n_batch == 1:
        out = _cached_pass(jax.tree.map(lambda a: a[0], params), cache, sample_weight, rows)
        return jax.tree.map(lambda a: a[None], out)
    covariance_type = params.covariance_type
    k, d = params.means.shape[1:]
    phi = cache.features
    weights_matrix = jax.vmap(moments.natural_weights, in_axes=(0, None))(params, cache.center)
    wide = jnp.moveaxis(weights_matrix, 0, 1).reshape(phi.shape[1], n_batch * k)
    active = params.weights > 0  # (R, K)
    pc = params.precisions_cholesky

    def chunk(phi_b, w_b):
        b = phi_b.shape[0]
        logits = (phi_b @ wide).reshape(b, n_batch, k)
        if covariance_type == "tied":
            y = jnp.einsum("nd,rde->nre", phi_b[:, :d], pc)
            logits = logits - 0.5 * jnp.sum(y * y, axis=2, keepdims=True)
        logits = jnp.where(active, logits, -jnp.inf)
        resp, log_norm = moments.weighted_softmax(logits, w_b[:, None], axis=2)  # (b, R)
        return resp.reshape(b, n_batch * k).T @ phi_b, w_b @ log_norm

    rows = rows or chunk_rows(phi.shape[0], n_batch * k, target=CACHED_CHUNK_ELEMENTS)
    summed, ll = chunked_sum(chunk, (phi, sample_weight), rows)
    summed = summed.reshape(n_batch, k, -1)
    stats = jax.vmap(lambda m: _stats_of(m, cache.extra, cache.center, covariance_type))(summed)
    return stats, ll / jnp.sum(sample_weight)
