"""Mixtures of independent categorical distributions (latent class analysis), as an
engine family.

Data are (N, D) integer category codes, feature ``j`` taking values
``0, …, C_j − 1`` (the numbers of categories may differ between features). With
``f(x)`` the (Σ_j C_j,) one-hot encoding of a row (one block per feature),

    p(x) = Σ_k π_k Π_j Π_c p_kjc^[x_j = c],   log p(x | θ_k) = f(x) · log p_k,

so the log-densities of a chunk are one matrix product of the one-hot features
(built once per fit: :meth:`Categorical.featurize`) with the (K, Σ C_j) log
probabilities. The statistics are ``n_k = Σ_n w_n r_nk`` and the weighted category
counts ``s_kc = Σ_n w_n r_nk f_c(x_n)``; the M-step normalises each feature's
block of counts, ``p_kjc = s_kjc / Σ_c' s_kjc'``, or under a symmetric
``Dirichlet(β)`` prior on every block takes its posterior mode
``(s_kjc + β − 1) / (Σ_c' s_kjc' + C_j (β − 1))``.

A missing entry (NaN or −1) has an all-zero block: it drops out of that row's
likelihood (missing at random) and of the counts, and because each block is
normalised by its own total the M-step stays exact (full-information maximum
likelihood, as poLCA's and stepmix's ``na.rm = FALSE`` modes do).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.family import below_resolution, log_weights, weights_from_logs
from jaxem._src.mixtures.common import (
    DirichletWeights,
    DiscreteMixture,
    count_summary,
    flush_subnormal,
    log_floor,
    mixture_weights,
    n_active_components,
)
from jaxem._src.validation import as_data, check_hyperparameters, check_static_int, concrete

__all__ = ["Categorical", "CategoricalParams", "CategoricalStats", "OneHot"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CategoricalParams:
    """Parameters of a K-component latent class model over D categorical features.

    Attributes:
        weights: (K,) mixing weights (class sizes; 0 marks an inactive component).
        probs: (K, Σ_j C_j) ``P(x_j = c | class k)``, one block of ``C_j``
            columns per feature in feature order; each block of a row sums to 1
            (:meth:`Categorical.feature_probs` splits them).
    """

    weights: jax.Array
    probs: jax.Array


class CategoricalStats(NamedTuple):
    """Additive statistics: ``n_k`` (K,) and the weighted category counts (K, Σ C_j)."""

    nk: jax.Array
    counts: jax.Array


class OneHot(NamedTuple):
    """The (N, Σ_j C_j) one-hot features of rows of codes (what the passes read)."""

    values: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Categorical(DiscreteMixture):
    """The latent class model: a mixture of independent categorical features.

    Attributes:
        n_categories: static, ``(C_1, …, C_D)``: feature ``j`` takes the codes
            ``0 … C_j − 1``. :meth:`for_data` infers it from data.
        category_dirichlet: ``β ≥ 1`` of a symmetric Dirichlet prior on each
            feature's category probabilities in each class (traced); 1 (the
            default) is no prior: maximum likelihood.
        dirichlet: ``α ≥ 1`` of a symmetric Dirichlet prior on the weights
            (traced; 1 is flat).

    Example:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> from jaxem import mixtures
        >>> family = mixtures.Categorical((3, 2, 2))  # 3 items: 2 classes are identified
        >>> truth = mixtures.CategoricalParams(
        ...     jnp.array([0.5, 0.5]),
        ...     jnp.array([[0.8, 0.1, 0.1, 0.9, 0.1, 0.8, 0.2],
        ...                [0.1, 0.1, 0.8, 0.1, 0.9, 0.2, 0.8]]))
        >>> x, labels = family.sample(jax.random.key(0), truth, 1000)
        >>> result = jaxem.fit(family, jax.random.key(1), x, 2, n_init=3)
        >>> [b.shape for b in family.feature_probs(result.params)]
        [(2, 3), (2, 2), (2, 2)]
        >>> sorted(round(float(p), 1) for p in result.params.probs[:, 0])
        [0.1, 0.8]
    """

    n_categories: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    category_dirichlet: ArrayLike = 1.0
    dirichlet: ArrayLike = 1.0

    has_features = True  # the one-hot features: built once per fit by the sources

    def __post_init__(self):
        check_hyperparameters(self, {"category_dirichlet": 1.0, "dirichlet": 1.0})
        n_categories = self.n_categories
        if isinstance(n_categories, (int, np.integer)):
            n_categories = (n_categories,)
        try:
            n_categories = tuple(
                check_static_int("n_categories", c, minimum=1) for c in n_categories
            )
        except TypeError:
            raise TypeError(
                "n_categories must be a tuple of ints (the number of categories of each "
                f"feature); got {self.n_categories!r}"
            ) from None
        if not n_categories:
            raise ValueError("n_categories must name at least one feature")
        object.__setattr__(self, "n_categories", n_categories)

    @classmethod
    def for_data(cls, x: ArrayLike, **hyperparameters) -> Categorical:
        """The family for data ``x`` (N, D) of integer codes: ``C_j`` is the
        largest code of feature ``j`` plus one (missing entries, NaN or −1, are
        ignored).

        Args:
            x: (N, D) codes (concrete).
            **hyperparameters: ``category_dirichlet``, ``dirichlet``.

        Example:
            >>> from jaxem import mixtures
            >>> import numpy as np
            >>> mixtures.Categorical.for_data(np.array([[0, 2], [1, 0]])).n_categories
            (2, 3)
        """
        v = _check_codes(x, None)
        observed = np.where(np.isnan(v) | (v < 0), -1, v)
        top = np.max(observed, axis=0)
        if np.any(top < 0):
            raise ValueError(
                f"feature {int(np.argmax(top < 0))} of x has no observed code (every row "
                "missing): for_data cannot count its categories; give n_categories"
            )
        return cls(tuple(int(m) + 1 for m in top), **hyperparameters)

    # ------------------------------------------------------------------ layout

    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Static (Σ C_j,) feature index and category code of every one-hot column."""
        feature = np.repeat(np.arange(len(self.n_categories)), self.n_categories)
        starts = np.cumsum((0, *self.n_categories[:-1]))
        return feature, np.arange(feature.shape[0]) - starts[feature]

    def _block_totals(self, counts: jax.Array) -> jax.Array:
        """(..., Σ C_j) each column replaced by the total of its feature's block."""
        feature, _ = self._columns()
        totals = jax.ops.segment_sum(
            jnp.moveaxis(counts, -1, 0), feature, num_segments=len(self.n_categories)
        )
        return jnp.moveaxis(totals[feature], 0, -1)

    def feature_probs(self, params: CategoricalParams) -> tuple[jax.Array, ...]:
        """``params.probs`` split into its D blocks: ``(K, C_j)`` for feature ``j``."""
        bounds = np.cumsum(self.n_categories)[:-1]
        return tuple(jnp.split(params.probs, bounds, axis=-1))

    # -------------------------------------------------------------------- data

    def check_data(self, x, *, name="x"):
        _check_codes(x, self.n_categories, name=name)
        return as_data(x, name=name, allow_nan=True)

    def n_features_of(self, params):
        """None: ``probs`` has a column per category, and :meth:`check_data`
        holds the data to the family's ``n_categories``."""
        return None

    def featurize(self, x, context=None) -> OneHot:
        """(N, Σ C_j) one-hot encoding of (N, D) codes (a missing entry: zeros)."""
        if isinstance(x, OneHot):
            return x
        x = jnp.asarray(x)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)
        feature, category = self._columns()
        return OneHot((x[:, feature] == category).astype(dtype))

    def summarize(self, x, w, ref):
        return count_summary(self.featurize(x).values, w)

    def init_features(self, x, context):
        return self.featurize(x).values

    def init_stats(self, resp, x, w, context):
        return super().init_stats(resp, self.featurize(x), w, context)

    # ---------------------------------------------------------------------- EM

    def log_components(self, params, x):
        return self.featurize(x).values @ log_floor(params.probs).T

    def impossible(self, params, x):
        values = self.featurize(x).values
        return values @ (params.probs == 0).T.astype(values.dtype) > 0

    def suff_stats(self, resp, x):
        return CategoricalStats(jnp.sum(resp, axis=0), resp.T @ self.featurize(x).values)

    def maximize(self, stats, params, context):
        nk = stats.nk
        counts = jnp.maximum(stats.counts + (self.category_dirichlet - 1), 0)
        totals = self._block_totals(counts)
        # A finite placeholder where a block has no mass (an inactive class, or a
        # feature missing in every row of a class): the data's marginal frequencies.
        seen = context["sum_x"]
        seen_totals = self._block_totals(seen)
        uniform = jnp.asarray(1 / np.asarray(self.n_categories)[self._columns()[0]], counts.dtype)
        marginal = jnp.where(
            seen_totals > 0, seen / jnp.where(seen_totals > 0, seen_totals, 1), uniform
        )
        use = (nk > 0)[:, None] & (totals > 0)
        probs = jnp.where(use, flush_subnormal(counts / jnp.where(use, totals, 1)), marginal)
        return CategoricalParams(mixture_weights(nk, self.dirichlet), probs)

    def valid(self, params):
        # affine combinations keep every block summing to 1; only signs can fail
        return super().valid(params) & jnp.all(params.probs >= 0)

    def check_params(self, params):
        width = sum(self.n_categories)
        if np.ndim(params.probs) < 1 or np.shape(params.probs)[-1] != width:
            raise ValueError(
                f"probs must have Σ n_categories = {width} columns (n_categories="
                f"{self.n_categories}); got shape {np.shape(params.probs)}"
            )
        super().check_params(params)
        probs = concrete(params.probs)
        if probs is not None:
            totals = np.asarray(self._block_totals(probs))
            # float32's rounding whatever the dtype (float32 parameters cast to float64)
            if not np.allclose(totals, 1, rtol=0, atol=1e-4):
                raise ValueError(
                    "each component's probabilities of each feature's categories must sum to 1"
                )

    def unconstrain(self, params):
        return CategoricalParams(log_weights(params.weights), log_floor(params.probs))

    def boundary(self, params):
        return CategoricalParams(below_resolution(params.weights), below_resolution(params.probs))

    def constrain(self, u, like):
        # each feature's block of log-probabilities normalised (capped so exp stays finite)
        # a probability of exactly 0 stays 0 (as EM keeps it)
        p = jnp.where(like.probs == 0, 0, jnp.exp(jnp.minimum(u.probs, 600)))
        totals = self._block_totals(p)
        probs = jnp.where(totals > 0, p / jnp.where(totals > 0, totals, 1), like.probs)
        return CategoricalParams(weights_from_logs(u.weights, like.weights), probs)

    def log_prior(self, params):
        active = params.weights > 0
        # The Dirichlet(β) kernels; β = 1 (no prior) contributes exactly 0.
        kernel = (self.category_dirichlet - 1) * log_floor(params.probs)
        probs_lp = jnp.sum(jnp.where(active[:, None], kernel, 0))
        return probs_lp + DirichletWeights(self.dirichlet).log_kernel(params.weights)

    def n_parameters(self, params):
        k = n_active_components(params.weights)
        return k - 1 + k * (sum(self.n_categories) - len(self.n_categories))

    def sample_components(self, key, params, labels):
        keys = jax.random.split(key, len(self.n_categories))
        codes = []
        for k, p in zip(keys, self.feature_probs(params), strict=True):
            logits = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1)), -jnp.inf)
            codes.append(jax.random.categorical(k, logits[labels]))
        return jnp.stack(codes, axis=1).astype(params.probs.dtype)


def _check_codes(x: ArrayLike, n_categories: tuple[int, ...] | None, *, name: str = "x"):
    """Concrete (N, D) codes as a float NumPy array (None under tracing); raises on
    anything but whole numbers in ``[0, C_j)``, NaN or −1."""
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    data = as_data(x, name=name, allow_nan=True)
    d = data.shape[1]
    if n_categories is not None and d != len(n_categories):
        raise ValueError(
            f"{name} has {d} features but the family has n_categories for "
            f"{len(n_categories)}: {n_categories}"
        )
    v = concrete(data)
    if v is None:
        if n_categories is None:
            raise TypeError(f"{name} must be concrete to infer n_categories")
        return None
    observed = ~np.isnan(v) & (v != -1)
    bad = observed & ((v != np.round(v)) | (v < 0) | ~np.isfinite(v))
    if n_categories is not None:
        bad |= observed & (v >= np.asarray(n_categories))
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        limit = f"0..{n_categories[j] - 1}" if n_categories is not None else "0, 1, 2, ..."
        raise ValueError(
            f"{name} must hold category codes ({limit} for feature {j}; NaN or -1 for a "
            f"missing entry); got {v[i, j]!r} at row {i}"
        )
    return v
