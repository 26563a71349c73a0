"""Every bad input gets a clear error at the Python boundary, naming the argument."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import gmm, hmm, mixtures
from jaxem.gmm import variational

X = np.random.default_rng(0).normal(size=(20, 2))
PARAMS = gmm.make_params(np.ones(2) / 2, np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
KEY = jax.random.key(0)


def _fit(**kwargs):
    args = dict(key=KEY, x=X, n_components=2) | kwargs
    return gmm.fit(args.pop("key"), args.pop("x"), args.pop("n_components"), **args)


CASES = [
    # (name, call, error, message fragment)
    ("x 1-D", lambda: _fit(x=np.zeros(5)), ValueError, "x must be 2-D"),
    ("x 3-D", lambda: _fit(x=np.zeros((2, 2, 2))), ValueError, "x must be 2-D"),
    ("x empty", lambda: _fit(x=np.zeros((0, 2))), ValueError, "at least one sample"),
    ("x no features", lambda: _fit(x=np.zeros((5, 0))), ValueError, "at least one sample and one"),
    ("x NaN", lambda: _fit(x=np.where(X > 1, np.nan, X)), ValueError, "NaN or infinite"),
    ("x inf", lambda: _fit(x=np.where(X > 1, np.inf, X)), ValueError, "NaN or infinite"),
    # a JAX array is checked on its device (no copy to the host): the same errors
    ("x NaN, JAX", lambda: _fit(x=jnp.where(X > 1, np.nan, X)), ValueError, "NaN or infinite"),
    (
        "sample_weight < 0",
        lambda: _fit(sample_weight=np.where(X[:, 0] > 1, -1.0, 1.0)),
        ValueError,
        "sample_weight must be finite, non-negative",
    ),
    (
        "sample_weight 0, JAX",
        lambda: _fit(sample_weight=jnp.zeros(len(X))),
        ValueError,
        "sample_weight must be finite, non-negative and not all zero",
    ),
    ("x strings", lambda: _fit(x=np.array([["a", "b"]])), TypeError, "x must be a real numeric"),
    ("x complex", lambda: _fit(x=X + 1j), TypeError, "x must be real"),
    ("x None", lambda: _fit(x=None), TypeError, "x must be an array"),
    ("K < 1", lambda: _fit(n_components=0), ValueError, "n_components must be >= 1"),
    ("K > N", lambda: _fit(n_components=21), ValueError, "must be <= the number of samples"),
    ("K float", lambda: _fit(n_components=2.0), TypeError, "n_components must be a Python int"),
    (
        "covariance_type",
        lambda: _fit(covariance_type="dense"),
        ValueError,
        "covariance_type must be one of",
    ),
    ("init", lambda: _fit(init="kmeans++"), ValueError, "init method must be one of"),
    (
        "criterion",
        lambda: gmm.select(KEY, X, criterion="dic"),
        ValueError,
        "criterion must be one of",
    ),
    ("tol < 0", lambda: _fit(tol=-1e-3), ValueError, "tol must be a finite number >= 0"),
    ("tol NaN", lambda: _fit(tol=np.nan), ValueError, "tol must be a finite number"),
    ("reg_covar < 0", lambda: _fit(reg_covar=-1.0), ValueError, "reg_covar must be a finite"),
    ("reg_covar inf", lambda: _fit(reg_covar=np.inf), ValueError, "reg_covar must be a finite"),
    ("reg_covar str", lambda: _fit(reg_covar="1e-6"), TypeError, "reg_covar must be a real"),
    ("max_iter 0", lambda: _fit(max_iter=0), ValueError, "max_iter must be >= 1"),
    ("n_init 0", lambda: _fit(n_init=0), ValueError, "n_init must be >= 1"),
    ("key int", lambda: _fit(key=0), TypeError, "key must be a JAX PRNG key"),
    (
        "key batch",
        lambda: _fit(key=jax.random.split(KEY, 2)),
        ValueError,
        "key must be a single PRNG key",
    ),
    (
        "params vs x",
        lambda: gmm.e_step(PARAMS, np.zeros((5, 3))),
        ValueError,
        "x has 3 features but params have 2",
    ),
    (
        "resp vs x",
        lambda: gmm.m_step(np.ones((4, 2)) / 2, X),
        ValueError,
        r"resp must have shape \(n_samples, n_components\) = \(20, K\)",
    ),
    (
        "weights shape",
        lambda: gmm.make_params(np.ones(3) / 3, np.zeros((2, 2)), np.ones(2), "spherical"),
        ValueError,
        "weights must have shape",
    ),
    (
        "weights negative",
        lambda: gmm.make_params([1.5, -0.5], np.zeros((2, 2)), np.ones(2), "spherical"),
        ValueError,
        "non-negative",
    ),
    (
        "weights sum",
        lambda: gmm.make_params([0.5, 0.6], np.zeros((2, 2)), np.ones(2), "spherical"),
        ValueError,
        "weights must sum to 1",
    ),
    (
        "covariance not SPD",
        lambda: gmm.make_params(
            [0.5, 0.5], np.zeros((2, 2)), [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]]
        ),
        ValueError,
        "positive definite",
    ),
    (
        "covariance not symmetric",
        lambda: gmm.make_params(
            [0.5, 0.5], np.zeros((2, 2)), [np.eye(2), [[1.0, 0.5], [0.0, 1.0]]]
        ),
        ValueError,
        "symmetric",
    ),
    (
        "params type",
        lambda: gmm.log_prob({"weights": 1}, X),
        TypeError,
        "params must be a GMMParams",
    ),
]

# Starting parameters and parameters given to HMM scores: the checks of the
# mixtures' log_prob. Each was accepted before (a fit "converged" from a
# probability of 1.5, which ended as an exact 1; posteriors above 1 came back).
BINARY = (np.random.default_rng(0).random((20, 3)) < 0.4).astype(float)
COUNTS = np.random.default_rng(0).poisson(3.0, (20, 2)).astype(float)
TWO = jnp.array([0.5, 0.5])
GAUSSIAN_HMM = hmm.gaussian("diag")
HMM_PARAMS = hmm.make_params(
    [0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], GAUSSIAN_HMM, means=[[-1.0], [1.0]],
    covariances=[[1.0], [1.0]],
)  # fmt: skip
SEQUENCES = np.random.default_rng(0).normal(size=(3, 10, 1))
NEGATIVE_TRANSITION = hmm.HMMParams(
    HMM_PARAMS.startprob, jnp.array([[1.1, -0.1], [0.2, 0.8]]), HMM_PARAMS.emission
)


def _start(family, x, params):
    return lambda: jaxem.fit(family, None, x, start=params, max_iter=2)


def _online(family, x, params):
    return lambda: jaxem.fit_online(family, params, [x[:10], x[10:]])


CASES += [
    (
        "start probability 1.5",
        _start(mixtures.Bernoulli(), BINARY, mixtures.BernoulliParams(TWO, jnp.full((2, 3), 1.5))),
        ValueError,
        "outside Bernoulli's parameter space",
    ),
    (
        "start probability 1.5, chunks",
        lambda: jaxem.fit(
            mixtures.Bernoulli(),
            None,
            jaxem.chunks([BINARY[:10], BINARY[10:]]),
            start=mixtures.BernoulliParams(TWO, jnp.full((2, 3), 1.5)),
            max_iter=2,
        ),
        ValueError,
        "outside Bernoulli's parameter space",
    ),
    (
        "start rate < 0, online",
        _online(mixtures.Poisson(), COUNTS, mixtures.PoissonParams(TWO, -jnp.ones((2, 2)))),
        ValueError,
        "outside Poisson's parameter space",
    ),
    (
        "start weights < 0",
        _start(
            mixtures.Poisson(),
            COUNTS,
            mixtures.PoissonParams(jnp.array([1.5, -0.5]), jnp.ones((2, 2))),
        ),
        ValueError,
        "weights must be a finite, non-negative",
    ),
    (
        "start rates of another K",
        _start(mixtures.Poisson(), COUNTS, mixtures.PoissonParams(TWO, jnp.ones((1, 2)))),
        ValueError,
        "2 weights but rates of shape",
    ),
    (
        "categorical probs width",
        lambda: mixtures.Categorical(n_categories=(2, 2)).log_prob(
            mixtures.CategoricalParams(TWO, jnp.full((2, 3), 1 / 3)), BINARY[:, :2]
        ),
        ValueError,
        "4 columns",
    ),
    (
        "categories of an unobserved feature",
        lambda: mixtures.Categorical.for_data(np.array([[0.0, np.nan], [1.0, -1.0]])),
        ValueError,
        "feature 1 of x has no observed code",
    ),
    (
        "infinite rate",
        lambda: mixtures.Poisson().log_prob(
            mixtures.PoissonParams(jnp.ones(1), jnp.full((1, 1), jnp.inf)), COUNTS[:, :1]
        ),
        ValueError,
        "outside Poisson's parameter space",
    ),
    (
        "HMM transition < 0",
        lambda: GAUSSIAN_HMM.predict_proba(NEGATIVE_TRANSITION, SEQUENCES),
        ValueError,
        "outside the HMM's parameter space",
    ),
    (
        "HMM start sums to 1.4",
        lambda: GAUSSIAN_HMM.score(
            hmm.HMMParams(jnp.array([0.7, 0.7]), HMM_PARAMS.transmat, HMM_PARAMS.emission),
            SEQUENCES,
        ),
        ValueError,
        "must sum to 1",
    ),
    (
        "HMM start outside",
        _start(GAUSSIAN_HMM, SEQUENCES, NEGATIVE_TRANSITION),
        ValueError,
        "outside the HMM's parameter space",
    ),
    (
        "HMM prior < 1",
        lambda: hmm.gaussian("diag", transmat_prior=0.5),
        ValueError,
        "transmat_prior must be a finite number >= 1",
    ),
    (
        "Student-t dof of another K",
        lambda: jaxem.fit(mixtures.StudentT(dof=np.array([3.0, 4.0, 5.0])), KEY, X, 2, max_iter=2),
        ValueError,
        r"dof must be a scalar or one value per component, \(2,\)",
    ),
    (
        "chunks of fewer rows than K",
        lambda: gmm.fit(KEY, jaxem.chunks([X[:3]]), 5),
        ValueError,
        r"n_components=5 must be <= the number of samples \(3\)",
    ),
    (
        "chunk pair as a list",
        lambda: gmm.fit(KEY, jaxem.chunks([[X, np.ones(len(X))]]), 2),
        TypeError,
        r"a chunk with sample weights is a tuple \(x, w\)",
    ),
    (
        "HMM ICL",
        lambda: jaxem.select(GAUSSIAN_HMM, KEY, SEQUENCES, n_components=[1, 2], criterion="icl"),
        ValueError,
        "criterion='icl' needs mixture families",
    ),
]


@pytest.mark.parametrize(("name", "call", "error", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(name, call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()


def test_integer_and_boolean_data_are_converted_to_float():
    xi = np.random.default_rng(1).integers(0, 10, size=(30, 2))
    a = gmm.fit(KEY, xi, 2)
    b = gmm.fit(KEY, xi.astype(float), 2)
    np.testing.assert_allclose(a.params.means, b.params.means)
    assert gmm.log_prob(PARAMS, np.array([[True, False]])).dtype == jnp.float64


def test_half_precision_data_are_fitted_in_float32():
    """float16 and bfloat16 have no linear-algebra kernels: converted to float32."""
    x16 = np.asarray(X, np.float16)
    a = gmm.fit(KEY, x16, 2)
    b = gmm.fit(KEY, x16.astype(np.float32), 2)
    assert a.params.means.dtype == jnp.float32
    np.testing.assert_array_equal(a.params.means, b.params.means)
    assert gmm.log_prob(b.params, jnp.asarray(x16, jnp.bfloat16)).dtype == jnp.float32


def test_float64_data_far_from_the_origin_warn_when_computed_in_float32():
    """With jax_enable_x64 off, float64 data become float32: where that rounds
    a feature by a noticeable part of its range (values a million standard
    deviations from the origin) every call that takes the data warns, naming
    the feature and the caller's line; float64 data near the origin, float32
    data (the user's choice), a constant feature and float64 kept by x64 do not."""
    from jaxem._src.validation import as_data

    x = np.random.default_rng(3).normal(size=(300, 3))
    far = x + np.asarray([0.0, 1e6, 0.0])
    with jax.enable_x64(False):
        with pytest.warns(UserWarning, match=r"feature 1 \(about 1e\+06\)") as caught:
            as_data(far)
        assert "jax_enable_x64" in str(caught[0].message)
        quiet = [x + 1e3, far.astype(np.float32), np.c_[x, np.full(300, 1e9)], far[:, [0, 2]]]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for data in quiet:
                as_data(data)
        params = gmm.make_params([0.5, 0.5], [[0, 1e6, 0], [1, 1e6, 1]], np.ones(2), "spherical")
        with pytest.warns(UserWarning, match="feature 1") as caught:
            gmm.log_prob(params, far.tolist())
        assert [w.filename for w in caught] == [__file__]  # one warning, naming this line
        for split in (200, 150):  # an HMM's sequences too, padded or not: one warning
            with pytest.warns(UserWarning, match="feature 1") as caught:
                hmm.sequences([far[:split], far[split:]])
            assert [w.filename for w in caught] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_data(far).dtype == jnp.float64  # x64 on (conftest): kept as float64


def test_a_start_of_another_width_is_refused():
    start = gmm.make_params([0.5, 0.5], np.zeros((2, 3)), np.ones(2), "spherical")
    with pytest.raises(ValueError, match="x has 2 features but the starting parameters have 3"):
        gmm.fit_from(start, X)


def test_variances_under_the_smallest_normal_number_are_refused_or_warned():
    """XLA:CPU flushes subnormal numbers to zero: make_params' Cholesky factors
    were NaN, and a fit of data spanning 1e-19 in float32 merged its components
    with no sign of trouble."""
    tiny = np.finfo(np.float32).tiny
    with pytest.raises(ValueError, match="smallest normal float32"):
        f32 = [np.asarray(a, np.float32) for a in ([0.5, 0.5], [[0.0], [1.0]])]
        gmm.make_params(*f32, np.full((2, 1, 1), tiny / 8, np.float32))
    x = (X * 1e-19).astype(np.float32)
    with pytest.warns(UserWarning, match="feature . spans only"):
        gmm.family("full").check_data(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gmm.family("full").check_data((X * 1e-14).astype(np.float32))  # variances ~1e-28: fine


def _feature_mismatches():
    """(name, call on data of `d` features) for parameters of 2 features."""
    import jaxem
    from jaxem import mixtures

    family = gmm.family("full")
    gaussian = hmm.gaussian("diag")
    hmm_params = hmm.make_params(
        [0.5, 0.5],
        [[0.9, 0.1], [0.2, 0.8]],
        gaussian,
        means=np.zeros((2, 2)),
        covariances=np.ones((2, 2)),
    )
    poisson = mixtures.Poisson()
    rates = mixtures.PoissonParams(jnp.ones(2) / 2, jnp.ones((2, 2)))
    return [
        ("family.log_prob", lambda x: family.log_prob(PARAMS, x)),
        ("family.predict", lambda x: family.predict(PARAMS, x)),
        ("Poisson log_prob", lambda x: poisson.log_prob(rates, np.abs(np.round(x)))),
        ("fit_online", lambda x: gmm.fit_online(PARAMS, [x[:10], x[10:]])),
        ("standard_errors", lambda x: jaxem.standard_errors(family, PARAMS, x)),
        ("HMM score", lambda x: gaussian.score(hmm_params, x)),
        ("HMM predict", lambda x: gaussian.predict(hmm_params, x)),
        ("HMM start", lambda x: jaxem.fit(gaussian, None, x, start=hmm_params)),
    ]


@pytest.mark.parametrize("d", [1, 3])
def test_data_of_other_features_than_the_parameters_are_refused(d):
    """A (N, 1) array broadcast silently against parameters of 2 features
    (the Family's scores, online EM, standard errors, HMMs)."""
    x = np.abs(np.random.default_rng(1).normal(size=(20, d)))
    for name, call in _feature_mismatches():
        with pytest.raises(
            ValueError, match=f"has {d} features but the (starting )?parameters have 2"
        ):
            call(x)
            pytest.fail(name)


@pytest.mark.parametrize("init", ["hc", "hc_vvv"])
def test_agglomerative_starts_of_one_row(init):
    result = gmm.fit(KEY, X[:1], 1, init=init)
    np.testing.assert_allclose(result.params.means, X[:1])


def test_static_checks_still_apply_under_jit():
    @jax.jit
    def bad(x):
        return gmm.e_step(PARAMS, x)

    with pytest.raises(ValueError, match="x has 3 features but params have 2"):
        bad(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        jax.jit(lambda x: gmm.fit(KEY, x, 2, covariance_type="dense"))(X)


def test_standardised_starts_of_float32_data_near_its_range():
    """Deviations of 1e18 in float32 have squares near the largest float32: their
    sum overflowed in the standardisation, every scaled distance was 0, and the
    default start put all rows in one cluster (NaN parameters)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, (30, 2)), rng.normal(3, 0.5, (30, 2))])
    x32 = (x * 1e18).astype(np.float32)
    result = gmm.fit(KEY, x32, 2, init="standardized_kmeans")
    expected = gmm.fit(KEY, x32, 2, init="kmeans")
    assert np.all(np.isfinite(np.asarray(result.params.means)))
    np.testing.assert_allclose(
        np.sort(np.asarray(result.params.means[:, 0])),
        np.sort(np.asarray(expected.params.means[:, 0])),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: mixtures.StudentT("diag", reg_covar=-1.0), "reg_covar must be finite and >= 0"),
        (lambda: mixtures.StudentT("diag", reg_covar=np.nan), "reg_covar must be finite"),
        (lambda: mixtures.Poisson(rate_rate=-50.0), "rate_rate must be finite and >= 0"),
        (lambda: mixtures.Poisson(rate_shape=0.5), "rate_shape must be finite and >= 1"),
        (lambda: mixtures.Bernoulli(beta_a=0.5), "beta_a must be finite and >= 1"),
        (lambda: mixtures.Categorical((3,), category_dirichlet=0.5), "category_dirichlet"),
        (lambda: mixtures.Categorical((3,), dirichlet=-1.0), "dirichlet must be finite and >= 1"),
        (lambda: variational.family(weight_concentration_prior=0.0), "must be > 0"),
        (lambda: variational.family(mean_precision_prior=0.0), "must be > 0"),
    ],
)
def test_hyperparameters_outside_their_range_are_refused(make, message):
    """These were accepted, and the fits came out "converged" with impossible
    log-likelihoods (a Poisson mixture at +5.55 per sample, Bernoulli +8.9, a
    Student-t mixture with variances of 1e-77)."""
    with pytest.raises(ValueError, match=message):
        make()


def test_variational_priors_of_the_data_and_its_unsupported_calls():
    """degrees_of_freedom_prior ≤ D − 1 and a covariance prior that is not
    positive definite fitted without a word; select and n_active crashed or
    were ignored (the prior gives every component weight). A mean prior of
    one entry for 3 features was broadcast to all, one of 2 failed inside the
    fit with JAX's broadcasting error, and a NaN or infinite one ended in NaN
    means without a word (the estimator and scikit-learn refuse all three)."""
    x = np.random.default_rng(0).normal(size=(30, 3))
    cases = [
        (variational.family("full", mean_prior=[1.0]), "mean_prior must hold 3 finite"),
        (variational.family("diag", mean_prior=[0.0, 0.0]), "mean_prior must hold 3 finite"),
        (variational.family("full", mean_prior=[0.0, np.nan, 0.0]), "mean_prior must hold"),
        (variational.family("tied", mean_prior=[0.0, np.inf, 0.0]), "mean_prior must hold"),
        (variational.family("full", degrees_of_freedom_prior=1.0), "degrees_of_freedom_prior"),
        (variational.family("full", covariance_prior=-np.eye(3)), "positive semi-definite"),
        (variational.family("diag", covariance_prior=np.ones(2)), "shape"),
    ]
    for family, message in cases:
        with pytest.raises(ValueError, match=message):
            jaxem.fit(family, KEY, x, 2)
    with pytest.raises(ValueError, match="n_active"):
        jaxem.fit(variational.family("diag"), KEY, x, 3, n_active=2)
    with pytest.raises(ValueError, match="select needs"):
        jaxem.select(variational.family("diag"), KEY, x, n_components=[1, 2])


def test_parameters_outside_their_space_are_refused_by_the_densities():
    """A Poisson rate of −1, a Bernoulli probability of 1.5, categorical blocks
    summing to 3 and weights summing to 2 were scored as finite densities."""
    one, half = np.array([[1.0, 1.0]]), jnp.array([0.5, 0.5])
    poisson, bernoulli, categorical = (
        mixtures.Poisson(), mixtures.Bernoulli(), mixtures.Categorical((3, 2))
    )  # fmt: skip
    cases = [
        (poisson, mixtures.PoissonParams(half, jnp.array([[-1.0, 2], [3, 4]])), one, "space"),
        (poisson, mixtures.PoissonParams(jnp.array([1.0, 1.0]), jnp.ones((2, 2))), one, "sum to"),
        (bernoulli, mixtures.BernoulliParams(half, jnp.full((2, 2), 1.5)), one, "space"),
        (categorical, mixtures.CategoricalParams(half, jnp.ones((2, 5))), [[0, 1]], "sum to"),
    ]
    for family, params, x, message in cases:
        with pytest.raises(ValueError, match=message):
            family.log_prob(params, x)


def test_mclust_aliases_build_the_same_parameters_as_the_four_types():
    """Parameters made with "VVV" kept that name, and fitting from them (or a
    MAP M-step with the default prior of "VVV") failed with pytree errors."""
    x = jnp.asarray(X)
    resp = jax.nn.one_hot(jnp.arange(len(X)) % 2, 2)
    for alias, name in (("VVV", "full"), ("EEE", "tied"), ("VVI", "diag"), ("VII", "spherical")):
        p = gmm.m_step(resp, x, covariance_type=alias)
        assert p.covariance_type == name
        assert gmm.make_params(p.weights, p.means, p.covariances, alias).covariance_type == name
        assert np.isfinite(float(gmm.fit_from(p, x, max_iter=3).log_likelihood))
    prior = gmm.default_prior(x, 2, "VVV")
    assert gmm.m_step(resp, x, covariance_type="VVV", prior=prior).covariance_type == "full"


def test_a_start_of_another_covariance_type_is_refused():
    """A tied start for a full family failed inside with a dot_general shape error."""
    tied = gmm.m_step(jax.nn.one_hot(jnp.arange(len(X)) % 2, 2), X, covariance_type="tied")
    with pytest.raises(ValueError, match="covariance_type='tied', the family 'full'"):
        jaxem.fit(gmm.family("full"), None, X, start=tied)


def test_select_of_a_bare_number_of_components_says_what_it_takes():
    """``n_components=2`` raised Python's "'int' object is not iterable"."""
    with pytest.raises(TypeError, match="an iterable of ints"):
        gmm.select(KEY, X, n_components=2)


def test_trees_of_integer_data_and_kmeans_input_checks():
    """Integer data made ward_tree's loop carry change type and vvv_tree call
    finfo of an integer; k-means of zero weights or NaN gave NaN centres, and
    n_clusters=0 a math domain error."""
    from jaxem import hierarchical, kmeans

    ints = np.array([[0, 1], [1, 0], [5, 6], [6, 5], [9, 9]])
    for tree in (hierarchical.ward_tree, hierarchical.vvv_tree):
        expected = hierarchical.cut(tree(ints.astype(float)), 2)
        np.testing.assert_array_equal(hierarchical.cut(tree(ints), 2), expected)
    x = np.asarray(X)
    with pytest.raises(ValueError, match="sample_weight"):
        kmeans.kmeans(KEY, x, 2, sample_weight=np.zeros(len(x)))
    with pytest.raises(ValueError, match="NaN"):
        kmeans.kmeans(KEY, np.where(x > 1, np.nan, x), 2)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans.kmeans(KEY, x, 0)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans.kmeans_plusplus(KEY, x, len(x) + 1)
