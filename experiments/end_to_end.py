"""End to end: the default ``jaxem.gmm.fit`` against scikit-learn's ``GaussianMixture``.

``experiments/benchmark.py`` times one EM iteration; ``experiments/estimators.py``
times the scikit-learn-style estimators with k-means starts in float64. This
script times what a user of either library types by default (issue #19, must-show
2), on the same float32 data:

* jaxem: ``jaxem.gmm.fit(key, x, K, n_init=n)``: full covariances, ``init="auto"``
  (the portfolio of :func:`jaxem._src.gmm.family.portfolio`), ``tol=1e-3``,
  ``max_iter=100``, and with ``n_init > 1`` the refinement of the best quarter of
  the restarts (Aitken's rule at 1e-6); it computes in float32 (JAX's default:
  x64 is not enabled here).
* scikit-learn: ``GaussianMixture(n_components=K, n_init=n, random_state=0)``
  (every other argument its default: full covariances, k-means starts,
  ``tol=1e-3``, ``max_iter=100``); given float32 data it computes in float32
  (``validate_data(..., dtype=[float64, float32])`` keeps the input's dtype; the
  script checks ``means_.dtype``).

Each row (a data set, K and ``n_init``) runs in a fresh Python process, so that
jaxem's first call includes the compilation of its programs and no earlier
row's programs help. In that process: jaxem's first call, scikit-learn's first
call, then ``--repeats`` later calls of each, interleaved (the machine is
shared: load from other jobs hits both alike); "later" is their median. Every
call uses the same key / ``random_state``, so the repeats do identical work.

Quality is compared with speed: the final mean log-likelihood per sample of each
library's fitted parameters, evaluated in float64 by NumPy on the same data
("ll64"), and the iterations of the chosen fit (jaxem: screening plus
refinement of the chosen restart; scikit-learn: ``n_iter_`` of its best
initialisation). A faster fit that ends lower is not faster.

Data: Old Faithful (272 × 2, K = 3); synthetic mixtures from
:func:`estimators.make_data` (random correlated covariances with unit-order
variances, centres drawn from ``N(0, s² I)``) at 1 000 × 5 with K = 4 (a size
where the agglomerative starts once took all rows), 5 000 × 8 with K = 5 and
100 000 × 16 with K = 16, overlapping (``s = 1``) and well separated
(``s = 10``, tens of σ apart); with ``--large`` also 1 000 000 × 32 with K = 32
(``s = 4``) and ``n_init = 1`` only (several minutes per call of scikit-learn on
two cores).

``--phases CASE`` instead profiles one default jaxem fit piece by piece (each
piece compiled apart and timed to ``jax.block_until_ready``, median of
``--repeats``): the data summary, the initialisation of each method of the
portfolio (all restarts that use it), the whole initialisation, the screening EM
of all restarts, the refinement, and the whole call.

Run from the repository root::

    python experiments/end_to_end.py [--quick] [--large] [--repeats 3] \\
        [--cases faithful,5000x8-overlap] [--n-init 1,10] [--cpu 0] [--pause 0.5] \\
        [--malloc] [--out experiments/results/end_to_end.md]
    python experiments/end_to_end.py --phases 5000x8-overlap [--n-init 10]

If ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` is set, the script re-executes
itself without them first (:func:`common.reexec_without_openblas_overrides`);
the report names the BLAS libraries loaded (threadpoolctl).

``--pause S`` sleeps ``S`` seconds before every timed call. Back to back
(the default) a call starts while the other library's thread pools still
spin-wait from its call (OpenBLAS and OpenMP keep their threads busy for a
while after a product) and competes with them for the two cores: jaxem's
later call of separated 5 000 × 8 with ``n_init=10`` took 0.10 s after
scikit-learn's and 0.058 s alone (``--phases``). With a pause every call
starts on idle cores, as a user's call after other work does; each library
then pays to wake its own threads.

``--malloc`` runs every row's process (both libraries alike) with glibc's
allocator told to keep the memory it frees (:data:`RESIDENT_MALLOC`: one arena,
no ``mmap`` for large blocks, no trimming). By default glibc gives each large
block (above 32 MB, or any block of a thread's own arena) back to the system when
it is freed, and the next call touches fresh pages that the kernel must fault in
and zero: a default one-start jaxem fit of 100 000 × 16 faults in about 40 000
pages (160 MB) per call. A user sets the same variables before starting Python.

``--cpu C`` runs every row (and ``--phases``) pinned to the one CPU ``C``
(``sched_setaffinity`` before anything is imported, so XLA's, OpenBLAS's and
OpenMP's thread pools size themselves to one core; scikit-learn's calls also
under ``threadpool_limits(1)``). On a shared, oversubscribed machine the
default thread pools spin-wait for CPUs that other jobs hold: measured here
with the 1-minute load average at 10 on 2 cores, scikit-learn's Old Faithful
fit with ``n_init = 10`` took 7-9 s with its default two threads and 0.35 s
pinned to one, so the default-thread ratios then measure the contention, not
the libraries; one core each is the fairer comparison there.
"""

from __future__ import annotations

import pathlib
import sys

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import (  # noqa: E402
    UNSET_MARKER,
    markdown_table,
    progress,
    reexec_without_openblas_overrides,
    write_markdown,
)

if __name__ == "__main__":
    reexec_without_openblas_overrides("end_to_end")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results" / "end_to_end.md"


@dataclasses.dataclass(frozen=True)
class Case:
    """A data set and its K; ``large`` cases run only with ``--large``, ``n_init=1``."""

    name: str
    n_components: int
    load: Callable[[], np.ndarray]
    description: str
    large: bool = False


def _synthetic(n: int, d: int, k: int, separation: float) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from estimators import make_data

        return make_data(n, d, k, seed=0, separation=separation)

    return load


def _faithful() -> np.ndarray:
    from datasets import load_faithful

    return load_faithful()


CASES = {
    c.name: c
    for c in (
        Case("faithful", 3, _faithful, "Old Faithful, 272 × 2"),
        Case("1000x5-overlap", 4, _synthetic(1_000, 5, 4, 1.0), "1 000 × 5, s = 1"),
        Case("5000x8-overlap", 5, _synthetic(5_000, 8, 5, 1.0), "5 000 × 8, s = 1"),
        Case("5000x8-separated", 5, _synthetic(5_000, 8, 5, 10.0), "5 000 × 8, s = 10"),
        Case("100kx16-overlap", 16, _synthetic(100_000, 16, 16, 1.0), "100 000 × 16, s = 1"),
        Case("100kx16-separated", 16, _synthetic(100_000, 16, 16, 10.0), "100 000 × 16, s = 10"),
        Case("1Mx32", 32, _synthetic(1_000_000, 32, 32, 4.0), "1 000 000 × 32, s = 4", True),
    )
}


def mean_log_likelihood64(x: np.ndarray, weights, means, covariances) -> float:
    """Mean log-likelihood per sample of a full-covariance mixture, in float64."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.special import logsumexp

    x = np.asarray(x, np.float64)
    weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
    covariances = np.asarray(covariances, np.float64)
    d = x.shape[1]
    logs = []
    for w, mu, cov in zip(weights, means, covariances, strict=True):
        if w <= 0:
            continue
        factor = cholesky(cov, lower=True)
        z = solve_triangular(factor, (x - mu).T, lower=True)
        logs.append(
            np.log(w)
            - 0.5 * np.sum(z * z, axis=0)
            - np.sum(np.log(np.diag(factor)))
            - 0.5 * d * np.log(2 * np.pi)
        )
    return float(np.mean(logsumexp(np.stack(logs), axis=0)))


# ------------------------------------------------------------------ one row (a child)


def pin(cpu: int | None) -> None:
    """This process on the one CPU ``cpu`` (None: as it is)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def run_row(
    case: Case, n_init: int, repeats: int, cpu: int | None = None, pause: float = 0.0
) -> dict:
    """First and later calls of both libraries on one case, in this process
    (``cpu``: scikit-learn under ``threadpool_limits(1)``; the process is pinned
    already), each call after ``pause`` seconds of sleep."""
    import contextlib

    from threadpoolctl import threadpool_limits

    load_start = os.getloadavg()[0]
    x = case.load().astype(np.float32)
    k = case.n_components

    import jax

    import jaxem
    from jaxem import gmm

    def jaxem_fit():
        return jax.block_until_ready(gmm.fit(jax.random.key(0), x, k, n_init=n_init))

    def sklearn_fit():
        from sklearn.mixture import GaussianMixture

        limits = threadpool_limits(1) if cpu is not None else contextlib.nullcontext()
        with warnings.catch_warnings(), limits:
            warnings.simplefilter("ignore")  # ConvergenceWarning of a restart
            return GaussianMixture(n_components=k, n_init=n_init, random_state=0).fit(x)

    def timed(fn):
        time.sleep(pause)
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start

    ours, ours_first = timed(jaxem_fit)
    theirs, theirs_first = timed(sklearn_fit)
    ours_later, theirs_later = [], []
    for _ in range(repeats):
        ours, t = timed(jaxem_fit)
        ours_later.append(t)
        theirs, t = timed(sklearn_fit)
        theirs_later.append(t)
    p = ours.params
    return dict(
        case=case.name,
        n=x.shape[0],
        d=x.shape[1],
        k=k,
        n_init=n_init,
        jaxem_first_s=ours_first,
        jaxem_later_s=ours_later,
        sklearn_first_s=theirs_first,
        sklearn_later_s=theirs_later,
        jaxem_ll64=mean_log_likelihood64(x, p.weights, p.means, p.covariances),
        sklearn_ll64=mean_log_likelihood64(x, theirs.weights_, theirs.means_, theirs.covariances_),
        jaxem_ll=float(ours.log_likelihood),
        jaxem_n_iter=int(ours.n_iter),
        jaxem_initializer=str(ours.initializer),
        jaxem_fast_path=bool(ours.fast_path),
        jaxem_dtype=str(p.means.dtype),
        jaxem_version=jaxem.__version__ if hasattr(jaxem, "__version__") else "?",
        sklearn_n_iter=int(theirs.n_iter_),
        sklearn_dtype=str(theirs.means_.dtype),
        load_start=load_start,
        load_end=os.getloadavg()[0],
        cpus=sorted(os.sched_getaffinity(0)),
        pause_s=pause,
    )


#: glibc's allocator settings of ``--malloc`` (module docstring).
RESIDENT_MALLOC = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "4294967295",
}


def run_child(
    case_name: str,
    n_init: int,
    repeats: int,
    cpu: int | None = None,
    pause: float = 0.0,
    malloc: bool = False,
) -> dict:
    """``run_row`` in a fresh Python process (its JSON on the last stdout line),
    with :data:`RESIDENT_MALLOC` in its environment where ``malloc``."""
    command = [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        "--child",
        case_name,
        "--n-init",
        str(n_init),
        "--repeats",
        str(repeats),
        *([] if cpu is None else ["--cpu", str(cpu)]),
        "--pause",
        str(pause),
    ]
    env = {**os.environ, **(RESIDENT_MALLOC if malloc else {})}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{case_name} n_init={n_init} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------- phases


def _median_time(fn: Callable, *args, repeats: int) -> tuple[object, float, float]:
    """``(result, first-call s, median s of the later calls)``, to block_until_ready."""
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return out, first, statistics.median(times)


def phases(case: Case, n_init: int, repeats: int) -> tuple[list[list[str]], dict]:
    """Per-phase timings of the default fit (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    from jaxem import gmm
    from jaxem._src import engine
    from jaxem._src.gmm.fit import family, resolve_formulation
    from jaxem._src.sources import InMemory

    x_np = case.load().astype(np.float32)
    k = case.n_components
    fam = family("full", formulation=resolve_formulation("auto", x_np, 1e-6, "full"))
    # the rows padded with zero-weight rows to their bucket, as gmm.fit pads them
    padded = InMemory.of(fam, jnp.asarray(x_np), None)
    x, w = padded.x, padded.w
    key = jax.random.key(0)
    methods = fam.portfolio(n_init, x.shape[0], x.shape[1])
    n_refine = engine.default_n_refine(n_init)
    n_active = jnp.asarray(k)

    @jax.jit
    def context(x, w):
        return InMemory(x, w).context(fam)

    def init_program(chosen):
        @jax.jit
        def init(key, x, w, ctx):
            return engine.initial_stats(
                fam, key, x, w, ctx, n_components=k, n_active=n_active, methods=chosen
            )

        return init

    @jax.jit
    def screen(x, w, ctx, starts):
        src = InMemory(x, w)
        prepared = src.prepare(fam, ctx, n_components=k)  # as the fit prepares them
        return src.run(fam, prepared, ctx, starts, tol=1e-3, max_iter=100, criterion="change")

    @jax.jit
    def refine(x, w, ctx, results):
        src = InMemory(x, w)
        prepared = src.prepare(fam, ctx, n_components=k)  # as the fit prepares them

        def run(params):
            return src.run(
                fam, prepared, ctx, params, tol=engine.REFINE_TOL,
                max_iter=engine.REFINE_MAX_ITER, criterion="aitken",
            )  # fmt: skip

        return engine.refine(fam, results, ctx, run, n_refine)

    rows, record = [], dict(case=case.name, n_init=n_init, methods=list(methods), phases={})

    def add(name, first, later, note=""):
        rows.append([name, f"{first:.3f}", f"{later:.4f}", note])
        record["phases"][name] = dict(first_s=first, later_s=later, note=note)

    ctx, first, later = _median_time(context, x, w, repeats=repeats)
    add("data summary (context)", first, later)
    for method in dict.fromkeys(methods):
        count = methods.count(method)
        keys = jax.random.split(key, n_init)[
            np.asarray([i for i, m in enumerate(methods) if m == method])
        ]
        # the method's restarts alone, with their own keys (one program per method)
        chosen = (method,) * count

        @jax.jit
        def init_one(keys, x, w, ctx, chosen=chosen):
            stats, frames = fam.initial_stats(keys, x, w, k, n_active, chosen, ctx)
            return stats, frames

        _, first, later = _median_time(init_one, keys, x, w, ctx, repeats=repeats)
        add(f"init: {method} × {count}", first, later)
    (starts, _), first, later = _median_time(init_program(methods), key, x, w, ctx, repeats=repeats)
    add(f"init: whole portfolio ({n_init} restarts)", first, later)
    results, first, later = _median_time(screen, x, w, ctx, starts, repeats=repeats)
    iters = np.asarray(results.n_iter)
    add(
        "screening EM (all restarts)",
        first,
        later,
        f"iterations per restart {iters.tolist()}",
    )
    if n_refine:
        (merged, _), first, later = _median_time(refine, x, w, ctx, results, repeats=repeats)
        extra = np.asarray(merged.n_iter) - iters
        add(
            f"refinement of the best {n_refine}",
            first,
            later,
            f"more iterations {extra[extra > 0].tolist()}",
        )

    def whole(key, x):
        return gmm.fit(key, x, k, n_init=n_init)

    fit, first, later = _median_time(whole, key, x_np, repeats=repeats)
    add(
        "whole gmm.fit call",
        first,
        later,
        f"ll {float(fit.log_likelihood):.5f}, {int(fit.n_iter)} iterations, {fit.initializer}",
    )
    return rows, record


# -------------------------------------------------------------------------- report


def blas_lines() -> list[str]:
    from threadpoolctl import threadpool_info

    return [
        f"{p.get('internal_api')} {p.get('version')} (kernel {p.get('architecture', '?')}, "
        f"{p.get('threading_layer', '')} threading), {p.get('num_threads')} threads, "
        f"{pathlib.Path(p.get('filepath', '')).name}"
        for p in threadpool_info()
    ]


def environment_lines(
    repeats: int, cpu: int | None = None, pause: float = 0.0, malloc: bool = False
) -> list[str]:
    import jax
    import scipy  # noqa: F401  (loads scipy's BLAS for threadpoolctl)
    import sklearn
    import sklearn.mixture

    unset = os.environ.get(UNSET_MARKER)
    return [
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}; JAX {jax.__version__} on {jax.devices()}; "
        f"scikit-learn {sklearn.__version__}; load average (1 min) at the end "
        f"{os.getloadavg()[0]:.1f}",
        "- OPENBLAS_* overrides: " + (f"re-executed without {unset}" if unset else "none was set"),
        "- Threads: "
        + (
            "default thread pools (all cores)"
            if cpu is None
            else f"every row pinned to CPU {cpu} (one core; scikit-learn under "
            "threadpool_limits(1))"
        ),
        f"- Each row in a fresh process; later = median of {repeats} calls, "
        "interleaved with the other library's"
        + (f", each after {pause:g} s of sleep" if pause else ", back to back"),
        "- glibc malloc: "
        + (
            "keeping what it frees in every row's process ("
            + ", ".join(f"{k}={v}" for k, v in RESIDENT_MALLOC.items())
            + ")"
            if malloc
            else "its defaults"
        ),
        "",
        "BLAS and OpenMP thread pools loaded (threadpoolctl, in the parent process "
        "after importing scikit-learn):",
        "",
        *(f"- {line}" for line in blas_lines()),
    ]


def table(results: Sequence[dict]) -> str:
    rows = []
    for r in results:
        jl, sl = statistics.median(r["jaxem_later_s"]), statistics.median(r["sklearn_later_s"])
        rows.append(
            [
                CASES[r["case"]].description,
                r["k"],
                r["n_init"],
                f"{r['jaxem_first_s']:.2f}",
                f"{r['sklearn_first_s']:.2f}",
                f"{r['sklearn_first_s'] / r['jaxem_first_s']:.2f}×",
                f"{jl:.3f}",
                f"{sl:.3f}",
                f"**{sl / jl:.2f}×**",
                f"{r['jaxem_ll64']:.5f}",
                f"{r['sklearn_ll64']:.5f}",
                f"{r['jaxem_ll64'] - r['sklearn_ll64']:+.5f}",
                f"{r['jaxem_n_iter']} / {r['sklearn_n_iter']}",
                f"{r['jaxem_initializer']}{'' if r['jaxem_fast_path'] else ' (direct)'}",
                f"{r.get('load_start', float('nan')):.1f}–{r['load_end']:.1f}",
            ]
        )
    return markdown_table(
        (
            "data",
            "K",
            "n_init",
            "jaxem first s",
            "sklearn first s",
            "first speed-up",
            "jaxem later s",
            "sklearn later s",
            "later speed-up",
            "jaxem ll64",
            "sklearn ll64",
            "Δll64",
            "iterations jaxem / sklearn",
            "jaxem chosen start",
            "load",
        ),
        rows,
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Old Faithful only, one repeat")
    parser.add_argument("--large", action="store_true", help="add the 1M × 32 row (n_init=1)")
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument("--n-init", default="1,10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--phases", default=None, metavar="CASE", help="profile one case")
    parser.add_argument("--cpu", type=int, default=None, help="pin every row to this one CPU")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds of sleep before every timed call"
    )
    parser.add_argument(
        "--malloc", action="store_true", help="glibc keeps freed memory (RESIDENT_MALLOC)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n_inits = [int(v) for v in args.n_init.split(",")]

    pin(args.cpu)
    if args.child:
        row = run_row(CASES[args.child], n_inits[0], args.repeats, args.cpu, args.pause)
        print(json.dumps(row))
        return []
    if args.phases:
        for n_init in n_inits:
            rows, record = phases(CASES[args.phases], n_init, args.repeats)
            print(f"\n{args.phases}, n_init={n_init}: {', '.join(record['methods'])}\n")
            print(markdown_table(("phase", "first call s", "later s (median)", "note"), rows))
            print(json.dumps(record))
        return []

    if args.quick:
        names, args.repeats = ["faithful"], 1
    elif args.cases:
        names = [c.strip() for c in args.cases.split(",") if c.strip()]
    else:
        names = [name for name, c in CASES.items() if args.large or not c.large]
    results = []
    for name in names:
        for n_init in [1] if CASES[name].large else n_inits:
            progress(f"{name}, n_init={n_init}")
            result = run_child(name, n_init, args.repeats, args.cpu, args.pause, args.malloc)
            jl = statistics.median(result["jaxem_later_s"])
            sl = statistics.median(result["sklearn_later_s"])
            progress(
                f"  jaxem first {result['jaxem_first_s']:.2f} s later {jl:.3f} s; sklearn first "
                f"{result['sklearn_first_s']:.2f} s later {sl:.3f} s ({sl / jl:.2f}×); ll64 "
                f"{result['jaxem_ll64']:.5f} / {result['sklearn_ll64']:.5f}"
            )
            results.append(result)
            # rows so far, in case a long run is stopped
            args.out.with_suffix(".partial.json").write_text(json.dumps(results, indent=1) + "\n")

    dtypes = {(r["jaxem_dtype"], r["sklearn_dtype"]) for r in results}
    body = "\n".join(
        [
            "- Data: float32 for both; computing dtype (means_ / params.means): "
            + ", ".join(f"jaxem {a}, scikit-learn {b}" for a, b in sorted(dtypes)),
            *environment_lines(args.repeats, args.cpu, args.pause, args.malloc),
            "",
            table(results),
            "",
            "first: the first call in a fresh process (jaxem: compilation included); "
            "later: the median of the later calls; speed-up: scikit-learn's time over "
            "jaxem's; ll64: the fitted parameters' mean log-likelihood per sample in "
            "float64 (higher is better); Δll64: jaxem's minus scikit-learn's; "
            "iterations: of the chosen fit (jaxem: screening + refinement); chosen "
            "start: the portfolio method of jaxem's chosen restart, '(direct)' when the "
            "moment formulation about the data's mean fails the accuracy check at the "
            "end (`FitResult.fast_path`; fits of 8192 rows or more centre and check each "
            "chunk of rows apart, and their passes may still run the moment formulation); "
            "load: the 1-minute load average when the row started and when it ended.",
        ]
    )
    print()
    print(body)
    command = shlex.join(["python", *sys.orig_argv[1:]])
    write_markdown(
        args.out, "End to end: default jaxem.gmm.fit against scikit-learn", body, command
    )
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)  # complete: no partial
    progress(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return results


if __name__ == "__main__":
    main()
