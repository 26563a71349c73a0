"""Speed of one EM iteration: jaxem against scikit-learn, gmmx and pomegranate.

Every library that is installed (``pip install -e ".[bench]"``) runs EM on the
same synthetic data from the same starting parameters, with no early stopping,
for a fixed number of iterations; the table gives milliseconds per iteration,
speed-ups, the share of the machine's measured matrix-product rate and memory
bandwidth reached, and how far each library's answer is from jaxem's.

End-to-end fits of the scikit-learn estimators (``jaxem.sklearn.GaussianMixture``
and ``BayesianGaussianMixture`` against scikit-learn's, initialisation and
restarts included, first and later calls apart) are timed by
``experiments/estimators.py``.

Run from the repository root::

    python experiments/benchmark.py [--quick] [--configs full-100k-16-16,...]
        [--dtypes float32,float64] [--libraries jaxem,sklearn,gmmx,pomegranate]
        [--out experiments/results/benchmark.md]

Configurations are named ``<covariance>-<N>-<D>-<K>``: N samples, D features, K
components (``full-100k-64-32`` is 100 000 × 64 data, 32 components). ``--quick``
keeps the names but shrinks N (to 5 000; 20 000 for the 1M configuration;
``full-100k-64-32`` becomes 10 000 × 32, K = 8), the iteration counts and the
repeats: a smoke test of every code path, not a measurement.

How the time per iteration is measured
--------------------------------------
Each library is run for ``n1`` and for ``n2`` EM iterations (``tol`` set so it
never stops early; the iteration count is checked afterwards) and

    ms/iteration = (median t(n2) − median t(n1)) / (n2 − n1),

medians over interleaved repeats. Everything a call does once (input
validation, initialisation, a final E-step, dispatch, copying results) cancels
in the difference. ``n1 = 1``; ``n2`` is the configuration's count, lowered for
a slow library so that one (n1, n2) pair fits in about half of ``--budget``
seconds (the ``iters`` column gives the counts used). Repeats stop after
``--repeats`` pairs or when ``--budget`` seconds are spent, but at least two
pairs are timed unless one pair alone exceeds the budget. JAX programs are
compiled first with ``jax.jit(...).lower(...).compile()`` (``max_iter`` is static,
so ``n1`` and ``n2`` are two programs); the compile time of the ``n1`` program is
reported separately, each program's first call is an untimed warm-up, and every
timed call ends in ``jax.block_until_ready``. Eager libraries get one untimed
warm-up call with ``max_iter=1`` (used as a timed ``t(1)`` sample when it takes
over 2 s, where one-time costs no longer matter).

Libraries, and the exact calls
------------------------------
* **jaxem**: ``jax.jit`` of ``jaxem._src.gmm.fit.run_batch(starts, x, tol=0,
  reg_covar=1e-6, max_iter=n, formulation=f)`` on a batch of one start, for
  ``f = "auto"`` (``gmm.fit``'s default), ``"moments"`` (one matrix product per
  direction over moment features) and ``"direct"`` (scikit-learn's
  formulation). From 8192 rows on, the moment features are built once per fit
  in spatially tight chunks, each centred at its own mean
  (``jaxem._src.gmm.layout``), and ``auto`` checks each chunk's error from its
  responsibilities, recomputing that chunk by the direct formulation where it
  is too large (compiled as the fallback). The ``auto`` row's note says whether
  the moments were accurate about the data's mean alone or needed the chunks.
  Two more rows time the researcher's composable path, ``jax.jit`` of
  ``jaxem.em(gmm.e_step, partial(gmm.m_step, covariance_type=c,
  reg_covar=1e-6), params, data, tol=0, max_iter=n)``: ``composable`` with
  ``data = x`` (the steps' own choice between the moments about the data's
  mean and the direct formulation), ``arranged`` with ``data =
  gmm.arrange(x, K, covariance_type=c)`` (the fit's chunks, built inside the
  program; that cost cancels in the difference below).
* **scikit-learn**: ``GaussianMixture(n_components=K, covariance_type=c, tol=0,
  reg_covar=1e-6, max_iter=n, n_init=1, init_params="random_from_data",
  weights_init=w, means_init=μ, precisions_init=Σ⁻¹, random_state=0).fit(x)``.
  ``fit`` always initialises before it honours the ``*_init`` arrays
  (``_initialize_parameters``: k-means for the default ``init_params``, then
  ``_initialize``, which estimates all parameters from the resulting
  responsibilities, about the cost of one M-step) and runs one more E-step after
  its loop. We use ``init_params="random_from_data"`` so that this overhead is
  small and of fixed cost (k-means runs a data-dependent number of iterations
  and would make t(n) noisy), and cancel it by the ``t(n2) − t(n1)`` difference
  rather than by subclassing, so scikit-learn runs unmodified. With ``tol=0``
  its test ``abs(change) < tol`` is never true.
* **gmmx**: ``EMFitter(tol=0.0, max_iter=n, reg_covar=1e-6)`` compiled with
  ``EMFitter.fit.lower(fitter, x, gmm).compile()``, ``gmm =
  GaussianMixtureModelJax.from_squeezed(means=μ, covariances=Σ, weights=w,
  covariance_type=c)``. gmmx has full and diagonal covariances only, checks
  for float32 (``check_shape`` raises "Expected float32"), and is not safe under
  ``jax_enable_x64`` (its ``jnp.eye`` without a dtype turns the full covariances
  into float64 and then fails that check), so it runs inside
  ``jax.enable_x64(False)``. Its loop runs while ``diff >= tol``, always true for
  ``tol=0``.
* **pomegranate** (torch, CPU, ``torch.set_num_threads(--threads)``):
  ``GeneralMixtureModel([Normal(means=μ_k, covs=Σ_k, covariance_type=c,
  check_data=False), ...], priors=w, max_iter=n, tol=-inf,
  check_data=False).fit(X)`` with ``X`` a ``torch.Tensor``; the model is rebuilt,
  untimed, before every call because ``fit`` updates it in place. ``tol=-inf``
  because pomegranate stops when the improvement is below ``tol``, which float32
  rounding can make negative. It has no tied covariance; ``"sphere"`` wants a
  (D,) ``covs`` of equal values; it has no ``reg_covar`` (the 1e-6 difference is
  far below the agreement checked). In float64 its (N, K) log-probabilities are
  stored in a float32 buffer (``torch.empty(..., dtype=self.dtype)``, where the
  mixture's ``dtype`` is that of a float32 ``_device`` parameter), so its
  float64 rows are partly float32.

Data, start and correctness
---------------------------
K Gaussian clusters (weights ∝ U(0.5, 1.5); means ~ N(0, 25/D · I), about 7
standard deviations apart; covariances with random orientation and variances in
U(0.5, 1.5)), seed ``--seed``. Start: K distinct random data rows as means, the
data covariance (its diagonal, its mean variance) for every component, equal
weights. After ``n2`` iterations every library's parameters are compared with
jaxem's ``direct`` run (the reference; the first row with a result if jaxem is
not run): ``rel Δ ll`` is the relative difference of the mean log-likelihood of
the final parameters, all evaluated by one float64 function
(``jaxem.gmm.log_prob``), and ``rel Δ params`` the largest of max|Δ| / max|ref|
over weights, means and covariances. The comparison is made after the same
number of iterations: where a row's ``n2`` differs from the reference's, the
reference is run again (untimed) for that count.
Above 1e-3 in float32 (1e-6 in float64) the cell is marked ``!``.

Work and bytes per iteration (the rate columns)
-----------------------------------------------
Flops count a multiply-add as 2. With F the width of the moment features:

* full: moments ``4·N·K·F``, ``F = D(D+1)/2 + D + 1`` (logits ``Φ W`` and
  statistics ``Rᵀ Φ``); direct ``4·N·K·D²`` (``(x − μ_k) P_k`` and
  ``Σ r (x − μ)(x − μ)ᵀ``);
* tied: moments ``4·N·K·(D+1) + 4·N·D²`` (``Φ W``, ``Rᵀ Φ`` over ``[x̃, 1]``,
  ``x̃ P`` and ``x̃ᵀ x̃``); direct ``2·N·K·D² + 2·N·D²``;
* diag: ``4·N·K·(2D+1)``; spherical ``4·N·K·(D+2)``, either formulation.

Peers are charged the direct count (their formulation). ``% matmul`` is that
rate over JAX's measured rate for a large square matrix product of the same
dtype (numpy's is printed too). ``% bw`` is ``N·D·itemsize`` bytes (the data,
read once per iteration) per iteration time over the measured read bandwidth
(a jitted ``jnp.sum`` of a large array); it is the bound that matters where the
arithmetic intensity is low (diag, spherical, small K). jaxem's moment formulation
reads more than the data: where its (N, F) features fit in
``jaxem._src.sources.FEATURE_CACHE_BYTES`` it builds them once per fit (outside the
timed iterations' difference, inside the compile-and-first-iteration time) and reads
them twice per iteration, ``2·N·F·itemsize`` bytes.

BLAS
----
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` force a kernel or a cache size on
OpenBLAS (numpy's and scipy's BLAS, which scikit-learn uses), which would handicap
the peers. If either is set, the script re-executes itself without them before
numpy is imported and says so; the report names the BLAS libraries loaded and the
kernel ("architecture") numpy's uses (``threadpoolctl.threadpool_info()``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import UNSET_MARKER, reexec_without_openblas_overrides

if __name__ == "__main__":
    reexec_without_openblas_overrides("benchmark")

import argparse
import dataclasses
import functools
import gc
import importlib.metadata
import math
import pathlib
import platform
import shlex
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from threadpoolctl import threadpool_limits

jax.config.update("jax_enable_x64", True)  # float64 rows; float32 arrays stay float32

import jax.numpy as jnp  # noqa: E402

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, progress, write_markdown  # noqa: E402

import jaxem  # noqa: E402
from jaxem import gmm  # noqa: E402
from jaxem._src.gmm.fit import run_batch  # noqa: E402
from jaxem._src.gmm.layout import layout_shape  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results" / "benchmark.md"
LIBRARIES = ("jaxem", "sklearn", "gmmx", "pomegranate")
DTYPES = ("float32", "float64")
REG_COVAR = 1e-6
#: Above these relative differences a correctness cell is marked with "!".
AGREEMENT = {"float32": 1e-3, "float64": 1e-6}


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark shape; ``n2`` is the largest iteration count used."""

    covariance_type: str
    n: int
    d: int
    k: int
    n2: int
    label: str  # N as written in the name: "100k", "1M"
    separation: float = 1.0  # the means' spread, a multiple of the default's
    offset: float = 0.0  # added to every coordinate: data far from the origin

    name: str = ""

    def __post_init__(self):
        if not self.name:  # --quick shrinks a configuration but keeps its name
            name = f"{self.covariance_type}-{self.label}-{self.d}-{self.k}"
            if self.separation != 1.0:
                name += f"-sep{self.separation:g}"
            if self.offset:
                name += f"-off{self.offset:g}"
            object.__setattr__(self, "name", name)


CONFIGS = (
    Config("full", 100_000, 16, 16, 12, "100k"),
    Config("full", 100_000, 64, 32, 6, "100k"),
    Config("diag", 1_000_000, 64, 64, 6, "1M"),
    Config("tied", 100_000, 16, 16, 12, "100k"),
    Config("spherical", 100_000, 16, 16, 12, "100k"),
)
#: The separation sweep (``--configs sweep``): the default data's means are
#: about 7σ apart (σ ≈ 1); ×0.3 overlaps (about 2σ), ×3 and ×10 are 20σ and
#: 70σ apart, and ``off1000`` moves the default data 1000 (1000σ) from the origin.
SWEEP = tuple(
    Config(kind, 100_000, 16, 16, 12, "100k", separation=sep, offset=off)
    for kind in ("full", "tied", "diag", "spherical")
    for sep, off in ((0.3, 0.0), (1.0, 0.0), (3.0, 0.0), (10.0, 0.0), (1.0, 1000.0))
)


def quick_config(config: Config) -> Config:
    """The smoke-test version of a configuration: same name, far smaller N.

    ``full-100k-64-32`` also shrinks to D = 32, K = 8: with only a few thousand
    samples, 32 full 64-D components collapse (nearly singular covariances, slow
    subnormal float32 arithmetic), which is not what the benchmark measures.
    """
    if config.n >= 1_000_000:
        return dataclasses.replace(config, n=20_000, n2=4)
    if config.covariance_type == "full" and config.d * config.k > 256:
        return dataclasses.replace(config, n=10_000, d=32, k=8, n2=4)
    return dataclasses.replace(config, n=5_000, n2=4)


@dataclasses.dataclass
class Settings:
    n1: int
    repeats: int  # most (n1, n2) pairs
    budget: float  # seconds per row for the timed pairs
    max_temp_bytes: float
    threads: int


@dataclasses.dataclass
class Row:
    """One line of the table: a library (and variant) on one configuration and dtype."""

    config: Config
    dtype: str
    library: str
    variant: str = ""
    n1: int = 0
    n2: int = 0
    ms_per_iter: float = math.nan
    spread: float = math.nan  # half the range of the per-pair estimates, relative
    compile_s: float = math.nan
    flops_per_iter: float = math.nan
    params: tuple | None = None  # final (weights, means, covariances), float64 numpy
    rerun: Callable[[int], tuple] | None = None  # untimed run for another count
    rel_ll: float = math.nan
    rel_params: float = math.nan
    note: str = ""
    skipped: str = ""

    @property
    def label(self) -> str:
        return f"{self.library} ({self.variant})" if self.variant else self.library


class Skip(Exception):
    """A library cannot run a configuration; the message says why."""


# --------------------------------------------------------------------------- data


def make_data(config: Config, seed: int) -> np.ndarray:
    """(N, D) float64 samples from a K-component mixture of ``config``'s covariance type."""
    rng = np.random.default_rng(seed)
    n, d, k = config.n, config.d, config.k
    weights = rng.uniform(0.5, 1.5, k)
    weights /= weights.sum()
    means = rng.normal(scale=math.sqrt(25.0 / d), size=(k, d)) * config.separation + config.offset
    labels = rng.choice(k, size=n, p=weights)
    kind = config.covariance_type

    def factor() -> np.ndarray:  # a random Cholesky-like factor L, Σ = L Lᵀ
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        return q * np.sqrt(rng.uniform(0.5, 1.5, d))

    if kind == "full":
        factors = np.stack([factor() for _ in range(k)])
    elif kind == "tied":
        factors = factor()[None]
    elif kind == "diag":
        scales = np.sqrt(rng.uniform(0.5, 1.5, (k, d)))
    else:
        scales = np.sqrt(rng.uniform(0.5, 1.5, (k, 1)))
    x = np.empty((n, d))
    rows = 100_000
    for lo in range(0, n, rows):  # chunks bound the temporaries for N = 1M
        z = rng.standard_normal((min(rows, n - lo), d))
        lab = labels[lo : lo + rows]
        if kind in ("full", "tied"):
            f = factors[lab % len(factors)]
            x[lo : lo + len(z)] = np.einsum("nde,ne->nd", f, z) + means[lab]
        else:
            x[lo : lo + len(z)] = z * scales[lab] + means[lab]
    return x


def make_start(x: np.ndarray, config: Config, seed: int) -> tuple[np.ndarray, ...]:
    """(weights, means, covariances) in float64: random rows, the data covariance."""
    rng = np.random.default_rng(seed + 1)
    k, kind = config.k, config.covariance_type
    means = x[rng.choice(x.shape[0], size=k, replace=False)].copy()
    weights = np.full(k, 1.0 / k)
    cov = np.cov(x, rowvar=False)
    if kind == "full":
        covariances = np.broadcast_to(cov, (k, *cov.shape)).copy()
    elif kind == "tied":
        covariances = cov
    elif kind == "diag":
        covariances = np.broadcast_to(np.diag(cov), (k, cov.shape[0])).copy()
    else:
        covariances = np.full(k, np.mean(np.diag(cov)))
    return weights, means, covariances


# ---------------------------------------------------------------------- work counts


def flops_per_iteration(kind: str, formulation: str, n: int, d: int, k: int) -> float:
    """Nominal flops of one EM iteration (see the module docstring)."""
    if kind == "full":
        if formulation == "moments":
            return 4.0 * n * k * (d * (d + 1) / 2 + d + 1)
        return 4.0 * n * k * d * d
    if kind == "tied":
        if formulation == "moments":
            return 4.0 * n * k * (d + 1) + 4.0 * n * d * d
        return 2.0 * n * k * d * d + 2.0 * n * d * d
    if kind == "diag":
        return 4.0 * n * k * (2 * d + 1)
    return 4.0 * n * k * (d + 2)


# ------------------------------------------------------------------------- timing


def timed(go: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = go()
    return time.perf_counter() - start, out


def measure(
    prepare: Callable[[int], tuple[Callable[[], Any], float]],
    row: Row,
    config_n2: int,
    settings: Settings,
    *,
    compiled: bool,
) -> Any:
    """Fill ``row``'s timing fields; return the output of the last ``n2`` call.

    ``prepare(n)`` returns ``(make, compile_seconds)``; ``make()`` does any untimed
    set-up and returns ``go``, the zero-argument call that is timed.
    """
    n1 = settings.n1
    make1, row.compile_s = prepare(n1)
    if not compiled:
        row.compile_s = math.nan
    t_warm, _ = timed(make1())  # compiled: first call; eager: spins up threads, pages in
    if not compiled and t_warm < settings.budget / 4:
        t_warm, _ = timed(make1())  # the first call of a library pays its lazy imports
    t1s = [t_warm] if (not compiled and t_warm > 2.0) else []
    # A warm-up does n1 iterations plus about one iteration's worth of fixed cost.
    per_iter = max(t_warm / (n1 + 1), 1e-6)
    fit = int(settings.budget / 2 / per_iter) - n1 - 2
    n2 = max(n1 + 1, min(config_n2, fit))
    make2, _ = prepare(n2)
    if compiled:
        timed(make2())
    row.n1, row.n2 = n1, n2
    t2s: list[float] = []
    out = None
    spent = 0.0
    while len(t2s) < settings.repeats:
        if len(t1s) <= len(t2s):
            t, _ = timed(make1())
            t1s.append(t)
            spent += t
        t, out = timed(make2())
        t2s.append(t)
        spent += t
        pair = spent / len(t2s)
        if len(t2s) >= 2 and spent + pair > settings.budget:
            break
        if len(t2s) == 1 and pair > settings.budget:
            break
    row.ms_per_iter = 1e3 * (statistics.median(t2s) - statistics.median(t1s)) / (n2 - n1)
    per_pair = [(b - a) / (n2 - n1) for a, b in zip(t1s, t2s, strict=False)]
    if len(per_pair) > 1 and row.ms_per_iter > 0:
        row.spread = 1e3 * (max(per_pair) - min(per_pair)) / 2 / row.ms_per_iter
    return out


def check_temporaries(compiled_program, settings: Settings) -> None:
    """Skip a JAX program whose temporaries exceed ``--max-temp-gb`` (before running it)."""
    try:
        analysis = compiled_program.memory_analysis()
        temp = analysis.temp_size_in_bytes
    except Exception:  # not every backend reports it
        return
    if temp > settings.max_temp_bytes:
        raise Skip(
            f"XLA needs {temp / 2**30:.1f} GiB of temporaries (> --max-temp-gb "
            f"{settings.max_temp_bytes / 2**30:g})"
        )


# ---------------------------------------------------------------------- libraries


def run_jaxem(formulation, config, x_np, start, row, settings):
    """jaxem's ``run_batch`` for one formulation."""
    dtype = x_np.dtype
    x = jnp.asarray(x_np)
    kind = config.covariance_type
    params = gmm.make_params(*(jnp.asarray(a, dtype) for a in start), covariance_type=kind)
    starts = jax.tree.map(lambda a: a[None], params)
    tol = jnp.asarray(0.0, dtype)
    reg_covar = jnp.asarray(REG_COVAR, dtype)
    programs = {}

    def program(n):
        if n not in programs:

            def em(starts, x, tol, reg_covar):
                return run_batch(
                    starts, x, tol=tol, reg_covar=reg_covar, max_iter=n, formulation=formulation
                )

            t, compiled = timed(lambda: jax.jit(em).lower(starts, x, tol, reg_covar).compile())
            check_temporaries(compiled, settings)
            programs[n] = (compiled, t)
        return programs[n]

    def prepare(n):
        compiled, t = program(n)
        return (lambda: lambda: jax.block_until_ready(compiled(starts, x, tol, reg_covar))), t

    def extract(out, n):
        results, fast_path = out
        if int(results.n_iter[0]) != n:
            row.note += f"stopped after {int(results.n_iter[0])} iterations; "
        p = jax.tree.map(lambda a: a[0], results.params)
        return (p.weights, p.means, p.covariances), bool(fast_path)

    out = measure(prepare, row, config.n2, settings, compiled=True)
    row.params, fast = extract(out, row.n2)
    # data of LAYOUT_MIN_ROWS rows or more centres its features chunk by chunk
    # (jaxem._src.gmm.layout) and checks each chunk in the pass: the moment
    # formulation unless a chunk's check fails
    chunked = formulation != "direct" and layout_shape(config.n, config.k) is not None
    used = formulation if formulation != "auto" else ("moments" if fast or chunked else "direct")
    if formulation == "auto" and dtype == np.float32:
        if fast:
            row.note += "ran moments; "
        elif chunked:
            row.note += "moments in per-chunk centred chunks (not accurate about the data mean); "
        else:
            row.note += "fell back to direct; "
    row.flops_per_iter = flops_per_iteration(kind, used, config.n, config.d, config.k)
    row.rerun = lambda n: extract(prepare(n)[0]()(), n)[0]


def run_composable(config, x_np, start, row, settings, arranged=False):
    """The researcher's path: ``jaxem.em(gmm.e_step, gmm.m_step, ...)`` compiled,
    on the array, or (``arranged``) on ``gmm.arrange(x, K)`` built inside the
    program (a cost per call, which cancels in the per-iteration difference)."""
    dtype = x_np.dtype
    x = jnp.asarray(x_np)
    kind = config.covariance_type
    params = gmm.make_params(*(jnp.asarray(a, dtype) for a in start), covariance_type=kind)
    tol = jnp.asarray(0.0, dtype)
    m_step = functools.partial(gmm.m_step, covariance_type=kind, reg_covar=REG_COVAR)
    programs = {}

    def program(n):
        if n not in programs:

            def em(params, x, tol):
                data = gmm.arrange(x, config.k, covariance_type=kind) if arranged else x
                return jaxem.em(gmm.e_step, m_step, params, data, tol=tol, max_iter=n)

            t, compiled = timed(lambda: jax.jit(em).lower(params, x, tol).compile())
            check_temporaries(compiled, settings)
            programs[n] = (compiled, t)
        return programs[n]

    def prepare(n):
        compiled, t = program(n)
        return (lambda: lambda: jax.block_until_ready(compiled(params, x, tol))), t

    def extract(out, n):
        if int(out.n_iter) != n:
            row.note += f"stopped after {int(out.n_iter)} iterations; "
        p = out.params
        return p.weights, p.means, p.covariances

    out = measure(prepare, row, config.n2, settings, compiled=True)
    row.params = extract(out, row.n2)
    row.flops_per_iter = flops_per_iteration(kind, "moments", config.n, config.d, config.k)
    row.rerun = lambda n: extract(prepare(n)[0]()(), n)


def run_sklearn(config, x_np, start, row, settings):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    kind = config.covariance_type
    dtype = x_np.dtype
    weights, means, covariances = start
    if kind in ("full", "tied"):
        precisions = np.linalg.inv(covariances)
        precisions = 0.5 * (precisions + np.swapaxes(precisions, -1, -2))
    else:
        precisions = 1.0 / covariances

    def prepare(n):
        def make():
            model = GaussianMixture(
                n_components=config.k,
                covariance_type=kind,
                tol=0.0,
                reg_covar=REG_COVAR,
                max_iter=n,
                n_init=1,
                init_params="random_from_data",
                weights_init=weights.astype(dtype),
                means_init=means.astype(dtype),
                precisions_init=precisions.astype(dtype),
                random_state=0,
            )

            def go():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    return model.fit(x_np)

            return go

        return make, 0.0

    def extract(model, n):
        if model.n_iter_ != n:
            row.note += f"stopped after {model.n_iter_} iterations; "
        return model.weights_, model.means_, model.covariances_

    model = measure(prepare, row, config.n2, settings, compiled=False)
    row.params = extract(model, row.n2)
    row.flops_per_iter = flops_per_iteration(kind, "direct", config.n, config.d, config.k)
    row.rerun = lambda n: extract(prepare(n)[0]()(), n)


def run_gmmx(config, x_np, start, row, settings):
    from gmmx import EMFitter, GaussianMixtureModelJax

    kind = config.covariance_type
    if kind not in ("full", "diag"):
        raise Skip("gmmx has full and diag covariances only")
    if x_np.dtype != np.float32:
        raise Skip("gmmx supports float32 only (check_shape: 'Expected float32')")
    weights, means, covariances = (np.asarray(a, np.float32) for a in start)
    with jax.enable_x64(False):
        x = jnp.asarray(x_np)
        model = GaussianMixtureModelJax.from_squeezed(
            means=jnp.asarray(means),
            covariances=jnp.asarray(covariances),
            weights=jnp.asarray(weights),
            covariance_type=kind,
        )
    programs = {}

    def program(n):
        if n not in programs:
            fitter = EMFitter(tol=0.0, max_iter=n, reg_covar=REG_COVAR)
            with jax.enable_x64(False):
                t, compiled = timed(lambda: EMFitter.fit.lower(fitter, x, model).compile())
            check_temporaries(compiled, settings)
            programs[n] = (fitter, compiled, t)
        return programs[n]

    def prepare(n):
        fitter, compiled, t = program(n)

        def go():
            with jax.enable_x64(False):
                return jax.block_until_ready(compiled(fitter, x, model))

        return (lambda: go), t

    def extract(result, n):
        if int(result.n_iter) != n:
            row.note += f"stopped after {int(result.n_iter)} iterations; "
        fitted = result.gmm
        return fitted.weights_numpy, fitted.means_numpy, fitted.covariances.values_numpy

    result = measure(prepare, row, config.n2, settings, compiled=True)
    row.params = extract(result, row.n2)
    row.flops_per_iter = flops_per_iteration(kind, "direct", config.n, config.d, config.k)
    row.rerun = lambda n: extract(prepare(n)[0]()(), n)


def run_pomegranate(config, x_np, start, row, settings):
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    kind = config.covariance_type
    if kind == "tied":
        raise Skip("pomegranate's Normal has full, diag and sphere covariances only")
    torch.set_num_threads(settings.threads)
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[x_np.dtype]
    weights, means, covariances = start
    if kind == "spherical":  # 'sphere' takes a (D,) vector of equal variances
        covariances = np.repeat(covariances[:, None], config.d, axis=1)
    X = torch.from_numpy(x_np)
    if dtype == torch.float64:
        row.note += "log-probabilities held in float32; "

    def build(n):
        components = [
            Normal(
                means=torch.tensor(means[i], dtype=dtype),
                covs=torch.tensor(covariances[i], dtype=dtype),
                covariance_type="sphere" if kind == "spherical" else kind,
                check_data=False,
            )
            for i in range(config.k)
        ]
        return GeneralMixtureModel(
            components,
            priors=torch.tensor(weights, dtype=dtype),
            max_iter=n,
            tol=-math.inf,
            check_data=False,
        )

    def prepare(n):
        def make():
            model = build(n)
            return lambda: model.fit(X)

        return make, 0.0

    def extract(model, n):
        weights = model.priors.detach().numpy()
        means = np.stack([c.means.detach().numpy() for c in model.distributions])
        covs = np.stack([c.covs.detach().numpy() for c in model.distributions])
        return weights, means, covs[:, 0] if kind == "spherical" else covs

    model = measure(prepare, row, config.n2, settings, compiled=False)
    row.params = extract(model, row.n2)
    row.flops_per_iter = flops_per_iteration(kind, "direct", config.n, config.d, config.k)
    row.rerun = lambda n: extract(prepare(n)[0]()(), n)


# ---------------------------------------------------------------------- agreement


@jax.jit
def _mean_log_likelihood(params, x):
    return jnp.mean(gmm.log_prob(params, x))


def mean_log_likelihood(params: tuple, x64: jax.Array, kind: str) -> float:
    """The float64 mean log-likelihood of (weights, means, covariances) on the data."""
    weights, means, covariances = (np.asarray(a, np.float64) for a in params)
    weights = weights / weights.sum()
    if kind in ("full", "tied"):  # float32 results are symmetric to float32 precision only
        covariances = 0.5 * (covariances + np.swapaxes(covariances, -1, -2))
    p = gmm.make_params(weights, means, covariances, covariance_type=kind)
    return float(_mean_log_likelihood(p, x64))


def relative_difference(params: tuple, reference: tuple) -> float:
    """max over weights, means, covariances of max|a − b| / max|b|."""
    worst = 0.0
    for a, b in zip(params, reference, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


def compare(rows: list[Row], x64: jax.Array, kind: str) -> str:
    """Fill ``rel_ll``/``rel_params`` against the reference row; return its label.

    A row is compared with the reference after the same number of iterations:
    where its ``n2`` differs, the reference is run again (untimed) for that count.
    """
    done = [r for r in rows if r.params is not None]
    if not done:
        return ""
    ref = next((r for r in done if r.library == "jaxem" and r.variant == "direct"), done[0])
    references: dict[int, tuple[tuple, float]] = {}

    def reference(n: int) -> tuple[tuple, float]:
        if n not in references:
            params = ref.params if n == ref.n2 else ref.rerun(n)
            references[n] = params, mean_log_likelihood(params, x64, kind)
        return references[n]

    for r in done:
        try:
            ref_params, ref_ll = reference(r.n2)
        except Exception as error:
            r.note += f"reference for {r.n2} iterations failed ({type(error).__name__}); "
            continue
        try:
            ll = mean_log_likelihood(r.params, x64, kind)
        except Exception as error:
            r.note += f"final parameters invalid ({type(error).__name__}: {error}); "
            continue
        r.rel_ll = abs(ll - ref_ll) / abs(ref_ll)
        r.rel_params = relative_difference(r.params, ref_params)
    for r in rows:  # free the memory held by closures
        r.rerun = None
    return ref.label


# ------------------------------------------------------------------ reference rates


def _median_seconds(fn: Callable[..., Any], *args: Any, repeats: int) -> float:
    """Median wall-clock seconds of ``fn(*args)`` after one warm-up call."""
    jax.block_until_ready(fn(*args))
    return statistics.median(
        timed(lambda: jax.block_until_ready(fn(*args)))[0] for _ in range(repeats)
    )


def reference_rates(matmul_n: int, bandwidth_bytes: int) -> dict[str, float]:
    """GFLOP/s of a square matmul (JAX and numpy, per dtype) and read GB/s (JAX sum)."""
    rates: dict[str, float] = {}
    flops = 2 * matmul_n**3
    for dtype in DTYPES:
        a = jax.random.normal(jax.random.key(0), (matmul_n, matmul_n), dtype)
        b = jax.random.normal(jax.random.key(1), (matmul_n, matmul_n), dtype)
        seconds = _median_seconds(jax.jit(jnp.matmul), a, b, repeats=5)
        rates[f"jax matmul {dtype}"] = flops / seconds / 1e9
        seconds = _median_seconds(np.matmul, np.asarray(a), np.asarray(b), repeats=5)
        rates[f"numpy matmul {dtype}"] = flops / seconds / 1e9
    big = jnp.ones(bandwidth_bytes // 4, jnp.float32)
    seconds = _median_seconds(jax.jit(jnp.sum), big, repeats=7)
    rates["read bandwidth"] = bandwidth_bytes / seconds / 1e9
    return rates


# --------------------------------------------------------------------- environment


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return "?"


def _git_commit() -> str:
    try:
        root = EXPERIMENTS_DIR.parent
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "?"
    except OSError:
        return "?"


def blas_lines() -> tuple[str, list[str]]:
    """(numpy's BLAS in one line, one line per loaded thread pool)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed", []
    numpy_blas = "not found"
    lines = []
    for info in threadpool_info():
        path = info.get("filepath", "")
        owner = next(
            (name for name in ("numpy", "scipy", "torch", "sklearn") if name in path), "system"
        )
        text = (
            f"{info.get('internal_api')} {info.get('version') or ''} "
            f"(kernel {info.get('architecture') or '?'}, {info.get('num_threads')} threads, "
            f"{info.get('threading_layer', 'n/a')} threading) from {owner}: `{path}`"
        )
        lines.append(text)
        if owner == "numpy" and info.get("user_api") == "blas":
            numpy_blas = (
                f"{info.get('internal_api')} {info.get('version') or ''}, kernel "
                f"{info.get('architecture') or '?'}, {info.get('num_threads')} threads"
            )
    return numpy_blas, lines


# ----------------------------------------------------------------------- the table


def _ms(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if math.isfinite(v) else "–"


def _sci(v: float, limit: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.0e}{' !' if v > limit else ''}"


HEADER = (
    "config",
    "dtype",
    "library",
    "iters",
    "ms/iter",
    "± %",
    "× sklearn",
    "compile s",
    "GFLOP/s",
    "% matmul",
    "GB/s",
    "% bw",
    "rel Δ ll",
    "rel Δ params",
    "note",
)


def table_rows(rows: Sequence[Row], rates: dict[str, float]) -> list[list[str]]:
    out = []
    sklearn_ms = {(r.config.name, r.dtype): r.ms_per_iter for r in rows if r.library == "sklearn"}
    for r in rows:
        c = r.config
        name = f"{c.covariance_type} ({c.n:,}, {c.d}, {c.k})"
        if r.skipped:
            out.append([name, r.dtype, r.label, *["–"] * 11, f"skipped: {r.skipped}"])
            continue
        seconds = r.ms_per_iter / 1e3
        ok = math.isfinite(seconds) and seconds > 0
        gflops = r.flops_per_iter / seconds / 1e9 if ok else math.nan
        gbs = c.n * c.d * np.dtype(r.dtype).itemsize / seconds / 1e9 if ok else math.nan
        base = sklearn_ms.get((c.name, r.dtype), math.nan)
        speedup = f"{base / r.ms_per_iter:.1f}" if ok and base > 0 else "–"
        limit = AGREEMENT[r.dtype]
        note = r.note.strip().rstrip(";")
        if math.isfinite(r.ms_per_iter) and not ok:
            note = (note + "; " if note else "") + "noise exceeded the time difference"
        out.append(
            [
                name,
                r.dtype,
                r.label,
                f"{r.n1}→{r.n2}",
                _ms(r.ms_per_iter),
                f"{100 * r.spread:.0f}" if math.isfinite(r.spread) else "–",
                speedup,
                f"{r.compile_s:.1f}" if math.isfinite(r.compile_s) else "–",
                f"{gflops:.1f}" if ok else "–",
                _pct(gflops / rates[f"jax matmul {r.dtype}"]) if ok else "–",
                f"{gbs:.1f}" if ok else "–",
                _pct(gbs / rates["read bandwidth"]) if ok else "–",
                _sci(r.rel_ll, limit),
                _sci(r.rel_params, limit),
                note,
            ]
        )
    return out


def summary_rows(rows: Sequence[Row]) -> list[list[str]]:
    """Per configuration and dtype: jaxem's default against the fastest peer."""
    out = []
    keys = list(dict.fromkeys((r.config.name, r.dtype) for r in rows))
    for name, dtype in keys:
        cell = [r for r in rows if (r.config.name, r.dtype) == (name, dtype)]
        timed_ok = [r for r in cell if math.isfinite(r.ms_per_iter) and r.ms_per_iter > 0]
        jaxem = [r for r in timed_ok if r.library == "jaxem"]
        ours = next((r for r in jaxem if r.variant == "auto"), None) or (
            min(jaxem, key=lambda r: r.ms_per_iter) if jaxem else None
        )
        peers = [r for r in timed_ok if r.library != "jaxem"]
        best = min(peers, key=lambda r: r.ms_per_iter) if peers else None
        sk = next((r for r in peers if r.library == "sklearn"), None)
        out.append(
            [
                name,
                dtype,
                f"{_ms(ours.ms_per_iter)} ({ours.variant})" if ours else "–",
                f"{_ms(best.ms_per_iter)} ({best.library})" if best else "–",
                f"{best.ms_per_iter / ours.ms_per_iter:.1f}×" if ours and best else "–",
                f"{sk.ms_per_iter / ours.ms_per_iter:.1f}×" if ours and sk else "–",
            ]
        )
    return out


# ---------------------------------------------------------------------------- main


def run_cell(config, dtype, x64_np, x64, start, libraries, settings) -> list[Row]:
    """Every requested library on one configuration and dtype."""
    x_np = x64_np if dtype == "float64" else x64_np.astype(dtype)
    plan: list[tuple[str, str, Callable]] = []
    if "jaxem" in libraries:
        for formulation in ("auto", "moments", "direct"):
            plan.append(
                ("jaxem", formulation, lambda r, f=formulation: run_jaxem(f, *r)),
            )
        plan.append(("jaxem", "composable", lambda r: run_composable(*r)))
        plan.append(("jaxem", "arranged", lambda r: run_composable(*r, arranged=True)))
    runners = {"sklearn": run_sklearn, "gmmx": run_gmmx, "pomegranate": run_pomegranate}
    for library in ("sklearn", "gmmx", "pomegranate"):
        if library in libraries:
            plan.append((library, "", lambda r, fn=runners[library]: fn(*r)))
    rows = []
    for library, variant, runner in plan:
        row = Row(config, dtype, library, variant)
        rows.append(row)
        try:
            runner((config, x_np, start, row, settings))
        except Skip as reason:
            row.skipped = str(reason)
        except Exception as error:  # a peer failing on a configuration is a result
            row.skipped = f"failed: {type(error).__name__}: {str(error)[:200]}"
        status = row.skipped or (
            f"{_ms(row.ms_per_iter)} ms/iteration ({row.n1}→{row.n2})"
            + (f", compile {row.compile_s:.1f} s" if math.isfinite(row.compile_s) else "")
        )
        progress(f"{config.name} {dtype} {row.label}: {status}")
        gc.collect()
    ref = compare(rows, x64, config.covariance_type)
    if ref:
        progress(f"{config.name} {dtype}: correctness against {ref}")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, about a minute")
    parser.add_argument(
        "--configs",
        default=",".join(c.name for c in CONFIGS),
        help="comma-separated names among: "
        + ", ".join(c.name for c in CONFIGS + SWEEP)
        + "; 'sweep' for the separation sweep",
    )
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=None, help="most timed pairs per row")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds of timed pairs per row (soft)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--max-temp-gb", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    by_name = {c.name.lower(): c for c in CONFIGS + SWEEP}
    wanted = [s.strip().lower() for s in args.configs.split(",") if s.strip()]
    if "sweep" in wanted:
        at = wanted.index("sweep")
        wanted[at : at + 1] = [c.name.lower() for c in SWEEP]
    wanted = list(dict.fromkeys(wanted))
    unknown = [s for s in wanted if s not in by_name]
    dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    libraries = [s.strip() for s in args.libraries.split(",") if s.strip()]
    if unknown:
        parser.error(f"unknown --configs {unknown}; choose from {list(by_name)}")
    if set(dtypes) - set(DTYPES):
        parser.error(f"--dtypes must be among {DTYPES}; got {dtypes}")
    if set(libraries) - set(LIBRARIES):
        parser.error(f"--libraries must be among {LIBRARIES}; got {libraries}")
    configs = [by_name[s] for s in wanted]
    if args.quick:
        configs = [quick_config(c) for c in configs]
    settings = Settings(
        n1=1,
        repeats=args.repeats or (3 if args.quick else 7),
        budget=args.budget or (2.0 if args.quick else 8.0),
        max_temp_bytes=args.max_temp_gb * 2**30,
        threads=args.threads,
    )
    command = shlex.join(["python", *sys.orig_argv[1:]])

    available = []
    for library in libraries:
        module = {"sklearn": "sklearn", "jaxem": "jaxem"}.get(library, library)
        try:
            __import__(module)
            if library == "pomegranate":
                __import__("torch")
            available.append(library)
        except ImportError as error:
            progress(f"{library} skipped: not installed ({error}); pip install -e '.[bench]'")
    numpy_blas, pools = blas_lines()
    unset = os.environ.get(UNSET_MARKER)
    progress(f"numpy BLAS: {numpy_blas}")
    if unset:
        progress(f"re-executed without {unset}")
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        progress(
            f"warning: load average {load_start[0]:.1f} before starting: other work shares "
            "the machine and the timings will be noisy (thread pools that spin-wait, such "
            "as torch's OpenMP, suffer most)"
        )

    progress("measuring the reference matmul rate and read bandwidth")
    rates = reference_rates(1024 if args.quick else 2048, (64 if args.quick else 512) * 2**20)
    for name, value in rates.items():
        progress(f"  {name}: {value:.1f} {'GB/s' if 'bandwidth' in name else 'GFLOP/s'}")

    rows: list[Row] = []
    for config in configs:
        progress(f"{config.name}: generating {config.n:,} × {config.d} data, K = {config.k}")
        # One BLAS thread while generating: threaded OpenBLAS QR/inversions of
        # 64 x 64 matrices hung here (every thread in a futex wait) after JAX
        # had started its thread pools.
        with threadpool_limits(limits=1):
            x64_np = make_data(config, args.seed)
            start = make_start(x64_np, config, args.seed)
        x64 = jnp.asarray(x64_np)
        for dtype in dtypes:
            rows += run_cell(config, dtype, x64_np, x64, start, available, settings)
        del x64_np, x64
        gc.collect()
    load_end = os.getloadavg()

    versions = ", ".join(
        f"{p} {_version(p)}"
        for p in (
            "jax",
            "jaxlib",
            "numpy",
            "scipy",
            "scikit-learn",
            "threadpoolctl",
            "gmmx",
            "pomegranate",
            "torch",
        )
    )
    header_lines = [
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; jaxem commit {_git_commit()}",
        f"- Machine: {_cpu_model()}, {os.cpu_count()} cores, {_memory_gib()}; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- Load average (1 min) at start / end: {load_start[0]:.1f} / {load_end[0]:.1f}"
        + (
            " — **other work shared the machine: the timings are not reliable**"
            if max(load_start[0], load_end[0]) > 0.5
            else ""
        ),
        f"- Versions: {versions}",
        f"- numpy's BLAS: {numpy_blas}"
        + (f"; re-executed without {unset}" if unset else "; no OPENBLAS_* override was set"),
        f"- torch threads: {args.threads}; JAX devices: {jax.devices()}",
        "- Reference rates: "
        + "; ".join(
            f"{k} {v:.1f} {'GB/s' if 'bandwidth' in k else 'GFLOP/s'}" for k, v in rates.items()
        ),
        f"- Timing: n1 = {settings.n1}, at most {settings.repeats} pairs or "
        f"{settings.budget:g} s per row{', --quick' if args.quick else ''}",
    ]
    skipped = [f"- {r.config.name} {r.dtype} {r.label}: {r.skipped}" for r in rows if r.skipped]
    body = "\n".join(
        [
            *header_lines,
            "",
            "BLAS and OpenMP thread pools loaded (threadpoolctl):",
            "",
            *(f"- {line}" for line in pools),
            "",
            "## jaxem's default (`auto`) against the fastest peer, ms per EM iteration",
            "",
            markdown_table(
                ("config", "dtype", "jaxem", "fastest peer", "speed-up", "vs sklearn"),
                summary_rows(rows),
            ),
            "",
            "## Every library",
            "",
            "`iters`: n1→n2 iterations timed; `± %`: half the range of the per-pair "
            "estimates; `% matmul`, `% bw`: of the reference rates above; `rel Δ`: against "
            "jaxem (direct), or the first row of its configuration when jaxem is not run, "
            "after the same number of iterations, `!` above "
            f"{AGREEMENT['float32']:g} (float32) / {AGREEMENT['float64']:g} (float64). "
            "Formulas and API calls: the docstring of `experiments/benchmark.py`.",
            "",
            markdown_table(HEADER, table_rows(rows, rates)),
            "",
            *(["Skipped:", "", *skipped, ""] if skipped else []),
        ]
    )
    print()
    print(body)
    write_markdown(args.out, "Speed of one EM iteration", body, command)
    progress(f"wrote {args.out}")


if __name__ == "__main__":
    main()
