"""Experiment 3: log-likelihood against wall-clock time on real data, EM against optax.

Old Faithful (K=2), iris (K=3) and wine (K=3), full covariances, raw
(unstandardised) features: the same ``--starts`` random starts (scikit-learn's
``"random"`` method: random responsibilities, then an M-step) are fitted by EM
(no ``reg_covar``, so all three maximise the same likelihood), Adam and L-BFGS,
each vmapped over the starts. The time axis is the measured wall-clock time of
the vmapped batch (compile excluded) spread evenly over its loop iterations;
the y-axis is the gap to the best log-likelihood any method reached from any
start.

Run from the repository root::

    python experiments/real_data_curves.py [--starts 8] [--datasets faithful,iris,wine] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

import datasets  # noqa: E402
from common import (  # noqa: E402
    first_within,
    markdown_table,
    progress,
    time_compiled,
    write_markdown,
)

import jaxem  # noqa: E402
from jaxem import gmm  # noqa: E402
from jaxem.gmm import fit_gradient  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results"
PROBLEMS = (("faithful", 2), ("iris", 3), ("wine", 3))
METHODS = ("EM", "Adam", "L-BFGS")
COLOURS = {"EM": "tab:blue", "Adam": "tab:orange", "L-BFGS": "tab:green"}
GAP = 1e-6


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``None`` reads ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=8, help="random starts per data set")
    parser.add_argument("--max-iter-em", type=int, default=2000, help="EM iteration cap")
    parser.add_argument("--max-iter-adam", type=int, default=5000, help="Adam iteration cap")
    parser.add_argument("--max-iter-lbfgs", type=int, default=1000, help="L-BFGS iteration cap")
    parser.add_argument("--learning-rate", type=float, default=0.05, help="Adam's step size")
    parser.add_argument("--tol", type=float, default=1e-10, help="stopping tolerance (all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starts")
    parser.add_argument(
        "--datasets",
        type=str,
        default=",".join(name for name, _ in PROBLEMS),
        help="comma-separated subset of the data sets (faithful, iris, wine)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    return parser.parse_args(argv)


def make_runners(args):
    m_step = functools.partial(gmm.m_step, reg_covar=0.0)
    fns = {
        "EM": lambda s, x, max_iter: jaxem.em(
            gmm.e_step, m_step, s, x, tol=args.tol, max_iter=max_iter
        ),
        "Adam": lambda s, x, max_iter: fit_gradient(
            s, x, optax.adam(args.learning_rate), tol=args.tol, max_iter=max_iter
        ),
        "L-BFGS": lambda s, x, max_iter: fit_gradient(
            s, x, optax.lbfgs(), tol=args.tol, max_iter=max_iter
        ),
    }
    caps = {"EM": args.max_iter_em, "Adam": args.max_iter_adam, "L-BFGS": args.max_iter_lbfgs}
    return {
        name: jax.jit(jax.vmap(functools.partial(fn, max_iter=caps[name]), in_axes=(0, None)))
        for name, fn in fns.items()
    }


def run_problem(name: str, k: int, args, runners) -> dict:
    x = jnp.asarray(datasets.DATASETS[name]())
    keys = jax.random.split(jax.random.key(args.seed), args.starts)
    starts = jax.vmap(lambda key: gmm.init(key, x, k, method="random", reg_covar=0.0))(keys)
    out = {"name": name, "k": k, "shape": x.shape}
    for method in METHODS:
        result, seconds = time_compiled(runners[method], starts, x)
        steps = max(int(np.max(np.asarray(result.n_iter))), 1)
        out[method] = {
            "history": np.asarray(result.history),
            "final": np.asarray(result.log_likelihood),
            "n_iter": np.asarray(result.n_iter),
            "seconds": seconds,
            "sec_per_step": seconds / steps,
            # smallest covariance eigenvalue per start: a collapsing component shows here
            "min_eig": np.asarray(jnp.linalg.eigvalsh(result.params.covariances)).min(axis=(1, 2)),
        }
        progress(
            f"  {name} {method:6s}: {args.starts} vmapped runs in {seconds:.3f} s, "
            f"{steps} loop steps, best final ll {np.nanmax(out[method]['final']):.4f}"
        )
    best = max(np.nanmax(out[m]["final"]) for m in METHODS)
    out["best"] = best
    for method in METHODS:
        r = out[method]
        r["iters_to_best"] = first_within(r["history"], r["final"], r["n_iter"], best, GAP)
    return out


def plot(path: pathlib.Path, problems: list[dict], args) -> None:
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(problems))
    for ax, p in zip(np.atleast_1d(axes), problems, strict=True):
        for method in METHODS:
            r = p[method]
            steps = np.arange(1, r["history"].shape[1] + 1) * r["sec_per_step"]
            for s in range(r["history"].shape[0]):
                gap = p["best"] - r["history"][s]
                ax.plot(
                    steps * 1e3,
                    np.maximum(gap, 1e-12),
                    color=COLOURS[method],
                    alpha=0.5,
                    lw=1,
                    label=method if s == 0 else None,
                )
        ax.axhline(GAP, color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall-clock of the vmapped batch (ms, compile excluded)")
        ax.set_ylabel("best ll − ll (mean per point, floored at 1e-12)")
        n, d = p["shape"]
        ax.set_title(f"{p['name']} ({n}×{d}), K={p['k']}, full; best ll {p['best']:.4f}")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(
        f"{args.starts} random starts per data set, same starts for all methods "
        f"(Adam step {args.learning_rate:g})"
    )
    fig.savefig(path, dpi=110)


def summary_rows(problems: list[dict]) -> list[list[str]]:
    rows = []
    for p in problems:
        for method in METHODS:
            r = p[method]
            iters = r["iters_to_best"]
            reached = np.isfinite(iters)
            gaps = p["best"] - r["final"]
            med_time = (
                f"{np.median(iters[reached]) * r['sec_per_step'] * 1e3:.1f}"
                if reached.any()
                else "-"
            )
            rows.append(
                [
                    p["name"],
                    method,
                    f"{reached.sum()}/{len(iters)}",
                    f"{np.median(iters[reached]):.0f}" if reached.any() else "-",
                    med_time,
                    f"{np.nanmedian(gaps):.2e}",
                    f"{np.median(r['n_iter']):.0f}",
                    f"{r['seconds'] * 1e3:.1f}",
                    f"{r['sec_per_step'] * 1e6:.0f}",
                    f"{r['min_eig'][np.nanargmax(r['final'])]:.2e}",
                ]
            )
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the experiment; returns one dict per data set."""
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    chosen = [(name, k) for name, k in PROBLEMS if name in args.datasets.split(",")]
    if not chosen:
        raise ValueError(f"--datasets must name some of {[n for n, _ in PROBLEMS]}")
    progress(
        f"experiment 3: {', '.join(n for n, _ in chosen)}; {args.starts} random starts; "
        "EM, Adam, L-BFGS"
    )
    runners = make_runners(args)
    problems = [run_problem(name, k, args, runners) for name, k in chosen]
    header = [
        "data",
        "method",
        f"starts reaching best − {GAP:g}",
        "median iterations to get there",
        "median ms to get there",
        "median final gap to best",
        "median iterations run",
        "batch ms (all starts)",
        "µs per loop step (batch)",
        "smallest covariance eigenvalue (its best start)",
    ]
    table = markdown_table(header, summary_rows(problems))
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "real_data_curves.png"
    md = args.out / "real_data_curves.md"
    plot(png, problems, args)
    best = ", ".join(f"{p['name']} {p['best']:.4f}" for p in problems)
    body = (
        f"Best mean log-likelihood reached by any method from any start: {best}. "
        f"Stopping rule |Δll| < {args.tol:g} for all methods; caps EM {args.max_iter_em}, "
        f"Adam {args.max_iter_adam}, L-BFGS {args.max_iter_lbfgs}. Times are for the "
        f"vmapped batch of {args.starts} starts, compile excluded.\n\n{table}\n\n"
        f"![figure]({png.name})"
    )
    command = "python experiments/real_data_curves.py " + " ".join(argv or sys.argv[1:])
    write_markdown(md, "EM, Adam and L-BFGS on real data", body, command.strip())
    progress(f"wrote {png}")
    progress(f"wrote {md}")
    return problems


if __name__ == "__main__":
    main()
