"""Mixtures of multivariate Student-t distributions, as an engine family.

``p(x) = Σ_k π_k t_ν_k(x | μ_k, Σ_k)`` with

    log t_ν(x | μ, Σ) = log Γ((ν + D)/2) − log Γ(ν/2) − (D/2) log(νπ) − ½ log|Σ|
                        − ((ν + D)/2) log(1 + δ/ν),    δ = (x − μ)ᵀ Σ⁻¹ (x − μ),

the scale matrices ``Σ_k`` full, tied, diagonal or spherical (the Gaussian
family's covariance modules, :mod:`jaxem._src.gmm.covariances`, reused as they
are), and the degrees of freedom ``ν_k`` per component either fixed by the user
or estimated.

EM (McLachlan & Peel 1998; Peel & McLachlan 2000, "Robust mixture modelling
using the t distribution", Statistics and Computing 10) treats each row as
Gaussian with covariance ``Σ_k / U`` given a latent ``U ~ Gamma(ν_k/2, ν_k/2)``.
Given the component, the E-step's weights are

    u_nk = E[U | x_n, k] = (ν_k + D) / (ν_k + δ_nk),
    E[log U | x_n, k] = log u_nk + ψ((ν_k + D)/2) − log((ν_k + D)/2),

and the statistics of a chunk, additive over rows (``r_nk`` the
responsibilities, ``w_n`` the sample weights), are

    n_k = Σ w r,   n^u_k = Σ w r u,   Σ w r u (x − m_k),   Σ w r u (x − m_k)(x − m_k)ᵀ,
    s_k = Σ w r (E[log U] − E[U] + 1),

the sums about the E-step's means ``m_k`` (as the Gaussian family's, so that
they keep their digits far from the origin, :class:`StudentTStats`). The
M-step is closed form but for ``ν``:

    π_k = n_k / Σ n,   μ_k = Σ w r u x / n^u_k,
    Σ_k = Σ w r u (x − μ_k)(x − μ_k)ᵀ / n_k  (+ reg_covar; tied: summed over k, / Σ n),
    ν_k solves  log(ν/2) − ψ(ν/2) = −s_k / n_k.

The ``ν`` equation is Peel & McLachlan's (their eq. 30:
``−ψ(ν/2) + log(ν/2) + 1 + Σ r (log u − u) / n_k + ψ((ν_old + D)/2) −
log((ν_old + D)/2) = 0``) with the E-step's terms gathered into ``s_k``, so that
the statistic adds over chunks. Its left side falls from +∞ to 0 as ν grows and
its right side is ≥ 0 by Jensen's inequality (``log U ≤ U − 1``), so it has one
root; :func:`solve_dof` finds it by a fixed number of safeguarded Newton steps
on ``log ν`` inside the compiled M-step, clipped to ``[DOF_MIN, DOF_MAX]`` (the
constrained maximum, since the ν part of the expected complete-data
log-likelihood is unimodal).

Which algorithm this is: the expected complete-data log-likelihood separates
into a part in ``π``, a part in ``(μ, Σ)`` (given the weights ``u``) and a part
in ``ν`` (given ``E[log U] − E[U]``), so maximising each part is a full M-step:
this is EM (what Peel & McLachlan call the ECM algorithm when the ``(μ, Σ)`` and
``ν`` updates are written as two conditional maximisations; here they do not
interact), and the log-likelihood never decreases. ``dof_method="em"`` stops
there. Its ν converges slowly where the data say little about the tails (Old
Faithful, K = 2, full: 19 406 iterations to a gain below 1e-12, one ν creeping
to the bound 1000).

``dof_method="ecme"`` (the default) adds ECME's cycle (Liu & Rubin 1995; the
multicycle form of McLachlan & Peel 2000, section 7.8), as the engine's
conditional cycle (:attr:`~jaxem.Family.has_cycle`): after the M-step, with the
responsibilities ``τ`` of an E-step at the new parameters held fixed, each
``ν_k`` maximises ``G_k(ν) = Σ w τ log t_ν(x | μ_k, Σ_k)``, the observed-data
log-likelihood with only the component labels missing, where Liu & Rubin's
equation holds,

    g(ν/2) − g((ν + D)/2) + Σ w τ (log u(ν) − u(ν) + 1) / n_k = 0,
    g(x) = log x − ψ(x),   u(ν) = (ν + D)/(ν + δ)

(the unknown ν now inside ``u``: a function of every row's distance, so no
fixed statistic gives it). Each pass of the search computes, at the M-step's
parameters, the sums of ``τ (log u − u + 1)``, ``τ v²`` and ``τ log(1 + δ/ν)``
(``v = u − 1``) at three trial ν per component (the current one and the two
bounds), additive over rows like any pass, so chunks, devices and streams run
it; a safeguarded Newton step on ``log ν`` follows (:meth:`StudentT.cycle_update`:
the bracket kept from the signs, the best ν evaluated remembered), 3–6 passes
from the EM update's ν. Each step maximises its conditional objective after an
E-step at the current parameters, so the log-likelihood never decreases (AECM,
Meng & van Dyk 1997); the fixed points are EM's. Measured against an
independent NumPy ECME (``experiments/t_mixture_reference.py``): the same
iterates to 6e-13, and to a gain below 1e-12 ECME takes 47 iterations on Old
Faithful where EM takes 19 406 (15 ms against 945 ms), 75 against 204 on the
synthetic data (about equal time: ECME's iterations cost 3–5 passes). Online EM
has no full passes and keeps the EM update of ν.

As ``ν → ∞`` the weights ``u → 1`` and the model is the Gaussian mixture: with
a fixed ``ν`` of 1e8 the fit equals the Gaussian family's to about
``E[δ²]/ν`` (tests/test_mixtures_student_t.py).

Initialisation is the Gaussian family's (k-means, random rows, agglomeration on
the raw data) with ``u = 1`` and ``E[log U] − E[U] + 1`` at its value under the
prior ``Gamma(ν₀/2, ν₀/2)``, ``ψ(ν₀/2) − log(ν₀/2)``, so the first M-step is the
Gaussian one and gives ``ν = ν₀`` (the fixed ``ν``, or ``dof_init``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln, polygamma
from jax.typing import ArrayLike

from jaxem._src.family import (
    MeansShape,
    MixtureFamily,
    below_resolution,
    log_joint,
    log_weights,
    mixture_center,
    no_coordinates,
    weights_from_logs,
)
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.family import (
    constant_features,
    degenerate,
    gaussian_context,
    gaussian_summary,
    portfolio,
    shared_init_view,
)
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.params import make_params as make_gaussian_params
from jaxem._src.gmm.steps import SuffStats, reshift, shifted_sum, suff_stats
from jaxem._src.gmm.unconstrained import (
    UnconstrainedParams,
    from_unconstrained,
    to_unconstrained,
)
from jaxem._src.mixtures.common import (
    DirichletWeights,
    mixture_weights,
    n_active_components,
    sample_labels,
)
from jaxem._src.validation import check_hyperparameters, check_static_int, concrete

__all__ = [
    "DOF_MAX",
    "DOF_MIN",
    "StudentT",
    "StudentTParams",
    "StudentTStats",
    "log_t_constant",
    "solve_dof",
]

#: Bounds of an estimated ν: the M-step's root is clipped into them. Above
#: 1000 a t component is within ~D²/ν of a Gaussian; below 0.1 its tails are
#: too heavy for any moment to exist many times over.
DOF_MIN = 0.1
DOF_MAX = 1000.0

#: How an estimated ν is updated (:class:`StudentT`'s ``dof_method``).
DOF_METHODS = ("ecme", "em")

#: Most passes of one ECME ν search (:meth:`StudentT.cycle_update`); from the
#: EM update's ν the safeguarded Newton search needs 3–6.
ECME_MAX_PASSES = 24

#: Safeguarded Newton steps of :func:`solve_dof` (from a start within a factor
#: ~2 of the root, 6 reach float64 rounding; the rest are margin).
DOF_NEWTON_STEPS = 12

# Above this argument, log x − ψ(x) and its derivative by their asymptotic series
# (the direct difference loses digits to cancellation there; the first term left
# out is < 1e-16 relative).
_ASYMPTOTIC = 50.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StudentTParams(MeansShape):
    """Parameters of a K-component multivariate-t mixture in D dimensions.

    Attributes:
        weights: (K,) mixing weights (0 marks an inactive component).
        means: (K, D) locations ``μ_k``.
        covariances: the scale matrices ``Σ_k`` in the Gaussian family's shape
            for ``covariance_type`` (full (K, D, D), tied (D, D), diag (K, D),
            spherical (K,)); a component's covariance is ``ν/(ν − 2) Σ_k``
            when ``ν > 2``.
        precisions_cholesky: their precision Cholesky factors (as
            :class:`~jaxem.gmm.GMMParams`).
        dof: (K,) degrees of freedom ``ν_k``.
        covariance_type: static.
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array
    dof: jax.Array
    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))


class StudentTStats(NamedTuple):
    """Additive statistics of a pass, about the E-step's means ``m_k``.

    Attributes:
        nk: (K,) ``Σ w r``.
        sum_u: (K,) ``Σ w r u``.
        sum_x: (K, D) ``Σ w r u (x − m_k)``.
        sum_xx: ``Σ w r u (x − m_k)(x − m_k)ᵀ`` in the covariance type's shape
            (full (K, D, D), tied (D, D) summed over k, diag (K, D), spherical (K,)).
        sum_dof: (K,) ``Σ w r (E[log U] − E[U] + 1)`` (≤ 0), the ν equation's.
    """

    nk: jax.Array
    sum_u: jax.Array
    sum_x: jax.Array
    sum_xx: jax.Array
    sum_dof: jax.Array


# ----------------------------------------------------------------- numerics


def _log_minus_digamma(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log x − ψ(x), d/dx of it)``, accurate for large ``x`` too."""
    big = x > _ASYMPTOTIC
    xs = jnp.where(big, x, _ASYMPTOTIC)  # each branch on arguments it handles
    xb = jnp.where(big, _ASYMPTOTIC, x)
    inv = 1 / xs
    inv2 = inv * inv
    series = inv * (0.5 + inv * (1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252))))
    series_d = -inv2 * (0.5 + inv * (1 / 6 - inv2 * (1 / 30 - inv2 * (1 / 42))))
    direct = jnp.log(xb) - digamma(xb)
    direct_d = 1 / xb - polygamma(1, xb)
    return jnp.where(big, series, direct), jnp.where(big, series_d, direct_d)


def solve_dof(target: ArrayLike) -> jax.Array:
    """The ``ν`` with ``log(ν/2) − ψ(ν/2) = target`` (elementwise), in
    ``[DOF_MIN, DOF_MAX]``.

    The left side falls monotonically from +∞ to 0, nearly as ``1/ν``, so
    ``log`` of it is nearly linear in ``log ν``: Newton on ``log ν`` from
    ``ν = 1/target`` (clipped), each step kept inside the bracket that the signs
    so far allow (a bisection otherwise), :data:`DOF_NEWTON_STEPS` steps.
    Outside the bracket (``target`` ≤ its value at ``DOF_MAX``, Gaussian-like
    weights; or ≥ its value at ``DOF_MIN``) the bound. Traceable; no loop whose
    trip count depends on the values (the same on every device).
    """
    target = jnp.asarray(target)
    dtype = target.dtype if jnp.issubdtype(target.dtype, jnp.floating) else jnp.float32
    target = jnp.maximum(target.astype(dtype), jnp.finfo(dtype).tiny)
    lo0 = jnp.full(target.shape, math.log(DOF_MIN), dtype)
    hi0 = jnp.full(target.shape, math.log(DOF_MAX), dtype)
    log_target = jnp.log(target)

    def phi(t):
        value, slope = _log_minus_digamma(0.5 * jnp.exp(t))
        # d/dt log g(e^t / 2) = (e^t / 2) g'(x) / g(x)
        return jnp.log(value) - log_target, 0.5 * jnp.exp(t) * slope / value

    def step(_, carry):
        t, lo, hi = carry
        f, df = phi(t)
        # φ decreases in t: f > 0 means the root is above t
        lo = jnp.where(f > 0, t, lo)
        hi = jnp.where(f > 0, hi, t)
        newton = t - f / jnp.where(df < 0, df, -1)
        inside = (newton >= lo) & (newton <= hi)  # closed: a root hit exactly stays
        return jnp.where(inside, newton, 0.5 * (lo + hi)), lo, hi

    start = jnp.clip(-log_target, lo0, hi0)
    t, _, _ = jax.lax.fori_loop(0, DOF_NEWTON_STEPS, step, (start, lo0, hi0))
    f_lo, _ = phi(lo0)
    f_hi, _ = phi(hi0)
    nu = jnp.where(f_lo <= 0, DOF_MIN, jnp.exp(t))
    return jnp.where(f_hi >= 0, DOF_MAX, nu).astype(dtype)  # the bounds exactly


def _log_gamma_ratio(a: jax.Array, b: float) -> jax.Array:
    """``log Γ(a + b) − log Γ(a) − b log a``, accurate for large ``a`` too.

    Below :data:`_ASYMPTOTIC` the difference of ``gammaln``s (absolute error
    ~1e-14); above it Stirling's series of both, the leading terms through
    ``log1p`` (the difference of two ``gammaln``s near 1e9 at ``ν = 1e8`` would
    lose 1e-7; ``jax.scipy.special.betaln`` errs by ~1e-6 for arguments above 8
    in jax 0.10, so it is not used).
    """
    big = a > _ASYMPTOTIC
    ab = jnp.where(big, a, _ASYMPTOTIC)
    al = jnp.where(big, _ASYMPTOTIC, a)

    def series(z):  # Stirling's series of log Γ(z) less its leading terms
        inv = 1 / z
        inv2 = inv * inv
        return inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 * (1 / 1680))))

    stirling = (ab + b - 0.5) * jnp.log1p(b / ab) - b + series(ab + b) - series(ab)
    direct = gammaln(al + b) - gammaln(al) - b * jnp.log(al)
    return jnp.where(big, stirling, direct)


def _weight_terms(
    maha: jax.Array, dof: jax.Array, d: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(u − 1, u, log u)`` of the E-step's weights ``u = (ν + D) / (ν + δ)``
    (``δ`` the Mahalanobis distances ``maha``): ``u − 1`` exact near ``u = 1``,
    and ``u`` and ``log u`` from it there; where ``u`` is small, ``u`` as the
    quotient and ``log u = log(ν + D) − log(ν + δ)``. ``1 + (u − 1)`` loses
    ``log10(δ / (ν + D))`` digits: a far outlier's weight (which keeps its
    bounded share of Σ however far it lies) was 0 or a multiple of eps, Σ 19%
    too narrow in float32 with one row 1e4 away, and ``log1p(u − 1)`` was
    ``−inf`` once ``δ`` exceeded ``(ν + D)`` by a factor of ``1/eps`` (a start
    of ``reg_covar`` scales at data rows far apart: ν's update NaN)."""
    v = (d - maha) / (dof + maha)
    near = v > -0.5
    u = jnp.where(near, 1 + v, (dof + d) / (dof + maha))
    log_u = jnp.where(
        near,
        jnp.log1p(jnp.where(near, v, 0)),  # the inner where keeps derivatives finite
        jnp.log(dof + d) - jnp.log(dof + maha),
    )
    return v, u, log_u


def _fitted_variances(params) -> jax.Array:
    """(D,) the per-feature spread of the fitted mixture, ``Σ_k π_k (Σ_k,dd +
    (μ_kd − μ̄_d)²)`` (the variances of a Gaussian mixture with the scale
    matrices as covariances): a scale that outlying rows do not dominate."""
    module = cov_lib.get(params.covariance_type)
    k, d = params.means.shape
    cov = params.covariances
    if module.STORAGE in ("full", "tied"):
        diag = cov_lib.full.diagonal(cov)
    elif module.STORAGE == "spherical":
        diag = cov[..., None]
    else:
        diag = cov
    weights = params.weights / jnp.sum(params.weights)
    mean = weights @ params.means
    spread = jnp.broadcast_to(diag, (k, d)) + (params.means - mean) ** 2
    return weights @ spread


def log_t_constant(dof: jax.Array, n_features: int) -> jax.Array:
    """``log Γ((ν + D)/2) − log Γ(ν/2) − (D/2) log(νπ)``, accurate for large ν
    (:func:`_log_gamma_ratio`: at ν = 1e8 the terms are ~1e9 and their
    difference ~18)."""
    d = n_features
    return _log_gamma_ratio(0.5 * dof, 0.5 * d) - 0.5 * d * math.log(2 * math.pi)


def _dof_target(sum_dof: jax.Array, nk: jax.Array) -> jax.Array:
    """``−s_k / n_k ≥ 0``: the right side of the ν equation."""
    return jnp.maximum(-sum_dof / jnp.where(nk > 0, nk, 1), 0)


def _prior_dof_stat(dof: jax.Array) -> jax.Array:
    """``E[log U] − E[U] + 1`` under ``U ~ Gamma(ν/2, ν/2)``: ``ψ(ν/2) − log(ν/2)``."""
    return -_log_minus_digamma(0.5 * dof)[0]


class DofSearchStats(NamedTuple):
    """Additive statistics of an ECME pass at (3, K) trial ν (τ the
    responsibilities at the M-step's parameters, ``v = u − 1 = (D − δ)/(ν + δ)``).

    Attributes:
        nk: (K,) ``Σ w τ``.
        log_u: (3, K) ``Σ w τ (log u − u + 1)``.
        v2: (3, K) ``Σ w τ v²``.
        log_kernel: (3, K) ``Σ w τ log(1 + δ/ν)``.
    """

    nk: jax.Array
    log_u: jax.Array
    v2: jax.Array
    log_kernel: jax.Array


class DofSearch(NamedTuple):
    """State of the ECME ν search, per component, in ``t = log ν``."""

    t: jax.Array  # (K,) the next ν to evaluate
    lo: jax.Array  # (K,) the bracket of the root from the signs seen
    hi: jax.Array
    best_t: jax.Array  # (K,) the evaluated ν of highest G_k so far
    best_value: jax.Array  # (K,) its G_k / n_k (−∞ before any pass)
    step: jax.Array  # (K,) |the last step| (0 for an empty component)
    n: jax.Array  # () passes so far


def _trial_log_dof(t: jax.Array) -> jax.Array:
    """(3, K) the log ν a search pass evaluates: the current ``t`` and the bounds."""
    return jnp.stack([t, jnp.full_like(t, math.log(DOF_MIN)), jnp.full_like(t, math.log(DOF_MAX))])


def _search_tol(dtype) -> float:
    """A step in log ν below which Newton has converged (its next step is the square)."""
    return math.sqrt(float(jnp.finfo(dtype).eps))


def _dof_search_terms(stats: DofSearchStats, nu: jax.Array, d: int):
    """At (3, K) ``ν``: ``(F, dF/d log ν, G / n)`` with ``F = 2 (∂G/∂ν) / n``,

        F = g(ν/2) − g((ν + D)/2) + Σ w τ (log u − u + 1) / n,   g(x) = log x − ψ(x),

    (Liu & Rubin 1995's equation for ν; 0 at ECME's ν), its derivative
    ``ν [g'(ν/2)/2 − g'((ν+D)/2)/2 + Σ w τ v² / (n (ν + D))]`` and
    ``G/n = log Γ((ν+D)/2) − log Γ(ν/2) − (D/2) log ν − ((ν+D)/2) Σ w τ log(1 + δ/ν) / n``
    up to a constant."""
    n = jnp.where(stats.nk > 0, stats.nk, 1)
    g_half, dg_half = _log_minus_digamma(0.5 * nu)
    g_shift, dg_shift = _log_minus_digamma(0.5 * (nu + d))
    score = g_half - g_shift + stats.log_u / n
    slope = nu * (0.5 * (dg_half - dg_shift) + stats.v2 / (n * (nu + d)))
    value = _log_gamma_ratio(0.5 * nu, 0.5 * d) - 0.5 * d * math.log(2.0)
    value = value - 0.5 * (nu + d) * stats.log_kernel / n
    return score, slope, value


# ------------------------------------------------------------------- family


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StudentT(MixtureFamily):
    """The multivariate Student-t mixture family (see the module docstring for
    the algorithm: EM with ν per component by ECME by default, or by EM).

    Attributes:
        covariance_type: static, ``"full"``, ``"tied"``, ``"diag"`` or
            ``"spherical"`` scale matrices.
        dof: ``"estimate"`` (the default: ν per component, estimated; stored
            as ``None``) or a fixed ν > 0, a number or (K,) one per component
            (traced: ``vmap`` over it works).
        reg_covar: () added to the scale matrices' diagonal in every M-step (traced).
        dof_init: () or (K,) the ν after the first M-step when ν is estimated
            (traced).
        dirichlet: ``α ≥ 1`` of a symmetric Dirichlet prior on the weights
            (traced; 1 is flat).
        dof_method: static, how an estimated ν is updated: ``"ecme"`` (the
            default: each ν maximises the observed log-likelihood given the
            labels' responsibilities, a few passes per iteration) or ``"em"``
            (the expected complete-data equation, one pass per iteration).

    Example:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> from jaxem import mixtures
        >>> family = mixtures.StudentT("diag")
        >>> truth = family.make_params(jnp.array([0.5, 0.5]), jnp.array([[-5.0], [5.0]]),
        ...                            jnp.ones((2, 1)), dof=jnp.array([3.0, 3.0]))
        >>> x, _ = family.sample(jax.random.key(0), truth, 400)
        >>> result = jaxem.fit(family, jax.random.key(1), x, 2, init="kmeans")
        >>> sorted(result.params.means[:, 0].round().tolist())
        [-5.0, 5.0]
        >>> result.params.dof.shape  # ν per component, estimated
        (2,)
    """

    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))
    dof: ArrayLike | str | None = "estimate"
    reg_covar: ArrayLike = 1e-6
    dof_init: ArrayLike = 30.0
    dirichlet: ArrayLike = 1.0
    dof_method: str = dataclasses.field(default="ecme", metadata=dict(static=True))
    # the ECME pass's trial ν, (3, K) (set only on the view of a cycle)
    _trial_dof: jax.Array | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        canonical = cov_lib.check_covariance_type(self.covariance_type, cov_lib.COVARIANCE_TYPES)
        object.__setattr__(self, "covariance_type", canonical)
        check_hyperparameters(self, {"reg_covar": 0.0, "dirichlet": 1.0})
        if self.dof_method not in DOF_METHODS:
            raise ValueError(f"dof_method must be one of {DOF_METHODS}; got {self.dof_method!r}")
        if isinstance(self.dof, str):
            if self.dof != "estimate":
                raise ValueError(f"dof must be 'estimate' or a number > 0; got {self.dof!r}")
            object.__setattr__(self, "dof", None)
        for name in ("dof", "dof_init"):
            value = concrete(getattr(self, name)) if getattr(self, name) is not None else None
            if value is not None and (
                value.ndim > 1 or not np.all(value > 0) or not np.all(np.isfinite(value))
            ):
                raise ValueError(
                    f"{name} must be finite and > 0 (a number or one per component); "
                    f"got {value!r} (ν → ∞ is the Gaussian mixture: jaxem.gmm)"
                )

    @property
    def estimates_dof(self) -> bool:
        """Whether ν is estimated (static)."""
        return self.dof is None

    def _start_dof(self, k: int, dtype) -> jax.Array:
        value = self.dof_init if self.dof is None else self.dof
        if np.ndim(value) and np.shape(value) != (k,):
            name = "dof_init" if self.dof is None else "dof"
            raise ValueError(
                f"{name} must be a scalar or one value per component, ({k},); got shape "
                f"{np.shape(value)}"
            )
        return jnp.broadcast_to(jnp.asarray(value, dtype), (k,))

    def make_params(
        self,
        weights: ArrayLike,
        means: ArrayLike,
        covariances: ArrayLike,
        dof: ArrayLike | None = None,
    ) -> StudentTParams:
        """Validated parameters of this family's covariance type (as
        :func:`jaxem.gmm.make_params`); ``dof`` (K,) or a scalar, by default the
        family's fixed ν (or ``dof_init``)."""
        g = make_gaussian_params(weights, means, covariances, self.covariance_type)
        k = g.n_components
        if dof is None:
            dof = self._start_dof(k, g.dtype)
        dof = jnp.broadcast_to(jnp.asarray(dof, g.dtype), (k,))
        v = concrete(dof)
        if v is not None and not (np.all(v > 0) and np.all(np.isfinite(v))):
            raise ValueError(f"dof must be finite and > 0; got {v}")
        return StudentTParams(
            g.weights, g.means, g.covariances, g.precisions_cholesky, dof, self.covariance_type
        )

    # ------------------------------------------------------------------ data

    def summarize(self, x, w, ref):
        return gaussian_summary(x, w, ref)

    def context(self, summary, ref):
        return gaussian_context(summary, ref)

    # -------------------------------------------------------------------- EM

    def _distances(self, params: StudentTParams, x: jax.Array, dof: jax.Array | None = None):
        """(N, K) Mahalanobis distances ``δ`` and (N, K) ``log t_ν(x | μ_k, Σ_k)``
        (``ν``: ``dof``, by default the parameters')."""
        module = cov_lib.get(params.covariance_type)
        d = x.shape[-1]
        center = mixture_center(params)  # as the Gaussian densities
        maha = module.mahalanobis(x - center, params.means - center, params.precisions_cholesky)
        log_det = module.log_det_cholesky(params.precisions_cholesky, d)
        dof = params.dof if dof is None else dof
        log_kernel = -0.5 * (dof + d) * jnp.log1p(maha / dof)
        return maha, log_t_constant(dof, d) + log_det + log_kernel

    def log_components(self, params, x):
        return self._distances(params, x)[1]

    def _pass_dof(self, params: StudentTParams) -> jax.Array:
        """The ``ν`` of EM's pass: the parameters' where it is estimated, the
        family's where it is fixed (the M-step sets the parameters' to it), so
        that the pass reads the family's hyperparameter and the implicit
        derivative of a fit with respect to a fixed, traced ``dof`` reaches it
        (through the parameters it was 0: the linear solve holds them)."""
        if self.estimates_dof:
            return params.dof
        return self._start_dof(params.dof.shape[-1], params.dof.dtype)

    def pass_(self, params, rows, w, context):
        module = cov_lib.get(params.covariance_type)
        d = rows.shape[-1]
        dof = self._pass_dof(params)
        maha, log_comp = self._distances(params, rows, dof)
        joint = log_joint(log_comp, params.weights)
        log_norm = jax.nn.logsumexp(joint, axis=1)
        resp = jnp.exp(joint - log_norm[:, None]) * w[:, None]
        if self._trial_dof is not None:  # the ECME search's pass
            return self._dof_search_stats(resp, maha, d), jnp.sum(w * log_norm)
        v, u, log_u = _weight_terms(maha, dof, d)
        ru = resp * u
        # E[log U] − E[U] + 1 = (log u − u + 1) + ψ((ν+D)/2) − log((ν+D)/2)
        e_dof = log_u - v + _prior_dof_stat(dof + d)
        stats = StudentTStats(
            nk=jnp.sum(resp, axis=0),
            sum_u=jnp.sum(ru, axis=0),
            sum_x=shifted_sum(ru, rows, params.means),
            sum_xx=module.second_moments(ru, rows, params.means),
            sum_dof=jnp.sum(resp * e_dof, axis=0),
        )
        return stats, jnp.sum(w * log_norm)

    # ------------------------------------------------- ECME: the ν cycle

    def _dof_search_stats(self, resp, maha, d) -> DofSearchStats:
        """Statistics of ``G_k(ν) = Σ w τ log t_ν(x | μ_k, Σ_k)`` at the (3, K)
        trial ν (τ: the responsibilities ``resp``, weights included)."""
        nu = self._trial_dof[:, None, :]  # (3, 1, K)
        v, _, log_u = _weight_terms(maha, nu, d)  # at the trial ν, (3, N, K)
        return DofSearchStats(
            nk=jnp.sum(resp, axis=0),
            log_u=jnp.sum(resp * (log_u - v), axis=1),
            v2=jnp.sum(resp * v * v, axis=1),
            log_kernel=jnp.sum(resp * jnp.log1p(maha / nu), axis=1),
        )

    @property
    def has_cycle(self) -> bool:  # type: ignore[override]
        return self.dof is None and self.dof_method == "ecme"

    def cycle_start(self, params, context):
        dtype = params.dof.dtype
        k = params.dof.shape[0]
        lo = jnp.full((k,), math.log(DOF_MIN), dtype)
        hi = jnp.full((k,), math.log(DOF_MAX), dtype)
        t = jnp.clip(jnp.log(params.dof), lo, hi)
        inf = jnp.full((k,), jnp.inf, dtype)
        return DofSearch(t, lo, hi, t, -inf, inf, jnp.zeros((), jnp.int32))

    def cycle_view(self, state):
        return dataclasses.replace(self, _trial_dof=jnp.exp(_trial_log_dof(state.t)))

    def cycle_update(self, state, stats, params):
        """One safeguarded Newton step on ``log ν`` per component towards the
        root of ``∂G_k/∂ν`` (the bracket kept from the signs seen so far, a
        bisection where Newton would leave it), recording the best ν evaluated."""
        d = params.means.shape[-1]
        t3 = _trial_log_dof(state.t)
        score, slope, value = _dof_search_terms(stats, jnp.exp(t3), d)
        f, df = score[0], slope[0]
        # a root beyond a bound: the bound (the score's sign there says so)
        lo = jnp.where(score[2] >= 0, t3[2], jnp.where(f > 0, state.t, state.lo))
        hi = jnp.where(score[1] <= 0, t3[1], jnp.where(f > 0, state.hi, state.t))
        lo = jnp.minimum(lo, hi)
        newton = state.t - f / jnp.where(df < 0, df, -1)
        inside = (newton >= lo) & (newton <= hi) & (df < 0)
        t = jnp.where(inside, newton, 0.5 * (lo + hi))
        t = jnp.where(f == 0, state.t, t)
        candidates = jnp.stack([state.best_t, state.t, t3[1], t3[2]])
        values = jnp.stack([state.best_value, value[0], value[1], value[2]])
        pick = jnp.argmax(jnp.where(jnp.isnan(values), -jnp.inf, values), axis=0)
        best_t = jnp.take_along_axis(candidates, pick[None], axis=0)[0]
        best_value = jnp.take_along_axis(values, pick[None], axis=0)[0]
        searching = stats.nk > 0
        best_value = jnp.where(searching, best_value, -jnp.inf)
        step = jnp.where(searching, jnp.abs(t - state.t), 0)
        return DofSearch(t, lo, hi, best_t, best_value, step, state.n + 1)

    def cycle_running(self, state):
        return (state.n < ECME_MAX_PASSES) & jnp.any(state.step > _search_tol(state.t.dtype))

    def cycle_finish(self, state, params, context):
        """ν of the converged Newton step (its error the square of the last
        step), else the best ν evaluated; ν kept where a component is empty."""
        t = jnp.where(state.step <= _search_tol(state.t.dtype), state.t, state.best_t)
        searched = jnp.isfinite(state.best_value)
        dof = jnp.where(searched, jnp.exp(t), params.dof)
        return dataclasses.replace(params, dof=dof.astype(params.dof.dtype))

    def maximize(self, stats, params, context):
        module = cov_lib.get(self.covariance_type)
        nk, nu = stats.nk, stats.sum_u
        dtype = stats.sum_x.dtype
        eps = 10 * jnp.finfo(dtype).eps
        nk_safe, nu_safe = nk + eps, nu + eps
        delta = stats.sum_x / nu_safe[:, None]
        means = params.means + delta
        # Σ w r u (x − μ)(x − μ)ᵀ / n_k = S / n_k − (n^u_k / n_k) δ δᵀ: the
        # Gaussian M-step with δ scaled by √(n^u_k / n_k)
        scaled = delta * jnp.sqrt(nu_safe / nk_safe)[:, None]
        reg = jnp.asarray(self.reg_covar, dtype)
        covariances = module.covariances(stats.sum_xx, nk_safe, scaled, reg)
        covariances = module.ensure_positive_definite(module.fill_empty(covariances, nk))
        if self.dof is None:
            solved = solve_dof(_dof_target(stats.sum_dof, nk))
            dof = jnp.where(nk > 0, solved, params.dof)
        else:
            dof = self._start_dof(nk.shape[0], dtype)
        weights = mixture_weights(nk, self.dirichlet)
        return StudentTParams(
            weights,
            means,
            covariances,
            module.precisions_cholesky(covariances),
            dof.astype(dtype),
            self.covariance_type,
        )

    @property
    def has_prior(self) -> bool:  # type: ignore[override]
        return True  # the Dirichlet prior weighs against absolute counts

    def log_prior(self, params):
        return DirichletWeights(self.dirichlet).log_kernel(params.weights)

    def unconstrain(self, params):
        """Log-weights, the means, the scale matrices' precision Cholesky
        factors in :mod:`jaxem.gmm.unconstrained`'s coordinates and ``log ν``."""
        gaussian = GMMParams(
            params.weights, params.means, params.covariances, params.precisions_cholesky,
            params.covariance_type,
        )  # fmt: skip
        return {
            "logits": log_weights(params.weights),
            "means": params.means,
            "cholesky": to_unconstrained(gaussian).cholesky,
            "log_dof": jnp.log(params.dof),
        }

    def boundary(self, params):
        return {
            **no_coordinates(self.unconstrain(params)),
            "logits": below_resolution(params.weights),
        }

    def constrain(self, u, like):
        """The inverse of :meth:`unconstrain`; a fixed ``ν`` stays ``like``'s."""
        coordinates = UnconstrainedParams(u["logits"], u["means"], u["cholesky"])
        gaussian = from_unconstrained(coordinates, like.covariance_type)
        dof = jnp.exp(u["log_dof"]) if self.estimates_dof else like.dof
        return StudentTParams(
            weights_from_logs(u["logits"], like.weights), gaussian.means,
            gaussian.covariances, gaussian.precisions_cholesky, dof, like.covariance_type,
        )  # fmt: skip

    def canonical(self, params):
        module = cov_lib.get(params.covariance_type)
        return dataclasses.replace(
            params, precisions_cholesky=module.precisions_cholesky(params.covariances)
        )

    def reframe(self, stats, old, new):
        about = SuffStats(stats.sum_u, stats.sum_x, stats.sum_xx, old.means, self.covariance_type)
        moved = reshift(about, new.means)
        return stats._replace(sum_x=moved.sum_x, sum_xx=moved.sum_xx)

    # ----------------------------------------------------------------- model

    def n_parameters(self, params):
        """``(K−1) + K·D + scale parameters`` (the Gaussian count) ``+ K`` when ν
        is estimated, over the active components."""
        module = cov_lib.get(params.covariance_type)
        k = n_active_components(params.weights)
        d = params.means.shape[-1]
        count = module.n_parameters(k, d) + k * d + k - 1
        return count + k if self.dof is None else count

    def bic(self, params: StudentTParams, x: ArrayLike) -> jax.Array:
        """``−2 log L + p log N`` on ``x`` (N, D) (lower is better)."""
        lp = self.log_prob(params, jnp.asarray(x))
        n = jnp.asarray(lp.shape[0], lp.dtype)
        return -2 * jnp.sum(lp) + self.n_parameters(params) * jnp.log(n)

    def aic(self, params: StudentTParams, x: ArrayLike) -> jax.Array:
        """``−2 log L + 2p`` on ``x`` (N, D) (lower is better)."""
        lp = self.log_prob(params, jnp.asarray(x))
        return -2 * jnp.sum(lp) + 2 * self.n_parameters(params)

    def degenerate(self, params, context):
        """The Gaussian family's check on the scale matrices: an active
        component whose ``Σ_k − reg_covar·I`` is singular (a spike on
        coincident or collinear rows), in units of the fitted mixture's own
        per-feature spread (:func:`_fitted_variances`) rather than the data's
        variances: with tails as heavy as ``ν < 1`` a few extreme rows make
        those 1e13 times the scale matrices, and regular fits were flagged."""
        constant = constant_features(context)
        variances = jnp.where(constant, 1, _fitted_variances(params))
        return degenerate(params, variances, self.reg_covar, context.count, constant)

    def trim(self, params):
        keep = np.asarray(params.weights) > 0
        shared = cov_lib.get(params.covariance_type).SHARED
        return StudentTParams(
            params.weights[keep],
            params.means[keep],
            params.covariances if shared else params.covariances[keep],
            params.precisions_cholesky if shared else params.precisions_cholesky[keep],
            params.dof[keep],
            params.covariance_type,
        )

    def sample(
        self, key: jax.Array, params: StudentTParams, n_samples: int
    ) -> tuple[jax.Array, jax.Array]:
        """Draw ``n_samples`` rows: ``x = μ_k + L_k z / √g``, ``z ~ N(0, I)``,
        ``g ~ Gamma(ν_k/2, ν_k/2)``.

        Returns:
            ``(x, labels)``: (n_samples, D) rows and (n_samples,) the component
            each was drawn from (inactive components are never drawn).
        """
        n_samples = check_static_int("n_samples", n_samples, minimum=1)
        module = cov_lib.get(params.covariance_type)
        key_labels, key_z, key_g = jax.random.split(key, 3)
        labels = sample_labels(key_labels, params.weights, n_samples)
        d = params.means.shape[-1]
        z = jax.random.normal(key_z, (n_samples, d), params.dtype)
        half = 0.5 * params.dof[labels]
        g = jax.random.gamma(key_g, half, dtype=params.dtype) / half
        noise = module.scale_noise(z, params.covariances, labels)
        return params.means[labels] + noise / jnp.sqrt(g)[:, None], labels

    # -------------------------------------------------------- initialisation

    def portfolio(self, n_init, n_samples, n_features=None):
        return portfolio(n_init, n_samples, n_features)

    def init_view(self):
        """The Gaussian family's: the same starts from the raw rows, in a program
        of their own shared with every Gaussian and Student-t fit of the data."""
        return shared_init_view() if type(self) is StudentT else None

    def init_stats(self, resp, x, w, context):
        """Gaussian statistics (``u = 1``) about the responsibility-weighted means
        and ``E[log U] − E[U] + 1`` at its prior value under ``ν₀``: the first
        M-step is the Gaussian one and gives ``ν = ν₀``."""
        stats = suff_stats(resp, x, covariance_type=self.covariance_type, sample_weight=w)
        nk = stats.nk
        k, d = stats.shift.shape
        dof = self._start_dof(k, x.dtype)
        unit = cov_lib.get(self.covariance_type).unit(k, d, x.dtype)
        frame = StudentTParams(nk / jnp.sum(nk), stats.shift, unit, unit, dof, self.covariance_type)
        return StudentTStats(nk, nk, stats.sum_x, stats.sum_xx, nk * _prior_dof_stat(dof)), frame
