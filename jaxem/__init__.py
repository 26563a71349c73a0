"""jaxem: Expectation–Maximization and Gaussian mixture models in JAX."""

from jaxem import _xla_flags

_xla_flags.apply()

from jaxem import gmm, kmeans  # noqa: E402
from jaxem.em import EMResult, em, iterate  # noqa: E402
from jaxem.gradient import fit_gradient  # noqa: E402

__all__ = ["EMResult", "em", "fit_gradient", "gmm", "iterate", "kmeans"]
__version__ = "0.1.0"
