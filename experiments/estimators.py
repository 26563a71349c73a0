"""End to end: jaxem.sklearn's estimators against scikit-learn's, fit by fit.

``experiments/benchmark.py`` times one EM iteration from given parameters; this
script times what a scikit-learn user runs: ``Estimator(...).fit(X)``,
initialisation (k-means), the ``n_init`` restarts, the loop until ``tol`` and
the final attributes, for :class:`jaxem.sklearn.GaussianMixture` and
:class:`jaxem.sklearn.BayesianGaussianMixture` against
:class:`sklearn.mixture.GaussianMixture` and
:class:`sklearn.mixture.BayesianGaussianMixture`, with the same arguments on the
same data (``n_components=K, covariance_type=c, n_init, init_params="kmeans",
tol=1e-3, max_iter=100, random_state=0``), all in float64.

Columns: ``first``, the first ``fit`` of a configuration in the process
(jaxem: compilation included; scikit-learn: its first call); ``later``, the
median of ``--repeats`` further fits with identical arguments (jaxem reuses the
compiled program). ``fit`` returns NumPy attributes, so a jaxem fit has finished
on the device when it returns (the script calls ``jax.block_until_ready`` on
nothing else). The starts differ (each library draws its own k-means), so the
iteration counts and the final scores (``score(X)``, for the Bayesian mixtures
scikit-learn's variational score) differ a little; they are printed to show
that the fits are comparable.

Run from the repository root, without the machine's OpenBLAS overrides::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python experiments/estimators.py \\
        [--quick] [--n 20000] [--d 8] [--k 8] [--n-init 4] [--repeats 3] \\
        [--covariance-types full,diag] [--out experiments/results/estimators.md]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_info

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, progress, write_markdown  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results" / "estimators.md"


def make_data(n: int, d: int, k: int, seed: int, separation: float = 4.0) -> np.ndarray:
    """``n`` points from ``k`` Gaussian clusters in ``d`` dimensions, with random
    correlated covariances (per-feature standard deviations about 1) and centres
    drawn from ``N(0, separation² I)``: with the default, about four standard
    deviations apart per feature."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(k, d))
    labels = rng.integers(k, size=n)
    factors = rng.normal(scale=0.5, size=(k, d, d)) + np.eye(d)
    z = rng.normal(size=(n, d))
    return centres[labels] + np.einsum("nd,nde->ne", z, factors[labels])


def time_fits(make, x: np.ndarray, repeats: int) -> tuple[float, float, object]:
    """``(first fit s, median later fit s, last fitted estimator)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of a restart
        start = time.perf_counter()
        model = make().fit(x)
        first = time.perf_counter() - start
        later = []
        for _ in range(repeats):
            start = time.perf_counter()
            model = make().fit(x)
            later.append(time.perf_counter() - start)
    return first, statistics.median(later), model


def blas_lines() -> list[str]:
    """The BLAS and OpenMP pools threadpoolctl finds in this process."""
    return [
        f"{p.get('internal_api')} {p.get('version')} ({p.get('threading_layer', '')}), "
        f"{p.get('num_threads')} threads, {pathlib.Path(p.get('filepath', '')).name}"
        for p in threadpool_info()
    ]


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 000 × 2, K = 3, one repeat")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--n-init", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--covariance-types", default="full,diag")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.d, args.k, args.repeats = 2_000, 2, 3, 1
    covariance_types = [c.strip() for c in args.covariance_types.split(",") if c.strip()]

    import sklearn.mixture

    import jaxem.sklearn

    x = make_data(args.n, args.d, args.k, args.seed)
    pairs = {
        "GaussianMixture": (jaxem.sklearn.GaussianMixture, sklearn.mixture.GaussianMixture),
        "BayesianGaussianMixture": (
            jaxem.sklearn.BayesianGaussianMixture,
            sklearn.mixture.BayesianGaussianMixture,
        ),
    }
    rows, results = [], []
    for name, (ours, theirs) in pairs.items():
        for covariance_type in covariance_types:
            params = dict(
                n_components=args.k,
                covariance_type=covariance_type,
                n_init=args.n_init,
                init_params="kmeans",
                tol=1e-3,
                max_iter=100,
                random_state=0,
            )
            timings = {}
            for library, cls in (("jaxem", ours), ("sklearn", theirs)):
                progress(f"{name} {covariance_type}: {library}")
                first, later, model = time_fits(lambda cls=cls, p=params: cls(**p), x, args.repeats)
                timings[library] = (first, later, model)
                results.append(
                    dict(
                        estimator=name,
                        covariance_type=covariance_type,
                        library=library,
                        first_s=first,
                        later_s=later,
                        n_iter=int(model.n_iter_),
                        score=float(model.score(x)),
                    )
                )
            (jf, jl, jm), (sf, sl, sm) = timings["jaxem"], timings["sklearn"]
            rows.append(
                [
                    name,
                    covariance_type,
                    f"{jf:.2f}",
                    f"{jl:.3f}",
                    f"{sf:.2f}",
                    f"{sl:.3f}",
                    f"{sl / jl:.1f}×",
                    f"{jm.n_iter_} / {sm.n_iter_}",
                    f"{jm.score(x):.4f} / {sm.score(x):.4f}",
                ]
            )

    import jax

    header = [
        f"- Data: {args.n:,} × {args.d}, K = {args.k}, n_init = {args.n_init}, float64; "
        f"{args.repeats} later fit(s) per row{' (--quick)' if args.quick else ''}",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}; JAX devices {jax.devices()}",
        "- Load average (1 min) at the end: " + f"{os.getloadavg()[0]:.1f}",
        "- OPENBLAS_* overrides in the environment: "
        + (
            ", ".join(v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ)
            or "none"
        ),
        "",
        "BLAS and OpenMP thread pools loaded (threadpoolctl):",
        "",
        *(f"- {line}" for line in blas_lines()),
    ]
    table = markdown_table(
        (
            "estimator",
            "covariance",
            "jaxem first s",
            "jaxem later s",
            "sklearn first s",
            "sklearn later s",
            "later speed-up",
            "n_iter_ jaxem / sklearn",
            "score jaxem / sklearn",
        ),
        rows,
    )
    body = "\n".join([*header, "", table])
    print()
    print(body)
    command = shlex.join(["python", *sys.orig_argv[1:]])
    write_markdown(args.out, "End-to-end fits: jaxem.sklearn against scikit-learn", body, command)
    progress(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
