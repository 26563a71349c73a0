"""One pass over the data: the E-step and the M-step's statistics, chunked over N.

Two formulations of the same pass, both returning ``(SuffStats, mean
log-likelihood)`` and both bounded in memory by chunking over samples:

* :func:`direct_pass`: log-densities through ``(x − μ_k) P_k`` and second
  moments about the current means, as scikit-learn; accurate in any regime;
* :func:`moment_pass`: one matrix product each way over moment features
  (:mod:`jaxem.gmm.moments`); several times faster, exact in float64, and in
  float32 while :func:`jaxem.gmm.moments.is_accurate` holds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem._chunking import chunk_rows, chunked_sum
from jaxem.gmm import moments
from jaxem.gmm.covariances import get as get_covariance
from jaxem.gmm.density import weighted_log_prob
from jaxem.gmm.params import GMMParams
from jaxem.gmm.steps import SuffStats, shifted_sum


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
        rows: rows per chunk (static); by default about 600k elements of (B, F).

    Returns:
        ``(stats, mean log-likelihood)``; statistics are about ``center``.
    """
    covariance_type = params.covariance_type
    k, d = params.means.shape
    width = moments.n_features_of(covariance_type, d)
    chunk = moments.pass_sums(params, center, moments.natural_weights(params, center))
    rows = rows or chunk_rows(x.shape[0], width + k)
    summed, extra, ll = chunked_sum(chunk, (x, sample_weight), rows)
    nk, sum_x, sum_xx = moments.moments_to_stats(summed, extra, covariance_type, d)
    shift = jnp.broadcast_to(center, (k, d))
    return SuffStats(nk, sum_x, sum_xx, shift, covariance_type), ll / jnp.sum(sample_weight)
