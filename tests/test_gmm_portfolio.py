"""Initialisers beyond scikit-learn's, the default portfolio and degenerate restarts (#7)."""

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
from jaxem.gmm.fit import degenerate, portfolio
from jaxem.gmm.init import HC_MAX_SAMPLES, standardize
from jaxem.hierarchical import cut, ward_tree

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
from datasets import DATASETS, load_faithful

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


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


def test_hc_init_uses_a_subset_of_large_data_and_respects_n_active():
    x = np.asarray(jax.random.normal(jax.random.key(1), (HC_MAX_SAMPLES + 500, 2)))
    p = gmm.init(jax.random.key(2), x, 4, method="hc", n_active=2)
    assert np.count_nonzero(np.asarray(p.weights)) == 2
    q = gmm.init(jax.random.key(3), x, 4, method="hc", n_active=2)
    assert not np.allclose(p.means, q.means)  # another random subset


def test_portfolio_is_static_and_mixes_methods():
    assert portfolio(1, 100) == ("standardized_kmeans",)
    methods = portfolio(20, 272)
    assert methods.count("hc") == 1  # deterministic on small data: once
    assert {"kmeans", "random_from_data", "standardized_kmeans"} <= set(methods)
    assert portfolio(20, HC_MAX_SAMPLES + 1).count("hc") > 1


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


def test_fit_prefers_a_non_degenerate_restart_on_old_faithful():
    """Old Faithful's integer waiting times let random starts find likelihood spikes."""
    x = load_faithful()
    result = gmm.fit(
        jax.random.key(0), x, 4, init="random_from_data", n_init=8, tol=1e-6, max_iter=1000
    )
    bad = np.asarray(result.restart_degenerate)
    lls = np.asarray(result.restart_log_likelihoods)
    assert bad.any() and not bad.all()
    assert not bool(result.degenerate)
    assert float(result.log_likelihood) == lls[~bad].max() < lls[bad].max()


# The values of R mclust on Old Faithful available offline: EEE K=3 −1126.361
# (mclust's documented summary(Mclust(faithful))), VVV K=4 −1111.28 (quoted in
# issue #7) and EEE K=4 −1120.863 (BIC −2320.207 in mclust 5.2.3's
# summary(mclustBIC(faithful, G=1:5)), course notes cited in
# experiments/initialisation.py; ll = (BIC + 14 log 272) / 2).
MCLUST = {("tied", 3): -1126.361, ("tied", 4): -1120.863, ("full", 4): -1111.28}


@pytest.mark.parametrize(
    ("covariance_type", "k"),
    [
        ("full", 4),
        ("tied", 3),
        # also one of the 56 cells of test_default_fit_reaches_the_best_known_optimum
        pytest.param("tied", 4, marks=pytest.mark.slow),
    ],
)
def test_default_fit_beats_mclusts_documented_values(covariance_type, k):
    """Default arguments but n_init=20 (tol 1e-3, max_iter 100, init="auto")."""
    x = load_faithful()
    result = gmm.fit(jax.random.key(0), x, k, covariance_type=covariance_type, n_init=20)
    assert float(result.log_likelihood) * len(x) >= MCLUST[covariance_type, k]
    assert not bool(result.degenerate)


# The best known optimum of every (data set, covariance type, K): the best
# non-degenerate total log-likelihood over ~320 restarts of every initialiser at
# tol 1e-8 (python experiments/initialisation.py). It bounds mclust's value for
# the same model from above.
REFERENCE = json.loads((EXPERIMENTS / "results" / "initialisation_reference.json").read_text())
# Cells whose best known optimum is rare: found by at most a few of the 50
# restarts of any one initialiser (initialisation.md, "The cells auto-20
# misses"); 20 restarts of the default portfolio do not find it.
RARE = {
    ("faithful", "diag", 6),
    ("faithful", "tied", 6),
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
        marks=[pytest.mark.xfail(strict=True, reason="rare optimum")]
        if (name, ctype, int(k)) in RARE
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
    x = DATASETS[name]()
    result = gmm.fit(jax.random.key(0), x, k, covariance_type=covariance_type, n_init=20)
    jax.clear_caches()  # 56 compiled programs at once crash LLVM (segfault) on this machine
    assert not bool(result.degenerate)
    assert REFERENCE[name][covariance_type][str(k)] - float(result.log_likelihood) * len(x) < 1e-3
