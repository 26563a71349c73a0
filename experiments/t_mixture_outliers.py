"""Student-t against Gaussian mixtures on Old Faithful with uniform outliers (issue #21).

Peel & McLachlan (2000) propose mixtures of t distributions because a single
outlier can pull a Gaussian component's mean and inflate its covariance, while a
t component down-weights it (its E-step weight ``u = (ν + D) / (ν + δ)`` falls with
the Mahalanobis distance δ). Here: Old Faithful's 272 eruptions (2-D) plus the first
0, 25, 50 or 100 of the 100 uniform background points of mclust's own noise example
(``experiments/data/faithful_noise.csv``: the faithful rows, then the noise rows).
For each contamination, K = 2 full-covariance mixtures, Gaussian and Student-t (ν per
component estimated), ``n_init=10``; compared with the Gaussian fit of the clean data:

* the classification of the 272 clean points (agreement up to relabelling);
* how far the component means moved (in units of the clean fit's standard deviations);
* the mean log-likelihood of the clean points under the contaminated fit.

Writes ``results/t_mixture_outliers.md`` and ``results/t_mixture_outliers.png``.

    python experiments/t_mixture_outliers.py
"""

from __future__ import annotations

import itertools
import pathlib
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxem  # noqa: E402
from jaxem import gmm, mixtures  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent
DATA = ROOT / "data"
RESULTS = ROOT / "results"
N_OUTLIERS = (0, 25, 50, 100)
K = 2


def load():
    clean = np.loadtxt(DATA / "faithful.csv", delimiter=",", skiprows=1)
    noisy = np.loadtxt(DATA / "faithful_noise.csv", delimiter=",", skiprows=1)
    if not np.allclose(noisy[: len(clean)], clean):
        raise SystemExit("faithful_noise.csv does not start with faithful.csv's rows")
    return clean, noisy[len(clean) :]


def agreement(a, b):
    """Fraction of equal labels, maximised over relabellings of ``b``."""
    return max(np.mean(a == np.asarray(p)[b]) for p in itertools.permutations(range(K)))


def matched_shift(means, reference, scale):
    """Largest distance (in ``scale`` units) of matched component means."""
    best = np.inf
    for p in itertools.permutations(range(K)):
        best = min(best, np.max(np.linalg.norm((means[list(p)] - reference) / scale, axis=1)))
    return best


def main() -> None:
    clean, outliers = load()
    scale = clean.std(axis=0)
    key = jax.random.key(0)
    gaussian = gmm.family("full")
    student = mixtures.StudentT("full")
    ref = jaxem.fit(gaussian, key, clean, K, n_init=10, tol=1e-8)
    ref_labels = np.asarray(gaussian.predict(ref.params, clean))
    ref_means = np.asarray(ref.params.means)
    rows, fits = [], {}
    for n_out in N_OUTLIERS:
        x = np.concatenate([clean, outliers[:n_out]])
        for name, family in (("Gaussian", gaussian), ("Student-t", student)):
            start = time.perf_counter()
            fit = jaxem.fit(family, key, x, K, n_init=10, tol=1e-8)
            seconds = time.perf_counter() - start
            labels = np.asarray(family.predict(fit.params, clean))
            clean_ll = float(np.mean(family.log_prob(fit.params, clean)))
            dof = (
                ", ".join(f"{v:.1f}" for v in np.asarray(fit.params.dof))
                if name == "Student-t"
                else "∞"
            )
            rows.append(
                (
                    n_out,
                    name,
                    f"{agreement(ref_labels, labels):.3f}",
                    f"{matched_shift(np.asarray(fit.params.means), ref_means, scale):.3f}",
                    f"{clean_ll:.4f}",
                    dof,
                    f"{seconds:.1f}",
                )
            )
            fits[(n_out, name)] = (fit, family, x)
            print(rows[-1], flush=True)
    write(rows, fits, float(np.mean(gaussian.log_prob(ref.params, clean))))


def write(rows, fits, ref_ll) -> None:
    header = (
        "| outliers | mixture | agreement with the clean fit (272 clean points) "
        "| largest mean shift (clean SDs) | clean points' mean log-lik | ν | s (incl. compile) |"
    )
    lines = [
        "# Student-t against Gaussian mixtures with outliers: Old Faithful + uniform points",
        "",
        "`python experiments/t_mixture_outliers.py`: K = 2, full covariances/scales, "
        "`n_init=10`, `tol=1e-8`, float64; outliers are the first n of the 100 uniform "
        "background points of mclust's noise example (`data/faithful_noise.csv`). "
        f"The clean Gaussian fit's clean-point mean log-likelihood is {ref_ll:.4f}.",
        "",
        header,
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(map(str, r)) + " |" for r in rows),
        "",
    ]
    (RESULTS / "t_mixture_outliers.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    n_out = max(N_OUTLIERS)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, sharey=True)
    for ax, name in zip(axes, ("Gaussian", "Student-t"), strict=True):
        fit, family, x = fits[(n_out, name)]
        labels = np.asarray(family.predict(fit.params, x))
        ax.scatter(x[:272, 0], x[:272, 1], c=labels[:272], cmap="coolwarm", s=10)
        ax.scatter(x[272:, 0], x[272:, 1], c=labels[272:], cmap="coolwarm", s=18, marker="x")
        means = np.asarray(fit.params.means)
        ax.scatter(means[:, 0], means[:, 1], c="k", s=80, marker="*")
        covs = np.asarray(fit.params.covariances)
        t = np.linspace(0, 2 * np.pi, 200)
        for m, c in zip(means, covs, strict=True):
            vals, vecs = np.linalg.eigh(c)
            ell = (vecs * 2 * np.sqrt(vals)) @ np.stack([np.cos(t), np.sin(t)])
            ax.plot(m[0] + ell[0], m[1] + ell[1], "k-", lw=1)
        ax.set_title(f"{name} mixture, K = 2, {n_out} outliers (x)")
        ax.set_xlabel("eruption (min)")
    axes[0].set_ylabel("waiting (min)")
    fig.tight_layout()
    fig.savefig(RESULTS / "t_mixture_outliers.png", dpi=110)


if __name__ == "__main__":
    main()
