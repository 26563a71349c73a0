"""Speed of one Baum–Welch iteration: jaxem.hmm against hmmlearn and dynamax.

The same data and the same starting parameters for every library, float64,
diagonal-covariance Gaussian emissions, no early stopping. Two rows:

* ``short``: many short sequences (S sequences of T frames each; equal
  lengths, since dynamax's batched EM takes no lengths);
* ``long``: one long sequence.

ms/iteration = (median t(n2) − median t(n1)) / (n2 − n1) over interleaved
repeats, so what a call does once (validation, dispatch, a final E-step)
cancels. The calls:

* **jaxem**: ``jaxem.fit(hmm.gaussian("diag", reg_covar=0), None, seqs,
  start=p0, max_iter=n, tol=0, n_refine=0)`` (one compiled program per n,
  compiled before timing; its compile time is reported), with the sequential
  scan and, on the long row, ``parallel=True`` (associative scan);
* **hmmlearn**: ``GaussianHMM(K, "diag", n_iter=n, tol=-inf, init_params="",
  params="stmc", covars_prior=0).fit(X, lengths)`` (its default ``"log"``
  implementation, C++ forward–backward);
* **dynamax**: ``DiagonalGaussianHMM(K, D)``'s own EM step (``vmap`` of
  ``e_step`` over sequences, ``log_prior``, ``m_step``: the body of its
  ``fit_em``) in a ``lax.scan`` of n steps jitted once. (``fit_em`` itself
  defines its jitted loop inside the call, so it recompiles on every call;
  timing it would measure compilation.)

Run from the repository root (shared machine: keep it short)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python experiments/hmm_benchmark.py [--quick] [--out experiments/results/hmm_benchmark.md]

On a loaded machine wall-clock times mostly measure the other processes (and
penalise multi-threaded programs most). ``--cpu-time`` times the process's
CPU time instead; run it on one core (``taskset -c 1 ...``), where it is the
time the work itself takes there, every library single-threaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxem  # noqa: E402
from jaxem import hmm  # noqa: E402


def make_data(s, t, d, k, seed=0):
    rng = np.random.default_rng(seed)
    family = hmm.gaussian("diag", reg_covar=0.0)
    transmat = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    means = rng.normal(0, 2, (k, d))
    truth = hmm.make_params(np.full(k, 1 / k), transmat, family, means=means,
                            covariances=np.ones((k, d)))  # fmt: skip
    seqs, _ = family.sample(jax.random.key(seed), truth, t, n_sequences=s)
    start = hmm.make_params(
        np.full(k, 1 / k), np.full((k, k), 1 / k), family,
        means=means + rng.normal(0, 0.5, (k, d)), covariances=np.full((k, d), 2.0),
    )  # fmt: skip
    return family, np.asarray(seqs.x), start


def jaxem_runner(family, x, start, parallel=False):
    family = hmm.gaussian("diag", reg_covar=0.0, parallel=parallel)
    seqs = hmm.sequences(x)

    def run(n):
        r = jaxem.fit(family, None, seqs, start=start, max_iter=n, tol=0.0, n_refine=0)
        jax.block_until_ready(r.params)
        assert int(r.n_iter) == n
        return float(r.log_likelihood) * x.shape[0] * x.shape[1]

    return run


def hmmlearn_runner(family, x, start):
    from hmmlearn.hmm import GaussianHMM

    s, t, d = x.shape
    flat = x.reshape(s * t, d)
    lengths = [t] * s
    k = start.startprob.shape[0]

    def run(n):
        m = GaussianHMM(k, "diag", n_iter=n, tol=-np.inf, init_params="", params="stmc",
                        covars_prior=0.0)  # fmt: skip
        m.startprob_ = np.asarray(start.startprob)
        m.transmat_ = np.asarray(start.transmat)
        m.means_ = np.asarray(start.emission.means)
        m.covars_ = np.asarray(start.emission.covariances)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(flat, lengths)
        assert len(m.monitor_.history) == n
        return m.score(flat, lengths)

    return run


def dynamax_runner(family, x, start):
    from dynamax.hidden_markov_model import DiagonalGaussianHMM

    d = x.shape[2]
    k = start.startprob.shape[0]
    model = DiagonalGaussianHMM(k, d)
    params, props = model.initialize(
        jax.random.key(0),
        initial_probs=jnp.asarray(start.startprob),
        transition_matrix=jnp.asarray(start.transmat),
        emission_means=jnp.asarray(start.emission.means),
        emission_scale_diags=jnp.sqrt(jnp.asarray(start.emission.covariances)),
    )
    emissions = jnp.asarray(x)
    programs = {}

    def program(n):
        def em_step(carry, _):
            params, m_state = carry
            stats, lls = jax.vmap(lambda e: model.e_step(params, e))(emissions)
            lp = model.log_prior(params) + lls.sum()
            params, m_state = model.m_step(params, props, stats, m_state)
            return (params, m_state), lp

        def run_em(params):
            carry = (params, model.initialize_m_step_state(params, props))
            return jax.lax.scan(em_step, carry, xs=None, length=n)

        return jax.jit(run_em)

    def run(n):
        if n not in programs:
            programs[n] = program(n)
        (p, _), lps = programs[n](params)
        jax.block_until_ready(p)
        return float(lps[-1])

    return run


def per_iteration(run, n1, n2, repeats, budget, clock=time.perf_counter):
    """(ms per iteration, first-call seconds of n1 (compilation included), repeats)."""
    t0 = clock()
    run(n1)
    first1 = clock() - t0
    run(n2)  # warm-up (compilation of the n2 program)
    t1s, t2s = [], []
    begin = time.perf_counter()
    for _ in range(repeats):
        for n, ts in ((n1, t1s), (n2, t2s)):
            t0 = clock()
            run(n)
            ts.append(clock() - t0)
        if time.perf_counter() - begin > budget and len(t1s) >= 2:
            break
    ms = (statistics.median(t2s) - statistics.median(t1s)) / (n2 - n1) * 1e3
    return ms, first1, len(t1s)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--libraries", default="jaxem,hmmlearn,dynamax")
    parser.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall time")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    libraries = args.libraries.split(",")
    d, k = 4, 5
    if args.quick:
        rows = {"short": (100, 50), "long": (1, 5_000)}
    else:
        rows = {"short": (1000, 100), "long": (1, 100_000)}
    n1, n2 = 2, 7 if args.quick else 12
    load = os.getloadavg()[0]
    lines = [
        f"# Baum–Welch: ms per iteration (float64, diagonal Gaussian emissions, K = {k}, D = {d})",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, 1-minute load average at start {load:.1f} (shared machine: "
        "treat the numbers as rough). jax "
        f"{jax.__version__}, iterations n1 = {n1}, n2 = {n2}"
        + (", clock: process CPU time (--cpu-time)." if args.cpu_time else "."),
        "",
        "| row | data | library | ms / iteration | first call (s) | vs hmmlearn | repeats |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (s, t) in rows.items():
        family, x, start = make_data(s, t, d, k)
        runners = {}
        if "jaxem" in libraries:
            runners["jaxem"] = jaxem_runner(family, x, start)
            if name == "long":
                runners["jaxem (parallel=True)"] = jaxem_runner(family, x, start, parallel=True)
        if "hmmlearn" in libraries:
            runners["hmmlearn"] = hmmlearn_runner(family, x, start)
        if "dynamax" in libraries:
            try:
                runners["dynamax"] = dynamax_runner(family, x, start)
            except ImportError:
                print("dynamax not installed: skipped")
        results = {}
        for lib, run in runners.items():
            ms, first, reps = per_iteration(run, n1, n2, 3, args.budget, clock)
            results[lib] = (ms, first, reps)
            print(f"{name:6s} {lib:24s} {ms:10.2f} ms/iter  first call {first:6.2f} s", flush=True)
        ref = results.get("hmmlearn", (None,))[0]
        for lib, (ms, first, reps) in results.items():
            speed = f"{ref / ms:.1f}×" if ref else "–"
            lines.append(
                f"| {name} | {s} × {t} | {lib} | {ms:.2f} | {first:.2f} | {speed} | {reps} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
