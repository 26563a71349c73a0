"""Covariance structures of a Gaussian mixture, one module per type.

Everything that depends on the covariance type lives in that type's module
(``full``, ``tied``, ``diag``, ``spherical``, and R mclust's ten further models
``eii``, ``eei``, ``vei``, ``evi``, ``vee``, ``eve``, ``vve``, ``eev``, ``vev``,
``evv``, which store their covariances as one of the four and take its
functions but for the M-step and the parameter count: :mod:`.eigen`); the rest
of the Gaussian code
calls it through :func:`get` at trace time (``covariance_type`` is static) and
does not branch on the type. Each module implements the same set of pure
functions, in sections named after their callers (``tied`` reuses many of
``full``'s, ``spherical`` some of ``diag``'s):

* ``SHARED``: a constant, True for ``tied`` alone (one covariance for every
  component: its prior density counts once, :mod:`jaxem._src.gmm.prior`);
* ``STORAGE``: which of the four shapes the covariances have.

Density:

* ``shape(K, D)``: the shape of ``covariances`` (scikit-learn's convention);
* ``precisions_cholesky(covariances)`` and ``log_det_cholesky(prec_chol, D)``;
* ``precisions(prec_chol)`` (scikit-learn's ``precisions_``) and
  ``from_precisions(precisions) -> (covariances, prec_chol)``;
* ``mahalanobis(x, means, prec_chol) -> (N, K)`` squared distances.
* ``difference_mahalanobis(diff, prec_chol) -> (K, B)``: the same of the
  differences ``diff`` (K, D, B) of rows from each component's mean, laid out
  component-major (rows last, the axis XLA:CPU vectorises: the direct chunk
  pass, :func:`jaxem._src.gmm.passes.direct_chunk`).

M-step (:mod:`jaxem._src.gmm.steps`):

* ``second_moments(resp, x, shift)``: the additive second-order statistic about a
  per-component ``shift`` (K, D);
* ``difference_second_moments(resp, diff)``: the same from component-major
  responsibilities (K, B) and differences from the shifts (K, D, B);
* ``covariances(sxx, nk, delta, reg_covar, previous=None)``: the maximization for
  that type (``previous``, the current covariances, warm-starts the models whose
  maximization iterates);
* ``fill_empty(covariances, nk)``: the placeholder covariance of empty components;
* ``reshift(sum_xx, sum_x, nk, delta)``: the second moments about another shift;
  ``summed_reshift(sum_x, nk, delta)``: its added terms summed over a leading axis
  of sets of statistics (a layout's chunks);
* ``ensure_positive_definite(covariances)``: a ridge only where a factorisation
  would fail (singular data with ``reg_covar=0``).

Model: ``n_parameters(K, D)``, ``scale_noise(z, covariances, labels)``
(sampling), ``smallest_standardized_eigenvalue(covariances, variances,
reg_covar)`` (the degeneracy check) and ``unit(K, D, dtype)`` (a placeholder
covariance, its own precision factor).

Moment formulation (:mod:`jaxem._src.gmm.moments`, :mod:`jaxem._src.gmm.passes`),
features ``[quadratic, x̃, 1]``:

* ``n_quadratic_features(D)``: how many are quadratic, and ``moment_features(xc)``:
  all of them, (B, F), for centred rows ``xc`` (B, D);
* ``largest_eigenvalue_bound(covariances)``: a lower bound on each covariance's
  largest eigenvalue (the accuracy check's scale of float32's own error);
* ``natural_weights(prec_chol, centred_means) -> (quadratic, linear)``: their weights;
* ``feature_logits(logits, features, prec_chol)``: what ``Φ W`` leaves out of the
  log-densities (tied: the shared quadratic term);
* ``shared_second_moment(features, w)`` and ``feature_second_moments(moments,
  extra, D)``: the second moments from ``Rᵀ Φ`` (tied: from the shared one).

Conjugate prior (:mod:`jaxem._src.gmm.prior`): ``prior_scale(covariance)``,
``prior_scale_shape(D)``, ``prior_dof_bound(D)``, ``posterior_covariances(scatter,
n_aug, nk, scale, dof, D)`` (the MAP M-step) and ``log_prior(prec_chol,
half_log_det, scale, dof)`` (the covariances' prior density).

Variational posterior (:mod:`jaxem._src.gmm.variational`, Bishop 2006 §10.2):
``wishart_prior_scale(covariance)`` (scikit-learn's default covariance prior),
``wishart_dof(dof_prior, nk)`` and ``wishart_covariances(covariance_prior, sk, nk,
diff, shrinkage, dof)`` (the normal–Wishart update, normalised by the degrees of
freedom as scikit-learn's ``covariances_``).

Validation and the unconstrained map (:mod:`jaxem._src.gmm.params`,
:mod:`jaxem._src.gmm.unconstrained`): ``check_values(covariances)`` (concrete
values), ``unconstrained_shape(K, D)``, ``to_unconstrained(prec_chol)`` and
``from_unconstrained(cholesky, D)``.

Missing data (:mod:`jaxem._src.gmm.missing`):

* ``conditional_elements(K, D)``: per-row size of the temporaries (chunking);
* ``conditionals(means, covariances, prec_chol, obs, diff, mean=, covariance=)``:
  the observed-marginal densities, conditional means and covariances;
* ``summed_conditional_variances(resp, cond_cov)`` (K, D) and
  ``summed_conditional_covariances(resp, cond_cov)`` (K, D, D): the conditional
  covariances, summed with the responsibilities, in the two common forms;
* ``completed_second_moments(resp, dx, cond_cov, source)``: the completed second
  moments of this type from rows completed by the ``source`` module's parameters.
"""

from __future__ import annotations

from types import ModuleType

from jaxem._src.gmm.covariances import (
    diag,
    eei,
    eev,
    eii,
    eve,
    evi,
    evv,
    full,
    spherical,
    tied,
    vee,
    vei,
    vev,
    vve,
)
from jaxem._src.gmm.covariances.interface import INTERFACE as INTERFACE

#: scikit-learn's four covariance types (the default of ``select``).
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: R mclust's 14 models ``Σ_k = λ_k D_k A_k D_kᵀ``, in mclust's order.
MCLUST_MODELS = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip

#: mclust's names of scikit-learn's four types.
ALIASES = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}

_MODULES = {
    "full": full,
    "tied": tied,
    "diag": diag,
    "spherical": spherical,
    "EII": eii,
    "EEI": eei,
    "VEI": vei,
    "EVI": evi,
    "VEE": vee,
    "EVE": eve,
    "VVE": vve,
    "EEV": eev,
    "VEV": vev,
    "EVV": evv,
}

#: Every accepted name: the four types, mclust's 14 models (four of them aliases).
ALL_COVARIANCE_TYPES = (
    COVARIANCE_TYPES + tuple(m for m in MCLUST_MODELS if m not in ALIASES) + tuple(ALIASES)
)


def check_covariance_types(covariance_types: object) -> tuple[str, ...]:
    """A name or an iterable of names, each checked (:func:`check_covariance_type`),
    as a non-empty tuple of the names given."""
    if isinstance(covariance_types, str):
        covariance_types = (covariance_types,)
    types = tuple(covariance_types)
    for t in types:
        check_covariance_type(t)
    if not types:
        raise ValueError("covariance_types must name at least one covariance type")
    return types


def check_covariance_type(covariance_type: object, supported: tuple[str, ...] | None = None) -> str:
    """The canonical name of ``covariance_type`` (an mclust alias of one of the four
    types becomes that type: ``"VVV"`` is ``"full"``); ``ValueError`` unless it is
    one of :data:`ALL_COVARIANCE_TYPES`, or of ``supported`` when given (the
    features that support only some types)."""
    allowed = ALL_COVARIANCE_TYPES if supported is None else supported
    names = allowed + tuple(a for a, t in ALIASES.items() if t in allowed and a not in allowed)
    if not isinstance(covariance_type, str) or covariance_type not in names:
        raise ValueError(f"covariance_type must be one of {names}; got {covariance_type!r}")
    return ALIASES.get(covariance_type, covariance_type)


def get(covariance_type: str) -> ModuleType:
    """The module implementing ``covariance_type``."""
    return _MODULES[check_covariance_type(covariance_type)]
