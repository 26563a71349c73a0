"""Multi-device (and multi-host) EM: data sharded along the sample axis.

The data live on a :class:`jax.sharding.Mesh`, split by rows over one mesh
axis. Each EM pass (:mod:`jaxem.gmm.passes`) runs inside :func:`jax.shard_map`
on the local rows, and its additive statistics are reduced with an explicit
:func:`jax.lax.psum`; every device then holds the same statistics and does the
same M-step. The EM ``while_loop`` (:func:`jaxem.iterate`) stays *outside*
``shard_map``: its convergence test then reads one replicated value, so all
devices agree on when to stop (DESIGN.md, "Several devices": relying on sharded
``jit`` to place the reductions inside a vmapped ``while_loop`` could hang).

Initialisation (k-means and the other methods loop on data-dependent values
too) runs replicated on every device, on the whole data gathered (the default:
the result then equals :func:`jaxem.gmm.fit` on one device to rounding) or on a
random subset of ``init_size`` rows (for data too large to gather).

Multi-host: call ``jax.distributed.initialize()`` in every process, build a
global mesh (``jax.make_mesh((jax.device_count(),), ("data",))``), assemble the
global array from each process's rows with
``jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), x_local)``,
and call :func:`fit_sharded` with the same arguments in every process (SPMD).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxem._validation import check_key, check_n_active, check_scalar, check_static_int
from jaxem.em import iterate
from jaxem.gmm import covariances as cov_lib
from jaxem.gmm.fit import (
    FORMULATIONS,
    REFINE_MAX_ITER,
    REFINE_TOL,
    FitResult,
    auto_formulation,
    best_of,
    check_refine,
    initial_params,
)
from jaxem.gmm.init import check_method
from jaxem.gmm.params import GMMParams
from jaxem.gmm.passes import direct_pass, moment_pass
from jaxem.gmm.steps import SuffStats, maximize

__all__ = ["fit_sharded", "fit_sharded_from", "shard_rows", "sharded_pass"]


def shard_rows(
    x: ArrayLike, mesh: Mesh, axis_name: str | None = None, sample_weight: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array]:
    """Place (N, D) host data on ``mesh``, rows split over ``axis_name``.

    N is padded with zero-weight rows to a multiple of the axis size (padding
    rows contribute nothing to any statistic).

    Returns:
        ``(x, sample_weight)`` as sharded global arrays of Nₚ ≥ N rows.
    """
    axis_name = _axis(mesh, axis_name)
    n_shards = mesh.shape[axis_name]
    x = np.asarray(x)
    n = x.shape[0]
    w = np.ones(n, x.dtype) if sample_weight is None else np.asarray(sample_weight, x.dtype)
    pad = -n % n_shards
    if pad:
        x = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)])
        w = np.concatenate([w, np.zeros(pad, x.dtype)])
    sharding = NamedSharding(mesh, P(axis_name))
    return jax.device_put(x, sharding), jax.device_put(w, sharding)


def sharded_pass(pass_fn, mesh: Mesh, axis_name: str):
    """Wrap a pass ``(params, x, w, *replicated) -> (SuffStats, mean ll)`` so that
    it runs on each device's rows and ``psum``s the statistics over ``axis_name``.

    The result is replicated: every device sees the same statistics and mean
    log-likelihood (weighted by ``w`` over all rows).
    """

    def local(params, x, w, *rest):
        stats, mean_ll = pass_fn(params, x, w, *rest)
        total = jnp.sum(w)
        ll_sum = jnp.where(total > 0, mean_ll * total, 0)
        nk, sum_x, sum_xx, ll_sum, total = jax.lax.psum(
            (stats.nk, stats.sum_x, stats.sum_xx, ll_sum, total), axis_name
        )
        return SuffStats(nk, sum_x, sum_xx, stats.shift, stats.covariance_type), ll_sum / total

    def run(params, x, w, *rest):
        in_specs = (P(), P(axis_name), P(axis_name), *(P() for _ in rest))
        fn = jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=P())
        return fn(params, x, w, *rest)

    return run


def _weighted_mean(mesh, axis_name, x, w):
    def local(x, w):
        return jax.lax.psum((jnp.sum(x * w[:, None], axis=0), jnp.sum(w)), axis_name)

    fn = jax.shard_map(local, mesh=mesh, in_specs=(P(axis_name), P(axis_name)), out_specs=P())
    total_x, total_w = fn(x, w)
    return total_x / total_w


def _run_batch(
    starts, x, w, mesh, axis_name, *, tol, reg_covar, max_iter, formulation, criterion="change"
):
    """:func:`jaxem.gmm.fit.run_batch` with sharded passes (same ``auto`` rule)."""
    center = _weighted_mean(mesh, axis_name, x, w)
    direct_fn = sharded_pass(direct_pass, mesh, axis_name)
    moment_fn = sharded_pass(moment_pass, mesh, axis_name)

    def run(pass_fn, params):
        def step(p):
            stats, ll = pass_fn(p)
            return maximize(stats, reg_covar=reg_covar), ll

        return iterate(
            step, lambda p: pass_fn(p)[1], params, tol=tol, max_iter=max_iter, criterion=criterion
        )

    def fast():
        return jax.vmap(lambda p: run(lambda q: moment_fn(q, x, w, center), p))(starts)

    def direct():
        return jax.vmap(lambda p: run(lambda q: direct_fn(q, x, w), p))(starts)

    if formulation == "direct":
        return direct(), jnp.asarray(False)
    if formulation == "moments":
        return fast(), jnp.asarray(True)

    return auto_formulation(fast, direct, center, starts)


@functools.partial(
    jax.jit,
    static_argnames=(
        "mesh", "axis_name", "max_iter", "formulation", "n_refine", "refine_max_iter"
    ),
)  # fmt: skip
def _em(
    starts,
    codes,
    x,
    w,
    tol,
    reg_covar,
    refine_tol,
    *,
    mesh,
    axis_name,
    max_iter,
    formulation,
    n_refine,
    refine_max_iter,
):
    kwargs = dict(reg_covar=reg_covar, formulation=formulation)
    results, fast_path = _run_batch(
        starts, x, w, mesh, axis_name, tol=tol, max_iter=max_iter, **kwargs
    )

    def run(params):  # the refinement (see jaxem.gmm.fit.refine)
        return _run_batch(
            params, x, w, mesh, axis_name, tol=refine_tol, max_iter=refine_max_iter,
            criterion="aitken", **kwargs,
        )  # fmt: skip

    return best_of(results, fast_path, codes, x, reg_covar, w, n_refine=n_refine, run=run)


@functools.partial(
    jax.jit, static_argnames=("n_components", "covariance_type", "init", "n_init", "out_sharding")
)
def _starts(
    key, x, n_active, reg_covar, *, n_components, covariance_type, init, n_init, out_sharding
):
    starts, codes = initial_params(
        key,
        x,
        n_components=n_components,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        n_active=n_active,
        reg_covar=reg_covar,
    )
    return jax.lax.with_sharding_constraint(starts, out_sharding), codes


def _axis(mesh: Mesh, axis_name: str | None) -> str:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh; got {type(mesh).__name__}")
    if axis_name is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"the mesh has axes {mesh.axis_names}; name the sample axis with axis_name="
            )
        return mesh.axis_names[0]
    if axis_name not in mesh.axis_names:
        raise ValueError(f"axis_name {axis_name!r} is not an axis of the mesh {mesh.axis_names}")
    return axis_name


def _placed(x, sample_weight, mesh, axis_name):
    """(x, w) as arrays sharded by rows; host data are padded and placed."""
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and len(x.devices()) > 1:
        n_shards = mesh.shape[axis_name]
        if x.shape[0] % n_shards:
            raise ValueError(
                f"a global x must have a number of rows divisible by the mesh axis "
                f"{axis_name!r} of size {n_shards}; got {x.shape[0]} (use shard_rows)"
            )
        sharding = NamedSharding(mesh, P(axis_name))
        x = jax.device_put(x, sharding)
        if sample_weight is None:
            w = jax.device_put(jnp.ones(x.shape[0], x.dtype), sharding)
        else:
            w = jax.device_put(jnp.asarray(sample_weight, x.dtype), sharding)
        return x, w, None
    host = np.asarray(x)
    if not np.issubdtype(host.dtype, np.floating):
        host = host.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    if host.ndim != 2:
        raise ValueError(f"x must be 2-D, of shape (n_samples, n_features); got {host.shape}")
    xs, ws = shard_rows(host, mesh, axis_name, sample_weight)
    return xs, ws, host


def fit_sharded_from(
    params: GMMParams,
    x: ArrayLike,
    mesh: Mesh,
    *,
    axis_name: str | None = None,
    sample_weight: ArrayLike | None = None,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    formulation: str = "auto",
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
    _codes: jax.Array | None = None,
) -> FitResult:
    """EM from given starting parameters on data sharded over ``mesh``.

    ``params`` may carry a leading batch axis of restarts (as from ``jax.vmap``
    of :func:`jaxem.gmm.init`); the best restart is returned.

    Args:
        params: starting :class:`GMMParams`, (R, …) for R restarts or unbatched.
        x: (N, D) host data (padded and placed by :func:`shard_rows`) or a global
            :class:`jax.Array` whose rows are split over ``axis_name``.
        mesh: the device mesh.
        axis_name: the mesh axis the samples are split over (default: the only one).
        sample_weight: optional (N,) weights.
        tol, max_iter, reg_covar, formulation, n_refine, refine_tol,
            refine_max_iter: as :func:`jaxem.gmm.fit` (``n_refine``'s default
            counts the restarts of ``params``).

    Returns:
        :class:`jaxem.gmm.FitResult` (replicated arrays).
    """
    axis_name = _axis(mesh, axis_name)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    check_scalar("reg_covar", reg_covar)
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}; got {formulation!r}")
    xs, ws, _ = _placed(x, sample_weight, mesh, axis_name)
    starts = params if params.means.ndim == 3 else jax.tree.map(lambda a: a[None], params)
    n_refine, refine_max_iter = check_refine(
        n_refine, refine_tol, refine_max_iter, starts.weights.shape[0]
    )
    starts = jax.tree.map(lambda a: jnp.asarray(a, xs.dtype), starts)
    codes = jnp.full(starts.weights.shape[0], -1, jnp.int32) if _codes is None else _codes
    return _em(
        jax.device_put(starts, NamedSharding(mesh, P())),
        jax.device_put(codes, NamedSharding(mesh, P())),
        xs,
        ws,
        jnp.asarray(tol, xs.dtype),
        jnp.asarray(reg_covar, xs.dtype),
        jnp.asarray(refine_tol, xs.dtype),
        mesh=mesh,
        axis_name=axis_name,
        max_iter=max_iter,
        formulation=formulation,
        n_refine=n_refine,
        refine_max_iter=refine_max_iter,
    )


def fit_sharded(
    key: jax.Array,
    x: ArrayLike,
    n_components: int,
    mesh: Mesh,
    *,
    axis_name: str | None = None,
    covariance_type: str = "full",
    init: str = "auto",
    n_init: int = 1,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    n_active: ArrayLike | None = None,
    formulation: str = "auto",
    init_size: int | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
) -> FitResult:
    """:func:`jaxem.gmm.fit` on data sharded by rows over the devices of ``mesh``.

    The same initialisation, restarts (``n_init``, vmapped), EM loop, stopping
    rule and result; the statistics of every pass are reduced across devices
    with ``psum`` inside ``shard_map``. With ``init_size=None`` the result equals
    the single-device :func:`jaxem.gmm.fit` with the same key to rounding.

    Args:
        key: PRNG key (restarts and, with ``init_size``, the subset drawn).
        x: (N, D) host data or a global :class:`jax.Array` sharded by rows.
        n_components, covariance_type, init, n_init, tol, max_iter, reg_covar,
            n_active, formulation, n_refine, refine_tol, refine_max_iter: as
            :func:`jaxem.gmm.fit`.
        mesh: the device mesh; ``axis_name`` the axis the rows are split over.
        init_size: initialise on this many random rows (replicated on every
            device) instead of the whole data, which must otherwise fit on one
            device during initialisation.

    Returns:
        :class:`jaxem.gmm.FitResult`.

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
        >>> x = jax.random.normal(jax.random.key(0), (400, 2))
        >>> result = gmm.fit_sharded(jax.random.key(1), x, 2, mesh, n_init=2)
        >>> result.restart_log_likelihoods.shape
        (2,)
    """
    axis_name = _axis(mesh, axis_name)
    check_key(key)
    n_components = check_static_int("n_components", n_components, minimum=1)
    cov_lib.check_covariance_type(covariance_type)
    check_method(init, allow_auto=True)
    n_init = check_static_int("n_init", n_init, minimum=1)
    check_scalar("reg_covar", reg_covar)
    n_active = check_n_active(n_active, n_components)
    xs, ws, host = _placed(x, None, mesh, axis_name)
    replicated = NamedSharding(mesh, P())
    if init_size is None:
        x_init = jax.device_put(host, replicated) if host is not None else _gather(xs, replicated)
        init_key = key
    else:
        init_size = check_static_int("init_size", init_size, minimum=n_components)
        key, sub = jax.random.split(key)
        n = host.shape[0] if host is not None else xs.shape[0]
        rows = jax.random.choice(sub, n, (min(init_size, n),), replace=False)
        x_init = _take(xs, rows, mesh=mesh, axis_name=axis_name)
        init_key = key
    if n_components > x_init.shape[0]:
        raise ValueError(
            f"n_components={n_components} must be <= the number of samples used to "
            f"initialise ({x_init.shape[0]})"
        )
    starts, codes = _starts(
        init_key,
        x_init,
        n_active,
        jnp.asarray(reg_covar, xs.dtype),
        n_components=n_components,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        out_sharding=replicated,
    )
    return fit_sharded_from(
        starts,
        xs,
        mesh,
        axis_name=axis_name,
        sample_weight=ws,
        tol=tol,
        max_iter=max_iter,
        reg_covar=reg_covar,
        formulation=formulation,
        n_refine=n_refine,
        refine_tol=refine_tol,
        refine_max_iter=refine_max_iter,
        _codes=codes,
    )


@functools.partial(jax.jit, static_argnames=("out_sharding",))
def _gather(x, out_sharding):
    return jax.lax.with_sharding_constraint(x, out_sharding)


@functools.partial(jax.jit, static_argnames=("mesh", "axis_name"))
def _take(x, rows, *, mesh, axis_name):
    """``x[rows]`` replicated on every device: each device contributes the rows it
    holds and a ``psum`` assembles them (no gather of the whole of ``x``)."""

    def local(xl, rows):
        n_local = xl.shape[0]
        offset = rows - jax.lax.axis_index(axis_name) * n_local
        mine = (offset >= 0) & (offset < n_local)
        picked = xl[jnp.clip(offset, 0, n_local - 1)]
        return jax.lax.psum(jnp.where(mine[:, None], picked, 0), axis_name)

    fn = jax.shard_map(local, mesh=mesh, in_specs=(P(axis_name), P()), out_specs=P())
    return fn(x, rows)
