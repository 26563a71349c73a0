"""The engine's contract: every family on every data source, with every option.

Exact sources (chunks read from a memmap, rows sharded over 4 devices) give the
in-memory fit to 1e-9 in float64: history, n_iter, status and the objective
(log-likelihood plus log prior). Online EM reaches the batch optimum within its
documented tolerance. The Poisson, Bernoulli and categorical mixtures are added
through the seam alone (``jaxem.mixtures``) and get initialisation, restarts,
selection, out-of-core and sharded fitting from the engine; so is the mixture of
factor analysers (its statistics about the E-step's means, re-expressed for
online EM by its ``reframe``).
"""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import gmm, mixtures

N, K = 240, 3


def _gaussian_data(seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[-4.0, 0.0], [3.0, 2.0], [0.0, 6.0]])
    labels = rng.integers(K, size=N)
    return centers[labels] + rng.normal(size=(N, 2)) + 20.0


def _count_data(seed=0):
    rng = np.random.default_rng(seed)
    rates = np.array([[1.0, 8.0], [6.0, 1.0], [12.0, 12.0]])
    labels = rng.integers(K, size=N)
    return rng.poisson(rates[labels]).astype(np.float64)


def _binary_data(seed=0):
    rng = np.random.default_rng(seed)
    high = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 1, 1]])
    probs = np.where(high, 0.85, 0.15)
    labels = rng.integers(K, size=N)
    return (rng.uniform(size=(N, 6)) < probs[labels]).astype(np.float64)


def _factor_data(seed=0):
    """4 features, each cluster spread along its own line (one factor) plus noise."""
    rng = np.random.default_rng(seed)
    centers = np.array([[-4.0, 0.0, 1.0, 0.0], [3.0, 2.0, 0.0, -1.0], [0.0, 6.0, -2.0, 1.0]])
    directions = np.array([[1.0, 1.0, 0.0, 0.5], [0.0, 1.0, -1.0, 1.0], [1.0, -0.5, 1.0, 0.0]])
    labels = rng.integers(K, size=N)
    z = rng.normal(size=(N, 1))
    return centers[labels] + z * directions[labels] + 0.3 * rng.normal(size=(N, 4)) + 20.0


N_CATEGORIES = (3, 2, 4)


def _category_data(seed=0):
    """Codes of 3 features (3, 2 and 4 categories): each class answers its own
    code with probability 0.85, a uniformly random one otherwise."""
    rng = np.random.default_rng(seed)
    preferred = np.array([[0, 0, 1], [1, 1, 3], [2, 0, 0]])
    labels = rng.integers(K, size=N)
    noise = np.stack([rng.integers(0, c, N) for c in N_CATEGORIES], axis=1)
    keep = rng.uniform(size=(N, len(N_CATEGORIES))) < 0.85
    return np.where(keep, preferred[labels], noise).astype(np.float64)


FAMILIES = {
    "gaussian-full": (lambda prior: gmm.family("full", prior=prior), _gaussian_data, "default"),
    "gaussian-diag": (lambda prior: gmm.family("diag", prior=prior), _gaussian_data, "default"),
    "poisson": (
        lambda prior: mixtures.Poisson(**(prior or {})),
        _count_data,
        {"rate_shape": 2.0, "rate_rate": 0.5, "dirichlet": 2.0},
    ),
    "bernoulli": (
        lambda prior: mixtures.Bernoulli(**(prior or {})),
        _binary_data,
        {"beta_a": 2.0, "beta_b": 1.5, "dirichlet": 2.0},
    ),
    "factor_analyzers": (
        lambda prior: mixtures.FactorAnalyzers(n_factors=1, **(prior or {})),
        _factor_data,
        {"dirichlet": 2.0, "reg_covar": 1e-3},
    ),
    "categorical": (
        lambda prior: mixtures.Categorical(N_CATEGORIES, **(prior or {})),
        _category_data,
        {"category_dirichlet": 2.0, "dirichlet": 2.0},
    ),
}
#: Each option alone, and all three at once ("all"). The default run checks every
#: family with all of them (a failure there is then found option by option in the
#: slow run); the single options are marked slow.
OPTIONS = ("plain", "sample_weight", "prior", "n_active", "all")


def _case(family_name, option):
    make, data, prior = FAMILIES[family_name]
    x = data()
    family = make(prior if option in ("prior", "all") else None)
    weighted = option in ("sample_weight", "all")
    w = np.random.default_rng(1).uniform(0.5, 2.0, N) if weighted else None
    n_active = 2 if option in ("n_active", "all") else None
    return family, x, w, n_active


FIT = dict(n_init=2, max_iter=40, tol=1e-7, n_refine=1, refine_max_iter=40)


def assert_same_fit(a, b, rtol=1e-9):
    np.testing.assert_array_equal(np.asarray(a.n_iter), np.asarray(b.n_iter))
    np.testing.assert_array_equal(np.asarray(a.status), np.asarray(b.status))
    np.testing.assert_array_equal(np.asarray(a.restart_status), np.asarray(b.restart_status))
    np.testing.assert_allclose(a.history, b.history, rtol=rtol, atol=1e-12)  # NaN at same places
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=rtol)
    np.testing.assert_allclose(a.restart_log_likelihoods, b.restart_log_likelihoods, rtol=rtol)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-7, atol=1e-9)


def _memmap_cases():
    """Every family with all options at once, and the Gaussian without options, in
    the default run; every other pair is slow."""
    default = {(name, "all") for name in FAMILIES} | {("gaussian-full", "plain")}
    return [
        (name, o) if (name, o) in default else pytest.param(name, o, marks=pytest.mark.slow)
        for name in sorted(FAMILIES)
        for o in OPTIONS
    ]


@pytest.mark.parametrize("family_name, option", _memmap_cases())
def test_chunks_from_a_memmap_equal_the_in_memory_fit(family_name, option, tmp_path):
    family, x, w, n_active = _case(family_name, option)
    key = jax.random.key(3)
    ref = jaxem.fit(family, key, x, K, sample_weight=w, n_active=n_active, **FIT)
    path = tmp_path / "x.f64"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=x.shape)
    # chunks of 64 rows: the last (48 rows) is padded with zero weights
    data = jaxem.chunks(gmm.array_chunks(mm, 64, w))
    res = jaxem.fit(family, key, data, K, n_active=n_active, **FIT)
    assert_same_fit(res, ref)
    if option in ("prior", "all"):  # the objective includes the log prior, in both
        bound = _bound(family_name, family, x, w, n_active or K)
        weights = np.ones(N) if w is None else w
        ll_sum = float(jnp.sum(weights * bound.log_prob(res.params, jnp.asarray(x))))
        expected = (ll_sum + float(bound.log_prior(res.params))) / weights.sum()
        np.testing.assert_allclose(float(res.log_likelihood), expected, rtol=1e-9)


def _bound(family_name, family, x, w, n_active):
    """The family with its data-dependent prior resolved (mclust's default prior,
    from the weighted data and the number of active components)."""
    if family_name.startswith("gaussian"):
        covariance_type = family_name.split("-")[1]
        prior = gmm.default_prior(x, n_active, covariance_type, sample_weight=w)
        return gmm.family(covariance_type, prior=prior)
    return family


@pytest.mark.parametrize(
    "family_name",
    # the Gaussian family's online EM is also tested in tests/test_gmm_streaming.py
    [
        pytest.param(f, marks=pytest.mark.slow) if f.startswith("gaussian") else f
        for f in sorted(FAMILIES)
    ],
)
def test_online_em_reaches_the_batch_optimum(family_name):
    """Stepwise EM over 40 shuffled passes of mini-batches ends within 2e-3 of the
    batch fit's mean log-likelihood (its documented accuracy at this size)."""
    family, x, _, _ = _case(family_name, "plain")
    batch = jaxem.fit(family, jax.random.key(0), x, K, n_init=2, tol=1e-9, max_iter=500)
    rng = np.random.default_rng(0)
    batches = [x[rng.permutation(N)].reshape(6, 40, -1) for _ in range(40)]
    stream = (b for epoch in batches for b in epoch)
    start = jaxem.fit(family, jax.random.key(0), x, K, n_init=2, max_iter=1).params
    online = jaxem.fit_online(family, start, stream, polyak=True, polyak_start=60)
    final = float(jnp.mean(family.log_prob(online.params, jnp.asarray(x))))
    gap = float(batch.log_likelihood) - final
    assert -1e-9 < gap < 2e-3, gap


@pytest.mark.parametrize("sequential", [False, True], ids=["batch", "sequential"])
def test_screening_and_refinement_as_one_loop_equal_two_loops(sequential, monkeypatch):
    """In memory, screening and refinement run as one ``while_loop``
    (engine.run_em_refined), its slots a batch or, for large data, one restart
    at a time; chunks read from the host run the screening and then the
    refinement (engine.refine). The same fit, with restarts stopped by
    ``max_iter`` in the screening and in the refinement, and restarts that are
    not refined."""
    from jaxem._src import engine, sources

    if sequential:  # as for data of engine.SEQUENTIAL_MIN_WORK and more
        monkeypatch.setattr(engine, "SEQUENTIAL_MIN_WORK", 1)
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["sequential"])
        return engine.run_em_refined(*args, **kwargs)

    monkeypatch.setattr(sources, "run_em_refined", spy)
    family, x, w, _ = _case("gaussian-full", "sample_weight")
    # n_init differs between the two: each traces a program of its own
    fit = dict(n_init=5 + sequential, n_refine=2, max_iter=6, tol=1e-7, refine_max_iter=9)
    key = jax.random.key(5)
    ref = jaxem.fit(family, key, jaxem.chunks(gmm.array_chunks(x, 64, w)), K, **fit)
    res = jaxem.fit(family, key, x, K, sample_weight=w, **fit)
    assert seen == [sequential]  # the one loop ran, in the intended layout
    assert_same_fit(res, ref)
    screened = np.asarray(res.restart_status) == jaxem.MAX_ITER
    assert screened.sum() >= 3  # restarts left at the screening's max_iter
    assert 6 < int(res.n_iter) <= 6 + 9  # the chosen restart was refined


def test_poisson_family_gets_restarts_selection_and_refinement_from_the_engine():
    x = _count_data()
    key = jax.random.key(0)
    result = jaxem.fit(mixtures.Poisson(), key, x, K, n_init=6)
    assert result.restart_log_likelihoods.shape == (6,)
    assert int(np.sum(result.restart_refined)) == 2
    assert result.initializer in mixtures.Poisson.init_methods
    np.testing.assert_allclose(
        np.sort(result.params.rates[:, 0]), [1.0, 6.0, 12.0], rtol=0.25, atol=0.5
    )
    chosen = jaxem.select(mixtures.Poisson(), key, x, n_components=range(1, 6), n_init=3)
    assert chosen.best_n_components == K
    assert chosen.params.rates.shape == (K, 2)
    # BIC from the family's own parameter count and the summed log-likelihood
    fit3 = jax.tree.map(lambda a: a[K - 1], chosen.fits[0])
    p = float(mixtures.Poisson().n_parameters(fit3.params))
    assert p == K - 1 + K * 2
    ll = float(jnp.sum(mixtures.Poisson().log_prob(fit3.params, jnp.asarray(x))))
    np.testing.assert_allclose(chosen.scores[0, K - 1], -2 * ll + p * np.log(N), rtol=1e-9)


_SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxem
    sys_path = {path!r}
    import sys; sys.path.insert(0, sys_path)
    from test_engine_contract import FAMILIES, FIT, K, OPTIONS, _case, assert_same_fit
    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ("data",))
    key = jax.random.key(3)
    for name in {families!r}:
        for option in {options!r}:
            family, x, w, n_active = _case(name, option)
            ref = jaxem.fit(family, key, x, K, sample_weight=w, n_active=n_active, **FIT)
            data = jaxem.sharded(x, mesh)
            res = jaxem.fit(family, key, data, K, sample_weight=w, n_active=n_active, **FIT)
            assert_same_fit(res, ref)
    # a global jax.Array on make_mesh's (Explicit) axis: the start's rows are
    # gathered by device_put (a sharding constraint left them sharded: an error)
    from jax.sharding import NamedSharding, PartitionSpec
    family, x, _, _ = _case("gaussian-full", "all")
    x = np.asarray(x)[: len(x) // 4 * 4]
    ref = jaxem.fit(family, key, x, K, **FIT)
    xg = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    assert_same_fit(jaxem.fit(family, key, jaxem.sharded(xg, mesh), K, **FIT), ref)
    print("OK")
    """
)


#: The sharded source is family-agnostic (it sums any statistics pytree over the
#: devices): the default run shards two families of different statistics (a
#: Gaussian and the factor analysers, whose statistics are re-framed), the slow
#: run every family, with all options at once and with each option alone.
SHARDED_FAMILIES = ("gaussian-full", "factor_analyzers")


@pytest.mark.parametrize(
    "families, options",
    [
        (SHARDED_FAMILIES, ("all",)),
        pytest.param(
            sorted(set(FAMILIES) - set(SHARDED_FAMILIES)), ("all",), marks=pytest.mark.slow
        ),
        pytest.param(sorted(FAMILIES), OPTIONS, marks=pytest.mark.slow),
    ],
    ids=["all", "all-other-families", "each"],
)
def test_sharded_over_four_devices_equals_the_in_memory_fit(families, options):
    """Families with all options at once (each option alone: slow), in a fresh
    process that sees 4 CPU devices."""
    env = dict(
        os.environ,
        XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
    )
    script = _SHARDED.format(
        path=os.path.dirname(__file__), families=tuple(families), options=options
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK" in done.stdout


@pytest.mark.parametrize("n_rows", [300, 600], ids=["trees-of-all-rows", "trees-on-subsets"])
def test_initialisation_in_parts_at_once_equals_the_one_program(n_rows, monkeypatch):
    """Where the restarts include agglomerations of random subsets, ``fit``
    computes the starting responsibilities in parts (engine.init_tasks: each
    such restart apart from the rest) from threads of their own: the same fit
    as the one program that computes them all. Trees of all rows stay in the
    one program."""
    from jaxem._src import api, engine

    x = np.concatenate([_gaussian_data(seed) for seed in range(n_rows // N + 1)])[:n_rows]
    fit = dict(n_init=7, n_refine=2, tol=1e-6)
    taken = []
    parallel = api._parallel_init

    def spy(view, source, key, n_active, config, tasks, *rest):
        taken.append(tasks)
        out = parallel(view, source, key, n_active, config, tasks, *rest)
        one = api._init_program(
            view, source, key, n_active, n_components=K, methods=config.methods
        )  # every restart's responsibilities, each where the one program puts them
        rows = source.x.shape[0]  # padded to its bucket
        np.testing.assert_array_equal(out.dense(rows), one.dense(rows))
        return out

    monkeypatch.setattr(api, "_parallel_init", spy)
    monkeypatch.setattr(api, "_cores", lambda: 2)
    res = gmm.fit(jax.random.key(2), x, K, **fit)
    methods = gmm.family("full").portfolio(7, n_rows, 2)
    trees = [i for i, m in enumerate(methods) if m in ("hc", "hc_vvv")]
    tasks = engine.init_tasks(gmm.family("full"), methods, n_rows)
    assert sorted(i for ix in tasks for i in ix) == list(range(7))
    if n_rows > 512:  # each tree on its own random subset: a part of its own
        assert sorted(tasks[: len(trees)]) == [(i,) for i in trees]
        assert taken == [tasks]
    else:  # agglomerations of all rows, once each: one program for all
        assert tasks == (tuple(range(7)),) and methods[1:3] == ("hc_vvv", "hc")
        assert taken == []
    monkeypatch.setattr(api, "_cores", lambda: 1)  # the one program
    ref = gmm.fit(jax.random.key(2), x, K, **fit)
    assert len(taken) == (n_rows > 512)
    np.testing.assert_array_equal(res.restart_initializers, ref.restart_initializers)
    assert_same_fit(res, ref, rtol=1e-6)


def test_initialisation_parts_that_can_block_in_lapack_run_one_after_another(monkeypatch):
    """jaxlib 0.10's batched LAPACK calls can block a thread of XLA:CPU's pool
    and two at once hang it (tests/test_lapack_order.py): parts of an
    initialisation whose programs hold such a call (VVV trees of more than
    hierarchical.UNROLL_MAX_FEATURES features: a Cholesky factorisation of
    every cluster pair's scatter per merge) share one lane; the others run
    each in a lane of its own."""
    from jaxem._src import api

    lanes_seen = []

    class Recorder:
        def map(self, fn, lanes):
            lanes_seen.append([list(lane) for lane in lanes])
            return [fn(lane) for lane in lanes]

    monkeypatch.setattr(api, "_init_threads", Recorder)
    monkeypatch.setattr(api, "_cores", lambda: 2)
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(600, 20)) + 4 * rng.integers(2, size=(600, 1))
    gmm.fit(jax.random.key(0), wide, 2, n_init=3, init="hc_vvv", max_iter=2)
    assert lanes_seen[-1] == [[0, 1, 2]]  # three trees on random subsets: one lane
    narrow = np.concatenate([_gaussian_data(seed) for seed in range(3)])[:600]
    gmm.fit(jax.random.key(0), narrow, K, n_init=3, init="hc_vvv", max_iter=2)
    assert lanes_seen[-1] == [[0], [1], [2]]  # a batch-1 eigendecomposition only


def test_a_family_missing_a_method_is_told_which_one():
    """The base class's methods raised a bare NotImplementedError: only the
    traceback said what to write."""
    import dataclasses

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass(frozen=True)
    class NoMaximize(jaxem.MixtureFamily):  # the README's Exponential without maximize
        def log_components(self, params, x):
            return jnp.sum(jnp.log(params.rates), axis=1) - x @ params.rates.T

        def suff_stats(self, resp, x):
            return jnp.sum(resp, axis=0), resp.T @ x

    x = np.random.default_rng(0).exponential(size=(20, 1))
    with pytest.raises(NotImplementedError, match=r"NoMaximize does not implement maximize\(\)"):
        jaxem.fit(NoMaximize(), jax.random.key(0), x, 2)


def test_a_family_with_a_log_prior_has_a_prior_by_default():
    """Online EM scales its per-sample statistics back to counts before a MAP
    M-step (``has_prior``); a family that defined ``log_prior`` without also
    saying ``has_prior`` got an online fit dominated by its prior (a
    reviewer's exponential mixture with a Gamma prior: rates 0.98 and 0.88
    online against 3.35 and 0.45 in batch)."""

    class WithPrior(jaxem.Family):
        def log_prior(self, params):
            return jnp.zeros(())

    assert WithPrior().has_prior and not jaxem.Family().has_prior


def test_select_refuses_a_family_whose_m_step_revives_inactive_components():
    """``select`` fits every K inside the largest by components of weight 0; an
    M-step whose prior gives them weight again (``(n_k + 1) / (N + K)``) made
    every K's fit the largest's, and the BIC of "K = 1" that of three
    components, silently (a reviewer's exponential mixture)."""

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass(frozen=True)
    class Params:
        weights: jax.Array
        rates: jax.Array

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass(frozen=True)
    class Reviving(jaxem.MixtureFamily):
        def log_components(self, params, x):
            return jnp.sum(jnp.log(params.rates), axis=1) - x @ params.rates.T

        def suff_stats(self, resp, x):
            return jnp.sum(resp, axis=0), resp.T @ x

        def maximize(self, stats, params, context):
            nk, sum_x = stats
            rates = (nk + 1)[:, None] / (sum_x + 1)
            return Params((nk + 1) / (jnp.sum(nk) + nk.shape[0]), rates)

        def n_parameters(self, params):
            k = jnp.sum(params.weights > 0)
            return k - 1 + k * params.rates.shape[1]

    x = jax.random.exponential(jax.random.key(0), (200, 1))
    with pytest.raises(ValueError, match=r"beyond n_components=1 .*supports_n_active"):
        jaxem.select(Reviving(), jax.random.key(1), x, n_components=[1, 3], init="kmeans")
