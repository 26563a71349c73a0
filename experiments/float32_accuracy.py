"""float32 fits against float64: the moment formulation's accuracy check, measured.

``gmm.fit`` computes float32 data in float32. Its fast pass (the moment
formulation, ``jaxem._src.gmm.moments``) cancels large terms, so each chunk of
rows checks the error it made and falls back to the direct route where the
check fails. This script measures, per data set, the parameters that 30 EM
iterations from one start reach in float32 by each route (``direct``, forced
``moments``, and ``auto``: the fits' default) against the same 30 iterations
in float64 (direct):

* covariance error: ``max_k ‖Σ₆₄^{-½} Σ₃₂ Σ₆₄^{-½} − I‖₂``, the relative error in
  each component's own metric (its thinnest direction counts as much as its
  widest);
* mean error: ``max_k ‖Σ₆₄^{-½}(μ₃₂ − μ₆₄)‖``, in the component's standard deviations;
* ``|Δll|``: the reported mean log-likelihood against float64's;
* the time per iteration (which route ``auto`` took, and what it costs).

The direct route's own errors are float32's floor: an ill-conditioned
component (condition number κ) loses about ``ε κ`` in its thinnest direction
whatever the formulation. ``--factors 0,4`` runs the check with
``CONDITIONING_FACTOR`` 0 (the check before the second part of the bound:
``ε ρ`` alone) and 4 (today's), each in a fresh process.

Data: the end-to-end script's synthetic mixtures (random correlated
covariances, condition numbers up to 10⁴–10⁵; ``s`` the spread of the centres),
the benchmark's separation sweep (condition numbers ≤ 3; 0.3× to 10× apart and
1000 from the origin; full, tied, diag, spherical), tight clusters far apart
(σ = 10⁻³, 10 apart) and Old Faithful, iris and wine.

Run from the repository root (``--quick``: about 7 minutes on 2 cores; all cases
at full size: about an hour)::

    python experiments/float32_accuracy.py [--factors 0,4] [--quick] [--cases e2e,iris] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import markdown_table, progress, write_markdown  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results"
ITERATIONS = 30
ROUTES = ("direct", "moments", "auto")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    k: int
    covariance_type: str
    load: Callable[[], np.ndarray]


def _e2e(n, d, k, s):
    def load():
        from estimators import make_data

        return make_data(n, d, k, seed=0, separation=s)

    return load


def _sweep(kind, separation, offset, n):
    def load():
        from benchmark import Config, make_data

        return make_data(Config(kind, n, 16, 16, 12, "", separation, offset), seed=0)

    return load


def _tight(n):
    def load():
        rng = np.random.default_rng(0)
        centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
        return centres[rng.integers(3, size=n)] + 1e-3 * rng.standard_normal((n, 2))

    return load


def _real(name):
    def load():
        import datasets

        if name == "faithful":
            return datasets.load_faithful()
        return (datasets.load_iris if name == "iris" else datasets.load_wine)()[0]

    return load


def cases(quick: bool) -> list[Case]:
    n = 20_000 if quick else 100_000
    out = [
        Case("e2e 5000×8 K=5 s=1", 5, "full", _e2e(5_000, 8, 5, 1.0)),
        Case("e2e 5000×8 K=5 s=4", 5, "full", _e2e(5_000, 8, 5, 4.0)),
        Case("e2e 5000×8 K=5 s=10", 5, "full", _e2e(5_000, 8, 5, 10.0)),
        Case(f"e2e {n // 1000}k×16 K=16 s=1", 16, "full", _e2e(n, 16, 16, 1.0)),
        Case(f"e2e {n // 1000}k×16 K=16 s=4", 16, "full", _e2e(n, 16, 16, 4.0)),
        Case(f"e2e {n // 1000}k×16 K=16 s=10", 16, "full", _e2e(n, 16, 16, 10.0)),
        Case("tight σ=1e-3, 10 apart, 3000×2", 3, "full", _tight(3_000)),
        Case("tight σ=1e-3, 10 apart, 3000×2 (spherical)", 3, "spherical", _tight(3_000)),
        Case("Old Faithful", 3, "full", _real("faithful")),
        Case("iris", 3, "full", _real("iris")),
        Case("wine", 3, "full", _real("wine")),
    ]
    kinds = ("full",) if quick else ("full", "tied", "diag", "spherical")
    for kind in kinds:
        for sep, off in ((0.3, 0.0), (1.0, 0.0), (10.0, 0.0), (1.0, 1000.0)):
            label = f"sweep {kind} {n // 1000}k×16 K=16 ×{sep:g}" + (f" +{off:g}" if off else "")
            out.append(Case(label, 16, kind, _sweep(kind, sep, off, n)))
    return out


def full_covariances(params) -> np.ndarray:
    """(K, D, D) float64 covariances of any storage."""
    cov = np.asarray(params.covariances, np.float64)
    k, d = params.means.shape
    kind = params.covariance_type
    if kind == "tied" or cov.shape == (d, d):
        return np.broadcast_to(cov, (k, d, d))
    if cov.ndim == 2:  # diag
        return np.stack([np.diag(c) for c in cov])
    if cov.ndim == 1:  # spherical
        return cov[:, None, None] * np.eye(d)
    return cov


def errors(params, reference) -> tuple[float, float]:
    """(covariance error, mean error) of ``params`` against ``reference``."""
    c32, c64 = full_covariances(params), full_covariances(reference)
    m32 = np.asarray(params.means, np.float64)
    m64 = np.asarray(reference.means, np.float64)
    cov_err = mean_err = 0.0
    for a, b, u, v in zip(c32, c64, m32, m64, strict=True):
        w, q = np.linalg.eigh(b)
        root = (q / np.sqrt(w)) @ q.T
        cov_err = max(cov_err, float(np.linalg.norm(root @ a @ root - np.eye(len(a)), 2)))
        mean_err = max(mean_err, float(np.linalg.norm(root @ (u - v))))
    return cov_err, mean_err


def run_case(case: Case) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxem import gmm

    x = np.asarray(case.load(), np.float64)
    x32, x64 = jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float64)
    start = gmm.fit(
        jax.random.key(0), x32, case.k, covariance_type=case.covariance_type, init="kmeans",
        max_iter=3,
    ).params  # fmt: skip
    start64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), start)
    reference = gmm.fit_from(start64, x64, tol=0.0, max_iter=ITERATIONS, formulation="direct")
    covs = full_covariances(reference.params)
    eig = np.linalg.eigvalsh(covs)
    record = {
        "case": case.name, "n": x.shape[0], "d": x.shape[1], "k": case.k,
        "covariance_type": case.covariance_type, "kappa": float(np.max(eig[:, -1] / eig[:, 0])),
        "ll64": float(reference.log_likelihood),
    }  # fmt: skip
    # one EM step from the reference's parameters rounded to float32: the
    # pass's own error, apart from where 30 iterations of each route lead
    at = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), reference.params)
    at64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), at)
    step64 = gmm.fit_from(at64, x64, tol=0.0, max_iter=1, formulation="direct")
    for route in ROUTES:

        def run(iters, route=route, start=start):
            out = gmm.fit_from(start, x32, tol=0.0, max_iter=iters, formulation=route)
            return jax.block_until_ready(out)

        result = run(ITERATIONS)
        step = gmm.fit_from(at, x32, tol=0.0, max_iter=1, formulation=route)
        step_cov, step_mean = errors(step.params, step64.params)
        times = {}
        for iters in (2, ITERATIONS):
            run(iters)
            samples = []
            for _ in range(3):
                t = time.perf_counter()
                run(iters)
                samples.append(time.perf_counter() - t)
            times[iters] = float(np.median(samples))
        cov_err, mean_err = errors(result.params, reference.params)
        record[route] = {
            "step_cov_err": step_cov,
            "step_mean_err": step_mean,
            "step_ll_err": abs(float(step.history[0]) - float(step64.history[0])),
            "cov_err": cov_err,
            "mean_err": mean_err,
            "ll_err": abs(float(result.log_likelihood) - record["ll64"]),
            "ms_per_iter": 1e3 * (times[ITERATIONS] - times[2]) / (ITERATIONS - 2),
        }
    return record


def child(factor: float, quick: bool, words: str | None = None) -> list[dict]:
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxem._src.gmm import moments

    moments.CONDITIONING_FACTOR = factor
    out = []
    chosen = [w.strip() for w in words.split(",")] if words else None
    for case in cases(quick):
        if chosen and not any(w in case.name for w in chosen):
            continue
        progress(f"factor {factor:g}: {case.name}")
        record = run_case(case)
        record["factor"] = factor
        out.append(record)
    return out


def _cell(e: dict) -> str:
    return (
        f"{e['step_cov_err']:.1e} / {e['step_ll_err']:.0e} / {e['cov_err']:.1e} / "
        f"{e['ms_per_iter']:.2f}"
    )


def table(records: Sequence[dict], factors: Sequence[float]) -> str:
    rows = []
    by = {(r["case"], r["factor"]): r for r in records}
    for name in dict.fromkeys(r["case"] for r in records):
        first = by[(name, factors[0])]
        cells = [name, first["covariance_type"], f"{first['kappa']:.3g}"]
        cells += [_cell(first[route]) for route in ("direct", "moments")]
        cells += [_cell(by[(name, f)]["auto"]) for f in factors]
        rows.append(cells)
    header = ["data", "covariance", "κ max"]
    header += [f"float32 {r}" for r in ("direct", "moments")]
    header += [f"auto, factor {f:g}" for f in factors]
    return markdown_table(header, rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default="0,4", help="CONDITIONING_FACTOR values")
    parser.add_argument("--quick", action="store_true", help="20k rows, full sweep only")
    parser.add_argument(
        "--cases", default=None, help="comma-separated words: run the cases whose name has one"
    )
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child, args.quick, args.cases)), flush=True)
        return
    factors = [float(f) for f in args.factors.split(",")]
    records = []
    for factor in factors:
        command = [sys.executable, __file__, "--child", str(factor)]
        command += ["--quick"] if args.quick else []
        command += ["--cases", args.cases] if args.cases else []
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        sys.stderr.write(out.stderr[-2000:])
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
        records.extend(json.loads(line[len("RESULT ") :]))
    name = "float32_accuracy_quick" if args.quick else "float32_accuracy"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(records, indent=1) + "\n")
    body = "\n\n".join(
        [
            "Each cell: step cov err / step \\|Δll\\| / fit cov err / ms per iteration. "
            "step: one EM step from the float64 fit's parameters rounded to float32, by "
            "the route named in float32 against the same step in float64 (the pass's own "
            "error); cov err: `max_k ‖Σ₆₄^(-½) Σ₃₂ Σ₆₄^(-½) − I‖₂`; \\|Δll\\|: the "
            "log-likelihood the step reports. fit: "
            f"{ITERATIONS} EM iterations from one start (k-means, 3 iterations) in float32 "
            "against the same in float64 (where EM has not converged, the paths of two "
            "routes part by more than either pass's rounding); ms per iteration from fits "
            f"of 2 and {ITERATIONS} iterations (medians of 3). `auto` is the fits' default "
            "route, with the accuracy check's `CONDITIONING_FACTOR` as named (0: the check "
            "before its second part).",
            table(records, factors),
        ]
    )
    flags = (" --quick" if args.quick else "") + (f" --cases {args.cases}" if args.cases else "")
    write_markdown(
        args.out / f"{name}.md",
        "float32 against float64, by route",
        body,
        f"python experiments/float32_accuracy.py --factors {args.factors}{flags}",
    )
    print(table(records, factors))


if __name__ == "__main__":
    main()
