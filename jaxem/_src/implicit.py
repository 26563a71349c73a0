"""Implicit differentiation of an EM fit at its fixed point, once for every model.

A converged EM fit is a fixed point ``θ* = M(θ*; a)`` of the EM map
``M = maximize ∘ E-step``, where ``a`` are the inputs the map reads besides the
parameters: the data, the sample weights, hyperparameters (``reg_covar``, a
prior). By the implicit function theorem, in coordinates ``u = U(θ)`` where the
map is ``T(u; a) = U(M(C(u); a))`` (``C = U⁻¹``),

    du*/da = (I − ∂T/∂u)⁻¹ ∂T/∂a,

so reverse mode needs, for a cotangent ``ḡ`` of ``u*``, one linear solve

    (I − ∂T/∂u)ᵀ v = ḡ,      ā = (∂T/∂a)ᵀ v,

with products by ``(∂T/∂u)ᵀ`` only (vector–Jacobian products of one EM
iteration; nothing of size ``dim(u)²`` is formed unless ``solver="dense"``).
:func:`fixed_point` attaches this rule (a :func:`jax.custom_vjp`) to parameters
that a loop computed without derivatives; it knows nothing of a model, so
:func:`jaxem.em`, :func:`jaxem.iterate` and :func:`jaxem.fit` of every family
share it. The loop's own forward-mode derivative (``jax.jvp`` through the
iterations) is unchanged when ``implicit`` is off.

Why a Krylov solver: the eigenvalues of ``∂T/∂u`` at a maximum are the EM
map's rates of convergence, in ``[0, 1)``: the fraction of missing
information. Where components overlap they come close to 1, ``I − ∂T/∂u`` is
ill-conditioned, and the Neumann series ``v = Σ_k (∂T/∂uᵀ)^k ḡ`` (which is
what differentiating the unrolled loop amounts to) needs as many terms as EM
needed iterations, while GMRES needs at most ``dim(u)`` products and usually
far fewer.

Gauges: the coordinates are the family's :meth:`~jaxem.Family.unconstrain`
(log-weights, log-rates, the log-diagonal Cholesky factors of precisions), in
which every nearby point is a valid parameter. Log-weights have a gauge, a
common shift that ``softmax`` ignores; the map's output is normalised whatever
its input, so ``∂T/∂u`` sends the shift to 0 (an eigenvalue 0, not 1) and
``I − ∂T/∂u`` stays invertible. An inactive component (weight exactly 0) has
coordinates that the map neither reads nor moves: its rows and columns of
``∂T/∂u`` are 0 and it stays inactive. A probability that EM drives to 0
without reaching it (a weight, a start or transition probability of 1e-40) is
another matter: along its log-coordinate the map's rate is 1 within rounding,
``I − ∂T/∂u`` is singular there, and a Krylov solver returned a solution with a
component along that direction (a gradient 5x off). The family's
:meth:`~jaxem.Family.boundary` names such coordinates, and the solve holds them
fixed. A symmetry that the coordinates keep (a factor analyser's loadings are
determined up to a rotation) makes a whole orbit of fixed points: the map's
Jacobian is 1 along it, ``I − ∂T/∂u`` is singular, and the dense solver
returned NaN; :meth:`~jaxem.Family.gauges` names these directions, and the
solve runs orthogonally to them.

The rule is exact at an exact fixed point: a fit stopped by a loose ``tol``
gives the derivative of the fixed point near which it stopped, with an error of
the order of its distance to it. Converge tightly (``tol`` near the dtype's
resolution, or Aitken's rule) when the derivative matters. The EM map must be
reverse-differentiable (every built-in family's is, except where an M-step
itself iterates in a ``while_loop``: the Student-t mixture's estimated degrees
of freedom).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.sparse import linalg as sparse_linalg

__all__ = ["SOLVERS", "Implicit", "check_implicit", "fixed_point", "with_gradient"]

PyTree = Any

SOLVERS = ("gmres", "bicgstab", "dense")


@dataclasses.dataclass(frozen=True)
class Implicit:
    """Settings of implicit differentiation (static, hashable; ``implicit=True``
    is ``Implicit()``).

    Attributes:
        solver: how ``(I − ∂T/∂u)ᵀ v = ḡ`` is solved: ``"gmres"`` (default,
            restarted GMRES, :func:`jax.scipy.sparse.linalg.gmres`),
            ``"bicgstab"``, or ``"dense"`` (the Jacobian formed from
            ``dim(u)`` vector–Jacobian products and an LU solve: exact, for
            small models).
        tol: the Krylov solvers stop at a residual below ``tol·‖ḡ‖``; ``None``
            (default) is ``1e-10`` in float64 and ``1e-5`` in float32.
        restart: GMRES's Krylov subspace size before a restart (capped at
            ``dim(u)``, where GMRES is exact in one cycle).
        maxiter: at most this many GMRES restarts (BiCGStab: iterations);
            ``None`` is 20 restarts (BiCGStab: ``20·restart`` iterations).

    Example:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> # x <- (x + a) / 2 has the fixed point x* = a, so dx*/da = 1
        >>> def solution(a):
        ...     step = lambda x: ((x + a) / 2, -((x - a) ** 2))
        ...     result = jaxem.iterate(step, None, jnp.asarray(0.0), tol=0.0, max_iter=60,
        ...                            implicit=jaxem.Implicit(solver="dense"))
        ...     return result.params
        >>> float(jax.grad(solution)(jnp.asarray(3.0)))
        1.0
    """

    solver: str = "gmres"
    tol: float | None = None
    restart: int = 50
    maxiter: int | None = None

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"Implicit's solver must be one of {SOLVERS}; got {self.solver!r}")
        if self.tol is not None and not self.tol > 0:
            raise ValueError(f"Implicit's tol must be positive; got {self.tol!r}")
        if not (isinstance(self.restart, int) and self.restart >= 1):
            raise ValueError(f"Implicit's restart must be a positive int; got {self.restart!r}")
        if self.maxiter is not None and not (isinstance(self.maxiter, int) and self.maxiter >= 1):
            raise ValueError(f"Implicit's maxiter must be a positive int; got {self.maxiter!r}")


def check_implicit(implicit: object) -> Implicit | None:
    """``False``/``None`` (off), ``True`` or an :class:`Implicit`, as the static
    option of a loop or a fit."""
    if implicit is None or implicit is False:
        return None
    if implicit is True:
        return Implicit()
    if isinstance(implicit, Implicit):
        return implicit
    raise TypeError(f"implicit must be True, False or a jaxem.Implicit(...); got {implicit!r}")


def _identity_constrain(u: PyTree, like: PyTree) -> PyTree:
    return u


def _zeros_cotangent(tree: PyTree) -> PyTree:
    """Zero cotangents of ``tree`` (``float0`` for integer and boolean leaves)."""

    def zero(a):
        a = jnp.asarray(a)
        if jnp.issubdtype(a.dtype, jnp.inexact):
            return jnp.zeros_like(a)
        return np.zeros(a.shape, jax.dtypes.float0)

    return jax.tree.map(zero, tree)


def _solve(matvec: Callable[[PyTree], PyTree], b: PyTree, config: Implicit) -> PyTree:
    """``x`` with ``matvec(x) = b`` (``b`` a pytree of floating arrays)."""
    flat, unravel = ravel_pytree(b)
    size = flat.shape[0]
    if size == 0:
        return b

    def flat_matvec(v):
        return ravel_pytree(matvec(unravel(v)))[0]

    if config.solver == "dense":
        columns = jax.vmap(flat_matvec)(jnp.eye(size, dtype=flat.dtype))  # rows of Aᵀ
        return unravel(jnp.linalg.solve(columns.T, flat))
    tol = config.tol
    if tol is None:
        tol = 1e-10 if flat.dtype == jnp.float64 else 1e-5
    restart = min(config.restart, size)
    if config.solver == "gmres":
        maxiter = 20 if config.maxiter is None else config.maxiter
        x = _gmres(flat_matvec, flat, tol=tol, restart=restart, maxiter=maxiter)
    else:
        maxiter = 20 * restart if config.maxiter is None else config.maxiter
        x, _ = sparse_linalg.bicgstab(flat_matvec, flat, x0=flat, tol=tol, maxiter=maxiter)
    return unravel(x)


def _gmres(matvec, b, *, tol, restart, maxiter):
    """Restarted GMRES(``restart``) for ``matvec(x) = b`` (flat vectors), from
    ``x = b``, until the residual (GMRES's own estimate) is below ``tol·‖b‖``
    or after ``maxiter`` cycles.

    Written here rather than :func:`jax.scipy.sparse.linalg.gmres` because a
    compiled program is paid for per shape: this one calls ``matvec`` (a
    vector–Jacobian product of a whole EM iteration) from one place, a
    ``fori_loop`` whose first trip computes the cycle's residual and the others
    the Arnoldi vectors, and the program is about half the size. Arnoldi uses
    classical Gram–Schmidt twice; the small least-squares problem an SVD.
    """
    n, m, dtype = b.shape[0], restart, b.dtype
    threshold = tol * jnp.linalg.norm(b)
    rows = jnp.arange(m + 1)

    def cycle(state):
        x, _, k = state

        def trip(j, carry):
            basis, hessenberg, beta = carry
            w = matvec(jnp.where(j == 0, x, basis[j - 1]))
            residual = b - w  # trip 0: the cycle's residual
            column = j - 1  # trips 1..m: Arnoldi column j − 1
            mask = rows <= column
            h = jnp.where(mask, basis @ w, 0)
            w = w - h @ basis
            again = jnp.where(mask, basis @ w, 0)
            w, h = w - again @ basis, h + again
            norm = jnp.linalg.norm(w)
            h = h.at[j].set(norm)
            beta = jnp.where(j == 0, jnp.linalg.norm(residual), beta)
            first = residual / jnp.where(beta > 0, beta, 1)
            vector = jnp.where(j == 0, first, w / jnp.where(norm > 0, norm, 1))
            hessenberg = jnp.where(j == 0, hessenberg, hessenberg.at[:, column].set(h))
            return basis.at[j].set(vector), hessenberg, beta

        start = (jnp.zeros((m + 1, n), dtype), jnp.zeros((m + 1, m), dtype), jnp.zeros((), dtype))
        basis, hessenberg, beta = jax.lax.fori_loop(0, m + 1, trip, start)
        rhs = jnp.zeros(m + 1, dtype).at[0].set(beta)
        y = jnp.linalg.lstsq(hessenberg, rhs)[0]
        estimate = jnp.linalg.norm(rhs - hessenberg @ y)
        return x + y @ basis[:m], estimate, k + 1

    def keep_going(state):
        _, estimate, k = state
        return (estimate > threshold) & (k < maxiter)

    inf = jnp.asarray(jnp.inf, dtype)
    x, _, _ = jax.lax.while_loop(keep_going, cycle, (b, inf, jnp.asarray(0, jnp.int32)))
    return x


def fixed_point(
    em_map: Callable[..., PyTree],
    params: PyTree,
    args: tuple,
    *,
    config: Implicit,
    unconstrain: Callable[[PyTree], PyTree] | None = None,
    constrain: Callable[[PyTree, PyTree], PyTree] | None = None,
    boundary: Callable[[PyTree], PyTree | None] | None = None,
    gauges: Callable[[PyTree], PyTree | None] | None = None,
) -> PyTree:
    """``params``, a fixed point of ``em_map(·, *args)``, differentiable in
    ``args`` by the implicit function theorem (reverse mode).

    Args:
        em_map: ``(params, *args) -> params``, one EM iteration; it must not
            close over traced values (pass them in ``args``: see
            :func:`jax.closure_convert`) and must be reverse-differentiable.
        params: the fixed point, computed without derivatives (for example by
            an EM loop on ``jax.lax.stop_gradient`` inputs); its own
            cotangent is 0.
        args: a tuple of pytrees, what ``em_map`` reads besides ``params``
            (data, weights, hyperparameters); integer leaves get ``float0``
            cotangents.
        config: an :class:`Implicit`.
        unconstrain: ``params -> u`` (default: identity), the coordinates of
            the linear solve.
        constrain: ``(u, like) -> params`` (default: ``u``), its inverse;
            ``like`` are the fixed-point parameters (which components are
            inactive).
        boundary: ``params -> mask`` (default: none), the coordinates of ``u``
            held fixed (:meth:`jaxem.Family.boundary`): their derivative is 0,
            and the linear solve runs over the others.
        gauges: ``params -> directions`` (default: none), directions of ``u``
            along which the model does not change and every point is a fixed
            point (:meth:`jaxem.Family.gauges`, a leading axis of directions):
            the linear solve runs orthogonally to them.

    Returns:
        ``params`` (the same values), carrying the implicit derivative.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxem._src.implicit import Implicit, fixed_point
        >>> # x = (x + a) / 2 has the fixed point x* = a, dx*/da = 1
        >>> def solution(a):
        ...     return fixed_point(lambda x, a: (x + a) / 2, a, (a,), config=Implicit())
        >>> float(jax.grad(solution)(jnp.asarray(3.0)))
        1.0
    """
    to_u = (lambda p: p) if unconstrain is None else unconstrain
    from_u = _identity_constrain if constrain is None else constrain
    # Integer and boolean coordinates (a counter among the parameters) are held
    # as they are: the linear solve runs over the floating ones (their
    # float0 cotangents made ravel_pytree fail)
    to_u, from_u, boundary, gauges = _floating_coordinates(to_u, from_u, boundary, gauges)

    @jax.custom_vjp
    def attach(params, args):
        return params

    def fwd(params, args):
        return params, (params, args)

    def bwd(residuals, cotangent):
        star, args = residuals
        u_star = to_u(star)
        _, constrain_vjp = jax.vjp(lambda u: from_u(u, star), u_star)
        (g_u,) = constrain_vjp(cotangent)
        mask = None if boundary is None else boundary(star)

        def held(v):  # v with the coordinates at the boundary set to 0
            if mask is None:
                return v
            return jax.tree.map(lambda a, m: jnp.where(m, jnp.zeros_like(a), a), v, mask)

        directions = None if gauges is None else gauges(star)
        orthogonal = _orthogonal_to(directions, held, u_star)

        def free(v):  # P v: the boundary's coordinates 0, no part along a gauge
            return orthogonal(held(v))

        def in_u(u, args):
            return to_u(em_map(from_u(u, star), *args))

        # one linearisation of the map for both products (in the solver's
        # loop the cotangent of ``args`` is dead code, which XLA removes)
        _, map_vjp = jax.vjp(in_u, u_star, args)

        # (I − P Jᵀ P) v = P ḡ with P the projection on the free coordinates:
        # v is 0 on the coordinates at the boundary and has no part along a
        # gauge, and (I − J_FFᵀ) v_F = ḡ_F on the others. Along a gauge g the
        # map moves with the point (J g = g), so on the quotient by the gauges
        # I − J is invertible and its adjoint acts on the vectors orthogonal to
        # them: P (I − Jᵀ) P v = P ḡ
        def matvec(v):
            jt_v, _ = map_vjp(free(v))
            return jax.tree.map(jnp.subtract, v, free(jt_v))

        v = _solve(matvec, free(g_u), config)
        _, args_cotangent = map_vjp(free(v))
        return _zeros_cotangent(star), args_cotangent

    attach.defvjp(fwd, bwd)
    return attach(params, tuple(args))


def _floating_coordinates(to_u, from_u, boundary, gauges):
    """``(to_u, from_u, boundary, gauges)`` over the floating leaves of the
    coordinates only (the others ``None``; ``from_u`` takes them from its
    ``like``), where the coordinates have a leaf that is not floating; as given
    otherwise (decided at trace time, from the leaves' dtypes)."""

    def floating(a) -> bool:
        return jnp.issubdtype(jnp.result_type(a), jnp.inexact)

    def only(tree, like):  # tree's leaves where like's are floating
        return jax.tree.map(lambda t, a: t if floating(a) else None, tree, like)

    def keep(p):
        u = to_u(p)
        return all(floating(a) for a in jax.tree.leaves(u))

    def floating_to_u(p):
        u = to_u(p)
        return u if keep(p) else only(u, u)

    def floating_from_u(u, like):
        if keep(like):
            return from_u(u, like)
        full = to_u(like)
        merged = jax.tree.map(
            lambda f, a: a if f is None else f, u, full, is_leaf=lambda x: x is None
        )
        return from_u(merged, like)

    def restricted(hook):  # a mask, or directions with a leading axis, in u's structure
        if hook is None:
            return None

        def hooked(p):
            out = hook(p)
            return out if out is None or keep(p) else only(out, to_u(p))

        return hooked

    return floating_to_u, floating_from_u, restricted(boundary), restricted(gauges)


def gauge_basis(flat: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(rows (G, U), kept (G,))``: an orthonormal basis of the span of the
    flattened gauge directions ``flat`` (G, U) (:meth:`jaxem.Family.gauges`),
    the rows marked ``kept`` (those of a singular value above ``√eps`` of the
    largest: dependent or 0 directions, an inactive component's, count once
    or not at all)."""
    _, singular, rows = jnp.linalg.svd(flat, full_matrices=False)
    return rows, singular > jnp.sqrt(jnp.finfo(flat.dtype).eps) * singular[0]


def _orthogonal_to(
    directions: PyTree | None, held: Callable[[PyTree], PyTree], like: PyTree
) -> Callable[[PyTree], PyTree]:
    """``v ↦ v − Q Qᵀ v`` with ``Q`` an orthonormal basis of the span of
    ``directions`` (a leading axis of directions in the structure of
    ``like``), each first restricted by ``held`` to the free coordinates (so
    that the two projections commute); the identity without directions.
    Directions that are dependent or 0 (an inactive component's) count once
    or not at all."""
    if directions is None:
        return lambda v: v
    _, unravel = ravel_pytree(like)
    rows, kept = gauge_basis(jax.vmap(lambda g: ravel_pytree(held(g))[0])(directions))
    rows = jnp.where(kept[:, None], rows, 0)

    def project(v):
        f = ravel_pytree(v)[0]
        return unravel(f - (rows @ f) @ rows)

    return project


def with_gradient(fn: Callable[..., jax.Array], value: jax.Array, args: tuple) -> jax.Array:
    """``value`` (``fn(*args)``, computed already) with the reverse-mode
    derivative of ``fn`` at ``args``: the log-likelihood of a fit, whose
    gradient flows into the fitted parameters (:func:`fixed_point`) and the
    data, without a second pass in the forward computation."""

    @jax.custom_vjp
    def attach(value, args):
        return value

    def fwd(value, args):
        return value, (value, args)

    def bwd(residuals, cotangent):
        value, args = residuals
        _, vjp = jax.vjp(fn, *args)
        return jnp.zeros_like(value), vjp(cotangent)

    attach.defvjp(fwd, bwd)
    return attach(value, tuple(args))
