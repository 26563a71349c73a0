"""Chunked and unchunked paths agree; chunking bounds the intermediates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, random_params

from jaxem import gmm
from jaxem._src import chunking as _chunking
from jaxem.gmm import fit_from


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Force chunks of the minimum 256 rows."""
    monkeypatch.setattr(_chunking, "TARGET_CHUNK_ELEMENTS", 1)


def test_chunk_rows():
    assert _chunking.chunk_rows(100, 10) == 100
    assert _chunking.chunk_rows(10**6, 1000) == 600
    assert _chunking.chunk_rows(10**6, 10**6) == 256


def test_chunked_sum_and_map_handle_ragged_ends():
    x = jnp.arange(1000.0).reshape(500, 2)
    w = jnp.ones(500)
    total = _chunking.chunked_sum(lambda xb, wb: jnp.sum(xb * wb[:, None], 0), (x, w), 64)
    np.testing.assert_allclose(total, x.sum(0))
    mapped = _chunking.chunked_map(lambda xb: xb[:, ::-1], x, 64)
    np.testing.assert_array_equal(mapped, x[:, ::-1])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunked_densities_and_steps_equal_unchunked(covariance_type, monkeypatch):
    x = blobs(seed=0, n=1000, d=3, k=3)
    params = gmm.make_params(*random_params(1, 3, 3, covariance_type, x), covariance_type)

    def everything():
        resp, ll = gmm.e_step(params, x)
        return (
            gmm.log_prob(params, x),
            gmm.predict_proba(params, x),
            gmm.predict(params, x),
            resp,
            ll,
            gmm.m_step(resp, x, covariance_type=covariance_type),
            fit_from(params, jnp.asarray(x), tol=0.0, reg_covar=1e-6, max_iter=3),
        )

    whole = everything()
    monkeypatch.setattr(_chunking, "TARGET_CHUNK_ELEMENTS", 1)
    chunked = everything()
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(chunked), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_chunkwise_pass_stops_after_the_last_chunk_of_positive_weight():
    """A layout's chunks (jaxem._src.sources.chunkwise_pass): a chunk of weight
    zero before the last one of positive weight counts as absent, and the
    chunks after it are never evaluated (their NaN features would show)."""
    from jaxem._src.family import ChunkedRows
    from jaxem._src.gmm import moments
    from jaxem._src.gmm.fit import family
    from jaxem._src.sources import InMemory, chunkwise_pass

    x = jnp.asarray(blobs(seed=1, n=24, d=2, k=2))
    params = gmm.make_params(*random_params(2, 2, 2, "full", x), "full")
    fam = family("full", formulation="moments")
    context = InMemory(x, jnp.ones(24)).context(fam)
    chunks = x.reshape(3, 8, 2)
    centers = jnp.mean(chunks, axis=1)
    phi = jax.vmap(lambda xb, c: moments.features(xb - c, "full"))(chunks, centers)
    w = jnp.ones((3, 8)).at[1].set(0.0)  # the middle chunk absent
    nan = jnp.full_like(phi[:2], jnp.nan)  # two chunks of padding last
    features = jnp.concatenate([phi, nan])
    weights = jnp.concatenate([w, jnp.zeros((2, 8))])
    layout = ChunkedRows((features, jnp.concatenate([centers, centers[:2]])), weights)
    stats, ll = chunkwise_pass(fam, params, layout, context)

    def one(i):
        return fam.layout_pass(params, (phi[i], centers[i]), w[i], context, None)[0]

    expected = jax.tree.map(jnp.add, one(0), one(2))
    for a, b in zip(jax.tree.leaves((stats, ll)), jax.tree.leaves(expected), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_chunked_data_errors_say_what_to_do():
    """select on chunks failed with "x must be a real numeric array; got
    ChunkedData", and a 1-D chunk asked for shape (rows, None)."""
    import jaxem

    x = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(TypeError, match="select needs the data in memory; got ChunkedData"):
        gmm.select(jax.random.key(0), jaxem.chunks([x[:20], x[20:]]), n_components=[1, 2])
    with pytest.raises(ValueError, match=r"\(rows, n_features\).*xb\[:, None\]"):
        gmm.fit(jax.random.key(0), jaxem.chunks([x[:20, 0], x[20:, 0]]), 2)


def test_relative_rule_of_chunked_fits_is_mclusts():
    """mclust's rule ``N|ΔL| < tol (1 + N|L|)`` needs the total weight N: chunked
    fits applied ``|ΔL| < tol |L|`` instead, and a fit whose mean
    log-likelihood ends near 0 stopped two iterations later than in memory."""
    import jaxem

    rng = np.random.default_rng(1)
    x = 0.2142 * np.concatenate([rng.normal(0, 1, (15, 1)), rng.normal(2.5, 1, (15, 1))])
    family = gmm.family("full", reg_covar=1e-6)
    start = gmm.make_params(
        jnp.array([0.5, 0.5]), 0.2142 * jnp.array([[-0.5], [0.5]]), 0.2142**2 * jnp.ones((2, 1, 1))
    )
    kwargs = dict(start=start, tol=1e-3, max_iter=500, criterion="relative")
    memory = jaxem.fit(family, None, x, **kwargs)
    chunked = jaxem.fit(family, None, jaxem.chunks(x, 7), **kwargs)
    assert int(chunked.n_iter) == int(memory.n_iter)
    history = np.asarray(memory.history)[: int(memory.n_iter)]
    n = len(x)

    def stops(i):
        return n * abs(history[i] - history[i - 1]) < 1e-3 * (1 + n * abs(history[i]))

    assert stops(len(history) - 1) and not any(stops(i) for i in range(1, len(history) - 1))
