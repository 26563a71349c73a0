"""Mixture families beyond the Gaussian one, each a :class:`jaxem.Family`.

Fit them with :func:`jaxem.fit`, :func:`jaxem.select` and :func:`jaxem.fit_online`,
in memory, out of core (:func:`jaxem.chunks`) or on several devices
(:func:`jaxem.sharded`).
"""

from jaxem._src.mixtures.poisson import Poisson, PoissonParams, PoissonStats

__all__ = ["Poisson", "PoissonParams", "PoissonStats"]
