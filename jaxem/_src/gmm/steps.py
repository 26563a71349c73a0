"""The E-step and M-step of a Gaussian mixture, through sufficient statistics.

``m_step = maximize ∘ suff_stats``: the statistics are additive over samples, so
chunked, out-of-core, online and multi-device EM sum them before maximizing.

:func:`e_step` and :func:`m_step` run the moment formulation of the engine's
passes (:mod:`jaxem._src.gmm.moments`: one matrix product over the features
``Φ`` of the data centred at its mean) whenever its float32 accuracy check
holds (in float64 a stricter one, relative errors about 1e-10:
:func:`~jaxem._src.gmm.moments.step_threshold`), and the direct arithmetic
otherwise (a ``lax.cond``; under ``vmap`` both are computed), so
``jaxem.em(gmm.e_step, gmm.m_step, ...)`` iterates as fast as the engine's pass
built chunk by chunk. The E-step checks the given
parameters; the M-step computes its statistics about the data's mean and
checks the parameters they give, recomputing them about the components' own
means (:func:`suff_stats`) where the check fails.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.chunking import chunk_rows, chunked_map, chunked_sum
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm import moments
from jaxem._src.gmm.density import check_data_for, density_chunk_rows, weighted_log_prob
from jaxem._src.gmm.params import GMMParams, from_covariances
from jaxem._src.gmm.prior import Prior, check_prior, posterior_covariances, posterior_weights
from jaxem._src.validation import as_data, check_scalar, concrete

__all__ = ["SuffStats", "e_step", "m_step", "maximize", "reshift", "suff_stats"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SuffStats:
    """Additive sufficient statistics of a Gaussian mixture.

    Sums are taken about a per-component ``shift`` (K, D) for accuracy: second
    moments about a point near the component mean do not suffer the cancellation
    of ``E[xxᵀ] − μμᵀ``. Statistics with the same ``shift`` add with :meth:`add`.

    Attributes:
        nk: (K,) ``Σ_n r_nk`` (weighted when sample weights are given).
        sum_x: (K, D) ``Σ_n r_nk (x_n − s_k)``.
        sum_xx: second moments about ``shift``: ``full`` (K, D, D), ``tied``
            (D, D) (summed over components), ``diag`` (K, D), ``spherical`` (K,).
        shift: (K, D) the point ``s_k`` the sums are taken about.
        covariance_type: static.
    """

    nk: jax.Array
    sum_x: jax.Array
    sum_xx: jax.Array
    shift: jax.Array
    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))

    def add(self, other: SuffStats) -> SuffStats:
        """Statistics of the union of two sample sets (both about the same shift)."""
        return dataclasses.replace(
            self,
            nk=self.nk + other.nk,
            sum_x=self.sum_x + other.sum_x,
            sum_xx=self.sum_xx + other.sum_xx,
        )

    def scale(self, c: ArrayLike) -> SuffStats:
        """The statistics of every sample's weight multiplied by ``c``."""
        return dataclasses.replace(
            self, nk=self.nk * c, sum_x=self.sum_x * c, sum_xx=self.sum_xx * c
        )


def e_step(params: GMMParams, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Expectation step: responsibilities and the mean log-likelihood.

    ``r_nk = π_k N(x_n | μ_k, Σ_k) / Σ_j π_j N(x_n | μ_j, Σ_j)``, computed in log
    space with ``logsumexp``.

    On data arranged by :func:`jaxem.gmm.arrange` it runs the fast chunked
    products of :func:`jaxem.gmm.fit` instead (accurate at any separation):
    the responsibilities are then (C, B, K), in the chunks' order
    (:meth:`~jaxem.gmm.ArrangedData.responsibilities` puts them in the rows'),
    and the log-likelihood is the mean weighted by the data's sample weights.

    Args:
        params: current parameters.
        x: (N, D) data, or :class:`~jaxem.gmm.ArrangedData`.

    Returns:
        ``(resp, log_likelihood)``: (N, K) responsibilities and the mean
        per-sample log-likelihood ``(1/N) Σ_n log p(x_n)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]),
        ...                     jnp.ones((2, 1, 1)))
        >>> resp, ll = gmm.e_step(p, jnp.array([[0.0], [2.0]]))
        >>> resp.shape
        (2, 2)
    """
    from jaxem._src.gmm import arranged  # it builds on this module

    if isinstance(x, arranged.ArrangedData):
        return arranged.e_step(params, x)
    return _e_step(params, check_data_for(params, x))


@jax.jit
def _e_step(params: GMMParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`e_step` on validated data, compiled once per shape: called eagerly,
    the ``lax.cond`` of fresh branch closures would be traced and compiled again
    on every call (0.3 s each)."""

    def normalized(logits):
        log_norm = jax.nn.logsumexp(logits, axis=1, keepdims=True)
        return jnp.exp(logits - log_norm), log_norm[:, 0]

    def direct():
        chunk = lambda xb: normalized(weighted_log_prob(params, xb))  # noqa: E731
        return chunked_map(chunk, x, density_chunk_rows(params, x))

    # the moment formulation about the data's mean (exact for any centre: no derivative)
    center = jax.lax.stop_gradient(jnp.mean(x, axis=0))
    module = cov_lib.get(params.covariance_type)
    active = params.weights > 0

    def fast():
        weights_matrix = moments.natural_weights(params, center)

        def chunk(xb):
            phi = moments.features(xb - center, params.covariance_type)
            logits = module.feature_logits(phi @ weights_matrix, phi, params.precisions_cholesky)
            return normalized(jnp.where(active, logits, -jnp.inf))

        return chunked_map(chunk, x, _moment_rows(x, params.covariance_type, params.n_components))

    accurate = moments.is_accurate(params, center, moments.step_threshold(x.dtype))
    resp, log_norm = jax.lax.cond(accurate, fast, direct)
    return resp, jnp.mean(log_norm)


def _moment_rows(x: jax.Array, covariance_type: str, n_components: int) -> int:
    """Rows per chunk of the moment formulation (the engine's chunking)."""
    width = moments.n_features_of(covariance_type, x.shape[1])
    return chunk_rows(x.shape[0], width + n_components, target=moments.MOMENT_CHUNK_ELEMENTS)


def _moment_stats(resp, x, covariance_type, sample_weight) -> SuffStats:
    """:func:`suff_stats` about the weighted data mean ``c``, as ``Rᵀ Φ`` over the
    moment features of ``x − c`` (one product per chunk of rows)."""
    module = cov_lib.get(covariance_type)
    k, d = resp.shape[1], x.shape[1]
    row_weight = None if sample_weight is None else jnp.asarray(sample_weight, x.dtype)
    r = resp if row_weight is None else resp * row_weight[:, None]
    if row_weight is None:
        center = jnp.mean(x, axis=0)
    else:
        center = row_weight @ x / jnp.sum(row_weight)
    center = jax.lax.stop_gradient(center)

    def chunk(rb, xb):
        phi = moments.features(xb - center, covariance_type)
        # a row's responsibilities sum to its weight (0: the row takes no part)
        return rb.T @ phi, module.shared_second_moment(phi, jnp.sum(rb, axis=1))

    summed, extra = chunked_sum(chunk, (r, x), _moment_rows(x, covariance_type, k))
    nk, sum_x, sum_xx = moments.moments_to_stats(summed, extra, covariance_type, d)
    return SuffStats(nk, sum_x, sum_xx, jnp.broadcast_to(center, (k, d)), covariance_type)


def suff_stats(
    resp: ArrayLike,
    x: ArrayLike,
    *,
    covariance_type: str = "full",
    shift: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> SuffStats:
    """Sufficient statistics of data ``x`` weighted by responsibilities.

    Computed in chunks of rows, so no (N, K, D) intermediate is materialised.

    Args:
        resp: (N, K) responsibilities.
        x: (N, D) data.
        covariance_type: which second moments to keep (static).
        shift: (K, D) point to take the sums about; by default the weighted
            means (two passes over ``x``, the most accurate). Pass the current
            means when statistics of several chunks must add up.
        sample_weight: optional (N,) non-negative sample weights.

    Returns:
        :class:`SuffStats`.
    """
    module = cov_lib.get(covariance_type)
    x = as_data(x)
    resp = jnp.asarray(resp, x.dtype)
    if resp.ndim != 2 or resp.shape[0] != x.shape[0]:
        raise ValueError(
            f"resp must have shape (n_samples, n_components) = ({x.shape[0]}, K) to match x "
            f"{x.shape}; got {resp.shape}"
        )
    if shift is not None and np.shape(shift) != (resp.shape[1], x.shape[1]):
        raise ValueError(
            f"shift must have shape (n_components, n_features) = {(resp.shape[1], x.shape[1])}; "
            f"got {np.shape(shift)}"
        )
    if sample_weight is not None:
        resp = resp * jnp.asarray(sample_weight, resp.dtype)[:, None]
    nk = jnp.sum(resp, axis=0)
    if shift is None:
        shift = (resp.T @ x) / _safe_count(nk)[:, None]
    shift = jnp.asarray(shift, x.dtype)

    def chunk(r, xb):
        return shifted_sum(r, xb, shift), module.second_moments(r, xb, shift)

    rows = chunk_rows(x.shape[0], resp.shape[1] * x.shape[1])
    sum_x, sum_xx = chunked_sum(chunk, (resp, x), rows)
    return SuffStats(nk, sum_x, sum_xx, shift, covariance_type)


def maximize(
    stats: SuffStats,
    *,
    reg_covar: ArrayLike = 1e-6,
    prior: Prior | None = None,
    previous: ArrayLike | None = None,
) -> GMMParams:
    """Maximization from sufficient statistics.

    ``π_k = n_k / Σ_j n_j``, ``μ_k = s_k + δ_k`` with ``δ_k = Σ_n r_nk (x_n − s_k) / n_k``,
    and the covariance of the statistics' type plus ``reg_covar`` on the diagonal.
    A component with ``n_k = 0`` keeps weight 0 (it stays inactive), its mean is
    the shift and its covariance the identity (a finite placeholder). A
    covariance that is singular even after ``reg_covar`` (possible only with
    ``reg_covar=0``) gets the smallest ridge that makes it factorisable
    (:func:`~jaxem.gmm.covariances.full.ensure_positive_definite`), so the
    parameters are always finite.

    With a ``prior`` (:class:`~jaxem.gmm.prior.Prior`) it is the MAP M-step:
    the posterior mode of :mod:`jaxem.gmm.prior` (``reg_covar`` is still added;
    pass 0 for the pure posterior mode). Statistics must then be in absolute
    units (counts, not per-sample averages).

    Args:
        stats: :class:`SuffStats`.
        reg_covar: non-negative regularization added to the covariance diagonal
            (traced: changing it does not recompile).
        prior: optional conjugate prior (traced; its type must match).
        previous: optional covariances of the current parameters, the warm start
            of the models whose M-step iterates (mclust's VEI, EVE, VVE, VEV);
            without it they start as mclust's first M-step does.

    Returns:
        :class:`GMMParams`.
    """
    check_scalar("reg_covar", reg_covar)
    module = cov_lib.get(stats.covariance_type)
    dtype = stats.sum_x.dtype
    reg = jnp.asarray(reg_covar, dtype)
    nk = stats.nk
    if prior is not None:
        check_prior(prior, stats.covariance_type, stats.shift.shape[1])
        return _maximize_map(stats, prior, reg)
    nk_safe = _safe_count(nk)
    delta = stats.sum_x / nk_safe[:, None]
    means = stats.shift + delta
    covariances = module.covariances(stats.sum_xx, nk_safe, delta, reg, previous)
    covariances = module.fill_empty(covariances, nk)
    covariances = module.ensure_positive_definite(covariances)
    weights = nk / jnp.sum(nk)
    return from_covariances(weights, means, covariances, stats.covariance_type)


def _maximize_map(stats: SuffStats, prior: Prior, reg: jax.Array) -> GMMParams:
    """The posterior mode (:mod:`jaxem.gmm.prior`): ``κ`` pseudo-observations at
    ``μ_P`` give the shrunk means and the scatter ``S_k``; the prior scale and
    degrees of freedom then give the covariances."""
    module = cov_lib.get(stats.covariance_type)
    k, d = stats.shift.shape
    dtype = stats.sum_x.dtype
    pseudo = SuffStats(
        nk=jnp.full((k,), prior.shrinkage, dtype),
        sum_x=jnp.zeros((k, d), dtype),
        sum_xx=jnp.zeros_like(stats.sum_xx),
        shift=jnp.broadcast_to(jnp.asarray(prior.mean, dtype), (k, d)),
        covariance_type=stats.covariance_type,
    )
    augmented = stats.add(reshift(pseudo, stats.shift))
    n_aug = _safe_count(augmented.nk)
    delta = augmented.sum_x / n_aug[:, None]
    scatter = module.covariances(augmented.sum_xx, n_aug, delta, jnp.zeros((), dtype))
    covariances = posterior_covariances(prior, scatter, n_aug, stats.nk) + _ridge(stats, reg)
    covariances = module.ensure_positive_definite(covariances)
    weights = posterior_weights(prior, stats.nk)
    return from_covariances(
        weights, augmented.shift + delta, covariances.astype(dtype), stats.covariance_type
    )


def _ridge(stats: SuffStats, value: ArrayLike) -> jax.Array:
    """``value · I`` in the shape of the statistics' covariances."""
    module = cov_lib.get(stats.covariance_type)
    nk = jnp.ones_like(stats.nk)
    return module.covariances(jnp.zeros_like(stats.sum_xx), nk, jnp.zeros_like(stats.sum_x), value)


def reshift(stats: SuffStats, shift: ArrayLike) -> SuffStats:
    """The same statistics re-expressed about another shift (exact algebra).

    Args:
        stats: :class:`SuffStats` about ``stats.shift`` (K, D).
        shift: (K, D) or (D,) the new shift ``s'``.

    Returns:
        :class:`SuffStats` about ``s'``: ``Σ r (x − s')`` and the second moments
        about ``s'``, of the same covariance type.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jnp.array([[0.0], [2.0]])
        >>> s = gmm.suff_stats(jnp.ones((2, 1)), x, covariance_type="diag")
        >>> gmm.reshift(s, jnp.zeros((1, 1))).sum_xx.tolist()
        [[4.0]]
    """
    module = cov_lib.get(stats.covariance_type)
    new = jnp.broadcast_to(jnp.asarray(shift, stats.shift.dtype), stats.shift.shape)
    delta = stats.shift - new
    nk, sx = stats.nk, stats.sum_x
    sum_xx = module.reshift(stats.sum_xx, sx, nk, delta)
    return dataclasses.replace(stats, sum_x=sx + nk[:, None] * delta, sum_xx=sum_xx, shift=new)


def m_step(
    resp: ArrayLike,
    x: ArrayLike,
    *,
    covariance_type: str | None = None,
    reg_covar: ArrayLike = 1e-6,
    sample_weight: ArrayLike | None = None,
    prior: Prior | None = None,
) -> GMMParams:
    """Maximization step: ``maximize(suff_stats(resp, x), reg_covar, prior)``.

    On data arranged by :func:`jaxem.gmm.arrange`, with the (C, B, K)
    responsibilities :func:`e_step` gives there, it runs the fast chunked
    products of :func:`jaxem.gmm.fit` (accurate at any separation); the
    sample weights are then the arranged data's.

    Args:
        resp: (N, K) responsibilities.
        x: (N, D) data, or :class:`~jaxem.gmm.ArrangedData`.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"`` or one
            of mclust's models (:data:`~jaxem.gmm.MCLUST_MODELS`) (static);
            None (the default): ``"full"``, or the type the data was arranged for.
        reg_covar: added to the covariance diagonal (traced).
        sample_weight: optional (N,) sample weights.
        prior: optional conjugate prior (MAP M-step, :mod:`jaxem.gmm.prior`).

    Returns:
        :class:`GMMParams`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jnp.array([[0.0], [1.0], [10.0], [11.0]])
        >>> resp = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> gmm.m_step(resp, x, covariance_type="diag").means.round(9).tolist()
        [[0.5], [10.5]]
    """
    from jaxem._src.gmm import arranged  # it builds on this module

    if isinstance(x, arranged.ArrangedData):
        if sample_weight is not None:
            raise ValueError(
                "m_step on arranged data takes its sample weights from gmm.arrange(..., "
                "sample_weight=...), not from sample_weight"
            )
        return arranged.m_step(
            resp, x, covariance_type=covariance_type, reg_covar=reg_covar, prior=prior
        )
    covariance_type = "full" if covariance_type is None else covariance_type
    _check_resp(resp, x)
    covariance_type = cov_lib.check_covariance_type(covariance_type)  # "VVV" is "full"
    check_scalar("reg_covar", reg_covar)  # its value, while concrete
    x = as_data(x)
    resp = jnp.asarray(resp)
    if sample_weight is not None:
        sample_weight = jnp.asarray(sample_weight)
    return _m_step(resp, x, reg_covar, sample_weight, prior, covariance_type=covariance_type)


@functools.partial(jax.jit, static_argnames="covariance_type")
def _m_step(resp, x, reg_covar, sample_weight, prior, *, covariance_type) -> GMMParams:
    """:func:`m_step` on validated arguments, compiled once per shape and type
    (as :func:`_e_step`)."""
    resp = jnp.asarray(resp, x.dtype)
    if resp.ndim == 2 and resp.shape[0] == x.shape[0]:  # else suff_stats names the shapes
        about_mean = _moment_stats(resp, x, covariance_type, sample_weight)
        fast = maximize(about_mean, reg_covar=reg_covar, prior=prior)
        # the cancellation of moving the statistics to the new means, measured
        # with the new covariances
        threshold = moments.step_threshold(x.dtype)
        accurate = moments.is_accurate(fast, about_mean.shift[0], threshold)
    else:
        accurate = False

    def direct():
        stats = suff_stats(resp, x, covariance_type=covariance_type, sample_weight=sample_weight)
        return maximize(stats, reg_covar=reg_covar, prior=prior)

    if accurate is False:
        return direct()
    return jax.lax.cond(accurate, lambda: fast, direct)


def _check_resp(resp: ArrayLike, x: ArrayLike) -> None:
    """``resp`` must be (N, K) responsibilities for the N rows of ``x``: shapes
    (checked by suff_stats), values (non-negative, rows summing to 1) when concrete. Swapped
    arguments, ``m_step(x, resp)``, fail here instead of returning a model."""
    # shapes without converting: resp may be anything a user passed (e.g. parameters)
    rs, xs = np.shape(resp), np.shape(x)
    if len(rs) != 2 or len(xs) != 2 or rs[0] != xs[0]:
        return  # suff_stats names the shapes
    values = concrete(resp)
    if values is None or values.size == 0:
        return
    values = values.astype(np.float64)
    sums = values.sum(axis=1)
    # a row summing to 0 takes no part (e.g. rows left out of an initialisation)
    rows_ok = (np.abs(sums - 1) <= 1e-3) | (sums == 0)
    if not (np.all(values >= 0) and np.all(rows_ok)):
        raise ValueError(
            "m_step: resp must be responsibilities (non-negative, each row summing to 1 or 0); "
            f"got values in [{values.min():.3g}, {values.max():.3g}] and row sums in "
            f"[{sums.min():.3g}, {sums.max():.3g}]. Did you swap the arguments? "
            "The order is m_step(resp, x)."
        )


def shifted_sum(resp: jax.Array, x: jax.Array, shift: jax.Array) -> jax.Array:
    """(K, D) ``Σ_n r_nk (x_n − s_k)``, summed as differences (no cancellation of
    ``Σ r x − n_k s_k`` far from the origin)."""
    return jnp.einsum("nk,nkd->kd", resp, x[:, None, :] - shift[None, :, :])


def _safe_count(nk: jax.Array) -> jax.Array:
    """``n_k + 10 ε`` (scikit-learn's guard against dividing by an empty component)."""
    return nk + 10 * jnp.finfo(nk.dtype).eps


def labelled_suff_stats(
    resp: jax.Array, x: jax.Array, *, covariance_type: str, sample_weight: jax.Array | None
) -> SuffStats:
    """:func:`suff_stats` about the weighted means of responsibilities with at
    most one positive entry per row (not checked): hard labels, as k-means and
    the agglomerations start EM (:data:`jaxem._src.init.LABEL_METHODS`). Each row's second
    moment then belongs to one component, so a full covariance's sums are one
    segment sum of the rows' ``D(D+1)/2`` products (``N D²`` rather than
    ``N K D²`` multiply-adds) and a tied one's one product; the differences are
    from the row's own component mean, as :func:`suff_stats` takes them.
    Diagonal and spherical statistics are :func:`suff_stats`' (``N K D``)."""
    if covariance_type not in ("full", "tied"):
        return suff_stats(resp, x, covariance_type=covariance_type, sample_weight=sample_weight)
    k, d = resp.shape[1], x.shape[1]
    if sample_weight is not None:
        resp = resp * sample_weight[:, None]
    nk = jnp.sum(resp, axis=0)
    shift = (resp.T @ x) / _safe_count(nk)[:, None]
    labels = jnp.argmax(resp, axis=1)
    v = jnp.max(resp, axis=1)  # the row's one responsibility (0: the row takes no part)
    y = x - shift[labels]
    upper = np.triu_indices(d)

    def chunk(labels, v, y):
        vy = v[:, None] * y
        sum_x = jax.ops.segment_sum(vy, labels, k)
        if covariance_type == "tied":
            return sum_x, vy.T @ y
        return sum_x, jax.ops.segment_sum(vy[:, upper[0]] * y[:, upper[1]], labels, k)

    rows = chunk_rows(x.shape[0], len(upper[0]))
    sum_x, sum_xx = chunked_sum(chunk, (labels, v, y), rows)
    if covariance_type == "full":
        square = jnp.zeros((k, d, d), x.dtype).at[:, upper[0], upper[1]].set(sum_xx)
        sum_xx = square.at[:, upper[1], upper[0]].set(sum_xx)
    return SuffStats(nk, sum_x, sum_xx, shift, covariance_type)
