"""The noise component against R mclust's ``me(..., Vinv = )``.

experiments/reference/mclust_noise.R: Old Faithful with 100 uniform points added
(?Mclust's example, experiments/data/faithful_noise.csv), ``me()`` for every model
and G = 1, 2, 3 from a fixed start (k-means labels on the faithful rows, the
added rows in the noise column), ``Vinv`` mclust's default ``hypvol``. As in
tests/test_gmm_mclust_models.py: same iterations, log-likelihood to 1e-6, the
parameters one EM step on to 1e-5, mclust's parameter count.

Then the whole procedure, ``gmm.noise.select`` against ``Mclust(x, initialization =
list(noise = ...))`` (the reference's ``fits``): ?Mclust's random noise start
(``doc_example``) and the 100 added points (``true_noise``). mclust agglomerates the
rows not taken for noise; jaxem's agglomeration (:func:`jaxem.hierarchical.vvv_tree`,
which breaks ties in mclust's order) gives mclust's partitions for every K on both,
the 272 eruptions of ``true_noise`` with their tied distances included, so every BIC
cell agrees to 1e-6; so does the procedure from mclust's own partitions
(``partitions=``).
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

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


# ----------------------------------------------------------- Mclust with noise

FITS = REFERENCE["fits"]
# the default suite's share: two compiled programs, the models of both choices
# (true_noise's runner-up, VVE with G = 2, is 0.9 behind EEI with G = 3)
CHEAP = ("EEI", "VVE")


def mclust_partitions(name: str) -> list[np.ndarray]:
    """mclust's start for every G = 0…9 on the rows not taken for noise (0-based)."""
    fit = FITS[name]
    m = int(np.sum(~np.asarray(fit["noise_init"])))
    return [np.zeros(m, int)] + [np.asarray(fit["hc_partitions"][str(g)]) - 1 for g in range(1, 10)]


@functools.cache
def run_select(name: str, models, *, mclust_start: bool = False, tol: float = 1e-5):
    fit = FITS[name]
    assert tuple(fit["G"]) == tuple(range(10))
    return gmm.noise.select(
        X, np.asarray(fit["noise_init"]), covariance_types=models, tol=tol,
        partitions=mclust_partitions(name) if mclust_start else None,
    )  # fmt: skip


def reference_table(name: str, key: str, models) -> np.ndarray:
    """(T, 10) mclust's table for ``models`` in jaxem's orientation (and sign for
    the criteria)."""
    fit = FITS[name]
    columns = [fit["models"].index(m) for m in models]
    table = np.asarray(fit[key], float)[:, columns].T
    return table if key == "npar" else -table


def check_selection(name: str, r) -> None:
    """Mclust's choice, its parameter counts, its BIC table (every cell), its
    log-likelihood and classification."""
    fit = FITS[name]
    models = r.models
    assert (r.best_model, r.best_n_components) == (fit["modelName"], fit["G_best"])
    np.testing.assert_array_equal(r.n_parameters, reference_table(name, "npar", models))
    bic = reference_table(name, "bic", models)
    close = np.abs(r.bic - bic) <= 1e-6 * np.abs(bic)
    assert close.all(), np.argwhere(~close)
    ll = r.log_likelihood * X.shape[0]
    assert abs(ll - fit["loglik"]) <= 1e-6 * abs(fit["loglik"]), (ll, fit["loglik"])
    labels = np.asarray(gmm.noise.predict(r.params, X)) + 1  # mclust's: noise 0, then 1..G
    want = np.asarray(fit["classification"])
    np.testing.assert_array_equal(labels == 0, want == 0)
    assert adjusted_rand_score(labels, want) == 1.0


@pytest.mark.parametrize("name", ["doc_example", "true_noise"])
def test_select_as_mclust(name):
    """Mclust's model and G (among EEI and VVE), BIC cells, log-likelihood and
    classification (identical labels up to their names)."""
    check_selection(name, run_select(name, CHEAP))


@pytest.mark.parametrize("name", ["doc_example", "true_noise"])
def test_select_from_mclusts_partitions_is_mclusts_table(name):
    """Everything but the agglomeration: from mclust's hc partitions every cell
    agrees to 1e-6 (the same compiled programs as above)."""
    check_selection(name, run_select(name, CHEAP, mclust_start=True))


@pytest.mark.parametrize("name", ["doc_example", "true_noise"])
def test_starts_are_mclusts_partitions(name):
    """jaxem's agglomeration of the rows not taken for noise is mclust's, every K,
    on true_noise's tied distances too."""
    from jaxem._src.gmm.noise import _hc_program

    fit = FITS[name]
    clean = X[~np.asarray(fit["noise_init"])]
    labels = np.asarray(_hc_program(jax.random.key(0), clean, np.arange(10), k_max=9))
    for g, want in enumerate(mclust_partitions(name)[1:], start=1):
        assert adjusted_rand_score(labels[g], want) == 1.0, g


@pytest.mark.slow  # 14 compiled programs, about a minute
@pytest.mark.parametrize("name", ["doc_example", "true_noise"])
def test_select_over_the_14_models_as_mclust(name):
    """Mclust(x, initialization = list(noise = ...)) over its 14 models and G = 0…9:
    the same choice by BIC and by ICL (mclustICL), every cell of the BIC table to
    1e-6, from jaxem's agglomeration and from mclust's partitions."""
    r = run_select(name, gmm.MCLUST_MODELS)
    check_selection(name, r)
    t, m = np.unravel_index(np.argmin(r.icl), r.icl.shape)
    best = FITS[name]["icl_best"]
    assert (r.models[t], r.n_components[m]) == (best["modelName"], best["G"])
    check_selection(name, run_select(name, gmm.MCLUST_MODELS, mclust_start=True))


def test_noise_only_cell_and_parameter_count():
    """K = 0 is the noise alone: log L = N log V⁻¹, one parameter (mclust's G = 0)."""
    r = run_select("doc_example", CHEAP)
    np.testing.assert_allclose(r.log_likelihoods[:, 0], LOG_V, rtol=1e-12)
    np.testing.assert_array_equal(r.n_parameters[:, 0], 1)
    np.testing.assert_allclose(r.bic[:, 0], -FITS["doc_example"]["bic"][0][0], rtol=1e-12)


def test_select_rejects_bad_arguments():
    noise = np.zeros(X.shape[0], bool)
    with pytest.raises(ValueError, match="at least one row"):
        gmm.noise.select(X, noise, covariance_types=["EII"])
    noise[:100] = True
    with pytest.raises(ValueError, match="boolean mask"):
        gmm.noise.select(X, noise.astype(int), covariance_types=["EII"])
    with pytest.raises(ValueError, match="partitions"):
        gmm.noise.select(X, noise, n_components=[1, 2], covariance_types=["EII"],
                         partitions=[np.zeros(272, int)])  # fmt: skip
    with pytest.raises(ValueError, match="criterion"):
        gmm.noise.select(X, noise, criterion="dic")
    # a constant feature: no volume, an infinite noise density and NaN fits (select
    # then blamed reg_covar)
    flat = np.c_[X[:, :1], np.ones(X.shape[0])]
    with pytest.raises(ValueError, match=r"feature \[1\] is constant"):
        gmm.noise.select(flat, noise, covariance_types=["EII"])
    with pytest.raises(ValueError, match=r"feature \[1\] is constant"):
        gmm.noise.fit_from_resp(flat, np.full((X.shape[0], 2), 0.5))
