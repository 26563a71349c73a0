"""Soak test: many distinct ``gmm.fit`` programs compiled in one process.

Each distinct (N, D, K, covariance_type, n_init) is a new compiled program. On
XLA:CPU every executable holds ~1,000-1,400 memory mappings (one per compiled
kernel object, split by mprotect) and 10-120 MB; with JAX's unbounded jit cache
a process aborted after ~55 programs when it reached vm.max_map_count (65,530):

    contiguous_section_memory_manager.cc:148] Failed to satisfy suballocation request
    LLVM ERROR: Unable to allocate section memory!

jaxem keeps its compiled fit programs in a bounded LRU (jaxem._src.programs), so
mappings and RSS level off. Public API only. Prints peak RSS (VmHWM), RSS and
the mapping count every ``--every`` programs; exits 0 when all programs ran.

    python experiments/soak.py --programs 150        # default fits, ~30-60 min on 2 cores
    python experiments/soak.py --quick               # 30 smaller programs, ~4-8 min
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time

import numpy as np


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM (MB) and the number of memory mappings of this process."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
    with open("/proc/self/maps") as f:
        out["maps"] = sum(1 for _ in f)
    return out


def max_map_count() -> int | None:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except OSError:
        return None


def configs(quick: bool, seed: int = 0):
    """Distinct (N, D, K, covariance_type, n_init), shuffled."""
    ns = range(200, 207)
    ds = (2, 3, 4)
    ks = range(1, 7)
    types = ("full", "tied", "diag", "spherical")
    inits = (1,) if quick else (1, 2)
    grid = list(itertools.product(ns, ds, ks, types, inits))
    random.Random(seed).shuffle(grid)
    return grid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=None, help="distinct programs (150)")
    parser.add_argument("--quick", action="store_true", help="30 smaller programs")
    parser.add_argument("--every", type=int, default=25, help="report every this many")
    args = parser.parse_args()
    n_programs = args.programs or (30 if args.quick else 150)
    every = min(args.every, 10) if args.quick and args.every == 25 else args.every

    import jax

    from jaxem import gmm

    grid = configs(args.quick)
    if n_programs > len(grid):
        parser.error(f"--programs must be <= {len(grid)}")
    kwargs = dict(init="kmeans", max_iter=20) if args.quick else {}
    limit = max_map_count()
    rng = np.random.default_rng(0)
    start = time.time()
    first = proc_status()
    print(
        f"start: rss {first['VmRSS']} MB, {first['maps']} mappings (vm.max_map_count {limit})",
        flush=True,
    )
    for i, (n, d, k, ctype, n_init) in enumerate(grid[:n_programs], 1):
        x = rng.normal(size=(n, d)).astype(np.float32)
        result = gmm.fit(jax.random.key(i), x, k, covariance_type=ctype, n_init=n_init, **kwargs)
        if not np.isfinite(float(result.log_likelihood)):
            print(f"program {i}: non-finite log-likelihood", flush=True)
            return 1
        if i % every == 0 or i == n_programs:
            s = proc_status()
            share = f" ({100 * s['maps'] / limit:.0f}% of max_map_count)" if limit else ""
            print(
                f"{i:4d} programs, {time.time() - start:6.0f} s: peak rss {s['VmHWM']} MB, "
                f"rss {s['VmRSS']} MB, {s['maps']} mappings{share}",
                flush=True,
            )
    print(f"done: {n_programs} distinct programs in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
