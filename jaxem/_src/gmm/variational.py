"""Variational Bayesian Gaussian mixtures as a family of the engine.

Mean-field variational inference for a Gaussian mixture with conjugate priors
(Bishop 2006, §10.2): a Dirichlet distribution on the weights, or a Dirichlet
process in its stick-breaking form truncated at K components (Blei & Jordan
2006), and a normal–Wishart prior on each component's mean and precision (for
``tied``, one Wishart shared by the components; for ``diag`` and ``spherical``
the Gamma priors of their precisions). The variational posterior has the same
form; :class:`VariationalParams` holds it. The computations are
scikit-learn's ``BayesianGaussianMixture`` (its normalisation of the Wishart
scale as ``covariances_``, its ``n_k + 10 ε``, its lower bound without the
constant terms), so a fit from the same start follows scikit-learn's to
rounding.

As an engine family (:mod:`jaxem._src.family`):

* the pass computes the responsibilities from the expected log-weights and
  expected log-densities (digamma terms, Bishop eq. 10.64–10.66) and returns
  additive :class:`VariationalStats`: ``n_k``, ``Σ r (x − m_k)``, the second
  moments about the E-step's means (in the covariance type's shape) and the
  entropy ``−Σ r log r`` of the responsibilities; sample weights multiply ``r``;
* :meth:`VariationalFamily.maximize` is the variational M-step (Bishop eq.
  10.58–10.63) from those statistics and the priors;
* the priors scikit-learn computes from the data (the data mean, covariance,
  ``1/K`` and ``D``) are resolved by :meth:`VariationalFamily.bind` from the
  weighted data summary;
* the monitored objective (:meth:`VariationalFamily.objective`) is the evidence
  lower bound as scikit-learn computes it: the entropy of the responsibilities
  of a pass together with the parameters of the M-step on its statistics (so
  the value monitored at iteration ``i`` is scikit-learn's ``lower_bound`` of
  iteration ``i``), per unit of sample weight.

Everything that depends on the covariance type is in its module
(``wishart_prior_scale``, ``wishart_dof``, ``wishart_covariances``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln, xlogy
from jax.typing import ArrayLike

from jaxem._src.family import Family, MeansShape, MixtureFamily
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm.criteria import n_parameters
from jaxem._src.gmm.family import GaussianContext, gaussian_context, gaussian_summary
from jaxem._src.gmm.params import GMMParams
from jaxem._src.gmm.steps import shifted_sum, suff_stats
from jaxem._src.validation import check_scalar, concrete

__all__ = [
    "WEIGHT_PRIOR_TYPES",
    "VariationalFamily",
    "VariationalParams",
    "VariationalStats",
    "expected_log_weights",
    "expected_weights",
    "family",
    "log_joint",
    "lower_bound_terms",
]

#: The weight priors: the stick-breaking Dirichlet process and the Dirichlet
#: distribution (scikit-learn's ``weight_concentration_prior_type``).
WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VariationalParams(MeansShape):
    """The variational posterior of a K-component Gaussian mixture (a pytree).

    Attributes (scikit-learn's fitted attributes of the same names):
        weight_concentration: the weights' posterior: ``dirichlet_process``
            (2, K), the Beta parameters ``(a_k, b_k)`` of the sticks;
            ``dirichlet_distribution`` (K,), the Dirichlet's ``α_k``.
        mean_precision: (K,) ``β_k``, the means' precision scale.
        means: (K, D) ``m_k``, the means' posterior means.
        degrees_of_freedom: ``ν_k``, (K,) (``tied``: ()).
        covariances: the Wishart scale normalised by ``ν_k`` (the expected
            covariance), in the covariance type's shape.
        precisions_cholesky: their precision Cholesky factors.
        covariance_type, weight_concentration_prior_type: static.
    """

    weight_concentration: jax.Array
    mean_precision: jax.Array
    means: jax.Array
    degrees_of_freedom: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array
    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))
    weight_concentration_prior_type: str = dataclasses.field(
        default="dirichlet_process", metadata=dict(static=True)
    )

    @property
    def weights(self) -> jax.Array:
        """(K,) the expected weights (:func:`expected_weights`)."""
        return expected_weights(self)

    def mixture(self) -> GMMParams:
        """The Gaussian mixture of the expected weights and the posterior means
        and covariances (what scikit-learn's ``sample`` draws from)."""
        return GMMParams(
            self.weights,
            self.means,
            self.covariances,
            self.precisions_cholesky,
            self.covariance_type,
        )


class VariationalStats(NamedTuple):
    """Additive statistics of a variational pass (about the E-step's means)."""

    nk: jax.Array  # (K,) Σ_n w_n r_nk
    sum_x: jax.Array  # (K, D) Σ_n w_n r_nk (x_n − m_k)
    sum_xx: jax.Array  # second moments about m_k, in the covariance type's shape
    entropy: jax.Array  # () −Σ_n w_n Σ_k r_nk log r_nk


def _is_process(params_or_family) -> bool:
    return params_or_family.weight_concentration_prior_type == "dirichlet_process"


def expected_weights(params: VariationalParams) -> jax.Array:
    """(…, K) the posterior mean weights, normalised (scikit-learn's ``weights_``):
    ``a_k/(a_k+b_k) Π_{j<k} b_j/(a_j+b_j)`` for the Dirichlet process,
    ``α_k / Σ α`` for the Dirichlet distribution."""
    c = params.weight_concentration
    if _is_process(params):
        a, b = c[..., 0, :], c[..., 1, :]
        total = a + b
        rest = jnp.cumprod(b / total, axis=-1)
        sticks = jnp.concatenate([jnp.ones_like(rest[..., :1]), rest[..., :-1]], axis=-1)
        w = a / total * sticks
    else:
        w = c
    return w / jnp.sum(w, axis=-1, keepdims=True)


def expected_log_weights(params: VariationalParams) -> jax.Array:
    """(K,) ``E[log π_k]`` (Bishop eq. 10.66; Blei & Jordan 2006 eq. 22)."""
    c = params.weight_concentration
    if _is_process(params):
        a, b = c[0], c[1]
        digamma_sum = digamma(a + b)
        log_rest = jnp.cumsum(digamma(b) - digamma_sum)
        return digamma(a) - digamma_sum + jnp.concatenate([jnp.zeros_like(a[:1]), log_rest[:-1]])
    return digamma(c) - digamma(jnp.sum(c))


def _sum_over_features(fn, dof: jax.Array, n_features: int) -> jax.Array:
    """``Σ_{d<D} fn((ν − d) / 2)``, (K,) or () as ``ν``."""
    return jnp.sum(fn(0.5 * (dof[..., None] - jnp.arange(n_features, dtype=dof.dtype))), axis=-1)


def log_joint(params: VariationalParams, x: jax.Array) -> jax.Array:
    """(N, K) ``E[log π_k] + E[log N(x_n | μ_k, Λ_k⁻¹)]`` up to the constant
    scikit-learn drops (Bishop eq. 10.64–10.67): the unnormalised log
    responsibilities, scikit-learn's ``_estimate_weighted_log_prob``."""
    module = cov_lib.get(params.covariance_type)
    d = x.shape[-1]
    # the distances are invariant to a common shift; it keeps float32's digits
    center = jax.lax.stop_gradient(jnp.mean(params.means, axis=0))
    maha = module.mahalanobis(x - center, params.means - center, params.precisions_cholesky)
    log_det = module.log_det_cholesky(params.precisions_cholesky, d)
    log_gauss = -0.5 * (d * math.log(2 * math.pi) + maha) + log_det
    dof = params.degrees_of_freedom
    log_lambda = d * math.log(2.0) + _sum_over_features(digamma, dof, d)
    expected = log_gauss - 0.5 * d * jnp.log(dof) + 0.5 * (log_lambda - d / params.mean_precision)
    return expected + expected_log_weights(params)


def lower_bound_terms(params: VariationalParams) -> jax.Array:
    """() The evidence lower bound less the entropy of the responsibilities,
    valid for parameters that are the M-step of those responsibilities:
    ``−Σ_k log B(ν_k) − log C(weights) − (D/2) Σ_k log β_k`` (scikit-learn's
    ``_compute_lower_bound`` without its entropy term; constants dropped)."""
    module = cov_lib.get(params.covariance_type)
    d = params.means.shape[-1]
    k = params.means.shape[-2]
    dof = params.degrees_of_freedom
    log_det = module.log_det_cholesky(params.precisions_cholesky, d) - 0.5 * d * jnp.log(dof)
    log_wishart_norm = -(
        dof * log_det + dof * d * 0.5 * math.log(2.0) + _sum_over_features(gammaln, dof, d)
    )
    log_wishart = jnp.sum(jnp.broadcast_to(log_wishart_norm, (k,)))  # tied: K times the one
    c = params.weight_concentration
    if _is_process(params):
        # log B(a, b) from log Γ: jax's betaln is ~1e-12 relative off scipy's here
        log_beta = gammaln(c[0]) + gammaln(c[1]) - gammaln(c[0] + c[1])
        log_norm_weight = -jnp.sum(log_beta)
    else:
        log_norm_weight = gammaln(jnp.sum(c)) - jnp.sum(gammaln(c))
    return -log_wishart - log_norm_weight - 0.5 * d * jnp.sum(jnp.log(params.mean_precision))


def _placeholder(
    k: int, d: int, dtype, covariance_type: str, weight_prior_type: str
) -> VariationalParams:
    """Parameters of the right shapes (zeros; identity covariances)."""
    module = cov_lib.get(covariance_type)
    zeros = jnp.zeros((k,), dtype)
    unit = module.unit(k, d, dtype)
    conc = jnp.zeros((2, k) if weight_prior_type == "dirichlet_process" else (k,), dtype)
    dof = jnp.zeros(np.shape(module.wishart_dof(jnp.zeros((), dtype), zeros)), dtype)
    return VariationalParams(
        conc, zeros, jnp.zeros((k, d), dtype), dof, unit, unit, covariance_type, weight_prior_type
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VariationalFamily(MixtureFamily):
    """The variational Bayesian Gaussian mixture of one covariance type and
    weight prior, as an engine family (see the module docstring).

    Hyperparameters (traced; ``None``: scikit-learn's default from the data,
    resolved by :meth:`bind`):

    Attributes:
        reg_covar: () added to the diagonal of the responsibility-weighted
            covariances in every M-step (scikit-learn's).
        weight_concentration_prior: () ``γ`` (process) or ``α_0`` (Dirichlet);
            default ``1 / K``.
        mean_precision_prior: () ``β_0``; default 1.
        mean_prior: (D,) ``m_0``; default the (weighted) data mean.
        degrees_of_freedom_prior: () ``ν_0 > D − 1``; default ``D``.
        covariance_prior: ``Ψ_0`` in the covariance type's prior shape (full,
            tied (D, D), diag (D,), spherical ()); default the (weighted,
            unbiased) data covariance, its diagonal or its mean diagonal.
        covariance_type, weight_concentration_prior_type: static.
    """

    reg_covar: jax.Array
    weight_concentration_prior: jax.Array | None = None
    mean_precision_prior: jax.Array | None = None
    mean_prior: jax.Array | None = None
    degrees_of_freedom_prior: jax.Array | None = None
    covariance_prior: jax.Array | None = None
    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))
    weight_concentration_prior_type: str = dataclasses.field(
        default="dirichlet_process", metadata=dict(static=True)
    )
    # whether the priors left None were filled in from the data (:meth:`bind`):
    # those are not the user's, and check_data leaves them alone (scikit-learn's
    # default covariance prior of a constant feature is singular, and fits)
    bound: bool = dataclasses.field(default=False, metadata=dict(static=True))

    # the priors' concentration weighs every component: none stays at weight 0
    supports_n_active: ClassVar[bool] = False

    # ------------------------------------------------------------------ data

    def check_data(self, x: Any, *, name: str = "x") -> Any:
        """:meth:`MixtureFamily.check_data`, then the priors that depend on the
        number of features D (where given and concrete), as scikit-learn's
        ``BayesianGaussianMixture``: a finite ``mean_prior`` of D entries,
        ``degrees_of_freedom_prior > D − 1``, a ``covariance_prior`` of the
        covariance type's shape and positive (definite)."""
        x = super().check_data(x, name=name)
        if self.bound:
            return x
        d = self.n_features_in(x)
        mean, dof, prior = (
            None if value is None else concrete(value)
            for value in (self.mean_prior, self.degrees_of_freedom_prior, self.covariance_prior)
        )
        if mean is not None and (mean.shape != (d,) or not np.all(np.isfinite(mean))):
            raise ValueError(
                f"mean_prior must hold {d} finite numbers (one per feature); got {mean!r}"
            )
        if dof is not None and not dof > d - 1:
            raise ValueError(
                f"degrees_of_freedom_prior must be > n_features - 1 = {d - 1}; got {float(dof)}"
            )
        if prior is not None:
            shape = {"full": (d, d), "tied": (d, d), "diag": (d,)}.get(self.covariance_type, ())
            if prior.shape != shape:
                raise ValueError(
                    f"a {self.covariance_type} covariance_prior must have shape {shape} for "
                    f"{d} features; got {prior.shape}"
                )
            if not np.all(np.isfinite(prior)):
                positive = False
            elif prior.ndim == 2:
                # semi-definite allowed: scikit-learn's default prior from the
                # data can be singular (weights leaving fewer rows than features)
                eigenvalues = np.linalg.eigvalsh(prior)
                floor = -1e3 * np.finfo(prior.dtype).eps * np.max(np.abs(eigenvalues))
                positive = np.allclose(prior, prior.T) and eigenvalues.min() >= floor
                positive = positive and eigenvalues.max() > 0
            else:
                positive = np.all(prior > 0)
            if not positive:
                what = "symmetric positive semi-definite, not 0" if prior.ndim == 2 else "positive"
                raise ValueError(f"covariance_prior must be {what}; got {prior!r}")
        return x

    def summarize(self, x, w, ref):
        return gaussian_summary(x, w, ref)

    def context(self, summary, ref):
        return gaussian_context(summary, ref)

    def bind(self, context: GaussianContext, n_active):
        """The priors left ``None`` from the weighted data summary, as
        scikit-learn computes them from the data (``np.cov`` is unbiased)."""
        dtype = context.center.dtype
        d = context.center.shape[-1]
        module = cov_lib.get(self.covariance_type)
        count = context.count
        # NaN for a total weight below 2 (a weight w counts a row w times; normalised
        # weights made the factor count / (count − 1) about 1e16)
        unbiased = context.covariance * count / jnp.where(count >= 2, count - 1, jnp.nan)

        def given(value, default):
            return jnp.asarray(default if value is None else value, dtype)

        return dataclasses.replace(
            self,
            bound=True,
            reg_covar=jnp.asarray(self.reg_covar, dtype),
            weight_concentration_prior=given(
                self.weight_concentration_prior,
                1 / jnp.asarray(n_active, dtype),
            ),
            mean_precision_prior=given(self.mean_precision_prior, 1.0),
            mean_prior=given(self.mean_prior, context.center),
            degrees_of_freedom_prior=given(self.degrees_of_freedom_prior, float(d)),
            covariance_prior=given(self.covariance_prior, module.wishart_prior_scale(unbiased)),
        )

    # -------------------------------------------------------------------- EM

    def log_joint(self, params, x):
        return log_joint(params, x)

    def pass_(self, params, rows, w, context):
        module = cov_lib.get(self.covariance_type)
        joint = log_joint(params, rows)
        log_norm = jax.nn.logsumexp(joint, axis=1)
        log_resp = joint - log_norm[:, None]
        resp = jnp.exp(log_resp) * w[:, None]
        stats = VariationalStats(
            jnp.sum(resp, axis=0),
            shifted_sum(resp, rows, params.means),
            module.second_moments(resp, rows, params.means),
            -jnp.sum(resp * log_resp),
        )
        return stats, jnp.sum(w * log_norm)

    def maximize(self, stats, params, context):
        """The variational M-step (Bishop eq. 10.58–10.63; the sticks' Beta
        posteriors, Blei & Jordan eq. 18–19) from statistics about
        ``params.means``."""
        module = cov_lib.get(self.covariance_type)
        dtype = stats.sum_x.dtype
        nk = stats.nk + 10 * jnp.finfo(dtype).eps  # scikit-learn's guard
        delta = stats.sum_x / nk[:, None]
        xk = params.means + delta
        sk = module.covariances(stats.sum_xx, nk, delta, jnp.asarray(self.reg_covar, dtype))
        prior = self.weight_concentration_prior
        if _is_process(self):
            later = jnp.concatenate([jnp.cumsum(nk[::-1])[-2::-1], jnp.zeros_like(nk[:1])])
            concentration = jnp.stack([1 + nk, prior + later])
        else:
            concentration = prior + nk
        beta0, m0 = self.mean_precision_prior, self.mean_prior
        mean_precision = beta0 + nk
        means = (beta0 * m0 + nk[:, None] * xk) / mean_precision[:, None]
        dof = module.wishart_dof(self.degrees_of_freedom_prior, nk)
        covariances = module.wishart_covariances(
            self.covariance_prior, sk, nk, xk - m0, beta0 / mean_precision, dof
        )
        return VariationalParams(
            concentration.astype(dtype),
            mean_precision.astype(dtype),
            means.astype(dtype),
            jnp.asarray(dof, dtype),
            covariances.astype(dtype),
            module.precisions_cholesky(covariances.astype(dtype)),
            self.covariance_type,
            self.weight_concentration_prior_type,
        )

    def objective(self, params, stats, ll_sum, total):
        """The evidence lower bound per unit of weight: the entropy of this
        pass's responsibilities with the parameters of the M-step on its
        statistics (scikit-learn's ``lower_bound`` of the iteration whose
        E-step this pass is)."""
        updated = self.maximize(stats, params, None)
        return (stats.entropy + lower_bound_terms(updated)) / total

    @property
    def has_prior(self) -> bool:  # type: ignore[override]
        return True  # statistics in absolute units

    # ----------------------------------------------------------------- model

    def n_components_of(self, params):
        return params.means.shape[-2]

    # The coordinates of implicit differentiation and of SQUAREM's
    # ``coordinates="unconstrained"``: Family's defaults, the posterior's
    # parameters as they are (the mixtures' log-weights do not apply: the
    # weights are a function of ``weight_concentration``), and no boundary
    # (the prior's concentration keeps every component active).
    unconstrain = Family.unconstrain
    constrain = Family.constrain
    boundary = Family.boundary

    def as_batch(self, params):
        if params.means.ndim == 3:
            return params
        return jax.tree.map(lambda a: jnp.asarray(a)[None], params)

    def trim(self, params):
        return params  # every component keeps a positive expected weight

    def n_parameters(self, params):
        return n_parameters(params.mixture())

    def suff_stats(self, resp, x):
        raise NotImplementedError("the variational family computes its statistics in pass_")

    # -------------------------------------------------------- initialisation

    def init_stats(self, resp, x, w, context):
        """Statistics about the responsibility-weighted means, and a frame whose
        means are those (the first M-step is scikit-learn's ``_initialize``)."""
        stats = suff_stats(resp, x, covariance_type=self.covariance_type, sample_weight=w)
        plogp = xlogy(resp, resp)
        entropy = -jnp.sum(plogp if w is None else plogp * w[:, None])
        k, d = stats.sum_x.shape
        frame = _placeholder(
            k, d, x.dtype, self.covariance_type, self.weight_concentration_prior_type
        )
        frame = dataclasses.replace(frame, means=stats.shift)
        return VariationalStats(stats.nk, stats.sum_x, stats.sum_xx, entropy), frame


def family(
    covariance_type: str = "full",
    *,
    weight_concentration_prior_type: str = "dirichlet_process",
    weight_concentration_prior: ArrayLike | None = None,
    mean_precision_prior: ArrayLike | None = None,
    mean_prior: ArrayLike | None = None,
    degrees_of_freedom_prior: ArrayLike | None = None,
    covariance_prior: ArrayLike | None = None,
    reg_covar: ArrayLike = 1e-6,
) -> VariationalFamily:
    """The variational Bayesian Gaussian mixture family, for :func:`jaxem.fit`.

    Arguments are scikit-learn's ``BayesianGaussianMixture``'s (``None``: its
    default from the data, see :class:`VariationalFamily`). The fit's
    ``result.params`` is a :class:`VariationalParams`; ``result.log_likelihood``
    and ``result.history`` are evidence lower bounds per unit of sample weight
    (``tol`` applies to those).

    Example:
        >>> import jax, jaxem
        >>> from jaxem.gmm import variational
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> fam = variational.family("diag", weight_concentration_prior_type="dirichlet_process")
        >>> result = jaxem.fit(fam, jax.random.key(1), x, 3, init="kmeans")
        >>> result.params.weights.shape
        (3,)
    """
    covariance_type = cov_lib.check_covariance_type(covariance_type, cov_lib.COVARIANCE_TYPES)
    if weight_concentration_prior_type not in WEIGHT_PRIOR_TYPES:
        raise ValueError(
            f"weight_concentration_prior_type must be one of {WEIGHT_PRIOR_TYPES}; "
            f"got {weight_concentration_prior_type!r}"
        )
    check_scalar("reg_covar", reg_covar)
    for name, value in (
        ("weight_concentration_prior", weight_concentration_prior),
        ("mean_precision_prior", mean_precision_prior),
        ("degrees_of_freedom_prior", degrees_of_freedom_prior),
    ):
        if value is not None:
            check_scalar(name, value)
            if concrete(value) is not None and not concrete(value) > 0:  # as scikit-learn
                raise ValueError(f"{name} must be > 0; got {value!r}")
    if mean_prior is not None and np.ndim(mean_prior) != 1:
        raise ValueError(f"mean_prior must have shape (n_features,); got {np.shape(mean_prior)}")
    return VariationalFamily(
        reg_covar=reg_covar,
        weight_concentration_prior=weight_concentration_prior,
        mean_precision_prior=mean_precision_prior,
        mean_prior=mean_prior,
        degrees_of_freedom_prior=degrees_of_freedom_prior,
        covariance_prior=covariance_prior,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_concentration_prior_type,
    )
