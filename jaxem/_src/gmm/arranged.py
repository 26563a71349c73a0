"""Data arranged once for fast composable EM steps (:func:`arrange`).

``jaxem.em(gmm.e_step, gmm.m_step, params, x)`` on a plain (N, D) array runs
the moment formulation about the data's mean where it is accurate and the
direct formulation (differences from each mean, several times slower) where it
is not: on well-separated clusters, always. :func:`jaxem.gmm.fit` instead
orders the rows once into spatially tight chunks, each with the moment
features about its own centre (:mod:`jaxem._src.gmm.layout`), so that the fast
products stay accurate whatever the separation. :func:`arrange` gives the
composable steps the same data: ``gmm.e_step(params, data)`` and
``gmm.m_step(resp, data)`` on an :class:`ArrangedData` run the fit's chunk
products, so a loop written with them iterates at about the speed of
:func:`jaxem.gmm.fit`'s own loop.

The E-step checks each chunk's error as the fit does, the chunks in order
sharing one budget (:func:`jaxem._src.gmm.moments.pooled_check`), and
recomputes a chunk that fails by the direct route; the M-step moves each chunk's statistics from its
centre to the new means, checks the same bound at the new parameters, and
recomputes the statistics of any chunk that fails by differences from the new
means. Under ``vmap`` over the parameters only (restarts on the same data) each
decision is made once for the whole batch, so that no route is computed for
nothing.

Where the fit keeps them (rows × K ≥
:data:`~jaxem._src.gmm.family.WHOLE_PASS_MIN_ELEMENTS`), :func:`arrange` also
keeps the rows' features about the data's mean, in the chunks' order, and each
step first tries one product over all of them, as the fit's passes do
(:meth:`~jaxem._src.gmm.family.GaussianFamily.whole_pass`): the E-step where the
whole-data check holds at the shares ``π_k Σ w`` and then at its own
responsibilities, the M-step where it holds at the new parameters; the chunks
otherwise. The M-step sees only the responsibilities, so it first estimates
from the chunks' masses, centres and spreads whether the check can hold, and
computes the product over all rows only then. Where the data vary over a
``vmap`` batch every element takes the chunks.

The chunks too are computed all at once, as the fit's pass computes them
(:func:`~jaxem._src.gmm.passes.layout_logits`,
:func:`~jaxem._src.gmm.passes.layout_sums`): no loop over them. 100 000 × 16,
K = 16, float32, a step pair (`experiments/benchmark.py`'s "arranged" rows,
results/benchmark_sweep_2core_arranged_flat.md): 8.65, 8.78, 13.9, 13.3 and
8.75 ms at 0.3σ, 1σ, 3σ, 10σ apart and 1σ at an offset of 1000, against the
fit's iterations of 6.86, 6.31, 12.4, 12.1 and 6.77 ms (1.10–1.39×), on the
fit's finer layout (:func:`~jaxem._src.gmm.family.layout_shape_of`; 1.6–1.8×
on overlapping clusters on the loop's, with 26% padding); with a loop over
the chunks 21.3–23.1 ms tens of σ apart.

Responsibilities on arranged data are (C, B, K), in the chunks' order:
:meth:`ArrangedData.responsibilities` puts them back in the rows' order.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.decisions import batch_decision
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm import family as gmm_family
from jaxem._src.gmm import layout as layout_lib
from jaxem._src.gmm import moments, passes
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.prior import Prior
from jaxem._src.gmm.steps import SuffStats, maximize, reshift, suff_stats
from jaxem._src.validation import as_data, check_sample_weight, check_scalar

__all__ = ["ArrangedData", "arrange"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ArrangedData:
    """Rows of ``x`` in ``C`` chunks of ``B`` rows with their moment features
    (:func:`arrange`). A pytree: pass it through ``jit``, ``vmap`` and
    :func:`jaxem.em` like the array it stands for."""

    features: jax.Array  # (C, B, F) moment features of each row about its chunk's centre
    weights: jax.Array  # (C, B) sample weights, 0 for padding
    centers: jax.Array  # (C, D) each chunk's centre
    rows: jax.Array  # (C, B) int32: the row of x in each slot, n_samples for padding
    covariance_type: str = dataclasses.field(metadata=dict(static=True))
    n_samples: int = dataclasses.field(metadata=dict(static=True))
    # (C, B, F) the same rows' moment features about ``center`` (D,), the data's
    # weighted mean, where the fit would keep them (None otherwise): the steps
    # try one pass over all of them first, as the fit's passes do
    whole: jax.Array | None = None
    center: jax.Array | None = None
    # (C,) each chunk's mean squared distance of its rows from its centre (with
    # ``whole``): the M-step's estimate of whether the pass over all rows can hold
    spread: jax.Array | None = None

    @property
    def n_features(self) -> int:
        return self.centers.shape[-1]

    @property
    def dtype(self):
        return self.features.dtype

    def responsibilities(self, resp: ArrayLike) -> jax.Array:
        """(N, K) the chunks' responsibilities (C, B, K) in the rows' order."""
        resp = jnp.asarray(resp)
        if resp.shape[:2] != self.rows.shape or resp.ndim != 3:
            raise ValueError(
                f"resp must have shape (chunks, rows per chunk, K) = {(*self.rows.shape, 'K')} "
                f"(gmm.e_step of this ArrangedData); got {resp.shape}"
            )
        k = resp.shape[-1]
        out = jnp.zeros((self.n_samples, k), resp.dtype)
        return out.at[self.rows.reshape(-1)].set(resp.reshape(-1, k), mode="drop")


def arrange(
    x: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    sample_weight: ArrayLike | None = None,
) -> ArrangedData:
    """Data ``x`` arranged for fast :func:`~jaxem.gmm.e_step` and
    :func:`~jaxem.gmm.m_step`, as :func:`jaxem.gmm.fit` arranges it.

    With at least 8 192 rows (:data:`jaxem._src.gmm.layout.LAYOUT_MIN_ROWS`)
    the rows are grouped into about ``max(16, K)`` spatially tight groups,
    each padded with rows of weight zero to whole chunks; smaller data is one
    chunk about its mean. Each chunk keeps the moment features of its rows
    about its own centre, so the steps' matrix products stay accurate in
    float32 however far apart the clusters lie (module docstring). With
    rows × K ≥ :data:`~jaxem._src.gmm.family.WHOLE_PASS_MIN_ELEMENTS` it also
    keeps the rows' features about the data's mean (twice the memory), which the
    steps use where the whole-data check holds. Costs a few EM iterations;
    arrange once, iterate many times.

    The sample weights are part of the arranged data: ``m_step`` weights the
    statistics by them and ``e_step`` reports the weighted mean log-likelihood.

    Args:
        x: (N, D) data.
        n_components: K, the number of components the data will be fitted
            with (static; sets the number of groups).
        covariance_type: the covariance type (or mclust model) of the
            parameters the steps will see (static: it sets the features).
        sample_weight: optional (N,) non-negative sample weights.

    Returns:
        :class:`ArrangedData`.

    Example:
        >>> import jax, jaxem
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (500, 2))
        >>> data = gmm.arrange(x, 2)
        >>> start = jaxem.gmm.fit(jax.random.key(1), x, 2, max_iter=1).params
        >>> result = jaxem.em(gmm.e_step, gmm.m_step, start, data, max_iter=50)
        >>> resp, ll = gmm.e_step(result.params, data)
        >>> data.responsibilities(resp).shape
        (500, 2)
    """
    x = as_data(x)
    covariance_type = cov_lib.check_covariance_type(covariance_type)
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise TypeError(f"n_components must be an int; got {n_components!r}")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1; got {n_components}")
    w = check_sample_weight(sample_weight, x)
    if w is None:
        w = jnp.ones(x.shape[0], x.dtype)
    n = x.shape[0]
    layout_shape = gmm_family.layout_shape_of(n, int(n_components), features=True)
    shape = layout_shape or (1, 1, n)
    rows_k = n * int(n_components)
    whole = layout_shape is not None and rows_k >= gmm_family.WHOLE_PASS_MIN_ELEMENTS
    built, center, features, spread = _build(
        x, w, covariance_type=covariance_type, shape=shape, whole=whole
    )
    return ArrangedData(
        built.features, built.weights, built.centers, built.rows, covariance_type, n,
        features, center, spread,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("covariance_type", "shape", "whole"))
def _build(x, w, *, covariance_type, shape, whole):
    built = layout_lib.build(x, w, covariance_type, shape)
    if not whole:
        return built, None, None, None
    summary = gmm_family.gaussian_summary(x, w, x[0])
    center = gmm_family.gaussian_context(summary, x[0]).center  # the fit's centre
    taken = x[jnp.minimum(built.rows, x.shape[0] - 1)]  # (C, B, D); padding: any row, weight 0
    features = moments.features((taken - center).reshape(-1, x.shape[1]), covariance_type)
    y2 = jnp.sum(jnp.square(taken - built.centers[:, None, :]), axis=-1)  # (C, B)
    count = jnp.sum(built.weights, axis=1)
    spread = jnp.sum(built.weights * y2, axis=1) / jnp.where(count > 0, count, 1)
    return built, center, features.reshape(*built.rows.shape, -1), spread


# ----------------------------------------------------------------- the steps


def _check_type(covariance_type: str, data: ArrangedData, what: str) -> None:
    if cov_lib.check_covariance_type(covariance_type) != data.covariance_type:
        raise ValueError(
            f"{what} covariance type {covariance_type!r} does not match the data, arranged "
            f"for {data.covariance_type!r} (gmm.arrange(..., covariance_type=...))"
        )


def e_step(params: GMMParams, data: ArrangedData) -> tuple[jax.Array, jax.Array]:
    """:func:`jaxem.gmm.e_step` on arranged data: ``(resp (C, B, K), the
    weighted mean log-likelihood)``; padding rows have zero responsibilities."""
    _check_type(params.covariance_type, data, "the parameters'")
    if params.n_features != data.n_features:
        raise ValueError(
            f"the parameters have {params.n_features} features and the data {data.n_features}"
        )
    return _e_step(params, data)


def _whole_is_accurate(params: GMMParams, nk: jax.Array, data: ArrangedData) -> jax.Array:
    """() the whole-data check of the moment route about ``data.center`` at
    shares ``nk`` (K,), one decision for a batch of parameters."""

    def accurate(p, d):
        (p, nk), (w, center) = (p, d)
        return moments.chunk_is_accurate(p, nk, w, center)

    # where the data vary over a vmap batch, the chunks for every element: no one
    # decision serves the batch, and a batched predicate would compute both routes
    shared = (data.weights.reshape(-1), data.center)
    return batch_decision(accurate, (params, nk), shared, if_shared_varies=False)


def _whole_m_step_may_hold(resp: jax.Array, data: ArrangedData) -> jax.Array:
    """() an estimate, before the M-step's product, of whether the whole-data
    check can hold at the new parameters: each component's mean and trace from
    the chunks' masses ``n_kc``, centres and spreads, its ``ρ`` about the data's
    mean as if it were isotropic (``D ‖μ − c̄‖² / tr Σ``). Only speed depends on
    it: where it says no, the chunks' M-step; where it says yes, the product and
    then the check itself. 100 000 × 16, K = 16, after five EM iterations: the
    largest ``ε ρ`` it estimates 1.9e-7 on overlapping clusters, 6.2e-5 ten σ
    apart (the bound: 2e-5)."""

    def may_hold(r, d):
        weights, centers, spread, center = d
        nk_c = jnp.einsum("cb,cbk->ck", weights, r)
        nk = jnp.sum(nk_c, axis=0)
        safe = jnp.where(nk > 0, nk, 1)
        means = (nk_c.T @ centers) / safe[:, None]
        apart = jnp.sum(jnp.square(centers[None, :, :] - means[:, None, :]), axis=-1)  # (K, C)
        trace = (jnp.einsum("ck,kc->k", nk_c, apart) + nk_c.T @ spread) / safe
        d_ = centers.shape[-1]
        rho = d_ * jnp.sum(jnp.square(means - center), axis=-1) / jnp.maximum(trace, 1e-30)
        eps = jnp.finfo(r.dtype).eps
        return jnp.all((nk == 0) | (eps * rho <= moments.ACCURACY_THRESHOLD))

    shared = (data.weights, data.centers, data.spread, data.center)
    return batch_decision(may_hold, resp, shared, if_shared_varies=False)


@jax.jit
def _e_step(params: GMMParams, data: ArrangedData):
    if data.whole is None:
        resp, log_norm = _chunk_responsibilities(params, data)
    else:
        resp, log_norm = _whole_responsibilities(params, data)
    valid = data.rows < data.n_samples
    resp = jnp.where(valid[..., None], resp, 0)
    return resp, jnp.sum(data.weights * log_norm) / jnp.sum(data.weights)


def _whole_responsibilities(params: GMMParams, data: ArrangedData):
    """The moment route over the features of all rows about the data's mean
    where the whole-data check holds (at the shares ``π_k Σ w`` first, then at
    the responsibilities' own), else the chunks' (:func:`_chunk_responsibilities`),
    as the fit's pass decides."""
    c, b, f = data.whole.shape
    phi, w = data.whole.reshape(c * b, f), data.weights.reshape(-1)
    total = jnp.sum(w)

    def attempt():
        ones = jnp.ones_like(w)  # unweighted responsibilities, as the chunks give them
        resp, log_norm = moments.feature_responsibilities(params, phi, ones, data.center)
        return resp, log_norm, _whole_is_accurate(params, w @ resp, data)

    def skipped():
        shapes = jax.eval_shape(attempt)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    expected = _whole_is_accurate(params, params.weights * total, data)
    resp, log_norm, ok = jax.lax.cond(expected, attempt, skipped)
    return jax.lax.cond(
        ok,
        lambda: (resp.reshape(c, b, -1), log_norm.reshape(c, b)),
        lambda: _chunk_responsibilities(params, data),
    )


def _chunk_responsibilities(params: GMMParams, data: ArrangedData):
    # every chunk at once, each about its own centre, unweighted
    ones = jnp.ones_like(data.weights)
    resp, log_norm = passes.layout_responsibilities(params, data.features, ones, data.centers)

    # the chunks share one accuracy budget, as in gmm.fit's pass
    # (moments.pooled_check); one decision per chunk for a batch of parameters
    nk_c = jnp.einsum("cb,cbk->ck", data.weights, resp)
    ok = passes.pooled_acceptance(params, nk_c, data.weights, data.centers)  # (C,)

    def recomputed():
        def chunk(item):
            ok_c, resp, log_norm, phi, center = item
            return jax.lax.cond(
                ok_c,
                lambda: (resp, log_norm),
                lambda: passes.direct_responsibilities(params, phi, center),
            )

        return jax.lax.map(chunk, (ok, resp, log_norm, data.features, data.centers))

    return jax.lax.cond(jnp.all(ok), lambda: (resp, log_norm), recomputed)


def m_step(
    resp: ArrayLike,
    data: ArrangedData,
    *,
    covariance_type: str | None,
    reg_covar: ArrayLike,
    prior: Prior | None,
) -> GMMParams:
    """:func:`jaxem.gmm.m_step` on arranged data (``resp`` as :func:`e_step`
    gives them)."""
    if covariance_type is not None:
        _check_type(covariance_type, data, "m_step's")
    check_scalar("reg_covar", reg_covar)
    resp = jnp.asarray(resp, data.dtype)
    if resp.ndim != 3 or resp.shape[:2] != data.rows.shape:
        raise ValueError(
            f"resp must have shape (chunks, rows per chunk, K) = {(*data.rows.shape, 'K')} "
            f"(gmm.e_step of the same ArrangedData); got {resp.shape}"
        )
    return _m_step(resp, data, reg_covar, prior)


@jax.jit
def _m_step(resp, data: ArrangedData, reg_covar, prior) -> GMMParams:
    if data.whole is None:
        return _chunk_m_step(resp, data, reg_covar, prior)
    return _whole_m_step(resp, data, reg_covar, prior)


def _whole_m_step(resp, data: ArrangedData, reg_covar, prior) -> GMMParams:
    """The statistics as one product over the features of all rows about the
    data's mean, moved to the new means, where the whole-data check holds at
    the new parameters; else the chunks' (:func:`_chunk_m_step`). The product
    only where :func:`_whole_m_step_may_hold` estimates that the check can hold."""
    covariance_type = data.covariance_type
    module = cov_lib.get(covariance_type)
    k, d = resp.shape[-1], data.n_features

    def attempt():
        phi = data.whole.reshape(-1, data.whole.shape[-1])
        r = (resp * data.weights[..., None]).reshape(-1, k)  # w·r: padding takes no part
        summed, extra = r.T @ phi, module.shared_second_moment(phi, jnp.sum(r, axis=1))
        nk, sum_x, sum_xx = moments.moments_to_stats(summed, extra, covariance_type, d)
        means = data.center + sum_x / jnp.where(nk > 0, nk, 1)[:, None]
        about_center = SuffStats(
            nk, sum_x, sum_xx, jnp.broadcast_to(data.center, (k, d)), covariance_type
        )
        fast = maximize(reshift(about_center, means), reg_covar=reg_covar, prior=prior)
        return fast, _whole_is_accurate(fast, nk, data)

    def skipped():
        shapes = jax.eval_shape(attempt)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    fast, ok = jax.lax.cond(_whole_m_step_may_hold(resp, data), attempt, skipped)
    return jax.lax.cond(ok, lambda: fast, lambda: _chunk_m_step(resp, data, reg_covar, prior))


def _chunk_m_step(resp, data: ArrangedData, reg_covar, prior) -> GMMParams:
    covariance_type = data.covariance_type
    d = data.n_features
    r_w = resp * data.weights[..., None]  # w·r: padding and zero-weight rows take no part
    # every chunk at once: the second moments of each row about its chunk's
    # centre summed in one product, each chunk's first moments apart
    sums = passes.layout_sums(r_w, data.features, covariance_type, d)
    nk_c, sum_x_c, _ = sums  # each about its chunk's centre
    nk = jnp.sum(nk_c, axis=0)
    # the new means from the first moments (no cancellation of squares), about
    # the first chunk's centre: no loss of digits far from the origin
    ref = data.centers[0]
    moved = sum_x_c + nk_c[..., None] * (data.centers - ref)[:, None, :]
    means = ref + jnp.sum(moved, axis=0) / jnp.where(nk > 0, nk, 1)[:, None]
    total = passes.layout_about_means(sums, data.centers, means, covariance_type)
    stats = SuffStats(nk, total.sum_x, total.sum_xx, means, covariance_type)
    fast = maximize(stats, reg_covar=reg_covar, prior=prior)

    # moving chunk c's statistics from its centre to μ_k cancels about
    # eps · n_kc · ρ_kc (ρ: the centre's squared distance from μ_k under the
    # new covariances), the error the E-step's check bounds, against one
    # budget for all chunks (under vmap each element charges its own chunks
    # that pass, also where another element sends the chunk direct: a
    # conservative count)
    ok = passes.pooled_acceptance(fast, nk_c, data.weights, data.centers)  # (C,)

    def recomputed():
        """The sums of the chunks that pass moved from their centres, and the
        statistics of those that fail by differences from the new means on the
        centred rows read back from Φ."""
        keep = ok.astype(r_w.dtype)[:, None, None]
        kept = passes.layout_sums(r_w * keep, data.features, covariance_type, d)
        passed = passes.layout_about_means(kept, data.centers, means, covariance_type)

        def chunk(item):  # a map over every chunk, not a loop over the failed
            ok_c, r, phi, center = item  # ones: reverse mode needs a static length

            def direct():
                xc = phi[:, -1 - d : -1]
                s = suff_stats(r, xc, covariance_type=covariance_type, shift=means - center)
                return s.sum_x, s.sum_xx

            zeros = jax.tree.map(jnp.zeros_like, (passed.sum_x, passed.sum_xx))
            return jax.lax.cond(ok_c, lambda: zeros, direct)

        sum_x, sum_xx = jax.lax.map(chunk, (ok, r_w, data.features, data.centers))
        sum_x, sum_xx = passed.sum_x + jnp.sum(sum_x, 0), passed.sum_xx + jnp.sum(sum_xx, 0)
        exact = SuffStats(nk, sum_x, sum_xx, means, covariance_type)
        return maximize(exact, reg_covar=reg_covar, prior=prior)

    return jax.lax.cond(jnp.all(ok), lambda: fast, recomputed)
