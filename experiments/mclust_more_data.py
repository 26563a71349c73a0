"""R mclust's 14 covariance models on three data sets no other reference here uses.

mclust's ``diabetes`` (145 × 3), ``banknote`` (200 × 6) and ``thyroid`` (215 × 5),
their numeric columns (experiments/data/mclust_<name>.csv), against mclust 6.0.0's
``mclustBIC`` and ``Mclust`` with their defaults
(experiments/results/mclust_bic_more_reference.json, from
experiments/reference/mclust_bic_more.R). :func:`jaxem.gmm.select` over
``gmm.MCLUST_MODELS`` and K = 1..9, float64, in three ways:

* ``mclust``: mclust's start (``init="hc_vvv"``), its stopping rule
  (``stopping="relative"``, ``tol=1e-5``) and no refinement: every cell should be
  mclust's;
* ``default``: ``gmm.select``'s defaults (one start from jaxem's portfolio,
  scikit-learn's ``tol=1e-3``);
* ``n_init=4``: four starts from the portfolio (the README's example).

For each it reports the choice by BIC against Mclust's and how many of the
cells mclust fitted are within 1e-3 relative of its BIC, better (lower, in
jaxem's sign) or worse. Run from the repository root (about two minutes)::

    python experiments/mclust_more_data.py [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import markdown_table, write_results  # noqa: E402

DATASETS = ("diabetes", "banknote", "thyroid")
MODES = {
    "mclust": dict(
        init="hc_vvv", n_init=1, stopping="relative", tol=1e-5, max_iter=100_000, n_refine=0
    ),
    "default": {},
    "n_init=4": dict(n_init=4),
}


def compare(name: str, mode: str, reference: dict) -> dict:
    """One data set, one way of fitting: the choice and the cells against mclust's."""
    from jaxem import gmm

    ref = reference["results"][name]
    x = np.loadtxt(ROOT / "data" / f"mclust_{name}.csv", delimiter=",", skiprows=1)
    models, ks = tuple(ref["models"]), tuple(ref["G"])
    assert models == gmm.MCLUST_MODELS
    start = time.perf_counter()
    sel = gmm.select(jax.random.key(0), x, n_components=ks, covariance_types=models, **MODES[mode])
    seconds = time.perf_counter() - start
    mclust = -np.asarray([[np.nan if v is None else v for v in row] for row in ref["bic"]]).T
    gap = np.asarray(sel.bic) - mclust  # (models, K); negative: jaxem's fit is better
    fitted = np.isfinite(mclust)
    close = fitted & (np.abs(gap) <= 1e-3 * np.abs(mclust))
    return dict(
        data=name,
        mode=mode,
        seconds=seconds,
        choice=[sel.best_model, int(sel.best_n_components), float(np.min(sel.bic))],
        mclust_choice=[ref["best"]["modelName"], int(ref["best"]["G"]), -ref["best"]["bic"]],
        cells=int(fitted.sum()),
        within=int(close.sum()),
        better=int((fitted & ~close & (gap < 0)).sum()),
        worse=int((fitted & ~close & (gap > 0)).sum()),
        largest_gap=float(np.max(np.abs(gap[fitted]))),
        fitted_where_mclust_failed=int((~fitted & np.isfinite(sel.bic)).sum()),
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    reference = json.loads((ROOT / "results" / "mclust_bic_more_reference.json").read_text())
    records = [compare(name, mode, reference) for name in DATASETS for mode in MODES]
    rows = [
        [
            r["data"],
            r["mode"],
            f"{r['choice'][0]}, {r['choice'][1]} ({r['choice'][2]:.3f})",
            f"{r['mclust_choice'][0]}, {r['mclust_choice'][1]} ({r['mclust_choice'][2]:.3f})",
            f"{r['within']} / {r['cells']}",
            r["better"],
            r["worse"],
            f"{r['largest_gap']:.3g}",
            r["fitted_where_mclust_failed"],
            f"{r['seconds']:.0f}",
        ]
        for r in records
    ]
    header = [
        "data", "fit", "jaxem's choice (BIC)", "Mclust's choice (BIC)",
        "cells within 1e-3", "better", "worse", "largest Δ BIC (absolute)",
        "fitted where mclust gave NA", "seconds",
    ]  # fmt: skip
    body = "\n".join(
        [
            f"mclust {reference['meta']['mclust_version']} ({reference['meta']['R_version']}); "
            "jaxem in float64, key 0. BIC in jaxem's sign (lower is better; mclust's "
            "negated); a cell is one model and K = 1..9; better / worse: by more than "
            "1e-3 relative.",
            "",
            markdown_table(header, rows),
            "",
        ]
    )
    write_results(
        args.out,
        "mclust_more_data",
        "mclust's 14 models on diabetes, banknote and thyroid: jaxem against mclust",
        body,
        records,
    )
    return records


if __name__ == "__main__":
    main()
