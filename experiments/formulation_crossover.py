"""Where the default fit should compile the direct formulation alone (issue #19).

``formulation="auto"`` compiles the moment route, its float32 accuracy check and
the direct fallback, and chooses per pass; ``"direct"`` compiles one route.
``jaxem.gmm.fit`` resolves ``"auto"`` to ``"direct"`` on the host for small data
(``DIRECT_MAX_ROWS``), wide full covariances (``DIRECT_MIN_FEATURES``) and narrow
data below the layout size (``DIRECT_MAX_NARROW_FEATURES``). This script times
both formulations on synthetic data (``estimators.make_data``: overlapping,
``s = 1``, and far apart, ``s = 10``), float32, for given row counts, features ×
components, covariance types and ``n_init``, through ``jaxem.fit`` with the
Gaussian family of each formulation as ``gmm.fit`` builds it but without the
host's resolution: later calls (medians of ``--repeats`` calls, the two
formulations interleaved, after one call each that compiles them), one process
for all. First calls are measured elsewhere (fresh processes; see the note at
``DIRECT_MAX_NARROW_FEATURES`` in ``jaxem/_src/gmm/fit.py``).

Run from the repository root::

    python experiments/formulation_crossover.py [--rows 2000,5000,8000]
        [--shapes 4x4,8x5] [--types full,tied,diag,spherical] [--n-init 1,10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import reexec_without_openblas_overrides  # noqa: E402

reexec_without_openblas_overrides()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from common import markdown_table, progress, run_fresh_process, write_markdown  # noqa: E402
from estimators import make_data  # noqa: E402

import jaxem  # noqa: E402
from jaxem._src.gmm.fit import family as gaussian_family  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results" / "formulation_crossover.md"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2000,5000,8000")
    parser.add_argument("--shapes", default="4x4,8x5", help="features x components")
    parser.add_argument("--types", default="full,tied,diag,spherical")
    parser.add_argument("--separations", default="1,10")
    parser.add_argument("--n-init", default="1,10")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--first-calls",
        action="store_true",
        help="instead: first calls, each formulation in fresh processes (no compilation cache)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def cell(n, d, k, sep, n_init, covariance_type, repeats) -> dict:
    x = np.asarray(make_data(n, d, k, seed=0, separation=sep), np.float32)

    families = {
        f: gaussian_family(covariance_type, formulation=f, n_features=d) for f in ("auto", "direct")
    }

    def fit(formulation):
        # jaxem.fit with the family itself: gmm.fit would resolve "auto" on the
        # host, to "direct" for the narrow data this script measures
        return jaxem.fit(families[formulation], jax.random.key(0), x, k, n_init=n_init)

    names = ("auto", "direct")
    lls = {f: float(fit(f).log_likelihood) for f in names}  # compiles both
    times = {f: [] for f in names}
    for _ in range(repeats):
        for f in names:
            start = time.perf_counter()
            fit(f).params.means.block_until_ready()
            times[f].append(time.perf_counter() - start)
    ms = {f: 1e3 * statistics.median(t) for f, t in times.items()}
    return dict(
        rows=n, features=d, components=k, separation=sep, n_init=n_init,
        covariance_type=covariance_type, auto_ms=ms["auto"], direct_ms=ms["direct"],
        ratio=ms["direct"] / ms["auto"], ll_auto=lls["auto"], ll_direct=lls["direct"],
    )  # fmt: skip


# The first call of one formulation in a fresh process: argv n, d, k, s, n_init, type, formulation.
FIRST_CALL = """
import json, sys, time
sys.path.insert(0, {experiments!r})
import jax, numpy as np
import jaxem
from estimators import make_data
from jaxem._src.gmm.fit import family
n, d, k, n_init = (int(v) for v in (sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]))
x = np.asarray(make_data(n, d, k, seed=0, separation=float(sys.argv[4])), np.float32)
fam = family(sys.argv[6], formulation=sys.argv[7], n_features=d)
start = time.perf_counter()
jaxem.fit(fam, jax.random.key(0), x, k, n_init=n_init).params.means.block_until_ready()
print(json.dumps(time.perf_counter() - start))
"""


def first_calls(args, rows, shapes, seps, inits) -> str:
    """Fresh processes, the formulations alternating: a markdown table."""
    child = FIRST_CALL.format(experiments=str(EXPERIMENTS_DIR))
    lines = []
    for covariance_type in args.types.split(","):
        for n, (d, k), sep, n_init in itertools.product(rows, shapes, seps, inits):
            base = [str(v) for v in (n, d, k, sep, n_init, covariance_type)]
            s = {f: run_fresh_process(child, [*base, f], None) for f in ("auto", "direct")}
            progress(f"{covariance_type} {n} × {d} K={k} s={sep:g} n_init={n_init}: {s}")
            lines.append(
                [covariance_type, n, d, k, f"{sep:g}", n_init, f"{s['auto']:.2f}",
                 f"{s['direct']:.2f}"]
            )  # fmt: skip
    return markdown_table(
        ["covariance", "rows", "D", "K", "s", "n_init", "auto first s", "direct first s"], lines
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    rows = [int(v) for v in args.rows.split(",")]
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    seps = [float(v) for v in args.separations.split(",")]
    inits = [int(v) for v in args.n_init.split(",")]
    command = "python experiments/formulation_crossover.py " + " ".join(argv or sys.argv[1:])
    if args.first_calls:
        table = first_calls(args, rows, shapes, seps, inits)
        body = (
            f"- Machine: {os.cpu_count()} cores; JAX {jax.__version__}; float32; the first "
            "call of `jaxem.fit` with each formulation's Gaussian family in a fresh process "
            "without the compilation cache (compilation included)\n\n" + table + "\n"
        )
        out_path = args.out.with_name(args.out.stem + "_first.md")
        write_markdown(out_path, "First calls: the direct formulation against auto", body, command)
        print(body)
        return []
    out = []
    for covariance_type in args.types.split(","):
        for n, (d, k), sep, n_init in itertools.product(rows, shapes, seps, inits):
            r = cell(n, d, k, sep, n_init, covariance_type, args.repeats)
            out.append(r)
            progress(
                f"{covariance_type:9s} {n:6d} × {d} K={k} s={sep:g} n_init={n_init}: auto "
                f"{r['auto_ms']:.2f} ms, direct {r['direct_ms']:.2f} ms ({r['ratio']:.2f})"
            )
    table = markdown_table(
        ["covariance", "rows", "D", "K", "s", "n_init", "auto ms", "direct ms",
         "direct / auto", "ll auto − direct"],
        [
            [r["covariance_type"], r["rows"], r["features"], r["components"],
             f"{r['separation']:g}", r["n_init"], f"{r['auto_ms']:.2f}",
             f"{r['direct_ms']:.2f}", f"{r['ratio']:.2f}",
             f"{r['ll_auto'] - r['ll_direct']:+.1e}"]
            for r in out
        ],
    )  # fmt: skip
    summary = markdown_table(
        ["covariance", "D", "direct / auto: min", "median", "max"],
        [
            [t, d, f"{min(v):.2f}", f"{statistics.median(v):.2f}", f"{max(v):.2f}"]
            for t in args.types.split(",")
            for d in sorted({s[0] for s in shapes})
            for v in [[r["ratio"] for r in out if r["covariance_type"] == t
                       and r["features"] == d]]
        ],
    )  # fmt: skip
    body = (
        f"- Machine: {os.cpu_count()} cores; JAX {jax.__version__}; float32; later calls of "
        f"`jaxem.fit` with each formulation's Gaussian family (no host resolution), medians of "
        f"{args.repeats} calls, the formulations interleaved\n\n"
        f"{summary}\n\n{table}\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_markdown(
        args.out,
        "The direct formulation against the per-pass choice",
        body,
        command,
    )
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1))
    print(body)
    return out


if __name__ == "__main__":
    main()
