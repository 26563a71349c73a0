"""R mclust's fits, recomputed here from its published definitions (no R needed).

``Mclust(x, G, modelNames)`` fits every model from one start per K: the
partition into K clusters of a model-based hierarchical agglomeration (``hc``)
of the whole data set, followed by EM until the relative change of the
log-likelihood is at most 1e-5. This script reproduces that procedure in
float64 numpy, independently of jaxem, so that jaxem's default fit can be
compared with the values mclust reports (issue #7):

* the agglomeration of ``hcVVV`` (Fraley 1998, *Algorithms for model-based
  Gaussian hierarchical clustering*, SIAM J. Sci. Comput. 20, 270–281; Banfield
  and Raftery 1993): start from singletons and merge, at every step, the pair of
  clusters whose merge increases ``Σ_k T(n_k, W_k)`` the least, where W_k is a
  cluster's scatter matrix (sum of squared deviations from its mean, p × p)
  and, with ``t = tr W``, the regularised VVV term is

      T(n, W) = n log(β (t + α) / n)                    if n ≤ p,
      T(n, W) = n log(det(W / n) + β (t + α) / n)       otherwise,

  (singletons: ``log(αβ)``), ``β = 1`` and ``α = tr(W_total) / (n p)``
  (mclust's ``alpha * traceW(data / sqrt(n p))`` with ``alpha = 1``);
* the data the agglomeration sees: mclust ≥ 5.4 (``mclust.options(hcUse =
  "SVD")``, the default since 2018) scales each variable to unit variance and
  rotates to the principal axes, ``Z = X_s V D^{-1/2}`` with ``X_s = U D Vᵀ``;
  earlier versions (``hcUse = "VARS"``) use the raw variables;
* ``hclass``: the partition left after n − K merges, one-hot, then ``me``: an
  M-step on it and EM iterations (M-step, E-step) until
  ``|ℓ_i − ℓ_{i−1}| / (1 + |ℓ_i|) ≤ 1e-5`` (``emControl()$tol[1]``); the reported
  log-likelihood is that of the last E-step. K = 1 is the closed-form fit.
* the four models: VII (spherical, one variance per component: jaxem's
  ``"spherical"``), VVI (``"diag"``), EEE (``"tied"``) and VVV (``"full"``),
  without regularisation.

Validated against the values mclust itself reports for Old Faithful (in
``VALIDATION`` below, with their sources). Run:

    python experiments/mclust_reference.py

It prints the tables and writes ``experiments/results/mclust_reference.json``
(Old Faithful K = 1..6; iris and wine K = 1..4; both ``hcUse`` variants).
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
from datasets import load_faithful, load_iris, load_wine

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "mclust_reference.json"
MODELS = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}
TOL = 1e-5  # mclust's emControl()$tol[1]
MAX_ITER = 100_000

# Log-likelihoods mclust printed for Old Faithful, with the hc data (``use``) of
# the mclust version that printed them; main() checks that they are reproduced.
VALIDATION = [
    # mclust's vignette "A quick tour of mclust" (mclust ≥ 5.4), summary(Mclust(faithful)):
    {"model": "EEE", "k": 3, "use": "SVD", "loglik": -1126.326, "source": "mclust vignette"},
    # issue #7:
    {"model": "VVV", "k": 4, "use": "SVD", "loglik": -1111.28, "source": "issue #7"},
    # summary(Mclust(faithful)) in tutorials written with mclust < 5.4:
    {"model": "EEE", "k": 3, "use": "VARS", "loglik": -1126.361, "source": "mclust < 5.4"},
    # BIC −2320.207 in mclust 5.2.3's summary(mclustBIC(faithful, G = 1:5));
    # ll = (BIC + 14 log 272) / 2:
    {"model": "EEE", "k": 4, "use": "VARS", "loglik": -1120.863, "source": "mclust 5.2.3"},
]


def svd_transform(x: np.ndarray) -> np.ndarray:
    """mclust's ``hcUse = "SVD"``: scaled to unit (n − 1) variance, then ``U D^{1/2}``."""
    z = (x - x.mean(0)) / x.std(0, ddof=1)
    _, d, vt = np.linalg.svd(z, full_matrices=False)
    return z @ vt.T / np.sqrt(d)


def _term(n, scatter, alpha, beta):
    """The regularised VVV classification log-likelihood term T(n, W), batched."""
    p = scatter.shape[-1]
    trace = np.trace(scatter, axis1=-2, axis2=-1)
    reg = beta * (trace + alpha) / n
    det = np.linalg.det(scatter / n[..., None, None])
    small = n <= p
    return n * np.log(np.where(small, reg, np.maximum(det, 0.0) + reg))


def _alpha(z: np.ndarray, alpha: float) -> float:
    """mclust's ``alpha * traceW(z / sqrt(n p))``, at least machine epsilon."""
    n, p = z.shape
    y = z / math.sqrt(n * p)
    return max(alpha * float(np.sum((y - y.sum(0) / n) ** 2)), np.finfo(float).eps)


def hc_vvv(z: np.ndarray, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """The n − 1 merges ``(i, j)`` of mclust's VVV agglomeration of the rows of z.

    Cluster ``j`` joins cluster ``i``; clusters are named by a row they contain.

    Equal merge costs are common (Old Faithful's waiting times are whole
    minutes, so many pairs of points are equally far apart), and which of them
    merges first changes the tree and mclust's fits (EEE K=4 on Old Faithful:
    −1120.863 or −1134.488 by the order of the rows alone). mclust's order is
    part of its definition, so it is kept: the clusters sit in slots
    ``0..g−1``; the pairs are scanned by the larger slot, then the smaller, and
    the *last* pair of least cost merges; the merged cluster keeps the smaller
    slot and the cluster in the last slot moves into the freed one. The cost of
    a pair of single points is computed with mclust's arithmetic,
    ``2 log(β (‖(x_i − x_j)/√2‖² + α) / 2) − 2 log(αβ)``, so that its ties are
    the same.
    """
    n = z.shape[0]
    alpha = _alpha(z, alpha)
    single = math.log(alpha * beta)
    half = math.sqrt(0.5)
    count = np.ones(n)
    total = z.copy()
    outer = z[:, :, None] * z[:, None, :]
    term = np.full(n, single)

    def costs(i, js):
        c = count[i] + count[js]
        s = total[i] + total[js]
        w = outer[i] + outer[js] - s[:, :, None] * s[:, None, :] / c[:, None, None]
        out = _term(c, w, alpha, beta) - term[i] - term[js]
        pairs = np.flatnonzero((count[i] == 1) & (count[js] == 1))
        for r in pairs:
            v = (z[i] - z[js[r]]) * half
            trace = 0.0
            for vd in v:  # in order, as BLAS ddot on p ≤ 4 values
                trace = trace + vd * vd
            out[r] = 2.0 * math.log(beta * (trace + alpha) / 2.0) - (single + single)
        return out

    cost = np.full((n, n), np.inf)
    for i in range(n - 1):
        js = np.arange(i + 1, n)
        cost[i, js] = cost[js, i] = costs(i, js)
    slots = list(range(n))
    merges = []
    for _ in range(n - 1):
        g = len(slots)
        ids = np.array(slots)
        lo, hi = np.triu_indices(g, 1)
        pair_cost = cost[ids[lo], ids[hi]]
        tied = np.flatnonzero(pair_cost == pair_cost.min())
        last = tied[np.lexsort((lo[tied], hi[tied]))[-1]]
        a, b = lo[last], hi[last]
        i, j = slots[a], slots[b]
        count[i] += count[j]
        total[i] += total[j]
        outer[i] += outer[j]
        w = outer[i] - np.outer(total[i], total[i]) / count[i]
        term[i] = _term(count[i : i + 1], w[None], alpha, beta)[0]
        merges.append((i, j))
        slots[b] = slots[-1]
        slots.pop()
        cost[j, :] = cost[:, j] = np.inf
        others = np.array([s for s in slots if s != i], dtype=int)
        if others.size:
            cost[i, others] = cost[others, i] = costs(i, others)
    return np.array(merges)


def hclass(merges: np.ndarray, k: int) -> np.ndarray:
    """Labels 0..k−1 of the partition left after the first n − k merges."""
    n = len(merges) + 1
    parent = np.arange(n)
    for i, j in merges[: n - k]:
        parent[parent == j] = i
    return np.unique(parent, return_inverse=True)[1]


def m_step(x, resp, model):
    n, p = x.shape
    nk = resp.sum(0)
    means = resp.T @ x / nk[:, None]
    diff = x[None, :, :] - means[:, None, :]  # (K, n, p)
    scatter = np.einsum("kn,kni,knj->kij", resp.T, diff, diff)
    if model == "VVV":
        cov = scatter / nk[:, None, None]
    elif model == "EEE":
        cov = np.broadcast_to(scatter.sum(0) / n, scatter.shape)
    elif model == "VVI":
        cov = np.stack([np.diag(np.diag(s)) for s in scatter]) / nk[:, None, None]
    else:  # VII
        var = np.trace(scatter, axis1=1, axis2=2) / (p * nk)
        cov = var[:, None, None] * np.eye(p)
    return nk / n, means, cov


def log_likelihood(x, weights, means, cov):
    p = x.shape[1]
    chol = np.linalg.cholesky(cov)
    diff = x[None, :, :] - means[:, None, :]
    sol = np.stack([np.linalg.solve(c, d.T) for c, d in zip(chol, diff, strict=True)])  # (K, p, n)
    logdet = 2 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    logp = -0.5 * (np.sum(sol**2, axis=1) + logdet[:, None] + p * math.log(2 * math.pi))
    joint = logp.T + np.log(weights)
    top = joint.max(1, keepdims=True)
    norm = top[:, 0] + np.log(np.exp(joint - top).sum(1))
    return norm.sum(), np.exp(joint - norm[:, None])


def me(x, resp, model, tol=TOL, max_iter=MAX_ITER):
    """mclust's ``me``: M-step, E-step until the relative change is ≤ tol.

    Returns ``(log-likelihood, iterations)``; the log-likelihood is NaN when a
    covariance becomes singular (mclust reports NA).
    """
    previous = np.inf
    for iteration in range(1, max_iter + 1):
        params = m_step(x, resp, model)
        try:
            ll, resp = log_likelihood(x, *params)
        except np.linalg.LinAlgError:  # a singular covariance: mclust reports NA
            return math.nan, iteration
        if abs(ll - previous) / (1 + abs(ll)) <= tol:
            break
        previous = ll
    return ll, iteration


def mclust(x: np.ndarray, ks, use: str = "SVD") -> dict:
    """{model: {k: log-likelihood}} of mclust's procedure, hc data ``use``."""
    z = svd_transform(x) if use == "SVD" else x
    merges = hc_vvv(z)
    out = {m: {} for m in MODELS}
    for k in ks:
        resp = np.eye(k)[hclass(merges, k)]
        for model in MODELS:
            out[model][k] = me(x, resp, model)[0]
    return out


def main() -> None:
    data = {
        "faithful": (load_faithful(), range(1, 7)),
        "iris": (load_iris()[0], range(1, 5)),
        "wine": (load_wine()[0], range(1, 5)),
    }
    table = {}
    for name, (x, ks) in data.items():
        for use in ("SVD", "VARS"):
            values = mclust(x, ks, use)
            table.setdefault(name, {})[use] = {
                MODELS[m]: {str(k): round(v, 4) for k, v in per_k.items()}
                for m, per_k in values.items()
            }
            print(f"\n{name}, hcUse={use}")
            print("model " + "".join(f"{'K=' + str(k):>12}" for k in ks))
            for m, per_k in values.items():
                print(f"{m:5} " + "".join(f"{per_k[k]:12.3f}" for k in ks))
    print("\nvalidation against values mclust printed (Old Faithful):")
    for row in VALIDATION:
        got = table["faithful"][row["use"]][MODELS[row["model"]]][str(row["k"])]
        digits = len(str(row["loglik"]).split(".")[1])
        ok = round(got, digits) == row["loglik"]
        print(
            f"  {row['model']} K={row['k']} hcUse={row['use']}: mclust {row['loglik']} "
            f"({row['source']}), here {got:.4f}: {'reproduced' if ok else 'NOT REPRODUCED'}"
        )
    RESULTS.write_text(json.dumps({"validation": VALIDATION, "loglik": table}, indent=1) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
