"""The generic EM loop: stopping rule, jit, vmap, no recompilation, any model."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, random_params

import jaxem
from jaxem import gmm


def _start(covariance_type, seed=0, x=None, k=3, d=2):
    return gmm.make_params(*random_params(seed, k, d, covariance_type, x), covariance_type)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_likelihood_never_decreases(covariance_type):
    x = blobs(seed=1, n=200, d=2, k=3)
    m_step = functools.partial(gmm.m_step, covariance_type=covariance_type)
    result = jaxem.em(gmm.e_step, m_step, _start(covariance_type, 2, x), x, tol=0.0, max_iter=60)
    history = np.asarray(result.history)
    assert int(result.n_iter) == 60 and not bool(result.converged)
    assert np.all(np.diff(history) >= -1e-12)
    assert float(result.log_likelihood) >= history[-1] - 1e-12


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_jit_equals_eager(covariance_type):
    x = blobs(seed=3, n=150, d=2, k=3)
    m_step = functools.partial(gmm.m_step, covariance_type=covariance_type)
    run = functools.partial(jaxem.em, gmm.e_step, m_step, tol=1e-5, max_iter=50)
    start = _start(covariance_type, 4, x)
    eager = run(start, x)
    jitted = jax.jit(run)(start, x)
    assert int(eager.n_iter) == int(jitted.n_iter)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_vmap_over_starts_equals_loop():
    x = blobs(seed=5, n=200, d=2, k=3)
    starts = [_start("full", s, x) for s in range(4)]
    batched_start = jax.tree.map(lambda *a: jnp.stack(a), *starts)
    run = functools.partial(jaxem.em, gmm.e_step, gmm.m_step, x=x, tol=1e-4, max_iter=80)
    batched = jax.jit(jax.vmap(run))(batched_start)
    n_iters = set()
    for i, start in enumerate(starts):
        single = run(start)
        n_iters.add(int(single.n_iter))
        assert int(batched.n_iter[i]) == int(single.n_iter)
        assert bool(batched.converged[i]) == bool(single.converged)
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-9, atol=1e-12)
    assert len(n_iters) > 1, "starts should stop at different iterations for this test to bite"


def test_no_recompilation_when_numbers_change():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def fit(params, x, tol, reg_covar):
        m_step = functools.partial(gmm.m_step, reg_covar=reg_covar)
        return jaxem.em(gmm.e_step, m_step, params, x, tol=tol, max_iter=30)

    chex.clear_trace_counter()
    x = blobs(seed=6, n=100, d=2, k=2)
    start = _start("full", 7, x, k=2)
    fit(start, x, 1e-3, 1e-6)
    fit(start, x * 1.5, 1e-4, 1e-3)
    fit(_start("full", 8, x, k=2), x + 1.0, 0.0, 0.0)
    with pytest.raises(AssertionError):
        fit(start, x[:50], 1e-3, 1e-6)  # a new shape must retrace


def test_loop_is_generic_over_any_model():
    """Fit a univariate Poisson mixture: the loop needs only the two steps."""

    def e_step(rates, x):
        logp = x * jnp.log(rates[1]) - rates[1] - jax.scipy.special.gammaln(x + 1)
        logp = logp + jnp.log(rates[0])
        norm = jax.nn.logsumexp(logp, axis=1, keepdims=True)
        return jnp.exp(logp - norm), jnp.mean(norm)

    def m_step(resp, x):
        nk = resp.sum(0)
        return nk / nk.sum(), (resp * x).sum(0) / nk

    key1, key2 = jax.random.split(jax.random.key(0))
    x = jnp.concatenate(
        [jax.random.poisson(key1, 2.0, (500, 1)), jax.random.poisson(key2, 15.0, (500, 1))]
    ).astype(jnp.float64)
    start = (jnp.array([0.5, 0.5]), jnp.array([1.0, 5.0]))
    result = jax.jit(functools.partial(jaxem.em, e_step, m_step, tol=1e-10, max_iter=500))(start, x)
    assert bool(result.converged)
    weights, rates = result.params
    np.testing.assert_allclose(np.sort(rates), [2.0, 15.0], rtol=0.1)
    np.testing.assert_allclose(weights, [0.5, 0.5], atol=0.05)


def test_nan_log_likelihood_stops_and_is_reported():
    def e_step(p, x):
        return p, jnp.where(p > 2, jnp.nan, -1.0 / p)

    result = jaxem.em(
        e_step, lambda e, x: e + 1.0, jnp.asarray(1.0), jnp.zeros((1, 1)), tol=0.0, max_iter=10
    )
    assert int(result.n_iter) == 3 and not bool(result.converged)


def _geometric(rate, criterion, tol, max_iter=2000):
    """A loop whose log-likelihood climbs to 0 as ``-rate**i`` (EM's linear
    convergence at ``rate``)."""
    return jaxem.iterate(
        lambda g: (g * rate, -g),
        lambda g: -g,
        jnp.asarray(1.0),
        tol=tol,
        max_iter=max_iter,
        criterion=criterion,
    )


@pytest.mark.parametrize("rate", [0.5, 0.9, 0.99])
def test_aitken_rule_stops_when_the_gain_still_to_come_is_under_tol(rate):
    tol = 1e-6
    result = _geometric(rate, "aitken", tol)
    n = int(result.n_iter)
    assert bool(result.converged) and n < 2000
    # Stopped at the first iteration whose predecessor is within tol of the
    # limit (Aitken's extrapolation is exact on a geometric sequence).
    left = -np.asarray(result.history)[:n]
    assert left[n - 2] < tol * (1 + 1e-9) and left[n - 3] >= tol
    change = _geometric(rate, "change", tol)
    # The change rule stops with at least rate³ / (1 - rate) * tol still to gain.
    assert -float(change.log_likelihood) >= tol * rate**3 / (1 - rate) * (1 - 1e-9)


def test_aitken_rule_stops_at_a_fixed_point_and_not_while_steps_grow():
    fixed = jaxem.iterate(
        lambda p: (p, -1.0),
        lambda p: -1.0,
        jnp.asarray(0.0),
        tol=0.0,
        max_iter=50,
        criterion="aitken",
    )
    assert int(fixed.n_iter) == 2 and bool(fixed.converged)
    # increments doubling each step: the extrapolation is meaningless, keep going
    growing = jaxem.iterate(
        lambda g: (2 * g, g),
        lambda g: g,
        jnp.asarray(1.0),
        tol=1e3,
        max_iter=20,
        criterion="aitken",
    )
    assert int(growing.n_iter) == 20 and not bool(growing.converged)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        (dict(criterion="ratio"), ValueError, "criterion must be one of"),
        (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
        (dict(max_iter=2.5), TypeError, "max_iter must be a Python int"),
        (dict(tol=-1.0), ValueError, "tol must be a finite number >= 0"),
        (dict(tol=float("nan")), ValueError, "tol must be a finite number"),
        (dict(tol=jnp.ones(2)), ValueError, "tol must be a scalar"),
    ],
)
def test_bad_loop_arguments(kwargs, error, fragment):
    x = blobs(n=20, d=2, k=2)
    with pytest.raises(error, match=fragment):
        jaxem.em(gmm.e_step, gmm.m_step, _start("full", 0, x, k=2), x, **kwargs)
