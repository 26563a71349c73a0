"""The noise component against R mclust's ``me(..., Vinv = )``.

experiments/reference/mclust_noise.R: Old Faithful with 100 uniform points added
(?Mclust's example, experiments/data/faithful_noise.csv), ``me()`` for every model
and G = 1, 2, 3 from a fixed start (k-means labels on the faithful rows, the
added rows in the noise column), ``Vinv`` mclust's default ``hypvol``. As in
tests/test_gmm_mclust_models.py: same iterations, log-likelihood to 1e-6, the
parameters one EM step on to 1e-5, mclust's parameter count.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxem import gmm
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.noise import NoiseParams, _m_step
from jaxem._src.gmm.params import from_covariances

ROOT = pathlib.Path(__file__).resolve().parents[1] / "experiments"
REFERENCE = json.loads((ROOT / "results" / "mclust_noise_reference.json").read_text())
MODELS = tuple(gmm.MCLUST_MODELS)
X = np.loadtxt(ROOT / "data" / "faithful_noise.csv", delimiter=",", skiprows=1)
LOG_V = float(np.log(REFERENCE["meta"]["Vinv"]))


def test_hypervolume_is_mclusts():
    """mclust's ``hypvol``: the smaller of the bounding boxes of the data and of
    its principal-component scores."""
    got = float(jnp.exp(-gmm.noise.log_hypervolume(X)))
    np.testing.assert_allclose(got, REFERENCE["meta"]["Vinv"], rtol=1e-12)


@functools.cache
def program(model: str):
    def run(resp, weights, noise_weight, means, covariances):
        result = gmm.noise.fit_from_resp(
            X, resp, covariance_type=model, log_noise_density=LOG_V, tol=1e-5
        )
        # one EM step from mclust's parameters (jaxem returns one M-step past
        # the parameters at which the rule held; mclust those parameters)
        ref = NoiseParams(
            from_covariances(weights, means, covariances, model), noise_weight, jnp.asarray(LOG_V)
        )
        r, _ = gmm.noise.e_step(ref, X)
        stepped = _m_step(r, jnp.asarray(X), model, 0.0, covariances, jnp.asarray(LOG_V))
        return result, stepped, gmm.noise.n_parameters(result.params)

    return jax.jit(run)


def check(model: str, g: str):
    spec = REFERENCE["me_fixed_start"][g]
    rec = spec[model]
    assert rec["returnCode"] == 0
    k, (n, d) = int(g), X.shape
    labels = np.asarray(spec["start_labels"])
    resp = np.zeros((n, k + 1))
    resp[np.arange(n), labels] = 1
    par = rec["parameters"]
    sigma = np.moveaxis(np.asarray(par["variance"]["sigma"]).reshape(d, d, k), -1, 0)
    storage = cov_lib.get(model).STORAGE
    cov = {"spherical": sigma[:, 0, 0], "diag": np.diagonal(sigma, axis1=1, axis2=2)}.get(
        storage, sigma[0] if storage == "tied" else sigma
    )
    pro = np.asarray(par["pro"])
    means = np.asarray(par["mean"]).reshape(d, k).T
    result, stepped, n_par = program(model)(resp, pro[:k], pro[k], means, cov)
    n_iter = int(result.n_iter)
    assert n_iter == np.ravel(rec["iterations"])[0], (model, g, n_iter)
    ll = float(result.history[n_iter - 1]) * n
    assert abs(ll - rec["loglik"]) < 1e-6 * abs(rec["loglik"]), (model, g, ll, rec["loglik"])
    assert int(n_par) == rec["npar"]
    got, want = result.params, stepped
    errors = [
        abs(float(got.noise_weight - want.noise_weight)),
        float(jnp.max(jnp.abs(got.gaussian.weights - want.gaussian.weights))),
        float(jnp.max(jnp.abs(got.gaussian.means - want.gaussian.means) / np.abs(X).max(0))),
        float(
            jnp.max(jnp.abs(got.gaussian.covariances - want.gaussian.covariances))
            / jnp.max(jnp.abs(want.gaussian.covariances))
        ),
    ]
    assert max(errors) < 1e-5, (model, g, errors)
    return abs(ll - rec["loglik"]) / abs(rec["loglik"]), max(errors)


def test_me_with_noise():
    """VVE, G = 2: the model Mclust chooses on these data with ?Mclust's noise start."""
    check("VVE", "2")


@pytest.mark.slow
@pytest.mark.parametrize("g", ["1", "2", "3"])
@pytest.mark.parametrize("model", MODELS)
def test_me_with_noise_grid(model, g):
    ll_error, param_error = check(model, g)
    print(f"noise {model} G={g}: rel loglik error {ll_error:.1e}, params {param_error:.1e}")


def test_bad_start_is_rejected():
    with pytest.raises(ValueError, match="resp"):
        gmm.noise.fit_from_resp(X, np.ones((X.shape[0], 1)))
