"""jaxem: Expectation–Maximization in JAX, with Gaussian mixtures as its first family.

The public API, re-exported explicitly (everything under ``jaxem._src`` is private):

* the generic loop: :func:`em`, :func:`iterate`, :class:`EMResult` and its status codes,
  and its acceleration :class:`Squarem` (``accelerate="squarem"``) and implicit
  differentiation :class:`Implicit` (``implicit=True``: ``jax.grad`` through a fit);
* the engine for any model family: :func:`fit`, :func:`select`, :func:`fit_online`,
  the data sources :func:`chunks` (out of core) and :func:`sharded` (several
  devices), and the seam :class:`Family` / :class:`MixtureFamily`;
* the families: :mod:`jaxem.gmm` (Gaussian mixtures), :mod:`jaxem.mixtures`
  (Poisson, ...), :mod:`jaxem.hmm` (hidden Markov models);
* inference at a fit: :func:`standard_errors` (observed information, delta
  method), :func:`observed_information`, :func:`em_rate`;
* :func:`fit_gradient` (gradient-based maximum likelihood with optax) and
  :mod:`jaxem.kmeans`, :mod:`jaxem.hierarchical`.
"""

from jaxem import gmm, hierarchical, hmm, kmeans, mixtures
from jaxem._src.acceleration import Squarem
from jaxem._src.api import ChunkedData, ShardedData, chunks, fit, select, sharded
from jaxem._src.engine import FitResult, SelectionResult
from jaxem._src.family import Family, MixtureFamily
from jaxem._src.gradient import fit_gradient
from jaxem._src.implicit import Implicit
from jaxem._src.inference import Inference, em_rate, observed_information, standard_errors
from jaxem._src.loop import (
    CONVERGED,
    DEGENERATE,
    MAX_ITER,
    NONFINITE,
    STATUS_NAMES,
    EMResult,
    em,
    iterate,
)
from jaxem._src.online import BatchInfo, OnlineResult, fit_online
from jaxem._src.sources import PassInfo

__all__ = [
    "CONVERGED",
    "DEGENERATE",
    "MAX_ITER",
    "NONFINITE",
    "STATUS_NAMES",
    "BatchInfo",
    "ChunkedData",
    "EMResult",
    "Family",
    "FitResult",
    "Implicit",
    "Inference",
    "MixtureFamily",
    "OnlineResult",
    "PassInfo",
    "SelectionResult",
    "ShardedData",
    "Squarem",
    "chunks",
    "em",
    "em_rate",
    "fit",
    "fit_gradient",
    "fit_online",
    "gmm",
    "hierarchical",
    "hmm",
    "iterate",
    "kmeans",
    "mixtures",
    "observed_information",
    "select",
    "sharded",
    "standard_errors",
]
__version__ = "0.1.0"
