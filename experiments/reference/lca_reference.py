"""Latent class analysis references: stepmix's categorical mixture, many restarts.

R's poLCA has no Debian package, so the references come from stepmix (Morin et
al. 2023, an independent NumPy implementation of EM for latent class models:
``StepMix(measurement="categorical")``), with many random restarts and a tight
stopping rule, and every stored log-likelihood is re-evaluated here in NumPy
from the stored parameters.

Data (written to ``experiments/data/`` by this script, integer codes from 0,
weighted files with the frequency weight in the first column ``Freq``):

* ``anes96_lca.csv``: statsmodels' ``anes96`` (1996 American National Election
  Study, 944 respondents): ``selfLR``, ``ClinLR``, ``DoleLR`` (7-point
  liberal–conservative placements of oneself, Clinton and Dole), ``PID``
  (7-point party identification), ``educ`` (7 levels) and ``vote`` (Clinton 0 /
  Dole 1): C = (7, 7, 7, 7, 7, 2).
* ``housing.csv``: R's ``MASS::housing`` (Copenhagen housing survey, 1681
  residents in 72 cells): ``Sat`` (3), ``Infl`` (3), ``Type`` (4), ``Cont`` (2),
  weighted by ``Freq`` (exported with ``Rscript``).

(The binary whiskey items of ``whiskey.csv``, as 2-category features, need no
stepmix reference: a latent class model of binary items is the Bernoulli
mixture, for which ``flexmix_reference.json`` has R's values.)

For each data set and K = 1..5: ``StepMix(n_components=K,
measurement="categorical", n_init=N_INIT, max_iter=MAX_ITER, abs_tol=1e-13,
rel_tol=0, random_state=K)`` (stepmix stops a run when the mean log-likelihood
changes by less than ``abs_tol``; it clips probabilities to [1e-15, 1 − 1e-15]).

Output ``experiments/results/lca_reference.json`` (each data set is merged in
when its fits end, so the sets can run as parallel processes): ``{meta: {stepmix_version,
n_init, max_iter, abs_tol, notes}, datasets: {name: {file, columns, weights,
n_categories, n, sum_weights, fits: {K: {loglik (stepmix's best, total over
the weighted rows), loglik_numpy (re-evaluated here from weights and probs),
restart_logliks [N_INIT] (total), n_iter, converged, weights [K], probs [K][Σ
C_j] (jaxem's layout: one block of C_j columns per feature)}}}}}``.

Run from the repository root (needs ``pip install stepmix statsmodels`` and, for
housing, R with its recommended package MASS; stepmix's EM is plain NumPy, about
25 min for anes96 and as long for housing on a busy 2-core machine):

    python experiments/reference/lca_reference.py [anes96_lca] [housing]
        [--max-k K] [--n-init R]

``--max-k`` and ``--n-init`` (defaults 5 and 50) shorten a run; each data set
records the ``ks`` and ``n_init`` it was computed with. The committed anes96
entry was computed with ``--max-k 3 --n-init 20`` (a few minutes).
"""

from __future__ import annotations

import fcntl
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "experiments" / "data"
OUT = ROOT / "experiments" / "results" / "lca_reference.json"
KS = range(1, 6)
N_INIT = 50
MAX_ITER = 20_000
ABS_TOL = 1e-13

ANES_COLUMNS = ("selfLR", "ClinLR", "DoleLR", "PID", "educ", "vote")


def export_anes96() -> None:
    import statsmodels.api as sm

    d = sm.datasets.anes96.load_pandas().data
    codes = np.stack([d[c].to_numpy() - d[c].min() for c in ANES_COLUMNS], axis=1).astype(int)
    header = ",".join(f'"{c}"' for c in ANES_COLUMNS)
    np.savetxt(DATA / "anes96_lca.csv", codes, fmt="%d", delimiter=",", header=header, comments="")


HOUSING_R = """
data(housing, package = "MASS")
df <- data.frame(Freq = housing$Freq, Sat = as.integer(housing$Sat) - 1L,
                 Infl = as.integer(housing$Infl) - 1L, Type = as.integer(housing$Type) - 1L,
                 Cont = as.integer(housing$Cont) - 1L)
lines <- c(paste0('"', names(df), '"', collapse = ","),
           apply(as.matrix(df), 1, function(r) paste(sprintf("%d", r), collapse = ",")))
writeLines(lines, "experiments/data/housing.csv")
"""


def export_housing() -> None:
    subprocess.run(["Rscript", "-e", HOUSING_R], cwd=ROOT, check=True)


def read(name: str, weighted: bool):
    path = DATA / f"{name}.csv"
    with open(path) as f:
        columns = [c.strip('"') for c in f.readline().strip().split(",")]
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    if weighted:
        return table[:, 1:].astype(int), table[:, 0], columns[1:]
    return table.astype(int), None, columns


def log_likelihood(codes, w, weights, probs, n_categories) -> float:
    """Σ_n w_n log Σ_k π_k Π_j p_kj[x_nj], in NumPy (the check of the stored values)."""
    offsets = np.cumsum((0, *n_categories[:-1]))
    log_p = np.log(probs)  # (K, Σ C)
    comp = np.log(weights)[None, :] + sum(
        log_p[:, offsets[j] + codes[:, j]].T for j in range(codes.shape[1])
    )
    m = comp.max(axis=1, keepdims=True)
    ll = m[:, 0] + np.log(np.exp(comp - m).sum(axis=1))
    return float(np.sum(ll if w is None else w * ll))


def fit_stepmix(codes, w, k: int, n_categories, n_init: int = N_INIT):
    from stepmix.stepmix import StepMix

    model = StepMix(
        n_components=k,
        measurement="categorical",
        n_init=n_init,
        max_iter=MAX_ITER,
        abs_tol=ABS_TOL,
        rel_tol=0.0,
        random_state=k,
        progress_bar=0,
        verbose=0,
    )
    model.fit(codes, sample_weight=w)
    total = float(np.sum(w)) if w is not None else float(codes.shape[0])
    params = model.get_parameters()
    weights = np.asarray(params["weights"], float)
    pis = np.asarray(params["measurement"]["pis"], float)  # (K, D * L), L = max C_j
    n_outcomes = pis.shape[1] // codes.shape[1]
    blocks = pis.reshape(k, codes.shape[1], n_outcomes)
    probs = np.concatenate([blocks[:, j, :c] for j, c in enumerate(n_categories)], axis=1)
    return {
        "loglik": float(model.lower_bound_) * total,
        "loglik_numpy": log_likelihood(codes, w, weights, probs, n_categories),
        "restart_logliks": [float(v) * total for v in model.lower_bound_buffer_],
        "n_iter": int(model.n_iter_),
        "converged": bool(model.converged_),
        "weights": weights.tolist(),
        "probs": probs.tolist(),
    }


def main(argv: list[str]) -> None:
    import argparse

    import stepmix

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="data sets (default: all)")
    parser.add_argument("--max-k", type=int, default=max(KS), help="K = 1..max_k")
    parser.add_argument("--n-init", type=int, default=N_INIT, help="stepmix restarts per K")
    args = parser.parse_args(argv)
    names, ks = args.names, range(1, args.max_k + 1)

    if not (DATA / "anes96_lca.csv").exists():
        export_anes96()
    if not (DATA / "housing.csv").exists():
        export_housing()
    sets = {"anes96_lca": False, "housing": True}
    for name in names or sets:
        weighted = sets[name]
        codes, w, columns = read(name, weighted)
        n_categories = [int(c) for c in codes.max(axis=0) + 1]
        entry = {
            "file": f"experiments/data/{name}.csv",
            "columns": columns,
            "weights": "Freq" if weighted else None,
            "n_categories": n_categories,
            "n": int(codes.shape[0]),
            "sum_weights": float(np.sum(w)) if weighted else float(codes.shape[0]),
            "ks": list(ks),
            "n_init": args.n_init,
            "fits": {},
        }
        for k in ks:
            started = time.perf_counter()
            entry["fits"][str(k)] = fit = fit_stepmix(codes, w, k, n_categories, args.n_init)
            print(
                f"{name} K={k}: loglik {fit['loglik']:.6f} (numpy {fit['loglik_numpy']:.6f}), "
                f"{fit['n_iter']} iterations, {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        # one data set at a time, merged into the file (sets can run in parallel processes)
        with open(OUT, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read()
            out = json.loads(text) if text.strip() else {"datasets": {}}
            out["meta"] = {
                "stepmix_version": stepmix.__version__,
                "n_init": N_INIT,  # the default; a data set's own n_init where it has one
                "max_iter": MAX_ITER,
                "abs_tol": ABS_TOL,
                "notes": (
                    "loglik: stepmix's best mean log-likelihood times the total weight "
                    "(at its last E-step); loglik_numpy: re-evaluated from the stored "
                    "weights and probs. probs are [K][sum C_j], one block per feature."
                ),
            }
            out["datasets"][name] = entry
            f.seek(0)
            f.truncate()
            f.write(json.dumps(out, indent=1) + "\n")
        print(f"wrote {name} to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
