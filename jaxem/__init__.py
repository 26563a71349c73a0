"""jaxem: Expectation–Maximization and Gaussian mixture models in JAX."""

from jaxem import gmm, kmeans
from jaxem.em import EMResult, em, iterate

__all__ = ["EMResult", "em", "gmm", "iterate", "kmeans"]
__version__ = "0.1.0"
