"""The engine: restarts, screening and refinement, degenerate restarts, the choice
of the best restart and model selection, written once for every family and source.

A fit is one pipeline (:func:`pipeline`):

1. the source summarises the data (:meth:`Family.summarize`, summed over chunks
   or devices) into the family's context, and the family binds the
   hyperparameters that depend on the data and K (:meth:`Family.bind`);
2. the ``n_init`` restarts are initialised (:func:`initial_stats`: one
   ``vmap`` per initialisation method), as statistics: the loop's first M-step
   turns them into parameters, so initialisation has no M-step of its own;
3. the source runs EM on the batch of restarts until scikit-learn's change rule
   (or the caller's ``criterion``) stops each (the screening);
4. the ``n_refine`` best non-degenerate restarts continue until Aitken's rule
   says less than ``refine_tol`` is left to gain (the refinement); in memory,
   steps 3 and 4 are one loop (:func:`run_em_refined`: one copy of the
   iteration to compile);
5. the best non-degenerate restart is chosen (:func:`best_of`).

The objective the loop monitors is computed in one place, :func:`objective`:
the summed log-likelihood plus the log prior, per unit of sample weight.
For a source whose passes are traceable (in memory, several devices) the
pipeline is one compiled program; for data read from disk the same pipeline runs
on the host, its pure pieces compiled.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src import acceleration, loop
from jaxem._src.family import Family, InitResp, log_weights
from jaxem._src.loop import EMResult
from jaxem._src.validation import check_scalar, check_static_int

__all__ = [
    "REFINE_MAX_ITER",
    "REFINE_TOL",
    "FitResult",
    "SelectionResult",
    "best_of",
    "context_count",
    "criterion_score",
    "default_n_refine",
    "em_map",
    "initial_stats",
    "objective",
    "pipeline",
    "selection_scores",
]

PyTree = Any

# Defaults of the refinement of the best restarts: Aitken's rule at 1e-6 per
# sample and at most 1000 more iterations.
REFINE_TOL = 1e-6
REFINE_MAX_ITER = 1000


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitResult:
    """The best of ``n_init`` restarts of EM.

    Attributes:
        params: parameters of the chosen restart.
        log_likelihood: () its mean per-sample log-likelihood (with a prior, the
            mean log posterior).
        history: (max_iter,), or (max_iter + refine_max_iter,) when restarts
            were refined: its per-iteration log-likelihoods, the refinement's
            following the screening's (NaN after the end).
        n_iter: () its number of EM iterations (screening and refinement).
        converged: () whether it converged: within ``max_iter`` by the change
            rule, or, if it was refined, within ``refine_max_iter`` by Aitken's rule.
        status: () int32 status of the chosen restart: :data:`jaxem.CONVERGED`,
            :data:`~jaxem.MAX_ITER`, :data:`~jaxem.NONFINITE` or
            :data:`~jaxem.DEGENERATE` (:attr:`status_name` names it).
        restart_log_likelihoods: (n_init,) final mean log-likelihood of every
            restart (after refinement for the refined ones).
        restart_status: (n_init,) the status of every restart.
        best_restart: () index of the chosen restart.
        fast_path: () whether the family's fast formulation is accurate at the
            chosen parameters (the Gaussian family's moment passes about the
            data's mean: a conservative answer where large in-memory data
            centres its features chunk by chunk and each chunk is checked in
            the pass itself; always True for families with a single
            formulation).
        restart_initializers: (n_init,) int32 index into :attr:`init_methods`
            of the method that started each restart, −1 for starts given by the
            caller (:attr:`initializer` names the chosen one).
        restart_degenerate: (n_init,) whether each restart ended degenerate
            (:meth:`Family.degenerate`); such restarts are chosen only if all are.
        restart_refined: (n_init,) whether each restart was refined.
        n_evals: () passes over the data of the chosen restart when EM was
            accelerated (``n_iter`` then counts its SQUAREM cycles); ``None``
            for plain EM (:attr:`evaluations` gives it either way).
        init_methods: static, the family's initialisation methods.
    """

    params: PyTree
    log_likelihood: jax.Array
    history: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    status: jax.Array
    restart_log_likelihoods: jax.Array
    restart_status: jax.Array
    best_restart: jax.Array
    fast_path: jax.Array
    restart_initializers: jax.Array
    restart_degenerate: jax.Array
    restart_refined: jax.Array
    n_evals: jax.Array | None = None
    init_methods: tuple[str, ...] = dataclasses.field(default=(), metadata=dict(static=True))

    @property
    def evaluations(self) -> jax.Array:
        """Passes over the data of the chosen restart: :attr:`n_evals` when
        accelerated; for plain EM one per iteration and one for the returned
        parameters of each loop (``n_iter + 1``, ``n_iter + 2`` if refined)."""
        if self.n_evals is not None:
            return self.n_evals
        best = jnp.asarray(self.best_restart)[..., None]
        refined = jnp.take_along_axis(jnp.asarray(self.restart_refined), best, axis=-1)[..., 0]
        return self.n_iter + 1 + refined

    @property
    def initializer(self) -> str | np.ndarray:
        """Name of the initialisation method of the chosen restart ("given" for a
        start passed by the caller); an array of names for a batch of fits."""
        codes = np.asarray(self.restart_initializers)
        best = np.asarray(self.best_restart)
        chosen = np.take_along_axis(codes, best[..., None], axis=-1)[..., 0]
        names = np.asarray([*self.init_methods, "given"], dtype=object)
        picked = names[np.where(chosen >= 0, chosen, len(self.init_methods))]
        return picked if isinstance(picked, str) else np.asarray(picked)

    @property
    def degenerate(self) -> jax.Array:
        """Whether the chosen restart is degenerate (batched results: per fit)."""
        best = jnp.asarray(self.best_restart)
        return jnp.take_along_axis(self.restart_degenerate, best[..., None], axis=-1)[..., 0]

    @property
    def status_name(self) -> str | np.ndarray:
        """The name of :attr:`status` (an array of names for a batch of fits)."""
        names = np.asarray(loop.STATUS_NAMES, dtype=object)[np.asarray(self.status)]
        return names if isinstance(names, str) else np.asarray(names)


def objective(
    family: Family,
    params: PyTree,
    stats: PyTree,
    ll_sum: jax.Array,
    total: jax.Array,
    criterion: str | None = None,
) -> jax.Array:
    """The objective EM monitors, per unit of sample weight, from a pass at
    ``params``: :meth:`Family.objective`, by default ``(Σ_n w_n log p(x_n | θ)
    + log p(θ)) / Σ_n w_n`` (the mean log-likelihood without a prior, the mean
    log posterior with one), or the mean log-likelihood alone where the family
    watches that for the stopping rule ``criterion`` (:meth:`Family.watches_prior`).
    Every loop computes it here."""
    if criterion is not None and not family.watches_prior(criterion):
        return ll_sum / family.total_weight(stats, total)
    return family.objective(params, stats, ll_sum, total)


class Starts(NamedTuple):
    """Where a batch of EM runs starts (leading axis over restarts): statistics
    from initial responsibilities and the frame the family's M-step reads with
    them (``have_stats`` True), or parameters to evaluate first (False)."""

    params: PyTree
    stats: PyTree
    have_stats: jax.Array


def from_params(reduce: Callable, params: PyTree) -> Starts:
    """:class:`Starts` at given parameters (a batch), with placeholder statistics."""
    one = jax.tree.map(lambda a: a[0], params)
    shapes = jax.eval_shape(lambda p: reduce(p)[0], one)
    n = jax.tree.leaves(params)[0].shape[0]
    stats = jax.tree.map(lambda s: jnp.zeros((n, *s.shape), s.dtype), shapes)
    return Starts(params, stats, jnp.zeros(n, bool))


def run_cycle(family: Family, params: PyTree, context: PyTree, reduce: Callable) -> PyTree:
    """The family's conditional cycle after an M-step gave ``params``
    (:attr:`Family.has_cycle`; ``params`` as they are without one), as a
    ``while_loop`` of passes: ``reduce(params, view) -> (stats, Σ w log p, Σ w)``
    sums ``view``'s pass over all the data."""
    if not family.has_cycle:
        return params

    def body(state):
        stats = reduce(params, family.cycle_view(state))[0]
        return family.cycle_update(state, stats, params)

    state = jax.lax.while_loop(family.cycle_running, body, family.cycle_start(params, context))
    return family.cycle_finish(state, params, context)


def _loop_steps(
    family: Family, reduce: Callable, context: PyTree, starts: Starts | PyTree, criterion: str
):
    """``(starts, maximize, evaluate)`` of the engine's loop over a source's
    summed pass ``reduce``: the starts as :class:`Starts`, the M-step (with the
    family's conditional cycle) and the pass with its :func:`objective`."""
    if not isinstance(starts, Starts):
        starts = from_params(reduce, starts)

    def maximize(stats, params):
        return run_cycle(family, family.maximize(stats, params, context), context, reduce)

    def evaluate(params):
        stats, ll_sum, total = reduce(params)
        return stats, objective(family, params, stats, ll_sum, total, criterion)

    return starts, maximize, evaluate


def run_em(
    family: Family,
    reduce: Callable,
    context: PyTree,
    starts: Starts | PyTree,
    *,
    tol: ArrayLike,
    max_iter: int,
    criterion: str,
    accelerate: Any = None,
    sequential: bool = False,
) -> EMResult:
    """EM from a batch of starts (leading axis), one compiled ``while_loop``
    each under ``vmap`` (``sequential``, static: one after the other, see
    :func:`in_sequence`; a batch of one: the loop itself, which is cheaper to
    trace and compile than a ``vmap`` of it): the loop of every traceable
    source. ``reduce(params) -> (stats, Σ w log p, Σ w)`` is the source's pass
    summed over the data; the monitored value is :func:`objective`;
    ``reduce(params, view)`` sums another family's pass (a conditional
    cycle's, :func:`run_cycle`, which follows every M-step). ``accelerate``
    (static): ``None`` or SQUAREM in the family's unconstrained coordinates
    (:meth:`~jaxem.Family.unconstrain`)."""
    starts, maximize, evaluate = _loop_steps(family, reduce, context, starts, criterion)

    unconstrain = constrain = None
    if accelerate is not None:
        unconstrain, constrain = acceleration.family_coordinates(family, accelerate)

    total = context_count(context) if criterion == "relative" else None

    def one(start):
        return loop.iterate_statistics(
            maximize, evaluate, start.params, start.stats, start.have_stats,
            tol=tol, max_iter=max_iter, criterion=criterion, accelerate=accelerate,
            unconstrain=unconstrain, constrain=constrain, total=total,
        )  # fmt: skip

    if sequential:
        return jax.lax.map(one, starts)
    if starts.have_stats.shape[0] == 1:
        return _one_of_a_batch(one, starts)
    return jax.vmap(one)(starts)


def _one_of_a_batch(fn, *batches):
    """``fn`` on the only element of batches of one (leading axis), its output with
    the axis back: the loop itself rather than a ``vmap`` of one, which is cheaper
    to trace and compile."""
    out = fn(*jax.tree.map(lambda a: a[0], batches))
    return jax.tree.map(lambda a: a[None], out)


def run_em_refined(
    family: Family,
    reduce: Callable,
    context: PyTree,
    starts: Starts | PyTree,
    *,
    tol: ArrayLike,
    max_iter: int,
    criterion: str,
    refine_tol: ArrayLike,
    refine_max_iter: int,
    n_refine: int,
    sequential: bool = False,
) -> tuple[EMResult, jax.Array]:
    """:func:`run_em`'s screening of a batch of starts and then :func:`refine`
    of its ``n_refine`` best, as one ``while_loop`` of ``n_refine`` slots
    computed as one ``vmap`` (one slot when ``sequential``, static: see
    :func:`in_sequence`).

    One copy of the EM iteration in the program instead of two (less to trace
    and compile: Old Faithful's fit program, ``n_init=10``, tracing 1.0 → 0.4 s
    and XLA compilation 2.9–3.6 → 2.7 s; 5000 × 8's, one restart at a time,
    tracing 1.1 → 0.8 s and compilation 4.9–5.3 → 3.0–3.5 s), and the same
    results as the two loops (up to rounding where the batch differs). A slot
    whose restart's screening stops (``criterion``, ``tol``, ``max_iter``) takes
    the next restart, so the screening computes no stopped restart until the
    last ones. Once every screening has stopped, the ``n_refine`` best by
    :func:`selection_scores` take the slots in turn and continue with Aitken's
    rule (``refine_tol``, at most ``refine_max_iter`` more iterations, the
    first of which records the screening's final log-likelihood, as
    :func:`refine` re-evaluates its start); the others keep their results.
    The slots' restarts are written back to the pool of all restarts only when
    one of them stops (a ``cond``): each iteration touches only the slots.

    Returns:
        ``(results, which restarts were refined)``, as :func:`refine`.
    """
    starts, maximize, evaluate = _loop_steps(family, reduce, context, starts, criterion)

    total = context_count(context) if criterion == "relative" else None
    one = jax.tree.map(lambda a: a[0], starts.params)
    dtype = jax.eval_shape(lambda p: evaluate(p)[1], one).dtype
    tol, refine_tol = jnp.asarray(tol, dtype), jnp.asarray(refine_tol, dtype)
    n = starts.have_stats.shape[0]
    screening, refining, kept = 0, 1, 2  # a restart's phase

    def step(carry, phase, limit):  # one iteration of one restart
        new = loop.next_params(carry, maximize)
        stats, ll = evaluate(new)
        screened = loop.record(
            carry, new, stats, ll, tol=tol, max_iter=max_iter, criterion=criterion, total=total
        )
        refined = loop.record(
            carry, new, stats, ll, tol=refine_tol, max_iter=limit, criterion="aitken"
        )
        # the two differ only in the rule's part of the carry
        use = phase == refining
        moved = screened._replace(
            state=loop.tree_where(use, refined.state, screened.state),
            final_ll=jnp.where(use, refined.final_ll, screened.final_ll),
            finished=jnp.where(use, refined.finished, screened.finished),
        )
        if sequential:  # a slot's restart is never finished: its stop frees the slot
            return moved
        return loop.keep_finished(carry, moved)  # a slot idle at the end

    def resume(carry):  # as refine() starts: its first evaluation is the last one
        minus_inf = jnp.full_like(carry.state.ll, -jnp.inf)
        fresh = carry.state._replace(ll=minus_inf, ll_prev=minus_inf, done=False)
        state = loop.advance(fresh, carry.final_ll, refine_tol, "aitken")
        return carry._replace(state=state, finished=jnp.zeros_like(carry.finished))

    width = 1 if sequential else n_refine

    def take(pool, slots):
        return jax.tree.map(lambda a: a[slots], pool)

    def choose(pool, order):  # the screening is over: the best are queued for the slots
        carry, _, limit = pool
        bad = jax.vmap(lambda p: family.degenerate(p, context))(carry.params)
        top = jax.lax.top_k(selection_scores(carry.final_ll, bad), n_refine)[1]
        top = top.astype(jnp.int32)
        chosen = jnp.zeros(n, bool).at[top].set(True)
        carry = jax.vmap(loop.tree_where)(chosen, jax.vmap(resume)(carry), carry)
        limit = jnp.where(chosen, carry.state.n_iter - 1 + refine_max_iter, limit)
        phase = jnp.where(chosen, refining, kept).astype(jnp.int32)
        queued = jnp.asarray(n + width, jnp.int32)
        return (carry, phase, limit), top[:width], order.at[n:].set(top), queued

    def exchange(state):
        """The slots' restarts back into the pool; a slot whose restart has
        stopped takes the next one queued: the restarts in order for the
        screening, then the refined ones."""
        pool, current, slots, order, queued, _ = state
        pool = jax.tree.map(lambda a, b: a.at[slots].set(b), pool, current)
        carry, phase, _ = pool
        end = jnp.where(jnp.any(phase == screening), n, n + n_refine)
        free = current[0].finished
        nxt = queued + jnp.cumsum(free) - 1
        slots = jnp.where(free & (nxt < end), order[jnp.minimum(nxt, n + n_refine - 1)], slots)
        slots = slots.astype(jnp.int32)
        queued = jnp.minimum(queued + jnp.sum(free, dtype=jnp.int32), end).astype(jnp.int32)
        over = jnp.any(phase == screening) & jnp.all(carry.finished)
        pool, slots, order, queued = jax.lax.cond(
            over, lambda: choose(pool, order), lambda: (pool, slots, order, queued)
        )
        done = jnp.all(pool[0].finished)
        return pool, take(pool, slots), slots, order, queued, done

    length = max_iter + refine_max_iter

    def body(state):
        *state, history = state
        pool, current, slots, order, queued, done = state
        if sequential:
            moved = _one_of_a_batch(step, *current)
        else:
            moved = jax.vmap(step)(*current)
        # the pool is only touched when a slot's restart stops
        stopped = jnp.any(moved.finished & ~current[0].finished)
        state = pool, (moved, *current[1:]), slots, order, queued, done
        state = jax.lax.cond(stopped, exchange, lambda s: s, state)
        # The histories live here, outside the cond and the restarts' carries
        # (whose histories have length 0): each iteration writes one entry per
        # slot, the last log-likelihood its restart recorded (a resumed
        # restart's comes from choose()). Carried in the restarts, every
        # iteration copied all of them, ``length`` entries each, where the
        # cond is a select (under vmap, as in select()).
        _, (carried, *_), slots, *_ = state
        recorded = carried.state
        index = jnp.where(recorded.n_iter > 0, recorded.n_iter - 1, length)  # none: dropped
        history = history.at[slots, index].set(recorded.ll, mode="drop")
        return *state, history

    carry = jax.vmap(lambda s: loop.begin(s.params, s.stats, s.have_stats, 0, dtype))(starts)
    phase = jnp.full(n, screening, jnp.int32)
    limit = jnp.full(n, max_iter, jnp.int32)
    pool = carry, phase, limit
    order = jnp.concatenate([jnp.arange(n), jnp.zeros(n_refine, int)]).astype(jnp.int32)
    slots = order[:width]
    queued, done = jnp.asarray(width, jnp.int32), jnp.asarray(False)
    history = jnp.full((n, length), jnp.nan, dtype)
    state = pool, take(pool, slots), slots, order, queued, done, history
    (carry, phase, _), *_, history = jax.lax.while_loop(lambda s: ~s[-2], body, state)
    carry = carry._replace(state=carry.state._replace(history=history))
    return jax.vmap(loop.end)(carry), phase == refining


# Restarts run one after the other (lax.map) rather than as one vmap when the
# data's elements times one restart's parameter count reach this (a full
# Gaussian mixture: N·D·K·D², from 5 000 × 8 with K = 5; an HMM counts every
# frame). A vmapped while_loop runs every restart until the slowest stops, and
# a batch whose restarts choose different formulations computes both; one after
# the other, each restart runs its own iterations with its own choice (100 000 ×
# 16, K = 16, n_init=10: 24.5 → 13.5 s; 5 000 × 8, K = 5, far apart: 182–190 → 131–137
# ms; default gmm.fit, float32, 2 cores). Below
# this, a pass costs little more than the loop's fixed cost per iteration, which
# the vmap's restarts share (experiments/end_to_end.py --phases).
SEQUENTIAL_MIN_WORK = 2**23


def in_sequence(data: PyTree, starts: Starts | PyTree) -> bool:
    """Whether the restarts ``starts`` (leading axis) on ``data`` (the source's
    arrays) run one after the other (:data:`SEQUENTIAL_MIN_WORK`)."""
    params = starts.params if isinstance(starts, Starts) else starts
    leaves = jax.tree.leaves(params)
    batch = leaves[0].shape[0]
    per_restart = sum(leaf.size for leaf in leaves) // max(batch, 1)
    size = sum(leaf.size for leaf in jax.tree.leaves(data))
    return batch > 1 and size * per_restart >= SEQUENTIAL_MIN_WORK


def restart_layout(data: PyTree, starts: Starts | PyTree) -> tuple[bool, int]:
    """``(sequential, width)``: whether the restarts run one after the other
    (:func:`in_sequence`), and how many of them each pass computes at once (the
    ``batch`` a source sizes its chunks for)."""
    sequential = in_sequence(data, starts)
    return sequential, 1 if sequential else jax.tree.leaves(starts)[0].shape[0]


def context_count(context: PyTree) -> jax.Array | None:
    """The total sample weight recorded in a family's context (``count``: the
    ``N`` of the criteria and of the relative stopping rule; frames for an HMM),
    or None if it records none."""
    if isinstance(context, dict):
        return context.get("count")
    return getattr(context, "count", None)


def em_map(family: Family, source: Any, n_active: ArrayLike, params: PyTree):
    """One EM iteration over all the data of a traceable ``source`` (in memory)
    from ``params``, as a pure function of the family (its hyperparameters),
    the source (data and sample weights) and ``params``: ``(M(params),
    objective(params))``. The data's context and the data-dependent
    hyperparameters (:meth:`Family.bind`) are recomputed from the source, so
    derivatives with respect to the data pass through them; the family's
    reverse-differentiable configuration (:meth:`Family.differentiable`)
    computes it: the map whose fixed point :mod:`jaxem._src.implicit`
    differentiates."""
    family = family.differentiable().one_pass()
    context = source.context(family)
    bound = family.bind(context, n_active)
    prepared = source.prepare(bound, context)
    stats, ll_sum, total = source.reduce(bound, params, prepared, context, 1)
    return bound.maximize(stats, params, context), objective(bound, params, stats, ll_sum, total)


# ----------------------------------------------------------------- initialisation


def initial_stats(
    family: Family,
    key: jax.Array,
    x: Any,
    w: jax.Array,
    context: PyTree,
    *,
    n_components: int,
    n_active: jax.Array,
    methods: Sequence[str],
) -> tuple[Starts, jax.Array]:
    """The restarts' starting statistics (leading axis) and their method codes
    (indices into ``family.init_methods``): :meth:`~jaxem.Family.initial_stats`
    with restart ``i`` using ``jax.random.split(key, len(methods))[i]`` and
    ``methods[i]``. The first M-step of the loop turns the statistics into
    parameters.
    """
    keys = jax.random.split(key, len(methods))
    stats, frames = family.initial_stats(keys, x, w, n_components, n_active, methods, context)
    return Starts(frames, stats, jnp.ones(len(methods), bool)), method_codes(family, methods)


def initial_resp(
    view: Family,
    source: Any,
    key: jax.Array,
    n_active: jax.Array,
    *,
    n_components: int,
    methods: Sequence[str],
    keys: jax.Array | None = None,
) -> InitResp:
    """The restarts' starting responsibilities on ``source``'s initialisation
    rows (:class:`~jaxem._src.family.InitResp`), by the family view ``view``
    (:meth:`Family.init_view`): what :func:`initial_stats` computes before the
    statistics, with the same keys (``keys``: the restarts' own, where some of
    the restarts :func:`initial_stats` would start are computed apart, see
    :func:`init_tasks`)."""
    context = source.context(view)
    x, w = source.init_data(key)
    if keys is None:
        keys = jax.random.split(key, len(methods))
    return view.initial_resp(keys, x, w, n_components, n_active, tuple(methods), context)


def init_tasks(view: Family, methods: Sequence[str], n_samples: int) -> tuple[tuple[int, ...], ...]:
    """The restarts of ``methods`` (static) in parts whose starting
    responsibilities can be computed apart, at the same time (one program
    each, from threads of their own: :func:`jaxem._src.api.fit`): each
    restart of an agglomeration on a random subset, and all other restarts
    together. An agglomeration is a loop of ``m − 1`` small dependent steps
    that keeps one core busy (XLA:CPU runs the loops of one program one
    after another, and one program at a time from one thread); the
    k-means and random starts are a few wide operations. An agglomeration of
    all rows (at most :data:`~jaxem._src.init.HC_MAX_SAMPLES`, computed once
    for its restarts) stays with the others: on Old Faithful, ``n_init=10``,
    its part of its own saved under a millisecond of a 16 ms later call and
    its program added 0.25 s to the first.

    Returns:
        The parts as tuples of restart indices, the agglomerations first (one
        part: nothing to compute apart).
    """
    from jaxem._src.init import batching

    groups: dict[tuple[str, ...], list[int]] = {}
    for i, method in enumerate(methods):
        groups.setdefault(view.init_group(method), []).append(i)
    tasks: list[tuple[int, ...]] = []
    rest: list[int] = []
    for group, ix in groups.items():
        if batching(group, n_samples) == "map":
            tasks.extend((i,) for i in ix)
        else:
            rest.extend(ix)
    if rest:
        tasks.append(tuple(sorted(rest)))
    return tuple(tasks)


def joined_resp(parts: Sequence[InitResp], tasks: Sequence[Sequence[int]]) -> InitResp:
    """One :class:`~jaxem._src.family.InitResp` of the restarts of ``tasks``
    (:func:`init_tasks`) from each task's own: their groups one after
    another, restart ``tasks[t][j]`` at its place among task ``t``'s."""
    position = [0] * sum(len(ix) for ix in tasks)
    offset = 0
    for part, ix in zip(parts, tasks, strict=True):
        for j, i in enumerate(ix):
            position[i] = offset + part.position[j]
        offset += len(ix)
    return InitResp(
        rows=tuple(rows for part in parts for rows in part.rows),
        resp=tuple(resp for part in parts for resp in part.resp),
        position=tuple(position),
        labels=tuple(part.is_labels(g) for part in parts for g in range(len(part.rows))),
    )


def starts_from_resp(
    family: Family, resp: InitResp, x: Any, w: jax.Array, context: PyTree, methods
) -> tuple[Starts, jax.Array]:
    """:func:`initial_stats` from responsibilities :func:`initial_resp` computed."""
    stats, frames = family.batch_init_stats(resp, x, w, context)
    return Starts(frames, stats, jnp.ones(len(methods), bool)), method_codes(family, methods)


def method_codes(family: Family, methods: Sequence[str]) -> jax.Array:
    """(B,) the restarts' methods as indices into ``family.init_methods``."""
    return jnp.asarray([family.init_methods.index(m) for m in methods], jnp.int32)


def init_methods_for(
    family: Family, init: str, n_init: int, n_samples: int, n_features: int | None = None
) -> tuple[str, ...]:
    """The static method of every restart: ``family.portfolio`` for ``"auto"``
    (``n_features``: the data's columns where it is one (N, D) array)."""
    if init == "auto":
        return family.portfolio(n_init, n_samples, n_features)
    return (init,) * n_init


def check_init(family: Family, init: object) -> str:
    allowed = (*family.init_methods, "auto")
    if not isinstance(init, str) or init not in allowed:
        raise ValueError(f"init method must be one of {allowed}; got {init!r}")
    return init


# ------------------------------------------------------------ choosing restarts


def selection_scores(log_likelihood: ArrayLike, bad: ArrayLike) -> jax.Array:
    """Restarts' final log-likelihoods ranked for choosing: NaN and (unless every
    restart is) degenerate restarts at −∞. A likelihood spike on a singular
    component is an artefact of regularisation, not a better optimum."""
    log_likelihood, bad = jnp.asarray(log_likelihood), jnp.asarray(bad)
    score = jnp.where(jnp.isnan(log_likelihood), -jnp.inf, log_likelihood)
    score = jnp.where(bad & ~jnp.all(bad), -jnp.inf, score)
    return _snap_ties(score)


def _snap_ties(score: jax.Array) -> jax.Array:
    """Scores within rounding of each other made equal (each becomes the highest
    score within ``64·eps·max(1, |score|)`` of it), so that ``argmax`` and
    ``top_k`` break ties by the lowest index. Two restarts that reach the same
    optimum (often with the labels permuted) differ only in the last bits, which
    change with the order of floating-point operations: under ``vmap``, on
    another source or device. Without this the chosen restart would too."""
    tol = 64 * jnp.finfo(score.dtype).eps * jnp.maximum(1.0, jnp.abs(score))
    # −∞ (NaN, degenerate) is near nothing: its tolerance would be ∞, and a
    # degenerate restart ahead of the best one would take its score and be chosen
    tol = jnp.where(jnp.isfinite(score), tol, 0)
    near = jnp.abs(score[..., None, :] - score[..., :, None]) <= tol[..., :, None]
    return jnp.max(jnp.where(near, score[..., None, :], score[..., :, None]), axis=-1)


def degenerate_restarts(family: Family, results: EMResult, context: PyTree) -> jax.Array:
    """:meth:`Family.degenerate` of every restart of ``results``."""
    return jax.vmap(lambda p: family.degenerate(p, context))(results.params)


def default_n_refine(n_init: int) -> int:
    """Restarts refined by default: none for a single fit, else a quarter
    (rounded up) of the restarts. Measured on Old Faithful, iris and wine with
    ``n_init=20`` (experiments/refinement.py, 56 cells × 8 keys): refining the
    best restart after screening reaches the best known optimum in 359 of 448
    runs, the best quarter in 364 and every restart in 377, at 5–6 times the
    time of the quarter (the batch runs until its slowest restart stops)."""
    return 0 if n_init == 1 else -(-n_init // 4)


def check_refine(n_refine, refine_tol, refine_max_iter, n_init) -> tuple[int, int]:
    """Validate the refinement arguments; returns the static ``(n_refine,
    refine_max_iter)`` with the default ``n_refine`` resolved."""
    if n_refine is None:
        n_refine = default_n_refine(n_init)
    n_refine = check_static_int("n_refine", n_refine, minimum=0)
    if n_refine > n_init:
        raise ValueError(f"n_refine={n_refine} must be <= n_init={n_init}")
    check_scalar("refine_tol", refine_tol)
    refine_max_iter = check_static_int("refine_max_iter", refine_max_iter, minimum=1)
    return n_refine, refine_max_iter


@functools.partial(jax.jit, static_argnames=("n_refine",))
def _top(results: EMResult, bad: jax.Array, *, n_refine: int):
    top = jax.lax.top_k(selection_scores(results.log_likelihood, bad), n_refine)[1]
    return top, jax.tree.map(lambda a: a[top], results.params)


@jax.jit
def _merge(results: EMResult, more: EMResult, top: jax.Array):
    history = jnp.pad(
        results.history, ((0, 0), (0, more.history.shape[1])), constant_values=jnp.nan
    )
    continued = jax.vmap(lambda h, r, n: jax.lax.dynamic_update_slice(h, r, (n,)))(
        history[top], more.history, results.n_iter[top]
    )
    merged = EMResult(
        params=jax.tree.map(lambda a, b: a.at[top].set(b), results.params, more.params),
        log_likelihood=results.log_likelihood.at[top].set(more.log_likelihood),
        history=history.at[top].set(continued),
        n_iter=results.n_iter.at[top].add(more.n_iter),
        converged=results.converged.at[top].set(more.converged),
        status=results.status.at[top].set(more.status),
        n_evals=None if results.n_evals is None else results.n_evals.at[top].add(more.n_evals),
    )
    refined = jnp.zeros(results.n_iter.shape, bool).at[top].set(True)
    return merged, refined


def refine(
    family: Family,
    results: EMResult,
    context: PyTree,
    run: Callable[[PyTree], EMResult],
    n_refine: int,
) -> tuple[EMResult, jax.Array]:
    """Continue the ``n_refine`` best restarts and merge them back.

    The screened restarts are ranked by :func:`selection_scores`, as
    :func:`best_of` ranks them; ``run(starts)`` continues the best ``n_refine``
    from where they stopped, as one batch, with Aitken's rule. Their results
    replace theirs in ``results``; each history continues after its own last
    screening iteration.

    Returns:
        ``(merged results, which restarts were refined)``.
    """
    bad = _degenerate(family, results, context)
    top, starts = _top(results, bad, n_refine=n_refine)
    return _merge(results, run(starts), top)


@jax.jit
def _degenerate(family, results, context):
    return degenerate_restarts(family, results, context)


@jax.jit
def best_of(
    family: Family,
    results: EMResult,
    codes: jax.Array,
    refined: jax.Array,
    context: PyTree,
) -> FitResult:
    """The :class:`FitResult` of the best restart: the highest final objective
    among the non-degenerate restarts (among all if every one is)."""
    bad = degenerate_restarts(family, results, context)
    if results.log_likelihood.shape[0] == 1:  # nothing to choose
        best = jnp.asarray(0, jnp.int32)
        chosen = jax.tree.map(lambda a: a[0], results)
    else:
        best = jnp.argmax(selection_scores(results.log_likelihood, bad)).astype(jnp.int32)
        chosen = jax.tree.map(
            lambda a: jax.lax.dynamic_index_in_dim(a, best, keepdims=False), results
        )
    status = jnp.where(bad, loop.DEGENERATE, results.status).astype(jnp.int32)
    return FitResult(
        params=chosen.params,
        log_likelihood=chosen.log_likelihood,
        history=chosen.history,
        n_iter=chosen.n_iter,
        converged=chosen.converged,
        status=status[best],
        restart_log_likelihoods=results.log_likelihood,
        restart_status=status,
        best_restart=best,
        fast_path=family.fast(chosen.params, context),
        restart_initializers=codes,
        restart_degenerate=bad,
        restart_refined=refined,
        n_evals=chosen.n_evals,
        init_methods=tuple(family.init_methods),
    )


# ---------------------------------------------------------------------- pipeline


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The static configuration of a fit (hashable: a jit static argument)."""

    n_components: int
    methods: tuple[str, ...]
    max_iter: int
    n_refine: int
    refine_max_iter: int
    criterion: str = "change"
    accelerate: Any = None  # None or an acceleration.Squarem (hashable)


def pipeline(
    family: Family,
    source: Any,
    key: jax.Array,
    n_active: jax.Array,
    tol: jax.Array,
    refine_tol: jax.Array,
    config: FitConfig,
    starts: PyTree | None = None,
    resp: jax.Array | None = None,
) -> tuple[FitResult, Family, PyTree]:
    """Steps 1–5 of the module docstring for any family and source.

    ``source`` provides ``context(family)``, ``init_data(key)``,
    ``prepare(family, context)`` and ``run(family, prepared, context, starts,
    tol=, max_iter=, criterion=)`` (:mod:`jaxem._src.sources`), ``starts`` a
    :class:`Starts` or a batch of parameters. With ``starts`` (a batch of
    parameters) the initialisation is skipped and their codes are −1; with
    ``resp`` (:func:`initial_resp`, computed apart) only its statistics are.

    Returns:
        ``(the fit, the family with its data-dependent hyperparameters bound,
        the data context)``.
    """
    context = source.context(family)
    family = family.bind(context, n_active)
    if starts is None and resp is not None:
        x_init, w_init = source.init_data(key)
        starts, codes = starts_from_resp(family, resp, x_init, w_init, context, config.methods)
    elif starts is None:
        x_init, w_init = source.init_data(key)
        limit = family.max_components(x_init)
        if config.n_components > limit:  # chunks: the rows of positive weight read
            raise ValueError(
                f"n_components={config.n_components} must be <= the number of samples ({limit})"
            )
        starts, codes = source.compile(initial_stats)(
            family,
            key,
            x_init,
            w_init,
            context,
            n_components=config.n_components,
            n_active=n_active,
            methods=config.methods,
        )
    else:
        codes = jnp.full(jax.tree.leaves(starts)[0].shape[0], -1, jnp.int32)
    prepared = source.prepare(family, context, n_components=config.n_components)
    in_one_loop = getattr(source, "refines_in_loop", lambda accelerate: False)
    if config.n_refine and in_one_loop(config.accelerate):
        results, refined = source.run_refined(
            family, prepared, context, starts, tol=tol, max_iter=config.max_iter,
            criterion=config.criterion, refine_tol=refine_tol,
            refine_max_iter=config.refine_max_iter, n_refine=config.n_refine,
        )  # fmt: skip
        return best_of(family, results, codes, refined, context), family, context
    results = source.run(
        family,
        prepared,
        context,
        starts,
        tol=tol,
        max_iter=config.max_iter,
        criterion=config.criterion,
        accelerate=config.accelerate,
    )
    refined = jnp.zeros(results.n_iter.shape, bool)
    if config.n_refine:

        def run(params):
            return source.run(
                family,
                prepared,
                context,
                params,
                tol=refine_tol,
                max_iter=config.refine_max_iter,
                criterion="aitken",
                accelerate=config.accelerate,
            )

        results, refined = refine(family, results, context, run, config.n_refine)
    return best_of(family, results, codes, refined, context), family, context


# -------------------------------------------------------------------- selection


def criterion_score(
    criterion: str,
    n_parameters: jax.Array,
    log_likelihood: jax.Array,
    n_samples: ArrayLike,
    classification: ArrayLike = 0.0,
) -> jax.Array:
    """BIC ``−2 N ℓ + p log N``, AIC ``−2 N ℓ + 2 p`` or ICL ``BIC − 2 C`` from the
    mean log-likelihood ℓ over ``N`` samples and, for ICL, ``C = Σ_n log max_k
    r_nk`` (:func:`classification_log_likelihood`); lower is better."""
    n_samples = jnp.asarray(n_samples, log_likelihood.dtype)
    penalty = 2 * n_parameters if criterion == "aic" else n_parameters * jnp.log(n_samples)
    score = -2 * n_samples * log_likelihood + penalty
    if criterion == "icl":
        score = score - 2 * classification
    return score


def classification_log_likelihood(family: Family, params: PyTree, x: Any, w: jax.Array):
    """() ``Σ_n w_n log max_k r_nk``: the log-probability of the MAP
    classification under the responsibilities ``r`` of ``params`` (ICL's
    entropy term, Biernacki, Celeux & Govaert 2000), for a mixture family (one
    with ``weights`` and :meth:`~jaxem.Family.log_components`)."""
    joint = family.log_components(params, x) + log_weights(params.weights, -jnp.inf)
    best = jnp.max(joint, axis=1) - jax.nn.logsumexp(joint, axis=1)
    return jnp.sum(w * best)


@dataclasses.dataclass(frozen=True)
class SelectionResult:
    """Scores of every (model, K) and the best model.

    Attributes:
        scores: (T, M) criterion for ``models[t]`` and ``n_components[m]``;
            lower is better (scikit-learn's convention).
        log_likelihoods: (T, M) mean per-sample log-likelihoods of those fits
            (without the log prior of MAP fits).
        models: the T model names tried (for Gaussian mixtures, covariance types).
        n_components: the M numbers of components tried.
        criterion: ``"bic"`` or ``"aic"``.
        best_model: name of the model of the lowest score (among the fits that did
            not end degenerate, where there is one).
        best_n_components: K of the lowest score.
        params: parameters of the chosen model, trimmed to its active components.
        log_likelihood: mean per-sample log-likelihood of the chosen model.
        fits: the T batched :class:`FitResult` (leading axis over ``n_components``).
        n_parameters: (T, M) free parameters of every fit.
        classification_log_likelihoods: (T, M) ``Σ_n w_n log max_k r_nk`` of every
            fit (:func:`classification_log_likelihood`).
        n_samples: the total sample weight N.
    """

    scores: np.ndarray
    log_likelihoods: np.ndarray
    models: tuple[str, ...]
    n_components: tuple[int, ...]
    criterion: str
    best_model: str
    best_n_components: int
    params: PyTree
    log_likelihood: float
    fits: tuple[FitResult, ...] = ()
    n_parameters: np.ndarray | None = None
    classification_log_likelihoods: np.ndarray | None = None
    n_samples: float | None = None

    @property
    def bic(self) -> np.ndarray:
        """(T, M) BIC ``−2 N ℓ + p log N`` of every fit (lower is better; R mclust's
        BIC is its negative)."""
        n = self.n_samples
        return -2 * n * self.log_likelihoods + self.n_parameters * np.log(n)

    @property
    def icl(self) -> np.ndarray:
        """(T, M) ICL ``BIC − 2 Σ_n log max_k r_nk`` of every fit (lower is better;
        R mclust's ``icl`` is its negative)."""
        return self.bic - 2 * self.classification_log_likelihoods

    @property
    def best_score(self) -> float:
        """The criterion of the chosen model (the minimum of ``scores`` over the
        fits that did not end degenerate, where there is one)."""
        t = self.models.index(self.best_model)
        return float(self.scores[t, self.n_components.index(self.best_n_components)])

    @property
    def covariance_types(self) -> tuple[str, ...]:
        """Alias of :attr:`models` for Gaussian mixtures."""
        return self.models

    @property
    def best_covariance_type(self) -> str:
        """Alias of :attr:`best_model` for Gaussian mixtures."""
        return self.best_model


def check_information_criterion(criterion: object) -> str:
    if criterion not in ("bic", "aic", "icl"):
        raise ValueError(f"criterion must be one of ('bic', 'aic', 'icl'); got {criterion!r}")
    return criterion
