"""jaxem turns off XLA:CPU's concurrency-optimized scheduler, which deadlocks some fits."""

import os
import subprocess
import sys
import textwrap

import pytest

from jaxem._src import xla_flags as _xla_flags

FIT = textwrap.dedent(
    """
    import numpy as np
    import jax
    from jaxem import gmm

    x = np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32)
    result = gmm.fit(jax.random.key(0), x, 32, n_init=2, max_iter=5, init="kmeans")
    print(float(result.log_likelihood))
    """
)


def test_flag_is_set_on_import():
    assert f"--{_xla_flags.FLAG}=false" in os.environ["XLA_FLAGS"]


def test_a_fit_that_deadlocked_xla_cpu_finishes():
    """With the scheduler on, this program never finished (jaxlib 0.10.2, 2 cores)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", FIT], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("gmm.fit hung: XLA:CPU's concurrency-optimized scheduler is on")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 0


def test_the_callers_choice_is_kept(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--{_xla_flags.FLAG}=true")
    _xla_flags.apply()
    assert os.environ["XLA_FLAGS"] == f"--{_xla_flags.FLAG}=true"
