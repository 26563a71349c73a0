"""Small helpers shared by the EM-versus-gradient experiments: timing, progress, tables."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "first_within",
    "markdown_table",
    "progress",
    "reexec_without_openblas_overrides",
    "run_fresh_process",
    "time_compiled",
    "write_markdown",
]

_START = time.perf_counter()


def progress(message: str) -> None:
    """Print a progress line with the seconds since the script started."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", flush=True)


def time_compiled(fn: Callable[..., Any], *args: Any, repeats: int = 1) -> tuple[Any, float]:
    """Run ``fn(*args)`` once to compile, then time ``repeats`` more calls.

    Returns:
        ``(result, seconds)``: the last result and the best wall-clock time of one
        call, compile excluded, measured to :func:`jax.block_until_ready`.
    """
    result = jax.block_until_ready(fn(*args))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return result, best


def first_within(history: np.ndarray, final: np.ndarray, n_iter: np.ndarray, target, gap):
    """Iterations until the log-likelihood first comes within ``gap`` of ``target``.

    ``history[..., i]`` is the log-likelihood after ``i`` updates and ``final`` the
    one after ``n_iter`` updates (EMResult's convention).

    Returns:
        A float array over the leading axes: the smallest ``i`` with
        ``|ll_i − target| < gap``, or ``inf`` where the run never got there.
    """
    history = np.asarray(history, np.float64)
    close = np.abs(history - np.asarray(target)[..., None]) < gap
    first = np.where(close.any(-1), close.argmax(-1), np.inf).astype(np.float64)
    final_close = np.abs(np.asarray(final) - np.asarray(target)) < gap
    return np.where(np.isinf(first) & final_close, np.asarray(n_iter, np.float64), first)


def interleaved_calls(fns: dict[str, Callable[[int], Any]], repeats: int):
    """Call every ``fns[name](i)`` for ``i = 1..repeats``, the names interleaved
    within each ``i`` (so that a change of the machine's speed hits all alike).

    Returns:
        ``(median seconds per name, last result per name)``.
    """
    import statistics

    times: dict[str, list[float]] = {name: [] for name in fns}
    last: dict[str, Any] = {}
    for i in range(1, repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            last[name] = fn(i)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, last


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table from a header and rows of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(path: pathlib.Path, title: str, body: str, command: str) -> None:
    """Write ``# title``, the command that produced it, then ``body`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\nProduced by `{command}`.\n\n{body}\n")


def write_results(out: pathlib.Path, name: str, title: str, body: str, records: Any) -> None:
    """``out/<name>.md`` (:func:`write_markdown`, produced by ``python
    experiments/<name>.py``) and the records as ``out/<name>.json``."""
    write_markdown(out / f"{name}.md", title, body, f"python experiments/{name}.py")
    (out / f"{name}.json").write_text(json.dumps(records, indent=1))


OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
UNSET_MARKER = "JAXEM_BENCHMARK_UNSET"


def reexec_without_openblas_overrides(name: str = "benchmark") -> None:
    """Re-run the calling script without ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``.

    Those variables force a kernel or a cache size on OpenBLAS (numpy's and
    scipy's BLAS, which scikit-learn uses) and would handicap it. The new process
    finds what was unset in ``os.environ[UNSET_MARKER]`` (to report it).
    """
    import os
    import sys

    found = {v: os.environ[v] for v in OPENBLAS_OVERRIDES if v in os.environ}
    if not found:
        return
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
    env[UNSET_MARKER] = ", ".join(f"{k}={v}" for k, v in found.items())
    print(f"{name}: unsetting {env[UNSET_MARKER]} and re-executing", flush=True)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def run_fresh_process(child: str, args: Sequence[str], xla_flags: str | None) -> Any:
    """Run the Python source ``child`` with ``args`` in a fresh process without
    JAX's persistent compilation cache (every program compiles, as in a user's
    first call) and return the JSON its last line of output prints.
    ``xla_flags`` replaces ``XLA_FLAGS`` (None: unset)."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("XLA_FLAGS", None)
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    done = subprocess.run(
        [sys.executable, "-c", child, *args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
