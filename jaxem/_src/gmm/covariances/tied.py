"""Tied covariance: one (D, D) matrix shared by every component."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem._src.gmm.covariances import full

#: One covariance for every component: the parts of the model that are per component
#: elsewhere (the prior's density, the quadratic moment term) are counted once.
SHARED = True


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_features, n_features)


def precisions_cholesky(covariances: jax.Array) -> jax.Array:
    """(D, D) upper-triangular ``P`` with ``inv(Σ) = P Pᵀ``."""
    return full.precisions_cholesky(covariances)


def log_det_cholesky(precisions_cholesky: jax.Array, n_features: int) -> jax.Array:
    """() ``log det P``; broadcasts over components."""
    return full.log_det_cholesky(precisions_cholesky, n_features)


def mahalanobis(x: jax.Array, means: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(N, K) ``‖(x_n − μ_k) P‖²``."""
    y = x @ precisions_cholesky
    mu = means @ precisions_cholesky
    return jnp.sum((y[:, None, :] - mu[None, :, :]) ** 2, axis=-1)


def second_moments(resp: jax.Array, x: jax.Array, shift: jax.Array) -> jax.Array:
    """(D, D) ``Σ_k Σ_n r_nk (x_n − s_k)(x_n − s_k)ᵀ``."""
    return jnp.sum(full.second_moments(resp, x, shift), axis=0)


def covariances(sxx: jax.Array, nk: jax.Array, delta: jax.Array, reg_covar: jax.Array) -> jax.Array:
    """(D, D) ``Σ = (S − Σ_k n_k δ_k δ_kᵀ) / Σ_k n_k + reg·I``."""
    cov = (sxx - jnp.einsum("k,kd,ke->de", nk, delta, delta)) / jnp.sum(nk)
    cov = 0.5 * (cov + cov.T)
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


def ensure_positive_definite(covariances: jax.Array) -> jax.Array:
    """As :func:`jaxem.gmm.covariances.full.ensure_positive_definite`."""
    return full.ensure_positive_definite(covariances)


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return jnp.asarray(n_features * (n_features + 1) // 2)


def scale_noise(z: jax.Array, covariances: jax.Array, labels: jax.Array) -> jax.Array:
    return z @ jnp.linalg.cholesky(covariances).T


def prior_scale(covariance: jax.Array) -> jax.Array:
    """As :func:`jaxem._src.gmm.covariances.full.prior_scale`."""
    return covariance


def smallest_standardized_eigenvalue(
    covariances: jax.Array, variances: jax.Array, reg_covar: jax.Array
) -> jax.Array:
    """() as :func:`jaxem._src.gmm.covariances.full.smallest_standardized_eigenvalue`
    (shared by every component)."""
    return full.smallest_standardized_eigenvalue(covariances, variances, reg_covar)


def unit(n_components: int, n_features: int, dtype) -> jax.Array:
    """(D, D) identity."""
    return jnp.eye(n_features, dtype=dtype)


# ------------------------------------------------------- moment formulation
# (jaxem._src.gmm.moments) features [x̃, 1]: the quadratic term −½‖x̃ P‖² is the
# same for every component, so it is added to the logits (:func:`feature_logits`)
# and the second moment is the data's own (:func:`shared_second_moment`).


def n_quadratic_features(n_features: int) -> int:
    """No quadratic moment features."""
    return 0


def quadratic_features(xc: jax.Array) -> list[jax.Array]:
    """``[]``: the quadratic term is shared by the components."""
    return []


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


def prior_scale_shape(n_features: int) -> tuple[int, ...]:
    return (n_features, n_features)


def prior_dof_bound(n_features: int) -> int:
    """As :func:`jaxem._src.gmm.covariances.full.prior_dof_bound`: D − 1."""
    return full.prior_dof_bound(n_features)


def posterior_covariances(
    scatter: jax.Array,
    n_aug: jax.Array,
    nk: jax.Array,
    scale: jax.Array,
    dof: jax.Array,
    n_features: int,
) -> jax.Array:
    """(D, D) ``Σ = (Λ + Σ_k S_k) / (N + ν + D + 1 + K)``, K the active components."""
    n_active = jnp.sum(nk > 0)
    return (scale + jnp.sum(n_aug) * scatter) / (jnp.sum(nk) + dof + n_features + 1 + n_active)


def log_prior(
    precisions_cholesky: jax.Array, half_log_det: jax.Array, scale: jax.Array, dof: jax.Array
) -> jax.Array:
    """() ``log IW(Σ | ν, Λ)`` (:func:`jaxem._src.gmm.covariances.full.log_prior`)."""
    return full.log_prior(precisions_cholesky, half_log_det, scale, dof)


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
