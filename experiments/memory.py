"""Peak resident memory of an in-memory fit: N = 1,000,000, D = 32, K = 32, float32, full.

The data alone are 128 MB. ``gmm.fit`` works in chunks of rows inside the compiled
loop (``jaxem._src.chunking``), so no (N, K, D) or (N, F) array is formed; the largest
per-sample arrays are (N, K) (responsibilities of the initialisation, 128 MB).

    python experiments/memory.py [--n 1000000] [--d 32] [--k 32] [--init random_from_data]

Prints seconds (compile included, then a second compiled call) and the peak
resident set (``VmHWM`` from ``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import time


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--init", default="random_from_data")
    parser.add_argument("--max-iter", type=int, default=5)
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from jaxem import gmm

    base = peak_rss_mb()
    key = jax.random.key(0)
    centers = jax.random.normal(key, (args.k, args.d)) * 4
    labels = jax.random.randint(jax.random.key(1), (args.n,), 0, args.k)
    x = centers[labels] + jax.random.normal(jax.random.key(2), (args.n, args.d), jnp.float32)
    x = jax.block_until_ready(x)
    del labels
    data = peak_rss_mb()
    print(f"data made: peak RSS {data:.0f} MB", flush=True)
    out = {}
    for label in ("first call (compile + run)", "second call (run)"):
        start = time.perf_counter()
        result = gmm.fit(
            jax.random.key(3), x, args.k, init=args.init, tol=0.0, max_iter=args.max_iter
        )
        jax.block_until_ready(result)
        out[label] = time.perf_counter() - start
        print(f"{label}: {out[label]:.1f} s, peak RSS {peak_rss_mb():.0f} MB", flush=True)
    print(
        f"N={args.n} D={args.d} K={args.k} float32 full, init={args.init}, "
        f"{args.max_iter} EM iterations, fast path: {bool(result.fast_path)}"
    )
    print(
        f"data {x.nbytes / 2**20:.0f} MB; peak RSS after import {base:.0f} MB, "
        f"after making the data {data:.0f} MB, after fitting {peak_rss_mb():.0f} MB"
    )
    for label, seconds in out.items():
        print(f"{label}: {seconds:.1f} s")
    return {"peak_mb": peak_rss_mb(), **out}


if __name__ == "__main__":
    main()
