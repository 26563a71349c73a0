"""Conversion from scikit-learn's ``GaussianMixture`` (scikit-learn is not imported)."""

from __future__ import annotations

from jaxem._src.gmm.params import GMMParams, make_params

__all__ = ["from_sklearn"]


def from_sklearn(estimator: object) -> GMMParams:
    """Read a fitted ``sklearn.mixture.GaussianMixture`` into :class:`GMMParams`.

    Uses its ``weights_``, ``means_``, ``covariances_`` and ``covariance_type``;
    arrays keep their dtype where JAX allows it (float64 needs ``jax_enable_x64``).

    Example:
        >>> from sklearn.mixture import GaussianMixture  # doctest: +SKIP
        >>> est = GaussianMixture(3).fit(x)  # doctest: +SKIP
        >>> params = gmm.from_sklearn(est)  # doctest: +SKIP
    """
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
