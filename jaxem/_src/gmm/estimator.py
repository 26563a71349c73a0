"""scikit-learn's ``GaussianMixture`` estimator on jaxem's engine (public as
:class:`jaxem.sklearn.GaussianMixture`).

This module imports scikit-learn; nothing in ``import jaxem`` imports it.
"""

from __future__ import annotations

import contextlib
import numbers
import time
import warnings
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from jaxem._src import api, engine
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm import density
from jaxem._src.gmm.criteria import n_parameters
from jaxem._src.gmm.density import sample as sample_params
from jaxem._src.gmm.fit import family as gaussian_family
from jaxem._src.gmm.fit import resolve_formulation
from jaxem._src.gmm.init import INIT_METHODS
from jaxem._src.gmm.params import GMMParams, from_precisions, precisions
from jaxem._src.gmm.prior import Prior
from jaxem._src.programs import BoundedJit
from jaxem._src.sources import InMemory
from jaxem._src.validation import check_sample_weight

__all__ = ["GaussianMixture", "key_from_random_state"]

_DTYPES = {"float64": np.float64, "float32": np.float32}

# How a restart ended (its status code, jaxem.STATUS_NAMES), in verbose lines.
_END_MESSAGES = (
    "converged",
    "did not converge",
    "did not converge (non-finite log-likelihood)",
    "ended on a degenerate optimum",
)


def key_from_random_state(random_state: Any) -> jax.Array:
    """The JAX key of a scikit-learn ``random_state``.

    An int ``s`` gives ``jax.random.key(s)``; a :class:`numpy.random.RandomState`
    gives ``jax.random.key(random_state.randint(2**31 - 1))`` (one draw, which
    advances it, as scikit-learn's own use of it would); ``None`` does the same
    with NumPy's global ``RandomState``, so it differs from call to call.
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return jax.random.key(int(random_state))
    rng = check_random_state(random_state)
    return jax.random.key(int(rng.randint(np.iinfo(np.int32).max)))


def _computing(dtype: np.dtype):
    """float64 within a scoped ``jax_enable_x64`` (the process's setting is
    untouched outside it); float32 as the process has it."""
    if dtype != np.float64:
        return contextlib.nullcontext()
    if callable(getattr(jax, "enable_x64", None)):  # jax >= 0.7
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # pragma: no cover - older jax

    return enable_x64()  # pragma: no cover


def _initial(family, source, key, *, n_components, methods):
    """The restarts' initial parameters, as the engine makes them: statistics
    from each method (:func:`jaxem._src.engine.initial_stats`), then the
    family's M-step."""
    context = source.context(family)
    n_active = jnp.asarray(n_components, jnp.int32)
    family = family.bind(context, n_active)
    x_init, w_init = source.init_data(key)
    starts, _ = engine.initial_stats(
        family, key, x_init, w_init, context,
        n_components=n_components, n_active=n_active, methods=methods,
    )  # fmt: skip
    return jax.vmap(lambda s, f: family.maximize(s, f, context))(starts.stats, starts.params)


_initial_program = BoundedJit(_initial, static_argnames=("n_components", "methods"))


def _densities(params: GMMParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(N,) log-densities and (N, K) responsibilities of the rows of ``x``, from
    one evaluation of the weighted component densities."""
    return density._rowwise(
        params, x, lambda wlp: (jax.nn.logsumexp(wlp, axis=-1), jax.nn.softmax(wlp, axis=-1))
    )


# Prediction compiles once per bucket of rows (padded with zeros, then cut),
# not once per number of rows: cross-validation scores many different sizes.
_densities_program = BoundedJit(_densities, static_argnames=())
_sample_program = BoundedJit(sample_params, static_argnames=("n_samples",))


def _bucket(n: int) -> int:
    """Rows a computation on ``n`` rows is padded to: the next power of two (at
    least 16), or the next multiple of 65,536 beyond that."""
    if n > 65_536:
        return -(-n // 65_536) * 65_536
    return max(16, 1 << (n - 1).bit_length())


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM on jaxem's engine: a drop-in replacement for
    :class:`sklearn.mixture.GaussianMixture`.

    The parameters, fitted attributes and methods are scikit-learn's, with its
    defaults and meanings; a fit runs jaxem's compiled program (initialisation and
    the ``n_init`` restarts as one ``vmap``, :func:`jaxem.gmm.fit`). Differences
    from scikit-learn, and the extras:

    * **Precision.** Computes in float64 (``dtype="float64"``, scikit-learn's
      precision) inside a scoped ``jax.enable_x64``: the process's JAX setting is
      not changed. ``dtype="float32"`` computes in float32 (faster, half the
      memory; the fitted attributes are then float32).
    * **Initialisation.** ``init_params`` takes scikit-learn's four methods
      (``"kmeans"``, ``"k-means++"``, ``"random"``, ``"random_from_data"``, with
      their semantics but jaxem's own random draws, so the starts are not
      scikit-learn's), jaxem's other methods (:data:`jaxem.gmm.INIT_METHODS`:
      ``"standardized_kmeans"``, ``"hc"``, ``"hc_vvv"``) and ``"auto"``, jaxem's
      portfolio (the restarts spread over several methods). ``weights_init``,
      ``means_init`` and ``precisions_init`` replace what the method gives, as in
      scikit-learn (covariances not given are those of the method's
      responsibilities); with all three given no method runs and the ``n_init``
      restarts, identical, run once.
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
        "dtype": [StrOptions(set(_DTYPES)), Options(type, {np.float64, np.float32})],
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
        self.dtype = dtype

    # ------------------------------------------------------------------- fit

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM (``n_init`` restarts, the best kept).

        Args:
            X: (n_samples, n_features) data.
            y: ignored.
            sample_weight: optional (n_samples,) non-negative weights.

        Returns:
            self, fitted.
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """:meth:`fit`, then the labels of ``X`` (equal to ``fit(X).predict(X)``).

        Returns:
            (n_samples,) component labels.
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @_fit_context(prefer_skip_nested_validation=True)
    def _fit(self, X, sample_weight):
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        n_samples, n_features = X.shape
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {n_samples}"
            )
        dtype = np.dtype(_DTYPES.get(self.dtype, self.dtype))
        x = np.asarray(X, dtype)
        weights = self._check_fit_sample_weight(sample_weight, x)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        inits = self._check_initial_parameters(n_features, dtype)
        n_refine = int(self.n_refine)
        if not warm and n_refine > self.n_init:
            raise ValueError(f"n_refine={n_refine} must be <= n_init={self.n_init}")

        start_time = time.perf_counter()
        with _computing(dtype):
            jx = jnp.asarray(x)
            jw = None if weights is None else jnp.asarray(weights)
            family = gaussian_family(
                self.covariance_type,
                reg_covar=self.reg_covar,
                prior=self.prior,
                formulation=resolve_formulation("auto", x, self.reg_covar),
                n_features=n_features,
            )
            if warm:
                starts = self._current_params(n_features, dtype)
            elif any(a is not None for a in inits):
                starts = self._given_starts(family, jx, jw, inits)
            else:
                starts = None
            if self.max_iter == 0:
                self._set_initial(family, jx, jw, starts)
                return
            run = dict(
                tol=self.tol, sample_weight=jw, n_refine=min(n_refine, self._n_starts(starts))
            )
            if starts is None:
                key = key_from_random_state(self.random_state)
                result = api.fit(
                    family, key, jx, self.n_components, init=self.init_params,
                    n_init=self.n_init, max_iter=self.max_iter, **run,
                )  # fmt: skip
            else:
                result = api.fit(family, None, jx, start=starts, max_iter=self.max_iter, **run)
            converged = bool(result.converged)
            if warm:
                result, converged = self._warm_first_iteration(family, jx, starts, result, run)
            self._set_result(result, converged)
        if self.verbose:
            self._print_verbose(result, converged, time.perf_counter() - start_time)
        if not self.converged_:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=4,  # the caller of fit
            )

    def _check_fit_sample_weight(self, sample_weight, x):
        if sample_weight is None:
            return None
        w = _check_sample_weight(sample_weight, x, dtype=x.dtype)
        check_sample_weight(w, x)  # finite, non-negative, not all zero
        # all ones is the unweighted fit: the initialisers then draw as without weights
        return None if np.all(w == 1) else np.asarray(w, x.dtype)

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

    def _given_starts(self, family, x, w, inits):
        """Starting parameters of every restart when some are given: the
        method's initialisation of each, the given arrays replacing theirs."""
        weights, means, precs = inits
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

    def _method_starts(self, family, x, w):
        source = InMemory(x, jnp.ones(x.shape[0], x.dtype) if w is None else w, w is not None)
        methods = engine.init_methods_for(family, self.init_params, self.n_init, x.shape[0])
        key = key_from_random_state(self.random_state)
        return _initial_program(
            family, source, key, n_components=self.n_components, methods=methods
        )

    def _current_params(self, n_features, dtype):
        check_is_fitted(self)
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
        return self._params(dtype)

    @staticmethod
    def _n_starts(starts):
        return 1 if starts is None else (starts.weights.shape[0] if starts.weights.ndim == 2 else 1)

    def _warm_first_iteration(self, family, x, start, result, run):
        """scikit-learn's warm start compares the first iteration's lower bound
        with the previous fit's: within ``tol`` it stops after that iteration.
        The engine's loop starts from ``−inf`` instead; both rules agree from the
        second iteration on."""
        first = float(result.history[0])
        previous = float(self.lower_bound_)
        if not abs(first - previous) < self.tol:
            return result, bool(result.converged)
        if self.max_iter > 1:
            result = api.fit(family, None, x, start=start, max_iter=1, **run)
        return result, True

    def _set_result(self, result, converged):
        params = result.params
        n_iter = int(result.n_iter)
        history = np.asarray(result.history)
        self._set_params(params)
        self.converged_ = bool(converged)
        self.n_iter_ = n_iter
        self.lower_bound_ = float(history[n_iter - 1])
        self.lower_bounds_ = [float(v) for v in history[:n_iter]]

    def _set_initial(self, family, x, w, starts):
        """``max_iter=0``: the initial parameters (of the last restart, as
        scikit-learn keeps), no iteration."""
        if starts is None:
            starts = self._method_starts(family, x, w)
        if starts.weights.ndim == 2:
            starts = jax.tree.map(lambda a: a[-1], starts)
        self._set_params(starts)
        self.converged_ = False
        self.n_iter_ = 0
        self.lower_bound_ = -np.inf
        self.lower_bounds_ = []

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

    def _dtype(self) -> np.dtype:
        return np.dtype(_DTYPES.get(self.dtype, self.dtype))

    def _print_verbose(self, result, converged, seconds):
        n_restarts = np.shape(result.restart_status)[0]
        best = int(result.best_restart)
        for i in range(n_restarts):
            print(f"Initialization {i}")
            if i == best:
                history = self.lower_bounds_
                for n in range(self.verbose_interval, self.n_iter_ + 1, self.verbose_interval):
                    if self.verbose == 1:
                        print(f"  Iteration {n}")
                    else:
                        change = history[n - 1] - (history[n - 2] if n > 1 else -np.inf)
                        print(f"  Iteration {n}\t ll change {change:.5f}")
                message = "converged" if converged else "did not converge"
            else:
                message = _END_MESSAGES[int(result.restart_status[i])]
            if self.verbose == 1:
                print(f"Initialization {message}.")
            else:
                ll = float(result.restart_log_likelihoods[i])
                bound = f"\t lower bound {self.lower_bound_:.5f}" if i == best else ""
                print(
                    f"Initialization {message}. time lapse {seconds:.5f}s (whole fit)"
                    f"{bound}\t final log-likelihood {ll:.5f}."
                )

    # ------------------------------------------------------------ prediction

    def _validated(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(X, self._dtype())

    def _densities(self, X) -> tuple[np.ndarray, np.ndarray]:
        x = self._validated(X)
        n = x.shape[0]
        padded = np.zeros((_bucket(n), x.shape[1]), x.dtype)
        padded[:n] = x
        with _computing(self._dtype()):
            log_density, resp = _densities_program(self._params(), jnp.asarray(padded))
            return np.array(log_density[:n]), np.array(resp[:n])

    def score_samples(self, X):
        """(n_samples,) log-density of each sample under the mixture."""
        return self._densities(X)[0]

    def score(self, X, y=None):
        """The mean log-likelihood of ``X`` (a float)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X):
        """(n_samples, n_components) posterior probabilities of the components."""
        return self._densities(X)[1]

    def predict(self, X):
        """(n_samples,) the most probable component of each sample."""
        return np.argmax(self.predict_proba(X), axis=1)

    def sample(self, n_samples=1):
        """Draw ``n_samples`` points from the fitted mixture.

        Returns:
            ``(X, y)``: (n_samples, n_features) points grouped by component and
            their (n_samples,) component labels in increasing order, as
            scikit-learn returns them. The key comes from ``random_state``
            (:func:`key_from_random_state`).
        """
        check_is_fitted(self)
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        n_samples = int(n_samples)
        with _computing(self._dtype()):
            key = key_from_random_state(self.random_state)
            x, labels = _sample_program(key, self._params(), n_samples=_bucket(n_samples))
            x, labels = np.asarray(x)[:n_samples], np.asarray(labels)[:n_samples]
        order = np.argsort(labels, kind="stable")
        return np.array(x[order]), labels[order].astype(np.int64)

    def _n_parameters(self) -> int:
        with _computing(self._dtype()):
            return int(n_parameters(self._params()))

    def bic(self, X):
        """Bayesian information criterion ``−2 log L + p log N`` on ``X`` (lower is
        better; ``p`` counts active components)."""
        n = np.shape(X)[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion ``−2 log L + 2p`` on ``X`` (lower is better)."""
        return -2 * self.score(X) * np.shape(X)[0] + 2 * self._n_parameters()


def _init_array(name, value, shape, dtype):
    array = check_array(
        value, dtype=[np.float64, np.float32], ensure_2d=False, allow_nd=True, input_name=name
    )
    if array.shape != tuple(shape):
        raise ValueError(
            f"The parameter {name!r} should have the shape of {tuple(shape)}, but got {array.shape}"
        )
    return np.asarray(array, dtype)
