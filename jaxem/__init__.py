"""jaxem: Expectation–Maximization and Gaussian mixture models in JAX."""

from jaxem import gmm, kmeans
from jaxem.em import EMResult, em, iterate
from jaxem.gradient import fit_gradient

__all__ = ["EMResult", "em", "fit_gradient", "gmm", "iterate", "kmeans"]
__version__ = "0.1.0"
