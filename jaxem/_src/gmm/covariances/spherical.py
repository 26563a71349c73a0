"""Spherical covariances: one variance per component, shape (K,)."""

from __future__ import annotations

import dataclasses
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

from jaxem._src.gmm.covariances import diag, features
from jaxem._src.reductions import sum_axis

#: Each component has its own covariance (tied's is shared).
SHARED = False
#: How the covariances are stored (this module's own shape).
STORAGE = "spherical"


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components,)


def precisions_cholesky(covariances: jax.Array) -> jax.Array:
    """(K,) ``1 / σ_k``."""
    return jax.lax.rsqrt(covariances)


def precisions(precisions_cholesky: jax.Array) -> jax.Array:
    """(K,) ``1 / σ²_k = p_k²``."""
    return diag.precisions(precisions_cholesky)


def from_precisions(precisions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(K,) ``(σ², p)`` from precisions, as :func:`diag.from_precisions`."""
    return diag.from_precisions(precisions)


def log_det_cholesky(precisions_cholesky: jax.Array, n_features: int) -> jax.Array:
    """(K,) ``D log p_k``."""
    return n_features * jnp.log(precisions_cholesky)


def difference_mahalanobis(diff: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(K, B) ``‖d_kb‖² p_k²`` of differences ``diff`` (K, D, B)."""
    return sum_axis(diff * diff, 1) * precisions_cholesky[:, None] ** 2


def mahalanobis(x: jax.Array, means: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(N, K) ``‖x_n − μ_k‖² p_k²``."""
    diff = x[:, None, :] - means[None, :, :]
    return jnp.sum(diff * diff, axis=-1) * precisions_cholesky[None, :] ** 2


# ------------------------------------------------------------------ M-step
# (jaxem._src.gmm.steps) statistics about a shift and their maximization.


def difference_second_moments(resp: jax.Array, diff: jax.Array) -> jax.Array:
    """(K,) ``Σ_b r_kb ‖d_kb‖²`` of responsibilities (K, B) and differences (K, D, B)."""
    return jnp.einsum("kb,kb->k", resp, sum_axis(diff * diff, 1))


def second_moments(resp: jax.Array, x: jax.Array, shift: jax.Array) -> jax.Array:
    """(K,) ``Σ_n r_nk ‖x_n − s_k‖²``."""
    diff = x[:, None, :] - shift[None, :, :]
    return jnp.einsum("nk,nk->k", resp, jnp.sum(diff * diff, axis=-1))


def covariances(
    sxx: jax.Array, nk: jax.Array, delta: jax.Array, reg_covar: jax.Array, previous=None
) -> jax.Array:
    """(K,) ``σ²_k = (S_k / n_k − ‖δ_k‖²) / D + reg``, floored at ``reg``."""
    n_features = delta.shape[-1]
    var = (sxx / nk - jnp.sum(delta * delta, axis=-1)) / n_features
    return jnp.maximum(var, 0) + reg_covar


def fill_empty(covariances: jax.Array, nk: jax.Array) -> jax.Array:
    """(K,) unit variances for the empty components (``n_k = 0``, inactive)."""
    return jnp.where(nk == 0, jnp.ones_like(covariances), covariances)


def reshift(sum_xx: jax.Array, sum_x: jax.Array, nk: jax.Array, delta: jax.Array) -> jax.Array:
    """(K,) second moments about ``s_k − δ_k`` from those about ``s_k``:
    ``S_k + 2 a_k·δ_k + n_k ‖δ_k‖²``, ``a_k = Σ_n r_nk (x_n − s_k)`` (``sum_x``)."""
    extra = jnp.sum(2 * sum_x * delta, axis=1) + nk * jnp.sum(delta * delta, axis=1)
    return sum_xx + extra


def summed_reshift(sum_x: jax.Array, nk: jax.Array, delta: jax.Array) -> jax.Array:
    """(K,) ``Σ_c`` of :func:`reshift`'s terms for ``C`` sets of statistics
    (``sum_x``, ``delta`` (C, K, D), ``nk`` (C, K))."""
    return jnp.sum(2 * sum_x * delta + nk[..., None] * delta * delta, axis=(0, 2))


def ensure_positive_definite(covariances: jax.Array) -> jax.Array:
    """Floor zero variances at ``tiny^¼`` and subnormal ones at ``tiny/ε`` (where
    ``1/σ`` would overflow)."""
    finfo = jnp.finfo(covariances.dtype)
    floored = jnp.maximum(covariances, finfo.tiny / finfo.eps)
    return jnp.where(covariances > 0, floored, finfo.tiny**0.25)


# ------------------------------------------------------------------- model
# criteria, sampling, the degeneracy check, initialisation.


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return n_components


def scale_noise(z: jax.Array, covariances: jax.Array, labels: jax.Array) -> jax.Array:
    return z * jnp.sqrt(covariances)[labels][:, None]


def smallest_standardized_eigenvalue(
    covariances: jax.Array, variances: jax.Array, reg_covar: jax.Array
) -> jax.Array:
    """(K,) ``(σ²_k − reg) / mean_d var_d``."""
    return (covariances - reg_covar) / jnp.mean(variances)


def unit(n_components: int, n_features: int, dtype) -> jax.Array:
    """(K,) ones."""
    return jnp.ones(shape(n_components, n_features), dtype)


# ------------------------------------------------------- moment formulation
# (jaxem._src.gmm.moments) features [‖x̃‖², x̃, 1].


def largest_eigenvalue_bound(covariances: jax.Array) -> jax.Array:
    """(K,) each covariance's largest eigenvalue, its variance (exact;
    :func:`jaxem._src.gmm.covariances.full.largest_eigenvalue_bound`)."""
    return covariances


def n_quadratic_features(n_features: int) -> int:
    """One quadratic moment feature."""
    return 1


def moment_features(xc: jax.Array) -> jax.Array:
    """(B, D + 2) ``[‖x̃‖², x̃, 1]`` of centred rows ``xc`` (B, D)."""
    return features.stacked([jnp.sum(xc * xc, axis=1, keepdims=True)], xc)


def natural_weights(
    precisions_cholesky: jax.Array, centred_means: jax.Array
) -> tuple[list[jax.Array], jax.Array]:
    """``([(K, 1) −½ p²_k], (K, D) p²_k m̃_k)`` (``precisions_cholesky`` (K,),
    ``centred_means`` (K, D) ``μ_k − c``)."""
    precision = (precisions_cholesky * precisions_cholesky)[:, None]
    return [-0.5 * precision], precision * centred_means


#: As diag: no term shared by the components, the second moments are moment features.
feature_logits = diag.feature_logits
shared_second_moment = diag.shared_second_moment


def feature_second_moments(moments: jax.Array, extra: jax.Array, n_features: int) -> jax.Array:
    """(K,) ``Σ r ‖x̃‖²`` from ``Rᵀ Φ`` (K, F)."""
    return moments[:, 0]


# ------------------------------------------------------------------ the prior
# (jaxem._src.gmm.prior) σ²_k ~ InvGamma(ν/2, ς/2), ς ().


def prior_scale(covariance: jax.Array) -> jax.Array:
    """() mclust's ``tr(cov) / D``."""
    return jnp.trace(covariance) / covariance.shape[-1]


def prior_scale_shape(n_features: int) -> tuple[int, ...]:
    return ()


def prior_dof_bound(n_features: int) -> int:
    return 0


def posterior_covariances(prior, scatter: jax.Array, n_aug: jax.Array, nk: jax.Array) -> jax.Array:
    """(K,) ``σ²_k = (ς + tr S_k) / (D n_k + D + ν + 2)``."""
    d = prior.mean.shape[0]
    return (prior.scale + d * n_aug * scatter) / (d * nk + d + prior.dof + 2)


def log_prior(precisions_cholesky: jax.Array, half_log_det: jax.Array, prior) -> jax.Array:
    """(K,) ``log InvGamma(σ²_k | ν/2, ς/2)``."""
    return diag.inverse_gamma_log_density(precisions_cholesky, prior)


# --------------------------------------------------- the variational posterior
# (jaxem._src.gmm.variational) one Gamma posterior per component.


def wishart_prior_scale(covariance: jax.Array) -> jax.Array:
    """() scikit-learn's default covariance prior: the mean feature variance."""
    return jnp.mean(jnp.diagonal(covariance, axis1=-2, axis2=-1), axis=-1)


def wishart_dof(dof_prior: jax.Array, nk: jax.Array) -> jax.Array:
    """(K,) ``ν_k = ν_0 + n_k``."""
    return dof_prior + nk


def wishart_covariances(
    covariance_prior: jax.Array,
    sk: jax.Array,
    nk: jax.Array,
    diff: jax.Array,
    shrinkage: jax.Array,
    dof: jax.Array,
) -> jax.Array:
    """(K,) ``σ²_k = (ψ_0 + n_k (s_k + (β_0/β_k) mean_d d_kd²)) / ν_k``."""
    cov = covariance_prior + nk * (sk + shrinkage * jnp.mean(jnp.square(diff), axis=-1))
    return cov / dof


# ------------------------------------------------ validation, unconstrained map
# (jaxem._src.gmm.params, jaxem._src.gmm.unconstrained)


def check_values(covariances: np.ndarray) -> None:
    """Raise ``ValueError`` unless every concrete variance is positive."""
    if np.any(covariances <= 0):
        raise ValueError(
            f"spherical covariances must be positive; got minimum {covariances.min()!r}"
        )


def unconstrained_shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components,)


def to_unconstrained(precisions_cholesky: jax.Array) -> jax.Array:
    """(K,) ``log p_k = −½ log σ²_k``."""
    return diag.to_unconstrained(precisions_cholesky)


def from_unconstrained(cholesky: jax.Array, n_features: int) -> tuple[jax.Array, jax.Array]:
    """(K,) ``(p, σ²)`` as :func:`jaxem._src.gmm.covariances.diag.from_unconstrained`."""
    return diag.from_unconstrained(cholesky, n_features)


# ------------------------------------------------------------ missing data
# (jaxem._src.gmm.missing) as diag's, the variance repeated per feature.


def conditional_elements(n_components: int, n_features: int) -> int:
    """Elements per row of :func:`conditionals`' temporaries (R, K, D)."""
    return n_components * n_features


def conditionals(params, obs: jax.Array, diff: jax.Array, *, mean: bool, covariance: bool):
    """:func:`jaxem._src.gmm.covariances.diag.conditionals` of the same mixture as
    diagonal covariances, ``σ²_k`` for every feature (``cond_cov`` (R, K, D))."""
    k_by_d = params.means.shape
    per_feature = dataclasses.replace(
        params,
        precisions_cholesky=jnp.broadcast_to(params.precisions_cholesky[:, None], k_by_d),
        covariances=jnp.broadcast_to(params.covariances[:, None], k_by_d),
        covariance_type="diag",
    )
    return diag.conditionals(per_feature, obs, diff, mean=mean, covariance=covariance)


def summed_conditional_variances(resp: jax.Array, cond_cov: jax.Array) -> jax.Array:
    """(K, D) as :func:`jaxem._src.gmm.covariances.diag.summed_conditional_variances`."""
    return diag.summed_conditional_variances(resp, cond_cov)


def summed_conditional_covariances(resp: jax.Array, cond_cov: jax.Array) -> jax.Array:
    """(K, D, D) as :func:`jaxem._src.gmm.covariances.diag.summed_conditional_covariances`."""
    return diag.summed_conditional_covariances(resp, cond_cov)


def completed_second_moments(resp, dx, cond_cov, source: ModuleType) -> jax.Array:
    """(K,) the trace of :func:`jaxem._src.gmm.covariances.diag.completed_second_moments`."""
    return jnp.sum(diag.completed_second_moments(resp, dx, cond_cov, source), axis=-1)
