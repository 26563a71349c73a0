"""Initialisation methods follow scikit-learn's semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs

from jaxem import gmm, kmeans
from jaxem._src.init import KMEANS_TRIALS_FACTOR


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_random_from_data_means_are_data_rows(covariance_type):
    x = blobs(seed=0, n=100, d=3, k=3)
    params = gmm.init(
        jax.random.key(0),
        x,
        4,
        method="random_from_data",
        covariance_type=covariance_type,
        reg_covar=1e-6,
    )
    means = np.asarray(params.means)
    rows = [np.flatnonzero(np.all(np.isclose(x, m, rtol=1e-12), axis=1)) for m in means]
    assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 4
    np.testing.assert_allclose(params.weights, 0.25)
    # One point per component: covariance is reg_covar alone.
    expected = {
        "full": 1e-6 * np.eye(3),
        "tied": 1e-6 * np.eye(3),
        "diag": 1e-6,
        "spherical": 1e-6,
    }[covariance_type]
    np.testing.assert_allclose(
        np.broadcast_to(params.covariances, params.covariances.shape),
        np.broadcast_to(expected, params.covariances.shape),
        rtol=1e-6,
        atol=1e-14,
    )


def test_kmeans_plusplus_means_are_the_seeds():
    x = blobs(seed=1, n=120, d=2, k=3)
    key = jax.random.key(4)
    params = gmm.init(key, x, 3, method="k-means++")
    seeds = np.asarray(kmeans.kmeans_plusplus(key, x, 3))
    np.testing.assert_allclose(params.means, x[seeds], rtol=1e-12)


def test_kmeans_init_is_m_step_on_kmeans_labels():
    x = blobs(seed=2, n=150, d=2, k=3)
    key = jax.random.key(5)
    params = gmm.init(key, x, 3, method="kmeans", covariance_type="diag", reg_covar=1e-3)
    # the initialiser's seeding: KMEANS_TRIALS_FACTOR times scikit-learn's candidates
    labels = kmeans.kmeans(key, x, 3, tol=0.0, trials_factor=KMEANS_TRIALS_FACTOR).labels
    for j in range(3):
        xj = x[np.asarray(labels) == j]
        np.testing.assert_allclose(params.weights[j], len(xj) / len(x), rtol=1e-12)
        np.testing.assert_allclose(params.means[j], xj.mean(0), rtol=1e-10)
        np.testing.assert_allclose(params.covariances[j], xj.var(0) + 1e-3, rtol=1e-8)


def test_random_init_is_m_step_on_normalised_uniform_resp():
    x = blobs(seed=3, n=80, d=2, k=2)
    key = jax.random.key(6)
    params = gmm.init(key, x, 3, method="random")
    resp = jax.random.uniform(key, (80, 3), jnp.float64)
    expected = gmm.m_step(resp / resp.sum(1, keepdims=True), x)
    np.testing.assert_allclose(params.means, expected.means, rtol=1e-12)


@pytest.mark.parametrize("method", gmm.INIT_METHODS)
def test_init_is_jittable_and_vmappable_over_keys(method):
    x = blobs(seed=4, n=60, d=2, k=2)
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(lambda k: gmm.init(k, x, 2, method=method)))(keys)
    for i in range(3):
        single = gmm.init(keys[i], x, 2, method=method)
        np.testing.assert_allclose(batched.means[i], single.means, rtol=1e-10)


@pytest.mark.parametrize("method", gmm.INIT_METHODS)
def test_n_active_leaves_extra_components_inactive(method):
    x = blobs(seed=5, n=60, d=2, k=2)
    params = gmm.init(jax.random.key(1), x, 5, method=method, n_active=2)
    np.testing.assert_array_equal(np.asarray(params.weights)[2:], 0.0)
    assert np.isclose(float(params.weights.sum()), 1.0)
    for leaf in jax.tree.leaves(params):
        assert np.all(np.isfinite(leaf))


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        (dict(method="kmeans++"), ValueError, "init method must be one of"),
        (dict(covariance_type="ful"), ValueError, "covariance_type must be one of"),
        (dict(n_components=0), ValueError, "n_components must be >= 1"),
        (dict(n_components=500), ValueError, "must be <= the number of samples"),
        (dict(reg_covar=-1.0), ValueError, "reg_covar must be a finite number >= 0"),
        (dict(n_active=4), ValueError, r"n_active must be in \[1, n_components=3\]"),
        (dict(key=0), TypeError, "key must be a JAX PRNG key"),
    ],
)
def test_init_rejects_bad_arguments(kwargs, error, fragment):
    x = blobs(seed=6, n=50, d=2, k=2)
    args = dict(key=jax.random.key(0), n_components=3) | kwargs
    key, k = args.pop("key"), args.pop("n_components")
    with pytest.raises(error, match=fragment):
        gmm.init(key, x, k, **args)


def test_initial_resp_kept_on_its_rows_gives_the_statistics_of_every_row():
    # An agglomeration of a random subset (more than HC_MAX_SAMPLES rows) and the
    # seed rows of random_from_data and k-means++ are kept as their rows only;
    # their statistics are those of the same responsibilities on all rows.
    from jaxem._src.family import SPARSE_INIT_MIN_ROWS, InitResp

    n = SPARSE_INIT_MIN_ROWS
    x = jnp.asarray(blobs(seed=1, n=n, d=3, k=3))
    w = jnp.asarray(np.random.default_rng(0).integers(0, 3, n), x.dtype)  # zeros included
    family = gmm.family("full")
    context = family.context(family.summarize(x, w, x[0]), x[0])
    methods = ("standardized_kmeans", "hc_vvv", "hc", "kmeans", "random_from_data")
    methods += ("hc_vvv", "k-means++", "random")
    keys = jax.random.split(jax.random.key(0), len(methods))
    resp = family.initial_resp(keys, x, w, 4, jnp.asarray(3), methods, context)
    assert isinstance(resp, InitResp)
    # (restarts, rows) of each group kept on rows: k-means++, random_from_data, hc, hc_vvv
    shapes = sorted(r.shape for r in resp.rows if r is not None)
    assert shapes == [(1, 4), (1, 4), (1, 128), (2, 128)]
    dense = resp.dense(n)
    assert dense.shape == (len(methods), n, 4)
    np.testing.assert_array_equal(dense[:, :, 3], 0)  # the inactive column
    for i in (1, 2, 4, 5, 6):  # mostly zero rows, one-hot elsewhere
        assert 0 < int(jnp.sum(jnp.any(dense[i] > 0, axis=1))) <= 128
    # the seeds and subsets differ between restarts of one method
    assert not np.array_equal(dense[1], dense[5])
    on_rows = family.batch_init_stats(resp, x, w, context)
    every_row = jax.vmap(lambda r: family.init_stats(r, x, w, context))(dense)
    for a, b in zip(jax.tree.leaves(on_rows), jax.tree.leaves(every_row), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_largest_keys_are_top_k_and_the_kmeans_subset_is_of_positive_weight_rows(monkeypatch):
    # k-means of more than KMEANS_MAX_SAMPLES rows iterates on a uniform random
    # subset: the rows of the m largest random keys, found by bisection (the
    # set lax.top_k finds, ties at the threshold included, in index order)
    from jaxem._src import init as init_module
    from jaxem._src.init import _largest, _uniform_rows

    keys = jax.random.bits(jax.random.key(0), (3000,), jnp.uint32)
    keys = keys.at[:40].set(keys[jnp.argsort(keys)[-200]])  # 40 ties at the 200th largest
    as_int = jax.lax.bitcast_convert_type(keys ^ jnp.uint32(1 << 31), jnp.int32)
    for m in (1, 180, 200, 230, 2999, 3000):
        expected = np.sort(np.asarray(jax.lax.top_k(as_int, m)[1]))
        np.testing.assert_array_equal(_largest(keys, m), expected)
    valid = jnp.arange(600) % 3 == 0  # 200 rows of positive weight
    for bisect_max in (600, 599):  # by bisection, and above BISECT_MAX_ROWS by top_k
        monkeypatch.setattr(init_module, "BISECT_MAX_ROWS", bisect_max)
        rows = np.asarray(_uniform_rows(jax.random.key(1), valid, 150, jnp.float32))
        assert len(set(rows)) == 150 and np.all(rows % 3 == 0)
        rows = np.asarray(_uniform_rows(jax.random.key(1), valid, 250, jnp.float32))
        assert len(set(rows)) == 250 and np.sum(rows % 3 == 0) == 200  # more than there are


def test_random_from_data_seeds_rows_of_distinct_values_where_the_data_repeat_some():
    """Discrete data repeat rows: two seeds of one value would start two equal
    components (which EM keeps equal until rounding splits them, differently in
    each compiled program). Seeds take distinct values among the candidates
    (the first K + 64 draws; here every row), then repeats; never a row of weight
    zero while rows of weight remain; on data without repeats, the rows of the
    plain draw."""
    from jaxem._src.init import _distinct_rows, init_resp_rows

    rng = np.random.default_rng(0)
    codes = rng.permutation(np.repeat(np.arange(5), [44, 4, 3, 2, 1]))
    codes = np.concatenate([codes, np.full(6, 9)])  # a value only rows of weight zero have
    x = codes[:, None] * np.array([[1.0, -1.0]])
    w = np.concatenate([rng.uniform(0.5, 2.0, 54), np.zeros(6)])
    for i in range(20):
        rows, _ = init_resp_rows(jax.random.key(i), jnp.asarray(x), 4, "random_from_data", 4, w)
        rows = np.asarray(rows)
        assert len(set(codes[rows])) == 4 and np.all(w[rows] > 0)
        # fewer values than seeds: every value once, then repeats
        binary = jnp.asarray(x[:54, :1] > 0, jnp.float64)
        rows, _ = init_resp_rows(jax.random.key(i), binary, 4, "random_from_data", 4)
        assert set(np.asarray(binary)[np.asarray(rows), 0]) == {0.0, 1.0}
    continuous = rng.normal(size=(300, 2))
    w = rng.uniform(0.5, 2.0, 300) * (np.arange(300) % 3 > 0)
    for i in range(5):
        key = jax.random.key(i)
        rows, _ = init_resp_rows(key, jnp.asarray(continuous), 4, "random_from_data", 4, w)
        np.testing.assert_array_equal(rows, _distinct_rows(key, jnp.log(jnp.asarray(w)), 4))
