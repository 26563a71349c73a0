"""R mclust's 14 covariance models on Old Faithful: BIC and ICL against ``Mclust``.

Runs :func:`jaxem.gmm.select` over ``gmm.MCLUST_MODELS`` and K = 1..9 on
experiments/data/faithful.csv, compares the BIC and ICL tables with mclust 6.0.0's
(experiments/results/mclust_bic_reference.json, from
experiments/reference/mclust_bic.R: ``mclustBIC``, ``mclustICL`` and ``Mclust`` with
their defaults), writes the comparison to ``OUT/mclust_models.md`` and draws the 14
BIC curves to ``OUT/mclust_models_bic.png``.

jaxem's criteria are lower-is-better (``−2 log L + p log N``); mclust's are their
negatives. mclust starts every fit from its model-based agglomeration (``hc`` VVV on
SVD-scaled data); jaxem's ``init="hc_vvv"`` is that start, its default portfolio is
several methods.

Run from the repository root::

    python experiments/mclust_models.py [--init auto|hc_vvv] [--n-init 1] [--tol 1e-3]
        [--max-iter 100] [--stopping change|aitken|relative] [--n-refine N]
        [--out experiments/results]

mclust's own run is reproduced by ``--init hc_vvv --n-init 1 --stopping relative
--tol 1e-5 --max-iter 100000 --n-refine 0``: its start, its stopping rule
(``|ΔL| ≤ 1e-5 (1 + |L|)``, no iteration limit) and no refinement. ICL needs
that: its classification term moves with how far a fit ran.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = pathlib.Path(__file__).resolve().parent


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", default="auto")
    parser.add_argument("--n-init", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--stopping", default="change", choices=("change", "aitken", "relative"))
    parser.add_argument("--n-refine", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "results")
    return parser.parse_args(argv)


def table(values: np.ndarray, models, ks, fmt="{:.1f}") -> list[str]:
    lines = ["| K | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for m, k in enumerate(ks):
        lines.append(f"| {k} | " + " | ".join(fmt.format(v) for v in values[:, m]) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    from jaxem import gmm

    x = np.loadtxt(ROOT / "data" / "faithful.csv", delimiter=",", skiprows=1)
    reference = json.loads((ROOT / "results" / "mclust_bic_reference.json").read_text())
    ref = reference["results"]["faithful"]
    models, ks = tuple(ref["models"]), tuple(ref["G"])
    assert models == gmm.MCLUST_MODELS
    start = time.perf_counter()
    sel = gmm.select(
        jax.random.key(args.seed), x, n_components=ks, covariance_types=models,
        init=args.init, n_init=args.n_init, tol=args.tol, max_iter=args.max_iter,
        stopping=args.stopping, n_refine=args.n_refine,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    ref_bic = -np.asarray(ref["bic"], dtype=float).T  # (T, M), jaxem's sign
    ref_icl = -np.asarray(ref["icl"], dtype=float).T
    bic_gap, icl_gap = sel.bic - ref_bic, sel.icl - ref_icl
    t, m = np.unravel_index(np.argmin(sel.icl), sel.icl.shape)
    out = {
        "init": args.init,
        "n_init": args.n_init,
        "tol": args.tol,
        "max_iter": args.max_iter,
        "stopping": args.stopping,
        "n_refine": args.n_refine,
        "seconds": seconds,
        "bic_choice": [sel.best_model, sel.best_n_components],
        "mclust_bic_choice": [ref["best"]["modelName"], ref["best"]["G"]],
        "icl_choice": [models[t], ks[m]],
        "mclust_icl_choice": [ref["best_icl"]["modelName"], ref["best_icl"]["G"]],
        "best_bic": float(sel.bic.min()),
        "mclust_best_bic": -ref["best"]["bic"],
        "cells_within_1e-3_relative": int(np.sum(np.abs(bic_gap) <= 1e-3 * np.abs(ref_bic))),
        "icl_cells_within_1e-3_relative": int(np.sum(np.abs(icl_gap) <= 1e-3 * np.abs(ref_icl))),
        "cells": int(bic_gap.size),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# mclust's 14 models on Old Faithful: jaxem's BIC and ICL against mclust 6.0.0",
        "",
        f"`python experiments/mclust_models.py --init {args.init} --n-init {args.n_init} "
        f"--tol {args.tol} --max-iter {args.max_iter} --stopping {args.stopping}"
        + ("" if args.n_refine is None else f" --n-refine {args.n_refine}")
        + f"`: {seconds:.0f} s (14 compiled programs, "
        "K = 1..9 each).",
        "",
        f"* BIC chooses {sel.best_model}, K = {sel.best_n_components} (BIC "
        f"{sel.bic.min():.3f}); mclust's Mclust: {ref['best']['modelName']}, G = "
        f"{ref['best']['G']} ({-ref['best']['bic']:.3f} in jaxem's sign).",
        f"* ICL chooses {models[t]}, K = {ks[m]}; mclust: {ref['best_icl']['modelName']}, "
        f"G = {ref['best_icl']['G']}.",
        f"* {out['cells_within_1e-3_relative']} of {out['cells']} BIC cells within 1e-3 "
        "relative of mclust's (the others: a different local optimum, better when "
        "negative).",
        f"* {out['icl_cells_within_1e-3_relative']} of {out['cells']} ICL cells within 1e-3 "
        "relative of mclust's.",
        "",
        "## jaxem BIC − mclust BIC (negative: jaxem's fit is better)",
        "",
        *table(bic_gap, models, ks, "{:.2f}"),
        "",
        "## jaxem ICL − mclust ICL",
        "",
        *table(icl_gap, models, ks, "{:.2f}"),
        "",
    ]
    (args.out / "mclust_models.md").write_text("\n".join(lines))
    tables = {"models": models, "K": ks, "bic": sel.bic.tolist(), "icl": sel.icl.tolist()}
    (args.out / "mclust_models.json").write_text(json.dumps({**out, **tables}, indent=1))
    fig = Figure(figsize=(9, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [matplotlib.colormaps["tab20"](i / 20) for i in range(20)]
    for i, model in enumerate(models):
        style = "-" if i < 7 else "--"
        ax.plot(ks, sel.bic[i], style, color=colors[i], marker="o", markersize=3, label=model)
    ax.set_xlabel("number of components K")
    ax.set_ylabel("BIC (−2 log L + p log N, lower is better)")
    ax.set_title(
        f"Old Faithful: mclust's 14 models (choice {sel.best_model}, K = {sel.best_n_components})"
    )
    ax.set_ylim(sel.bic.min() - 5, sel.bic.min() + 90)
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "mclust_models_bic.png", dpi=120)
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
