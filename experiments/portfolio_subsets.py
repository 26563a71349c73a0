"""Should the agglomerations repeat in the default portfolio of large data?

Above :data:`jaxem._src.init.HC_MAX_SAMPLES` rows the two agglomerative starts
(``"hc_vvv"``, mclust's VVV tree, and ``"hc"``, Ward's) run on random subsets
of the rows, so a second restart of either differs from the first. Until
2026-12-07 the default portfolio (``init="auto"``) therefore put both into the
cycle of methods that fills ``n_init`` restarts ("trees in the cycle"); now each
appears once and the cycle is ``kmeans``, ``random_from_data`` and
``standardized_kmeans`` ("trees once", jaxem's :func:`~jaxem._src.gmm.family.portfolio`).
A tree costs far more than a k-means start (256 rows of 8 features: about
12 ms for VVV's, 4 ms for Ward's, against 1-2 ms), so the question is whether
the repeated trees find better optima.

For every data set, key and ``n_init`` this fits the default ``gmm.fit`` with
both portfolios (float32 data, everything else at its defaults) and compares
the chosen fits' mean log-likelihood per sample in float64, and times three
later calls of each, alternating (``block_until_ready``; compilation
excluded). The data: synthetic mixtures from ``experiments/estimators.py``
(overlapping to far apart, many small clusters, anisotropic clusters of unequal
sizes) and scikit-learn's digits and breast cancer reduced by PCA to 8 and 5
features (more than 512 rows each, at most 16 features, where the VVV tree is in
the portfolio).

Run from the repository root (about 6 minutes on 2 cores)::

    python experiments/portfolio_subsets.py [--keys 8] [--n-init 8,10,20]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import (  # noqa: E402
    markdown_table,
    progress,
    reexec_without_openblas_overrides,
    write_results,
)

# a gain or loss of less than this (per sample) counts as the same optimum
SAME = 1e-6


def trees_in_cycle(n_init: int, n_samples: int, n_features: int | None = None) -> tuple[str, ...]:
    """The portfolio before this change (jaxem at b782fad): above
    HC_MAX_SAMPLES rows the agglomerations also join the cycle."""
    from jaxem._src.hierarchical import UNROLL_MAX_FEATURES
    from jaxem._src.init import HC_MAX_SAMPLES

    agglomerations = ["hc_vvv", "hc"]
    if n_features is not None and n_features > UNROLL_MAX_FEATURES:
        agglomerations = ["hc"]
    cycle = ["kmeans", "random_from_data", "standardized_kmeans"]
    if n_samples > HC_MAX_SAMPLES:
        cycle += agglomerations
    methods = ["standardized_kmeans", *agglomerations]
    first = len(methods)
    while len(methods) < n_init:
        methods.append(cycle[(len(methods) - first) % len(cycle)])
    return tuple(methods[:n_init])


def anisotropic(n: int, d: int, k: int, seed: int):
    """Clusters of unequal sizes (Dirichlet(0.7) shares) and random, strongly
    anisotropic covariances."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 0.7)))
    centres = rng.normal(scale=3.0, size=(k, d))
    factors = rng.normal(size=(k, d, d)) * rng.exponential(1.0, size=(k, 1, d))
    return centres[labels] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), factors[labels])


def cases():
    """name: (seed -> data, K)."""
    from estimators import make_data
    from sklearn import datasets
    from sklearn.decomposition import PCA

    digits = PCA(8, random_state=0).fit_transform(datasets.load_digits().data)
    cancer = PCA(5, random_state=0).fit_transform(datasets.load_breast_cancer().data)
    return {
        "5000 × 8, K = 5, 1σ": (lambda s: make_data(5000, 8, 5, s, 1.0), 5),
        "5000 × 8, K = 5, 3σ": (lambda s: make_data(5000, 8, 5, s, 3.0), 5),
        "5000 × 8, K = 5, 10σ": (lambda s: make_data(5000, 8, 5, s, 10.0), 5),
        "2000 × 5, K = 4, 2σ": (lambda s: make_data(2000, 5, 4, s, 2.0), 4),
        "1000 × 3, K = 8, 3σ": (lambda s: make_data(1000, 3, 8, s, 3.0), 8),
        "3000 × 4, K = 6, anisotropic": (lambda s: anisotropic(3000, 4, 6, s), 6),
        "digits, PCA to 8, K = 10": (lambda s: digits, 10),
        "breast cancer, PCA to 5, K = 3": (lambda s: cancer, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--n-init", default="8,10,20")
    parser.add_argument("--out", type=pathlib.Path, default=EXPERIMENTS_DIR / "results")
    args = parser.parse_args()
    reexec_without_openblas_overrides("portfolio_subsets")

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxem import gmm
    from jaxem._src.gmm import family

    jax.config.update("jax_enable_x64", True)  # the float64 scores; the fits stay float32
    once = family.portfolio
    variants = {"trees once": once, "trees in the cycle": trees_in_cycle}

    def fit(variant, key, x, k, n_init):
        family.portfolio = variants[variant]
        try:
            return jax.block_until_ready(gmm.fit(key, x, k, n_init=n_init))
        finally:
            family.portfolio = once

    records = []
    for n_init in [int(n) for n in args.n_init.split(",")]:
        for name, (make, k) in cases().items():
            progress(f"n_init={n_init}: {name}")
            for seed in range(args.keys):
                x = jnp.asarray(np.asarray(make(seed), np.float32))
                x64 = jnp.asarray(x, jnp.float64)
                key = jax.random.key(seed)
                record = dict(data=name, K=k, n_init=n_init, seed=seed, n=int(x.shape[0]))
                times = {v: [] for v in variants}
                for variant in variants:
                    result = fit(variant, key, x, k, n_init)  # compiles (first key)
                    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), result.params)
                    record[variant] = dict(
                        ll64=float(jnp.mean(gmm.log_prob(p64, x64))),
                        chosen=result.initializer,
                        methods=list(variants[variant](n_init, x.shape[0], x.shape[1])),
                    )
                for _ in range(3):
                    for variant in variants:
                        start = time.perf_counter()
                        fit(variant, key, x, k, n_init)
                        times[variant].append(time.perf_counter() - start)
                for variant in variants:
                    record[variant]["seconds"] = statistics.median(times[variant])
                records.append(record)

    rows = []
    for n_init in sorted({r["n_init"] for r in records}):
        for name in cases():
            group = [r for r in records if r["data"] == name and r["n_init"] == n_init]
            once, cycle = ([r[v] for r in group] for v in ("trees once", "trees in the cycle"))
            gain = np.array([a["ll64"] - b["ll64"] for a, b in zip(once, cycle, strict=True)])
            ratio = [a["seconds"] / b["seconds"] for a, b in zip(once, cycle, strict=True)]
            rows.append(
                [
                    name,
                    n_init,
                    len(group),
                    int(np.sum(gain > SAME)),
                    int(np.sum(gain < -SAME)),
                    f"{gain.min():+.1e}",
                    f"{gain.max():+.1e}",
                    f"{1e3 * statistics.median(b['seconds'] for b in cycle):.1f}",
                    f"{1e3 * statistics.median(a['seconds'] for a in once):.1f}",
                    f"{statistics.median(ratio):.2f}",
                ]
            )
    gains = np.array([r["trees once"]["ll64"] - r["trees in the cycle"]["ll64"] for r in records])
    body = (
        f"{len(records)} fits of each portfolio (keys 0–{args.keys - 1}); float32 data, "
        "mean log-likelihood per sample of the chosen fit in float64 (higher is better); "
        f"'higher' and 'lower': trees once against trees in the cycle, by more than {SAME:g}. "
        f"Over all: higher in {int(np.sum(gains > SAME))}, lower in "
        f"{int(np.sum(gains < -SAME))}, the same optimum in "
        f"{int(np.sum(np.abs(gains) <= SAME))}. Times: medians of 3 later calls each, "
        "the two portfolios alternating, then the median over the keys; ratio: trees "
        "once over trees in the cycle (per key, median).\n\n"
        + markdown_table(
            [
                "data",
                "n_init",
                "keys",
                "higher",
                "lower",
                "least gain",
                "largest gain",
                "in the cycle ms",
                "once ms",
                "time ratio",
            ],
            rows,
        )
        + "\n"
    )
    write_results(
        args.out,
        "portfolio_subsets",
        "The agglomerations once or in the cycle of the default portfolio (more than 512 rows)",
        body,
        records,
    )
    print(body)


if __name__ == "__main__":
    main()
