"""Standard errors, observed information and the EM rate (jaxem._src.inference): issue #22, part 3.

The references here are written out by hand in explicit coordinates of their
own (K − 1 = 1 logit, Cholesky factors of the covariances, log-rates), with
``jax.hessian`` of a log-likelihood written from scipy's densities: at a
maximum the delta-method covariance of the parameters does not depend on the
coordinates, so the two must agree to rounding.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln
from jax.scipy.stats import multivariate_normal

import jaxem
from jaxem import gmm, hmm, mixtures
from jaxem._src.inference import free_coordinates


def tight_gmm_fit(x, start):
    """EM with reg_covar = 0 to the resolution of float64 (a maximum)."""
    m_step = functools.partial(gmm.m_step, reg_covar=0.0)
    return jaxem.em(gmm.e_step, m_step, start, x, tol=1e-14, max_iter=5000)


# ----------------------------------------------------------------- Gaussian, 2-D


@pytest.fixture(scope="module")
def gauss():
    """Two overlapping 2-D Gaussians (EM's rate about 0.8), fitted to a maximum."""
    key1, key2 = jax.random.split(jax.random.key(3))
    x = jnp.concatenate(
        [
            jax.random.normal(key1, (60, 2)) @ jnp.array([[1.0, 0.3], [0.0, 0.7]]),
            jax.random.normal(key2, (90, 2)) * 0.8 + jnp.array([1.5, 0.5]),
        ]
    )
    start = gmm.make_params(
        jnp.array([0.4, 0.6]), jnp.array([[0.0, 0.0], [2.0, 1.0]]), jnp.stack([jnp.eye(2)] * 2)
    )
    fit = tight_gmm_fit(x, start)
    assert bool(fit.converged)
    family = gmm.family("full", reg_covar=0.0)
    return x, fit.params, jaxem.standard_errors(family, fit.params, x)


def gmm_coordinates(x):
    """Explicit coordinates of a 2-component mixture: a logit, the means and the
    Cholesky factors of Σ (log diagonal). ``(unpack, log_joint)``."""
    d = x.shape[1]
    rows, cols = np.tril_indices(d)

    def unpack(z):
        a, rest = z[0], z[1:]
        weights = jnp.stack([jax.nn.sigmoid(a), 1 - jax.nn.sigmoid(a)])
        means = rest[: 2 * d].reshape(2, d)
        chol = rest[2 * d :].reshape(2, -1)
        factors = jnp.zeros((2, d, d)).at[:, rows, cols].set(chol)
        diag = jnp.exp(jnp.diagonal(factors, axis1=1, axis2=2))
        factors = factors.at[:, np.arange(d), np.arange(d)].set(diag)
        return weights, means, factors @ jnp.swapaxes(factors, 1, 2)

    def log_joint(z):  # (N, 2)
        weights, means, covs = unpack(z)
        logs = [
            jnp.log(weights[k]) + multivariate_normal.logpdf(x, means[k], covs[k]) for k in range(2)
        ]
        return jnp.stack(logs, 1)

    return unpack, log_joint


def gmm_point(params):
    """``params`` in :func:`gmm_coordinates`."""
    rows, cols = np.tril_indices(params.means.shape[1])
    chol = np.linalg.cholesky(np.asarray(params.covariances))[:, rows, cols]
    chol = np.where(rows == cols, np.log(np.abs(chol)), chol)
    w = np.asarray(params.weights)
    return jnp.concatenate(
        [jnp.array([np.log(w[0] / w[1])]), params.means.ravel(), jnp.asarray(chol.ravel())]
    )


@jax.jit
def gmm_reference(z_hat, x):
    """Delta-method covariance of (weights, means, covariances) and
    ``I_complete⁻¹ I_obs``, from jax.hessian in :func:`gmm_coordinates`."""
    unpack, log_joint = gmm_coordinates(x)

    def loglik(z):
        return jnp.sum(jax.nn.logsumexp(log_joint(z), axis=1))

    def natural(z):
        return jnp.concatenate([a.ravel() for a in unpack(z)])

    i_obs = -jax.hessian(loglik)(z_hat)
    jac = jax.jacfwd(natural)(z_hat)
    covariance = jac @ jnp.linalg.inv(i_obs) @ jac.T
    # Dempster, Laird & Rubin (1977): DM = 1 − I_complete⁻¹ I_obs at the maximum,
    # I_complete the Hessian of Q(θ' | θ̂) = Σ r̂ log p(x, z | θ') in θ' at θ̂.
    resp = jax.nn.softmax(log_joint(z_hat), axis=1)
    i_complete = -jax.hessian(lambda z: jnp.sum(resp * log_joint(z)))(z_hat)
    return covariance, jnp.linalg.solve(i_complete, i_obs), unpack(z_hat)


@pytest.fixture(scope="module")
def gauss_reference(gauss):
    x, params, _ = gauss
    covariance, missing, point = gmm_reference(gmm_point(params), x)
    np.testing.assert_allclose(point[2], params.covariances, rtol=1e-12)
    return covariance, np.linalg.eigvals(np.asarray(missing)).real


def test_gmm_standard_errors_equal_the_inverse_hessian(gauss, gauss_reference):
    _, _, se = gauss
    ref, _ = gauss_reference
    n = ref.shape[0]  # weights (2), means (4), covariances (8): the first leaves
    ours = se.covariance[:n, :n]
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * float(jnp.max(jnp.abs(ref))))
    np.testing.assert_allclose(
        se.standard_errors.covariances.ravel(), jnp.sqrt(jnp.diagonal(ref))[6:], rtol=1e-6
    )
    # the weights sum to 1: equal standard errors
    np.testing.assert_allclose(se.standard_errors.weights[0], se.standard_errors.weights[1])
    # free coordinates: 1 logit + 4 means + 6 precision-factor coordinates
    assert se.information.shape == (11, 11)
    assert bool(jnp.all(jnp.linalg.eigvalsh(se.information) > 0))
    np.testing.assert_allclose(se.free_covariance @ se.information, np.eye(11), atol=1e-8)


def test_em_rate_is_the_largest_fraction_of_missing_information(gauss, gauss_reference):
    _, _, se = gauss
    _, fractions = gauss_reference
    expected = 1 - fractions.min()
    assert 0.5 < expected < 0.99  # overlapping: EM is slow here
    np.testing.assert_allclose(se.em_rate, expected, rtol=1e-6)
    np.testing.assert_allclose(
        np.sort(np.abs(se.em_eigenvalues)), np.sort(1 - fractions), rtol=1e-6, atol=1e-9
    )


def test_em_rate_is_the_ratio_of_successive_changes(gauss):
    # near the maximum EM's parameter changes shrink by the rate per iteration
    x, params, se = gauss
    m_step = functools.partial(gmm.m_step, reg_covar=0.0)

    @jax.jit
    def steps(p):
        def body(p, _):
            new = m_step(gmm.e_step(p, x)[0], x)
            return new, jnp.linalg.norm(new.means - p.means)

        return jax.lax.scan(body, p, None, length=120)[1]

    start = gmm.make_params(params.weights, params.means * 1.01, params.covariances)
    changes = np.asarray(steps(start))
    assert changes[-1] > 1e-11  # still above rounding
    np.testing.assert_allclose(changes[-1] / changes[-2], se.em_rate, rtol=1e-3)


# ------------------------------------------------------------------------ Poisson


def numpy_poisson_em(x, weights, rates, n_iter=3000):
    """Plain EM for a 1-D Poisson mixture (no compilation)."""
    for _ in range(n_iter):
        log_joint = np.log(weights) + x * np.log(rates) - rates
        resp = np.exp(log_joint - log_joint.max(1, keepdims=True))
        resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0)
        weights, rates = nk / len(x), (resp * x).sum(0) / nk
    return weights, rates


@pytest.fixture(scope="module")
def poisson():
    rates = jnp.where(jnp.arange(300) < 120, 1.5, 6.0)
    x = np.asarray(jax.random.poisson(jax.random.key(1), rates, (300,)), np.float64)[:, None]
    weights, rates = numpy_poisson_em(x, np.array([0.5, 0.5]), np.array([1.0, 5.0]))
    params = mixtures.PoissonParams(jnp.asarray(weights), jnp.asarray(rates)[:, None])
    return x, params, jaxem.standard_errors(mixtures.Poisson(), params, x)


def test_poisson_standard_errors_equal_the_inverse_hessian(poisson):
    x, params, se = poisson

    def unpack(z):
        weights = jnp.stack([jax.nn.sigmoid(z[0]), 1 - jax.nn.sigmoid(z[0])])
        return weights, jnp.exp(z[1:])

    def loglik(z):
        weights, rates = unpack(z)
        logs = jnp.log(weights) + x * jnp.log(rates) - rates - gammaln(x + 1)
        return jnp.sum(jax.nn.logsumexp(logs, axis=1))

    @jax.jit
    def reference(z):
        jac = jax.jacfwd(lambda z: jnp.concatenate(unpack(z)))(z)
        return jax.grad(loglik)(z), jac @ jnp.linalg.inv(-jax.hessian(loglik)(z)) @ jac.T

    w, r = np.asarray(params.weights), np.asarray(params.rates)[:, 0]
    gradient, ref = reference(jnp.array([np.log(w[0] / w[1]), *np.log(r)]))
    assert float(jnp.max(jnp.abs(gradient))) < 1e-6  # a maximum
    np.testing.assert_allclose(se.covariance, ref, rtol=1e-6, atol=1e-9)
    assert se.information.shape == (3, 3)
    # the same information from observed_information; a sample weight w counts a
    # row w times: weights of 2 double it
    info, basis = jaxem.observed_information(mixtures.Poisson(), params, x)
    np.testing.assert_allclose(info, se.information, rtol=1e-10)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-12)
    doubled, _ = jaxem.observed_information(
        mixtures.Poisson(), params, x, sample_weight=np.full(len(x), 2.0)
    )
    np.testing.assert_allclose(doubled, 2 * info, rtol=1e-10)


def test_inactive_components_and_the_gauge_are_not_free_coordinates():
    p = mixtures.PoissonParams(jnp.array([0.3, 0.7, 0.0]), jnp.array([[1.0], [4.0], [2.0]]))
    basis = free_coordinates(mixtures.Poisson(), p)
    assert basis.shape == (6, 3)
    # free directions keep the log-weights normalised (Σ π_k d log π_k = 0: the
    # constant added to all of them is the gauge) and leave the inactive component
    np.testing.assert_allclose(np.array([0.3, 0.7]) @ basis[:2], 0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(basis)[[2, 5]], 0, atol=1e-12)


def test_variational_family_is_refused():
    x = jnp.zeros((5, 1))
    family = gmm.variational.family("full")
    with pytest.raises(TypeError, match="objective"):
        jaxem.standard_errors(family, None, x)


def test_mclusts_other_models_are_refused_by_name():
    """No unconstrained coordinates for VEV and the like yet: the error says what
    needs them (it listed SQUAREM, whose default coordinates work)."""
    covariances = np.array([[[1.0, 0.3], [0.3, 0.5]], [[2.0, -0.6], [-0.6, 1.0]]])
    params = gmm.make_params([0.4, 0.6], [[0.0, 0.0], [3.0, 1.0]], covariances, "VEV")
    x = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(NotImplementedError, match=r"'VEV'.*standard errors"):
        jaxem.standard_errors(gmm.family("VEV"), params, x)


@pytest.mark.slow  # two fit programs (10 restarts, and 300 vmapped refits): ~40 s
def test_parametric_bootstrap_agrees_on_old_faithful(tmp_path):
    import pathlib
    import sys

    experiments = pathlib.Path(__file__).resolve().parents[1] / "experiments"
    if str(experiments) not in sys.path:
        sys.path.insert(0, str(experiments))
    import standard_errors

    result = standard_errors.main(["--boot", "300", "--out", str(tmp_path)])
    assert result["n_boot_used"] >= 295
    # within Monte Carlo error (4 of them: 11 parameters) and 15% (finite N)
    assert np.max(np.abs(result["z"])) < 4
    np.testing.assert_allclose(result["ratio"], 1, atol=0.15)


def test_a_shared_covariance_with_as_many_coordinates_as_components_stays_free():
    """Tied covariances of D = 2 have 3 unconstrained coordinates: with K = 3
    and one component inactive they were masked as a component's, a free
    coordinate was lost and the standard errors and EM rate were wrong (found by
    a sweep against finite differences). Now they equal the K = 2 fit's."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.concatenate([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + 2.5]))
    fit = gmm.fit_from(
        gmm.init(jax.random.key(0), x, 2, covariance_type="tied"), x, tol=1e-14, max_iter=5000
    )
    p = fit.params
    padded = gmm.make_params(
        jnp.append(p.weights, 0.0), jnp.concatenate([p.means, p.means[:1]]),
        p.covariances, "tied",
    )  # fmt: skip
    family = gmm.family("tied", reg_covar=1e-6)
    two, three = (jaxem.standard_errors(family, q, x) for q in (p, padded))
    assert three.basis.shape[1] == two.basis.shape[1]
    np.testing.assert_allclose(
        three.standard_errors.covariances, two.standard_errors.covariances, rtol=1e-6
    )
    np.testing.assert_allclose(three.em_rate, two.em_rate, rtol=1e-6)


def test_missing_data_family_reads_the_observed_data_density():
    """The missing-data family's log_prob and standard errors were NaN on every
    row with a missing entry (its complete-data density). They now read the
    observed entries; on complete data they are the Gaussian family's."""
    from jaxem.gmm import missing

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(80, 2)), rng.normal(size=(80, 2)) + 3.0])
    start = gmm.init(jax.random.key(0), jnp.asarray(x), 2, covariance_type="diag")
    family = missing.GaussianMissingFamily(covariance_type="diag", reg_covar=1e-6)
    plain = gmm.family("diag", reg_covar=1e-6)
    fit = gmm.fit_from(start, x, tol=1e-14, max_iter=5000)
    complete = jaxem.standard_errors(family, fit.params, x)
    np.testing.assert_allclose(
        complete.standard_errors.means,
        jaxem.standard_errors(plain, fit.params, x).standard_errors.means,
        rtol=1e-8,
    )
    holes = x.copy()
    holes[::7, 1] = np.nan
    np.testing.assert_allclose(
        family.log_prob(fit.params, holes), missing.log_prob(fit.params, holes), rtol=1e-12
    )
    refit = missing.fit_from(fit.params, holes, tol=1e-14, max_iter=5000)
    errors = jaxem.standard_errors(family, refit.params, holes).standard_errors
    assert np.all(np.isfinite(np.asarray(errors.means)))


def test_factor_analysers_with_shared_noise_have_its_free_coordinates_only():
    """Isotropic (and tied) noise was unconstrained entry by entry: the standard
    errors were those of the diagonal model at a point where its gradient is
    not 0 (noise errors up to 4× too large, one per feature), the information
    12 × 12 for 9 parameters. Against the inverse Hessian of probabilistic
    PCA's log-likelihood in (μ, Λ, log ψ), one ψ."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(300, 1)) @ rng.normal(size=(1, 3)) + rng.normal(size=(300, 3)))
    family = mixtures.FactorAnalyzers(n_factors=1, noise_type="isotropic", reg_covar=0.0)
    p = jaxem.fit(family, jax.random.key(0), x, 1, tol=1e-14, max_iter=5000).params
    se = jaxem.standard_errors(family, p, x)
    assert se.information.shape == (7, 7)  # 3 means, 3 loadings, 1 noise

    def log_likelihood(z):
        cov = jnp.outer(z[3:6], z[3:6]) + jnp.exp(z[6]) * jnp.eye(3)
        return jnp.sum(multivariate_normal.logpdf(x, z[:3], cov))

    z = jnp.concatenate([p.means[0], p.loadings[0, :, 0], jnp.log(p.noise[0, :1])])
    covariance = jnp.linalg.inv(-jax.hessian(log_likelihood)(z))
    jacobian = jnp.diag(jnp.r_[jnp.ones(6), p.noise[0, :1]])  # to ψ from log ψ
    expected = jnp.sqrt(jnp.diagonal(jacobian @ covariance @ jacobian.T))
    np.testing.assert_allclose(se.standard_errors.means[0], expected[:3], rtol=1e-6)
    np.testing.assert_allclose(se.standard_errors.loadings[0, :, 0], expected[3:6], rtol=1e-6)
    np.testing.assert_allclose(se.standard_errors.noise[0], jnp.full(3, expected[6]), rtol=1e-6)


def test_loadings_of_two_factors_are_not_identified_and_say_so():
    """With two factors the loadings are free up to a rotation (``Family.gauges``):
    they have no standard error (NaN; negative variances were once reported as
    errors of 0), the rotation is not a free coordinate, and the EM rate is
    that of the identified parameters. It was 1 (the rotation's) and the
    information 20 × 20 with a condition number of 4e8, singular in float32.

    Against the inverse Hessian of the log-likelihood with the rotation fixed
    by a lower-triangular ``Λ`` (``Λ₀₁ = 0``), and against the rate at which
    EM's log-likelihood increments shrink (``Δℓ_{t+1}/Δℓ_t → rate²``)."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(
        rng.normal(size=(500, 2)) @ rng.normal(size=(5, 2)).T + 0.5 * rng.normal(size=(500, 5))
    )
    family = mixtures.FactorAnalyzers(n_factors=2, reg_covar=0.0)
    fit = jaxem.fit(family, jax.random.key(0), x, 1, tol=1e-14, max_iter=20000)
    p = fit.params
    se = jaxem.standard_errors(family, p, x)
    assert se.information.shape == (19, 19)  # 5 means, 10 loadings less 1 rotation, 5 noise
    assert np.all(np.isnan(se.standard_errors.loadings))

    def log_likelihood(z):
        loadings = jnp.zeros((5, 2)).at[:, 0].set(z[5:10]).at[1:, 1].set(z[10:14])
        cov = loadings @ loadings.T + jnp.diag(jnp.exp(z[14:]))
        return jnp.sum(multivariate_normal.logpdf(x, z[:5], cov))

    turn = jnp.linalg.qr(p.loadings[0].T)[0]  # Λ turn is lower triangular
    triangular = p.loadings[0] @ turn
    z = jnp.concatenate([p.means[0], triangular[:, 0], triangular[1:, 1], jnp.log(p.noise[0])])
    covariance = jnp.linalg.inv(-jax.hessian(log_likelihood)(z))
    jacobian = jnp.diag(jnp.r_[jnp.ones(14), p.noise[0]])  # to ψ from log ψ
    expected = jnp.sqrt(jnp.diagonal(jacobian @ covariance @ jacobian.T))
    np.testing.assert_allclose(se.standard_errors.means[0], expected[:5], rtol=1e-6)
    np.testing.assert_allclose(se.standard_errors.noise[0], expected[14:], rtol=1e-6)

    increments = np.diff(np.asarray(fit.history))
    late = np.flatnonzero((increments > 1e-11) & (increments < 1e-8))
    observed = np.median(np.sqrt(increments[late[:-1] + 1] / increments[late[:-1]]))
    assert abs(float(se.em_rate) - observed) < 2e-4, (float(se.em_rate), observed)


def test_parameters_at_the_boundary_have_the_wald_error_of_0_and_the_others_theirs():
    """One component, so the errors are the binomial, Poisson and multinomial
    ones, ``sqrt(p (1 - p) / N)`` and ``sqrt(λ / N)``: a feature that is always
    0 (a probability or a rate of 0, an unseen category) has an error of 0, and
    the other features keep theirs. Every error was NaN: the second derivative
    of ``log(max(p, tiny))`` at ``p = 0`` is ``0 / tiny²``."""
    rng = np.random.default_rng(0)
    n = 400
    binary = (rng.random((n, 3)) < [0.3, 0.0, 0.6]).astype(float)
    counts = rng.poisson([2.0, 0.0], (n, 2)).astype(float)
    codes = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], 1).astype(float)
    freqs = np.concatenate([np.bincount(codes[:, j].astype(int), minlength=3) / n for j in (0, 1)])

    def binomial(p):
        return np.sqrt(p * (1 - p) / n)

    cases = [
        (mixtures.Bernoulli(), mixtures.BernoulliParams, binary, binary.mean(0), binomial),
        (
            mixtures.Poisson(),
            mixtures.PoissonParams,
            counts,
            counts.mean(0),
            lambda r: np.sqrt(r / n),
        ),
        (
            mixtures.Categorical(n_categories=(3, 3)),
            mixtures.CategoricalParams,
            codes,
            freqs,
            binomial,
        ),
    ]
    for family, params_type, x, fitted, wald in cases:
        assert np.any(fitted == 0)
        params = params_type(jnp.ones(1), jnp.asarray(fitted)[None])
        errors = jaxem.standard_errors(family, params, x).standard_errors
        errors = errors.rates if hasattr(errors, "rates") else errors.probs
        np.testing.assert_allclose(errors[0], wald(fitted), rtol=1e-6, atol=1e-12)


def test_hmm_standard_errors_equal_the_inverse_hessian_of_the_forward_algorithm():
    """An HMM's observed information is that of its sequences' log-likelihood
    (they were refused before: the objective is per frame). Against
    ``jax.hessian`` of a hand-written forward algorithm in (logit a₀₁, logit
    a₁₀, μ, log σ², logit π₀), by the delta method; the emission weights (the
    states' occupancies, which the likelihood does not read) have no error.
    The EM rate against the rate at which EM's increments shrink."""
    family = hmm.gaussian("diag", reg_covar=0.0)
    truth = hmm.make_params([0.6, 0.4], [[0.9, 0.1], [0.2, 0.8]], family,
                            means=[[-1.0], [1.5]], covariances=[[1.0], [0.5]])  # fmt: skip
    seqs, _ = family.sample(jax.random.key(0), truth, 100, n_sequences=4)
    x = jnp.asarray(np.asarray(seqs.x))
    fit = jaxem.fit(family, None, x, start=truth, tol=1e-14, max_iter=5000)
    p = fit.params
    se = jaxem.standard_errors(family, p, x)

    def log_likelihood(z):
        a01, a10, start = jax.nn.sigmoid(z[0]), jax.nn.sigmoid(z[1]), jax.nn.sigmoid(z[6])
        transmat = jnp.array([[1 - a01, a01], [a10, 1 - a10]])

        def sequence(xs):
            variance = jnp.exp(z[4:6])
            log_b = -0.5 * jnp.log(2 * jnp.pi * variance) - 0.5 * (xs - z[2:4]) ** 2 / variance

            def step(alpha, log_bt):
                return jax.nn.logsumexp(alpha[:, None] + jnp.log(transmat), axis=0) + log_bt, None

            alpha0 = jnp.log(jnp.array([start, 1 - start])) + log_b[0]
            return jax.nn.logsumexp(jax.lax.scan(step, alpha0, log_b[1:])[0])

        return jnp.sum(jax.vmap(sequence)(x))

    def natural(z):
        return jnp.r_[jax.nn.sigmoid(z[:2]), z[2:4], jnp.exp(z[4:6]), jax.nn.sigmoid(z[6:])]

    t, s = p.transmat, p.startprob
    z = jnp.r_[jax.scipy.special.logit(jnp.array([t[0, 1], t[1, 0]])), p.emission.means[:, 0],
               jnp.log(p.emission.covariances[:, 0]), jax.scipy.special.logit(s[:1])]  # fmt: skip
    np.testing.assert_allclose(log_likelihood(z), family.score(p, x), rtol=1e-12)
    jacobian = jax.jacfwd(natural)(z)
    covariance = jacobian @ jnp.linalg.inv(-jax.hessian(log_likelihood)(z)) @ jacobian.T
    expected = np.sqrt(np.diagonal(covariance))
    errors = se.standard_errors
    got = np.r_[errors.transmat[0, 1], errors.transmat[1, 0], errors.emission.means[:, 0],
                errors.emission.covariances[:, 0], errors.startprob[0]]  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_array_equal(errors.emission.weights, 0)

    # a GMM-HMM, whose parameters have no weights either (it raised a TypeError)
    gmm_hmm = hmm.gmm(2, covariance_type="diag", reg_covar=0.0)
    two = jaxem.fit(gmm_hmm, jax.random.key(0), x[:, :40], 2, tol=1e-12, max_iter=2000)
    assert np.all(np.isfinite(jaxem.standard_errors(gmm_hmm, two.params, x[:, :40]).covariance))

    increments = np.diff(np.asarray(fit.history))
    late = np.flatnonzero((increments > 1e-11) & (increments < 1e-7))
    observed = np.median(np.sqrt(increments[late[:-1] + 1] / increments[late[:-1]]))
    assert abs(float(se.em_rate) - observed) < 1e-3, (float(se.em_rate), observed)
