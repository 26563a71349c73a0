"""Out-of-core (fit_chunks), online (fit_online) and sharded (fit_sharded) EM."""

import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import blobs

import jaxem
from jaxem import gmm
from jaxem._src.gmm.passes import direct_pass
from jaxem.gmm import fit_from

COV_TYPES = ("full", "tied", "diag", "spherical")


def _data(n=600, seed=0, offset=10.0):
    rng = np.random.default_rng(seed)
    parts = [
        rng.normal([-3, 0], 1.0, (n // 3, 2)),
        rng.normal([2, 1], 0.5, (n // 3, 2)),
        rng.normal([0, 5], 1.0, (n - 2 * (n // 3), 2)),
    ]
    x = np.concatenate(parts) + offset
    rng.shuffle(x)
    return x


def _assert_same_result(res, ref, rtol=1e-9, atol=1e-10):
    np.testing.assert_array_equal(int(res.n_iter), int(ref.n_iter))
    np.testing.assert_array_equal(bool(res.converged), bool(ref.converged))
    np.testing.assert_allclose(res.history, ref.history, rtol=rtol, atol=atol)  # NaN at same places
    np.testing.assert_allclose(res.log_likelihood, ref.log_likelihood, rtol=rtol, atol=atol)
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_allclose(
            getattr(res.params, name), getattr(ref.params, name), rtol=1e-7, atol=1e-9, err_msg=name
        )


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_fit_chunks_equals_in_memory_em(covariance_type):
    x = _data()
    start = gmm.init(
        jax.random.key(0), x, 3, covariance_type=covariance_type, method="random_from_data"
    )
    ref = fit_from(start, jnp.asarray(x), tol=1e-6, reg_covar=1e-6, max_iter=200)
    # uneven chunks: the last is padded with zero weights, the sums are unchanged
    chunks = [x[:250], x[250:500], x[500:]]
    res = gmm.fit_chunks(start, chunks, tol=1e-6, reg_covar=1e-6, max_iter=200)
    assert bool(res.converged)
    _assert_same_result(res, ref)


def test_fit_chunks_from_memmap_and_callable_and_stops_at_max_iter(tmp_path):
    x = _data()
    path = tmp_path / "x.f64"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=x.shape)
    start = gmm.init(jax.random.key(1), x, 3, covariance_type="diag", method="random_from_data")
    ref = fit_from(start, jnp.asarray(x), tol=0.0, reg_covar=1e-6, max_iter=7)
    passes = []
    res = gmm.fit_chunks(start, mm, chunk_size=128, tol=0.0, max_iter=7, callback=passes.append)
    _assert_same_result(res, ref)
    assert not bool(res.converged) and int(res.n_iter) == 7
    assert [p.iteration for p in passes] == [1, 2, 3, 4, 5, 6, 7, 0]
    assert passes[0].n_chunks == 5 and passes[0].n_samples == 600
    # the data's centre comes from a summary pass first, so every EM pass can
    # use the moment formulation (its accuracy check holds here)
    assert {p.formulation for p in passes} == {"moments"}
    res2 = gmm.fit_chunks(
        start, lambda: (x[i : i + 200] for i in range(0, 600, 200)), tol=0.0, max_iter=7
    )
    _assert_same_result(res2, ref)


def test_fit_chunks_with_sample_weights_and_prior():
    x = _data()
    w = np.random.default_rng(3).uniform(0.5, 2.0, x.shape[0])
    start = gmm.init(jax.random.key(2), x, 3, method="random_from_data")
    ref = fit_from(
        start, jnp.asarray(x), tol=1e-6, reg_covar=1e-6, max_iter=50, sample_weight=jnp.asarray(w)
    )
    res = gmm.fit_chunks(start, gmm.array_chunks(x, 200, w), tol=1e-6, max_iter=50)
    _assert_same_result(res, ref)
    # with a prior, every M-step is the MAP step
    prior = gmm.default_prior(x, 3, "full", shrinkage=5.0)
    one = gmm.fit_chunks(start, [x], max_iter=1, prior=prior)
    stats, _ = direct_pass(start, jnp.asarray(x), jnp.ones(x.shape[0]))
    expected = gmm.maximize(stats, reg_covar=1e-6, prior=prior)
    np.testing.assert_allclose(one.params.covariances, expected.covariances, rtol=1e-10)


def test_fit_chunks_float32_matches_float64():
    x = _data(offset=1000.0)  # far from the origin: moments need the accuracy check
    start = gmm.init(jax.random.key(0), x, 3, method="random_from_data")
    ref = gmm.fit_chunks(start, x, chunk_size=256, tol=1e-8, max_iter=30)
    start32 = jax.tree.map(lambda a: a.astype(jnp.float32), start)
    res = gmm.fit_chunks(start32, x.astype(np.float32), chunk_size=256, tol=1e-8, max_iter=30)
    assert res.params.dtype == jnp.float32
    np.testing.assert_allclose(res.log_likelihood, ref.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(res.params.means, ref.params.means, rtol=1e-5)


def test_float64_chunks_without_x64_work_in_float32_as_in_memory_data():
    # The chunked fit once took the first chunk's NumPy float64 as its working
    # dtype with x64 off: a truncation warning per array it built, and none of
    # float32's warning that the tolerance is below its resolution.
    x = _data()
    chunks = [x[:200], x[200:]]
    with jax.enable_x64(False), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunked = jaxem.fit(
            gmm.family("full"), jax.random.key(0), jaxem.chunks(chunks), n_components=3, tol=1e-10
        )
        in_memory = jaxem.fit(
            gmm.family("full"), jax.random.key(0), x.astype(np.float32), n_components=3, tol=1e-10
        )
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "truncated" in m], messages
    assert sum("below the resolution of a float32" in m for m in messages) == 2, messages
    assert chunked.params.means.dtype == np.float32
    np.testing.assert_allclose(chunked.log_likelihood, in_memory.log_likelihood, rtol=1e-5)


def test_fit_chunks_rejects_bad_input():
    x = _data()
    start = gmm.init(jax.random.key(0), x, 3)
    with pytest.raises(TypeError, match="re-iterable"):
        gmm.fit_chunks(start, iter([x]))
    with pytest.raises(ValueError, match="shape"):
        gmm.fit_chunks(start, [x[:, :1]])
    with pytest.raises(ValueError, match="formulation"):
        gmm.fit_chunks(start, [x], formulation="fast")


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_reshift_is_exact(covariance_type):
    x = jnp.asarray(_data(60))
    resp = jax.nn.softmax(jax.random.normal(jax.random.key(0), (60, 3)), axis=1)
    a = jax.random.normal(jax.random.key(1), (3, 2))
    b = jax.random.normal(jax.random.key(2), (3, 2)) + 10
    about_a = gmm.suff_stats(resp, x, covariance_type=covariance_type, shift=a)
    about_b = gmm.suff_stats(resp, x, covariance_type=covariance_type, shift=b)
    moved = gmm.reshift(about_a, b)
    np.testing.assert_allclose(moved.sum_x, about_b.sum_x, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(moved.sum_xx, about_b.sum_xx, rtol=1e-10, atol=1e-8)


def _stream(true, n_batches, batch, seed):
    keys = jax.random.split(jax.random.key(seed), n_batches)
    return [np.asarray(gmm.sample(k, true, batch)[0]) for k in keys]


@pytest.mark.parametrize(
    "covariance_type", ["spherical", pytest.param("full", marks=pytest.mark.slow)]
)
def test_online_em_reaches_batch_maximum_likelihood(covariance_type):
    true = gmm.make_params(
        jnp.array([0.3, 0.5, 0.2]),
        jnp.array([[-3.0, 0.0], [2.0, 1.0], [0.0, 5.0]]),
        jnp.stack([jnp.eye(2), jnp.array([[1.0, 0.5], [0.5, 1.0]]), 0.5 * jnp.eye(2)]),
    )
    batches = _stream(true, 120, 500, seed=0)
    x = np.concatenate(batches)
    start = gmm.init(jax.random.key(1), batches[0], 3, covariance_type=covariance_type)
    batch_em = fit_from(start, jnp.asarray(x), tol=1e-9, reg_covar=1e-6, max_iter=300)
    online = gmm.fit_online(start, iter(batches), polyak=True, polyak_start=30)
    gap = float(batch_em.log_likelihood) - float(gmm.e_step(online.params, x)[1])
    assert -1e-9 < gap < 1e-3
    assert online.samples_seen[-1] == 60_000 and online.n_updates == 120 - 5
    assert online.batch_log_likelihood.shape == (120,)
    # the last iterate alone is close too, averaging helps
    gap_last = float(batch_em.log_likelihood) - float(gmm.e_step(online.last_params, x)[1])
    assert gap < gap_last < 5e-3


@pytest.mark.parametrize("covariance_type", ["tied", "diag"])
def test_online_em_weights_and_prior(covariance_type):
    x = _data(400)
    batches = [x[i : i + 100] for i in range(0, 400, 100)] * 5
    start = gmm.init(jax.random.key(0), x, 3, covariance_type=covariance_type)
    plain = gmm.fit_online(start, batches, warmup=2)
    # constant weights change nothing (statistics are normalised per batch)
    weighted = gmm.fit_online(start, [(b, np.full(100, 3.0)) for b in batches], warmup=2)
    np.testing.assert_allclose(weighted.params.means, plain.params.means, rtol=1e-10)
    assert weighted.samples_seen[-1] == 3 * plain.samples_seen[-1]
    # a prior pulls the fit towards its mean and scale, and fades with the data seen
    prior = gmm.default_prior(x, 3, covariance_type, shrinkage=50.0, dof=50.0)
    with_prior = gmm.fit_online(start, batches, warmup=2, prior=prior)
    assert np.all(np.isfinite(with_prior.params.covariances))
    assert not np.allclose(with_prior.params.covariances, plain.params.covariances)


def test_online_em_validates():
    start = gmm.init(jax.random.key(0), _data(), 3)
    with pytest.raises(ValueError, match="alpha"):
        gmm.fit_online(start, [_data()], alpha=0.5)
    with pytest.raises(ValueError, match="no batches"):
        gmm.fit_online(start, [])


_SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jaxem import gmm
    from jaxem.gmm import fit_sharded
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, (301, 2)), rng.normal(2, 0.5, (400, 2)),
                        rng.normal([0, 5], 1, (300, 2))]) + 10  # 1001 rows: padded to 1004
    mesh = jax.make_mesh((4,), ("data",))
    for ct in ("full",):
        ref = gmm.fit(jax.random.key(0), x, 3, covariance_type=ct, n_init=2, tol=1e-8)
        res = fit_sharded(jax.random.key(0), x, 3, mesh, covariance_type=ct, n_init=2, tol=1e-8)
        assert int(res.n_iter) == int(ref.n_iter) and bool(res.converged)
        np.testing.assert_allclose(res.restart_log_likelihoods, ref.restart_log_likelihoods,
                                   rtol=1e-10)
        np.testing.assert_allclose(res.params.means, ref.params.means, rtol=1e-9)
        np.testing.assert_allclose(res.params.covariances, ref.params.covariances, rtol=1e-8,
                                   atol=1e-10)
        np.testing.assert_allclose(res.history, ref.history, rtol=1e-10)
    # a start from an earlier fit (its arrays on one device)
    import jaxem
    warm = jaxem.fit(gmm.family("full"), None, jaxem.sharded(x, mesh), start=ref.params, tol=1e-8)
    np.testing.assert_allclose(warm.log_likelihood, ref.log_likelihood, rtol=1e-9)
    # initialisation on a random subset of rows gathered from the shards
    sub = fit_sharded(jax.random.key(0), x, 3, mesh, n_init=2, tol=1e-8, init_size=200)
    assert bool(sub.converged)
    np.testing.assert_allclose(sub.log_likelihood, ref.log_likelihood, rtol=1e-6)
    print("OK")
    """
)


@pytest.mark.slow  # the default run checks sharded fits in tests/test_engine_contract.py
def test_sharded_fit_equals_single_device_fit():
    env = dict(
        os.environ,
        XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK" in done.stdout


def test_chunks_are_checked_as_data_in_memory():
    """Chunked data reached the passes unchecked: NaN in a chunk gave a NaN fit,
    negative weights and non-count Poisson data were fitted silently, weights
    all zero gave NaN, an empty first chunk an IndexError, and init_size < K
    fewer components (found by a sweep). Each is now the in-memory error; an
    empty chunk is skipped."""
    import jaxem
    from jaxem import mixtures

    x = np.asarray(blobs(seed=0, n=300, d=2, k=3))
    family = gmm.family("full")

    def fit(chunks, fam=family, **kwargs):
        return jaxem.fit(fam, jax.random.key(0), jaxem.chunks(chunks, **kwargs), 3, max_iter=2)

    bad = x.copy()
    bad[250, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit([x[:100], x[100:200], bad[200:]])
    with pytest.raises(ValueError, match="non-negative"):
        fit([(x[:150], np.ones(150)), (x[150:], -np.ones(150))])
    with pytest.raises(ValueError, match="all zero"):
        fit([(x, np.zeros(300))])
    with pytest.raises(ValueError):
        fit([np.full((10, 2), 2.5)], fam=mixtures.Poisson())
    with pytest.raises(ValueError, match="init_size"):
        fit([x], init_size=2)
    empty_first = fit([x[:0], x[:150], x[150:]])
    np.testing.assert_allclose(
        empty_first.log_likelihood, fit([x[:150], x[150:]]).log_likelihood, rtol=1e-12
    )


def test_online_batches_of_no_weight_are_errors():
    """A batch whose weights are all zero divided by its total (every later
    parameter NaN; a first such batch a ZeroDivisionError), and negative weights
    passed (found by a sweep)."""
    import jaxem

    x = np.asarray(blobs(seed=0, n=200, d=2, k=2))
    start = gmm.init(jax.random.key(0), x, 2)
    for weights in (np.zeros(50), -np.ones(50)):
        batches = [(x[i : i + 50], np.ones(50)) for i in range(0, 150, 50)]
        batches.append((x[150:], weights))
        with pytest.raises(ValueError, match="sample weights"):
            jaxem.fit_online(gmm.family("full"), start, batches, warmup=1)


def test_polyak_average_keeps_float32_digits_far_from_the_origin():
    """The running mean ``a + (b − a)/m`` lost every increment below half an ulp
    of the parameters: float32 means 1e4 from the origin drifted 3e-2 from the
    mean of their own iterates (found by a sweep). It is now accumulated as
    differences from the first averaged iterate."""
    import jaxem

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(6000, 2)), rng.normal(size=(6000, 2)) + 4.0]) + 1e4
    x = x[rng.permutation(len(x))].astype(np.float32)
    start = gmm.init(jax.random.key(0), jnp.asarray(x[:500]), 2)
    start = jax.tree.map(lambda a: a.astype(np.float32) if a.dtype == np.float64 else a, start)
    iterates = []

    def record(info):
        iterates.append(np.asarray(info.params.means, np.float64))

    batches = [x[i : i + 20] for i in range(0, len(x), 20)]
    last = jaxem.fit_online(gmm.family("full"), start, batches, warmup=2, callback=record)
    result = jaxem.fit_online(
        gmm.family("full"), start, batches, warmup=2, polyak=True, polyak_start=50
    )
    # the callback of the plain run sees each iterate; average those after the start
    n_updates = last.n_updates
    averaged = np.mean(iterates[len(iterates) - (n_updates - 50) - 1 :], axis=0)
    ulp = np.spacing(np.float32(1e4))
    assert np.max(np.abs(np.asarray(result.params.means, np.float64) - averaged)) < 2 * ulp


def test_online_partial_last_batch_steps_in_proportion_to_its_weight():
    """A stream whose length is not a multiple of the batch size ends with a
    short batch. It once took a full step γ_t: one trailing row moved the final
    mean log-likelihood by ~0.02 nats (found by a sweep). The step is now per
    unit of weight: that row moves the fit about as much as one row of a full
    batch, and batches of equal weight still step γ_t exactly."""
    import jaxem

    x = np.asarray(blobs(seed=0, n=4001, d=2, k=3))
    start = gmm.init(jax.random.key(0), x[:400], 3)
    family = gmm.family("full")
    full = [x[i : i + 200] for i in range(0, 4000, 200)]
    without = jaxem.fit_online(family, start, full, warmup=2)
    with_row = jaxem.fit_online(family, start, [*full, x[4000:]], warmup=2)
    assert with_row.n_updates == without.n_updates + 1
    moved = np.max(np.abs(np.asarray(with_row.params.means - without.params.means)))
    assert moved < 1e-3, moved  # a full step on the one row: 0.04
    # equal weights: the weighted stream equals the unweighted one to rounding
    weighted = jaxem.fit_online(family, start, [(b, np.full(200, 2.0)) for b in full], warmup=2)
    np.testing.assert_allclose(weighted.params.means, without.params.means, rtol=1e-10)


def test_online_step_sizes_take_the_fit_s_dtype():
    """γ_t was float32 even in float64 fits: a float64 fit_online was 1.3e-8 from
    exact stepwise EM."""
    from jaxem._src.online import step_size

    exact = (7 + 2) ** -0.6
    assert float(step_size(7)) != exact and abs(float(step_size(7)) - exact) < 1e-7
    assert float(step_size(7, dtype=jnp.float64)) == exact
