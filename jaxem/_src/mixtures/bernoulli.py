"""Mixtures of independent Bernoulli distributions (binary data), as an engine family.

``p(x) = Σ_k π_k Π_d p_kd^x_d (1 − p_kd)^(1 − x_d)`` for ``x ∈ {0, 1}^D``. The
log-densities of a chunk are one matrix product,

    log p(x_n | θ_k) = x_n · (log p_k − log(1 − p_k)) + Σ_d log(1 − p_kd),

with the logs floored at the dtype's smallest normal number (a probability of
exactly 0 or 1, the maximum-likelihood estimate of a feature constant within a
component, stays exact and never gives NaN). The statistics of a chunk are the
responsibility mass ``n_k = Σ_n w_n r_nk`` and ``s_kd = Σ_n w_n r_nk x_nd``; the
M-step is ``p_kd = s_kd / n_k`` or, under a ``Beta(a, b)`` prior on every
probability, its posterior mode ``(s_kd + a − 1) / (n_k + a + b − 2)``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src.family import below_resolution, log_weights, weights_from_logs
from jaxem._src.mixtures.common import (
    DirichletWeights,
    DiscreteMixture,
    check_counts,
    count_summary,
    flush_subnormal,
    log_floor,
    mixture_weights,
    n_active_components,
)
from jaxem._src.validation import check_hyperparameters

__all__ = ["Bernoulli", "BernoulliParams", "BernoulliStats"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BernoulliParams:
    """Parameters of a K-component Bernoulli mixture over D binary features.

    Attributes:
        weights: (K,) mixing weights (0 marks an inactive component).
        probs: (K, D) ``p_kd = P(x_d = 1 | component k)``.
    """

    weights: jax.Array
    probs: jax.Array


class BernoulliStats(NamedTuple):
    """Additive statistics: ``n_k`` (K,) and ``s_kd = Σ w r x`` (K, D)."""

    nk: jax.Array
    sum_x: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Bernoulli(DiscreteMixture):
    """The Bernoulli mixture family (latent class analysis of binary items).

    Data are (N, D) arrays of 0 and 1 (booleans, integers or floats).

    Attributes:
        beta_a: ``a ≥ 1`` of a ``Beta(a, b)`` prior on every probability
            (traced); ``a = b = 1`` (the default) is no prior: maximum likelihood.
        beta_b: ``b ≥ 1`` of that prior (traced). ``a = b = 2`` keeps every
            probability off 0 and 1 (a pseudo-count of one success and one failure).
        dirichlet: ``α ≥ 1`` of a symmetric Dirichlet prior on the weights
            (traced; 1 is flat).

    Example:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> from jaxem import mixtures
        >>> family = mixtures.Bernoulli()
        >>> truth = mixtures.BernoulliParams(
        ...     jnp.array([0.5, 0.5]), jnp.array([[0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.9, 0.9]]))
        >>> x, labels = family.sample(jax.random.key(0), truth, 400)
        >>> result = jaxem.fit(family, jax.random.key(1), x, 2, n_init=3)
        >>> sorted(round(float(p), 1) for p in result.params.probs[:, 0])
        [0.1, 0.9]
    """

    beta_a: ArrayLike = 1.0
    beta_b: ArrayLike = 1.0
    dirichlet: ArrayLike = 1.0

    def __post_init__(self):
        check_hyperparameters(self, {"beta_a": 1.0, "beta_b": 1.0, "dirichlet": 1.0})

    def check_data(self, x, *, name="x"):
        return check_counts(x, name=name, binary=True)

    def summarize(self, x, w, ref):
        return count_summary(x, w)

    def log_components(self, params, x):
        log_p, log_q = log_floor(params.probs), log_floor(1 - params.probs)
        return x @ (log_p - log_q).T + jnp.sum(log_q, axis=1)

    def impossible(self, params, x):
        zero, one = (params.probs == 0).astype(x.dtype), (params.probs == 1).astype(x.dtype)
        return x @ zero.T + (1 - x) @ one.T > 0

    def suff_stats(self, resp, x):
        return BernoulliStats(jnp.sum(resp, axis=0), resp.T @ x)

    def maximize(self, stats, params, context):
        a, b = self.beta_a, self.beta_b
        nk = stats.nk
        active = nk > 0
        denominator = jnp.where(active, nk + (a + b - 2), 1)[:, None]
        denominator = jnp.where(denominator > 0, denominator, 1)
        probs = flush_subnormal(jnp.clip((stats.sum_x + (a - 1)) / denominator, 0, 1))
        mean = context["sum_x"] / context["count"]
        probs = jnp.where(active[:, None], probs, mean)  # a finite placeholder when inactive
        return BernoulliParams(mixture_weights(nk, self.dirichlet), probs)

    def valid(self, params):
        return super().valid(params) & jnp.all((params.probs >= 0) & (params.probs <= 1))

    def unconstrain(self, params):
        logits = log_floor(params.probs) - log_floor(1 - params.probs)
        return BernoulliParams(log_weights(params.weights), logits)

    def boundary(self, params):
        probs = params.probs
        return BernoulliParams(
            below_resolution(params.weights), below_resolution(probs) | below_resolution(1 - probs)
        )

    def constrain(self, u, like):
        # a probability of exactly 0 or 1 stays there (as EM keeps it), as an
        # inactive component's weight stays 0
        exact = (like.probs == 0) | (like.probs == 1)
        probs = jnp.where(exact, like.probs, jax.nn.sigmoid(u.probs))
        return BernoulliParams(weights_from_logs(u.weights, like.weights), probs)

    def log_prior(self, params):
        active = params.weights > 0
        a, b = self.beta_a, self.beta_b
        # The Beta(a, b) kernel; a = b = 1 (no prior) contributes exactly 0.
        kernel = (a - 1) * log_floor(params.probs) + (b - 1) * log_floor(1 - params.probs)
        probs_lp = jnp.sum(jnp.where(active[:, None], kernel, 0))
        return probs_lp + DirichletWeights(self.dirichlet).log_kernel(params.weights)

    def n_parameters(self, params):
        k = n_active_components(params.weights)
        return k - 1 + k * params.probs.shape[-1]

    def sample_components(self, key, params, labels):
        probs = params.probs[labels]
        return (jax.random.uniform(key, probs.shape, probs.dtype) < probs).astype(probs.dtype)
