"""Experiment: mixtures of discrete distributions on real data (Bernoulli, latent
class, Poisson), each chosen by BIC with ``jaxem.select``.

**Question.** The engine fits any family through the same seam. On three real
data sets with the three discrete families of ``jaxem.mixtures``, what does BIC
choose, what do the components look like, and how long does a whole selection
(every K, every restart, one compiled program per family) take?

**Setup.** Each family is fitted for K = 1..K_max with ``jaxem.select`` (BIC,
``n_init`` restarts per K from the family's default initialisation portfolio,
the best quarter refined to Aitken's rule at 1e-8 per sample):

* binarised handwritten digits (scikit-learn's ``load_digits``, pixel > 7,
  1797 × 64, ``experiments/data/digits_binary.csv``) with the Bernoulli mixture;
  the components' means are shown as 8 × 8 images, and the adjusted Rand index
  of the modal class against the true digit is reported;
* the 1996 American National Election Study (statsmodels' ``anes96``, 944
  respondents; ``experiments/data/anes96_lca.csv``): latent classes of six
  categorical items (self-placement and placements of Clinton and Dole on a
  7-point liberal–conservative scale, 7-point party identification, education,
  vote), with ``mixtures.Categorical``;
* article counts of 915 biochemistry PhD students and of their mentors
  (flexmix's ``bioChemists``, ``experiments/data/biochemists.csv``) with the
  Poisson mixture.

**What the literature says.** A mixture of independent Bernoulli (or categorical)
distributions is the latent class model of Lazarsfeld & Henry (1968) and Goodman
(1974); Linzer & Lewis's poLCA (2011) and Morin et al.'s stepmix (2023) fit it by
EM with random restarts, because the likelihood has many local maxima, more as K
grows. Bernoulli mixtures of binarised digits are the textbook example of Bishop
(2006, §9.3.3): each component's mean is a prototype of one way of writing a
digit, and with about ten components most components capture one digit class,
while 4/9 and 3/5/8 share or split components (Carreira-Perpiñán & Renals 2000
discuss why such mixtures stay identifiable in practice). For class enumeration
Nylund, Asparouhov & Muthén (2007) found BIC the most reliable of the
information criteria for latent class models. Poisson mixtures model
overdispersed counts (Böhning 1999; flexmix: Leisch 2004, Grün & Leisch 2008):
extra components absorb the excess of zeros and the long tail rather than
marking distinct groups, so BIC's choice is a description of the count
distribution, not a number of populations.

Run from the repository root::

    python experiments/discrete_mixtures.py            # about 2-3 min on 2 cores
    python experiments/discrete_mixtures.py --quick    # K <= 3, 2 restarts: ~1 min;
                                                       # writes discrete_mixtures_quick.*

Writes ``experiments/results/discrete_mixtures.md`` and ``discrete_mixtures.png``.
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
from jaxem import mixtures  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "experiments" / "data"
DEFAULT_OUT = ROOT / "experiments" / "results"
ANES_LABELS = ("selfLR", "ClinLR", "DoleLR", "PID", "educ", "vote")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: K <= 3, 2 restarts")
    parser.add_argument("--max-k-digits", type=int, default=14, help="largest K for digits")
    parser.add_argument("--max-k", type=int, default=6, help="largest K for anes96, biochemists")
    parser.add_argument("--n-init", type=int, default=10, help="restarts per K")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the fits")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_k_digits, args.max_k, args.n_init = 3, 3, 2
    return args


def _csv(name: str) -> np.ndarray:
    return np.loadtxt(DATA / f"{name}.csv", delimiter=",", skiprows=1, ndmin=2)


def _select(family, x, ks, n_init, seed):
    started = time.perf_counter()
    result = jaxem.select(
        family, jax.random.key(seed), x, n_components=ks, n_init=n_init, refine_tol=1e-8
    )
    return result, time.perf_counter() - started


def _fit_at(result, family, k):
    """The parameters of ``result``'s fit with K = k, inactive components dropped."""
    i = list(result.n_components).index(k)
    return family.trim(jax.tree.map(lambda a: a[i], result.fits[0].params))


def _digit_labels() -> np.ndarray | None:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    return load_digits().target


def _ari(labels, truth) -> float:
    try:
        from sklearn.metrics import adjusted_rand_score
    except ImportError:
        return float("nan")
    return float(adjusted_rand_score(truth, labels))


def run_digits(args):
    x = _csv("digits_binary")
    family = mixtures.Bernoulli()
    ks = tuple(range(1, args.max_k_digits + 1))
    result, seconds = _select(family, x, ks, args.n_init, args.seed)
    progress(f"digits: BIC chooses K = {result.best_n_components} ({seconds:.1f} s)")
    shown = min(10, ks[-1])
    params = {k: _fit_at(result, family, k) for k in sorted({shown, result.best_n_components})}
    truth = _digit_labels()
    aris = {}
    for k, p in params.items():
        labels = np.asarray(family.predict(p, jnp.asarray(x)))
        aris[k] = _ari(labels, truth) if truth is not None else float("nan")
    return dict(name="digits", family=family, x=x, result=result, seconds=seconds,
                params=params, shown=shown, aris=aris)  # fmt: skip


def run_counts_and_classes(args):
    """The latent class model of anes96 and the Poisson mixture of biochemists."""
    runs = []
    for name, csv, make in (
        ("anes96", "anes96_lca", mixtures.Categorical.for_data),
        ("biochemists", "biochemists", lambda x: mixtures.Poisson()),
    ):
        x = _csv(csv)
        family = make(x)
        result, seconds = _select(
            family, x, tuple(range(1, args.max_k + 1)), args.n_init, args.seed
        )
        progress(f"{name}: BIC chooses K = {result.best_n_components} ({seconds:.1f} s)")
        runs.append(dict(name=name, family=family, x=x, result=result, seconds=seconds))
    return runs


def _bic_table(runs) -> str:
    rows = []
    for run in runs:
        result = run["result"]
        n = run["x"].shape[0]
        for i, k in enumerate(result.n_components):
            ll = float(result.log_likelihoods[0, i]) * n
            mark = " **(chosen)**" if k == result.best_n_components else ""
            rows.append((run["name"], k, f"{ll:.2f}", f"{float(result.scores[0, i]):.1f}{mark}"))
    return markdown_table(("data", "K", "log-likelihood", "BIC"), rows)


def _anes_table(run) -> str:
    family, params = run["family"], run["result"].params
    order = np.argsort(-np.asarray(params.weights))
    blocks = [np.asarray(b) for b in family.feature_probs(params)]
    rows = []
    for k in order:
        # item means on the 1..7 scales (codes + 1); vote: share voting Dole
        means = [float(np.sum(b[k] * (np.arange(b.shape[1]) + 1))) for b in blocks[:5]]
        rows.append(
            (
                f"{float(params.weights[k]):.2f}",
                *(f"{m:.1f}" for m in means),
                f"{blocks[5][k, 1]:.2f}",
            )
        )
    header = (
        "class size",
        "self L–C",
        "Clinton L–C",
        "Dole L–C",
        "party ID",
        "education",
        "P(Dole)",
    )
    return markdown_table(header, rows)


def _poisson_table(run) -> str:
    params = run["result"].params
    order = np.argsort(np.asarray(params.rates)[:, 0])
    rows = [
        (
            f"{float(params.weights[k]):.2f}",
            f"{float(params.rates[k, 0]):.2f}",
            f"{float(params.rates[k, 1]):.2f}",
        )
        for k in order
    ]
    return markdown_table(("weight", "student's articles λ", "mentor's articles λ"), rows)


def plot(runs, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    digits = runs[0]
    shown = digits["params"][digits["shown"]]
    order = np.argsort(-np.asarray(shown.weights))
    k = len(order)
    fig = plt.figure(figsize=(12, 5.5))
    grid = fig.add_gridspec(2, max(k, 3))
    for j, c in enumerate(order):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(np.asarray(shown.probs[c]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"π={float(shown.weights[c]):.2f}", fontsize=8)
        ax.axis("off")
    width = max(k, 3)
    for i, run in enumerate(runs):
        span = slice(i * width // 3, (i + 1) * width // 3)
        ax = fig.add_subplot(grid[1, span])
        result = run["result"]
        ax.plot(result.n_components, result.scores[0], "o-")
        ax.axvline(result.best_n_components, color="gray", ls=":")
        ax.set_title(f"{run['name']} ({type(run['family']).__name__})", fontsize=9)
        ax.set_xlabel("K")
        if i == 0:
            ax.set_ylabel("BIC (lower is better)")
    fig.suptitle(f"Bernoulli mixture of binarised digits, K = {k}: component means")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    stem = "discrete_mixtures_quick" if args.quick else "discrete_mixtures"
    runs = [run_digits(args), *run_counts_and_classes(args)]
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{stem}.png"
    plot(runs, png)
    digits = runs[0]
    timing = markdown_table(
        ("data", "N × D", "family", "K", "restarts per K", "select, s (incl. compile)"),
        [
            (r["name"], "×".join(map(str, r["x"].shape)), type(r["family"]).__name__,
             f"1..{r['result'].n_components[-1]}", args.n_init, f"{r['seconds']:.1f}")
            for r in runs
        ],
    )  # fmt: skip
    ari = ", ".join(f"K = {k}: {v:.3f}" for k, v in sorted(digits["aris"].items()))
    body = (
        f"![figure]({png.name})\n\n"
        f"## Runs\n\n{timing}\n\n"
        f"## Log-likelihood and BIC per K\n\n{_bic_table(runs)}\n\n"
        f"## Digits (Bernoulli mixture)\n\nAdjusted Rand index of the modal component "
        f"against the true digit: {ari}. The figure shows the K = {digits['shown']} "
        "component means (probability that a pixel is on), largest weight first.\n\n"
        f"## anes96: the BIC-chosen latent classes\n\nItem means per class on the "
        f"1..7 scales (liberal 1 – conservative 7; party ID 1 strong Democrat – 7 strong "
        f"Republican):\n\n{_anes_table(runs[1])}\n\n"
        f"## biochemists: the BIC-chosen Poisson mixture\n\n{_poisson_table(runs[2])}\n"
    )
    command = "python experiments/discrete_mixtures.py" + (" --quick" if args.quick else "")
    md = args.out / f"{stem}.md"
    write_markdown(md, "Discrete mixtures on real data", body, command)
    progress(f"wrote {md} and {png}")
    return runs


if __name__ == "__main__":
    main()
