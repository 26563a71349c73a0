"""Fitting any family: :func:`fit` and :func:`select`, on any data source.

The data decide the source: an array (or any pytree of arrays with N leading
rows) is fitted in memory in one compiled program; :func:`chunks` wraps data
read chunk by chunk from the host (out of core); :func:`sharded` splits the
rows over the devices of a mesh. The family, the options and the result are the
same for all three.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxem._src import engine
from jaxem._src.acceleration import Squarem, check_accelerate
from jaxem._src.autodiff import forward_mode_only
from jaxem._src.engine import (
    REFINE_MAX_ITER,
    REFINE_TOL,
    FitConfig,
    FitResult,
    SelectionResult,
    check_init,
    check_refine,
    init_methods_for,
    pipeline,
)
from jaxem._src.family import Family, MixtureFamily
from jaxem._src.implicit import Implicit, check_implicit, fixed_point, with_gradient
from jaxem._src.loop import check_criterion, warn_if_unresolvable
from jaxem._src.programs import BoundedJit
from jaxem._src.sources import (
    HostChunks,
    InMemory,
    PassInfo,
    Sharded,
    as_chunk_source,
    shard_rows,
)
from jaxem._src.validation import (
    as_scalar,
    check_key,
    check_n_active,
    check_sample_weight,
    check_scalar,
    check_static_int,
    stacklevel_outside_jaxem,
)

__all__ = ["ChunkedData", "ShardedData", "chunks", "fit", "select", "sharded"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ChunkedData:
    """Data read chunk by chunk on the host (see :func:`chunks`)."""

    source: Callable
    init_size: int
    prefetch: int
    callback: Callable[[PassInfo], Any] | None


def chunks(
    data: Any,
    chunk_size: int | None = None,
    *,
    init_size: int = 20_000,
    prefetch: int = 2,
    callback: Callable[[PassInfo], Any] | None = None,
) -> ChunkedData:
    """Mark data to be read chunk by chunk, once per EM iteration (out of core).

    Args:
        data: an (N, D) array-like read ``chunk_size`` rows at a time
            (:class:`numpy.memmap`, ``numpy.load(..., mmap_mode="r")``, an h5py
            dataset), a sequence of (rows, D) arrays, or a callable returning a
            fresh iterator of them. Items may be ``(x, sample_weight)`` pairs.
            Chunks shorter than the first are padded with zero weights (one
            compilation).
        chunk_size: rows per chunk of an array-like; by default about 4M elements.
        init_size: the restarts are initialised on a uniform random sample of
            at most this many rows (one pass of reservoir sampling).
        prefetch: chunks in flight on the device while the host reads the next.
        callback: called with a :class:`~jaxem.PassInfo` after every pass (for
            example :func:`jaxem.gmm.print_progress`).

    Returns:
        A :class:`ChunkedData` to pass as the data of :func:`fit`.
    """
    if chunk_size is not None:
        chunk_size = check_static_int("chunk_size", chunk_size, minimum=1)
    init_size = check_static_int("init_size", init_size, minimum=1)
    prefetch = check_static_int("prefetch", prefetch, minimum=1)
    return ChunkedData(as_chunk_source(data, chunk_size), init_size, prefetch, callback)


@dataclasses.dataclass(frozen=True)
class ShardedData:
    """Data split by rows over the devices of a mesh (see :func:`sharded`)."""

    x: Any
    mesh: Mesh
    axis_name: str | None
    init_size: int | None


def sharded(
    x: Any, mesh: Mesh, axis_name: str | None = None, *, init_size: int | None = None
) -> ShardedData:
    """Mark data to be split by rows over the devices of ``mesh``.

    Each EM pass runs inside :func:`jax.shard_map` on every device's rows and its
    statistics are reduced with ``psum``; the EM loop stays outside, so every
    device sees the same objective and stops at the same iteration.

    Args:
        x: (N, D) host data (padded with zero-weight rows and placed), or a
            global :class:`jax.Array` whose rows are split over ``axis_name``
            (for several hosts: ``jax.make_array_from_process_local_data``).
        mesh: the device mesh.
        axis_name: the mesh axis the rows are split over (default: the only one).
        init_size: initialise on this many random rows (replicated on every
            device) instead of the whole data, which must otherwise fit on one
            device during initialisation.

    Returns:
        A :class:`ShardedData` to pass as the data of :func:`fit`.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh; got {type(mesh).__name__}")
    if axis_name is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"the mesh has axes {mesh.axis_names}; name the sample axis with axis_name="
            )
        axis_name = mesh.axis_names[0]
    elif axis_name not in mesh.axis_names:
        raise ValueError(f"axis_name {axis_name!r} is not an axis of the mesh {mesh.axis_names}")
    if init_size is not None:
        init_size = check_static_int("init_size", init_size, minimum=1)
    return ShardedData(x, mesh, axis_name, init_size)


# --------------------------------------------------------------------------- fit


def _fit(
    family, source, key, n_active, tol, refine_tol, starts, resp=None, *, config, implicit=None
):
    def run(family, source, key, n_active, tol, refine_tol, starts, resp):
        return pipeline(family, source, key, n_active, tol, refine_tol, config, starts, resp)[0]

    if implicit is None:
        return forward_mode_only(run)(family, source, key, n_active, tol, refine_tol, starts, resp)
    # The fit runs on inputs without derivatives; the chosen fixed point and
    # its objective carry the implicit derivative with respect to the family's
    # hyperparameters, the data and the sample weights.
    family_, source_, starts_ = jax.lax.stop_gradient((family, source, starts))
    result = forward_mode_only(run)(family_, source_, key, n_active, tol, refine_tol, starts_, resp)

    def step(params, family, source, n_active):
        return engine.em_map(family, source, n_active, params)

    params = fixed_point(
        lambda p, *args: step(p, *args)[0], result.params, (family, source, n_active),
        config=implicit, unconstrain=family_.unconstrain, constrain=family_.constrain,
        boundary=family_.boundary, gauges=family_.gauges,
    )  # fmt: skip
    ll = with_gradient(
        lambda p, *args: step(p, *args)[1],
        result.log_likelihood,
        (params, family, source, n_active),
    )
    return dataclasses.replace(result, params=params, log_likelihood=ll)


# The compiled fits: at most programs.MAX_PROGRAMS of each are kept (a process
# that kept every one aborted at Linux's limit of memory mappings).
_fit_program = BoundedJit(_fit, static_argnames=("config", "implicit"))


def _initial_resp(view, source, key, n_active, keys=None, *, n_components, methods):
    # The initialisation reads the data without derivatives: its responsibilities
    # are piecewise constant in the data (labels) or independent of it (random).
    source = jax.lax.stop_gradient(source)
    return engine.initial_resp(
        view, source, key, n_active, n_components=n_components, methods=methods, keys=keys
    )


# The initial responsibilities of families that share an init view
# (Family.init_view), compiled once for all of them and apart from the EM.
_init_program = BoundedJit(_initial_resp, static_argnames=("n_components", "methods"))
_init_select_program = BoundedJit(
    lambda view, source, key, ks, *, n_components, methods: jax.vmap(
        lambda k: _initial_resp(view, source, key, k, n_components=n_components, methods=methods)
    )(ks),
    static_argnames=("n_components", "methods"),
)


def _separate_init(family: Family, source: Any, start: Any) -> Family | None:
    """The init view whose program computes the starts apart, or None."""
    if start is not None or not isinstance(source, InMemory):
        return None
    return family.init_view()


def _batched_start(start: PyTree | None, family: Family) -> PyTree | None:
    """A start as a batch of restarts (leading axis), or None."""
    if start is None:
        return None
    return family.as_batch(start)


def fit(
    family: Family,
    key: jax.Array | None,
    x: Any,
    n_components: int | None = None,
    *,
    init: str = "auto",
    n_init: int = 1,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    n_active: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
    start: PyTree | None = None,
    criterion: str = "change",
    accelerate: str | Squarem | None = None,
    implicit: bool | Implicit = False,
) -> FitResult:
    """Fit a model of ``family`` by EM: initialisation and ``n_init`` restarts in one call.

    The restarts run as one ``vmap`` until scikit-learn's rule stops each
    (``tol``, ``max_iter``: the screening); then the ``n_refine`` best continue
    until Aitken's rule says less than ``refine_tol`` is left to gain (the
    refinement, Biernacki et al.'s "em-EM"), and the non-degenerate one with the
    highest final objective is returned. In memory the whole fit is one compiled
    program, compiled once per static configuration (``n_components``,
    ``init``, ``n_init``, ``max_iter``, the refinement, the family's static
    fields, the data's shape and dtype); ``key``, ``x``, ``tol``, ``n_active``,
    the sample weights and the family's hyperparameters are traced, so ``fit``
    can be vmapped over any of them.

    Args:
        family: the model family (:class:`~jaxem.Family`), e.g.
            ``jaxem.gmm.family("full")`` or ``jaxem.mixtures.Poisson()``.
        key: JAX PRNG key (restart ``i`` uses ``jax.random.split(key, n_init)[i]``);
            unused with ``start``.
        x: the data: an array (in memory), :func:`chunks` (read from the host
            chunk by chunk) or :func:`sharded` (split over devices).
        n_components: K, static: the number of components (or the maximum, with
            ``n_active``); not needed with ``start``.
        init: ``"auto"`` (the family's portfolio of methods) or one of
            ``family.init_methods`` for every restart.
        n_init: number of restarts (static).
        tol: tolerance of the screening's change rule on the mean objective.
        max_iter: maximum EM iterations of the screening (static).
        n_active: fit ``n_active ≤ K`` components (traced); the others have
            weight 0. One compiled program covers every K.
        sample_weight: optional (N,) non-negative weights (in memory; a chunk
            source carries its own, a sharded one takes them here too).
        n_refine: how many of the best screened restarts to refine (static);
            default :func:`~jaxem._src.engine.default_n_refine`.
        refine_tol: the refinement stops when Aitken's extrapolation predicts a
            gain in mean objective under this.
        refine_max_iter: at most this many more iterations per refined restart.
        start: starting parameters instead of initialisation: one set, or a
            batch of restarts along a leading axis.
        criterion: the screening's stopping rule, ``"change"`` (scikit-learn's),
            ``"aitken"`` or ``"relative"`` (R mclust's) (:func:`jaxem.iterate`), static.
        accelerate: ``None`` (plain EM, the default), ``"squarem"`` or a
            :class:`jaxem.Squarem` (static): SQUAREM (Varadhan & Roland 2008)
            in the family's unconstrained coordinates, for screening and
            refinement; ``n_iter`` then counts SQUAREM cycles and
            ``n_evals`` passes over the data. The objective decreases only
            where two plain EM steps decrease it (an M-step that is no ascent
            step of it: ``reg_covar``).
        implicit: ``False`` (default: forward mode differentiates the
            iterations run, reverse mode raises), ``True`` or a
            :class:`jaxem.Implicit` (static; data in memory): reverse mode
            (``jax.grad``) differentiates ``params`` and ``log_likelihood``
            of the chosen restart by the implicit function theorem at its
            fixed point, in the family's unconstrained coordinates, with
            respect to ``x``, ``sample_weight`` and the family's traced
            hyperparameters (:mod:`jaxem._src.implicit`). Initialisation,
            restarts and the choice among them are not differentiated (a
            fixed point does not depend on where EM started); the other
            fields carry no derivative. Converge tightly (small ``tol``) when
            the derivative matters.

    Returns:
        :class:`~jaxem.FitResult`.
    """
    if not isinstance(family, Family):
        raise TypeError(
            "fit(family, key, x, n_components, ...) takes a model family first "
            f"(e.g. jaxem.gmm.family('full')); got {type(family).__name__}"
        )
    if start is None:
        check_key(key)
        if n_components is None:
            raise TypeError("fit needs n_components (or start=)")
        n_components = check_static_int("n_components", n_components, minimum=1)
        check_init(family, init)
        n_init = check_static_int("n_init", n_init, minimum=1)
    else:
        start = _batched_start(start, family)
        n_init = jax.tree.leaves(start)[0].shape[0]
        n_components = family.n_components_of(start)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    check_criterion(criterion)
    accelerate = check_accelerate(accelerate)
    implicit = check_implicit(implicit)
    n_refine, refine_max_iter = check_refine(n_refine, refine_tol, refine_max_iter, n_init)
    if n_active is not None and not family.supports_n_active:
        raise ValueError(_no_n_active(family, "n_active"))
    n_active = check_n_active(n_active, n_components)
    if implicit is not None and isinstance(x, ChunkedData | ShardedData):
        raise ValueError(
            "implicit= differentiates fits of data in memory; got "
            f"{type(x).__name__} (chunked and sharded fits run their loop outside one program)"
        )

    if isinstance(x, ChunkedData):
        if sample_weight is not None:
            raise ValueError("chunked data carry their own sample weights as (x, w) chunks")
        return _fit_chunks(
            family, key, x, n_components, init, n_init, tol, max_iter, n_active,
            n_refine, refine_tol, refine_max_iter, start, criterion, accelerate,
        )  # fmt: skip
    if isinstance(x, ShardedData):
        source, n_samples = _sharded_source(family, key, x, sample_weight, n_components, start)
    else:
        x = family.check_data(x)
        if start is not None:
            family.check_start(start, x)
        n_samples = jax.tree.leaves(x)[0].shape[0]
        w = check_sample_weight(sample_weight, jax.tree.leaves(x)[0])
        source = InMemory.of(family, x, w)
    if start is None and n_components > _max_components(family, x, n_samples):
        raise ValueError(
            f"n_components={n_components} must be <= the number of samples "
            f"({_max_components(family, x, n_samples)})"
        )
    dtype = source.w.dtype
    if criterion == "change":
        warn_if_unresolvable(tol, dtype)
    config = FitConfig(
        n_components=n_components,
        methods=()
        if start is not None
        else init_methods_for(family, init, n_init, n_samples, _columns(x)),
        max_iter=max_iter,
        n_refine=n_refine,
        refine_max_iter=refine_max_iter,
        criterion=criterion,
        accelerate=accelerate,
    )
    if start is not None:
        start = jax.tree.map(lambda a: jnp.asarray(a, dtype) if _floating(a) else a, start)
    fit_key = key if start is None else jax.random.key(0)
    if isinstance(x, ShardedData):
        # on every device of the mesh: a start from an earlier fit (committed to
        # one device) or a key made here otherwise clash with the shards
        replicated = NamedSharding(x.mesh, P())
        start, fit_key = jax.device_put((start, fit_key), replicated)
    fit_args = (
        family,
        source,
        fit_key,
        n_active,
        as_scalar(tol, dtype),
        as_scalar(refine_tol, dtype),
        start,
    )
    resp, view = None, _separate_init(family, source, start)
    if view is not None:
        init = _init_program.bind(
            view, source, key, n_active, n_components=n_components, methods=config.methods
        )
        fit_static = dict(config=config, implicit=implicit)
        tasks = _parallel_tasks(view, config.methods, n_samples, init)
        if tasks is None:
            _compile_ahead([init], lambda parts: parts[0], fit_args, fit_static)
            resp = init()
        else:
            resp = _parallel_init(view, source, key, n_active, config, tasks, fit_args, fit_static)
    return _fit_program(*fit_args, resp, config=config, implicit=implicit)


#: Threads that compute the parts of an initialisation at the same time (:func:`_parallel_init`).
_init_pool: concurrent.futures.ThreadPoolExecutor | None = None
_init_pool_lock = threading.Lock()


def _init_threads() -> concurrent.futures.ThreadPoolExecutor:
    global _init_pool
    with _init_pool_lock:
        if _init_pool is None:
            _init_pool = concurrent.futures.ThreadPoolExecutor(_cores(), "jaxem-init")
        return _init_pool


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _parallel_tasks(view, methods, n_samples, init) -> tuple[tuple[int, ...], ...] | None:
    """:func:`~jaxem._src.engine.init_tasks` where computing them at the same
    time can gain: on the CPU, with two cores or more, the arguments concrete
    (not traced inside a caller's program), and a restart that agglomerates
    a random subset among them."""
    if init.key is None or _cores() < 2 or jax.default_backend() != "cpu":
        return None
    tasks = engine.init_tasks(view, methods, n_samples)
    return tasks if len(tasks) > 1 else None


def _parallel_init(view, source, key, n_active, config, tasks, fit_args, fit_static):
    """The restarts' starting responsibilities computed in parts
    (:func:`~jaxem._src.engine.init_tasks`), each part a program run from a
    thread of :func:`_init_threads`, the results joined in one
    :class:`~jaxem._src.family.InitResp`: with the same keys, what the one
    program computes. XLA:CPU runs one program at a time from one thread and
    the loops of a program one after another; an agglomeration is a loop of
    small dependent steps on one core, so two trees, or a tree and the
    k-means, run side by side on two cores (two VVV trees of 256 × 8 rows:
    18.5–20.4 ms one after the other, 13.0 ms from two threads; 5 000 × 8,
    K = 5, ``n_init=10``, a later call of the default fit 59.3 → 47.5 ms)."""
    keys = jax.random.split(key, len(config.methods))

    def call(ix):
        methods = tuple(config.methods[i] for i in ix)
        return _init_program.bind(
            view, source, key, n_active, keys[np.asarray(ix)],
            n_components=config.n_components, methods=methods,
        )  # fmt: skip

    calls = [call(ix) for ix in tasks]
    join = functools.partial(engine.joined_resp, tasks=tasks)
    _compile_ahead(calls, join, fit_args, fit_static)
    # programs whose LAPACK calls can block a pool thread (jaxlib 0.10: two at
    # once hang XLA:CPU, experiments/xla_deadlock_repro.py) one after another
    # in one lane; the others each in a lane of its own
    threads = _cores()
    blocking = [i for i, c in enumerate(calls) if _init_program.may_block_in_lapack(c.key, threads)]
    lanes = [[i] for i in range(len(calls)) if i not in blocking]
    if blocking:
        lanes.insert(0, blocking)
    parts: list = [None] * len(calls)

    def run(lane):
        for i in lane:
            parts[i] = jax.block_until_ready(calls[i]())

    for _ in _init_threads().map(run, lanes):  # waits for every lane; raises their errors
        pass
    return join(parts)


def _compile_ahead(inits, join, fit_args, fit_static) -> None:
    """Compile the initialisation and the fit programs side by side when none
    is compiled: the first compile in the background while the fit program,
    whose initial responsibilities (``join`` of the initialisation programs'
    outputs) are given by their shapes, is traced, then compiles beside them.
    XLA:CPU's compiler already keeps most of two cores busy, so what a first
    call gains is the tracing hidden behind the compilation (Old Faithful,
    ``n_init=10``: about 1.2 of 6.7 s)."""
    outs = {}
    for init in inits:  # calls of one program give None after the first
        out = init.compile_ahead()
        if out is not None:
            outs[init.key] = out
    if len(outs) < len({init.key for init in inits}):
        return  # compiled before
    out = join([outs[call.key] for call in inits])
    init = inits[0]
    shardings = {getattr(leaf, "sharding", None) for leaf in jax.tree.leaves(init.args[1])}
    if len(shardings) != 1:
        return
    (sharding,) = shardings
    if not isinstance(sharding, jax.sharding.SingleDeviceSharding):
        return  # where the responsibilities will live is the compiled program's choice
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, weak_type=s.weak_type, sharding=sharding),
        out,
    )
    _fit_program.compile_ahead(*fit_args, abstract, **fit_static)


def _columns(x: Any) -> int | None:
    """The columns of data that are one (N, D) array (sharded or not), else None."""
    if isinstance(x, ShardedData):
        x = x.x
    shape = getattr(x, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) == 2 else None


def _max_components(family: Family, x: Any, n_samples: int) -> int:
    """K's upper bound for in-memory data (:meth:`Family.max_components`)."""
    if isinstance(x, ShardedData):
        return n_samples
    return family.max_components(x)


def _floating(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.floating)


def _fit_chunks(
    family, key, data, n_components, init, n_init, tol, max_iter, n_active,
    n_refine, refine_tol, refine_max_iter, start, criterion, accelerate=None,
):  # fmt: skip
    dtype = _chunk_dtype(data, start)
    if criterion == "change":
        warn_if_unresolvable(tol, dtype)
    source = HostChunks(
        data.source,
        dtype,
        init_size=data.init_size,
        prefetch=data.prefetch,
        callback=data.callback,
    )
    if start is None and n_components > data.init_size:
        raise ValueError(
            f"n_components={n_components} must be <= the number of samples used to "
            f"initialise (init_size={data.init_size})"
        )
    if start is not None:  # against the first row (shapes, the parameter space)
        family.check_start(start, family.check_data(_first_row(data)))
    methods = () if start is not None else init_methods_for(family, init, n_init, data.init_size)
    config = FitConfig(
        n_components, methods, max_iter, n_refine, refine_max_iter, criterion, accelerate
    )
    if start is not None:
        start = jax.tree.map(lambda a: jnp.asarray(a, dtype) if _floating(a) else a, start)
    result, _, _ = pipeline(
        family,
        source,
        key if start is None else jax.random.key(0),
        n_active,
        jnp.asarray(tol, dtype),
        jnp.asarray(refine_tol, dtype),
        config,
        start,
    )
    return result


def _first_row(data: ChunkedData) -> np.ndarray:
    """(1, D) the first row of the first chunk (of an ``(x, w)`` pair, its ``x``)."""
    for item in data.source():
        return np.asarray((item[0] if isinstance(item, tuple) else item)[:1])
    raise ValueError("the chunk source yielded no chunks")


def _chunk_dtype(data: ChunkedData, start) -> Any:
    """The working dtype of a chunked fit: the start's, else the first chunk's
    floating dtype as JAX holds it (float64 chunks work in float32 when x64 is
    off, as an in-memory float64 array does), else JAX's default float."""
    if start is not None:
        dtype = np.dtype(jax.tree.leaves(start)[0].dtype)
    else:
        dtype = _first_row(data).dtype
    if not np.issubdtype(dtype, np.floating):
        dtype = float
    return np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def _sharded_source(family, key, data: ShardedData, sample_weight, n_components, start):
    mesh, axis_name = data.mesh, data.axis_name
    x = data.x
    n_shards = mesh.shape[axis_name]
    replicated = NamedSharding(mesh, P())
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and len(x.devices()) > 1:
        if x.shape[0] % n_shards:
            raise ValueError(
                f"a global x must have a number of rows divisible by the mesh axis "
                f"{axis_name!r} of size {n_shards}; got {x.shape[0]} (pass host data instead)"
            )
        sharding = NamedSharding(mesh, P(axis_name))
        xs = jax.device_put(x, sharding)
        w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else sample_weight
        ws = jax.device_put(jnp.asarray(w, x.dtype), sharding)
        n_samples = x.shape[0]
        host = None
    else:
        host = family.check_data(np.asarray(x))
        if start is not None:
            family.check_start(start, host)
        n_samples = host.shape[0]
        w = check_sample_weight(sample_weight, host)
        w = jnp.ones(n_samples, host.dtype) if w is None else w
        xs, ws = shard_rows(np.asarray(host), mesh, axis_name, np.asarray(w))
    if (data.init_size is None or start is not None) and host is not None:
        # the unpadded rows: initialisation then equals the in-memory fit's
        init_rows, init_w = jax.device_put((host, w), replicated)
        init_w = init_w if sample_weight is not None else None
    elif data.init_size is None or start is not None:
        # device_put, not a sharding constraint in a jit: a mesh of Explicit axes
        # (jax.make_mesh's default) keeps the constraint's input sharded
        init_rows, init_w = jax.device_put((xs, ws), replicated)
    else:
        size = min(data.init_size, n_samples)
        if n_components > size:
            raise ValueError(
                f"n_components={n_components} must be <= the number of samples used to "
                f"initialise ({size})"
            )
        rows = jax.random.choice(jax.random.fold_in(key, 1), n_samples, (size,), replace=False)
        init_rows, init_w = _take((xs, ws), rows, mesh=mesh, axis_name=axis_name)
    return Sharded(xs, ws, init_rows, init_w, mesh, axis_name), n_samples


@functools.partial(jax.jit, static_argnames=("mesh", "axis_name"))
def _take(arrays, rows, *, mesh, axis_name):
    """``a[rows]`` of each array, replicated on every device: each device
    contributes the rows it holds and a ``psum`` assembles them (no gather of
    the whole data)."""

    def local(arrays, rows):
        def pick(a):
            n_local = a.shape[0]
            offset = rows - jax.lax.axis_index(axis_name) * n_local
            mine = (offset >= 0) & (offset < n_local)
            picked = a[jnp.clip(offset, 0, n_local - 1)]
            mask = mine.reshape(mine.shape + (1,) * (picked.ndim - 1))
            return jax.lax.psum(jnp.where(mask, picked, 0), axis_name)

        return jax.tree.map(pick, arrays)

    fn = jax.shard_map(local, mesh=mesh, in_specs=(P(axis_name), P()), out_specs=P())
    return fn(arrays, rows)


# ------------------------------------------------------------------------ select


def _select(family, source, key, ks, tol, refine_tol, resp, *, config, criterion):
    return forward_mode_only(functools.partial(_select_all, config=config, criterion=criterion))(
        family, source, key, ks, tol, refine_tol, resp
    )


_select_program = BoundedJit(_select, static_argnames=("config", "criterion"))


# The K run one after the other, not as a vmap: each then stops when its own
# restarts do, and the loop's conds (engine.run_em_refined) stay conds, which a
# vmap turns into selects computing both branches every iteration. Measured on
# 2 cores (gmm.select, full and diag, K = 1..7, later calls): Old Faithful
# n_init=10 0.97 -> 0.48 s, 5000 x 8 n_init=10 5.1 -> 2.0 s, 100 000 x 16
# n_init=1 8.4 -> 2.6 s; a Poisson mixture of 21 rows, K = 1..5, n_init=20,
# refine_max_iter=5000: 9.3 -> 0.14 s.
def _select_all(family, source, key, ks, tol, refine_tol, resp, *, config, criterion):
    def one(k, resp):
        result, bound, context = pipeline(
            family, source, key, k, tol, refine_tol, config, resp=resp
        )
        n = engine.context_count(context)  # the units of the mean log-likelihood (Σ w, or frames)
        ll = result.log_likelihood
        if bound.watches_prior(config.criterion):  # the log posterior: the prior out
            ll = ll - bound.log_prior(result.params) / n
        if isinstance(bound, MixtureFamily):
            classification = engine.classification_log_likelihood(
                bound, result.params, source.x, source.w
            )
        else:  # ICL's entropy term is defined here for mixtures only
            classification = jnp.full_like(ll, jnp.nan)
        return result, ll, bound.n_parameters(result.params), classification, n

    results, lls, n_params, classification, n = jax.lax.map(lambda a: one(*a), (ks, resp))
    scores = jax.vmap(lambda p, ll, n, c: engine.criterion_score(criterion, p, ll, n, c))(
        n_params, lls, n, classification
    )
    return results, scores, lls, n_params, classification, n[0]


def check_in_memory(x: Any) -> None:
    """A clear error for chunked or sharded data given to :func:`select`."""
    if isinstance(x, (ChunkedData, ShardedData)):
        raise TypeError(
            f"select needs the data in memory; got {type(x).__name__}: fit each K with "
            "jaxem.fit on the chunks or shards and compare −2 N log_likelihood + "
            "family.n_parameters(params) · log N"
        )


def _no_n_active(family: Family, what: str) -> str:
    return (
        f"{what} needs a family whose components beyond n_active keep weight 0; "
        f"{type(family).__name__}'s prior gives every component weight. Fit each "
        "number of components with jaxem.fit (n_components=k) and compare the fits "
        "(a variational fit's log_likelihood is its evidence lower bound)"
    )


# How many models' programs :func:`select` traces ahead of the one it runs, to
# be compiled in the background (:meth:`~jaxem._src.programs.BoundCall.compile_ahead`).
SELECT_COMPILE_AHEAD = 2


def _check_active_within(name: str, family: Family, results: Any, ks: tuple[int, ...]) -> None:
    """A clear error where a fit of K components inside the largest came back
    with more active ones: the family's M-step gave weight to a component of
    weight 0 (a prior's pseudo-counts), and every K's fit was the largest's."""
    weights = getattr(results.params, "weights", None)
    if weights is None or not isinstance(family, MixtureFamily):
        return
    active = np.sum(np.asarray(weights) > 0, axis=-1)
    over = [k for k, a in zip(ks, active, strict=True) if a > k]
    if over:
        raise ValueError(
            f"{type(family).__name__} ({name!r}) gave weight to components beyond "
            f"n_components={over[0]} (its fit has {int(active[ks.index(over[0])])} active): "
            "its maximize must keep a component of weight 0 at weight 0 (and its log_prior "
            "leave it out), or the family sets supports_n_active = False"
        )


def _warn_if_weights_too_small(total: float, n_parameters: int) -> None:
    """Warn when sample weights sum to no more than the parameters of the
    largest model: BIC and ICL take ``N`` as the total weight (frequency
    weights), and weights normalised to sum to 1 make the penalty
    ``p log N`` 0 (a selection of the largest model, silently)."""
    if total > n_parameters:
        return
    warnings.warn(
        f"the sample weights sum to {total:.4g}, no more than the {n_parameters} parameters "
        "of the largest model: BIC and ICL take N as the total weight (frequency weights: a "
        "row of weight 2 counts as two rows), so their penalty is only log N = "
        f"{np.log(max(total, np.finfo(float).tiny)):.2g} per parameter and favours large "
        "models. Scale the weights to the number of observations they stand for.",
        UserWarning,
        stacklevel=stacklevel_outside_jaxem(),
    )


def select(
    families: Family | Mapping[str, Family],
    key: jax.Array,
    x: Any,
    *,
    n_components: Iterable[int] = range(1, 10),
    criterion: str = "bic",
    init: str = "auto",
    n_init: int = 1,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    sample_weight: ArrayLike | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
    accelerate: str | Squarem | None = None,
    stopping: str = "change",
) -> SelectionResult:
    """Fit every (model, K) and pick the lowest BIC (or AIC, or ICL).

    One compiled program per model fits every K in turn (a ``lax.map`` of
    :func:`fit` over the number of active components inside
    ``max(n_components)``), each with ``n_init`` restarts from the same
    ``key``; the starts of all K are computed together first. Not traceable
    itself: it returns the chosen model's name as a Python string.

    Args:
        families: one family, or a mapping from model names to families (for
            example one Gaussian family per covariance type).
        key: JAX PRNG key.
        x: (N, D) data in memory.
        n_components: the numbers of components to try.
        criterion: ``"bic"`` (``−2 log L + p log N``), ``"aic"`` (``−2 log L +
            2p``) or ``"icl"`` (BIC ``− 2 Σ_n log max_k r_nk``, Biernacki, Celeux &
            Govaert 2000, as R mclust's ``icl``; mixture families only), with
            ``N`` the total sample weight; lower is better. The result has every fit's BIC and ICL
            whichever criterion chooses (:attr:`SelectionResult.bic`,
            :attr:`SelectionResult.icl`).
        init, n_init, tol, max_iter, sample_weight, n_refine, refine_tol,
            refine_max_iter, accelerate: as in :func:`fit`.
        stopping: the screening's stopping rule (:func:`fit`'s ``criterion``):
            ``"change"`` (scikit-learn's, the default), ``"aitken"`` or
            ``"relative"`` (R mclust's ``|ΔL| ≤ tol·(1 + |L|)``; with
            ``tol=1e-5``, ``n_refine=0`` and a large ``max_iter`` the fits stop
            where mclust's ``me`` stops, which ICL, sensitive to how far a fit
            ran, needs for a comparison with mclust).

    Returns:
        :class:`~jaxem.SelectionResult`; with a prior, the criteria use the
        log-likelihood at the MAP estimate (as R mclust does).
    """
    if isinstance(families, Family):
        families = {type(families).__name__: families}
    if not isinstance(families, Mapping) or not families:
        raise TypeError("families must be a Family or a non-empty mapping of names to families")
    check_key(key)
    if not isinstance(n_components, Iterable) or isinstance(n_components, str):
        raise TypeError(
            "n_components must be the numbers of components to try, an iterable of ints "
            f"(for example range(1, 10) or [{n_components!r}]); got {n_components!r}"
        )
    ks = tuple(check_static_int("n_components", k, minimum=1) for k in n_components)
    if not ks:
        raise ValueError("n_components must name at least one number of components")
    engine.check_information_criterion(criterion)
    check_criterion(stopping)
    n_init = check_static_int("n_init", n_init, minimum=1)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    accelerate = check_accelerate(accelerate)
    n_refine, refine_max_iter = check_refine(n_refine, refine_tol, refine_max_iter, n_init)
    names = tuple(families)
    first = families[names[0]]
    if criterion == "icl":
        for name in names:
            if isinstance(families[name], Family) and not isinstance(families[name], MixtureFamily):
                raise ValueError(
                    f"criterion='icl' needs mixture families (its entropy term is that of "
                    f"the rows' classification); families[{name!r}] is a "
                    f"{type(families[name]).__name__}: use 'bic' or 'aic'"
                )
    check_in_memory(x)
    x = first.check_data(x)
    leaf = jax.tree.leaves(x)[0]
    n_samples = leaf.shape[0]
    if max(ks) > first.max_components(x):
        raise ValueError(
            f"n_components up to {max(ks)} must be <= the number of samples "
            f"({first.max_components(x)})"
        )
    w = check_sample_weight(sample_weight, leaf)
    source = InMemory.of(first, x, w)  # rows padded for every family alike (the first's rule)
    scores, lls, fits, counts, classification = [], [], [], [], []
    shared_resp: dict = {}  # per init view: the starts of every family that shares it
    calls = []
    for name in names:
        family = families[name]
        if not isinstance(family, Family):
            raise TypeError(f"families[{name!r}] must be a Family; got {type(family).__name__}")
        check_init(family, init)
        if not family.supports_n_active:
            raise ValueError(_no_n_active(family, "select"))
        config = FitConfig(
            n_components=max(ks),
            methods=init_methods_for(family, init, n_init, n_samples, _columns(x)),
            max_iter=max_iter,
            n_refine=n_refine,
            refine_max_iter=refine_max_iter,
            criterion=stopping,
            accelerate=accelerate,
        )
        k_array = jnp.asarray(ks, jnp.int32)
        resp, view = None, family.init_view()
        if view is not None:
            if (view, config.methods) not in shared_resp:
                shared_resp[view, config.methods] = _init_select_program(
                    view, source, key, k_array, n_components=max(ks), methods=config.methods
                )
            resp = shared_resp[view, config.methods]
        calls.append(
            _select_program.bind(
                family,
                source,
                key,
                k_array,
                jnp.asarray(tol, leaf.dtype),
                jnp.asarray(refine_tol, leaf.dtype),
                resp,
                config=config,
                criterion=criterion,
            )
        )
    for i, call in enumerate(calls):
        # the next models' programs traced here and compiled in the background
        # while this one compiles and runs
        for ahead in calls[i : i + 1 + SELECT_COMPILE_AHEAD]:
            ahead.compile_ahead()
        results, s, ll, p, c, n_units = call()
        _check_active_within(names[i], families[names[i]], results, ks)
        scores.append(np.asarray(s))
        lls.append(np.asarray(ll))
        counts.append(np.asarray(p))
        classification.append(np.asarray(c))
        fits.append(results)
    scores_array, lls_array = np.stack(scores), np.stack(lls)
    # a model whose fit ended on a likelihood spike (every restart degenerate)
    # is chosen only if every model's did, as a fit chooses among restarts
    degenerate = np.stack([np.asarray(f.degenerate) for f in fits])
    candidates = np.where(degenerate & ~np.all(degenerate), np.nan, scores_array)
    if np.all(np.isnan(candidates)):
        candidates = scores_array
    t, m = np.unravel_index(np.nanargmin(candidates), scores_array.shape)
    best = jax.tree.map(lambda a: a[m], fits[t])
    counts_array = np.stack(counts)
    if w is not None and criterion != "aic":
        _warn_if_weights_too_small(float(n_units), int(np.max(counts_array)))
    return SelectionResult(
        scores=scores_array,
        log_likelihoods=lls_array,
        models=names,
        n_components=ks,
        criterion=criterion,
        best_model=names[t],
        best_n_components=ks[m],
        params=families[names[t]].trim(best.params),
        log_likelihood=float(lls_array[t, m]),
        fits=tuple(fits),
        n_parameters=counts_array,
        classification_log_likelihoods=np.stack(classification),
        n_samples=float(n_units),
    )
