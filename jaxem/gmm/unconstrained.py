"""An unconstrained parametrisation of Gaussian mixtures, for gradient-based fitting."""

from jaxem._src.gmm.unconstrained import (
    UnconstrainedParams,
    from_unconstrained,
    log_likelihood,
    to_unconstrained,
)

__all__ = ["UnconstrainedParams", "from_unconstrained", "log_likelihood", "to_unconstrained"]
