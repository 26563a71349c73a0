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
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src import loop
from jaxem._src.engine import SelectionResult, check_information_criterion, criterion_score
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.criteria import n_parameters as gaussian_parameters
from jaxem._src.gmm.density import check_data_for, weighted_log_prob
from jaxem._src.gmm.family import degenerate, trim
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.steps import maximize, suff_stats
from jaxem._src.init import init_resp
from jaxem._src.validation import (
    as_data,
    check_key,
    check_scalar,
    check_static_int,
    concrete,
    constant_features,
    name_constant_features,
)

__all__ = [
    "NoiseParams",
    "e_step",
    "fit_from_resp",
    "log_hypervolume",
    "n_parameters",
    "predict",
    "select",
]


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


def _default_noise_density(x: jax.Array) -> jax.Array:
    """``−log V`` (:func:`log_hypervolume`), and a clear error where the data's
    bounding box has no volume (a constant feature): the noise density ``V⁻¹``
    is then infinite and every fit NaN."""
    log_v = -log_hypervolume(x)
    value = concrete(log_v)
    if value is not None and not np.isfinite(value):
        constant = constant_features(np.asarray(x))
        which = name_constant_features(constant) if constant else "its range is 0"
        raise ValueError(
            f"the noise component's density V⁻¹ is 1 / the volume of the data's bounding box, "
            f"which is 0 here ({which}): drop such features or pass log_noise_density"
        )
    return log_v


def joint_log_prob(params: NoiseParams, x: jax.Array) -> jax.Array:
    """(N, K + 1) ``log π_k N(x_n | μ_k, Σ_k)`` and, last, ``log π_0 V⁻¹``."""
    gaussian = weighted_log_prob(params.gaussian, x)
    noise = jnp.log(params.noise_weight) + params.log_noise_density
    return jnp.concatenate([gaussian, jnp.broadcast_to(noise, (x.shape[0], 1))], axis=1)


def e_step(params: NoiseParams, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``(resp, mean log-likelihood)``: (N, K + 1) responsibilities, the noise last."""
    x = check_data_for(params.gaussian, x)
    joint = joint_log_prob(params, x)
    log_norm = jax.nn.logsumexp(joint, axis=1, keepdims=True)
    return jnp.exp(joint - log_norm), jnp.mean(log_norm)


def n_parameters(params: NoiseParams) -> jax.Array:
    """The Gaussian mixture's free parameters and two for the noise, its weight
    and its density ``V⁻¹`` (estimated from the data's range), as mclust's
    ``nMclustParams(..., noise = TRUE)`` counts; 1 (``V⁻¹``) when no Gaussian
    component is active (mclust's G = 0)."""
    n_active = jnp.sum(params.gaussian.weights > 0)
    return jnp.where(n_active > 0, gaussian_parameters(params.gaussian) + 2, 1)


def predict(params: NoiseParams, x: ArrayLike) -> jax.Array:
    """(N,) int32 MAP labels: ``0..K−1`` a Gaussian component, ``−1`` the noise
    (R mclust's classification minus one, its noise label 0 becoming −1)."""
    resp, _ = e_step(params, x)
    labels = jnp.argmax(resp, axis=1).astype(jnp.int32)
    return jnp.where(labels == resp.shape[1] - 1, -1, labels)


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
        log_noise_density = _default_noise_density(x)
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


# ------------------------------------------------------------------ selection


def _hc_labels(key: jax.Array, x_clean: jax.Array, ks: jax.Array, k_max: int) -> jax.Array:
    """(M, m) start labels of the m non-noise rows for every K of ``ks``: the
    ``"hc_vvv"`` start (one tree, cut at each K; ``−2`` for a row left out of a
    random subset, and for every row when K = 0)."""

    def one(k):
        resp = init_resp(key, x_clean, k_max, "hc_vvv", jnp.maximum(k, 1))
        labels = jnp.argmax(resp, axis=1).astype(jnp.int32)
        return jnp.where((jnp.sum(resp, axis=1) > 0) & (k > 0), labels, -2)

    return jax.vmap(one)(ks)


_hc_program = jax.jit(_hc_labels, static_argnames=("k_max",))


def _select_cells(x, labels, log_v, tol, reg_covar, *, covariance_type, k_max, max_iter):
    """EM with the noise component from every start of ``labels`` (M, N): ``0..K−1``
    a Gaussian component, ``−1`` the noise, ``−2`` no start (a zero row). One
    program per covariance type: every K inside ``k_max`` columns, those beyond K
    inactive (weight 0).

    Returns:
        ``(EMResult batched over M, mean log-likelihood where the rule held (M,),
        parameter counts (M,), Σ_n log max_k r_nk (M,), degenerate (M,))``.
    """
    variances = jnp.var(x, axis=0)

    def one(row):
        column = jnp.where(row == -1, k_max, jnp.where(row < 0, k_max + 1, row))
        resp = jax.nn.one_hot(column, k_max + 1, dtype=x.dtype)  # k_max + 1: a zero row
        result = fit_from_resp(
            x, resp, covariance_type=covariance_type, log_noise_density=log_v, tol=tol,
            max_iter=max_iter, reg_covar=reg_covar, criterion="relative",
        )  # fmt: skip
        params = result.params
        at_rule = result.history[jnp.maximum(result.n_iter - 1, 0)]
        joint = joint_log_prob(params, x)
        best = jnp.max(joint, axis=1) - jax.nn.logsumexp(joint, axis=1)
        bad = degenerate(params.gaussian, variances, reg_covar)
        return result, at_rule, n_parameters(params), jnp.sum(best), bad

    return jax.vmap(one)(labels)


_select_program = jax.jit(_select_cells, static_argnames=("covariance_type", "k_max", "max_iter"))


def _trim(params: NoiseParams) -> NoiseParams:
    """Concrete parameters without their inactive Gaussian components."""
    return dataclasses.replace(params, gaussian=trim(params.gaussian))


def select(
    x: ArrayLike,
    noise: ArrayLike,
    *,
    n_components: Iterable[int] = range(10),
    covariance_types: Iterable[str] = cov_lib.MCLUST_MODELS,
    criterion: str = "bic",
    log_noise_density: ArrayLike | None = None,
    partitions: Sequence[ArrayLike] | None = None,
    tol: ArrayLike = 1e-5,
    max_iter: int = 1000,
    reg_covar: ArrayLike = 0.0,
    key: jax.Array | None = None,
) -> SelectionResult:
    """Model-based clustering with a noise component, R mclust's procedure.

    ``Mclust(x, G, modelNames, initialization = list(noise = noise))``
    (Fraley & Raftery 2002, section 5; mclust 6.0's ``mclustBIC``): given the
    rows first taken for noise,

    1. the noise density is ``V⁻¹``, by default mclust's (:func:`log_hypervolume`);
    2. every K starts from the model-based agglomeration of the other rows only
       (``hc`` VVV on their ``"SVD"`` transform: jaxem's ``"hc_vvv"`` start,
       :func:`jaxem.hierarchical.vvv_tree`, one tree cut at each K), those rows
       one-hot in their cluster and the noise rows in the noise column;
    3. EM with the noise component (:func:`fit_from_resp`, mclust's ``me``
       with ``Vinv``: its stopping rule, no regularisation by default) runs
       from that start for every covariance type and K (one compiled program
       per covariance type, every K in it);
    4. the criterion chooses: BIC ``−2 log L + p log N`` with ``p`` counting the
       noise weight and ``V⁻¹`` (:func:`n_parameters`), as mclust's
       ``bic(..., noise = TRUE)``; K = 0 is the noise alone
       (``log L = N log V⁻¹``, ``p = 1``).

    On data with tied distances (rounded measurements) the agglomeration can
    merge differently from mclust's Fortran (:func:`~jaxem.hierarchical.vvv_tree`),
    so a cell can start elsewhere and reach another optimum; ``partitions``
    runs the procedure from given starts instead (for example mclust's own
    ``hclass`` partitions, to compare everything but the agglomeration).

    Args:
        x: (N, D) data.
        noise: (N,) boolean, the rows initially taken for noise.
        n_components: the numbers K of Gaussian components to try; mclust's
            default with noise is 0…9 (0: noise only).
        covariance_types: any of :data:`~jaxem.gmm.MCLUST_MODELS` (default: all
            14) or the four scikit-learn names.
        criterion: ``"bic"`` (mclust's choice), ``"icl"`` (BIC ``− 2 Σ_n log
            max_k r_nk``, the noise column included, as mclust's ``icl``) or
            ``"aic"``; lower is better.
        log_noise_density: () ``log V⁻¹``; by default ``−log_hypervolume(x)``.
        partitions: optional starts instead of the agglomeration, one (m,) int
            array per entry of ``n_components`` (that K's labels ``0..K−1`` of the
            m non-noise rows, in order; ignored for K = 0).
        tol, max_iter: the relative stopping rule ``|ΔL| / (1 + |L|) ≤ tol``
            (mclust's ``emControl()``: 1e-5) and the iteration limit (static).
        reg_covar: added to the sample covariances (mclust: 0).
        key: used only when more than :data:`~jaxem._src.init.HC_MAX_SAMPLES`
            rows are not noise: the agglomeration then runs on a random subset
            (the rows outside it enter at the first E-step), as ``"hc_vvv"``
            does; default ``jax.random.key(0)``.

    Returns:
        :class:`~jaxem.SelectionResult`: ``scores`` (T, M), ``log_likelihoods``
        the mean log-likelihood of every fit where the stopping rule held
        (mclust's ``loglik`` / N), ``n_parameters`` and
        ``classification_log_likelihoods`` with the noise column, ``params``
        the chosen :class:`NoiseParams` (inactive components dropped;
        :func:`predict` gives mclust's classification, noise −1), ``fits`` the
        T :class:`~jaxem.EMResult` batched over ``n_components`` (its params one
        M-step past the log-likelihood, as every jaxem loop). A fit that
        ended degenerate (a component singular but for ``reg_covar``,
        :func:`jaxem.gmm.degenerate`) or not finite scores NaN and is not
        chosen, as mclust's NA.

    Example (not a doctest: it compiles an agglomeration and one EM program
    per covariance type, seconds each)::

        import jax, jax.numpy as jnp
        from jaxem.gmm import noise

        x = jax.random.normal(jax.random.key(0), (150, 2))
        x = x.at[:30].set(jax.random.uniform(jax.random.key(1), (30, 2), minval=-6, maxval=6))
        r = noise.select(x, jnp.arange(150) < 30, n_components=[0, 1, 2],
                         covariance_types=["VII", "VVV"])
        r.best_model, r.best_n_components   # ('VII', 1)
        labels = noise.predict(r.params, x)  # (150,): 0 the Gaussian, -1 the noise
    """
    x = as_data(x)
    n, _ = x.shape
    noise = check_noise_rows(np.asarray(noise), n)
    types = cov_lib.check_covariance_types(covariance_types)
    ks = tuple(check_static_int("n_components", k, minimum=0) for k in n_components)
    if not ks:
        raise ValueError("n_components must name at least one number of components")
    check_information_criterion(criterion)
    check_scalar("tol", tol)
    check_scalar("reg_covar", reg_covar)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    clean = np.flatnonzero(~noise)
    if not noise.any():
        raise ValueError("noise must mark at least one row as noise")
    if max(ks) > clean.size:
        raise ValueError(
            f"n_components up to {max(ks)} must be <= the number of rows not marked as "
            f"noise ({clean.size})"
        )
    k_max = max(max(ks), 1)
    if partitions is None:
        key = jax.random.key(0) if key is None else key
        check_key(key)
        start = np.asarray(_hc_program(key, x[clean], jnp.asarray(ks), k_max=k_max))
    else:
        start = _check_partitions(partitions, ks, clean.size)
    labels = np.full((len(ks), n), -1, np.int32)
    labels[:, clean] = start
    if log_noise_density is None:
        log_noise_density = _default_noise_density(x)
    log_v = jnp.asarray(log_noise_density, x.dtype)
    scores, lls, counts, classification, fits = [], [], [], [], []
    for covariance_type in types:
        result, at_rule, n_par, best, bad = _select_program(
            x, jnp.asarray(labels), log_v, jnp.asarray(tol, x.dtype),
            jnp.asarray(reg_covar, x.dtype), covariance_type=covariance_type,
            k_max=k_max, max_iter=max_iter,
        )  # fmt: skip
        score = criterion_score(criterion, n_par, at_rule, n, best)
        failed = np.asarray(bad | ~jnp.isfinite(score))
        scores.append(np.where(failed, np.nan, np.asarray(score)))
        lls.append(np.asarray(at_rule))
        counts.append(np.asarray(n_par))
        classification.append(np.asarray(best))
        fits.append(result)
    scores_array = np.stack(scores)
    if np.all(np.isnan(scores_array)):
        raise ValueError("every fit ended degenerate or non-finite; try reg_covar > 0")
    t, m = np.unravel_index(np.nanargmin(scores_array), scores_array.shape)
    lls_array = np.stack(lls)
    chosen = jax.tree.map(lambda a: a[m], fits[t].params)
    return SelectionResult(
        scores=scores_array,
        log_likelihoods=lls_array,
        models=types,
        n_components=ks,
        criterion=criterion,
        best_model=types[t],
        best_n_components=ks[m],
        params=_trim(chosen),
        log_likelihood=float(lls_array[t, m]),
        fits=tuple(fits),
        n_parameters=np.stack(counts),
        classification_log_likelihoods=np.stack(classification),
        n_samples=float(n),
    )


def _check_partitions(partitions, ks, m):
    if len(partitions) != len(ks):
        raise ValueError(
            f"partitions must hold one label array per entry of n_components ({len(ks)}); "
            f"got {len(partitions)}"
        )
    out = np.full((len(ks), m), -2, np.int32)
    for i, (k, labels) in enumerate(zip(ks, partitions, strict=True)):
        if k == 0:
            continue
        labels = np.asarray(labels)
        if labels.shape != (m,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"partitions[{i}] must be ({m},) integer labels of the rows not marked as "
                f"noise; got {labels.dtype} {labels.shape}"
            )
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"partitions[{i}] must have labels in 0..{k - 1} for K = {k}")
        out[i] = labels
    return out
