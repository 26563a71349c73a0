"""Mixture families beyond the Gaussian one, each a :class:`jaxem.Family`.

* :class:`Poisson`: independent Poisson counts;
* :class:`Bernoulli`: independent binary features;
* :class:`Categorical`: independent categorical features (latent class analysis);
* :class:`FactorAnalyzers`: mixtures of factor analysers (``Λ_k Λ_kᵀ + Ψ_k``
  covariances with q factors, densities linear in D);
* :class:`StudentT`: multivariate Student-t (robust to outliers), ν per component
  estimated or fixed, with full, tied, diagonal or spherical scale matrices.

Fit them with :func:`jaxem.fit`, :func:`jaxem.select` and :func:`jaxem.fit_online`,
in memory, out of core (:func:`jaxem.chunks`) or on several devices
(:func:`jaxem.sharded`).
"""

from jaxem._src.mixtures.bernoulli import Bernoulli, BernoulliParams, BernoulliStats
from jaxem._src.mixtures.categorical import (
    Categorical,
    CategoricalParams,
    CategoricalStats,
    OneHot,
)
from jaxem._src.mixtures.factor_analyzers import (
    FactorAnalyzers,
    FactorAnalyzersParams,
    FactorAnalyzersStats,
)
from jaxem._src.mixtures.poisson import Poisson, PoissonParams, PoissonStats
from jaxem._src.mixtures.student_t import StudentT, StudentTParams, StudentTStats

__all__ = [
    "Bernoulli",
    "BernoulliParams",
    "BernoulliStats",
    "Categorical",
    "CategoricalParams",
    "CategoricalStats",
    "FactorAnalyzers",
    "FactorAnalyzersParams",
    "FactorAnalyzersStats",
    "OneHot",
    "Poisson",
    "PoissonParams",
    "PoissonStats",
    "StudentT",
    "StudentTParams",
    "StudentTStats",
]
