"""What happens when...: scikit-learn and jaxem on degenerate data, side by side.

Fits ``GaussianMixture`` and ``jaxem.gmm.fit`` (full covariances, K = 3 unless
stated, k-means initialisation, float64) on each case and reports what each
returns: an exception, NaN, or finite parameters (with the mean log-likelihood).
Writes ``experiments/results/robustness.md``.

    python experiments/robustness_table.py
"""

from __future__ import annotations

import pathlib
import warnings

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from jaxem import gmm  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results" / "robustness.md"


def cases() -> dict[str, tuple[np.ndarray, int, float]]:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 3))
    return {
        "all points identical": (np.full((60, 3), 2.5), 3, 1e-6),
        "all points identical, reg_covar=0": (np.full((60, 3), 2.5), 3, 0.0),
        "2 distinct points, K=3": (np.repeat(np.eye(3)[:2], 30, axis=0), 3, 1e-6),
        "constant feature, reg_covar=0": (np.c_[base[:, :2], np.full(60, 7.0)], 3, 0.0),
        "duplicated feature, reg_covar=0": (np.c_[base[:, :2], base[:, :1]], 3, 0.0),
        "one sample, K=1": (base[:1], 1, 1e-6),
        "K = N = 5, reg_covar=0": (base[:5], 5, 0.0),
        "scale 1e-10": (base * 1e-10, 3, 1e-6),
        "scale 1e10": (base * 1e10, 3, 1e-6),
        "offset 1e6 (float32 data)": ((base + 1e6).astype(np.float32), 3, 1e-6),
        "reg_covar=1e3": (base, 3, 1e3),
    }


def sklearn_outcome(x, k, reg) -> str:
    from sklearn.mixture import GaussianMixture

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = GaussianMixture(k, reg_covar=reg, random_state=0).fit(x)
        finite = all(np.all(np.isfinite(a)) for a in (est.weights_, est.means_, est.covariances_))
        note = "; warns: " + type(caught[0].message).__name__ if caught else ""
        if not finite:
            return "NaN parameters" + note
        return f"finite, ll {est.score(x):.4g}, converged={est.converged_}{note}"
    except Exception as err:
        return f"raises {type(err).__name__}: {str(err).splitlines()[0][:70]}"


def jaxem_outcome(x, k, reg) -> str:
    try:
        r = gmm.fit(jax.random.key(0), x, k, reg_covar=reg)
        finite = all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(r.params))
        if not finite:
            return "NaN parameters"
        active = int(np.sum(np.asarray(r.params.weights) > 0))
        inactive = f", {k - active} inactive" if active < k else ""
        return f"finite, ll {float(r.log_likelihood):.4g}, converged={bool(r.converged)}{inactive}"
    except Exception as err:
        return f"raises {type(err).__name__}: {str(err).splitlines()[0][:70]}"


def main() -> None:
    rows = ["| case | scikit-learn | jaxem |", "|---|---|---|"]
    for name, (x, k, reg) in cases().items():
        rows.append(f"| {name} | {sklearn_outcome(x, k, reg)} | {jaxem_outcome(x, k, reg)} |")
        print(rows[-1], flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(rows) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
