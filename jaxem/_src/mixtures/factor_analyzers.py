"""Mixtures of factor analysers, as an engine family.

``p(x) = Σ_k π_k N(x | μ_k, Λ_k Λ_kᵀ + Ψ_k)`` with ``q`` factors (static): each
component is ``x = μ_k + Λ_k z + ε``, ``z ~ N(0, I_q)``, ``ε ~ N(0, Ψ_k)``,
``Λ_k`` (D, q) the loadings and ``Ψ_k`` diagonal (Ghahramani & Hinton 1996,
"The EM algorithm for mixtures of factor analyzers"; McLachlan & Peel 2000,
ch. 8). ``Ψ_k`` is per component (``noise_type="diag"``, the default), shared
by all components (``"tied"``), or isotropic ``ψ_k I`` per component
(``"isotropic"``: Tipping & Bishop's mixtures of probabilistic PCA).

**Densities, linear in D.** With ``L = Ψ^(−½) Λ`` the whitened loadings,
``M = I_q + LᵀL`` (q, q) and ``ỹ = Ψ^(−½)(x − μ)``, the Woodbury identity and
the matrix determinant lemma give

    log |Σ| = Σ_d log ψ_d + log |M|,
    (x − μ)ᵀ Σ⁻¹ (x − μ) = ‖ỹ − L ẑ‖² + ‖ẑ‖²,   ẑ = M⁻¹ Lᵀ ỹ = E[z | x, k],

the second because ``ẑ`` minimises ``‖ỹ − L z‖² + ‖z‖²``, whose minimum is
``ỹᵀ (I + L Lᵀ)⁻¹ ỹ``. It is a sum of non-negative terms, so it keeps its
digits where ``‖ỹ‖² − ẑᵀ M ẑ`` (the textbook form) cancels: when the noise is
small against the factors. A pass costs O(N K D q); no D × D matrix is formed
or inverted.

**EM.** Ghahramani & Hinton's EM with the factors augmented by a constant,
``z̃ = (z, 1)``, so that the loadings and the mean are one regression
``Λ̃ = [Λ, μ]``: given the component, ``E[z | x] = ẑ`` and ``Cov[z | x] = M⁻¹``,
and the statistics of a chunk, additive over rows (``r`` the responsibilities
times the sample weights, ``y = x − m_k`` about the E-step's means, as the
Gaussian family's, so that they keep their digits far from the origin), are

    n_k = Σ r,   Σ r y,   Σ r y²  (diagonal only),   Σ r ẑ,   Σ r y ẑᵀ,
    Σ r E[z zᵀ] = n_k M⁻¹ + Σ r ẑ ẑᵀ.

The M-step solves ``[Λ_k, μ_k − m_k] = (Σ r y z̃ᵀ)(Σ r E[z̃ z̃ᵀ])⁻¹`` (a
(q + 1) × (q + 1) system) and ``ψ_kd = (Σ r y_d² − Σ_j Λ̃_dj (Σ r y z̃ᵀ)_dj) / n_k``
(averaged over features for ``"isotropic"``, over components weighted by
``n_k`` for ``"tied"``), then ``+ reg_covar``. Every factor of the expected
complete-data log-likelihood is maximised jointly, so this is an exact EM:
the log-likelihood never decreases.

**AECM** (``algorithm="aecm"``; McLachlan & Peel 2000, section 8.5): two
cycles per iteration with an E-step before each. Cycle 1 (the labels missing)
sets ``π`` and ``μ_k = Σ τ x / Σ τ`` from the pass at ``θ``; cycle 2 (labels and
factors missing) is the engine's conditional cycle (:attr:`~jaxem.Family.has_cycle`):
one more pass at ``(π', μ', Λ, Ψ)``, then ``Λ_k = (Σ τ y ẑᵀ)(Σ τ E[z zᵀ])⁻¹``
and ``ψ`` as above with ``y = x − μ'``, the mean held. Two passes per iteration;
the same fixed points as EM (tests/test_mixtures_factor.py: equal to an
independent dense NumPy AECM to 1e-10). On the standardised wine data (K = 3,
q = 2, k-means start, to a gain below 1e-10) both take about 3 000 iterations,
so EM, at one pass each, is the default. Online EM, which has no full passes,
runs the EM (:meth:`FactorAnalyzers.one_pass`).

**Initialisation** (:meth:`FactorAnalyzers.init_stats`): the engine's
responsibilities (k-means etc. on the raw data), then per component a
probabilistic-PCA start (Tipping & Bishop 1999): the top ``q`` principal axes
of the responsibility-weighted data by a randomised subspace iteration (cost
linear in D), ``Λ = V (Λ_q − σ²)^½``, ``ψ_d`` the variance the factors leave,
and the statistics of an E-step there with the given responsibilities, so that
the loop's first M-step is an EM step from the PCA start.

**Parameter count** for BIC: ``K − 1 + K·D`` (weights, means) ``+ K (D q −
q (q − 1)/2)`` (the loadings less the rotations ``Λ → Λ R`` that leave
``Λ Λᵀ`` unchanged) plus ``K·D`` (diag), ``D`` (tied) or ``K`` (isotropic)
noise variances, over the active components.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.chunking import chunk_rows
from jaxem._src.family import (
    MeansShape,
    MixtureFamily,
    log_joint,
    log_weights,
    mixture_center,
    weights_from_logs,
)
from jaxem._src.gmm.family import (
    constant_features,
    gaussian_context,
    gaussian_summary,
    shared_init_view,
)
from jaxem._src.mixtures.common import (
    DirichletWeights,
    mixture_weights,
    n_active_components,
    sample_labels,
)
from jaxem._src.validation import as_data, check_static_int, concrete

__all__ = [
    "NOISE_TYPES",
    "FactorAnalyzers",
    "FactorAnalyzersParams",
    "FactorAnalyzersStats",
]

#: How the noise variances ``Ψ_k`` are constrained.
NOISE_TYPES = ("diag", "tied", "isotropic")

#: Ghahramani & Hinton's EM (one pass per iteration) or McLachlan & Peel's AECM
#: (two cycles, two passes).
ALGORITHMS = ("em", "aecm")

#: A component is degenerate when more of its features than the loadings can
#: span have noise variance ``ψ_kd − reg_covar`` below this fraction of the
#: data's variance: its covariance is then singular but for ``reg_covar``.
DEGENERATE_THRESHOLD = 1e-6

#: Subspace iterations and oversampling of the PCA start.
_SUBSPACE_ITERATIONS = 8
_OVERSAMPLE = 5


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FactorAnalyzersParams(MeansShape):
    """Parameters of a K-component mixture of factor analysers in D dimensions.

    Attributes:
        weights: (K,) mixing weights (0 marks an inactive component).
        means: (K, D) means ``μ_k``.
        loadings: (K, D, q) factor loadings ``Λ_k`` (determined up to a
            rotation ``Λ_k R``, ``R`` orthogonal).
        noise: (K, D) noise variances, the diagonal of ``Ψ_k`` (equal over
            components for ``noise_type="tied"``, over features for
            ``"isotropic"``).
    """

    weights: jax.Array
    means: jax.Array
    loadings: jax.Array
    noise: jax.Array

    @property
    def n_factors(self) -> int:
        return self.loadings.shape[-1]

    @property
    def covariances(self) -> jax.Array:
        """(K, D, D) ``Λ_k Λ_kᵀ + Ψ_k``, formed on request (for inspection and
        comparison; the fit never forms it)."""
        outer = jnp.einsum("...dq,...eq->...de", self.loadings, self.loadings)
        return outer + self.noise[..., None] * jnp.eye(self.n_features, dtype=self.dtype)


class FactorAnalyzersStats(NamedTuple):
    """Additive statistics of a pass, about the E-step's means ``m_k``
    (``y = x − m_k``, ``r`` the weighted responsibilities).

    Attributes:
        nk: (K,) ``Σ r``.
        sum_y: (K, D) ``Σ r y``.
        sum_yy: (K, D) ``Σ r y²`` (the diagonal of the second moments only).
        sum_z: (K, q) ``Σ r E[z]``.
        sum_yz: (K, D, q) ``Σ r y E[z]ᵀ``.
        sum_zz: (K, q, q) ``Σ r E[z zᵀ]``.
    """

    nk: jax.Array
    sum_y: jax.Array
    sum_yy: jax.Array
    sum_z: jax.Array
    sum_yz: jax.Array
    sum_zz: jax.Array


class _Cycle(NamedTuple):
    """AECM's second cycle: one pass, its statistics kept for the CM-step."""

    n: jax.Array
    stats: FactorAnalyzersStats


class _Posterior(NamedTuple):
    """Per-row, per-component quantities of an E-step."""

    log_components: jax.Array  # (N, K) log N(x | μ_k, Σ_k)
    y: jax.Array  # (N, K, D) x − μ_k
    z: jax.Array  # (N, K, q) E[z | x, k]
    z_cov: jax.Array  # (K, q, q) Cov[z | x, k] = M⁻¹


def _factor_posterior(params: FactorAnalyzersParams, x: jax.Array) -> _Posterior:
    """Woodbury densities and factor posteriors (module docstring), O(N K D q)."""
    d = x.shape[-1]
    q = params.loadings.shape[-1]
    dtype = params.means.dtype
    center = mixture_center(params)  # differences of like magnitudes
    y = (x - center)[:, None, :] - (params.means - center)  # (N, K, D)
    inv_sd = jax.lax.rsqrt(params.noise)  # (K, D)
    whitened = params.loadings * inv_sd[..., None]  # (K, D, q)
    m = jnp.eye(q, dtype=dtype) + jnp.einsum("kdi,kdj->kij", whitened, whitened)
    chol = jnp.linalg.cholesky(m)  # (K, q, q)
    y_w = y * inv_sd  # (N, K, D)
    b = jnp.einsum("nkd,kdj->nkj", y_w, whitened)  # Lᵀ ỹ
    # M⁻¹ from the factor, then ẑ by a product: one chain of LAPACK calls
    # (XLA:CPU can hang with two independent ones in flight; tests/test_lapack_order.py)
    eye = jnp.broadcast_to(jnp.eye(q, dtype=dtype), m.shape)
    z_cov = jax.vmap(lambda c, e: jax.scipy.linalg.cho_solve((c, True), e))(chol, eye)
    z = jnp.einsum("nkj,kij->nki", b, z_cov)  # (N, K, q) M⁻¹ Lᵀ ỹ
    resid = y_w - jnp.einsum("nkj,kdj->nkd", z, whitened)
    maha = jnp.sum(resid * resid, axis=-1) + jnp.sum(z * z, axis=-1)
    log_det = jnp.sum(jnp.log(params.noise), axis=-1) + 2 * jnp.sum(
        jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1
    )
    log_comp = -0.5 * (d * math.log(2 * math.pi) + log_det + maha)
    return _Posterior(log_comp, y, z, z_cov)


def _stats(r: jax.Array, post: _Posterior) -> FactorAnalyzersStats:
    """Statistics of rows with weighted responsibilities ``r`` (N, K)."""
    nk = jnp.sum(r, axis=0)
    ry = r[..., None] * post.y
    rz = r[..., None] * post.z
    return FactorAnalyzersStats(
        nk=nk,
        sum_y=jnp.sum(ry, axis=0),
        sum_yy=jnp.sum(ry * post.y, axis=0),
        sum_z=jnp.sum(rz, axis=0),
        sum_yz=jnp.einsum("nkd,nkj->kdj", ry, post.z),
        sum_zz=nk[:, None, None] * post.z_cov + jnp.einsum("nki,nkj->kij", rz, post.z),
    )


def _psd_rank(gram: jax.Array, threshold: float) -> jax.Array:
    """(...) the number of pivots above ``threshold`` of a semi-definite
    Cholesky factorisation of the positive semi-definite ``gram`` (..., q, q)
    (its numerical rank), in plain array operations (no LAPACK call that could
    run beside another one; q is small and static)."""
    rank = jnp.zeros(gram.shape[:-2], jnp.int32)
    for j in range(gram.shape[-1]):
        pivot = gram[..., j, j]
        ok = pivot > threshold
        col = gram[..., :, j] * jnp.where(ok, jax.lax.rsqrt(jnp.where(ok, pivot, 1)), 0)[..., None]
        gram = gram - col[..., :, None] * col[..., None, :]
        rank = rank + ok
    return rank


def _top_axes(y: jax.Array, q: int) -> tuple[jax.Array, jax.Array]:
    """``(V (D, q), λ (q,))``: the top ``q`` right singular vectors of ``y``
    (N, D) and the squared singular values, by a randomised subspace iteration
    (Halko, Martinsson & Tropp 2011) with a fixed start; cost O(N D q) per
    iteration, no D × D matrix."""
    d = y.shape[-1]
    p = min(q + _OVERSAMPLE, d)
    omega = jax.random.normal(jax.random.key(0), (d, p), y.dtype)
    basis, _ = jnp.linalg.qr(omega)

    def step(_, basis):
        return jnp.linalg.qr(y.T @ (y @ basis))[0]

    basis = jax.lax.fori_loop(0, _SUBSPACE_ITERATIONS, step, basis)
    t = y @ basis  # (N, p)
    values, vectors = jnp.linalg.eigh(t.T @ t)  # ascending
    values, vectors = values[::-1][:q], vectors[:, ::-1][:, :q]
    return basis @ vectors, jnp.maximum(values, 0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FactorAnalyzers(MixtureFamily):
    """The mixture of factor analysers family (see the module docstring).

    Attributes:
        n_factors: static, the number of factors ``q ≥ 1`` per component
            (``q < D``).
        noise_type: static, ``"diag"`` (``Ψ_k`` diagonal per component, the
            default), ``"tied"`` (one diagonal ``Ψ`` for all components) or
            ``"isotropic"`` (``ψ_k I``: mixtures of probabilistic PCA).
        reg_covar: () added to the noise variances in every M-step (traced).
        dirichlet: ``α ≥ 1`` of a symmetric Dirichlet prior on the weights
            (traced; 1 is flat).
        algorithm: static, ``"em"`` (the default: Ghahramani & Hinton's EM,
            one pass per iteration) or ``"aecm"`` (McLachlan & Peel's two
            cycles, two passes per iteration; the same fixed points).

    Example:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> from jaxem import mixtures
        >>> family = mixtures.FactorAnalyzers(n_factors=1)
        >>> truth = family.make_params(
        ...     jnp.array([0.5, 0.5]), jnp.array([[-6.0, 0, 0, 0], [6.0, 0, 0, 0]]),
        ...     jnp.ones((2, 4, 1)), jnp.full((2, 4), 0.1))
        >>> x, _ = family.sample(jax.random.key(0), truth, 400)
        >>> result = jaxem.fit(family, jax.random.key(1), x, 2, init="kmeans")
        >>> sorted(result.params.means[:, 0].round().tolist())
        [-6.0, 6.0]
        >>> family.n_parameters(result.params).item()  # 1 + 8 + 2·4 + 8
        25
    """

    n_factors: int = dataclasses.field(default=1, metadata=dict(static=True))
    noise_type: str = dataclasses.field(default="diag", metadata=dict(static=True))
    reg_covar: ArrayLike = 1e-6
    dirichlet: ArrayLike = 1.0
    algorithm: str = dataclasses.field(default="em", metadata=dict(static=True))

    def __post_init__(self):
        check_static_int("n_factors", self.n_factors, minimum=1)
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}; got {self.noise_type!r}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {self.algorithm!r}")
        for name in ("reg_covar", "dirichlet"):
            value = concrete(getattr(self, name))
            if value is not None and (value.ndim != 0 or not np.isfinite(value)):
                raise ValueError(f"{name} must be a finite number; got {value!r}")
        reg = concrete(self.reg_covar)
        if reg is not None and reg < 0:
            raise ValueError(f"reg_covar must be >= 0; got {float(reg)}")

    def make_params(
        self, weights: ArrayLike, means: ArrayLike, loadings: ArrayLike, noise: ArrayLike
    ) -> FactorAnalyzersParams:
        """Validated parameters: ``weights`` (K,), ``means`` (K, D), ``loadings``
        (K, D, q) with ``q = n_factors``, ``noise`` (K, D) positive variances
        (or (D,) for ``"tied"``, (K,) for ``"isotropic"``, broadcast)."""
        means = jnp.asarray(means)
        if not jnp.issubdtype(means.dtype, jnp.floating):
            means = means.astype(jnp.result_type(float))
        dtype = means.dtype
        if means.ndim != 2:
            raise ValueError(f"means must be (K, D); got shape {means.shape}")
        k, d = means.shape
        weights = jnp.asarray(weights, dtype)
        loadings = jnp.asarray(loadings, dtype)
        noise = jnp.asarray(noise, dtype)
        if weights.shape != (k,):
            raise ValueError(f"weights must be ({k},); got shape {weights.shape}")
        if loadings.shape != (k, d, self.n_factors):
            raise ValueError(
                f"loadings must be ({k}, {d}, {self.n_factors}) (K, D, n_factors); "
                f"got shape {loadings.shape}"
            )
        if self.noise_type == "isotropic" and noise.shape == (k,):
            noise = noise[:, None]
        try:
            noise = jnp.broadcast_to(noise, (k, d))
        except ValueError:
            msg = f"noise must broadcast to ({k}, {d}); got shape {noise.shape}"
            raise ValueError(msg) from None
        v = concrete(noise)
        if v is not None and not np.all(v > 0):
            raise ValueError("noise variances must be > 0")
        w = concrete(weights)
        if w is not None and (np.any(w < 0) or not np.isclose(w.sum(), 1)):
            raise ValueError(f"weights must be non-negative and sum to 1; got {w}")
        return FactorAnalyzersParams(weights, means, loadings, noise)

    # ------------------------------------------------------------------ data

    def check_data(self, x, *, name="x"):
        x = as_data(x, name=name)
        if x.shape[1] <= self.n_factors:
            raise ValueError(
                f"n_factors={self.n_factors} must be < the number of features of {name} "
                f"({x.shape[1]})"
            )
        return x

    def summarize(self, x, w, ref):
        return gaussian_summary(x, w, ref)

    def context(self, summary, ref):
        return gaussian_context(summary, ref)

    def chunk_rows(self, n_rows, params, rows, batch, mode):
        k = self.n_components_of(params)
        return chunk_rows(n_rows, batch * k * (rows.shape[-1] + self.n_factors))

    # -------------------------------------------------------------------- EM

    def log_components(self, params, x):
        return _factor_posterior(params, x).log_components

    def pass_(self, params, rows, w, context):
        post = _factor_posterior(params, rows)
        joint = log_joint(post.log_components, params.weights)
        log_norm = jax.nn.logsumexp(joint, axis=1)
        resp = jnp.exp(joint - log_norm[:, None]) * w[:, None]
        return _stats(resp, post), jnp.sum(w * log_norm)

    def maximize(self, stats, params, context):
        if self.algorithm == "aecm":  # cycle 1: (π, μ); (Λ, Ψ) in the cycle
            delta = stats.sum_y / jnp.where(stats.nk > 0, stats.nk, 1)[:, None]
            weights = mixture_weights(stats.nk, self.dirichlet)
            return dataclasses.replace(params, weights=weights, means=params.means + delta)
        return self._em_step(stats, params, context)

    # ---------------------------------------------- AECM's second cycle

    @property
    def has_cycle(self) -> bool:  # type: ignore[override]
        return self.algorithm == "aecm"

    def one_pass(self) -> FactorAnalyzers:
        return dataclasses.replace(self, algorithm="em")

    def cycle_start(self, params, context):
        k, d = params.means.shape
        q, dtype = self.n_factors, params.means.dtype
        zeros = FactorAnalyzersStats(
            jnp.zeros(k, dtype), jnp.zeros((k, d), dtype), jnp.zeros((k, d), dtype),
            jnp.zeros((k, q), dtype), jnp.zeros((k, d, q), dtype), jnp.zeros((k, q, q), dtype),
        )  # fmt: skip
        return _Cycle(jnp.zeros((), jnp.int32), zeros)

    def cycle_view(self, state):
        return self  # the E-step at (π', μ', Λ, Ψ): the ordinary pass

    def cycle_update(self, state, stats, params):
        return state._replace(n=state.n + 1, stats=stats)

    def cycle_running(self, state):
        return state.n < 1

    def cycle_finish(self, state, params, context):
        """Cycle 2's CM-step: with ``y = x − μ'`` and the factors' posterior
        at ``(π', μ', Λ, Ψ)``, ``Λ = (Σ τ y ẑᵀ)(Σ τ E[z zᵀ])⁻¹`` and ``ψ_d =
        (Σ τ y_d² − Σ_j Λ_dj (Σ τ y ẑᵀ)_dj) / n_k`` (the mean held at ``μ'``)."""
        stats = state.stats
        nk, q = stats.nk, self.n_factors
        dtype = stats.sum_yz.dtype
        eps = 10 * jnp.finfo(dtype).eps
        active = nk > 0
        scale = (jnp.where(active, nk, 1) + eps)[:, None, None]
        eye = jnp.eye(q, dtype=dtype)
        a = jnp.where(active[:, None, None], stats.sum_zz / scale + eps * eye, eye)
        b = stats.sum_yz / scale
        chol = jnp.linalg.cholesky(a)
        loadings = jax.vmap(lambda c, v: jax.scipy.linalg.cho_solve((c, True), v.T).T)(chol, b)
        loadings = jnp.where(active[:, None, None], loadings, 0)
        raw = stats.sum_yy / scale[..., 0] - jnp.sum(loadings * b, axis=-1)
        noise = self._constrain_noise(jnp.maximum(raw, 0), nk, active, context)
        return dataclasses.replace(params, loadings=loadings, noise=noise)

    def _em_step(self, stats, params, context):
        """Ghahramani & Hinton's M-step of every parameter (module docstring)."""
        nk = stats.nk
        q = stats.sum_yz.shape[-1]
        dtype = stats.sum_yz.dtype
        eps = 10 * jnp.finfo(dtype).eps
        active = nk > 0
        nk_safe = jnp.where(active, nk, 1)
        # Σ r E[z̃ z̃ᵀ] and Σ r y z̃ᵀ with z̃ = (z, 1); identity / 0 when empty
        top = jnp.concatenate([stats.sum_zz, stats.sum_z[..., None]], axis=-1)
        bottom = jnp.concatenate([stats.sum_z, nk[:, None]], axis=-1)[:, None, :]
        a = jnp.concatenate([top, bottom], axis=-2)
        eye = jnp.eye(q + 1, dtype=dtype)
        scale = (nk_safe + eps)[:, None, None]
        a = jnp.where(active[:, None, None], a / scale + eps * eye, eye)
        b = jnp.concatenate([stats.sum_yz, stats.sum_y[..., None]], axis=-1) / scale
        chol = jnp.linalg.cholesky(a)
        ext = jax.vmap(lambda c, v: jax.scipy.linalg.cho_solve((c, True), v.T).T)(chol, b)
        ext = jnp.where(active[:, None, None], ext, 0)  # (K, D, q + 1): [Λ, μ − m]
        loadings, delta = ext[..., :q], ext[..., q]
        means = params.means + delta
        raw = stats.sum_yy / scale[..., 0] - jnp.sum(ext * b, axis=-1)  # (K, D)
        noise = self._constrain_noise(jnp.maximum(raw, 0), nk, active, context)
        weights = mixture_weights(nk, self.dirichlet)
        return FactorAnalyzersParams(weights, means, loadings, noise)

    def _constrain_noise(self, raw, nk, active, context):
        """Noise variances from the per-component, per-feature residual
        variances ``raw`` (K, D): the noise type's constraint, ``+ reg_covar``,
        a floor of ``eps·var`` (reg_covar = 0) and the data's variances for an
        inactive component."""
        dtype = raw.dtype
        variances = context.variances.astype(dtype)
        if self.noise_type == "isotropic":
            raw = jnp.broadcast_to(jnp.mean(raw, axis=-1, keepdims=True), raw.shape)
        elif self.noise_type == "tied":
            share = jnp.where(active, nk, 0) / jnp.sum(jnp.where(active, nk, 0))
            raw = jnp.broadcast_to(share @ raw, raw.shape)
        floor = jnp.finfo(dtype).eps * variances
        noise = jnp.maximum(raw, floor) + jnp.asarray(self.reg_covar, dtype)
        return jnp.where(active[:, None], noise, variances)

    @property
    def has_prior(self) -> bool:  # type: ignore[override]
        return True  # the Dirichlet prior weighs against absolute counts

    def log_prior(self, params):
        return DirichletWeights(self.dirichlet).log_kernel(params.weights)

    def valid(self, params):
        return super().valid(params) & jnp.all(params.noise > 0)

    def unconstrain(self, params):
        # the free noise variances only: the shared diagonal (tied), one per
        # component (isotropic); the (K, D) array broadcasts them. Taken whole,
        # the standard errors and the EM rate were those of the diagonal model.
        noise = params.noise
        if self.noise_type == "tied":
            noise = noise[..., :1, :]
        elif self.noise_type == "isotropic":
            noise = noise[..., :1]
        return FactorAnalyzersParams(
            log_weights(params.weights), params.means, params.loadings, jnp.log(noise)
        )

    def gauges(self, params):
        """The rotations of each component's loadings, ``Λ_k → Λ_k R``: with
        ``q ≥ 2`` factors, ``Λ_k A`` for each of the ``q (q − 1)/2``
        antisymmetric ``A = e_a e_bᵀ − e_b e_aᵀ`` (the tangents of the
        rotation group at the identity), one component at a time; None with
        one factor (``Λ_k → −Λ_k`` is not continuous). An inactive
        component's loadings are placeholders: no direction there."""
        k, _, q = params.loadings.shape[-3:]
        if q < 2:
            return None
        u = self.unconstrain(params)
        loadings = jnp.where(params.weights[:, None, None] > 0, params.loadings, 0)
        directions = []
        for c in range(k):
            for a in range(q):
                for b in range(a + 1, q):
                    column_a, column_b = loadings[c, :, a], loadings[c, :, b]
                    turned = jnp.zeros_like(params.loadings)
                    turned = turned.at[c, :, b].set(column_a).at[c, :, a].set(-column_b)
                    directions.append(
                        dataclasses.replace(jax.tree.map(jnp.zeros_like, u), loadings=turned)
                    )
        return jax.tree.map(lambda *a: jnp.stack(a), *directions)

    def constrain(self, u, like):
        noise = jnp.broadcast_to(jnp.exp(u.noise), like.noise.shape)
        return FactorAnalyzersParams(
            weights_from_logs(u.weights, like.weights), u.means, u.loadings, noise
        )

    def reframe(self, stats, old, new):
        """Statistics about ``old.means`` re-expressed about ``new.means``
        (``y' = y + (m − m')``)."""
        shift = old.means - new.means  # (K, D)
        nk = stats.nk[:, None]
        return stats._replace(
            sum_y=stats.sum_y + nk * shift,
            sum_yy=stats.sum_yy + 2 * shift * stats.sum_y + nk * shift * shift,
            sum_yz=stats.sum_yz + shift[..., None] * stats.sum_z[:, None, :],
        )

    # ----------------------------------------------------------------- model

    def n_parameters(self, params):
        """``K − 1 + K·D + K (D q − q (q − 1)/2)`` plus the noise variances
        (``K·D`` diag, ``D`` tied, ``K`` isotropic), over the active components."""
        k = n_active_components(params.weights)
        d, q = params.loadings.shape[-2:]
        noise = {"diag": k * d, "tied": d, "isotropic": k}[self.noise_type]
        return k - 1 + k * d + k * (d * q - q * (q - 1) // 2) + noise

    def bic(self, params: FactorAnalyzersParams, x: ArrayLike) -> jax.Array:
        """``−2 log L + p log N`` on ``x`` (N, D) (lower is better)."""
        lp = self.log_prob(params, jnp.asarray(x))
        n = jnp.asarray(lp.shape[0], lp.dtype)
        return -2 * jnp.sum(lp) + self.n_parameters(params) * jnp.log(n)

    def aic(self, params: FactorAnalyzersParams, x: ArrayLike) -> jax.Array:
        """``−2 log L + 2p`` on ``x`` (N, D) (lower is better)."""
        lp = self.log_prob(params, jnp.asarray(x))
        return -2 * jnp.sum(lp) + 2 * self.n_parameters(params)

    def degenerate(self, params, context):
        """Whether an active component's covariance is singular but for
        ``reg_covar``: the features whose noise ``ψ_kd − reg_covar`` is below
        :data:`DEGENERATE_THRESHOLD` of the data's variance are more than the
        rank of the loadings on them (their variance then has a direction of
        zero). Features with collapsed noise that the factors span (a
        Heywood case) keep the covariance non-singular and are not flagged,
        nor are features constant in the data (their noise can only be
        ``reg_covar``: the data's, as in :func:`jaxem._src.gmm.family.degenerate`).
        O(K D q²)."""
        variances = context.variances.astype(params.noise.dtype)
        reg = jnp.asarray(self.reg_covar, params.noise.dtype)
        collapsed = (params.noise - reg) < DEGENERATE_THRESHOLD * variances  # (K, D)
        collapsed = collapsed & ~constant_features(context)
        scaled = params.loadings * jax.lax.rsqrt(variances)[:, None] * collapsed[..., None]
        gram = jnp.einsum("kdi,kdj->kij", scaled, scaled)
        rank = _psd_rank(gram, DEGENERATE_THRESHOLD)
        singular = jnp.sum(collapsed, axis=-1) > rank
        return jnp.any((params.weights > 0) & singular)

    def sample(
        self, key: jax.Array, params: FactorAnalyzersParams, n_samples: int
    ) -> tuple[jax.Array, jax.Array]:
        """Draw ``n_samples`` rows ``x = μ_k + Λ_k z + Ψ_k^½ ε``.

        Returns:
            ``(x, labels)``: (n_samples, D) rows and (n_samples,) the component
            each was drawn from (inactive components are never drawn).
        """
        n_samples = check_static_int("n_samples", n_samples, minimum=1)
        key_labels, key_z, key_e = jax.random.split(key, 3)
        labels = sample_labels(key_labels, params.weights, n_samples)
        d, q = params.loadings.shape[-2:]
        z = jax.random.normal(key_z, (n_samples, q), params.dtype)
        e = jax.random.normal(key_e, (n_samples, d), params.dtype)
        factors = jnp.einsum("ndq,nq->nd", params.loadings[labels], z)
        return params.means[labels] + factors + jnp.sqrt(params.noise[labels]) * e, labels

    # -------------------------------------------------------- initialisation

    def init_view(self):
        """The Gaussian family's: the engine's responsibilities on the raw rows
        (the PCA start per component follows in :meth:`init_stats`), computed in
        a program of their own shared with the Gaussian fits of the data."""
        return shared_init_view() if type(self) is FactorAnalyzers else None

    def init_stats(self, resp, x, w, context):
        """A probabilistic-PCA start per component from the responsibilities
        (module docstring), and the statistics of an E-step there with those
        responsibilities: the loop's first M-step is an EM step from it."""
        r = resp if w is None else resp * w[:, None]
        d, q = x.shape[1], self.n_factors
        dtype = x.dtype
        nk = jnp.sum(r, axis=0)
        active = nk > 0
        nk_safe = jnp.where(active, nk, 1)
        center = context.center.astype(dtype)
        xc = x - center
        means_c = (r.T @ xc) / nk_safe[:, None]

        def pca(r_k, mean_k, n_k):
            y = jnp.sqrt(r_k)[:, None] * (xc - mean_k)
            axes, values = _top_axes(y, q)
            values = values / n_k
            var = jnp.sum(y * y, axis=0) / n_k  # (D,) the component's variances
            sigma2 = jnp.maximum(jnp.sum(var) - jnp.sum(values), 0) / (d - q)
            loadings = axes * jnp.sqrt(jnp.maximum(values - sigma2, 0))
            left = var - jnp.sum(loadings * loadings, axis=1)
            return loadings, jnp.maximum(left, 1e-3 * var)

        loadings, left = jax.vmap(pca, in_axes=(1, 0, 0))(r, means_c, nk_safe)
        noise = self._constrain_noise(left, nk, active, context)
        loadings = jnp.where(active[:, None, None], loadings, 0)
        means = jnp.where(active[:, None], means_c + center, center)
        weights = nk / jnp.sum(nk)
        frame = FactorAnalyzersParams(weights, means, loadings, noise)
        return _stats(r, _factor_posterior(frame, x)), frame
