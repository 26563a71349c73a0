"""Implicit differentiation through EM fits (``implicit=True``).

The reverse-mode gradient by the implicit function theorem at the fixed point
must equal (a) the forward-mode derivative through the loop's iterations and
(b) central finite differences of the fit, for every covariance type of the
Gaussian mixture and for the Poisson mixture, with respect to the data, the
sample weights and a hyperparameter. The fits run a fixed number of iterations
(``tol=0``) from a fixed start, far past convergence (the data are two
separated clusters: EM's rate is small), so the fitted parameters are a smooth
function of the inputs, equal to the fixed point to rounding; their finite
differences are accurate to about ``eps² + rounding/eps``, well inside the
``1e-5`` asked of them.

Each case is one compiled program (:func:`_program`: the loss, its
forward-mode derivative through the loop and its implicit gradient, evaluated
at the inputs and at the finite-difference points).
"""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import gmm, hmm, mixtures
from jaxem._src.implicit import SOLVERS, fixed_point
from jaxem.gmm import variational

N, D, K = 40, 2, 2
MAX_ITER = 300  # EM's error falls below rounding in about 60 on these data
EPS = 1e-5  # central differences: error ~ EPS² ≈ 1e-10, rounding/EPS ≈ 1e-11
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _data(seed=0):
    rng = np.random.default_rng(seed)
    shift = np.array([4.0, 1.0])
    x = np.concatenate([rng.normal(size=(N // 2, D)), rng.normal(size=(N // 2, D)) + shift])
    return jnp.asarray(x), jnp.asarray(rng.uniform(0.5, 1.5, N))


def _counts(seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.poisson(2.0, (N // 2, D)), rng.poisson(9.0, (N // 2, D))])
    return jnp.asarray(x, float), jnp.asarray(rng.uniform(0.5, 1.5, N))


# Fixed coefficients of the scalar summary of the fitted parameters.
_C = np.random.default_rng(1).normal(size=(3, K, D))


@functools.cache
def _gmm_start(covariance_type):
    covariances = {
        "full": np.stack([np.eye(D), 1.5 * np.eye(D)]),
        "tied": np.eye(D),
        "diag": np.ones((K, D)),
        "spherical": np.ones(K),
    }[covariance_type]
    with jax.ensure_compile_time_eval():  # concrete, though first called in a trace
        return gmm.make_params(
            jnp.array([0.4, 0.6]), jnp.array([[0.5, 0.0], [3.0, 0.5]]), jnp.asarray(covariances),
            covariance_type,
        )  # fmt: skip


def _gmm_summary(params):
    cov = params.covariances
    return (
        jnp.sum(_C[0, :, 0] * params.weights)
        + jnp.sum(_C[1] * params.means)
        + jnp.sum(cov * jnp.asarray(np.resize(_C[2], cov.shape)))
    )


def gmm_em_loss(primals, *, covariance_type, implicit):
    """Through :func:`jaxem.em` with the user-facing steps."""
    x, w, reg = primals
    m_step = functools.partial(
        gmm.m_step, covariance_type=covariance_type, reg_covar=reg, sample_weight=w
    )
    result = jaxem.em(
        gmm.e_step, m_step, _gmm_start(covariance_type), x, tol=0.0, max_iter=MAX_ITER,
        implicit=implicit,
    )  # fmt: skip
    return _gmm_summary(result.params) + result.log_likelihood


def gmm_fit_loss(primals, *, implicit):
    """Through the engine (:func:`jaxem.gmm.fit_from`, a weighted fit)."""
    x, w, reg = primals
    result = gmm.fit_from(
        _gmm_start("full"), x, tol=0.0, max_iter=MAX_ITER, reg_covar=reg, sample_weight=w,
        implicit=implicit,
    )  # fmt: skip
    return _gmm_summary(result.params) + result.log_likelihood


_POISSON_START = mixtures.PoissonParams(jnp.array([0.5, 0.5]), jnp.array([[1.0, 1.5], [6.0, 7.0]]))
# The same start with a third, inactive component (weight 0): the default case
# runs with it, so the inactive component's coordinates are in every solve.
_POISSON_START_INACTIVE = mixtures.PoissonParams(
    jnp.array([0.5, 0.5, 0.0]), jnp.concatenate([_POISSON_START.rates, jnp.ones((1, D))])
)


def poisson_fit_loss(primals, *, implicit, start=_POISSON_START_INACTIVE):
    """Through :func:`jaxem.fit` of the Poisson family; ``a`` is the shape of
    its Gamma prior on the rates (a traced hyperparameter)."""
    x, w, a = primals
    result = jaxem.fit(
        mixtures.Poisson(rate_shape=a), None, x, start=start, tol=0.0, max_iter=MAX_ITER,
        sample_weight=w, implicit=implicit,
    )  # fmt: skip
    rates = result.params.rates[:2]
    return (
        jnp.sum(_C[0] * rates) + jnp.sum(_C[1, :, 0] * result.params.weights[:2])
    ) + result.log_likelihood


_STUDENT_START = mixtures.StudentT("full", dof=4.0).make_params(
    jnp.array([0.5, 0.5]), jnp.array([[0.0, 0.0], [4.0, 1.0]]), jnp.stack([jnp.eye(D)] * K)
)


def student_t_fit_loss(primals, *, implicit):
    """Through :func:`jaxem.fit` of Student-t mixtures with a fixed ``ν``, the
    traced hyperparameter (its implicit derivative was 0: the solve held the
    parameters' ``ν``, which the pass read)."""
    x, w, dof = primals
    result = jaxem.fit(
        mixtures.StudentT("full", dof=dof), None, x, start=_STUDENT_START, tol=0.0,
        max_iter=MAX_ITER, sample_weight=w, implicit=implicit,
    )  # fmt: skip
    return _gmm_summary(result.params) + result.log_likelihood


def variational_fit_loss(primals, *, implicit):
    """Through :func:`jaxem.fit` of the variational family from a k-means start
    (not differentiated: labels), its weight concentration prior traced
    (``implicit=True`` crashed there: the mixtures' log-weight coordinates, of
    weights the posterior does not have)."""
    x, w, concentration = primals
    family = variational.family("full", weight_concentration_prior=concentration)
    result = jaxem.fit(
        family, jax.random.key(0), x, K, init="kmeans", tol=0.0, max_iter=MAX_ITER,
        n_refine=0, sample_weight=w, implicit=implicit,
    )  # fmt: skip
    return _gmm_summary(result.params) + result.log_likelihood


LOSSES = {
    **{f"em-{ct}": functools.partial(gmm_em_loss, covariance_type=ct) for ct in COVARIANCE_TYPES},
    "fit-gmm-full": gmm_fit_loss,
    "fit-poisson": poisson_fit_loss,
    "fit-student-t": student_t_fit_loss,
    "fit-variational": variational_fit_loss,
}


@functools.partial(jax.jit, static_argnames=("name",))
def _program(primals, tangents, *, name):
    """``(loss, its forward-mode derivative through the loop along tangents,
    the implicit gradient)`` at ``primals``."""
    loss = LOSSES[name]
    value, forward = jax.jvp(functools.partial(loss, implicit=False), (primals,), (tangents,))
    gradient = jax.grad(functools.partial(loss, implicit=True))(primals)
    return value, forward, gradient


def _primals(name):
    x, w = _counts() if "poisson" in name else _data()
    hyperparameter = {"fit-poisson": 1.5, "fit-student-t": 4.0, "fit-variational": 0.5}
    hyperparameter = hyperparameter.get(name, 1e-2)
    return x, w, jnp.asarray(hyperparameter)


def _check_against_forward_and_differences(name):
    primals = _primals(name)
    rng = np.random.default_rng(2)
    for i, what in enumerate(("data", "weights", "hyperparameter")):
        tangents = [jnp.zeros_like(a) for a in primals]
        tangents[i] = jnp.asarray(rng.normal(size=primals[i].shape))
        tangents = tuple(tangents)
        _, forward, gradient = _program(primals, tangents, name=name)
        implicit = jnp.vdot(gradient[i], tangents[i])
        shifted = [
            tuple(a + s * EPS * t for a, t in zip(primals, tangents, strict=True)) for s in (1, -1)
        ]
        plus, minus = (_program(p, tangents, name=name)[0] for p in shifted)
        central = (plus - minus) / (2 * EPS)
        assert abs(float(forward)) > 1e-3, what  # a derivative that could be wrong
        np.testing.assert_allclose(implicit, forward, rtol=1e-8, err_msg=what)
        np.testing.assert_allclose(implicit, central, rtol=1e-5, err_msg=what)


# One case is one compiled program of about 8 s of CPU: the full covariance
# type and the Poisson family (through the engine, with an inactive component)
# run by default, the other covariance types and the Gaussian engine fit are slow.
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "covariance_type", ["full", *(pytest.param(ct, marks=_SLOW) for ct in COVARIANCE_TYPES[1:])]
)
def test_em_implicit_gradient_equals_forward_mode_and_differences(covariance_type):
    _check_against_forward_and_differences(f"em-{covariance_type}")


@pytest.mark.parametrize(
    "name",
    [pytest.param("fit-gmm-full", marks=_SLOW), "fit-poisson", "fit-student-t", "fit-variational"],
)
def test_fit_implicit_gradient_equals_forward_mode_and_differences(name):
    _check_against_forward_and_differences(name)


# A small model of its own (a 1-D mixture of two unit-variance Gaussians whose
# means are shrunk towards 0 by ``lam``) keeps the vmap tests' programs small.


def _e_step(params, x):
    log_joint = jnp.log(params["weights"]) - 0.5 * (x[:, None] - params["means"]) ** 2
    log_norm = jax.nn.logsumexp(log_joint, axis=1)
    return jnp.exp(log_joint - log_norm[:, None]), jnp.mean(log_norm) - 0.5 * np.log(2 * np.pi)


def _m_step(resp, x, lam):
    nk = jnp.sum(resp, axis=0)
    return {"weights": nk / x.shape[0], "means": resp.T @ x / (nk + lam)}


def small_loss(x, lam, implicit):
    start = {"weights": jnp.array([0.5, 0.5]), "means": jnp.array([-1.0, 1.0])}
    m_step = functools.partial(_m_step, lam=lam)
    result = jaxem.em(_e_step, m_step, start, x, tol=0.0, max_iter=MAX_ITER, implicit=implicit)
    p = result.params
    return p["means"][1] - 2 * p["means"][0] + p["weights"][0] + result.log_likelihood


def test_vmap_and_jit_of_implicit_gradients_equal_single_and_forward_mode():
    x = _data()[0][:, 0]
    xs = jnp.stack([x, 1.3 * x])
    lams = jnp.asarray([0.5, 2.0])
    grad = jax.grad(functools.partial(small_loss, implicit=True), argnums=(0, 1))
    batched = jax.jit(jax.vmap(grad))(xs, lams)
    single = jax.jit(grad)
    forward = jax.jit(jax.vmap(jax.jacfwd(functools.partial(small_loss, implicit=False), (0, 1))))
    by_forward = forward(xs, lams)
    for b in range(2):
        one = single(xs[b], lams[b])
        for got, want, fwd in zip(batched, one, by_forward, strict=True):
            np.testing.assert_allclose(got[b], want, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(got[b], fwd[b], rtol=1e-8, atol=1e-12)
    assert float(jnp.abs(batched[1][0])) > 1e-3  # the hyperparameter matters


@jax.jit
def _gradient_without_inactive(x):
    """The implicit gradient of the Poisson loss from the start without the
    inactive component."""
    loss = functools.partial(poisson_fit_loss, implicit=True, start=_POISSON_START)
    return jax.grad(loss)((x, *_primals("fit-poisson")[1:]))


@pytest.mark.slow
def test_inactive_component_does_not_change_the_implicit_gradient():
    primals = _primals("fit-poisson")
    zero = tuple(jnp.zeros_like(a) for a in primals)
    _, _, with_inactive = _program(primals, zero, name="fit-poisson")
    two = _gradient_without_inactive(primals[0])
    for got, want in zip(with_inactive, two, strict=True):
        assert bool(jnp.all(jnp.isfinite(got)))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_slow_em_rate_near_one():
    """Heavily overlapping components (EM's rate 0.99): GMRES in the implicit
    solve, the dense solve and forward mode through 20000 iterations agree."""
    rng = np.random.default_rng(0)
    rng.normal(size=(200, 1))  # the second draw of this stream is the data
    x = jnp.asarray(np.concatenate([rng.normal(size=(100, 1)), rng.normal(size=(100, 1)) + 1.0]))
    start = gmm.make_params(
        jnp.array([0.4, 0.6]), jnp.array([[-0.5], [1.5]]), jnp.ones((2, 1, 1)), "full"
    )

    def loss(reg, implicit):
        m_step = functools.partial(gmm.m_step, reg_covar=reg)
        result = jaxem.em(gmm.e_step, m_step, start, x, tol=0.0, max_iter=20000, implicit=implicit)
        return jnp.sum(result.params.means) + result.params.weights[0], result.params

    jvp = jax.jit(jax.jvp, static_argnums=0)
    (_, params), (forward, _) = jvp(lambda r: loss(r, False), (1e-3,), (1.0,))
    family = gmm.family("full", reg_covar=1e-3)
    flat, unravel = jax.flatten_util.ravel_pytree(family.unconstrain(params))

    def em_map(v):
        p = family.constrain(unravel(v), params)
        new = gmm.m_step(gmm.e_step(p, x)[0], x, reg_covar=1e-3)
        return jax.flatten_util.ravel_pytree(family.unconstrain(new))[0]

    rate = np.max(np.abs(np.linalg.eigvals(np.asarray(jax.jacfwd(em_map)(flat)))))
    assert 0.98 < rate < 1
    for solver in ("gmres", "dense"):
        config = jaxem.Implicit(solver=solver)
        implicit = jax.jit(jax.grad(lambda r, c=config: loss(r, c)[0]))(1e-3)
        np.testing.assert_allclose(implicit, forward, rtol=1e-7, err_msg=solver)


def test_reverse_mode_without_implicit_points_to_it():
    loss = functools.partial(gmm_em_loss, covariance_type="full", implicit=False)
    with pytest.raises(TypeError, match=r"implicit=True"):
        jax.jit(jax.grad(loss))(_primals("em-full"))


def test_implicit_argument_is_checked():
    x = _data()[0]
    with pytest.raises(TypeError, match="implicit must be"):
        gmm.fit(jax.random.key(0), x, 2, implicit="yes")
    with pytest.raises(ValueError, match="solver"):
        jaxem.Implicit(solver="lu")
    with pytest.raises(ValueError, match="data in memory"):
        gmm.fit(jax.random.key(0), jaxem.chunks(np.asarray(x), 10), 2, implicit=True)


def test_a_start_probability_at_the_boundary_is_held_fixed():
    """Four sequences that all start in the second state: EM drives the first
    state's start probability to 0 geometrically (1e-40 after a tight fit).
    Along its log-coordinate the EM map's rate is 1 within rounding, so the
    fixed point does not determine it; GMRES returned a gradient 5x off (8.7e-5
    against 4.36e-4) until the family's ``frozen`` coordinates were held fixed."""
    family = hmm.gaussian("diag")
    truth = hmm.make_params([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], family,
                            means=[[-1.0], [1.0]], covariances=[[1.0], [1.0]])  # fmt: skip
    seqs, _ = family.sample(jax.random.key(0), truth, 40, n_sequences=4)
    x = jnp.asarray(np.asarray(seqs.x))
    start = hmm.make_params([0.6, 0.4], [[0.8, 0.2], [0.3, 0.7]], family,
                            means=[[-0.5], [0.5]], covariances=[[1.5], [1.5]])  # fmt: skip
    start = jaxem.fit(family, None, x, start=start, tol=1e-14, max_iter=20_000).params
    assert float(start.startprob[0]) < 1e-30  # at the boundary

    def summary(x, **options):
        p = jaxem.fit(family, None, x, start=start, **options).params
        return p.transmat[0, 0] + 2 * p.transmat[1, 0] + p.startprob[1]

    grad = jax.grad(summary)(x, tol=1e-14, max_iter=20_000, implicit=True)
    tight = jax.jit(functools.partial(summary, tol=0.0, max_iter=3000))
    for index in [(1, 7, 0), (0, 3, 0)]:
        step = jnp.zeros_like(x).at[index].set(EPS)
        difference = (tight(x + step) - tight(x - step)) / (2 * EPS)
        np.testing.assert_allclose(grad[index], difference, rtol=1e-5)


def test_a_symmetry_of_the_map_is_a_gauge_of_the_solve():
    """A map whose fixed points form a circle: it halves the distance of the
    radius to ``a`` and turns the angle by ``3 (r − a)``, so every point of the
    circle ``r = a`` is fixed, the Jacobian has an eigenvalue 1 along the
    circle and ``I − Jᵀ`` is singular. The gradient of ``|u*|² = a²`` is
    determined all the same (``2a``); the dense solver returned NaN (float32)
    until the circle's tangent was given as a gauge
    (``Family.gauges``: a factor analyser's rotations), orthogonally to which
    the system is solved."""

    def turn(u, a):
        radius = jnp.linalg.norm(u)
        angle = jnp.arctan2(u[1], u[0]) + 3 * (radius - a)
        return jnp.stack([jnp.cos(angle), jnp.sin(angle)]) * (radius + a) / 2

    def tangent(u):
        return jnp.stack([-u[1], u[0]])[None]

    a = jnp.asarray([0.7, 1.3, 2.9, 11.0], jnp.float32)
    for solver in SOLVERS:

        def squared_radius(a, solver=solver):
            star = jax.lax.stop_gradient(jnp.asarray([0.6, 0.8], jnp.float32) * a)
            config = jaxem.Implicit(solver=solver)
            return jnp.sum(fixed_point(turn, star, (a,), config=config, gauges=tangent) ** 2)

        grad = jax.jit(jax.vmap(jax.grad(squared_radius)))(a)
        np.testing.assert_allclose(grad, 2 * a, rtol=1e-5, err_msg=solver)


def test_integer_leaves_of_the_parameters_are_held():
    """Parameters are any pytree: an integer leaf (a counter) is held as it is
    and the solve runs over the floating ones (its float0 cotangent made
    ``ravel_pytree`` fail). One exponential component: the rate is 1/mean, its
    derivative with respect to each point −1/(N mean²)."""
    x = jnp.linspace(0.1, 3.0, 50)[:, None]

    def e_step(p, x):
        return x, jnp.mean(jnp.log(p["rate"]) - p["rate"] * x[:, 0])

    def m_step(stats, x):
        return {"rate": 1.0 / jnp.mean(stats[:, 0]), "count": jnp.asarray(1)}

    start = {"rate": jnp.asarray(2.0), "count": jnp.asarray(0)}

    def rate(x):
        return jaxem.em(e_step, m_step, start, x, tol=0.0, max_iter=5, implicit=True).params["rate"]

    grad = jax.grad(rate)(x)
    np.testing.assert_allclose(grad, -1 / (50 * jnp.mean(x) ** 2), rtol=1e-12)
