"""EM for Gaussian mixtures on data with missing entries (NaN marks a missing entry).

Ghahramani & Jordan (1994), "Supervised learning from incomplete data via an EM
approach". Row ``n`` observes the coordinates ``o`` and misses ``m`` (any subset,
a different one per row). For each component ``k``:

* the E-step uses the marginal density of the observed coordinates,
  ``r_nk ∝ π_k N(x_o | μ_ko, Σ_k,oo)``;
* the missing coordinates are completed by their conditional mean
  ``x̂_nk,m = μ_km + Σ_k,mo Σ_k,oo⁻¹ (x_o − μ_ko)`` (``x̂_nk,o = x_o``), with
  conditional covariance ``C_nk = Σ_k,mm − Σ_k,mo Σ_k,oo⁻¹ Σ_k,om`` on the missing
  block (zero elsewhere);
* the M-step is the ordinary one (:func:`jaxem.gmm.maximize`) on the completed
  statistics ``Σ_n r_nk x̂_nk`` and ``Σ_n r_nk (x̂_nk x̂_nkᵀ + C_nk)`` (about a
  shift). Without ``C_nk`` (imputing conditional means alone) the covariances
  would be biased towards zero.

Shapes stay fixed (masks, not ragged arrays), so everything works under
``jit`` and ``vmap``. For ``full`` and ``tied`` covariances each row uses the
"observed-masked" matrix ``Σ̃ = M Σ M + (I − M)``, ``M = diag(observed)``: the
missing coordinates become a decoupled identity block, so the Cholesky factor
of ``Σ̃`` gives ``log det Σ_oo`` and the Mahalanobis distance over the observed
coordinates (with ``x − μ`` zeroed on missing ones), and ``Σ Σ̃⁻¹ M (x − μ)``
is the regression term of the conditional mean. These (rows, K, D, D) factors
(rows, D, D for ``tied``) are built one chunk of rows at a time. For ``diag``
and ``spherical`` covariances the missing coordinates simply drop out.

A row that misses every feature carries no information: its responsibilities in
:func:`e_step` are zero, it adds nothing to the statistics and is left out of
the mean log-likelihood. Its marginal density is 1 (:func:`log_prob` gives 0),
:func:`predict_proba` gives the mixing weights and :func:`impute` the mixture
mean.
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src import api
from jaxem._src.chunking import chunk_rows, chunked_map, chunked_sum
from jaxem._src.engine import REFINE_MAX_ITER, REFINE_TOL, FitResult
from jaxem._src.family import log_joint
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.family import GaussianContext, GaussianFamily
from jaxem._src.gmm.fit import family as gaussian_family
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.passes import Moments
from jaxem._src.gmm.prior import Prior, check_prior
from jaxem._src.gmm.steps import SuffStats, maximize
from jaxem._src.loop import EMResult
from jaxem._src.validation import as_data, check_static_int, concrete

__all__ = [
    "e_step",
    "fit",
    "fit_from",
    "impute",
    "log_prob",
    "m_step",
    "predict",
    "predict_proba",
    "suff_stats",
]


# --------------------------------------------------------------------------- checks


def _check(params: GMMParams, x: ArrayLike) -> jax.Array:
    """Validate ``params`` and data ``x`` (N, D) that may hold NaN (but not ±inf)."""
    if not isinstance(params, GMMParams):
        raise TypeError(f"params must be a GMMParams; got {type(params).__name__}")
    x = as_data(x, allow_nan=True)
    if x.shape[1] != params.n_features:
        raise ValueError(
            f"x has {x.shape[1]} features but params have {params.n_features} "
            f"(means shape {params.means.shape})"
        )
    v = concrete(x)
    if v is not None and np.any(np.isinf(v)):
        raise ValueError(
            f"x contains {int(np.sum(np.isinf(v)))} infinite value(s); NaN marks a missing "
            "entry, but observed entries must be finite"
        )
    return jnp.asarray(x, jnp.result_type(x, params.dtype))


def _check_resp(resp: ArrayLike, x: jax.Array, params: GMMParams) -> jax.Array:
    resp = jnp.asarray(resp, x.dtype)
    expected = (x.shape[0], params.n_components)
    if resp.shape != expected:
        raise ValueError(
            f"resp must have shape (n_samples, n_components) = {expected} to match x "
            f"{x.shape} and params; got {resp.shape}"
        )
    return resp


def _row_weights(x: jax.Array, sample_weight: ArrayLike | None) -> jax.Array:
    """(N,) weight of each row: 0 for rows that miss every feature."""
    w = jnp.any(~jnp.isnan(x), axis=1).astype(x.dtype)
    if sample_weight is not None:
        if np.shape(sample_weight) != (x.shape[0],):
            raise ValueError(
                f"sample_weight must have shape (n_samples,) = ({x.shape[0]},); "
                f"got {np.shape(sample_weight)}"
            )
        w = w * jnp.asarray(sample_weight, x.dtype)
    return w


# ------------------------------------------------------------------ per-chunk algebra


def _rows_per_chunk(params: GMMParams, n_samples: int) -> int:
    module = cov_lib.get(params.covariance_type)
    return chunk_rows(n_samples, module.conditional_elements(*params.means.shape))


def _conditionals(
    params: GMMParams, x: jax.Array, *, mean: bool = False, covariance: bool = False
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Observed-marginal densities and conditional moments of a chunk of rows.

    Args:
        params: the mixture.
        x: (R, D) rows, NaN where missing.
        mean: also return the completed rows ``x̂``.
        covariance: also return the conditional covariances.

    Returns:
        ``(log_dens, x_hat, cond_cov)``: (R, K) ``log N(x_o | μ_ko, Σ_k,oo)``
        (0 for a row with nothing observed); (R, K, D) ``x̂_nk`` (observed
        entries, missing ones filled by the conditional means) or ``None``;
        the conditional covariances or ``None``, in the shape of the
        covariance type: ``full`` (R, K, D, D), ``tied`` (R, D, D) (the same for
        every component), ``diag`` and ``spherical`` (R, K, D) (the diagonal;
        the conditional covariance is diagonal there).
    """
    module = cov_lib.get(params.covariance_type)
    observed = ~jnp.isnan(x)
    obs = observed.astype(x.dtype)  # (R, D)
    x0 = jnp.where(observed, x, 0)
    diff = obs[:, None, :] * (x0[:, None, :] - params.means[None, :, :])  # (R, K, D)
    const = jnp.sum(obs, axis=1) * math.log(2 * math.pi)  # (R,)
    maha, log_det, fill, cond_cov = module.conditionals(
        params, obs, diff, mean=mean, covariance=covariance
    )
    log_dens = -0.5 * (const[:, None] + maha) + log_det
    x_hat = jnp.where(observed[:, None, :], x0[:, None, :], fill) if mean else None
    return log_dens, x_hat, cond_cov


def _weighted(params: GMMParams, log_dens: jax.Array) -> jax.Array:
    """(R, K) ``log π_k + log_dens``; ``-inf`` for inactive components."""
    return log_joint(log_dens, params.weights)


def _moments(
    resp: jax.Array,
    x_hat: jax.Array,
    cond_cov: jax.Array,
    shift: jax.Array,
    source: ModuleType,
    target: ModuleType,
) -> tuple[jax.Array, jax.Array]:
    """``Σ_n r_nk (x̂_nk − s_k)`` and the completed second moments of the ``target``
    covariance module's type.

    ``cond_cov`` is in the layout the ``source`` module's ``conditionals`` gives
    (the covariance type of the parameters that completed the data); the source
    sums it in the form the target asks for (diagonals or matrices).
    """
    dx = x_hat - shift[None]  # (R, K, D)
    sum_x = jnp.einsum("nk,nkd->kd", resp, dx)
    return sum_x, target.completed_second_moments(resp, dx, cond_cov, source)


def _default_shift(resp: jax.Array, x: jax.Array, means: jax.Array, nk: jax.Array) -> jax.Array:
    """(K, D) ``Σ_n r_nk x̃_nk / n_k`` with ``x̃`` the rows filled by the component means
    (equal to :func:`jaxem.gmm.suff_stats`' default shift when nothing is missing)."""
    observed = ~jnp.isnan(x)
    filled = resp.T @ jnp.where(observed, x, 0) + (resp.T @ (~observed).astype(x.dtype)) * means
    return filled / (nk + 10 * jnp.finfo(nk.dtype).eps)[:, None]


# ---------------------------------------------------------------------- public API


def log_prob(params: GMMParams, x: ArrayLike) -> jax.Array:
    """Log marginal density of the observed entries of each row.

    ``log p(x_n,o) = logsumexp_k (log π_k + log N(x_o | μ_ko, Σ_k,oo))``; 0 for
    a row with nothing observed. Differentiable in ``params``.

    Args:
        params: the mixture.
        x: (N, D) points, NaN where missing.

    Returns:
        (N,) log-densities.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.ones(1), jnp.zeros((1, 2)), jnp.ones((1, 2)), "diag")
        >>> log_p = gmm.missing.log_prob(p, jnp.array([[0.0, jnp.nan]]))
        >>> round(float(log_p[0]), 4)  # log N(0 | 0, 1), the missing feature drops out
        -0.9189
    """
    x = _check(params, x)

    def chunk(xb):
        log_dens, _, _ = _conditionals(params, xb)
        return jax.nn.logsumexp(_weighted(params, log_dens), axis=-1)

    return chunked_map(chunk, x, _rows_per_chunk(params, x.shape[0]))


def predict_proba(params: GMMParams, x: ArrayLike) -> jax.Array:
    """(N, K) posterior probabilities of the components given the observed entries.

    A row with nothing observed gets the mixing weights.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.5, 0.5]), jnp.array([[-1.0, 0.0], [1.0, 0.0]]),
        ...                     jnp.ones(2), covariance_type="spherical")
        >>> gmm.missing.predict_proba(p, jnp.array([[jnp.nan, 5.0]])).tolist()
        [[0.5, 0.5]]
    """
    x = _check(params, x)

    def chunk(xb):
        log_dens, _, _ = _conditionals(params, xb)
        return jax.nn.softmax(_weighted(params, log_dens), axis=-1)

    return chunked_map(chunk, x, _rows_per_chunk(params, x.shape[0]))


def predict(params: GMMParams, x: ArrayLike) -> jax.Array:
    """(N,) index of the most probable component given the observed entries.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.5, 0.5]), jnp.array([[-1.0, 0.0], [1.0, 0.0]]),
        ...                     jnp.ones(2), covariance_type="spherical")
        >>> gmm.missing.predict(p, jnp.array([[-3.0, jnp.nan], [2.0, jnp.nan]])).tolist()
        [0, 1]
    """
    x = _check(params, x)

    def chunk(xb):
        log_dens, _, _ = _conditionals(params, xb)
        return jnp.argmax(_weighted(params, log_dens), axis=-1)

    return chunked_map(chunk, x, _rows_per_chunk(params, x.shape[0]))


def impute(params: GMMParams, x: ArrayLike) -> jax.Array:
    """Fill the missing entries with their conditional expectation under the mixture.

    ``E[x_m | x_o] = Σ_k r_nk (μ_km + Σ_k,mo Σ_k,oo⁻¹ (x_o − μ_ko))`` with ``r_nk``
    the posterior of component ``k`` given the observed entries; observed entries
    are returned unchanged. A row with nothing observed gets the mixture mean
    ``Σ_k π_k μ_k``.

    Args:
        params: the mixture.
        x: (N, D) data, NaN where missing.

    Returns:
        (N, D) data without NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.ones(1), jnp.zeros((1, 2)),
        ...                     jnp.array([[[1.0, 0.8], [0.8, 1.0]]]))
        >>> filled = gmm.missing.impute(p, jnp.array([[1.0, jnp.nan]]))
        >>> [round(v, 4) for v in filled[0].tolist()]
        [1.0, 0.8]
    """
    x = _check(params, x)

    def chunk(xb):
        log_dens, x_hat, _ = _conditionals(params, xb, mean=True)
        resp = jax.nn.softmax(_weighted(params, log_dens), axis=-1)
        return jnp.where(jnp.isnan(xb), jnp.einsum("nk,nkd->nd", resp, x_hat), xb)

    return chunked_map(chunk, x, _rows_per_chunk(params, x.shape[0]))


def e_step(params: GMMParams, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Expectation step on data with missing entries.

    ``r_nk ∝ π_k N(x_n,o | μ_k,o, Σ_k,oo)``: responsibilities from the marginal
    density of each row's observed coordinates. A row with nothing observed gets
    zero responsibilities (it carries no information, so EM ignores it).

    Args:
        params: current parameters.
        x: (N, D) data, NaN where missing.

    Returns:
        ``(resp, log_likelihood)``: (N, K) responsibilities and the mean
        observed-data log-likelihood over the rows with at least one observed
        entry (0 if there is none).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.5, 0.5]), jnp.array([[-1.0, 0.0], [1.0, 0.0]]),
        ...                     jnp.ones((2, 2, 2)) * jnp.eye(2))
        >>> resp, ll = gmm.missing.e_step(p, jnp.array([[-2.0, jnp.nan], [jnp.nan, jnp.nan]]))
        >>> resp.sum(axis=1).round().tolist()  # the all-missing row gets no responsibility
        [1.0, 0.0]
    """
    x = _check(params, x)
    has_obs = jnp.any(~jnp.isnan(x), axis=1)

    def chunk(xb):
        log_dens, _, _ = _conditionals(params, xb)
        wlp = _weighted(params, log_dens)
        log_norm = jax.nn.logsumexp(wlp, axis=1, keepdims=True)
        keep = jnp.any(~jnp.isnan(xb), axis=1, keepdims=True)
        return jnp.where(keep, jnp.exp(wlp - log_norm), 0), log_norm[:, 0]

    resp, log_norm = chunked_map(chunk, x, _rows_per_chunk(params, x.shape[0]))
    count = jnp.sum(has_obs)
    ll = jnp.sum(jnp.where(has_obs, log_norm, 0)) / jnp.maximum(count, 1)
    return resp, ll


def suff_stats(
    resp: ArrayLike,
    x: ArrayLike,
    params: GMMParams,
    *,
    covariance_type: str | None = None,
    shift: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> SuffStats:
    """Completed sufficient statistics of data with missing entries.

    With ``x̂_nk`` the row completed by component ``k``'s conditional means and
    ``C_nk`` its conditional covariance (both under ``params``):
    ``n_k = Σ_n r_nk``, ``sum_x = Σ_n r_nk (x̂_nk − s_k)`` and second moments
    ``Σ_n r_nk ((x̂_nk − s_k)(x̂_nk − s_k)ᵀ + C_nk)``, reduced to the covariance
    type (``tied``: summed over components, ``diag``: the diagonal,
    ``spherical``: the trace). :func:`jaxem.gmm.maximize` turns them into
    parameters. Rows that miss every feature contribute nothing, whatever their
    ``resp``. The statistics add over disjoint sets of rows (same ``shift``).

    Args:
        resp: (N, K) responsibilities (from :func:`e_step`).
        x: (N, D) data, NaN where missing.
        params: the parameters that complete the data (those of the E-step).
        covariance_type: the covariance type of the statistics (static); by
            default that of ``params``.
        shift: (K, D) the point the sums are taken about; by default the
            responsibility-weighted means of the rows filled by the component
            means (plain :func:`jaxem.gmm.suff_stats`' shift when nothing is
            missing). Pass the same shift for every chunk when summing chunks.
        sample_weight: optional (N,) non-negative sample weights.

    Returns:
        :class:`jaxem.gmm.SuffStats`.
    """
    x = _check(params, x)
    if covariance_type is None:
        covariance_type = params.covariance_type
    source, target = cov_lib.get(params.covariance_type), cov_lib.get(covariance_type)
    resp = _check_resp(resp, x, params) * _row_weights(x, sample_weight)[:, None]
    nk = jnp.sum(resp, axis=0)
    if shift is None:
        shift = _default_shift(resp, x, params.means, nk)
    elif np.shape(shift) != params.means.shape:
        raise ValueError(
            f"shift must have shape (n_components, n_features) = {params.means.shape}; "
            f"got {np.shape(shift)}"
        )
    shift = jnp.asarray(shift, x.dtype)

    def chunk(r, xb):
        _, x_hat, cond_cov = _conditionals(params, xb, mean=True, covariance=True)
        return _moments(r, x_hat, cond_cov, shift, source, target)

    sum_x, sum_xx = chunked_sum(chunk, (resp, x), _rows_per_chunk(params, x.shape[0]))
    return SuffStats(nk, sum_x, sum_xx, shift, covariance_type)


def m_step(
    resp: ArrayLike,
    x: ArrayLike,
    params: GMMParams,
    *,
    covariance_type: str | None = None,
    reg_covar: ArrayLike = 1e-6,
    sample_weight: ArrayLike | None = None,
) -> GMMParams:
    """Maximization step on data with missing entries:
    ``maximize(suff_stats(resp, x, params), reg_covar)``.

    Args:
        resp: (N, K) responsibilities (from :func:`e_step` at ``params``).
        x: (N, D) data, NaN where missing.
        params: the parameters of the E-step (they complete the data).
        covariance_type: of the new parameters (static); by default that of ``params``.
        reg_covar: added to the covariance diagonal (traced).
        sample_weight: optional (N,) sample weights.

    Returns:
        :class:`jaxem.gmm.GMMParams`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jnp.array([[0.0, 1.0], [2.0, jnp.nan], [1.0, 2.0]])
        >>> p = gmm.make_params(jnp.ones(1), jnp.zeros((1, 2)), jnp.ones((1, 2)), "diag")
        >>> resp, _ = gmm.missing.e_step(p, x)
        >>> gmm.missing.m_step(resp, x, p).means.tolist()  # the missing entry is filled by 0
        [[1.0, 1.0]]
    """
    stats = suff_stats(
        resp, x, params, covariance_type=covariance_type, sample_weight=sample_weight
    )
    return maximize(stats, reg_covar=reg_covar)


def _chunk_pass(params: GMMParams, x: jax.Array, w: jax.Array):
    """Fused E-step and completed statistics about the current means of a chunk."""
    module = cov_lib.get(params.covariance_type)
    log_dens, x_hat, cond_cov = _conditionals(params, x, mean=True, covariance=True)
    wlp = _weighted(params, log_dens)
    log_norm = jax.nn.logsumexp(wlp, axis=1)
    resp = jnp.exp(wlp - log_norm[:, None]) * w[:, None]
    sum_x, sum_xx = _moments(resp, x_hat, cond_cov, params.means, module, module)
    return Moments(jnp.sum(resp, axis=0), sum_x, sum_xx), jnp.sum(w * log_norm)


def _informative(x: jax.Array, w: jax.Array) -> jax.Array:
    """(N,) the weights ``w``, 0 for rows that miss every feature."""
    return jnp.where(jnp.any(~jnp.isnan(x), axis=1), w, 0)


def _missing_summary(x: jax.Array, w: jax.Array, ref: jax.Array):
    """Additive summary of data with NaN entries about the row ``r`` (its NaN as 0):
    ``Σ w``, per-feature observed weights and sums, and the pairwise sums that give
    the covariance of the column-mean-imputed data."""
    observed = ~jnp.isnan(x)
    obs = observed.astype(x.dtype)
    r = jnp.where(jnp.isnan(ref), 0, ref)
    xr = jnp.where(observed, x - r, 0)
    wxr = xr * w[:, None]
    return {
        "count": jnp.sum(w),
        "observed": w @ obs,
        "sum": jnp.sum(wxr, axis=0),
        "pairs": wxr.T @ xr,
        "cross": wxr.T @ obs,
        "both": (obs * w[:, None]).T @ obs,
    }


def _missing_context(summary, ref) -> GaussianContext:
    """Column means (over observed entries) and the covariance of the data with
    every missing entry replaced by its column's mean."""
    r = jnp.where(jnp.isnan(ref), 0, ref)
    count = summary["count"]
    delta = summary["sum"] / summary["observed"]
    cross = summary["cross"]
    scatter = (
        summary["pairs"]
        - cross * delta[None, :]
        - cross.T * delta[:, None]
        + summary["both"] * jnp.outer(delta, delta)
    )
    cov = scatter / count
    cov = 0.5 * (cov + cov.T)
    var = jnp.diagonal(cov)
    return GaussianContext(count, r + delta, cov, jnp.where(var > 0, var, 1))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianMissingFamily(GaussianFamily):
    """Gaussian mixtures on data with NaN-marked missing entries (Ghahramani &
    Jordan 1994), as an engine family: the pass is the E-step on each row's
    observed coordinates and the completed statistics; initialisation and the
    default prior see the data with every missing entry replaced by its column's
    observed mean. Rows that miss everything carry no information: the family
    gives them weight 0 in every pass, summary and initialisation (their density
    is 1, and counted in the total weight they diluted the mean log-likelihood
    that ``jaxem.fit`` reports and stops on)."""

    def check_data(self, x, *, name="x"):
        x = as_data(x, name=name, allow_nan=True)
        v = concrete(x)
        if v is not None and np.any(np.isinf(v)):
            raise ValueError(
                f"{name} contains {int(np.sum(np.isinf(v)))} infinite value(s); NaN marks a "
                "missing entry, but observed entries must be finite"
            )
        return x

    def log_components(self, params, x):
        """(N, K) ``log N(x_o | μ_ko, Σ_k,oo)`` of each row's observed entries
        (0 where nothing is observed): the family's ``log_prob``, predictions
        and :func:`jaxem.standard_errors` read the observed-data density (the
        complete-data one was NaN on every row with a missing entry)."""
        return _conditionals(params, x)[0]

    def summarize(self, x, w, ref):
        return _missing_summary(x, _informative(x, w), ref)

    def context(self, summary, ref):
        return _missing_context(summary, ref)

    @property
    def has_features(self) -> bool:  # type: ignore[override]
        return False

    def chunk_rows(self, n_rows, params, rows, batch, mode):
        return _rows_per_chunk(params, n_rows)

    def pass_(self, params, rows, w, context):
        return _chunk_pass(params, rows, _informative(rows, w))

    def total_weight(self, stats, total):
        """The weight of the rows with an observed entry (``Σ n_k`` of the
        pass), not of all rows (``total``, from the source's weights): the
        objective is a mean over them."""
        informative = jnp.sum(stats.nk)
        return jnp.where(informative > 0, informative, total)

    def initial_stats(self, keys, x, w, n_components, n_active, methods, context):
        return super().initial_stats(
            keys, x, _informative(x, w), n_components, n_active, methods, context
        )

    def init_features(self, x, context):
        return jnp.where(jnp.isnan(x), context.center, x)

    def init_stats(self, resp, x, w, context):
        return super().init_stats(resp, self.init_features(x, context), w, context)

    def labels_init_stats(self, resp, x, w, context):
        return super().labels_init_stats(resp, self.init_features(x, context), w, context)

    def fast(self, params, context):
        return jnp.asarray(False)


def _family(covariance_type, reg_covar, prior, n_features) -> GaussianMissingFamily:
    base = gaussian_family(covariance_type, reg_covar=reg_covar, prior=prior, n_features=n_features)
    return GaussianMissingFamily(
        reg_covar=base.reg_covar,
        prior=base.prior,
        covariance_type=covariance_type,
        formulation="direct",
        default_prior=base.default_prior,
    )


def _check_incomplete(x: ArrayLike) -> jax.Array:
    x = as_data(x, allow_nan=True)
    v = concrete(x)
    if v is not None and np.all(np.isnan(v)):
        raise ValueError("x must have at least one observed (non-NaN) entry; every entry is NaN")
    return x


def fit_from(
    params: GMMParams,
    x: ArrayLike,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    sample_weight: ArrayLike | None = None,
    prior: Prior | None = None,
) -> EMResult:
    """EM on data with missing entries, from ``params``, in one ``while_loop``.

    Each iteration computes the responsibilities and the completed statistics
    in one pass over ``x`` (about the current means) and maximizes them
    (:func:`jaxem.gmm.maximize`). Stops as :func:`jaxem.iterate` does; the
    log-likelihoods are observed-data ones (mean over rows with at least one
    observed entry, weighted by ``sample_weight``).

    Args:
        params: starting parameters; their covariance type is kept.
        x: (N, D) data, NaN where missing; at least one entry observed.
        tol: tolerance on the change of the mean log-likelihood (traced).
        max_iter: maximum number of iterations (static).
        reg_covar: added to the covariance diagonal (traced).
        sample_weight: optional (N,) non-negative sample weights.
        prior: optional conjugate prior (:mod:`jaxem.gmm.prior`): MAP EM, and the
            log-likelihoods become the mean log posterior.

    Returns:
        :class:`jaxem.EMResult`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> x = x.at[::3, 1].set(jnp.nan)
        >>> start = gmm.make_params(jnp.ones(1), jnp.ones((1, 2)), jnp.eye(2)[None])
        >>> result = gmm.missing.fit_from(start, x, tol=1e-6)
        >>> bool(result.converged)
        True
    """
    x = _check(params, _check_incomplete(x))
    check_prior(prior, params.covariance_type, params.n_features)
    family = _family(params.covariance_type, reg_covar, prior, params.n_features)
    result = api.fit(
        family, None, x, start=params, sample_weight=_row_weights(x, sample_weight),
        tol=tol, max_iter=max_iter, n_refine=0,
    )  # fmt: skip
    return EMResult(
        result.params,
        result.log_likelihood,
        result.history,
        result.n_iter,
        result.converged,
        result.status,
    )


def fit(
    key: jax.Array,
    x: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    init: str = "auto",
    n_init: int = 1,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    n_active: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    prior: Prior | str | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
) -> FitResult:
    """Fit a mixture to data with missing entries: initialisation and restarts in one call.

    Each restart starts from one of :func:`jaxem.gmm.init`'s methods run on the
    data with every missing entry replaced by its column's observed mean (rows
    that miss everything get weight 0), followed by an ordinary M-step; then EM
    on the incomplete data. The restarts run as one ``vmap``, the best are
    refined as in :func:`jaxem.gmm.fit`, and the highest final log-likelihood
    wins. Arguments as in :func:`jaxem.gmm.fit` (``prior="default"`` computes
    mclust's default prior from the mean-imputed data). The family is
    :class:`GaussianMissingFamily`: :func:`jaxem.fit` with it fits incomplete
    data out of core (:func:`jaxem.chunks`) or on several devices
    (:func:`jaxem.sharded`) too.

    Returns:
        :class:`jaxem.FitResult` (``fast_path`` is always False).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (300, 2)).at[::4, 0].set(jnp.nan)
        >>> result = gmm.missing.fit(jax.random.key(1), x, 2, n_init=2)
        >>> result.params.means.shape
        (2, 2)
    """
    x = _check_incomplete(x)
    n_components = check_static_int("n_components", n_components, minimum=1)
    v = concrete(x)
    w = _row_weights(x, sample_weight)
    weighted = concrete(w)
    if v is not None and weighted is not None:
        # observed in a row that counts: one seen only in rows of weight 0 gave a NaN fit
        seen = ~np.isnan(v) & (np.asarray(weighted) > 0)[:, None]
        if not np.all(np.any(seen, axis=0)):
            raise ValueError(
                "every feature must be observed in at least one row of positive weight"
            )
    if v is not None and n_components > int(np.sum(np.asarray(w) > 0)):
        raise ValueError(
            f"n_components={n_components} must be <= the number of rows with an observed "
            f"entry ({int(np.sum(np.asarray(w) > 0))})"
        )
    family = _family(covariance_type, reg_covar, prior, x.shape[1])
    return api.fit(
        family,
        key,
        x,
        n_components,
        init=init,
        n_init=n_init,
        tol=tol,
        max_iter=max_iter,
        n_active=n_active,
        sample_weight=w,
        n_refine=n_refine,
        refine_tol=refine_tol,
        refine_max_iter=refine_max_iter,
    )
