"""Model selection by BIC/AIC."""

import pathlib
import warnings

import jax
import numpy as np
import pytest
from helpers import blobs

from jaxem import gmm

FAITHFUL = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "data" / "faithful.csv"


def test_scores_equal_criteria_of_the_fits():
    x = blobs(seed=0, n=200, d=2, k=3)
    key = jax.random.key(0)
    r = gmm.select(
        key,
        x,
        n_components=[1, 2, 3, 4],
        covariance_types=["full", "diag"],
        n_init=2,
        init="kmeans",  # any method; one initialiser compiles faster than the portfolio
        criterion="aic",
    )
    assert r.scores.shape == (2, 4)
    for t, ct in enumerate(["full", "diag"]):
        for m, k in enumerate([1, 2, 3, 4]):
            single = gmm.fit(key, x, 4, n_active=k, covariance_type=ct, n_init=2, init="kmeans")
            np.testing.assert_allclose(r.scores[t, m], gmm.aic(single.params, x), rtol=1e-9)
            bic = gmm.bic(single.params, x)
            np.testing.assert_allclose(r.bic[t, m], bic, rtol=1e-9)
            # ICL (mclust's icl, lower is better): BIC − 2 Σ_n log max_k r_nk
            resp, _ = gmm.e_step(single.params, x)
            icl = bic - 2 * np.sum(np.log(np.max(np.asarray(resp), axis=1)))
            np.testing.assert_allclose(r.icl[t, m], icl, rtol=1e-9)
            assert r.icl[t, m] >= r.bic[t, m]
    t, m = np.unravel_index(np.argmin(r.scores), r.scores.shape)
    assert r.best_covariance_type == ["full", "diag"][t]
    assert r.best_n_components == [1, 2, 3, 4][m] == r.params.n_components
    np.testing.assert_allclose(gmm.aic(r.params, x), r.scores.min(), rtol=1e-9)


def test_one_compiled_program_per_covariance_type():
    from jaxem._src.api import _select_program as _select_type

    x = blobs(seed=1, n=100, d=2, k=2)
    before = _select_type._cache_size()
    gmm.select(jax.random.key(0), x, n_components=range(1, 6), covariance_types=["spherical"])
    assert _select_type._cache_size() == before + 1


@pytest.mark.slow  # ~45 s; tests/test_experiments_demo.py checks the same choice with n_init=2
@pytest.mark.skipif(not FAITHFUL.exists(), reason="bundled Old Faithful data missing")
def test_old_faithful_selects_tied_three_as_mclust():
    """R's mclust: EEE (tied), G = 3, BIC -2314.316 in its sign convention."""
    x = np.loadtxt(FAITHFUL, delimiter=",", skiprows=1)
    r = gmm.select(jax.random.key(0), x, n_components=range(1, 10), n_init=10, tol=1e-6)
    assert (r.best_covariance_type, r.best_n_components) == ("tied", 3)
    np.testing.assert_allclose(r.scores.min(), 2314.316, atol=0.05)


def test_select_rejects_bad_arguments():
    x = blobs(n=30, d=2, k=2)
    with pytest.raises(ValueError, match="criterion must be one of"):
        gmm.select(jax.random.key(0), x, criterion="dic")
    with pytest.raises(ValueError, match="n_components must name"):
        gmm.select(jax.random.key(0), x, n_components=[])
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        gmm.select(jax.random.key(0), x, covariance_types=["full", "banded"])


def test_a_model_whose_fit_is_a_likelihood_spike_is_not_chosen():
    """On 5 points every K ≥ 2 fit ends on a spike (a component on ≤ D points,
    held up by reg_covar) whose BIC is the lowest: it was chosen. Only when
    every fit is degenerate is the lowest of them chosen."""
    x = np.random.default_rng(0).normal(size=(5, 2))
    sel = gmm.select(jax.random.key(0), x, n_components=range(1, 5), covariance_types=("full",))
    degenerate = np.asarray(sel.fits[0].degenerate)
    assert degenerate[1:].all() and not degenerate[0]
    assert np.nanargmin(sel.scores[0]) > 0  # a spike scores best
    assert sel.best_n_components == 1 and sel.best_score == sel.scores[0, 0]
    spikes = gmm.select(jax.random.key(0), x, n_components=[2, 3], covariance_types=("full",))
    assert spikes.best_score == np.nanmin(spikes.scores)


def test_weights_summing_to_one_warn_that_the_penalty_vanishes():
    """BIC's N is the total sample weight: weights normalised to sum to 1 make
    its penalty ``p log N`` 0, and the selection took the largest K silently
    (Old Faithful's K = 2 became K = 6 of 1…6). Frequency weights, with the
    same total as the rows, choose as the unweighted fit does."""
    x = blobs(seed=0, n=150, d=2, k=2)
    options = dict(n_components=[1, 2, 3, 4], covariance_types=["full"], init="kmeans")
    with pytest.warns(UserWarning, match=r"sum to 1\b.*log N = "):
        r = gmm.select(jax.random.key(0), x, sample_weight=np.full(150, 1 / 150), **options)
    assert r.best_n_components == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = gmm.select(jax.random.key(0), x, sample_weight=np.ones(150), **options)
    assert r.best_n_components == 2
