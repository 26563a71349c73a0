"""jaxem.sklearn.BayesianGaussianMixture (the variational family of
jaxem.gmm.variational) against scikit-learn's BayesianGaussianMixture.

Identical starts: scikit-learn's estimator has no ``*_init`` arguments, so the
reference is a subclass whose ``_initialize_parameters`` runs scikit-learn's own
``_initialize`` (the M-step) on fixed random responsibilities ``RESP0``; ours
continues (``warm_start``) from exactly those parameters, copied into it with a
lower bound of −inf (so that, as in a fresh fit, the first iteration cannot
stop the loop). Both then run the same iterations.

Compilation dominates: one data set (N = 200, D = 2), few static
configurations by default; the full grids are marked slow (``pytest -m slow``).
"""

from __future__ import annotations

import pickle
import warnings

import jax
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import jaxem
from jaxem.gmm import variational
from jaxem.sklearn import BayesianGaussianMixture

X = blobs(seed=1, n=200, d=2, k=3)
K = 3
RESP0 = np.random.default_rng(0).dirichlet(np.ones(K), size=len(X))
WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")

# The variational posterior, as scikit-learn's _get_parameters lists it.
POSTERIOR = (
    "weight_concentration_",
    "mean_precision_",
    "means_",
    "degrees_of_freedom_",
    "covariances_",
    "precisions_cholesky_",
)
DERIVED = ("weights_", "precisions_")
PRIORS = (
    "weight_concentration_prior_",
    "mean_precision_prior_",
    "mean_prior_",
    "degrees_of_freedom_prior_",
    "covariance_prior_",
)


class _FromResponsibilities(SklearnBayesianGaussianMixture):
    """scikit-learn's estimator started by its own M-step on ``RESP0``."""

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, RESP0)


def _start(x=X, **params):
    """scikit-learn's starting posterior (its M-step on RESP0) for ``params``."""
    reference = _FromResponsibilities(**params, max_iter=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(x)
    return {name: getattr(reference, name) for name in POSTERIOR}


def _warm_from(start, **params):
    """Our estimator holding ``start`` as its current fit (a lower bound of −inf)."""
    ours = BayesianGaussianMixture(**params, warm_start=True)
    for name, value in start.items():
        setattr(ours, name, value)
    ours.converged_, ours.lower_bound_ = False, -np.inf
    return ours


def _both(**params):
    """Ours and scikit-learn's, fitted on X from the same start."""
    start = _start(**{k: v for k, v in params.items() if k not in ("tol", "max_iter")})
    ours = _warm_from(start, **params)
    reference = _FromResponsibilities(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X)
        reference.fit(X)
    return ours, reference


def _assert_close(name, ours, reference, rtol):
    if isinstance(reference, tuple):  # the Dirichlet process's (a, b)
        assert isinstance(ours, tuple) and len(ours) == len(reference), name
        for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
            _assert_close(f"{name}[{i}]", a, b, rtol)
        return
    assert np.shape(ours) == np.shape(reference), name
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=0, err_msg=name)


def _assert_same_fit(ours, reference, rtol=1e-8):
    for name in (*POSTERIOR, *DERIVED, *PRIORS):
        _assert_close(name, getattr(ours, name), getattr(reference, name), rtol)
    # scikit-learn's tied lower bound is a (1,) array
    np.testing.assert_allclose(ours.lower_bound_, np.squeeze(reference.lower_bound_), rtol=rtol)
    np.testing.assert_allclose(
        ours.lower_bounds_, np.squeeze(np.asarray(reference.lower_bounds_)), rtol=rtol
    )
    assert ours.n_iter_ == reference.n_iter_
    assert ours.converged_ is bool(reference.converged_)


def _iterations_match(covariance_type, weight_prior, n_iters, tol_stop):
    params = dict(
        n_components=K,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_prior,
    )
    for n_iter in n_iters:
        # tol=0: both run exactly n_iter iterations (converged_ False)
        ours, reference = _both(**params, tol=0.0, max_iter=n_iter)
        assert ours.n_iter_ == n_iter
        _assert_same_fit(ours, reference)
    # and where both stop by the rule before max_iter (the same program as the last)
    ours, reference = _both(**params, tol=tol_stop, max_iter=max(n_iters))
    assert ours.converged_ and ours.n_iter_ < max(n_iters)
    _assert_same_fit(ours, reference)


FAST = [("full", "dirichlet_process"), ("diag", "dirichlet_distribution")]
ALL = [(c, w) for c in COVARIANCE_TYPES for w in WEIGHT_PRIORS]


@pytest.mark.parametrize(("covariance_type", "weight_prior"), FAST)
def test_iterations_match_sklearn(covariance_type, weight_prior):
    """From identical starting parameters, in float64, k = 10 iterations give
    scikit-learn's posterior, priors, lower bounds, n_iter_ and converged_ to
    1e-8 (the differences measured are ~1e-13); a tolerance of 5 on the total
    lower bound (~450 in magnitude) stops both before max_iter at the same
    iteration."""
    _iterations_match(covariance_type, weight_prior, [10], tol_stop=5.0)


@pytest.mark.slow  # 8 configurations × 3 programs
@pytest.mark.parametrize(("covariance_type", "weight_prior"), ALL)
def test_iterations_match_sklearn_1_10_100(covariance_type, weight_prior):
    _iterations_match(covariance_type, weight_prior, [1, 10, 100], tol_stop=1e-2)


def test_fitted_estimator_api(capsys):
    bgm = BayesianGaussianMixture(n_components=K, random_state=0, verbose=2, verbose_interval=1)
    with pytest.raises(NotFittedError):
        bgm.predict(X)
    labels = bgm.fit_predict(X)
    printed = capsys.readouterr().out
    assert "Initialization 0" in printed and "Initialization converged." in printed
    assert f"  Iteration {bgm.n_iter_}\t ll change" in printed
    np.testing.assert_array_equal(labels, bgm.predict(X))
    assert bgm.n_features_in_ == 2 and not hasattr(bgm, "feature_names_in_")
    assert bgm.means_.dtype == np.float64 and bgm.converged_
    assert bgm.lower_bound_ == bgm.lower_bounds_[-1] and len(bgm.lower_bounds_) == bgm.n_iter_
    # the lower bound never decreases under the variational updates (here, where
    # reg_covar is small against the data's variances: a reg_covar that dominates
    # them makes the M-step no longer the bound's maximiser, and in scikit-learn too)
    assert np.all(np.diff(bgm.lower_bounds_) >= -1e-9 * abs(bgm.lower_bound_))
    assert isinstance(bgm.weight_concentration_, tuple)  # the process's (a, b)
    np.testing.assert_allclose(bgm.weights_.sum(), 1.0)

    # scikit-learn's estimator with the fitted posterior predicts the same
    reference = SklearnBayesianGaussianMixture(n_components=K)
    reference._check_parameters(X)
    reference._set_parameters(tuple(getattr(bgm, name) for name in POSTERIOR))
    reference.n_features_in_ = 2
    np.testing.assert_allclose(bgm.score_samples(X), reference.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(bgm.predict_proba(X), reference.predict_proba(X), atol=1e-12)
    assert bgm.score(X) == pytest.approx(reference.score(X), rel=1e-12)
    np.testing.assert_allclose(bgm.weights_, reference.weights_, rtol=1e-12)
    np.testing.assert_allclose(bgm.precisions_, reference.precisions_, rtol=1e-12)

    # and the same fit as scikit-learn's from its own k-means start, to the tolerance
    fitted = SklearnBayesianGaussianMixture(n_components=K, random_state=0).fit(X)
    assert abs(bgm.score(X) - fitted.score(X)) < 1e-2

    x, y = bgm.sample(50)
    assert x.shape == (50, 2) and y.shape == (50,)
    assert np.all(np.diff(y) >= 0)
    np.testing.assert_array_equal(bgm.sample(50)[0], x)

    with pytest.raises(ValueError, match="2 features"):
        bgm.predict(X[:, :1])
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        BayesianGaussianMixture(degrees_of_freedom_prior=0.5).fit(X)
    with pytest.raises(ValueError, match="means"):
        BayesianGaussianMixture(mean_prior=[0.0, 0.0, 0.0]).fit(X)


def test_priors_and_tol_are_traced():
    """Changing the priors, tol or reg_covar reuses the compiled fit (they are
    traced leaves of the family), and they change the fit."""
    from jaxem._src.api import _fit_program

    first = BayesianGaussianMixture(
        n_components=K, random_state=0, weight_concentration_prior=1e-2
    ).fit(X)
    n_programs = _fit_program.cache_size()
    second = BayesianGaussianMixture(
        n_components=K,
        random_state=0,
        weight_concentration_prior=10.0,
        mean_precision_prior=2.0,
        degrees_of_freedom_prior=3.0,
        tol=1e-2,
        reg_covar=1e-5,
    ).fit(X)
    assert _fit_program.cache_size() == n_programs
    assert second.weight_concentration_prior_ == 10.0 and second.degrees_of_freedom_prior_ == 3.0
    assert not np.allclose(first.weight_concentration_[1], second.weight_concentration_[1])


def test_pipeline_grid_search_clone_pickle():
    pipe = make_pipeline(StandardScaler(), BayesianGaussianMixture(random_state=0))
    search = GridSearchCV(
        pipe,
        {
            "bayesiangaussianmixture__n_components": [1, K],
            "bayesiangaussianmixture__covariance_type": ["full", "diag"],
        },
        cv=2,
    )
    search.fit(X)  # scored by score: the held-out mean of score_samples
    assert search.best_params_["bayesiangaussianmixture__n_components"] == K
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))

    best = search.best_estimator_
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict(X), best.predict(X))
    np.testing.assert_array_equal(restored.score_samples(X), best.score_samples(X))
    fresh = clone(best)
    assert fresh.get_params()["bayesiangaussianmixture__n_components"] == K
    assert not hasattr(fresh[-1], "means_")


def test_sample_weight_counts_rows():
    """An integer weight w fits as the row repeated w times from the same
    start: the default priors are the weighted mean and covariance, the
    statistics and the entropy are weighted, tol applies to the weighted
    total."""
    weights = np.random.default_rng(0).integers(0, 3, size=len(X))
    params = dict(n_components=K, covariance_type="full", tol=0.0, max_iter=10)
    start = _start(n_components=K, covariance_type="full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = _warm_from(start, **params).fit(X, sample_weight=weights)
        repeated = _warm_from(start, **params).fit(np.repeat(X, weights, axis=0))
    for name in (*POSTERIOR, *DERIVED, *PRIORS, "lower_bound_"):
        _assert_close(name, getattr(weighted, name), getattr(repeated, name), rtol=1e-10)


def test_restarts_pick_the_best_lower_bound():
    """n_init restarts run as one vmap; the estimator keeps the restart with the
    highest final lower bound, the engine's choice on the same key."""
    n_init = 4
    bgm = BayesianGaussianMixture(
        n_components=K, n_init=n_init, init_params="random", random_state=0, tol=1e-3
    ).fit(X)
    with jax.enable_x64(True):
        family = variational.family("full")
        result = jaxem.fit(
            family, jax.random.key(0), X, K, init="random", n_init=n_init,
            tol=1e-3 / len(X), n_refine=0,  # the estimator's tol on the total, no refinement
        )  # fmt: skip
        restarts = np.asarray(result.restart_log_likelihoods)
        assert int(result.best_restart) == int(np.argmax(restarts))
        assert np.ptp(restarts) > 1e-6  # the restarts end apart: the choice matters
        np.testing.assert_allclose(bgm.means_, result.params.means, rtol=1e-12)
        np.testing.assert_allclose(bgm.lower_bound_, result.history[bgm.n_iter_ - 1] * len(X))


def test_variational_family_on_chunked_data():
    """The variational family is an engine family like any other: the fit over
    host chunks (statistics and entropy summed chunk by chunk, the lower bound
    from the sums) equals the fit in memory."""
    fam = variational.family("diag", weight_concentration_prior_type="dirichlet_distribution")
    run = dict(init="kmeans", n_init=2, tol=0.0, max_iter=15, n_refine=0)
    with jax.enable_x64(True):
        in_memory = jaxem.fit(fam, jax.random.key(0), X, K, **run)
        chunked = jaxem.fit(fam, jax.random.key(0), jaxem.chunks(X, 64, init_size=len(X)), K, **run)
        assert isinstance(in_memory.params, variational.VariationalParams)
        np.testing.assert_allclose(chunked.params.means, in_memory.params.means, rtol=1e-12)
        np.testing.assert_allclose(chunked.history, in_memory.history, rtol=1e-12)
        assert int(chunked.n_iter) == int(in_memory.n_iter) == 15


@pytest.mark.slow  # a 32 × 32, K = 32 program (20 s to compile)
def test_lapack_calls_ordered():
    """No two blocking LAPACK calls can run at once in a variational fit (the
    objective's M-step and the loop's are ordered by the pass between them):
    see tests/test_lapack_order.py for why that would hang on XLA:CPU."""
    from hlo_lapack import unordered_lapack_pairs

    x = jax.numpy.asarray(np.random.default_rng(0).normal(size=(120, 32)).astype(np.float32))

    def fit(key, x):
        return jaxem.fit(variational.family("full"), key, x, 32, n_init=3)

    text = jax.jit(fit).lower(jax.random.key(0), x).compile().as_text()
    assert 'custom_call_target="lapack_spotrf_ffi"' in text
    assert unordered_lapack_pairs(text, blocking_only=True) == []


# ------------------------------------------------------- scikit-learn's checks

# Checks that fail by design, with the reason (scikit-learn's recommended mechanism).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@pytest.mark.slow
def test_sklearn_checks_not_in_parametrize_with_checks():
    """Two of scikit-learn's checks that parametrize_with_checks does not yield for
    third-party estimators."""
    from sklearn.utils.estimator_checks import (
        check_non_transformer_estimators_n_iter,
        check_param_validation,
    )

    check_param_validation("BayesianGaussianMixture", BayesianGaussianMixture())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_non_transformer_estimators_n_iter(
            "BayesianGaussianMixture", BayesianGaussianMixture(max_iter=5)
        )


@pytest.mark.slow  # dozens of data shapes, each a new compiled program
@parametrize_with_checks(
    [BayesianGaussianMixture(n_init=2, max_iter=5)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_priors_the_weights_leave_undefined_are_errors_not_numbers():
    """The default covariance prior is the data's unbiased covariance: weights
    that total less than 2 (normalised weights; a weight counts a row that many
    times) leave it undefined. It was 1e13 times too wide, silently."""
    weights = np.full(len(X), 1 / len(X))
    with pytest.raises(ValueError, match="total sample weight of at least 2"):
        BayesianGaussianMixture(n_components=K, max_iter=2).fit(X, sample_weight=weights)
    # given a covariance prior, such weights are a fit (as the scaled weights are)
    given = BayesianGaussianMixture(n_components=K, max_iter=2, covariance_prior=np.eye(2))
    assert np.all(np.isfinite(given.fit(X, sample_weight=weights).covariances_))
    # a spherical prior as scikit-learn takes it: a number or a one-element array
    for prior in ([2.0], np.array([[2.0]])):
        est = BayesianGaussianMixture(
            n_components=K, covariance_type="spherical", covariance_prior=prior, max_iter=2
        )
        assert np.all(np.isfinite(est.fit(X).covariances_))
    for prior in (np.array(np.inf), [1.0, 2.0], [-1.0]):
        est = BayesianGaussianMixture(
            n_components=K, covariance_type="spherical", covariance_prior=prior
        )
        with pytest.raises(ValueError, match="covariance_prior"):
            est.fit(X)


def test_float32_tolerance_warning_speaks_of_the_lower_bound():
    """In float32 a tol on the total lower bound of many rows is below what the
    bound resolves: the warning gives the estimator's own terms and remedy."""
    x = np.concatenate([X] * 5)
    est = BayesianGaussianMixture(n_components=K, dtype="float32", max_iter=2, tol=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(x)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    resolution = [m for m in messages if "resolves" in m]
    assert len(resolution) == 1, messages
    assert "tol=0.001" in resolution[0] and "lower bound" in resolution[0]
    assert "dtype='float64'" in resolution[0]
    assert not any("jax_enable_x64" in m for m in messages)


def test_from_sklearn_refuses_a_variational_mixture():
    """Its attributes are posterior means: read as a GaussianMixture they made a
    density 0.1 from its score_samples, without a word."""
    from jaxem import gmm

    x = blobs(seed=3, n=40, d=2, k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = SklearnBayesianGaussianMixture(n_components=2, max_iter=5, random_state=0).fit(x)
    with pytest.raises(TypeError, match="posterior means"):
        gmm.from_sklearn(fitted)


def test_a_constant_feature_fits_as_in_sklearn():
    """The default covariance prior of data with a constant feature is singular
    (diag: a zero variance): the family's check of given priors refused it,
    where scikit-learn fits (reg_covar keeps the covariances positive)."""
    x = np.c_[X, np.zeros(len(X))]
    for covariance_type in ("diag", "full"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours = BayesianGaussianMixture(
                n_components=2, covariance_type=covariance_type, random_state=0
            ).fit(x)
        assert np.all(np.isfinite(ours.covariances_)) and np.isfinite(ours.lower_bound_)
    assert ours.sample(2.0)[0].shape == (2, 3)  # a whole float, as scikit-learn takes it
    with pytest.raises(ValueError, match="covariance_prior"):  # given by the user: checked
        jaxem.fit(variational.family("diag", covariance_prior=np.zeros(3)), jax.random.key(0), x, 2)


def test_online_em_of_the_variational_family_binds_its_priors():
    """One batch of all rows and no warm-up is one batch EM step: the priors
    that the family leaves ``None`` come from the first batch, as they come
    from the data in a fit (fit_online never bound them and raised)."""
    fam = variational.family("full")
    with jax.enable_x64(True):
        start = jaxem.fit(fam, jax.random.key(0), X, K, n_init=1, tol=0.0, max_iter=3).params
        online = jaxem.fit_online(fam, start, [X], warmup=1)
        step = jaxem.fit(fam, None, X, start=start, tol=0.0, max_iter=1, n_refine=0)
        np.testing.assert_allclose(online.params.means, step.params.means, rtol=1e-10)
        np.testing.assert_allclose(online.params.weights, step.params.weights, rtol=1e-10)
