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

# Opt-in (JAXEM_COMPILE_LOG=<directory>): every tracing, lowering and XLA
# compilation of the test processes (JAX's monitoring events) is recorded with
# the test that caused it, one file per process, for
# experiments/suite_compile_report.py (where the suite's time goes).
if os.environ.get("JAXEM_COMPILE_LOG"):
    from jax import monitoring

    _EVENTS = ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")
    _log_dir = pathlib.Path(os.environ["JAXEM_COMPILE_LOG"])
    _log_dir.mkdir(parents=True, exist_ok=True)
    _log = open(_log_dir / f"{os.getpid()}.tsv", "a", buffering=1)  # open for the process

    def _record(event: str, duration: float, **kwargs) -> None:
        name = event.rsplit("/", 1)[-1]
        if name in _EVENTS:
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
            _log.write(f"{name}\t{kwargs.get('fun_name')}\t{duration:.4f}\t{test}\n")

    monitoring.register_event_duration_secs_listener(_record)
