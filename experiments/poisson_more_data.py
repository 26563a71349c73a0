"""jaxem's Poisson mixtures against flexmix on three count data sets no other reference uses.

R's ``datasets::discoveries`` (100 yearly counts), ``InsectSprays$count`` (72) and
``warpbreaks$breaks`` (54) (experiments/data/r_<name>.csv), against the best of 20
flexmix ``FLXMCmvpois`` runs per K (experiments/results/flexmix_poisson_more_reference.json,
from experiments/reference/flexmix_poisson_more.R). ``jaxem.fit(mixtures.Poisson(),
...)`` with ``n_init=10``, ``tol=1e-10``, float64, K = 1..4: the total
log-likelihood against flexmix's. Run from the repository root (under a minute)::

    python experiments/poisson_more_data.py [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import markdown_table, write_results  # noqa: E402


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    import jaxem
    from jaxem import mixtures

    reference = json.loads((ROOT / "results" / "flexmix_poisson_more_reference.json").read_text())
    records = []
    for name, ref in reference["results"].items():
        y = np.loadtxt(ROOT / "data" / f"r_{name}.csv", delimiter=",", skiprows=1)[:, None]
        for k, flexmix in zip(ref["K"], ref["loglik"], strict=True):
            fit = jaxem.fit(
                mixtures.Poisson(), jax.random.key(0), y, k, n_init=10, tol=1e-10, max_iter=5000
            )
            total = float(fit.log_likelihood) * len(y)
            records.append(dict(data=name, K=k, jaxem=total, flexmix=flexmix))
    rows = [
        [
            r["data"],
            r["K"],
            f"{r['jaxem']:.6f}",
            f"{r['flexmix']:.6f}",
            f"{r['jaxem'] - r['flexmix']:+.1e}",
        ]
        for r in records
    ]
    meta = reference["meta"]
    body = (
        f"flexmix {meta['flexmix_version']} ({meta['R_version']}), the best of "
        f"{meta['runs']} runs per K; jaxem float64, key 0, `n_init=10`, `tol=1e-10`. "
        "Total log-likelihoods (higher is better).\n\n"
        + markdown_table(["data", "K", "jaxem", "flexmix", "jaxem − flexmix"], rows)
        + "\n"
    )
    write_results(
        args.out,
        "poisson_more_data",
        "Poisson mixtures on discoveries, InsectSprays and warpbreaks: jaxem against flexmix",
        body,
        records,
    )
    return records


if __name__ == "__main__":
    main()
