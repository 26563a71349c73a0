"""How many rows should ``"hc"`` and ``"hc_vvv"`` agglomerate on large data?

Above :data:`jaxem._src.init.HC_MAX_SAMPLES` rows the two agglomerative starts
run on a random subset of the rows (:func:`jaxem._src.init.hc_subset_size`),
and the EM that follows runs on all rows. This script fits ``gmm.fit(key, x,
K, init=method)`` (one restart, default arguments otherwise, float32) from
subsets of several sizes, with several keys, on the synthetic mixtures of
``experiments/end_to_end.py`` and reports the final mean log-likelihood of each
fit and the time of the start alone (``gmm.init`` under ``jit``, median of two later
calls).

Run from the repository root::

    python experiments/hc_subset.py [--sizes 128,256,512,1024] [--keys 4] [--cpu 0]
"""

from __future__ import annotations

import argparse
import gc
import os
import pathlib
import statistics
import sys
import time

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, progress, write_markdown  # noqa: E402

CASES = {  # name: (N, D, K, separation)
    "5000x8-overlap": (5_000, 8, 5, 1.0),
    "5000x8-separated": (5_000, 8, 5, 10.0),
    "20000x16-overlap": (20_000, 16, 16, 1.0),
    "20000x16-separated": (20_000, 16, 16, 10.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="128,256,512,1024")
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--cpu", type=int, default=None, help="pin to this one CPU")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    import jax
    import numpy as np
    from estimators import make_data

    from jaxem import gmm
    from jaxem._src import init as init_lib
    from jaxem._src.programs import BoundedJit

    sizes = [int(s) for s in args.sizes.split(",")]
    default_size = init_lib.hc_subset_size
    rows = []
    for name in args.cases.split(","):
        n, d, k, separation = CASES[name]
        x = make_data(n, d, k, seed=0, separation=separation).astype(np.float32)
        default = default_size(k, d)
        for m in sizes:
            init_lib.hc_subset_size = lambda n_components, n_features, m=m: m
            # no compiled program of the last size may be reused
            jax.clear_caches()
            for program in gc.get_objects():
                if isinstance(program, BoundedJit):
                    program.clear()
            for method in ("hc_vvv", "hc"):
                lls, iters = [], []
                for seed in range(args.keys):
                    fit = gmm.fit(jax.random.key(seed), x, k, init=method)
                    lls.append(float(fit.log_likelihood))
                    iters.append(int(fit.n_iter))
                key = jax.random.key(0)
                start_of = jax.jit(
                    lambda key, x, k=k, method=method: gmm.init(key, x, k, method=method)
                )
                jax.block_until_ready(start_of(key, x))
                times = []
                for _ in range(2):
                    start = time.perf_counter()
                    jax.block_until_ready(start_of(key, x))
                    times.append(time.perf_counter() - start)
                row = [
                    name, k, m, "(default)" if m == default else "", method,
                    f"{statistics.median(times):.4f}",
                    f"{max(lls):.5f}", f"{statistics.median(lls):.5f}", f"{min(lls):.5f}",
                    " ".join(str(i) for i in iters), f"{os.getloadavg()[0]:.1f}",
                ]  # fmt: skip
                progress(" | ".join(str(v) for v in row))
                rows.append(row)
    table = markdown_table(
        (
            "data", "K", "subset rows", "", "method", "start s", "best ll",
            "median ll", "worst ll", "EM iterations per key", "load",
        ),
        rows,
    )  # fmt: skip
    print(table)
    if args.out:
        body = "\n".join(
            [
                f"- keys 0..{args.keys - 1}; float32; one restart per fit; start s: "
                "gmm.init alone (jitted), median of two later calls"
                + ("" if args.cpu is None else f"; pinned to CPU {args.cpu}"),
                "",
                table,
            ]
        )
        command = " ".join(["python", *sys.orig_argv[1:]])
        write_markdown(args.out, "Agglomeration subset size on large data", body, command)


if __name__ == "__main__":
    main()
