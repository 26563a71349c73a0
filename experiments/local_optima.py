"""Experiment 2: how often do random restarts reach the global optimum? (Jin et al. 2016)

Jin, Zhang, Balakrishnan, Wainwright & Jordan (NeurIPS 2016) prove that the
population likelihood of an equally weighted mixture of K ≥ 3 well-separated
spherical unit-variance Gaussians has bad local maxima, and that EM (or its
first-order variant) started from random points of the data converges to a bad
critical point with probability at least ``1 − e^{−Ω(K)}``.

For each K, ``--n-per-component`` points from each of K unit-variance spherical
Gaussians in ``--dim`` dimensions (equal counts: the equal weights of the
population, without multinomial noise), means placed uniformly in a box with
every pair at least ``--separation`` σ apart. The reference optimum is EM started
at the true parameters. ``--restarts`` starts from ``gmm.init`` by
``random_from_data`` and by ``k-means++`` (one data point per component, equal
weights, covariance ``--init-var``·I for both: one-point starts have no covariance
of their own, and the default 1 = σ² is Jin et al.'s known covariance) are fitted,
all vmapped in one call per K and method, by EM (``jaxem.em`` with
``gmm.e_step``/``gmm.m_step``, ``reg_covar=0``) and by Adam
(``gmm.fit_gradient``, run to its cap), spherical covariances, all parameters
free. A run succeeds when its final mean log-likelihood is within
``--success-tol`` of the reference. A start is "seeded" when its K initial means
lie in K different true components; for well-separated components the
probability of that for ``random_from_data`` is ``K!/K^K``.

Run from the repository root::

    python experiments/local_optima.py [--ks 3,5,10,20] [--restarts 200] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import math
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.ticker import NullFormatter

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, progress, write_markdown  # noqa: E402

import jaxem  # noqa: E402
from jaxem import gmm  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results"
METHODS = ("EM", "Adam")
INITS = ("random_from_data", "k-means++")
COLOURS = {"random_from_data": "tab:red", "k-means++": "tab:blue", "kmeans": "tab:green"}
STYLES = {"EM": "o-", "Adam": "s--"}
TOLERANCES = (1e-5, 1e-4, 1e-3, 1e-2, 3e-2)
COLLAPSED = 1e-3  # a component variance below this (σ² = 1) has collapsed on a few points


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``None`` reads ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=str, default="3,5,10,20", help="comma-separated K values")
    parser.add_argument("--restarts", type=int, default=200, help="starts per K and init")
    parser.add_argument("--n-per-component", type=int, default=25, help="points per component")
    parser.add_argument("--dim", type=int, default=2, help="dimension D")
    parser.add_argument(
        "--separation", type=float, default=8.0, help="minimum distance between means (σ = 1)"
    )
    parser.add_argument(
        "--inits", type=str, default=",".join(INITS), help="comma-separated gmm.init methods"
    )
    parser.add_argument(
        "--init-var", type=float, default=1.0, help="initial variance of every component"
    )
    parser.add_argument("--reg-covar", type=float, default=0.0, help="EM's reg_covar")
    parser.add_argument("--em-tol", type=float, default=1e-5, help="EM stopping tolerance")
    parser.add_argument("--em-max-iter", type=int, default=500, help="EM iteration cap")
    parser.add_argument(
        "--adam-tol", type=float, default=0.0, help="Adam stopping tolerance (0: run to the cap)"
    )
    parser.add_argument("--adam-max-iter", type=int, default=1000, help="Adam iteration cap")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="Adam's step size")
    parser.add_argument(
        "--success-tol", type=float, default=1e-3, help="success: |ll − ll_ref| per sample below"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the starts")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    return parser.parse_args(argv)


def place_means(rng: np.random.Generator, k: int, dim: int, separation: float) -> np.ndarray:
    """(k, dim) means uniform in a box, every pair at least ``separation`` apart.

    Random sequential addition; the box side ``1.5 · separation · k^{1/dim}`` keeps
    the packing loose enough that rejection always succeeds quickly.
    """
    side = 1.5 * separation * k ** (1 / dim)
    means = np.empty((0, dim))
    while len(means) < k:
        candidate = rng.uniform(0, side, dim)
        if len(means) == 0 or np.min(np.linalg.norm(means - candidate, axis=1)) >= separation:
            means = np.vstack([means, candidate])
    return means


def make_problem(k: int, args) -> dict:
    """Data, labels and the true mixture for one K (float32)."""
    rng = np.random.default_rng([args.seed, k])
    means = place_means(rng, k, args.dim, args.separation)
    labels = np.repeat(np.arange(k), args.n_per_component)
    x = means[labels] + rng.normal(size=(len(labels), args.dim))
    truth = gmm.make_params(
        np.full(k, 1 / k, np.float32),
        means.astype(np.float32),
        np.ones(k, np.float32),
        covariance_type="spherical",
    )
    return {"k": k, "x": jnp.asarray(x, jnp.float32), "labels": labels, "truth": truth}


def fitters(args):
    """EM and Adam, each vmapped over starts (the data are a traced argument)."""
    m_step = functools.partial(gmm.m_step, covariance_type="spherical", reg_covar=args.reg_covar)

    def em(start, x):
        return jaxem.em(gmm.e_step, m_step, start, x, tol=args.em_tol, max_iter=args.em_max_iter)

    def adam(start, x):
        optimizer = optax.adam(args.learning_rate)
        return gmm.fit_gradient(start, x, optimizer, tol=args.adam_tol, max_iter=args.adam_max_iter)

    def reference(truth, x):  # EM from the truth, run long and tight
        return jaxem.em(gmm.e_step, m_step, truth, x, tol=0.0, max_iter=2 * args.em_max_iter)

    batched = {
        name: jax.jit(jax.vmap(fn, in_axes=(0, None))) for name, fn in (("EM", em), ("Adam", adam))
    }
    return batched, jax.jit(reference)


@functools.partial(jax.jit, static_argnames=("k", "method"))
def make_starts(keys, x, init_var, *, k, method):
    """``gmm.init`` for every key: one data point per component, covariance init_var·I."""
    return jax.vmap(
        lambda key: gmm.init(
            key, x, k, covariance_type="spherical", method=method, reg_covar=init_var
        )
    )(keys)


def compile_and_run(fn, *args):
    """Compile ``fn`` for ``args``, then run it once.

    Returns:
        ``(result, compile seconds, run seconds)``; the run is timed to
        :func:`jax.block_until_ready`. One run only: these batches are the
        expensive part of the experiment.
    """
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compiled_at = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    return result, compiled_at - start, time.perf_counter() - compiled_at


def seeded(start_means: np.ndarray, true_means: np.ndarray) -> np.ndarray:
    """(R,) whether the K initial means lie in K different true components (nearest mean)."""
    d2 = np.sum((start_means[:, :, None, :] - true_means[None, None]) ** 2, axis=-1)
    nearest = np.argmin(d2, axis=-1)  # (R, K)
    k = true_means.shape[0]
    return np.array([len(np.unique(row)) == k for row in nearest])


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_k(k: int, args, batched, reference, inits: Sequence[str]) -> dict:
    """All starts for one K: reference, starts, EM and Adam; returns per-run arrays."""
    problem = make_problem(k, args)
    x, truth = problem["x"], problem["truth"]
    ref, _, seconds = compile_and_run(reference, truth, x)
    ll_ref = float(ref.log_likelihood)
    progress(
        f"K={k}: N={x.shape[0]}, reference (EM from the truth) ll {ll_ref:.5f} "
        f"after {int(ref.n_iter)} iterations ({seconds:.2f} s)"
    )
    key = jax.random.key(args.seed)
    starts_by_init = []
    for i, method in enumerate(inits):
        keys = jax.random.split(jax.random.fold_in(key, 1000 * k + i), args.restarts)
        starts_by_init.append(make_starts(keys, x, args.init_var, k=k, method=method))
    starts = jax.tree.map(lambda *a: jnp.concatenate(a), *starts_by_init)
    start_means = np.asarray(starts.means)
    out = {
        "k": k,
        "n": x.shape[0],
        "ll_ref": ll_ref,
        "problem": problem,
        "ref_params": ref.params,
        "seeded": seeded(start_means, np.asarray(truth.means)).reshape(len(inits), -1),
    }
    for name in METHODS:
        result, compile_s, seconds = compile_and_run(batched[name], starts, x)
        final = np.asarray(result.log_likelihood, np.float64).reshape(len(inits), -1)
        history = np.asarray(result.history, np.float64).reshape(len(inits), args.restarts, -1)
        out[name] = {
            "final": final,
            "history": history,
            "gap": ll_ref - final,  # > 0: worse than the reference
            "n_iter": np.asarray(result.n_iter).reshape(len(inits), -1),
            "converged": np.asarray(result.converged).reshape(len(inits), -1),
            "means": np.asarray(result.params.means).reshape(len(inits), args.restarts, k, -1),
            "variances": np.asarray(result.params.covariances).reshape(len(inits), -1, k),
            "seconds": seconds,
        }
        ok = np.abs(out[name]["gap"]) < args.success_tol
        summary = ", ".join(
            f"{init} {int(ok[i].sum())}/{args.restarts}" for i, init in enumerate(inits)
        )
        progress(
            f"  K={k} {name:4s}: {len(inits) * args.restarts} vmapped runs in {seconds:.2f} s "
            f"(+ {compile_s:.1f} s compile), max {int(out[name]['n_iter'].max())} iterations; "
            f"reach the reference: {summary}"
        )
    return out


def success_counts(row: dict, name: str, i: int, tol: float) -> int:
    return int(np.sum(np.abs(row[name]["gap"][i]) < tol))


def success_at(row: dict, name: str, i: int, step: int, tol: float) -> int:
    """Successes had every run stopped after ``step`` iterations (from the history)."""
    r = row[name]
    history, final, n_iter = r["history"][i], r["final"][i], r["n_iter"][i]
    ll = np.where(n_iter <= step, final, history[:, step - 1])
    return int(np.sum(np.abs(row["ll_ref"] - ll) < tol))


def table_rows(rows: list[dict], inits: Sequence[str], args) -> list[list[str]]:
    out = []
    for r in rows:
        for i, init in enumerate(inits):
            good = r["seeded"][i]
            for name in METHODS:
                gap = r[name]["gap"][i]
                ok = np.abs(gap) < args.success_tol
                lo, hi = wilson(int(ok.sum()), len(ok))
                bad = np.isfinite(gap) & (gap >= args.success_tol)
                cap = r[name]["history"].shape[-1]
                collapsed = np.min(r[name]["variances"][i], axis=-1) < COLLAPSED
                out.append(
                    [
                        f"{r['k']}",
                        f"{r['n']}",
                        init,
                        name,
                        f"{ok.sum()}/{len(ok)} = {ok.mean():.3f} [{lo:.3f}, {hi:.3f}]",
                        f"{success_at(r, name, i, cap // 2, args.success_tol)} (at {cap // 2})",
                        f"{good.sum()}/{len(good)}",
                        f"{ok[good].sum()}/{good.sum()}",
                        f"{ok[~good].sum()}/{(~good).sum()}",
                        f"{np.median(gap[bad]):.3f}" if bad.any() else "-",
                        f"{int(collapsed.sum())}",
                        f"{int(np.sum(gap <= -args.success_tol))}",
                        f"{int(np.sum(~np.isfinite(gap)))}",
                        "- (runs to the cap)"
                        if name == "Adam" and args.adam_tol == 0
                        else f"{int(np.sum(~r[name]['converged'][i]))}",
                        f"{np.median(r[name]['n_iter'][i]):.0f}",
                    ]
                )
    return out


def tolerance_range(rows: list[dict], inits: Sequence[str], args) -> str:
    """The tolerances of ``TOLERANCES`` that give the same success counts as ``--success-tol``."""

    def counts(tol):
        return [
            success_counts(r, name, i, tol)
            for r in rows
            for i in range(len(inits))
            for name in METHODS
        ]

    same = [t for t in TOLERANCES if counts(t) == counts(args.success_tol)]
    text = (
        f"{', '.join(f'{t:g}' for t in same)} give the same counts (of {TOLERANCES})"
        if same
        else "no other tolerance tried gives the same counts"
    )
    gaps = np.concatenate(
        [r[name]["gap"][i] for r in rows for i in range(len(inits)) for name in METHODS]
    )
    gaps = gaps[np.isfinite(gaps)]
    ok = np.abs(gaps) < args.success_tol
    failures = np.sort(gaps[gaps >= args.success_tol])  # worse than the reference
    if ok.any():
        text += f"; every success ends within {np.max(np.abs(gaps[ok])):.1e} of ll_ref"
    if failures.size:
        text += f"; the smallest failure gaps are {', '.join(f'{g:.3g}' for g in failures[:3])}"
    return text


def plot(path: pathlib.Path, rows: list[dict], inits: Sequence[str], args) -> None:
    fig = Figure(figsize=(17, 5.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_frac, ax_gap, ax_ex = fig.subplots(1, 3)
    ks = np.array([r["k"] for r in rows])
    zero_at = 0.5 / args.restarts  # where a count of 0 is drawn on the log axis
    offsets = np.linspace(-0.04, 0.04, len(inits) * len(METHODS))
    j = 0
    for i, init in enumerate(inits):
        colour = COLOURS.get(init, "black")
        for name in METHODS:
            counts = np.array([success_counts(r, name, i, args.success_tol) for r in rows])
            frac = np.maximum(counts / args.restarts, zero_at)
            bounds = np.array([wilson(int(c), args.restarts) for c in counts])
            x = ks * np.exp(offsets[j])
            ax_frac.errorbar(
                x,
                frac,
                yerr=[frac - np.maximum(bounds[:, 0], zero_at), bounds[:, 1] - frac],
                fmt=STYLES[name],
                color=colour,
                capsize=3,
                label=f"{init}, {name}",
            )
            zero = counts == 0
            ax_frac.plot(x[zero], frac[zero], STYLES[name][0], color=colour, mfc="white")
            j += 1
        seeded_frac = np.array([r["seeded"][i].mean() for r in rows])
        ax_frac.plot(
            ks, np.maximum(seeded_frac, zero_at), ":", color=colour, lw=2,
            label=f"{init}: starts seeding every component",
        )  # fmt: skip
    k_grid = np.arange(3, max(int(ks.max()), 3) + 1)
    ax_frac.plot(
        k_grid,
        [math.factorial(int(k)) / int(k) ** int(k) for k in k_grid],
        color="gray",
        lw=1,
        label="K!/K^K (uniform seeding hits every component)",
    )
    ax_frac.axhline(zero_at, color="gray", lw=0.5, ls="--")
    ax_frac.set_xscale("log")
    ax_frac.set_yscale("log")
    ax_frac.set_xticks(ks, [str(k) for k in ks])
    ax_frac.xaxis.set_minor_formatter(NullFormatter())
    ax_frac.set_xlim(ks.min() / 1.2, ks.max() * 1.2)
    ax_frac.set_ylim(zero_at / 2, 1.5)
    ax_frac.set_xlabel("K (components)")
    ax_frac.set_ylabel(f"fraction of {args.restarts} starts reaching the reference (95 % CI)")
    ax_frac.set_title(f"success against K (hollow: 0 of {args.restarts}, drawn at the dashed line)")
    ax_frac.grid(alpha=0.3, which="both")
    ax_frac.legend(fontsize=7, loc="lower left")

    rng = np.random.default_rng(0)
    floor = 1e-7
    for i, init in enumerate(inits):
        for name, marker in (("EM", "o"), ("Adam", "s")):
            for r in rows:
                gap = r[name]["gap"][i]
                gap = np.where(np.isfinite(gap), np.maximum(np.abs(gap), floor), np.nan)
                shift = {"EM": -0.12, "Adam": 0.12}[name] + (i - 0.5) * 0.05
                jitter = r["k"] * np.exp(shift + 0.04 * rng.standard_normal(gap.shape))
                ax_gap.scatter(
                    jitter, gap, s=6, marker=marker, alpha=0.3, color=COLOURS.get(init, "black"),
                    label=f"{init}, {name}" if r is rows[0] else None,
                )  # fmt: skip
    ax_gap.axhline(args.success_tol, color="black", ls="--", lw=1, label="success tolerance")
    ax_gap.set_xscale("log")
    ax_gap.set_yscale("log")
    ax_gap.set_xticks(ks, [str(k) for k in ks])
    ax_gap.xaxis.set_minor_formatter(NullFormatter())
    ax_gap.set_xlabel("K (EM left, Adam right of each K)")
    ax_gap.set_ylabel(f"|ll_ref − ll_final| per sample (floored at {floor:g})")
    ax_gap.set_title("final gaps to the reference, every run")
    ax_gap.grid(alpha=0.3, which="both")
    ax_gap.legend(fontsize=7, markerscale=2)

    plot_example(ax_ex, rows, inits, args)
    fig.suptitle(
        f"{args.dim}-D spherical unit-variance components ≥ {args.separation:g}σ apart, "
        f"{args.n_per_component} points each; {args.restarts} starts per init; "
        f"EM (reg_covar = 0) and Adam (step {args.learning_rate:g})"
    )
    fig.savefig(path, dpi=100)


def plot_example(ax, rows: list[dict], inits: Sequence[str], args) -> None:
    """A failed EM run from random_from_data at the largest K (first two coordinates)."""
    r = rows[-1]
    i = list(inits).index("random_from_data") if "random_from_data" in inits else 0
    gap = r["EM"]["gap"][i]
    failed = np.flatnonzero(np.isfinite(gap) & (gap >= args.success_tol))
    x = np.asarray(r["problem"]["x"])
    ax.scatter(x[:, 0], x[:, 1], s=2, color="lightgray")
    true_means = np.asarray(r["problem"]["truth"].means)
    ax.scatter(true_means[:, 0], true_means[:, 1], marker="x", color="black", label="true means")
    if failed.size:
        run = failed[np.argmin(gap[failed])]  # the mildest failure
        means = r["EM"]["means"][i, run]
        sd = np.sqrt(r["EM"]["variances"][i, run])
        for (mx, my), s in zip(means, sd, strict=True):
            ax.add_patch(Circle((mx, my), 2 * s, fill=False, color="tab:red", lw=1))
        ax.scatter(means[:, 0], means[:, 1], color="tab:red", s=14, label="EM fit (2σ circles)")
        title = f"K={r['k']}: a bad local optimum of EM from {inits[i]}, gap {gap[run]:.3f}"
    else:
        title = f"K={r['k']}: no failed EM run to show"
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the experiment; returns one dict of per-run arrays per K."""
    args = parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    inits = args.inits.split(",")
    progress(
        f"experiment 2: K in {ks}, {args.restarts} starts x {len(inits)} inits, "
        f"{args.n_per_component} points per component in {args.dim}-D, separation "
        f"{args.separation:g}; EM and Adam (float32)"
    )
    batched, reference = fitters(args)
    rows = [run_k(k, args, batched, reference, inits) for k in ks]

    header = [
        "K",
        "N",
        "init",
        "method",
        "reach reference (95 % CI)",
        "same, stopped at half the cap",
        "starts seeding every component",
        "success when seeded",
        "success when not seeded",
        "median gap of failures",
        "with a collapsed component",
        "above reference",
        "NaN",
        "not converged",
        "median iterations",
    ]
    table = markdown_table(header, table_rows(rows, inits, args))
    tol_note = tolerance_range(rows, inits, args)
    times = markdown_table(
        ["K", *(f"{m} s (all {len(inits) * args.restarts} starts)" for m in METHODS)],
        [[f"{r['k']}", *(f"{r[m]['seconds']:.2f}" for m in METHODS)] for r in rows],
    )
    print()
    print(table)
    print()
    print(f"success tolerances: {tol_note}")
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "local_optima.png"
    md = args.out / "local_optima.md"
    plot(png, rows, inits, args)
    refs = ", ".join(f"K={r['k']} {r['ll_ref']:.4f}" for r in rows)
    body = (
        f"{args.dim}-D, {args.n_per_component} points per unit-variance spherical component, "
        f"means ≥ {args.separation:g} apart; {args.restarts} starts per init method, each with "
        f"one data point per component, equal weights and variance {args.init_var:g}. EM "
        f"(`reg_covar=0`, tol {args.em_tol:g}, cap {args.em_max_iter}) and Adam (step "
        f"{args.learning_rate:g}, tol {args.adam_tol:g}, cap {args.adam_max_iter}) from the "
        "same starts, spherical covariances, weights, means and variances free, float32. "
        f"Success: |ll − ll_ref| < {args.success_tol:g} per sample, where ll_ref is EM started "
        f"at the true parameters ({refs}). Seeded: the K initial means lie in K different "
        f"true components. Collapsed: some component variance below {COLLAPSED:g}. "
        f"Tolerances {tol_note}.\n\n{table}\n\n"
        f"Wall-clock, compile excluded:\n\n{times}\n\n![figure]({png.name})"
    )
    command = "python experiments/local_optima.py " + " ".join(argv or sys.argv[1:])
    write_markdown(md, "Local optima: restarts reaching the global optimum", body, command.strip())
    progress(f"wrote {png}")
    progress(f"wrote {md}")
    return rows


if __name__ == "__main__":
    main()
