"""Fitting Gaussian mixtures: the Gaussian family on the engine, with its defaults.

Every function here builds a :class:`~jaxem._src.gmm.family.GaussianFamily`
and calls the engine (:func:`jaxem.fit`, :func:`jaxem.select`); nothing here
runs EM itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from jaxem._src import api
from jaxem._src.acceleration import Squarem
from jaxem._src.engine import REFINE_MAX_ITER, REFINE_TOL, FitResult, SelectionResult
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.family import GaussianFamily, check_formulation
from jaxem._src.gmm.layout import LAYOUT_MIN_ROWS
from jaxem._src.gmm.moments import ACCURACY_THRESHOLD
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.prior import Prior, check_prior
from jaxem._src.implicit import Implicit
from jaxem._src.loop import EMResult
from jaxem._src.sources import InMemory, PassInfo, row_bucket
from jaxem._src.validation import as_data, check_scalar, concrete, dtype_of, evaluate_now

__all__ = [
    "family",
    "fit",
    "fit_chunks",
    "fit_from",
    "fit_sharded",
    "fit_sharded_from",
    "run_batch",
    "select",
]


def family(
    covariance_type: str = "full",
    *,
    reg_covar: ArrayLike = 1e-6,
    prior: Prior | str | None = None,
    formulation: str = "auto",
    n_features: int | None = None,
) -> GaussianFamily:
    """The Gaussian mixture family of one covariance type, for :func:`jaxem.fit`
    and :func:`jaxem.select`.

    Args:
        covariance_type: ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"`` or one of
            R mclust's 14 models (:data:`~jaxem.gmm.MCLUST_MODELS`: ``"EII"``, ...,
            ``"VVV"``; ``"VII"``, ``"VVI"``, ``"EEE"`` and ``"VVV"`` are the four
            types under mclust's names).
        reg_covar: added to the covariance diagonal in every M-step (traced); for
            mclust's models, to every component's sample covariance before the
            model's maximization.
        prior: MAP EM under a conjugate prior (:mod:`jaxem.gmm.prior`): a
            :class:`~jaxem.gmm.Prior`, or ``"default"`` for R mclust's default
            (:func:`~jaxem.gmm.default_prior` of the data, with K the number of
            active components).
        formulation: ``"auto"`` (default), ``"moments"`` or ``"direct"``: how
            each pass is computed (:mod:`jaxem._src.gmm.passes`).
        n_features: D, to check a given prior against (optional).

    Returns:
        A :class:`GaussianFamily`.

    Example:
        >>> import jax, jaxem
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> result = jaxem.fit(gmm.family("diag"), jax.random.key(1), x, 2, n_init=2)
        >>> result.params.covariances.shape
        (2, 2)
    """
    covariance_type = cov_lib.check_covariance_type(covariance_type)
    check_scalar("reg_covar", reg_covar)
    if prior is not None and covariance_type not in cov_lib.COVARIANCE_TYPES:
        raise ValueError(
            f"prior: a conjugate prior needs covariance_type in {cov_lib.COVARIANCE_TYPES} "
            f"(or an mclust alias of one); got {covariance_type!r}"
        )
    check_formulation(formulation)
    default = isinstance(prior, str)
    if default and prior != "default":
        raise ValueError(f"prior must be a gmm.Prior, 'default' or None; got {prior!r}")
    if not default and n_features is not None:
        check_prior(prior, covariance_type, n_features)
    elif not default and prior is not None:
        check_prior(prior, covariance_type, int(np.shape(prior.mean)[0]))
    return GaussianFamily(
        reg_covar=reg_covar,
        prior=None if default else prior,
        covariance_type=covariance_type,
        formulation=formulation,
        default_prior=default,
    )


def _n_features(x: Any) -> int | None:
    if isinstance(x, (api.ChunkedData, api.ShardedData)):
        return None
    return int(np.shape(x)[1]) if np.ndim(x) == 2 else None


#: Full covariances of at least this many features are fitted by the direct
#: formulation: the moment features (``D(D + 1)/2 + D + 1`` columns per row) then
#: cost more to stream through the two products than the direct route's products
#: of the rows themselves. Measured (warm k-means-started fits, float32, 2 cores;
#: auto / direct): 3 000 × 16, 24, 32, 40 with K = 5: 0.83, 0.60, 0.79, 0.95;
#: 20 000 × 24, 32, 48 with K = 8: 0.52, 0.74, 1.40; 20 000 × 40, K = 16: 1.08;
#: 20 000 × 48, K = 20: 1.10; 5 000 × 48 and 64, K = 5: 1.46 and 1.42; 3 000 × 50,
#: K = 10, the default fit with n_init = 10: 1.47.
DIRECT_MIN_FEATURES = 40

#: Data of at most this many rows (after rounding up to the row bucket) whose
#: fit would keep the per-pass choice in float32 take the direct formulation:
#: there a pass costs about the loop's fixed overhead either way, while
#: compiling the moment route, its check and the direct fallback side by side
#: costs about a second more than the direct route alone. Measured (float32, 2
#: cores, fresh processes; first call / later call, auto → direct): one restart,
#: Old Faithful, K = 3: 4.15 → 3.04 s / 2.9 → 3.0 ms; 150 × 4, K = 3: 4.0 → 3.1
#: s / 2.6 → 2.3 ms; 512 × 10, K = 5: 4.9 → 3.4 s / 3.6 → 4.4 ms. With
#: ``n_init=10``, since the direct pass is component-major
#: (experiments/direct_layout.py; before, it made these later calls up to 1.45×
#: slower and the rule held for one restart only): Old Faithful 8.1 → 7.5–8.1 s /
#: 39–41 → 33 ms; 150 × 4, K = 3: 8.5 → 7.5 s / 18.5 → 18.0 ms; 512 × 3, K = 3:
#: 8.8 → 8.0 s / 92 → 93 ms; 512 × 10, K = 4: 11.4 → 10.5 s / 262 → 284 ms;
#: 400 × 8, K = 5, separated: 11.1 → 9.8 s / 168 → 117 ms. Larger data keep
#: the per-pass choice (2 000 × 4, K = 4, ``n_init=10``: 63 → 72 ms later).
DIRECT_MAX_ROWS = 512

#: Float32 data of at most this many features take the direct formulation for
#: full, diagonal and spherical covariances whenever they have fewer rows than a
#: layout of the moment features needs (:data:`~jaxem._src.gmm.layout.LAYOUT_MIN_ROWS`,
#: after rounding up to the row bucket). There the direct pass is no slower than
#: the moment route with its check, and the fit compiles one route instead of
#: three. Measured (experiments/formulation_crossover.py, float32, 2 cores; 2 000,
#: 5 000 and 8 000 rows, K = D or 5, overlapping and far apart, ``n_init`` 1 and
#: 10): later calls direct / auto with 3 and 4 features full 0.67–1.00 (medians
#: 0.83, 0.89), diagonal 0.56–1.07, spherical 0.45–0.99, but tied 0.82–1.76 (median
#: 1.25 at 3 features); with 8 features full 0.77–1.11, diagonal 0.96–1.39,
#: spherical 0.88–1.22, tied 1.01–2.08. First calls in fresh processes (``--first-calls``,
#: 4 features, ``n_init=1``): full 1.71–1.87 → 1.25–1.56 s, diagonal 1.39–1.65 →
#: 1.12–1.32 s, spherical 1.37–1.56 → 1.07–1.34 s (``n_init=10``: −0.78 to +0.22 s).
DIRECT_MAX_NARROW_FEATURES = 4


def resolve_formulation(
    formulation: str,
    x: Any,
    reg_covar: ArrayLike,
    covariance_type: str | None = None,
) -> str:
    """``"auto"`` decided on the host where the data decide it, so that the
    compiled fit holds one formulation instead of both.

    Full covariances (``covariance_type="full"``) of at least
    :data:`DIRECT_MIN_FEATURES` features take the direct formulation, which is
    faster there and accurate in every regime; so do float32 data of at most
    :data:`DIRECT_MAX_NARROW_FEATURES` features with fewer rows than a layout
    needs, for full, diagonal and spherical covariances.

    After any M-step every covariance is at least ``reg_covar·I`` and every mean
    lies in the data's bounding box (as does the centre of the moment features),
    so ``ρ_k = ‖(μ_k − c)P_k‖² ≤ Σ_d span_d² / reg_covar``. When
    ``ε · Σ_d span_d² / reg_covar`` is under the accuracy threshold of
    :func:`jaxem._src.gmm.moments.is_accurate`, every pass of the fit would pass
    the check, and the fit compiles the moment formulation alone. That holds in
    float64 with the default ``reg_covar=1e-6`` for data spanning up to about
    300 units per feature. ``ε`` is that of the dtype the fit computes in (the
    one JAX gives the data): float64 data compute in float32 unless
    ``jax_enable_x64`` is on, and keep the per-pass choice. Otherwise
    (float32, traced data, ``reg_covar=0``) ``"auto"`` keeps its per-pass choice
    too, except on float32 data of at most :data:`DIRECT_MAX_ROWS` rows, which
    take the direct formulation (a smaller program, compiled about a second
    sooner).
    """
    if formulation != "auto" or isinstance(x, (api.ChunkedData, api.ShardedData)):
        return formulation
    if _direct_by_shape(covariance_type, x):
        return "direct"
    dtype = _computing_dtype(x)
    if dtype is None:
        return formulation  # the fit's own validation names what is wrong
    if dtype == np.float64:
        return _resolve_by_span(x, reg_covar)
    small = np.ndim(x) == 2 and row_bucket(np.shape(x)[0]) <= DIRECT_MAX_ROWS
    return "direct" if small else formulation


def _computing_dtype(x: Any) -> np.dtype | None:
    """The real dtype a fit of ``x`` computes in (the one JAX gives the data:
    canonical, float32 without x64; integers in the default float), or None
    for data that are not real numbers."""
    try:
        dtype = dtype_of("x", x)
    except (TypeError, ValueError):
        return None
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        return None
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    return dtype


def _resolve_by_span(x: Any, reg_covar: ArrayLike) -> str:
    """``"moments"`` where the span of float64 data bounds every pass's error
    under the threshold (:func:`resolve_formulation`), else ``"auto"``."""
    formulation = "auto"
    try:
        reg = concrete(reg_covar)
    except (TypeError, ValueError):
        return formulation  # the fit's own validation names what is wrong
    if reg is None or not float(reg) > 0:
        return formulation
    if isinstance(x, jax.core.Tracer) or np.ndim(x) != 2 or np.size(x) == 0:
        return formulation
    if isinstance(x, jax.Array):  # reduced where it lives
        finite, span2 = evaluate_now(_finite_span2, x)
    else:
        values = np.asarray(x, np.float64)
        finite, span2 = np.all(np.isfinite(values)), np.sum(np.ptp(values, axis=0) ** 2)
    if not bool(finite):
        return formulation
    bound = np.finfo(np.float64).eps * float(span2) / float(reg)
    return "moments" if bound < ACCURACY_THRESHOLD else formulation


def _direct_by_shape(covariance_type: str | None, x: Any) -> bool:
    """Whether ``"auto"`` is the direct formulation by the data's shape
    (static): full covariances of at least :data:`DIRECT_MIN_FEATURES`
    features, or float32 data of at most :data:`DIRECT_MAX_NARROW_FEATURES`
    features and fewer rows than a layout needs, for full, diagonal and
    spherical covariances."""
    n_features = _n_features(x)
    if n_features is None:
        return False
    if covariance_type == "full" and n_features >= DIRECT_MIN_FEATURES:
        return True
    return (
        covariance_type in ("full", "diag", "spherical")
        and n_features <= DIRECT_MAX_NARROW_FEATURES
        and row_bucket(np.shape(x)[0]) < LAYOUT_MIN_ROWS
        and _computing_dtype(x) == np.float32
    )


@jax.jit
def _finite_span2(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Whether ``x`` (N, D) is finite, and ``Σ_d span_d²``, where ``x`` lives (no
    copy of accelerator data to the host)."""
    span = jnp.max(x, axis=0) - jnp.min(x, axis=0)
    return jnp.all(jnp.isfinite(x)), jnp.sum(jnp.square(span.astype(jnp.float64)))


def fit(
    key: jax.Array,
    x: Any,
    n_components: int,
    *,
    covariance_type: str = "full",
    init: str = "auto",
    n_init: int = 1,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    n_active: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    formulation: str = "auto",
    prior: Prior | str | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
    accelerate: str | Squarem | None = None,
    implicit: bool | Implicit = False,
) -> FitResult:
    """Fit a Gaussian mixture by EM: initialisation and ``n_init`` restarts in one call.

    The restarts run as one ``vmap`` until scikit-learn's rule stops each
    (``tol``, ``max_iter``: the screening); then the ``n_refine`` best continue
    until Aitken's rule says less than ``refine_tol`` is left to gain (the
    refinement, Biernacki et al.'s "em-EM"), and the one with the highest final
    log-likelihood is returned. Screening alone ranks restarts that stopped at
    different distances from their optima: on a flat ridge the change rule stops
    early and a restart that would end best can look worse than one that
    stopped near its own, lower, optimum. The program is compiled once per static
    configuration (``n_components``, ``covariance_type``, ``init``, ``n_init``,
    ``max_iter``, data shape and dtype); ``key``, ``x``, ``tol``, ``reg_covar`` and
    ``n_active`` are traced, so ``fit`` can be vmapped over any of them.

    Args:
        key: JAX PRNG key (restart ``i`` uses ``jax.random.split(key, n_init)[i]``).
        x: (N, D) data; or :func:`jaxem.chunks` (out of core) or
            :func:`jaxem.sharded` (several devices).
        n_components: K, static: the number of components (or the maximum, with
            ``n_active``).
        covariance_type: ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"`` or one of
            R mclust's 14 models (:data:`~jaxem.gmm.MCLUST_MODELS`), as :func:`family`.
        init: ``"auto"`` (default): the restarts spread over several methods
            (:func:`~jaxem._src.gmm.family.portfolio`: k-means on standardised
            data, R mclust's model-based agglomeration, Ward agglomeration,
            k-means, random data points), which finds better optima than any one
            method on real data whose features differ in scale; or one method of
            :data:`~jaxem.gmm.INIT_METHODS` for every restart (``"kmeans"``,
            ``"k-means++"``, ``"random"`` and ``"random_from_data"`` have
            scikit-learn's semantics).
            :attr:`FitResult.initializer` names the method of the chosen restart.
        n_init: number of restarts (static). Restarts that end degenerate (a
            likelihood spike on a singular component) are chosen only when every
            restart does.
        tol: tolerance on the change of the mean log-likelihood.
        max_iter: maximum EM iterations per restart (static).
        reg_covar: added to the covariance diagonal.
        n_active: fit a mixture of ``n_active ≤ K`` components (traced); the
            other components have weight 0. One compiled program covers every K.
        sample_weight: optional (N,) non-negative weights; integer weights give
            the fit of the data with rows repeated (traced: vmap over weights
            gives bootstrap fits in one call).
        formulation: ``"auto"`` (default), ``"moments"`` or ``"direct"``: how each
            EM pass is computed (:mod:`jaxem._src.gmm.passes`); ``"auto"`` is
            fast and takes the direct route in the passes where the moment
            formulation would lose accuracy.
        prior: MAP EM under a conjugate prior (:mod:`jaxem.gmm.prior`): a
            :class:`~jaxem.gmm.Prior`, or ``"default"`` for R mclust's
            default (:func:`~jaxem.gmm.default_prior` with K = ``n_active``
            or ``n_components``). The log-likelihoods reported (and the stopping
            rule) are then the mean log posterior ``(Σ log p(x_n) + log p(θ)) / N``.
        n_refine: how many of the best screened restarts to refine (static,
            ``0 ≤ n_refine ≤ n_init``); default: none when ``n_init`` is 1, else
            a quarter of the restarts, rounded up. ``n_refine=0`` is
            scikit-learn's procedure exactly.
        refine_tol: the refinement stops when Aitken's extrapolation predicts
            a gain in mean log-likelihood under this.
        refine_max_iter: at most this many more iterations per refined restart
            (static).
        accelerate: ``None`` (plain EM) or ``"squarem"`` / :class:`jaxem.Squarem`
            (static): SQUAREM in unconstrained coordinates (:func:`jaxem.fit`).
        implicit: ``True`` or a :class:`jaxem.Implicit` (static): reverse-mode
            derivatives of the fitted ``params`` and ``log_likelihood`` with
            respect to ``x``, ``sample_weight``, ``reg_covar`` and ``prior`` by
            the implicit function theorem (:func:`jaxem.fit`).

    Returns:
        :class:`~jaxem.FitResult`.

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (300, 2))
        >>> result = gmm.fit(jax.random.key(1), x, 2, n_init=3)
        >>> result.restart_log_likelihoods.shape
        (3,)
    """
    fam = family(
        covariance_type,
        reg_covar=reg_covar,
        prior=prior,
        formulation=resolve_formulation(formulation, x, reg_covar, covariance_type),
        n_features=_n_features(x),
    )
    return api.fit(
        fam,
        key,
        x,
        n_components,
        init=init,
        n_init=n_init,
        tol=tol,
        max_iter=max_iter,
        n_active=n_active,
        sample_weight=sample_weight,
        n_refine=n_refine,
        refine_tol=refine_tol,
        refine_max_iter=refine_max_iter,
        accelerate=accelerate,
        implicit=implicit,
    )


def fit_from(
    params: GMMParams,
    x: Any,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    sample_weight: ArrayLike | None = None,
    formulation: str = "auto",
    prior: Prior | None = None,
    criterion: str = "change",
    accelerate: str | Squarem | None = None,
    implicit: bool | Implicit = False,
) -> EMResult:
    """EM from given parameters, with the engine's fast passes (no restarts).

    Args:
        params: starting :class:`GMMParams`.
        x: (N, D) data, or :func:`jaxem.chunks` / :func:`jaxem.sharded` data.
        tol, max_iter, reg_covar, sample_weight, formulation, prior: as :func:`fit`.
        criterion: ``"change"`` or ``"aitken"`` (then ``tol`` is Aitken's).
        accelerate, implicit: as :func:`fit`.

    Returns:
        :class:`~jaxem.EMResult`.
    """
    if not isinstance(params, GMMParams):
        raise TypeError(f"params must be a GMMParams; got {type(params).__name__}")
    fam = family(
        params.covariance_type,
        reg_covar=reg_covar,
        prior=prior,
        formulation=formulation,
        n_features=params.n_features,
    )
    result = api.fit(
        fam, None, x, start=params, sample_weight=sample_weight, tol=tol, max_iter=max_iter,
        n_refine=0, criterion=criterion, accelerate=accelerate, implicit=implicit,
    )  # fmt: skip
    return EMResult(
        params=result.params,
        log_likelihood=result.log_likelihood,
        history=result.history,
        n_iter=result.n_iter,
        converged=result.converged,
        status=result.status,
        n_evals=result.n_evals,
    )


def fit_chunks(
    params: GMMParams,
    chunks: Any,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    chunk_size: int | None = None,
    formulation: str = "auto",
    prior: Prior | None = None,
    callback: Callable[[PassInfo], Any] | None = None,
    prefetch: int = 2,
) -> EMResult:
    """Exact EM over data read chunk by chunk (out of core), from ``params``.

    Each iteration reads every chunk once, sums the chunks' sufficient
    statistics, and does one M-step; the loop stops with the rule of
    :func:`jaxem.iterate`. A first pass reads the data's summary (its centre,
    for the moment formulation); ``result.log_likelihood`` is that of the
    *returned* parameters, which costs one more pass over the data (reported to
    ``callback`` with ``iteration=0``). The results agree with in-memory EM
    (:func:`fit_from`) to rounding. For initialisation and restarts on chunked
    data, pass :func:`jaxem.chunks` to :func:`fit` instead.

    Args:
        params: starting :class:`GMMParams` (its dtype is the computing dtype;
            chunks are converted to it on the host).
        chunks: the data: an (N, D) array-like (:class:`numpy.memmap`, an array
            opened with ``numpy.load(..., mmap_mode="r")``, an h5py dataset, an
            in-memory array) read ``chunk_size`` rows at a time; a sequence of
            (rows, D) arrays; or a callable returning a fresh iterator of arrays
            (read once per pass). Items may be ``(x, sample_weight)`` pairs.
            Chunks shorter than the first are padded with zero weights (one
            compilation).
        tol: tolerance on the change of the mean log-likelihood.
        max_iter: maximum number of EM iterations (passes).
        reg_covar: added to the covariance diagonal in the M-step.
        chunk_size: rows per chunk for an array-like source; by default about
            4M elements.
        formulation: ``"auto"``, ``"moments"`` or ``"direct"``.
        prior: optional conjugate prior (:class:`~jaxem.gmm.Prior`): MAP
            EM, and the log-likelihoods reported become the mean log posterior
            ``(Σ_n w_n log p(x_n) + log p(θ)) / Σ_n w_n``.
        callback: called on the host with a :class:`~jaxem.PassInfo` after every
            pass (for example :func:`print_progress`); its return value is ignored.
        prefetch: chunks in flight on the device while the host reads the next.

    Returns:
        :class:`jaxem.EMResult` (``history`` NaN-padded to ``max_iter``), as from
        in-memory EM.

    Example:
        >>> import jax, numpy as np
        >>> from jaxem import gmm
        >>> x = np.asarray(jax.random.normal(jax.random.key(0), (1000, 2)))
        >>> start = gmm.init(jax.random.key(1), x[:200], 2)
        >>> result = gmm.fit_chunks(start, x, chunk_size=256, tol=1e-4)
        >>> result.history.shape
        (100,)
    """
    if not isinstance(params, GMMParams):
        raise TypeError(f"params must be a GMMParams; got {type(params).__name__}")
    data = api.chunks(chunks, chunk_size, prefetch=prefetch, callback=callback)
    _check_first_chunk(data, params.n_features)
    return fit_from(
        params, data, tol=tol, max_iter=max_iter, reg_covar=reg_covar,
        formulation=formulation, prior=prior,
    )  # fmt: skip


def _check_first_chunk(data: api.ChunkedData, n_features: int) -> None:
    for item in data.source():
        first = item[0] if isinstance(item, tuple) else item
        shape = np.shape(first)
        if len(shape) != 2 or shape[1] != n_features:
            raise ValueError(
                f"every chunk must have shape (rows, {n_features}) to match the parameters; "
                f"got {shape}"
            )
        return


def fit_sharded(
    key: jax.Array,
    x: ArrayLike,
    n_components: int,
    mesh: Mesh,
    *,
    axis_name: str | None = None,
    init_size: int | None = None,
    **kwargs: Any,
) -> FitResult:
    """:func:`fit` on data sharded by rows over the devices of ``mesh``:
    ``fit(key, jaxem.sharded(x, mesh, axis_name, init_size=init_size), K, ...)``.

    The same initialisation, restarts, EM loop, stopping rule and result; the
    statistics of every pass are reduced across devices with ``psum`` inside
    ``shard_map``. With ``init_size=None`` the result equals the single-device
    :func:`fit` with the same key to rounding.

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
        >>> x = jax.random.normal(jax.random.key(0), (400, 2))
        >>> result = gmm.fit_sharded(jax.random.key(1), x, 2, mesh, n_init=2)
        >>> result.restart_log_likelihoods.shape
        (2,)
    """
    data = api.sharded(x, mesh, axis_name, init_size=init_size)
    return fit(key, data, n_components, **kwargs)


def fit_sharded_from(
    params: GMMParams,
    x: ArrayLike,
    mesh: Mesh,
    *,
    axis_name: str | None = None,
    **kwargs: Any,
) -> EMResult:
    """:func:`fit_from` on data sharded by rows over the devices of ``mesh``."""
    return fit_from(params, api.sharded(x, mesh, axis_name), **kwargs)


def select(
    key: jax.Array,
    x: ArrayLike,
    *,
    n_components: Iterable[int] = range(1, 10),
    covariance_types: Iterable[str] = cov_lib.COVARIANCE_TYPES,
    criterion: str = "bic",
    n_init: int = 1,
    init: str = "auto",
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    prior: Prior | str | None = None,
    sample_weight: ArrayLike | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
    accelerate: str | Squarem | None = None,
    stopping: str = "change",
) -> SelectionResult:
    """Fit every (covariance type, K) and pick the lowest BIC (or AIC, or ICL).

    One compiled program per covariance type fits every K in turn (a
    ``lax.map`` over the number of active components inside
    ``max(n_components)``), each with ``n_init`` restarts from the same ``key``
    (:func:`jaxem.select`). Not traceable itself: it returns the chosen
    covariance type as a Python string.

    Args:
        key: JAX PRNG key.
        x: (N, D) data.
        n_components: the numbers of components to try.
        covariance_types: the covariance types to try: scikit-learn's four by
            default; :data:`~jaxem.gmm.MCLUST_MODELS` for R mclust's 14 (the
            result names them as given).
        criterion: ``"bic"``, ``"aic"`` or ``"icl"`` (R mclust's ICL: BIC plus the
            entropy of the MAP classification); lower is better. Every fit's BIC
            and ICL are in the result (``.bic``, ``.icl``) whichever chooses.
        n_init, init, tol, max_iter, reg_covar, sample_weight: as in :func:`fit`.
        n_refine, refine_tol, refine_max_iter: the refinement of the best
            restarts of each fit, as in :func:`fit`.
        accelerate: as in :func:`fit`.
        stopping: the stopping rule, :func:`jaxem.select`'s: ``"change"``,
            ``"aitken"`` or ``"relative"`` (R mclust's; with a prior it watches
            the log-likelihood, not the log posterior, as mclust's ``me``).
        prior: ``None``, ``"default"`` (mclust's default prior for each K and
            covariance type, as mclust's ``priorControl()``) or a
            :class:`~jaxem.gmm.Prior` (for a single covariance type). The
            criteria use the log-likelihood at the MAP estimate, as mclust does.

    Returns:
        :class:`~jaxem.SelectionResult` (``covariance_types`` and
        ``best_covariance_type`` name the models).

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> r = gmm.select(jax.random.key(1), x, n_components=[1, 2], covariance_types=["diag"])
        >>> r.scores.shape
        (1, 2)
    """
    api.check_in_memory(x)
    x = as_data(x)
    types = cov_lib.check_covariance_types(covariance_types)
    shared = resolve_formulation("auto", x, reg_covar)  # made once for all types
    families = {
        t: family(
            t,
            reg_covar=reg_covar,
            prior=prior,
            formulation="direct" if _direct_by_shape(t, x) else shared,
            n_features=x.shape[1],
        )
        for t in types
    }
    return api.select(
        families,
        key,
        x,
        n_components=n_components,
        criterion=criterion,
        init=init,
        n_init=n_init,
        tol=tol,
        max_iter=max_iter,
        sample_weight=sample_weight,
        n_refine=n_refine,
        refine_tol=refine_tol,
        refine_max_iter=refine_max_iter,
        accelerate=accelerate,
        stopping=stopping,
    )


def run_batch(
    starts: GMMParams,
    x: jax.Array,
    *,
    tol: ArrayLike,
    reg_covar: ArrayLike,
    max_iter: int,
    sample_weight: jax.Array | None = None,
    formulation: str = "auto",
    prior: Prior | None = None,
    criterion: str = "change",
) -> tuple[EMResult, jax.Array]:
    """EM from a batch of starting parameters (leading axis) in memory: the
    in-memory source's loop with the Gaussian family (traceable, no validation).

    Returns:
        ``(EMResult batched over starts, whether the moment formulation is
        accurate at every result)``.
    """
    fam = GaussianFamily(
        reg_covar=reg_covar, prior=prior, covariance_type=starts.covariance_type,
        formulation=formulation,
    )  # fmt: skip
    w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else sample_weight
    source = InMemory(x, w)
    context = source.context(fam)
    prepared = source.prepare(fam, context, n_components=starts.means.shape[-2])
    results = source.run(
        fam, prepared, context, starts, tol=tol, max_iter=max_iter, criterion=criterion
    )
    fast = jnp.all(jax.vmap(lambda p: fam.fast(p, context))(results.params))
    return results, fast
