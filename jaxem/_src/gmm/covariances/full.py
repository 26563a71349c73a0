"""Full covariances: one (D, D) matrix per component, shape (K, D, D)."""

from __future__ import annotations

import math
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import multigammaln

from jaxem._src.gmm.covariances import features
from jaxem._src.reductions import sum_axis

#: Each component has its own covariance (tied's is shared).
SHARED = False
#: How the covariances are stored (this module's own shape).
STORAGE = "full"


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components, n_features, n_features)


def precisions_cholesky(covariances: jax.Array) -> jax.Array:
    """(K, D, D) upper-triangular ``P_k = L_k⁻ᵀ``, ``inv(Σ_k) = P_k P_kᵀ``, ``Σ_k = L_k L_kᵀ``."""
    chol = jnp.linalg.cholesky(covariances)
    eye = jnp.broadcast_to(np.eye(covariances.shape[-1], dtype=covariances.dtype), chol.shape)
    return jnp.swapaxes(jax.scipy.linalg.solve_triangular(chol, eye, lower=True), -1, -2)


def precisions(precisions_cholesky: jax.Array) -> jax.Array:
    """(K, D, D) ``inv(Σ_k) = P_k P_kᵀ`` (scikit-learn's ``precisions_``)."""
    return precisions_cholesky @ jnp.swapaxes(precisions_cholesky, -1, -2)


def from_precisions(precisions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(Σ, P)`` from (K, D, D) precision matrices ``A_k = inv(Σ_k)``.

    ``P_k`` is the upper-triangular factor with ``A_k = P_k P_kᵀ``, computed as
    scikit-learn does (the Cholesky factor of ``A_k`` with rows and columns
    reversed, reversed back); ``Σ_k = P_k⁻ᵀ P_k⁻¹``.
    """
    flipped = jnp.flip(precisions, axis=(-2, -1))
    chol = jnp.flip(jnp.linalg.cholesky(flipped), axis=(-2, -1))
    eye = jnp.broadcast_to(np.eye(precisions.shape[-1], dtype=precisions.dtype), chol.shape)
    inverse = jax.scipy.linalg.solve_triangular(chol, eye, lower=False)  # P⁻¹, upper
    cov = jnp.swapaxes(inverse, -1, -2) @ inverse
    return 0.5 * (cov + jnp.swapaxes(cov, -1, -2)), chol


def log_det_cholesky(precisions_cholesky: jax.Array, n_features: int) -> jax.Array:
    """(K,) ``log det P_k = ½ log det Σ_k⁻¹``."""
    return jnp.sum(jnp.log(diagonal(precisions_cholesky)), axis=-1)


def diagonal(matrices: jax.Array) -> jax.Array:
    """(..., D) the diagonals of (..., D, D) ``matrices``: a strided slice of the
    flattened matrices (two jaxpr equations; ``jnp.diagonal``'s gather takes 15)."""
    d = matrices.shape[-1]
    return matrices.reshape(*matrices.shape[:-2], d * d)[..., :: d + 1]


def difference_mahalanobis(diff: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(K, B) ``‖P_kᵀ d_kb‖²`` of differences ``diff`` (K, D, B)."""
    # Pᵀ materialised (the barrier keeps XLA from folding the transposition back
    # into the product): XLA:CPU runs the product through YNNPACK when it
    # contracts the last axis of its left operand's layout. Inside the "auto"
    # pass's cond (the direct fallback) layout assignment kept P's own layout
    # and the product ran as a generic dot: the default fit of 5 000 × 8, K = 5,
    # far apart, 6.5–6.7 → 4.4–4.9 ms a call.
    transposed = jax.lax.optimization_barrier(jnp.swapaxes(precisions_cholesky, -1, -2))
    y = jnp.einsum("ked,kdn->ken", transposed, diff)
    return sum_axis(y * y, 1)


def mahalanobis(x: jax.Array, means: jax.Array, precisions_cholesky: jax.Array) -> jax.Array:
    """(N, K) squared Mahalanobis distances ``‖(x_n − μ_k) P_k‖²``."""
    y = jnp.einsum("nd,kde->nke", x, precisions_cholesky)
    y = y - jnp.einsum("kd,kde->ke", means, precisions_cholesky)
    return jnp.sum(y * y, axis=-1)


# ------------------------------------------------------------------ M-step
# (jaxem._src.gmm.steps) statistics about a shift and their maximization.


def difference_second_moments(resp: jax.Array, diff: jax.Array) -> jax.Array:
    """(K, D, D) ``Σ_b r_kb d_kb d_kbᵀ`` of responsibilities (K, B) and differences (K, D, B)."""
    return jnp.einsum("kdn,ken->kde", diff * resp[:, None, :], diff)


def second_moments(resp: jax.Array, x: jax.Array, shift: jax.Array) -> jax.Array:
    """(K, D, D) ``Σ_n r_nk (x_n − s_k)(x_n − s_k)ᵀ``."""
    diff = x[:, None, :] - shift[None, :, :]
    return jnp.einsum("nk,nkd,nke->kde", resp, diff, diff)


def covariances(
    sxx: jax.Array, nk: jax.Array, delta: jax.Array, reg_covar: jax.Array, previous=None
) -> jax.Array:
    """(K, D, D) ``Σ_k = S_k / n_k − δ_k δ_kᵀ + reg·I``, with ``δ_k = μ_k − s_k``."""
    cov = sxx / nk[:, None, None] - delta[:, :, None] * delta[:, None, :]
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    # jnp.eye: a numpy constant here changes XLA's fusion, and the rounding, of MAP fits.
    return cov + reg_covar * jnp.eye(sxx.shape[-1], dtype=sxx.dtype)


def fill_empty(covariances: jax.Array, nk: jax.Array) -> jax.Array:
    """(K, D, D) the identity for each empty component (``n_k = 0``, inactive):
    finite factors whatever ``reg_covar`` is, so inactive components never
    produce NaN."""
    k, d = covariances.shape[:2]
    return jnp.where((nk == 0)[:, None, None], unit(k, d, covariances.dtype), covariances)


def reshift(sum_xx: jax.Array, sum_x: jax.Array, nk: jax.Array, delta: jax.Array) -> jax.Array:
    """(K, D, D) second moments about ``s_k − δ_k`` from those about ``s_k``:
    ``S_k + a_k δ_kᵀ + δ_k a_kᵀ + n_k δ_k δ_kᵀ``, ``a_k = Σ_n r_nk (x_n − s_k)`` (``sum_x``)."""
    cross = jnp.einsum("kd,ke->kde", sum_x, delta)
    outer = jnp.einsum("kd,ke->kde", delta, delta)
    return sum_xx + (cross + jnp.swapaxes(cross, -1, -2) + nk[:, None, None] * outer)


def summed_reshift(sum_x: jax.Array, nk: jax.Array, delta: jax.Array) -> jax.Array:
    """(K, D, D) ``Σ_c`` of :func:`reshift`'s terms for ``C`` sets of statistics
    (``sum_x``, ``delta`` (C, K, D), ``nk`` (C, K)): ``Σ_c u_c δ_cᵀ`` and its
    transpose, ``u_c = a_c + ½ n_c δ_c``, one product over ``c`` (not C
    (K, D, D) terms summed: at C = 209, K = D = 16 that took 1.4 ms, this ~0.1)."""
    u = sum_x + 0.5 * nk[..., None] * delta
    cross = jnp.einsum("ckd,cke->kde", u, delta)
    return cross + jnp.swapaxes(cross, -1, -2)


def ensure_positive_definite(covariances: jax.Array) -> jax.Array:
    """Add a ridge to the matrices whose Cholesky factorisation fails or nearly does.

    A singular covariance (a constant or duplicated feature, a component on one
    point, with ``reg_covar=0``) gets ``10·D·ε·max(diag)`` on its diagonal; if
    that still fails (a matrix that is only rounding noise), ``D·max|Σ| + tiny^¼``,
    which makes it diagonally dominant. "Nearly": a pivot of the factorisation
    under ``D·ε`` of its variance (``L_ii² < D ε Σ_ii``, a feature that the
    others determine to rounding) counts as a failure, since whether such a
    matrix factorises depends on the order of the rounding: a factorisation
    elsewhere (of the same matrix in another compiled program) can fail where
    this one did not, which made NaN of fits on singular data with
    ``reg_covar=0``; after the ridge every pivot keeps about ten times the
    margin. Other matrices are unchanged.
    """
    d = covariances.shape[-1]
    finfo = jnp.finfo(covariances.dtype)
    eye = np.eye(d, dtype=covariances.dtype)

    scale = jnp.max(jnp.abs(diagonal(covariances)), axis=-1)
    small = 10 * d * finfo.eps * scale
    large = d * jnp.max(jnp.abs(covariances), axis=(-2, -1)) + finfo.tiny**0.25
    zero = jnp.zeros_like(scale)
    # Both trials in one batched Cholesky, not two calls: jaxlib 0.10's LAPACK
    # kernels block an XLA:CPU pool thread while their batch runs on the same
    # pool, so two independent factorisations in flight at once can take every
    # thread of a 2-core pool and never finish (experiments/xla_deadlock_repro.py).
    trials = covariances + jnp.stack([zero, small])[..., None, None] * eye
    chol = jnp.linalg.cholesky(trials)
    pivots = diagonal(chol) ** 2 / diagonal(trials)  # 0/0 or NaN: a failure
    fails = ~(jnp.all(jnp.isfinite(chol), axis=(-2, -1)) & (jnp.min(pivots, -1) >= d * finfo.eps))
    ridge = jnp.where(fails[0], jnp.where(fails[1], large, small), zero)
    return covariances + ridge[..., None, None] * eye


# ------------------------------------------------------------------- model
# criteria, sampling, the degeneracy check, initialisation.


def n_parameters(n_components: jax.Array, n_features: int) -> jax.Array:
    return n_components * n_features * (n_features + 1) // 2


def scale_noise(z: jax.Array, covariances: jax.Array, labels: jax.Array) -> jax.Array:
    """(n, D) ``L_{label} z`` for standard normal ``z`` (n, D): noise with covariance Σ."""
    chol = jnp.linalg.cholesky(covariances)
    return jnp.einsum("nde,ne->nd", chol[labels], z)


def smallest_standardized_eigenvalue(
    covariances: jax.Array, variances: jax.Array, reg_covar: jax.Array
) -> jax.Array:
    """(K,) smallest eigenvalue of ``D^(−½) (Σ_k − reg·I) D^(−½)``, ``D`` the data's
    feature variances (the degeneracy check)."""
    d = variances.shape[0]
    scale = jax.lax.rsqrt(variances)
    std = (covariances - reg_covar * np.eye(d, dtype=covariances.dtype)) * scale[:, None]
    return jnp.linalg.eigvalsh(std * scale[None, :])[..., 0]


def unit(n_components: int, n_features: int, dtype) -> jax.Array:
    """(K, D, D) identity matrices (a placeholder covariance, its own precision factor)."""
    return jnp.broadcast_to(np.eye(n_features, dtype=dtype), shape(n_components, n_features))


# ------------------------------------------------------- moment formulation
# (jaxem._src.gmm.moments) features [vech(x̃ x̃ᵀ), x̃, 1], the upper triangle row by row.


def largest_eigenvalue_bound(covariances: jax.Array) -> jax.Array:
    """(K,) a lower bound on each covariance's largest eigenvalue (the moment
    formulation's accuracy check, :func:`jaxem._src.gmm.moments.chunk_is_accurate`):
    the largest of the variances and of the Rayleigh quotient after three power
    iterations from the vector of the variances."""
    variances = diagonal(covariances)
    v = variances
    for _ in range(3):
        v = jnp.einsum("...de,...e->...d", covariances, v)
        scale = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
        v = v / jnp.where(scale > 0, scale, 1)
    norm2 = jnp.sum(v * v, -1)
    quotient = jnp.sum(v * jnp.einsum("...de,...e->...d", covariances, v), -1)
    quotient = quotient / jnp.where(norm2 > 0, norm2, 1)
    return jnp.maximum(jnp.max(variances, axis=-1), quotient)


def n_quadratic_features(n_features: int) -> int:
    """D(D+1)/2 quadratic moment features."""
    return n_features * (n_features + 1) // 2


def moment_features(xc: jax.Array) -> jax.Array:
    """(B, F) ``[vech(x̃ x̃ᵀ), x̃, 1]`` of centred rows ``xc`` (B, D), the upper
    triangle row by row."""
    return features.products(xc, *np.triu_indices(xc.shape[1]))


def natural_weights(
    precisions_cholesky: jax.Array, centred_means: jax.Array
) -> tuple[list[jax.Array], jax.Array]:
    """Weights of the quadratic and linear moment features.

    Args:
        precisions_cholesky: (K, D, D) ``P_k``.
        centred_means: (K, D) ``m̃_k = μ_k − c``.

    Returns:
        ``([(K, D(D+1)/2) −½Λ_k in vech order, off-diagonal entries doubled],
        (K, D) Λ_k m̃_k)`` with ``Λ_k = P_k P_kᵀ``.
    """
    k, d = centred_means.shape
    precision = precisions_cholesky @ jnp.swapaxes(precisions_cholesky, -1, -2)
    linear = jnp.einsum("kde,ke->kd", precision, centred_means)
    iu, ju = np.triu_indices(d)
    scale = np.where(iu == ju, -0.5, -1.0).astype(precision.dtype)
    # A gather of static in-range indices (no bounds handling): 3 equations for any D.
    quad = jnp.take(precision.reshape(k, d * d), iu * d + ju, axis=1, mode="clip")
    return [quad * scale], linear


def feature_logits(logits: jax.Array, features: jax.Array, precisions_cholesky: jax.Array):
    """The component log-densities from the products ``Φ W``: those products
    (every term is a moment feature's)."""
    return logits


def shared_second_moment(features: jax.Array, w: jax.Array) -> jax.Array:
    """() 0: the second moments are moment features (:func:`feature_second_moments`)."""
    return jnp.zeros((), features.dtype)


def feature_second_moments(moments: jax.Array, extra: jax.Array, n_features: int) -> jax.Array:
    """(K, D, D) second moments about the centre from ``Rᵀ Φ`` (K, F): its vech
    columns spread over both triangles."""
    d = n_features
    iu, ju = np.triu_indices(d)
    position = np.zeros((d, d), np.int32)
    position[iu, ju] = position[ju, iu] = np.arange(len(iu))
    sym = jnp.take(moments, position.ravel(), axis=1, mode="clip")
    return sym.reshape(moments.shape[0], d, d)


# ------------------------------------------------------------------ the prior
# (jaxem._src.gmm.prior) Σ_k ~ IW(ν, Λ), Λ (D, D).


def prior_scale(covariance: jax.Array) -> jax.Array:
    """mclust's default prior scale from ``K^(−2/D)`` times the data covariance:
    the matrix itself."""
    return covariance


def prior_scale_shape(n_features: int) -> tuple[int, ...]:
    return (n_features, n_features)


def prior_dof_bound(n_features: int) -> int:
    """The inverse-Wishart's degrees of freedom must exceed D − 1."""
    return n_features - 1


def posterior_covariances(prior, scatter: jax.Array, n_aug: jax.Array, nk: jax.Array) -> jax.Array:
    """(K, D, D) ``Σ_k = (Λ + S_k) / (n_k + ν + D + 2)``, ``S_k`` = ``n_aug_k · scatter_k``
    (arguments as :func:`jaxem._src.gmm.prior.posterior_covariances`)."""
    d = prior.mean.shape[0]
    return (prior.scale + n_aug[:, None, None] * scatter) / (nk + prior.dof + d + 2)[:, None, None]


def log_prior(precisions_cholesky: jax.Array, half_log_det: jax.Array, prior) -> jax.Array:
    """(K,) ``log IW(Σ_k | ν, Λ)``, from ``P_k``, ``half_log_det`` ``½ log |Σ_k⁻¹|``
    (:func:`log_det_cholesky`) and the prior's ``dof`` and ``scale``; for a
    (D, D) ``P`` the one density ()."""
    d = precisions_cholesky.shape[-1]
    dof, scale = prior.dof, prior.scale
    sign, log_det_scale = jnp.linalg.slogdet(scale)
    log_norm = (
        0.5 * dof * jnp.where(sign > 0, log_det_scale, jnp.nan)
        - 0.5 * dof * d * math.log(2)
        - multigammaln(0.5 * dof, d)
    )
    # tr(Λ Σ⁻¹) with Σ⁻¹ = P Pᵀ.
    trace = jnp.einsum("de,...df,...ef->...", scale, precisions_cholesky, precisions_cholesky)
    return log_norm + (dof + d + 1) * half_log_det - 0.5 * trace


# --------------------------------------------------- the variational posterior
# (jaxem._src.gmm.variational) Λ_k ~ W(ν_k, (ν_k Σ_k)⁻¹), Bishop (2006) eq. 10.62–10.63.


def wishart_prior_scale(covariance: jax.Array) -> jax.Array:
    """(D, D) scikit-learn's default covariance prior: the data covariance."""
    return covariance


def wishart_dof(dof_prior: jax.Array, nk: jax.Array) -> jax.Array:
    """(K,) ``ν_k = ν_0 + n_k``."""
    return dof_prior + nk


def wishart_covariances(
    covariance_prior: jax.Array,
    sk: jax.Array,
    nk: jax.Array,
    diff: jax.Array,
    shrinkage: jax.Array,
    dof: jax.Array,
) -> jax.Array:
    """(K, D, D) ``Σ_k = (Ψ_0 + n_k S_k + n_k (β_0/β_k) d_k d_kᵀ) / ν_k``, with
    ``S_k`` the responsibility-weighted covariance, ``d_k = x̄_k − m_0`` and
    ``shrinkage`` ``β_0/β_k`` (K,)."""
    outer = diff[:, :, None] * diff[:, None, :]
    cov = covariance_prior + nk[:, None, None] * sk + (nk * shrinkage)[:, None, None] * outer
    return cov / dof[:, None, None]


# ------------------------------------------------ validation, unconstrained map
# (jaxem._src.gmm.params, jaxem._src.gmm.unconstrained)


def check_values(covariances: np.ndarray) -> None:
    """Raise ``ValueError`` unless the concrete (K, D, D) ``covariances`` are
    symmetric positive definite."""
    check_symmetric(covariances)
    for i, matrix in enumerate(covariances):
        if not is_positive_definite(matrix):
            raise ValueError(f"covariances must be positive definite (component {i})")


def check_symmetric(matrices: np.ndarray) -> None:
    """Raise ``ValueError`` unless the (..., D, D) ``matrices`` are symmetric to rounding."""
    scale = np.max(np.abs(matrices), axis=(-2, -1), keepdims=True)
    # Relative 1e-6 at least: float32 results converted to float64 must pass.
    tolerance = max(1e3 * np.finfo(matrices.dtype).eps, 1e-6) * scale
    if np.any(np.abs(matrices - np.swapaxes(matrices, -1, -2)) > tolerance):
        raise ValueError("covariances must be symmetric")


def is_positive_definite(matrix: np.ndarray) -> bool:
    """Whether the (D, D) ``matrix`` has a Cholesky factorisation (in float64)."""
    try:
        np.linalg.cholesky(matrix.astype(np.float64))
    except np.linalg.LinAlgError:
        return False
    return True


def unconstrained_shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components, n_features * (n_features + 1) // 2)


def to_unconstrained(precisions_cholesky: jax.Array) -> jax.Array:
    """(..., D(D+1)/2) the upper triangle of each ``P`` row by row, ``log P_ii`` on
    the diagonal."""
    n = precisions_cholesky.shape[-1]
    rows, cols = jnp.triu_indices(n)
    packed = precisions_cholesky[..., rows, cols]
    return jnp.where(rows == cols, jnp.log(jnp.where(rows == cols, packed, 1)), packed)


def from_unconstrained(cholesky: jax.Array, n_features: int) -> tuple[jax.Array, jax.Array]:
    """``(P, Σ)`` from :func:`to_unconstrained`'s coordinates (..., D(D+1)/2): ``P``
    upper-triangular with ``exp`` on the diagonal, ``Σ = inv(P Pᵀ) = Aᵀ A`` with
    ``A = P⁻¹``."""
    rows, cols = jnp.triu_indices(n_features)
    diagonal = rows == cols
    # exp of the diagonal coordinates only: an off-diagonal one above ~88.7
    # overflows float32's exp, and where's derivative 0 · inf is NaN (implicit
    # gradients of a fit were NaN for an elongated cluster with P_0,15 = 197)
    values = jnp.where(diagonal, jnp.exp(jnp.where(diagonal, cholesky, 0)), cholesky)
    factor = jnp.zeros((*cholesky.shape[:-1], n_features, n_features), cholesky.dtype)
    factor = factor.at[..., rows, cols].set(values)
    eye = jnp.broadcast_to(np.eye(n_features, dtype=factor.dtype), factor.shape)
    inv = jax.scipy.linalg.solve_triangular(factor, eye, lower=False)
    cov = jnp.swapaxes(inv, -1, -2) @ inv
    return factor, 0.5 * (cov + jnp.swapaxes(cov, -1, -2))


# ------------------------------------------------------------ missing data
# (jaxem._src.gmm.missing) through the observed-masked matrix Σ̃ = M Σ M + (I − M).


def conditional_elements(n_components: int, n_features: int) -> int:
    """Elements per row of :func:`conditionals`' temporaries (R, K, D, D)."""
    return n_components * n_features * n_features


def conditionals(params, obs: jax.Array, diff: jax.Array, *, mean: bool, covariance: bool):
    """Observed-marginal densities and conditional moments of a chunk of rows.

    The Cholesky factor of each row's and component's ``Σ̃_k`` gives ``log det
    Σ_k,oo``, the Mahalanobis distance over the observed coordinates and the
    regression ``Σ_k Σ̃_k⁻¹ M (x − μ_k)`` of the conditional mean.

    Args:
        params: the mixture (:class:`~jaxem.gmm.GMMParams` of this type).
        obs: (R, D) 1 where observed, 0 where missing.
        diff: (R, K, D) ``x − μ_k`` on the observed coordinates, 0 on the missing ones.
        mean, covariance: whether to compute ``fill`` and ``cond_cov`` (else ``None``).

    Returns:
        ``(maha, log_det, fill, cond_cov)``: (R, K) ``(x_o − μ_ko)ᵀ Σ_k,oo⁻¹ (x_o − μ_ko)``;
        (R, K) ``−½ log det Σ_k,oo``; (R, K, D) the conditional means ``x̂_nk`` on
        the missing coordinates; (R, K, D, D) ``C_nk = Σ_k,mm − Σ_k,mo Σ_k,oo⁻¹ Σ_k,om``
        on the missing block (zero elsewhere).
    """
    means, covariances = params.means, params.covariances
    missing = 1 - obs
    missing_block = missing[:, :, None] * np.eye(obs.shape[1], dtype=obs.dtype)  # (R, D, D)
    masked = obs[:, None, :, None] * covariances[None] * obs[:, None, None, :]
    chol = jnp.linalg.cholesky(masked + missing_block[:, None])  # (R, K, D, D)
    z = jax.scipy.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
    log_det = -jnp.sum(jnp.log(diagonal(chol)), axis=-1)  # (R, K)
    fill = cond_cov = None
    if mean:
        alpha = jax.scipy.linalg.solve_triangular(chol, z[..., None], lower=True, trans=1)
        fill = means[None] + jnp.einsum("kde,rke->rkd", covariances, alpha[..., 0])
    if covariance:
        w = jax.scipy.linalg.solve_triangular(
            chol, obs[:, None, :, None] * covariances[None], lower=True
        )
        explained = jnp.einsum("rkij,rkil->rkjl", w, w)  # Σ_mo Σ_oo⁻¹ Σ_om on the m block
        cond_cov = (
            missing[:, None, :, None] * (covariances[None] - explained) * missing[:, None, None, :]
        )
    return jnp.sum(z * z, axis=-1), log_det, fill, cond_cov


def summed_conditional_variances(resp: jax.Array, cond_cov: jax.Array) -> jax.Array:
    """(K, D) ``Σ_n r_nk diag(C_nk)`` from :func:`conditionals`' (R, K, D, D) ``C``."""
    return jnp.einsum("nk,nkd->kd", resp, diagonal(cond_cov))


def summed_conditional_covariances(resp: jax.Array, cond_cov: jax.Array) -> jax.Array:
    """(K, D, D) ``Σ_n r_nk C_nk`` from :func:`conditionals`' (R, K, D, D) ``C``."""
    return jnp.einsum("nk,nkde->kde", resp, cond_cov)


def completed_second_moments(resp, dx, cond_cov, source: ModuleType) -> jax.Array:
    """(K, D, D) ``Σ_n r_nk ((x̂_nk − s_k)(x̂_nk − s_k)ᵀ + C_nk)``.

    Args:
        resp: (R, K) responsibilities.
        dx: (R, K, D) ``x̂_nk − s_k``.
        cond_cov: the conditional covariances in the layout of ``source``'s
            :func:`conditionals`.
        source: the covariance module of the parameters that completed the rows.
    """
    cond = source.summed_conditional_covariances(resp, cond_cov)
    return jnp.einsum("nk,nkd,nke->kde", resp, dx, dx) + cond
