"""Later calls of the default fit across data shapes, against scikit-learn (issue #19).

``experiments/end_to_end.py`` times a few fixed rows (Old Faithful, 5 000 × 8,
100 000 × 16) with first calls in fresh processes. Users fit other shapes, and a
rule that is right for those rows can be wrong for theirs: the agglomerative
starts once took every row up to 1 024 (a default fit of 1 000 × 5 points with
``n_init=10`` was slower than scikit-learn's, one of 1 100 points eight times
faster), and mclust's VVV tree took tens of seconds on 30 features. This script
sweeps the shape, N from a few hundred to tens of thousands, D from 2 to 50, K
from 3 to 10, and times later calls of

* jaxem: ``jaxem.gmm.fit(key, x, K, n_init=n)`` (every default: full covariances,
  the portfolio of starts, refinement of the best quarter when ``n_init > 1``);
* scikit-learn: ``GaussianMixture(K, n_init=n, random_state=...)`` (every default:
  k-means starts),

on the same float32 data (:func:`estimators.make_data`, overlapping: ``s = 1``),
each library warmed up first (compilation is ``end_to_end.py``'s business), then
``--repeats`` calls of each, interleaved, with a new key / ``random_state`` per
call; "s" is the median. ll64 is the mean log-likelihood per sample of each
library's last fit, evaluated in float64 (higher is better).

With ``--label`` the rows are written as a JSON list to ``--out`` (a path ending
in ``.json``), so that two runs of the script (for example against an earlier
commit, put first on ``PYTHONPATH``) can be joined in one table with
``--compare BEFORE.json AFTER.json``.

Run from the repository root::

    python experiments/shape_sweep.py [--repeats 3] [--out experiments/results/shape_sweep.json]
    python experiments/shape_sweep.py --compare before.json after.json --md out.md
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import (  # noqa: E402
    interleaved_calls,
    markdown_table,
    progress,
    reexec_without_openblas_overrides,
    write_markdown,
)

# (N, D, K): sizes around the agglomerations' thresholds (512 rows, 16 features)
# and the moment formulation's width (40 features), besides ordinary ones.
SHAPES = (
    (300, 5, 4),
    (512, 5, 4),
    (1_000, 5, 4),
    (3_000, 5, 4),
    (2_000, 16, 8),
    (2_000, 30, 5),
    (3_000, 50, 10),
    (20_000, 8, 6),
)
N_INITS = (1, 10)


def run(repeats: int) -> list[dict]:
    import jax
    import numpy as np
    from end_to_end import mean_log_likelihood64 as mean_ll64
    from estimators import make_data
    from sklearn.mixture import GaussianMixture

    from jaxem import gmm

    rows = []
    for n, d, k in SHAPES:
        x = np.asarray(make_data(n, d, k, seed=0, separation=1.0), np.float32)
        for n_init in N_INITS:

            def jaxem_fit(i, x=x, k=k, n_init=n_init):
                r = gmm.fit(jax.random.key(i), x, k, n_init=n_init)
                return jax.block_until_ready(r)

            def sklearn_fit(i, x=x, k=k, n_init=n_init):
                return GaussianMixture(k, n_init=n_init, random_state=i).fit(x)

            jaxem_fit(0)
            sklearn_fit(0)
            times, last = interleaved_calls({"jaxem": jaxem_fit, "sklearn": sklearn_fit}, repeats)
            p, sk = last["jaxem"].params, last["sklearn"]
            row = dict(
                n=n, d=d, k=k, n_init=n_init,
                jaxem_s=float(times["jaxem"]), sklearn_s=float(times["sklearn"]),
                jaxem_ll64=mean_ll64(x, p.weights, p.means, p.covariances),
                sklearn_ll64=mean_ll64(x, sk.weights_, sk.means_, sk.covariances_),
            )  # fmt: skip
            rows.append(row)
            progress(
                f"{n} x {d}, K = {k}, n_init = {n_init}: jaxem {row['jaxem_s']:.3f} s, "
                f"scikit-learn {row['sklearn_s']:.3f} s "
                f"({row['sklearn_s'] / row['jaxem_s']:.2f}x)"
            )
    return rows


def environment() -> str:
    import os
    import platform

    import jax
    import sklearn
    from threadpoolctl import threadpool_info

    unset = os.environ.get("JAXEM_BENCHMARK_UNSET", "none was set")
    pools = "; ".join(
        f"{p['internal_api']} {p.get('version')} ({p.get('architecture')}, "
        f"{p['num_threads']} threads)"
        for p in threadpool_info()
    )
    load = os.getloadavg()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} cores; JAX {jax.__version__}, "
        f"scikit-learn {sklearn.__version__}; OPENBLAS_* overrides unset: {unset}; "
        f"thread pools: {pools}; load average (1 min) at the end {load:.1f}"
    )


def table(rows: list[dict], before: list[dict] | None = None) -> str:
    header = ["N × D", "K", "n_init", "jaxem s", "scikit-learn s", "speed-up"]
    if before is not None:
        header += ["jaxem s before", "speed-up before"]
    header += ["ll64 jaxem − scikit-learn"]
    if before is not None:
        header += ["ll64 jaxem after − before"]
    key = lambda r: (r["n"], r["d"], r["k"], r["n_init"])  # noqa: E731
    earlier = {key(r): r for r in before or []}
    body = []
    for r in rows:
        cells = [
            f"{r['n']} × {r['d']}", r["k"], r["n_init"], f"{r['jaxem_s']:.3f}",
            f"{r['sklearn_s']:.3f}", f"**{r['sklearn_s'] / r['jaxem_s']:.2f}×**",
        ]  # fmt: skip
        b = earlier.get(key(r))
        if before is not None:
            cells += (
                [f"{b['jaxem_s']:.3f}", f"{b['sklearn_s'] / b['jaxem_s']:.2f}×"]
                if b
                else ["–", "–"]
            )
        cells.append(f"{r['jaxem_ll64'] - r['sklearn_ll64']:+.5f}")
        if before is not None:
            cells.append(f"{r['jaxem_ll64'] - b['jaxem_ll64']:+.5f}" if b else "–")
        body.append(cells)
    return markdown_table(header, body)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=None, help=".json or .md")
    parser.add_argument("--compare", nargs=2, type=pathlib.Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--md", type=pathlib.Path, default=None, help="with --compare")
    parser.add_argument("--note", default="", help="with --compare: a line under the title")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        body = (
            (args.note + "\n\n" if args.note else "")
            + f"- {after['environment']}\n\n"
            + table(after["rows"], before["rows"])
            + "\n\nspeed-up: scikit-learn's median later call over jaxem's; before: "
            + f"`{args.compare[0]}` ({before.get('label', '')}), run in the same session."
        )
        write_markdown(
            args.md,
            "Default fit across data shapes: later calls against scikit-learn",
            body,
            f"python experiments/shape_sweep.py --compare {args.compare[0]} {args.compare[1]} "
            f"--md {args.md}",
        )
        return
    reexec_without_openblas_overrides("shape_sweep")
    rows = run(args.repeats)
    out = args.out or EXPERIMENTS_DIR / "results" / "shape_sweep.json"
    import subprocess

    import jaxem

    where = pathlib.Path(jaxem.__file__).parent  # the checkout jaxem came from
    label = subprocess.run(
        ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    record = dict(rows=rows, environment=environment(), label=f"jaxem at {label} ({where})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
