"""The fast EM pass: one matrix product for the E-step, one for the M-step.

The log-density of component k is a linear function of per-sample *moment
features* of the centred data ``x̃ = x − c``:

    log π_k + log N(x | μ_k, Σ_k) = φ(x̃)ᵀ w_k,   φ(x̃) = [vech(x̃ x̃ᵀ), x̃, 1]   (full)

with ``w_k`` built from ``Λ_k = Σ_k⁻¹`` and ``m̃_k = μ_k − c``: ``−½Λ_k`` (off-diagonal
entries doubled) on the quadratic features, ``Λ_k m̃_k`` on the linear ones and
``−½ m̃_kᵀΛ_k m̃_k + log det P_k − (D/2) log 2π + log π_k`` on the constant. So the
(N, K) logits are ``Φ W`` and the statistics of the M-step are ``Rᵀ Φ``
(``R`` the responsibilities): about ``2·N·K·(D²/2 + D)`` flops each, half the
direct route, with no (N, K, D) intermediate. Diagonal and spherical
covariances use ``[x̃², x̃, 1]`` and ``[‖x̃‖², x̃, 1]``; a tied covariance needs
only ``[x̃, 1]`` and the data's own second moment.

The price is precision: the quadratic terms cancel to ``O(D)`` from a size of
about ``ρ_k = ‖(μ_k − c)P_k‖²`` (the squared Mahalanobis distance of the centre
from the component), so float32 loses ``log10 ρ`` digits. The fits keep ``ρ``
small by centring each chunk of rows at its own mean, the rows ordered into
spatially tight chunks (:mod:`jaxem._src.gmm.layout`);
:func:`chunk_is_accurate` bounds the error of each chunk from the
responsibilities it computed and the pass falls back to the direct
formulation for a chunk where it is too large. :func:`is_accurate` is the
check of a single centre from the parameters alone (the public steps).

The bound has two parts; either suffices. ``ε ρ_k`` under
:data:`ACCURACY_THRESHOLD` keeps the error at a well-conditioned component
small in absolute terms, ``ρ_k`` taken in absolute values
(:func:`entrywise_rho`: ``|m̃|ᵀ|Λ_k||m̃|``, the size of the terms that cancel,
which the Mahalanobis distance understates along a rotated component's long
axis). An ill-conditioned component (condition number
``κ_k``) carries a relative error of about ``ε κ_k`` in its thinnest direction
whatever the formulation: the direct route sums entries as large as its
largest eigenvalue ``λ_k``, each rounded by ``ε λ_k``. The moment route's
cancellation rounds entries as large as ``‖μ_k − c‖²`` instead, so while the
centre lies within ``√(CONDITIONING_FACTOR · λ_k)`` of the mean (Euclidean) it
adds at most :data:`CONDITIONING_FACTOR` times the error float32 makes there
anyway, where ``ρ_k`` alone rejects a centre a few of the thinnest standard
deviations off (experiments/float32_accuracy.py measures both routes against
float64).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxem._src.family import log_weights
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.params import GMMParams
from jaxem._src.reductions import max_axis, sum_axis

# Elements of (rows, F + K) per chunk when the features are built chunk by chunk:
# 8M (32 MB in float32) measured fastest for full covariances on a 2-core x86
# machine (100k × 16, K = 16: 13 ms per pass against 37 ms at 600k elements;
# 200k × 32, K = 32: 232 against 278 ms).
MOMENT_CHUNK_ELEMENTS = 8_000_000

#: Largest ``eps · max_k ρ_k`` for which the moment formulation is used. At this
#: level float32 fits agree with float64 to about 1e-5 relative
#: (tests/test_gmm_moments.py measures it).
ACCURACY_THRESHOLD = 2e-5

#: How many times the error float32 makes anyway at an ill-conditioned component
#: the moment formulation may add (the bound's second part, see above).
CONDITIONING_FACTOR = 4.0

#: Largest ``ε κ_k`` (estimated from above as ``ε λ_k tr Λ_k``) for which the
#: bound's second part applies: it caps the moment route's worst-case error in
#: the thinnest variance, ``CONDITIONING_FACTOR · ε κ_k``, at 10% (measured
#: errors are far smaller) and its logits' at ``ε ‖x − c‖² ‖Λ_k‖`` per row. A
#: nearly singular component (``ε κ`` near 0.1 with a factorisation's ridge and
#: ``reg_covar=0``: the moment route then made NaN of a fit) takes the direct route.
CONDITIONING_LIMIT = 0.025


def n_features_of(covariance_type: str, n_features: int) -> int:
    """Width F of the moment features ``[quadratic, x̃, 1]``."""
    return cov_lib.get(covariance_type).n_quadratic_features(n_features) + n_features + 1


def features(xc: jax.Array, covariance_type: str) -> jax.Array:
    """(B, F) moment features ``[quadratic, x̃, 1]`` of centred data ``xc`` (B, D),
    as the covariance type's module forms them."""
    return cov_lib.get(covariance_type).moment_features(xc)


def natural_weights(params: GMMParams, center: jax.Array) -> jax.Array:
    """(F, K) ``W`` with ``φ(x − c) W = log π + log N(x | μ, Σ)`` (tied: without the
    shared quadratic term); the constant row is 0 for inactive components."""
    module = cov_lib.get(params.covariance_type)
    d = params.n_features
    pc = params.precisions_cholesky
    m = params.means - center
    quadratic, linear = module.natural_weights(pc, m)
    log_det = module.log_det_cholesky(pc, d)  # () for tied: broadcasts
    const = -0.5 * jnp.sum(linear * m, axis=1) + log_det - 0.5 * d * math.log(2 * math.pi)
    const = jnp.where(params.weights > 0, const + log_weights(params.weights), 0)
    return jnp.concatenate([*quadratic, linear, const[:, None]], axis=1).T


def feature_responsibilities(params: GMMParams, phi: jax.Array, w: jax.Array, center: jax.Array):
    """The E-step over precomputed features ``Φ`` (B, F) of ``x − center``:
    ``(w · r (B, K), log p(x) (B,))`` from the logits ``Φ W``.

    The covariance type's ``feature_logits`` adds what ``Φ W`` leaves out (for a
    tied covariance the shared quadratic term, read from the centred data in
    the first ``D`` columns of ``Φ``).
    """
    module = cov_lib.get(params.covariance_type)
    weights_matrix = natural_weights(params, center)
    logits = module.feature_logits(phi @ weights_matrix, phi, params.precisions_cholesky)
    return weighted_softmax(jnp.where(params.weights > 0, logits, -jnp.inf), w, axis=1)


#: How many units of ``|max logit| · eps`` :func:`weighted_softmax` lowers its
#: shift by where the logits are huge: at least as many ulps of the largest
#: logit (an ulp of ``x`` is at most ``|x| · eps``), more than the few ulps by
#: which two kernels' roundings of it differ.
SOFTMAX_SLACK = 16.0


def weighted_softmax(logits: jax.Array, w: jax.Array, axis: int):
    """``(w · softmax(logits), logsumexp(logits))`` along ``axis`` (``w`` broadcasts
    against the log-normaliser), with one exponential per entry: XLA:CPU runs this
    about 10% faster than ``logsumexp`` followed by ``exp``; the maximum and the
    sum over a short axis (the K components) unrolled (:mod:`jaxem._src.reductions`).

    XLA may fuse the logits' expression into both the maximum's kernel and the
    exponential's, and the two kernels may round it apart (by an ulp: 512 at
    logits of −6e9, which a start of ``reg_covar`` covariances gives on data
    spread over hundreds of units): ``exp(logits − max)`` was then ``inf`` (or
    0 for every component) and the responsibilities NaN. So the exponent is
    capped at 0, and where the logits are so large that an ulp is a sizeable
    fraction of a nat (``|max| · eps > 1/4``; their rounding already blurs
    the responsibilities there) the shift is lowered by :data:`SOFTMAX_SLACK`
    ``· |max| · eps``: the largest logit keeps an exponential of 1 whichever
    kernel rounded it. Elsewhere the arithmetic is the plain one."""
    top = jax.lax.stop_gradient(max_axis(logits, axis, keepdims=True))
    scale = jnp.abs(top) * jnp.finfo(logits.dtype).eps
    shift = top - jnp.where(scale > 0.25, SOFTMAX_SLACK * scale, 0)  # top ±inf: NaN as before
    exponent = logits - shift
    # capped at 0 with the derivative of the exponent itself: the cap only undoes a
    # rounding, and a `where` (or `minimum`) would zero the derivative of the
    # largest logit wherever the two kernels rounded it above the maximum
    e = jnp.exp(exponent - jax.lax.stop_gradient(jnp.maximum(exponent, 0)))
    total = sum_axis(e, axis, keepdims=True)
    log_norm = jnp.squeeze(jnp.log(total) + shift, axis)
    return e * (jnp.expand_dims(w, axis) / total), log_norm


def moments_to_stats(moments: jax.Array, extra: jax.Array, covariance_type: str, n_features: int):
    """``(nk, sum_x, sum_xx)`` about the centre from ``Rᵀ Φ`` (K, F)."""
    d = n_features
    nk = moments[:, -1]
    sum_x = moments[:, -1 - d : -1]
    sum_xx = cov_lib.get(covariance_type).feature_second_moments(moments, extra, d)
    return nk, sum_x, sum_xx


class Budget(NamedTuple):
    """The error the chunks of one pass have charged so far (:func:`pooled_check`)."""

    spent: jax.Array  # (2, K) the errors charged to the bound's two parts
    seen: jax.Array  # (K,) Σ n_kc over the chunks so far
    expected: jax.Array  # (K,) π_k Σ w over the whole pass


def budget(params: GMMParams, total_weight: jax.Array) -> Budget:
    """The empty :class:`Budget` of a pass over data of total weight ``Σ w``."""
    k = params.weights.shape[-1]
    zeros = jnp.zeros((k,), params.dtype)
    return Budget(jnp.zeros((2, k), params.dtype), zeros, params.weights * total_weight)


def pooled_check(
    params: GMMParams,
    nk: jax.Array,
    budget: Budget,
    distances: tuple[jax.Array, jax.Array, jax.Array],
    threshold: float = ACCURACY_THRESHOLD,
) -> tuple[jax.Array, jax.Array]:
    """``(ok, charge)``: whether a chunk may take the moment route, the
    chunks before it having charged ``budget``, and the (2, K) errors it
    charges if it does (:func:`charge`).

    Component ``k``'s statistics from the chunk carry an error of about
    ``eps · n_kc · ρ_kc`` (``n_kc = Σ_chunk w r_nk``, ``ρ_kc`` the squared
    Mahalanobis distance of the centre from ``μ_k``); the bound's second part
    (module docstring) one of at most ``CONDITIONING_FACTOR`` times what
    float32 loses at the component anyway while
    ``n_kc ‖μ_k − c‖² ≤ CONDITIONING_FACTOR · λ_k · n_kc`` (and
    ``ε κ_k ≤ CONDITIONING_LIMIT``). The chunks of a pass share the budget
    ``threshold · (Σ_c n_kc + π_k Σ w)`` of the first part and
    ``CONDITIONING_FACTOR · λ_k · (Σ_c n_kc + π_k Σ w)`` of the second, the
    sums over the chunks so far and this one: a chunk passes when, for every
    active component, its error fits what is left of either part (charged to
    the first that holds it). Summed over the pass every component's
    statistics then keep a relative error within about ``2 · threshold``
    (``n_k ≈ π_k Σ w``), or the second part's bound, whatever the order of the
    chunks: a component that owns few of a chunk's rows draws on the budget
    its own rows elsewhere bring.

    Args:
        params: the E-step's parameters.
        nk: (K,) the chunk's ``n_kc``.
        budget: what the chunks before it charged (:func:`budget` for the first).
        distances: :func:`center_distances` of ``params`` and the chunk's centre.
        threshold: the bound on ``eps · ρ``.
    """
    rho, offset2, allowed2 = distances
    eps = jnp.finfo(params.dtype).eps
    errors = jnp.stack([eps * nk * rho, nk * offset2])
    share = budget.seen + nk + budget.expected
    within = budget.spent + errors <= jnp.stack([threshold * share, allowed2 * share])
    ok = jnp.all((params.weights == 0) | within[0] | within[1])  # NaN: False
    charged = jnp.stack([within[0], ~within[0] & within[1]])
    return ok, jnp.where(charged, errors, 0)


def all_within_first_part(
    params: GMMParams,
    nk_c: jax.Array,
    total_weight: jax.Array,
    centers: jax.Array,
    threshold: float = ACCURACY_THRESHOLD,
) -> jax.Array:
    """() whether every chunk of a pass (``n_kc`` (C, K), centres (C, D)), in
    order, passes :func:`pooled_check` with its errors charged to the bound's
    first part (``ε n_kc ρ_kc``) at every active component. Then every chunk
    passes, and the chunks before each charged only that part: the budgets are
    sums over the chunks before, computed at once instead of one chunk after
    another (in another order of addition)."""
    rho = jax.vmap(lambda c: center_distances(params, c)[0])(centers)  # (C, K)
    errors = jnp.finfo(params.dtype).eps * nk_c * rho
    sums = jnp.stack([errors, nk_c])
    before = jnp.cumsum(sums, axis=1) - sums  # over the chunks before each
    share = before[1] + nk_c + params.weights * total_weight
    within = before[0] + errors <= threshold * share
    return jnp.all((params.weights == 0) | within)  # NaN: False


def charge(budget: Budget, nk: jax.Array, charged: jax.Array, accepted: jax.Array) -> Budget:
    """``budget`` after a chunk with ``n_kc`` ``nk`` (counted whichever route
    it took), its errors ``charged`` (:func:`pooled_check`) if ``accepted``."""
    spent = budget.spent + jnp.where(accepted, charged, 0)
    return Budget(spent, budget.seen + nk, budget.expected)


def chunk_is_accurate(
    params: GMMParams,
    nk: jax.Array,
    w: jax.Array,
    center: jax.Array,
    threshold: float = ACCURACY_THRESHOLD,
    distances: tuple[jax.Array, jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """() whether a chunk's moment pass about ``center`` kept its error in bounds,
    judged by the responsibilities it computed: :func:`pooled_check` of the
    chunk on its own, its budget its own share ``n_kc + π_k · Σ_chunk w``
    (summed over the chunks, the same bound as the pooled check's).

    Args:
        params: the E-step's parameters.
        nk: (K,) the chunk's ``n_kc``.
        w: (B,) the chunk's sample weights.
        center: (D,) the chunk's centre.
        threshold: the bound on ``eps · ρ``.
        distances: :func:`center_distances` of ``params`` and ``center``, if
            computed already.
    """
    if distances is None:
        distances = center_distances(params, center)
    own = budget(params, jnp.sum(w))
    return pooled_check(params, nk, own, distances, threshold)[0]


def entrywise_rho(params: GMMParams, m: jax.Array, rho: jax.Array) -> jax.Array:
    """(K,) ``|m̃_k|ᵀ |Λ_k| |m̃_k|`` (entrywise absolute values) of the offsets
    ``m`` (K, D) of the centre from the means, where the precisions are full
    matrices; ``rho`` (the Mahalanobis ``m̃ᵀΛm̃``) where they are diagonal, for
    which the two are equal.

    This, not ``ρ``, is the scale of the moment route's rounding: the features'
    products sum terms ``x̃_i x̃_j Λ_ij`` (and the M-step subtracts ``m̃ m̃ᵀ`` from
    second moments of that size) whose magnitudes add up to it, while ``ρ``
    is what is left after they cancel. The two differ where a component is
    long, thin and rotated and the centre lies along its long axis: ``ρ ≈
    ‖m̃‖²/λ_max`` there, the rounding ``ε ‖m̃‖²/λ_min`` relative to the thin
    variance (a tied fit of two clusters 20 standard deviations apart along
    it, κ = 1.1e5, lost 5.4 nats per sample in float32 while ``ε ρ`` passed)."""
    module = cov_lib.get(params.covariance_type)
    if module.STORAGE not in ("full", "tied"):
        return rho
    precisions = module.precisions(params.precisions_cholesky)
    precisions = jnp.broadcast_to(precisions, (m.shape[0], *precisions.shape[-2:]))
    a = jnp.abs(m)
    return jnp.maximum(rho, jnp.einsum("kd,kde,ke->k", a, jnp.abs(precisions), a))


def center_distances(params: GMMParams, center: jax.Array):
    """``(ρ, ‖μ − c‖², allowed)``, each (K,): the squared Mahalanobis distances
    of the centre ``c`` (D,) from the means in absolute terms
    (:func:`entrywise_rho`) and the Euclidean ones, and the largest
    ``‖μ − c‖²`` the bound's second part allows (:data:`CONDITIONING_FACTOR`
    times a lower bound on the largest eigenvalue; 0 past
    :data:`CONDITIONING_LIMIT`)."""
    module = cov_lib.get(params.covariance_type)
    m = params.means - center
    pc = params.precisions_cholesky
    rho = entrywise_rho(params, m, module.mahalanobis(jnp.zeros_like(m[:1]), m, pc)[0])
    top = module.largest_eigenvalue_bound(params.covariances)
    # tr Λ_k = Σ_d e_dᵀ Λ_k e_d ≥ ‖Λ_k‖: with top ≈ λ_k, an estimate of κ_k from above
    d = params.n_features
    trace = jnp.sum(module.mahalanobis(jnp.eye(d, dtype=m.dtype), jnp.zeros_like(m), pc), axis=0)
    eps = jnp.finfo(params.dtype).eps
    usable = eps * top * trace <= CONDITIONING_LIMIT
    return rho, jnp.sum(m * m, axis=1), jnp.where(usable, CONDITIONING_FACTOR * top, 0)


#: The bound of the public steps (``gmm.e_step``, ``gmm.m_step``) in float64,
#: where users compare against exact arithmetic: relative errors of about 1e-10.
STEP_THRESHOLD_64 = 1e-10


def is_accurate(
    params: GMMParams, center: jax.Array, threshold: float = ACCURACY_THRESHOLD
) -> jax.Array:
    """() whether the moment formulation about ``center`` keeps every active
    component's ``eps · ρ_k`` under ``threshold`` or its centre within the
    conditioning bound (module docstring)."""
    rho, offset2, allowed2 = center_distances(params, center)
    eps = jnp.finfo(params.dtype).eps
    conditioned = offset2 <= allowed2
    return jnp.all((params.weights == 0) | (eps * rho < threshold) | conditioned)  # NaN: False


def step_threshold(dtype) -> float:
    """The accuracy bound of the public steps: the fits' in float32, and
    :data:`STEP_THRESHOLD_64` in float64."""
    return ACCURACY_THRESHOLD if jnp.finfo(dtype).bits < 64 else STEP_THRESHOLD_64
