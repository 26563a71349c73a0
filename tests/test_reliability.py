"""Misuse gets errors that name the argument and the fix; float32's resolution is
recognised; batched results answer like single ones."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import blobs

import jaxem
from jaxem import gmm

X = blobs(seed=0, n=120, d=2, k=2)


def test_swapped_key_and_data_name_the_order():
    with pytest.raises(TypeError, match="key comes first"):
        gmm.fit(X, jax.random.key(0), 2)
    with pytest.raises(TypeError, match="key comes first"):
        jaxem.fit(gmm.family(), X, jax.random.key(0), 2)


def test_swapped_em_steps_name_the_order():
    start = gmm.init(jax.random.key(0), X, 2)
    with pytest.raises(TypeError, match="swapped"):
        jaxem.em(gmm.m_step, gmm.e_step, start, X)
    with pytest.raises(TypeError, match="two step functions first"):
        jaxem.em(start, gmm.e_step, gmm.m_step, X)


def test_fit_takes_a_family_first():
    with pytest.raises(TypeError, match="model family first"):
        jaxem.fit(jax.random.key(0), X, 2, gmm.family())


def test_float32_tol_below_resolution_warns_and_stops_at_resolution():
    x32 = np.asarray(X, np.float32)
    with pytest.warns(UserWarning, match="below the resolution") as caught:
        result = gmm.fit(jax.random.key(0), x32, 2, tol=1e-10, max_iter=500)
    assert [w.filename for w in caught] == [__file__]  # once, at the caller's line
    assert result.params.dtype == jnp.float32
    n = int(result.n_iter)
    assert bool(result.converged) and n < 500
    history = np.asarray(result.history[:n], np.float64)
    # it stopped at a change within float32's rounding of the log-likelihood
    last_change = abs(history[-1] - history[-2])
    assert last_change <= 16 * np.finfo(np.float32).eps * max(1, abs(history[-1]))
    # the generic loop too
    m_step = functools.partial(gmm.m_step, covariance_type="full")
    start = jax.tree.map(lambda a: a.astype(jnp.float32), gmm.init(jax.random.key(1), X, 2))
    with pytest.warns(UserWarning, match="below the resolution") as caught:
        em = jaxem.em(gmm.e_step, m_step, start, x32, tol=1e-10, max_iter=500)
    assert [w.filename for w in caught] == [__file__]
    assert bool(em.converged) and int(em.n_iter) < 500


def test_status_names_the_outcome():
    result = gmm.fit(jax.random.key(0), X, 2, max_iter=2, tol=0.0)
    assert result.status_name == "max_iter" and int(result.status) == jaxem.MAX_ITER
    assert not bool(result.converged)
    done = gmm.fit(jax.random.key(0), X, 2)
    assert done.status_name == "converged" and int(done.status) == jaxem.CONVERGED


def test_batched_fit_results_name_their_initializers():
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.vmap(lambda k: gmm.fit(k, X, 2, n_init=2, init="random_from_data"))(keys)
    names = batched.initializer
    assert names.shape == (3,) and set(names.tolist()) == {"random_from_data"}
    assert np.asarray(batched.degenerate).shape == (3,)
    assert batched.status_name.shape == (3,)
    single = gmm.fit(keys[0], X, 2, n_init=2, init="random_from_data")
    assert single.initializer == "random_from_data" and single.degenerate.shape == ()


def test_reverse_mode_through_a_fit_names_forward_mode_and_forward_mode_works():
    x = jnp.asarray(X)

    def loss(x):
        return gmm.fit(jax.random.key(0), x, 2, tol=1e-10, max_iter=300).log_likelihood

    with pytest.raises(TypeError, match=r"forward mode instead \(jax.jvp, jax.jacfwd"):
        jax.grad(loss)(x)
    tangent = jnp.zeros_like(x).at[5, 1].set(1.0)
    _, derivative = jax.jvp(loss, (x,), (tangent,))
    eps = 1e-6
    central = (loss(x + eps * tangent) - loss(x - eps * tangent)) / (2 * eps)
    np.testing.assert_allclose(derivative, central, rtol=1e-5)

    def em_loss(reg):
        m_step = functools.partial(gmm.m_step, reg_covar=reg)
        start = gmm.init(jax.random.key(1), X, 2)
        return jaxem.em(gmm.e_step, m_step, start, X, tol=1e-12, max_iter=300).log_likelihood

    with pytest.raises(TypeError, match="forward mode"):
        jax.grad(em_loss)(1e-3)
    slope = jax.jacfwd(em_loss)(1e-3)  # through a value the steps close over
    central = (em_loss(1e-3 + eps) - em_loss(1e-3 - eps)) / (2 * eps)
    np.testing.assert_allclose(slope, central, rtol=1e-5)


def test_swapped_m_step_arguments_name_the_order():
    x = np.random.default_rng(0).normal(size=(20, 2))
    resp = np.full((20, 2), 0.5)
    assert np.allclose(gmm.m_step(resp, x).weights, 0.5)
    with pytest.raises(ValueError, match=r"swap.*m_step\(resp, x\)"):
        gmm.m_step(x, resp)
