"""Scaling up: out-of-core EM from a memmap, in-memory EM, and online EM.

Run from the repository root::

    python experiments/scaling.py                # N = 10,000,000, D = 16, K = 16 (640 MB)
    python experiments/scaling.py --quick        # N = 200,000: a smoke test, about a minute

1. **Memory and speed.** The data (float32, N × D, a random K-component mixture)
   are written once to a ``numpy.memmap`` in ``--data-dir``. In a fresh
   subprocess each (so peak resident memory, ``ru_maxrss``, is that
   measurement's alone):

   * ``baseline``: import jax and jaxem, compile nothing, read nothing;
   * ``out-of-core``: :func:`jaxem.gmm.fit_chunks` on the memmap, ``--passes``
     EM iterations with ``tol=0``; seconds per pass are the median of passes
     2.. (pass 1 compiles and uses the direct formulation);
   * ``in-memory``: the memmap read into one array and :func:`jaxem.gmm.fit`'s
     EM (``fit_from``, jitted); seconds per pass = (time of a second, compiled
     call) / (passes + 1) (the loop's passes and its final log-likelihood pass).

2. **Online EM.** The stream is the memmap's rows in order, in mini-batches of
   ``--batch`` rows, up to ``--stream`` rows; the held-out set is the last
   ``--eval`` rows. From the same start (k-means on the first 20,000 rows):
   stepwise EM (``α = 0.6``, ``t₀ = 2``, 5 warm-up batches, with and without
   Polyak averaging), mini-batch Adam on the mean log-likelihood of each batch
   (``optax.adam``, learning rate ``--lr``, untuned) over the unconstrained
   parameters of :mod:`jaxem.gmm.unconstrained`, and batch EM over all
   ``--stream`` rows (one iteration = ``--stream`` samples processed). The
   figure plots held-out mean log-likelihood against samples processed.

Writes ``experiments/results/scaling.md`` and ``scaling_online.png`` (with
``--quick``: ``scaling_quick.*``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
_START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    On Linux ``VmHWM`` of ``/proc/self/status``: ``getrusage``'s ``ru_maxrss``
    survives ``execve`` and so reports at least the parent's peak at the time of
    the fork; ``VmHWM`` belongs to the process's own address space.
    """
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ----------------------------------------------------------------------------- data


def true_mixture(d: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(0, 3.0, (k, d))
    factors = rng.normal(0, 0.3, (k, d, d)) + np.eye(d)
    return weights, means, factors


def write_memmap(path: pathlib.Path, n: int, d: int, k: int, block: int = 250_000) -> None:
    """N × D float32 rows from the mixture, written block by block (bounded memory)."""
    if path.exists() and path.stat().st_size == n * d * 4:
        progress(f"reusing {path} ({n:,} × {d} float32)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    progress(f"writing {path} ({n:,} × {d} float32, {n * d * 4 / 1e6:.0f} MB)")
    weights, means, factors = true_mixture(d, k)
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
    rng = np.random.default_rng(1)
    for start in range(0, n, block):
        rows = min(block, n - start)
        labels = rng.choice(k, rows, p=weights)
        z = rng.standard_normal((rows, d))
        out = np.empty((rows, d), np.float32)
        for j in range(k):
            mine = labels == j
            out[mine] = means[j] + z[mine] @ factors[j]
        mm[start : start + rows] = out
    mm.flush()
    del mm


def open_memmap(path, n, d):
    return np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))


def start_params(x, k):
    import jax

    from jaxem import gmm

    return gmm.init(jax.random.key(0), np.asarray(x[:20_000]), k, method="kmeans")


# --------------------------------------------------------------- measurements (subprocess)


def measure(args) -> dict:
    import jax

    from jaxem import gmm
    from jaxem.gmm import fit_from

    if args.measure == "baseline":
        return {"peak_rss_mb": peak_rss_mb()}
    x = open_memmap(args.path, args.n, args.d)
    start = start_params(x, args.k)
    if args.measure == "out-of-core":
        seconds = []
        gmm.fit_chunks(
            start,
            x,
            chunk_size=args.chunk_size,
            tol=0.0,
            max_iter=args.passes,
            callback=lambda info: seconds.append((info.iteration, info.seconds, info.formulation)),
        )
        timed = [s for i, s, _ in seconds if i >= 2]
        return {
            "seconds_per_pass": float(np.median(timed)),
            "first_pass_s": seconds[0][1],
            "formulations": sorted({f for _, _, f in seconds}),
            "peak_rss_mb": peak_rss_mb(),
        }
    xs = jax.numpy.asarray(np.asarray(x))
    run = jax.jit(
        lambda p, x: fit_from(p, x, tol=0.0, reg_covar=1e-6, max_iter=args.passes).log_likelihood
    )
    jax.block_until_ready(run(start, xs))  # compile
    t = time.perf_counter()
    jax.block_until_ready(run(start, xs))
    return {
        "seconds_per_pass": (time.perf_counter() - t) / (args.passes + 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_measurement(kind: str, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--measure",
        kind,
        "--path",
        str(args.path),
        f"--n={args.n}",
        f"--d={args.d}",
        f"--k={args.k}",
        f"--passes={args.passes}",
        f"--chunk-size={args.chunk_size}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- online


def online_experiment(args):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxem import gmm
    from jaxem._src.gmm.passes import direct_pass
    from jaxem.gmm import unconstrained

    x = open_memmap(args.path, args.n, args.d)
    stream_rows = min(args.stream, args.n - args.eval)
    x_eval = jnp.asarray(np.asarray(x[args.n - args.eval :]))
    start = start_params(x, args.k)
    evaluate = jax.jit(lambda p: gmm.e_step(p, x_eval)[1])
    n_batches = stream_rows // args.batch
    checkpoints = set(np.unique(np.geomspace(1, n_batches, 40).astype(int)) - 1)

    def batches():
        for i in range(n_batches):
            yield np.asarray(x[i * args.batch : (i + 1) * args.batch])

    curves = {}
    for polyak in (False, True):
        name = "online EM, Polyak" if polyak else "online EM"
        points = []

        def record(info, points=points):
            if info.index in checkpoints:
                points.append((info.samples_seen, float(evaluate(info.params))))

        t = time.perf_counter()
        gmm.fit_online(start, batches(), polyak=polyak, polyak_start=20, callback=record)
        progress(f"{name}: {n_batches} batches in {time.perf_counter() - t:.1f} s")
        curves[name] = points

    # mini-batch Adam on the same stream
    covariance_type = start.covariance_type
    u = unconstrained.to_unconstrained(start)
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init(u)

    @jax.jit
    def adam_step(u, opt_state, xb):
        grad = jax.grad(lambda v: -unconstrained.log_likelihood(v, xb, covariance_type))(u)
        updates, opt_state = optimizer.update(grad, opt_state, u)
        return optax.apply_updates(u, updates), opt_state

    points = []
    t = time.perf_counter()
    for i, xb in enumerate(batches()):
        u, opt_state = adam_step(u, opt_state, jnp.asarray(xb))
        if i in checkpoints:
            p = unconstrained.from_unconstrained(u, covariance_type)
            points.append(((i + 1) * args.batch, float(evaluate(p))))
    progress(f"Adam (lr={args.lr}): {n_batches} batches in {time.perf_counter() - t:.1f} s")
    curves[f"mini-batch Adam (lr={args.lr})"] = points

    # batch EM over the whole stream, one pass per iteration
    xs = jnp.asarray(np.asarray(x[: n_batches * args.batch]))
    ones = jnp.ones(xs.shape[0], xs.dtype)
    em_step = jax.jit(lambda p: gmm.maximize(direct_pass(p, xs, ones)[0], reg_covar=1e-6))
    params, points = start, []
    t = time.perf_counter()
    for i in range(args.batch_iters):
        params = em_step(params)
        points.append(((i + 1) * xs.shape[0], float(evaluate(params))))
    progress(f"batch EM: {args.batch_iters} iterations in {time.perf_counter() - t:.1f} s")
    curves["batch EM"] = points
    return curves, float(evaluate(start))


# ----------------------------------------------------------------------------- report


def plot(curves, start_ll, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    best = curves["batch EM"][-1][1]  # batch EM's last iterate: the reference
    for name, pts in curves.items():
        s, v = np.array(pts).T
        ax.plot(s, best - v, marker="." if name == "batch EM" else None, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("samples processed")
    ax.set_ylabel("held-out mean ll: batch EM (last) − method")
    ax.set_title(f"online versus batch (start: {start_ll:.3f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 200,000: a smoke test")
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=262_144)
    parser.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path("/tmp/jaxem_scaling"))
    parser.add_argument("--stream", type=int, default=2_000_000, help="rows streamed online")
    parser.add_argument("--batch", type=int, default=1000, help="online mini-batch rows")
    parser.add_argument("--eval", type=int, default=100_000, help="held-out rows")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--batch-iters", type=int, default=30, help="batch EM iterations")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=pathlib.Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    if args.quick:
        args.n, args.stream, args.eval, args.batch, args.batch_iters = (
            200_000, 100_000, 20_000, 500, 15,
        )  # fmt: skip
        args.chunk_size = min(args.chunk_size, 65_536)
    tag = "scaling_quick" if args.quick else "scaling"
    args.path = args.data_dir / f"x_{args.n}_{args.d}_{args.k}.f32"
    write_memmap(args.path, args.n, args.d, args.k)

    rows = []
    for kind in ("baseline", "out-of-core", "in-memory"):
        progress(f"measuring {kind} in a fresh process")
        result = run_measurement(kind, args)
        progress(f"  {result}")
        rows.append((kind, result))

    curves, start_ll = online_experiment(args)
    RESULTS.mkdir(exist_ok=True)
    png = RESULTS / f"{tag}_online.png"
    plot(curves, start_ll, png)

    size_mb = args.n * args.d * 4 / 1e6
    lines = [
        f"# Scaling: N = {args.n:,}, D = {args.d}, K = {args.k}, float32 ({size_mb:.0f} MB)",
        "",
        f"EM passes timed: {args.passes} (tol = 0), chunk size {args.chunk_size:,} rows.",
        "",
        "| run | seconds per EM pass | peak resident memory (MB) |",
        "|---|---|---|",
    ]
    for kind, r in rows:
        sec = f"{r['seconds_per_pass']:.3f}" if "seconds_per_pass" in r else "–"
        lines.append(f"| {kind} | {sec} | {r['peak_rss_mb']:.0f} |")
    lines += [
        "",
        f"Online: stream of {args.stream:,} rows in batches of {args.batch}, held-out "
        f"{args.eval:,} rows; held-out mean log-likelihood at the end:",
        "",
        "| method | samples processed | held-out mean ll |",
        "|---|---|---|",
    ]
    for name, pts in curves.items():
        lines.append(f"| {name} | {pts[-1][0]:,.0f} | {pts[-1][1]:.5f} |")
    lines += ["", f"![online]({png.name})", ""]
    md = RESULTS / f"{tag}.md"
    md.write_text("\n".join(lines))
    print("\n".join(lines))
    progress(f"wrote {md} and {png}")


if __name__ == "__main__":
    main()
