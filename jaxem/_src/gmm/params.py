"""The parameters of a Gaussian mixture: an immutable pytree."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.family import MeansShape
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.validation import concrete, dtype_of

__all__ = ["GMMParams", "from_precisions", "make_params", "precisions"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GMMParams(MeansShape):
    """Parameters of a K-component Gaussian mixture in D dimensions.

    Build it with :func:`make_params` (which validates and computes the cached
    Cholesky factors); the fit and step functions return it.

    Attributes:
        weights: (K,) mixing weights, non-negative, summing to 1. A component with
            weight exactly 0 is inactive: it gets zero responsibility and stays
            inactive under EM.
        means: (K, D) component means.
        covariances: scikit-learn's shape for ``covariance_type``: ``full``
            (K, D, D), ``tied`` (D, D), ``diag`` (K, D), ``spherical`` (K,).
        precisions_cholesky: the Cholesky factors of the precisions (as
            scikit-learn's ``precisions_cholesky_``), same shape as
            ``covariances``; upper-triangular ``P`` with ``inv(Σ) = P Pᵀ``.
        covariance_type: static metadata, one of ``"full"``, ``"tied"``,
            ``"diag"``, ``"spherical"``; part of the pytree structure.

    Gradients: the densities read ``weights``, ``means`` and
    ``precisions_cholesky``; ``covariances`` is kept for reading and its
    gradient through a density is zero. The fields are constrained (weights on
    the simplex, factors upper-triangular with a positive diagonal), so a
    gradient step on them does not give a valid model. For gradient-based
    fitting use :mod:`jaxem.gmm.unconstrained` (``to_unconstrained`` /
    ``from_unconstrained``, as :func:`jaxem.fit_gradient` does).
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array
    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))

    def __post_init__(self):
        # an mclust alias ("VVV") is stored as the type it names ("full"): the
        # pytree metadata of parameters built either way must agree
        canonical = cov_lib.ALIASES.get(self.covariance_type, self.covariance_type)
        if canonical is not self.covariance_type:
            object.__setattr__(self, "covariance_type", canonical)


def from_covariances(
    weights: jax.Array, means: jax.Array, covariances: jax.Array, covariance_type: str
) -> GMMParams:
    """Unchecked constructor: computes the precision Cholesky factors (traceable)."""
    module = cov_lib.get(covariance_type)
    return GMMParams(
        weights=weights,
        means=means,
        covariances=covariances,
        precisions_cholesky=module.precisions_cholesky(covariances),
        covariance_type=covariance_type,
    )


def from_precisions(
    weights: jax.Array, means: jax.Array, precisions: jax.Array, covariance_type: str
) -> GMMParams:
    """Unchecked constructor from precisions (``inv(Σ)``, scikit-learn's
    ``precisions_init``): the factors as scikit-learn computes them (traceable)."""
    covariances, prec_chol = cov_lib.get(covariance_type).from_precisions(precisions)
    return GMMParams(weights, means, covariances, prec_chol, covariance_type)


def precisions(params: GMMParams) -> jax.Array:
    """The precisions ``inv(Σ)`` in the shape of ``params.covariances``
    (scikit-learn's ``precisions_``), from the Cholesky factors."""
    return cov_lib.get(params.covariance_type).precisions(params.precisions_cholesky)


def make_params(
    weights: ArrayLike,
    means: ArrayLike,
    covariances: ArrayLike,
    covariance_type: str = "full",
) -> GMMParams:
    """Validate mixture parameters and build a :class:`GMMParams`.

    Shapes and dtypes are always checked; values (weights non-negative and
    summing to 1, covariances symmetric positive definite, everything finite) are
    checked when the arrays are concrete, that is outside ``jit``.

    Args:
        weights: (K,) mixing weights.
        means: (K, D) means.
        covariances: ``full`` (K, D, D), ``tied`` (D, D), ``diag`` (K, D) or
            ``spherical`` (K,).
        covariance_type: one of ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``.

    Returns:
        A :class:`GMMParams` in the common floating dtype of the inputs.

    Raises:
        ValueError: wrong shapes or invalid values; TypeError: non-numeric input.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> p = gmm.make_params(jnp.array([0.3, 0.7]), jnp.zeros((2, 3)),
        ...                     jnp.ones((2, 3)), covariance_type="diag")
        >>> p.precisions_cholesky.shape
        (2, 3)
    """
    module = cov_lib.get(covariance_type)
    arrays = {"weights": weights, "means": means, "covariances": covariances}
    for name, value in arrays.items():
        dtype = dtype_of(name, value)
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
            raise TypeError(f"{name} must be a real numeric array; got dtype {dtype}")
    dtype = jnp.result_type(*(dtype_of(name, v) for name, v in arrays.items()))
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    weights, means, covariances = (
        jnp.asarray(np.asarray(v) if isinstance(v, (list, tuple)) else v, dtype)
        for v in arrays.values()
    )

    if means.ndim != 2:
        raise ValueError(f"means must have shape (n_components, n_features); got {means.shape}")
    n_components, n_features = means.shape
    if weights.shape != (n_components,):
        raise ValueError(
            f"weights must have shape (n_components,) = ({n_components},) to match means "
            f"{means.shape}; got {weights.shape}"
        )
    expected = module.shape(n_components, n_features)
    if covariances.shape != expected:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must have shape {expected} "
            f"to match means {means.shape}; got {covariances.shape}"
        )
    _check_values(weights, means, covariances, covariance_type)
    return from_covariances(weights, means, covariances, covariance_type)


def _check_values(weights, means, covariances, covariance_type: str) -> None:
    w, m, c = concrete(weights), concrete(means), concrete(covariances)
    if w is not None:
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite and non-negative; got {w}")
        eps = np.finfo(w.dtype).eps
        if abs(float(w.sum()) - 1.0) > max(1e3 * eps, 1e-12) * max(1, len(w)):
            raise ValueError(f"weights must sum to 1; they sum to {float(w.sum())!r}")
    if m is not None and not np.all(np.isfinite(m)):
        raise ValueError("means must be finite; got NaN or infinite values")
    if c is None:
        return
    if not np.all(np.isfinite(c)):
        raise ValueError("covariances must be finite; got NaN or infinite values")
    cov_lib.get(covariance_type).check_values(c)
    # variances under the smallest normal number: XLA:CPU flushes them to zero
    # (their Cholesky factors were NaN)
    tiny = np.finfo(c.dtype).tiny if np.issubdtype(c.dtype, np.floating) else 0
    matrices = cov_lib.get(covariance_type).STORAGE in ("full", "tied")
    variances = np.diagonal(c, axis1=-2, axis2=-1) if matrices else c
    if np.any(np.abs(variances) < tiny):
        raise ValueError(
            f"covariances must be at least {tiny:.3g} (the smallest normal {c.dtype} number) "
            "on their diagonal: rescale the data"
        )
