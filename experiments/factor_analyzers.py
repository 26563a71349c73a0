"""Experiment: mixtures of factor analysers against full-covariance Gaussian
mixtures on 64-dimensional handwritten digits.

**Question.** In 64 dimensions a full covariance matrix has 2080 free entries
per component; a factor analyser with q factors has ``64 q − q(q−1)/2 + 64``.
On real high-dimensional data, which generalises better to held-out rows, which
does BIC prefer, and what does each fit cost (``jaxem.select`` over K, one
compiled program per model, compilation included)?

**Setup.** scikit-learn's ``load_digits`` (1797 × 64, pixel intensities 0..16),
dequantised by adding independent ``U(0, 1)`` noise to every pixel (Theis, van
den Oord & Bethge 2016: a continuous density of the dequantised pixels is a
lower bound on the discrete log-probability, and no component can collapse onto
a constant pixel), split at random into 2/3 training and 1/3 held-out rows.
Models, each fitted for every K in the list by ``jaxem.select`` on the training
rows (BIC, ``n_init`` restarts per K, each from k-means on the raw pixels, the
same for every model; the best refined to Aitken's rule at the default 1e-6
per image, at most 200 more iterations): the Gaussian mixture with full and
with diagonal covariances (``reg_covar = 1e-6``), and mixtures of factor analysers
(``jaxem.mixtures.FactorAnalyzers``) with q = 2, 5 and 10 factors and
diagonal noise per component, and q = 5 with isotropic noise (mixtures of
probabilistic PCA). Reported: the mean held-out log-likelihood (nats per
image) of each fit, BIC on the training rows, and the wall time of each
selection.

**What the literature says.** Mixtures of factor analysers (Ghahramani &
Hinton 1996; McLachlan & Peel 2000, ch. 8; McLachlan, Peel & Bean 2003) and of
probabilistic PCA (Tipping & Bishop 1999) model high-dimensional data whose
clusters lie near low-dimensional linear manifolds with ``O(K D q)``
parameters, between the diagonal (``O(K D)``, which ignores the correlations
between neighbouring pixels) and the full covariance (``O(K D²)``, which needs
many rows per component and overfits when they are few). Hinton, Dayan & Revow
(1997) modelled handwritten digits with such local linear models and found
they generalise much better than full-covariance mixtures; Tipping & Bishop
report the same for MPPCA against full Gaussians on digit images. The
factor-analytic covariance also makes the density and the EM step cost linear
in D (Woodbury identity), against the D³ of a full covariance's Cholesky.

Run from the repository root::

    python experiments/factor_analyzers.py           # a few minutes on 2 busy cores
    python experiments/factor_analyzers.py --quick   # K <= 2, 1 restart: smoke test;
                                                     # writes factor_analyzers_quick.*

Writes ``experiments/results/factor_analyzers.md`` and ``factor_analyzers.png``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence

import jax

jax.config.update("jax_enable_x64", True)  # a script, not the library: BIC in float64

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import markdown_table, progress, write_markdown  # noqa: E402

import jaxem  # noqa: E402
from jaxem import gmm, mixtures  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: K <= 2, 1 restart")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 6, 8, 10], help="K to try")
    parser.add_argument("--n-init", type=int, default=2, help="restarts per K")
    parser.add_argument(
        "--refine-max-iter", type=int, default=200, help="refinement iterations at most"
    )
    parser.add_argument("--init", default="kmeans", help="initialisation of every model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the fits")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.ks, args.n_init = [1, 2], 1
    return args


def load(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dequantised digits, split 2/3 : 1/3 at random."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    rng = np.random.default_rng(seed)
    x = x + rng.uniform(size=x.shape)
    order = rng.permutation(len(x))
    cut = 2 * len(x) // 3
    return x[order[:cut]], x[order[cut:]]


def models() -> dict[str, tuple[jaxem.Family, str]]:
    return {
        "MFA q=2": (mixtures.FactorAnalyzers(n_factors=2), "diag noise"),
        "MFA q=5": (mixtures.FactorAnalyzers(n_factors=5), "diag noise"),
        "MFA q=10": (mixtures.FactorAnalyzers(n_factors=10), "diag noise"),
        "MPPCA q=5": (mixtures.FactorAnalyzers(n_factors=5, noise_type="isotropic"), "ψ_k I"),
        "GMM diag": (gmm.family("diag"), "diag"),
        "GMM full": (gmm.family("full"), "full"),
    }


def run(args) -> list[dict]:
    train, test = load(args.seed)
    rows = []
    for name, (family, kind) in models().items():
        started = time.perf_counter()
        result = jaxem.select(
            family, jax.random.key(args.seed), train, n_components=args.ks, n_init=args.n_init,
            init=args.init, refine_max_iter=args.refine_max_iter,
        )  # fmt: skip
        jax.block_until_ready(result.fits[0].params)
        seconds = time.perf_counter() - started
        log_prob = jax.jit(lambda f, p, x: f.log_prob(p, x))
        held_out, n_params = [], []
        for i in range(len(args.ks)):
            params = jax.tree.map(lambda a, i=i: a[i], result.fits[0].params)
            held_out.append(float(jnp.mean(log_prob(family, params, test))))
            n_params.append(int(family.n_parameters(params)))
        best = int(np.nanargmin(result.scores[0]))
        progress(
            f"{name}: BIC chooses K = {result.best_n_components}, held-out "
            f"{held_out[best]:.2f} nats/image ({seconds:.1f} s)"
        )
        rows.append(dict(
            name=name, kind=kind, ks=list(args.ks), bic=result.scores[0].tolist(),
            train=result.log_likelihoods[0].tolist(), held_out=held_out, n_params=n_params,
            best=best, seconds=seconds, family=family,
            params=family.trim(jax.tree.map(lambda a, b=best: a[b], result.fits[0].params)),
        ))  # fmt: skip
    return rows


def plot(rows, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 7.5))
    grid = fig.add_gridspec(3, 8)
    ax_ll = fig.add_subplot(grid[:2, :4])
    ax_bic = fig.add_subplot(grid[:2, 4:])
    for r in rows:
        style = "s--" if r["name"].startswith("GMM") else "o-"
        ax_ll.plot(r["ks"], r["held_out"], style, label=r["name"])
        ax_bic.plot(r["ks"], np.asarray(r["bic"]) / 1e3, style, label=r["name"])
    ax_ll.set_xlabel("K")
    ax_ll.set_ylabel("held-out log-likelihood (nats / image)")
    ax_ll.set_title("held-out rows (1/3)")
    ax_ll.legend(fontsize=8)
    bottom = max(min(min(r["held_out"]) for r in rows), max(max(r["held_out"]) for r in rows) - 150)
    ax_ll.set_ylim(bottom=bottom)
    ax_bic.set_xlabel("K")
    ax_bic.set_ylabel("BIC / 1000 on training rows (lower is better)")
    ax_bic.set_title("BIC")
    # means and first loading of the largest components of the MFA q=5 fit
    mfa = next((r for r in rows if r["name"] == "MFA q=5"), None)
    if mfa is not None:
        p = mfa["params"]
        order = np.argsort(-np.asarray(p.weights))[:4]
        for j, c in enumerate(order):
            ax = fig.add_subplot(grid[2, 2 * j])
            ax.imshow(np.asarray(p.means[c]).reshape(8, 8), cmap="gray_r")
            ax.set_title(f"mean, π={float(p.weights[c]):.2f}", fontsize=7)
            ax.axis("off")
            ax = fig.add_subplot(grid[2, 2 * j + 1])
            lam = np.asarray(p.loadings[c][:, 0]).reshape(8, 8)
            m = np.abs(lam).max()
            ax.imshow(lam, cmap="RdBu", vmin=-m, vmax=m)
            ax.set_title("1st loading", fontsize=7)
            ax.axis("off")
    fig.suptitle("Mixtures of factor analysers vs Gaussian mixtures on digits (64-D)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    stem = "factor_analyzers_quick" if args.quick else "factor_analyzers"
    rows = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{stem}.png"
    plot(rows, png)
    summary = markdown_table(
        ("model", "covariance", "K by BIC", "parameters", "BIC", "train ll", "held-out ll",
         "best held-out ll (K)", "select, s (incl. compile)"),
        [
            (r["name"], r["kind"], r["ks"][r["best"]], r["n_params"][r["best"]],
             f"{r['bic'][r['best']]:.0f}", f"{r['train'][r['best']]:.2f}",
             f"{r['held_out'][r['best']]:.2f}",
             f"{max(r['held_out']):.2f} ({r['ks'][int(np.argmax(r['held_out']))]})",
             f"{r['seconds']:.1f}")
            for r in rows
        ],
    )  # fmt: skip
    per_k = markdown_table(
        ("model", *(f"K={k}" for k in rows[0]["ks"])),
        [(r["name"], *(f"{v:.2f}" for v in r["held_out"])) for r in rows],
    )
    body = (
        f"![figure]({png.name})\n\n"
        f"Data: `load_digits` dequantised (+U(0,1)), {2 * 1797 // 3} training and "
        f"{1797 - 2 * 1797 // 3} held-out rows, 64 features; {rows[0]['ks']} components, "
        f"{args.n_init} restarts per K from `init={args.init!r}` (seed {args.seed}), "
        f"at most 100 + {args.refine_max_iter} iterations. "
        "Log-likelihoods are means per image in nats; BIC on the training rows.\n\n"
        f"## At the K chosen by BIC\n\n{summary}\n\n"
        f"## Held-out log-likelihood per K\n\n{per_k}\n"
    )
    command = "python experiments/factor_analyzers.py" + (" --quick" if args.quick else "")
    md = args.out / f"{stem}.md"
    write_markdown(md, "Mixtures of factor analysers on digits", body, command)
    progress(f"wrote {md} and {png}")
    return rows


if __name__ == "__main__":
    main()
