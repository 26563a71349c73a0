"""The initialisation program's LLVM optimisation level: first calls and later calls.

The program that computes the restarts' starting points (k-means, the
agglomerations, random rows: ``api._init_program``) runs once per fit, and its
compilation is nearly all LLVM's. This script gives that program alone a lower
LLVM optimisation level than XLA's default 2 (``xla_backend_optimization_level``
added to jaxem's own options of that compilation; the EM program keeps its
options) and measures what it would cost and gain on the default call,
``gmm.fit(key, x, K, n_init=n)`` (float32, ``init="auto"``): each setting in a
fresh process without the persistent cache, the settings interleaved over
``--repeats``:

* the first call (tracing, compilation, initialisation and EM), and the
  compilation of the initialisation program alone (JAX's monitoring event);
* the median of five later calls with the same key (the same work: the
  initialisation's run time is in them).

Data: Old Faithful (K = 3, ``n_init`` 1 and 10), and mixtures of unit-variance
clusters with centres drawn from N(0, 9 I): 1 000 × 5 (K = 4), 5 000 × 8 (K = 5)
and 100 000 × 16 (K = 16), ``n_init=10``.

Run from the repository root (BLAS overrides of this machine unset, as in every
benchmark here)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python experiments/init_compile.py [--repeats 3]

It writes ``experiments/results/init_compile.md``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

import numpy as np
from common import run_fresh_process

ROOT = pathlib.Path(__file__).resolve().parent
OUT = ROOT / "results" / "init_compile.md"

# name -> LLVM's optimisation level of the initialisation program
SETTINGS = {"level 2 (XLA's default, jaxem's)": 2, "level 1": 1, "level 0": 0}

CASES = ("faithful 1", "faithful 10", "1000x5 4 10", "5000x8 5 10", "100000x16 16 10")

CHILD = r"""
import json, sys, time
import jax, numpy as np
from jax import monitoring

compiles = []
def record(event, duration, **kwargs):
    name = str(kwargs.get("fun_name"))
    if event.endswith("backend_compile_duration") and "_initial_resp" in name:
        compiles.append(duration)
monitoring.register_event_duration_secs_listener(record)

from jaxem import gmm
from jaxem._src import api, programs

level = int(sys.argv[3])
init_lowered = set()  # the initialisation program's lowerings (by id)
lower, compile_lowered = api._init_program._lower, programs._compile_lowered
def init_lower(*args):
    lowered = lower(*args)
    init_lowered.add(id(lowered))
    return lowered
def compile_at_level(lowered, elements):
    if id(lowered) not in init_lowered:
        return compile_lowered(lowered, elements)
    options = {**programs.CPU_COMPILER_OPTIONS, "xla_backend_optimization_level": level}
    return lowered.compile(compiler_options=options)
api._init_program._lower = init_lower
programs._compile_lowered = compile_at_level
case = sys.argv[2].split()
if case[0] == "faithful":
    x = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1).astype(np.float32)
    k, n_init = 3, int(case[1])
else:
    n, d = map(int, case[0].split("x"))
    k, n_init = int(case[1]), int(case[2])
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(k, d)) * 3
    x = (centers[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
def fit():
    r = gmm.fit(jax.random.key(0), x, k, n_init=n_init)
    jax.block_until_ready(r.params)
    return r
t = time.perf_counter(); r = fit(); first = time.perf_counter() - t
later = []
for _ in range(5):
    t = time.perf_counter(); fit(); later.append(time.perf_counter() - t)
print(json.dumps(dict(first=first, later=float(np.median(later)), compile=sum(compiles),
                      ll=float(r.log_likelihood))))
"""


def run(case: str, level: int) -> dict:
    args = (str(ROOT / "data" / "faithful.csv"), case, str(level))
    return run_fresh_process(CHILD, args, xla_flags=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    cases = args.cases.split(",")
    load = os.getloadavg()[0]
    results = {(c, s): [] for c in cases for s in SETTINGS}
    for _ in range(args.repeats):
        for case in cases:
            for name, level in SETTINGS.items():
                results[case, name].append(run(case, level))
                print(case, "|", name, results[case, name][-1], flush=True)

    def median(case, name, field):
        return float(np.median([r[field] for r in results[case, name]]))

    lines = [
        "# The initialisation program's LLVM optimisation level",
        "",
        f"`python experiments/init_compile.py --repeats {args.repeats}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at start {load:.1f}; the default "
        "`gmm.fit(key, x, K, n_init=n)` in float32, a fresh process per setting, case and "
        "repeat (no persistent cache), the settings interleaved; medians over repeats. "
        "Each cell: the initialisation program's compilation (s) / the first call (s) / "
        "the later call (ms, median of five with the same key).",
        "",
        "| case (K, n_init) | " + " | ".join(SETTINGS) + " | first call, level 1 / level 2 |",
        "|---|" + "---|" * (len(SETTINGS) + 1),
    ]
    for case in cases:
        cells = [
            f"{median(case, s, 'compile'):.2f} / {median(case, s, 'first'):.2f} / "
            f"{1e3 * median(case, s, 'later'):.1f}"
            for s in SETTINGS
        ]
        default, one = list(SETTINGS)[:2]
        ratio = median(case, one, "first") / median(case, default, "first")
        lls = {round(r["ll"], 5) for s in SETTINGS for r in results[case, s]}
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {ratio:.2f} |")
        if len(lls) > 1:
            lines.append(f"| (log-likelihoods differ: {sorted(lls)}) |" + " |" * len(SETTINGS))
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
