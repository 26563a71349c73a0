"""Bilevel hyperparameter learning by gradients through EM fits (``implicit=True``).

Outer problem: choose regularisation hyperparameters η of a full-covariance
Gaussian mixture (K = 3) to maximise the mean log-likelihood of a validation
split; inner problem: the EM fit θ*(η) on the training split. ``jax.grad`` of
the validation log-likelihood of ``gmm.fit_from(..., implicit=True)`` gives
dℓ_val/dη by the implicit function theorem at the fitted fixed point, and
optax's Adam follows it. On the wine data (178 × 13, standardised with the
training split's mean and scale; 50 / 25 / 25 train / validation / test):

1. one hyperparameter, ``log reg_covar``: the gradient against a grid of
   ``--grid`` values (all fits in one vmapped call);
2. thirteen hyperparameters, the log diagonal of the inverse-Wishart prior
   scale ``Λ = diag(exp s)`` (per-feature regularisation, MAP EM): the gradient
   against a grid over a common scale ``Λ = λ·I`` and a random search over
   ``s`` with as many fits as the gradient used.

Every fit starts from the same parameters (a k-means-started fit at the
initial hyperparameters), so the objective is one smooth function of η for
all methods. The best point of each method is reported on the test split too.
Times are wall-clock after compilation (compile times listed apart).

Run from the repository root::

    python experiments/bilevel.py [--steps 40] [--grid 26] [--seeds 0,1,2] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import time
from collections.abc import Sequence

import jax

jax.config.update("jax_enable_x64", True)  # a script: tight inner fits need float64

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

import datasets  # noqa: E402
from common import markdown_table, progress, write_markdown  # noqa: E402

from jaxem import gmm  # noqa: E402

DEFAULT_OUT = EXPERIMENTS_DIR / "results"
K = 3
TOL = 1e-10  # inner fits converge tightly: the implicit derivative is that of a fixed point
MAX_ITER = 2000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``None`` reads ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="Adam steps per problem")
    parser.add_argument("--lr", type=float, default=0.2, help="Adam's learning rate")
    parser.add_argument("--grid", type=int, default=26, help="grid points per scalar grid")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated split seeds")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--no-figure", action="store_true", help="skip the figure")
    parser.add_argument(
        "--quick", action="store_true", help="3 steps, 4 grid points, one split (a smoke test)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.grid, args.seeds = 3, 4, "0"
    return args


def split(x: np.ndarray, seed: int):
    """Train / validation / test (50 / 25 / 25), standardised by the training split."""
    order = np.random.default_rng(seed).permutation(len(x))
    a, b = len(x) // 2, (3 * len(x)) // 4
    train, val, test = x[order[:a]], x[order[a:b]], x[order[b:]]
    mean, scale = train.mean(0), train.std(0)
    return tuple(jnp.asarray((part - mean) / scale) for part in (train, val, test))


def prior_of(log_scale: jax.Array, d: int) -> gmm.Prior:
    """Inverse-Wishart scale ``diag(exp(log_scale))`` (broadcast from a scalar),
    ``ν = D + 2``, a weak (κ = 0.01) prior on the means at 0, flat weights."""
    scale = jnp.diag(jnp.broadcast_to(jnp.exp(log_scale), (d,)))
    return gmm.Prior(
        mean=jnp.zeros(d), shrinkage=jnp.asarray(0.01), dof=jnp.asarray(d + 2.0),
        scale=scale, dirichlet=jnp.asarray(1.0), covariance_type="full",
    )  # fmt: skip


def fitted(eta, start, train, *, kind, implicit):
    """The EM fit on ``train`` from ``start`` at hyperparameters ``eta``:
    ``kind="reg"``: η = log reg_covar (ML EM); ``"prior"``: η = the log
    diagonal of the prior scale (MAP EM, reg_covar 0)."""
    if kind == "reg":
        return gmm.fit_from(
            start, train, tol=TOL, max_iter=MAX_ITER, reg_covar=jnp.exp(eta), implicit=implicit
        )
    prior = prior_of(eta, train.shape[1])
    return gmm.fit_from(
        start, train, tol=TOL, max_iter=MAX_ITER, reg_covar=0.0, prior=prior, implicit=implicit
    )


def held_out(params, x) -> jax.Array:
    return jnp.mean(gmm.log_prob(params, x))


@functools.partial(jax.jit, static_argnames=("kind",))
def evaluate(eta, start, train, val, test, *, kind):
    """(validation, test) mean log-likelihood and the fit's iterations at η."""
    result = fitted(eta, start, train, kind=kind, implicit=False)
    return held_out(result.params, val), held_out(result.params, test), result.n_iter


def _loss(eta, start, train, val, kind):
    return -held_out(fitted(eta, start, train, kind=kind, implicit=True).params, val)


@functools.partial(jax.jit, static_argnames=("kind", "lr"))
def adam_step(eta, state, start, train, val, *, kind, lr):
    """One Adam step on −ℓ_val(θ*(η)), the gradient by implicit differentiation."""
    value, grad = jax.value_and_grad(_loss)(eta, start, train, val, kind)
    updates, state = optax.adam(lr).update(grad, state, eta)
    return optax.apply_updates(eta, updates), state, value


def descend(eta0, start, train, val, *, kind, steps, lr):
    """Adam with implicit gradients; returns the path of η, the seconds of the
    steps after the first and the first step's excess (compilation)."""
    state = optax.adam(lr).init(eta0)
    path, eta, times = [eta0], eta0, []
    for _ in range(steps):
        t0 = time.perf_counter()
        eta, state, _ = jax.block_until_ready(
            adam_step(eta, state, start, train, val, kind=kind, lr=lr)
        )
        times.append(time.perf_counter() - t0)
        path.append(eta)
    per_step = float(np.median(times[1:])) if steps > 1 else times[0]
    # the first call compiles (on the first split): count it as one step, its
    # excess as compilation
    return jnp.stack(path), sum(times[1:]) + per_step, max(times[0] - per_step, 0.0)


@functools.partial(jax.jit, static_argnames=("kind",))
def grid_search(etas, start, train, val, test, *, kind):
    """Every η of ``etas`` (leading axis) fitted in one vmapped call."""
    return jax.vmap(lambda e: evaluate(e, start, train, val, test, kind=kind))(etas)


def timed(fn, *args):
    """(result, seconds after compilation, compile seconds) of a jitted call."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    run = time.perf_counter() - t0
    return out, run, max(first - run, 0.0)


def run_seed(x: np.ndarray, seed: int, args) -> dict:
    train, val, test = split(x, seed)
    d = train.shape[1]
    start = gmm.fit(
        jax.random.key(seed), train, K, n_init=4, reg_covar=1e-3, tol=1e-6, max_iter=500
    ).params
    ev = functools.partial(evaluate, start=start, train=train, val=val, test=test)
    rows = {}

    def record(name, etas, seconds, compile_s, n_fits, kind):
        out = [ev(eta, kind=kind) for eta in etas]  # one compiled program per kind
        vals, tests, n_iter = (jnp.asarray([o[i] for o in out]) for i in range(3))
        best = int(jnp.nanargmax(vals))
        rows[name] = dict(
            val=float(vals[best]), test=float(tests[best]), seconds=seconds,
            compile=compile_s, fits=n_fits, eta=np.asarray(etas[best]),
            curve=(np.asarray(etas), np.asarray(vals)), max_iter=int(jnp.max(n_iter)),
        )  # fmt: skip

    # 1. log reg_covar: grid (one vmapped call) and gradient
    grid = jnp.linspace(np.log(1e-4), np.log(10.0), args.grid)
    grid_fn = functools.partial(grid_search, start=start, train=train, val=val, test=test)
    _, seconds, compile_s = timed(functools.partial(grid_fn, kind="reg"), grid)
    record("reg_covar: grid", grid, seconds, compile_s, args.grid, "reg")
    path, seconds, compile_s = descend(
        jnp.asarray(np.log(1e-3)), start, train, val, kind="reg", steps=args.steps, lr=args.lr
    )
    record("reg_covar: gradient", path, seconds, compile_s, args.steps, "reg")

    # 2. prior scale: common λ grid, per-feature gradient, per-feature random search
    lam = jnp.linspace(np.log(1e-3), np.log(30.0), args.grid)
    grid_fn = functools.partial(grid_fn, kind="prior")
    _, seconds, compile_s = timed(grid_fn, lam)
    record("prior scale λI: grid", lam[:, None] * jnp.ones(d), seconds, compile_s, args.grid,
           "prior")  # fmt: skip
    eta0 = jnp.full(d, np.log(0.1))
    path, seconds, compile_s = descend(
        eta0, start, train, val, kind="prior", steps=args.steps, lr=args.lr
    )
    record("prior scale diag(e^s): gradient", path, seconds, compile_s, args.steps, "prior")
    key = jax.random.key(100 + seed)
    samples = jax.random.uniform(key, (args.steps, d), minval=np.log(1e-3), maxval=np.log(30.0))
    _, seconds, compile_s = timed(grid_fn, samples)
    record("prior scale diag(e^s): random search", samples, seconds, compile_s, args.steps,
           "prior")  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    x, _ = datasets.load_wine()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for seed in seeds:
        progress(f"split {seed}")
        results.append(run_seed(np.asarray(x, np.float64), seed, args))
        for name, row in results[-1].items():
            progress(f"  {name}: val {row['val']:.4f} test {row['test']:.4f} "
                     f"{row['seconds']:.2f} s (+{row['compile']:.1f} s compile)")  # fmt: skip
    names = list(results[0])
    table = []
    for name in names:
        rows = [r[name] for r in results]
        table.append([
            name,
            str(rows[0]["fits"]),
            f"{np.mean([r['val'] for r in rows]):.4f}",
            f"{np.mean([r['test'] for r in rows]):.4f}",
            f"{np.mean([r['seconds'] for r in rows]):.2f}",
            f"{np.mean([r['compile'] for r in rows]):.1f}",
        ])  # fmt: skip
    per_seed = [
        [str(seed), name, f"{r[name]['val']:.4f}", f"{r[name]['test']:.4f}",
         np.array2string(np.atleast_1d(r[name]["eta"]), precision=2, max_line_width=200)]
        for seed, r in zip(seeds, results, strict=True) for name in names
    ]  # fmt: skip
    body = (
        __doc__.split("\n\n", 1)[1].rsplit("Run from", 1)[0].strip()
        + f"\n\nInner fits: K = {K}, full covariances, tol {TOL:g}, from a 4-restart fit at"
        " reg_covar 1e-3. Adam: "
        f"{args.steps} steps, learning rate {args.lr}, from log reg_covar = log 1e-3"
        ' and s = log 0.1. "fits" counts inner fits (a gradient step is one fit and one'
        " implicit solve); times are means over the splits "
        f"({', '.join(map(str, seeds))}), wall-clock on this machine.\n\n"
        "## Mean over splits\n\n"
        + markdown_table(["method", "fits", "val ℓ", "test ℓ", "time (s)", "compile (s)"], table)
        + "\n\n## Per split (η of the best point: log reg_covar or log prior scale)\n\n"
        + markdown_table(["split", "method", "val ℓ", "test ℓ", "best η"], per_seed)
    )
    if not args.no_figure:
        figure_path = args.out / "bilevel.png"
        save_figure(results[0], figure_path)
        body += f"\n\n![figure]({figure_path.name})\n"
    write_markdown(args.out / "bilevel.md", "Bilevel hyperparameters by implicit gradients",
                   body, "python experiments/bilevel.py")  # fmt: skip
    progress(f"wrote {args.out / 'bilevel.md'}")
    return {"seeds": seeds, "results": results}


def save_figure(rows: dict, path: pathlib.Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    etas, vals = rows["reg_covar: grid"]["curve"]
    left.plot(etas / np.log(10), vals, "-", color="0.6", label="grid")
    path_etas, path_vals = rows["reg_covar: gradient"]["curve"]
    left.plot(path_etas / np.log(10), path_vals, "o-", ms=3, label="Adam, implicit gradient")
    left.set(xlabel="log10 reg_covar", ylabel="validation mean log-likelihood",
             title="one hyperparameter")  # fmt: skip
    left.legend()
    _, grid_vals = rows["prior scale λI: grid"]["curve"]
    _, grad_vals = rows["prior scale diag(e^s): gradient"]["curve"]
    _, rand_vals = rows["prior scale diag(e^s): random search"]["curve"]
    right.plot(np.maximum.accumulate(grad_vals), label="Adam on s (13 values)")
    right.plot(np.maximum.accumulate(rand_vals), label="random search on s")
    right.axhline(np.nanmax(grid_vals), color="0.6", ls="--", label="best common λ (grid)")
    right.set(xlabel="fits", ylabel="best validation ℓ so far", title="per-feature prior scale")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
