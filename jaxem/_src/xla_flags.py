"""XLA:CPU settings that jaxem needs, applied before JAX starts its CPU backend.

XLA:CPU's concurrency-optimized scheduler (jaxlib 0.10) can deadlock executing
some of jaxem's compiled fits: the program never finishes and the process sits
idle in ``block_until_ready``. It is deterministic for a given program, e.g.
``gmm.fit(key, x, 32, n_init=2)`` on 2,000 × 32 float32 data; a similar wedge
of XLA:CPU's thread pool on vmapped programs is reported elsewhere
(PyAutoLabs/PyAutoFit#1530). Turning that scheduler off removes the hang and
costs nothing measurable here (full 100k × 16, K = 16: 11.3 vs 11.9
ms/iteration). The flag is added to ``XLA_FLAGS`` on import unless the caller
already chose a value; XLA reads it when the CPU backend starts, so import
jaxem before running any JAX computation (a warning says when that was too late).
"""

from __future__ import annotations

import os
import warnings

FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


def apply() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG in flags:
        return  # the caller's choice
    os.environ["XLA_FLAGS"] = f"{flags} --{FLAG}=false".strip()
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a JAX without this module
        return
    if xla_bridge.backends_are_initialized():
        warnings.warn(
            "jaxem was imported after JAX started its backends, so XLA_FLAGS could not "
            f"turn off --{FLAG}; some fits can then hang on CPU. Import jaxem before "
            f"running JAX computations, or set XLA_FLAGS=--{FLAG}=false.",
            RuntimeWarning,
            stacklevel=3,
        )
