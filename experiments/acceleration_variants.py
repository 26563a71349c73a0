"""SQUAREM's step-length settings on experiment 1's data (issue #22, must-show 2).

``acceleration.py`` found SQUAREM with the R package's settings short of "10×
fewer passes than EM, at EM's optimum" on 3 of 16 data sets at Δ/σ ≤ 1 (one at
6.2×, two at a different, higher optimum). This script reruns only the
accelerated fits, with other step-length schedules of :class:`jaxem.Squarem`,
on the same data and starts, and compares them with plain EM's passes and final
log-likelihoods as ``acceleration.py`` recorded them
(``results/acceleration.json``: EM to ``|Δll| < 1e-14``, up to 200 000
iterations, is the expensive part and is not rerun).

``--first-seed 8`` runs the same comparison on held-out data sets (seeds 8 to
15, the same k-means keys), where plain EM is run here (``jaxem.fit``, the same
tolerance and cap as ``acceleration.py``); its results go to
``acceleration_variants_seeds8-15.md`` / ``.json``.

Run from the repository root::

    python experiments/acceleration_variants.py [--first-seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, progress, time_compiled, write_markdown  # noqa: E402
from em_vs_gradient_overlap import kmeans_starts, make_data  # noqa: E402

import jaxem  # noqa: E402
from jaxem import gmm  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results"
EM_RESULTS = EXPERIMENTS_DIR / "results" / "acceleration.json"
TOL = 1e-14
SAME = 1e-9

VARIANTS = {
    "package (step_max0 1, mstep 4)": jaxem.Squarem(),
    "step_max0 4": jaxem.Squarem(step_max0=4.0),
    "mstep 2": jaxem.Squarem(mstep=2.0),
    "step_max0 16, mstep 2": jaxem.Squarem(step_max0=16.0, mstep=2.0),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=3000, help="SQUAREM cycle cap")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="first data set's seed (0: acceleration.json's)"
    )
    parser.add_argument("--max-iter-em", type=int, default=200000, help="EM cap (held-out seeds)")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    em = json.loads(EM_RESULTS.read_text())["overlap"]
    family = gmm.family("full", reg_covar=0.0)
    held_out = args.first_seed != 0
    if held_out:

        def plain(start, x):
            return jaxem.fit(
                family, None, x, start=start, tol=TOL, max_iter=args.max_iter_em, n_refine=0
            )

        plain = jax.jit(jax.vmap(plain))
    rows = []
    for ref in em:
        delta = ref["delta"]
        seeds = len(ref["evals_EM"])
        n = 500
        first = args.first_seed
        xs = jnp.asarray(np.stack([make_data(s, n, delta) for s in range(first, first + seeds)]))
        starts = kmeans_starts(xs)
        evals_em, ll_em = np.asarray(ref["evals_EM"]), np.asarray(ref["ll_EM"])
        if held_out:
            result, seconds = time_compiled(plain, starts, xs)
            evals_em, ll_em = np.asarray(result.evaluations), np.asarray(result.log_likelihood)
            progress(
                f"Δ/σ={delta:g} plain EM on seeds {first}-{first + seeds - 1}: passes "
                f"{evals_em.tolist()}, converged {np.asarray(result.converged).sum()}/{seeds} "
                f"({seconds:.0f} s)"
            )
        rates: list[float | None] = [None] * seeds
        for name, config in VARIANTS.items():

            def one(start, x, config=config):
                return jaxem.fit(
                    family, None, x, start=start, tol=TOL, max_iter=args.max_iter, n_refine=0,
                    accelerate=config,
                )  # fmt: skip

            result, seconds = time_compiled(jax.jit(jax.vmap(one)), starts, xs)
            evals = np.asarray(result.evaluations)
            ll = np.asarray(result.log_likelihood)
            history = np.asarray(result.history)
            steps = [np.diff(h[: int(k)]) for h, k in zip(history, result.n_iter, strict=True)]
            same = np.abs(ll - ll_em) < SAME
            ratio = evals_em / evals
            row = {
                "delta": delta,
                "variant": name,
                "evals": evals.tolist(),
                "evals_EM": evals_em.tolist(),
                "ratio": ratio.tolist(),
                "ll_minus_EM": (ll - ll_em).tolist(),
                "same_optimum": same.tolist(),
                "min_history_step": float(min(s.min() for s in steps if s.size)),
                "converged": np.asarray(result.converged).tolist(),
                "seconds": seconds,
            }
            for i in range(seeds):  # EM's rate at EM's optimum (the first fit there)
                if rates[i] is None and same[i]:
                    fitted = jax.tree.map(lambda a, i=i: a[i], result.params)
                    rates[i] = float(jaxem.em_rate(family, fitted, xs[i]))
            rows.append(row)
            progress(
                f"Δ/σ={delta:g} {name}: ratio min {ratio.min():.1f} median "
                f"{np.median(ratio):.1f}; same optimum {same.sum()}/{seeds}; ≥10× at the same "
                f"optimum {int(np.sum(same & (ratio >= 10)))}/{seeds}"
            )
        for row in rows[-len(VARIANTS) :]:
            row["em_rate_at_optimum"] = rates
    table = markdown_table(
        ["Δ/σ", "SQUAREM settings", "passes (median)", "ratio to EM: min / median",
         "same optimum as EM", "≥ 10× and same optimum", "min history step"],
        [
            [
                f"{r['delta']:g}",
                r["variant"],
                f"{np.median(r['evals']):.0f}",
                f"{np.min(r['ratio']):.1f} / {np.median(r['ratio']):.1f}",
                f"{sum(r['same_optimum'])}/{len(r['evals'])}",
                f"{sum(s and q >= 10 for s, q in zip(r['same_optimum'], r['ratio'], strict=True))}"
                f"/{len(r['evals'])}",
                f"{r['min_history_step']:.1e}",
            ]
            for r in rows
        ],
    )  # fmt: skip
    per_seed = markdown_table(
        [
            "Δ/σ",
            "SQUAREM settings",
            *[f"seed {args.first_seed + i}" for i in range(len(rows[0]["evals"]))],
        ],
        [
            [
                f"{r['delta']:g}",
                r["variant"],
                *[
                    f"{e} ({q:.1f}×{'' if s else ', other optimum'})"
                    for e, q, s in zip(r["evals"], r["ratio"], r["same_optimum"], strict=True)
                ],
            ]
            for r in rows
        ],
    )
    rate_table = markdown_table(
        ["Δ/σ", *[f"seed {args.first_seed + i}" for i in range(len(rows[0]["evals"]))]],
        [
            [
                f"{r['delta']:g}",
                *[f"{v:.4f}" if v is not None else "–" for v in r["em_rate_at_optimum"]],
            ]
            for r in rows
            if r["variant"] == next(iter(VARIANTS))
        ],
    )
    if held_out:
        last = args.first_seed + len(rows[0]["evals"]) - 1
        source = (
            f"held-out seeds {args.first_seed}–{last}, the k-means keys of `acceleration.py`), "
            f"`reg_covar = 0`, tol {TOL:g}; plain EM run here (`jaxem.fit`, up to "
            f"{args.max_iter_em} iterations)"
        )
        stem = f"acceleration_variants_seeds{args.first_seed}-{last}"
    else:
        source = (
            f"the seeds of `acceleration.py`), `reg_covar = 0`, k-means starts, tol {TOL:g}; "
            "EM's passes and optimum from `results/acceleration.json`"
        )
        stem = "acceleration_variants"
    body = (
        f"Experiment 1's data (n = 500 per data set, {source}. Same optimum: final mean "
        f"log-likelihoods within "
        f"{SAME:g}.\n\n{table}\n\nPasses per data set (ratio to EM):\n\n{per_seed}\n\n"
        "EM's rate at EM's optimum (`jaxem.em_rate`: the spectral radius of the EM map's "
        "Jacobian, at the first accelerated fit that reached that optimum):"
        f"\n\n{rate_table}\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(
        args.out / f"{stem}.md",
        "SQUAREM step-length settings on experiment 1's data",
        body,
        "python experiments/acceleration_variants.py " + " ".join(argv or sys.argv[1:]),
    )
    (args.out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    print(body)
    return rows


if __name__ == "__main__":
    main()
