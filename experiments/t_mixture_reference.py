"""An independent NumPy reference of EM for Student-t mixtures (jaxem.mixtures.StudentT).

The algorithm of Peel & McLachlan (2000, "Robust mixture modelling using the t
distribution", Statistics and Computing 10, 339–348, section 5), written as
directly as possible in float64 NumPy with loops over components, independently
of jaxem's code:

* densities by ``scipy.stats.multivariate_t.logpdf`` (every scale matrix built
  as a full D × D matrix);
* E-step: responsibilities ``τ_ik``, weights ``u_ik = (ν_k + D) / (ν_k + δ_ik)``;
* M-step: ``π_k = Σ_i τ_ik / N``, ``μ_k = Σ τ u x / Σ τ u``, the scale matrix
  ``Σ τ u (x − μ)(x − μ)ᵀ / Σ τ`` (full; tied: summed over k and divided by N;
  diag: its diagonal; spherical: its trace / D) plus ``reg_covar`` on the
  diagonal, and ``ν_k`` the root of their equation (30),

      −ψ(ν/2) + log(ν/2) + 1 + Σ_i τ_ik (log u_ik − u_ik) / Σ_i τ_ik
          + ψ((ν_k^old + D)/2) − log((ν_k^old + D)/2) = 0,

  found by ``scipy.optimize.brentq`` on ``[0.1, 1000]`` and clipped to it
  (jaxem's bounds, ``DOF_MIN`` and ``DOF_MAX``), or ν fixed.

and, for ν estimated, ECME (Liu & Rubin 1995, "ML estimation of the t
distribution using EM and its extensions, ECM and ECME", Statistica Sinica 5;
the multicycle form of McLachlan & Peel 2000, section 7.8): after the M-step
above, an E-step at the new parameters gives ``τ_ik`` and the distances
``δ_ik``, and each ``ν_k`` maximises ``Σ_i τ_ik log t_ν(x_i | μ_k, Σ_k)``, the
root of Liu & Rubin's equation

      −ψ(ν/2) + log(ν/2) + 1 + Σ_i τ_ik (log u_ik(ν) − u_ik(ν)) / Σ_i τ_ik
          + ψ((ν + D)/2) − log((ν + D)/2) = 0,   u_ik(ν) = (ν + D) / (ν + δ_ik),

(the unknown ν now inside ``u``), again by ``brentq`` on the bounds. With one
component this is their ECME exactly.

Every run starts from parameters given here (stored in the JSON) and does
``N_ITER`` iterations (E-step, M-step); it records the mean log-likelihood of
the parameters before each M-step and the parameters after the last. Two data
sets: a synthetic 2-D mixture of three t₃ clusters with 5% uniform outliers, and
Old Faithful (``experiments/data/faithful.csv``). All four scale-matrix types,
ν estimated per component and ν fixed at 4.

Run:

    python experiments/t_mixture_reference.py

It writes ``experiments/results/t_mixture_reference.json``.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from scipy import optimize, special, stats

ROOT = pathlib.Path(__file__).resolve().parent
OUT = ROOT / "results" / "t_mixture_reference.json"

N_ITER = 40
REG_COVAR = 1e-6
DOF_BOUNDS = (0.1, 1000.0)
FIXED_DOF = 4.0
CONVERGED_TOL = 1e-12  # mean log-likelihood gain that ends a run to convergence
CONVERGED_MAX_ITER = 20_000
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def synthetic(seed: int = 0) -> np.ndarray:
    """Three t₃ clusters in 2-D (95 rows each) and 15 uniform outliers in [−25, 25]²."""
    rng = np.random.default_rng(seed)
    centers = np.array([[-6.0, 0.0], [4.0, 3.0], [0.0, 9.0]])
    scales = [np.array([[1.5, 0.6], [0.6, 1.0]]), np.diag([0.8, 2.0]), np.eye(2)]
    rows = []
    for c, s in zip(centers, scales, strict=True):
        z = rng.multivariate_normal(np.zeros(2), s, size=95)
        g = rng.gamma(1.5, 1 / 1.5, size=95)
        rows.append(c + z / np.sqrt(g)[:, None])
    rows.append(rng.uniform(-25, 25, size=(15, 2)))
    return np.concatenate(rows)


def faithful() -> np.ndarray:
    return np.loadtxt(ROOT / "data" / "faithful.csv", delimiter=",", skiprows=1)


def full_scales(covariances: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    """(K, D, D) scale matrices from the type's shape."""
    if covariance_type == "full":
        return covariances.copy()
    if covariance_type == "tied":
        return np.repeat(covariances[None], k, axis=0)
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in covariances])
    return np.stack([c * np.eye(d) for c in covariances])


def log_densities(x, means, scales, dof):
    """(N, K) log t_ν_k(x | μ_k, Σ_k) by scipy."""
    return np.stack(
        [
            stats.multivariate_t(loc=means[k], shape=scales[k], df=dof[k]).logpdf(x)
            for k in range(len(means))
        ],
        axis=1,
    )


def mahalanobis(x, mean, scale):
    diff = x - mean
    return np.einsum("nd,de,ne->n", diff, np.linalg.inv(scale), diff)


def solve_dof(constant: float) -> float:
    """Root of ``−ψ(ν/2) + log(ν/2) + 1 + constant = 0`` on DOF_BOUNDS (clipped)."""
    return clipped_root(lambda nu: -special.digamma(nu / 2) + np.log(nu / 2) + 1 + constant)


def clipped_root(f) -> float:
    """The root of ``f`` (positive below it) in DOF_BOUNDS by ``brentq``, or the
    bound beyond which it lies."""
    lo, hi = DOF_BOUNDS
    if f(lo) <= 0:
        return lo
    if f(hi) >= 0:
        return hi
    return optimize.brentq(f, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500)


def solve_ecme_dof(tau: np.ndarray, delta: np.ndarray, d: int) -> float:
    """ECME's ν of one component: the root of Liu & Rubin's equation in ν with
    the responsibilities ``tau`` and distances ``delta`` fixed (clipped)."""

    def f(nu):
        u = (nu + d) / (nu + delta)
        mean = tau @ (np.log(u) - u) / tau.sum()
        a = (nu + d) / 2
        return -special.digamma(nu / 2) + np.log(nu / 2) + 1 + mean + special.digamma(a) - np.log(a)

    return clipped_root(f)


def ecme_dof(x, weights, means, covariances, dof, covariance_type):
    """The ECME cycle: an E-step at the new parameters, then each ν_k."""
    k, d = means.shape
    scales = full_scales(covariances, covariance_type, k, d)
    log_comp = log_densities(x, means, scales, dof) + np.log(weights)
    tau = np.exp(log_comp - special.logsumexp(log_comp, axis=1)[:, None])
    return np.array(
        [solve_ecme_dof(tau[:, j], mahalanobis(x, means[j], scales[j]), d) for j in range(k)]
    )


def em(x, start, covariance_type, estimate_dof, n_iter=N_ITER, ecme=False, tol=None):
    """``n_iter`` iterations (or, with ``tol``, until the mean log-likelihood
    gains less than ``tol``), EM or, with ``ecme``, ECME."""
    n, d = x.shape
    weights = np.array(start["weights"], float)
    means = np.array(start["means"], float)
    covariances = np.array(start["covariances"], float)
    dof = np.array(start["dof"], float)
    k = len(weights)
    history = []
    for _ in range(n_iter):
        scales = full_scales(covariances, covariance_type, k, d)
        log_comp = log_densities(x, means, scales, dof) + np.log(weights)
        log_norm = special.logsumexp(log_comp, axis=1)
        history.append(float(np.mean(log_norm)))
        if tol is not None and len(history) > 1 and history[-1] - history[-2] < tol:
            break
        tau = np.exp(log_comp - log_norm[:, None])
        u = np.stack(
            [(dof[j] + d) / (dof[j] + mahalanobis(x, means[j], scales[j])) for j in range(k)],
            axis=1,
        )
        new_means = np.empty_like(means)
        scatter = np.empty((k, d, d))
        nk = tau.sum(axis=0)
        for j in range(k):
            tu = tau[:, j] * u[:, j]
            new_means[j] = tu @ x / tu.sum()
            diff = x - new_means[j]
            scatter[j] = (diff * tu[:, None]).T @ diff
        if covariance_type == "full":
            covariances = scatter / nk[:, None, None] + REG_COVAR * np.eye(d)
        elif covariance_type == "tied":
            covariances = scatter.sum(axis=0) / n + REG_COVAR * np.eye(d)
        elif covariance_type == "diag":
            covariances = np.stack([np.diag(s) for s in scatter]) / nk[:, None] + REG_COVAR
        else:
            covariances = np.array([np.trace(s) for s in scatter]) / (nk * d) + REG_COVAR
        if estimate_dof:
            new_dof = np.empty(k)
            for j in range(k):
                mean_log = tau[:, j] @ (np.log(u[:, j]) - u[:, j]) / nk[j]
                a = (dof[j] + d) / 2
                new_dof[j] = solve_dof(mean_log + special.digamma(a) - np.log(a))
            dof = new_dof
        weights = nk / n
        means = new_means
        if ecme and estimate_dof:
            dof = ecme_dof(x, weights, means, covariances, dof, covariance_type)
    scales = full_scales(covariances, covariance_type, k, d)
    final_ll = float(
        np.mean(special.logsumexp(log_densities(x, means, scales, dof) + np.log(weights), axis=1))
    )
    return {
        "history": history,
        "log_likelihood": final_ll,
        "params": {
            "weights": weights.tolist(),
            "means": means.tolist(),
            "covariances": covariances.tolist(),
            "dof": dof.tolist(),
        },
    }


def start_for(x, rows, covariance_type, dof):
    """Equal weights, means at the given rows, the data's covariance in the type's shape."""
    k = len(rows)
    cov = np.cov(x.T, bias=True)
    shape = {
        "full": np.repeat(cov[None], k, axis=0),
        "tied": cov,
        "diag": np.repeat(np.diag(cov)[None], k, axis=0),
        "spherical": np.full(k, np.trace(cov) / x.shape[1]),
    }[covariance_type]
    return {
        "weights": [1.0 / k] * k,
        "means": x[list(rows)].tolist(),
        "covariances": shape.tolist(),
        "dof": list(dof),
    }


DATASETS = {
    # rows 0, 100, 200: one in each t cluster; ν started at 5, 10, 20
    "synthetic": (synthetic, (0, 100, 200), (5.0, 10.0, 20.0)),
    # rows 1 (a short eruption) and 0 (a long one)
    "faithful": (faithful, (1, 0), (10.0, 10.0)),
}


def main() -> None:
    out = {
        "description": __doc__.split("\n\n")[0],
        "n_iter": N_ITER,
        "reg_covar": REG_COVAR,
        "dof_bounds": list(DOF_BOUNDS),
        "fixed_dof": FIXED_DOF,
        "converged_tol": CONVERGED_TOL,
        "converged_max_iter": CONVERGED_MAX_ITER,
        "datasets": {},
    }
    for name, (load, rows, dof0) in DATASETS.items():
        x = load()
        runs = {}
        for covariance_type in COVARIANCE_TYPES:
            for mode in ("estimate", "ecme", "fixed"):
                dof = (FIXED_DOF,) * len(rows) if mode == "fixed" else dof0
                start = start_for(x, rows, covariance_type, dof)
                run = em(
                    x, start, covariance_type, estimate_dof=mode != "fixed", ecme=mode == "ecme"
                )
                run["start"] = start
                runs[f"{covariance_type}/{mode}"] = run
                h = run["history"]
                print(
                    f"{name:10s} {covariance_type:9s} {mode:8s} ll {h[0]:.6f} -> "
                    f"{run['log_likelihood']:.10f}  dof {np.round(run['params']['dof'], 3)}"
                )
                assert np.all(np.diff(h) > -1e-12), "EM decreased the log-likelihood"
        # to convergence, full scale matrices: where EM and ECME end, and after
        # how many iterations (EM's ν creeps; ECME's is a maximum at every step)
        converged = {}
        for method in ("em", "ecme"):
            start = start_for(x, rows, "full", dof0)
            run = em(x, start, "full", True, n_iter=CONVERGED_MAX_ITER,
                     ecme=method == "ecme", tol=CONVERGED_TOL)  # fmt: skip
            converged[method] = {
                "n_iter": len(run["history"]),
                "log_likelihood": run["log_likelihood"],
                "params": run["params"],
            }
            print(
                f"{name:10s} full      {method:8s} converged after {len(run['history'])} "
                f"iterations: ll {run['log_likelihood']:.12f}  dof "
                f"{np.round(run['params']['dof'], 4)}"
            )
        entry = {"n_samples": int(x.shape[0]), "runs": runs, "converged": converged}
        if name == "synthetic":  # the data themselves (no dependence on NumPy's generator)
            entry["x"] = x.tolist()
        out["datasets"][name] = entry
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    main()
