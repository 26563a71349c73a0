"""What jaxem's scikit-learn mixture estimators share (:mod:`jaxem.sklearn`).

:class:`MixtureEstimator` is scikit-learn's ``BaseMixture`` procedure on
jaxem's engine, written once: validation, the scoped float64, the random state,
``n_init`` restarts as one compiled fit, ``warm_start``, ``max_iter=0``,
scikit-learn's ``n_iter_`` / ``converged_`` / ``lower_bound_``, ``verbose``,
``sample_weight``, and prediction and sampling padded to buckets of rows. A
subclass gives its family, how its parameters map to the fitted attributes, and
the scale of its lower bound (1 for a mean log-likelihood, the total weight for
the evidence lower bound, which scikit-learn reports as a total).

This module imports scikit-learn; nothing in ``import jaxem`` imports it.
"""

from __future__ import annotations

import contextlib
import numbers
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from jaxem._src import api, engine, loop
from jaxem._src.chunking import chunk_rows, chunked_map
from jaxem._src.gmm import density
from jaxem._src.gmm.density import sample as sample_params
from jaxem._src.gmm.params import GMMParams
from jaxem._src.programs import BoundedJit
from jaxem._src.sources import InMemory
from jaxem._src.validation import check_sample_weight

__all__ = ["MixtureEstimator", "key_from_random_state"]

DTYPES = {"float64": np.float64, "float32": np.float32}

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


def computing(dtype: np.dtype):
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


def _bind(family, source, n_active):
    """The family with its data-dependent hyperparameters resolved."""
    return family.bind(source.context(family), n_active)


bind_program = BoundedJit(_bind, static_argnames=())


def _densities(family, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(N,) log-densities and (N, K) responsibilities of the rows of ``x``, from
    one evaluation of the weighted component log-densities (the family's
    ``log_joint``; for a Gaussian mixture :func:`density._rowwise`)."""

    def both(joint):
        return jax.nn.logsumexp(joint, axis=-1), jax.nn.softmax(joint, axis=-1)

    if isinstance(params, GMMParams):
        return density._rowwise(params, x, both)
    rows = chunk_rows(x.shape[0], params.means.shape[-2] * x.shape[1])
    return chunked_map(lambda xb: both(family.log_joint(params, xb)), x, rows)


# Prediction compiles once per bucket of rows (padded with zeros, then cut),
# not once per number of rows: cross-validation scores many different sizes.
_densities_program = BoundedJit(_densities, static_argnames=())
_sample_program = BoundedJit(sample_params, static_argnames=("n_samples",))


def bucket(n: int) -> int:
    """Rows a computation on ``n`` rows is padded to: the next power of two (at
    least 16), or the next multiple of 65,536 beyond that."""
    if n > 65_536:
        return -(-n // 65_536) * 65_536
    return max(16, 1 << (n - 1).bit_length())


class MixtureEstimator(DensityMixin, BaseEstimator):
    """scikit-learn's mixture procedure on jaxem's engine (see the module
    docstring). Subclasses define ``_parameter_constraints``, ``__init__`` and
    the hooks below."""

    # ----------------------------------------------------------------- hooks

    def _check_fit_parameters(self, x: np.ndarray) -> None:
        """Validate parameters that depend on the data (before computing)."""

    def _make_family(self, x: jax.Array, w: jax.Array | None):
        """The engine family of this estimator (in the computing scope)."""
        raise NotImplementedError

    def _given_starts(self, family, x: jax.Array, w: jax.Array | None):
        """Starting parameters given by the estimator's arguments, or None."""
        return None

    def _set_params(self, params) -> None:
        """Set the fitted attributes from the engine's parameters."""
        raise NotImplementedError

    def _params(self, dtype=None):
        """The fitted attributes as the engine's parameters (computing scope)."""
        raise NotImplementedError

    def _family_for_prediction(self):
        """The family whose ``log_joint`` predicts (None: a Gaussian mixture)."""
        return None

    def _mixture(self) -> GMMParams:
        """The Gaussian mixture :meth:`sample` draws from."""
        return self._params()

    def _check_current_shapes(self, n_features: int) -> None:
        """Raise unless the fitted parameters fit the data and the settings."""

    def _bound_scale(self, n_samples: int, weights: np.ndarray | None) -> float:
        """What the engine's per-unit objective is multiplied by to give
        ``lower_bound_`` (``tol`` is divided by it)."""
        return 1.0

    #: the name of the restart's final objective in verbose lines
    _final_name = "final log-likelihood"
    #: what ``tol`` bounds the change of
    _tol_of = "mean log-likelihood"

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
        dtype = self._dtype()
        x = np.asarray(X, dtype)
        weights = self._check_fit_sample_weight(sample_weight, x)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        self._check_fit_parameters(x)
        n_refine = int(self.n_refine)
        if not warm and n_refine > self.n_init:
            raise ValueError(f"n_refine={n_refine} must be <= n_init={self.n_init}")
        scale = self._bound_scale(n_samples, weights)

        start_time = time.perf_counter()
        with computing(dtype):
            jx = jnp.asarray(x)
            jw = None if weights is None else jnp.asarray(weights)
            family = self._make_family(jx, jw)
            if warm:
                check_is_fitted(self)
                self._check_current_shapes(n_features)
                starts = self._params(dtype)
            else:
                starts = self._given_starts(family, jx, jw)
            if self.max_iter == 0:
                self._set_initial(family, jx, jw, starts)
                return
            run = dict(
                tol=self.tol / scale,
                sample_weight=jw,
                n_refine=min(n_refine, self._n_starts(family, starts)),
                accelerate=getattr(self, "accelerate", None),
            )
            self._warn_if_unresolvable(scale, dtype)
            with warnings.catch_warnings():
                # said above in the estimator's terms (tol on lower_bound_)
                warnings.filterwarnings("ignore", "tol=.* is below the resolution", UserWarning)
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
                result, converged = self._warm_first_iteration(
                    family, jx, starts, result, run, scale
                )
            self._set_result(result, converged, scale)
        if self.verbose:
            self._print_verbose(result, converged, time.perf_counter() - start_time, scale)
        if not self.converged_:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=4,  # the caller of fit
            )

    def _warn_if_unresolvable(self, scale: float, dtype) -> None:
        """Warn when ``tol`` is below what ``dtype`` resolves of a change of
        ``lower_bound_`` (the engine's resolution of its objective per unit of
        weight, times ``scale``): EM then stops at that resolution."""
        resolution = loop.resolution(dtype) * scale
        if 0 < self.tol < resolution:
            what, per = self._tol_of, (" per sample" if self._tol_of == "lower bound" else "")
            warnings.warn(
                f"tol={self.tol:.3g} is below what {np.dtype(dtype).name} resolves of a "
                f"change of the {what} (about {resolution:.1g} × |{what}{per}|): "
                f"EM stops at that resolution instead. Use dtype='float64' for a tighter "
                "tolerance.",
                UserWarning,
                stacklevel=5,  # the caller of fit
            )

    def _check_fit_sample_weight(self, sample_weight, x):
        if sample_weight is None:
            return None
        w = _check_sample_weight(sample_weight, x, dtype=x.dtype)
        with computing(x.dtype):
            check_sample_weight(w, x)  # finite, non-negative, not all zero
        # all ones is the unweighted fit: the initialisers then draw as without weights
        return None if np.all(w == 1) else np.asarray(w, x.dtype)

    def _method_starts(self, family, x, w):
        source = InMemory.of(family, x, w)
        methods = engine.init_methods_for(
            family, self.init_params, self.n_init, x.shape[0], x.shape[1]
        )
        key = key_from_random_state(self.random_state)
        return _initial_program(
            family, source, key, n_components=self.n_components, methods=methods
        )

    @staticmethod
    def _n_starts(family, starts):
        if starts is None:
            return 1
        return jax.tree.leaves(family.as_batch(starts))[0].shape[0]

    def _warm_first_iteration(self, family, x, start, result, run, scale):
        """scikit-learn's warm start compares the first iteration's lower bound
        with the previous fit's: within ``tol`` it stops after that iteration.
        The engine's loop starts from ``−inf`` instead; both rules agree from the
        second iteration on."""
        first = float(result.history[0]) * scale
        previous = float(self.lower_bound_)
        if not abs(first - previous) < self.tol:
            return result, bool(result.converged)
        if self.max_iter > 1:
            result = api.fit(family, None, x, start=start, max_iter=1, **run)
        return result, True

    def _set_result(self, result, converged, scale):
        n_iter = int(result.n_iter)
        history = np.asarray(result.history) * scale
        self._set_params(result.params)
        self.converged_ = bool(converged)
        self.n_iter_ = n_iter
        self.lower_bound_ = float(history[n_iter - 1])
        self.lower_bounds_ = [float(v) for v in history[:n_iter]]

    def _set_initial(self, family, x, w, starts):
        """``max_iter=0``: the initial parameters (of the last restart, as
        scikit-learn keeps), no iteration."""
        if starts is None:
            starts = self._method_starts(family, x, w)
        starts = family.as_batch(starts)
        self._set_params(jax.tree.map(lambda a: a[-1], starts))
        self.converged_ = False
        self.n_iter_ = 0
        self.lower_bound_ = -np.inf
        self.lower_bounds_ = []

    def _dtype(self) -> np.dtype:
        return np.dtype(DTYPES.get(self.dtype, self.dtype))

    def _print_verbose(self, result, converged, seconds, scale):
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
                final = float(result.restart_log_likelihoods[i]) * scale
                bound = f"\t lower bound {self.lower_bound_:.5f}" if i == best else ""
                print(
                    f"Initialization {message}. time lapse {seconds:.5f}s (whole fit)"
                    f"{bound}\t {self._final_name} {final:.5f}."
                )

    # ------------------------------------------------------------ prediction

    def _validated(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(X, self._dtype())

    def _densities(self, X) -> tuple[np.ndarray, np.ndarray]:
        x = self._validated(X)
        n = x.shape[0]
        padded = np.zeros((bucket(n), x.shape[1]), x.dtype)
        padded[:n] = x
        with computing(self._dtype()):
            log_density, resp = _densities_program(
                self._family_for_prediction(), self._params(), jnp.asarray(padded)
            )
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
        # a whole float (2.0) as scikit-learn takes it
        whole = isinstance(n_samples, numbers.Real) and float(n_samples).is_integer()
        if not (isinstance(n_samples, numbers.Integral) or whole) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        n_samples = int(n_samples)
        with computing(self._dtype()):
            key = key_from_random_state(self.random_state)
            x, labels = _sample_program(key, self._mixture(), n_samples=bucket(n_samples))
            x, labels = np.asarray(x)[:n_samples], np.asarray(labels)[:n_samples]
        order = np.argsort(labels, kind="stable")
        return np.array(x[order]), labels[order].astype(np.int64)


def _init_array(name, value, shape, dtype):
    """A user-given array of parameters, checked as scikit-learn checks it
    (finite, floating, the expected shape), in ``dtype``."""
    array = check_array(
        value, dtype=[np.float64, np.float32], ensure_2d=False, allow_nd=True, input_name=name
    )
    if array.shape != tuple(shape):
        raise ValueError(
            f"The parameter {name!r} should have the shape of {tuple(shape)}, but got {array.shape}"
        )
    return np.asarray(array, dtype)
