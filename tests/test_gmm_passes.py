"""The fused, chunked EM passes: equal to the plain steps; float32 accuracy."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, random_params

from jaxem import gmm
from jaxem._src import sources as passes
from jaxem._src.gmm import family as gmm_family_module
from jaxem._src.gmm import layout, moments
from jaxem._src.gmm import passes as gmm_passes
from jaxem._src.gmm.fit import family as gmm_family
from jaxem._src.gmm.fit import run_batch
from jaxem._src.gmm.passes import (
    cached_moment_pass,
    direct_pass,
    feature_cache,
    moment_pass,
    responsibility_stats,
)


def _plain_m_step(params, x):
    resp, ll = gmm.e_step(params, x)
    return gmm.m_step(resp, x, covariance_type=params.covariance_type), ll


def _assert_params_close(a, b, rtol):
    """Each parameter array agrees to ``rtol`` relative to its largest entry."""
    for name in ("weights", "means", "covariances"):
        u, v = np.asarray(getattr(a, name), np.float64), np.asarray(getattr(b, name), np.float64)
        error = np.max(np.abs(u - v)) / np.max(np.abs(v))
        assert error <= rtol, f"{name}: relative error {error:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("rows", [None, pytest.param(64, marks=pytest.mark.slow), 97])
def test_passes_equal_plain_steps_chunked_or_not(covariance_type, rows):
    """Unchunked, and in chunks of 97 rows (the last one padded; 64: slow)."""
    x = blobs(seed=0, n=500, d=3, k=3) + 50.0
    params = gmm.make_params(*random_params(1, 3, 3, covariance_type, x), covariance_type)
    expected, ll = _plain_m_step(params, x)
    w = jnp.ones(len(x))
    for stats, pass_ll in (
        direct_pass(params, x, w, rows=rows),
        moment_pass(params, x, w, jnp.mean(x, 0), rows=rows),
    ):
        np.testing.assert_allclose(pass_ll, ll, rtol=1e-12)
        _assert_params_close(gmm.maximize(stats, reg_covar=1e-6), expected, rtol=1e-10)


def _stats_close(a, b):
    (sa, lla), (sb, llb) = a, b
    np.testing.assert_allclose(lla, llb, rtol=1e-12)
    for u, v in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-10 * np.max(np.abs(v)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("rows", [pytest.param(None, marks=pytest.mark.slow), 97])
def test_cached_features_pass_equals_moment_pass_alone_or_batched(covariance_type, rows):
    """One restart, restarts batched into wide products, and a vmap over weights
    (the general fallback) all give moment_pass's statistics; in chunks of 97
    rows (the last one padded; unchunked: slow)."""
    x = blobs(seed=1, n=400, d=3, k=3) + 20.0
    w = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, len(x)))
    center = jnp.mean(x, 0)
    cache = feature_cache(x, w, center, covariance_type)
    starts = [
        gmm.make_params(*random_params(seed, 3, 3, covariance_type, x), covariance_type)
        for seed in range(3)
    ]
    starts[2] = dataclasses.replace(starts[2], weights=starts[2].weights.at[1].set(0.0))  # inactive
    expected = [moment_pass(p, x, w, center, rows=rows) for p in starts]
    _stats_close(cached_moment_pass(starts[0], cache, w, rows=rows), expected[0])
    for batch in (starts[:1], starts):
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *batch)
        wide = jax.jit(jax.vmap(lambda p: cached_moment_pass(p, cache, w, rows=rows)))(stacked)
        for i in range(len(batch)):
            _stats_close(jax.tree.map(lambda a, i=i: a[i], wide), expected[i])
    ws = jnp.stack([w, 2 * w])
    per_weight = jax.vmap(lambda v: cached_moment_pass(starts[0], cache, v, rows=rows))(ws)
    _stats_close(jax.tree.map(lambda a: a[0], per_weight), expected[0])
    np.testing.assert_allclose(per_weight[0].nk[1], 2 * expected[0][0].nk, rtol=1e-12)


def test_linearize_of_the_feature_pass_alone_or_one_restart_at_a_time():
    """jax.linearize (the first half of reverse mode) passes through the feature
    pass outside a vmap: alone, as a fit of one restart runs it, and inside
    lax.map, as restarts one after the other do. Its derivative is jax.jvp's."""
    x = blobs(seed=1, n=60, d=2, k=2)
    w = jnp.ones(len(x))
    center = jnp.mean(x, 0)
    params = gmm.make_params(*random_params(0, 2, 2, "full", x), "full")

    def loglik(means):
        p = dataclasses.replace(params, means=means)
        return cached_moment_pass(p, feature_cache(x, w, center, "full"), w)[1]

    def mapped(means):
        return jnp.sum(jax.lax.map(loglik, means[None]))

    tangent = jnp.ones_like(params.means)
    for f in (loglik, mapped):
        _, slope = jax.jvp(f, (params.means,), (tangent,))
        _, linear = jax.linearize(f, params.means)
        np.testing.assert_allclose(linear(tangent), slope, rtol=1e-12)
        assert np.isfinite(slope) and slope != 0


def test_fit_is_the_same_with_or_without_the_feature_cache(monkeypatch):
    x = blobs(seed=2, n=300, d=3, k=3)
    params = gmm.make_params(*random_params(0, 3, 3, "full", x), "full")
    shifted = dataclasses.replace(params, means=params.means + 0.1)
    starts = jax.tree.map(lambda *a: jnp.stack(a), params, shifted)

    def run():
        em = functools.partial(run_batch, tol=0.0, reg_covar=1e-6, max_iter=5)
        return jax.jit(em, static_argnames="formulation")(starts, x, formulation="moments")[0]

    cached = run()
    monkeypatch.setattr(passes, "FEATURE_CACHE_BYTES", 0)
    rebuilt = run()
    for u, v in zip(jax.tree.leaves(cached), jax.tree.leaves(rebuilt), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def _tight_clusters(dtype, sigma, offset):
    rng = np.random.default_rng(3)
    centers = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    labels = rng.integers(3, size=3000)
    x = offset + centers[labels] + sigma * rng.normal(size=(3000, 3))
    return x.astype(dtype), centers + offset


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(
    ("sigma", "offset", "expect_fast"),
    [(0.3, 1e3, True), (1e-3, 0.0, False), (1e-3, 1e3, False)],
    ids=["offset-1e3", "tight", "tight-offset-1e3"],
)
def test_float32_fit_agrees_with_float64(covariance_type, sigma, offset, expect_fast):
    x32, centers = _tight_clusters(np.float32, sigma, offset)
    x64 = x32.astype(np.float64)  # the same data: float32 rounding of x is not at issue
    # Start both from the same (float64-exact) parameters near the truth.
    weights = np.full(3, 1 / 3)
    means = centers + 0.1 * sigma
    cov = {
        "full": np.stack([np.eye(3)] * 3),
        "tied": np.eye(3),
        "diag": np.ones((3, 3)),
        "spherical": np.ones(3),
    }[covariance_type] * (2 * sigma) ** 2
    start64 = gmm.make_params(weights, means, cov, covariance_type)
    start32 = jax.tree.map(lambda a: a.astype(jnp.float32), start64)
    run = jax.jit(
        functools.partial(run_batch, tol=0.0, reg_covar=0.0, max_iter=15),
        static_argnames="formulation",
    )
    r64, _ = run(_batch(start64), jnp.asarray(x64), formulation="direct")
    r32, fast = run(_batch(start32), jnp.asarray(x32), formulation="auto")
    assert bool(fast) == expect_fast
    _assert_params_close(_first(r32.params), _first(r64.params), rtol=1e-4)
    for leaf in jax.tree.leaves(r32.params):
        assert np.all(np.isfinite(leaf))
    if not expect_fast:
        # The moment formulation would indeed have lost accuracy here.
        forced, _ = run(_batch(start32), jnp.asarray(x32), formulation="moments")
        with pytest.raises(AssertionError):
            _assert_params_close(_first(forced.params), _first(r64.params), rtol=1e-4)


def _elongated_clusters(dtype):
    """Two crossing clusters, each 200 times longer than wide (κ = 4·10⁴), 0.6
    apart: about the data's mean ``ρ`` reaches ~700 (``ε ρ ≈ 8e-5`` in float32),
    while the mean lies within a sixth of a long standard deviation of both."""
    rng = np.random.default_rng(5)

    def rotated(angle):
        c, s = np.cos(angle), np.sin(angle)
        r = np.array([[c, -s], [s, c]])
        return r @ np.diag([4.0, 1e-4]) @ r.T

    covariances = np.stack([rotated(np.pi / 6), rotated(-np.pi / 6)])
    means = np.array([[0.0, 0.0], [0.0, 0.6]])
    labels = rng.integers(2, size=3000)
    z = rng.normal(size=(3000, 2))
    x = means[labels] + np.einsum("nde,ne->nd", np.linalg.cholesky(covariances)[labels], z)
    return x.astype(dtype), means, covariances


def _component_covariance_error(params, reference):
    """``max_k ‖Σ_ref^(-½) Σ Σ_ref^(-½) − I‖₂``: relative error in each component's
    own metric (the thin direction counts as much as the long one)."""
    error = 0.0
    pairs = zip(params.covariances, reference.covariances, strict=True)
    for a, b in ((np.asarray(a, np.float64), np.asarray(b)) for a, b in pairs):
        w, q = np.linalg.eigh(b)
        root = (q / np.sqrt(w)) @ q.T
        error = max(error, np.linalg.norm(root @ a @ root - np.eye(len(a)), 2))
    return error


def test_float32_moments_on_ill_conditioned_components():
    """Elongated components (κ = 4·10⁴) lose about ``ε κ ≈ 5e-3`` of their thin
    variance in float32 whatever the route. About a centre within a long
    standard deviation of the means the moment formulation stays inside that
    (the bound's second part), so ``"auto"`` keeps it, where ``ε ρ`` alone
    rejects it."""
    x32, means, covariances = _elongated_clusters(np.float32)
    x64 = jnp.asarray(x32.astype(np.float64))
    start64 = gmm.make_params(np.full(2, 0.5), means + 0.01, covariances * 1.2, "full")
    start32 = jax.tree.map(lambda a: a.astype(jnp.float32), start64)

    def run(x, start, formulation):
        fit = functools.partial(run_batch, tol=0.0, reg_covar=0.0, max_iter=20)
        result, fast = jax.jit(fit, static_argnames="formulation")(
            _batch(start), x, formulation=formulation
        )
        return _first(result), bool(fast)

    r64, _ = run(x64, start64, "direct")
    r32, fast = run(jnp.asarray(x32), start32, "auto")
    assert fast
    assert _component_covariance_error(r32.params, r64.params) < np.finfo(np.float32).eps * 4e4
    # the fitted parameters are as good as float64's (measured: 4e-7 relative;
    # the direct route's float32 fit: 6e-5, its covariances 1e-2 off) ...
    as64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), r32.params)
    fitted_ll = jnp.mean(gmm.log_prob(as64, x64))
    np.testing.assert_allclose(fitted_ll, r64.log_likelihood, rtol=1e-5)
    # ... while the log-likelihood the moment pass reports carries the rounding
    # of the logits, up to ε·‖x − c‖²·‖Λ‖ ≈ ε κ per row (measured: 4e-4 of 0.365)
    np.testing.assert_allclose(r32.log_likelihood, r64.log_likelihood, rtol=3e-3)
    # the first part alone rejects the data's mean as the centre
    rho, _, _ = moments.center_distances(r32.params, jnp.mean(jnp.asarray(x32), axis=0))
    assert np.finfo(np.float32).eps * float(jnp.max(rho)) > moments.ACCURACY_THRESHOLD


def test_float32_moments_refused_along_a_rotated_long_axis():
    """Two clusters 20 long standard deviations apart along the long axis of a
    rotated component (sd 10 and 0.03, κ = 1.1e5), centre at the data's
    mean: ``ε ρ`` is small (ρ ≈ ‖μ − c‖²/λ_max = 100) but the moment route's
    rounding is ``ε ‖μ − c‖²/λ_min`` of the thin variance, which it lost. The
    tied fit accepted it and ended 5.4 nats per sample below the direct
    route's (its thin variance 100 instead of 9e-4)."""
    rng = np.random.default_rng(0)
    u, v = np.array([1.0, 1.0]) / np.sqrt(2), np.array([1.0, -1.0]) / np.sqrt(2)
    cov = 100 * np.outer(u, u) + 0.03**2 * np.outer(v, v)
    centres = np.array([-100 * u, 100 * u])
    x = centres[rng.integers(0, 2, 2000)] + rng.normal(size=(2000, 2)) @ np.linalg.cholesky(cov).T
    x32 = jnp.asarray(x.astype(np.float32))
    params = jax.tree.map(
        lambda a: a.astype(jnp.float32), gmm.make_params(np.full(2, 0.5), centres, cov, "tied")
    )
    center = jnp.mean(x32, axis=0)
    rho, _, _ = moments.center_distances(params, center)  # entrywise: |m̃|ᵀ|Λ||m̃|
    assert np.finfo(np.float32).eps * float(jnp.max(rho)) > 0.01
    assert not moments.is_accurate(params, center)
    auto = gmm.fit(jax.random.key(0), x32, 2, covariance_type="tied", tol=1e-5)
    direct = gmm.fit(
        jax.random.key(0), x32, 2, covariance_type="tied", tol=1e-5, formulation="direct"
    )
    scores = [float(jnp.mean(gmm.log_prob(r.params, jnp.asarray(x)))) for r in (auto, direct)]
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-4)


def _batch(tree):
    return jax.tree.map(lambda a: a[None], tree)


def _first(tree):
    return jax.tree.map(lambda a: a[0], tree)


@pytest.fixture
def small_layout(monkeypatch):
    """Fits of a few thousand rows order their features into tight chunks."""
    monkeypatch.setattr(layout, "LAYOUT_MIN_ROWS", 1000)
    monkeypatch.setattr(layout, "MIN_CHUNK_ROWS", 16)


@pytest.mark.parametrize("n", [1, 100, layout.RANK_BLOCK, 2 * layout.RANK_BLOCK + 37])
def test_layout_ranks_are_a_stable_sort(n):
    """The layout's counting sort: every row's rank among the earlier rows of
    its group, as a stable argsort orders them, over one block, a partial one
    and several; groups absent from the data count zero."""
    labels = np.random.default_rng(n).integers(0, 5, n).astype(np.int32)
    counts, rank = layout._ranks(jnp.asarray(labels), 7)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=7))
    order = np.argsort(labels, kind="stable")
    expected = np.empty(n, np.int64)
    expected[order] = np.arange(n) - (np.cumsum(counts) - counts)[labels[order]]
    np.testing.assert_array_equal(rank, expected)


@pytest.mark.parametrize("spread", [1.0, 1e20], ids=["unit", "overflowing"])
def test_layout_holds_every_row_once(spread, small_layout):
    """Each row in exactly one slot of the layout, in a group that exists,
    also where the squared distances of the grouping overflow float32."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(1500, 3)) * spread, jnp.float32)
    w = jnp.ones(1500, jnp.float32)
    shape = layout.layout_shape(1500, 3)
    labels = np.asarray(jax.jit(layout.group_labels, static_argnums=2)(x, w, shape[0]))
    assert labels.min() >= 0 and labels.max() < shape[0]
    rows = np.asarray(jax.jit(layout.arrange, static_argnums=2)(x, w, shape).rows).ravel()
    np.testing.assert_array_equal(np.sort(rows[rows < 1500]), np.arange(1500))


@pytest.mark.parametrize(
    "covariance_type, kept",
    [*((c, "features") for c in COVARIANCE_TYPES), ("full", "rows"), ("spherical", "rows")],
)
def test_layout_fit_equals_direct_fit_in_float64(covariance_type, kept, small_layout, monkeypatch):
    """Rows sorted into per-chunk centred chunks (padding of weight 0 included)
    give the direct formulation's fit, sample weights too; so do the layout's
    centred rows whose features each pass builds (features too large to keep)."""
    x = jnp.asarray(blobs(seed=4, n=2000, d=3, k=3) + 30.0)
    w = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2.0, len(x)))
    fam = gmm_family(covariance_type, formulation="moments")
    if kept == "rows":  # room for the layout's rows, not for its features
        sizes = {}
        for features in (True, False):
            layout_of = functools.partial(fam.layout, n_components=3, features=features)
            shapes = jax.eval_shape(layout_of, x, w, None)
            sizes[features] = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(shapes))
        assert sizes[False] < sizes[True]
        monkeypatch.setattr(passes, "FEATURE_CACHE_BYTES", sizes[False])
        context = passes.InMemory(x, w).context(fam)
        prepared = passes.InMemory(x, w).prepare(fam, context, n_components=3)
        assert isinstance(prepared.items, layout.RowChunk)  # the layout of rows is taken
    params = gmm.make_params(*random_params(2, 3, 3, covariance_type, x), covariance_type)
    run = jax.jit(
        functools.partial(run_batch, tol=0.0, reg_covar=1e-6, max_iter=4),
        static_argnames="formulation",
    )
    direct, _ = run(_batch(params), x, sample_weight=w, formulation="direct")
    for formulation in ("moments", "auto") if kept == "rows" else ("moments",):
        sorted_, _ = run(_batch(params), x, sample_weight=w, formulation=formulation)
        _assert_params_close(_first(sorted_.params), _first(direct.params), rtol=1e-10)
        np.testing.assert_allclose(sorted_.log_likelihood, direct.log_likelihood, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_a_pass_over_a_layout_tries_the_features_of_all_rows_first(
    covariance_type, small_layout, monkeypatch
):
    """An ``"auto"`` fit that orders its features into chunks also keeps the
    features of all rows about the data's mean (``ChunkedRows.whole``; not with
    ``"moments"``, whose layout is its accuracy, nor for fewer than
    ``WHOLE_PASS_MIN_ELEMENTS`` rows × K) and takes one pass over them
    where the whole-data check holds: the chunks' statistics to float32
    rounding. Where it fails (a component a hundred standard deviations from
    the data, with half the weight) the pass is the chunks' (marked here by
    their log-likelihood), and under ``vmap`` one restart that fails sends the
    batch there."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2000, 3)), jnp.float32)
    w = jnp.asarray(rng.uniform(0.5, 2.0, 2000), jnp.float32)
    fam = gmm_family(covariance_type)
    source = passes.InMemory(x, w)
    context = source.context(fam)
    assert source.prepare(fam, context, n_components=2).whole is None  # 4 000 < 2^20
    monkeypatch.setattr(gmm_family_module, "WHOLE_PASS_MIN_ELEMENTS", 4000)
    prepared = source.prepare(fam, context, n_components=2)
    assert prepared.whole is not None and prepared.whole.shape[0] == 2000
    moments_only = gmm_family(covariance_type, formulation="moments")
    assert source.prepare(moments_only, context, n_components=2).whole is None

    def chunks_of(p):
        return passes.chunkwise_pass(fam, p, prepared, context)

    def chunks(p):
        stats, ll = chunks_of(p)
        return stats, jnp.full_like(ll, 12345.0)

    @functools.partial(jax.jit, static_argnums=1)
    def run(p, batched=False):
        def one(p):
            return fam.whole_pass(p, prepared.whole, w, context, chunks, 2 if batched else 1)

        return jax.vmap(one)(p) if batched else one(p)

    def params(mean, variance):
        cov = np.eye(3) * variance if covariance_type == "full" else np.eye(3)
        cov = np.stack([np.eye(3), cov]) if covariance_type == "full" else cov
        p = gmm.make_params([0.5, 0.5], [[0.0, 0.0, 0.0], mean], cov, covariance_type)
        return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)

    near, far = params([0.5, 0.0, 0.0], 2.0), params([100.0, 0.0, 0.0], 1.0)
    (stats, ll), (chunk_stats, chunk_ll) = run(near), jax.jit(chunks_of)(near)
    assert float(ll) != 12345.0
    np.testing.assert_allclose(ll, chunk_ll, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(chunk_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(b))))
    assert float(run(far)[1]) == 12345.0
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), near, far)
    assert np.all(run(both, True)[1] == 12345.0)
    assert not np.any(run(jax.tree.map(lambda a: jnp.stack([a, a]), near), True)[1] == 12345.0)


@pytest.mark.parametrize("sigma", [0.3, 1e-3], ids=["overlapping", "tight-far"])
def test_fits_that_try_the_whole_pass_first_agree_with_float64(sigma, small_layout, monkeypatch):
    """Two restarts at once (``vmap``) on data with a layout and the features of
    all rows: float32 ``"auto"`` fits agree with float64 direct ones to 1e-4,
    where the whole-data pass holds (clusters of σ = 0.3 a unit apart) and
    where it fails and the layout's chunks take the passes (σ = 1e-3, a
    thousand from the origin); in float64 the pass over all rows is the direct
    formulation's to 1e-10."""
    monkeypatch.setattr(gmm_family_module, "WHOLE_PASS_MIN_ELEMENTS", 0)
    x32, centers = _tight_clusters(np.float32, sigma, 1e3)
    x64 = x32.astype(np.float64)
    start64 = gmm.make_params(
        np.full(3, 1 / 3), centers + 0.1 * sigma, np.stack([np.eye(3)] * 3) * sigma**2, "full"
    )
    other = dataclasses.replace(start64, weights=jnp.asarray([0.5, 0.25, 0.25]))
    starts64 = jax.tree.map(lambda a, b: jnp.stack([a, b]), start64, other)
    starts32 = jax.tree.map(lambda a: a.astype(jnp.float32), starts64)
    run = jax.jit(
        functools.partial(run_batch, tol=0.0, reg_covar=0.0, max_iter=10),
        static_argnames="formulation",
    )
    r64, _ = run(starts64, jnp.asarray(x64), formulation="direct")
    r32, _ = run(starts32, jnp.asarray(x32), formulation="auto")
    for i in range(2):
        _assert_params_close(_first(_pick(r32.params, i)), _first(_pick(r64.params, i)), 1e-4)
    if sigma == 0.3:
        a64, _ = run(starts64, jnp.asarray(x64), formulation="auto")
        _assert_params_close(_first(_pick(a64.params, 0)), _first(_pick(r64.params, 0)), 1e-10)
        np.testing.assert_allclose(a64.log_likelihood, r64.log_likelihood, rtol=1e-12)


def test_fits_with_the_whole_pass_under_vmap_over_data_sets(small_layout, monkeypatch):
    """``vmap`` over data sets (the data batched, so no one decision for the
    batch): every element takes the layout's chunks, and agrees with its own
    fit, which takes the pass over all rows (float32 rounding apart). Inside a
    ``cond`` whose predicate varies over the batch the chunks' batching rules
    could not run (JAX's custom_vmap with its constants batched)."""
    monkeypatch.setattr(gmm_family_module, "WHOLE_PASS_MIN_ELEMENTS", 0)
    xs = jnp.asarray(np.stack([_tight_clusters(np.float32, 0.3, o)[0] for o in (0.0, 5.0)]))
    start = gmm.make_params(np.full(3, 1 / 3), np.eye(3), np.stack([np.eye(3)] * 3) * 0.1, "full")
    start = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), start)
    starts = jnp.stack([start.means, start.means + 5.0])

    def fit(means, x):
        s = dataclasses.replace(start, means=means)
        return run_batch(_batch(s), x, tol=0.0, reg_covar=1e-6, max_iter=5)[0].log_likelihood[0]

    together = jax.jit(jax.vmap(fit))(starts, xs)
    apart = [jax.jit(fit)(starts[i], xs[i]) for i in range(2)]
    np.testing.assert_allclose(together, apart, rtol=1e-5)


def _pick(tree, i):
    return jax.tree.map(lambda a: a[i : i + 1], tree)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_layout_keeps_float32_moments_accurate_on_tight_far_clusters(covariance_type, small_layout):
    """Clusters 1000σ apart, 1000 from the origin: about the data's mean the
    moment formulation loses the fit (test_float32_fit_agrees_with_float64);
    in chunks centred within the clusters it agrees with float64 to 1e-4."""
    x32, centers = _tight_clusters(np.float32, 1e-3, 1e3)
    x64 = x32.astype(np.float64)
    cov = {
        "full": np.stack([np.eye(3)] * 3),
        "tied": np.eye(3),
        "diag": np.ones((3, 3)),
        "spherical": np.ones(3),
    }[covariance_type] * 4e-6
    start64 = gmm.make_params(np.full(3, 1 / 3), centers + 1e-4, cov, covariance_type)
    start32 = jax.tree.map(lambda a: a.astype(jnp.float32), start64)
    run = jax.jit(
        functools.partial(run_batch, tol=0.0, reg_covar=0.0, max_iter=15),
        static_argnames="formulation",
    )
    r64, _ = run(_batch(start64), jnp.asarray(x64), formulation="direct")
    r32, _ = run(_batch(start32), jnp.asarray(x32), formulation="moments")
    _assert_params_close(_first(r32.params), _first(r64.params), rtol=1e-4)


def test_the_chunks_of_a_pass_share_one_accuracy_budget():
    """``moments.pooled_check``: a chunk whose error at a component that owns
    few of its rows exceeds that chunk's own share of the bound (rejected by
    ``chunk_is_accurate``) passes on the budget of the whole pass; chunks keep
    passing until that budget is spent, and what they charged stays within
    ``threshold · (Σ_c n_kc + π_k Σ w)`` for every component."""
    params = gmm.make_params([0.5, 0.5], [[0.0, 0.0], [5.0, 0.0]], np.ones(2), "spherical")
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    eps = float(np.finfo(np.float32).eps)
    threshold = moments.ACCURACY_THRESHOLD
    nk = jnp.asarray([990.0, 10.0], jnp.float32)  # component 1 owns 10 of 1000 rows
    rho = jnp.asarray([1.0, 2 * threshold * 1000 / (eps * 10)], jnp.float32)
    distances = (rho, jnp.ones(2, jnp.float32), jnp.zeros(2, jnp.float32))  # no second part
    w = jnp.ones(1000, jnp.float32)
    own = moments.chunk_is_accurate(params, nk, w, jnp.zeros(2), distances=distances)
    assert not bool(own)  # twice the whole chunk's rows' worth: over its own share
    budget = moments.budget(params, jnp.asarray(100 * 1000.0, jnp.float32))  # 100 such chunks
    passed = []
    for _ in range(100):
        ok, charged = moments.pooled_check(params, nk, budget, distances)
        budget = moments.charge(budget, nk, charged, ok)
        passed.append(bool(ok))
        bound = threshold * (budget.seen + budget.expected)
        assert np.all(np.asarray(budget.spent[0]) <= np.asarray(bound) * (1 + 1e-6))
    # each passing chunk charges threshold · 2000 against a budget of
    # threshold · (50 000 + 10 per chunk so far): the first 25 pass, then none
    m = sum(passed)
    assert 24 <= m <= 26 and passed == [True] * m + [False] * (100 - m)


def _accepted_in_order(params, nk_c, w, centers):
    """The chunks ``pooled_check`` accepts one after another, and whether each
    charged only the bound's first part (a reference for ``pooled_acceptance``)."""
    budget = moments.budget(params, jnp.sum(w))
    accepted, first_only = [], []
    for nk, center in zip(nk_c, centers, strict=True):
        distances = moments.center_distances(params, center)
        ok, charged = moments.pooled_check(params, nk, budget, distances)
        errors = jnp.finfo(params.dtype).eps * nk * distances[0]
        active = np.asarray(params.weights) > 0
        first_only.append(bool(ok) and np.array_equal(charged[0][active], errors[active]))
        budget = moments.charge(budget, nk, charged, ok)
        accepted.append(bool(ok))
    return accepted, first_only


@pytest.mark.parametrize("n_chunks", [25, 26])
def test_the_pooled_check_of_all_chunks_at_once_is_the_check_in_order(n_chunks):
    """``pooled_acceptance`` decides at once that every chunk passes when each,
    in order, fits what the chunks before it left of the bound's first part
    (``moments.all_within_first_part``), and otherwise checks them one after
    another: the chunks it accepts are those the check in order accepts, also
    under ``vmap`` over restarts. The chunks of the budget test above: 25 fit
    the first part, the 26th does not (nor the second: it is rejected)."""
    params = gmm.make_params([0.5, 0.5], [[0.0, 0.0], [183.0, 0.0]], np.ones(2), "spherical")
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    nk_c = jnp.tile(jnp.asarray([990.0, 10.0], jnp.float32), (n_chunks, 1))
    centers = jnp.zeros((n_chunks, 2), jnp.float32)
    w = jnp.full((n_chunks, 1), 100_000.0 / n_chunks, jnp.float32)  # the weight of 100 chunks
    accepted, first_only = _accepted_in_order(params, nk_c, w, centers)
    at_once = moments.all_within_first_part(params, nk_c, jnp.sum(w), centers)
    assert bool(at_once) == all(first_only) == (n_chunks == 25)
    got = jax.jit(gmm_passes.pooled_acceptance)(params, nk_c, w, centers)
    assert np.asarray(got).tolist() == accepted
    # a batch of two restarts, one of them the same: one decision for both
    other = dataclasses.replace(params, means=params.means.at[1, 0].set(1.0))  # all cheap
    assert bool(moments.all_within_first_part(other, nk_c, jnp.sum(w), centers))
    both = jax.tree.map(lambda *a: jnp.stack(a), params, other)
    batched = jax.jit(jax.vmap(gmm_passes.pooled_acceptance, in_axes=(0, None, None, None)))
    for row in np.asarray(batched(both, nk_c, w, centers)).tolist():
        assert row == accepted


def test_the_softmax_cap_keeps_the_derivative_of_the_largest_logit(monkeypatch):
    """``moments.weighted_softmax`` caps its exponent at 0 (XLA's kernels may
    round the largest logit above the maximum they computed): the cap must not
    zero that logit's derivative. With the maximum taken an ulp low, as a
    kernel's rounding gives it, the gradient of the log-normaliser is still the
    softmax (a `where` cap gave 0 for the largest logit, and implicit gradients
    through fits 16 times off)."""
    logits = jnp.asarray([[0.3, -1.2, 2.5], [1.0, 4.0, -0.5]])
    w = jnp.ones(2)
    want = jax.nn.softmax(logits, axis=1)
    low = lambda x, axis, keepdims=False: jnp.nextafter(  # noqa: E731
        jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=keepdims)), -jnp.inf
    )
    monkeypatch.setattr(moments, "max_axis", low)
    grad = jax.grad(lambda z: jnp.sum(moments.weighted_softmax(z, w, axis=1)[1]))(logits)
    np.testing.assert_allclose(grad, want, rtol=1e-12)
    resp, _ = moments.weighted_softmax(logits, w, axis=1)
    np.testing.assert_allclose(resp, want, rtol=1e-12)


def _stats_error(a, b):
    """Largest error of any statistic relative to that statistic's largest entry."""
    return max(
        float(np.max(np.abs(np.asarray(u, np.float64) - v)) / np.max(np.abs(v)))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("sigma", [0.3, 1e-3], ids=["overlap", "tight"])
def test_responsibility_stats_by_moments_or_directly(covariance_type, sigma):
    """Statistics from given responsibilities (an HMM's posteriors): the moment
    product about the centre equals the direct route in float64; in float32
    ``"auto"`` takes it where accurate and falls back to the direct route on
    tight clusters, where the product alone loses accuracy. Under ``vmap``
    over restarts one inaccurate restart sends the whole batch direct."""
    x32, centers = _tight_clusters(np.float32, sigma, 1e3)
    x64 = jnp.asarray(x32, jnp.float64)
    cov = {"full": np.stack([np.eye(3)] * 3), "tied": np.eye(3), "diag": np.ones((3, 3)),
           "spherical": np.ones(3)}[covariance_type] * sigma**2  # fmt: skip
    params64 = gmm.make_params(np.full(3, 1 / 3), centers, cov, covariance_type)
    resp64, _ = gmm.e_step(params64, x64)
    resp64 = resp64 * jnp.asarray(np.random.default_rng(1).uniform(0.5, 2, (len(x32), 1)))
    center = jnp.mean(x64, axis=0)
    exact = responsibility_stats(params64, resp64, x64, None, "direct")
    for formulation in ("moments", "auto"):
        got = responsibility_stats(params64, resp64, x64, center, formulation)
        assert _stats_error(got, exact) < 1e-9, formulation

    params32, resp32, x, c = jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float32), (params64, resp64, x64, center)
    )
    run = jax.jit(responsibility_stats, static_argnums=4)
    auto_error = _stats_error(run(params32, resp32, x, c, "auto"), exact)
    moment_error = _stats_error(run(params32, resp32, x, c, "moments"), exact)
    direct_error = _stats_error(run(params32, resp32, x, None, "direct"), exact)
    if sigma == 1e-3:
        assert auto_error == direct_error and moment_error > 100 * auto_error
    else:
        assert auto_error == moment_error < 1e-4

    far = dataclasses.replace(params32, covariances=params32.covariances * 1e-6)
    far = gmm.make_params(far.weights, far.means, far.covariances, covariance_type)
    batch = jax.tree.map(lambda a, b: jnp.stack([a, b]), params32, far)

    def batched(formulation):
        run = jax.vmap(lambda p: responsibility_stats(p, resp32, x, c, formulation))
        return jax.tree.leaves(jax.jit(run)(batch))

    for u, v in zip(batched("auto"), batched("direct"), strict=True):
        np.testing.assert_array_equal(u, v)


def test_a_chunk_of_the_whole_data_that_fails_at_the_expected_shares_goes_direct(monkeypatch):
    """``feature_chunk``'s early check (``total``): a chunk that holds the whole
    data is checked at the shares ``π_k Σ w`` before its E-step. Here component 1
    lies a hundred standard deviations from the data, with half the weight but
    none of the rows: the check after the E-step (its ``n_kc ≈ 0``) keeps the
    moment route, the early one (``π_k Σ w``) sends the chunk direct. A chunk
    of part of the data, or no ``total``, keeps the moment route; under ``vmap``
    over restarts one restart that fails sends the batch direct. The direct
    route is marked (its log-likelihood replaced) to see which route ran."""
    from jaxem._src.gmm import passes as passes_module

    real = passes_module._direct_from_features

    def marked(*args):
        stats, ll = real(*args)
        return stats, jnp.full_like(ll, 12345.0)

    monkeypatch.setattr(passes_module, "_direct_from_features", marked)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2000, 3)), jnp.float32)
    w = jnp.ones(2000, jnp.float32)
    near = gmm.make_params([0.5, 0.5], [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]], np.ones(2), "spherical")
    far = gmm.make_params([0.5, 0.5], [[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]], np.ones(2), "spherical")
    near, far = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), (near, far))
    c = jnp.mean(x, axis=0)
    phi = moments.features(x - c, "spherical")

    @functools.partial(jax.jit, static_argnums=2)
    def direct(p, total, batched=False):
        def one(p):
            return passes_module.feature_chunk(p, phi, w, c, "auto", total)[1] == 12345.0

        return jax.vmap(one)(p) if batched else one(p)

    assert direct(far, jnp.sum(w))
    assert not direct(far, 2 * jnp.sum(w))  # a chunk of half the data
    assert not direct(far, None)
    assert not direct(near, jnp.sum(w))
    batch = jax.tree.map(lambda a, b: jnp.stack([a, b]), near, far)
    assert np.all(direct(batch, jnp.sum(w), True))
    assert not np.any(direct(batch, None, True))
    assert not np.any(direct(jax.tree.map(lambda a: jnp.stack([a, a]), near), jnp.sum(w), True))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_direct_pass_of_a_start_with_huge_logits_is_finite(covariance_type):
    """A start of ``reg_covar`` covariances at data rows, on data spread over
    hundreds of units: logits of about −1e10, where one float32 ulp is ~1000.
    XLA fused the logits into the softmax's maximum and exponential kernels,
    which rounded them apart, and the jitted pass gave NaN statistics (found by
    a sweep of restarts from ``random_from_data``). Each row then belongs to
    its nearest mean: the counts are those of the nearest means."""
    from jaxem._src.gmm import passes as gaussian_passes

    rng = np.random.default_rng(1)
    centres = rng.normal(scale=100.0, size=(4, 5))
    x = (centres[rng.integers(4, size=2000)] + rng.normal(size=(2000, 5))).astype(np.float32)
    means = x[[3, 500, 1000, 1500]]
    cov = np.eye(5) * 1e-6 if covariance_type == "full" else np.full(5, 1e-6)
    params = gmm.make_params(np.full(4, 0.25), means, np.stack([cov] * 4), covariance_type)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    w = jnp.ones(2000, jnp.float32)
    stats, ll = jax.jit(gaussian_passes.direct_chunk)(params, jnp.asarray(x), w)
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(np.asarray(stats.nk), np.bincount(nearest, minlength=4))
    assert np.isfinite(float(ll)) and float(ll) < -1e8
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(stats))


def _layout_of(fam, x, w, k):
    """``(prepared layout of moment features, context)`` as an in-memory fit builds them."""
    source = passes.InMemory(x, w)
    context = source.context(fam)
    prepared = source.prepare(fam, context, n_components=k)._replace(whole=None)
    assert not isinstance(prepared.items, layout.RowChunk)
    return prepared, context


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_pass_over_all_chunks_at_once_equals_the_loop(covariance_type, small_layout):
    """``passes.layout_pass`` (every chunk of a layout in a few products) gives
    the statistics and log-likelihood of the loop over the chunks, each about
    its own centre, with sample weights, in float64; and the same under
    ``vmap`` over restarts as one restart at a time."""
    x = jnp.asarray(blobs(seed=6, n=2000, d=3, k=3, spread=8.0) + 30.0)
    w = jnp.asarray(np.random.default_rng(2).uniform(0.5, 2.0, len(x)))
    for formulation in ("moments", "auto"):
        fam = gmm_family(covariance_type, formulation=formulation)
        prepared, context = _layout_of(fam, x, w, 3)
        (phi, centers), weights = prepared.items, prepared.weights
        starts = [
            gmm.make_params(*random_params(s, 3, 3, covariance_type, x), covariance_type)
            for s in (3, 4)
        ]
        flat = jax.jit(
            functools.partial(
                gmm_passes.layout_pass,
                phi=phi,
                w=weights,
                centers=centers,
                formulation=formulation,
            )
        )
        for params in starts:
            (a, la), (b, lb) = passes.chunkwise_pass(fam, params, prepared, context), flat(params)
            assert _stats_error(b, a) <= 1e-11
            np.testing.assert_allclose(lb, la, rtol=1e-12)
        both = jax.tree.map(lambda *a: jnp.stack(a), *starts)
        batched, lls = jax.jit(jax.vmap(flat))(both)
        for i, params in enumerate(starts):
            one, ll = flat(params)
            assert _stats_error(_nth(batched, i), one) <= 1e-12
            np.testing.assert_allclose(lls[i], ll, rtol=1e-12)


def _nth(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def test_a_chunk_that_fails_its_check_goes_direct_in_the_pass_over_all_chunks(small_layout):
    """A chunk whose features lie about a centre far from its rows' component
    (moved a thousand standard deviations: exact algebra, but float32 would
    lose the statistics) fails the pooled check in ``layout_pass`` as in the
    loop, and is recomputed by the direct route: both give the direct pass's
    statistics to float32 rounding (without the direct route its rows are
    missing from them)."""
    x = jnp.asarray(blobs(seed=7, n=2000, d=2, k=2, spread=6.0), jnp.float32)
    w = jnp.ones(len(x), jnp.float32)
    fam = gmm_family("full", formulation="auto")
    prepared, context = _layout_of(fam, x, w, 2)
    (phi, centers), weights = prepared.items, prepared.weights
    far = centers[0] + 1000.0
    rows = gmm_passes._linear_part(phi[0], 2) + centers[0] - far  # chunk 0 about `far`
    phi = phi.at[0].set(moments.features(rows, "full"))
    centers = centers.at[0].set(far)
    prepared = prepared._replace(items=(phi, centers))
    params = gmm.fit(jax.random.key(0), x, 2, max_iter=5).params
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    loop, ll_loop = passes.chunkwise_pass(fam, params, prepared, context)
    flat, ll_flat = jax.jit(gmm_passes.layout_pass, static_argnums=4)(
        params, phi, weights, centers, "auto"
    )
    direct, ll_mean = direct_pass(params, x, w)  # about the means, as the others
    assert float(jnp.sum(weights[0])) > 0  # the chunk holds rows
    for stats, ll_sum in ((loop, ll_loop), (flat, ll_flat)):
        np.testing.assert_allclose(stats.nk, direct.nk, rtol=1e-5)
        # Σ r (x − μ) is nearly zero: its error against the data's spread
        error = np.max(np.abs(np.asarray(stats.sum_x) - direct.sum_x)) / float(jnp.sum(w))
        assert error <= 1e-5 * float(jnp.max(jnp.std(x, axis=0)))
        np.testing.assert_allclose(stats.sum_xx, direct.sum_xx, rtol=1e-5)
        np.testing.assert_allclose(ll_sum, ll_mean * jnp.sum(w), rtol=1e-6)
