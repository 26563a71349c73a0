"""One chunk of a Gaussian EM pass: the E-step and the M-step's statistics.

Two formulations of the same chunk pass, both returning ``(Moments about the
E-step's means, Σ w log p(x))``:

* :func:`direct_chunk`: log-densities through ``(x − μ_k) P_k`` and second
  moments about the current means, as scikit-learn; accurate in any regime;
* :func:`feature_chunk`: one matrix product each way over the moment features
  ``Φ`` of the chunk about a centre (:mod:`jaxem._src.gmm.moments`; the centre
  may differ from chunk to chunk, :mod:`jaxem._src.gmm.layout`); several
  times faster, exact in float64, and in float32 while the centre is close to
  the components that own the chunk's rows. With ``"auto"`` each chunk takes
  the moment route's E-step, checks the error its responsibilities carry
  (:func:`jaxem._src.gmm.moments.chunk_is_accurate`), and then takes the
  moment route's M-step, or where the error is too large recomputes the chunk
  by the direct route (on the centred data read back from ``Φ``). A chunk that
  is the whole data is first checked at the shares the weights predict, and
  goes straight to the direct route where that fails.

Under ``vmap`` over the parameters only (restarts sharing the data), the moment
route computes the restarts together as one product of width ``R·K`` each way
(about 1.5× faster per restart than ``R`` products of width ``K``), and the
``"auto"`` check is made once for the whole batch (no ``select`` computing
both routes).

:func:`responsibility_stats` is the statistics half of either route, for
responsibilities computed elsewhere (an HMM's state posteriors).

:func:`direct_pass`, :func:`moment_pass`, :func:`feature_cache` and
:func:`cached_moment_pass` are the same passes over a whole array in memory,
for use on their own.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxem._src.chunking import chunk_rows, chunked_sum
from jaxem._src.decisions import batch_decision, element_shapes
from jaxem._src.family import log_weights, mixture_center
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm import moments
from jaxem._src.gmm.moments import MOMENT_CHUNK_ELEMENTS
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.steps import SuffStats, reshift, suff_stats
from jaxem._src.reductions import sum_last

__all__ = [
    "CACHED_CHUNK_ELEMENTS",
    "MOMENT_CHUNK_ELEMENTS",
    "FeatureCache",
    "Moments",
    "cached_moment_pass",
    "direct_chunk",
    "direct_pass",
    "direct_responsibilities",
    "feature_cache",
    "feature_chunk",
    "layout_about_means",
    "layout_logits",
    "layout_pass",
    "layout_responsibilities",
    "layout_sums",
    "moment_pass",
    "pooled_acceptance",
    "responsibility_stats",
]


# A chunk whose weight is at least this share of the data's total weight is the
# whole data (up to rounding of the two sums) for feature_chunk's early check.
WHOLE_DATA_SHARE = 0.999

# Elements of (rows, R·K) per chunk over cached features: the products stream
# the features from memory, so chunks only bound the (rows, R·K) temporaries.
CACHED_CHUNK_ELEMENTS = 4_000_000


class Moments(NamedTuple):
    """Additive statistics of a Gaussian pass about the E-step's means ``μ_k``."""

    nk: jax.Array  # (K,) Σ_n w_n r_nk
    sum_x: jax.Array  # (K, D) Σ_n w_n r_nk (x_n − μ_k)
    sum_xx: jax.Array  # second moments about μ_k, in the covariance type's shape


def direct_chunk(params: GMMParams, x: jax.Array, w: jax.Array) -> tuple[Moments, jax.Array]:
    """E-step and statistics about the current means of rows ``x`` (B, D).

    Computed component-major: the differences ``x_b − μ_k`` as one (K, D, B)
    array, rows last, so that the short axes (K, D) are not the ones XLA:CPU
    vectorises (row-major (B, K, D), as the densities compute them, ran up to
    4× slower per pass below 16 features, about the same from 16:
    experiments/direct_layout.py). The rows and means
    are first centred at the mixture mean (float32 keeps its digits far from
    the origin), then differenced: no cancellation against ``x P_k``.
    """
    module = cov_lib.get(params.covariance_type)
    diff, logits = _direct_logits(params, x)
    resp, log_norm = moments.weighted_softmax(logits, w, axis=0)  # (K, B), (B,)
    stats = Moments(
        jnp.sum(resp, axis=1),
        jnp.einsum("kb,kdb->kd", resp, diff),
        module.difference_second_moments(resp, diff),
    )
    return stats, jnp.sum(w * log_norm)


def _direct_logits(params: GMMParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(x_b − μ_k (K, D, B), log π_k + log N(x_b | μ_k, Σ_k) (K, B))``, the
    differences taken about the mixture mean (:func:`direct_chunk`)."""
    module = cov_lib.get(params.covariance_type)
    d = params.n_features
    center = mixture_center(params)
    diff = (x - center).T[None, :, :] - (params.means - center)[:, :, None]  # (K, D, B)
    maha = module.difference_mahalanobis(diff, params.precisions_cholesky)
    log_det = module.log_det_cholesky(params.precisions_cholesky, d)  # () for tied
    const = log_det - 0.5 * d * math.log(2 * math.pi) + log_weights(params.weights)
    logits = jnp.where((params.weights > 0)[:, None], const[:, None] - 0.5 * maha, -jnp.inf)
    return diff, logits


def direct_responsibilities(
    params: GMMParams, phi: jax.Array, center: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(r (B, K), log p(x) (B,))`` of the rows whose moment features about
    ``center`` are ``Φ`` (B, F), by the direct route (differences from the
    means, accurate in any regime) on the centred rows read back from ``Φ``."""
    centred = _centred(params, center)
    _, logits = _direct_logits(centred, _linear_part(phi, params.n_features))
    resp, log_norm = moments.weighted_softmax(logits, jnp.ones((), logits.dtype), axis=0)
    return resp.T, log_norm


def _centred(params: GMMParams, center: jax.Array) -> GMMParams:
    """``params`` with means relative to ``center``."""
    return GMMParams(
        params.weights,
        params.means - center,
        params.covariances,
        params.precisions_cholesky,
        params.covariance_type,
    )


def _linear_part(phi: jax.Array, n_features: int) -> jax.Array:
    """The centred data ``x − c`` stored in every moment feature layout (of a
    chunk (B, F) or of a layout's chunks (C, B, F))."""
    return phi[..., -1 - n_features : -1]


def _direct_stats(params: GMMParams, resp: jax.Array, x: jax.Array) -> Moments:
    stats = suff_stats(resp, x, covariance_type=params.covariance_type, shift=params.means)
    return Moments(stats.nk, stats.sum_x, stats.sum_xx)


def _moment_features(x, center, covariance_type):
    """``(Φ (N, F), Φᵀ (F, N))``: the moment features of ``x − center``, and
    their transpose built as an array rather than folded into a product as a
    transposed operand: it does not depend on the parameters (hoisted out of
    EM's loop), and XLA:CPU then runs its small-matrix product on it (N =
    10⁵, K = 5, F = 9: 2.0 → 1.5 ms)."""
    phi = moments.features(x - center, covariance_type)
    return phi, jnp.stack([phi[:, f] for f in range(phi.shape[1])])


def _responsibility_moments(params, resp, phi, phi_t, center):
    """Moments about the means from one product ``Φᵀ R``."""
    module = cov_lib.get(params.covariance_type)
    summed = (phi_t @ resp).T
    extra = module.shared_second_moment(phi, sum_last(resp))  # Σ_k r_nk: the rows' weights
    return _about_means(summed, extra, center, params)


def responsibility_stats(
    params: GMMParams,
    resp: jax.Array,
    x: jax.Array,
    center: jax.Array | None,
    formulation: str,
) -> Moments:
    """:class:`Moments` about ``params.means`` of rows ``x`` (N, D) with given
    (weighted) responsibilities ``resp`` (N, K).

    ``formulation``: ``"direct"`` (differences from the means, in chunks of
    rows), ``"moments"`` (one product over the moment features about
    ``center``) or ``"auto"``: the product where :func:`moments.is_accurate`
    holds at the public steps' bound (:func:`moments.step_threshold`: 1e-10
    in float64, every active component within about 670 of its standard
    deviations of the centre), else the direct route. The choice is made
    before either is computed (one ``lax.cond``, differentiable in every
    mode); under ``vmap`` with an unbatched centre, once for the whole batch
    (all accurate or all direct), as in :func:`feature_chunk`.
    """
    if formulation == "direct":
        return _direct_stats(params, resp, x)
    phi, phi_t = _moment_features(x, center, params.covariance_type)
    if formulation == "moments":
        return _responsibility_moments(params, resp, phi, phi_t, center)
    threshold = moments.step_threshold(x.dtype)
    # a decision, not a function of the values: no derivative through it; one
    # for the batch when the centre is shared
    decide = batch_decision(lambda p, c: moments.is_accurate(p, c, threshold), params, center)
    return jax.lax.cond(
        decide,
        lambda: _responsibility_moments(params, resp, phi, phi_t, center),
        lambda: _direct_stats(params, resp, x),
    )


def _direct_from_features(params, phi, w, center, xc=None):
    """:func:`direct_chunk` on the centred rows ``xc`` (B, D) (None: read back
    from ``Φ``), in chunks of the direct pass's size (a layout's chunk of
    7 808 rows at D = K = 32 in one piece: 1M rows 5.8 s a pass, against 2.9 s
    in chunks of 585 rows)."""
    centred = _centred(params, center)
    x = _linear_part(phi, params.n_features) if xc is None else xc
    rows = chunk_rows(x.shape[0], params.means.shape[-2] * params.n_features)
    return chunked_sum(lambda xb, wb: direct_chunk(centred, xb, wb), (x, w), rows)


def _about_means(summed, extra, center, params) -> Moments:
    """``Rᵀ Φ`` (K, F) as statistics about the E-step's means."""
    covariance_type = params.covariance_type
    k, d = params.means.shape
    nk, sum_x, sum_xx = moments.moments_to_stats(summed, extra, covariance_type, d)
    about_center = SuffStats(nk, sum_x, sum_xx, jnp.broadcast_to(center, (k, d)), covariance_type)
    moved = reshift(about_center, params.means)
    return Moments(moved.nk, moved.sum_x, moved.sum_xx)


def _moment_statistics(params, resp, log_norm, phi, w, center):
    """The moment route's M-step statistics from its E-step: one product ``Rᵀ Φ``."""
    extra = cov_lib.get(params.covariance_type).shared_second_moment(phi, w)
    return _about_means(resp.T @ phi, extra, center, params), jnp.sum(w * log_norm)


def _wide_responsibilities(params, phi, w, center, n_batch):
    """:func:`moments.feature_responsibilities` for a batch of parameters (leading
    axis R): the R restarts' logits as one product of width ``R·K``;
    ``(w · r (B, R, K), log p(x) (B, R))``."""
    module = cov_lib.get(params.covariance_type)
    k = params.means.shape[1]
    weights_matrix = jax.vmap(moments.natural_weights, in_axes=(0, None))(params, center)
    wide = jnp.moveaxis(weights_matrix, 0, 1).reshape(phi.shape[1], n_batch * k)
    logits = (phi @ wide).reshape(phi.shape[0], n_batch, k)
    logits = module.feature_logits(logits, phi, params.precisions_cholesky)
    logits = jnp.where(params.weights > 0, logits, -jnp.inf)
    return moments.weighted_softmax(logits, w[:, None], axis=2)


def _wide_statistics(params, resp, log_norm, phi, w, center):
    """:func:`_moment_statistics` of R restarts as one product of width ``R·K``."""
    b, n_batch, k = resp.shape
    summed = (resp.reshape(b, n_batch * k).T @ phi).reshape(n_batch, k, -1)
    extra = cov_lib.get(params.covariance_type).shared_second_moment(phi, w)  # every restart's
    stats = jax.vmap(lambda s, p: _about_means(s, extra, center, p))(summed, params)
    return stats, w @ log_norm


def feature_chunk(
    params: GMMParams,
    phi: jax.Array,
    w: jax.Array,
    center: jax.Array,
    formulation: str,
    total: jax.Array | None = None,
    budget: moments.Budget | None = None,
    xc: jax.Array | None = None,
    report: bool = False,
):
    """The chunk pass over moment features ``Φ`` (B, F) of ``x − center``:
    ``(Moments, Σ w log p)``, and with a ``budget`` that pair and the budget
    after the chunk.

    ``formulation``: ``"moments"`` (always the matrix products) or ``"auto"``
    (the E-step's product, then :func:`moments.chunk_is_accurate` on the
    responsibilities it gave, then the M-step's product where it holds and the
    direct route where it fails); see the module docstring for the batched case.

    ``budget`` (optional, ``"auto"`` only): what the chunks of the same pass
    before this one charged (:class:`moments.Budget`); the chunk is checked by
    :func:`moments.pooled_check` against what is left of the pass's budget
    rather than against its own share alone.

    ``xc`` (optional): the centred rows ``Φ`` was built from (features built
    in the pass), which the direct route then reads instead of ``Φ``'s
    linear part; see ``routes`` below.

    ``total`` (optional, ``"auto"`` only, not with ``budget``): the data's
    total weight. A chunk that holds all of it (its rows are the whole data:
    its ``n_kc`` will be the components' ``n_k``, close to ``π_k Σ w``) is
    first checked at those expected shares, before its E-step, and where that
    check fails goes straight to the direct route: no moment E-step whose
    responsibilities would only fail the check (well-separated data about one
    centre). Where it holds the chunk continues as above, so the route taken
    is never less accurate; only the speed depends on the estimate.

    ``report`` (static, ``"auto"`` with ``total`` only): where the check fails,
    zeros instead of the direct route, and ``((Moments, Σ w log p), accurate)``
    returned, ``accurate`` one decision for a batch of restarts (unbatched):
    the caller takes another route there, outside this function (a layout's
    chunks, each about its own centre, for ``Φ`` of all rows about one).
    """
    if budget is not None and (formulation != "auto" or total is not None):
        raise ValueError("a budget needs formulation='auto' and no total")
    if report and (formulation != "auto" or total is None or budget is not None or xc is not None):
        raise ValueError("report needs formulation='auto', a total, no budget and no xc")
    pooled = budget is not None
    if not pooled:
        budget = ()  # a leafless placeholder through the custom rules

    def hopeless(p, w, c, total, distances):
        """() the chunk is the whole data and fails the check at the expected shares."""
        weight = jnp.sum(w)
        expected = moments.chunk_is_accurate(p, p.weights * weight, w, c, distances=distances)
        return (weight >= WHOLE_DATA_SHARE * total) & ~expected

    def checked(e_step, skip, w):
        """``e_step() -> (resp, log p(x), accurate, ...)``, or zeros (not
        accurate) where ``skip``: built from the rows' weights, so that under
        ``shard_map`` they vary over the data's axis as the E-step's outputs do."""
        if skip is None:
            return e_step()
        zero = 0 * w[0]

        def skipped():
            shapes = jax.eval_shape(e_step)
            return jax.tree.map(lambda s: jnp.broadcast_to(zero.astype(s.dtype), s.shape), shapes)

        return jax.lax.cond(skip, skipped, e_step)

    def check(p, nk, w, c, b, distances):
        """``(accurate, charge)``: against the pooled budget or the chunk's own."""
        if pooled:
            return moments.pooled_check(p, nk, b, distances)
        return moments.chunk_is_accurate(p, nk, w, c, distances=distances), ()

    def routes(accurate, moment, direct, phi, xc):
        """``moment()`` where ``accurate``, else ``direct(Φ or None)``. Given
        the rows ``xc``, the moment route's product is taken whichever route
        is kept and ``Φ`` does not enter the ``cond``: XLA:CPU laid out
        features built in the pass feature-major for the E-step's product
        and copied them row-major for a product inside the ``cond`` (1M × 32,
        K = 32: 0.4 s a pass)."""
        if xc is None:
            return jax.lax.cond(accurate, moment, lambda: direct(phi))
        taken = moment()
        return jax.lax.cond(accurate, lambda: taken, lambda: direct(None))

    def other_route(p, phi, w, c, xc):
        """Where the check fails: the direct route, or zeros for ``report``."""
        if report:
            shapes = jax.eval_shape(lambda: _direct_from_features(p, phi, w, c, xc))
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return _direct_from_features(p, phi, w, c, xc)

    def after(b, nk, charged, accepted):
        if report:
            return accepted
        return moments.charge(b, nk, charged, accepted) if pooled else ()

    def single(p, phi, w, c, total, b, xc):
        if formulation == "moments":
            resp, log_norm = moments.feature_responsibilities(p, phi, w, c)
            return _moment_statistics(p, resp, log_norm, phi, w, c), b

        distances = moments.center_distances(p, c)  # for both checks

        def e_step():
            resp, log_norm = moments.feature_responsibilities(p, phi, w, c)
            nk = jnp.sum(resp, axis=0)
            accurate, charged = check(p, nk, w, c, b, distances)
            return resp, log_norm, accurate, nk, charged

        skip = None if total is None else hopeless(p, w, c, total, distances)
        resp, log_norm, accurate, nk, charged = checked(e_step, skip, w)
        out = routes(
            accurate,
            lambda: _moment_statistics(p, resp, log_norm, phi, w, c),
            lambda phi: other_route(p, phi, w, c, xc),
            phi,
            xc,
        )
        return out, after(b, nk, charged, accurate)

    @jax.custom_batching.custom_vmap
    def run(p, phi, w, c, total, b, xc):
        return single(p, phi, w, c, total, b, xc)

    @run.def_vmap
    def rule(axis_size, in_batched, p, phi, w, c, total, b, xc):
        p_batched, phi_b, w_b, c_b, total_b, b_batched, xc_b = in_batched
        rest = (phi_b, w_b, c_b, total_b, xc_b)
        only_params = all(jax.tree.leaves(p_batched)) and not any(jax.tree.leaves(rest))
        if not only_params and report:
            # the data vary over the batch: no one decision for it, so the
            # caller's other route, for every element (its ``cond`` with a
            # batched predicate would compute both routes, and the other may
            # hold batching rules that cannot run inside such a ``select``)
            shapes = jax.eval_shape(
                single,
                *element_shapes((p, phi, w, c, total, b, xc), tuple(in_batched)),
            )
            stats = jax.tree.map(lambda s: jnp.zeros((axis_size, *s.shape), s.dtype), shapes[0])
            batched = jax.tree.map(lambda _: True, stats)
            return (stats, jnp.asarray(False)), (batched, False)
        if not only_params:
            in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
            out = jax.vmap(single, in_axes=in_axes)(p, phi, w, c, total, b, xc)
            return out, jax.tree.map(lambda _: True, out)
        # a budget follows its restarts' parameters (batched, or broadcast to them)
        b = jax.tree.map(
            lambda a, batched: a if batched else jnp.broadcast_to(a, (axis_size, *a.shape)),
            b,
            b_batched,
        )
        if formulation == "moments":
            resp, log_norm = _wide_responsibilities(p, phi, w, c, axis_size)
            out = (_wide_statistics(p, resp, log_norm, phi, w, c), b)
            return out, jax.tree.map(lambda _: True, out)

        distances = jax.vmap(moments.center_distances, in_axes=(0, None))(p, c)

        def e_step():  # one decision for the batch
            resp, log_norm = _wide_responsibilities(p, phi, w, c, axis_size)
            nk = jnp.sum(resp, axis=0)
            each = jax.vmap(check, in_axes=(0, 0, None, None, 0, 0))
            accurate, charged = each(p, nk, w, c, b, distances)
            return resp, log_norm, jnp.all(accurate), nk, charged

        skip = None
        if total is not None:
            each = jax.vmap(hopeless, in_axes=(0, None, None, None, 0))
            skip = jnp.any(each(p, w, c, total, distances))
        resp, log_norm, accurate, nk, charged = checked(e_step, skip, w)
        direct = jax.vmap(other_route, in_axes=(0, None, None, None, None))
        stats = routes(
            accurate,
            lambda: _wide_statistics(p, resp, log_norm, phi, w, c),
            lambda phi: direct(p, phi, w, c, xc),
            phi,
            xc,
        )
        if report:  # the batch's one decision, unbatched
            return (stats, accurate), (jax.tree.map(lambda _: True, stats), False)
        new = jax.vmap(after, in_axes=(0, 0, 0, None))(b, nk, charged, accurate)
        out = (stats, new)
        return out, jax.tree.map(lambda _: True, out)

    # JAX differentiates a custom_vmap as one call of primals and tangents whose
    # primal outputs partial evaluation cannot separate (jax.linearize, and with
    # it reverse mode, failed on an unbatched pass): derivatives are single's.
    differentiated = jax.custom_jvp(run)
    differentiated.defjvp(lambda primals, tangents: jax.jvp(single, primals, tangents))
    out, budget = differentiated(params, phi, w, center, total, budget, xc)
    return (out, budget) if pooled or report else out


def layout_logits(params: GMMParams, phi: jax.Array, centers: jax.Array) -> jax.Array:
    """(C, B, K) log π_k + log N(x | μ_k, Σ_k) of every row of a layout from its
    moment features ``Φ`` (C, B, F), each chunk's about its own centre
    ``centers`` (C, D) (``−inf`` for inactive components), as
    :func:`moments.feature_responsibilities` computes them chunk by chunk:
    one product of all rows' features with the quadratic rows of ``W(c)``
    (the same for every centre), plus each chunk's centred rows times its
    linear rows (batched over the chunks) and its constants."""
    module = cov_lib.get(params.covariance_type)
    n_chunks, rows, width = phi.shape
    d = params.n_features
    k = params.means.shape[0]
    flat = phi.reshape(n_chunks * rows, width)
    y = _linear_part(phi, d)  # (C, B, D) the rows about their centre
    pc = params.precisions_cholesky
    quadratic, _ = module.natural_weights(pc, params.means)
    offsets = params.means[None] - centers[:, None, :]  # (C, K, D) μ_k − c
    linear = jax.vmap(lambda m: module.natural_weights(pc, m)[1])(offsets)  # (C, K, D)
    log_det = module.log_det_cholesky(pc, d)
    const = -0.5 * jnp.sum(linear * offsets, axis=2) + log_det - 0.5 * d * math.log(2 * math.pi)
    const = jnp.where(params.weights > 0, const + log_weights(params.weights), 0)
    logits = jnp.einsum("cbd,ckd->cbk", y, linear) + const[:, None, :]
    if quadratic:  # tied: no quadratic features (feature_logits adds the shared term)
        shared = jnp.concatenate([*quadratic, jnp.zeros((k, d + 1), params.dtype)], axis=1).T
        logits = logits + (flat @ shared).reshape(n_chunks, rows, k)
    logits = module.feature_logits(logits.reshape(-1, k), flat, pc).reshape(n_chunks, rows, k)
    return jnp.where(params.weights > 0, logits, -jnp.inf)


def layout_responsibilities(
    params: GMMParams, phi: jax.Array, w: jax.Array, centers: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(w · r (C, B, K), log p(x) (C, B))`` of a layout from
    :func:`layout_logits`, the softmax taken over (rows, K): over (C, B, K)
    the fit's iteration at 100 000 × 16, K = 16 took 15.4–17.3 ms, not
    10.9–11.7."""
    logits = layout_logits(params, phi, centers)
    flat = logits.reshape(-1, logits.shape[-1])
    resp, log_norm = moments.weighted_softmax(flat, w.reshape(-1), axis=1)
    return resp.reshape(logits.shape), log_norm.reshape(w.shape)


def layout_sums(resp: jax.Array, phi: jax.Array, covariance_type: str, n_features: int):
    """``(n_kc (C, K), Σ_c r (x − c) (C, K, D), second moments)`` of weighted
    responsibilities ``resp`` (C, B, K) over a layout's features ``Φ``
    (C, B, F): the second moments of every row about its own chunk's centre,
    summed over all rows in one product (in the covariance type's shape),
    which is all :func:`layout_about_means` needs; the first moments batched
    over the chunks."""
    module = cov_lib.get(covariance_type)
    n_chunks, rows, width = phi.shape
    d = n_features
    flat = phi.reshape(n_chunks * rows, width)
    r = resp.reshape(n_chunks * rows, -1)
    summed = r.T @ flat
    extra = module.shared_second_moment(flat, jnp.sum(r, axis=1))  # Σ_k r_nk: the rows' weights
    _, _, second = moments.moments_to_stats(summed, extra, covariance_type, d)
    first = jnp.einsum("cbk,cbd->ckd", resp, _linear_part(phi, d))
    return jnp.sum(resp, axis=1), first, second


def layout_about_means(sums, centers: jax.Array, means: jax.Array, covariance_type: str) -> Moments:
    """:class:`Moments` about ``means`` (K, D) from :func:`layout_sums` of a
    layout whose chunks lie about ``centers`` (C, D): each chunk's part moved
    from its centre (:func:`~jaxem._src.gmm.steps.reshift`, affine in the
    second moments), summed (the covariance type's ``summed_reshift``)."""
    module = cov_lib.get(covariance_type)
    nk_c, first, second = sums
    delta = centers[:, None, :] - means[None]  # (C, K, D) c − μ_k
    return Moments(
        jnp.sum(nk_c, axis=0),
        jnp.sum(first + nk_c[..., None] * delta, axis=0),
        second + module.summed_reshift(first, nk_c, delta),
    )


def pooled_acceptance(
    params: GMMParams, nk_c: jax.Array, w: jax.Array, centers: jax.Array
) -> jax.Array:
    """(C,) whether each chunk of a layout (weights ``w`` (C, B), centres
    (C, D), ``n_kc`` (C, K)) passes :func:`moments.pooled_check`, the chunks in
    order sharing the pass's budget; one decision per chunk for a batch of
    parameters (a chunk passes where it passes for every element).

    Where every chunk passes on the bound's first part alone
    (:func:`moments.all_within_first_part`, for every element of a batch),
    every chunk is accepted without the loop over them: at 100 000 × 16,
    K = 16, 209 chunks, the loop took about 1 ms of an 11.7 ms pass."""

    def at_once(varying, shared):
        (p, nk_c), (w, centers) = varying, shared
        return moments.all_within_first_part(p, nk_c, jnp.sum(w), centers)

    def in_order(varying, shared):
        (p, nk_c), (w, centers) = varying, shared
        distances = jax.vmap(moments.center_distances, in_axes=(None, 0))(p, centers)

        def step(budget, chunk):
            n, dist = chunk
            ok, charged = moments.pooled_check(p, n, budget, dist)
            return moments.charge(budget, n, charged, ok), ok

        return jax.lax.scan(step, moments.budget(p, jnp.sum(w)), (nk_c, distances))[1]

    n_chunks = nk_c.shape[-2]
    return jax.lax.cond(
        batch_decision(at_once, (params, nk_c), (w, centers)),
        lambda: jnp.ones(n_chunks, bool),
        lambda: batch_decision(in_order, (params, nk_c), (w, centers)),
    )


def layout_pass(
    params: GMMParams,
    phi: jax.Array,
    w: jax.Array,
    centers: jax.Array,
    formulation: str,
) -> tuple[Moments, jax.Array]:
    """The pass over all the chunks of a layout at once: ``(Moments, Σ w log p)``
    from moment features ``Φ`` (C, B, F), each chunk's about its own centre
    ``centers`` (C, D), and weights ``w`` (C, B).

    The arithmetic of :func:`feature_chunk` on every chunk, without a loop
    over them (a loop copies each chunk's features out of the layout for its
    products and runs some thirty small kernels a chunk). A chunk's weights
    ``W(c)`` differ from chunk to chunk only in their linear and constant rows
    (``Λ_k (μ_k − c)`` and the constant; the quadratic rows are ``−½ Λ_k`` for
    every centre), so the E-step's logits are one product of all rows'
    features with the quadratic rows, plus each chunk's centred rows times its
    linear rows (a product batched over the chunks, D wide) and its
    constants. The M-step sums ``Rᵀ Φ`` over all rows in one product: its
    quadratic sums are each row's about its own chunk's centre, which is all
    the move to the components' means (:func:`~jaxem._src.gmm.steps.reshift`,
    affine in them) needs, with each chunk's ``Σ r (x − c)`` and ``n_kc``
    (batched over the chunks, D wide). With ``"auto"`` the chunks are checked
    in order against the pass's budget (:func:`moments.pooled_check`, as the
    loop checks them) on the responsibilities the E-step gave them; under
    ``vmap`` over parameters only, a chunk passes for the batch where it
    passes for every element. The chunks that fail drop out of both products
    and are recomputed by the direct route, one after another.

    Measured, a fit of 100 000 × 16, K = 16, full covariances, float32, per
    EM iteration from one start (2 CPU cores; the loop / this, with
    :data:`~jaxem._src.gmm.layout.FLAT_CHUNKS_PER_GROUP` chunks a group):
    clusters 3σ apart 19.0 → 11.4 ms, 10σ apart 17.5 → 11.2–11.9 ms.
    """
    n_chunks = phi.shape[0]
    resp, log_norm = layout_responsibilities(params, phi, w, centers)
    if formulation == "auto":
        accepted = pooled_acceptance(params, jnp.sum(resp, axis=1), w, centers)
    else:
        accepted = jnp.ones(n_chunks, bool)
    keep = accepted.astype(params.dtype)
    sums = layout_sums(resp * keep[:, None, None], phi, params.covariance_type, params.n_features)
    stats = layout_about_means(sums, centers, params.means, params.covariance_type)
    ll_sum = jnp.sum(w * log_norm * keep[:, None])
    if formulation != "auto":
        return stats, ll_sum

    # the chunks that failed their check, by the direct route
    order = jnp.nonzero(~accepted, size=n_chunks, fill_value=0)[0]

    def direct(i, total):
        c = order[i]
        out = _direct_from_features(params, phi[c], w[c], centers[c])
        return jax.tree.map(jnp.add, total, out)

    return jax.lax.fori_loop(0, jnp.sum(~accepted), direct, (stats, ll_sum))


# ------------------------------------------------------------- whole-array passes


def _as_suff_stats(stats: Moments, params: GMMParams) -> SuffStats:
    return SuffStats(stats.nk, stats.sum_x, stats.sum_xx, params.means, params.covariance_type)


def direct_pass(
    params: GMMParams, x: jax.Array, sample_weight: jax.Array, *, rows: int | None = None
) -> tuple[SuffStats, jax.Array]:
    """E-step and statistics about the current means over all of ``x``, chunk by chunk.

    Args:
        params: current parameters.
        x: (N, D) data.
        sample_weight: (N,) non-negative weights (ones for plain EM).
        rows: rows per chunk (static); by default about 600k elements of (B, K, D).

    Returns:
        ``(stats, mean log-likelihood)``, the mean weighted by ``sample_weight``.
    """
    k, d = params.means.shape
    rows = rows or chunk_rows(x.shape[0], k * d)
    stats, ll = chunked_sum(lambda xb, wb: direct_chunk(params, xb, wb), (x, sample_weight), rows)
    return _as_suff_stats(stats, params), ll / jnp.sum(sample_weight)


def moment_pass(
    params: GMMParams,
    x: jax.Array,
    sample_weight: jax.Array,
    center: jax.Array,
    *,
    rows: int | None = None,
) -> tuple[SuffStats, jax.Array]:
    """The moment formulation over all of ``x``, its features built chunk by chunk.

    Args:
        params: current parameters.
        x: (N, D) data.
        sample_weight: (N,) non-negative weights.
        center: (D,) the centre ``c`` of the features (the data mean is best).
        rows: rows per chunk (static); by default :data:`MOMENT_CHUNK_ELEMENTS`
            elements of (B, F + K).

    Returns:
        ``(stats about the current means, mean log-likelihood)``.
    """
    covariance_type = params.covariance_type
    k, d = params.means.shape
    width = moments.n_features_of(covariance_type, d)
    rows = rows or chunk_rows(x.shape[0], width + k, target=MOMENT_CHUNK_ELEMENTS)

    def chunk(xb, wb):
        phi = moments.features(xb - center, covariance_type)
        return feature_chunk(params, phi, wb, center, "moments")

    stats, ll = chunked_sum(chunk, (x, sample_weight), rows)
    return _as_suff_stats(stats, params), ll / jnp.sum(sample_weight)


class FeatureCache(NamedTuple):
    """Moment features of the data, built once (:func:`feature_cache`)."""

    features: jax.Array  # (N, F)
    center: jax.Array  # (D,)


def feature_cache(
    x: jax.Array, sample_weight: jax.Array, center: jax.Array, covariance_type: str
) -> FeatureCache:
    """The (N, F) moment features of ``x − center``."""
    return FeatureCache(moments.features(x - center, covariance_type), center)


def cached_moment_pass(
    params: GMMParams, cache: FeatureCache, sample_weight: jax.Array, *, rows: int | None = None
) -> tuple[SuffStats, jax.Array]:
    """:func:`moment_pass` over features built once: two matrix products.

    Under ``vmap`` over the parameters only, the restarts are computed as one
    product of width ``R·K`` each way.
    """
    phi = cache.features
    rows = rows or chunk_rows(phi.shape[0], params.n_components, target=CACHED_CHUNK_ELEMENTS)

    def chunk(pb, wb):
        return feature_chunk(params, pb, wb, cache.center, "moments")

    stats, ll = chunked_sum(chunk, (phi, sample_weight), rows)
    return _as_suff_stats(stats, params), ll / jnp.sum(sample_weight)
