"""The seam between a model family and the engine: additive sufficient statistics.

A *family* is a frozen dataclass registered as a JAX pytree: its static
configuration (a covariance type, a formulation) is pytree metadata, its numeric
hyperparameters (``reg_covar``, a prior) are traced leaves, so ``vmap`` over a
hyperparameter is ``vmap`` over the family. It is a handful of pure functions and
never sees loops, chunks, restarts or devices:

* :meth:`Family.pass_` ``(params, rows, weights, context) -> (stats, Σ w log p)``
  over one chunk of rows. ``stats`` is a pytree whose every leaf adds over
  chunks: ``pass(a ∪ b) = pass(a) + pass(b)``. This is the whole seam: a source
  (in memory, chunks on disk, devices, a stream) only sums it.
* :meth:`Family.maximize` ``(stats, params, context) -> params``: the M-step
  from summed statistics (``params`` are those of the E-step, ``None`` in the
  first M-step from initial responsibilities).
* optionally a conditional cycle after the M-step (:attr:`Family.has_cycle`:
  ECME, AECM): a search driven by further passes of a view of the family
  (:meth:`Family.cycle_view`), summed by the source like any pass, and
  :meth:`Family.one_pass`, the one-pass algorithm with the same fixed points
  for drivers without full passes.
* :meth:`Family.log_prior` (a MAP M-step; :attr:`Family.has_prior` says so,
  by default where ``log_prior`` is overridden), :meth:`Family.n_parameters`
  and, where it means something, :meth:`Family.degenerate`;
  :meth:`Family.objective`, the value EM monitors (by default the mean
  log-likelihood plus log prior; a variational family's evidence lower
  bound).
* restarts: :meth:`Family.n_components_of` (K of parameters) and
  :meth:`Family.as_batch` (a leading axis of restarts), which
  :class:`MixtureFamily` provides from ``weights``; a model that is not a
  mixture defines both (K is then whatever its fit's ``n_components`` means,
  1 for a single model).
* initialisation: :meth:`Family.initial_stats` of all restarts from their keys
  and methods, the data and K (by default responsibilities from
  :data:`jaxem._src.init.INIT_METHODS` on :meth:`Family.init_features`, then
  their statistics, :meth:`Family.init_stats`; the loop's first M-step makes
  the parameters).
* data: :meth:`Family.summarize` (an additive summary of the data: counts,
  means, second moments) and :meth:`Family.context` (what the passes need of it,
  e.g. the data's centre), :meth:`Family.featurize` (parameter-independent
  per-row features a source may build once and keep), :meth:`Family.bind`
  (hyperparameters that depend on the data and K, e.g. mclust's default prior).

:class:`MixtureFamily` derives the pass, the E-step and the predictions of a
finite mixture from three functions (:meth:`~MixtureFamily.log_components`,
:meth:`~MixtureFamily.suff_stats`, :meth:`~MixtureFamily.maximize`); a new
mixture needs only those and :meth:`~Family.n_parameters`, with two rules:

* a component of weight exactly 0 is inactive and must stay so: its
  ``maximize`` gives weight 0 where ``n_k = 0`` whatever a prior says
  (:func:`jaxem._src.mixtures.common.mixture_weights` does), and its
  ``log_prior`` leaves inactive components out. ``fit(..., n_active=)`` and
  :func:`jaxem.select` fit every K inside the largest by such components; a
  family whose prior gives every component weight sets
  :attr:`MixtureFamily.supports_n_active` to False.
* parameters whose per-component fields are named ``means``, ``rates`` or
  ``probs`` (K, D) get the engine's checks of D against the data and of K
  against the weights; other names: override
  :meth:`~MixtureFamily.n_features_of`.

``fit(..., implicit=True)`` and :func:`jaxem.standard_errors` differentiate in
the coordinates of :meth:`Family.unconstrain` and :meth:`Family.constrain` (the
mixtures' default: log-weights, the other floating fields as they are); a
family whose parameters have no ``weights`` field overrides them (the
variational posterior: its parameters as they are).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.chunking import chunk_rows
from jaxem._src.init import (
    INIT_METHODS,
    LABEL_METHODS,
    batching,
    dense_resp,
    group_of,
    init_resp_rows,
)
from jaxem._src.validation import as_data, concrete

__all__ = [
    "ChunkedRows",
    "Family",
    "InitResp",
    "MeansShape",
    "MixtureFamily",
    "below_resolution",
    "concrete_starts",
    "log_joint",
    "log_weights",
    "mixture_center",
    "no_coordinates",
    "weights_from_logs",
]

PyTree = Any


class ChunkedRows(NamedTuple):
    """A family's per-fit arrangement of the rows (:meth:`Family.layout`):
    ``items`` a pytree whose leaves have a leading chunk axis (C, ...) and
    ``weights`` (C, B) the sample weights of each chunk's B rows (0 for
    padding; the chunks after the last of positive weight are skipped, so a
    layout puts its chunks of padding last). ``whole`` (optional): the
    family's features of all rows in their order (:meth:`Family.featurize`),
    kept beside the chunks where the family tries a pass over them first
    (:meth:`Family.tries_whole_pass`, :meth:`Family.whole_pass`)."""

    items: PyTree
    weights: jax.Array
    whole: PyTree = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class InitResp:
    """Starting responsibilities of a batch of restarts (:meth:`Family.initial_resp`),
    group by group of methods: the restarts of group ``g`` have responsibilities
    ``resp[g]`` (B_g, M_g, K) on the rows ``rows[g]`` (B_g, M_g) of the data
    and zero on every other row (``rows[g]`` None: on all N rows in order).
    Restart ``i`` is entry ``position[i]`` of the groups one after another
    (static). An agglomeration's random subset or a restart's K seed rows are
    so kept as the few rows they are, not as (N, K) mostly zero. ``labels[g]``
    (static): group ``g``'s responsibilities have at most one positive entry
    per row (:data:`~jaxem._src.init.LABEL_METHODS`; False: not known)."""

    rows: tuple[jax.Array | None, ...]
    resp: tuple[jax.Array, ...]
    position: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    labels: tuple[bool, ...] = dataclasses.field(default=(), metadata=dict(static=True))

    def is_labels(self, g: int) -> bool:
        return g < len(self.labels) and self.labels[g]

    def dense(self, n_rows: int) -> jax.Array:
        """(B, N, K) the responsibilities on all ``n_rows`` rows."""
        parts = [_dense_group(*group, n_rows) for group in zip(self.rows, self.resp, strict=True)]
        return _in_restart_order(jnp.concatenate(parts), self.position)


def _dense_group(rows: jax.Array | None, resp: jax.Array, n_rows: int) -> jax.Array:
    """(B_g, N, K) a group's responsibilities on all ``n_rows`` rows."""
    return resp if rows is None else jax.vmap(lambda i, r: dense_resp(i, r, n_rows))(rows, resp)


#: Fewest rows for which :meth:`Family.batch_init_stats` reads a restart's
#: responsibilities on its rows only (:class:`InitResp`). Each number of rows is
#: a ``vmap`` of its own in the compiled fit, and below this the statistics of
#: every restart over all rows cost less than compiling them: on 2 CPU cores a
#: first call on 5000 × 8 with ``n_init=10`` took ~0.1 s longer with three, and
#: its later calls were as fast; on 100 000 × 16 the ten restarts' statistics
#: on their rows saved ~0.15 s per call.
SPARSE_INIT_MIN_ROWS = 8192


def _in_restart_order(tree: PyTree, position: tuple[int, ...]) -> PyTree:
    """The leading axis of ``tree``'s leaves, in group order, put in restart order."""
    if position == tuple(range(len(position))):
        return tree
    return jax.tree.map(lambda a: a[np.asarray(position)], tree)


class MeansShape:
    """Shape properties shared by parameter classes with ``means`` of shape
    (K, D): a base of their frozen dataclasses (it adds no fields)."""

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def n_features(self) -> int:
        return self.means.shape[-1]

    @property
    def dtype(self) -> jnp.dtype:
        return self.means.dtype


def log_weights(weights: jax.Array, inactive: float = 0.0) -> jax.Array:
    """(K,) ``log π_k`` of the active components, ``inactive`` for the others (by
    default 0, a finite placeholder: the coordinates of the weights in which to
    extrapolate; −∞ for logits that never draw them), with no NaN derivative at
    ``π_k = 0``."""
    active = weights > 0
    return jnp.where(active, jnp.log(jnp.where(active, weights, 1)), inactive)


def log_joint(log_components: jax.Array, weights: jax.Array) -> jax.Array:
    """(N, K) ``log π_k + log p(x_n | k)`` from a mixture's (N, K) component
    log-densities; −∞ for the inactive components."""
    return jnp.where(weights > 0, log_components + log_weights(weights), -jnp.inf)


def mixture_center(params: Any) -> jax.Array:
    """(D,) the mixture's mean ``Σ_k π_k μ_k`` of ``params`` (with ``weights``
    and ``means``), without derivative: the point a component density centres
    rows and means at before differencing them (the distances do not change,
    and float32 keeps its digits for data far from the origin)."""
    return jax.lax.stop_gradient(params.weights @ params.means)


def below_resolution(p: jax.Array) -> jax.Array:
    """Where a probability (or a rate relative to its scale) is below the dtype's
    resolution ``eps``: at the boundary of the parameter space for
    :meth:`Family.boundary` (an inactive component's weight of exactly 0
    included)."""
    return p < jnp.finfo(jnp.result_type(p)).eps


def no_coordinates(u: PyTree) -> PyTree:
    """A pytree of False in the structure of the coordinates ``u``."""
    return jax.tree.map(lambda a: jnp.zeros(jnp.shape(a), bool), u)


def concrete_starts(family: Family, params: PyTree) -> list[PyTree]:
    """The starts of ``params`` (one set or a batch) one at a time, for the
    checks at the Python boundary; none where they are traced."""
    batch = family.as_batch(params)
    leaves = jax.tree.leaves(batch)
    if any(concrete(leaf) is None for leaf in leaves):
        return []
    return [jax.tree.map(lambda a, i=i: a[i], batch) for i in range(leaves[0].shape[0])]


def weights_from_logs(logs: jax.Array, like: jax.Array) -> jax.Array:
    """The inverse of :func:`log_weights`: ``softmax`` over the components
    active in ``like`` (K,), exactly 0 for the others (they stay inactive)."""
    active = like > 0
    return jnp.where(active, jax.nn.softmax(jnp.where(active, logs, -jnp.inf)), 0)


class Family:
    """Base class of model families (see the module docstring for the contract).

    Subclasses are frozen dataclasses registered with
    :func:`jax.tree_util.register_dataclass`; they override :meth:`pass_`,
    :meth:`maximize`, :meth:`n_parameters` and :meth:`init_stats` (or, for a
    mixture, derive from :class:`MixtureFamily`), and whatever else their
    model needs.
    """

    #: Initialisation methods this family understands (``init=`` of a fit).
    init_methods: ClassVar[tuple[str, ...]] = INIT_METHODS

    # ------------------------------------------------------------------ data

    def check_data(self, x: Any, *, name: str = "x") -> Any:
        """Validate and convert data at the Python boundary (shapes always,
        values when concrete). Default: a finite floating (N, D) array."""
        return as_data(x, name=name)

    def n_features_of(self, params: PyTree) -> int | None:
        """The number of data features ``params`` (or a batch of them) describe
        (static), or None where they do not say (default)."""
        return None

    def n_features_in(self, x: Any) -> int | None:
        """The number of features of checked data ``x`` (static), or None where
        it has none to compare (default: the columns of an (N, D) array)."""
        return x.shape[1] if getattr(x, "ndim", None) == 2 else None

    def check_features(
        self, params: PyTree, x: Any, *, name: str = "x", what: str = "the parameters"
    ) -> None:
        """A clear error where checked data ``x`` does not have the features
        ``params`` describe (a (N, 1) array against (K, 3) means broadcasts)."""
        expected, got = self.n_features_of(params), self.n_features_in(x)
        if expected is not None and got is not None and expected != got:
            raise ValueError(f"{name} has {got} features but {what} have {expected}")

    def check_data_for(self, params: PyTree, x: Any, *, name: str = "x") -> Any:
        """:meth:`check_data`, then :meth:`check_features` against ``params``:
        data given with parameters at the Python boundary."""
        x = self.check_data(x, name=name)
        self.check_features(params, x, name=name)
        return x

    def max_components(self, x: Any) -> int:
        """The largest number of components the (checked) data ``x`` can fit
        (static). Default: its number of rows; an HMM's states are bounded by
        its frames, not its sequences."""
        return jax.tree.leaves(x)[0].shape[0]

    def summarize(self, x: Any, w: jax.Array, ref: Any) -> PyTree:
        """Additive summary of a chunk of rows ``x`` with weights ``w`` (N,).

        ``ref`` is one row of the data, the same for every chunk: take sums
        about it so that they keep their digits far from the origin. Default:
        the total weight only.
        """
        return {"count": jnp.sum(w)}

    def context(self, summary: PyTree, ref: Any) -> PyTree:
        """What the passes need of the data, from the summed :meth:`summarize`."""
        return summary

    def bind(self, context: PyTree, n_active: ArrayLike) -> Family:
        """This family with hyperparameters that depend on the data resolved."""
        return self

    def featurize(self, x: Any, context: PyTree) -> Any:
        """Per-row features the pass reads instead of ``x`` (parameter
        independent, so a source may build them once). Default: ``x`` itself."""
        return x

    def layout(
        self, x: Any, w: jax.Array, context: PyTree, n_components: int, features: bool = True
    ) -> Any:
        """Per-fit features of every row arranged in chunks of the family's
        choosing (:class:`ChunkedRows`), or None (default) for :meth:`featurize`
        of the rows in their order. A source that keeps features in memory
        passes :meth:`pass_` each chunk's item and weights. With
        ``features=False`` (the features of all rows too large to keep) the
        chunks hold what :meth:`pass_` builds a chunk's features from, or None."""
        return None

    def layout_state(self, params: PyTree, weights: jax.Array) -> PyTree:
        """The state one pass over the chunks of :meth:`layout` carries from
        chunk to chunk (:meth:`layout_pass`), given every chunk's weights
        (C, B). Default: none."""
        return None

    def layout_pass(
        self, params: PyTree, item: PyTree, w: jax.Array, context: PyTree, state: PyTree
    ) -> tuple[tuple[PyTree, jax.Array], PyTree]:
        """``(pass_ of one chunk of the layout, the state after it)``; the chunks
        in order. Default: :meth:`pass_`, the state unchanged."""
        return self.pass_(params, item, w, context), state

    def chunks_pass(
        self,
        params: PyTree,
        items: PyTree,
        weights: jax.Array,
        context: PyTree,
        loop: Callable[[PyTree], tuple[PyTree, jax.Array]],
        batch: int,
    ) -> tuple[PyTree, jax.Array]:
        """``(stats, Σ w log p)`` of a pass over all the chunks of :meth:`layout`
        (``items`` and ``weights`` (C, B) of a :class:`ChunkedRows`), or
        ``loop(params)``: :meth:`layout_pass` chunk by chunk, in order; ``batch``
        (static) restarts are computed at once. Default: the loop."""
        return loop(params)

    def whole_pass(
        self,
        params: PyTree,
        features: Any,
        w: jax.Array,
        context: PyTree,
        chunks: Callable[[PyTree], tuple[PyTree, jax.Array]],
        batch: int,
    ) -> tuple[PyTree, jax.Array]:
        """``(stats, Σ w log p)`` of a pass over all rows from their features in
        their order (:attr:`ChunkedRows.whole`, weights ``w``), or
        ``chunks(params)``, the pass over the layout's chunks, where the
        family's choice falls there; ``batch`` (static) restarts are computed
        at once. Default: the chunks."""
        return chunks(params)

    def tries_whole_pass(self, n_rows: int, n_components: int) -> bool:
        """Whether a source that keeps the layout's features (:meth:`layout`) of
        ``n_rows`` rows for ``n_components`` components (static) also keeps the
        features of all rows in their order, when they fit, for
        :meth:`whole_pass`. Default: False."""
        return False

    #: Whether rows are independent and a row of weight zero is absent from
    #: everything (pass, statistics, initialisation), so that an in-memory fit
    #: may pad its rows to a bucket size and reuse its program for a new N
    #: (:func:`jaxem._src.sources.row_bucket`). True for mixtures.
    row_buckets: ClassVar[bool] = False

    #: Whether :meth:`featurize` does anything (a source then builds the
    #: features once when they fit in memory, else chunk by chunk).
    has_features: ClassVar[bool] = False

    #: Whether a fit's components beyond ``n_active`` stay at weight 0 (what
    #: ``fit(..., n_active=)`` and :func:`jaxem.select`, which fits every K inside
    #: the largest, rely on). False where a prior gives every component weight.
    supports_n_active: ClassVar[bool] = True

    def chunk_rows(self, n_rows: int, params: PyTree, rows: Any, batch: int, mode: str) -> int:
        """Rows per chunk of the pass (static). ``rows`` are the rows the pass
        reads (features when ``mode`` is ``"cached"`` or ``"features"``, else the
        data); ``batch`` restarts are computed together. Default: about 600k
        elements of (rows, batch·K·width)."""
        k = self.n_components_of(params)
        width = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves(rows))
        return chunk_rows(n_rows, batch * k * max(width, 1))

    # -------------------------------------------------------------------- EM

    def pass_(self, params: PyTree, rows: Any, w: jax.Array, context: PyTree):
        """``(stats, Σ_n w_n log p(x_n))`` of one chunk; ``stats`` add over chunks."""
        raise _not_implemented(self, "pass_")

    def maximize(self, stats: PyTree, params: PyTree | None, context: PyTree) -> PyTree:
        """The M-step from summed statistics (``params``: the E-step's, or None)."""
        raise _not_implemented(self, "maximize")

    def log_prior(self, params: PyTree) -> jax.Array:
        """``log p(θ)`` under the family's prior (0 without one)."""
        return jnp.zeros((), jax.tree.leaves(params)[0].dtype)

    def objective(
        self, params: PyTree, stats: PyTree, ll_sum: jax.Array, total: jax.Array
    ) -> jax.Array:
        """The objective EM monitors, per unit of sample weight, from one pass
        at ``params`` (its summed ``stats`` and ``ll_sum``) and the total
        weight. Default: ``(Σ w log p(x | θ) + log p(θ)) / Σ w``, the mean log
        likelihood (log posterior with a prior). A variational family overrides
        it with its evidence lower bound."""
        return (ll_sum + self.log_prior(params)) / self.total_weight(stats, total)

    def total_weight(self, stats: PyTree, total: jax.Array) -> jax.Array:
        """The weight the objective is a mean over, from a pass's summed
        ``stats`` and the source's total sample weight ``total``. Default:
        ``total``; a family whose pass leaves some rows out (the missing-data
        family's rows without an observed entry) returns the weight it kept."""
        return total

    @property
    def likelihood_objective(self) -> bool:
        """Whether :meth:`objective` is the log-likelihood plus log prior up to
        a positive factor (per unit of weight, per frame), so that its Hessian
        is the observed information: standard errors and the EM rate
        (:mod:`jaxem._src.inference`) need it. Default: whether
        :meth:`objective` is the base class's (a variational family's
        evidence lower bound is not)."""
        return type(self).objective is Family.objective

    def watches_prior(self, criterion: str) -> bool:
        """Whether the value the stopping rule ``criterion`` watches (and the
        history records) is :meth:`objective`, the log prior included (default),
        or else the mean log-likelihood alone (static)."""
        return True

    @property
    def has_prior(self) -> bool:
        """Whether :meth:`maximize` is a MAP step, whose statistics must be in
        absolute units (counts, sums), not per sample: online EM
        (:func:`jaxem.fit_online`), whose statistics are per sample, scales
        them by the sample weight seen before such an M-step, so that the
        prior weighs against the data seen. Default: whether the family
        overrides :meth:`log_prior` (a family with a prior that said False got
        an online fit dominated by its prior; scaling the statistics of a
        maximum-likelihood step changes nothing)."""
        return type(self).log_prior is not Family.log_prior

    def canonical(self, params: PyTree) -> PyTree:
        """Parameters with derived fields recomputed from the primary ones (after
        averaging iterates, say). Default: as they are."""
        return params

    def valid(self, params: PyTree) -> jax.Array:
        """() bool: whether ``params`` lie in the parameter space (weights and
        rates non-negative, probabilities in [0, 1], Cholesky factors with a
        positive diagonal). SQUAREM extrapolating in the parameters' own
        coordinates (:mod:`jaxem._src.acceleration`) rejects a point outside
        it and falls back to EM steps. Default: always."""
        return jnp.asarray(True)

    def unconstrain(self, params: PyTree) -> PyTree:
        """Unconstrained coordinates (for SQUAREM with
        ``coordinates="unconstrained"``): a pytree of finite reals that
        :meth:`constrain` maps back to valid parameters. Default: the
        parameters themselves."""
        return params

    def constrain(self, u: PyTree, like: PyTree) -> PyTree:
        """Parameters from :meth:`unconstrain`'s coordinates ``u``; ``like``
        are parameters whose structure they share (which components are
        inactive, static fields). Default: ``u`` itself."""
        return u

    def boundary(self, params: PyTree) -> PyTree | None:
        """Which coordinates of :meth:`unconstrain` lie at the boundary of the
        parameter space (a pytree of bools in its structure), or None (none:
        the default).

        EM drives a probability or a rate that the data do not support towards
        0 geometrically; its log-coordinate then has a rate of convergence of 1
        within rounding, and the fixed point does not determine it.
        Implicit differentiation (:mod:`jaxem._src.implicit`) holds these
        coordinates fixed (their derivative is 0), where solving for them
        gave a wrong gradient; standard errors
        (:func:`jaxem.standard_errors`) leave them out of the information
        (their error is 0, the Wald error of a probability of 0 or 1 or a
        rate of 0), where they made every error NaN."""
        return None

    def gauges(self, params: PyTree) -> PyTree | None:
        """Directions of :meth:`unconstrain`'s coordinates at ``params`` along
        which the model does not change and that ``unconstrain ∘ constrain``
        does not remove (a pytree in the structure of ``unconstrain(params)``
        with a leading axis of directions), or None (none: the default).

        A continuous symmetry of the likelihood that EM maps equivariantly (a
        factor analyser's loadings ``Λ → Λ R``, ``R`` a rotation) makes every
        point of its orbit a fixed point: the EM map's Jacobian has an
        eigenvalue 1 along these directions, ``I − ∂T/∂u`` is singular, and
        the fixed point determines only what the symmetry leaves unchanged.
        Implicit differentiation (:mod:`jaxem._src.implicit`) solves its
        linear system orthogonally to them, where a Krylov solver returned a
        solution with a part along them (a gradient 10% off); standard errors
        and the EM rate (:mod:`jaxem._src.inference`) leave them out of the
        free coordinates, and the parameters that move along them (the
        loadings) have no standard error (NaN). The gauges that the round
        trip removes (a constant added to the log-weights) need no entry
        here."""
        return None

    def differentiable(self) -> Family:
        """This family with a pass that every mode of differentiation goes
        through (forward and reverse, nested): for implicit differentiation of a
        fit (:mod:`jaxem._src.implicit`, which differentiates one EM iteration)
        and for derivatives of the EM map and the log-likelihood
        (:mod:`jaxem._src.inference`). Default: itself; a family whose fast
        formulation has only a forward-mode derivative returns its plain one."""
        return self

    def reframe(self, stats: PyTree, old: PyTree, new: PyTree) -> PyTree:
        """Statistics computed under ``old`` parameters re-expressed so that they
        add to statistics computed under ``new`` ones (stepwise EM). Default: as
        they are (statistics that do not depend on the parameters' frame)."""
        return stats

    # ------------------------------------------- a conditional cycle (ECME, AECM)

    @property
    def has_cycle(self) -> bool:
        """Whether every M-step is followed by a conditional-maximisation cycle
        with passes of its own (static; ECME and AECM, Meng & van Dyk 1997).

        The cycle is a search driven by passes over all the data: from
        ``state = cycle_start(params, context)``, while
        ``cycle_running(state)``, the source sums ``cycle_view(state).pass_``
        at ``params`` over every row (chunks, devices, streams, as any pass) and
        ``state = cycle_update(state, stats, params)``; then
        ``cycle_finish(state, params, context)`` are the iteration's parameters. Every
        batch source runs it (:func:`jaxem._src.engine.run_cycle`); online EM,
        which has no full passes, runs :meth:`one_pass` instead. Default: no
        cycle."""
        return False

    def one_pass(self) -> Family:
        """This family's EM without a conditional cycle: one pass per
        iteration, the same fixed points. Drivers without full passes (online
        EM) use it, and so do the EM map that implicit differentiation and the
        observed information differentiate. Default: itself (a family whose
        :meth:`maximize` is a whole M-step and whose cycle only speeds it up,
        as the Student-t mixture's ECME)."""
        return self

    def cycle_start(self, params: PyTree, context: PyTree) -> PyTree:
        """The cycle's search state after the M-step gave ``params``."""
        raise _not_implemented(self, "cycle_start")

    def cycle_view(self, state: PyTree) -> Family:
        """The family whose :meth:`pass_` at the M-step's parameters gives the
        statistics the search needs next (additive over rows, as any pass)."""
        raise _not_implemented(self, "cycle_view")

    def cycle_update(self, state: PyTree, stats: PyTree, params: PyTree) -> PyTree:
        """The search state after a pass of :meth:`cycle_view` gave ``stats``."""
        raise _not_implemented(self, "cycle_update")

    def cycle_running(self, state: PyTree) -> jax.Array:
        """() bool: whether the search wants another pass."""
        raise _not_implemented(self, "cycle_running")

    def cycle_finish(self, state: PyTree, params: PyTree, context: PyTree) -> PyTree:
        """The parameters at the end of the cycle."""
        raise _not_implemented(self, "cycle_finish")

    # ----------------------------------------------------------------- model

    def n_parameters(self, params: PyTree) -> jax.Array:
        """Free parameters, counting active components only (for BIC/AIC)."""
        raise _not_implemented(self, "n_parameters")

    def degenerate(self, params: PyTree, context: PyTree) -> jax.Array:
        """Whether a fit ended on a degenerate optimum (a likelihood spike held up
        only by regularisation); such restarts are not chosen. Default: never."""
        return jnp.asarray(False)

    def pass_name(self, fast: bool) -> str:
        """How a pass was computed, for progress reports (``fast``: whether
        :meth:`fast` held for every restart)."""
        return ""

    def fast(self, params: PyTree, context: PyTree) -> jax.Array:
        """Whether the family's fast formulation is accurate at ``params``
        (families with a single formulation: always)."""
        return jnp.asarray(True)

    def n_components_of(self, params: PyTree) -> int:
        """K of (a batch of) parameters (static)."""
        raise _not_implemented(self, "n_components_of")

    def check_start(self, params: PyTree, x: Any) -> None:
        """A clear error where starting parameters (a batch) cannot describe the
        checked data ``x`` (default: :meth:`check_features`, and the covariance
        type where both name one)."""
        own = getattr(self, "covariance_type", None)
        given = getattr(params, "covariance_type", None)
        if isinstance(own, str) and isinstance(given, str) and own != given:
            raise ValueError(
                f"the starting parameters have covariance_type={given!r}, the family "
                f"{own!r}: give both the same covariance type"
            )
        self.check_features(params, x, what="the starting parameters")

    def as_batch(self, params: PyTree) -> PyTree:
        """Parameters as a batch of restarts (a leading axis added if missing)."""
        raise _not_implemented(self, "as_batch")

    def trim(self, params: PyTree) -> PyTree:
        """Concrete parameters without their inactive components (for display)."""
        return params

    # -------------------------------------------------------- initialisation

    def portfolio(
        self, n_init: int, n_samples: int, n_features: int | None = None
    ) -> tuple[str, ...]:
        """The methods of ``n_init`` restarts for ``init="auto"`` (static), for
        ``n_samples`` rows of ``n_features`` columns (None where unknown)."""
        cycle = ("kmeans", "random_from_data", "standardized_kmeans")
        return tuple(cycle[i % len(cycle)] for i in range(n_init))

    def init_features(self, x: Any, context: PyTree) -> jax.Array:
        """The (N, D') continuous representation the initialisers cluster."""
        return x

    def init_group(self, method: str) -> tuple[str, ...]:
        """The methods whose restarts share ``method``'s traced program (static;
        :data:`jaxem._src.init.GROUPS` by default)."""
        return group_of(method)

    def init_view(self) -> Family | None:
        """A family with this one's :meth:`initial_resp` that families differing
        only in what the initialisation does not read share (static), or None.

        With a view, :func:`jaxem.fit` and :func:`jaxem.select` compute the
        initial responsibilities in a program of their own, compiled once for
        every family of the same view (a Gaussian mixture's four or fourteen
        covariance types: the agglomerations and k-means are compiled, and in
        ``select`` run, once for all of them) and apart from the EM program.
        None (the default): the initialisation is traced into the fit's program.
        """
        return None

    def initial_resp(
        self,
        keys: jax.Array,
        x: Any,
        w: jax.Array,
        n_components: int,
        n_active: jax.Array,
        methods: tuple[str, ...],
        context: PyTree,
    ) -> InitResp:
        """Starting responsibilities of a batch of restarts (:class:`InitResp`):
        restart ``i`` uses ``keys[i]`` and ``methods[i]`` (static).

        By default :func:`~jaxem._src.init.init_resp_rows` on
        :meth:`init_features`, the restarts of one group of methods
        (:meth:`init_group`) as one ``vmap`` (the method a traced index; an
        agglomeration computed once when it does not depend on the key, and
        agglomerations on random subsets one after another:
        :func:`~jaxem._src.init.batching`; a group of one restart without a
        ``vmap``).
        """
        features = self.init_features(x, context)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, method in enumerate(methods):
            groups.setdefault(self.init_group(method), []).append(i)

        def resp_of(group, key, index):
            return init_resp_rows(key, features, n_components, group, n_active, w, index=index)

        # keys in group order (one gather), each group a static slice of them
        order = np.concatenate([np.asarray(ix) for ix in groups.values()])
        keys = keys if np.all(order == np.arange(len(methods))) else keys[order]
        bounds = np.cumsum([0, *(len(ix) for ix in groups.values())])
        n_samples = features.shape[0]

        def group_resp(group, ix, group_keys):
            fn = functools.partial(resp_of, group)
            index = np.asarray([group.index(methods[i]) for i in ix], np.int32)
            how = batching(group, n_samples)
            if how == "shared" or len(ix) == 1:  # one restart, or the same for every key
                one = fn(group_keys[0], index[0])
                return jax.tree.map(lambda a: jnp.broadcast_to(a, (len(ix), *a.shape)), one)
            if how == "map":
                return jax.lax.map(lambda a: fn(*a), (group_keys, index))
            return jax.vmap(fn)(group_keys, index)

        parts = [
            group_resp(group, ix, keys[start:stop])
            for (group, ix), (start, stop) in zip(
                groups.items(), itertools.pairwise(bounds), strict=True
            )
        ]
        return InitResp(
            rows=tuple(rows for rows, _ in parts),
            resp=tuple(resp for _, resp in parts),
            position=tuple(int(p) for p in np.argsort(order)),
            labels=tuple(set(methods_) <= LABEL_METHODS for methods_ in groups),
        )

    def initial_stats(
        self,
        keys: jax.Array,
        x: Any,
        w: jax.Array,
        n_components: int,
        n_active: jax.Array,
        methods: tuple[str, ...],
        context: PyTree,
    ) -> tuple[PyTree, PyTree]:
        """Starting statistics of a batch of restarts: ``(stats, frame)`` as
        :meth:`init_stats`, with a leading axis; restart ``i`` uses ``keys[i]``
        and ``methods[i]`` (static). By default :meth:`init_stats` of
        :meth:`initial_resp` (:meth:`batch_init_stats`)."""
        resp = self.initial_resp(keys, x, w, n_components, n_active, methods, context)
        return self.batch_init_stats(resp, x, w, context)

    def batch_init_stats(
        self, resp: InitResp, x: Any, w: jax.Array, context: PyTree
    ) -> tuple[PyTree, PyTree]:
        """:meth:`init_stats` of a batch of responsibilities (:class:`InitResp`):
        the groups of each number of rows as one ``vmap`` on those rows only;
        below :data:`SPARSE_INIT_MIN_ROWS` rows one ``vmap`` over all rows.
        Groups of labels (:attr:`InitResp.labels`) take :meth:`labels_init_stats`."""
        n_rows = jax.tree.leaves(x)[0].shape[0]
        on_rows = n_rows >= SPARSE_INIT_MIN_ROWS
        # the groups of each number of rows (None: all rows) as one vmap each
        by_size: dict[tuple[int | None, bool], list[int]] = {}
        for g, rows in enumerate(resp.rows):
            size = rows.shape[1] if rows is not None and on_rows else None
            by_size.setdefault((size, resp.is_labels(g)), []).append(g)

        def on_all_rows(groups, stats_of):
            r = jnp.concatenate([_dense_group(resp.rows[g], resp.resp[g], n_rows) for g in groups])
            return jax.vmap(lambda r: stats_of(r, x, w, context))(r)

        def on_their_rows(groups, stats_of):
            def one(rows, r):
                x_rows = jax.tree.map(lambda a: a[rows], x)
                return stats_of(r, x_rows, None if w is None else w[rows], context)

            rows = jnp.concatenate([resp.rows[g] for g in groups])
            return jax.vmap(one)(rows, jnp.concatenate([resp.resp[g] for g in groups]))

        parts = [
            (on_all_rows if size is None else on_their_rows)(
                groups, self.labels_init_stats if labels else self.init_stats
            )
            for (size, labels), groups in by_size.items()
        ]
        stacked = jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
        # each restart's place in InitResp's group order, then in by_size's
        bounds = np.cumsum([0, *(len(r) for r in resp.resp)])
        regrouped = [np.arange(bounds[g], bounds[g + 1]) for gs in by_size.values() for g in gs]
        place = np.argsort(np.concatenate(regrouped))[np.asarray(resp.position)]
        return _in_restart_order(stacked, tuple(int(i) for i in place))

    def labels_init_stats(
        self, resp: jax.Array, x: Any, w: jax.Array, context: PyTree
    ) -> tuple[PyTree, PyTree]:
        """:meth:`init_stats` of responsibilities known to have at most one
        positive entry per row (hard labels): a family may sum them faster. By
        default :meth:`init_stats`."""
        return self.init_stats(resp, x, w, context)

    def init_stats(
        self, resp: jax.Array, x: Any, w: jax.Array, context: PyTree
    ) -> tuple[PyTree, PyTree]:
        """``(stats, frame)`` of rows ``x`` with responsibilities ``resp`` (N, K)
        and weights ``w`` (None: all 1): ``maximize(stats, frame, context)`` is the M-step on
        them (``frame``: parameters-shaped, what :meth:`maximize` reads of the
        E-step's parameters)."""
        raise _not_implemented(self, "init_stats")


class MixtureFamily(Family):
    """A finite mixture ``p(x) = Σ_k π_k p(x | θ_k)`` whose parameters carry the
    mixing weights as ``params.weights`` (K,); a component with weight exactly 0
    is inactive (zero responsibility, stays inactive).

    Subclasses give :meth:`log_components` ``(params, x) -> (N, K)``,
    :meth:`suff_stats` ``(resp, x) -> stats`` (responsibilities already
    multiplied by the sample weights; additive over rows), :meth:`maximize` and
    :meth:`n_parameters`; the pass, the E-step, the densities and predictions
    follow.
    """

    row_buckets: ClassVar[bool] = True

    def log_components(self, params: PyTree, x: Any) -> jax.Array:
        """(N, K) ``log p(x_n | θ_k)``."""
        raise _not_implemented(self, "log_components")

    def valid(self, params: PyTree) -> jax.Array:
        """Non-negative weights; families with constrained component
        parameters add their own conditions."""
        return jnp.all(params.weights >= 0)

    def check_params(self, params: PyTree) -> None:
        """Concrete parameters given at the Python boundary (densities and
        predictions): finite weights that sum to 1 and :meth:`valid`; a
        ``ValueError`` otherwise (traced parameters pass)."""
        leaves = [concrete(leaf) for leaf in jax.tree.leaves(params)]
        if any(leaf is None for leaf in leaves):
            return
        w = concrete(params.weights)
        if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be a finite, non-negative (K,) array; got {w}")
        # float32's rounding whatever the dtype (float32 parameters cast to float64)
        if abs(float(w.sum()) - 1.0) > 1e-4 * max(1, len(w)):
            raise ValueError(f"weights must sum to 1; they sum to {float(w.sum())!r}")
        if not bool(self.valid(params)):
            raise ValueError(
                f"params lie outside {type(self).__name__}'s parameter space (negative "
                "rates or variances, probabilities outside [0, 1] or not summing to 1)"
            )

    def check_start(self, params: PyTree, x: Any) -> None:
        """:meth:`Family.check_start`, then :meth:`check_params` on every start of
        the batch (concrete ones): a start outside the parameter space (a
        probability of 1.5, a negative rate or weight) was fitted silently, and
        a probability of 1.5 ended as an exact 1 that EM never moves."""
        super().check_start(params, x)
        for start in concrete_starts(self, params):
            self._check_component_axis(start, start.weights.shape[-1])
            self.check_params(start)

    def _check_component_axis(self, params: PyTree, k: int) -> None:
        """A clear error where a field of per-component parameters has another
        number of components than the weights (JAX's error named neither)."""
        for field in ("means", "rates", "probs", "loadings", "noise"):
            leaf = getattr(params, field, None)
            if leaf is not None and np.ndim(leaf) >= 1 and np.shape(leaf)[0] != k:
                raise ValueError(
                    f"the starting parameters have {k} weights but {field} of shape "
                    f"{np.shape(leaf)}: every per-component field needs K = {k} rows"
                )

    def unconstrain(self, params: PyTree) -> PyTree:
        """The weights as log-weights (:func:`log_weights`), the other fields as
        they are; families with constrained component parameters override it."""
        return dataclasses.replace(params, weights=log_weights(params.weights))

    def constrain(self, u: PyTree, like: PyTree) -> PyTree:
        return dataclasses.replace(u, weights=weights_from_logs(u.weights, like.weights))

    def boundary(self, params: PyTree) -> PyTree:
        """The log-weights of components whose weight is below the dtype's
        resolution (:func:`below_resolution`); families whose coordinates have
        more override it."""
        return dataclasses.replace(
            no_coordinates(self.unconstrain(params)), weights=below_resolution(params.weights)
        )

    def n_components_of(self, params: PyTree) -> int:
        return params.weights.shape[-1]

    def impossible(self, params: PyTree, x: Any) -> jax.Array | None:
        """(N, K) where row ``n`` has probability exactly 0 under component
        ``k`` (a category, a count or a binary value its parameters rule out),
        or None where every density is positive. :meth:`log_components` floors
        those log-densities (:func:`~jaxem._src.mixtures.common.log_floor`) so
        that EM's sums stay finite; scores that must be exact (an HMM's
        ``log_prob``) use this to make them −∞."""
        return None

    def n_features_of(self, params: PyTree) -> int | None:
        """The last axis of the components' ``means``, ``rates`` or ``probs``
        (…, K, D), the first of them present; None without any."""
        for field in ("means", "rates", "probs"):
            leaf = getattr(params, field, None)
            if leaf is not None and np.ndim(leaf) >= 2:
                return leaf.shape[-1]
        return None

    def as_batch(self, params: PyTree) -> PyTree:
        if params.weights.ndim == 2:
            return params
        return jax.tree.map(lambda a: jnp.asarray(a)[None], params)

    def trim(self, params: PyTree) -> PyTree:
        """Drops inactive components from every leaf whose leading axis has K
        entries; a family with parameters shared by all components overrides it."""
        keep = np.asarray(params.weights) > 0
        k = keep.shape[0]
        return jax.tree.map(lambda a: a[keep] if np.ndim(a) and a.shape[0] == k else a, params)

    def suff_stats(self, resp: jax.Array, x: Any) -> PyTree:
        """Statistics of rows ``x`` with (weighted) responsibilities ``resp`` (N, K)."""
        raise _not_implemented(self, "suff_stats")

    def weighted_stats(
        self, params: PyTree, resp: jax.Array, x: Any, context: PyTree = None
    ) -> PyTree:
        """Statistics of rows ``x`` with given (weighted) responsibilities
        ``resp`` (N, K), in the frame of ``params`` (what :meth:`maximize` reads
        with them): the components' part of a pass whose responsibilities come
        from elsewhere (an HMM's state posteriors). ``context``: the family's
        context of the data, where it has one. Default: :meth:`suff_stats`."""
        return self.suff_stats(resp, x)

    def log_joint(self, params: PyTree, x: Any) -> jax.Array:
        """(N, K) ``log π_k + log p(x_n | θ_k)``; ``-inf`` for inactive components."""
        weights = params.weights
        active = weights > 0
        log_weights = jnp.log(jnp.where(active, weights, 1))
        return jnp.where(active, self.log_components(params, x) + log_weights, -jnp.inf)

    def posterior(self, params: PyTree, x: Any) -> tuple[jax.Array, jax.Array]:
        """``(resp (N, K), log p(x_n) (N,))``."""
        joint = self.log_joint(params, x)
        log_norm = jax.nn.logsumexp(joint, axis=1)
        return jnp.exp(joint - log_norm[:, None]), log_norm

    def pass_(self, params, rows, w, context):
        resp, log_norm = self.posterior(params, rows)
        return self.suff_stats(resp * w[:, None], rows), jnp.sum(w * log_norm)

    def init_stats(self, resp, x, w, context):
        stats = self.suff_stats(resp if w is None else resp * w[:, None], x)
        shapes = jax.eval_shape(lambda s: self.maximize(s, None, context), stats)
        return stats, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

    def e_step(self, params: PyTree, x: Any) -> tuple[jax.Array, jax.Array]:
        """``(resp, mean log-likelihood)``: the user-facing E-step."""
        resp, log_norm = self.posterior(params, x)
        return resp, jnp.mean(log_norm)

    def _scores(self, params: PyTree, x: Any) -> tuple[jax.Array, jax.Array]:
        """``(exact, ranked)`` (N, K) joint log-densities of the checked rows
        ``x`` for the scores users read: ``exact`` is −∞ where a component rules
        a row out (:meth:`impossible`; EM's sums floor those logs), ``ranked``
        is ``exact`` on every row some component allows and the floored joint
        on a row that every component rules out (its posterior is then that of
        the least violated components)."""
        x = self.check_data_for(params, x)
        self.check_params(params)
        joint = self.log_joint(params, x)
        ruled_out = self.impossible(params, x)
        if ruled_out is None:
            return joint, joint
        exact = jnp.where(ruled_out, -jnp.inf, joint)
        allowed = jnp.any(exact > -jnp.inf, axis=1, keepdims=True)
        return exact, jnp.where(allowed, exact, joint)

    def log_prob(self, params: PyTree, x: Any) -> jax.Array:
        """(N,) ``log p(x_n)``: −∞ for a row every component rules out."""
        return jax.nn.logsumexp(self._scores(params, x)[0], axis=1)

    def predict_proba(self, params: PyTree, x: Any) -> jax.Array:
        """(N, K) posterior probabilities of the components."""
        return jax.nn.softmax(self._scores(params, x)[1], axis=1)

    def predict(self, params: PyTree, x: Any) -> jax.Array:
        """(N,) the most probable component of each row."""
        return jnp.argmax(self._scores(params, x)[1], axis=1)


def _not_implemented(family: Family, method: str) -> NotImplementedError:
    """The error of a method a family must implement for what was called (the
    method's docstring says what it computes)."""
    doc = (getattr(type(family), method).__doc__ or "").strip().split("\n\n")[0]
    doc = " ".join(doc.split())
    return NotImplementedError(
        f"{type(family).__name__} does not implement {method}(), which this call needs: "
        f"{doc} (see the README, 'Write your own model')"
    )
