"""Conjugate priors for MAP EM: normal–inverse-Wishart on components, Dirichlet on weights.

The prior of Fraley & Raftery (2007, *Bayesian regularization for normal mixture
estimation and model-based clustering*, J. Classification 24:155–181), used by
R mclust's ``priorControl()``:

* means: ``μ_k | Σ_k ~ N(μ_P, Σ_k / κ)`` (``mean``, ``shrinkage`` κ > 0);
* covariances, by type: ``full`` ``Σ_k ~ IW(ν, Λ)`` per component; ``tied``
  one ``Σ ~ IW(ν, Λ)``; ``diag`` ``σ²_kd ~ InvGamma(ν/2, ς_d/2)``; ``spherical``
  ``σ²_k ~ InvGamma(ν/2, ς/2)`` (``dof`` ν, ``scale`` Λ or ς in variance units);
* weights: ``π ~ Dirichlet(α)`` over the active components (``dirichlet`` α;
  α = 1, the default, is flat: the weights stay maximum likelihood, as in mclust).

EM then maximises the log posterior. The M-step is closed form
(:func:`jaxem.gmm.maximize` with ``prior=``); with ``n_k`` the (weighted)
count, ``x̄_k`` the mean and ``W_k`` the scatter of component k::

    μ_k = (n_k x̄_k + κ μ_P) / (n_k + κ)
    S_k = W_k + κ n_k / (n_k + κ) · (x̄_k − μ_P)(x̄_k − μ_P)ᵀ
    full       Σ_k  = (Λ + S_k) / (n_k + ν + D + 2)
    tied       Σ    = (Λ + Σ_k S_k) / (N + ν + D + 1 + K)
    diag       σ²_kd = (ς_d + [S_k]_dd) / (n_k + ν + 3)
    spherical  σ²_k = (ς + tr S_k) / (D n_k + D + ν + 2)
    π_k ∝ n_k + α − 1 (clipped at 0)

(the joint posterior mode in ``(μ, Σ)``: each mean prior contributes a factor
``|Σ|^(−1/2)``). :func:`default_prior` sets the hyperparameters as mclust's
``defaultPrior`` does. A covariance can no longer collapse onto a point: the
prior scale keeps it away from singular, so ``reg_covar`` can be 0.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jax.typing import ArrayLike

from jaxem._src.family import log_weights
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.params import GMMParams
from jaxem._src.validation import (
    as_data,
    check_sample_weight,
    concrete,
    constant_features,
    name_constant_features,
)

__all__ = [
    "Prior",
    "default_prior",
    "log_prior",
    "posterior_covariances",
    "posterior_weights",
    "prior_from_moments",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Prior:
    """Hyperparameters of the conjugate prior (a pytree: all fields but the type are traced).

    Attributes:
        mean: (D,) prior mean ``μ_P`` of every component mean.
        shrinkage: () ``κ > 0``, worth ``κ`` observations at ``μ_P`` per component.
        dof: () degrees of freedom ``ν`` (``> D − 1`` for ``full``/``tied``, ``> 0`` else).
        scale: ``Λ`` (D, D) for ``full``/``tied``; ``ς`` (D,) for ``diag``; ``ς`` ()
            for ``spherical`` (variance units).
        dirichlet: () concentration ``α > 0`` of the symmetric Dirichlet prior on
            the weights; 1 is flat.
        covariance_type: static; must match the model's.
    """

    mean: jax.Array
    shrinkage: jax.Array
    dof: jax.Array
    scale: jax.Array
    dirichlet: jax.Array
    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))

    def __post_init__(self):
        module = cov_lib.get(self.covariance_type)
        mean = getattr(self.mean, "shape", None)
        if mean is None or not isinstance(mean, tuple):  # jax internals build placeholders
            return
        if len(mean) != 1:
            raise ValueError(f"Prior.mean must have shape (n_features,); got {mean}")
        d = mean[0]
        expected = module.prior_scale_shape(d)
        if np.shape(self.scale) != expected:
            raise ValueError(
                f"Prior.scale for covariance_type={self.covariance_type!r} must have shape "
                f"{expected}; got {np.shape(self.scale)}"
            )
        for name in ("shrinkage", "dof", "dirichlet"):
            if np.ndim(getattr(self, name)) != 0:
                raise ValueError(
                    f"Prior.{name} must be a scalar; got shape {np.shape(getattr(self, name))}"
                )
        for name, value, bound in (
            ("shrinkage", self.shrinkage, 0),
            ("dof", self.dof, module.prior_dof_bound(d)),
            ("dirichlet", self.dirichlet, 0),
        ):
            value = concrete(value)
            if value is not None and not float(value) > bound:
                raise ValueError(f"Prior.{name} must be > {bound}; got {float(value)}")


def default_prior(
    x: ArrayLike,
    n_components: ArrayLike,
    covariance_type: str = "full",
    *,
    shrinkage: ArrayLike = 0.01,
    dof: ArrayLike | None = None,
    dirichlet: ArrayLike = 1.0,
    sample_weight: ArrayLike | None = None,
) -> Prior:
    """The default prior of R mclust (``priorControl()`` → ``defaultPrior``).

    ``mean`` the data mean, ``shrinkage`` 0.01, ``dof`` D + 2, and ``scale``
    ``K^(−2/D)`` times the sample covariance (``full``, ``tied``) or times the
    mean sample variance ``tr(cov)/D`` (``diag``, ``spherical``; a scalar in
    mclust, repeated per feature for ``diag``). Sample covariances use the
    ``N − 1`` denominator, as R's ``var``. ``dirichlet`` 1: no prior on the weights.

    Args:
        x: (N, D) data.
        n_components: K; may be traced (one prior per K under ``vmap``).
        covariance_type: static.
        shrinkage, dof, dirichlet: override the defaults.
        sample_weight: optional (N,) weights for the mean and covariance.

    Returns:
        :class:`Prior`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jnp.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
        >>> p = gmm.default_prior(x, 4, "spherical")
        >>> float(p.dof), round(float(p.scale), 4)   # D + 2;  (4/3) · 4^(−2/2)
        (4.0, 0.3333)
    """
    covariance_type = cov_lib.check_covariance_type(covariance_type, cov_lib.COVARIANCE_TYPES)
    x = as_data(x)
    n = x.shape[0]
    if n < 2:
        raise ValueError("default_prior needs at least 2 samples to estimate a covariance")
    k = concrete(n_components)
    if k is not None and not float(k) >= 1:
        raise ValueError(f"n_components must be >= 1; got {k}")
    w = check_sample_weight(sample_weight, x)
    w = jnp.ones(n, x.dtype) if w is None else w
    total = jnp.sum(w)
    mean = jnp.sum(w[:, None] * x, axis=0) / total
    centred = x - mean
    cov = (centred.T * w) @ centred / (total - 1)
    if covariance_type in ("full", "tied"):
        _check_positive_definite(concrete(cov), covariance_type)
    return prior_from_moments(
        mean, cov, n_components, covariance_type, shrinkage=shrinkage, dof=dof, dirichlet=dirichlet
    )


def _check_positive_definite(cov: np.ndarray | None, covariance_type: str) -> None:
    """A clear error where the default prior's scale, a multiple of the data's
    sample covariance ``cov`` (concrete; None: not checked), is singular: its
    log-determinant enters the log posterior, which a fit would then report as
    −∞ or NaN."""
    if cov is None:
        return
    cov = np.asarray(cov, np.float64)
    eig = np.linalg.eigvalsh(cov)
    if eig[0] > cov.shape[0] * np.finfo(cov.dtype).eps * max(eig[-1], 0.0):
        return
    spread = np.sqrt(np.maximum(np.diag(cov), 0.0))
    constant = np.flatnonzero(spread <= np.finfo(cov.dtype).eps * spread.max()).tolist()
    raise _singular_scale(covariance_type, constant)


def check_default_prior_data(x: ArrayLike, covariance_type: str) -> None:
    """At a fit's boundary, with ``prior="default"`` (computed inside the fit
    from the data's summary): a clear error where a feature of concrete data
    ``x`` (N, D) is constant, so that the default prior's scale for ``full`` or
    ``tied`` is singular (linearly dependent features are caught only by
    :func:`default_prior`: finding them costs N D²)."""
    if covariance_type not in ("full", "tied"):
        return
    v = concrete(x)
    if v is None or v.ndim != 2 or v.shape[0] < 2:
        return
    constant = constant_features(v)
    if constant:
        raise _singular_scale(covariance_type, constant)


def _singular_scale(covariance_type: str, constant: list[int]) -> ValueError:
    which = name_constant_features(constant) if constant else "the features are linearly dependent"
    return ValueError(
        f"the default prior for covariance_type={covariance_type!r} scales the data's "
        f"sample covariance, which is singular here ({which}): drop the redundant "
        "features, use covariance_type 'diag' or 'spherical' (whose default scale is the "
        "mean variance), or give a gmm.Prior whose scale is positive definite"
    )


def prior_from_moments(
    mean: jax.Array,
    covariance: jax.Array,
    n_components: ArrayLike,
    covariance_type: str,
    *,
    shrinkage: ArrayLike = 0.01,
    dof: ArrayLike | None = None,
    dirichlet: ArrayLike = 1.0,
) -> Prior:
    """:func:`default_prior` from the data's mean (D,) and sample covariance
    (D, D) (``N − 1`` denominator); traceable."""
    d = mean.shape[0]
    dtype = mean.dtype
    factor = jnp.asarray(n_components, dtype) ** (-2.0 / d)
    scale = cov_lib.get(covariance_type).prior_scale(factor * covariance)
    return Prior(
        mean=mean,
        shrinkage=jnp.asarray(shrinkage, dtype),
        dof=jnp.asarray(d + 2 if dof is None else dof, dtype),
        scale=scale,
        dirichlet=jnp.asarray(dirichlet, dtype),
        covariance_type=covariance_type,
    )


def check_prior(prior: Prior | None, covariance_type: str, n_features: int) -> None:
    """Raise if ``prior`` does not fit a model of this type and dimension."""
    if prior is None:
        return
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a gmm.Prior (see gmm.default_prior); got {type(prior)}")
    if prior.covariance_type != covariance_type:
        raise ValueError(
            f"prior is for covariance_type={prior.covariance_type!r}, the model is "
            f"{covariance_type!r}"
        )
    if np.shape(prior.mean) != (n_features,):
        raise ValueError(
            f"prior.mean has shape {np.shape(prior.mean)}; the data have {n_features} features"
        )


def posterior_covariances(
    prior: Prior, scatter: jax.Array, n_aug: jax.Array, nk: jax.Array
) -> jax.Array:
    """Posterior-mode covariances from the statistics augmented by the mean prior.

    Args:
        prior: :class:`Prior`.
        scatter: per-type ``S / (n + κ)`` as the covariance module computes it
            from statistics with ``κ`` pseudo-observations at ``μ_P`` added
            (``S_k`` of the module docstring, divided by the augmented count).
        n_aug: (K,) augmented counts ``n_k + κ`` (as used for ``scatter``).
        nk: (K,) counts without the pseudo-observations.

    Returns:
        Covariances of the type's shape (formulas in the module docstring).
    """
    return cov_lib.get(prior.covariance_type).posterior_covariances(prior, scatter, n_aug, nk)


def posterior_weights(prior: Prior, nk: jax.Array) -> jax.Array:
    """``π_k ∝ max(n_k + α − 1, 0)`` over components with ``n_k > 0`` (others stay 0)."""
    raw = jnp.where(nk > 0, jnp.maximum(nk + (prior.dirichlet - 1), 0), 0)
    total = jnp.sum(raw)
    return jnp.where(total > 0, raw / jnp.where(total > 0, total, 1), nk / jnp.sum(nk))


def log_prior(params: GMMParams, prior: Prior) -> jax.Array:
    """Log density of the prior at ``params``, over the active (weight > 0) components.

    Normalised: the sum of the Dirichlet, normal and inverse-Wishart (or inverse
    gamma) log densities; differentiable in ``params`` and ``prior``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> x = jnp.array([[0.0], [1.0], [3.0]])
        >>> prior = gmm.default_prior(x, 1, "spherical")
        >>> p = gmm.make_params(jnp.ones(1), prior.mean[None], jnp.ones(1), "spherical")
        >>> bool(jnp.isfinite(gmm.log_prior(p, prior)))
        True
    """
    check_prior(prior, params.covariance_type, params.means.shape[1])
    module = cov_lib.get(params.covariance_type)
    d = params.means.shape[1]
    dtype = params.means.dtype
    active = params.weights > 0
    chol = params.precisions_cholesky
    kappa = prior.shrinkage

    # μ_k | Σ_k ~ N(μ_P, Σ_k / κ); log_det_cholesky is ½ log |Σ_k⁻¹|.
    half_log_det = module.log_det_cholesky(chol, d)
    maha = module.mahalanobis(prior.mean[None, :], params.means, chol)[0]
    means_lp = -0.5 * d * jnp.log(2 * math.pi / kappa) + half_log_det - 0.5 * kappa * maha

    cov_lp = module.log_prior(chol, half_log_det, prior)

    n_active = jnp.sum(active).astype(dtype)
    alpha = prior.dirichlet
    weights_lp = (
        gammaln(n_active * alpha)
        - n_active * gammaln(alpha)
        + (alpha - 1) * jnp.sum(log_weights(params.weights))
    )
    if module.SHARED:  # one covariance: its density counts once
        return jnp.sum(jnp.where(active, means_lp, 0)) + weights_lp + cov_lp
    return jnp.sum(jnp.where(active, means_lp + cov_lp, 0)) + weights_lp
