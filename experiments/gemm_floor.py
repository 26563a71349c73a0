"""The floor under jaxem's EM iteration: its two matrix products against scikit-learn.

Issue #19's must-show 1 asks for one EM iteration ≥ 20× faster than
scikit-learn's at 100 000 × 16, K = 16, full covariances, float32. jaxem's
fastest iteration (the moment formulation, ``jaxem._src.gmm.passes``) is two
matrix products over the per-sample features ``Φ = [vech(x̃x̃ᵀ), x̃, 1]``
(``F = D(D+1)/2 + D + 1`` columns): the E-step's logits ``Φ W`` (N × F times
F × K) and the M-step's statistics ``Φᵀ R`` (F × N times N × K), with a softmax
between them. This script times, in one process on the same machine:

* the two products alone (XLA:CPU through ``jax.jit``, ``Φᵀ`` stored as jaxem
  stores it), and with the softmax between them: a floor no implementation of
  this formulation on XLA:CPU goes under;
* one EM iteration of scikit-learn's ``GaussianMixture`` (the difference between
  fits of ``--iters`` and 1 iterations from the same start, ``tol=0``, divided
  by ``--iters − 1``).

The ratio of the two is the largest speed-up over scikit-learn the moment
formulation can show on this machine. Medians of ``--repeats`` runs.

Run from the repository root (scikit-learn needed: ``pip install -e ".[bench]"``)::

    python experiments/gemm_floor.py [--n 100000 --d 16 --k 16] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
import warnings
from collections.abc import Sequence

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import (  # noqa: E402
    markdown_table,
    progress,
    reexec_without_openblas_overrides,
    write_markdown,
)

DEFAULT_OUT = EXPERIMENTS_DIR / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--iters", type=int, default=6, help="scikit-learn's longer fit")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def median_ms(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    reexec_without_openblas_overrides("gemm_floor")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_info

    n, d, k = args.n, args.d, args.k
    f = d * (d + 1) // 2 + d + 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    phi = jnp.asarray(rng.normal(size=(n, f)), jnp.float32)
    phi_t = jnp.asarray(np.ascontiguousarray(np.asarray(phi).T))
    w = jnp.asarray(rng.normal(size=(f, k)) / f, jnp.float32)
    resp = jnp.asarray(rng.dirichlet(np.ones(k), size=n), jnp.float32)

    e_product = jax.jit(lambda p, w: p @ w)
    m_product = jax.jit(lambda pt, r: pt @ r)
    both = jax.jit(lambda p, pt, w: pt @ jax.nn.softmax(p @ w, axis=1))
    timings = {
        "E-step product Φ W": median_ms(
            lambda: e_product(phi, w).block_until_ready(), args.repeats
        ),
        "M-step product Φᵀ R": median_ms(
            lambda: m_product(phi_t, resp).block_until_ready(), args.repeats
        ),
        "both, with the softmax between them": median_ms(
            lambda: both(phi, phi_t, w).block_until_ready(), args.repeats
        ),
    }
    progress(f"products: {timings}")

    start_means = x[rng.choice(n, k, replace=False)]

    def sklearn_fit(max_iter: int):
        model = GaussianMixture(
            n_components=k, covariance_type="full", tol=0.0, max_iter=max_iter,
            init_params="random_from_data", means_init=start_means, random_state=0,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x)

    short = median_ms(lambda: sklearn_fit(1), max(3, args.repeats // 3))
    long = median_ms(lambda: sklearn_fit(args.iters), max(3, args.repeats // 3))
    sklearn_iter = (long - short) / (args.iters - 1)
    progress(f"scikit-learn: {sklearn_iter:.1f} ms per iteration")

    floor = timings["both, with the softmax between them"]
    rows = [[name, f"{ms:.1f}", f"{sklearn_iter / ms:.1f}×"] for name, ms in timings.items()]
    rows.append(["scikit-learn, one EM iteration", f"{sklearn_iter:.1f}", "1.0×"])
    blas = "; ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    )
    body = (
        f"N = {n}, D = {d}, K = {k}, full covariances, float32 (F = {f} features); "
        f"{jax.devices()[0].platform}, {len(jax.devices())} device(s); numpy's BLAS: {blas}. "
        f"Medians of {args.repeats} runs (scikit-learn: of {max(3, args.repeats // 3)} fits of "
        f"1 and {args.iters} iterations).\n\n"
        + markdown_table(["step", "ms", "scikit-learn's iteration over it"], rows)
        + f"\n\nThe moment formulation's two products with the softmax between them take "
        f"{floor:.1f} ms: no iteration of that formulation on XLA:CPU is faster, so its "
        f"speed-up over scikit-learn is at most {sklearn_iter / floor:.1f}× on this machine.\n"
    )
    command = "python experiments/gemm_floor.py" + (
        "" if (n, d, k) == (100_000, 16, 16) else f" --n {n} --d {d} --k {k}"
    )
    write_markdown(args.out / "gemm_floor.md", "The floor under one EM iteration", body, command)
    return {"timings_ms": timings, "sklearn_ms": sklearn_iter}


if __name__ == "__main__":
    main()
