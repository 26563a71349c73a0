"""A Gaussian mixture with a uniform noise component (Banfield & Raftery 1993).

The density is ``Σ_k π_k N(x | μ_k, Σ_k) + π_0 V⁻¹``: the Gaussian components of
any covariance type (including R mclust's 14 models) and a constant density
``V⁻¹`` over the data's region with its own weight ``π_0``, as R mclust's
``Vinv``. ``V`` is mclust's ``hypvol``: the smaller of the volumes of the data's
bounding box and of the bounding box of its principal-component scores.

EM runs on the generic loop (:func:`jaxem._src.loop.iterate_statistics`) from
starting responsibilities with a noise column, as mclust's ``me(..., Vinv=)``:
the E-step spreads each row over the K Gaussians and the noise; the M-step is the
covariance type's (:func:`~jaxem._src.gmm.steps.maximize`, warm-started) on the
Gaussian columns, the weights ``n_k / N`` for all K + 1.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src import loop
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.criteria import n_parameters as gaussian_parameters
from jaxem._src.gmm.density import weighted_log_prob
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.steps import maximize, suff_stats
from jaxem._src.validation import as_data, check_scalar, check_static_int

__all__ = ["NoiseParams", "e_step", "fit_from_resp", "log_hypervolume", "n_parameters"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NoiseParams:
    """A Gaussian mixture and a uniform noise component.

    Attributes:
        gaussian: :class:`~jaxem.gmm.GMMParams` of the K Gaussian components; its
            weights are ``π_k`` and sum to ``1 − π_0``.
        noise_weight: () ``π_0``.
        log_noise_density: () ``log V⁻¹`` (mclust's ``log(Vinv)``).
    """

    gaussian: GMMParams
    noise_weight: jax.Array
    log_noise_density: jax.Array


def log_hypervolume(x: ArrayLike) -> jax.Array:
    """() ``log V``, R mclust's ``hypvol``: the smaller log-volume of the bounding
    boxes of ``x`` (N, D) and of its principal-component scores."""
    x = as_data(x)
    xc = x - jnp.mean(x, axis=0)
    _, _, vt = jnp.linalg.svd(xc, full_matrices=False)
    scores = xc @ vt.T

    def log_box(a):
        return jnp.sum(jnp.log(jnp.max(a, axis=0) - jnp.min(a, axis=0)))

    return jnp.minimum(log_box(x), log_box(scores))


def joint_log_prob(params: NoiseParams, x: jax.Array) -> jax.Array:
    """(N, K + 1) ``log π_k N(x_n | μ_k, Σ_k)`` and, last, ``log π_0 V⁻¹``."""
    gaussian = weighted_log_prob(params.gaussian, x)
    noise = jnp.log(params.noise_weight) + params.log_noise_density
    return jnp.concatenate([gaussian, jnp.broadcast_to(noise, (x.shape[0], 1))], axis=1)


def e_step(params: NoiseParams, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``(resp, mean log-likelihood)``: (N, K + 1) responsibilities, the noise last."""
    x = as_data(x)
    joint = joint_log_prob(params, x)
    log_norm = jax.nn.logsumexp(joint, axis=1, keepdims=True)
    return jnp.exp(joint - log_norm), jnp.mean(log_norm)


def n_parameters(params: NoiseParams) -> jax.Array:
    """The Gaussian mixture's free parameters and two for the noise, its weight
    and its density ``V⁻¹`` (estimated from the data's range), as mclust's
    ``nMclustParams(..., noise = TRUE)`` counts."""
    return gaussian_parameters(params.gaussian) + 2


def _m_step(resp, x, covariance_type, reg_covar, previous, log_noise_density):
    k = resp.shape[1] - 1
    stats = suff_stats(resp[:, :k], x, covariance_type=covariance_type)
    gaussian = maximize(stats, reg_covar=reg_covar, previous=previous)
    counts = jnp.sum(resp, axis=0)
    weights = counts / jnp.sum(counts)
    gaussian = dataclasses.replace(gaussian, weights=weights[:k])
    return NoiseParams(gaussian, weights[k], log_noise_density)


def fit_from_resp(
    x: ArrayLike,
    resp: ArrayLike,
    *,
    covariance_type: str = "full",
    log_noise_density: ArrayLike | None = None,
    tol: ArrayLike = 1e-5,
    max_iter: int = 1000,
    reg_covar: ArrayLike = 0.0,
    criterion: str = "relative",
) -> loop.EMResult:
    """EM for a Gaussian mixture with a noise component from responsibilities.

    R mclust's ``me(data, modelName, z, Vinv = Vinv)``: the first M-step reads
    ``resp``, then E- and M-steps alternate until the stopping rule holds
    (by default mclust's: the relative change of the log-likelihood under
    ``tol``). Traceable (``covariance_type``, ``max_iter`` and ``criterion`` are
    static).

    Args:
        x: (N, D) data.
        resp: (N, K + 1) starting responsibilities, the last column the noise
            (for a hard start, one-hot rows).
        covariance_type: any of :data:`~jaxem.gmm.MCLUST_MODELS` or the four types.
        log_noise_density: () ``log V⁻¹``; by default ``−``:func:`log_hypervolume`
            of ``x``, mclust's default.
        tol, max_iter, criterion: the loop's stopping rule (:func:`jaxem.iterate`).
        reg_covar: added to the Gaussian components' sample covariances.

    Returns:
        :class:`~jaxem.EMResult` with :class:`NoiseParams` (one M-step past the
        iteration at which the rule held, as every jaxem loop; ``history`` has
        the mean log-likelihoods).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem.gmm import noise
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> x = x.at[:20].set(jax.random.uniform(jax.random.key(1), (20, 2), minval=-8, maxval=8))
        >>> resp = jnp.zeros((200, 2)).at[20:, 0].set(1).at[:20, 1].set(1)
        >>> result = noise.fit_from_resp(x, resp, covariance_type="VVV")
        >>> bool(result.params.noise_weight > 0.05)
        True
    """
    covariance_type = cov_lib.check_covariance_type(covariance_type)
    check_scalar("tol", tol)
    check_scalar("reg_covar", reg_covar)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    loop.check_criterion(criterion)
    x = as_data(x)
    resp = jnp.asarray(resp, x.dtype)
    if resp.ndim != 2 or resp.shape[0] != x.shape[0] or resp.shape[1] < 2:
        raise ValueError(
            f"resp must have shape (n_samples, K + 1) with the noise last, N = {x.shape[0]}; "
            f"got {resp.shape}"
        )
    if log_noise_density is None:
        log_noise_density = -log_hypervolume(x)
    log_v = jnp.asarray(log_noise_density, x.dtype)
    reg = jnp.asarray(reg_covar, x.dtype)
    k, d = resp.shape[1] - 1, x.shape[1]
    unit = cov_lib.get(covariance_type).unit(k, d, x.dtype)

    def maximize_(stats, params):
        return _m_step(stats, x, covariance_type, reg, params.gaussian.covariances, log_v)

    def evaluate(params):
        return e_step(params, x)

    frame = NoiseParams(
        GMMParams(
            jnp.full((k,), 1 / (k + 1), x.dtype),
            jnp.zeros((k, d), x.dtype),
            unit,
            unit,
            covariance_type,
        ),
        jnp.asarray(1 / (k + 1), x.dtype),
        log_v,
    )
    # the loop carries responsibilities as the statistics: the M-step needs the
    # whole (N, K + 1) matrix anyway (two passes for the centred second moments)
    return loop.iterate_statistics(
        maximize_, evaluate, frame, resp, True, tol=tol, max_iter=max_iter, criterion=criterion,
        total=x.shape[0],
    )  # fmt: skip


def check_noise_rows(noise: np.ndarray, n_samples: int) -> np.ndarray:
    """A boolean (N,) mask of the rows that start as noise."""
    noise = np.asarray(noise)
    if noise.shape != (n_samples,) or noise.dtype != bool:
        raise ValueError(f"noise must be a boolean mask of shape ({n_samples},); got {noise!r}")
    return noise
