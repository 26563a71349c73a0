"""Root pytest configuration, shared by the doctests in jaxem/ and the tests in tests/."""

import os

import jax
import pytest

# Compilation is most of the suite's time on a CI runner's two cores. The tests
# compile with LLVM's optimisation of the CPU code off and with XLA:CPU's older
# loop emitters instead of its MLIR fusion emitters (which compiled a default
# fit's programs in 9.5 s against 3.6 s; two test files 155 s against 102 s):
# XLA's HLO passes (the programs' operations) are unchanged; the machine code is
# slower, which the tests' small shapes do not feel, and may round differently in
# the last bits (one test that follows R's SQUAREM to 1e-12 over 22
# extrapolations sees 1.6e-12). Each program's code is generated as one LLVM
# module rather than split for parallel code generation: the suite's processes
# already keep both cores busy, and the split costs CPU time (fits of 300 x 3,
# n_init=2, four compilations each: 13.0 -> 11.8 CPU-seconds, the same wall-clock).
# Set XLA_FLAGS to test with other flags (an empty value: XLA's defaults). Set
# here, before any computation creates JAX's CPU client, for every worker and for
# the scripts the tests run in subprocesses.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    " --xla_cpu_parallel_codegen_split_count=1",
)
# Every program goes to the disk cache (tests/conftest.py), however short its
# compilation (JAX keeps only those over a second by default): modules clear the
# in-memory caches (below), and a program that another module, worker or
# subprocess compiled is read back.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each module.

    One pytest process compiles several hundred XLA programs; keeping them all
    alive grew the process steadily and once ended in a segfault inside XLA's
    compiler late in the run. Modules share no compiled state worth keeping.
    """
    yield
    jax.clear_caches()


# The longest test files first (longest-processing-time scheduling): pytest-xdist's
# ``--dist loadfile`` hands whole files to idle workers in collection order (with
# ``--no-loadscope-reorder``; by default it orders them by their number of tests),
# so a long file collected last ran alone at the end of the suite. Cold-cache times on 2 cores
# (2026-12-05, seconds summed over each file's tests): 125, 105, 70, 61, 56, 53, 51,
# 48, 46, 43, 42, 40, then 36 to 28; every other file takes under 26 s.
_LONGEST_FIRST = (
    "tests/test_engine_contract.py",
    "tests/test_gmm_passes.py",
    "tests/test_mixtures_student_t.py",
    "tests/test_gmm_portfolio.py",
    "tests/test_gmm_fit.py",
    "tests/test_readme.py",
    "tests/test_robustness_degenerate.py",
    "tests/test_hmm.py",
    "tests/test_mixtures_discrete.py",
    "tests/test_sklearn_estimator.py",
    "tests/test_gmm_streaming.py",
    "tests/test_gmm_prior.py",
    "tests/test_reliability.py",
    "tests/test_gmm_init.py",
    "tests/test_gmm_steps.py",
    "tests/test_gradient.py",
    "tests/test_sklearn_bayesian.py",
    "tests/test_gmm_missing.py",
    "tests/test_mixtures_factor.py",
    "tests/test_experiments_demo.py",
    "tests/test_gmm_weights.py",
)


def pytest_collection_modifyitems(config, items):
    """The files of ``_LONGEST_FIRST`` in its order, the other test files, then the
    doctests (many short ones, which fill the workers' last minutes). pyproject's
    ``--no-loadscope-reorder`` keeps xdist from reordering the files by their
    number of tests."""
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}

    def key(item):
        path = item.nodeid.split("::")[0]
        return rank.get(path, len(rank)), path.startswith("jaxem/")

    items.sort(key=key)
