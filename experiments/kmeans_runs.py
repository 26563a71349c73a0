"""The default one-restart start: one k-means, or the best of several by inertia?

A default fit (``n_init=1``) starts EM from one k-means of the standardised
data (``init="standardized_kmeans"``: greedy k-means++ seeding, then Lloyd).
One k-means run is a random draw: on clustered data it sometimes keeps two
centres in one cluster and one across two, and EM from it ends at a lower
optimum. k-means practice (R's ``nstart``, scikit-learn's ``KMeans(n_init=…)``)
keeps the run of least inertia among several. This script measures whether
that choice would give EM better starts, the EM fits being otherwise equal:

* for each data set and each of ``--keys`` keys: ``R`` k-means runs of the
  standardised data (the default start's settings:
  ``jaxem._src.init.KMEANS_TOL`` and ``KMEANS_TRIALS_FACTOR``) from
  ``jax.random.split(key, R)``;
* EM (``gmm.fit_from``, its defaults) from the first run's labels ("one
  k-means") and from the labels of the run of least inertia ("best of R");
* per data set: how many keys reach the best optimum either way found (within
  1e-3 per sample), and the mean gap to it.

Data: synthetic Gaussian clusters (:func:`estimators.make_data`) and real data
(Old Faithful, iris, wine, breast cancer, and mclust's banknote, diabetes and
thyroid data; some with more components than classes).

Run from the repository root::

    python experiments/kmeans_runs.py [--runs 3] [--keys 12] [--covariance-types full,diag]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, progress, write_markdown  # noqa: E402

RESULTS = EXPERIMENTS_DIR / "results"
GAP = 1e-3
LABELS = ("one", "inertia", "likelihood")


def datasets():
    import numpy as np
    from datasets import load_faithful, load_iris, load_wine
    from estimators import make_data

    def csv(name):
        path = EXPERIMENTS_DIR / "data" / f"{name}.csv"
        return np.loadtxt(path, delimiter=",", skiprows=1)

    from sklearn.datasets import load_breast_cancer

    iris, wine = load_iris()[0], load_wine()[0]
    return [
        ("synthetic 5000 × 8, s = 4", make_data(5000, 8, 5, 3, 4.0), 5),
        ("synthetic 5000 × 8, s = 2", make_data(5000, 8, 5, 5, 2.0), 5),
        ("synthetic 2000 × 5, s = 3", make_data(2000, 5, 6, 7, 3.0), 6),
        ("synthetic 3000 × 16, s = 2", make_data(3000, 16, 8, 8, 2.0), 8),
        ("Old Faithful", load_faithful(), 3),
        ("Old Faithful", load_faithful(), 5),
        ("iris", iris, 3),
        ("iris", iris, 5),
        ("wine", wine, 3),
        ("wine", wine, 5),
        ("breast cancer", load_breast_cancer().data, 2),
        ("banknote", csv("mclust_banknote"), 4),
        ("diabetes", csv("mclust_diabetes"), 3),
        ("thyroid", csv("mclust_thyroid"), 3),
    ]


def compare(x, k, covariance_type, runs, keys):
    """``(one, by inertia, by likelihood)``: EM's final mean log-likelihoods from
    one k-means, from the best of ``runs`` by inertia and from the best by the
    mixture log-likelihood of the partition's M-step (EM's start), one per key."""
    import jax
    import jax.numpy as jnp

    import jaxem
    from jaxem._src.init import KMEANS_TOL, KMEANS_TRIALS_FACTOR
    from jaxem.kmeans import kmeans

    x = jnp.asarray(x, jnp.float32)
    scale = 1 / jnp.std(x, axis=0)

    @jax.jit
    def kmeans_runs(key):
        def one_run(run_key):
            return kmeans(
                run_key, x, k, tol=KMEANS_TOL, scale=scale, trials_factor=KMEANS_TRIALS_FACTOR
            )

        return jax.vmap(one_run)(jax.random.split(key, runs))

    def start_of(labels):
        resp = jax.nn.one_hot(labels, k, dtype=x.dtype)
        return jaxem.gmm.m_step(resp, x, covariance_type=covariance_type)

    def em_from(labels):
        return float(jaxem.gmm.fit_from(start_of(labels), x).log_likelihood)

    one, by_inertia, by_likelihood = [], [], []
    for key in range(keys):
        result = kmeans_runs(jax.random.key(key))
        starts = [start_of(labels) for labels in result.labels]
        start_ll = [float(jnp.mean(jaxem.gmm.log_prob(p, x))) for p in starts]
        one.append(em_from(result.labels[0]))
        by_inertia.append(em_from(result.labels[int(jnp.argmin(result.inertia))]))
        by_likelihood.append(em_from(result.labels[int(jnp.nanargmax(jnp.asarray(start_ll)))]))
    return one, by_inertia, by_likelihood


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=12)
    parser.add_argument("--covariance-types", default="full,diag")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "kmeans_runs.md")
    args = parser.parse_args(argv)

    import numpy as np

    rows, totals = [], {}
    for covariance_type in args.covariance_types.split(","):
        for name, x, k in datasets():
            progress(f"{covariance_type} {name} K={k}")
            finals = [np.asarray(v) for v in compare(x, k, covariance_type, args.runs, args.keys)]
            top = max(v.max() for v in finals)
            gaps = [top - v for v in finals]
            synthetic = name.startswith("synthetic")
            for label, gap in zip(LABELS, gaps, strict=True):
                mean_gap = float(np.mean(gap))
                totals.setdefault((covariance_type, synthetic, label), []).append(mean_gap)
            rows.append(
                [
                    covariance_type,
                    name,
                    str(k),
                    " / ".join(str(np.sum(g < GAP)) for g in gaps),
                    " / ".join(f"{np.mean(g):.4f}" for g in gaps),
                ]
            )
    summary = [
        [ct, "synthetic" if synthetic else "real",
         *(f"{sum(totals[ct, synthetic, label]):.3f}" for label in LABELS)]
        for ct in args.covariance_types.split(",")
        for synthetic in (True, False)
    ]  # fmt: skip
    command = (
        f"python experiments/kmeans_runs.py --runs {args.runs} --keys {args.keys} "
        f"--covariance-types {args.covariance_types}"
    )
    body = "\n".join(
        [
            f"EM (`gmm.fit_from`, float32) from the labels of one k-means of the standardised "
            f"data (one), of the run of least inertia among {args.runs} (inertia), and of the "
            "run whose partition's M-step has the highest mixture log-likelihood (likelihood); "
            f"the runs from `jax.random.split(key, {args.runs})`, the first being the one; "
            f"{args.keys} keys per data set. Reach: keys whose fit ends within {GAP:g} per "
            "sample of the best optimum any of the three found; gap: its mean distance below "
            "that optimum.",
            "",
            markdown_table(
                [
                    "covariance",
                    "data",
                    "K",
                    "reach: " + " / ".join(LABELS),
                    "mean gap: " + " / ".join(LABELS),
                ],
                rows,
            ),
            "",
            "Sum of the mean gaps over the data sets:",
            "",
            markdown_table(
                [
                    "covariance",
                    "data",
                    "one k-means",
                    f"best of {args.runs} by inertia",
                    f"best of {args.runs} by start log-likelihood",
                ],
                summary,
            ),
        ]
    )
    title = f"One k-means start, or the best of {args.runs}"
    write_markdown(args.out, title, body, command)
    print(args.out)


if __name__ == "__main__":
    main()
