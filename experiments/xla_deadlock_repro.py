"""XLA:CPU deadlock with jaxlib 0.10: two batched LAPACK calls at the same time.

Pure JAX, no jaxem. Run (each case in a fresh process, under a timeout):

    python experiments/xla_deadlock_repro.py            # both cases, ~1 min
    python experiments/xla_deadlock_repro.py --case hang --scheduler false
    python experiments/xla_deadlock_repro.py --case safe --scheduler true

Mechanism (jaxlib 0.10.2, jaxlib/cpu/lapack_kernels.cc):

* Batched LAPACK kernels (potrf, trsm, getrf, syevd, ...) go through
  ``ParallelBatchMap``: when ``batch * cost_per_matrix >= 200000`` flops
  (``kMinWorkPerTask``; potrf costs n³/3, so 32×32 matrices split from a batch
  of 20) and the pool has more than one thread, the batch is cut into chunks
  that are ``Schedule``d on the FFI thread pool, which is XLA:CPU's intra-op
  Eigen pool, and the calling thread then blocks in ``BlockingCounter::Wait``.
* XLA:CPU's thunk executor runs independent thunks at the same time on that
  same pool. When as many such LAPACK calls are in flight as the pool has
  threads (2 on a 2-core machine), every pool thread is blocked waiting for
  chunks that no thread is left to run: the program hangs at 0% CPU. gdb shows
  every ``tf_XLAEigen`` thread in ``BlockingCounter::Wait`` <- ``ParallelBatchMap``
  <- ``lapack_spotrf_ffi`` and the caller in ``BlockUntilReady``.
* ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` is no cure: it
  only changes the schedule and buffer assignment. In jaxem's fits the DFS
  schedule happened to give the two Cholesky results one buffer (a
  write-after-read conflict that serialises them); the "hang" case below has
  two independent chains and deadlocks with the flag off (and may finish with
  it on: which one hangs depends on scheduling).
* Fixed upstream by jax commit 859992407d ("Don't try to parallelize LAPACK
  kernels in opensource builds", after jax 0.11.0; jax-ml/jax#36927); jax
  0.11+ needs Python >= 3.12 while this project's venv is 3.11.

The "safe" case is the same computation with both factorisations done by ONE
batched call on the stacked inputs: LAPACK calls form a chain, at most one is
ever blocked, and the other pool thread runs its chunks. That is the fix used
in jaxem (covariances.full.ensure_positive_definite, fit.initial_params,
fit.auto_formulation). A batch under the split threshold (``--k 19``) never
blocks either.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CASES = ("hang", "safe")


def child(case: str, k: int, d: int, n: int, steps: int) -> None:
    import jax
    import jax.numpy as jnp

    eye = jnp.eye(d, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(0), (n, d), jnp.float32)
    y = jax.random.normal(jax.random.key(1), (n, d), jnp.float32)
    ks = (1.0 + jnp.arange(k, dtype=jnp.float32))[:, None, None]

    @jax.jit
    def loop(x, y):
        def body(i, s):
            # Two independent chains, each: an Eigen matmul (it completes on a
            # pool thread, which then runs what follows) -> a (k, d, d) batch of
            # SPD matrices -> a batched Cholesky (lapack_spotrf_ffi).
            c1 = ((x * (1 + s)).T @ x / n)[None] + ks * eye
            c2 = ((y * (1 + s)).T @ y / n)[None] + ks * eye
            if case == "hang":
                l1 = jnp.linalg.cholesky(c1)  # two LAPACK calls that XLA
                l2 = jnp.linalg.cholesky(c2)  # may run at the same time
            else:
                l1, l2 = jnp.linalg.cholesky(jnp.stack([c1, c2]))  # one call
            return s + 1e-9 * (jnp.sum(l1[:, 0, 0]) + jnp.sum(l2[:, 0, 0]))

        return jax.lax.fori_loop(0, steps, body, jnp.float32(0))

    t = time.time()
    jax.block_until_ready(loop(x, y))
    print(f"finished {steps} iterations in {time.time() - t:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=(*CASES, "both"), default="both")
    parser.add_argument(
        "--scheduler",
        choices=("true", "false"),
        default="false",
        help="--xla_cpu_enable_concurrency_optimized_scheduler",
    )
    parser.add_argument("--k", type=int, default=32, help="batch of matrices per call")
    parser.add_argument("--d", type=int, default=32, help="matrix size")
    parser.add_argument("--n", type=int, default=20000, help="rows of the matmul input")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.case, args.k, args.d, args.n, args.steps)
        return 0
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "")
        + f" --xla_cpu_enable_concurrency_optimized_scheduler={args.scheduler}"
    )
    status = 0
    for case in CASES if args.case == "both" else (args.case,):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--case",
            case,
            "--k",
            str(args.k),
            "--d",
            str(args.d),
            "--n",
            str(args.n),
            "--steps",
            str(args.steps),
        ]
        t = time.time()
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
            verdict = out.stdout.strip() or out.stderr.strip()[-300:]
        except subprocess.TimeoutExpired:
            verdict, status = f"HUNG (killed after {args.timeout:.0f} s)", 1
        print(
            f"case={case} scheduler={args.scheduler} k={args.k} d={args.d}: {verdict}"
            f" [{time.time() - t:.0f} s]",
            flush=True,
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
