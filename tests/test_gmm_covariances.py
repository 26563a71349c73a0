"""The covariance modules share one interface (jaxem._src.gmm.covariances)."""

import inspect

import jax.numpy as jnp
import numpy as np
import pytest

from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.covariances import eigen
from jaxem._src.reductions import UNROLL_MAX

MODULE_NAMES = tuple(t for t in cov_lib.ALL_COVARIANCE_TYPES if t not in cov_lib.ALIASES)


@pytest.mark.parametrize("covariance_type", MODULE_NAMES)
def test_every_module_implements_the_interface(covariance_type):
    module = cov_lib.get(covariance_type)
    reference = cov_lib.get("full")
    for name in cov_lib.INTERFACE:
        assert hasattr(module, name), f"{covariance_type} lacks {name}"
        if covariance_type not in cov_lib.COVARIANCE_TYPES and name in eigen.UNSUPPORTED:
            with pytest.raises(NotImplementedError, match=repr(covariance_type)):
                getattr(module, name)()
            continue
        if callable(getattr(reference, name)):
            expected = list(inspect.signature(getattr(reference, name)).parameters)
            assert list(inspect.signature(getattr(module, name)).parameters) == expected, name
    assert module.SHARED == (covariance_type == "tied")


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_largest_eigenvalue_bound_is_a_lower_bound_near_the_eigenvalue(covariance_type):
    """The moment formulation's accuracy check needs a lower bound on each
    covariance's largest eigenvalue: never above it (the check stays on the safe
    side), at least the largest variance, exact for diagonal storage."""
    rng = np.random.default_rng(0)
    k, d = 6, 5
    factors = rng.normal(size=(k, d, d)) * rng.uniform(0.01, 3.0, (k, 1, d))
    full = np.einsum("kde,kfe->kdf", factors, factors) + 1e-6 * np.eye(d)
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(1e-4, 5.0, (k, d)),
        "spherical": rng.uniform(1e-4, 5.0, k),
    }[covariance_type]
    module = cov_lib.get(covariance_type)
    bound = np.asarray(module.largest_eigenvalue_bound(jnp.asarray(covariances)))
    if covariance_type in ("full", "tied"):
        top = np.linalg.eigvalsh(covariances)[..., -1]
        variances = np.max(np.diagonal(covariances, axis1=-2, axis2=-1), axis=-1)
        assert np.all(bound <= top * (1 + 1e-12))
        assert np.all(bound >= variances * (1 - 1e-12))
        assert np.all(bound >= 0.5 * top)  # three power iterations from the variances
    else:
        top = covariances.max(axis=-1) if covariance_type == "diag" else covariances
        np.testing.assert_allclose(bound, top, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_component_major_functions_equal_the_row_major_ones(covariance_type):
    """``difference_mahalanobis`` / ``difference_second_moments`` (the direct
    pass's (K, D, rows) layout) compute ``mahalanobis`` / ``second_moments``,
    transposed; a D above the unrolling bound takes the reduced sum."""
    rng = np.random.default_rng(1)
    module = cov_lib.get(covariance_type)
    for n, k, d in [(7, 3, 2), (5, 2, UNROLL_MAX + 1)]:
        x = jnp.asarray(rng.normal(size=(n, d)))
        means = jnp.asarray(rng.normal(size=(k, d)))
        resp = jnp.asarray(rng.uniform(size=(n, k)))
        factors = rng.normal(size=(k, d, d)) + 3 * np.eye(d)
        pc = {
            "full": np.triu(factors),
            "tied": np.triu(factors[0]),
            "diag": rng.uniform(0.5, 2.0, (k, d)),
            "spherical": rng.uniform(0.5, 2.0, k),
        }[covariance_type]
        pc = jnp.asarray(pc)
        diff = x.T[None, :, :] - means[:, :, None]
        np.testing.assert_allclose(
            module.difference_mahalanobis(diff, pc).T, module.mahalanobis(x, means, pc), rtol=1e-12
        )
        np.testing.assert_allclose(
            module.difference_second_moments(resp.T, diff),
            module.second_moments(resp, x, means),
            rtol=1e-12,
        )


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_summed_reshift_is_the_sum_of_reshifts(covariance_type):
    """``summed_reshift`` (a layout's chunks moved to the components' means at
    once) adds what ``reshift`` adds to each set of statistics, summed."""
    rng = np.random.default_rng(2)
    module = cov_lib.get(covariance_type)
    c, k, d = 5, 3, 4
    sum_x = jnp.asarray(rng.normal(size=(c, k, d)))
    nk = jnp.asarray(rng.uniform(0.0, 9.0, (c, k)))
    delta = jnp.asarray(rng.normal(size=(c, k, d)) * 3)
    shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    zero = jnp.zeros(shape[covariance_type])
    expected = sum(module.reshift(zero, sum_x[i], nk[i], delta[i]) for i in range(c))
    np.testing.assert_allclose(module.summed_reshift(sum_x, nk, delta), expected, rtol=1e-12)


def test_a_float32_inner_loop_stops_where_its_error_settles_in_rounding():
    """The inner loops of mclust's iterative models (VEV, VVE, ...) stop at
    mclust's tolerance, √ε of float64, or at 4ε of a dtype that cannot resolve
    it. In float32 the error of the VEV and VVE M-steps of Old Faithful settled
    at 4.8e-7–5.4e-7, just above 4ε, and those loops ran all 100 000 steps: a
    default fit with 10 restarts took 0.3–1.2 s instead of about 20 ms. A loop
    whose error settles in rounding now stops a few dozen steps later; one
    still converging runs on, and float64 keeps mclust's rule alone."""
    eps32 = float(np.finfo(np.float32).eps)

    def settling(dtype):
        def step(n):  # errors 1, 1/2, ... then rounding noise just above 4ε of float32
            n = n + 1
            noise = 4.5 * eps32 * (1 + 0.05 * jnp.sin(n))
            return n, jnp.where(n < 10, 1 / n, noise).astype(dtype)

        n = eigen.iterate(step, jnp.zeros((), dtype), eigen.inner_tol(dtype), max_iter=2000)
        return int(n)

    # (the state's dtype is the loop's: its rounding decides the rule)
    assert settling(jnp.float32) <= 10 + eigen.SETTLED_STEPS + 1
    assert settling(jnp.float64) == 2000  # mclust's tolerance: the noise is above it

    def converging(n):  # halves each step: 0.5²¹ is 4ε of float32
        n = n + 1
        return n, 0.5**n

    steps = eigen.iterate(converging, jnp.zeros((), jnp.float32), eigen.inner_tol(jnp.float32))
    assert int(steps) == 21
