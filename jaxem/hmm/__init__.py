"""Hidden Markov models, fitted by Baum–Welch on jaxem's engine.

An HMM is a family (:class:`HMM`) whose states' emissions are any of jaxem's
mixture families: :func:`gaussian` (full, tied, diagonal or spherical
covariances), :func:`gmm` (a Gaussian mixture per state), :func:`categorical` and
:func:`poisson`. The data are many
sequences of different lengths (:func:`sequences`: padded, with their
lengths); :func:`jaxem.fit` runs vmapped restarts of Baum–Welch on them and
:func:`jaxem.select` chooses the number of states by BIC (N = the number of
frames). The family's methods decode (``predict``/``decode``: Viterbi),
smooth (``predict_proba``), score (``log_prob``, ``score``, ``bic``,
``aic``) and ``sample``.

Example:
    >>> import jax, jaxem
    >>> from jaxem import hmm
    >>> family = hmm.poisson()
    >>> truth = hmm.make_params([1.0, 0.0], [[0.9, 0.1], [0.2, 0.8]], family,
    ...                         rates=[[1.0], [8.0]])
    >>> x, states = family.sample(jax.random.key(0), truth, 300, n_sequences=2)
    >>> result = jaxem.fit(family, jax.random.key(1), x, 2, n_init=2)
    >>> sorted(result.params.emission.rates[:, 0].round().tolist())
    [1.0, 8.0]
"""

from jaxem._src.hmm.family import HMM, HMMParams, HMMStats
from jaxem._src.hmm.gmm_emission import (
    GaussianMixtureEmission,
    MixtureEmissionParams,
    MixtureEmissionStats,
)
from jaxem._src.hmm.inference import Smoothed, backward, forward, smooth, viterbi
from jaxem._src.hmm.models import categorical, gaussian, gmm, make_params, poisson
from jaxem._src.hmm.sequences import Sequences, sequences

__all__ = [
    "HMM",
    "GaussianMixtureEmission",
    "HMMParams",
    "HMMStats",
    "MixtureEmissionParams",
    "MixtureEmissionStats",
    "Sequences",
    "Smoothed",
    "backward",
    "categorical",
    "forward",
    "gaussian",
    "gmm",
    "make_params",
    "poisson",
    "sequences",
    "smooth",
    "viterbi",
]
