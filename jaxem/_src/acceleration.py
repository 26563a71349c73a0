"""Acceleration of the EM map θ ↦ M(E(θ)) in the generic loop: SQUAREM.

EM converges linearly, and slowly where components overlap (the fraction of
missing information is large). SQUAREM (Varadhan & Roland 2008, "Simple and
globally convergent methods for accelerating the convergence of any EM
algorithm", Scand. J. Statist. 35) extrapolates from two EM steps: from
``θ₀``, ``θ₁ = F(θ₀)`` and ``θ₂ = F(θ₁)``,

    r = θ₁ − θ₀,   v = θ₂ − 2θ₁ + θ₀,   α = ‖r‖ / ‖v‖   (their scheme S3),
    θ' = θ₀ + 2α r + α² v

(the paper writes ``α = −‖r‖/‖v‖`` and ``θ' = θ₀ − 2αr + α²v``; the same point),
with ``α`` clamped to ``[step_min, step_max]``. When ``|α − 1| > 0.01`` a plain
EM step from ``θ'`` stabilises it, ``θ_new = F(θ')``; the objective of
``θ_new`` must not fall below that of ``θ₀`` by more than ``objective_slack``,
otherwise the cycle falls back to ``θ_new = θ₂`` (two plain EM steps, which
never decrease it in exact arithmetic; where they do, because an M-step is not
an ascent step of the monitored objective — ``reg_covar`` large against the
data's variances, or a start that is not a fixed point of the map under a new
``reg_covar`` — the cycle takes them as plain EM would, so that SQUAREM ends
at EM's fixed points: it stopped there at ``θ₀`` until 2026-12-08, and a
refit under a doubled ``reg_covar`` returned its start as converged).
``step_max`` adapts as in the R package SQUAREM (Varadhan 2021, ``squarem1``):
it starts at ``step_max0``, is multiplied by ``mstep`` each time ``α`` reaches
it, and divided by ``mstep`` (not below ``step_max0``) when an extrapolation at
``step_max`` is rejected.

A family's fit extrapolates in the parameters' own coordinates, as the package
does, and a point outside the parameter space (:meth:`jaxem.Family.valid`: a
negative weight or rate, a probability above 1) is rejected like a decrease; or,
with ``Squarem(coordinates="unconstrained")``, in the family's unconstrained
coordinates (:meth:`jaxem.Family.unconstrain`: log-weights, log-rates, logits,
the log diagonal of precision Cholesky factors), where every point is valid.
A component of weight 0 stays inactive either way (its coordinates are 0 in all
three points, or masked).

One loop iteration is one pass over the data (one E-step, whose objective comes
with it, and the M-step of the point it evaluated), and the loop is a small
state machine over the roles of the points it evaluates, so that under ``vmap``
a batch of restarts does no wasted pass, and the number of passes equals the
package's count of fixed-point evaluations (an objective evaluation at a point
shares the pass of the map evaluated there next). The stopping rule and the
history are those of the plain loop (:func:`jaxem._src.loop.advance`), applied
once per SQUAREM cycle to the objective of the accepted point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src import loop

__all__ = [
    "ACCELERATIONS",
    "COORDINATES",
    "Squarem",
    "check_accelerate",
    "family_coordinates",
    "iterate_squarem",
]

PyTree = Any

ACCELERATIONS = (None, "squarem")
COORDINATES = ("natural", "unconstrained")


@dataclasses.dataclass(frozen=True)
class Squarem:
    """SQUAREM's settings (static, hashable; ``accelerate="squarem"`` is ``Squarem()``).

    The defaults are the R package's (``step.min0``, ``step.max0``, ``mstep``),
    except ``objective_slack``: the package accepts a cycle whose objective
    falls by up to ``objfn.inc = 1`` (a summed log-likelihood); jaxem accepts
    none (0), so the monitored objective decreases only where plain EM's own
    steps decrease it (module docstring).

    Attributes:
        step_min0: lower bound of the step length ``α`` (1: at least two EM steps' worth).
        step_max0: initial upper bound of ``α``.
        mstep: factor by which the upper bound grows when ``α`` reaches it.
        objective_slack: how far (in the units of the monitored objective, a
            mean per unit of sample weight) the objective of a cycle's point may
            fall below the previous one before the cycle falls back to two EM
            steps. 0 keeps the history nondecreasing.
        coordinates: where a family's fit extrapolates (``jaxem.fit``; for
            :func:`jaxem.em` the ``transform`` argument decides):
            ``"natural"`` (default), the parameters themselves, as the R package
            does, a point outside the parameter space
            (:meth:`jaxem.Family.valid`) being rejected like a decrease; or
            ``"unconstrained"``, :meth:`jaxem.Family.unconstrain` (log-weights,
            log-rates, logits, log-diagonal Cholesky factors), where every
            point is valid. On experiment 1's overlapping Gaussians and on
            Hasselblad's Poisson mixture the natural coordinates needed fewer
            passes (experiments/acceleration.py): a small weight is extrapolated
            along a straight line instead of exponentially.
    """

    step_min0: float = 1.0
    step_max0: float = 1.0
    mstep: float = 4.0
    objective_slack: float = 0.0
    coordinates: str = "natural"

    def __post_init__(self):
        if not (self.step_max0 >= self.step_min0 and self.mstep > 1 and self.objective_slack >= 0):
            raise ValueError(
                "Squarem needs step_max0 >= step_min0, mstep > 1 and objective_slack >= 0; got "
                f"{self}"
            )
        if self.coordinates not in COORDINATES:
            raise ValueError(
                f"Squarem's coordinates must be one of {COORDINATES}; got {self.coordinates!r}"
            )


def check_accelerate(accelerate: object) -> Squarem | None:
    """``None``, ``"squarem"`` or a :class:`Squarem` as the loop's static option."""
    if accelerate is None or isinstance(accelerate, Squarem):
        return accelerate
    if accelerate == "squarem":
        return Squarem()
    raise ValueError(f"accelerate must be None, 'squarem' or a Squarem(...); got {accelerate!r}")


def identity_constrain(u: PyTree, like: PyTree) -> PyTree:
    """The default inverse transform: the coordinates are the parameters."""
    return u


def family_coordinates(family: Any, config: Squarem):
    """``(unconstrain, constrain(u, like))`` of a family's fit: its own
    coordinates, or the parameters themselves with a point outside the
    parameter space made NaN (its objective is then not finite: rejected)."""
    if config.coordinates == "unconstrained":
        return family.unconstrain, family.constrain

    def constrain(u, like):
        ok = family.valid(u)
        return jax.tree.map(
            lambda a: jnp.where(ok, a, jnp.nan) if jnp.issubdtype(a.dtype, jnp.floating) else a, u
        )

    return (lambda p: p), constrain


# Roles of the point the last pass evaluated (what the next pass evaluates):
_START = 0  # nothing yet: the next pass evaluates the starting point (a base)
_BASE = 1  # θ₀, the cycle's base (recorded): next F(θ₀) = θ₁
_FIRST = 2  # θ₁: next the extrapolated θ' (or, |α − 1| ≤ 0.01, the candidate θ')
_EXTRAPOLATED = 3  # θ': next its stabilising step F(θ'), the candidate
_REJECTED = 4  # a candidate below the base: next θ₂ (the fallback, a base)

# |α − 1| at most this: θ' is (nearly) θ₂ and is not stabilised (the package's 0.01).
_NO_STABILISATION = 0.01


class SquaremCarry(NamedTuple):
    """The carry of :func:`iterate_squarem` (leaves are arrays)."""

    state: loop.LoopState  # the stopping rule over the recorded (base) objectives
    point: PyTree  # the parameters the last pass evaluated
    stats: PyTree  # their statistics (F(point) = maximize(stats, point))
    have_stats: jax.Array  # () bool: a start from statistics (role _START only)
    role: jax.Array  # () int32, the role of ``point`` (above)
    base: PyTree  # θ₀ of the current cycle
    base_ll: jax.Array  # () its objective
    saved: PyTree  # θ₂ of the current cycle (the fallback)
    alpha: jax.Array  # () the step length of the current cycle
    step_min: jax.Array  # ()
    step_max: jax.Array  # ()
    n_evals: jax.Array  # () int32, passes done
    final_ll: jax.Array  # () the objective of ``point`` once finished
    finished: jax.Array  # () bool


def begin(params: PyTree, stats: PyTree, have_stats: ArrayLike, max_iter: int, dtype: Any,
          config: Squarem) -> SquaremCarry:  # fmt: skip
    """The carry before the first pass (as :func:`jaxem._src.loop.begin`)."""
    nan = jnp.asarray(jnp.nan, dtype)
    return SquaremCarry(
        state=loop.start(max_iter, dtype),
        point=params,
        stats=stats,
        have_stats=jnp.asarray(have_stats),
        role=jnp.asarray(_START, jnp.int32),
        base=params,
        base_ll=nan,
        saved=params,
        alpha=jnp.asarray(1, dtype),
        step_min=jnp.asarray(config.step_min0, dtype),
        step_max=jnp.asarray(config.step_max0, dtype),
        n_evals=jnp.asarray(0, jnp.int32),
        final_ll=nan,
        finished=jnp.asarray(False),
    )


def _select(index: jax.Array, *trees: PyTree) -> PyTree:
    """``trees[index]`` leaf by leaf (``index`` traced)."""
    return jax.tree.map(lambda *leaves: jnp.choose(index, leaves, mode="clip"), *trees)


def _sum_squares(tree: PyTree) -> jax.Array:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))


def extrapolate(theta0, theta1, theta2, step_min, step_max, unconstrain, constrain):
    """SQUAREM's S3 point from ``θ₀, θ₁ = F(θ₀), θ₂ = F(θ₁)`` in unconstrained
    coordinates: ``(θ', α)`` with ``α = clip(‖r‖/‖v‖, step_min, step_max)``."""
    u0, u1, u2 = unconstrain(theta0), unconstrain(theta1), unconstrain(theta2)
    r = jax.tree.map(jnp.subtract, u1, u0)
    v = jax.tree.map(lambda a, b, c: (c - b) - (b - a), u0, u1, u2)
    sr2, sv2 = _sum_squares(r), _sum_squares(v)
    alpha = jnp.sqrt(sr2 / jnp.where(sv2 > 0, sv2, 1))
    alpha = jnp.where(sv2 > 0, alpha, step_max)  # the package: ‖r‖/0 = ∞, clamped
    alpha = jnp.clip(alpha, step_min, step_max).astype(step_max.dtype)
    u = jax.tree.map(lambda a, dr, dv: a + 2 * alpha * dr + alpha**2 * dv, u0, r, v)
    # like θ₂, the M-step's output: the exact zeros it keeps (inactive
    # components, probabilities of 0 or 1) and only those (a start's exact 0s
    # that a prior moves off the boundary must not stay there)
    return constrain(u, theta2), alpha


def next_point(
    carry: SquaremCarry,
    maximize: Callable[[PyTree, PyTree], PyTree],
    unconstrain: Callable[[PyTree], PyTree],
    constrain: Callable[[PyTree, PyTree], PyTree],
) -> tuple[PyTree, SquaremCarry]:
    """The parameters the next pass evaluates, and the carry with the cycle's
    extrapolation recorded. One M-step (``maximize`` of the last pass) each."""
    mapped = maximize(carry.stats, carry.point)  # F(point)
    start = loop.tree_where(carry.have_stats, mapped, carry.point)
    extrapolated, alpha = extrapolate(
        carry.base, carry.point, mapped, carry.step_min, carry.step_max, unconstrain, constrain
    )
    role = carry.role
    # _START: the start; _BASE, _EXTRAPOLATED: F(point); _FIRST: θ'; _REJECTED: θ₂
    point = _select(role, start, mapped, extrapolated, mapped, carry.saved)
    first = role == _FIRST
    return point, carry._replace(
        saved=loop.tree_where(first, mapped, carry.saved),
        alpha=jnp.where(first, alpha, carry.alpha),
    )


def record(
    carry: SquaremCarry,
    point: PyTree,
    stats: PyTree,
    ll: ArrayLike,
    *,
    tol: ArrayLike,
    max_iter: int,
    criterion: str,
    config: Squarem,
    total: ArrayLike | None = None,
) -> SquaremCarry:
    """The pass ``(stats, ll)`` of ``point`` (from :func:`next_point`) applied:
    the cycle's state machine, the step-length rule and, for a new base, the
    stopping rule (:func:`jaxem._src.loop.advance`; ``total``, the total sample
    weight, for the ``"relative"`` rule)."""
    dtype = carry.state.history.dtype
    ll = jnp.asarray(ll, dtype)
    role = carry.role
    state = carry.state
    stopped = state.done | (state.n_iter >= max_iter)

    # What the point just evaluated is.
    stabilise = jnp.abs(carry.alpha - 1) > _NO_STABILISATION
    is_candidate = ((role == _FIRST) & ~stabilise) | (role == _EXTRAPOLATED)
    accept = jnp.isfinite(ll) & (ll >= carry.base_ll - config.objective_slack)
    rejected = is_candidate & ~accept
    # θ₂, the fallback, is a base even below θ₀: two EM steps never decrease the
    # objective in exact arithmetic, and where an M-step is no ascent step of it
    # (reg_covar) plain EM takes them too
    is_base = (role == _START) | (role == _REJECTED) | (is_candidate & accept)
    is_base &= ~stopped  # after the rule stopped, the pass is the final one

    # The package's step-length rule, once per cycle (when its candidate is judged).
    alpha, step_max, step_min = carry.alpha, carry.step_max, carry.step_min
    shrink = rejected & (alpha == step_max)
    step_max = jnp.where(shrink, jnp.maximum(config.step_max0, step_max / config.mstep), step_max)
    alpha = jnp.where(rejected, 1, alpha).astype(dtype)
    judged = is_candidate & ~stopped
    step_max = jnp.where(judged & (alpha == step_max), config.mstep * step_max, step_max)
    step_min = jnp.where(
        judged & (step_min < 0) & (alpha == step_min), config.mstep * step_min, step_min
    )

    advanced = loop.advance(state, ll, tol, criterion, total)
    new_role = jnp.where(
        is_base,
        _BASE,
        jnp.where(
            rejected, _REJECTED, jnp.where((role == _FIRST) & stabilise, _EXTRAPOLATED, _FIRST)
        ),
    ).astype(jnp.int32)
    state = loop.tree_where(is_base, advanced, state)
    return SquaremCarry(
        state=state,
        point=point,
        stats=stats,
        have_stats=jnp.zeros_like(carry.have_stats),
        role=new_role,
        base=loop.tree_where(is_base, point, carry.base),
        base_ll=jnp.where(is_base, ll, carry.base_ll),
        saved=carry.saved,
        alpha=jnp.where(judged, alpha, carry.alpha),
        step_min=step_min,
        step_max=step_max,
        n_evals=carry.n_evals + 1,
        final_ll=jnp.where(stopped, ll, carry.final_ll),
        finished=carry.finished | stopped,
    )


def end(carry: SquaremCarry) -> loop.EMResult:
    """The :class:`~jaxem.EMResult` of a finished carry."""
    return dataclasses.replace(
        loop.finish(carry.state, carry.point, carry.final_ll), n_evals=carry.n_evals
    )


def iterate_squarem(
    maximize: Callable[[PyTree, PyTree], PyTree],
    evaluate: Callable[[PyTree], tuple[PyTree, jax.Array]],
    params: PyTree,
    stats: PyTree,
    have_stats: ArrayLike,
    *,
    tol: ArrayLike,
    max_iter: int,
    criterion: str = "change",
    config: Squarem,
    unconstrain: Callable[[PyTree], PyTree] | None = None,
    constrain: Callable[[PyTree, PyTree], PyTree] | None = None,
    total: ArrayLike | None = None,
) -> loop.EMResult:
    """:func:`jaxem._src.loop.iterate_statistics` accelerated by SQUAREM.

    ``n_iter`` counts SQUAREM cycles (each records the objective of its
    accepted point in ``history``; at most ``max_iter``), ``n_evals`` the passes
    over the data (``evaluate`` calls; 2 to 4 per cycle, plus the final pass
    that evaluates the returned parameters, one M-step past the last recorded
    point as in the plain loop). ``unconstrain(params) -> u`` and
    ``constrain(u, like) -> params`` (``like``: the cycle's θ₂ = F(F(θ₀)), for
    parameters that are not coordinates, such as which components are
    inactive) give the coordinates of the extrapolation; identity by default.
    """
    unconstrain = (lambda p: p) if unconstrain is None else unconstrain
    constrain = identity_constrain if constrain is None else constrain
    dtype = jax.eval_shape(lambda p: evaluate(p)[1], params).dtype
    tol = jnp.asarray(tol, dtype)

    def body(carry):
        point, carry = next_point(carry, maximize, unconstrain, constrain)
        new_stats, ll = evaluate(point)
        return record(
            carry, point, new_stats, ll, tol=tol, max_iter=max_iter, criterion=criterion,
            config=config, total=total,
        )  # fmt: skip

    carry = begin(params, stats, have_stats, max_iter, dtype, config)
    return end(jax.lax.while_loop(lambda c: ~c.finished, body, carry))
