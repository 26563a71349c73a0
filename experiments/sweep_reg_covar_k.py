"""Experiment 4: a hyperparameter sweep in one call: vmap over ``reg_covar`` and K.

``gmm.fit`` takes ``reg_covar`` and the number of active components ``n_active``
as traced numbers, so the whole grid (every ``reg_covar`` × every K ≤ K_max,
``--n-init`` k-means restarts each) is one compiled program: two nested
``jax.vmap`` around ``gmm.fit``. On the wine data (178 × 13, standardised with
the training split's mean and scale), a fixed 70/30 split gives the BIC on the
training part and the mean held-out log-likelihood on the rest, as two surfaces
over (K, reg_covar), for full and diagonal covariances (the covariance type is
static: one compiled call per type).

Run from the repository root::

    python experiments/sweep_reg_covar_k.py [--n-init 5] [--max-k 8] [--out DIR]
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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

import datasets  # noqa: E402
from common import markdown_table, progress, time_compiled, write_markdown  # noqa: E402

from jaxem import gmm  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``None`` reads ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-init", type=int, default=5, help="k-means restarts per model")
    parser.add_argument("--max-k", type=int, default=8, help="K = 1..max-k")
    parser.add_argument(
        "--reg-covars", type=str, default="1e-6,1e-5,1e-4,1e-3,1e-2,1e-1,3e-1,1",
        help="comma-separated reg_covar values",
    )  # fmt: skip
    parser.add_argument(
        "--covariance-types", default="full,diag", help="one compiled call per type"
    )
    parser.add_argument("--tol", type=float, default=1e-4, help="EM tolerance")
    parser.add_argument("--max-iter", type=int, default=300, help="EM iteration cap")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the starts")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    return parser.parse_args(argv)


def split(x: np.ndarray, seed: int, train_fraction: float = 0.7):
    """A fixed random split, standardised with the training part's mean and scale."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = round(train_fraction * len(x))
    train, test = x[order[:n_train]], x[order[n_train:]]
    mean, scale = train.mean(0), train.std(0)
    return (train - mean) / scale, (test - mean) / scale


def sweep(key, x_train, x_test, reg_covars, ks, *, max_k, covariance_type, n_init, tol, max_iter):
    """BIC (train) and mean held-out log-likelihood over the grid reg_covar × K."""
    fit = functools.partial(
        gmm.fit,
        key,
        x_train,
        max_k,
        covariance_type=covariance_type,
        n_init=n_init,
        tol=tol,
        max_iter=max_iter,
    )

    def one(reg_covar, k):
        result = fit(reg_covar=reg_covar, n_active=k)
        return (
            gmm.bic(result.params, x_train),
            jnp.mean(gmm.log_prob(result.params, x_test)),
            result.log_likelihood,
            result.converged,
        )

    over_k = jax.vmap(one, in_axes=(None, 0))
    return jax.vmap(over_k, in_axes=(0, None))(reg_covars, ks)


def plot_row(fig, axes, ks, reg_covars, bic, heldout, train_ll, covariance_type) -> None:
    """One row of panels: the BIC surface, the held-out surface, held-out vs training."""
    labels = [f"{r:g}" for r in reg_covars]
    panels = (
        (bic, "BIC on the training split (lower is better)", np.nanargmin, "viridis_r"),
        (heldout, "mean held-out log-likelihood (higher is better)", np.nanargmax, "viridis"),
    )
    for ax, (surface, name, best_fn, cmap) in zip(axes[:2], panels, strict=True):
        finite = np.where(np.isfinite(surface), surface, np.nan)
        lo, hi = np.nanpercentile(finite, [5, 100]) if best_fn is np.nanargmax else (
            np.nanpercentile(finite, [0, 95])
        )  # fmt: skip
        image = ax.imshow(finite.T, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi)
        fig.colorbar(image, ax=ax)
        i, j = np.unravel_index(best_fn(finite), finite.shape)
        ax.plot(i, j, "r*", ms=16, label=f"best: reg_covar={reg_covars[i]:g}, K={ks[j]}")
        ax.set_xticks(range(len(reg_covars)), labels, rotation=45)
        ax.set_yticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("reg_covar")
        ax.set_ylabel("K")
        ax.set_title(f"{covariance_type}: {name}", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    for i, r in enumerate(reg_covars):
        colour = f"C{i % 10}"
        ax.plot(ks, heldout[i], "o-", color=colour, label=f"held-out, reg={r:g}")
        ax.plot(ks, train_ll[i], ":", color=colour)
    ax.set_ylim(np.nanpercentile(heldout, 5) - 1, np.nanmax(train_ll) + 1)
    ax.set_xlabel("K")
    ax.set_ylabel("mean log-likelihood (dotted: training)")
    ax.set_title(f"{covariance_type}: held-out (solid) against training (dotted)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the sweep; returns the surfaces."""
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    x_train, x_test = split(datasets.load_wine()[0], args.seed)
    reg_covars = np.array([float(r) for r in args.reg_covars.split(",")])
    ks = np.arange(1, args.max_k + 1)
    n_models = len(reg_covars) * len(ks)
    progress(
        f"experiment 4: wine {x_train.shape[0]} train / {x_test.shape[0]} test x "
        f"{x_train.shape[1]} features; {len(reg_covars)} reg_covar x {len(ks)} K = {n_models} "
        f"models x {args.n_init} restarts = {n_models * args.n_init} EM runs in one call"
    )
    inputs = (
        jax.random.key(args.seed),
        jnp.asarray(x_train),
        jnp.asarray(x_test),
        jnp.asarray(reg_covars),
        jnp.asarray(ks, jnp.int32),
    )
    covariance_types = args.covariance_types.split(",")
    fig = Figure(figsize=(16, 4.6 * len(covariance_types)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(len(covariance_types), 3))
    results, sections = {}, []
    for row, covariance_type in enumerate(covariance_types):
        run = jax.jit(
            functools.partial(
                sweep,
                max_k=args.max_k,
                covariance_type=covariance_type,
                n_init=args.n_init,
                tol=args.tol,
                max_iter=args.max_iter,
            )
        )
        (bic, heldout, train_ll, converged), seconds = time_compiled(run, *inputs)
        progress(f"{covariance_type}: one call over the grid: {seconds:.2f} s (compile excluded)")
        bic, heldout, train_ll = (np.asarray(a, np.float64) for a in (bic, heldout, train_ll))
        converged = np.asarray(converged)
        rows = [
            [f"{k}"] + [f"{bic[i, j]:.0f} / {heldout[i, j]:.2f}" for i in range(len(reg_covars))]
            for j, k in enumerate(ks)
        ]
        table = markdown_table(["K", *(f"reg={r:g}" for r in reg_covars)], rows)
        i_b, j_b = np.unravel_index(np.nanargmin(bic), bic.shape)
        i_h, j_h = np.unravel_index(np.nanargmax(heldout), heldout.shape)
        summary = (
            f"- lowest BIC: K={ks[j_b]}, reg_covar={reg_covars[i_b]:g} "
            f"(BIC {bic[i_b, j_b]:.1f}, held-out {heldout[i_b, j_b]:.3f})\n"
            f"- highest held-out log-likelihood: K={ks[j_h]}, reg_covar={reg_covars[i_h]:g} "
            f"(held-out {heldout[i_h, j_h]:.3f}, BIC {bic[i_h, j_h]:.1f})\n"
            f"- the whole grid in one compiled call: {seconds:.2f} s (compile excluded); "
            f"{int(converged.sum())}/{converged.size} chosen restarts converged (tol {args.tol:g})"
        )
        print(f"\n{covariance_type}:\n{summary}\n\n{table}\n")
        sections.append(f"## {covariance_type} covariances\n\n{summary}\n\n{table}")
        plot_row(fig, axes[row], ks, reg_covars, bic, heldout, train_ll, covariance_type)
        results[covariance_type] = {"bic": bic, "heldout": heldout, "train_ll": train_ll}

    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "sweep_reg_covar_k.png"
    md = args.out / "sweep_reg_covar_k.md"
    fig.suptitle(
        f"wine (standardised): one vmapped call over reg_covar x K per covariance type "
        f"({args.n_init} k-means restarts each)"
    )
    fig.savefig(png, dpi=100)
    body = (
        f"Each cell: BIC on the {x_train.shape[0]}-point training split / mean held-out "
        f"log-likelihood per point on the {x_test.shape[0]}-point test split.\n\n"
        + "\n\n".join(sections)
        + f"\n\n![figure]({png.name})"
    )
    command = "python experiments/sweep_reg_covar_k.py " + " ".join(argv or sys.argv[1:])
    write_markdown(md, "Sweep over reg_covar and K in one call", body, command.strip())
    progress(f"wrote {png}")
    progress(f"wrote {md}")
    results.update(ks=ks, reg_covars=reg_covars)
    return results


if __name__ == "__main__":
    main()
