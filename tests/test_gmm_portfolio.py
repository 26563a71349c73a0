"""Initialisers beyond scikit-learn's, the default portfolio and degenerate restarts (#7)."""

import functools
import json
import pathlib
import sys

import jax
import numpy as np
import pytest
from helpers import blobs
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score

from jaxem import gmm, kmeans
from jaxem._src.gmm.family import degenerate, portfolio
from jaxem._src.hierarchical import UNROLL_MAX_FEATURES, _logdet_lapack, _logdet_unrolled
from jaxem._src.init import (
    HC_MAX_SAMPLES,
    HC_MAX_SUBSET,
    hc_subset_size,
    standardize,
    svd_transform,
)
from jaxem.hierarchical import cut, vvv_tree, ward_tree

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import mclust_reference
from datasets import DATASETS, load_faithful

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
BIC_REFERENCE = json.loads((EXPERIMENTS / "results" / "mclust_bic_reference.json").read_text())


def _ward_tree():
    return jax.jit(ward_tree)


@pytest.mark.parametrize("seed", [0, 1])
def test_ward_tree_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 3))
    x[:40] += 3
    merges = _ward_tree()(x)
    reference = linkage(x, "ward")
    for k in (1, 2, 3, 7, 30):
        labels = np.asarray(cut(merges, k))
        assert labels.max() == k - 1 and set(labels) == set(range(k))
        expected = fcluster(reference, k, "maxclust")
        assert adjusted_rand_score(labels, expected) == 1.0


def test_weighted_ward_equals_repeated_points():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 2))
    counts = rng.integers(1, 4, size=30)
    weighted = np.asarray(cut(ward_tree(x, counts.astype(float)), 4))
    repeated = np.asarray(cut(ward_tree(np.repeat(x, counts, axis=0)), 4))
    # the repeated copies of one point share its label; compare the partitions
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    assert adjusted_rand_score(weighted, repeated[first]) == 1.0


def _separated(seed, n=90, d=3):
    """Three groups of different shapes, no two pairs of points equally far apart."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[: n // 3] = x[: n // 3] * 0.3 + 3
    x[n // 3 : 2 * n // 3] = x[n // 3 : 2 * n // 3] @ rng.normal(size=(d, d))
    return x


@pytest.mark.parametrize("seed", [0, 1])
def test_vvv_tree_matches_the_mclust_reference(seed):
    """The same merges as experiments/mclust_reference.py's numpy transcription of
    mclust's hcVVV criterion (which reproduces mclust's printed fits) when no two
    merges cost the same."""
    x = _separated(seed)
    merges = jax.jit(vvv_tree)(x)
    reference = mclust_reference.hc_vvv(x)
    for k in (1, 2, 3, 5, 12, 40):
        labels = np.asarray(cut(merges, k))
        assert set(labels) == set(range(k))
        assert adjusted_rand_score(labels, mclust_reference.hclass(reference, k)) == 1.0


def _first_occurrence_order(labels):
    """Labels renumbered 0, 1, … in order of each cluster's first row (as cut's)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


@pytest.mark.parametrize(
    "name",
    [
        "faithful",
        pytest.param("iris", marks=pytest.mark.slow),
        pytest.param("wine", marks=pytest.mark.slow),
    ],
)
def test_vvv_tree_equals_mclusts_hc_on_tied_data(name):
    """mclust 6.0.0's hc partitions (``hclass(hc(X, "VVV", use = "SVD"), 1:9)``,
    experiments/results/mclust_bic_reference.json) for K = 1..9. Old Faithful's
    waiting times are whole minutes: many pairs cost the same, and only mclust's
    order among equal costs gives its tree. The same with the data padded by
    interleaved rows of weight zero, as the in-memory fits pad N (hc_vvv's path)."""
    x = DATASETS[name]()
    expected = BIC_REFERENCE["results"][name]["hc_partitions"]
    ks = np.arange(1, 10)

    @jax.jit
    def partitions(x, weights):
        tree = vvv_tree(svd_transform(x, weights), weights)
        return jax.vmap(lambda k: cut(tree, k, weights))(ks)

    labels = np.asarray(partitions(x, None))
    gaps = np.arange(0, len(x), 9)  # a row of weight zero before every ninth row
    weights = np.insert(np.ones(len(x)), gaps, 0.0)
    padded = np.asarray(partitions(np.insert(x, gaps, 0.0, axis=0), weights))
    assert np.all(padded[:, weights == 0] == -1)
    for k in ks:
        mclust = _first_occurrence_order(np.asarray(expected[str(k)]))
        np.testing.assert_array_equal(labels[k - 1], mclust, err_msg=f"K = {k}")
        np.testing.assert_array_equal(padded[k - 1][weights > 0], mclust, err_msg=f"K = {k}")


@pytest.mark.parametrize("tree", [vvv_tree, ward_tree])
def test_trees_with_unit_and_zero_weights(tree):
    x = _separated(2, n=30)
    merges = np.asarray(tree(x))
    np.testing.assert_array_equal(np.asarray(tree(x, np.ones(30))), merges)
    weights = np.ones(30)
    absent = [0, 1, 2, 11, 29]
    weights[absent] = 0.0  # rows of weight zero take no part (as padding needs)
    present = weights > 0
    weighted = tree(x, weights)
    reference = tree(x[present])
    for k in (1, 3, 7):
        labels = np.asarray(cut(weighted, k, weights))
        np.testing.assert_array_equal(labels[~present], -1)
        np.testing.assert_array_equal(labels[present], np.asarray(cut(reference, k)))


def test_svd_transform_is_mclusts():
    x = _separated(3) * np.array([1.0, 50.0, 0.1])
    z, expected = np.asarray(svd_transform(x)), mclust_reference.svd_transform(x)
    # the same up to the order and signs of the columns: equal Gram matrices
    np.testing.assert_allclose(z @ z.T, expected @ expected.T, atol=1e-10)
    counts = np.arange(len(x)) % 3 + 1
    weighted = np.asarray(svd_transform(x, counts.astype(float)))
    repeated = mclust_reference.svd_transform(np.repeat(x, counts, axis=0))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    np.testing.assert_allclose(
        weighted @ weighted.T, (repeated @ repeated.T)[np.ix_(first, first)], atol=1e-10
    )


def test_svd_transform_drops_a_constant_feature():
    x = _separated(4)
    x[:, 1] = 2.0
    z = np.asarray(svd_transform(x))
    assert np.all(np.isfinite(z))
    expected = mclust_reference.svd_transform(x[:, [0, 2]])
    np.testing.assert_allclose(z @ z.T, expected @ expected.T, atol=1e-10)


def test_hc_vvv_init_is_m_step_on_mclusts_partition():
    x = _separated(5) * np.array([1.0, 20.0, 1.0])
    params = gmm.init(jax.random.key(0), x, 3, method="hc_vvv", covariance_type="spherical")
    labels = mclust_reference.hclass(mclust_reference.hc_vvv(mclust_reference.svd_transform(x)), 3)
    expected = sorted(x[labels == j].mean(0)[0] for j in range(3))
    np.testing.assert_allclose(sorted(np.asarray(params.means)[:, 0]), expected, rtol=1e-10)


def test_hc_vvv_init_takes_sample_weights_as_relative():
    x = _separated(6)
    w = np.random.default_rng(6).uniform(0.5, 2.0, len(x))
    a = gmm.init(jax.random.key(0), x, 3, method="hc_vvv", sample_weight=w)
    b = gmm.init(jax.random.key(0), x, 3, method="hc_vvv", sample_weight=w / w.sum())
    np.testing.assert_allclose(a.means, b.means, rtol=1e-10)
    assert np.all(np.isfinite(np.asarray(a.covariances)))


def test_standardized_kmeans_is_kmeans_on_standardized_data():
    x = blobs(seed=3, n=150, d=2, k=3) * np.array([1.0, 100.0])
    key = jax.random.key(0)
    params = gmm.init(key, x, 3, method="standardized_kmeans", covariance_type="diag")
    labels = np.asarray(kmeans.kmeans(key, standardize(x), 3, tol=0.0).labels)
    for j in range(3):
        np.testing.assert_allclose(params.means[j], x[labels == j].mean(0), rtol=1e-10)


def test_hc_init_is_m_step_on_the_ward_partition_of_standardized_data():
    x = blobs(seed=4, n=200, d=3, k=3)
    params = gmm.init(jax.random.key(0), x, 3, method="hc", covariance_type="spherical")
    labels = fcluster(linkage(np.asarray(standardize(x)), "ward"), 3, "maxclust")
    expected = sorted(x[labels == j].mean(0)[0] for j in (1, 2, 3))
    np.testing.assert_allclose(sorted(np.asarray(params.means)[:, 0]), expected, rtol=1e-10)


@pytest.mark.parametrize("method", ["hc", "hc_vvv"])
def test_hc_init_uses_a_subset_of_large_data_and_respects_n_active(method):
    x = np.asarray(jax.random.normal(jax.random.key(1), (HC_MAX_SAMPLES + 500, 2)))
    p = gmm.init(jax.random.key(2), x, 4, method=method, n_active=2)
    assert np.count_nonzero(np.asarray(p.weights)) == 2
    q = gmm.init(jax.random.key(3), x, 4, method=method, n_active=2)
    assert not np.allclose(p.means, q.means)  # another random subset


def test_unrolled_logdet_is_lapacks():
    """The VVV agglomeration's determinants (an unrolled Cholesky) equal LAPACK's,
    −inf where a matrix is singular or indefinite."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 5, 7))
    w = a @ a.transpose(0, 2, 1)
    w[1] = np.outer(a[1, :, 0], a[1, :, 0])  # rank one
    w[2] = -w[2]  # negative definite
    expected, got = np.asarray(_logdet_lapack(w)), np.asarray(_logdet_unrolled(w))
    np.testing.assert_allclose(got[[0, 3, 4, 5]], expected[[0, 3, 4, 5]], rtol=1e-12)
    assert got[1] < -20  # singular up to rounding: −inf, or a pivot of rounding size
    assert np.isneginf(got[2]) and np.isneginf(expected[2])


def test_hc_subset_size_follows_k_and_d():
    assert hc_subset_size(3, 2) == 128  # 4KD = 24, at least 128
    assert hc_subset_size(5, 8) == 256  # 160 rounded up to a power of two
    assert hc_subset_size(8, 16) == 512  # 4KD = 512
    assert hc_subset_size(16, 16) == HC_MAX_SUBSET  # 4KD = 1024, the most


def test_hc_takes_all_rows_when_its_subset_would_not_be_fewer():
    """Above HC_MAX_SAMPLES rows, a subset size of at least N (4KD ≥ N) agglomerates
    every row, in a random order: the same partition for every key (continuous
    data: no ties), where subsets of the rows would differ."""
    n, k, d = HC_MAX_SAMPLES + 88, 8, 20
    assert hc_subset_size(k, d) >= n
    x = blobs(seed=7, n=n, d=d, k=k)
    p = gmm.init(jax.random.key(0), x, k, method="hc", covariance_type="diag")
    q = gmm.init(jax.random.key(1), x, k, method="hc", covariance_type="diag")
    order = lambda m: m[np.lexsort(np.asarray(m).T)]  # noqa: E731
    np.testing.assert_allclose(order(p.means), order(q.means), rtol=1e-12)


@pytest.mark.parametrize("n", [200, HC_MAX_SAMPLES + 76])
def test_agglomerative_restarts_start_as_gmm_init_of_their_keys(n):
    """Restart i of fit starts at gmm.init(split(key)[i]) also when its
    agglomeration is computed once for all restarts (all rows: key-free) and when
    the restarts' subsets are agglomerated one after another."""
    x = blobs(seed=6, n=n, d=2, k=3)
    key = jax.random.key(4)
    kwargs = dict(covariance_type="diag", tol=1e-4)
    result = gmm.fit(key, x, 3, init="hc_vvv", n_init=2, n_refine=0, **kwargs)
    for i, k in enumerate(jax.random.split(key, 2)):
        start = gmm.init(k, x, 3, method="hc_vvv", covariance_type="diag")
        alone = gmm.fit_from(start, x, tol=1e-4)
        np.testing.assert_allclose(
            result.restart_log_likelihoods[i], alone.log_likelihood, rtol=1e-10
        )


def test_portfolio_is_static_and_mixes_methods():
    assert portfolio(1, 100) == ("standardized_kmeans",)
    methods = portfolio(20, 272)
    assert methods.count("hc") == methods.count("hc_vvv") == 1  # deterministic here: once
    assert {"kmeans", "random_from_data", "standardized_kmeans"} <= set(methods)
    # on random subsets the trees would differ, but once each is worth more
    # (experiments/portfolio_subsets.py)
    assert portfolio(20, HC_MAX_SAMPLES + 1) == methods
    # past the unrolled determinants, no VVV tree (LAPACK: seconds per tree)
    wide = portfolio(20, HC_MAX_SAMPLES + 1, UNROLL_MAX_FEATURES + 1)
    assert "hc_vvv" not in wide and wide.count("hc") == 1
    assert portfolio(20, 272, UNROLL_MAX_FEATURES) == methods


def test_fit_of_wide_data_leaves_the_vvv_tree_out_of_its_portfolio():
    x = blobs(seed=8, n=60, d=UNROLL_MAX_FEATURES + 1, k=2)
    result = gmm.fit(jax.random.key(0), x, 2, n_init=3, covariance_type="diag", max_iter=5)
    codes = np.asarray(result.restart_initializers)
    assert [gmm.INIT_METHODS[c] for c in codes] == ["standardized_kmeans", "hc", "kmeans"]


def test_fit_reports_the_initializer_of_every_restart():
    x = blobs(seed=5, n=120, d=2, k=3)
    result = gmm.fit(jax.random.key(0), x, 3, n_init=5)
    codes = np.asarray(result.restart_initializers)
    assert [gmm.INIT_METHODS[c] for c in codes] == list(portfolio(5, 120))
    assert result.initializer == gmm.INIT_METHODS[codes[int(result.best_restart)]]
    single = gmm.fit(jax.random.key(0), x, 3, n_init=3, init="kmeans")
    assert single.initializer == "kmeans" and np.all(np.asarray(single.restart_initializers) == 0)


def test_degenerate_flags_a_spike_on_coincident_points():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 2)) * [1.0, 10.0]
    x[:6, 1] = 3.0  # six points share one value of the second feature
    variances = x.var(0)
    spike = gmm.make_params(
        np.array([0.97, 0.03]),
        np.array([[0.0, 0.0], [x[:6, 0].mean(), 3.0]]),
        np.stack([np.diag(variances), np.diag([x[:6, 0].var() + 1e-6, 1e-6])]),
    )
    assert bool(degenerate(spike, variances, 1e-6))
    fine = gmm.make_params(np.array([0.5, 0.5]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    assert not bool(degenerate(fine, variances, 1e-6))
    # a spike is flagged only while active
    off = gmm.make_params(np.array([1.0, 0.0]), spike.means, spike.covariances)
    assert not bool(degenerate(off, variances, 1e-6))


def test_degenerate_tells_a_nearly_singular_covariance_of_many_points_from_a_spike():
    # a covariance whose smallest standardised eigenvalue (less reg_covar) is 5e-8:
    # a spike when the component holds at most D points, the data's shape when it
    # holds many; a tie (0) is a spike whatever the count
    variances = np.ones(3)
    reg = 1e-6
    thin = np.diag([1.0, 1.0, 5e-8]) + reg * np.eye(3)
    tied = np.diag([1.0, 1.0, 0.0]) + reg * np.eye(3)
    wide = np.eye(3)
    weights = np.array([0.5, 0.5])

    def flagged(cov, count):
        params = gmm.make_params(weights, np.zeros((2, 3)), np.stack([wide, cov]))
        return bool(degenerate(params, variances, reg, count))

    assert not flagged(thin, 4000.0)  # 2000 points
    assert flagged(thin, 6.0)  # 3 points in 3 dimensions
    assert flagged(thin, None)  # no count: the threshold alone, as before
    assert flagged(tied, 4000.0)
    assert not flagged(wide, 6.0)
    assert gmm.TIE_THRESHOLD < 5e-8 < gmm.DEGENERATE_THRESHOLD


def test_a_fit_of_nearly_singular_clusters_is_not_degenerate():
    """A cluster of 1000 points whose spread along one direction is 3e-3 of the
    others' (standardised eigenvalue ~1e-7): its fit is the data's shape, not a
    spike; the threshold alone (no count) flagged it, and restarts that found the
    clusters lost to worse ones (a 50-feature mixture: −116.0 against −111.6 per
    sample with ten restarts)."""
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    thin = rotation @ np.diag([1.0, 1.0, 1.0, 3e-3]) @ rotation.T
    centres = 20.0 * np.eye(4)[:3]
    shapes = [thin, np.eye(4), np.eye(4)]
    x = np.concatenate([rng.normal(size=(1000, 4)) @ shapes[j] + centres[j] for j in range(3)])
    result = gmm.fit(jax.random.key(0), x.astype(np.float32), 3, init="kmeans")
    assert not bool(result.degenerate)
    np.testing.assert_allclose(np.sort(np.asarray(result.params.weights)), 1 / 3, atol=1e-3)
    variances = x.var(0)
    # the threshold alone flags the thin cluster
    assert bool(degenerate(result.params, variances, 1e-6))


def test_fit_prefers_a_non_degenerate_restart_on_old_faithful():
    """Old Faithful's integer waiting times let random starts find likelihood spikes."""
    x = load_faithful()
    # key 3: one of the 8 random starts ends on a spike (keys 0-2 give none)
    result = gmm.fit(
        jax.random.key(3), x, 4, init="random_from_data", n_init=8, tol=1e-6, max_iter=1000
    )
    bad = np.asarray(result.restart_degenerate)
    lls = np.asarray(result.restart_log_likelihoods)
    assert bad.any() and not bad.all()
    assert not bool(result.degenerate)
    assert float(result.log_likelihood) == lls[~bad].max() < lls[bad].max()


def test_a_degenerate_or_nan_restart_ahead_of_the_best_is_not_chosen():
    """Ties within rounding are snapped to one score; a restart ranked −∞ once took
    the best score that way (its tolerance was ∞) and, lower in index, was chosen:
    a default fit of 3000 × 50 points (K = 10, n_init = 10, key 4) returned a
    degenerate restart at −119.0 per sample over three at −109.3."""
    from jaxem._src.engine import selection_scores

    scores = np.asarray(
        selection_scores(np.array([-3.0, -2.0, -1.0, -1.0]), np.array([False, True, False, False]))
    )
    assert np.isneginf(scores[1]) and np.argmax(scores) == 2
    scores = np.asarray(selection_scores(np.array([np.nan, -1.0]), np.array([False, False])))
    assert np.isneginf(scores[0]) and np.argmax(scores) == 1


# R mclust's fits, recomputed by experiments/mclust_reference.py from mclust's
# definitions (its hcVVV start, then EM until the relative change is ≤ 1e-5):
# Old Faithful K = 1..6, iris and wine K = 1..4, for mclust ≥ 5.4 (hc on its
# "SVD" transform) and earlier versions ("VARS", the raw variables). The
# recomputation reproduces the four values mclust printed (checked below).
MCLUST = json.loads((EXPERIMENTS / "results" / "mclust_reference.json").read_text())


def mclust_value(name, covariance_type, k, use):
    """mclust's total log-likelihood: ``use`` "SVD" (mclust ≥ 5.4) or "VARS" (earlier)."""
    return MCLUST["loglik"][name][use][covariance_type][str(k)]


def test_mclust_reference_reproduces_mclusts_printed_values():
    x = load_faithful()
    for use in ("SVD", "VARS"):
        got = mclust_reference.mclust(x, range(1, 7), use)
        for model, ctype in mclust_reference.MODELS.items():
            stored = MCLUST["loglik"]["faithful"][use][ctype]
            np.testing.assert_allclose(
                [got[model][k] for k in range(1, 7)],
                [stored[str(k)] for k in range(1, 7)],
                atol=1e-4,
            )
        for row in MCLUST["validation"]:
            if row["use"] == use:
                digits = len(str(row["loglik"]).split(".")[1])
                assert round(got[row["model"]][row["k"]], digits) == row["loglik"]


@functools.cache
def default_fit(name, covariance_type, k):
    """Total log-likelihood and degenerate flag of the default call with n_init=20."""
    x = DATASETS[name]()
    result = gmm.fit(jax.random.key(0), x, k, covariance_type=covariance_type, n_init=20)
    jax.clear_caches()  # 56 compiled programs at once crash LLVM (segfault) on this machine
    return float(result.log_likelihood) * len(x), bool(result.degenerate)


FAST_CELLS = {("faithful", "full", 4), ("faithful", "tied", 3)}
# Below mclust with key 0: Old Faithful VII K=5 by 0.42 (−1511.269), below the fit of
# mclust < 5.4 (−1510.852) and above that of mclust ≥ 5.4 (−1511.285). It is reached
# by 2 of keys 0..7; with key 0 the default's early selection loses it (see MISSED).
BELOW_MCLUST = {("faithful", "spherical", 5, "VARS")}


def _marks(cell):
    marks = [] if cell[:3] in FAST_CELLS else [pytest.mark.slow]
    if cell in BELOW_MCLUST:
        marks.append(pytest.mark.xfail(strict=True, reason="below mclust's fit"))
    return marks


MCLUST_CELLS = [
    pytest.param(name, ctype, int(k), use, marks=_marks((name, ctype, int(k), use)))
    for name, uses in MCLUST["loglik"].items()
    for use in ("SVD", "VARS")
    for ctype, ks in uses[use].items()
    for k in ks
]


@pytest.mark.parametrize(("name", "covariance_type", "k", "use"), MCLUST_CELLS)
def test_default_fit_reaches_mclusts_log_likelihood(name, covariance_type, k, use):
    """Default arguments but n_init=20 reach at least mclust's fit, of mclust ≥ 5.4
    (``use="SVD"``) and of earlier versions (``"VARS"``), to the 1e-3 of mclust's
    printed precision (a K = 1 fit is the closed-form optimum, which reg_covar
    lowers by ~1e-5). Four tests in the default suite, all 112 with -m slow."""
    ll, degenerate = default_fit(name, covariance_type, k)
    assert not degenerate
    assert ll >= mclust_value(name, covariance_type, k, use) - 1e-3


# The best known optimum of every (data set, covariance type, K): the best
# non-degenerate total log-likelihood over ~320 restarts of every initialiser at
# tol 1e-8 (python experiments/initialisation.py). It bounds mclust's value for
# the same model from above.
REFERENCE = json.loads((EXPERIMENTS / "results" / "initialisation_reference.json").read_text())
# Cells where the default call with key 0 stops below the best known optimum
# (initialisation.md, "gap, default call"). Ten are rare optima, found by at most
# a few of the 50 restarts of any one initialiser ("The cells auto-20 misses").
# Two are not rare but lost by the default's early selection: auto-20 run to
# tol 1e-8 reaches them, while the default call runs every restart to tol 1e-3
# and refines only the best quarter, and the restart that leads there is not
# among them (Old Faithful VII K=5, gap 0.43; VVV K=3, gap 4.8, which 7 of keys
# 0..7 reach). Old Faithful diag K=6, listed here at first, is reached with key 0
# (checked 2026-12-07: it had turned into an XPASS(strict), at be91960 already).
MISSED = {
    ("faithful", "spherical", 5),
    ("faithful", "tied", 6),
    ("faithful", "full", 3),
    ("faithful", "full", 5),
    ("faithful", "full", 6),
    ("iris", "full", 4),
    ("wine", "tied", 2),
    ("wine", "tied", 3),
    ("wine", "tied", 4),
    ("wine", "full", 2),
    ("wine", "full", 4),
}
CELLS = [
    pytest.param(
        name,
        ctype,
        int(k),
        marks=[pytest.mark.xfail(strict=True, reason="missed with key 0")]
        if (name, ctype, int(k)) in MISSED
        else [],
    )
    for name, types in REFERENCE.items()
    for ctype, ks in types.items()
    for k in ks
]


@pytest.mark.slow  # 56 compiled fits, ~6 minutes
@pytest.mark.parametrize(("name", "covariance_type", "k"), CELLS)
def test_default_fit_reaches_the_best_known_optimum(name, covariance_type, k):
    """The default call with n_init=20 is within 1e-3 (total) of the best known
    optimum of Old Faithful (K = 1..6), iris and wine (K = 1..4)."""
    ll, degenerate = default_fit(name, covariance_type, k)
    assert not degenerate
    assert REFERENCE[name][covariance_type][str(k)] - ll < 1e-3


def test_a_constant_feature_is_the_datas_and_spikes_are_still_flagged():
    """Every component has only ``reg_covar`` along a feature constant in the
    data: that feature is left out of the check (it flagged every restart, so a
    spike could win), and the spike of Old Faithful's key 3 is still found."""
    x = load_faithful()
    with_column = np.concatenate([x, np.full((len(x), 1), 2.5)], axis=1)
    result = gmm.fit(
        jax.random.key(3), with_column, 4, init="random_from_data", n_init=8, tol=1e-6,
        max_iter=1000,
    )  # fmt: skip
    bad = np.asarray(result.restart_degenerate)
    lls = np.asarray(result.restart_log_likelihoods)
    assert bad.any() and not bad.all()
    assert not bool(result.degenerate)
    assert float(result.log_likelihood) == lls[~bad].max() < lls[bad].max()
    # the check itself: a constant feature alone is no spike, a tie elsewhere is
    variances = np.array([1.0, 1.0, 1.0])  # the constant third feature's placeholder
    constant = np.array([False, False, True])
    reg = 1e-6
    for covariance_type in ("full", "tied", "diag"):
        wide = np.diag([1.0, 1.0, reg])
        tie = np.diag([1.0, reg, reg])
        if covariance_type == "diag":
            wide, tie = np.diag(wide), np.diag(tie)
        covs = [wide, tie] if covariance_type != "tied" else [wide]
        for cov, spike in zip(covs, [False, True], strict=False):
            stacked = cov if covariance_type == "tied" else np.stack([cov, cov])
            weights, means = np.array([0.5, 0.5]), np.zeros((2, 3))
            params = gmm.make_params(weights, means, stacked, covariance_type)
            assert bool(degenerate(params, variances, reg, 1000.0, constant)) == spike
            assert bool(degenerate(params, variances, reg, 1000.0))  # without the mask
