"""scikit-learn estimators on jaxem's engine: swap the import, keep the code.

>>> from jaxem.sklearn import GaussianMixture  # instead of sklearn.mixture's
>>> from jaxem.sklearn import BayesianGaussianMixture

:class:`GaussianMixture` and :class:`BayesianGaussianMixture` have
scikit-learn's parameters, fitted attributes and methods (they work in
pipelines, grid searches, ``clone`` and pickle) and compute in float64 as
scikit-learn does; see their docstrings for the few differences and jaxem's
extras (``init_params="auto"``, ``prior``, ``n_refine``, ``dtype``,
``sample_weight``). This module imports scikit-learn (an optional dependency:
``pip install "jaxem[sklearn]"``); ``import jaxem`` does not.
"""

from jaxem._src.gmm.bayesian_estimator import BayesianGaussianMixture
from jaxem._src.gmm.estimator import GaussianMixture, key_from_random_state

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "key_from_random_state"]
