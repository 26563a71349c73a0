"""Sample weights: integer weights give exactly the fit of repeated rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, random_params

from jaxem import gmm, kmeans
from jaxem.gmm import fit_from

X = blobs(seed=0, n=60, d=2, k=3)
WEIGHTS = np.random.default_rng(1).integers(0, 4, size=60).astype(float)
REPEATED = np.repeat(X, WEIGHTS.astype(int), axis=0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type):
    start = gmm.make_params(*random_params(2, 3, 2, covariance_type, X), covariance_type)
    resp, _ = gmm.e_step(start, X)
    resp_rep, _ = gmm.e_step(start, REPEATED)
    weighted = gmm.m_step(resp, X, covariance_type=covariance_type, sample_weight=WEIGHTS)
    repeated = gmm.m_step(resp_rep, REPEATED, covariance_type=covariance_type)
    for a, b in zip(jax.tree.leaves(weighted), jax.tree.leaves(repeated), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    run = dict(tol=0.0, reg_covar=1e-6, max_iter=15)
    a = fit_from(start, jnp.asarray(X), sample_weight=jnp.asarray(WEIGHTS), **run)
    b = fit_from(start, jnp.asarray(REPEATED), **run)
    np.testing.assert_allclose(a.history, b.history, rtol=1e-10)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)


def test_weighted_lloyd_equals_repeated_rows():
    centers = X[:3]
    a = kmeans.lloyd(X, centers, sample_weight=WEIGHTS, tol=0.0)
    b = kmeans.lloyd(REPEATED, centers, tol=0.0)
    np.testing.assert_allclose(a.centers, b.centers, rtol=1e-12)
    np.testing.assert_allclose(a.inertia, b.inertia, rtol=1e-12)


def test_zero_weight_rows_are_ignored_by_fit():
    x = np.r_[X, np.full((5, 2), 1e3)]  # outliers with weight 0
    w = np.r_[np.ones(60), np.zeros(5)]
    with_outliers = gmm.fit(jax.random.key(0), x, 3, sample_weight=w, init="k-means++")
    assert np.all(np.abs(np.asarray(with_outliers.params.means)) < 100)


def test_vmap_over_weights_gives_bootstrap_fits():
    keys = jax.random.split(jax.random.key(0), 3)
    boots = jax.vmap(lambda k: jax.random.poisson(k, 1.0, (60,)).astype(jnp.float64))(keys)
    batched = jax.vmap(lambda w: gmm.fit(jax.random.key(1), X, 2, sample_weight=w))(boots)
    for i in range(3):
        single = gmm.fit(jax.random.key(1), X, 2, sample_weight=boots[i])
        np.testing.assert_allclose(batched.params.means[i], single.params.means, rtol=1e-9)


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        (np.ones(5), r"sample_weight must have shape \(n_samples,\) = \(60,\)"),
        (-np.ones(60), "finite, non-negative and not all zero"),
        (np.zeros(60), "finite, non-negative and not all zero"),
        (np.full(60, np.nan), "finite, non-negative and not all zero"),
    ],
)
def test_bad_weights_are_refused(weights, fragment):
    with pytest.raises(ValueError, match=fragment):
        gmm.fit(jax.random.key(0), X, 2, sample_weight=weights)


def test_small_weights_give_the_fit_of_unit_weights():
    """A fit without a prior depends on the weights only up to their scale. With
    weights all 2⁻¹⁰ (float32) k-means once divided its centres' sums by
    ``max(count, 1)`` (centres shrunk 50-fold towards the data's first row),
    and the mixing weights came from ``(n_k + α) − 1``, which rounds small
    counts. A power of two scales every sum exactly; what remains is the
    M-step's ``n_k + 10 ε`` guard (scikit-learn's, absolute: about 6e-5 of
    these counts). Five iterations: after twenty, float32 rounding alone moves
    the t mixture's Σ by 2e-3 (one weight changed by one ulp), the size of
    that tolerance; after five by 1e-6, and the guard's 3e-4 shows."""
    import jaxem
    from jaxem.mixtures import StudentT

    x = jnp.asarray(X, jnp.float32)
    w = jnp.ones(60, jnp.float32)
    run = dict(tol=0.0, max_iter=5)
    for family in (gmm.family("full"), StudentT(dof=5.0)):
        unit = jaxem.fit(family, jax.random.key(0), x, 3, sample_weight=w, **run)
        small = jaxem.fit(family, jax.random.key(0), x, 3, sample_weight=w * 2.0**-10, **run)
        np.testing.assert_allclose(small.params.weights, unit.params.weights, rtol=1e-4)
        np.testing.assert_allclose(small.params.covariances, unit.params.covariances, rtol=1e-3)
