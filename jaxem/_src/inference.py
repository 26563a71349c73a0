"""Standard errors, the observed information and the rate of the EM map, for every family.

At a maximum ``θ̂`` of the log-likelihood (or, with a prior, of the log
posterior) the observed information is the negative Hessian of the objective,
``I_obs = −∇² ℓ(θ̂)``, and ``I_obs⁻¹`` the asymptotic covariance of ``θ̂``
(Louis 1982; McLachlan & Krishnan 2008, ch. 4). It is taken here in the
family's unconstrained coordinates (:meth:`jaxem.Family.unconstrain`:
log-weights, log-rates, logits, log-diagonal precision Cholesky factors), with
their gauges removed: log-weights are defined up to a constant (``softmax`` is
invariant to it), a categorical feature's log-probabilities up to one per
feature, and an inactive component's coordinates do not move the model at all.

The gauges are found from the family alone. ``P = ∂ unconstrain(constrain(u)) / ∂u``
at ``u = unconstrain(θ̂)`` is a projection (``unconstrain ∘ constrain`` maps any
coordinates to the canonical ones of the same parameters, and is idempotent),
whose null space is the gauge directions and whose range is the tangent space
of the canonical coordinates; its eigenvalues are exactly 0 or 1, whatever the
scale of the parameters. The **free coordinates** ``z`` are those along an
orthonormal basis ``B`` (U, P) of its range, ``u = û + B z`` (for a K-component
mixture, K − 1 directions for the weights), less the directions of the
symmetries the coordinates keep (:meth:`jaxem.Family.gauges`: the rotations
of a factor analyser's loadings), along which the likelihood is flat and EM's
rate is 1.

Then, with ``ℓ(z) = ℓ(constrain(û + B z))`` computed by the family's own pass
over the data (exactly the objective EM monitors, times the total weight):

* ``information = −∇²ℓ(0)`` (P, P), by :func:`jax.hessian`;
* ``covariance = information⁻¹`` in the free coordinates;
* the delta method to the parameters themselves: with ``J = ∂ θ / ∂ z``
  (:func:`jax.jacfwd` of ``constrain``), ``Cov(θ̂) ≈ J information⁻¹ Jᵀ`` over
  every floating leaf of the parameters (weights, means, covariances and
  precision factors, rates, ...), and the standard errors its diagonal's square
  root, in the shape of the parameters;
* the rate of EM: the EM map ``θ ↦ M(E(θ))`` (the family's pass and
  :meth:`~jaxem.Family.maximize`) in the same free coordinates,
  ``z ↦ Bᵀ (unconstrain(M(E(constrain(û + B z)))) − û)``, has Jacobian ``DM``
  at the fixed point; its spectral radius is the rate at which EM's parameter
  errors shrink per iteration (Dempster, Laird & Rubin 1977:
  ``DM = I_complete⁻¹ I_missing = 1 − I_complete⁻¹ I_obs``, so the rate is
  the largest fraction of missing information). Near 1, EM is slow and
  acceleration (``accelerate="squarem"``) pays.

These are meaningful at a maximum (a fit converged tightly, with ``reg_covar``
0 or negligible: ``reg_covar`` makes the M-step maximise a penalised
objective that is not the one differentiated here); away from one the Hessian
is not that of an optimum and the delta method is not invariant to the choice
of coordinates. A family whose :meth:`~jaxem.Family.unconstrain` does not map
to a minimal set of coordinates (one that keeps redundant fields, say both
covariances and their precision factors, as independent coordinates) has a
singular information, and its covariance is not finite.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from jaxem._src.chunking import chunked_sum
from jaxem._src.family import Family, MixtureFamily
from jaxem._src.implicit import gauge_basis
from jaxem._src.sources import summed_pass
from jaxem._src.validation import check_sample_weight, concrete

__all__ = [
    "Inference",
    "em_rate",
    "free_coordinates",
    "observed_information",
    "standard_errors",
]

PyTree = Any

# The projection's eigenvalues are 0 (gauge) or 1 (free): its singular values
# are 0 or at least 1, so any threshold in between separates them.
_PROJECTION_THRESHOLD = 0.5


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Inference:
    """Standard errors of fitted parameters (see :func:`standard_errors`).

    Attributes:
        params: the parameters at which everything is computed.
        standard_errors: the standard error of every floating leaf of
            ``params``, in its shape (0 for a parameter that is not free, such
            as an inactive component's; NaN for one that the model does not
            determine, which moves along one of the family's
            :meth:`~jaxem.Family.gauges`: a factor analyser's loadings with
            two or more factors, free up to a rotation).
        covariance: (M, M) the delta-method covariance of all floating leaves
            of ``params``, in the order of
            ``jax.flatten_util.ravel_pytree(params)``.
        information: (P, P) the observed information in the free coordinates.
        free_covariance: (P, P) its inverse.
        basis: (U, P) the free directions in the family's unconstrained
            coordinates (flattened with ``ravel_pytree``), orthonormal.
        em_rate: () the spectral radius of the EM map's Jacobian at ``params``.
        em_eigenvalues: (P,) the eigenvalues of that Jacobian, by decreasing
            modulus (complex dtype).
    """

    params: PyTree
    standard_errors: PyTree
    covariance: jax.Array
    information: jax.Array
    free_covariance: jax.Array
    basis: jax.Array
    em_rate: jax.Array
    em_eigenvalues: jax.Array


@dataclasses.dataclass(frozen=True)
class _Problem:
    """The pieces shared by the functions of this module (not a pytree)."""

    family: Family
    params: PyTree
    x: PyTree
    w: jax.Array
    context: PyTree
    u0: jax.Array  # (U,) flat unconstrained coordinates of params
    unravel_u: Any
    basis: jax.Array  # (U, P)

    def point(self, z: jax.Array) -> PyTree:
        """The parameters at free coordinates ``z`` (P,)."""
        return self.family.constrain(self.unravel_u(self.u0 + self.basis @ z), self.params)

    def coordinates(self, params: PyTree) -> jax.Array:
        """Free coordinates of ``params`` (first order about ``self.params``)."""
        u, _ = ravel_pytree(self.family.unconstrain(params))
        return self.basis.T @ (u - self.u0)

    def reduce(self, params: PyTree):
        family = self.family
        mode = "features" if family.has_features else "raw"
        return summed_pass(
            family, params, self.x, self.w, self.context, featurize=family.has_features,
            batch=1, mode=mode,
        )  # fmt: skip

    def objective(self, params: PyTree) -> jax.Array:
        """Σ w log p(x | θ) + log p(θ): the summed objective EM maximises. A
        mixture's from :meth:`~jaxem.MixtureFamily.log_prob` (the component
        densities: reverse-mode differentiable, whatever the family's pass
        does), any other family's from its pass."""
        family = self.family
        if isinstance(family, MixtureFamily):
            rows = family.chunk_rows(self.w.shape[0], params, self.x, 1, "raw")
            ll_sum = chunked_sum(
                lambda xb, wb: jnp.sum(jnp.where(wb > 0, wb * family.log_prob(params, xb), 0)),
                (self.x, self.w),
                rows,
            )
        else:
            _, ll_sum = self.reduce(params)
        return ll_sum + family.log_prior(params)

    def em_map(self, params: PyTree) -> PyTree:
        stats, _ = self.reduce(params)
        return self.family.maximize(stats, params, self.context)


def _checked(family: Family, params: PyTree, x: Any, sample_weight: ArrayLike | None):
    """Validation at the Python boundary: ``(family, params, x, w)``."""
    if not isinstance(family, Family):
        raise TypeError(f"family must be a jaxem Family; got {type(family).__name__}")
    if not family.likelihood_objective:
        raise TypeError(
            f"{type(family).__name__}'s objective (Family.objective) is not its "
            "log-likelihood: the observed information, standard errors and EM rate are "
            "those of a log-likelihood (plus log prior)"
        )
    x = family.check_data_for(params, x)
    leaf = jax.tree.leaves(x)[0]
    w = check_sample_weight(sample_weight, leaf)
    w = jnp.ones(leaf.shape[0], leaf.dtype) if w is None else w
    params = jax.tree.map(lambda a: jnp.asarray(a, leaf.dtype) if _floating(a) else a, params)
    return family, params, x, w


def _problem(family: Family, params: PyTree, x: Any, w: jax.Array, basis: jax.Array) -> _Problem:
    ref = jax.tree.map(lambda a: a[0], x)
    context = family.context(family.summarize(x, w, ref), ref)
    weights = getattr(params, "weights", None)
    # an HMM's parameters have no weights: all its states (as fit_online binds it)
    n_active = jnp.sum(weights > 0) if weights is not None else family.n_components_of(params)
    family = family.bind(context, n_active).differentiable().one_pass()
    u0, unravel_u = ravel_pytree(family.unconstrain(params))
    return _Problem(family, params, x, w, context, u0, unravel_u, basis)


def _floating(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.floating)


@jax.jit
def _projection_svd(family: Family, params: PyTree, keep: jax.Array) -> tuple[jax.Array, jax.Array]:
    u0, unravel = ravel_pytree(family.unconstrain(params))

    def round_trip(u):
        return ravel_pytree(family.unconstrain(family.constrain(unravel(u), params)))[0]

    projection = jax.jacfwd(round_trip)(u0)
    # an inactive mixture component's parameters are placeholders, not free
    left, singular, _ = jnp.linalg.svd(projection * keep[:, None] * keep[None, :])
    return left, singular


def _active_coordinates(family: Family, params: PyTree) -> jax.Array:
    """(U,) 1 for a coordinate of an active component or of no component, 0
    for an inactive mixture component's. A component's leaves are those that
    :meth:`jaxem.MixtureFamily.trim` shortens: a tied covariance whose D(D+1)/2
    coordinates happen to number K is shared, and was masked as if it had one
    entry per component (D = 2, K = 3 with one inactive: a free coordinate lost,
    standard errors and the EM rate wrong). Concrete ``params`` only."""
    u = family.unconstrain(params)
    weights = getattr(params, "weights", None)
    values = None if weights is None else concrete(weights)
    if not isinstance(family, MixtureFamily) or values is None or np.all(np.asarray(values) > 0):
        return jnp.ones_like(ravel_pytree(u)[0])
    k, n_active = values.shape[0], int(np.sum(np.asarray(values) > 0))
    active = (jnp.asarray(weights) > 0).astype(weights.dtype)

    def mask(a, trimmed):
        if np.ndim(a) and a.shape[0] == k and np.shape(trimmed)[:1] == (n_active,):
            return jnp.broadcast_to(active.reshape((k,) + (1,) * (a.ndim - 1)), a.shape)
        return jnp.ones_like(a)

    masked = jax.tree.map(mask, u, family.unconstrain(family.trim(params)))
    return ravel_pytree(masked)[0]


def free_coordinates(family: Family, params: PyTree) -> jax.Array:
    """(U, P) an orthonormal basis of the free directions of the family's
    unconstrained coordinates at ``params`` (flattened with ``ravel_pytree``):
    the range of the projection ``∂ unconstrain(constrain(u)) / ∂u``, whose null
    space is the gauges (a constant added to the log-weights, inactive
    components). Concrete ``params`` only: P is a shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxem import mixtures
        >>> from jaxem._src.inference import free_coordinates
        >>> p = mixtures.PoissonParams(jnp.array([0.3, 0.7, 0.0]),
        ...                            jnp.array([[1.0], [4.0], [2.0]]))
        >>> free_coordinates(mixtures.Poisson(), p).shape  # 1 weight, 2 rates
        (6, 3)
    """
    keep = _active_coordinates(family, params)
    boundary = family.boundary(params)
    if boundary is not None:  # held fixed (Family.boundary)
        keep = jnp.where(ravel_pytree(boundary)[0], 0, keep)
    left, singular = _projection_svd(family, params, keep)
    try:
        rank = int(jnp.sum(singular > _PROJECTION_THRESHOLD))
    except jax.errors.ConcretizationTypeError as error:
        raise TypeError(
            "standard errors need concrete params (the number of free coordinates is a "
            "shape): call them outside jit, or on a fit's returned params"
        ) from error
    basis = left[:, :rank]
    gauges = _gauge_rows(family, params)
    if gauges is None:
        return basis
    # the free directions orthogonal to the family's gauges (Family.gauges)
    turned, singular = _without(basis, gauges)
    return turned[:, : int(jnp.sum(singular > _PROJECTION_THRESHOLD))]


def _gauge_rows(family: Family, params: PyTree) -> jax.Array | None:
    """(G, U) an orthonormal basis (rows) of the span of the family's gauges
    (:meth:`~jaxem.Family.gauges`) at ``params``, or None without any."""
    directions = family.gauges(params)
    if directions is None:
        return None
    keep = _active_coordinates(family, params)  # an inactive component's: not free anyway
    rows, kept = gauge_basis(jax.vmap(lambda g: ravel_pytree(g)[0])(directions) * keep)
    return rows[np.asarray(kept)]


@jax.jit
def _without(basis: jax.Array, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The left singular vectors and values of ``basis`` (U, P, orthonormal)
    less its part along ``rows`` (G, U, orthonormal, within its span): the
    values are 1 for the P − G directions orthogonal to them, 0 for the rest."""
    left, singular, _ = jnp.linalg.svd(basis - rows.T @ (rows @ basis), full_matrices=False)
    return left, singular


@functools.partial(jax.jit, static_argnames=("what",))
def _program(family, params, x, w, basis, *, what):
    problem = _problem(family, params, x, w, basis)
    if what == "information":
        return _information(problem)
    if what == "rate":
        return _rate(problem)[0]
    return _standard_errors(problem, rate=what == "all")


def observed_information(
    family: Family, params: PyTree, x: Any, *, sample_weight: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array]:
    """The observed information of ``params`` in free unconstrained coordinates.

    ``−∇² [Σ_n w_n log p(x_n | θ) + log p(θ)]`` at ``θ = params``, the Hessian
    taken with :func:`jax.hessian` in the coordinates ``z`` of
    :func:`free_coordinates` (see the module docstring).

    Args:
        family: the model family the parameters were fitted with.
        params: the fitted parameters (one set, no restart axis).
        x: the data the fit used, (N, ...) in memory.
        sample_weight: optional (N,) weights, as in the fit.

    Returns:
        ``(information (P, P), basis (U, P))``.
    """
    family, params, x, w = _checked(family, params, x, sample_weight)
    basis = free_coordinates(family, params)
    return _program(family, params, x, w, basis, what="information"), basis


def _information(problem: _Problem) -> jax.Array:
    z0 = jnp.zeros(problem.basis.shape[1], problem.u0.dtype)

    def objective(z):
        return problem.objective(problem.point(z))

    if isinstance(problem.family, MixtureFamily):
        hessian = jax.hessian(objective)(z0)
    else:  # a family's pass may support forward mode only (the loop needs no more)
        hessian = jax.jacfwd(jax.jacfwd(objective))(z0)
    return -0.5 * (hessian + hessian.T)


def _rate(problem: _Problem) -> tuple[jax.Array, jax.Array]:
    z0 = jnp.zeros(problem.basis.shape[1], problem.u0.dtype)
    jacobian = jax.jacfwd(lambda z: problem.coordinates(problem.em_map(problem.point(z))))(z0)
    eigenvalues = jnp.linalg.eigvals(jacobian)
    eigenvalues = eigenvalues[jnp.argsort(-jnp.abs(eigenvalues))]
    return jnp.abs(eigenvalues[0]), eigenvalues


def em_rate(
    family: Family, params: PyTree, x: Any, *, sample_weight: ArrayLike | None = None
) -> jax.Array:
    """() The rate of EM at a fixed point: the spectral radius of the Jacobian
    of the EM map ``θ ↦ M(E(θ))`` in free coordinates (the largest fraction of
    missing information; near 1, EM crawls).

    Args:
        family, params, x, sample_weight: as :func:`observed_information`.

    Example:
        >>> import jax.numpy as jnp, jaxem
        >>> x = jnp.array([[0.0], [1.0], [2.0], [5.0]])
        >>> mle = jaxem.mixtures.PoissonParams(jnp.ones(1), jnp.mean(x, 0, keepdims=True))
        >>> float(jaxem.em_rate(jaxem.mixtures.Poisson(), mle, x))  # one M-step gets there
        0.0
    """
    family, params, x, w = _checked(family, params, x, sample_weight)
    return _program(family, params, x, w, free_coordinates(family, params), what="rate")


def standard_errors(
    family: Family,
    params: PyTree,
    x: Any,
    *,
    sample_weight: ArrayLike | None = None,
    rate: bool = True,
) -> Inference:
    """Standard errors of fitted parameters by the observed information and the delta method.

    The observed information (:func:`observed_information`) in free
    unconstrained coordinates, its inverse, and ``J I⁻¹ Jᵀ`` with ``J`` the
    Jacobian of the family's :meth:`~jaxem.Family.constrain` (delta method) for
    every floating leaf of the parameters: weights, means, covariances and
    precision Cholesky factors of a Gaussian mixture, rates of a Poisson one,
    start and transition probabilities and emission parameters of an HMM
    (whose information is that of its sequences' log-likelihood), and so on.
    A coordinate the objective does not read (an HMM's emission weights, the
    states' occupancies) has no information and an error of 0. ``params``
    should be a maximum (a tightly converged fit, ``reg_covar=0`` or
    negligible).

    Args:
        family: the model family the parameters were fitted with (one whose
            objective is its log-likelihood: :attr:`jaxem.Family.likelihood_objective`).
        params: fitted parameters (one set: ``fit.params`` of :func:`jaxem.fit`).
        x: the data of the fit, (N, ...) in memory (an HMM's sequences).
        sample_weight: optional (N,) weights, as in the fit (per sequence for an HMM).
        rate: also compute the EM map's rate (:func:`em_rate`; static).

    Returns:
        :class:`Inference`.

    Example:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> x = jax.random.normal(jax.random.key(0), (400, 1)) * jnp.array([2.0])
        >>> family = jaxem.gmm.family("full", reg_covar=0.0)
        >>> params = jaxem.gmm.make_params(jnp.ones(1), jnp.mean(x, 0, keepdims=True),
        ...                                jnp.cov(x.T, bias=True).reshape(1, 1, 1))
        >>> se = jaxem.standard_errors(family, params, x, rate=False)
        >>> # the mean's standard error is σ̂/√N, the variance's σ̂²·√(2/N)
        >>> bool(jnp.allclose(se.standard_errors.means[0, 0], jnp.std(x) / 20, rtol=1e-6))
        True
    """
    family, params, x, w = _checked(family, params, x, sample_weight)
    basis = free_coordinates(family, params)
    return _program(family, params, x, w, basis, what="all" if rate else "all_norate")


def _standard_errors(problem: _Problem, *, rate: bool) -> Inference:
    information = _information(problem)
    # a free coordinate that the objective does not read (an HMM's emission
    # weights, the states' occupancies, which the M-step recomputes): a row and
    # column of exact zeros, no information and no error (0, not free)
    flat = jnp.all(information == 0, axis=1)
    either = flat[:, None] | flat[None, :]
    free_covariance = jnp.linalg.inv(jnp.where(either, jnp.eye(flat.shape[0]), information))
    free_covariance = jnp.where(either, 0, 0.5 * (free_covariance + free_covariance.T))
    z0 = jnp.zeros(problem.basis.shape[1], problem.u0.dtype)
    natural, unravel = ravel_pytree(_floating_leaves(problem.params))
    jacobian = jax.jacfwd(lambda z: ravel_pytree(_floating_leaves(problem.point(z)))[0])(z0)
    covariance = jacobian @ free_covariance @ jacobian.T
    covariance = 0.5 * (covariance + covariance.T)
    # a variance below 0 beyond rounding: the information is not positive
    # definite there (a saddle, or a direction the coordinates do not fix):
    # NaN rather than an error of 0
    moved = _moved_by_gauges(problem)
    if moved is not None:  # not determined by the model: no error, no covariance
        covariance = jnp.where(moved[:, None] | moved[None, :], jnp.nan, covariance)
    variances = jnp.diagonal(covariance)
    floor = -1e3 * jnp.finfo(variances.dtype).eps * jnp.nanmax(jnp.abs(variances))
    errors = jnp.where(variances < floor, jnp.nan, jnp.sqrt(jnp.maximum(variances, 0)))
    errors = unravel(errors)
    errors = _merge_floating(problem.params, errors)
    if rate:
        spectral_radius, eigenvalues = _rate(problem)
    else:
        spectral_radius = jnp.asarray(jnp.nan, natural.dtype)
        eigenvalues = jnp.full(z0.shape, jnp.nan, jnp.result_type(natural.dtype, jnp.complex64))
    return Inference(
        params=problem.params,
        standard_errors=errors,
        covariance=covariance,
        information=information,
        free_covariance=free_covariance,
        basis=problem.basis,
        em_rate=spectral_radius,
        em_eigenvalues=eigenvalues,
    )


def _moved_by_gauges(problem: _Problem) -> jax.Array | None:
    """(M,) bool over the floating leaves of the parameters (``ravel_pytree``
    order): the entries that move along one of the family's gauges
    (:meth:`~jaxem.Family.gauges`), which the model therefore does not
    determine; None without gauges."""
    family, params = problem.family, problem.params
    directions = family.gauges(params)
    if directions is None:
        return None

    def natural(u):
        return ravel_pytree(_floating_leaves(family.constrain(problem.unravel_u(u), params)))[0]

    def along(g):
        return jax.jvp(natural, (problem.u0,), (ravel_pytree(g)[0],))[1]

    change = jnp.max(jnp.abs(jax.vmap(along)(directions)), axis=0)
    return change > jnp.sqrt(jnp.finfo(change.dtype).eps) * jnp.max(change)


def _floating_leaves(params: PyTree) -> PyTree:
    """``params`` with non-floating leaves made ``None`` (left out of ``ravel_pytree``)."""
    return jax.tree.map(lambda a: a if _floating(a) else None, params)


def _merge_floating(params: PyTree, errors: PyTree) -> PyTree:
    """Standard errors in the structure of ``params`` (non-floating leaves kept)."""
    return jax.tree.map(
        lambda a, e: a if e is None else e,
        params,
        errors,
        is_leaf=lambda a: a is None,
    )
