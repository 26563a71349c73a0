"""Gradient-based maximum likelihood for a Gaussian mixture (the alternative to EM).

:func:`fit_gradient` optimises the mean log-likelihood over the unconstrained
parameters of :mod:`jaxem.gmm.unconstrained` with any optax optimizer, in the
same loop, with the same stopping rule and the same result type as EM: an EM
run and a gradient run from the same start are drop-in comparable.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxem._src import gradient as gradient_lib
from jaxem._src.gmm.density import check_data_for
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.unconstrained import from_unconstrained, log_likelihood, to_unconstrained
from jaxem._src.loop import EMResult
from jaxem._src.validation import check_scalar, check_static_int

__all__ = ["fit_gradient"]


def fit_gradient(
    params: GMMParams,
    x: ArrayLike,
    optimizer: optax.GradientTransformation,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
) -> EMResult:
    """Fit a Gaussian mixture by maximising its log-likelihood with an optax optimizer.

    The optimizer moves :class:`~jaxem.gmm.unconstrained.UnconstrainedParams`
    (logits, means, log-diagonal precision Cholesky factors); the objective is
    the mean per-sample log-likelihood ``(1/N) Σ_n log p(x_n)``, the quantity EM
    reports. Components with weight exactly 0 in ``params`` stay inactive: their
    parameters are frozen (masked out of the objective, so their gradient is
    exactly 0) and their weight stays 0.

    Unlike EM there is no ``reg_covar``: the covariances are whatever maximises
    the likelihood, and a component collapsing on a point makes the likelihood
    grow without bound, as it does for EM without regularisation.

    Not jitted itself (like :func:`jaxem.em`): wrap it in ``jax.jit`` with the
    optimizer closed over, or built inside the jitted function from traced
    learning rates.

    Args:
        params: starting :class:`GMMParams` (K components, any covariance type).
        x: (N, D) data.
        optimizer: any optax ``GradientTransformation`` (``optax.adam(1e-2)``,
            ``optax.sgd(1e-2, momentum=0.9)``, ``optax.lbfgs()``).
        tol: tolerance on the change of the mean log-likelihood (traced).
        max_iter: maximum number of optimizer updates (static).

    Returns:
        :class:`jaxem.EMResult` whose ``params`` is a :class:`GMMParams` of the
        same covariance type; ``history`` and ``n_iter`` count optimizer updates
        as EM's count M-steps.

    Example:
        >>> import jax, jax.numpy as jnp, optax, jaxem
        >>> from jaxem import gmm
        >>> from jaxem._src.gmm.gradient import fit_gradient
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(0), (100, 1)) - 3,
        ...                      jax.random.normal(jax.random.key(1), (100, 1)) + 3])
        >>> start = gmm.make_params(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]),
        ...                         jnp.ones((2, 1, 1)))
        >>> by_em = jaxem.em(gmm.e_step, gmm.m_step, start, x, tol=1e-7, max_iter=500)
        >>> by_lbfgs = fit_gradient(start, x, optax.lbfgs(), tol=1e-7, max_iter=500)
        >>> bool(jnp.abs(by_em.log_likelihood - by_lbfgs.log_likelihood) < 1e-5)
        True
    """
    x = check_data_for(params, x)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    covariance_type = params.covariance_type
    active = params.weights > 0
    u = to_unconstrained(params)
    # Optimise finite logits; inactive components are pinned to -inf by the mask.
    u = u._replace(logits=jnp.where(active, u.logits, 0))

    def masked(v):
        return v._replace(logits=jnp.where(active, v.logits, -jnp.inf))

    result = gradient_lib.fit_gradient(
        lambda v: log_likelihood(masked(v), x, covariance_type),
        u,
        optimizer,
        tol=tol,
        max_iter=max_iter,
    )
    return dataclasses.replace(
        result, params=from_unconstrained(masked(result.params), covariance_type)
    )
