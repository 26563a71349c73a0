"""How big is the program a default fit compiles, and how long does its first call take?

For the default ``gmm.fit`` on Old Faithful (K = 4, float64) with ``n_init=1``
and ``n_init=20``, prints the number of jaxpr equations of the compiled program
(nested jaxprs included: loop bodies, branches, scans) and the time of the first
call (tracing, compilation and the fit) and of a later call, each in a fresh
process without a persistent compilation cache. With ``--against REV`` the same
is measured for another commit (checked out into a temporary git worktree) in
the same run, so the two are compared on the same machine at the same time.

The program is the one the call itself compiles: the jitted function behind
``gmm.fit`` is wrapped to record its arguments, then traced again with them.

    python experiments/program_size.py --against 650622b
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
DATA = ROOT / "experiments" / "data" / "faithful.csv"

# Runs in a fresh process with the checkout to measure first on sys.path.
PROBE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import jax, jax.extend
    jax.config.update("jax_enable_x64", True)
    from jaxem import gmm
    import os, jaxem
    try:
        from jaxem._src import api as host
        name = "_fit_program"
        # an editable install can serve jaxem._src from another checkout
        if not host.__file__.startswith(os.path.dirname(jaxem.__file__)):
            raise ImportError(host.__file__)
    except ImportError:  # before the engine (commit 650622b and older)
        import importlib
        host = importlib.import_module("jaxem.gmm.fit")
        name = "_fit"
    jitted = getattr(host, name)
    calls = []

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return jitted(*args, **kwargs)

    setattr(host, name, recording)

    def count(jaxpr):
        n = 0
        for eqn in jaxpr.eqns:
            n += 1
            for p in eqn.params.values():
                for sub in p if isinstance(p, (list, tuple)) else [p]:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        n += count(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        n += count(sub)
        return n

    x = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
    n_init = int(sys.argv[2])
    start = time.perf_counter()
    jax.block_until_ready(gmm.fit(jax.random.key(0), x, 4, n_init=n_init))
    first = time.perf_counter() - start
    later = []
    for seed in range(1, 6):
        start = time.perf_counter()
        jax.block_until_ready(gmm.fit(jax.random.key(seed), x, 4, n_init=n_init))
        later.append(time.perf_counter() - start)
    args, kwargs = calls[0]
    equations = count(getattr(jitted, "_jit", jitted).trace(*args, **kwargs).jaxpr.jaxpr)
    print(json.dumps(dict(equations=equations, first_call=first, later_call=sorted(later)[2])))
    """
)


def measure(checkout: Path, n_init: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(DATA), str(n_init)],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", help="a commit to compare with (e.g. 650622b)")
    parser.add_argument("--n-init", type=int, nargs="+", default=[1, 20])
    args = parser.parse_args()
    checkouts = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            old = Path(tmp) / "old"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.against],
                check=True,
                capture_output=True,
            )
            checkouts = {args.against: old, **checkouts}
        try:
            rows = []
            for label, checkout in checkouts.items():
                for n_init in args.n_init:
                    result = measure(checkout, n_init)
                    rows.append((label, n_init, result))
                    print(
                        f"{label:>14}  n_init={n_init:<3} equations={result['equations']:6d}  "
                        f"first call {result['first_call']:6.2f} s  "
                        f"later call {result['later_call'] * 1e3:7.1f} ms",
                        flush=True,
                    )
        finally:
            if args.against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                    check=False,
                    capture_output=True,
                )
    if args.against:
        for n_init in args.n_init:
            before = next(r for lab, n, r in rows if lab == args.against and n == n_init)
            after = next(r for lab, n, r in rows if lab != args.against and n == n_init)
            print(
                f"n_init={n_init}: equations {after['equations'] / before['equations']:.2f}x, "
                f"first call {after['first_call'] / before['first_call']:.2f}x"
            )


if __name__ == "__main__":
    main()
