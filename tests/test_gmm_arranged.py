"""The composable steps on data arranged by ``gmm.arrange``: the same steps as on
the plain array (float64), accurate in float32 where the plain moment formulation
is not, one decision per batch under ``vmap``, and clear errors."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import gmm
from jaxem._src.gmm import family as gmm_family
from jaxem._src.gmm import layout as layout_lib

N_LAYOUT = layout_lib.LAYOUT_MIN_ROWS  # the smallest data arranged in chunks


def _data(n, separation, seed=0, d=2, k=3, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(k, d)) + offset
    labels = rng.integers(k, size=n)
    return centres[labels] + scale * rng.normal(size=(n, d))


def _start(x, k, covariance_type):
    return gmm.fit(jax.random.key(0), x, k, covariance_type=covariance_type, max_iter=2).params


@pytest.mark.parametrize(
    "n, covariance_type",
    [(N_LAYOUT, "full"), (N_LAYOUT, "tied"), (300, "diag"), (300, "spherical")],
)
def test_arranged_steps_equal_the_plain_steps(n, covariance_type):
    x = jnp.asarray(_data(n, 4.0))
    w = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2.0, n))
    w = w.at[5].set(0.0)  # a row of weight zero takes no part
    params = _start(x, 3, covariance_type)
    data = gmm.arrange(x, 3, covariance_type=covariance_type, sample_weight=w)
    assert (data.features.shape[0] > 1) == (n >= N_LAYOUT)

    resp, ll = gmm.e_step(params, data)
    plain_resp, _ = gmm.e_step(params, x)
    np.testing.assert_allclose(data.responsibilities(resp), plain_resp, rtol=0, atol=1e-12)
    weighted_ll = jnp.sum(w * gmm.log_prob(params, x)) / jnp.sum(w)
    np.testing.assert_allclose(ll, weighted_ll, rtol=1e-12)
    # padding slots hold no responsibility
    padding = np.asarray(data.rows) == n
    assert np.all(np.asarray(resp)[padding] == 0)

    new = gmm.m_step(resp, data, reg_covar=1e-4)
    plain = gmm.m_step(
        plain_resp, x, covariance_type=covariance_type, reg_covar=1e-4, sample_weight=w
    )
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_em_on_arranged_data_reaches_the_plain_fixed_point():
    x = jnp.asarray(_data(N_LAYOUT, 3.0, seed=2))
    start = _start(x, 3, "full")
    m_step = functools.partial(gmm.m_step, reg_covar=1e-6)
    plain = jaxem.em(gmm.e_step, m_step, start, x, tol=1e-10, max_iter=200)
    arranged = jaxem.em(gmm.e_step, m_step, start, gmm.arrange(x, 3), tol=1e-10, max_iter=200)
    assert int(arranged.n_iter) == int(plain.n_iter)
    np.testing.assert_allclose(arranged.log_likelihood, plain.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(arranged.params.covariances, plain.params.covariances, rtol=1e-8)


@pytest.mark.parametrize("n", [N_LAYOUT, 400])
def test_arranged_float32_steps_stay_accurate_far_apart(n):
    """Clusters hundreds of σ apart, far from the origin: about the data's mean the
    moment products would lose every digit of the covariances in float32. Chunks
    about their own centres keep them (n = N_LAYOUT); one chunk (n = 400) fails
    its check and takes the direct route. Either way the float32 steps match
    float64's."""
    x64 = _data(n, 300.0, seed=3, offset=1e3)
    params64 = _start(jnp.asarray(x64), 3, "full")
    x32 = jnp.asarray(x64, jnp.float32)
    params32 = jax.tree.map(
        lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, params64
    )
    data32 = gmm.arrange(x32, 3)
    resp32, ll32 = gmm.e_step(params32, data32)
    resp64, ll64 = gmm.e_step(params64, jnp.asarray(x64))
    assert resp32.dtype == jnp.float32
    np.testing.assert_allclose(data32.responsibilities(resp32), resp64, atol=1e-5)
    np.testing.assert_allclose(ll32, ll64, rtol=1e-6)
    new32 = gmm.m_step(resp32, data32)
    new64 = gmm.m_step(resp64, jnp.asarray(x64))
    np.testing.assert_allclose(new32.means, new64.means, rtol=1e-6)
    np.testing.assert_allclose(new32.covariances, new64.covariances, rtol=2e-4, atol=1e-5)


def test_arranged_m_step_recomputes_chunks_whose_shift_cancels():
    """A tight component (σ = 1e-3) whose chunk's centre lies far from its mean
    by its own standard deviations: the rows of two far-apart tight clusters in
    one chunk (small data). Moving the statistics to the new means would cancel
    every digit in float32; the check sends the chunk to the direct route."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(size=(100, 2)) * 1e-3, 10 + rng.normal(size=(100, 2)) * 1e-3])
    resp = np.zeros((200, 2))
    resp[:100, 0] = resp[100:, 1] = 1
    data = gmm.arrange(jnp.asarray(x, jnp.float32), 2)
    assert data.features.shape[0] == 1
    new = gmm.m_step(jnp.asarray(resp, jnp.float32)[None], data, reg_covar=0.0)
    exact = gmm.m_step(jnp.asarray(resp), jnp.asarray(x), reg_covar=0.0)
    # float32 rounds the rows themselves by about 1e-3 of σ here
    np.testing.assert_allclose(new.covariances, exact.covariances, rtol=2e-3, atol=1e-9)


def test_arranged_steps_under_vmap_over_restarts():
    x = jnp.asarray(_data(N_LAYOUT, 4.0, seed=5))
    data = gmm.arrange(x, 3)
    keys = jax.random.split(jax.random.key(1), 2)
    p = [gmm.fit(key, x, 3, max_iter=1, init="random_from_data").params for key in keys]
    starts = jax.tree.map(lambda *a: jnp.stack(a), *p)
    resp, ll = jax.vmap(gmm.e_step, in_axes=(0, None))(starts, data)
    new = jax.vmap(gmm.m_step, in_axes=(0, None))(resp, data)
    for i in range(2):
        one_resp, one_ll = gmm.e_step(p[i], data)
        np.testing.assert_allclose(resp[i], one_resp, atol=1e-12)
        np.testing.assert_allclose(ll[i], one_ll, rtol=1e-12)
        one = gmm.m_step(one_resp, data)
        np.testing.assert_allclose(new.covariances[i], one.covariances, rtol=1e-10)


def test_arranged_steps_try_the_pass_over_all_rows_first(monkeypatch):
    """Where the fit would keep the features of all rows about the data's mean
    (rows × K ≥ ``WHOLE_PASS_MIN_ELEMENTS``; lowered here), so does ``arrange``,
    and the steps take one pass over them where the whole-data check holds: in
    float64 the plain steps to 1e-12 (weights too), also two restarts under
    ``vmap``; on clusters hundreds of σ apart far from the origin the check
    fails and the float32 steps, by the chunks, still match float64's."""
    assert gmm.arrange(jnp.asarray(_data(N_LAYOUT, 4.0)), 3).whole is None
    monkeypatch.setattr(gmm_family, "WHOLE_PASS_MIN_ELEMENTS", 0)
    x = jnp.asarray(_data(N_LAYOUT, 4.0, seed=6))
    w = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2.0, N_LAYOUT))
    data = gmm.arrange(x, 3, sample_weight=w)
    assert data.whole is not None and data.whole.shape == data.features.shape
    keys = jax.random.split(jax.random.key(2), 2)
    p = [gmm.fit(key, x, 3, max_iter=2, init="random_from_data").params for key in keys]
    starts = jax.tree.map(lambda *a: jnp.stack(a), *p)
    resp, ll = jax.vmap(gmm.e_step, in_axes=(0, None))(starts, data)
    new = jax.vmap(functools.partial(gmm.m_step, reg_covar=1e-4), in_axes=(0, None))(resp, data)
    for i in range(2):
        plain_resp, _ = gmm.e_step(p[i], x)
        np.testing.assert_allclose(data.responsibilities(resp[i]), plain_resp, atol=1e-12)
        weighted_ll = jnp.sum(w * gmm.log_prob(p[i], x)) / jnp.sum(w)
        np.testing.assert_allclose(ll[i], weighted_ll, rtol=1e-12)
        plain = gmm.m_step(plain_resp, x, reg_covar=1e-4, sample_weight=w)
        np.testing.assert_allclose(new.covariances[i], plain.covariances, rtol=1e-10)
        np.testing.assert_allclose(new.means[i], plain.means, rtol=1e-10, atol=1e-12)

    x64 = _data(N_LAYOUT, 300.0, seed=3, offset=1e3)
    params64 = _start(jnp.asarray(x64), 3, "full")
    params32 = jax.tree.map(
        lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, params64
    )
    data32 = gmm.arrange(jnp.asarray(x64, jnp.float32), 3)
    assert data32.whole is not None
    resp32, ll32 = gmm.e_step(params32, data32)
    resp64, ll64 = gmm.e_step(params64, jnp.asarray(x64))
    np.testing.assert_allclose(data32.responsibilities(resp32), resp64, atol=1e-5)
    np.testing.assert_allclose(ll32, ll64, rtol=1e-6)
    new32, new64 = gmm.m_step(resp32, data32), gmm.m_step(resp64, jnp.asarray(x64))
    np.testing.assert_allclose(new32.covariances, new64.covariances, rtol=2e-4, atol=1e-5)


def test_arranged_steps_with_the_whole_pass_under_vmap_over_data_sets(monkeypatch):
    """Arranged data sets stacked and vmapped (the data vary over the batch, so
    the steps take the chunks for every element) equal the steps on each data
    set apart, which take the pass over all rows where it holds; the M-step's
    estimate says the pass over all rows can hold on overlapping clusters and
    not on clusters hundreds of σ apart."""
    from jaxem._src.gmm import arranged

    monkeypatch.setattr(gmm_family, "WHOLE_PASS_MIN_ELEMENTS", 0)
    xs = [jnp.asarray(_data(N_LAYOUT, s, seed=7), jnp.float32) for s in (1.0, 300.0)]
    datas = [gmm.arrange(x, 3) for x in xs]
    starts = [
        jax.tree.map(
            lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a,
            _start(x.astype(jnp.float64), 3, "full"),
        )
        for x in xs
    ]
    resp = [gmm.e_step(p, d)[0] for p, d in zip(starts, datas, strict=True)]
    may_hold = jax.jit(arranged._whole_m_step_may_hold)
    assert bool(may_hold(resp[0], datas[0])) and not bool(may_hold(resp[1], datas[1]))

    def steps(p, d):
        r, ll = gmm.e_step(p, d)
        return gmm.m_step(r, d).covariances, ll

    stack = functools.partial(jax.tree.map, lambda *a: jnp.stack(a))
    covariances, ll = jax.jit(jax.vmap(steps))(stack(*starts), stack(*datas))
    for i in range(2):
        one_cov, one_ll = jax.jit(steps)(starts[i], datas[i])
        np.testing.assert_allclose(ll[i], one_ll, rtol=1e-6)
        np.testing.assert_allclose(covariances[i], one_cov, rtol=1e-4, atol=1e-6)


def test_arranged_data_errors():
    x = jnp.asarray(_data(300, 3.0))
    data = gmm.arrange(x, 3, covariance_type="diag")
    params = _start(x, 3, "full")
    with pytest.raises(ValueError, match="arranged for 'diag'"):
        gmm.e_step(params, data)
    resp, _ = gmm.e_step(_start(x, 3, "diag"), data)
    with pytest.raises(ValueError, match="arranged for 'diag'"):
        gmm.m_step(resp, data, covariance_type="full")
    with pytest.raises(ValueError, match="chunks, rows per chunk, K"):
        gmm.m_step(data.responsibilities(resp), data)
    with pytest.raises(ValueError, match="sample weights"):
        gmm.m_step(resp, data, sample_weight=jnp.ones(300))
    with pytest.raises(ValueError, match="at least 1"):
        gmm.arrange(x, 0)
    with pytest.raises(ValueError, match="sample_weight"):
        gmm.arrange(x, 3, sample_weight=jnp.ones(5))


def test_gradients_through_arranged_steps_match_finite_differences():
    """Reverse mode through ``arrange`` and both steps (the decisions carry no
    derivative), and through a fit by the implicit function theorem, against
    central differences of the plain array's steps and fit (float64)."""
    x = _data(N_LAYOUT, 8.0, seed=6)
    params = _start(jnp.asarray(x), 3, "full")

    def step(x, arranged):
        data = gmm.arrange(x, 3) if arranged else x
        resp, ll = gmm.e_step(params, data)
        return ll + jnp.sum(gmm.m_step(resp, data).covariances)

    def fitted(x, arranged):  # 400 iterations: the parameters at the fixed point to ~1e-12
        data = gmm.arrange(x, 3) if arranged else x
        result = jaxem.em(
            gmm.e_step, gmm.m_step, params, data, tol=0.0, max_iter=400, implicit=True
        )
        return jnp.sum(result.params.means)

    # h = 1e-4: the differences' rounding at 1e-5 reached 1.3e-5 relative
    # (their truncation error at 1e-4: at most 1.3e-6)
    h = 1e-4
    for fn in (step, fitted):
        grad = jax.grad(fn)(jnp.asarray(x), True)
        for row, col in [(0, 0), (17, 1), (N_LAYOUT - 1, 0)]:
            up, down = x.copy(), x.copy()
            up[row, col] += h
            down[row, col] -= h
            central = (fn(jnp.asarray(up), False) - fn(jnp.asarray(down), False)) / (2 * h)
            np.testing.assert_allclose(grad[row, col], central, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("covariance_type, with_prior", [("full", True), ("EEV", False)])
def test_arranged_m_step_with_a_prior_and_an_mclust_model(covariance_type, with_prior):
    """The MAP M-step (absolute counts) and an mclust model whose M-step
    iterates, from statistics moved chunk by chunk, equal the plain ones."""
    x = jnp.asarray(_data(N_LAYOUT, 4.0, seed=7, d=3, k=2))
    params = _start(x, 2, covariance_type)
    prior = gmm.default_prior(x, 2, covariance_type) if with_prior else None
    data = gmm.arrange(x, 2, covariance_type=covariance_type)
    resp, _ = gmm.e_step(params, data)
    plain_resp, _ = gmm.e_step(params, x)
    new = gmm.m_step(resp, data, prior=prior)
    plain = gmm.m_step(plain_resp, x, covariance_type=covariance_type, prior=prior)
    np.testing.assert_allclose(new.covariances, plain.covariances, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.means, plain.means, rtol=1e-10, atol=1e-12)


def test_a_chunk_of_a_layout_that_fails_its_checks_takes_the_direct_route_in_both_steps():
    """Chunk 0's features moved to a centre fifty units (about fifty of its
    components' standard deviations) from its rows: exact algebra, but the
    moment route would carry an error of about eps · 50² in float32, over the
    bound, where the direct route's is about eps · 50. Both steps check the
    chunks in order, send that chunk to the direct route and keep every other
    chunk's products, and match the plain array's steps (float64) to float32
    rounding; without the direct route its rows would be missing."""
    from jaxem._src.gmm import moments

    x64 = _data(N_LAYOUT, 6.0, seed=8)
    x = jnp.asarray(x64, jnp.float32)
    data = gmm.arrange(x, 3)
    assert data.features.shape[0] > 1 and float(jnp.sum(data.weights[0])) > 0
    far = data.centers[0] + 50.0
    rows = data.features[0][:, -3:-1] + data.centers[0] - far
    data = dataclasses.replace(
        data,
        features=data.features.at[0].set(moments.features(rows, "full")),
        centers=data.centers.at[0].set(far),
    )
    params = jax.tree.map(
        lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a,
        _start(jnp.asarray(x64), 3, "full"),
    )
    resp, ll = gmm.e_step(params, data)
    resp64, ll64 = gmm.e_step(params, jnp.asarray(x, jnp.float64))
    np.testing.assert_allclose(data.responsibilities(resp), resp64, atol=1e-5)
    np.testing.assert_allclose(ll, ll64, rtol=1e-6)
    new = gmm.m_step(resp, data)
    new64 = gmm.m_step(jnp.asarray(data.responsibilities(resp), jnp.float64), x.astype(float))
    np.testing.assert_allclose(new.weights, new64.weights, rtol=1e-5)
    np.testing.assert_allclose(new.means, new64.means, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new.covariances, new64.covariances, rtol=1e-4, atol=1e-5)
