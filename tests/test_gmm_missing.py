"""EM with missing data (jaxem.gmm.missing) against NumPy references written here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, random_params
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import jaxem
from jaxem import gmm
from jaxem._src import chunking as _chunking
from jaxem.gmm import missing
from jaxem.gmm.unconstrained import from_unconstrained, to_unconstrained


def _with_missing(x, seed, rate=0.3, n_all_missing=0):
    """Copy of ``x`` with a random ``rate`` of entries set to NaN (and some whole rows)."""
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)
    x[rng.uniform(size=x.shape) < rate] = np.nan
    x[rng.choice(len(x), size=n_all_missing, replace=False)] = np.nan
    return x


def _full(cov, covariance_type, k, d):
    """(K, D, D) covariance matrices of any covariance type."""
    cov = np.asarray(cov)
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)


def _conditional(xi, mu, sigma):
    """Conditional mean-completed row and conditional covariance (zero off the missing block)."""
    o = ~np.isnan(xi)
    m = ~o
    s_oo = sigma[np.ix_(o, o)]
    x_hat = xi.copy()
    x_hat[m] = mu[m] + sigma[np.ix_(m, o)] @ np.linalg.solve(s_oo, xi[o] - mu[o])
    cond = np.zeros_like(sigma)
    cond[np.ix_(m, m)] = sigma[np.ix_(m, m)] - sigma[np.ix_(m, o)] @ np.linalg.solve(
        s_oo, sigma[np.ix_(o, m)]
    )
    return x_hat, cond, multivariate_normal(mu[o], s_oo).logpdf(xi[o])


def _reference_em_step(x, weights, means, cov, covariance_type, reg_covar):
    """One EM step with missing data, row by row (rows missing everything are dropped)."""
    k, d = means.shape
    sigmas = _full(cov, covariance_type, k, d)
    x = x[~np.all(np.isnan(x), axis=1)]
    n = len(x)
    log_r = np.empty((n, k))
    x_hat = np.empty((n, k, d))
    cond = np.empty((n, k, d, d))
    for i in range(n):
        for j in range(k):
            x_hat[i, j], cond[i, j], log_pdf = _conditional(x[i], means[j], sigmas[j])
            log_r[i, j] = np.log(weights[j]) + log_pdf
    log_norm = logsumexp(log_r, axis=1)
    resp = np.exp(log_r - log_norm[:, None])
    nk = resp.sum(0)
    new_means = np.einsum("nk,nkd->kd", resp, x_hat) / nk[:, None]
    dx = x_hat - new_means[None]
    scatter = np.einsum("nk,nkd,nke->kde", resp, dx, dx) + np.einsum("nk,nkde->kde", resp, cond)
    per_component = scatter / nk[:, None, None]
    if covariance_type == "full":
        new_cov = per_component + reg_covar * np.eye(d)
    elif covariance_type == "tied":
        new_cov = scatter.sum(0) / n + reg_covar * np.eye(d)
    elif covariance_type == "diag":
        new_cov = np.diagonal(per_component, axis1=1, axis2=2) + reg_covar
    else:
        new_cov = np.trace(per_component, axis1=1, axis2=2) / d + reg_covar
    return resp, log_norm.mean(), (nk / n, new_means, new_cov)


def _classical_mvn_em(x, mu, sigma, n_iter):
    """Classical EM for one multivariate normal with missing data (Little & Rubin, §11.2):
    accumulate T1 = Σ x̂, T2 = Σ (x̂ x̂ᵀ + C), then μ = T1 / n, Σ = T2 / n − μ μᵀ."""
    x = x[~np.all(np.isnan(x), axis=1)]
    n, d = x.shape
    history = []
    for _ in range(n_iter):
        t1, t2, ll = np.zeros(d), np.zeros((d, d)), 0.0
        for xi in x:
            x_hat, cond, log_pdf = _conditional(xi, mu, sigma)
            ll += log_pdf
            t1 += x_hat
            t2 += np.outer(x_hat, x_hat) + cond
        history.append(ll / n)
        mu = t1 / n
        sigma = t2 / n - np.outer(mu, mu)
    return mu, sigma, np.array(history)


N, D, K = 60, 3, 2
MAX_ITER = 500
# Jitted once at module level and called with the same shapes (N, D, K) and static
# arguments, so that tests share their compilations.
RUN = jax.jit(missing.fit_from, static_argnames="max_iter")
E_STEP = jax.jit(missing.e_step)


def _summary(params, x, reg_covar=1e-6):
    """Everything the module computes on ``x``, in one program."""
    resp, ll = missing.e_step(params, x)
    proba = missing.predict_proba(params, x)
    return {
        "resp": resp,
        "ll": ll,
        "m_step": missing.m_step(resp, x, params, reg_covar=reg_covar),
        "stats": missing.suff_stats(resp, x, params, shift=params.means),
        "proba": proba,
        "stats_proba": missing.suff_stats(proba, x, params, shift=params.means),
        "log_prob": missing.log_prob(params, x),
        "impute": gmm.impute(params, x),
    }


SUMMARY = jax.jit(_summary)


def _start(covariance_type, x, k=K, seed=3):
    filled = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    weights, means, cov = random_params(seed, k, x.shape[1], covariance_type, filled)
    return gmm.make_params(weights, means, cov, covariance_type)


def _data(seed, rate=0.3, n_all_missing=0, spread=4.0, n=N):
    return _with_missing(
        blobs(seed=seed, n=n, d=D, k=K, spread=spread), seed + 1, rate, n_all_missing
    )


def _assert_trees_close(a, b, **tolerances):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, **tolerances)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_step_matches_row_by_row_reference(covariance_type):
    x = _data(seed=1, n_all_missing=2)
    x[0] = [np.nan, np.nan, 0.5]  # a row with one observed entry
    params = _start(covariance_type, x)
    out = SUMMARY(params, x, 1e-3)
    ref_resp, ref_ll, (w, m, c) = _reference_em_step(
        x, *(np.asarray(a) for a in (params.weights, params.means, params.covariances)),
        covariance_type, 1e-3,
    )  # fmt: skip
    keep = ~np.all(np.isnan(x), axis=1)
    np.testing.assert_allclose(out["resp"][keep], ref_resp, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(out["resp"][~keep], 0)
    np.testing.assert_allclose(out["ll"], ref_ll, rtol=1e-12)
    np.testing.assert_allclose(out["m_step"].weights, w, rtol=1e-10)
    np.testing.assert_allclose(out["m_step"].means, m, rtol=1e-10)
    np.testing.assert_allclose(out["m_step"].covariances, c, rtol=1e-10)


def test_single_component_equals_classical_mvn_em():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(D, D))
    x = rng.normal(size=(N, D)) @ a + np.array([1.0, -2.0, 0.5])
    x = _with_missing(x, seed=1, rate=0.3, n_all_missing=3)
    mu0, sigma0 = np.zeros(D), np.eye(D)
    n_iter = 30
    mu, sigma, history = _classical_mvn_em(x, mu0, sigma0, n_iter)
    start = gmm.make_params(np.ones(1), mu0[None], sigma0[None])
    result = RUN(start, x, tol=0.0, max_iter=n_iter, reg_covar=0.0)
    assert int(result.n_iter) == n_iter
    np.testing.assert_allclose(result.history, history, rtol=1e-11)
    np.testing.assert_allclose(result.params.means[0], mu, rtol=1e-10)
    np.testing.assert_allclose(result.params.covariances[0], sigma, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gradient_of_observed_log_likelihood_vanishes_at_the_fit(covariance_type):
    x = _data(seed=5, rate=0.25, spread=5.0)
    start = _start(covariance_type, x)
    result = RUN(start, x, tol=0.0, max_iter=MAX_ITER, reg_covar=0.0)  # to machine precision
    assert np.all(np.diff(result.history) > -1e-12)  # EM never decreases the likelihood

    def mean_log_likelihood(u):
        return jnp.mean(missing.log_prob(from_unconstrained(u, covariance_type), x))

    grad = jax.jit(jax.grad(mean_log_likelihood))
    at_fit = grad(to_unconstrained(result.params))
    at_start = grad(to_unconstrained(start))
    for name in ("logits", "means", "cholesky"):
        assert np.max(np.abs(getattr(at_fit, name))) < 1e-10, name
    assert max(np.max(np.abs(g)) for g in jax.tree.leaves(at_start)) > 1e-2


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_without_nan_equals_the_plain_path(covariance_type):
    x = blobs(seed=7, n=N, d=D, k=K)
    params = _start(covariance_type, x)
    out = SUMMARY(params, x)

    @jax.jit
    def plain(params, x):
        resp, ll = gmm.e_step(params, x)
        m_step = gmm.m_step(resp, x, covariance_type=covariance_type)
        return resp, ll, m_step, gmm.log_prob(params, x)

    resp, ll, m_step, log_prob = plain(params, x)
    np.testing.assert_allclose(out["resp"], resp, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(out["ll"], ll, rtol=1e-12)
    _assert_trees_close(out["m_step"], m_step, rtol=1e-10)
    np.testing.assert_allclose(out["log_prob"], log_prob, rtol=1e-12)
    np.testing.assert_array_equal(out["impute"], x)


def test_fit_equals_a_loop_of_steps():
    """fit_from's fused pass (statistics about the current means) equals e_step, m_step."""
    x = _data(seed=9)
    params = _start("full", x)
    result = RUN(params, x, tol=1e-8, max_iter=MAX_ITER, reg_covar=1e-4)
    assert bool(result.converged)
    history = []
    for _ in range(int(result.n_iter)):
        out = SUMMARY(params, x, 1e-4)
        history.append(out["ll"])
        params = out["m_step"]
    np.testing.assert_allclose(result.history[: len(history)], history, rtol=1e-12)
    _assert_trees_close(result.params, params, rtol=1e-9, atol=1e-12)


def test_all_missing_rows_change_nothing():
    """Rows that miss everything (the row-by-row reference drops them; so does the one-step
    test for every covariance type) leave the fit unchanged."""
    x = _data(seed=11, n=N - 4)
    x_more = np.insert(x, [0, 10, 10, len(x)], np.nan, axis=0)  # N rows
    added = np.zeros(N, bool)
    added[[0, 11, 12, N - 1]] = True
    assert np.all(np.isnan(x_more[added])) and np.array_equal(x_more[~added], x, equal_nan=True)
    params = _start("full", x)
    out = SUMMARY(params, x_more)
    np.testing.assert_array_equal(out["resp"][added], 0)
    np.testing.assert_allclose(out["log_prob"][added], 0, atol=1e-15)
    # Their posterior is the prior, but even as responsibilities they add no statistics.
    np.testing.assert_allclose(out["proba"][added], np.stack([params.weights] * 4), rtol=1e-14)
    _assert_trees_close(out["stats_proba"], out["stats"], rtol=1e-13)
    mixture_mean = np.asarray(params.weights @ params.means)
    np.testing.assert_allclose(out["impute"][added], np.stack([mixture_mean] * 4), rtol=1e-14)
    # The whole fit equals EM on the rows with information.
    result = RUN(params, x_more, tol=1e-6, max_iter=MAX_ITER, reg_covar=1e-6)
    w, m, c = (np.asarray(a) for a in (params.weights, params.means, params.covariances))
    history = []
    for _ in range(int(result.n_iter)):
        _, ll, (w, m, c) = _reference_em_step(x, w, m, c, "full", 1e-6)
        history.append(ll)
    np.testing.assert_allclose(result.history[: len(history)], history, rtol=1e-11)
    np.testing.assert_allclose(result.params.means, m, rtol=1e-9)
    np.testing.assert_allclose(result.params.covariances, c, rtol=1e-9)


def test_impute_beats_column_means_on_a_separated_mixture():
    rng = np.random.default_rng(13)
    centers = np.array([[-6.0, -6.0, -6.0], [6.0, 6.0, 6.0]])
    chol = np.linalg.cholesky(np.full((D, D), 0.8) + 0.2 * np.eye(D))  # correlated features
    truth = centers[rng.integers(K, size=N)] + rng.normal(size=(N, D)) @ chol.T
    x = _with_missing(truth, seed=14, rate=0.25)
    start = gmm.make_params(np.full(K, 1 / K), centers + 1.0, np.stack([np.eye(D)] * K))
    result = RUN(start, x, tol=1e-8, max_iter=MAX_ITER, reg_covar=1e-6)
    out = SUMMARY(result.params, x)
    filled = np.asarray(out["impute"])
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[~np.isnan(x)], x[~np.isnan(x)])
    holes = np.isnan(x) & ~np.all(np.isnan(x), axis=1, keepdims=True)  # rows with information

    def rmse(guess):
        return np.sqrt(np.mean((guess[holes] - truth[holes]) ** 2))

    column_means = np.broadcast_to(np.nanmean(x, axis=0), x.shape)
    component_means = np.asarray(out["proba"] @ result.params.means)  # no regression on x_o
    assert rmse(filled) < 0.2 * rmse(column_means), (rmse(filled), rmse(column_means))
    assert rmse(filled) < 0.8 * rmse(component_means), (rmse(filled), rmse(component_means))


def test_vmap():
    """vmap over datasets with different masks and over the traced reg_covar."""
    x = _data(seed=15, n_all_missing=2)
    params = _start("full", x)
    xs = np.stack([x, _with_missing(x, seed=16), _with_missing(x, seed=17, rate=0.5)])
    regs = jnp.array([1e-4, 1e-2, 1e-1])
    batched = jax.vmap(lambda x, r: RUN(params, x, tol=1e-6, max_iter=MAX_ITER, reg_covar=r))(
        xs, regs
    )
    for i in range(len(xs)):
        single = RUN(params, xs[i], tol=1e-6, max_iter=MAX_ITER, reg_covar=regs[i])
        assert int(batched.n_iter[i]) == int(single.n_iter)
        np.testing.assert_allclose(batched.history[i], single.history, rtol=1e-12)
        np.testing.assert_allclose(batched.params.covariances[i], single.params.covariances, 1e-10)


def test_chunked_equals_unchunked(monkeypatch):
    x = _data(seed=18, n=300, n_all_missing=5)
    params = _start("full", x)

    def passes(params, x):
        resp, ll = missing.e_step(params, x)
        return resp, ll, missing.suff_stats(resp, x, params)

    whole = jax.jit(passes)(params, x)
    monkeypatch.setattr(_chunking, "TARGET_CHUNK_ELEMENTS", 1)  # 256 rows: 2 chunks
    chunked = jax.jit(lambda p, x: passes(p, x))(params, x)
    _assert_trees_close(chunked, whole, rtol=1e-11, atol=1e-300)


@pytest.mark.parametrize("source", ["full", "tied"])
def test_statistics_of_another_covariance_type(source):
    """suff_stats(covariance_type=...) reduces the completed second moments of ``params``."""
    x = _data(seed=20)
    params = _start(source, x)

    @jax.jit
    def all_types(params, x):
        resp, _ = missing.e_step(params, x)
        return {
            t: missing.suff_stats(resp, x, params, covariance_type=t, shift=params.means).sum_xx
            for t in COVARIANCE_TYPES
        }

    sxx = all_types(params, x)
    diagonal = np.diagonal(sxx["full"], axis1=1, axis2=2)
    np.testing.assert_allclose(sxx["diag"], diagonal, rtol=1e-12)
    np.testing.assert_allclose(sxx["spherical"], diagonal.sum(1), rtol=1e-12)
    np.testing.assert_allclose(sxx["tied"], sxx["full"].sum(0), rtol=1e-12)


def test_inactive_component_stays_inactive():
    x = _data(seed=22, n_all_missing=2)
    _, means, cov = random_params(3, K, D, "full", np.nan_to_num(x))
    params = gmm.make_params(np.array([1.0, 0.0]), means, cov)
    out = SUMMARY(params, x)
    np.testing.assert_array_equal(out["resp"][:, 1], 0)
    np.testing.assert_array_equal(out["proba"][:, 1], 0)
    assert float(out["m_step"].weights[1]) == 0
    for leaf in jax.tree.leaves(out):
        assert np.all(np.isfinite(leaf))


def test_sample_weight_equals_repeated_rows():
    x = _data(seed=23, n=20, n_all_missing=1)
    params = _start("diag", x)
    counts = np.arange(20) % 3  # 0, 1 or 2 copies of each row
    step = jax.jit(lambda p, x, w: missing.m_step(missing.e_step(p, x)[0], x, p, sample_weight=w))
    weighted = step(params, x, counts.astype(float))
    repeated = step(params, np.repeat(x, counts, axis=0), np.ones(counts.sum()))
    _assert_trees_close(weighted, repeated, rtol=1e-12)


def test_float32_close_to_float64():
    x = _data(seed=21) + 100.0
    params = _start("full", x)
    ref = RUN(params, x, tol=1e-6, max_iter=MAX_ITER, reg_covar=1e-6)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    result = RUN(p32, x.astype(np.float32), tol=1e-6, max_iter=MAX_ITER, reg_covar=1e-6)
    assert result.params.means.dtype == jnp.float32
    assert bool(result.converged)
    np.testing.assert_allclose(result.params.means, ref.params.means, rtol=1e-4)
    np.testing.assert_allclose(result.params.covariances, ref.params.covariances, rtol=1e-2)


def test_validation():
    params = _start("diag", blobs(seed=0, n=20, d=D, k=K))
    x = np.zeros((4, D))
    with pytest.raises(ValueError, match="infinite"):
        missing.e_step(params, np.where(np.eye(4, D) > 0, np.inf, x))
    with pytest.raises(ValueError, match="features"):
        missing.log_prob(params, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least one observed"):
        missing.fit_from(params, np.full((4, D), np.nan))
    with pytest.raises(ValueError, match="resp"):
        missing.m_step(np.ones((3, K)), x, params)
    with pytest.raises(ValueError, match="covariance_type"):
        missing.m_step(np.ones((4, K)), x, params, covariance_type="banana")
    with pytest.raises(TypeError, match="GMMParams"):
        missing.impute(params.means, x)


def test_label_starts_of_many_rows_impute_before_their_statistics():
    """From 8192 rows, k-means starts of full covariances take the segment-sum
    statistics (``labels_init_stats``); the missing-data family imputes first,
    as for its other statistics. Without it every such fit was NaN."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8192, 2)) + rng.integers(2, size=(8192, 1)) * 5.0
    x[rng.uniform(size=x.shape) < 0.1] = np.nan
    result = missing.fit(jax.random.key(0), x, 2, init="kmeans", max_iter=3)
    assert np.all(np.isfinite(np.asarray(result.params.covariances)))
    means = np.sort(np.asarray(result.params.means)[:, 0])
    np.testing.assert_allclose(means, [0.0, 5.0], atol=0.1)


def test_a_feature_seen_only_in_rows_of_weight_zero_is_an_error():
    """Unweighted, a feature never observed raises; weighted, one observed only
    in rows of weight 0 gave a NaN fit (found by a sweep)."""
    x = np.asarray(blobs(seed=2, n=40, d=2, k=2), float)
    x[5:, 1] = np.nan  # feature 1 observed in rows 0-4 only
    weights = np.ones(40)
    weights[:5] = 0.0
    with pytest.raises(ValueError, match="positive weight"):
        missing.fit(jax.random.key(0), x, 2, sample_weight=weights)
    x[:, 1] = np.nan
    with pytest.raises(ValueError, match="every feature must be observed"):
        missing.fit(jax.random.key(0), x, 2)


def test_the_engine_family_leaves_rows_without_information_out():
    """``jaxem.fit`` with :class:`GaussianMissingFamily` (the route for chunks)
    gave rows that miss everything their weight: the pass left them out of the
    statistics, but the mean log-likelihood was over all rows (−2.0079 against
    −2.6691 with 40 of 200 rows empty), with the stopping rule scaled and the
    iterations to ``tol`` changed. Now the same as :func:`gmm.missing.fit_from`,
    in memory and on chunks."""
    x = _data(seed=11, n=N - 4)
    x_more = np.insert(x, [0, 10, 10, len(x)], np.nan, axis=0)
    params = _start("full", x)
    family = missing.GaussianMissingFamily(covariance_type="full", reg_covar=1e-6)
    expected = missing.fit_from(params, x, tol=0.0, max_iter=4, reg_covar=1e-6)
    half = len(x_more) // 2
    for data in (x_more, jaxem.chunks([x_more[:half], x_more[half:]])):
        got = jaxem.fit(family, None, data, start=params, tol=0.0, max_iter=4)
        np.testing.assert_allclose(got.history[:4], expected.history[:4], rtol=1e-12)
        np.testing.assert_allclose(got.params.means, expected.params.means, rtol=1e-12)
    # with a prior the relative rule watches the log-likelihood alone: the same mean
    prior = missing.GaussianMissingFamily(
        covariance_type="full", reg_covar=1e-6, default_prior=True
    )
    with_empty, without = (
        jaxem.fit(prior, None, data, start=params, tol=0.0, max_iter=3, criterion="relative")
        for data in (x_more, x)
    )
    np.testing.assert_allclose(with_empty.history[:3], without.history[:3], rtol=1e-12)
