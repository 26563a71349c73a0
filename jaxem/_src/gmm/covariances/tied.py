"""Tied covariance: one (D, D) matrix shared by every component."""

from __future__ import annotations

from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

from jaxem._src.gmm.covariances import features, full
from jaxem._src.reductions import sum_axis

#: One covariance for every component: the parts of the model that are per component
#: elsewhere (the prior's density, the quadratic moment term) are counted once.
SHARED = True
#: How the covariances are stored (this module's own shape).
STORAGE = "tied"


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_features, n_features)


def precisions_cholesky(covariances: jax.Array) -> jax.Array:
    """(D, D) upper-triangular ``P`` with ``inv(Σ) = P Pᵀ``."""
    return full.precisions_cholesky(covariances)


def precisions(precisions_cholesky: jax.Array) -> jax.Array:
    """(D, D) ``inv(Σ) = P Pᵀ``."""
    return full.precisions(precisions_cholesky)


def from_precisions(precisions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(Σ, P)`` from the (D, D) precision matrix, as :func:`full.from_precisions`."""
    return full.from_precisions(precisions)


def log_det_cholesky(precisions_cholesky: jax.Array, n_features: int) -> jax.Array:
    """() ``log det P``; broadcasts over components."""
    return full.log_det_cholesky(precisions_cholesky, n_features)


def difference_mahalanobis(diff: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(K, B) ``‖Pᵀ d_kb‖²`` of differences ``diff`` (K, D, B)."""
    # Pᵀ materialised, as for full covariances (covariances/full.py): a product
    # contracting the last axis of its left operand runs through YNNPACK on
    # XLA:CPU, also inside the "auto" pass's cond.
    transposed = jax.lax.optimization_barrier(precisions_cholesky.T)
    y = jnp.einsum("ed,kdn->ken", transposed, diff)
    return sum_axis(y * y, 1)


def mahalanobis(x: jax.Array, means: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(N, K) ``‖(x_n − μ_k) P‖²``."""
    y = x @ precisions_cholesky
    mu = means @ precisions_cholesky
    return jnp.sum((y[:, None, :] - mu[None, :, :]) ** 2, axis=-1)


# ------------------------------------------------------------------ M-step
# (jaxem._src.gmm.steps) statistics about a shift and their maximization.


def difference_second_moments(resp: jax.Array, diff: jax.Array) -> jax.Array:
    """(D, D) ``Σ_k Σ_b r_kb d_kb d_kbᵀ`` of responsibilities (K, B) and differences (K, D, B)."""
    return jnp.einsum("kdn,ken->de", diff * resp[:, None, :], diff)


def second_moments(resp: jax.Array, x: jax.Array, shift: jax.Array) -> jax.Array:
    """(D, D) ``Σ_k Σ_n r_nk (x_n − s_k)(x_n − s_k)ᵀ``."""
    return jnp.sum(full.second_moments(resp, x, shift), axis=0)


def covariances(
    sxx: jax.Array, nk: jax.Array, delta: jax.Array, reg_covar: jax.Array, previous=None
) -> jax.Array:
    """(D, D) ``Σ = (S − Σ_k n_k δ_k δ_kᵀ) / Σ_k n_k + reg·I``."""
    cov = (sxx - jnp.einsum("k,kd,ke->de", nk, delta, delta)) / jnp.sum(nk)
    cov = 0.5 * (cov + cov.T)
    # jnp.eye: a numpy constant here changes XLA's fusion, and the rounding, of MAP fits.
    return cov + reg_covar * jnp.eye(sxx.shape[-1], dtype=sxx.dtype)


def fill_empty(covariances: jax.Array, nk: jax.Array) -> jax.Array:
    """(D, D) unchanged: the covariance is shared, no component owns it."""
    return covariances


def reshift(sum_xx: jax.Array, sum_x: jax.Array, nk: jax.Array, delta: jax.Array) -> jax.Array:
    """(D, D) second moments about ``s_k − δ_k`` from those about ``s_k``: the sum
    over components of :func:`jaxem._src.gmm.covariances.full.reshift`'s terms."""
    cross = jnp.einsum("kd,ke->kde", sum_x, delta)
    extra = jnp.sum(cross + jnp.swapaxes(cross, -1, -2), axis=0)
    return sum_xx + (extra + jnp.einsum("k,kd,ke->de", nk, delta, delta))


def summed_reshift(sum_x: jax.Array, nk: jax.Array, delta: jax.Array) -> jax.Array:
    """(D, D) ``Σ_c`` of :func:`reshift`'s terms for ``C`` sets of statistics
    (as :func:`jaxem._src.gmm.covariances.full.summed_reshift`, summed over the components)."""
    u = sum_x + 0.5 * nk[..., None] * delta
    cross = jnp.einsum("ckd,cke->de", u, delta)
    return cross + cross.T


def ensure_positive_definite(covariances: jax.Array) -> jax.Array:
    """As :func:`jaxem.gmm.covariances.full.ensure_positive_definite`."""
    return full.ensure_positive_definite(covariances)


# ------------------------------------------------------------------- model
# criteria, sampling, the degeneracy check, initialisation.


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return jnp.asarray(n_features * (n_features + 1) // 2)


def scale_noise(z: jax.Array, covariances: jax.Array, labels: jax.Array) -> jax.Array:
    return z @ jnp.linalg.cholesky(covariances).T


def smallest_standardized_eigenvalue(
    covariances: jax.Array, variances: jax.Array, reg_covar: jax.Array
) -> jax.Array:
    """() as :func:`jaxem._src.gmm.covariances.full.smallest_standardized_eigenvalue`
    (shared by every component)."""
    return full.smallest_standardized_eigenvalue(covariances, variances, reg_covar)


def unit(n_components: int, n_features: int, dtype) -> jax.Array:
    """(D, D) identity."""
    return jnp.asarray(np.eye(n_features, dtype=dtype))


# ------------------------------------------------------- moment formulation
# (jaxem._src.gmm.moments) features [x̃, 1]: the quadratic term −½‖x̃ P‖² is the
# same for every component, so it is added to the logits (:func:`feature_logits`)
# and the second moment is the data's own (:func:`shared_second_moment`).


def largest_eigenvalue_bound(covariances: jax.Array) -> jax.Array:
    """() as :func:`jaxem._src.gmm.covariances.full.largest_eigenvalue_bound`
    (shared by every component)."""
    return full.largest_eigenvalue_bound(covariances)


def n_quadratic_features(n_features: int) -> int:
    """No quadratic moment features."""
    return 0


def moment_features(xc: jax.Array) -> jax.Array:
    """(B, D + 1) ``[x̃, 1]`` of centred rows ``xc`` (B, D): no quadratic
    features, the quadratic term is shared by the components."""
    return features.stacked([], xc)


def natural_weights(
    precisions_cholesky: jax.Array, centred_means: jax.Array
) -> tuple[list[jax.Array], jax.Array]:
    """``([], (K, D) Λ m̃_k)`` with ``Λ = P Pᵀ`` (``precisions_cholesky`` (D, D),
    ``centred_means`` (K, D) ``μ_k − c``)."""
    precision = precisions_cholesky @ jnp.swapaxes(precisions_cholesky, -1, -2)
    return [], centred_means @ precision


def feature_logits(logits: jax.Array, features: jax.Array, precisions_cholesky: jax.Array):
    """``Φ W − ½‖x̃ P‖²``: the shared quadratic term, from the centred data in the
    first D columns of ``Φ`` (B, D + 1).

    Args:
        logits: (B, K) ``Φ W``, or (B, R, K) for R parameter sets.
        features: (B, D + 1) ``Φ``.
        precisions_cholesky: (D, D) ``P``, or (R, D, D).
    """
    y = jnp.einsum("nd,...de->n...e", features[:, :-1], precisions_cholesky)
    return logits - 0.5 * jnp.sum(y * y, axis=-1, keepdims=True)


def shared_second_moment(features: jax.Array, w: jax.Array) -> jax.Array:
    """(D, D) ``Σ_n w_n x̃_n x̃_nᵀ`` of the rows of ``Φ`` (B, D + 1): the tied
    statistic (``Σ_k r_nk = 1``), independent of the parameters."""
    xc = features[:, :-1]
    return (xc * w[:, None]).T @ xc


def feature_second_moments(moments: jax.Array, extra: jax.Array, n_features: int) -> jax.Array:
    """(D, D) the shared second moment ``extra`` (:func:`shared_second_moment`)."""
    return extra


# ------------------------------------------------------------------ the prior
# (jaxem._src.gmm.prior) one Σ ~ IW(ν, Λ), Λ (D, D), its density counted once (SHARED).


def prior_scale(covariance: jax.Array) -> jax.Array:
    """As :func:`jaxem._src.gmm.covariances.full.prior_scale`."""
    return covariance


def prior_scale_shape(n_features: int) -> tuple[int, ...]:
    return (n_features, n_features)


def prior_dof_bound(n_features: int) -> int:
    """As :func:`jaxem._src.gmm.covariances.full.prior_dof_bound`: D − 1."""
    return full.prior_dof_bound(n_features)


def posterior_covariances(prior, scatter: jax.Array, n_aug: jax.Array, nk: jax.Array) -> jax.Array:
    """(D, D) ``Σ = (Λ + Σ_k S_k) / (N + ν + D + 1 + K)``, K the active components."""
    d = prior.mean.shape[0]
    n_active = jnp.sum(nk > 0)
    return (prior.scale + jnp.sum(n_aug) * scatter) / (jnp.sum(nk) + prior.dof + d + 1 + n_active)


def log_prior(precisions_cholesky: jax.Array, half_log_det: jax.Array, prior) -> jax.Array:
    """() ``log IW(Σ | ν, Λ)`` (:func:`jaxem._src.gmm.covariances.full.log_prior`)."""
    return full.log_prior(precisions_cholesky, half_log_det, prior)


# --------------------------------------------------- the variational posterior
# (jaxem._src.gmm.variational) one Wishart shared by the components.


def wishart_prior_scale(covariance: jax.Array) -> jax.Array:
    """(D, D) scikit-learn's default covariance prior: the data covariance."""
    return covariance


def wishart_dof(dof_prior: jax.Array, nk: jax.Array) -> jax.Array:
    """() ``ν = ν_0 + Σ_k n_k / K`` (scikit-learn's tied update)."""
    return dof_prior + jnp.sum(nk) / nk.shape[-1]


def wishart_covariances(
    covariance_prior: jax.Array,
    sk: jax.Array,
    nk: jax.Array,
    diff: jax.Array,
    shrinkage: jax.Array,
    dof: jax.Array,
) -> jax.Array:
    """(D, D) ``Σ = (Ψ_0 + S Σ_k n_k / K + (1/K) Σ_k n_k (β_0/β_k) d_k d_kᵀ) / ν``
    (``S`` the pooled covariance)."""
    k = nk.shape[-1]
    spread = jnp.einsum("k,kd,ke->de", nk * shrinkage, diff, diff) / k
    return (covariance_prior + sk * (jnp.sum(nk) / k) + spread) / dof


# ------------------------------------------------ validation, unconstrained map
# (jaxem._src.gmm.params, jaxem._src.gmm.unconstrained)


def check_values(covariances: np.ndarray) -> None:
    """Raise ``ValueError`` unless the concrete (D, D) covariance is symmetric
    positive definite."""
    full.check_symmetric(covariances)
    if not full.is_positive_definite(covariances):
        raise ValueError("covariances must be positive definite")


def unconstrained_shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_features * (n_features + 1) // 2,)


def to_unconstrained(precisions_cholesky: jax.Array) -> jax.Array:
    """(D(D+1)/2,) as :func:`jaxem._src.gmm.covariances.full.to_unconstrained`."""
    return full.to_unconstrained(precisions_cholesky)


def from_unconstrained(cholesky: jax.Array, n_features: int) -> tuple[jax.Array, jax.Array]:
    """``(P, Σ)`` (D, D) as :func:`jaxem._src.gmm.covariances.full.from_unconstrained`."""
    return full.from_unconstrained(cholesky, n_features)


# ------------------------------------------------------------ missing data
# (jaxem._src.gmm.missing) as full's, with one Σ̃ per row for every component.


def conditional_elements(n_components: int, n_features: int) -> int:
    """Elements per row of :func:`conditionals`' temporaries (R, D, D) and (R, K, D)."""
    return n_features * n_features + n_components * n_features


def conditionals(params, obs: jax.Array, diff: jax.Array, *, mean: bool, covariance: bool):
    """:func:`jaxem._src.gmm.covariances.full.conditionals` for the shared ``Σ``: one
    Cholesky factor per row; ``cond_cov`` (R, D, D), the same for every component."""
    means, covariances = params.means, params.covariances
    missing = 1 - obs
    missing_block = missing[:, :, None] * np.eye(obs.shape[1], dtype=obs.dtype)  # (R, D, D)
    masked = obs[:, :, None] * covariances[None] * obs[:, None, :]
    chol = jnp.linalg.cholesky(masked + missing_block)  # (R, D, D)
    z = jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(diff, 1, 2), lower=True)
    z = jnp.swapaxes(z, 1, 2)  # (R, K, D)
    log_det = -jnp.sum(jnp.log(full.diagonal(chol)), axis=-1)[:, None]
    fill = cond_cov = None
    if mean:
        alpha = jax.scipy.linalg.solve_triangular(
            chol, jnp.swapaxes(z, 1, 2), lower=True, trans=1
        )  # (R, D, K)
        fill = means[None] + jnp.einsum("de,rek->rkd", covariances, alpha)
    if covariance:
        w = jax.scipy.linalg.solve_triangular(chol, obs[:, :, None] * covariances[None], lower=True)
        explained = jnp.einsum("rij,ril->rjl", w, w)
        cond_cov = missing[:, :, None] * (covariances[None] - explained) * missing[:, None, :]
    return jnp.sum(z * z, axis=-1), log_det, fill, cond_cov


def summed_conditional_variances(resp: jax.Array, cond_cov: jax.Array) -> jax.Array:
    """(K, D) ``Σ_n r_nk diag(C_n)`` from :func:`conditionals`' (R, D, D) ``C``."""
    return jnp.einsum("nk,nd->kd", resp, full.diagonal(cond_cov))


def summed_conditional_covariances(resp: jax.Array, cond_cov: jax.Array) -> jax.Array:
    """(K, D, D) ``Σ_n r_nk C_n`` from :func:`conditionals`' (R, D, D) ``C``."""
    return jnp.einsum("nk,nde->kde", resp, cond_cov)


def completed_second_moments(resp, dx, cond_cov, source: ModuleType) -> jax.Array:
    """(D, D) :func:`jaxem._src.gmm.covariances.full.completed_second_moments`
    summed over components."""
    if source.SHARED:  # completed by a tied covariance: one C_n per row
        cond = jnp.einsum("n,nde->de", jnp.sum(resp, axis=1), cond_cov)
        return jnp.einsum("nk,nkd,nke->de", resp, dx, dx) + cond
    return jnp.sum(full.completed_second_moments(resp, dx, cond_cov, source), axis=0)
