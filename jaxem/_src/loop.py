"""The generic Expectation–Maximization loop.

Nothing here knows about a model. A model is a pair of pure functions

* ``e_step(params, x) -> (expectations, log_likelihood)``, where
  ``log_likelihood`` is the mean per-sample log-likelihood of ``x`` under
  ``params`` (a scalar), and
* ``m_step(expectations, x) -> params``,

and :func:`em` iterates them in one :func:`jax.lax.while_loop` until the change
in log-likelihood falls under ``tol`` (or, with ``criterion="aitken"``, the gain
still to come as Aitken's extrapolation predicts it) or ``max_iter`` M-steps
have been done. The data ``x`` may be any pytree.
:func:`iterate` is the same loop over a fused ``step(params) -> (new_params,
log_likelihood)``, for models that compute the E-step and the statistics of the
M-step in one pass over the data.

The stopping rule itself (:class:`LoopState`, :func:`start`, :func:`advance`)
is a set of pure functions, so a loop that must run on the host (EM over data
read from disk) follows exactly the same rule as the compiled one.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxem._src.autodiff import forward_mode_only
from jaxem._src.implicit import check_implicit, fixed_point, with_gradient
from jaxem._src.validation import (
    check_scalar,
    check_static_int,
    concrete,
    stacklevel_outside_jaxem,
)

__all__ = [
    "CONVERGED",
    "CRITERIA",
    "DEGENERATE",
    "MAX_ITER",
    "NONFINITE",
    "STATUS_NAMES",
    "EMResult",
    "LoopState",
    "advance",
    "em",
    "iterate",
    "iterate_statistics",
    "start",
    "status_name",
    "tree_where",
]

PyTree = Any

CRITERIA = ("change", "aitken", "relative")

#: Status codes of :attr:`EMResult.status` (and of a fit's restarts).
CONVERGED = 0  #: the stopping rule held
MAX_ITER = 1  #: ``max_iter`` iterations without the stopping rule holding
NONFINITE = 2  #: the log-likelihood became NaN or infinite; the loop stopped there
DEGENERATE = 3  #: a fit ended on a degenerate optimum (set by the engine, never by the loop)
STATUS_NAMES = ("converged", "max_iter", "nonfinite", "degenerate")

# A change this small relative to the log-likelihood is rounding: the loop has
# reached the resolution of its dtype and stops, whatever ``tol`` says (except
# the change rule with ``tol=0``, which asks for exactly ``max_iter`` iterations).
_ROUNDING_ULPS = 16


def tree_where(pred: jax.Array, a: PyTree, b: PyTree) -> PyTree:
    """``jnp.where(pred, a, b)`` leaf by leaf (``pred`` broadcast to each leaf)."""
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def status_name(status: ArrayLike) -> str:
    """The name of a concrete status code (``"converged"``, ``"max_iter"``, ...)."""
    return STATUS_NAMES[int(status)]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EMResult:
    """The outcome of an EM run; a pytree, so it can be returned from ``jit``/``vmap``.

    Attributes:
        params: the parameters after the last M-step.
        log_likelihood: () mean per-sample log-likelihood of ``params`` (the
            objective the loop monitors: with a prior, the mean log posterior).
        history: (max_iter,) ``history[i]`` is the mean log-likelihood computed in
            the E-step of iteration ``i + 1`` (that is, of the parameters before
            its M-step); NaN after the last iteration.
        n_iter: () int, number of M-steps done.
        converged: () bool, whether the stopping rule held before ``max_iter``
            iterations.
        status: () int32, :data:`CONVERGED`, :data:`MAX_ITER` or
            :data:`NONFINITE` (:func:`status_name` names it).
        n_evals: () int32, passes over the data (E-steps, each giving the
            objective and, with the M-step of its point, one evaluation of the
            EM map) of an accelerated run, where ``n_iter`` counts its cycles
            (:mod:`jaxem._src.acceleration`); ``None`` for plain EM, where it
            is ``n_iter + 1`` (:attr:`evaluations` gives it either way).
    """

    params: PyTree
    log_likelihood: jax.Array
    history: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    status: jax.Array
    n_evals: jax.Array | None = None

    @property
    def evaluations(self) -> jax.Array:
        """Passes over the data, E-steps: :attr:`n_evals` of an accelerated
        run, ``n_iter + 1`` of plain EM (one per iteration and the final one
        that evaluates the returned parameters)."""
        return self.n_iter + 1 if self.n_evals is None else self.n_evals


class LoopState(NamedTuple):
    """The stopping rule's state, carried by the loop (all arrays)."""

    n_iter: jax.Array  # () int32, iterations done
    ll: jax.Array  # () the last log-likelihood (−inf before the first)
    ll_prev: jax.Array  # () the one before
    history: jax.Array  # (max_iter,) NaN after the last iteration
    done: jax.Array  # () bool, the rule held or the log-likelihood is not finite


def start(max_iter: int, dtype: Any) -> LoopState:
    """The state before the first iteration."""
    minus_inf = jnp.asarray(-jnp.inf, dtype)
    return LoopState(
        n_iter=jnp.asarray(0, jnp.int32),
        ll=minus_inf,
        ll_prev=minus_inf,
        history=jnp.full((max_iter,), jnp.nan, dtype),
        done=jnp.asarray(False),
    )


def advance(
    state: LoopState, ll: ArrayLike, tol: ArrayLike, criterion: str, total: ArrayLike | None = None
) -> LoopState:
    """Record the log-likelihood ``ll`` of one more iteration and apply the rule.

    ``"change"``: ``|ll_i − ll_{i−1}| < tol``; ``"aitken"``, ``"relative"``: see
    :func:`iterate` (``total``: the total sample weight N, which makes
    ``"relative"`` mclust's rule exactly).
    Either way a change within rounding of ``ll_i`` (``16·eps·max(1, |ll_i|)``)
    stops the loop (for the change rule only when ``tol > 0``): the dtype cannot
    resolve more. A non-finite ``ll`` stops it too.
    """
    dtype = state.history.dtype
    ll = jnp.asarray(ll, dtype)
    tol = jnp.asarray(tol, dtype)
    change = ll - state.ll
    rounding = _ROUNDING_ULPS * jnp.finfo(dtype).eps * jnp.maximum(1, jnp.abs(ll))
    at_resolution = jnp.abs(change) <= rounding
    if criterion == "change":
        rule = (jnp.abs(change) < tol) | (at_resolution & (tol > 0))
    elif criterion == "relative" and total is None:
        rule = (jnp.abs(change) < tol * jnp.abs(ll)) | at_resolution
    elif criterion == "relative":
        n = jnp.asarray(total, dtype)
        rule = (n * jnp.abs(change) < tol * (1 + n * jnp.abs(ll))) | at_resolution
    else:
        rule = _aitken_gain_below(ll, state.ll, state.ll_prev, tol) | at_resolution
    return LoopState(
        n_iter=state.n_iter + 1,
        ll=ll,
        ll_prev=state.ll,
        # a state of no history (length 0: a loop that keeps it elsewhere) records none
        history=state.history.at[state.n_iter].set(ll) if state.history.size else state.history,
        done=rule | ~jnp.isfinite(ll),
    )


def finish(state: LoopState, params: PyTree, log_likelihood: ArrayLike) -> EMResult:
    """The :class:`EMResult` of a loop that stopped in ``state`` with ``params``."""
    finite = jnp.isfinite(state.ll)
    converged = state.done & finite
    status = jnp.where(converged, CONVERGED, jnp.where(finite, MAX_ITER, NONFINITE))
    return EMResult(
        params=params,
        log_likelihood=jnp.asarray(log_likelihood, state.history.dtype),
        history=state.history,
        n_iter=state.n_iter,
        converged=converged,
        status=status.astype(jnp.int32),
    )


def iterate(
    step: Callable[[PyTree], tuple[PyTree, jax.Array]],
    log_likelihood: Callable[[PyTree], jax.Array] | None,
    params: PyTree,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    criterion: str = "change",
    accelerate: Any = None,
    transform: tuple[Callable[[PyTree], PyTree], Callable[[PyTree], PyTree]] | None = None,
    implicit: Any = False,
) -> EMResult:
    """Iterate ``params <- step(params)`` until a stopping rule holds.

    ``step(params)`` returns the updated parameters and the mean log-likelihood
    ``ll_i`` of ``params`` (computed in its E-step). The loop stops after the
    iteration ``i`` at which ``criterion`` holds, after ``max_iter`` iterations,
    or as soon as ``ll_i`` is not finite (status :data:`NONFINITE`):

    * ``"change"`` (scikit-learn's rule): ``|ll_i - ll_{i-1}| < tol``.
    * ``"aitken"``: the gain from ``ll_{i-1}`` to the limit that Aitken's Δ²
      extrapolation predicts, ``(ll_i - ll_{i-1}) / (1 - a_i)`` with rate
      ``a_i = (ll_i - ll_{i-1}) / (ll_{i-1} - ll_{i-2})``, is below ``tol``
      (Böhning et al. 1994; McNicholas et al. 2010). EM converges linearly, and
      on a flat ridge (``a_i`` near 1) small steps add up to a large gain that
      the change rule ignores; this rule keeps going there. It needs a rate in
      ``[0, 1)`` from three log-likelihoods, so it never stops before the third
      iteration, except at rounding (below).
    * ``"relative"`` (R mclust's rule): ``|ll_i - ll_{i-1}| < tol·|ll_i|``; mclust
      stops at ``|L_i − L_{i−1}| / (1 + |L_i|) ≤ tol`` of the total log-likelihood
      ``L = N·ll``, the same rule but for the ``1/N`` next to ``|ll_i|`` (the
      engine's loops, which know N, apply mclust's rule exactly).

    With any rule a change within rounding of ``ll_i``
    (``16·eps·max(1, |ll_i|)``: about ``2e-6·|ll|`` in float32) stops the loop,
    since the dtype cannot resolve a smaller one; the change rule with
    ``tol=0`` is the exception and runs exactly ``max_iter`` iterations (unless
    the log-likelihood is not finite).

    Args:
        step: pure function ``params -> (new_params, log_likelihood)``.
        log_likelihood: pure function ``params -> mean log-likelihood``, called
            once after the loop to report the likelihood of the returned params;
            or ``None``: the loop then calls ``step`` once more on the returned
            params and keeps its log-likelihood (the step is then compiled once).
        params: starting parameters (any pytree).
        tol: convergence tolerance on the change of the mean log-likelihood; may
            be traced (changing it does not recompile).
        max_iter: maximum number of iterations; static (it fixes ``history``'s
            shape).
        criterion: ``"change"``, ``"aitken"`` or ``"relative"`` (static), see above.
        accelerate: ``None`` (plain iteration, the default), ``"squarem"`` or a
            :class:`jaxem.Squarem` (static): SQUAREM extrapolation of the map
            ``step`` (:mod:`jaxem._src.acceleration`); ``n_iter`` then counts its
            cycles and ``n_evals`` the calls of ``step``, the history holds the
            log-likelihood of each cycle's accepted point, which decreases only
            where two plain steps decrease it.
            ``log_likelihood`` is then unused (the step gives it).
        transform: ``(to_unconstrained, from_unconstrained)``, pure functions
            between ``params`` and the pytree of reals in which SQUAREM
            extrapolates (e.g. log-weights, log-variances); identity by default.
            With ``implicit``, also the coordinates of its linear solve.
        implicit: ``False`` (default: forward mode differentiates the
            iterations run, reverse mode raises), ``True`` or a
            :class:`jaxem.Implicit` (static): reverse mode (``jax.grad``)
            differentiates the returned ``params`` and ``log_likelihood`` by
            the implicit function theorem at the fixed point
            ``params = step(params)[0]`` (:mod:`jaxem._src.implicit`), with
            respect to everything the step reads (closed-over data and
            hyperparameters). Forward mode is then unavailable, and the loop
            itself is not differentiated: converge tightly.

    Returns:
        An :class:`EMResult`.

    Example:
        >>> import jax.numpy as jnp, jaxem
        >>> # a "model" whose log-likelihood climbs to 0 as -0.5**i
        >>> result = jaxem.iterate(lambda g: (g / 2, -g), lambda g: -g, jnp.asarray(1.0),
        ...                        tol=1e-3)
        >>> int(result.n_iter), bool(result.converged)
        (11, True)
    """
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    check_criterion(criterion)
    if accelerate is not None:
        from jaxem._src.acceleration import check_accelerate

        accelerate = check_accelerate(accelerate)
    implicit = check_implicit(implicit)
    unconstrain, constrain = _transform_pair(transform)
    if not callable(step) or not (log_likelihood is None or callable(log_likelihood)):
        raise TypeError(
            "iterate(step, log_likelihood, params, ...) takes two functions first; got "
            f"{type(step).__name__} and {type(log_likelihood).__name__}"
        )
    _, ll_shape = jax.eval_shape(step, params)
    if getattr(ll_shape, "shape", None) != ():
        raise ValueError(
            "the log-likelihood returned by the step must be a scalar; got "
            f"{getattr(ll_shape, 'shape', type(ll_shape).__name__)}"
        )
    dtype = ll_shape.dtype
    if criterion == "change":
        warn_if_unresolvable(tol, dtype)
    tol = jnp.asarray(tol, dtype)
    # The loop runs inside forward_mode_only (forward mode as JAX derives it, a
    # clear error in reverse mode); values the steps close over become explicit
    # arguments, so their derivatives are kept.
    step, step_consts = jax.closure_convert(step, params)
    ll_consts: tuple = ()
    if log_likelihood is not None:
        log_likelihood, ll_consts = jax.closure_convert(log_likelihood, params)

    def run(params, tol, step_consts, ll_consts):
        def one_step(p):
            return step(p, *step_consts)

        def cond(carry):
            state, _ = carry
            return (state.n_iter < max_iter) & ~state.done

        def body(carry):
            state, p = carry
            new_params, ll = one_step(p)
            return advance(state, ll, tol, criterion), new_params

        if log_likelihood is not None and accelerate is None:
            state, params = jax.lax.while_loop(cond, body, (start(max_iter, dtype), params))
            return finish(state, params, log_likelihood(params, *ll_consts))

        # Without a separate log-likelihood function the loop runs the step once
        # more on the final parameters and keeps only its log-likelihood: the step
        # (a pass over the data) then appears once in the compiled program, not
        # twice. It is the statistics loop below with the step's new parameters
        # as the "statistics".
        return iterate_statistics(
            lambda new_params, _: new_params,
            one_step,
            params,
            params,
            False,
            tol=tol,
            max_iter=max_iter,
            criterion=criterion,
            accelerate=accelerate,
            unconstrain=unconstrain,
            constrain=constrain,
        )

    if implicit is None:
        return forward_mode_only(run)(params, tol, step_consts, ll_consts)
    # The loop runs on inputs without derivatives; the fixed point it reaches
    # carries the implicit derivative with respect to the step's inputs.
    stopped = jax.lax.stop_gradient((params, step_consts, ll_consts))
    result = forward_mode_only(run)(stopped[0], tol, stopped[1], stopped[2])
    fitted = fixed_point(
        lambda p, consts: step(p, *consts)[0], result.params, (step_consts,),
        config=implicit, unconstrain=unconstrain, constrain=constrain,
    )  # fmt: skip
    if log_likelihood is None:
        ll = with_gradient(
            lambda p, consts: step(p, *consts)[1], result.log_likelihood, (fitted, step_consts)
        )
    else:
        ll = with_gradient(
            lambda p, consts: log_likelihood(p, *consts), result.log_likelihood, (fitted, ll_consts)
        )
    return dataclasses.replace(result, params=fitted, log_likelihood=ll)


def _transform_pair(transform):
    """``(unconstrain, constrain(u, like))`` from a user's ``(to, from)`` pair."""
    if transform is None:
        return None, None
    if not (isinstance(transform, tuple) and len(transform) == 2 and all(map(callable, transform))):
        raise TypeError(
            "transform must be a pair of functions (to_unconstrained, from_unconstrained); got "
            f"{transform!r}"
        )
    to_u, from_u = transform
    return to_u, lambda u, like: from_u(u)


class Carry(NamedTuple):
    """The carry of EM as a loop over statistics (:func:`iterate_statistics`); a
    host loop over data read from disk carries the same (:func:`next_params`,
    :func:`record`, :func:`end`)."""

    state: LoopState
    params: PyTree  # the last evaluated parameters (at the end: the returned ones)
    stats: PyTree  # what evaluating them gave besides the log-likelihood
    have_stats: jax.Array  # () bool, False before a parameter start is evaluated
    final_ll: jax.Array  # () the log-likelihood of ``params`` once finished
    finished: jax.Array  # () bool


def begin(params: PyTree, stats: PyTree, have_stats: ArrayLike, max_iter: int, dtype: Any) -> Carry:
    """The carry before the first iteration: from ``params`` (``have_stats``
    False; ``stats`` is a placeholder of the right structure) or from ``stats``
    (True; ``params`` is what :func:`iterate_statistics`'s ``maximize`` reads
    with them, for example the frame the statistics are taken in)."""
    nan = jnp.asarray(jnp.nan, dtype)
    false = jnp.asarray(False)
    return Carry(start(max_iter, dtype), params, stats, jnp.asarray(have_stats), nan, false)


def next_params(carry: Carry, maximize: Callable[[PyTree, PyTree], PyTree]) -> PyTree:
    """The parameters the next iteration evaluates: ``maximize(stats, params)``
    (the M-step), or the starting parameters before their first evaluation."""
    new = maximize(carry.stats, carry.params)
    return tree_where(carry.have_stats, new, carry.params)


def record(
    carry: Carry,
    params: PyTree,
    stats: PyTree,
    ll: ArrayLike,
    *,
    tol: ArrayLike,
    max_iter: int,
    criterion: str,
    total: ArrayLike | None = None,
) -> Carry:
    """The evaluation ``(stats, ll)`` of ``params`` applied to the carry.

    While the rule has not stopped the loop, ``ll`` is recorded in the history;
    the evaluation after it stopped is that of the final parameters (one M-step
    past the last recorded one, as scikit-learn returns them) and finishes.
    Calling it on a finished carry is an error the caller avoids (the loop stops,
    or :func:`keep_finished` discards the result).
    """
    state = carry.state
    dtype = state.history.dtype
    stopped = state.done | (state.n_iter >= max_iter)
    advanced = advance(state, ll, tol, criterion, total)
    return Carry(
        state=tree_where(stopped, state, advanced),
        params=params,
        stats=stats,
        have_stats=jnp.ones_like(carry.have_stats),
        final_ll=jnp.where(stopped, jnp.asarray(ll, dtype), carry.final_ll),
        finished=carry.finished | stopped,
    )


def keep_finished(old: Carry, new: Carry) -> Carry:
    """``new``, except where ``old`` had finished: a batch of loops runs until
    its last one stops, and the others must not move (``vmap`` of a
    ``while_loop`` does this itself; a host loop calls it)."""
    return tree_where(old.finished, old, new)


def end(carry: Carry) -> EMResult:
    """The :class:`EMResult` of a finished carry."""
    return finish(carry.state, carry.params, carry.final_ll)


def iterate_statistics(
    maximize: Callable[[PyTree, PyTree], PyTree],
    evaluate: Callable[[PyTree], tuple[PyTree, jax.Array]],
    params: PyTree,
    stats: PyTree,
    have_stats: ArrayLike,
    *,
    tol: ArrayLike,
    max_iter: int,
    criterion: str = "change",
    accelerate: Any = None,
    unconstrain: Callable[[PyTree], PyTree] | None = None,
    constrain: Callable[[PyTree, PyTree], PyTree] | None = None,
    total: ArrayLike | None = None,
) -> EMResult:
    """EM as a loop over statistics: ``params ← maximize(stats, params)``,
    ``(stats, ll) ← evaluate(params)``, with :func:`iterate`'s stopping rule.

    The loop can start from parameters (``have_stats`` False: they are evaluated
    first) or from statistics (True: the first M-step makes the parameters, as
    initial responsibilities do), so an initialisation needs no M-step of its
    own. Each iteration runs ``maximize`` and ``evaluate`` once; after the rule
    stops the loop one more iteration gives the returned parameters and their
    log-likelihood. Traceable; the engine's loop.

    ``accelerate`` (static): ``None`` (plain EM), ``"squarem"`` or a
    :class:`~jaxem._src.acceleration.Squarem`: SQUAREM extrapolation in the
    coordinates ``unconstrain(params)`` (``constrain(u, like)`` maps back;
    identity by default), see :func:`~jaxem._src.acceleration.iterate_squarem`.
    """
    if accelerate is not None:
        from jaxem._src import acceleration

        return acceleration.iterate_squarem(
            maximize, evaluate, params, stats, have_stats, tol=tol, max_iter=max_iter,
            criterion=criterion, config=acceleration.check_accelerate(accelerate),
            unconstrain=unconstrain, constrain=constrain, total=total,
        )  # fmt: skip
    dtype = jax.eval_shape(lambda p: evaluate(p)[1], params).dtype
    tol = jnp.asarray(tol, dtype)

    def body(carry):
        new = next_params(carry, maximize)
        new_stats, ll = evaluate(new)
        return record(
            carry, new, new_stats, ll, tol=tol, max_iter=max_iter, criterion=criterion, total=total
        )

    carry = begin(params, stats, have_stats, max_iter, dtype)
    return end(jax.lax.while_loop(lambda c: ~c.finished, body, carry))


def resolution(dtype: Any) -> float:
    """The smallest change of a mean log-likelihood of order one that ``dtype``
    resolves (``16·eps``): the loop stops at it whatever ``tol`` is."""
    return _ROUNDING_ULPS * float(jnp.finfo(dtype).eps)


def warn_if_unresolvable(tol: ArrayLike, dtype: Any) -> None:
    """Warn when a concrete ``tol`` is below what ``dtype`` resolves of a mean
    log-likelihood of order one (``16·eps``): the loop then stops at the
    dtype's resolution instead (and says converged), not at ``tol``. The
    warning names the caller's line outside jaxem."""
    value = concrete(tol)
    floor = resolution(dtype)
    if value is not None and 0 < float(value) < floor:
        remedy = (
            ' Enable float64 (jax.config.update("jax_enable_x64", True), data as float64) '
            "for tighter tolerances."
            if jnp.finfo(dtype).bits < 64
            else ""
        )
        warnings.warn(
            f"tol={float(value):.3g} is below the resolution of a {jnp.dtype(dtype).name} mean "
            f"log-likelihood (about {floor:.1g} × |log-likelihood|): EM stops when the change "
            f"reaches that resolution instead.{remedy}",
            UserWarning,
            stacklevel=stacklevel_outside_jaxem(),
        )


def check_criterion(criterion: object) -> None:
    """Raise unless ``criterion`` is one of :data:`CRITERIA`."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")


def _aitken_gain_below(ll, ll_prev, ll_prev2, tol):
    """Aitken's rule (see :func:`iterate`) from the last three log-likelihoods."""
    step = ll - ll_prev
    before = ll_prev - ll_prev2
    usable = jnp.isfinite(before) & (before > 0)
    rate = step / jnp.where(usable, before, 1)
    usable &= (rate >= 0) & (rate < 1)
    gain = step / jnp.where(usable, 1 - rate, 1)
    return usable & (gain < tol)


def em(
    e_step: Callable[[PyTree, PyTree], tuple[PyTree, jax.Array]],
    m_step: Callable[[PyTree, PyTree], PyTree],
    params: PyTree,
    x: PyTree,
    *,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    criterion: str = "change",
    accelerate: Any = None,
    transform: tuple[Callable[[PyTree], PyTree], Callable[[PyTree], PyTree]] | None = None,
    implicit: Any = False,
) -> EMResult:
    """Run Expectation–Maximization from ``params`` on data ``x``.

    Each iteration ``i`` computes ``expectations, ll_i = e_step(params, x)`` and
    then ``params = m_step(expectations, x)``; the loop stops after the M-step of
    the first iteration with ``|ll_i - ll_{i-1}| < tol`` (scikit-learn's rule; or
    Aitken's rule with ``criterion="aitken"``, see :func:`iterate`), or after
    ``max_iter`` iterations. Works eagerly, under ``jax.jit`` and under
    ``jax.vmap`` (each batch element stops on its own criterion).

    Forward mode (``jax.jvp``, ``jax.jacfwd``) differentiates the iterations
    run. Reverse mode (``jax.grad``) does not pass through the loop (a
    ``lax.while_loop``); with ``implicit=True`` it differentiates the fixed
    point instead, by the implicit function theorem, with respect to ``x``
    and anything the steps close over (``reg_covar``, sample weights, a prior).

    Args:
        e_step: ``(params, x) -> (expectations, mean log-likelihood)``.
        m_step: ``(expectations, x) -> params``; bind hyperparameters with
            :func:`functools.partial`.
        params: starting parameters (any pytree).
        x: the data, any pytree of arrays (for example ``(x, mask)`` or a dict),
            passed unchanged to both steps.
        tol: tolerance on the change of the mean log-likelihood (traced).
        max_iter: maximum number of iterations (static).
        criterion: ``"change"`` (default) or ``"aitken"`` (static).
        accelerate: ``None`` (plain EM, the default), ``"squarem"`` or a
            :class:`jaxem.Squarem` (static): SQUAREM (Varadhan & Roland 2008)
            with its monotonicity safeguard, see :func:`iterate`.
        transform: ``(to_unconstrained, from_unconstrained)`` for SQUAREM's
            extrapolation and the implicit solve (identity by default), see
            :func:`iterate`.
        implicit: ``False`` (default), ``True`` or a :class:`jaxem.Implicit`
            (static): reverse-mode derivatives of ``params`` and
            ``log_likelihood`` by the implicit function theorem at the fixed
            point (see :func:`iterate`); converge tightly.

    Returns:
        An :class:`EMResult`; ``result.log_likelihood`` is the mean
        log-likelihood of the returned ``result.params``.

    Example:
        >>> import functools, jax, jax.numpy as jnp, jaxem
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> start = gmm.make_params(jnp.array([0.5, 0.5]),
        ...                         jnp.array([[-1.0, 0.0], [1.0, 0.0]]),
        ...                         jnp.stack([jnp.eye(2)] * 2))
        >>> result = jaxem.em(gmm.e_step, gmm.m_step, start, x, tol=1e-4)
        >>> bool(result.converged)
        True
    """
    if not callable(e_step) or not callable(m_step):
        raise TypeError(
            "em(e_step, m_step, params, x, ...) takes the two step functions first; got "
            f"{type(e_step).__name__} and {type(m_step).__name__}"
        )
    x = jax.tree.map(jnp.asarray, x)
    _check_step_order(e_step, m_step, params, x)

    def step(p):
        expectations, ll = e_step(p, x)
        return m_step(expectations, x), ll

    return iterate(
        step, None, params, tol=tol, max_iter=max_iter, criterion=criterion,
        accelerate=accelerate, transform=transform, implicit=implicit,
    )  # fmt: skip


def _check_step_order(e_step, m_step, params, x) -> None:
    """Trace one iteration abstractly; a clear error when the steps are swapped or
    do not return what the loop needs."""
    try:
        out = jax.eval_shape(e_step, params, x)
    except Exception as error:
        raise TypeError(
            f"e_step(params, x) failed on the starting parameters: {error}. jaxem.em takes "
            "(e_step, m_step, params, x): is the order of the steps or arguments swapped?"
        ) from error
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            "e_step must return (expectations, mean log-likelihood); got "
            f"{type(out).__name__}. jaxem.em takes (e_step, m_step, params, x): are the "
            "steps swapped?"
        )
    expectations, ll = out
    if getattr(ll, "shape", None) != ():
        raise ValueError(
            "the log-likelihood returned by e_step must be a scalar; got "
            f"{getattr(ll, 'shape', type(ll).__name__)}"
        )
    new = jax.eval_shape(m_step, expectations, x)
    if jax.tree.structure(new) != jax.tree.structure(params):
        raise TypeError(
            "m_step(expectations, x) must return parameters of the same structure as the "
            f"starting params; got {jax.tree.structure(new)} for {jax.tree.structure(params)}"
        )
