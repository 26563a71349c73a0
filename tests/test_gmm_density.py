"""Densities, criteria, sampling and parameter validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, precisions_from_covariances, random_params
from scipy import stats
from sklearn.mixture import GaussianMixture

from jaxem import gmm


def _dense_covariances(cov, covariance_type, k, d):
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prob_equals_scipy_mixture(covariance_type):
    k, d = 3, 4
    weights, means, cov = random_params(0, k, d, covariance_type)
    x = np.random.default_rng(1).normal(scale=3, size=(50, d))
    dense = _dense_covariances(cov, covariance_type, k, d)
    expected = np.log(
        sum(
            w * stats.multivariate_normal(m, c).pdf(x)
            for w, m, c in zip(weights, means, dense, strict=False)
        )
    )
    params = gmm.make_params(weights, means, cov, covariance_type)
    np.testing.assert_allclose(gmm.log_prob(params, x), expected, rtol=1e-10)
    resp = gmm.predict_proba(params, x)
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gmm.predict(params, x), np.argmax(resp, axis=1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_criteria_equal_sklearn(covariance_type):
    x = blobs(seed=2, n=120, d=3, k=2)
    w, m, c = random_params(3, 2, 3, covariance_type, x)
    est = GaussianMixture(
        2,
        covariance_type=covariance_type,
        weights_init=w,
        means_init=m,
        precisions_init=precisions_from_covariances(c, covariance_type),
        max_iter=5,
        tol=0.0,
    )
    est.fit(x)
    params = gmm.from_sklearn(est)
    assert int(gmm.n_parameters(params)) == est._n_parameters()
    np.testing.assert_allclose(gmm.bic(params, x), est.bic(x), rtol=1e-10)
    np.testing.assert_allclose(gmm.aic(params, x), est.aic(x), rtol=1e-10)
    np.testing.assert_allclose(gmm.log_prob(params, x), est.score_samples(x), rtol=1e-10)


def test_inactive_components_do_not_count():
    _w, m, c = random_params(0, 3, 2, "diag")
    params = gmm.make_params(np.array([0.4, 0.6, 0.0]), m, c, "diag")
    reduced = gmm.make_params(np.array([0.4, 0.6]), m[:2], c[:2], "diag")
    assert int(gmm.n_parameters(params)) == int(gmm.n_parameters(reduced)) == 1 + 4 + 4
    x = np.random.default_rng(0).normal(size=(30, 2))
    np.testing.assert_allclose(gmm.log_prob(params, x), gmm.log_prob(reduced, x), rtol=1e-12)
    assert np.all(np.asarray(gmm.predict_proba(params, x))[:, 2] == 0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_reproduces_moments(covariance_type):
    k, d, n = 2, 3, 200_000
    weights, means, cov = random_params(4, k, d, covariance_type)
    params = gmm.make_params(weights, means, cov, covariance_type)
    x, labels = gmm.sample(jax.random.key(0), params, n)
    assert x.shape == (n, d) and labels.shape == (n,)
    x, labels = np.asarray(x), np.asarray(labels)
    dense = _dense_covariances(cov, covariance_type, k, d)
    for j in range(k):
        xj = x[labels == j]
        np.testing.assert_allclose(len(xj) / n, weights[j], atol=0.005)
        np.testing.assert_allclose(xj.mean(0), means[j], atol=0.03)
        np.testing.assert_allclose(np.cov(xj.T), dense[j], atol=0.05)


def test_log_prob_is_differentiable_in_data_and_params():
    params = gmm.make_params(*random_params(0, 2, 2, "full"), "full")
    x = jnp.array([[0.3, -0.2], [1.0, 2.0]])
    gx = jax.grad(lambda x: gmm.log_prob(params, x).sum())(x)
    eps = 1e-6
    fd = (
        gmm.log_prob(params, x.at[0, 0].add(eps)).sum()
        - gmm.log_prob(params, x.at[0, 0].add(-eps)).sum()
    ) / (2 * eps)
    np.testing.assert_allclose(gx[0, 0], fd, rtol=1e-6)
    gm = jax.grad(
        lambda m: gmm.log_prob(
            gmm.GMMParams(params.weights, m, params.covariances, params.precisions_cholesky), x
        ).sum()
    )(params.means)
    assert np.all(np.isfinite(gm)) and np.any(gm != 0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "fragment"),
    [
        (
            (np.ones(2) / 2, np.zeros((2, 2)), np.stack([np.eye(2)] * 2)),
            dict(covariance_type="ful"),
            ValueError,
            "covariance_type must be one of",
        ),
        (
            (np.ones(3) / 3, np.zeros((2, 2)), np.stack([np.eye(2)] * 2)),
            {},
            ValueError,
            "weights must have shape",
        ),
        (
            (np.ones(2) / 2, np.zeros(2), np.stack([np.eye(2)] * 2)),
            {},
            ValueError,
            "means must have shape",
        ),
        (
            (np.ones(2) / 2, np.zeros((2, 2)), np.eye(2)),
            {},
            ValueError,
            r"must have shape \(2, 2, 2\)",
        ),
        (
            (np.array([0.7, 0.7]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2)),
            {},
            ValueError,
            "weights must sum to 1",
        ),
        (
            (np.array([1.5, -0.5]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2)),
            {},
            ValueError,
            "non-negative",
        ),
        (
            (np.ones(2) / 2, np.zeros((2, 2)), np.stack([np.eye(2), -np.eye(2)])),
            {},
            ValueError,
            r"positive definite \(component 1\)",
        ),
        (
            (np.ones(2) / 2, np.zeros((2, 2)), np.stack([np.eye(2), [[1.0, 0.5], [0.0, 1.0]]])),
            {},
            ValueError,
            "symmetric",
        ),
        (
            (np.ones(2) / 2, np.zeros((2, 2)), np.array([1.0, 0.0])),
            dict(covariance_type="spherical"),
            ValueError,
            "positive",
        ),
        (
            (np.ones(2) / 2, np.array([["a", "b"], ["c", "d"]]), np.ones(2)),
            dict(covariance_type="spherical"),
            TypeError,
            "means must be a real numeric array",
        ),
    ],
)
def test_make_params_rejects_bad_input(args, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        gmm.make_params(*args, **kwargs)


def test_make_params_under_jit_checks_shapes_only():
    @jax.jit
    def build(w, m, c):
        return gmm.make_params(w, m, c, "diag")

    p = build(jnp.ones(2) / 2, jnp.zeros((2, 3)), jnp.ones((2, 3)))
    assert p.precisions_cholesky.shape == (2, 3)
    with pytest.raises(ValueError, match="covariances for covariance_type='diag'"):
        build(jnp.ones(2) / 2, jnp.zeros((2, 3)), jnp.ones((2, 2)))


@pytest.mark.parametrize(
    ("x", "error", "fragment"),
    [
        (np.zeros(5), ValueError, "must be 2-D"),
        (np.zeros((0, 2)), ValueError, "at least one sample"),
        (np.array([[np.nan, 0.0]]), ValueError, "NaN or infinite"),
        (np.zeros((4, 3)), ValueError, "x has 3 features but params have 2"),
    ],
)
def test_log_prob_rejects_bad_data(x, error, fragment):
    params = gmm.make_params(*random_params(0, 2, 2, "full"), "full")
    with pytest.raises(error, match=fragment):
        gmm.log_prob(params, x)


def test_integer_data_is_converted():
    params = gmm.make_params(*random_params(0, 2, 2, "diag"), "diag")
    x = np.array([[1, 2], [3, 4]])
    np.testing.assert_allclose(gmm.log_prob(params, x), gmm.log_prob(params, x.astype(float)))
