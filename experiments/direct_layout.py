"""The direct chunk pass, row-major against component-major.

The direct formulation of a Gaussian EM pass (``jaxem._src.gmm.passes.direct_chunk``:
the E-step through ``(x − μ_k) P_k`` and second moments about the current
means) computes (rows, K, D) intermediates. Laid out row-major, as the
densities compute them (``weighted_log_prob``, then the covariance module's
``second_moments``), the axes XLA:CPU vectorises are the short ones (K, D);
component-major, one (K, D, rows) array of differences from the means, they
are the rows. This script times one chunk pass of both layouts on the same
parameters (a short default fit's), float32, for several shapes and the four
covariance types, one restart and ten restarts as one ``vmap``, and checks that
both give the same statistics (largest difference relative to the largest
entry, against float64).

The direct pass is what a float32 fit runs where the moment formulation's
accuracy check fails (well separated clusters below 8 192 rows), what a
fit of at most 512 rows runs, and what ``formulation="direct"``
selects.

Run from the repository root::

    python experiments/direct_layout.py [--repeats 21] [--out experiments/results/direct_layout.md]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

from common import (  # noqa: E402
    interleaved_calls,
    markdown_table,
    reexec_without_openblas_overrides,
    write_markdown,
)
from estimators import make_data  # noqa: E402

#: (rows, D, K, separation, covariance type, restarts as one vmap)
SHAPES = (
    (272, 2, 3, 4.0, "full", 1),
    (272, 2, 3, 4.0, "full", 10),
    (1024, 2, 3, 10.0, "full", 1),
    (2048, 4, 4, 10.0, "full", 1),
    (5000, 8, 5, 10.0, "full", 1),
    (5000, 8, 5, 10.0, "full", 10),
    (5000, 8, 5, 10.0, "tied", 1),
    (5000, 8, 5, 10.0, "diag", 1),
    (5000, 8, 5, 10.0, "spherical", 1),
    (8192, 8, 10, 10.0, "full", 1),
    (4096, 32, 4, 10.0, "full", 1),
    (4096, 32, 4, 10.0, "diag", 1),
    (20000, 8, 8, 4.0, "full", 1),
    (20000, 8, 8, 4.0, "diag", 1),
    (20000, 8, 8, 4.0, "spherical", 1),
    (20000, 8, 8, 4.0, "tied", 1),
    (2400, 16, 16, 4.0, "full", 1),
    (2400, 16, 16, 4.0, "diag", 1),
)


def row_major(params, x, w):
    """The previous direct chunk: the densities' (rows, K) log-probabilities and
    the covariance module's row-major second moments."""
    import jax
    import jax.numpy as jnp

    from jaxem._src.gmm import covariances as cov_lib
    from jaxem._src.gmm.density import weighted_log_prob
    from jaxem._src.gmm.passes import Moments
    from jaxem._src.gmm.steps import shifted_sum

    module = cov_lib.get(params.covariance_type)
    wlp = weighted_log_prob(params, x)
    log_norm = jax.nn.logsumexp(wlp, axis=1)
    resp = jnp.exp(wlp - log_norm[:, None]) * w[:, None]
    stats = Moments(
        jnp.sum(resp, axis=0),
        shifted_sum(resp, x, params.means),
        module.second_moments(resp, x, params.means),
    )
    return stats, jnp.sum(w * log_norm)


def measure(shape, repeats: int) -> list[str]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxem import gmm
    from jaxem._src.gmm.passes import direct_chunk

    n, d, k, separation, covariance_type, restarts = shape
    x_np = make_data(n, d, k, seed=0, separation=separation)
    x = jnp.asarray(x_np, jnp.float32)
    w = jnp.ones(n, jnp.float32)
    fits = [
        gmm.fit(jax.random.key(i), x, k, covariance_type=covariance_type, n_init=1, max_iter=5)
        for i in range(restarts)
    ]
    params = jax.tree.map(lambda *a: jnp.stack(a), *[f.params for f in fits])

    def batched(fn):
        return jax.jit(jax.vmap(lambda p: fn(p, x, w)))

    passes = {"row-major": batched(row_major), "component-major": batched(direct_chunk)}
    medians, last = interleaved_calls(
        {name: lambda _, f=f: jax.block_until_ready(f(params)) for name, f in passes.items()},
        repeats,
    )
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64) if hasattr(a, "dtype") else a, params)
        ref = jax.vmap(lambda p: direct_chunk(p, x.astype(jnp.float64), w.astype(jnp.float64)))(p64)
        ref_xx = np.asarray(ref[0].sum_xx)
    errors = {
        name: float(np.max(np.abs(np.asarray(out[0].sum_xx, np.float64) - ref_xx)))
        / float(np.max(np.abs(ref_xx)))
        for name, out in last.items()
    }
    old, new = 1e3 * medians["row-major"], 1e3 * medians["component-major"]
    return [
        f"{n} × {d}", str(k), f"{separation:g}", covariance_type, str(restarts),
        f"{old:.3f}", f"{new:.3f}", f"**{old / new:.2f}×**",
        f"{errors['row-major']:.1e} / {errors['component-major']:.1e}",
    ]  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", default=None, help="write the table to this markdown file")
    args = parser.parse_args(argv)
    reexec_without_openblas_overrides("direct_layout")
    import os
    import platform

    import jax

    rows = []
    for shape in SHAPES:
        rows.append(measure(shape, args.repeats))
        print(" | ".join(rows[-1]), flush=True)
    header = [
        "data", "K", "separation", "covariance", "restarts (vmap)", "row-major ms",
        "component-major ms", "speed-up", "sum_xx error vs float64 (row / component)",
    ]  # fmt: skip
    body = (
        "One direct chunk pass (E-step and statistics) over all rows, float32, "
        f"median of {args.repeats} interleaved calls, compilation excluded.\n\n"
        + markdown_table(header, rows)
        + f"\n\nMachine: {platform.machine()}, {os.cpu_count()} cores; JAX {jax.__version__}; "
        f"load average (1 min) at the end {os.getloadavg()[0]:.1f}.\n"
    )
    print(body)
    if args.out:
        command = "python experiments/direct_layout.py" + (f" --out {args.out}")
        write_markdown(
            pathlib.Path(args.out),
            "Direct chunk pass: row-major against component-major",
            body,
            command,
        )


if __name__ == "__main__":
    main()
