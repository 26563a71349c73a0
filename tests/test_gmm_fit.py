"""One-call fitting: restarts, vmap over keys/hyperparameters/datasets, traced K."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import blobs

import jaxem
from jaxem import gmm
from jaxem._src.gmm.fit import (
    DIRECT_MAX_NARROW_FEATURES,
    DIRECT_MAX_ROWS,
    DIRECT_MIN_FEATURES,
    resolve_formulation,
)
from jaxem._src.gmm.layout import LAYOUT_MIN_ROWS
from jaxem._src.sources import row_bucket
from jaxem.gmm import fit_from


def _assert_trees_close(a, b, rtol=1e-9, atol=1e-12):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "init",
    [
        pytest.param("kmeans", marks=SLOW),
        "random_from_data",
        pytest.param("k-means++", marks=SLOW),
        pytest.param("random", marks=SLOW),
    ],
)
def test_restarts_return_the_best_of_a_python_loop(init):
    x = blobs(seed=0, n=200, d=2, k=3)
    key = jax.random.key(1)
    result = gmm.fit(key, x, 3, init=init, n_init=4, covariance_type="diag", tol=1e-4, n_refine=0)
    assert not np.any(result.restart_refined)
    loop = []
    for k in jax.random.split(key, 4):
        start = gmm.init(k, x, 3, method=init, covariance_type="diag")
        loop.append(fit_from(start, jnp.asarray(x), tol=1e-4, reg_covar=1e-6, max_iter=100))
    lls = np.array([float(r.log_likelihood) for r in loop])
    np.testing.assert_allclose(result.restart_log_likelihoods, lls, rtol=1e-10)
    best = int(np.argmax(lls))
    assert int(result.best_restart) == best
    _assert_trees_close(result.params, loop[best].params)
    assert int(result.n_iter) == int(loop[best].n_iter)
    # The EM inside fit is the generic loop with the standard steps.
    reference = jaxem.em(
        gmm.e_step,
        lambda r, x: gmm.m_step(r, x, covariance_type="diag"),
        gmm.init(jax.random.split(key, 4)[best], x, 3, method=init, covariance_type="diag"),
        x,
        tol=1e-4,
    )
    _assert_trees_close(result.params, reference.params, rtol=1e-8, atol=1e-10)


def test_restarts_one_after_the_other_equal_the_vmapped_restarts(monkeypatch):
    """Large fits run their restarts one after the other (engine.in_sequence):
    the same fits as the vmap, screening and refinement, Gaussian and Poisson."""
    from jaxem._src import engine

    x = blobs(seed=5, n=150, d=2, k=3) + 10.0
    poisson_x = np.random.default_rng(0).poisson(np.repeat([[1.0, 6.0], [8.0, 2.0]], 75, 0))
    cases = [
        (gmm.family("full"), x),
        (jaxem.mixtures.Poisson(), poisson_x.astype(np.float64)),
    ]
    for family, data in cases:
        fit = dict(n_init=3, n_refine=1, tol=1e-4, refine_max_iter=50)
        batched = jaxem.fit(family, jax.random.key(2), data, 3, **fit)
        monkeypatch.setattr(engine, "SEQUENTIAL_MIN_WORK", 0)
        assert engine.in_sequence(data, _batch_of(batched, 3))
        sequential = jaxem.fit(family, jax.random.key(2), data, 3, **fit)
        monkeypatch.undo()
        np.testing.assert_array_equal(sequential.restart_status, batched.restart_status)
        np.testing.assert_array_equal(sequential.restart_refined, batched.restart_refined)
        assert int(sequential.n_iter) == int(batched.n_iter)
        np.testing.assert_allclose(sequential.history, batched.history, rtol=1e-12)
        np.testing.assert_allclose(
            sequential.restart_log_likelihoods, batched.restart_log_likelihoods, rtol=1e-12
        )
        _assert_trees_close(sequential.params, batched.params, rtol=1e-10)


def _batch_of(result, n):
    return jax.tree.map(lambda a: jnp.stack([a] * n), result.params)


def test_fit_is_cached_and_does_not_recompile_for_new_numbers():
    x = blobs(seed=1, n=100, d=2, k=2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(key, x, tol, reg_covar):
        return gmm.fit(key, x, 2, tol=tol, reg_covar=reg_covar, n_init=2)

    chex.clear_trace_counter()
    run(jax.random.key(0), x, 1e-3, 1e-6)
    run(jax.random.key(1), x + 1.0, 1e-4, 1e-2)
    # Outside a user's jit, fit's own compiled program is reused for new data.
    gmm.fit(jax.random.key(0), x, 2, n_init=2)
    before = gmm.fit.__wrapped__ if hasattr(gmm.fit, "__wrapped__") else None
    assert before is None
    from jaxem._src.api import _fit_program as _fit

    size = _fit._cache_size()
    gmm.fit(jax.random.key(3), x * 2.0, 2, n_init=2, tol=1e-5)
    assert _fit._cache_size() == size


def test_float64_data_without_x64_keep_the_float32_accuracy_check():
    # NumPy's float64 data compute in float32 when jax_enable_x64 is off (JAX's
    # default). The host-side choice of the formulation once judged them by
    # float64's rounding and compiled the moment formulation alone: on tight
    # clusters far apart (eps32 * rho ~ 1e2) the fit returned variances off by
    # orders of magnitude and a log-likelihood of 5.4 instead of 9.7.
    rng = np.random.default_rng(0)
    centres = 10.0 * np.eye(5)[[4, 0, 1]]
    # more rows than DIRECT_MAX_ROWS and features than DIRECT_MAX_NARROW_FEATURES:
    # the per-pass choice, not the rules of small or narrow data
    x = np.concatenate([c + 1e-3 * rng.normal(size=(200, 5)) for c in centres])
    with jax.enable_x64(False):
        assert resolve_formulation("auto", x, 1e-6) == "auto"
        from_64 = gmm.fit(jax.random.key(0), x, 3)
        from_32 = gmm.fit(jax.random.key(0), x.astype(np.float32), 3)
    assert from_64.params.covariances.dtype == np.float32
    variances = np.sort(np.asarray(from_64.params.covariances)[:, [0, 1], [0, 1]], axis=0)
    np.testing.assert_allclose(
        variances, np.sort(np.asarray(from_32.params.covariances)[:, [0, 1], [0, 1]], axis=0),
        rtol=1e-4,
    )  # fmt: skip
    # 1e-6 of reg_covar plus a sample variance of about 1e-6
    assert np.all((variances > 1.5e-6) & (variances < 2.5e-6)), variances


def test_the_float64_shortcut_decides_alike_for_host_and_device_data():
    # float64 (x64 on): data spanning little compile the moment formulation alone,
    # wide or non-finite data keep the per-pass choice; a JAX array is reduced
    # where it lives, NumPy data on the host
    x = np.random.default_rng(0).normal(size=(DIRECT_MAX_ROWS + 1, 3))
    for data, expected in [(x, "moments"), (1e5 * x, "auto"), (np.where(x > 2, np.inf, x), "auto")]:
        assert resolve_formulation("auto", data, 1e-6) == expected
        assert resolve_formulation("auto", jnp.asarray(data), 1e-6) == expected
    assert resolve_formulation("auto", x, 0.0) == "auto"


def test_full_covariances_of_many_features_take_the_direct_formulation():
    wide = np.random.default_rng(0).normal(size=(DIRECT_MAX_ROWS + 1, DIRECT_MIN_FEATURES))
    assert resolve_formulation("auto", wide, 1e-6, "full") == "direct"
    assert resolve_formulation("auto", wide[:, 1:], 1e-6, "full") != "direct"
    assert resolve_formulation("auto", wide, 1e-6, "diag") != "direct"
    assert resolve_formulation("moments", wide, 1e-6, "full") == "moments"
    auto = gmm.fit(jax.random.key(0), wide, 2, max_iter=3)
    direct = gmm.fit(jax.random.key(0), wide, 2, max_iter=3, formulation="direct")
    assert not bool(auto.fast_path)  # the direct formulation ran
    np.testing.assert_array_equal(auto.params.means, direct.params.means)


def test_narrow_float32_data_below_the_layout_take_the_direct_formulation():
    # at most DIRECT_MAX_NARROW_FEATURES features and fewer (bucketed) rows than
    # a layout needs, float32: full, diagonal and spherical covariances compile
    # the direct route alone; tied ones, wider data, data large enough for a
    # layout and float64 (x64 on) keep their rules
    rng = np.random.default_rng(0)
    narrow = rng.normal(size=(2000, DIRECT_MAX_NARROW_FEATURES)).astype(np.float32)
    for covariance_type in ("full", "diag", "spherical"):
        assert resolve_formulation("auto", narrow, 1e-6, covariance_type) == "direct"
    assert resolve_formulation("auto", narrow, 1e-6, "tied") == "auto"
    assert resolve_formulation("auto", narrow, 1e-6) == "auto"  # type unknown
    wider = rng.normal(size=(2000, DIRECT_MAX_NARROW_FEATURES + 1)).astype(np.float32)
    assert resolve_formulation("auto", wider, 1e-6, "full") == "auto"
    tall = np.zeros((LAYOUT_MIN_ROWS, DIRECT_MAX_NARROW_FEATURES), np.float32)
    assert resolve_formulation("auto", tall, 1e-6, "full") == "auto"
    assert resolve_formulation("auto", tall[:-300], 1e-6, "full") == "direct"
    assert resolve_formulation("auto", narrow.astype(np.float64), 1e-6, "full") == "moments"
    with jax.enable_x64(False):  # float64 data computed in float32
        assert resolve_formulation("auto", narrow.astype(np.float64), 1e-6, "full") == "direct"
    fit = gmm.fit(jax.random.key(0), narrow, 2, max_iter=3, covariance_type="diag")
    assert not bool(fit.fast_path)  # the direct formulation ran
    direct = gmm.fit(
        jax.random.key(0), narrow, 2, max_iter=3, covariance_type="diag", formulation="direct"
    )
    np.testing.assert_array_equal(fit.params.means, direct.params.means)
    # model selection decides per covariance type
    from jaxem._src.gmm.fit import _direct_by_shape

    assert [_direct_by_shape(t, narrow) for t in ("full", "tied", "diag", "spherical")] == [
        True, False, True, True,
    ]  # fmt: skip


def test_small_data_takes_the_direct_formulation():
    # up to DIRECT_MAX_ROWS rows (bucketed) in float32, any number of restarts,
    # compiles the direct route alone; the float64 shortcut and a formulation
    # asked for still decide, and float64 keeps the per-pass choice otherwise
    rng = np.random.default_rng(0)
    small = rng.normal(size=(DIRECT_MAX_ROWS, 3)).astype(np.float32)
    larger = rng.normal(size=(DIRECT_MAX_ROWS + 1, 3)).astype(np.float32)
    assert row_bucket(DIRECT_MAX_ROWS + 1) > DIRECT_MAX_ROWS
    assert resolve_formulation("auto", small, 1e-6) == "direct"
    assert resolve_formulation("auto", jnp.asarray(small), 1e-6) == "direct"
    assert resolve_formulation("auto", larger, 1e-6) == "auto"
    assert resolve_formulation("moments", small, 1e-6) == "moments"
    assert resolve_formulation("auto", small.astype(np.float64), 1e-6) == "moments"  # x64 on
    assert resolve_formulation("auto", small.astype(np.float64), 0.0) == "auto"
    with jax.enable_x64(False):  # float64 data computed in float32
        assert resolve_formulation("auto", small.astype(np.float64), 1e-6) == "direct"
    fit = gmm.fit(jax.random.key(0), small, 2, max_iter=3)
    assert not bool(fit.fast_path)  # the direct formulation ran
    direct = gmm.fit(jax.random.key(0), small, 2, max_iter=3, formulation="direct")
    np.testing.assert_array_equal(fit.params.means, direct.params.means)


def test_a_new_n_in_the_same_row_bucket_reuses_the_program_and_padding_is_exact():
    """Rows are padded to a bucket size with weight zero: 37 and 38 rows share
    one compiled fit, and a fit of the padded rows from a given start equals
    the fit of the rows themselves (zero-weight rows are absent from EM)."""
    from jaxem._src.api import _fit_program
    from jaxem._src.sources import row_bucket

    assert [row_bucket(n) for n in (31, 32, 33, 36, 37, 272, 273, 512, 1000, 1017, 1024, 1025)] == [
        31, 32, 34, 36, 38, 272, 288, 512, 1016, 1032, 1032, 1088,
    ]  # fmt: skip
    x = blobs(seed=4, n=38, d=2, k=2)
    first = gmm.fit(jax.random.key(0), x[:37], 2, covariance_type="diag")
    size = _fit_program.cache_size()
    second = gmm.fit(jax.random.key(0), x, 2, covariance_type="diag")
    assert _fit_program.cache_size() == size
    assert int(first.n_iter) > 1 and int(second.n_iter) > 1
    # the padded program from a start equals EM on the 37 rows alone
    start = gmm.init(jax.random.key(1), x[:37], 2, covariance_type="diag")
    padded = fit_from(start, x[:37], tol=1e-8)
    plain = jaxem.em(
        gmm.e_step,
        lambda r, x: gmm.m_step(r, x, covariance_type="diag"),
        start,
        jnp.asarray(x[:37]),
        tol=1e-8,
    )
    assert int(padded.n_iter) == int(plain.n_iter)
    _assert_trees_close(padded.params, plain.params, rtol=1e-10, atol=1e-12)


def test_vmap_over_keys_equals_loop():
    x = blobs(seed=2, n=120, d=2, k=3)
    keys = jax.random.split(jax.random.key(0), 3)
    # four restarts: the best is refined, which must compose with vmap too
    kwargs = dict(init="random_from_data", n_init=4)
    batched = jax.vmap(lambda k: gmm.fit(k, x, 3, **kwargs))(keys)
    assert np.all(np.sum(np.asarray(batched.restart_refined), axis=1) == 1)
    for i, k in enumerate(keys):
        _assert_trees_close(jax.tree.map(lambda a, i=i: a[i], batched), gmm.fit(k, x, 3, **kwargs))


def test_vmap_over_reg_covar_and_tol_equals_loop():
    x = blobs(seed=3, n=120, d=2, k=3)
    regs = jnp.array([1e-6, 1e-2, 1.0])
    tols = jnp.array([1e-2, 1e-4, 1e-6])
    key = jax.random.key(2)
    batched = jax.vmap(lambda r, t: gmm.fit(key, x, 3, reg_covar=r, tol=t))(regs, tols)
    for i in range(3):
        single = gmm.fit(key, x, 3, reg_covar=float(regs[i]), tol=float(tols[i]))
        _assert_trees_close(jax.tree.map(lambda a, i=i: a[i], batched), single)
    assert len(set(np.asarray(batched.n_iter).tolist())) > 1


def test_vmap_over_datasets_equals_loop():
    xs = np.stack([blobs(seed=s, n=90, d=2, k=2) for s in range(3)])
    key = jax.random.key(3)
    batched = jax.vmap(lambda x: gmm.fit(key, x, 2, covariance_type="tied"))(xs)
    for i in range(3):
        _assert_trees_close(
            jax.tree.map(lambda a, i=i: a[i], batched),
            gmm.fit(key, xs[i], 2, covariance_type="tied"),
        )


@pytest.mark.parametrize(
    "covariance_type",
    [
        "full",
        pytest.param("diag", marks=SLOW),
        pytest.param("tied", marks=SLOW),
        pytest.param("spherical", marks=SLOW),
    ],
)
def test_n_active_equals_plain_fit_from_same_start(covariance_type):
    x = blobs(seed=4, n=150, d=2, k=3)
    key = jax.random.key(4)
    for k in (1, 3):
        nested = gmm.fit(key, x, 6, n_active=k, covariance_type=covariance_type, n_init=2)
        plain = gmm.fit(key, x, k, covariance_type=covariance_type, n_init=2)
        w = np.asarray(nested.params.weights)
        np.testing.assert_array_equal(w[k:], 0.0)
        np.testing.assert_allclose(w[:k], plain.params.weights, rtol=1e-9)
        np.testing.assert_allclose(nested.params.means[:k], plain.params.means, rtol=1e-9)
        cov = nested.params.covariances
        cov = cov if covariance_type == "tied" else cov[:k]
        np.testing.assert_allclose(cov, plain.params.covariances, rtol=1e-9)
        # A fit that stops short of the optimum has a log-likelihood first order
        # in the parameters' differences (rounding, within 1e-9 above): the
        # hc_vvv start with k=3 stops after 9 iterations 1.1e-12 apart.
        np.testing.assert_allclose(nested.log_likelihood, plain.log_likelihood, rtol=1e-10)
        # The refinement stops once a change is within rounding of the
        # log-likelihood, which the two programs round differently.
        assert abs(int(nested.n_iter) - int(plain.n_iter)) <= 1


def test_refinement_continues_the_best_screened_restarts_with_aitkens_rule():
    x = blobs(seed=6, n=240, d=2, k=4)
    key = jax.random.key(7)
    result = gmm.fit(
        key, x, 4, init="random_from_data", n_init=6, covariance_type="full", tol=1e-2,
        n_refine=2, refine_tol=1e-7, refine_max_iter=300,
    )  # fmt: skip
    starts = [gmm.init(k, x, 4, method="random_from_data") for k in jax.random.split(key, 6)]
    screened = [fit_from(s, jnp.asarray(x), tol=1e-2, reg_covar=1e-6, max_iter=100) for s in starts]
    lls = np.array([float(r.log_likelihood) for r in screened])
    order = np.argsort(-lls)
    np.testing.assert_array_equal(np.flatnonzero(result.restart_refined), np.sort(order[:2]))
    assert not np.any(result.restart_degenerate)
    for i in order[:2]:
        first = screened[i]
        more = fit_from(
            first.params, jnp.asarray(x), tol=1e-7, reg_covar=1e-6, max_iter=300,
            criterion="aitken",
        )  # fmt: skip
        assert float(more.log_likelihood) > lls[i]
        lls[i] = float(more.log_likelihood)
        if i == int(result.best_restart):
            n, m = int(first.n_iter), int(more.n_iter)
            assert int(result.n_iter) == n + m and bool(result.converged)
            assert result.history.shape == (400,)
            np.testing.assert_allclose(result.history[:n], first.history[:n], rtol=1e-10)
            np.testing.assert_allclose(result.history[n : n + m], more.history[:m], rtol=1e-10)
            assert np.all(np.isnan(result.history[n + m :]))
            _assert_trees_close(result.params, more.params)
    np.testing.assert_allclose(result.restart_log_likelihoods, lls, rtol=1e-10)
    assert int(result.best_restart) == int(np.argmax(lls))


@pytest.mark.slow  # ~30 s; gmm.select runs the same vmap over n_active in test_gmm_select
def test_vmap_over_n_active():
    x = blobs(seed=5, n=150, d=2, k=3)
    key = jax.random.key(5)
    batched = jax.vmap(lambda k: gmm.fit(key, x, 4, n_active=k))(jnp.arange(1, 5))
    for i, k in enumerate(range(1, 5)):
        single = gmm.fit(key, x, 4, n_active=k)
        _assert_trees_close(jax.tree.map(lambda a, i=i: a[i], batched), single)
        assert int(gmm.n_parameters(single.params)) == int(
            gmm.n_parameters(gmm.fit(key, x, k).params)
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        (dict(n_init=0), ValueError, "n_init must be >= 1"),
        (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
        (dict(tol=float("inf")), ValueError, "tol must be a finite number"),
        (dict(init="kmeans++"), ValueError, "init method must be one of"),
        (dict(covariance_type="full "), ValueError, "covariance_type must be one of"),
        (dict(n_init=2, n_refine=3), ValueError, "n_refine=3 must be <= n_init=2"),
        (dict(n_refine=-1), ValueError, "n_refine must be >= 0"),
        (dict(refine_tol=-1.0), ValueError, "refine_tol"),
        (dict(refine_max_iter=0), ValueError, "refine_max_iter must be >= 1"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        gmm.fit(jax.random.key(0), blobs(n=30, d=2, k=2), 2, **kwargs)


def test_trim_keeps_a_tied_covariance_whole_when_d_equals_k():
    params = gmm.make_params(
        np.array([0.5, 0.0, 0.5]), np.zeros((3, 3)), np.eye(3) * 2.0, covariance_type="tied"
    )
    trimmed = gmm.family("tied").trim(params)
    assert trimmed.means.shape == (2, 3)
    np.testing.assert_array_equal(trimmed.covariances, np.eye(3) * 2.0)
    full = gmm.family("full").trim(
        gmm.make_params(params.weights, params.means, np.stack([np.eye(3)] * 3))
    )
    assert full.covariances.shape == (2, 3, 3)
