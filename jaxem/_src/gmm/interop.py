"""Conversion to and from scikit-learn's ``GaussianMixture`` (scikit-learn is
imported only inside :func:`to_sklearn`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxem._src.engine import FitResult
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.params import GMMParams, make_params, precisions
from jaxem._src.loop import EMResult

__all__ = ["from_sklearn", "to_sklearn"]


def from_sklearn(estimator: object) -> GMMParams:
    """Read a fitted ``sklearn.mixture.GaussianMixture`` into :class:`GMMParams`.

    Uses its ``weights_``, ``means_``, ``covariances_`` and ``covariance_type``;
    arrays keep their dtype where JAX allows it (float64 needs ``jax_enable_x64``).
    A ``BayesianGaussianMixture`` (scikit-learn's or jaxem's) is refused: its
    attributes are posterior means, and the mixture they make is not its
    predictive density (``score_samples``); fit ``jaxem.gmm.variational``
    instead, or read the attributes into :func:`make_params` deliberately.

    Example:
        >>> from sklearn.mixture import GaussianMixture  # doctest: +SKIP
        >>> est = GaussianMixture(3).fit(x)  # doctest: +SKIP
        >>> params = gmm.from_sklearn(est)  # doctest: +SKIP
    """
    if hasattr(estimator, "weight_concentration_prior_type"):
        raise TypeError(
            f"from_sklearn reads a GaussianMixture; got a {type(estimator).__name__}, whose "
            "weights_, means_ and covariances_ are posterior means (their mixture is not its "
            "score_samples' density): pass them to gmm.make_params to mean that"
        )
    missing = [a for a in ("weights_", "means_", "covariances_") if not hasattr(estimator, a)]
    if missing or not hasattr(estimator, "covariance_type"):
        raise TypeError(
            "estimator must be a fitted sklearn.mixture.GaussianMixture; "
            f"{type(estimator).__name__} lacks {missing or ['covariance_type']}"
        )
    return make_params(
        estimator.weights_,
        estimator.means_,
        estimator.covariances_,
        covariance_type=estimator.covariance_type,
    )


def to_sklearn(
    params: GMMParams | FitResult | EMResult,
    covariance_type: str | None = None,
    **estimator_params: Any,
) -> Any:
    """A fitted ``sklearn.mixture.GaussianMixture`` holding ``params``.

    Sets scikit-learn's fitted attributes (``weights_``, ``means_``,
    ``covariances_``, ``precisions_``, ``precisions_cholesky_``,
    ``n_features_in_``) as NumPy arrays of the parameters' dtype, so
    ``predict``, ``score``, ``sample``, ``bic`` and a ``warm_start`` refit work.
    Parameters of mclust's models other than scikit-learn's four become the
    scikit-learn type of the same arrays (their ``STORAGE``: ``EII``
    spherical, ``VEI``, ``EVI`` and ``EEI`` diagonal, the others full): the
    same density, scored and sampled by scikit-learn, but a ``warm_start``
    refit (and ``bic``'s parameter count) is that type's, not the mclust model's.
    From a :class:`~jaxem.FitResult` or :class:`~jaxem.EMResult` it also sets
    ``converged_``, ``n_iter_``, ``lower_bound_`` (the log-likelihood before the
    last M-step, scikit-learn's meaning) and ``lower_bounds_``; from bare
    parameters ``converged_`` is True, ``n_iter_`` 0 and ``lower_bound_`` −inf
    (a ``warm_start`` refit then never stops at its first iteration).

    Args:
        params: a single (not batched) :class:`GMMParams`, or a fit's result.
        covariance_type: optional; must equal ``params.covariance_type``.
        **estimator_params: other constructor parameters of the estimator
            (``tol``, ``reg_covar``, ``random_state``, ...).

    Returns:
        A fitted ``sklearn.mixture.GaussianMixture`` (scikit-learn is imported
        here).

    Example:
        >>> import numpy as np
        >>> from jaxem import gmm
        >>> p = gmm.make_params([0.5, 0.5], [[0.0], [4.0]], [1.0, 1.0], "spherical")
        >>> est = gmm.to_sklearn(p, random_state=0)
        >>> est.predict(np.array([[0.2], [3.5]])).tolist()
        [0, 1]
    """
    from sklearn.mixture import GaussianMixture

    result = None
    if isinstance(params, (FitResult, EMResult)):
        result, params = params, params.params
    if not isinstance(params, GMMParams):
        raise TypeError(
            f"params must be a GMMParams, FitResult or EMResult; got {type(params).__name__}"
        )
    if np.ndim(params.weights) != 1:
        raise ValueError(
            f"params must be a single mixture; got a batch of shape {np.shape(params.weights)[:-1]}"
        )
    if covariance_type is not None and covariance_type != params.covariance_type:
        raise ValueError(
            f"covariance_type={covariance_type!r} does not match the parameters' "
            f"{params.covariance_type!r}"
        )
    for name in ("n_components", "covariance_type"):
        if name in estimator_params:
            raise TypeError(f"{name} is set by the parameters; do not pass it")
    estimator = GaussianMixture(
        n_components=params.n_components,
        covariance_type=cov_lib.get(params.covariance_type).STORAGE,
        **estimator_params,
    )
    estimator.weights_ = np.array(params.weights)
    estimator.means_ = np.array(params.means)
    estimator.covariances_ = np.array(params.covariances)
    estimator.precisions_cholesky_ = np.array(params.precisions_cholesky)
    estimator.precisions_ = np.array(precisions(params))
    estimator.n_features_in_ = params.n_features
    if result is None:
        estimator.converged_, estimator.n_iter_ = True, 0
        estimator.lower_bound_, estimator.lower_bounds_ = -np.inf, []
    else:
        n_iter = int(result.n_iter)
        history = np.asarray(result.history)
        estimator.converged_ = bool(result.converged)
        estimator.n_iter_ = n_iter
        estimator.lower_bound_ = float(history[n_iter - 1]) if n_iter else -np.inf
        estimator.lower_bounds_ = [float(v) for v in history[:n_iter]]
    return estimator
