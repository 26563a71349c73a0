"""Out-of-core exact EM: the data as a re-iterable source of chunks.

One EM iteration is one pass over the chunks: every chunk goes through one
jitted E-step-plus-statistics function (a pass of :mod:`jaxem.gmm.passes`), the
statistics are summed on the device, and one M-step (:func:`maximize`) follows.
The loop itself runs on the host (it drives the reads), but follows exactly the
stopping rule of :func:`jaxem.iterate` and returns the same :class:`jaxem.EMResult`,
so results equal in-memory EM (:func:`jaxem.gmm.fit`) to rounding.

Statistics of different chunks add only when they are taken about the same
shift (:class:`SuffStats`). Within one iteration every chunk uses the same
shift: the current means for the direct pass, a fixed centre (the data mean,
accumulated during the first pass, which always uses the direct formulation)
for the moment pass.

Memory is one chunk (plus the pass's own bounded intermediates) and at most
``prefetch`` chunks in flight: JAX dispatch is asynchronous, so the host reads
chunk ``i + 1`` while chunk ``i`` is being computed.
"""

from __future__ import annotations

import dataclasses
import functools
import mmap
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._validation import check_scalar, check_static_int
from jaxem.em import EMResult
from jaxem.gmm.moments import is_accurate
from jaxem.gmm.params import GMMParams
from jaxem.gmm.passes import direct_pass, moment_pass
from jaxem.gmm.prior import Prior, check_prior, log_prior
from jaxem.gmm.steps import SuffStats, maximize

__all__ = ["PassInfo", "array_chunks", "fit_chunks", "print_progress"]

FORMULATIONS = ("auto", "moments", "direct")

#: Default rows per chunk of an array source: about 4M elements (16 MB of float32).
DEFAULT_CHUNK_ELEMENTS = 1 << 22


@dataclasses.dataclass(frozen=True)
class PassInfo:
    """What the progress callback of :func:`fit_chunks` is given after each pass.

    Attributes:
        iteration: 1-based index of the pass (``n_iter`` so far); 0 for the final
            pass that computes the log-likelihood of the returned parameters.
        log_likelihood: mean log-likelihood computed in the pass.
        change: ``log_likelihood`` minus that of the previous pass (inf at first).
        n_samples: total sample weight seen in the pass.
        n_chunks: number of chunks read.
        seconds: wall-clock seconds of the pass.
        formulation: ``"moments"`` or ``"direct"``.
    """

    iteration: int
    log_likelihood: float
    change: float
    n_samples: float
    n_chunks: int
    seconds: float
    formulation: str


def print_progress(info: PassInfo) -> None:
    """A ready-made callback for :func:`fit_chunks`: one line per pass to stderr."""
    what = "final" if info.iteration == 0 else f"pass {info.iteration:4d}"
    print(
        f"[jaxem] {what}: ll={info.log_likelihood:.8g} change={info.change:.3g} "
        f"({info.n_chunks} chunks, {info.n_samples:.0f} samples, {info.seconds:.2f} s, "
        f"{info.formulation})",
        file=sys.stderr,
        flush=True,
    )


def array_chunks(x: Any, chunk_size: int, sample_weight: Any = None) -> Callable[[], Iterator]:
    """A re-iterable chunk source over an array-like on disk or in memory.

    ``x`` is anything with ``shape`` and row slicing that gives NumPy arrays:
    :class:`numpy.memmap`, :func:`numpy.load` with ``mmap_mode="r"``, an
    ``h5py``/``zarr`` dataset. Only one chunk is read into memory at a time.

    Args:
        x: (N, D) array-like.
        chunk_size: rows per chunk.
        sample_weight: optional (N,) array-like of weights, sliced alongside.

    Returns:
        A callable returning a fresh iterator of ``x`` chunks (or ``(x, w)`` pairs).

    Example:
        >>> import numpy as np
        >>> from jaxem.gmm.outofcore import array_chunks
        >>> source = array_chunks(np.zeros((10, 2)), 4)
        >>> [c.shape[0] for c in source()]
        [4, 4, 2]
    """
    chunk_size = check_static_int("chunk_size", chunk_size, minimum=1)
    n = x.shape[0]

    def chunks():
        for start in range(0, n, chunk_size):
            xb = x[start : start + chunk_size]
            if sample_weight is None:
                yield xb
            else:
                yield xb, sample_weight[start : start + chunk_size]
            _release_pages(x)
            _release_pages(sample_weight)

    return chunks


def _release_pages(a: Any) -> None:
    """Drop the pages of a read memmap from this process's resident set.

    Pages of a file mapping that have been read count as resident memory until
    the kernel reclaims them, so a pass over a memmap would otherwise grow the
    resident set to the file's size. ``MADV_DONTNEED`` on a shared or read-only
    mapping loses nothing (the data stay in the file and the page cache); a
    copy-on-write mapping (``mode="c"``) is left alone.
    """
    mapping = getattr(a, "_mmap", None)
    if mapping is None or getattr(a, "mode", "c") == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        mapping.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        pass


def _as_source(chunks: Any, chunk_size: int | None) -> Callable[[], Iterator]:
    if callable(chunks):
        return chunks
    if hasattr(chunks, "shape") and hasattr(chunks, "__getitem__") and len(chunks.shape) == 2:
        rows = chunk_size or max(1024, DEFAULT_CHUNK_ELEMENTS // max(chunks.shape[1], 1))
        return array_chunks(chunks, rows)
    if isinstance(chunks, Iterator):
        raise TypeError(
            "chunks must be re-iterable (EM reads the data once per iteration): pass a "
            "sequence of arrays, an array-like with chunk_size, or a callable returning "
            "a fresh iterator; got a one-shot iterator"
        )
    if isinstance(chunks, Iterable):
        return lambda: iter(chunks)
    raise TypeError(
        "chunks must be an (N, D) array-like, a sequence of arrays or a callable "
        f"returning an iterator of arrays; got {type(chunks).__name__}"
    )


def _host_chunk(item: Any, dtype, n_features: int, rows: int | None):
    """One chunk as contiguous NumPy ``(x, w)``, zero-weight padded up to ``rows``."""
    if isinstance(item, tuple):
        xb, wb = item
    else:
        xb, wb = item, None
    xb = np.array(xb, dtype=dtype, order="C")  # a copy: never a view on a memmap
    if xb.ndim != 2 or xb.shape[1] != n_features:
        raise ValueError(
            f"every chunk must have shape (rows, {n_features}) to match the parameters; "
            f"got {xb.shape}"
        )
    wb = np.ones(xb.shape[0], dtype) if wb is None else np.array(wb, dtype=dtype, order="C")
    if wb.shape != (xb.shape[0],):
        raise ValueError(f"chunk sample weights must have shape ({xb.shape[0]},); got {wb.shape}")
    if rows is not None and xb.shape[0] < rows:  # pad: one compiled shape for all chunks
        pad = rows - xb.shape[0]
        xb = np.concatenate([xb, np.zeros((pad, n_features), dtype)])
        wb = np.concatenate([wb, np.zeros(pad, dtype)])
    return xb, wb


def _weighted_sums(stats: SuffStats, mean_ll: jax.Array, w: jax.Array):
    """The additive part of a pass: ``(nk, sum_x, sum_xx, Σ w log p, Σ w)``."""
    total = jnp.sum(w)
    ll_sum = jnp.where(total > 0, mean_ll * total, 0)
    return stats.nk, stats.sum_x, stats.sum_xx, ll_sum, total


@functools.partial(jax.jit, static_argnames=("formulation",))
def _accumulate(acc, params, x, w, center, *, formulation):
    """``acc + sums of one chunk``; for the direct pass also ``Σ w x`` (the centre)."""
    if formulation == "direct":
        stats, mean_ll = direct_pass(params, x, w)
        extra = jnp.sum(x * w[:, None], axis=0)
    else:
        stats, mean_ll = moment_pass(params, x, w, center)
        extra = jnp.zeros(x.shape[1], x.dtype)
    sums = (*_weighted_sums(stats, mean_ll, w), extra)
    return jax.tree.map(jnp.add, acc, sums)


@functools.partial(jax.jit, static_argnames=("formulation",))
def _finish(sums, params, center, reg_covar, prior, *, formulation):
    """M-step from the summed statistics; also the pass's mean log-likelihood."""
    nk, sum_x, sum_xx, ll_sum, total, _ = sums
    if formulation == "direct":
        shift = params.means
    else:
        shift = jnp.broadcast_to(center, params.means.shape)
    stats = SuffStats(nk, sum_x, sum_xx, shift, params.covariance_type)
    objective = ll_sum / total
    if prior is not None:
        objective = objective + log_prior(params, prior) / total
    return maximize(stats, reg_covar=reg_covar, prior=prior), objective


def _one_pass(source, params, center, formulation, dtype, prefetch):
    """Sum the statistics of every chunk; returns ``(sums, n_chunks)``."""
    dtype_ = params.dtype
    k, d = params.means.shape
    zero = jnp.zeros((), dtype_)
    acc = (
        jnp.zeros(k, dtype_),
        jnp.zeros((k, d), dtype_),
        jnp.zeros_like(params.covariances),  # sum_xx has the covariances' shape
        zero,
        zero,
        jnp.zeros(d, dtype_),
    )
    in_flight: list = []
    rows = None
    n_chunks = 0
    c = jnp.zeros(d, dtype) if center is None else center
    for item in source():
        xb, wb = _host_chunk(item, dtype, d, rows)
        if rows is None:
            rows = xb.shape[0]
        acc = _accumulate(acc, params, xb, wb, c, formulation=formulation)
        n_chunks += 1
        in_flight.append(acc)
        if len(in_flight) > prefetch:  # bound the chunks held in device memory
            jax.block_until_ready(in_flight.pop(0))
    if n_chunks == 0:
        raise ValueError("the chunk source yielded no chunks")
    return acc, n_chunks


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
    :func:`jaxem.iterate` (after the first iteration ``i`` with
    ``|ll_i − ll_{i−1}| < tol``, after ``max_iter`` iterations, or at a NaN
    log-likelihood). ``result.log_likelihood`` is that of the *returned*
    parameters, which costs one more pass over the data (reported to
    ``callback`` with ``iteration=0``).

    The first pass uses the direct formulation and also accumulates the data
    mean; later passes use the moment formulation about that mean while
    :func:`jaxem.gmm.moments.is_accurate` holds for the current parameters
    (checked before each pass; always, in practice, in float64), else the
    direct one. Both formulations give the same statistics to rounding, so the
    results agree with in-memory :func:`jaxem.gmm.fit` to rounding.

    Args:
        params: starting :class:`GMMParams` (its dtype is the computing dtype;
            chunks are converted to it on the host).
        chunks: the data: an (N, D) array-like (:class:`numpy.memmap`, an array
            opened with ``numpy.load(..., mmap_mode="r")``, an h5py dataset, an
            in-memory array) read ``chunk_size`` rows at a time; a sequence of
            (rows, D) arrays; or a callable returning a fresh iterator of arrays
            (read once per pass). Items may be ``(x, sample_weight)`` pairs.
            Chunks shorter than the first are padded with zero weights (one
            compilation); chunks of another length compile once per length.
        tol: tolerance on the change of the mean log-likelihood.
        max_iter: maximum number of EM iterations (passes).
        reg_covar: added to the covariance diagonal in the M-step.
        chunk_size: rows per chunk for an array-like source; by default about
            4M elements.
        formulation: ``"auto"``, ``"moments"`` or ``"direct"``.
        prior: optional conjugate prior (:class:`~jaxem.gmm.prior.Prior`): MAP
            EM, and the log-likelihoods reported become the mean log posterior
            ``(Σ_n w_n log p(x_n) + log p(θ)) / Σ_n w_n``.
        callback: called on the host with a :class:`PassInfo` after every pass
            (for example :func:`print_progress`); its return value is ignored.
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
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    prefetch = check_static_int("prefetch", prefetch, minimum=1)
    check_scalar("tol", tol)
    check_scalar("reg_covar", reg_covar)
    check_prior(prior, params.covariance_type, params.n_features)
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}; got {formulation!r}")
    source = _as_source(chunks, chunk_size)
    dtype = np.dtype(params.dtype)
    tol = float(tol)
    reg = jnp.asarray(reg_covar, dtype)

    history = np.full(max_iter, np.nan, dtype)
    center = None
    ll_prev = -np.inf
    done = False
    n_iter = 0
    while n_iter < max_iter and not done:
        start = time.perf_counter()
        form = _formulation_for(params, center, formulation)
        sums, n_chunks = _one_pass(source, params, center, form, dtype, prefetch)
        if center is None:
            center = sums[5] / sums[4]
        new_params, ll = _finish(sums, params, center, reg, prior, formulation=form)
        ll = float(ll)
        history[n_iter] = ll
        change = ll - ll_prev
        done = bool(abs(change) < tol) or np.isnan(ll)
        ll_prev = ll
        params = new_params
        n_iter += 1
        if callback is not None:
            callback(PassInfo(n_iter, ll, change, float(sums[4]), n_chunks, _elapsed(start), form))
    converged = done and not np.isnan(ll_prev)

    start = time.perf_counter()
    form = _formulation_for(params, center, formulation)
    sums, n_chunks = _one_pass(source, params, center, form, dtype, prefetch)
    final_ll = float(sums[3] / sums[4])
    if callback is not None:
        callback(
            PassInfo(
                0, final_ll, final_ll - ll_prev, float(sums[4]), n_chunks, _elapsed(start), form
            )
        )
    return EMResult(
        params=params,
        log_likelihood=jnp.asarray(final_ll, dtype),
        history=jnp.asarray(history),
        n_iter=jnp.asarray(n_iter, jnp.int32),
        converged=jnp.asarray(converged),
    )


def _formulation_for(params: GMMParams, center, formulation: str) -> str:
    if formulation == "direct" or center is None:
        return "direct"
    if formulation == "moments":
        return "moments"
    return "moments" if bool(is_accurate(params, center)) else "direct"


def _elapsed(start: float) -> float:
    return time.perf_counter() - start
