"""Model-based hierarchical agglomeration in JAX (public API)."""

from jaxem._src.hierarchical import cut, vvv_tree, ward_tree

__all__ = ["cut", "vvv_tree", "ward_tree"]
