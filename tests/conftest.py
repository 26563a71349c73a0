"""Shared fixtures. float64 is enabled for reference comparisons; float32 tests ask for it.

Compiled programs are cached on disk (``.pytest_cache/jax-compilation``), shared by
the xdist workers and by the scripts the tests run in subprocesses: the suite's time
is mostly XLA compilation, and several test files compile the same programs.
"""

import os
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
