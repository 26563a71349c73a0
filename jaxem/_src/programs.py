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
import concurrent.futures
import dataclasses
import functools
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import jax

#: Default number of compiled programs each :class:`BoundedJit` keeps.
MAX_PROGRAMS = 16

#: XLA options of jaxem's smaller programs on the CPU, given to each compilation
#: (``Lowered.compile(compiler_options=...)``): nothing global changes, the
#: user's programs keep XLA's defaults. XLA:CPU's older elemental emitters
#: instead of its fusion emitters compile a fit about 40% faster (Old Faithful's
#: first call 3.8 -> 2.6 s), and its full-covariance EM iterations run about 8%
#: slower (100k x 16, K = 16: 91 -> 99 ms; diagonal: the same), so they are used
#: where compilation dominates a call: programs whose array arguments hold fewer
#: than :data:`FAST_COMPILE_MAX_ELEMENTS` elements. An XLA that no longer knows
#: an option compiles with its defaults, and an option that the ``XLA_FLAGS``
#: environment variable sets keeps that value (options given to a compilation
#: would override it).
CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}

#: Largest total size of a program's array arguments (elements) compiled with
#: :data:`CPU_COMPILER_OPTIONS`: 2^23 (32 MB of float32), between a 100k x 16
#: fit (1.6M elements: about 1 s of compilation saved, 0.1 s of EM lost per
#: call) and a 1M x 32 one (32M elements, whose EM takes tens of seconds).
FAST_COMPILE_MAX_ELEMENTS = 1 << 23

_unknown_options: set[str] = set()

_compiler: concurrent.futures.ThreadPoolExecutor | None = None
_compiler_lock = threading.Lock()


def _background() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that compile ahead (:meth:`BoundedJit.compile_ahead`): XLA
    compiles without Python's lock, so a program compiles there while the
    calling thread traces the next one."""
    global _compiler
    with _compiler_lock:
        if _compiler is None:
            _compiler = concurrent.futures.ThreadPoolExecutor(2, "jaxem-compile")
        return _compiler


def _set_by_xla_flags() -> set[str]:
    """The XLA options the ``XLA_FLAGS`` environment variable sets: the user's
    (or a test suite's) choice, which jaxem's per-compilation options would
    otherwise override."""
    return set(re.findall(r"--(xla_\w+)", os.environ.get("XLA_FLAGS", "")))


def _compile_lowered(lowered: Any, elements: int) -> Any:
    """``lowered.compile()``, with :data:`CPU_COMPILER_OPTIONS` for a small
    program on the CPU; an option that ``XLA_FLAGS`` sets is left to it."""
    skip = _unknown_options | _set_by_xla_flags()
    options = {k: v for k, v in CPU_COMPILER_OPTIONS.items() if k not in skip}
    if not options or elements >= FAST_COMPILE_MAX_ELEMENTS or jax.default_backend() != "cpu":
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=options)
    except Exception as error:  # jax.errors.JaxRuntimeError on recent JAX
        if "No such compile option" not in str(error):
            raise
        _unknown_options.update(options)  # this XLA lacks one: its defaults from now on
        return lowered.compile()


def _elements(leaves) -> int:
    """Total size of a call's array arguments."""
    return sum(math.prod(getattr(leaf, "shape", ())) for leaf in leaves)


def _signature(leaf) -> tuple:
    """What a compiled program depends on of an argument: its abstract value
    and sharding. A typed PRNG key's own ``aval`` and ``sharding`` derive
    the key's logical sharding from its data's (0.18 ms together on a core
    that was idle, 15 µs on a busy one; a small fit binds its key twice):
    the data's sharding with the key's shape and dtype say the same, where
    the key exposes them (else the general way)."""
    data = getattr(leaf, "_base_array", None) if isinstance(leaf, jax.Array) else None
    if data is not None and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return ("key", leaf.shape, leaf.dtype, getattr(data, "sharding", None))
    return jax.typeof(leaf), getattr(leaf, "sharding", None)


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


# jaxlib 0.10 lapack_kernels.cc (GetLapackBatchChunkSize, ParallelBatchMap): a
# call cuts its batch into chunks on XLA:CPU's intra-op pool, and blocks its
# thread until they are done, when batch * cost >= kMinWorkPerTask = 2e5 flops
# and more than one chunk results; two such calls at once on a 2-thread pool
# hang (experiments/xla_deadlock_repro.py). Cost per matrix by kernel, as
# jaxlib estimates it.
_LAPACK_MIN_WORK = 200_000
_LAPACK_COST = {
    "potrf": lambda m, n: n * n * n // 3,
    "getrf": lambda m, n: m * n * min(m, n),
    "trsm": lambda m, n: m * n * max(m, n),  # the side is not parsed: the larger
    "syevd": lambda m, n: 5 * n * n * n,
}
_LAPACK_TARGET = re.compile(r'custom_call_target="lapack_[sdcz]?(\w+?)_ffi"')
_HLO_SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def lapack_call_can_block(instruction: str, threads: int = 2) -> bool:
    """Whether jaxlib 0.10 runs this LAPACK custom call (a line of optimized
    HLO text) through ``ParallelBatchMap``'s blocking branch on a pool of
    ``threads`` (unknown kernels: assume so)."""
    target = _LAPACK_TARGET.search(instruction)
    shape = _HLO_SHAPE.search(instruction)
    name = target.group(1) if target else ""
    cost_fn = next((f for k, f in _LAPACK_COST.items() if name.endswith(k)), None)
    dims = [int(v) for v in shape.group(1).split(",") if v] if shape else []
    if cost_fn is None or len(dims) < 2:
        return True
    batch = 1
    for v in dims[:-2]:
        batch *= v
    cost = max(cost_fn(*dims[-2:]), 1)
    if batch * cost < _LAPACK_MIN_WORK:
        return False
    chunk = max(-(-batch // threads), -(-_LAPACK_MIN_WORK // cost))
    return chunk < batch


def may_block_in_lapack(hlo_text: str, threads: int = 2) -> bool:
    """Whether a program (its optimized HLO text) holds a LAPACK call that
    :func:`lapack_call_can_block`: such programs must not run two at a time."""
    return any(
        lapack_call_can_block(line, threads)
        for line in hlo_text.splitlines()
        if 'custom_call_target="lapack_' in line
    )


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
        self._blocking: dict = {}  # (key, threads) -> may_block_in_lapack of the program
        self._lock = threading.Lock()
        self.max_programs = MAX_PROGRAMS if max_programs is None else max_programs
        functools.update_wrapper(self, fun)

    def bind(self, *args, **kwargs) -> BoundCall:
        """A call with these arguments, its cache key computed once: call it, or
        :meth:`BoundCall.compile_ahead` first (the key costs ~0.1 ms, a fair
        part of a small fit's later call)."""
        static = {k: v for k, v in kwargs.items() if k in self._static}
        dynamic = {k: v for k, v in kwargs.items() if k not in self._static}
        leaves, tree = jax.tree.flatten((args, dynamic))
        key = None  # a tracer among the arguments: the call is inlined in the caller's trace
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            key = (
                tree,
                tuple(sorted(static.items())),
                tuple(_signature(leaf) for leaf in leaves),
                _trace_context(),
            )
        return BoundCall(self, key, args, static, dynamic, _elements(leaves))

    def _lookup(self, key):
        """The compiled program of ``key`` (waiting for one compiling ahead), or None."""
        with self._lock:
            entry = self._programs.get(key)
            if entry is not None:
                self._programs.move_to_end(key)
        if not isinstance(entry, concurrent.futures.Future):
            return entry
        try:
            compiled = entry.result()
        except BaseException:
            with self._lock:
                if self._programs.get(key) is entry:
                    del self._programs[key]
            raise
        with self._lock:
            if self._programs.get(key) is entry:
                self._programs[key] = compiled
        return compiled

    def _store(self, key, entry) -> None:
        with self._lock:
            self._programs[key] = entry
            self._programs.move_to_end(key)
            while len(self._programs) > max(self.max_programs, 1):
                dropped, _ = self._programs.popitem(last=False)
                self._blocking = {k: v for k, v in self._blocking.items() if k[0] != dropped}

    def __call__(self, *args, **kwargs):
        return self.bind(*args, **kwargs)()

    def compile_ahead(self, *args, **kwargs) -> Any:
        """:meth:`BoundCall.compile_ahead` of a call with these arguments."""
        return self.bind(*args, **kwargs).compile_ahead()

    def _lower(self, static, args, dynamic):
        fun = self._fun

        # A new function object per program: JAX's caches key on it weakly, so
        # once this cache drops the program nothing else holds it.
        def program(*a, **d):
            return fun(*a, **d, **static)

        # fun's name: the same module name, so the persistent compilation cache hits
        program.__name__ = program.__qualname__ = fun.__name__
        return jax.jit(program).lower(*args, **dynamic)

    def may_block_in_lapack(self, key, threads: int = 2) -> bool:
        """:func:`may_block_in_lapack` of the compiled program of ``key`` (a
        :class:`BoundCall`'s; compiled, or compiling ahead), kept with it."""
        compiled = self._lookup(key)
        if compiled is None:  # dropped already: assume the worst
            return True
        with self._lock:
            verdict = self._blocking.get((key, threads))
        if verdict is None:
            verdict = may_block_in_lapack(compiled.as_text(), threads)
            with self._lock:
                if key in self._programs:
                    self._blocking[(key, threads)] = verdict
        return verdict

    def clear(self) -> None:
        """Drop every compiled program."""
        with self._lock:
            self._programs.clear()
            self._blocking.clear()

    def cache_size(self) -> int:
        """Number of compiled programs kept."""
        return len(self._programs)

    _cache_size = cache_size  # jax.jit's name for it


@dataclasses.dataclass(frozen=True)
class BoundCall:
    """A call of a :class:`BoundedJit` with its arguments (:meth:`BoundedJit.bind`)."""

    program: BoundedJit
    key: Any  # None: inlined in a caller's trace
    args: tuple
    static: dict
    dynamic: dict
    elements: int

    def __call__(self):
        program = self.program
        if self.key is None:
            return program._jit(*self.args, **self.static, **self.dynamic)
        compiled = program._lookup(self.key)
        if compiled is None:
            lowered = program._lower(self.static, self.args, self.dynamic)
            compiled = _compile_lowered(lowered, self.elements)
            program._store(self.key, compiled)
        return compiled(*self.args, **self.dynamic)

    def compile_ahead(self) -> Any:
        """Trace and lower the program here and compile it in a background
        thread; a later call whose arguments match (same shapes, dtypes,
        shardings, static values) waits for that compilation instead of
        compiling. Arguments may be :class:`jax.ShapeDtypeStruct` in place of
        arrays (with the sharding the call's arrays will have).

        Returns:
            The output's :class:`jax.ShapeDtypeStruct` tree, or None when the
            program is compiled (or compiling) already or an argument is a tracer.
        """
        program = self.program
        if self.key is None:
            return None
        with program._lock:
            if self.key in program._programs:
                return None
        lowered = program._lower(self.static, self.args, self.dynamic)
        program._store(self.key, _background().submit(_compile_lowered, lowered, self.elements))
        return lowered.out_info
