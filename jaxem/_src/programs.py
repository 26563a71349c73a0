"""A bounded cache of compiled programs.

``jax.jit`` keeps every executable it compiles for as long as the jitted
function lives (its own cache, and JAX's trace caches keyed weakly on the
function, which lives forever). On XLA:CPU each executable holds one memory
mapping per compiled kernel object, split in three by ``mprotect`` (code, read-only
data, data): a ``gmm.fit`` program holds about 1,000 to 1,400 mappings and
10-120 MB. Linux allows a process ``vm.max_map_count`` mappings (65,530 by
default), so after about 55 distinct fit programs in one process LLVM's JIT can
no longer map a new kernel and the process aborts
(``contiguous_section_memory_manager.cc: Failed to satisfy suballocation
request``, ``LLVM ERROR: Unable to allocate section memory!``), with gigabytes
of RAM free.

:class:`BoundedJit` compiles ahead of time (``jax.jit(f).lower(...).compile()``)
from a fresh function object each time, so no JAX cache keeps the executable:
only this least-recently-used cache does, and dropping the oldest entry frees
its memory and mappings. Nothing global is touched. Called with tracers (inside
a caller's ``jit``, ``vmap`` or ``grad``) it is a plain ``jax.jit`` function,
inlined into the caller's program.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

import jax

#: Default number of compiled programs each :class:`BoundedJit` keeps.
MAX_PROGRAMS = 16


def _trace_context() -> Any:
    """JAX settings that change what tracing produces (x64, precision, ...)."""
    try:
        from jax._src import config

        return config.trace_context()
    except Exception:  # pragma: no cover - another JAX
        return None


def full_precision(fun: Callable) -> Callable:
    """``fun`` traced with float32 matrix products at full precision on an
    accelerator. JAX's default precision there lets a float32 product run in
    TF32 or bfloat16 passes (about three decimal digits), which breaks the
    float32 accuracy jaxem promises (fits within 1e-4 of float64); on the CPU
    the default already is full precision and the program is left unchanged.
    The setting is scoped to the tracing of ``fun``: nothing global changes."""

    @functools.wraps(fun)
    def traced(*args, **kwargs):
        if jax.default_backend() == "cpu":
            return fun(*args, **kwargs)
        with jax.default_matmul_precision("highest"):
            return fun(*args, **kwargs)

    return traced


class BoundedJit:
    """``jax.jit(fun, static_argnames=...)`` keeping at most ``max_programs``
    compiled programs (the least recently used are dropped).

    Set :attr:`max_programs` (or :data:`MAX_PROGRAMS` before the first call) to
    change the bound; :meth:`clear` drops every program.
    """

    def __init__(
        self, fun: Callable, static_argnames: Iterable[str], max_programs: int | None = None
    ):
        fun = full_precision(fun)
        self._fun = fun
        self._static = frozenset(static_argnames)
        self._jit = jax.jit(fun, static_argnames=tuple(self._static))
        self._programs: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.max_programs = MAX_PROGRAMS if max_programs is None else max_programs
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        static = {k: v for k, v in kwargs.items() if k in self._static}
        dynamic = {k: v for k, v in kwargs.items() if k not in self._static}
        leaves, tree = jax.tree.flatten((args, dynamic))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return self._jit(*args, **kwargs)
        key = (
            tree,
            tuple(sorted(static.items())),
            tuple((jax.typeof(leaf), getattr(leaf, "sharding", None)) for leaf in leaves),
            _trace_context(),
        )
        with self._lock:
            compiled = self._programs.get(key)
            if compiled is not None:
                self._programs.move_to_end(key)
        if compiled is None:
            compiled = self._compile(static, args, dynamic)
            with self._lock:
                self._programs[key] = compiled
                while len(self._programs) > max(self.max_programs, 1):
                    self._programs.popitem(last=False)
        return compiled(*args, **dynamic)

    def _compile(self, static, args, dynamic):
        fun = self._fun

        # A new function object per program: JAX's caches key on it weakly, so
        # once this cache drops the program nothing else holds it.
        def program(*a, **d):
            return fun(*a, **d, **static)

        # fun's name: the same module name, so the persistent compilation cache hits
        program.__name__ = program.__qualname__ = fun.__name__
        return jax.jit(program).lower(*args, **dynamic).compile()

    def clear(self) -> None:
        """Drop every compiled program."""
        with self._lock:
            self._programs.clear()

    def cache_size(self) -> int:
        """Number of compiled programs kept."""
        return len(self._programs)

    _cache_size = cache_size  # jax.jit's name for it
