"""Hidden Markov models (jaxem.hmm) against hmmlearn, and their properties.

From identical starting parameters, in float64, k Baum–Welch iterations of
jaxem (through :func:`jaxem.fit` with ``start=``) match hmmlearn 0.3's
``GaussianHMM`` (four covariance types), ``CategoricalHMM`` and ``PoissonHMM``
on four ragged sequences: parameters and per-iteration log-likelihoods to
rtol 1e-8. hmmlearn's Gaussian covariance prior is switched off
(``covars_prior=0, covars_weight=1``) and jaxem's ``reg_covar=0``: both M-steps
are then maximum likelihood. The start/transition Dirichlet priors are
implemented by jaxem as hmmlearn's and tested with non-flat values.

``GMMHMM`` (a Gaussian mixture per state): hmmlearn 0.3.3 takes its
covariance statistics about the E-step's means, not the updated ones, which
is not the exact M-step; the reference is hmmlearn run one iteration at a time
with that term removed (:func:`_gmmhmm_reference`), matched to rtol 1e-8.
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import hmm
from jaxem._src.hmm import inference

H = pytest.importorskip("hmmlearn.hmm")

K = 3
LENGTHS = [50, 37, 64, 20]
TRANS = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.15, 0.15, 0.7]])
START = np.array([0.4, 0.3, 0.3])
START_TRANS = np.full((K, K), 1 / 6) + np.eye(K) / 2
RTOL = 1e-8
GAUSSIAN = ("full", "tied", "diag", "spherical")
KINDS = (*GAUSSIAN, "categorical", "poisson")


def _generator(kind):
    if kind in GAUSSIAN:
        gen = H.GaussianHMM(K, covariance_type="full", init_params="", params="")
        gen.means_ = np.array([[0.0, 0.0], [1.5, 0.5], [-1.0, 2.0]])
        gen.covars_ = np.array([np.eye(2), [[1, 0.3], [0.3, 0.5]], [[0.7, -0.2], [-0.2, 1.2]]])
    elif kind == "categorical":
        gen = H.CategoricalHMM(K, init_params="", params="")
        gen.emissionprob_ = np.array(
            [[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1], [0.25, 0.25, 0.25, 0.25]]
        )
        gen.n_features = 4
    else:
        gen = H.PoissonHMM(K, init_params="", params="")
        gen.lambdas_ = np.array([[1.0, 5.0], [4.0, 1.0], [10.0, 10.0]])
    gen.startprob_ = np.array([0.5, 0.3, 0.2])
    gen.transmat_ = TRANS
    return gen.sample(sum(LENGTHS), random_state=1)[0]


def _models(kind, k, priors=False):
    """(hmmlearn model at the start, jaxem family, jaxem start parameters)."""
    prior = dict(startprob_prior=1.5, transmat_prior=2.0) if priors else {}
    common = dict(n_iter=k, tol=-np.inf, init_params="", **prior)
    if kind in GAUSSIAN:
        m = H.GaussianHMM(K, covariance_type=kind, params="stmc", covars_prior=0.0,
                          covars_weight=1.0, **common)  # fmt: skip
        m.means_ = np.array([[0.5, -0.5], [1.0, 1.5], [-1.5, 1.0]])
        cov = {"full": np.array([np.eye(2)] * K), "tied": np.eye(2),
               "diag": np.ones((K, 2)), "spherical": np.ones(K)}[kind]  # fmt: skip
        m.covars_ = cov
        family = hmm.gaussian(kind, reg_covar=0.0, **prior)
        emission = dict(means=m.means_, covariances=cov)
    elif kind == "categorical":
        m = H.CategoricalHMM(K, params="ste", **common)
        m.emissionprob_ = np.random.default_rng(1).dirichlet(np.ones(4), K)
        m.n_features = 4
        family = hmm.categorical(4, **prior)
        emission = dict(probs=m.emissionprob_)
    else:
        m = H.PoissonHMM(K, params="stl", **common)
        m.lambdas_ = np.array([[2.0, 3.0], [3.0, 2.0], [8.0, 6.0]])
        family = hmm.poisson(**prior)
        emission = dict(rates=m.lambdas_)
    m.startprob_, m.transmat_ = START.copy(), START_TRANS.copy()
    return m, family, hmm.make_params(START, START_TRANS, family, **emission)


def _emission_arrays(kind, params, m):
    """Pairs (jaxem, hmmlearn) of emission parameters in hmmlearn's shapes."""
    e = params.emission
    if kind == "spherical":  # hmmlearn keeps spherical variances tiled to (K, D)
        return [(e.means, m.means_), (e.covariances, m._covars_[:, 0])]
    if kind in GAUSSIAN:
        return [(e.means, m.means_), (e.covariances, m._covars_)]
    if kind == "categorical":
        return [(e.probs, m.emissionprob_)]
    return [(e.rates, m.lambdas_)]


def _unpad(a, lengths=LENGTHS):
    return np.concatenate([np.asarray(a)[i, :n] for i, n in enumerate(lengths)])


@pytest.fixture(scope="module")
def data():
    return {kind: _generator(kind) for kind in ("full", "categorical", "poisson")}


def _x(data, kind):
    return data[kind if kind in data else "full"]


def _match(data, kind, k, priors=False):
    x = _x(data, kind)
    m, family, start = _models(kind, k, priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(x, LENGTHS)
    seqs = hmm.sequences(x, LENGTHS)
    result = jaxem.fit(family, None, seqs, start=start, max_iter=k, tol=0.0, n_refine=0)
    assert int(result.n_iter) == k == len(m.monitor_.history)
    p = result.params
    np.testing.assert_allclose(p.startprob, m.startprob_, rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(p.transmat, m.transmat_, rtol=RTOL, atol=1e-300)
    for ours, theirs in _emission_arrays(kind, p, m):
        np.testing.assert_allclose(ours, theirs, rtol=RTOL)
    if not priors:  # hmmlearn's history is the log-likelihood, jaxem's the log posterior
        history = np.asarray(result.history)[:k] * sum(LENGTHS)
        np.testing.assert_allclose(history, m.monitor_.history, rtol=RTOL)
    final = float(result.log_likelihood) * sum(LENGTHS) - float(family.log_prior(p))
    np.testing.assert_allclose(final, m.score(x, LENGTHS), rtol=RTOL)
    return family, p, m, seqs


@pytest.mark.parametrize("kind", KINDS)
def test_baum_welch_matches_hmmlearn(data, kind):
    _match(data, kind, 10)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 50])
@pytest.mark.parametrize("kind", KINDS)
def test_baum_welch_matches_hmmlearn_1_and_50(data, kind, k):
    _match(data, kind, k)


@pytest.mark.parametrize("kind", ["categorical", "poisson"])
def test_dirichlet_priors_match_hmmlearn(data, kind):
    _match(data, kind, 10, priors=True)


@pytest.mark.slow
def test_dirichlet_priors_match_hmmlearn_gaussian(data):
    _match(data, "diag", 10, priors=True)


@pytest.mark.parametrize("kind", ["full", "categorical", "poisson"])
def test_viterbi_posteriors_scores_match_hmmlearn(data, kind):
    m, family, start = _models(kind, 1)
    x = _x(data, kind)
    # hmmlearn at the start parameters (no fit): decode, posteriors, score, BIC
    m._check()
    seqs = hmm.sequences(x, LENGTHS)
    log_prob, path = family.decode(start, seqs)
    theirs_lp, theirs_path = m.decode(x, LENGTHS)
    np.testing.assert_array_equal(_unpad(path), theirs_path)
    assert np.all(np.asarray(path)[np.asarray(~seqs.mask)] == -1)
    np.testing.assert_allclose(float(jnp.sum(log_prob)), theirs_lp, rtol=RTOL)
    proba = family.predict_proba(start, seqs)
    np.testing.assert_allclose(_unpad(proba), m.predict_proba(x, LENGTHS), rtol=1e-8, atol=1e-12)
    assert np.all(np.asarray(proba)[np.asarray(~seqs.mask)] == 0)
    np.testing.assert_allclose(family.score(start, seqs), m.score(x, LENGTHS), rtol=RTOL)
    np.testing.assert_allclose(family.bic(start, seqs), m.bic(x, LENGTHS), rtol=RTOL)
    np.testing.assert_allclose(family.aic(start, seqs), m.aic(x, LENGTHS), rtol=RTOL)
    per_sequence = [m.score(s) for s in np.split(x, np.cumsum(LENGTHS)[:-1])]
    np.testing.assert_allclose(family.log_prob(start, seqs), per_sequence, rtol=RTOL)


def test_parallel_equals_sequential(data):
    _, family, start = _models("full", 1)
    seqs = hmm.sequences(data["full"], LENGTHS)
    parallel = hmm.gaussian("full", reg_covar=0.0, parallel=True)
    a = family.smooth(start, seqs)
    b = parallel.smooth(start, seqs)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-13)


def _long(n_steps, parallel=False):
    """A two-state Gaussian chain of ``n_steps`` frames (drawn with NumPy)."""
    family = hmm.gaussian("diag", parallel=parallel)
    transmat = np.array([[0.99, 0.01], [0.02, 0.98]])
    truth = hmm.make_params([0.5, 0.5], transmat, family,
                            means=[[-1.0], [1.0]], covariances=[[1.0], [0.5]])  # fmt: skip
    rng = np.random.default_rng(0)
    u = rng.random(n_steps)
    z = np.zeros(n_steps, int)
    for t in range(1, n_steps):
        z[t] = z[t - 1] if u[t] < transmat[z[t - 1], z[t - 1]] else 1 - z[t - 1]
    x = np.where(z == 0, -1.0, 1.0) + rng.normal(size=n_steps) * np.where(z == 0, 1, 0.5**0.5)
    return family, truth, x[:, None]


def _hmmlearn_diag(truth):
    m = H.GaussianHMM(2, covariance_type="diag", init_params="", params="")
    m.startprob_, m.transmat_ = np.asarray(truth.startprob), np.asarray(truth.transmat)
    m.means_, m.covars_ = np.asarray(truth.emission.means), np.asarray(truth.emission.covariances)
    return m


def test_no_underflow_long_sequence():
    n = 100_000
    family, truth, x = _long(n)
    smoothed = family.smooth(truth, x)
    ll = float(smoothed.log_likelihood[0])
    np.testing.assert_allclose(ll, _hmmlearn_diag(truth).score(x), rtol=1e-9)
    np.testing.assert_allclose(jnp.sum(smoothed.posteriors, axis=-1), 1, rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(smoothed.transitions), n - 1, rtol=1e-9)


@pytest.mark.slow
def test_no_underflow_million_steps():
    n = 1_000_000
    family, truth, x = _long(n)
    smoothed = family.smooth(truth, x)
    ll = float(smoothed.log_likelihood[0])
    np.testing.assert_allclose(ll, _hmmlearn_diag(truth).score(x), rtol=1e-9)
    np.testing.assert_allclose(jnp.sum(smoothed.posteriors, axis=-1), 1, rtol=1e-12)
    par = hmm.gaussian("diag", parallel=True).smooth(truth, x)
    np.testing.assert_allclose(par.log_likelihood, smoothed.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(par.posteriors, smoothed.posteriors, atol=1e-8)


@pytest.fixture(scope="module")
def selected():
    """jaxem.select over 1–3 states of a Poisson HMM sampled from 2 states
    (k-means restarts, one compiled program for every number of states)."""
    family = hmm.poisson()
    truth = hmm.make_params([0.6, 0.4], [[0.9, 0.1], [0.15, 0.85]], family,
                            rates=[[1.0, 6.0], [7.0, 1.0]])  # fmt: skip
    x, states = family.sample(jax.random.key(3), truth, 150, n_sequences=4)
    sel = jaxem.select(
        family, jax.random.key(0), x, n_components=[1, 2, 3], init="kmeans", n_init=2,
        n_refine=0, tol=1e-8,
    )  # fmt: skip
    return family, truth, x, states, sel


def test_select_number_of_states(selected):
    family, _, x, _, sel = selected
    assert sel.best_n_components == 2
    params = sel.params
    assert params.startprob.shape == (2,) and params.transmat.shape == (2, 2)
    # the criterion is hmmlearn's BIC: N = the number of frames
    np.testing.assert_allclose(sel.best_score, family.bic(params, x), rtol=1e-9)
    # a fit with fewer active states keeps the inactive ones unreachable
    fit1 = jax.tree.map(lambda a: a[0], sel.fits[0])
    assert int(jnp.sum(fit1.params.startprob > 0)) == 1
    active = np.asarray(fit1.params.emission.weights > 0)
    assert np.all(np.asarray(fit1.params.transmat)[:, ~active] == 0)


@pytest.mark.parametrize("i", [1, 2])
def test_restarts_and_log_likelihood_never_decreases(selected, i):
    family, _, x, _, sel = selected
    result = jax.tree.map(lambda a: a[i], sel.fits[0])  # K = 2 and K = 3
    assert result.restart_log_likelihoods.shape == (2,)
    history = np.asarray(result.history)
    history = history[np.isfinite(history)]
    assert len(history) >= 3
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))  # EM never decreases
    assert float(result.log_likelihood) == pytest.approx(
        float(np.max(result.restart_log_likelihoods)), abs=1e-12
    )
    # the objective is the log-likelihood per frame at the returned parameters
    score = float(family.score(result.params, x)) / int(jnp.sum(x.lengths))
    assert float(result.log_likelihood) == pytest.approx(score, rel=1e-12)
    np.testing.assert_allclose(jnp.sum(result.params.transmat, axis=1), 1, rtol=1e-12)


def test_sample_follows_the_chain(selected):
    _, truth, x, states, _ = selected
    z = np.asarray(states)
    counts = np.zeros((2, 2))
    for row in z:
        np.add.at(counts, (row[:-1], row[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), truth.transmat, atol=0.06)
    frames = np.asarray(x.x).reshape(-1, 2)
    for k in range(2):
        np.testing.assert_allclose(
            frames[z.ravel() == k].mean(0), truth.emission.rates[k], rtol=0.15
        )


def test_jit_and_vmap(data):
    _, family, start = _models("poisson", 1)
    seqs = hmm.sequences(data["poisson"], LENGTHS)
    eager = family.log_prob(start, seqs)
    batch = jax.tree.map(lambda a: jnp.stack([a, a]), start)
    both = jax.jit(jax.vmap(family.log_prob, in_axes=(0, None)))(batch, seqs)
    np.testing.assert_allclose(both, jnp.stack([eager, eager]), rtol=1e-12)
    # padding is exact: a sequence alone equals it inside the padded batch
    alone = family.log_prob(start, data["poisson"][-LENGTHS[-1] :])
    np.testing.assert_allclose(alone[0], eager[-1], rtol=1e-12)


def test_sequences_layouts_and_errors():
    x = np.arange(10.0)[:, None]
    a = hmm.sequences(x, lengths=[4, 6])
    b = hmm.sequences([x[:4], x[4:]])
    np.testing.assert_array_equal(a.x, b.x)
    assert a.lengths.tolist() == [4, 6] and a.x.shape == (2, 6, 1)
    assert hmm.sequences(x).x.shape == (1, 10, 1)
    with pytest.raises(ValueError, match="lengths must be positive and sum"):
        hmm.sequences(x, lengths=[4, 5])
    with pytest.raises(ValueError, match="same number of features"):
        hmm.sequences([np.zeros((3, 1)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match="lengths must lie in"):
        hmm.sequences(np.zeros((2, 3, 1)), lengths=[3, 4])
    with pytest.raises(ValueError, match="non-negative whole counts"):
        hmm.poisson().check_data([np.array([[1.0], [-1.0]])])
    # an int cast truncated lengths of 2.5 to 2
    with pytest.raises(ValueError, match="whole numbers"):
        hmm.sequences(np.zeros((2, 3, 1)), lengths=[2.5, 3.0])
    with pytest.raises(ValueError, match="whole numbers"):
        hmm.sequences(np.zeros((4, 1)), lengths=[2.7, 1.3])
    assert hmm.sequences(np.zeros((4, 1)), lengths=[3.0, 1.0]).lengths.tolist() == [3, 1]


def test_make_params_checks_every_argument():
    """Probabilities outside the simplex, negative rates and missing keywords
    were accepted (and scored) or raised a KeyError."""
    trans = [[0.9, 0.1], [0.2, 0.8]]
    cat, poisson = hmm.categorical(3), hmm.poisson()
    mix = hmm.gmm(2, "diag")
    two = dict(means=np.zeros((2, 2, 1)), covariances=np.ones((2, 2, 1)))
    cases = [
        (
            lambda: hmm.make_params(
                [0.5, 0.5], trans, cat, probs=[[0.5, 0.5, 0.3], [0.2, 0.2, 0.6]]
            ),
            "sum to 1",
        ),
        (
            lambda: hmm.make_params(
                [0.5, 0.5], trans, cat, probs=[[1.2, -0.2, 0], [0.2, 0.2, 0.6]]
            ),
            "non-negative",
        ),
        (lambda: hmm.make_params([0.5, 0.5], trans, cat, probs=[[1.0, 0.0], [0.5, 0.5]]), "Σ C_j"),
        (
            lambda: hmm.make_params([0.5, 0.5], trans, poisson, rates=[[-1.0], [2.0]]),
            "non-negative",
        ),
        (lambda: hmm.make_params([1.5, -0.5], trans, poisson, rates=[[1.0], [2.0]]), "startprob"),
        (
            lambda: hmm.make_params(
                [0.5, 0.5], [[1.1, -0.1], [0.2, 0.8]], poisson, rates=[[1.0], [2.0]]
            ),
            "transmat",
        ),
        (
            lambda: hmm.make_params([0.5, 0.5], trans, poisson, rates=[[1.0], [2.0], [3.0]]),
            "per state",
        ),
        (lambda: hmm.make_params([0.5, 0.5], trans, poisson), "keywords"),
        (lambda: hmm.make_params([0.5, 0.5], trans, poisson, means=[[1.0], [2.0]]), "keywords"),
        (
            lambda: hmm.make_params(
                [0.5, 0.5], trans, mix, weights=[[0.5, 0.6], [0.3, 0.7]], **two
            ),
            "sum to 1",
        ),
    ]
    for make, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            make()
    params = hmm.make_params([0.5, 0.5], trans, mix, weights=[[0.5, 0.5], [0.3, 0.7]], **two)
    assert params.emission.mix_weights.shape == (2, 2)


def _gmmhmm_reference(x, covariance_type, k, d=2, m=2):
    """hmmlearn's GMMHMM with its covariance update corrected to exact EM.

    hmmlearn 0.3.3 forms the covariance statistics about the E-step's means
    (``centered = X - self.means_`` in ``_accumulate_sufficient_statistics``),
    so its covariances exceed the EM update by ``(μ_new − μ_old)(μ_new −
    μ_old)ᵀ``. The reference runs hmmlearn one iteration at a time (its
    E-step, start/transition/weight/mean updates) and subtracts that term:
    exact Baum–Welch, which jaxem implements. Returns the model, the starting
    arrays and the per-iteration log-likelihoods.
    """
    rng = np.random.default_rng(0)
    extra = dict(covars_prior=-(d + 2) / 2) if covariance_type == "spherical" else {}
    model = H.GMMHMM(K, m, covariance_type=covariance_type, n_iter=1, tol=-np.inf,
                     init_params="", params="stmcw", **extra)  # fmt: skip
    model.startprob_, model.transmat_ = START.copy(), START_TRANS.copy()
    model.means_ = rng.normal(0, 1, (K, m, d))
    model.weights_ = np.full((K, m), 1 / m)
    model.covars_ = {"full": np.tile(np.eye(d), (K, m, 1, 1)), "diag": np.ones((K, m, d)),
                     "spherical": np.ones((K, m))}[covariance_type]  # fmt: skip
    start = dict(means=model.means_.copy(), covariances=model.covars_.copy(),
                 weights=model.weights_.copy())  # fmt: skip
    history = []
    for _ in range(k):
        old = model.means_.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, LENGTHS)
        history.append(model.monitor_.history[0])
        delta = model.means_ - old
        if covariance_type == "full":
            model.covars_ = model.covars_ - delta[..., :, None] * delta[..., None, :]
        elif covariance_type == "diag":
            model.covars_ = model.covars_ - delta**2
        else:
            model.covars_ = model.covars_ - np.mean(delta**2, axis=-1)
    return model, start, np.asarray(history)


def _gmmhmm_match(data, covariance_type, k):
    x = data["full"]
    model, start, history = _gmmhmm_reference(x, covariance_type, k)
    family = hmm.gmm(2, covariance_type, reg_covar=0.0)
    p0 = hmm.make_params(START, START_TRANS, family, **start)
    seqs = hmm.sequences(x, LENGTHS)
    result = jaxem.fit(family, None, seqs, start=p0, max_iter=k, tol=0.0, n_refine=0)
    p = result.params
    np.testing.assert_allclose(p.startprob, model.startprob_, rtol=RTOL)
    np.testing.assert_allclose(p.transmat, model.transmat_, rtol=RTOL)
    np.testing.assert_allclose(p.emission.mix_weights, model.weights_, rtol=RTOL)
    g = p.emission.gaussians
    np.testing.assert_allclose(g.means.reshape(model.means_.shape), model.means_, rtol=RTOL)
    covariances = np.asarray(g.covariances).reshape(model.covars_.shape)
    np.testing.assert_allclose(covariances, model.covars_, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(result.history)[:k] * sum(LENGTHS), history, rtol=RTOL)
    np.testing.assert_allclose(family.score(p, seqs), model.score(x, LENGTHS), rtol=RTOL)
    _, path = family.decode(p, seqs)
    np.testing.assert_array_equal(_unpad(path), model.decode(x, LENGTHS)[1])


def test_gmmhmm_matches_hmmlearn_exact_em(data):
    _gmmhmm_match(data, "full", 3)  # the reference costs a hmmlearn fit per iteration


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 10, 50])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_gmmhmm_matches_hmmlearn_exact_em_all(data, covariance_type, k):
    _gmmhmm_match(data, covariance_type, k)


@pytest.mark.slow
def test_experiment_scripts_run(tmp_path):
    """Smoke tests of experiments/hmm_faithful.py and hmm_benchmark.py (--quick)."""
    import pathlib
    import subprocess
    import sys

    experiments = pathlib.Path(__file__).resolve().parents[1] / "experiments"
    sys.path.insert(0, str(experiments))
    import hmm_faithful

    hmm_faithful.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "hmm_faithful.png").stat().st_size > 0
    assert "![figure](hmm_faithful.png)" in (tmp_path / "hmm_faithful.md").read_text()
    out = tmp_path / "bench.md"
    run = subprocess.run(
        [sys.executable, str(experiments / "hmm_benchmark.py"), "--quick", "--budget", "1",
         "--libraries", "jaxem,hmmlearn", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| long | 1 × 5000 | jaxem |" in out.read_text()


def test_sequence_weights_multiply_the_statistics(data):
    """A sequence of weight 2 counts as the sequence twice (the pass is additive)."""
    _, family, start = _models("poisson", 1)
    x = data["poisson"]
    seqs = hmm.sequences(x, LENGTHS)
    parts = np.split(x, np.cumsum(LENGTHS)[:-1])
    twice = hmm.sequences([parts[0], *parts])
    run = jax.jit(lambda s, w: family.pass_(start, s, w, None))
    a = run(seqs, jnp.asarray([2.0, 1, 1, 1]))
    b = run(twice, jnp.ones(5))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12)


@pytest.mark.parametrize("kind", GAUSSIAN)
def test_pass_by_moment_features_equals_the_direct_pass(data, kind):
    """With the data's context the Gaussian emission statistics are one product
    over moment features about the centre (checked, and taken because accurate
    here); without it, differences from the means. Equal in float64, also with
    the data moved far from the origin and unequal sequence weights."""
    _, family, start = _models(kind, 1)
    for shift in (0.0, 1e4):
        x = _x(data, kind) + shift
        params = dataclasses.replace(
            start,
            emission=dataclasses.replace(start.emission, means=start.emission.means + shift),
        )
        seqs = hmm.sequences(x, LENGTHS)
        w = jnp.asarray([2.0, 0.5, 1.0, 3.0])
        ref = jax.tree.map(lambda a: a[0], seqs)
        context = family.context(family.summarize(seqs, w, ref), ref)
        run = jax.jit(family.pass_)
        (moments, ll_m), (direct, ll_d) = run(params, seqs, w, context), run(params, seqs, w, None)
        np.testing.assert_allclose(ll_m, ll_d, rtol=1e-13)
        for u, v in zip(jax.tree.leaves(moments), jax.tree.leaves(direct), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-9 * np.max(np.abs(v)))


def test_backward_messages_equal_the_parallel_ones_on_padded_sequences(data):
    """The sequential backward loop (the mask an input of each step) and the
    associative scan give the same messages on padded sequences, ones from
    each sequence's last frame on."""
    _, family, start = _models("diag", 1)
    seqs = hmm.sequences(_x(data, "diag"), LENGTHS)
    log_b = family.log_emissions(start, seqs)
    seq_beta, par_beta = (
        jax.vmap(lambda lb, m, p=p: inference.backward(start.transmat, lb, m, parallel=p))(
            log_b, seqs.mask
        )
        for p in (False, True)
    )
    np.testing.assert_allclose(seq_beta, par_beta, rtol=1e-10)


@pytest.mark.slow
def test_implicit_gradient_through_a_fit_equals_finite_differences():
    """``jax.grad`` through a Baum–Welch fit (``implicit=True``) with respect to
    the data equals central finite differences of fits run to machine
    precision (400 iterations at a rate of about 0.4; the differentiable
    configuration's Gaussian emission takes its statistics directly)."""
    family = hmm.gaussian("diag")
    truth = hmm.make_params([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], family,
                            means=[[-1.0], [1.0]], covariances=[[1.0], [0.5]])  # fmt: skip
    x = family.sample(jax.random.key(0), truth, 30, n_sequences=12)[0].x

    def fitted(x, implicit):
        r = jaxem.fit(family, None, hmm.sequences(x), start=truth, tol=0.0, max_iter=400,
                      n_refine=0, implicit=implicit)  # fmt: skip
        return jnp.sum(r.params.emission.means * jnp.asarray([[1.0], [2.0]]))

    grad = jax.grad(lambda x: fitted(x, True))(x)
    h = 1e-5
    for index in [(0, 0, 0), (5, 17, 0)]:
        step = jnp.zeros_like(x).at[index].set(h)
        fd = (fitted(x + step, False) - fitted(x - step, False)) / (2 * h)
        np.testing.assert_allclose(grad[index], fd, rtol=1e-5)


def test_e_step_differentiates_and_vmaps_over_any_part_of_the_parameters(data):
    """The moment route's choice is a ``lax.cond`` on a decision made without
    derivatives: ``jax.grad`` of ``e_step`` equals the direct route's, and
    ``vmap`` over the transition matrices alone (Gaussian parameters shared)
    equals one call per matrix."""
    _, family, start = _models("full", 1)
    direct = dataclasses.replace(
        family, emission=dataclasses.replace(family.emission, formulation="direct")
    )
    seqs = hmm.sequences(_x(data, "full"), LENGTHS)

    def loss(fam, p):
        stats, ll = fam.e_step(p, seqs)
        return jnp.sum(stats.emission.sum_xx) + jnp.sum(stats.emission.sum_x) + ll

    got, want = (jax.grad(lambda p, f=f: loss(f, p))(start) for f in (family, direct))
    for u, v in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert np.all(np.isfinite(u))  # assert_allclose takes NaN for NaN
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)

    mats = jnp.stack([START_TRANS, TRANS])
    batched = jax.vmap(lambda a: family.e_step(dataclasses.replace(start, transmat=a), seqs))(mats)
    for i, a in enumerate(mats):
        one = family.e_step(dataclasses.replace(start, transmat=a), seqs)
        for u, v in zip(jax.tree.leaves(batched), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(u[i], v, rtol=1e-10)


def test_float32_viterbi_of_a_long_sequence_keeps_its_digits():
    """Unshifted running scores grew to −1.3·10⁵ over 3·10⁴ frames, where a
    float32 ulp (0.008 nats) blurred the path's score and, on longer sequences,
    its choices; shifted per frame, the path and its log-probability match
    float64's on the same rounded inputs."""
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])
    family = hmm.gaussian("diag")
    params = hmm.make_params(
        [0.5, 0.3, 0.2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.15, 0.15, 0.7]], family,
        means=means, covariances=[[1.0, 0.5], [0.7, 1.2], [2.0, 0.3]],
    )  # fmt: skip
    p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p32)
    x = (means[rng.choice(3, 30_000)] + rng.normal(size=(30_000, 2))).astype(np.float32)
    logp32, path32 = family.decode(p32, x)
    logp64, path64 = family.decode(p64, x.astype(np.float64))
    np.testing.assert_array_equal(path32, path64)
    np.testing.assert_allclose(logp32, logp64, rtol=3e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_backward_where_the_best_state_is_unreachable(dtype):
    """A left-right model whose sequences start with an outlier frame nearest a state
    that cannot start (128 nats closer than the first state): scaled by the
    frame's best density, every reachable state underflowed in float32 and
    log p(x) was −∞, the posteriors 0 and the fit's log-likelihood −∞. The
    log-space recursions then recompute the batch: equal to hmmlearn's."""
    rng = np.random.default_rng(0)
    startprob = np.array([1.0, 0.0, 0.0])
    transmat = np.array([[0.8, 0.2, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    means, covariances = np.array([[0.0], [5.0], [10.0]]), np.ones((3, 1))
    seqs = [np.concatenate([rng.normal(size=(10, 1)) + m for m in means[:, 0]]) for _ in range(3)]
    seqs[2][0] = 16.0
    for parallel in (False, True):
        family = hmm.gaussian("diag", reg_covar=0.0, parallel=parallel)
        params = hmm.make_params(startprob, transmat, family, means=means, covariances=covariances)
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
        data = hmm.sequences([s.astype(dtype) for s in seqs])
        reference = H.GaussianHMM(3, "diag", init_params="", params="")
        reference.startprob_, reference.transmat_ = startprob, transmat
        reference.means_, reference.covars_ = means, covariances
        expected = [reference.score(s) for s in seqs]
        np.testing.assert_allclose(family.log_prob(params, data), expected, rtol=1e-6)
        np.testing.assert_allclose(family.smooth(params, data).log_likelihood, expected, rtol=1e-6)
        proba = np.asarray(family.predict_proba(params, data))
        np.testing.assert_allclose(proba[2, :30], reference.predict_proba(seqs[2]), atol=1e-5)
    result = jaxem.fit(family, None, data, start=params, max_iter=5, tol=0.0, n_refine=0)
    assert np.all(np.isfinite(np.asarray(result.history)))


@pytest.mark.parametrize(
    ("dtype", "mean", "stay"), [(np.float32, 3.0, 0.9), (np.float64, 10.0, 0.999)]
)
def test_forward_backward_where_a_left_right_model_must_explain_the_data_badly(dtype, mean, stay):
    """A two-state left–right model that starts in the first state (mean −m) on
    data that look like the second (+m) and then like the first: the only
    possible paths explain the data badly. The scaled messages then lose
    opposite states (the filtered ones the first state, the backward ones the
    second) while the log-likelihood stays finite: float32 scored −215.0
    instead of −124.3, posteriors summed to 0 on some frames and one EM step
    moved the first state's mean to +3; float64 gave NaN transition counts
    and made the structural 0 a 0.5. Equal to hmmlearn's (log space, float64)."""
    startprob, transmat = np.array([1.0, 0.0]), np.array([[stay, 1 - stay], [0.0, 1.0]])
    means, covariances = np.array([[-mean], [mean]]), np.array([[1.0], [1.0]])
    x = np.concatenate([np.full((6, 1), mean), np.full((10, 1), -mean)])
    x = (x + 0.1 * np.random.default_rng(0).normal(size=x.shape)).astype(dtype)
    reference = H.GaussianHMM(2, "diag", init_params="", params="")
    reference.startprob_, reference.transmat_ = startprob, transmat
    reference.means_, reference.covars_ = means, covariances
    stepped = H.GaussianHMM(
        2, "diag", init_params="", n_iter=1, tol=-np.inf, min_covar=0.0, covars_prior=0.0
    )
    stepped.startprob_, stepped.transmat_ = startprob, transmat
    stepped.means_, stepped.covars_ = means, covariances
    stepped.fit(x.astype(np.float64))
    rtol = 1e-5 if dtype == np.float32 else 1e-9
    for parallel in (False, True):
        family = hmm.gaussian("diag", reg_covar=0.0, parallel=parallel)
        params = hmm.make_params(startprob, transmat, family, means=means, covariances=covariances)
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
        expected = reference.score(x.astype(np.float64))
        np.testing.assert_allclose(family.score(params, x), expected, rtol=rtol)
        smoothed = family.smooth(params, x)
        np.testing.assert_allclose(smoothed.log_likelihood[0], expected, rtol=rtol)
        proba = np.asarray(family.predict_proba(params, x))[0]
        np.testing.assert_allclose(proba, reference.predict_proba(x.astype(np.float64)), atol=1e-6)
        counts = np.asarray(smoothed.transitions[0], np.float64)
        assert np.all(np.isfinite(counts)) and counts[1, 0] == 0
        # (in log space: terms of magnitude |log p(x)| carry |log p(x)| · eps)
        tight = 10 * abs(expected) * np.finfo(dtype).eps
        np.testing.assert_allclose(counts.sum(), len(x) - 1, rtol=tight)
        result = jaxem.fit(family, None, x, start=params, max_iter=1, tol=0.0, n_refine=0)
        np.testing.assert_allclose(result.params.transmat, stepped.transmat_, rtol=1e-5, atol=1e-9)
        assert float(result.params.transmat[1, 0]) == 0
        # the first state's mean (the second's rests on ~1e-9 of a frame: the
        # M-step's 10·eps floor weighs it in float32)
        np.testing.assert_allclose(result.params.emission.means[0], stepped.means_[0], rtol=1e-5)


def test_a_state_without_outgoing_counts_keeps_its_transitions():
    """The absorbing state is entered only at the last frame: its row has no
    counts. It used to become uniform, making its structural 0 a 0.5; it keeps
    its probabilities (hmmlearn leaves a row of zeros)."""
    family = hmm.categorical(3)
    params = hmm.make_params(
        [1.0, 0.0], [[0.5, 0.5], [0.0, 1.0]], family, probs=[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    )
    x = np.array([[0], [1], [0], [2]])
    result = jaxem.fit(family, None, x, start=params, max_iter=1, tol=0.0, n_refine=0)
    np.testing.assert_allclose(result.params.transmat, [[2 / 3, 1 / 3], [0.0, 1.0]])


def test_more_states_than_observed_frames_is_refused_whatever_the_padding():
    """Four sequences of 1, 1, 1 and 3 frames are 6 frames padded to 12: nine
    states were accepted (a degenerate fit) where the same frames as one
    sequence raised."""
    x = np.arange(6.0)[:, None]
    with pytest.raises(ValueError, match="number of samples"):
        jaxem.fit(hmm.gaussian("diag"), jax.random.key(0), hmm.sequences(x, [1, 1, 1, 3]), 9)


def test_default_start_of_a_categorical_hmm_has_no_zero_probabilities():
    """The k-means-type starts partition the symbols: a state's frames may show no
    instance of a symbol, a probability of exactly 0 that Baum–Welch never
    moves (this fit stopped after 3 iterations, 0.037 nats per frame below
    the true parameters). Starting statistics blended with the pooled ones
    leave no zero; the fit ends above the truth."""
    truth = H.CategoricalHMM(3, init_params="", params="")
    truth.startprob_ = np.array([0.5, 0.3, 0.2])
    truth.transmat_ = np.array([[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.05, 0.1, 0.85]])
    truth.emissionprob_ = np.array(
        [[0.6, 0.2, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.25, 0.25, 0.25, 0.25]]
    )
    truth.n_features = 4
    lengths = [300, 150, 220, 80]
    x = np.concatenate([truth.sample(n, random_state=300 + i)[0] for i, n in enumerate(lengths)])
    data = hmm.sequences(x, lengths)
    family = hmm.categorical(4)
    true_params = hmm.make_params(
        truth.startprob_, truth.transmat_, family, probs=truth.emissionprob_
    )
    result = jaxem.fit(family, jax.random.key(3), data, 3)
    assert np.all(np.asarray(result.params.emission.probs) > 0)
    assert float(family.score(result.params, data)) >= float(family.score(true_params, data))


def test_default_start_of_a_gmm_hmm_splits_each_state():
    """A GMM-HMM starts from the states' partition, each state's frames then split
    into its M Gaussians (as hmmlearn). K·M clusters of all frames paired into
    states by index ended below the true parameters' log-likelihood."""
    family = hmm.gmm(2, "diag")
    means = np.array([[[0, 0], [2, 2]], [[5, 1], [6, -1]], [[-3, 4], [-4, 2]]], float)
    truth = hmm.make_params(
        [0.5, 0.3, 0.2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.15, 0.15, 0.7]], family,
        means=means, covariances=np.full((3, 2, 2), 0.5),
        weights=[[0.4, 0.6], [0.5, 0.5], [0.8, 0.2]],
    )  # fmt: skip
    x, _ = family.sample(jax.random.key(0), truth, 250, n_sequences=3)
    result = jaxem.fit(family, jax.random.key(0), x, 3)
    assert float(family.score(result.params, x)) > float(family.score(truth, x))


def test_sequences_of_probability_zero_score_minus_infinity():
    """The emission families floor a zero probability's log (−708 in float64) so
    that EM's sums stay finite; the scores users see are exact: a symbol no
    reachable state emits, or a count where every rate is 0, scores −∞ (as in
    hmmlearn), and a possible sequence scores as before."""
    family = hmm.categorical(4)
    probs = np.array([[0.5, 0.5, 0.0, 0.0], [0.1, 0.1, 0.8, 0.0], [0.25, 0.25, 0.25, 0.25]])
    params = hmm.make_params(
        [0.5, 0.5, 0.0], [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], family, probs=probs
    )
    impossible, possible = np.array([[0], [2], [3], [1]]), np.array([[0], [2], [2], [1]])
    assert float(family.log_prob(params, impossible)[0]) == -np.inf
    assert float(family.decode(params, impossible)[0][0]) == -np.inf
    reference = H.CategoricalHMM(3, init_params="", params="")
    reference.startprob_, reference.transmat_ = params.startprob, params.transmat
    reference.emissionprob_, reference.n_features = probs, 4
    np.testing.assert_allclose(family.log_prob(params, possible)[0], reference.score(possible))
    poisson = hmm.poisson()
    rates = hmm.make_params([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], poisson, rates=[[0.0], [0.0]])
    assert float(poisson.log_prob(rates, np.array([[0.0], [1.0]]))[0]) == -np.inf
    assert np.isfinite(float(poisson.log_prob(rates, np.array([[0.0], [0.0]]))[0]))


def test_online_em_of_a_gmm_hmm_binds_its_emission_to_the_first_batch():
    """One batch of all sequences and no warm-up is one Baum–Welch step (the
    GMM emission's binding needs the number of states: fit_online passed None
    and raised a TypeError)."""
    family = hmm.gmm(2, "diag")
    x = (
        np.random.default_rng(0).normal(size=(4, 25, 2))
        + np.repeat([[-2.0], [2.0]], 2, 0)[:, :, None]
    )
    start = jaxem.fit(family, jax.random.key(0), x, 2, max_iter=3, tol=0.0).params
    online = jaxem.fit_online(family, start, [x], warmup=1)
    step = jaxem.fit(family, None, x, start=start, tol=0.0, max_iter=1, n_refine=0)
    for a, b in zip(jax.tree.leaves(online.params), jax.tree.leaves(step.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
