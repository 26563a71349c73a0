"""Per-iteration cost of the restarts' EM by formulation, on the end-to-end cases.

The default fit with ``n_init=10`` screens its restarts in one loop (engine's
``run_em_refined``); where the float32 check fails the ``"auto"`` pass computes
the moment E-step, the check, and then the direct route. This script times the
EM loop alone (the restarts' starts computed once, k-means), ``--restarts`` of
them as one ``vmap``, for 1 and ``1 + --iterations`` iterations with ``tol=0``,
for each formulation, so that the difference is the cost of the iterations
(the fixed part: preparing the pass and the final evaluation). On well separated
5 000 × 8 points, below the 8 192 rows from which a fit centres chunks of rows
apart (one global centre), ``"auto"`` then costs more than the direct route
alone: the case where the default fit is still slow against scikit-learn
(issue #19).

Run from the repository root::

    python experiments/pass_cost.py [--cases 5000x8-separated,5000x8-overlap]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, reexec_without_openblas_overrides  # noqa: E402

FORMULATIONS = ("auto", "moments", "direct")


def cost(case_name: str, restarts: int, iterations: int, repeats: int) -> list[list[str]]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from end_to_end import CASES, _median_time

    from jaxem._src import engine
    from jaxem._src.gmm.fit import family
    from jaxem._src.sources import InMemory

    case = CASES[case_name]
    x_np = case.load().astype(np.float32)
    k = case.n_components
    rows = []
    for formulation in FORMULATIONS:
        fam = family("full", formulation=formulation)
        padded = InMemory.of(fam, jnp.asarray(x_np), None)  # padded to its bucket, as a fit
        x, w = padded.x, padded.w
        ctx = jax.jit(lambda x, w, fam=fam: InMemory(x, w).context(fam))(x, w)

        @jax.jit
        def starts(key, x, w, ctx, fam=fam):
            methods = ("kmeans",) * restarts
            return engine.initial_stats(
                fam, key, x, w, ctx, n_components=k, n_active=jnp.asarray(k), methods=methods
            )[0]

        begin = starts(jax.random.key(0), x, w, ctx)
        times = {}
        for n_iter in (1, 1 + iterations):

            @jax.jit
            def run(x, w, ctx, begin, fam=fam, n_iter=n_iter):
                src = InMemory(x, w)
                prepared = src.prepare(fam, ctx, n_components=k)
                return src.run(
                    fam, prepared, ctx, begin, tol=0.0, max_iter=n_iter, criterion="change"
                )

            times[n_iter] = 1e3 * _median_time(run, x, w, ctx, begin, repeats=repeats)[2]
        per_iteration = (times[1 + iterations] - times[1]) / iterations
        rows.append(
            [
                case.name, formulation,
                f"{times[1]:.2f}", f"{times[1 + iterations]:.2f}", f"{per_iteration:.2f}",
                f"{per_iteration / restarts:.3f}",
            ]
        )  # fmt: skip
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="5000x8-separated,5000x8-overlap")
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    reexec_without_openblas_overrides("pass_cost")
    rows = []
    for name in args.cases.split(","):
        rows += cost(name, args.restarts, args.iterations, args.repeats)
    header = [
        "case", "formulation", "1 iteration ms", f"{1 + args.iterations} iterations ms",
        "ms / iteration", "ms / iteration / restart",
    ]  # fmt: skip
    print(f"{args.restarts} restarts as one vmap (k-means starts), float32, tol = 0\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
