"""Model selection over the number of components and the covariance type."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._validation import as_data, check_key, check_scalar, check_static_int
from jaxem.gmm import covariances as cov_lib
from jaxem.gmm.criteria import n_parameters
from jaxem.gmm.fit import REFINE_MAX_ITER, REFINE_TOL, _fit, check_refine
from jaxem.gmm.init import check_method
from jaxem.gmm.params import GMMParams
from jaxem.gmm.prior import Prior, check_prior, default_prior, log_prior

__all__ = ["CRITERIA", "SelectionResult", "select"]

CRITERIA = ("bic", "aic")


@dataclasses.dataclass(frozen=True)
class SelectionResult:
    """Scores of every (covariance type, K) and the best model.

    Attributes:
        scores: (T, M) criterion for ``covariance_types[t]`` and
            ``n_components[m]``; lower is better (scikit-learn's convention).
        log_likelihoods: (T, M) mean per-sample log-likelihoods of those fits.
        covariance_types: the T covariance types tried.
        n_components: the M numbers of components tried.
        criterion: ``"bic"`` or ``"aic"``.
        best_covariance_type: covariance type of the lowest score.
        best_n_components: K of the lowest score.
        params: :class:`GMMParams` of the chosen model, trimmed to its active components.
        log_likelihood: mean per-sample log-likelihood of the chosen model.
    """

    scores: np.ndarray
    log_likelihoods: np.ndarray
    covariance_types: tuple[str, ...]
    n_components: tuple[int, ...]
    criterion: str
    best_covariance_type: str
    best_n_components: int
    params: GMMParams
    log_likelihood: float

    @property
    def best_score(self) -> float:
        """The criterion of the chosen model (the minimum of ``scores``)."""
        return float(np.nanmin(self.scores))


def criterion_score(
    criterion: str, params: GMMParams, log_likelihood: jax.Array, n_samples: int
) -> jax.Array:
    """BIC ``−2 N ℓ + p log N`` or AIC ``−2 N ℓ + 2 p`` from the mean log-likelihood ℓ."""
    p = n_parameters(params)
    penalty = p * math.log(n_samples) if criterion == "bic" else 2 * p
    return -2 * n_samples * log_likelihood + penalty


@functools.partial(
    jax.jit,
    static_argnames=(
        "k_max",
        "covariance_type",
        "init",
        "n_init",
        "max_iter",
        "criterion",
        "prior_default",
        "n_refine",
        "refine_max_iter",
    ),
)
def _select_type(
    key,
    x,
    ks,
    tol,
    reg_covar,
    prior=None,
    refine_tol=None,
    *,
    k_max,
    covariance_type,
    init,
    n_init,
    max_iter,
    criterion,
    prior_default=False,
    n_refine=0,
    refine_max_iter=1,
):
    """Every K in ``ks`` for one covariance type: one program, vmapped over ``n_active``.

    Returns the fits, their criteria and their mean log-likelihoods (without the
    log prior, which MAP fits include in ``log_likelihood``)."""

    def one(k):
        result = _fit(
            key,
            x,
            k,
            tol,
            reg_covar,
            None,
            prior,
            refine_tol,
            n_components=k_max,
            covariance_type=covariance_type,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            prior_default=prior_default,
            n_refine=n_refine,
            refine_max_iter=refine_max_iter,
        )
        ll = result.log_likelihood
        if prior_default:
            ll = ll - log_prior(result.params, default_prior(x, k, covariance_type)) / x.shape[0]
        elif prior is not None:
            ll = ll - log_prior(result.params, prior) / x.shape[0]
        return result, ll

    results, lls = jax.vmap(one)(ks)
    scores = jax.vmap(lambda p, ll: criterion_score(criterion, p, ll, x.shape[0]))(
        results.params, lls
    )
    return results, scores, lls


def trim(params: GMMParams) -> GMMParams:
    """Drop the inactive (weight 0) components of concrete parameters."""
    keep = np.asarray(params.weights) > 0
    shared = params.covariance_type == "tied"
    return dataclasses.replace(
        params,
        weights=params.weights[keep],
        means=params.means[keep],
        covariances=params.covariances if shared else params.covariances[keep],
        precisions_cholesky=(
            params.precisions_cholesky if shared else params.precisions_cholesky[keep]
        ),
    )


def select(
    key: jax.Array,
    x: ArrayLike,
    *,
    n_components: Iterable[int] = range(1, 10),
    covariance_types: Iterable[str] = cov_lib.COVARIANCE_TYPES,
    criterion: str = "bic",
    n_init: int = 1,
    init: str = "auto",
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    prior: Prior | str | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
) -> SelectionResult:
    """Fit every (covariance type, K) and pick the lowest BIC (or AIC).

    One compiled program per covariance type fits all K at once (a ``vmap`` over
    the number of active components inside ``max(n_components)``), each with
    ``n_init`` restarts from the same ``key``. Not traceable itself: it returns
    the chosen covariance type as a Python string.

    Args:
        key: JAX PRNG key.
        x: (N, D) data.
        n_components: the numbers of components to try.
        covariance_types: the covariance types to try.
        criterion: ``"bic"`` or ``"aic"``; lower is better.
        n_init, init, tol, max_iter, reg_covar: as in :func:`fit`.
        n_refine, refine_tol, refine_max_iter: the refinement of the best
            restarts of each fit, as in :func:`fit`.
        prior: ``None``, ``"default"`` (mclust's default prior for each K and
            covariance type, as mclust's ``priorControl()``) or a
            :class:`~jaxem.gmm.prior.Prior` (for a single covariance type). The
            criteria use the log-likelihood at the MAP estimate, as mclust does.

    Returns:
        :class:`SelectionResult`.

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> r = gmm.select(jax.random.key(1), x, n_components=[1, 2], covariance_types=["diag"])
        >>> r.scores.shape
        (1, 2)
    """
    x = as_data(x)
    check_key(key)
    ks = tuple(check_static_int("n_components", k, minimum=1) for k in n_components)
    if not ks:
        raise ValueError("n_components must name at least one number of components")
    if max(ks) > x.shape[0]:
        raise ValueError(
            f"n_components up to {max(ks)} must be <= the number of samples ({x.shape[0]})"
        )
    types = tuple(cov_lib.check_covariance_type(t) for t in covariance_types)
    if not types:
        raise ValueError("covariance_types must name at least one covariance type")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    check_method(init, allow_auto=True)
    n_init = check_static_int("n_init", n_init, minimum=1)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    check_scalar("reg_covar", reg_covar)
    n_refine, refine_max_iter = check_refine(n_refine, refine_tol, refine_max_iter, n_init)
    prior_default = isinstance(prior, str)
    if prior_default and prior != "default":
        raise ValueError(f"prior must be a gmm.Prior, 'default' or None; got {prior!r}")
    if not prior_default:
        for covariance_type in types:
            check_prior(prior, covariance_type, x.shape[1])

    scores, lls, fits = [], [], []
    for covariance_type in types:
        results, s, ll = _select_type(
            key,
            x,
            jnp.asarray(ks, jnp.int32),
            jnp.asarray(tol, x.dtype),
            jnp.asarray(reg_covar, x.dtype),
            None if prior_default else prior,
            jnp.asarray(refine_tol, x.dtype),
            prior_default=prior_default,
            n_refine=n_refine,
            refine_max_iter=refine_max_iter,
            k_max=max(ks),
            covariance_type=covariance_type,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            criterion=criterion,
        )
        scores.append(np.asarray(s))
        lls.append(np.asarray(ll))
        fits.append(results)
    scores, lls = np.stack(scores), np.stack(lls)
    t, m = np.unravel_index(np.nanargmin(scores), scores.shape)
    best = jax.tree.map(lambda a: a[m], fits[t])
    return SelectionResult(
        scores=scores,
        log_likelihoods=lls,
        covariance_types=types,
        n_components=ks,
        criterion=criterion,
        best_covariance_type=types[t],
        best_n_components=ks[m],
        params=trim(best.params),
        log_likelihood=float(lls[t, m]),
    )
