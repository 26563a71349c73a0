"""scikit-learn's ``GaussianMixture`` estimator on jaxem's engine (public as
:class:`jaxem.sklearn.GaussianMixture`).

This module imports scikit-learn; nothing in ``import jaxem`` imports it.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from sklearn.utils._param_validation import Interval, Options, StrOptions

from jaxem._src.acceleration import Squarem
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.criteria import n_parameters
from jaxem._src.gmm.estimator_base import (
    DTYPES,
    MixtureEstimator,
    _init_array,
    computing,
    key_from_random_state,
)
from jaxem._src.gmm.fit import family as gaussian_family
from jaxem._src.gmm.fit import resolve_formulation
from jaxem._src.gmm.init import INIT_METHODS
from jaxem._src.gmm.params import GMMParams, from_precisions, precisions
from jaxem._src.gmm.prior import Prior

__all__ = ["GaussianMixture", "key_from_random_state"]


class GaussianMixture(MixtureEstimator):
    """Gaussian mixture fitted by EM on jaxem's engine: a drop-in replacement for
    :class:`sklearn.mixture.GaussianMixture`.

    The parameters, fitted attributes and methods are scikit-learn's, with its
    defaults and meanings; a fit runs jaxem's compiled program (initialisation and
    the ``n_init`` restarts as one ``vmap``, :func:`jaxem.gmm.fit`). Differences
    from scikit-learn, and the extras:

    * **Precision.** Computes in float64 (``dtype="float64"``) inside a scoped
      ``jax.enable_x64``, whatever the input's dtype: the process's JAX setting
      is not changed. scikit-learn computes in the input's dtype (float64, or
      float32 for float32 input); ``dtype="float32"`` computes in float32
      (faster, half the memory; the fitted attributes are then float32).
    * **Initialisation.** ``init_params`` takes scikit-learn's four methods
      (``"kmeans"``, ``"k-means++"``, ``"random"``, ``"random_from_data"``, with
      their semantics but jaxem's own random draws, so the starts are not
      scikit-learn's), jaxem's other methods (:data:`jaxem.gmm.INIT_METHODS`:
      ``"standardized_kmeans"``, ``"hc"``, ``"hc_vvv"``) and ``"auto"``, jaxem's
      portfolio (the restarts spread over several methods). ``weights_init``,
      ``means_init`` and ``precisions_init`` replace what the method gives, as in
      scikit-learn (covariances not given are those of the method's
      responsibilities); with all three given no method runs and the ``n_init``
      restarts, identical, run once. A tied covariance from responsibilities
      that leave rows out (``"random_from_data"``, ``"k-means++"``: one seed
      row per component) is the seeds' own scatter plus ``reg_covar``, where
      scikit-learn's reads every row as if its responsibilities summed to one.
    * **random_state.** An int ``s`` is ``jax.random.key(s)``; a
      ``RandomState`` (or ``None``: NumPy's global one) is drawn from once
      (:func:`key_from_random_state`). Restart ``i`` uses
      ``jax.random.split(key, n_init)[i]``. :meth:`sample` derives its key the
      same way, so with an int it returns the same points at every call, as
      scikit-learn's does.
    * **Restarts.** Each restart runs until ``|Δ lower bound| < tol`` or
      ``max_iter`` (``n_refine=0``, the default, is scikit-learn's procedure;
      ``n_refine=r`` then continues the ``r`` best by Aitken's rule,
      :func:`jaxem.gmm.fit`). The restart kept is the one whose returned
      parameters have the highest log-likelihood (scikit-learn compares the
      lower bounds, the log-likelihoods one M-step earlier), and a restart that
      ends on a degenerate optimum (a likelihood spike on a collapsed component)
      is kept only if every restart does.
    * **Stopping.** The rule is scikit-learn's; in addition a change within
      rounding of the log-likelihood (``16·eps·|ll|``) stops a restart when
      ``tol > 0``, so a ``tol`` below that stops at the dtype's resolution
      instead (and reports converged).
    * **Empty components.** A component that loses every point gets weight
      exactly 0 and stays inactive (scikit-learn keeps it alive with weight
      ~1e-15); :meth:`bic` and :meth:`aic` count the parameters of active
      components only, scikit-learn's count when all are active.
    * **verbose.** The EM loop is compiled, so nothing is printed while it runs:
      scikit-learn's lines (``Initialization i``, every ``verbose_interval``
      iterations of the kept restart with its change in lower bound, converged
      or not) are printed when the fit returns; the times are the whole fit's
      (compilation included), not per iteration.
    * **Extras** (keyword-only): ``prior`` (MAP EM under a conjugate prior:
      ``"default"``, R mclust's, or a :class:`jaxem.gmm.Prior`; the lower bound
      is then the mean log posterior), ``n_refine`` and ``dtype`` above, and
      ``sample_weight`` in :meth:`fit` (a weight ``w`` counts a row ``w``
      times).

    Compilation: a fit compiles one program per static configuration (the data's
    shape, ``n_components``, ``covariance_type``, ``n_init``, ``max_iter``,
    ``init_params``, ``dtype``); ``tol``, ``reg_covar``, the data and the
    random state are traced and change nothing (:mod:`jaxem._src.programs`).
    The first fit of a configuration takes seconds on CPU, later ones reuse it.

    Parameters:
        n_components, covariance_type, tol, reg_covar, max_iter, n_init,
        init_params, weights_init, means_init, precisions_init, random_state,
        warm_start, verbose, verbose_interval: scikit-learn's (above).
        prior: ``None`` (maximum likelihood, the default), ``"default"`` or a
            :class:`jaxem.gmm.Prior` of this covariance type.
        n_refine: restarts refined after screening (``0 ≤ n_refine ≤ n_init``);
            default 0, scikit-learn's procedure.
        accelerate: ``None`` (plain EM, scikit-learn's) or ``"squarem"`` /
            :class:`jaxem.Squarem`: SQUAREM (:func:`jaxem.fit`); ``n_iter_`` then
            counts its cycles and ``lower_bounds_`` holds the accepted ones.
        dtype: ``"float64"`` (default) or ``"float32"``.

    Attributes:
        weights_, means_, covariances_, precisions_, precisions_cholesky_:
            NumPy arrays in scikit-learn's shapes for ``covariance_type``.
        converged_: whether the kept restart converged.
        n_iter_: its number of EM iterations (M-steps).
        lower_bound_: the mean log-likelihood (with a prior, log posterior) of
            the training data computed in its last E-step, that is of the
            parameters *before* the last M-step: the returned parameters are one
            M-step past it, as in scikit-learn (``score(X)`` is theirs).
        lower_bounds_: the kept restart's lower bound at every iteration.
        n_features_in_, feature_names_in_: as every scikit-learn estimator.

    Example:
        >>> import numpy as np
        >>> from jaxem.sklearn import GaussianMixture
        >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
        >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
        >>> np.sort(gm.means_[:, 0])
        array([ 1., 10.])
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(cov_lib.COVARIANCE_TYPES))],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "init_params": [StrOptions({*INIT_METHODS, "auto"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(numbers.Integral, 1, None, closed="left")],
        "prior": [None, StrOptions({"default"}), Prior],
        "n_refine": [Interval(numbers.Integral, 0, None, closed="left")],
        "accelerate": [None, StrOptions({"squarem"}), Squarem],
        "dtype": [StrOptions(set(DTYPES)), Options(type, {np.float64, np.float32})],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        prior=None,
        n_refine=0,
        accelerate=None,
        dtype="float64",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.prior = prior
        self.n_refine = n_refine
        self.accelerate = accelerate
        self.dtype = dtype

    # ----------------------------------------------------------------- hooks

    def _make_family(self, x, w):
        return gaussian_family(
            self.covariance_type,
            reg_covar=self.reg_covar,
            prior=self.prior,
            formulation=resolve_formulation(
                "auto", np.asarray(x), self.reg_covar, self.covariance_type
            ),
            n_features=x.shape[1],
        )

    def _check_fit_parameters(self, x):
        self._check_initial_parameters(x.shape[1], x.dtype)

    def _check_initial_parameters(self, n_features, dtype):
        k = self.n_components
        module = cov_lib.get(self.covariance_type)
        weights = means = precs = None
        if self.weights_init is not None:
            weights = _init_array("weights_init", self.weights_init, (k,), dtype)
            if np.any(weights < 0) or np.any(weights > 1):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got "
                    f"max value {weights.max():.5f}, min value {weights.min():.5f}"
                )
            atol = 1e-6 if dtype == np.float32 else 1e-8
            if not np.allclose(np.abs(1.0 - np.sum(weights)), 0.0, atol=atol):
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got "
                    f"sum(weights) = {np.sum(weights):.5f}"
                )
        if self.means_init is not None:
            means = _init_array("means_init", self.means_init, (k, n_features), dtype)
        if self.precisions_init is not None:
            shape = module.shape(k, n_features)
            precs = _init_array("precisions_init", self.precisions_init, shape, dtype)
            try:
                module.check_values(precs)
            except ValueError as error:
                raise ValueError(
                    f"precisions_init must be valid {self.covariance_type!r} precisions: "
                    + str(error).replace("covariances", "precisions")
                ) from None
        return weights, means, precs

    def _given_starts(self, family, x, w):
        """Starting parameters of every restart when some are given: the
        method's initialisation of each, the given arrays replacing theirs."""
        weights, means, precs = self._check_initial_parameters(x.shape[1], x.dtype)
        if weights is None and means is None and precs is None:
            return None
        if weights is not None and means is not None and precs is not None:
            return from_precisions(
                jnp.asarray(weights), jnp.asarray(means), jnp.asarray(precs), self.covariance_type
            )
        starts = self._method_starts(family, x, w)
        n = starts.weights.shape[0]

        def tile(a):
            return jnp.broadcast_to(jnp.asarray(a), (n, *np.shape(a)))

        if precs is not None:
            covs, chol = cov_lib.get(self.covariance_type).from_precisions(tile(precs))
        else:
            covs, chol = starts.covariances, starts.precisions_cholesky
        return GMMParams(
            starts.weights if weights is None else tile(weights),
            starts.means if means is None else tile(means),
            covs,
            chol,
            self.covariance_type,
        )

    def _check_current_shapes(self, n_features):
        if self.means_.shape != (self.n_components, n_features) or (
            np.shape(self.covariances_)
            != cov_lib.get(self.covariance_type).shape(self.n_components, n_features)
        ):
            raise ValueError(
                "warm_start=True continues from the last fit, whose parameters "
                f"(means {self.means_.shape}, covariances {np.shape(self.covariances_)}) do "
                f"not fit n_components={self.n_components}, covariance_type="
                f"{self.covariance_type!r} and {n_features} features"
            )

    def _set_params(self, params: GMMParams) -> None:
        self.weights_ = np.array(params.weights)
        self.means_ = np.array(params.means)
        self.covariances_ = np.array(params.covariances)
        self.precisions_cholesky_ = np.array(params.precisions_cholesky)
        self.precisions_ = np.array(precisions(params))

    def _params(self, dtype=None) -> GMMParams:
        """The fitted parameters as a :class:`jaxem.gmm.GMMParams` (call in
        the computing scope)."""
        dtype = self._dtype() if dtype is None else dtype
        return GMMParams(
            jnp.asarray(self.weights_, dtype),
            jnp.asarray(self.means_, dtype),
            jnp.asarray(self.covariances_, dtype),
            jnp.asarray(self.precisions_cholesky_, dtype),
            self.covariance_type,
        )

    def _n_parameters(self) -> int:
        with computing(self._dtype()):
            return int(n_parameters(self._params()))

    def bic(self, X):
        """Bayesian information criterion ``−2 log L + p log N`` on ``X`` (lower is
        better; ``p`` counts active components)."""
        n = np.shape(X)[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion ``−2 log L + 2p`` on ``X`` (lower is better)."""
        return -2 * self.score(X) * np.shape(X)[0] + 2 * self._n_parameters()
