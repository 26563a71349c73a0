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
