"""scikit-learn's ``BayesianGaussianMixture`` on jaxem's engine (public as
:class:`jaxem.sklearn.BayesianGaussianMixture`), with the variational family
of :mod:`jaxem._src.gmm.variational`.

This module imports scikit-learn; nothing in ``import jaxem`` imports it.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from sklearn.utils._param_validation import Interval, Options, StrOptions

from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm import variational
from jaxem._src.gmm.estimator_base import DTYPES, MixtureEstimator, _init_array, bind_program
from jaxem._src.init import INIT_METHODS
from jaxem._src.sources import InMemory

__all__ = ["BayesianGaussianMixture"]


class BayesianGaussianMixture(MixtureEstimator):
    """Variational Bayesian Gaussian mixture on jaxem's engine: a drop-in
    replacement for :class:`sklearn.mixture.BayesianGaussianMixture`.

    The parameters, fitted attributes and methods are scikit-learn's, with its
    defaults and meanings (Bishop 2006 §10.2; the Dirichlet process prior in
    its truncated stick-breaking form, Blei & Jordan 2006). A fit runs jaxem's
    compiled program: the initialisation and the ``n_init`` restarts as one
    ``vmap`` of the variational family (:func:`jaxem.gmm.variational.family`).
    As :class:`jaxem.sklearn.GaussianMixture`:

    * **Precision.** float64 (``dtype="float64"``) inside a scoped
      ``jax.enable_x64``; ``dtype="float32"`` on request.
    * **Initialisation.** ``init_params`` takes scikit-learn's four methods
      (with jaxem's own random draws), jaxem's others
      (``"standardized_kmeans"``, ``"hc"``, ``"hc_vvv"``) and ``"auto"``; the
      first M-step from the initial responsibilities is scikit-learn's
      ``_initialize``, except for tied covariances from responsibilities that
      leave rows out (``"random_from_data"`` and ``"k-means++"`` give each
      component one seed row): scikit-learn's tied estimate reads every row as
      if its responsibilities summed to one (a start about as wide as the
      data), jaxem's weights each row by its responsibilities (the seeds' own
      scatter plus ``reg_covar``). ``random_state``:
      :func:`jaxem.sklearn.key_from_random_state`.
    * **Stopping and lower bound.** The monitored value is scikit-learn's
      evidence lower bound (a total over the samples, constants dropped): the
      entropy of an iteration's responsibilities with the parameters of its
      M-step. The engine monitors it per unit of sample weight with ``tol``
      divided by the total weight, so ``n_iter_``, ``converged_``,
      ``lower_bound_`` and the parameters follow scikit-learn's from the same
      start. The restart kept is the one with the highest lower bound one
      iteration after it stopped (scikit-learn compares the bound at the
      stop).
    * **verbose** prints scikit-learn's lines when the compiled fit returns.
    * **Extras** (keyword-only): ``sample_weight`` in :meth:`fit` (a weight
      ``w`` counts a row ``w`` times; the default priors are the weighted data
      mean and covariance), ``n_refine`` and ``dtype``.

    Attributes:
        weights_, means_, covariances_, precisions_, precisions_cholesky_:
            the posterior's expected weights, means and covariances.
        weight_concentration_: ``dirichlet_process``: the tuple ``(a, b)`` of
            the sticks' Beta parameters; ``dirichlet_distribution``: (K,).
        mean_precision_, degrees_of_freedom_: (K,) (``tied``: one degrees of
            freedom).
        weight_concentration_prior_, mean_precision_prior_, mean_prior_,
        degrees_of_freedom_prior_, covariance_prior_: the priors used (the
            defaults computed from the data).
        converged_, n_iter_, lower_bound_, lower_bounds_: as scikit-learn's.
        n_features_in_, feature_names_in_: as every scikit-learn estimator.

    Example:
        >>> import numpy as np
        >>> from jaxem.sklearn import BayesianGaussianMixture
        >>> X = np.array([[1, 2], [1, 4], [1, 0], [4, 2], [12, 4], [10, 7]])
        >>> bgm = BayesianGaussianMixture(n_components=2, random_state=42).fit(X)
        >>> np.round(np.sort(bgm.means_[:, 0]), 1)  # scikit-learn's: 2.49..., 8.45...
        array([2.5, 8.5])
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(cov_lib.COVARIANCE_TYPES))],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "init_params": [StrOptions({*INIT_METHODS, "auto"})],
        "weight_concentration_prior_type": [StrOptions(set(variational.WEIGHT_PRIOR_TYPES))],
        "weight_concentration_prior": [None, Interval(numbers.Real, 0.0, None, closed="neither")],
        "mean_precision_prior": [None, Interval(numbers.Real, 0.0, None, closed="neither")],
        "mean_prior": [None, "array-like"],
        "degrees_of_freedom_prior": [None, Interval(numbers.Real, 0.0, None, closed="neither")],
        "covariance_prior": [
            None,
            "array-like",
            Interval(numbers.Real, 0.0, None, closed="neither"),
        ],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_refine": [Interval(numbers.Integral, 0, None, closed="left")],
        "dtype": [StrOptions(set(DTYPES)), Options(type, {np.float64, np.float32})],
    }

    _final_name = "final lower bound"
    _tol_of = "lower bound"

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        n_refine=0,
        dtype="float64",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_refine = n_refine
        self.dtype = dtype

    # ----------------------------------------------------------------- hooks

    def _check_fit_parameters(self, x):
        self._given_priors(x.shape[1], x.dtype)

    def _given_priors(self, n_features, dtype):
        """The priors given as arguments, validated as scikit-learn does (None
        where the default from the data applies)."""
        mean_prior = covariance_prior = None
        if self.mean_prior is not None:
            mean_prior = _init_array("means", self.mean_prior, (n_features,), dtype)
        dof = self.degrees_of_freedom_prior
        if dof is not None and not dof > n_features - 1.0:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' should be greater than "
                f"{n_features - 1}, but got {dof:.3f}."
            )
        if self.covariance_prior is not None:
            kind = self.covariance_type
            name = f"{kind} covariance_prior"
            if kind == "spherical":
                covariance_prior = np.asarray(self.covariance_prior, dtype)
                if covariance_prior.size == 1:  # a number, or [2.0] as scikit-learn takes it
                    covariance_prior = covariance_prior.reshape(())
                if covariance_prior.ndim != 0 or not 0 < covariance_prior < np.inf:
                    raise ValueError(
                        f"The parameter {name!r} should be a positive number; got "
                        f"{self.covariance_prior!r}"
                    )
            elif kind in ("full", "tied"):
                shape = (n_features, n_features)
                covariance_prior = _init_array(name, self.covariance_prior, shape, dtype)
                symmetric = np.allclose(covariance_prior, covariance_prior.T)
                if not symmetric or np.linalg.eigvalsh(covariance_prior).min() <= 0:
                    raise ValueError(f"{name!r} should be symmetric, positive-definite")
            else:
                covariance_prior = _init_array(name, self.covariance_prior, (n_features,), dtype)
                if np.any(covariance_prior <= 0):
                    raise ValueError(f"{name!r} should be positive")
        return mean_prior, covariance_prior

    def _make_family(self, x, w):
        mean_prior, covariance_prior = self._given_priors(x.shape[1], x.dtype)
        if covariance_prior is None and w is not None and float(jnp.sum(w)) < 2:
            raise ValueError(
                "The default covariance_prior is the data's unbiased covariance, which "
                "needs a total sample weight of at least 2, as scikit-learn needs two "
                "samples (a weight w counts a row w times); "
                f"got {float(jnp.sum(w)):.3g}. Scale the weights (for example to sum to "
                "n_samples) or give covariance_prior."
            )
        family = variational.family(
            self.covariance_type,
            weight_concentration_prior_type=self.weight_concentration_prior_type,
            weight_concentration_prior=self.weight_concentration_prior,
            mean_precision_prior=self.mean_precision_prior,
            mean_prior=mean_prior,
            degrees_of_freedom_prior=self.degrees_of_freedom_prior,
            covariance_prior=covariance_prior,
            reg_covar=self.reg_covar,
        )
        source = InMemory.of(family, x, w)
        bound = bind_program(family, source, jnp.asarray(self.n_components, jnp.int32))
        self.weight_concentration_prior_ = float(bound.weight_concentration_prior)
        self.mean_precision_prior_ = float(bound.mean_precision_prior)
        self.mean_prior_ = np.array(bound.mean_prior)
        self.degrees_of_freedom_prior_ = float(bound.degrees_of_freedom_prior)
        covariance = np.array(bound.covariance_prior)
        self.covariance_prior_ = float(covariance) if covariance.ndim == 0 else covariance
        return bound

    def _bound_scale(self, n_samples, weights):
        return float(n_samples if weights is None else np.sum(weights, dtype=np.float64))

    def _is_process(self) -> bool:
        return self.weight_concentration_prior_type == "dirichlet_process"

    def _check_current_shapes(self, n_features):
        module = cov_lib.get(self.covariance_type)
        if (
            self.means_.shape != (self.n_components, n_features)
            or np.shape(self.covariances_) != module.shape(self.n_components, n_features)
            or isinstance(self.weight_concentration_, tuple) != self._is_process()
        ):
            raise ValueError(
                "warm_start=True continues from the last fit, whose parameters "
                f"(means {self.means_.shape}, covariances {np.shape(self.covariances_)}) do "
                f"not fit n_components={self.n_components}, covariance_type="
                f"{self.covariance_type!r}, weight_concentration_prior_type="
                f"{self.weight_concentration_prior_type!r} and {n_features} features"
            )

    def _set_params(self, params: variational.VariationalParams) -> None:
        concentration = np.array(params.weight_concentration)
        if self._is_process():
            self.weight_concentration_ = (concentration[0], concentration[1])
        else:
            self.weight_concentration_ = concentration
        self.mean_precision_ = np.array(params.mean_precision)
        self.means_ = np.array(params.means)
        self.degrees_of_freedom_ = np.array(params.degrees_of_freedom)[()]
        self.covariances_ = np.array(params.covariances)
        self.precisions_cholesky_ = np.array(params.precisions_cholesky)
        module = cov_lib.get(self.covariance_type)
        self.precisions_ = np.array(module.precisions(params.precisions_cholesky))
        self.weights_ = np.array(params.weights)

    def _params(self, dtype=None) -> variational.VariationalParams:
        """The fitted posterior as a :class:`VariationalParams` (call in the
        computing scope)."""
        dtype = self._dtype() if dtype is None else dtype
        concentration = self.weight_concentration_
        if isinstance(concentration, tuple):
            concentration = np.stack(concentration)
        return variational.VariationalParams(
            jnp.asarray(concentration, dtype),
            jnp.asarray(self.mean_precision_, dtype),
            jnp.asarray(self.means_, dtype),
            jnp.asarray(self.degrees_of_freedom_, dtype),
            jnp.asarray(self.covariances_, dtype),
            jnp.asarray(self.precisions_cholesky_, dtype),
            self.covariance_type,
            self.weight_concentration_prior_type,
        )

    def _family_for_prediction(self):
        return variational.family(
            self.covariance_type,
            weight_concentration_prior_type=self.weight_concentration_prior_type,
        )

    def _mixture(self):
        return self._params().mixture()

    # ------------------------------------------------------------ prediction

    def score_samples(self, X):
        """(n_samples,) ``logsumexp_k`` of the expected log-weights and
        log-densities (scikit-learn's ``score_samples`` of this model)."""
        return self._densities(X)[0]

    def score(self, X, y=None):
        """The mean of :meth:`score_samples` (a float)."""
        return float(np.mean(self.score_samples(X)))
