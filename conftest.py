"""Root pytest configuration, shared by the doctests in jaxem/ and the tests in tests/."""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each module.

    One pytest process compiles several hundred XLA programs; keeping them all
    alive grew the process steadily and once ended in a segfault inside XLA's
    compiler late in the run. Modules share no compiled state worth keeping.
    """
    yield
    jax.clear_caches()
