"""k-means++ seeding and Lloyd iterations against scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import blobs
from sklearn.cluster import KMeans

from jaxem import kmeans as km


def test_lloyd_reaches_fixed_point_close_to_sklearn_best_of_10():
    x = blobs(seed=0, n=600, d=3, k=5, spread=5.0)
    keys = jax.random.split(jax.random.key(0), 10)
    runs = jax.jit(jax.vmap(lambda k: km.kmeans(k, x, 5, tol=0.0)))(keys)
    best = int(jnp.argmin(runs.inertia))
    centers, labels = np.asarray(runs.centers[best]), np.asarray(runs.labels[best])
    # Fixed point: each centre is the mean of its points and each point is nearest its centre.
    for j in range(5):
        np.testing.assert_allclose(centers[j], x[labels == j].mean(0), rtol=1e-8, atol=1e-10)
    d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, d2.argmin(1))
    np.testing.assert_allclose(runs.inertia[best], d2.min(1).sum(), rtol=1e-8)
    reference = KMeans(5, n_init=10, random_state=0).fit(x).inertia_
    assert float(runs.inertia[best]) <= 1.01 * reference


def test_kmeans_plusplus_picks_distinct_spread_rows():
    x = blobs(seed=1, n=300, d=2, k=4, spread=20.0)
    idx = np.asarray(km.kmeans_plusplus(jax.random.key(3), x, 4))
    assert len(set(idx.tolist())) == 4
    centres = x[idx]
    assert np.min(np.linalg.norm(centres[:, None] - centres[None], axis=-1) + 1e9 * np.eye(4)) > 5


def test_n_active_seeds_are_a_prefix():
    x = blobs(seed=2, n=200, d=2, k=3)
    key = jax.random.key(7)
    for k in (1, 2, 3, 5):
        for factor in (1, 4):  # scikit-learn's candidates per seed, the initialisers'
            small = np.asarray(km.kmeans_plusplus(key, x, k, trials_factor=factor))
            nested = np.asarray(km.kmeans_plusplus(key, x, 8, n_active=k, trials_factor=factor))
            np.testing.assert_array_equal(small, nested[:k])
        a = km.kmeans(key, x, k)
        b = km.kmeans(key, x, 8, n_active=k)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.centers, b.centers[:k], rtol=1e-12)


def test_fewer_distinct_points_than_clusters_stays_finite():
    x = np.repeat(np.array([[0.0, 1.0], [5.0, 5.0]]), 10, axis=0)
    result = km.kmeans(jax.random.key(0), x, 4)
    assert np.all(np.isfinite(result.centers))
    assert float(result.inertia) == 0.0


def test_scale_is_kmeans_of_scaled_data_with_centres_unscaled():
    x = blobs(seed=5, n=200, d=3, k=3) * np.array([1.0, 50.0, 0.02])
    scale = 1 / x.std(0)
    key = jax.random.key(4)
    scaled = km.kmeans(key, x, 3, tol=0.0, scale=scale)
    plain = km.kmeans(key, x * scale, 3, tol=0.0)
    np.testing.assert_array_equal(scaled.labels, plain.labels)
    np.testing.assert_allclose(scaled.centers * scale, plain.centers, rtol=1e-9)
    np.testing.assert_allclose(scaled.inertia, plain.inertia, rtol=1e-9)
    # The scale matters: unscaled k-means splits the wide feature instead.
    assert not np.array_equal(km.kmeans(key, x, 3, tol=0.0).labels, plain.labels)


def test_a_group_of_init_methods_is_one_program_equal_to_each_method():
    from jaxem._src.init import GROUPS, init_resp

    x = jnp.asarray(blobs(seed=6, n=150, d=2, k=3) * np.array([1.0, 100.0]))
    (group,) = GROUPS
    keys = jax.random.split(jax.random.key(1), len(group))
    batched = jax.vmap(lambda k, i: init_resp(k, x, 3, group, 3, index=i))(
        keys, jnp.arange(len(group))
    )
    for i, method in enumerate(group):
        np.testing.assert_array_equal(batched[i], init_resp(keys[i], x, 3, method, 3))


def test_seeding_draw_is_the_inverse_cdf_and_distances_are_differences():
    from jaxem._src.kmeans import DRAW_BLOCK, _draw, sq_distances_t

    rng = np.random.default_rng(0)
    for n in (1, 7, DRAW_BLOCK, DRAW_BLOCK + 1, 3 * DRAW_BLOCK + 5):
        mass = rng.exponential(size=n) * (rng.random(n) < 0.6)  # zeros: never drawn
        u = rng.random(64)
        index, total = _draw(jnp.asarray(mass), jnp.asarray(u))
        cumulative = np.cumsum(mass)
        expected = np.searchsorted(cumulative, u * cumulative[-1], side="left")
        np.testing.assert_allclose(total, cumulative[-1], rtol=1e-12)
        if cumulative[-1] > 0:
            np.testing.assert_array_equal(index, expected)
    # squared scaled distances, unrolled (≤ 32 features) and looped
    for d in (3, 40):
        x, points, s2 = rng.normal(size=(50, d)) + 1e3, rng.normal(size=(4, d)) + 1e3, rng.random(d)
        expected = (((x[None] - points[:, None]) ** 2) * s2).sum(-1)
        got = sq_distances_t(jnp.asarray(x.T), jnp.asarray(points), jnp.asarray(s2))
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_more_candidates_per_seed_find_every_separated_cluster_in_many_dimensions():
    # 16 correlated clusters in 16 dimensions, ten per-feature spreads apart: the
    # rows of the clusters already seeded hold about as much squared distance as
    # a cluster not yet seeded, and scikit-learn's 2 + ⌊log k⌋ candidates often
    # all miss it (two centres end in one cluster, one across two).
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10.0, size=(16, 16))
    truth = np.repeat(np.arange(16), 150)
    factors = rng.normal(scale=0.5, size=(16, 16, 16)) + np.eye(16)
    x = centres[truth] + np.einsum("nd,nde->ne", rng.normal(size=(2400, 16)), factors[truth])
    keys = jax.random.split(jax.random.key(0), 16)

    def pure(trials_factor):
        runs = jax.vmap(lambda k: km.kmeans(k, x, 16, trials_factor=trials_factor))(keys)
        labels = np.asarray(runs.labels)
        return [all(len(set(truth[run == c])) <= 1 for c in range(16)) for run in labels]

    assert all(pure(4))  # jaxem._src.init.KMEANS_TRIALS_FACTOR
    assert not all(pure(1))  # the default, scikit-learn's: 4 of the 16 keys miss one
    with pytest.raises(ValueError, match="trials_factor"):
        km.kmeans_plusplus(keys[0], x, 16, trials_factor=0)


def test_a_row_equidistant_from_two_centres_goes_to_the_first_whatever_the_rounding():
    """Centres ``c0`` and ``c1`` at equal distance from row 0 (``c1`` is ``c0``
    with row 0's differences in two features swapped): the products the
    distances are computed by round them apart, in either direction and
    differently in each compiled program; the tie goes to the first centre
    (discrete data give such ties at every seed, and an ``argmin`` of rounded
    distances gave one key different clusterings in memory and in chunks)."""
    rng = np.random.default_rng(0)
    rounded_towards_second = 0
    for _ in range(40):
        x = rng.normal(size=(6, 5))
        c0 = rng.normal(size=5)
        c1 = x[0] + (c0 - x[0])[[1, 0, 2, 3, 4]]
        if np.sum((x[0] - c0) ** 2) != np.sum((x[0] - c1) ** 2):
            continue  # not an exact tie once rounded to float64
        centres = jnp.asarray(np.stack([c0, c1]))
        offset = x.mean(axis=0)  # the distances' products, as nearest() computes them
        xc, cc = x - offset, np.asarray(centres) - offset
        products = np.sum(xc * xc, 1)[:, None] - 2 * xc @ cc.T + np.sum(cc * cc, 1)[None, :]
        rounded_towards_second += products[0, 1] < products[0, 0]
        assert int(km.nearest(jnp.asarray(x), centres)[0]) == 0
        assert int(km.lloyd(jnp.asarray(x), centres, max_iter=0).labels[0]) == 0
    assert rounded_towards_second >= 5  # the cases an argmin would give to c1
