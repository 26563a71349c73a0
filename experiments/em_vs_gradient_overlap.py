"""Experiment 1: convergence of EM, SQUAREM, Adam and L-BFGS against the overlap of two Gaussians.

Redner & Walker (1984) and Xu & Jordan (1996): EM converges linearly, at a rate
set by the fraction of missing information, which tends to 1 (very slow) as the
components overlap and to 0 (near-superlinear) as they separate.

For each separation Δ/σ, ``--seeds`` data sets of ``--n`` points from
``½ N(−Δ/2, 1) + ½ N(Δ/2, 1)`` (1-D) are fitted by a two-component mixture
(means, variances and weights free, no ``reg_covar``) from the same k-means
start by EM, accelerated EM (SQUAREM, Varadhan & Roland 2008: ``jaxem.em`` with
``accelerate="squarem"``, the R package's step-length settings), Adam and
L-BFGS, each vmapped over the data sets. The maximum likelihood ``ll*`` of a
data set is the best final value of EM and L-BFGS run to ``|Δll| < 1e-14``; we
count the iterations until ``|ll − ll*| < 1e-8`` and turn them into wall-clock
time with each method's measured time per iteration. SQUAREM's count is in
EM-map evaluations (passes over the data, ``EMResult.evaluations``), the unit of
EM's iterations: its history records one point per cycle (2 to 4 passes), so the
passes before the first recorded point within ``1e-8`` are read off a rerun of
the same batch stopped at that cycle (``max_iter``). EM's
empirical rate is the median ratio of successive gaps ``(ll* − ll_{i+1}) /
(ll* − ll_i)``, compared with ``ρ²``, the squared spectral radius of the Jacobian
of the EM map at the optimum (computed with ``jax.jacfwd``): parameter errors
shrink by ``ρ`` per iteration, so log-likelihood gaps shrink by ``ρ²``.

Run from the repository root::

    python experiments/em_vs_gradient_overlap.py [--seeds 16] [--n 500] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
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

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

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
from jaxem.gmm.unconstrained import from_unconstrained, to_unconstrained  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results"
METHODS = ("EM", "SQUAREM", "Adam", "L-BFGS")
COLOURS = {"EM": "tab:blue", "SQUAREM": "tab:purple", "Adam": "tab:orange", "L-BFGS": "tab:green"}
GAP = 1e-8
# accelerate="squarem": the R package's step-length settings. (step_max0=4, which
# acceleration_variants.py found better on acceleration.py's 16 data sets, was
# not better on held-out seeds.)
SQUAREM = jaxem.Squarem()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``None`` reads ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16, help="data sets per separation")
    parser.add_argument("--n", type=int, default=500, help="points per data set")
    parser.add_argument(
        "--separations", type=str, default="0.5,1,2,3,6", help="comma-separated Δ/σ values"
    )
    parser.add_argument("--max-iter-em", type=int, default=20000, help="EM iteration cap")
    parser.add_argument(
        "--max-iter-squarem", type=int, default=3000, help="SQUAREM cycle cap (2-4 passes each)"
    )
    parser.add_argument("--max-iter-adam", type=int, default=20000, help="Adam iteration cap")
    parser.add_argument("--max-iter-lbfgs", type=int, default=2000, help="L-BFGS iteration cap")
    parser.add_argument("--learning-rate", type=float, default=0.05, help="Adam's step size")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per method (median, interleaved)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    return parser.parse_args(argv)


def make_data(seed: int, n: int, delta: float) -> np.ndarray:
    """(n, 1) points from ½ N(−Δ/2, 1) + ½ N(Δ/2, 1)."""
    rng = np.random.default_rng(seed)
    signs = rng.integers(2, size=n) * 2 - 1
    return (signs * delta / 2 + rng.normal(size=n))[:, None]


def em_map(u, x):
    """One EM iteration as a map of unconstrained parameters (for its Jacobian)."""
    params = from_unconstrained(u, "full")
    resp, _ = gmm.e_step(params, x)
    return to_unconstrained(gmm.m_step(resp, x, reg_covar=0.0))


def em_spectral_radius(params: gmm.GMMParams, x: jax.Array) -> jax.Array:
    """Spectral radius of the Jacobian of the EM map at ``params`` (a fixed point)."""
    flat, unravel = jax.flatten_util.ravel_pytree(to_unconstrained(params))
    jac = jax.jacfwd(lambda v: jax.flatten_util.ravel_pytree(em_map(unravel(v), x))[0])(flat)
    return jnp.max(jnp.abs(jnp.linalg.eigvals(jac)))


def runners(args: argparse.Namespace):
    """The four vmapped fitters, jitted once each (the data are traced)."""
    m_step = functools.partial(gmm.m_step, reg_covar=0.0)

    def em(start, x, tol, max_iter):
        return jaxem.em(gmm.e_step, m_step, start, x, tol=tol, max_iter=max_iter)

    def squarem(start, x, tol, max_iter):
        return jaxem.em(
            gmm.e_step, m_step, start, x, tol=tol, max_iter=max_iter, accelerate=SQUAREM
        )

    def adam(start, x, tol, max_iter):
        return fit_gradient(start, x, optax.adam(args.learning_rate), tol=tol, max_iter=max_iter)

    def lbfgs(start, x, tol, max_iter):
        return fit_gradient(start, x, optax.lbfgs(), tol=tol, max_iter=max_iter)

    caps = {
        "EM": args.max_iter_em,
        "SQUAREM": args.max_iter_squarem,
        "Adam": args.max_iter_adam,
        "L-BFGS": args.max_iter_lbfgs,
    }
    fns = {"EM": em, "SQUAREM": squarem, "Adam": adam, "L-BFGS": lbfgs}
    batched = {
        name: jax.jit(jax.vmap(functools.partial(fn, tol=1e-14, max_iter=caps[name])))
        for name, fn in fns.items()
    }
    # Per-iteration cost: the same run on one data set (its time over its iterations).
    # Not tol = 0 with a fixed count: past the optimum L-BFGS's line search keeps
    # failing at full cost, which would inflate its time per iteration.
    single = {
        name: jax.jit(functools.partial(fn, tol=1e-14, max_iter=caps[name]))
        for name, fn in fns.items()
    }
    # SQUAREM stopped after a given number of cycles (static: one program each).
    stopped = functools.cache(
        lambda cycles: jax.jit(jax.vmap(functools.partial(squarem, tol=1e-14, max_iter=cycles)))
    )
    return batched, single, stopped


def squarem_passes(result: jaxem.EMResult, index: np.ndarray, stopped, starts, xs) -> np.ndarray:
    """EM-map evaluations SQUAREM made before its first recorded point within
    the gap (``index``: that point's place in ``history``, from
    :func:`first_within`; ``n_iter`` when only the returned parameters are).

    The point ``history[k]`` is the ``k + 1``-th recorded one: the batch rerun
    with ``max_iter = k + 1`` follows the same cycles, evaluates it, and makes
    one final pass, so the map evaluations before it are ``evaluations − 2``
    (plain EM's ``history[k]`` comes after ``k``). Returned parameters are one
    M-step past the last recorded point: ``evaluations − 1`` of the full run.
    """
    out = np.full(index.shape, np.inf)
    n_iter = np.asarray(result.n_iter)
    final = np.isfinite(index) & (index >= n_iter)
    out[final] = np.asarray(result.evaluations)[final] - 1
    for k in np.unique(index[np.isfinite(index) & ~final]).astype(int):
        rerun = stopped(int(k) + 1)(starts, xs)
        evaluations = np.asarray(rerun.evaluations)
        chosen = (index == k) & ~final
        same = np.asarray(rerun.history)[chosen, k] == np.asarray(result.history)[chosen, k]
        if not same.all():  # the rerun must retrace the cycles of the full run
            raise RuntimeError(f"SQUAREM stopped after {k + 1} cycles left the full run's path")
        out[chosen] = evaluations[chosen] - 2
    return out


def kmeans_starts(xs: jax.Array) -> gmm.GMMParams:
    """The common start of all the methods: ``gmm.init`` by k-means, per data set."""
    keys = jax.random.split(jax.random.key(0), xs.shape[0])
    return jax.jit(jax.vmap(lambda k, x: gmm.init(k, x, 2, method="kmeans", reg_covar=0.0)))(
        keys, xs
    )


def run_separation(delta: float, args, batched, single, stopped) -> dict:
    """All four methods on ``--seeds`` data sets at one separation."""
    xs = jnp.asarray(np.stack([make_data(s, args.n, delta) for s in range(args.seeds)]))
    starts = kmeans_starts(xs)
    results = {}
    for name in METHODS:
        results[name], seconds = time_compiled(batched[name], starts, xs)
        r = results[name]
        count = f"{np.median(np.asarray(r.n_iter)):.0f} iterations"
        if name == "SQUAREM":
            count = f"{np.median(np.asarray(r.evaluations)):.0f} passes"
        progress(
            f"  Δ/σ={delta:g} {name:6s}: {args.seeds} vmapped runs in {seconds:.2f} s, "
            f"median {count}"
        )
    finals = np.stack([np.asarray(results[m].log_likelihood) for m in ("EM", "L-BFGS")])
    ll_star = np.nanmax(finals, axis=0)
    both_converged = np.asarray(results["EM"].converged) & np.asarray(results["L-BFGS"].converged)
    disagree = both_converged & (np.abs(finals[0] - finals[1]) > GAP)

    sq = results["SQUAREM"]
    both = np.asarray(results["EM"].converged) & np.asarray(sq.converged)
    sq_disagree = both & (np.abs(finals[0] - np.asarray(sq.log_likelihood)) > GAP)

    out = {
        "delta": delta,
        "ll_star": ll_star,
        "em_lbfgs_disagree": disagree,
        "em_squarem_disagree": sq_disagree,
    }
    # Time per iteration (SQUAREM: per pass, its unit of iterations here) of one
    # run on the first data set: median of --repeats calls, the methods interleaved.
    start0, x0 = jax.tree.map(lambda a: a[0], starts), xs[0]
    ones = {name: jax.block_until_ready(single[name](start0, x0)) for name in METHODS}
    times = {name: [] for name in METHODS}
    for _ in range(args.repeats):
        for name in METHODS:
            tic = time.perf_counter()
            jax.block_until_ready(single[name](start0, x0))
            times[name].append(time.perf_counter() - tic)
    for name in METHODS:
        r = results[name]
        iters = first_within(r.history, r.log_likelihood, r.n_iter, ll_star, GAP)
        one, seconds = ones[name], float(np.median(times[name]))
        count = one.evaluations if name == "SQUAREM" else one.n_iter
        if name == "SQUAREM":
            iters = squarem_passes(r, iters, stopped, starts, xs)
        out[name] = {
            "iters": iters,
            "sec_per_iter": seconds / max(int(count), 1),
            "n_iter": np.asarray(r.evaluations if name == "SQUAREM" else r.n_iter),
        }
    reached = np.isfinite(out["EM"]["iters"]) & np.isfinite(out["SQUAREM"]["iters"])
    out["em_over_squarem"] = np.divide(
        out["EM"]["iters"],
        np.maximum(out["SQUAREM"]["iters"], 1),
        out=np.full(reached.shape, np.nan),
        where=reached,
    )

    # EM's empirical rate: ratios of successive gaps in the asymptotic range.
    gaps = ll_star[:, None] - np.asarray(results["EM"].history)
    ok = (gaps[:, :-1] > 1e-12) & (gaps[:, :-1] < 1e-6) & np.isfinite(gaps[:, 1:])
    ratios = np.where(ok, gaps[:, 1:] / np.where(ok, gaps[:, :-1], 1), np.nan)
    out["em_gap_ratio"] = np.array([nanmedian(r) for r in ratios])  # NaN: too fast to measure
    rho = jax.jit(jax.vmap(em_spectral_radius))(results["EM"].params, xs)
    out["rho_squared"] = np.asarray(rho) ** 2
    return out


def fmt_iters(iters: np.ndarray) -> str:
    reached = np.isfinite(iters)
    if not reached.any():
        return "not reached"
    med = np.median(np.where(reached, iters, np.inf))
    text = f"{med:.0f}" if np.isfinite(med) else "> cap"
    return text + ("" if reached.all() else f" ({reached.sum()}/{len(iters)} reached)")


def fmt_time(iters: np.ndarray, sec_per_iter: float) -> str:
    med = np.median(np.where(np.isfinite(iters), iters, np.inf)) * sec_per_iter
    if not np.isfinite(med):
        return "-"
    return f"{med * 1e3:.2f}"


def fmt_ratio(ratio: np.ndarray) -> str:
    """Min / median over the data sets where both methods reached the target."""
    ok = np.isfinite(ratio)
    if not ok.any():
        return "-"
    text = f"{np.min(ratio[ok]):.1f} / {np.median(ratio[ok]):.1f}"
    return text + ("" if ok.all() else f" ({ok.sum()}/{len(ratio)})")


def nanmedian(a) -> float:
    a = np.asarray(a, np.float64)
    return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")


def plot(path: pathlib.Path, rows: list[dict], args) -> None:
    deltas = np.array([r["delta"] for r in rows])
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_it, ax_t, ax_rate = fig.subplots(1, 3)
    for name in METHODS:
        for ax, scale in ((ax_it, 1.0), (ax_t, None)):
            med, lo, hi = [], [], []
            for r in rows:  # runs that never reached the target are left out of the band
                it = np.where(np.isfinite(r[name]["iters"]), r[name]["iters"], np.nan)
                factor = 1.0 if scale is not None else r[name]["sec_per_iter"] * 1e3
                vals = it * factor
                any_ok = np.isfinite(vals).any()
                med.append(np.nanmedian(vals) if any_ok else np.nan)
                lo.append(np.nanpercentile(vals, 25) if any_ok else np.nan)
                hi.append(np.nanpercentile(vals, 75) if any_ok else np.nan)
            ax.plot(deltas, med, "o-", color=COLOURS[name], label=name)
            ax.fill_between(deltas, lo, hi, color=COLOURS[name], alpha=0.2)
    ax_it.set_ylabel(f"iterations (SQUAREM: passes) to |ll − ll*| < {GAP:g}")
    ax_t.set_ylabel(f"milliseconds to |ll − ll*| < {GAP:g} (compile excluded)")
    for ax in (ax_it, ax_t):
        ax.set_yscale("log")
        ax.set_xlabel("separation Δ/σ")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    ax_it.set_title("iterations (median, IQR band; reached runs)")
    ax_t.set_title("wall-clock (iterations × time per iteration)")
    emp = [nanmedian(r["em_gap_ratio"]) for r in rows]
    theo = [nanmedian(r["rho_squared"]) for r in rows]
    ax_rate.plot(deltas, emp, "o-", color="tab:blue", label="EM: median gap ratio (measured)")
    ax_rate.plot(deltas, theo, "s--", color="black", label="ρ² of the EM map's Jacobian")
    ax_rate.set_yscale("log")
    ax_rate.set_xlabel("separation Δ/σ")
    ax_rate.set_ylabel("ll gap ratio per EM iteration")
    ax_rate.set_title("EM's linear rate")
    ax_rate.grid(alpha=0.3, which="both")
    ax_rate.legend()
    fig.suptitle(
        f"Two 1-D Gaussians, {args.seeds} data sets × {args.n} points per separation, k-means start"
    )
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the experiment; returns one summary dict per separation."""
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    separations = [float(s) for s in args.separations.split(",")]
    progress(
        f"experiment 1: {len(separations)} separations x {args.seeds} data sets x {args.n} "
        "points; EM, SQUAREM, Adam, L-BFGS"
    )
    batched, single, stopped = runners(args)
    rows = []
    for delta in separations:
        rows.append(run_separation(delta, args, batched, single, stopped))

    header = [
        "Δ/σ",
        *(f"{m} {'passes' if m == 'SQUAREM' else 'iterations'}" for m in METHODS),
        *(f"{m} ms" for m in METHODS),
        "EM / SQUAREM (min / median)",
        "EM gap ratio (measured)",
        "ρ² (Jacobian)",
        "EM ≠ L-BFGS optimum (both converged)",
        "EM ≠ SQUAREM optimum (both converged)",
    ]
    table_rows = []
    for r in rows:
        table_rows.append(
            [
                f"{r['delta']:g}",
                *(fmt_iters(r[m]["iters"]) for m in METHODS),
                *(fmt_time(r[m]["iters"], r[m]["sec_per_iter"]) for m in METHODS),
                fmt_ratio(r["em_over_squarem"]),
                f"{nanmedian(r['em_gap_ratio']):.4f}",
                f"{nanmedian(r['rho_squared']):.4f}",
                f"{int(r['em_lbfgs_disagree'].sum())}/{len(r['ll_star'])}",
                f"{int(r['em_squarem_disagree'].sum())}/{len(r['ll_star'])}",
            ]
        )
    per_iter = markdown_table(
        ["Δ/σ", *(f"{m} µs/{'pass' if m == 'SQUAREM' else 'iteration'}" for m in METHODS)],
        [
            [f"{r['delta']:g}", *(f"{r[m]['sec_per_iter'] * 1e6:.1f}" for m in METHODS)]
            for r in rows
        ],
    )
    table = markdown_table(header, table_rows)
    cell = lambda v: "–" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
    per_seed = markdown_table(
        ["Δ/σ", *(f"seed {i}" for i in range(args.seeds))],
        [
            [
                f"{r['delta']:g}",
                *(
                    f"{cell(e)} / {cell(q)}"
                    for e, q in zip(r["EM"]["iters"], r["SQUAREM"]["iters"], strict=True)
                ),
            ]
            for r in rows
        ],
    )
    print()
    print(table)
    print()
    print(per_seed)
    print()
    print(per_iter)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "em_vs_gradient_overlap.png"
    md = args.out / "em_vs_gradient_overlap.md"
    plot(png, rows, args)
    body = (
        f"Medians over {args.seeds} data sets of {args.n} points; iterations until the mean "
        f'log-likelihood is within {GAP:g} of ll* ("k/n reached" when some runs hit the cap: '
        f"EM {args.max_iter_em}, SQUAREM {args.max_iter_squarem} cycles, Adam "
        f"{args.max_iter_adam}, L-BFGS {args.max_iter_lbfgs}); SQUAREM "
        '(`jaxem.em(..., accelerate="squarem")`, the R package\'s step-length settings) is '
        "counted in EM-map evaluations (passes over the data) before its first recorded "
        "point within the gap, the unit of EM's iterations; EM / SQUAREM is that ratio per "
        "data set (min / median over those where both reached ll*); "
        "milliseconds = iterations × measured time per iteration (SQUAREM: per pass) of one "
        f"compiled run on the first data set (compile excluded; median of {args.repeats} calls, "
        f"the methods interleaved); Adam step size {args.learning_rate:g}.\n\n"
        f"{table}\n\n"
        "Per data set, EM iterations / SQUAREM passes to the gap (– not reached):\n\n"
        f"{per_seed}\n\n"
        f"Time per iteration (one data set):\n\n{per_iter}\n\n![figure]({png.name})"
    )
    command = "python experiments/em_vs_gradient_overlap.py " + " ".join(argv or sys.argv[1:])
    write_markdown(md, "EM versus gradient ascent against overlap", body, command.strip())
    listed = lambda a: [None if not np.isfinite(v) else float(v) for v in np.asarray(a)]  # noqa: E731
    summary = [
        {
            "delta": r["delta"],
            "ll_star": listed(r["ll_star"]),
            "em_over_squarem": listed(r["em_over_squarem"]),
            "em_squarem_disagree": np.asarray(r["em_squarem_disagree"]).tolist(),
            "em_lbfgs_disagree": np.asarray(r["em_lbfgs_disagree"]).tolist(),
            **{
                m: {"iters": listed(r[m]["iters"]), "sec_per_iter": r[m]["sec_per_iter"]}
                for m in METHODS
            },
        }
        for r in rows
    ]
    (args.out / "em_vs_gradient_overlap.json").write_text(json.dumps(summary, indent=1))
    progress(f"wrote {png}")
    progress(f"wrote {md}")
    return rows


if __name__ == "__main__":
    main()
