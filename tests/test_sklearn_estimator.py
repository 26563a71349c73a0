"""jaxem.sklearn.GaussianMixture against scikit-learn's, and jaxem.gmm.to_sklearn.

Compilation dominates: every test here uses one data set (N = 200, D = 2) and few
distinct static configurations. scikit-learn's estimator checks compile dozens of
programs and are marked slow (``pytest -m slow``).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, precisions_from_covariances, random_params
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from jaxem import gmm
from jaxem.sklearn import GaussianMixture

X = blobs(seed=1, n=200, d=2, k=3)
K = 3
ATTRIBUTES = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def _given_start(covariance_type):
    weights, means, cov = random_params(2, K, 2, covariance_type, X)
    return dict(
        weights_init=weights,
        means_init=means,
        precisions_init=precisions_from_covariances(cov, covariance_type),
    )


def _both(**params):
    """Our estimator and scikit-learn's, fitted on X with the same parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(**params).fit(X)
        reference = SklearnGaussianMixture(**params).fit(X)
    return ours, reference


def _assert_same_fit(ours, reference, rtol=1e-8):
    for name in ATTRIBUTES:
        ours_value, ref_value = getattr(ours, name), getattr(reference, name)
        assert isinstance(ours_value, np.ndarray), name
        assert ours_value.shape == ref_value.shape, name
        np.testing.assert_allclose(ours_value, ref_value, rtol=rtol, atol=0, err_msg=name)
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=rtol, atol=0)
    np.testing.assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=rtol, atol=0)
    assert ours.n_iter_ == reference.n_iter_
    assert ours.converged_ is bool(reference.converged_)


def _iterations_match(covariance_type, n_iters):
    start = _given_start(covariance_type)
    for n_iter in n_iters:
        # tol=0: both run exactly n_iter iterations (converged_ False)
        ours, reference = _both(
            n_components=K, covariance_type=covariance_type, tol=0.0, max_iter=n_iter, **start
        )
        assert ours.n_iter_ == n_iter
        _assert_same_fit(ours, reference)
    # and where both stop by the rule before max_iter (same program as n_iter = max(n_iters))
    ours, reference = _both(
        n_components=K, covariance_type=covariance_type, tol=1e-2, max_iter=max(n_iters), **start
    )
    assert ours.converged_ and ours.n_iter_ < max(n_iters)
    _assert_same_fit(ours, reference)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_iterations_match_sklearn(covariance_type):
    """From identical starting parameters, in float64, k = 10 iterations give
    scikit-learn's parameters, lower bounds, n_iter_ and converged_ to 1e-8 (the
    differences measured are ~1e-13)."""
    _iterations_match(covariance_type, [10])


@pytest.mark.slow  # two more programs per covariance type (max_iter is static)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_iterations_match_sklearn_1_and_100(covariance_type):
    _iterations_match(covariance_type, [1, 100])


def test_warm_start_continues_like_sklearn():
    """warm_start: the second fit starts from the first's parameters and, as in
    scikit-learn, stops after one iteration when its lower bound is within tol
    of the previous fit's."""
    params = dict(n_components=K, covariance_type="full", tol=1e-2, max_iter=10, warm_start=True)
    params.update(_given_start("full"))
    ours, reference = GaussianMixture(**params), SklearnGaussianMixture(**params)
    for _ in range(2):
        ours.fit(X)
        reference.fit(X)
        _assert_same_fit(ours, reference)
    assert ours.n_iter_ == 1 and ours.converged_
    # tol=0: the warm fit runs max_iter more iterations from where it stopped
    ours.set_params(tol=0.0)
    reference.set_params(tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X)
        reference.fit(X)
    _assert_same_fit(ours, reference)


def test_fitted_estimator_api(capsys):
    gm = GaussianMixture(K, random_state=0, verbose=2, verbose_interval=1)
    with pytest.raises(NotFittedError):
        gm.predict(X)
    labels = gm.fit_predict(X)
    printed = capsys.readouterr().out
    assert "Initialization 0" in printed and "Initialization converged." in printed
    assert f"  Iteration {gm.n_iter_}\t ll change" in printed
    np.testing.assert_array_equal(labels, gm.predict(X))
    assert gm.n_features_in_ == 2 and not hasattr(gm, "feature_names_in_")
    assert gm.means_.dtype == np.float64 and gm.converged_
    assert gm.lower_bound_ == gm.lower_bounds_[-1] and len(gm.lower_bounds_) == gm.n_iter_

    # the same estimates as scikit-learn's from its own k-means start, to EM's tolerance
    reference = SklearnGaussianMixture(K, random_state=0, tol=1e-3).fit(X)
    assert abs(gm.score(X) - reference.score(X)) < 1e-3

    proba = gm.predict_proba(X)
    assert proba.shape == (len(X), K)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    estimator = gmm.to_sklearn(gmm.make_params(gm.weights_, gm.means_, gm.covariances_))
    np.testing.assert_allclose(gm.score_samples(X[:7]), estimator.score_samples(X[:7]), rtol=1e-12)
    np.testing.assert_allclose(proba, estimator.predict_proba(X), rtol=1e-9, atol=1e-14)
    assert gm.score(X) == pytest.approx(np.mean(gm.score_samples(X)))
    assert gm.bic(X) == pytest.approx(estimator.bic(X), rel=1e-12)
    assert gm.aic(X) == pytest.approx(estimator.aic(X), rel=1e-12)

    x, y = gm.sample(50)
    assert x.shape == (50, 2) and y.shape == (50,)
    assert np.all(np.diff(y) >= 0)  # grouped by component, as scikit-learn's
    np.testing.assert_array_equal(gm.sample(50)[0], x)  # an int random_state: the same draw

    with pytest.raises(ValueError, match="2 features"):
        gm.predict(X[:, :1])
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5).fit(X[:4])

    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(X, columns=["a", "b"])
    np.testing.assert_array_equal(gm.fit(frame).feature_names_in_, ["a", "b"])


def test_pipeline_grid_search_clone_pickle():
    pipe = make_pipeline(StandardScaler(), GaussianMixture(random_state=0))
    search = GridSearchCV(
        pipe,
        {
            "gaussianmixture__n_components": [1, K],
            "gaussianmixture__covariance_type": ["full", "diag"],
        },
        cv=2,
    )
    search.fit(X)  # scored by GaussianMixture.score: the held-out mean log-likelihood
    assert search.best_params_["gaussianmixture__n_components"] == K
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))

    best = search.best_estimator_
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict(X), best.predict(X))
    fresh = clone(best)
    assert fresh.get_params()["gaussianmixture__n_components"] == K
    assert not hasattr(fresh[-1], "means_")


def test_sample_weight_counts_rows():
    """An integer weight w fits as the row repeated w times (from the same start)."""
    weights = np.random.default_rng(0).integers(0, 3, size=len(X))
    params = dict(n_components=K, covariance_type="full", tol=0.0, max_iter=10)
    params.update(_given_start("full"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = GaussianMixture(**params).fit(X, sample_weight=weights)
        repeated = GaussianMixture(**params).fit(np.repeat(X, weights, axis=0))
    for name in (*ATTRIBUTES, "lower_bound_"):
        np.testing.assert_allclose(
            getattr(weighted, name), getattr(repeated, name), rtol=1e-10, err_msg=name
        )


def test_accelerate_reaches_the_same_fit_in_fewer_iterations():
    """accelerate="squarem" (issue #22): plain EM's optimum from the same start, in
    fewer iterations (SQUAREM cycles), the lower bounds never decreasing."""
    params = dict(n_components=K, covariance_type="full", tol=1e-10, max_iter=3000)
    params.update(_given_start("full"))
    plain = GaussianMixture(**params).fit(X)
    fast = GaussianMixture(**params, accelerate="squarem").fit(X)
    assert plain.converged_ and fast.converged_
    np.testing.assert_allclose(fast.score(X), plain.score(X), rtol=1e-8)
    np.testing.assert_allclose(fast.means_, plain.means_, rtol=1e-4, atol=1e-4)
    assert fast.n_iter_ < plain.n_iter_
    assert np.all(np.diff(fast.lower_bounds_) >= 0)
    with pytest.raises(ValueError, match="accelerate"):
        GaussianMixture(K, accelerate="fast").fit(X)


def test_partial_initial_parameters_and_max_iter_0():
    """Given means replace the method's (the other parameters are the method's, as
    in scikit-learn); max_iter=0 returns the initial parameters."""
    start = _given_start("diag")
    gm = GaussianMixture(
        K, covariance_type="diag", means_init=start["means_init"], max_iter=0, random_state=0
    ).fit(X)
    np.testing.assert_array_equal(gm.means_, start["means_init"])
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf and not gm.converged_
    assert gm.weights_.sum() == pytest.approx(1.0)
    gm.set_params(means_init=None, precisions_init=start["precisions_init"]).fit(X)
    np.testing.assert_allclose(gm.precisions_, start["precisions_init"], rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_, 1 / start["precisions_init"], rtol=1e-12)


def test_to_sklearn_round_trip():
    """GMMParams -> sklearn -> GMMParams, for every covariance type; a fit's
    result carries its n_iter, converged and lower bound over."""
    for covariance_type in COVARIANCE_TYPES:
        params = gmm.make_params(*random_params(3, K, 2, covariance_type, X), covariance_type)
        estimator = gmm.to_sklearn(params, covariance_type=covariance_type, random_state=0)
        assert isinstance(estimator, SklearnGaussianMixture)
        back = gmm.from_sklearn(estimator)
        for name in ("weights", "means", "covariances", "precisions_cholesky"):
            np.testing.assert_allclose(getattr(back, name), getattr(params, name), rtol=1e-12)
        np.testing.assert_allclose(estimator.score_samples(X), gmm.log_prob(params, X), rtol=1e-12)
        assert estimator.sample(5)[0].shape == (5, 2)
    result = gmm.fit_from(params, X, max_iter=3, tol=0.0)
    estimator = gmm.to_sklearn(result)
    assert estimator.n_iter_ == 3 and not estimator.converged_
    assert estimator.lower_bound_ == float(result.history[2])
    with pytest.raises(ValueError, match="does not match"):
        gmm.to_sklearn(params, covariance_type="full")


@pytest.mark.parametrize(
    "model, covariances, equivalent",
    [
        ("EII", [0.7, 0.7], "spherical"),
        ("VEI", [[1.0, 0.5], [2.0, 1.0]], "diag"),
        ("VEV", [[[1.0, 0.3], [0.3, 0.5]], [[2.0, -0.6], [-0.6, 1.0]]], "full"),
    ],
)
def test_to_sklearn_of_mclusts_models_is_the_type_of_the_same_arrays(
    model, covariances, equivalent
):
    """mclust's other models: a working estimator of the same density (its
    type was passed through, and predict raised)."""
    params = gmm.make_params([0.4, 0.6], [[0.0, 0.0], [3.0, 1.0]], covariances, model)
    estimator = gmm.to_sklearn(params, covariance_type=model, random_state=0)
    assert estimator.covariance_type == equivalent
    np.testing.assert_allclose(estimator.score_samples(X), gmm.log_prob(params, X), rtol=1e-12)
    np.testing.assert_array_equal(estimator.predict(X), gmm.predict(params, X))
    assert np.all(np.isfinite(estimator.sample(5)[0]))


def test_import_and_scoped_float64():
    """``import jaxem`` does not import scikit-learn; the estimator computes in
    float64 without turning x64 on for the process, and in float32 on request."""
    script = textwrap.dedent(
        """
        import sys, warnings
        import jax, jax.numpy as jnp, numpy as np
        import jaxem
        assert "sklearn" not in sys.modules, "import jaxem imported scikit-learn"
        from jaxem.sklearn import GaussianMixture
        assert not jax.config.jax_enable_x64
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(size=(25, 2)), rng.normal(size=(25, 2)) + 6])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(2, random_state=0, max_iter=5).fit(x)
            assert gm.means_.dtype == np.float64 and gm.score_samples(x).dtype == np.float64
            assert not jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float32
            g32 = GaussianMixture(2, random_state=0, max_iter=5, dtype="float32").fit(x)
        assert g32.means_.dtype == np.float32
        order32, order64 = np.argsort(g32.means_[:, 0]), np.argsort(gm.means_[:, 0])
        np.testing.assert_allclose(g32.means_[order32], gm.means_[order64], rtol=1e-4, atol=1e-5)
        # jaxem's program cache keys on the x64 scope: the same float32 call outside
        # it reuses the estimator's float32 program, inside it compiles another
        from jaxem._src.api import _fit_program
        n_programs = _fit_program.cache_size()
        x32, key = x.astype(np.float32), jax.random.key(0)
        r = jaxem.gmm.fit(key, x32, 2, init="kmeans", max_iter=5)
        assert _fit_program.cache_size() == n_programs
        with jax.enable_x64(True):
            r64 = jaxem.gmm.fit(key, x32, 2, init="kmeans", max_iter=5)
        assert _fit_program.cache_size() == n_programs + 1
        assert r.params.means.dtype == r64.params.means.dtype == jnp.float32
        np.testing.assert_allclose(r.params.means, g32.means_)
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


# ------------------------------------------------------- scikit-learn's checks

# Checks that fail by design, with the reason (scikit-learn's recommended mechanism).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@pytest.mark.slow
def test_jaxem_extras():
    """jaxem's portfolio, refinement and prior through the estimator."""
    gm = GaussianMixture(
        K, init_params="auto", n_init=4, n_refine=1, prior="default", reg_covar=0.0,
        random_state=0,
    ).fit(X)  # fmt: skip
    assert gm.converged_ and np.isfinite(gm.lower_bound_)
    # the lower bounds are mean log posteriors: MAP EM never decreases them
    assert np.all(np.diff(gm.lower_bounds_) >= -1e-10)
    with pytest.raises(ValueError, match="n_refine=2 must be <= n_init=1"):
        GaussianMixture(K, n_refine=2).fit(X)


@pytest.mark.slow
def test_sklearn_checks_not_in_parametrize_with_checks():
    """Two of scikit-learn's checks that parametrize_with_checks does not yield for
    third-party estimators."""
    from sklearn.utils.estimator_checks import (
        check_non_transformer_estimators_n_iter,
        check_param_validation,
    )

    check_param_validation("GaussianMixture", GaussianMixture())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_non_transformer_estimators_n_iter("GaussianMixture", GaussianMixture(max_iter=5))


@pytest.mark.slow  # dozens of data shapes, each a new compiled program
@parametrize_with_checks(
    [GaussianMixture(n_init=2, max_iter=5)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
