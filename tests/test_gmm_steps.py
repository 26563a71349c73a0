"""E-step and M-step against scikit-learn's GaussianMixture, from identical starts."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, precisions_from_covariances, random_params
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import jaxem
from jaxem import gmm


def _sklearn_fit(x, start, covariance_type, *, max_iter, tol, reg_covar=1e-6):
    weights, means, cov = start
    est = GaussianMixture(
        n_components=len(weights),
        covariance_type=covariance_type,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions_from_covariances(cov, covariance_type),
        tol=tol,
        max_iter=max_iter,
        reg_covar=reg_covar,
        n_init=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x)
    return est


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_iter", [1, 7, 40])
def test_iterations_match_sklearn(covariance_type, n_iter):
    x = blobs(seed=1, n=250, d=3, k=3)
    start = random_params(2, 3, 3, covariance_type, x)
    est = _sklearn_fit(x, start, covariance_type, max_iter=n_iter, tol=0.0)

    params = gmm.make_params(*start, covariance_type=covariance_type)
    history = []
    for _ in range(n_iter):
        resp, ll = gmm.e_step(params, x)
        history.append(ll)
        params = gmm.m_step(resp, x, covariance_type=covariance_type, reg_covar=1e-6)

    np.testing.assert_allclose(history, est.lower_bounds_, rtol=1e-8)
    np.testing.assert_allclose(params.weights, est.weights_, rtol=1e-8)
    np.testing.assert_allclose(params.means, est.means_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(params.covariances, est.covariances_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        params.precisions_cholesky, est.precisions_cholesky_, rtol=1e-7, atol=1e-10
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_jitted_em_stops_where_sklearn_stops(covariance_type):
    x = blobs(seed=3, n=200, d=2, k=3)
    start = random_params(4, 3, 2, covariance_type, x)
    for tol, max_iter in [(1e-3, 100), (1e-6, 500), (1e-8, 5)]:
        est = _sklearn_fit(x, start, covariance_type, max_iter=max_iter, tol=tol)
        m_step = functools.partial(gmm.m_step, covariance_type=covariance_type)
        run = jax.jit(
            lambda p, x, tol, m=m_step, n=max_iter: jaxem.em(
                gmm.e_step, m, p, x, tol=tol, max_iter=n
            )
        )
        result = run(gmm.make_params(*start, covariance_type), x, tol)
        assert int(result.n_iter) == est.n_iter_
        assert bool(result.converged) == est.converged_
        n = est.n_iter_
        np.testing.assert_allclose(result.history[:n], est.lower_bounds_, rtol=1e-8)
        assert np.all(np.isnan(result.history[n:]))
        np.testing.assert_allclose(result.params.means, est.means_, rtol=1e-7, atol=1e-10)
        # log_likelihood is that of the returned params (sklearn's score after fit).
        np.testing.assert_allclose(result.log_likelihood, est.score(x), rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_responsibilities_match_sklearn(covariance_type):
    x = blobs(seed=5, n=100, d=4, k=2)
    start = random_params(6, 2, 4, covariance_type, x)
    est = _sklearn_fit(x, start, covariance_type, max_iter=3, tol=0.0)
    params = gmm.from_sklearn(est)
    resp, ll = gmm.e_step(params, x)
    np.testing.assert_allclose(resp, est.predict_proba(x), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(ll, est.score(x), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_suff_stats_add_over_chunks(covariance_type):
    x = blobs(seed=7, n=120, d=3, k=2)
    params = gmm.make_params(*random_params(8, 2, 3, covariance_type, x), covariance_type)
    resp, _ = gmm.e_step(params, x)
    whole = gmm.m_step(resp, x, covariance_type=covariance_type)
    shift = params.means
    parts = [
        gmm.suff_stats(resp[s], x[s], covariance_type=covariance_type, shift=shift)
        for s in (slice(0, 50), slice(50, 90), slice(90, None))
    ]
    stats = parts[0].add(parts[1]).add(parts[2])
    chunked = gmm.maximize(stats, reg_covar=1e-6)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(chunked), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_empty_component_stays_inactive_and_finite():
    x = blobs(seed=9, n=80, d=2, k=2)
    weights, means, cov = random_params(10, 3, 2, "full", x)
    weights = np.array([0.5, 0.5, 0.0])
    params = gmm.make_params(weights, means, cov)
    result = jaxem.em(gmm.e_step, gmm.m_step, params, x, tol=1e-6)
    assert float(result.params.weights[2]) == 0.0
    for leaf in jax.tree.leaves(result.params):
        assert np.all(np.isfinite(leaf))
    two = gmm.make_params(np.array([0.5, 0.5]), means[:2], cov[:2])
    reference = jaxem.em(gmm.e_step, gmm.m_step, two, x, tol=1e-6)
    np.testing.assert_allclose(result.params.means[:2], reference.params.means, rtol=1e-10)
    assert int(gmm.n_parameters(result.params)) == int(gmm.n_parameters(reference.params))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_inputs_give_float32_outputs(covariance_type):
    x = blobs(seed=11, n=60, d=2, k=2).astype(np.float32)
    start = [np.asarray(a, np.float32) for a in random_params(12, 2, 2, covariance_type, x)]
    params = gmm.make_params(*start, covariance_type)
    resp, ll = gmm.e_step(params, x)
    new = gmm.m_step(resp, x, covariance_type=covariance_type)
    assert resp.dtype == ll.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new))
    params64 = gmm.make_params(*[a.astype(np.float64) for a in start], covariance_type)
    new64 = gmm.m_step(
        gmm.e_step(params64, x.astype(np.float64))[0],
        x.astype(np.float64),
        covariance_type=covariance_type,
    )
    np.testing.assert_allclose(new.covariances, new64.covariances, rtol=1e-4)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_statistics_of_hard_labels_equal_the_general_sums(covariance_type):
    """A k-means or agglomeration start's statistics (one positive entry per
    row) by segment sums equal the general N·K·D² sums, with weights, rows that
    belong to no component and data far from the origin."""
    from jaxem._src.gmm.steps import labelled_suff_stats, suff_stats

    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(600, 4)) * 2 + 1e3)
        labels = rng.integers(3, size=600)
        resp = np.eye(3)[labels] * rng.integers(1, 3, size=600)[:, None]  # weighted labels
        resp[:40] = 0  # rows in no component
        resp = jnp.asarray(resp)
        weights = jnp.asarray(rng.integers(0, 4, size=600), x.dtype)
        for w in (None, weights):
            general = suff_stats(resp, x, covariance_type=covariance_type, sample_weight=w)
            labelled = labelled_suff_stats(
                resp, x, covariance_type=covariance_type, sample_weight=w
            )
            for name in ("nk", "shift", "sum_xx"):
                np.testing.assert_allclose(
                    getattr(labelled, name), getattr(general, name), rtol=1e-12, err_msg=name
                )
            np.testing.assert_allclose(labelled.sum_x, general.sum_x, atol=1e-9)


def test_starts_of_label_methods_take_the_labels_statistics(monkeypatch):
    """k-means' and the agglomerations' starts are labels (``InitResp.labels``)
    and reach :meth:`labels_init_stats`; "random" responsibilities do not."""
    from jaxem._src.gmm.family import GaussianFamily

    traced = []

    def spy(self, resp, x, w, context):
        traced.append(resp.shape)
        return GaussianFamily.init_stats(self, resp, x, w, context)

    monkeypatch.setattr(GaussianFamily, "labels_init_stats", spy)
    x = blobs(seed=3, n=37, d=2, k=2)  # an odd shape: a program traced afresh
    gmm.fit(jax.random.key(0), x, 2, init="random", max_iter=2)
    assert traced == []
    gmm.fit(jax.random.key(0), x, 2, init="kmeans", max_iter=2)
    assert traced
