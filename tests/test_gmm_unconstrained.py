"""The bijection GMMParams <-> unconstrained parameters, and gradients through log_prob."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, blobs, random_params

from jaxem import gmm
from jaxem.gmm import unconstrained
from jaxem.gmm.unconstrained import UnconstrainedParams, from_unconstrained, to_unconstrained

K, D = 3, 3


def _params(covariance_type, seed=0, weights=None):
    w, m, c = random_params(seed, K, D, covariance_type)
    if weights is not None:
        w = np.asarray(weights, np.float64)
    return gmm.make_params(w, m, c, covariance_type)


def _random_u(covariance_type, seed=0):
    rng = np.random.default_rng(seed)
    n_packed = D * (D + 1) // 2
    shape = {"full": (K, n_packed), "tied": (n_packed,), "diag": (K, D), "spherical": (K,)}
    return UnconstrainedParams(
        logits=jnp.asarray(rng.normal(size=K)),
        means=jnp.asarray(rng.normal(size=(K, D))),
        cholesky=jnp.asarray(rng.normal(scale=0.5, size=shape[covariance_type])),
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_params_round_trip(covariance_type):
    params = _params(covariance_type, seed=1)
    back = from_unconstrained(to_unconstrained(params), covariance_type)
    assert back.covariance_type == covariance_type
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_allclose(
            getattr(back, name), getattr(params, name), rtol=1e-12, atol=1e-12, err_msg=name
        )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_unconstrained_round_trip(covariance_type):
    """u -> params -> u is the identity, up to softmax's additive constant on the logits."""
    u = _random_u(covariance_type, seed=2)
    params = from_unconstrained(u, covariance_type)
    # The image is a valid mixture: make_params checks symmetry, positive definiteness.
    checked = gmm.make_params(params.weights, params.means, params.covariances, covariance_type)
    np.testing.assert_allclose(
        checked.precisions_cholesky, params.precisions_cholesky, rtol=1e-10, atol=1e-12
    )
    back = to_unconstrained(params)
    np.testing.assert_allclose(back.means, u.means, rtol=0, atol=0)
    np.testing.assert_allclose(back.cholesky, u.cholesky, rtol=1e-12, atol=1e-12)
    shift = back.logits - u.logits
    np.testing.assert_allclose(shift, shift[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_density(covariance_type):
    """The log-likelihood of u equals that of the mixture it maps to."""
    x = blobs(seed=3, n=50, d=D, k=K)
    params = _params(covariance_type, seed=4)
    u = to_unconstrained(params)
    expected = np.mean(np.asarray(gmm.log_prob(params, x)))
    got = unconstrained.log_likelihood(u, x, covariance_type)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_inactive_component_maps_to_minus_inf_and_back():
    params = _params("full", seed=5, weights=[0.4, 0.0, 0.6])
    u = to_unconstrained(params)
    logits = np.asarray(u.logits)
    assert np.isneginf(logits[1]) and np.all(np.isfinite(logits[[0, 2]]))
    back = from_unconstrained(u, "full")
    assert float(back.weights[1]) == 0.0
    np.testing.assert_allclose(back.weights, params.weights, rtol=1e-14)
    x = blobs(seed=6, n=40, d=D, k=K)
    np.testing.assert_allclose(gmm.log_prob(back, x), gmm.log_prob(params, x), rtol=1e-12)


def test_packing_layout():
    """full/tied coordinates are the upper triangle of P row by row, log on the diagonal."""
    p = jnp.array([[2.0, 0.5, -1.0], [0.0, 3.0, 0.25], [0.0, 0.0, 0.5]])
    cov = jnp.linalg.inv(p @ p.T)
    params = gmm.make_params(jnp.ones(1), jnp.zeros((1, 3)), cov, "tied")
    np.testing.assert_allclose(params.precisions_cholesky, p, rtol=1e-12, atol=1e-12)
    expected = [np.log(2.0), 0.5, -1.0, np.log(3.0), 0.25, np.log(0.5)]
    np.testing.assert_allclose(to_unconstrained(params).cholesky, expected, rtol=1e-12)


def test_shape_errors_name_the_argument():
    u = _random_u("diag")
    with pytest.raises(ValueError, match=r"u\.cholesky"):
        from_unconstrained(u, "full")
    with pytest.raises(ValueError, match="covariance_type"):
        from_unconstrained(u, "banana")
    with pytest.raises(TypeError, match="GMMParams"):
        to_unconstrained(u)


def _central_difference(f, x, eps):
    """Central finite-difference gradient of scalar f at the flat float64 array x."""
    grad = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        grad.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return grad


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_grad_of_loss_using_log_prob_matches_finite_differences(covariance_type):
    """A mixture as a density term inside a larger model: d/dx and d/du of a loss.

    The loss ``mean_n (log p(A x_n) + ‖x_n‖²/10)`` mixes the density with other
    terms; float64 central differences with step 1e-6 have truncation error
    O(eps²) ~ 1e-12 and rounding error O(1e-16 / eps) ~ 1e-10, so 1e-6 relative
    agreement leaves a wide margin while catching any wrong term.
    """
    x = np.asarray(blobs(seed=7, n=6, d=D, k=K))
    a = np.random.default_rng(8).normal(size=(D, D)) * 0.3 + np.eye(D)
    u = _random_u(covariance_type, seed=9)

    def loss(u, x):
        params = from_unconstrained(u, covariance_type)
        return jnp.mean(gmm.log_prob(params, x @ a.T) + jnp.sum(x * x, axis=1) / 10)

    grad_u, grad_x = jax.grad(loss, argnums=(0, 1))(u, jnp.asarray(x))
    eps = 1e-6

    fd_x = _central_difference(lambda v: float(loss(u, v)), x, eps)
    np.testing.assert_allclose(grad_x, fd_x, rtol=1e-6, atol=1e-8)
    assert np.max(np.abs(fd_x)) > 1e-3  # the check is not vacuous

    flat, unravel = jax.flatten_util.ravel_pytree(u)
    fd_u = _central_difference(lambda v: float(loss(unravel(v), x)), np.asarray(flat), eps)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(grad_u)[0], fd_u, rtol=1e-6, atol=1e-8)
    assert np.max(np.abs(fd_u)) > 1e-3


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_gradient_is_finite_where_an_off_diagonal_coordinate_would_overflow_exp(covariance_type):
    """An elongated cluster's precision factor can have off-diagonal entries
    beyond float32's exp range (~88.7): the diagonal's exp must not see them,
    or the derivative of the covariances is 0 · inf = NaN (implicit gradients
    of a fit at 70 000 × 16, K = 16 were NaN for P_0,15 = 197)."""
    d = 3
    n_chol = d * (d + 1) // 2
    chol = np.zeros(n_chol, np.float32)
    chol[1] = 197.0  # P_01: exp(197) overflows float32
    shape = (2, n_chol) if covariance_type == "full" else (n_chol,)
    chol = np.broadcast_to(chol, shape)
    u = UnconstrainedParams(
        logits=jnp.zeros(2, jnp.float32),
        means=jnp.zeros((2, d), jnp.float32),
        cholesky=jnp.asarray(chol),
    )

    def loss(c, dtype):
        p = from_unconstrained(u._replace(cholesky=c.astype(dtype)), covariance_type)
        return jnp.sum(p.covariances) + jnp.sum(p.precisions_cholesky)

    g32 = jax.grad(loss)(jnp.asarray(chol), jnp.float32)
    g64 = jax.grad(loss)(jnp.asarray(chol, np.float64), jnp.float64)
    assert np.all(np.isfinite(g32))
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)
