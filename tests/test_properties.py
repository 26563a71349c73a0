"""Property-based tests over random shapes, data and parameters (hypothesis)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxem import gmm

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    n = draw(st.sampled_from([8, 20]))
    d = draw(st.sampled_from([1, 3]))
    k = draw(st.sampled_from([1, 3]))
    covariance_type = draw(st.sampled_from(gmm.COVARIANCE_TYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * scale + rng.normal(size=d) * 10 * scale
    weights = rng.dirichlet(np.ones(k))
    means = x[rng.integers(n, size=k)] + rng.normal(size=(k, d)) * scale
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = (a @ np.swapaxes(a, 1, 2) + np.eye(d)) * scale**2
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = (a @ a.T + np.eye(d)) * scale**2
    elif covariance_type == "diag":
        cov = rng.uniform(0.1, 3, size=(k, d)) * scale**2
    else:
        cov = rng.uniform(0.1, 3, size=k) * scale**2
    return gmm.make_params(weights, means, cov, covariance_type), x


@SETTINGS
@given(problems())
def test_responsibilities_are_a_distribution(problem):
    params, x = problem
    resp, ll = gmm.e_step(params, x)
    resp = np.asarray(resp)
    assert np.all(resp >= 0)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    assert np.isfinite(float(ll))


@SETTINGS
@given(problems())
def test_log_prob_is_finite(problem):
    params, x = problem
    assert np.all(np.isfinite(np.asarray(gmm.log_prob(params, x))))


@SETTINGS
@given(problems())
def test_one_em_step_never_decreases_the_likelihood(problem):
    params, x = problem
    resp, ll_before = gmm.e_step(params, x)
    new = gmm.m_step(resp, x, covariance_type=params.covariance_type, reg_covar=0.0)
    _, ll_after = gmm.e_step(new, x)
    # The M-step maximises the expected complete log-likelihood, so by Jensen the
    # observed log-likelihood cannot drop; allow rounding of the log-densities.
    # (A component collapsing on fewer than D+1 points gets a ridge: the bound
    # then holds only for the ridged model, so skip those draws.)
    if float(ll_after) > 30:  # a singular covariance: unbounded likelihood
        return
    tolerance = 1e-9 * (1 + abs(float(ll_before)))
    assert float(ll_after) >= float(ll_before) - tolerance


@SETTINGS
@given(problems())
def test_predict_is_argmax_of_predict_proba(problem):
    params, x = problem
    np.testing.assert_array_equal(
        gmm.predict(params, x), np.argmax(np.asarray(gmm.predict_proba(params, x)), axis=1)
    )
