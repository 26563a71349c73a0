"""A smooth bijection between :class:`GMMParams` and unconstrained parameters.

Gradient-based maximum likelihood (``jaxem.gmm.gradient``) optimises a pytree of
free real numbers; this module maps it to mixture parameters and back:

* weights ↔ ``logits``: ``π = softmax(logits)``; :func:`to_unconstrained` returns
  ``logits = log π`` (``softmax`` is invariant to adding a constant, so the inverse
  holds up to that constant: ``logits`` and ``logits + c`` are the same mixture).
  A weight of exactly 0 (an inactive component) maps to a logit of ``-inf`` and
  back to a weight of exactly 0. ``-inf`` is not a point an optimiser can move,
  so :func:`jaxem.gmm.gradient.fit_gradient` freezes inactive components with a
  mask instead of optimising their logits.
* means ↔ ``means``, unchanged.
* covariances ↔ ``cholesky``: the free coordinates of the **precision** Cholesky
  factor ``P`` (upper-triangular, ``inv(Σ) = P Pᵀ``, the factor ``GMMParams``
  already stores), with its diagonal on a log scale:

  ========== ======================= =============================================
  type       ``cholesky`` shape      coordinates
  ========== ======================= =============================================
  full       (K, D(D+1)/2)           upper triangle of ``P_k`` row by row
                                     (``jnp.triu_indices(D)``), ``log P_k,ii`` on
                                     the diagonal
  tied       (D(D+1)/2,)             the same for the shared ``P``
  diag       (K, D)                  ``log p_kd = −½ log σ²_kd`` (a log-variance)
  spherical  (K,)                    ``log p_k = −½ log σ²_k``
  ========== ======================= =============================================

Why the precision factor rather than the covariance factor ``Σ = L Lᵀ``: the
log-density needs only ``P``,
``log N(x | μ, Σ) = −½ D log 2π + Σ_i log P_ii − ½ ‖(x − μ)ᵀ P‖²``, so the
objective and its gradient cost no Cholesky decomposition or triangular solve,
and the parameters are exactly the ones the density code reads. For one Gaussian
with known mean, ``−log L = −Σ_i log P_ii + ½ tr(Pᵀ S P)`` is convex in ``P``
(convex in ``log P_ii`` too), while in the covariance factor
``log L`` involves ``L⁻¹`` and is not. ``covariances`` are still returned (computed
from ``P`` by a triangular solve); under ``jit`` that work is dropped when only
the density is used.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src.family import log_weights
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.density import log_prob
from jaxem._src.gmm.params import GMMParams

__all__ = ["UnconstrainedParams", "from_unconstrained", "log_likelihood", "to_unconstrained"]


class UnconstrainedParams(NamedTuple):
    """Mixture parameters as free real numbers (a pytree of three arrays).

    Attributes:
        logits: (K,) ``π = softmax(logits)``; ``-inf`` for an inactive component.
        means: (K, D) component means.
        cholesky: free coordinates of the precision Cholesky factors (see the
            module docstring): ``full`` (K, D(D+1)/2), ``tied`` (D(D+1)/2,),
            ``diag`` (K, D), ``spherical`` (K,).
    """

    logits: jax.Array
    means: jax.Array
    cholesky: jax.Array


def to_unconstrained(params: GMMParams) -> UnconstrainedParams:
    """Map mixture parameters to free real numbers (inverse of :func:`from_unconstrained`).

    Args:
        params: a :class:`GMMParams`; its ``precisions_cholesky`` is used, so the
            map is exact for any valid parameters.

    Returns:
        :class:`UnconstrainedParams` with ``logits = log π`` (``-inf`` where
        ``π_k = 0``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import gmm
        >>> from jaxem.gmm import unconstrained
        >>> p = gmm.make_params(jnp.array([0.25, 0.75]), jnp.zeros((2, 2)),
        ...                     jnp.ones(2) * 4.0, "spherical")
        >>> u = unconstrained.to_unconstrained(p)
        >>> [round(float(c), 4) for c in u.cholesky]  # log(1 / sqrt(4))
        [-0.6931, -0.6931]
        >>> back = unconstrained.from_unconstrained(u, "spherical")
        >>> bool(jnp.allclose(back.weights, p.weights))
        True
    """
    if not isinstance(params, GMMParams):
        raise TypeError(f"params must be a GMMParams; got {type(params).__name__}")
    logits = log_weights(params.weights, -jnp.inf)
    cholesky = cov_lib.get(params.covariance_type).to_unconstrained(params.precisions_cholesky)
    return UnconstrainedParams(logits=logits, means=params.means, cholesky=cholesky)


def from_unconstrained(u: UnconstrainedParams, covariance_type: str) -> GMMParams:
    """Map free real numbers to mixture parameters (smooth, traceable, unchecked values).

    Args:
        u: :class:`UnconstrainedParams` (any pytree with fields ``logits`` (K,),
            ``means`` (K, D) and ``cholesky``; see the module docstring for its
            shape).
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``;
            static (Python string).

    Returns:
        :class:`GMMParams` with ``weights = softmax(logits)``, ``means``, the
        precision Cholesky factors rebuilt from ``cholesky`` and the covariances
        they imply.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem.gmm import unconstrained
        >>> u = unconstrained.UnconstrainedParams(
        ...     logits=jnp.zeros(2), means=jnp.zeros((2, 2)), cholesky=jnp.zeros((2, 3)))
        >>> p = unconstrained.from_unconstrained(u, "full")
        >>> p.weights.tolist(), p.covariances[0].tolist()
        ([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]])
    """
    module = cov_lib.get(covariance_type)
    logits = jnp.asarray(u.logits)
    means = jnp.asarray(u.means)
    cholesky = jnp.asarray(u.cholesky)
    if means.ndim != 2 or logits.shape != means.shape[:1]:
        raise ValueError(
            f"u.means must be (K, D) and u.logits (K,); got {means.shape} and {logits.shape}"
        )
    n_components, n_features = means.shape
    expected = module.unconstrained_shape(n_components, n_features)
    if cholesky.shape != expected:
        raise ValueError(
            f"u.cholesky for covariance_type={covariance_type!r} with means {means.shape} "
            f"must have shape {expected}; got {cholesky.shape}"
        )
    weights = jax.nn.softmax(logits)
    factor, covariances = module.from_unconstrained(cholesky, n_features)
    return GMMParams(
        weights=weights,
        means=means,
        covariances=covariances,
        precisions_cholesky=factor,
        covariance_type=covariance_type,
    )


def log_likelihood(u: UnconstrainedParams, x: ArrayLike, covariance_type: str) -> jax.Array:
    """Mean per-sample log-likelihood ``(1/N) Σ_n log p(x_n)`` as a function of ``u``.

    Differentiable in ``u`` and ``x``: the objective of gradient-based fitting.

    Args:
        u: :class:`UnconstrainedParams`.
        x: (N, D) data.
        covariance_type: static.

    Returns:
        () the mean log-likelihood.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem.gmm import unconstrained
        >>> u = unconstrained.UnconstrainedParams(jnp.zeros(1), jnp.zeros((1, 1)), jnp.zeros(1))
        >>> grad = jax.grad(unconstrained.log_likelihood)(u, jnp.ones((4, 1)), "spherical")
        >>> grad.means.tolist()  # d/dμ of −½(x − μ)² at x = 1, μ = 0
        [[1.0]]
    """
    return jnp.mean(log_prob(from_unconstrained(u, covariance_type), x))
