"""Fits that deadlocked XLA:CPU (jaxlib 0.10) finish, and importing jaxem changes nothing.

Two Cholesky factorisations that XLA:CPU ran at the same time each blocked a
thread of its 2-thread pool waiting for work queued on that pool
(experiments/xla_deadlock_repro.py). jaxem used to turn off XLA's
concurrency-optimized scheduler process-wide on import, which hid the hang by
chance; its programs now never have two such calls in flight
(tests/test_lapack_order.py), so XLA's settings are left alone.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SNAPSHOT = textwrap.dedent(
    """
    import json, os, jax
    def state():
        return dict(env=dict(os.environ), config={k: repr(v) for k, v in jax.config.values.items()})
    before = state()
    import jaxem
    print(json.dumps(before == state()))
    """
)

# Both hung in their first call before the fix with XLA's default scheduler.
PROGRAMS = {
    "gmm.fit 2000x32, K=32, n_init=2": """
        x = np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32)
        result = gmm.fit(jax.random.key(0), x, 32, n_init=2, max_iter=5)
        print(bool(np.isfinite(float(result.log_likelihood))))
    """,
    "run_batch 20000x32, K=32, 2 starts": """
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(20000, 32)).astype(np.float32))
        means = x[rng.integers(0, 20000, size=(2, 32))]
        covs = jnp.broadcast_to(jnp.eye(32, dtype=jnp.float32), (2, 32, 32, 32))
        starts = jax.vmap(lambda m, c: gmm.make_params(jnp.full(32, 1 / 32), m, c))(means, covs)
        em = jax.jit(lambda s, x: run_batch(
            s, x, tol=0.0, reg_covar=1e-6, max_iter=20, formulation="moments")[0])
        results = jax.block_until_ready(em(starts, x))
        print(int(results.n_iter.sum()) == 40)
    """,
}
HEADER = """
import numpy as np
import jax, jax.numpy as jnp
from jaxem import gmm
from jaxem._src.gmm.fit import run_batch
"""


def _run(code, env, timeout):
    try:
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the program hung: two LAPACK calls ran at once on XLA:CPU's pool")


def test_importing_jaxem_changes_no_environment_variable_or_jax_setting():
    done = _run(SNAPSHOT, dict(os.environ), 120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) is True


@pytest.mark.parametrize(
    "name",
    [
        # both programs are checked for concurrent LAPACK calls without running
        # them (tests/test_lapack_order.py: the default fit's and run_batch's
        # under vmap); running them with XLA's default code generation costs
        # ~40 s and ~20 s of compilation
        pytest.param(name, marks=pytest.mark.slow)
        for name in PROGRAMS
    ],
)
def test_a_fit_that_deadlocked_finishes_with_xla_defaults(name):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = _run(HEADER + textwrap.dedent(PROGRAMS[name]), env, 300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"
