"""jaxem's compiled programs: per-compilation XLA options, without a global change."""

import jax
import jax.numpy as jnp
import numpy as np
from helpers import blobs

from jaxem import gmm
from jaxem._src import api, programs


def test_an_option_this_xla_does_not_know_falls_back_to_its_defaults(monkeypatch):
    monkeypatch.setattr(programs, "CPU_COMPILER_OPTIONS", {"xla_no_such_option_here": True})
    monkeypatch.setattr(programs, "_unknown_options", set())
    double = programs.BoundedJit(lambda x: 2 * x, static_argnames=())
    np.testing.assert_array_equal(double(jnp.arange(3.0)), [0.0, 2.0, 4.0])
    assert programs._unknown_options == {"xla_no_such_option_here"}


def test_small_programs_get_the_fast_compile_options_and_large_ones_xlas_defaults(monkeypatch):
    fast_compiles = []
    compile_lowered = programs._compile_lowered

    def spy(lowered, elements):
        fast_compiles.append(elements < programs.FAST_COMPILE_MAX_ELEMENTS)
        return compile_lowered(lowered, elements)

    monkeypatch.setattr(programs, "_compile_lowered", spy)
    x = blobs(seed=4, n=120, d=3, k=3)
    fit = dict(n_init=2, init="kmeans")  # any fit compiles the two programs
    api._fit_program.clear()
    api._init_program.clear()
    gmm.fit(jax.random.key(0), x, 3, **fit)
    assert fast_compiles == [True, True]  # the initialisation and the fit
    monkeypatch.setattr(programs, "FAST_COMPILE_MAX_ELEMENTS", x.size)
    api._fit_program.clear()
    api._init_program.clear()
    gmm.fit(jax.random.key(0), x, 3, **fit)
    assert fast_compiles == [True, True, False, False]


class _Lowered:
    """Records the options each compilation is given."""

    def __init__(self):
        self.options = []

    def compile(self, compiler_options=None):
        self.options.append(compiler_options)


def test_an_option_that_xla_flags_sets_is_left_to_it(monkeypatch):
    # options given to a compilation override XLA_FLAGS: jaxem gives only the others
    lowered = _Lowered()
    monkeypatch.setenv("XLA_FLAGS", "")
    programs._compile_lowered(lowered, 10)
    programs._compile_lowered(lowered, programs.FAST_COMPILE_MAX_ELEMENTS)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    programs._compile_lowered(lowered, 10)
    assert lowered.options == [programs.CPU_COMPILER_OPTIONS, None, None]


def test_a_fit_compiled_with_either_emitter_is_the_same_fit():
    # the option jaxem gives its small programs (programs.CPU_COMPILER_OPTIONS)
    # against XLA:CPU's fusion emitters, set explicitly for each compilation
    x = blobs(seed=4, n=120, d=3, k=3)
    key = jax.random.key(0)
    lowered = jax.jit(lambda key, x: gmm.fit(key, x, 3, n_init=2)).lower(key, x)
    fits = [
        lowered.compile(compiler_options={"xla_cpu_use_fusion_emitters": on})(key, x)
        for on in (False, True)
    ]
    np.testing.assert_allclose(fits[0].params.means, fits[1].params.means, rtol=1e-9)
    np.testing.assert_allclose(fits[0].params.covariances, fits[1].params.covariances, rtol=1e-9)
    np.testing.assert_allclose(fits[0].log_likelihood, fits[1].log_likelihood, rtol=1e-12)
    assert int(fits[0].n_iter) == int(fits[1].n_iter)


def test_a_first_fit_compiles_each_program_once_side_by_side(monkeypatch):
    """The initialisation compiles in the background while the fit program is
    traced from the shapes of its output; the calls then find both compiled
    (no second compilation: the abstract and the concrete arguments key alike)."""
    compiled = []
    compile_lowered = programs._compile_lowered
    threads = set()

    def spy(lowered, elements):
        import threading

        threads.add(threading.current_thread().name)
        compiled.append(lowered)
        return compile_lowered(lowered, elements)

    monkeypatch.setattr(programs, "_compile_lowered", spy)
    x = blobs(seed=5, n=90, d=2, k=2)
    fit = dict(n_init=2, init="kmeans")  # any fit compiles the two programs
    api._fit_program.clear()
    api._init_program.clear()
    first = gmm.fit(jax.random.key(0), x, 2, **fit)
    assert len(compiled) == 2
    assert all(name.startswith("jaxem-compile") for name in threads)
    again = gmm.fit(jax.random.key(0), x, 2, **fit)
    assert len(compiled) == 2
    np.testing.assert_array_equal(first.params.means, again.params.means)
    # a call inside a caller's trace is inlined, nothing compiles ahead
    jax.jit(lambda x: gmm.fit(jax.random.key(0), x, 2, **fit).log_likelihood)(x)
    assert len(compiled) == 2


def test_lapack_calls_that_can_block_are_those_jaxlib_splits_over_the_pool():
    """jaxlib 0.10 splits a batched LAPACK call over XLA:CPU's pool (and blocks
    the calling thread) when batch × cost ≥ 2e5 flops and more than one chunk
    results: 32 × 32 Cholesky factorisations from a batch of 20 on 2 threads
    (experiments/xla_deadlock_repro.py), never a single matrix."""

    def line(target, shape):
        return f'%c = (f32[{shape}], s32[]) custom-call(%a), custom_call_target="{target}"'

    can_block = programs.lapack_call_can_block
    assert can_block(line("lapack_spotrf_ffi", "20,32,32"))
    assert not can_block(line("lapack_spotrf_ffi", "19,32,32"))  # one chunk of 19
    assert not can_block(line("lapack_spotrf_ffi", "1,512,512"))  # one matrix: inline
    assert not can_block(line("lapack_ssyevd_ffi", "16,16"))
    assert can_block(line("lapack_ssyevd_ffi", "64,16,16"))  # 64 × 20 480 flops
    assert can_block(line("lapack_sgesdd_ffi", "64,16,16"))  # unknown kernel: assume so
    text = "\n".join(["%x = f32[4] add(%a, %b)", line("lapack_ssyevd_ffi", "16,16")])
    assert not programs.may_block_in_lapack(text)
    assert programs.may_block_in_lapack(text + "\n" + line("lapack_spotrf_ffi", "20,32,32"))


def test_a_typed_key_is_identified_by_its_shape_dtype_and_placement():
    """A program's cache identifies a typed PRNG key by its shape, key dtype
    and its data's sharding (cheaper than its ``aval`` and logical sharding):
    keys that differ only in value share a program, other implementations,
    shapes or legacy uint32 keys do not, and a bound call of a new key reuses
    the compiled program."""
    sig = programs._signature
    a, b = jax.random.key(0), jax.random.key(1)
    assert sig(a) == sig(b)
    assert sig(a) != sig(jax.random.key(0, impl="rbg"))
    assert sig(a) != sig(jax.random.split(a, 2))
    assert sig(a) != sig(jax.random.PRNGKey(0))
    assert sig(jnp.ones(3)) == (jax.typeof(jnp.ones(3)), jnp.ones(3).sharding)

    calls = []

    def draw(key, x):
        calls.append(1)  # traced once per program
        return jax.random.normal(key, x.shape) + x

    bounded = programs.BoundedJit(draw, ())
    x = jnp.zeros(4)
    first, second = bounded(a, x), bounded(b, x)
    assert len(calls) == 1 and bounded.cache_size() == 1
    np.testing.assert_array_equal(second, jax.random.normal(b, (4,)))
    assert not np.array_equal(first, second)
