"""What JAX's persistent compilation cache saves on a first call in a new process.

Runs the default ``gmm.fit`` on Old Faithful (K = 3, float32) in fresh
processes: without the cache, then twice with an empty cache directory (the
first fills it, the second reads it). jaxem never turns the cache on by itself;
a user opts in with ``jax.config.update("jax_compilation_cache_dir", path)`` (or
``JAX_COMPILATION_CACHE_DIR``) before the first fit.

    python experiments/compile_cache.py [--n-init 1 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import jax
    cache = sys.argv[2]
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    from jaxem import gmm
    x = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1).astype(np.float32)
    start = time.perf_counter()
    jax.block_until_ready(gmm.fit(jax.random.key(0), x, 3, n_init=int(sys.argv[3])))
    print(json.dumps(dict(first_call=time.perf_counter() - start)))
    """
)


def first_call(cache: str, n_init: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "experiments/data/faithful.csv"), cache,
         str(n_init)],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])["first_call"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-init", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    for n_init in args.n_init:
        with tempfile.TemporaryDirectory() as cache:
            off = first_call("", n_init)
            filling = first_call(cache, n_init)
            reading = first_call(cache, n_init)
        print(
            f"n_init={n_init:<3} first call in a new process: no cache {off:5.2f} s, "
            f"empty cache {filling:5.2f} s, warm cache {reading:5.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
