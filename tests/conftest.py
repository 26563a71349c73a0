"""Shared fixtures. float64 is enabled for reference comparisons; float32 tests ask for it."""

import jax

jax.config.update("jax_enable_x64", True)
