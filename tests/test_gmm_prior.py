"""MAP EM under the conjugate prior of Fraley & Raftery (2007) (R mclust's priorControl)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs

import jaxem
from jaxem import gmm
from jaxem._src.gmm.density import weighted_log_prob


def _resp(x, k, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.dirichlet(np.ones(k), size=len(x))
    return r


def _prior(x, k, covariance_type, **kw):
    return gmm.default_prior(jnp.asarray(x), k, covariance_type, **kw)


def _reference_map_step(resp, x, prior, covariance_type):
    """The MAP M-step written out from Fraley & Raftery (2007), Table 2, in NumPy."""
    n, d = x.shape
    mu_p = np.asarray(prior.mean)
    kappa, nu = float(prior.shrinkage), float(prior.dof)
    scale = np.asarray(prior.scale)
    alpha = float(prior.dirichlet)
    nk = resp.sum(0)
    xbar = resp.T @ x / nk[:, None]
    means = (nk[:, None] * xbar + kappa * mu_p) / (nk + kappa)[:, None]
    s = []
    for k in range(len(nk)):
        c = x - xbar[k]
        w = (resp[:, k, None] * c).T @ c
        m = xbar[k] - mu_p
        s.append(w + kappa * nk[k] / (nk[k] + kappa) * np.outer(m, m))
    s = np.stack(s)
    if covariance_type == "full":
        cov = (scale + s) / (nk + nu + d + 2)[:, None, None]
    elif covariance_type == "tied":
        cov = (scale + s.sum(0)) / (n + nu + d + 1 + len(nk))
    elif covariance_type == "diag":
        cov = (scale + np.diagonal(s, axis1=1, axis2=2)) / (nk + nu + 3)[:, None]
    else:
        cov = (scale + np.trace(s, axis1=1, axis2=2)) / (d * nk + d + nu + 2)
    weights = np.maximum(nk + alpha - 1, 0)
    return weights / weights.sum(), means, cov


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dirichlet", [1.0, 3.0])
def test_one_map_m_step_matches_closed_form(covariance_type, dirichlet):
    x = blobs(seed=2, n=60, d=3, k=3)
    resp = _resp(x, 3)
    prior = _prior(x, 3, covariance_type, shrinkage=0.5, dirichlet=dirichlet)
    got = gmm.m_step(resp, x, covariance_type=covariance_type, reg_covar=0.0, prior=prior)
    weights, means, cov = _reference_map_step(resp, x, prior, covariance_type)
    np.testing.assert_allclose(got.weights, weights, rtol=1e-12)
    np.testing.assert_allclose(got.means, means, rtol=1e-10)
    np.testing.assert_allclose(got.covariances, cov, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_m_step_is_a_stationary_point_of_the_expected_log_posterior(covariance_type):
    """∇ [Σ r log π N(x | μ, Σ) + log p(θ)] = 0 at the M-step (autodiff through log_prior)."""
    x = blobs(seed=3, n=40, d=2, k=3)
    resp = _resp(x, 3, seed=1)
    prior = _prior(x, 3, covariance_type, shrinkage=0.3, dirichlet=2.0)
    best = gmm.m_step(resp, x, covariance_type=covariance_type, reg_covar=0.0, prior=prior)

    def objective(logits, means, covariances):
        p = gmm.make_params(jax.nn.softmax(logits), means, covariances, covariance_type)
        return jnp.sum(resp * weighted_log_prob(p, jnp.asarray(x))) + gmm.log_prior(p, prior)

    grads = jax.grad(objective, argnums=(0, 1, 2))(
        jnp.log(best.weights), best.means, best.covariances
    )
    for g in grads:
        assert float(jnp.max(jnp.abs(g))) < 1e-8, g
    # ... and not a stationary point without the prior term (the test can fail).
    plain = jax.grad(
        lambda m: jnp.sum(
            resp
            * weighted_log_prob(
                gmm.make_params(best.weights, m, best.covariances, covariance_type), jnp.asarray(x)
            )
        )
    )
    assert float(jnp.max(jnp.abs(plain(best.means)))) > 1e-4


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_default_prior_is_mclusts(covariance_type):
    x = blobs(seed=4, n=50, d=3, k=2)
    p = _prior(x, 4, covariance_type)
    cov = np.cov(x, rowvar=False)  # N − 1, as R's var()
    factor = 4 ** (-2 / 3)
    np.testing.assert_allclose(p.mean, x.mean(0), rtol=1e-12)
    assert float(p.shrinkage) == 0.01 and float(p.dof) == 5 and float(p.dirichlet) == 1
    expected = {
        "full": factor * cov,
        "tied": factor * cov,
        "diag": np.full(3, factor * np.trace(cov) / 3),
        "spherical": factor * np.trace(cov) / 3,
    }[covariance_type]
    np.testing.assert_allclose(p.scale, expected, rtol=1e-12)


def test_default_prior_with_integer_weights_equals_repeated_rows():
    x = blobs(seed=5, n=30, d=2, k=2)
    counts = np.random.default_rng(0).integers(1, 4, size=30)
    a = gmm.default_prior(x, 3, "full", sample_weight=counts.astype(float))
    b = gmm.default_prior(np.repeat(x, counts, axis=0), 3, "full")
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12)


@pytest.mark.parametrize(
    "covariance_type",
    # every type's MAP M-step is checked against its closed form above; one
    # type's whole fit in the default suite (~10-17 s of compilation each)
    ["full", *(pytest.param(t, marks=pytest.mark.slow) for t in ("tied", "diag", "spherical"))],
)
def test_map_em_increases_the_log_posterior_and_reports_it(covariance_type):
    x = blobs(seed=6, n=120, d=2, k=3)
    result = gmm.fit(
        jax.random.key(0),
        x,
        3,
        covariance_type=covariance_type,
        prior="default",
        tol=1e-10,
        max_iter=200,
        reg_covar=0.0,
    )
    history = np.asarray(result.history)[: int(result.n_iter)]
    assert np.all(np.diff(history) >= -1e-12)
    prior = _prior(x, 3, covariance_type)
    ll = float(jnp.mean(gmm.log_prob(result.params, x)))
    expected = ll + float(gmm.log_prior(result.params, prior)) / len(x)
    np.testing.assert_allclose(float(result.log_likelihood), expected, rtol=1e-10)
    # The MAP estimate is not the ML one: the prior shrinks the fit.
    ml = gmm.fit(jax.random.key(0), x, 3, covariance_type=covariance_type, tol=1e-10, max_iter=200)
    assert ll < float(ml.log_likelihood)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_prior_keeps_a_component_on_one_point_nonsingular_without_reg_covar(covariance_type):
    """K = N: every component collapses onto one sample; the prior bounds the posterior."""
    x = blobs(seed=7, n=6, d=2, k=2)
    prior = _prior(x, 6, covariance_type)
    result = gmm.fit(
        jax.random.key(0),
        x,
        6,
        covariance_type=covariance_type,
        prior=prior,
        reg_covar=0.0,
        max_iter=50,
    )
    cov = np.asarray(result.params.covariances)
    assert np.all(np.isfinite(cov)) and np.isfinite(float(result.log_likelihood))
    # Every variance is at least the prior scale's share: ς / (n_k + ν + D + 2) with n_k ≤ N.
    scale = np.asarray(prior.scale)
    if covariance_type in ("full", "tied"):
        variances, scale = np.diagonal(cov, axis1=-2, axis2=-1), np.diag(scale)
    else:
        variances = cov
    floor = np.min(scale) / (6 + 4 + 2 + 6)
    assert np.min(variances) > 0.5 * floor


def test_fit_chunks_and_online_take_the_prior():
    x = blobs(seed=8, n=400, d=2, k=3)
    prior = _prior(x, 3, "full")
    start = gmm.init(jax.random.key(0), x, 3)
    ref = gmm.fit_chunks(start, [x], tol=0.0, max_iter=5, prior=prior)
    res = gmm.fit_chunks(start, gmm.array_chunks(x, 64), tol=0.0, max_iter=5, prior=prior)
    np.testing.assert_allclose(res.history, ref.history, rtol=1e-10)
    em = gmm.fit_online(start, [x], warmup=1, prior=prior)  # one batch, γ = 1: one MAP step
    expected = gmm.m_step(gmm.e_step(start, x)[0], x, reg_covar=1e-6, prior=prior)
    np.testing.assert_allclose(em.params.covariances, expected.covariances, rtol=1e-8)
    np.testing.assert_allclose(
        ref.history[0],
        float(jnp.mean(gmm.log_prob(start, x))) + float(gmm.log_prior(start, prior)) / len(x),
        rtol=1e-10,
    )


def test_select_with_the_default_prior_scores_the_likelihood_at_the_map():
    x = blobs(seed=9, n=150, d=2, k=2)
    sel = gmm.select(
        jax.random.key(0),
        x,
        n_components=[1, 2, 3],
        covariance_types=["full"],
        prior="default",
        tol=1e-8,
        max_iter=300,
    )
    ll = float(jnp.mean(gmm.log_prob(sel.params, x)))
    np.testing.assert_allclose(sel.log_likelihood, ll, rtol=1e-8)
    np.testing.assert_allclose(sel.best_score, float(gmm.bic(sel.params, x)), rtol=1e-8)


def _constant_last(x):
    return np.c_[x[:, :2], np.ones(len(x))]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: gmm.fit(jax.random.key(0), x, 2, prior="mclust"), "prior must be"),
        (lambda x: gmm.fit(jax.random.key(0), x, 2, prior=_prior(x, 2, "diag")), "covariance_type"),
        (lambda x: gmm.fit(jax.random.key(0), x[:, :1], 2, prior=_prior(x, 2, "full")), "features"),
        (lambda x: gmm.default_prior(x, 2, "full", dof=1.0), "dof must be > 2"),
        (lambda x: gmm.default_prior(x, 2, "full", shrinkage=0.0), "shrinkage must be > 0"),
        (lambda x: gmm.default_prior(x, 0, "full"), "n_components"),
        (lambda x: gmm.default_prior(x[:1], 1, "full"), "at least 2 samples"),
        (lambda x: gmm.m_step(np.ones((len(x), 1)), x, prior={"mean": 0}), "gmm.Prior"),
        # the default scale of full and tied is the data's covariance: singular
        # here, and the fit's log posterior was NaN
        (
            lambda x: gmm.fit(jax.random.key(0), _constant_last(x), 2, prior="default"),
            r"feature \[2\] is constant",
        ),
        (
            lambda x: gmm.default_prior(np.c_[x, x[:, :1] + x[:, 1:2]], 2, "tied"),
            "linearly dependent",
        ),
    ],
)
def test_bad_priors_raise(make, message):
    x = blobs(seed=10, n=20, d=3, k=2)
    with pytest.raises((ValueError, TypeError), match=message):
        make(x)


def test_relative_rule_with_a_prior_watches_the_log_likelihood_as_mclust():
    """mclust's ``me`` with ``priorControl()`` stops by its relative rule on the
    log-likelihood, not the log posterior: a helper's EM by hand stopping that
    way reproduced mclust's iteration counts, log-likelihoods and BIC cells in
    all seven cases tried (USArrests, thyroid; jaxem stopped 5–15 iterations
    early and its BIC cells were off by up to 15). The history is then the
    mean log-likelihood, and the fit stops at the first iteration that meets
    ``N|ΔL| < tol (1 + N|L|)``."""
    import jaxem

    x = blobs(seed=6, n=120, d=2, k=3)
    family = gmm.family("full", prior=_prior(x, 3, "full"), reg_covar=0.0)
    result = jaxem.fit(family, jax.random.key(0), x, 3, criterion="relative", tol=1e-5, n_refine=0)
    np.testing.assert_allclose(
        float(result.log_likelihood), float(jnp.mean(gmm.log_prob(result.params, x))), rtol=1e-12
    )
    history = np.asarray(result.history)[: int(result.n_iter)]
    n = len(x)

    def stops(i):
        return n * abs(history[i] - history[i - 1]) < 1e-5 * (1 + n * abs(history[i]))

    assert stops(len(history) - 1) and not any(stops(i) for i in range(1, len(history) - 1))


def test_online_em_binds_the_default_prior_to_its_first_batch():
    """``jaxem.fit_online`` of a family with ``prior="default"``: one batch of
    all rows and no warm-up is one batch MAP step (the prior was never bound,
    and the step was the maximum-likelihood one: covariances 2.1 off)."""
    x = blobs(3)
    family = gmm.family("full", prior="default", reg_covar=0.0)
    start = gmm.fit(jax.random.key(0), x, 3, max_iter=3, tol=0.0).params
    online = jaxem.fit_online(family, start, [x], warmup=1)
    step = jaxem.fit(family, None, x, start=start, tol=0.0, max_iter=1, n_refine=0)
    np.testing.assert_allclose(online.params.covariances, step.params.covariances, rtol=1e-10)
