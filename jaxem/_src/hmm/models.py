"""Constructors of the common HMMs and of their parameters."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.gmm.fit import family as gaussian_family
from jaxem._src.gmm.params import make_params as gmm_make_params
from jaxem._src.hmm.family import HMM, HMMParams
from jaxem._src.hmm.gmm_emission import GaussianMixtureEmission, MixtureEmissionParams
from jaxem._src.mixtures.categorical import Categorical, CategoricalParams
from jaxem._src.mixtures.poisson import Poisson, PoissonParams
from jaxem._src.validation import check_scalar, check_static_int

__all__ = ["categorical", "gaussian", "gmm", "make_params", "poisson"]


def _priors(startprob_prior, transmat_prior):
    # α < 1 makes the MAP estimate of a probability 0 and the log prior +∞
    check_scalar("startprob_prior", startprob_prior, minimum=1.0)
    check_scalar("transmat_prior", transmat_prior, minimum=1.0)
    return dict(startprob_prior=startprob_prior, transmat_prior=transmat_prior)


def gaussian(
    covariance_type: str = "full",
    *,
    reg_covar: ArrayLike = 1e-6,
    startprob_prior: ArrayLike = 1.0,
    transmat_prior: ArrayLike = 1.0,
    parallel: bool = False,
) -> HMM:
    """An HMM with Gaussian emissions (hmmlearn's ``GaussianHMM``).

    Args:
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``
            (:mod:`jaxem.gmm`'s covariance modules).
        reg_covar: added to the covariance diagonal in every M-step (traced).
            0 with the default priors is hmmlearn's M-step with
            ``covars_prior=0`` (plain maximum likelihood).
        startprob_prior, transmat_prior: symmetric Dirichlet priors (traced;
            1 is maximum likelihood, as hmmlearn's defaults).
        parallel: static; associative-scan forward–backward.

    Example:
        >>> import jax, jaxem
        >>> from jaxem import hmm
        >>> family = hmm.gaussian("diag")
        >>> truth = hmm.make_params([0.5, 0.5], [[0.95, 0.05], [0.1, 0.9]],
        ...                         family, means=[[-2.0], [2.0]], covariances=[[1.0], [1.0]])
        >>> x, states = family.sample(jax.random.key(0), truth, 200, n_sequences=3)
        >>> result = jaxem.fit(family, jax.random.key(1), x, 2)
        >>> sorted(result.params.emission.means[:, 0].round().tolist())
        [-2.0, 2.0]
    """
    emission = gaussian_family(covariance_type, reg_covar=reg_covar)
    return HMM(emission, parallel=parallel, **_priors(startprob_prior, transmat_prior))


def gmm(
    n_mix: int = 2,
    covariance_type: str = "full",
    *,
    reg_covar: ArrayLike = 1e-6,
    startprob_prior: ArrayLike = 1.0,
    transmat_prior: ArrayLike = 1.0,
    parallel: bool = False,
) -> HMM:
    """An HMM whose states emit mixtures of ``n_mix`` Gaussians (hmmlearn's
    ``GMMHMM``; ``covariance_type`` ``"full"``, ``"diag"`` or ``"spherical"``,
    one covariance per Gaussian). Maximum likelihood (with ``reg_covar``), as
    hmmlearn's defaults for full and diagonal covariances."""
    n_mix = check_static_int("n_mix", n_mix, minimum=1)
    if covariance_type not in ("full", "diag", "spherical"):
        raise ValueError(
            "covariance_type of a GMM-HMM must be 'full', 'diag' or 'spherical'; "
            f"got {covariance_type!r}"
        )
    gaussian = gaussian_family(covariance_type, reg_covar=reg_covar, formulation="direct")
    emission = GaussianMixtureEmission(gaussian, n_mix)
    return HMM(emission, parallel=parallel, **_priors(startprob_prior, transmat_prior))


def poisson(
    *,
    startprob_prior: ArrayLike = 1.0,
    transmat_prior: ArrayLike = 1.0,
    rate_shape: ArrayLike = 1.0,
    rate_rate: ArrayLike = 0.0,
    parallel: bool = False,
) -> HMM:
    """An HMM with independent Poisson emissions (hmmlearn's ``PoissonHMM``;
    ``rate_shape = α + 1``, ``rate_rate = β`` of a Gamma prior on the rates)."""
    emission = Poisson(rate_shape=rate_shape, rate_rate=rate_rate)
    return HMM(emission, parallel=parallel, **_priors(startprob_prior, transmat_prior))


def categorical(
    n_categories: int | tuple[int, ...],
    *,
    startprob_prior: ArrayLike = 1.0,
    transmat_prior: ArrayLike = 1.0,
    emissionprob_prior: ArrayLike = 1.0,
    parallel: bool = False,
) -> HMM:
    """An HMM with categorical emissions (hmmlearn's ``CategoricalHMM``; several
    independent categorical features allowed, codes ``0 … C_j − 1``)."""
    emission = Categorical(n_categories, category_dirichlet=emissionprob_prior)
    return HMM(emission, parallel=parallel, **_priors(startprob_prior, transmat_prior))


def make_params(
    startprob: ArrayLike,
    transmat: ArrayLike,
    family: HMM,
    **emission: ArrayLike,
) -> HMMParams:
    """HMM parameters from arrays (e.g. hmmlearn's ``startprob_``, ``transmat_``).

    Args:
        startprob: (K,) start probabilities.
        transmat: (K, K) transition matrix.
        family: the HMM (its emission type decides the keywords).
        **emission: ``means`` and ``covariances`` (Gaussian, in
            scikit-learn's shapes for the covariance type; for a GMM-HMM
            hmmlearn's (K, M, ...) shapes and ``weights`` (K, M)), ``rates``
            (Poisson, (K, D)) or ``probs`` (categorical, (K, Σ C_j)).

    Returns:
        :class:`HMMParams` (the emission weights uniform: every state active).
    """
    startprob = np.asarray(startprob, dtype=float)
    transmat = np.asarray(transmat, dtype=float)
    k = startprob.shape[0]
    if startprob.ndim != 1 or transmat.shape != (k, k):
        raise ValueError(
            f"startprob must be (K,) and transmat (K, K); got {startprob.shape}, {transmat.shape}"
        )
    _check_probabilities("startprob", startprob)
    _check_probabilities("transmat", transmat)
    if not np.allclose(startprob.sum(), 1) or not np.allclose(transmat.sum(1), 1):
        raise ValueError("startprob and each row of transmat must sum to 1")
    weights = np.full(k, 1 / k)
    em = family.emission
    if isinstance(em, Poisson):
        _check_keywords(emission, ("rates",), "a Poisson HMM")
        rates = _emission_array("rates", emission["rates"], k, 2)
        if not np.all(rates >= 0):
            raise ValueError(f"rates must be non-negative; got {rates.tolist()}")
        params = PoissonParams(jnp.asarray(weights), jnp.asarray(rates))
    elif isinstance(em, GaussianMixtureEmission):
        _check_keywords(emission, ("means", "covariances", "weights"), "a GMM-HMM")
        means = _emission_array("means", emission["means"], k, 3)
        kk, m, d = means.shape
        cov = np.asarray(emission["covariances"], float)
        if cov.shape[:2] != (kk, m):
            raise ValueError(f"covariances must start with (K, M) = {(kk, m)}; got {cov.shape}")
        cov = cov.reshape(kk * m, *cov.shape[2:])
        gaussians = gmm_make_params(
            np.full(kk * m, 1 / (kk * m)), means.reshape(kk * m, d), cov,
            em.gaussian.covariance_type,
        )  # fmt: skip
        mix = _emission_array("weights", emission["weights"], k, 2)
        if mix.shape[1] != m:
            raise ValueError(f"weights must have shape (K, M) = {(k, m)}; got {mix.shape}")
        _check_probabilities("weights", mix)
        if not np.allclose(mix.sum(1), 1):
            raise ValueError("each row of the mixture weights must sum to 1")
        params = MixtureEmissionParams(jnp.asarray(weights), jnp.asarray(mix), gaussians)
    elif isinstance(em, Categorical):
        _check_keywords(emission, ("probs",), "a categorical HMM")
        probs = _emission_array("probs", emission["probs"], k, 2)
        width = sum(em.n_categories)
        if probs.shape[1] != width:
            raise ValueError(
                f"probs must have shape (K, Σ C_j) = {(k, width)} for n_categories="
                f"{em.n_categories}; got {probs.shape}"
            )
        _check_probabilities("probs", probs)
        blocks = np.split(probs, np.cumsum(em.n_categories)[:-1], axis=1)
        if not all(np.allclose(b.sum(1), 1) for b in blocks):
            raise ValueError(
                "each state's probabilities of each feature's categories must sum to 1"
            )
        params = CategoricalParams(jnp.asarray(weights), jnp.asarray(probs))
    else:
        _check_keywords(emission, ("means", "covariances"), "a Gaussian HMM")
        _emission_array("means", emission["means"], k, 2)
        params = gmm_make_params(
            weights, emission["means"], emission["covariances"], em.covariance_type
        )
    return HMMParams(jnp.asarray(startprob), jnp.asarray(transmat), params)


def _check_probabilities(name: str, value: np.ndarray) -> None:
    if not np.all(np.isfinite(value)) or not np.all(value >= 0):
        raise ValueError(f"{name} must be finite and non-negative; got {value.tolist()}")


def _check_keywords(emission: dict, wanted: tuple[str, ...], what: str) -> None:
    if set(emission) != set(wanted):
        raise TypeError(
            f"make_params for {what} takes the emission keywords {list(wanted)}; "
            f"got {sorted(emission)}"
        )


def _emission_array(name: str, value: ArrayLike, k: int, ndim: int) -> np.ndarray:
    """``value`` as a finite float array of ``ndim`` axes, the first K (the states)."""
    array = np.asarray(value, dtype=float)
    if array.ndim != ndim or array.shape[0] != k:
        raise ValueError(
            f"{name} must have {ndim} axes, the first one per state (K = {k}); got shape "
            f"{array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array
