"""Model selection end to end: ``gmm.select`` against scikit-learn's loop.

A user choosing the covariance type and K by BIC calls ``jaxem.gmm.select(key,
x, n_components=..., covariance_types=..., n_init=n)`` once; with scikit-learn
the same is a loop of ``GaussianMixture(K, covariance_type=t, n_init=n).fit(x)``
over every (type, K), keeping the lowest ``.bic(x)``. This script times both on
the same float32 data, each case in a fresh process:

* first call: jaxem's includes compilation (the programs of one case's shapes);
* later calls: the median of ``--repeats`` calls of each, interleaved, with a
  new key / ``random_state`` per call.

It also reports the (type, K) each chose and the chosen fit's mean
log-likelihood per sample (each library's own value). Cases: Old Faithful
(272 × 2), 5 000 × 8 overlapping (``s = 1``) and well separated (``s = 10``),
20 000 × 8 (``s = 2``), all with five clusters of
:func:`estimators.make_data` but Old Faithful. ``n_init`` 1 and 10 (the
20 000-row case 1 only).

Run from the repository root (a worktree of an earlier commit first on
``PYTHONPATH`` times that commit's jaxem)::

    python experiments/select_speed.py [--repeats 3] [--cases faithful,5000x8-overlap]
        [--out experiments/results/select_speed.md]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
import warnings

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

TYPES = ("full", "tied", "diag", "spherical")
KS = tuple(range(1, 8))
# name: (rows, features, separation, n_init values); rows None: Old Faithful
CASES = {
    "faithful": (None, 2, None, (1, 10)),
    "5000x8-overlap": (5_000, 8, 1.0, (1, 10)),
    "5000x8-separated": (5_000, 8, 10.0, (1, 10)),
    "20000x8": (20_000, 8, 2.0, (1,)),
}


def load(name: str):
    import numpy as np

    n, d, separation, _ = CASES[name]
    if n is None:
        path = EXPERIMENTS_DIR / "data" / "faithful.csv"
        return np.loadtxt(path, delimiter=",", skiprows=1).astype(np.float32)
    from estimators import make_data

    return np.asarray(make_data(n, d, 5, seed=0, separation=separation), np.float32)


def child(name: str, n_init: int, repeats: int) -> dict:
    """One case in this process: first call, then interleaved later calls."""
    import jax
    from sklearn.mixture import GaussianMixture

    from jaxem import gmm

    x = load(name)

    def jaxem_select(i):
        r = gmm.select(jax.random.key(i), x, n_components=KS, covariance_types=TYPES, n_init=n_init)
        return r.best_covariance_type, r.best_n_components, float(r.log_likelihood)

    def sklearn_select(i):
        best = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a restart's ConvergenceWarning
            for t in TYPES:
                for k in KS:
                    m = GaussianMixture(k, covariance_type=t, n_init=n_init, random_state=i)
                    m.fit(x)
                    bic = m.bic(x)
                    if best is None or bic < best[0]:
                        best = (bic, t, k, float(m.score(x)))
        return best[1], best[2], best[3]

    record = dict(case=name, n=int(x.shape[0]), d=int(x.shape[1]), n_init=n_init)
    for lib, fn in (("jaxem", jaxem_select), ("sklearn", sklearn_select)):
        start = time.perf_counter()
        fn(0)
        record[f"{lib}_first_s"] = time.perf_counter() - start
    later, chosen = interleaved_calls({"jaxem": jaxem_select, "sklearn": sklearn_select}, repeats)
    for lib in later:
        record[f"{lib}_later_s"] = float(later[lib])
        record[f"{lib}_chosen"] = chosen[lib]
    record["load"] = __import__("os").getloadavg()[0]
    record["jaxem_path"] = str(pathlib.Path(gmm.__file__).resolve().parents[1])
    return record


def rows_of(records: list[dict]) -> list[list]:
    rows = []
    for r in records:
        jt, jk, jll = r["jaxem_chosen"]
        st, sk, sll = r["sklearn_chosen"]
        rows.append(
            [
                r["case"], f"{r['n']} × {r['d']}", r["n_init"],
                f"{r['jaxem_first_s']:.2f}", f"{r['sklearn_first_s']:.2f}",
                f"{r['jaxem_later_s']:.3f}", f"{r['sklearn_later_s']:.3f}",
                f"**{r['sklearn_later_s'] / r['jaxem_later_s']:.2f}×**",
                f"{jt} {jk} ({jll:.4f})", f"{st} {sk} ({sll:.4f})", f"{r['load']:.1f}",
            ]
        )  # fmt: skip
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "N_INIT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        record = child(args.child[0], int(args.child[1]), args.repeats)
        print("RESULT " + json.dumps(record), flush=True)
        return
    reexec_without_openblas_overrides("select_speed")
    records = []
    for name in args.cases.split(","):
        for n_init in CASES[name][3]:
            cmd = [sys.executable, __file__, "--child", name, str(n_init)]
            cmd += ["--repeats", str(args.repeats)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            record = json.loads(out.split("RESULT ", 1)[1])
            records.append(record)
            progress(
                f"{name}, n_init={n_init}: jaxem {record['jaxem_first_s']:.2f} s first, "
                f"{record['jaxem_later_s']:.3f} s later; scikit-learn "
                f"{record['sklearn_first_s']:.2f} / {record['sklearn_later_s']:.3f} s"
            )
    header = [
        "case", "N × D", "n_init", "jaxem first s", "scikit-learn first s", "jaxem later s",
        "scikit-learn later s", "later speed-up", "jaxem chosen (ll)",
        "scikit-learn chosen (ll)", "load",
    ]  # fmt: skip
    from shape_sweep import environment

    body = (
        f"- {environment()}\n\n"
        f"Covariance types {', '.join(TYPES)}; K = {KS[0]}..{KS[-1]}; BIC. jaxem from "
        f"`{records[0]['jaxem_path']}`.\n\n"
        + markdown_table(header, rows_of(records))
        + "\n\nfirst: the first call in a fresh process (jaxem: compilation included); "
        "later: the median of the later calls, interleaved; chosen: the (type, K) of "
        "the lowest BIC and its fit's mean log-likelihood per sample; load: the "
        "1-minute load average at the end of the row."
    )
    command = f"python experiments/select_speed.py --repeats {args.repeats} --cases {args.cases}"
    if args.out is None:
        print(body)
        return
    title = "Model selection: gmm.select against scikit-learn's loop"
    write_markdown(args.out, title, body, command)
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
