"""Mixtures of factor analysers (jaxem.mixtures.FactorAnalyzers).

* Reference: with K = 1 the model is factor analysis, and the fit equals
  scikit-learn's ``FactorAnalysis`` (its SVD algorithm, not EM, run to
  ``tol=1e-12``): the same log-likelihood, and the same ``Λ Λᵀ`` and ``Ψ``
  (the loadings themselves only up to a rotation).
* The Woodbury / determinant-lemma density (linear in D) equals the dense
  Gaussian density with ``Σ = Λ Λᵀ + Ψ`` (scipy), and keeps its digits in
  float32 where the noise is small against the factors.
* EM never decreases the log-likelihood; restarts, refinement and selection by
  BIC run through the engine, whose BIC uses the parameter count
  ``K − 1 + K D + K (D q − q (q − 1)/2) + noise``.
* AECM (``algorithm="aecm"``, McLachlan & Peel's two cycles, the second an
  engine conditional cycle): 30 iterations from a stored start on the
  standardised wine data (K = 3, q = 2, three noise types) equal an independent
  NumPy implementation with dense covariances and explicit inverses
  (``experiments/mfa_aecm_reference.py``) to 1e-10 in every per-iteration
  log-likelihood and final parameter; EM started where AECM converged stays.
* The engine's contract (chunks, devices, online, weights, prior) is in
  tests/test_engine_contract.py.
"""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxem
from jaxem import mixtures

D, Q, K = 6, 2, 3


def _truth(family, dtype=np.float64):
    rng = np.random.default_rng(0)
    means = rng.normal(size=(K, D)) * 4
    loadings = rng.normal(size=(K, D, Q))
    noise = rng.uniform(0.1, 0.5, (K, D))
    return family.make_params(
        np.array([0.3, 0.3, 0.4], dtype), means.astype(dtype), loadings.astype(dtype),
        noise.astype(dtype),
    )  # fmt: skip


FAMILY = mixtures.FactorAnalyzers(n_factors=Q)

# one compiled program each (eager calls compile every operation on its own)
log_components = jax.jit(lambda family, p, x: family.log_components(p, x))
log_prob = jax.jit(lambda family, p, x: family.log_prob(p, x))
predict_proba = jax.jit(lambda family, p, x: family.predict_proba(p, x))
sample = jax.jit(lambda family, key, p, n: family.sample(key, p, n), static_argnums=3)


@pytest.fixture(scope="module")
def data():
    x, labels = sample(FAMILY, jax.random.key(0), _truth(FAMILY), 300)
    return np.asarray(x), np.asarray(labels)


@pytest.fixture(scope="module")
def selection(data):
    x, _ = data
    return jaxem.select(
        FAMILY, jax.random.key(1), x, n_components=range(1, 5), n_init=2, init="kmeans"
    )


def test_one_component_equals_sklearn_factor_analysis():
    from sklearn.decomposition import FactorAnalysis

    rng = np.random.default_rng(3)
    n, d, q = 300, 8, 2
    loadings = rng.normal(size=(d, q))
    noise = rng.uniform(0.2, 1.0, d)
    x = rng.normal(size=(n, q)) @ loadings.T + rng.normal(size=(n, d)) * np.sqrt(noise) + 5.0
    family = mixtures.FactorAnalyzers(n_factors=q, reg_covar=0.0)
    result = jaxem.fit(family, jax.random.key(0), x, 1, tol=1e-13, max_iter=5000)
    assert result.status_name == "converged"
    fa = FactorAnalysis(q, svd_method="lapack", tol=1e-12, max_iter=100_000).fit(x)
    np.testing.assert_allclose(float(result.log_likelihood), fa.score(x), rtol=1e-10)
    p = result.params
    np.testing.assert_allclose(p.means[0], fa.mean_, rtol=1e-10)
    # loadings up to rotation: Λ Λᵀ (sklearn's components_ are Λᵀ), and Ψ
    np.testing.assert_allclose(p.loadings[0] @ p.loadings[0].T, fa.components_.T @ fa.components_,
                               atol=2e-5)  # fmt: skip
    np.testing.assert_allclose(p.noise[0], fa.noise_variance_, atol=2e-5)
    np.testing.assert_allclose(p.covariances[0], fa.get_covariance(), atol=2e-5)
    # EM on factor analysis converges linearly: the two optima agree to the
    # 1e-5 its change rule at 1e-13 leaves in the parameters; the likelihood,
    # flat there, agrees to 1e-10 (measured: 1.5e-16 and 5e-7)


def test_woodbury_density_equals_the_dense_gaussian_density():
    params = _truth(FAMILY)
    x = np.asarray(sample(FAMILY, jax.random.key(2), params, 50)[0])
    dense = np.stack(
        [stats.multivariate_normal(params.means[k], params.covariances[k]).logpdf(x)
         for k in range(K)], axis=1,
    )  # fmt: skip
    np.testing.assert_allclose(log_components(FAMILY, params, x), dense, rtol=1e-12)
    mixture = np.log(np.exp(dense) @ np.asarray(params.weights))
    np.testing.assert_allclose(log_prob(FAMILY, params, x), mixture, rtol=1e-12)
    resp = predict_proba(FAMILY, params, x)
    np.testing.assert_allclose(np.sum(resp, axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(resp, np.exp(dense - mixture[:, None]) * params.weights, rtol=1e-9)


def test_float32_density_keeps_its_digits_when_the_noise_is_small():
    """Noise 1e-4 of the factors' variance: ``‖ỹ‖²`` is ~1e4 times the
    Mahalanobis distance. The residual form ``‖ỹ − L ẑ‖² + ‖ẑ‖²`` keeps float32
    within 2.4e-4 nats of float64 here (log-densities up to 14 in size); the
    textbook ``‖ỹ‖² − bᵀ M⁻¹ b`` in float32 errs by 0.96 nats (measured)."""
    params = _truth(FAMILY)
    small = FAMILY.make_params(params.weights, params.means, params.loadings, params.noise * 1e-4)
    x = np.asarray(sample(FAMILY, jax.random.key(4), small, 200)[0])
    f64 = np.asarray(log_components(FAMILY, small, x))
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), small)
    f32 = np.asarray(log_components(FAMILY, p32, x.astype(np.float32)))
    own = np.take_along_axis(f64, np.argmax(f64, axis=1)[:, None], 1)  # each row's component
    err = np.take_along_axis(f32, np.argmax(f64, axis=1)[:, None], 1) - own
    assert np.max(np.abs(err)) < 2e-3, np.max(np.abs(err))


def test_log_likelihood_never_decreases(selection):
    for m in range(len(selection.n_components)):
        fit = jax.tree.map(lambda a, m=m: a[m], selection.fits[0])
        h = np.asarray(fit.history)
        h = h[np.isfinite(h)]
        assert len(h) > 2
        assert np.all(np.diff(h) >= -1e-12 * np.abs(h[1:])), np.min(np.diff(h))


def test_select_chooses_the_true_k_by_bic_from_the_parameter_count(data, selection):
    x, labels = data
    assert selection.best_n_components == K
    fit = jax.tree.map(lambda a: a[K - 1], selection.fits[0])
    p = int(FAMILY.n_parameters(fit.params))
    assert p == K - 1 + K * D + K * (D * Q - Q * (Q - 1) // 2) + K * D
    ll = float(jnp.sum(log_prob(FAMILY, fit.params, x)))
    np.testing.assert_allclose(selection.scores[0, K - 1], -2 * ll + p * np.log(len(x)), rtol=1e-9)
    criteria = jax.jit(lambda f, p, x: (f.bic(p, x), f.aic(p, x), f.predict(p, x)))
    bic, aic, pred = criteria(FAMILY, fit.params, x)
    np.testing.assert_allclose(selection.scores[0, K - 1], bic, rtol=1e-9)
    np.testing.assert_allclose(aic, -2 * ll + 2 * p, rtol=1e-9)
    assert fit.restart_log_likelihoods.shape == (2,)
    # the clusters are found (labels up to permutation)
    pred = np.asarray(pred)
    agree = max(np.mean(pred == perm[labels]) for perm in map(np.array, _perms(K)))
    assert agree > 0.98
    # at least as good as the truth on its own sample
    assert fit.log_likelihood >= float(jnp.mean(log_prob(FAMILY, _truth(FAMILY), x))) - 1e-9


def _perms(k):
    import itertools

    return itertools.permutations(range(k))


def test_n_parameters_counts_rotations_noise_types_and_active_components():
    params = _truth(FAMILY)
    inactive = FAMILY.make_params(
        jnp.array([0.5, 0.0, 0.5]), params.means, params.loadings, params.noise
    )
    q, d = Q, D
    for noise_type, noise in (("diag", 2 * d), ("tied", d), ("isotropic", 2)):
        family = mixtures.FactorAnalyzers(n_factors=q, noise_type=noise_type)
        expected = 1 + 2 * d + 2 * (d * q - 1) + noise
        assert int(family.n_parameters(inactive)) == expected
    # q factors in D dimensions never count more than a full covariance
    full = d * (d + 1) // 2
    assert d * q - q * (q - 1) // 2 + d <= full


def test_jit_vmap_over_reg_covar_and_float32(data, selection):
    """float32 EM from the float64 optimum stays there; ``reg_covar`` is traced."""
    x, _ = data
    best = jax.tree.map(lambda a: a[K - 1], selection.fits[0])
    start = jax.tree.map(lambda a: a.astype(jnp.float32), best.params)

    @jax.jit
    @jax.vmap
    def fit(reg):
        family = mixtures.FactorAnalyzers(n_factors=Q, reg_covar=reg)
        result = jaxem.fit(family, None, x.astype(np.float32), start=start, tol=1e-5)
        return result.log_likelihood, result.params

    lls, params = fit(jnp.array([1e-6, 1e-1], jnp.float32))
    assert lls.dtype == jnp.float32
    np.testing.assert_allclose(float(lls[0]), float(best.log_likelihood), rtol=1e-5)
    np.testing.assert_allclose(params.means[0], best.params.means, atol=1e-3)
    cov = jax.vmap(lambda p: p.covariances)(params)
    np.testing.assert_allclose(cov[0], best.params.covariances, atol=1e-3)
    assert float(lls[1]) < float(lls[0]) - 0.1  # a noise floor of 0.1: lower likelihood
    assert np.all(np.asarray(params.noise[1]) >= 0.1)


def test_sample_draws_the_factor_covariance():
    params = _truth(FAMILY)
    x, labels = sample(FAMILY, jax.random.key(7), params, 40_000)
    x, labels = np.asarray(x), np.asarray(labels)
    np.testing.assert_allclose(np.bincount(labels) / len(labels), params.weights, atol=0.01)
    for k in range(K):
        cov = np.cov(x[labels == k].T)
        scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        assert np.max(np.abs(cov - params.covariances[k]) / scale) < 0.05


def test_degenerate_flags_noise_collapsed_outside_the_factors_span():
    params = _truth(FAMILY)
    x = sample(FAMILY, jax.random.key(2), params, 50)[0]
    ctx = FAMILY.context(FAMILY.summarize(x, jnp.ones(len(x)), x[0]), x[0])
    assert not bool(FAMILY.degenerate(params, ctx))
    noise = np.asarray(params.noise).copy()
    # a Heywood case: one feature without noise, spanned by the loadings: not singular
    noise[0, 0] = FAMILY.reg_covar
    heywood = FAMILY.make_params(params.weights, params.means, params.loadings, noise)
    assert not bool(FAMILY.degenerate(heywood, ctx))
    # three collapsed features with two factors: singular but for reg_covar
    noise[0, :3] = FAMILY.reg_covar
    singular = FAMILY.make_params(params.weights, params.means, params.loadings, noise)
    assert bool(FAMILY.degenerate(singular, ctx))
    # ... unless that component is inactive
    weights = np.array([0.0, 0.5, 0.5])
    off = FAMILY.make_params(weights, params.means, params.loadings, noise)
    assert not bool(FAMILY.degenerate(off, ctx))


def test_checks_its_arguments():
    with pytest.raises(ValueError, match="noise_type"):
        mixtures.FactorAnalyzers(noise_type="full")
    with pytest.raises(ValueError, match="n_factors"):
        mixtures.FactorAnalyzers(n_factors=0)
    with pytest.raises(ValueError, match="reg_covar"):
        mixtures.FactorAnalyzers(reg_covar=-1.0)
    with pytest.raises(ValueError, match="n_factors=6 must be < the number of features"):
        jaxem.fit(mixtures.FactorAnalyzers(n_factors=6), jax.random.key(0), np.ones((9, 6)), 1)
    with pytest.raises(ValueError, match="loadings must be"):
        FAMILY.make_params(np.ones(1), np.zeros((1, 3)), np.zeros((1, 3, 1)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="noise variances must be > 0"):
        FAMILY.make_params(np.ones(1), np.zeros((1, 3)), np.zeros((1, 3, 2)), np.zeros((1, 3)))


# ------------------------------------------------------------------- AECM

AECM = json.loads(
    (pathlib.Path(__file__).resolve().parents[1] / "experiments" / "results"
     / "mfa_aecm_reference.json").read_text()
)  # fmt: skip


def _wine():
    x = np.loadtxt(
        pathlib.Path(__file__).resolve().parents[1] / "experiments" / "data" / "wine.csv",
        delimiter=",", skiprows=1,
    )  # fmt: skip
    return (x - x.mean(axis=0)) / x.std(axis=0)


def _aecm_fit(noise_type, algorithm="aecm", **kwargs):
    family = mixtures.FactorAnalyzers(
        n_factors=AECM["n_factors"], noise_type=noise_type, algorithm=algorithm,
        reg_covar=AECM["reg_covar"],
    )  # fmt: skip
    start = AECM["start"]
    params = family.make_params(start["weights"], start["means"], start["loadings"], start["noise"])
    return jaxem.fit(family, None, _wine(), start=params, **kwargs)


@pytest.mark.parametrize(
    "noise_type",
    ["diag", pytest.param("isotropic", marks=pytest.mark.slow),
     pytest.param("tied", marks=pytest.mark.slow)],
)  # fmt: skip
def test_aecm_equals_the_numpy_reference(noise_type):
    run = AECM["runs"][noise_type]
    result = _aecm_fit(noise_type, max_iter=AECM["n_iter"], tol=0.0)
    assert int(result.n_iter) == AECM["n_iter"]
    np.testing.assert_allclose(result.history, run["history"], rtol=1e-10)
    np.testing.assert_allclose(result.log_likelihood, run["log_likelihood"], rtol=1e-10)
    for field, value in run["params"].items():
        np.testing.assert_allclose(
            getattr(result.params, field), value, rtol=1e-10, atol=1e-12, err_msg=field
        )
    history = np.asarray(result.history)
    assert np.all(np.diff(history) > -1e-12)


@pytest.mark.slow
def test_aecm_stops_at_a_fixed_point_of_em():
    """The two algorithms have the same fixed points (from one start they may
    climb to different local maxima: here AECM's is higher): EM started where
    AECM converged stays there."""
    aecm = _aecm_fit("diag", tol=1e-12, max_iter=20_000)
    family = mixtures.FactorAnalyzers(n_factors=AECM["n_factors"], reg_covar=AECM["reg_covar"])
    em = jaxem.fit(family, None, _wine(), start=aecm.params, tol=0.0, max_iter=50)
    np.testing.assert_allclose(em.log_likelihood, aecm.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(em.params.covariances, aecm.params.covariances, atol=1e-5)


def test_aecm_runs_one_pass_em_where_there_are_no_full_passes():
    family = mixtures.FactorAnalyzers(n_factors=2, algorithm="aecm")
    assert family.has_cycle and family.one_pass() == dataclasses.replace(family, algorithm="em")
    assert not family.one_pass().has_cycle
    with pytest.raises(ValueError, match="algorithm"):
        mixtures.FactorAnalyzers(algorithm="ecm")


def test_a_constant_feature_is_not_a_degenerate_fit():
    """A feature constant in the data has noise ``reg_covar`` in every fit: the
    data's, not a collapse (it flagged every restart DEGENERATE)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)) @ np.array([[1.0, 0.4, 0.2], [0, 1.0, 0.3], [0, 0, 1.0]])
    x[:, 1] = 7.0
    result = jaxem.fit(mixtures.FactorAnalyzers(n_factors=1), jax.random.key(0), x, 2, n_init=2)
    assert result.status_name == "converged"
    assert not np.asarray(result.restart_degenerate).any()
