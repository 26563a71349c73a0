"""Per-iteration Baum–Welch time of jaxem.hmm, sequential against parallel-in-time.

Gaussian HMM (diagonal, K = 5, D = 4, float64), 1000 sequences of 100 frames and
one sequence of 10⁵ frames, from the same start; a fit of 25 iterations minus one
of 5, each timed after a compiling call. Written for an accelerator, where the
associative scan (``parallel=True``) pays off; on a CPU use hmm_benchmark.py.

    python experiments/hmm_gpu_timing.py
"""

import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxem  # noqa: E402
from jaxem import hmm  # noqa: E402


def main() -> None:
    print(jax.devices())
    rng = np.random.default_rng(0)
    k, d = 5, 4
    means = rng.normal(0, 3, (k, d))
    family = hmm.gaussian("diag", reg_covar=0.0)
    transmat = np.full((k, k), 0.02) + np.eye(k) * 0.9
    truth = hmm.make_params(np.full(k, 1 / k), transmat, family, means=means,
                            covariances=np.ones((k, d)))  # fmt: skip
    for s, t in ((1000, 100), (1, 100_000)):
        seqs, _ = family.sample(jax.random.key(0), truth, t, n_sequences=s)
        start = hmm.make_params(
            np.full(k, 1 / k), np.full((k, k), 1 / k), family,
            means=means + rng.normal(0, 0.5, (k, d)), covariances=np.full((k, d), 2.0),
        )  # fmt: skip
        for parallel in (False, True):
            f = hmm.gaussian("diag", reg_covar=0.0, parallel=parallel)

            def run(n, f=f, seqs=seqs, start=start):
                r = jaxem.fit(f, None, seqs, start=start, max_iter=n, tol=0.0, n_refine=0)
                jax.block_until_ready(r.params)

            seconds = {}
            for n in (5, 25):
                run(n)
                begin = time.perf_counter()
                run(n)
                seconds[n] = time.perf_counter() - begin
            per_iter = 1e3 * (seconds[25] - seconds[5]) / 20
            print(f"S={s} T={t} parallel={parallel}: {per_iter:.2f} ms/iter", flush=True)


if __name__ == "__main__":
    main()
