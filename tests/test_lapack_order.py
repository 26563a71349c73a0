"""No two LAPACK calls that can block run at once in jaxem's programs.

jaxlib 0.10's LAPACK kernels (Cholesky, triangular solve, LU, eigh) cut a large
enough batch into chunks on XLA:CPU's intra-op pool and block their thread until
the chunks are done; XLA:CPU runs independent operations at the same time on
that pool, so two such calls in flight on a 2-thread pool leave no thread to run
the chunks and the program hangs (experiments/xla_deadlock_repro.py). These
tests read the compiled HLO: every pair of LAPACK calls that can block must be
ordered by a data dependency (tests/hlo_lapack.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
from hlo_lapack import unordered_lapack_pairs

from jaxem import gmm
from jaxem._src.gmm.fit import run_batch

# (2 × 16) batches of 32 × 32 Cholesky factorisations: jaxlib 0.10 splits a
# potrf batch of 20 or more 32 × 32 matrices over the pool.
N, D, K = 400, 32, 16


def data(seed=0, n=N):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32))


def blocking_pairs(fn, *args):
    text = jax.jit(fn).lower(*args).compile().as_text()
    assert 'custom_call_target="lapack_spotrf_ffi"' in text
    return unordered_lapack_pairs(text, blocking_only=True)


def test_default_fit_program():
    """The whole default fit with traced data: the initialisation portfolio (one
    M-step for every method's restarts), screening and refinement, the auto
    formulation decided in the loop."""

    def fit(key, x):
        return gmm.fit(key, x, 2 * K, n_init=3)

    assert blocking_pairs(fit, jax.random.key(0), data(n=120)) == []


def test_em_loop_under_vmap_over_data():
    """vmapped over data sets, both branches of each pass's formulation cond run."""

    def em(s, x):
        return run_batch(s, x, tol=0.0, reg_covar=1e-6, max_iter=3, formulation="auto")[0]

    xs = jnp.stack([data(0), data(1)])
    rng = np.random.default_rng(1)
    means = np.asarray(xs[0])[rng.choice(N, (2, K))]
    covs = np.broadcast_to(np.eye(D, dtype=np.float32), (2, K, D, D))
    starts = jax.vmap(lambda m, c: gmm.make_params(jnp.full(K, 1 / K, jnp.float32), m, c))(
        jnp.asarray(means), jnp.asarray(covs)
    )
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), starts)
    assert blocking_pairs(jax.vmap(em), stacked, xs) == []
