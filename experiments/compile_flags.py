"""First calls and later calls of the default fit under XLA:CPU code-generation flags.

XLA:CPU compiles elementwise fusions with its MLIR "fusion emitters" by default
(jaxlib 0.10); ``--xla_cpu_use_fusion_emitters=false`` selects its older loop
emitters. This script times, each in a fresh process without the persistent
cache and the settings interleaved over repeats:

* ``gmm.fit(key, faithful, 3, n_init=...)`` (float32, the defaults): the first
  call (compilation, initialisation and EM) and a later call with a new key;
* 20-iteration fits (k-means start, ``n_refine=0``) of 100 000 × 16 and
  20 000 × 4 float32 points (K = 16 and 5, full and diagonal covariances): the
  first call and the median of three later ones (the per-iteration speed of the
  compiled code).

Run:

    python experiments/compile_flags.py [--repeats 2]

It writes ``experiments/results/compile_flags.md``. jaxem never sets XLA flags
itself; the README's "Compilation" section quotes the result.
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
OUT = ROOT / "results" / "compile_flags.md"

SETTINGS = {
    "XLA defaults": "",
    "--xla_cpu_use_fusion_emitters=false": "--xla_cpu_use_fusion_emitters=false",
    # LLVM's optimisation level for XLA:CPU's generated code (XLA's default: 2)
    "--xla_backend_optimization_level=1": "--xla_backend_optimization_level=1",
}

CHILD = r"""
import json, sys, time
import jax, numpy as np
from jaxem import gmm

out = {}
x = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
for n_init in (1, 10):
    t = time.perf_counter()
    r = gmm.fit(jax.random.key(0), x, 3, n_init=n_init); jax.block_until_ready(r.params)
    first = time.perf_counter() - t
    t = time.perf_counter()
    r = gmm.fit(jax.random.key(1), x, 3, n_init=n_init); jax.block_until_ready(r.params)
    out[f"faithful n_init={n_init}"] = (first, time.perf_counter() - t)
rng = np.random.default_rng(0)
for n, d, k in ((100_000, 16, 16), (20_000, 4, 5)):
    centers = rng.normal(size=(k, d)) * 3
    x = (centers[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    for ct in ("full", "diag"):
        def f(key):
            return gmm.fit(key, x, k, covariance_type=ct, n_init=1, init="kmeans",
                           max_iter=20, tol=0.0, n_refine=0)
        t = time.perf_counter(); r = f(jax.random.key(0)); jax.block_until_ready(r.params)
        first = time.perf_counter() - t
        later = []
        for i in range(3):
            t = time.perf_counter(); r = f(jax.random.key(i + 1)); jax.block_until_ready(r.params)
            later.append(time.perf_counter() - t)
        out[f"{n}x{d} K={k} {ct}, 20 iterations"] = (first, float(np.median(later)))
print(json.dumps(out))
"""


def run(flags: str) -> dict:
    return run_fresh_process(CHILD, [str(ROOT / "data" / "faithful.csv")], xla_flags=flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS"
    )
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    settings = {name: SETTINGS[name] for name in args.settings.split(",")}
    load = os.getloadavg()[0]
    results: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, flags in settings.items():
            results[name].append(run(flags))
            print(name, results[name][-1], flush=True)
    cases = list(next(iter(results.values()))[0])
    lines = [
        "# First and later calls under XLA:CPU code-generation flags",
        "",
        f"`python experiments/compile_flags.py --repeats {args.repeats} "
        f"--settings {args.settings}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at start {load:.1f}; fresh process per "
        "setting and repeat, no persistent cache, float32; medians over repeats (s).",
        "",
        "| case | " + " | ".join(f"{n}: first / later" for n in settings) + " | first-call ratio |",
        "|---|" + "---|" * (len(settings) + 1),
    ]
    for case in cases:
        cells, firsts = [], []
        for name in settings:
            first = float(np.median([r[case][0] for r in results[name]]))
            later = float(np.median([r[case][1] for r in results[name]]))
            firsts.append(first)
            cells.append(f"{first:.2f} / {later:.4f}")
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {firsts[1] / firsts[0]:.2f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
