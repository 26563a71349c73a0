"""Hidden Markov models as a family of the engine (Baum–Welch is its EM).

``p(x_{0:T}) = Σ_z π_{z_0} p(x_0 | z_0) Π_t A_{z_{t−1} z_t} p(x_t | z_t)``. The
emission model of the states is any mixture family of jaxem whose components
are the states (:class:`~jaxem.gmm.GaussianFamily` of any covariance type,
:class:`~jaxem.mixtures.Poisson`, :class:`~jaxem.mixtures.Categorical`, ...):
the HMM reuses its component densities (``log_components``), its statistics
from responsibilities (``weighted_stats``), its M-step, prior, parameter count
and initialisation, with the states' posteriors in place of a mixture's
responsibilities. The emission parameters' ``weights`` hold the states'
occupancy (a state with weight 0 is inactive, as a mixture component).

The pass over a chunk of sequences is forward–backward over each whole
sequence (vmapped; :mod:`jaxem._src.hmm.inference`): its statistics — expected
start counts, transition counts, the emission statistics and the number of
frames — add over sequences, so every source of the engine applies. The
objective is the log-likelihood (plus log prior) per frame.

The M-step is maximum likelihood, or under symmetric Dirichlet priors on the
start probabilities and each row of the transition matrix (hmmlearn's
``startprob_prior`` and ``transmat_prior``) their posterior mode
``∝ max(n + α − 1, 0)``. As in hmmlearn a start or transition probability that
is exactly 0 stays 0 (left–right models).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.family import (
    Family,
    MixtureFamily,
    below_resolution,
    concrete_starts,
    log_weights,
    no_coordinates,
    weights_from_logs,
)
from jaxem._src.hmm import inference
from jaxem._src.hmm.sequences import Sequences, sequences
from jaxem._src.mixtures.common import log_floor
from jaxem._src.validation import check_hyperparameters, check_static_int, concrete

__all__ = ["HMM", "HMMParams", "HMMStats"]

PyTree = Any

# Elements per chunk of sequences of a pass: larger than the mixtures' target,
# since every chunk is a sequential scan over time.
HMM_CHUNK_ELEMENTS = 8_000_000


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HMMParams:
    """Parameters of a K-state hidden Markov model.

    Attributes:
        startprob: (K,) ``p(z_0 = k)``.
        transmat: (K, K) ``p(z_t = j | z_{t−1} = i)`` at ``[i, j]``; rows sum to 1.
        emission: the emission family's parameters, one component per state
            (their ``weights`` (K,): the states' occupancy; 0 marks an
            inactive state).
    """

    startprob: jax.Array
    transmat: jax.Array
    emission: PyTree

    @property
    def n_states(self) -> int:
        return self.startprob.shape[-1]


class HMMStats(NamedTuple):
    """Additive statistics of sequences (sums over sequences, weighted).

    Attributes:
        start: (K,) ``Σ_s w_s p(z_0 = k | x_s)``.
        transitions: (K, K) ``Σ_s w_s Σ_t p(z_t = i, z_{t+1} = j | x_s)``.
        emission: the emission family's statistics with the state posteriors
            as responsibilities.
        occupancy: (K,) ``Σ_s w_s Σ_t p(z_t = k | x_s)``.
        frames: () ``Σ_s w_s T_s``.
    """

    start: jax.Array
    transitions: jax.Array
    emission: PyTree
    occupancy: jax.Array
    frames: jax.Array


def _normalize_rows(counts, fallback):
    total = jnp.sum(counts, axis=-1, keepdims=True)
    return jnp.where(total > 0, counts / jnp.where(total > 0, total, 1), fallback)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HMM(Family):
    """A hidden Markov model with the states' emissions from a mixture family.

    Build one with :func:`jaxem.hmm.gaussian`, :func:`~jaxem.hmm.categorical`
    or :func:`~jaxem.hmm.poisson` (or ``HMM(emission)`` with any
    :class:`~jaxem.MixtureFamily` that implements
    ``weighted_stats(params, resp, x, context=None)``, ``context`` being the
    emission's context of the frames; statistics with an ``nk`` field, the
    states' occupancy, save a pass); fit it with :func:`jaxem.fit` and
    :func:`jaxem.select` on :func:`jaxem.hmm.sequences`.

    Attributes:
        emission: the emission family (its hyperparameters are traced, its
            static fields static).
        startprob_prior: ``α ≥ 1`` of a symmetric Dirichlet prior on the start
            probabilities (traced; 1, the default, is maximum likelihood).
        transmat_prior: ``α ≥ 1`` of the same prior on each row of the
            transition matrix (traced).
        parallel: static; forward–backward by ``lax.associative_scan`` over
            time (O(log T) depth; for long sequences on accelerators) instead
            of a sequential ``lax.scan``.
    """

    emission: MixtureFamily
    startprob_prior: ArrayLike = 1.0
    transmat_prior: ArrayLike = 1.0
    parallel: bool = dataclasses.field(default=False, metadata=dict(static=True))

    init_methods = ("kmeans", "k-means++", "random", "standardized_kmeans")

    def __post_init__(self):
        # α < 1 makes the MAP estimate of a probability 0 and the log prior +∞
        check_hyperparameters(self, {"startprob_prior": 1.0, "transmat_prior": 1.0})

    # ------------------------------------------------------------------ data

    def check_data(self, x, *, name="x") -> Sequences:
        seqs = sequences(x, name=name)
        v = concrete(seqs.x)
        lengths = concrete(seqs.lengths)
        if v is not None and lengths is not None:
            observed = np.asarray(v)[np.arange(v.shape[1]) < np.asarray(lengths)[:, None]]
            self.emission.check_data(observed, name=name)
        return seqs

    def n_features_of(self, params) -> int | None:
        return self.emission.n_features_of(params.emission)

    def n_features_in(self, x) -> int | None:
        return x.x.shape[-1]

    def max_components(self, x) -> int:
        # the observed frames, not the padded (S, T) grid
        lengths = concrete(x.lengths)
        return int(np.sum(lengths)) if lengths is not None else int(np.prod(x.x.shape[:2]))

    def _frames(self, x: Sequences, w: jax.Array | None):
        """(S·T, D) frames and their (S·T,) weights (0 on padding)."""
        s, t = x.x.shape[:2]
        w = jnp.ones((s,), x.x.dtype) if w is None else w
        return x.frames(), (w[:, None] * x.mask).reshape(s * t)

    def summarize(self, x, w, ref):
        frames, wf = self._frames(x, w)
        return {
            "count": jnp.sum(wf),
            "emission": self.emission.summarize(frames, wf, ref.x[0]),
        }

    def context(self, summary, ref):
        return {
            "count": summary["count"],
            "emission": self.emission.context(summary["emission"], ref.x[0]),
        }

    def bind(self, context, n_active):
        emission = self.emission.bind(context["emission"], n_active)
        return dataclasses.replace(self, emission=emission)

    def chunk_rows(self, n_rows, params, rows, batch, mode):
        k = self.n_components_of(params)
        t, d = rows.x.shape[1:]
        per_sequence = t * (batch * k * (8 + d) + d)
        return (
            n_rows
            if n_rows * per_sequence <= HMM_CHUNK_ELEMENTS
            else max(1, HMM_CHUNK_ELEMENTS // per_sequence)
        )

    # -------------------------------------------------------------------- EM

    def log_emissions(self, params: HMMParams, x: Sequences, *, exact: bool = False) -> jax.Array:
        """(S, T, K) ``log p(x_st | z = k)`` (0 at padding). The emission
        families floor a zero probability's log (finite sums in EM); with
        ``exact`` (static; the scores, posteriors and paths users see) it is
        −∞, so a sequence of probability 0 scores −∞ as in hmmlearn."""
        s, t = x.x.shape[:2]
        frames = x.frames()
        log_b = self.emission.log_components(params.emission, frames)
        impossible = self.emission.impossible(params.emission, frames) if exact else None
        if impossible is not None:
            log_b = jnp.where(impossible, -jnp.inf, log_b)
        return jnp.where(x.mask[..., None], log_b.reshape(s, t, -1), 0)

    def smooth(self, params: HMMParams, x) -> inference.Smoothed:
        """Forward–backward on every sequence: posteriors (S, T, K),
        transition counts (S, K, K) and log-likelihoods (S,)."""
        return _smooth(self, params, self.check_data_for(params, x))

    def _smooth(self, params: HMMParams, x: Sequences) -> inference.Smoothed:
        log_b = self.log_emissions(params, x, exact=True)

        def one(lb, mask):
            return inference.smooth(
                params.startprob, params.transmat, lb, mask, parallel=self.parallel
            )

        return jax.vmap(one)(log_b, x.mask)

    def pass_(self, params, rows, w, context):
        log_b = self.log_emissions(params, rows)

        def one(lb, mask, weight):
            return inference.terms(
                params.startprob, params.transmat, lb, mask, weight, parallel=self.parallel
            )

        terms = jax.vmap(one)(log_b, rows.mask, w)  # posteriors and q weighted
        s, t, k = terms.posteriors.shape
        resp = terms.posteriors.reshape(s * t, k)  # 0 at padding
        emission = self.emission.weighted_stats(
            params.emission, resp, rows.frames(), None if context is None else context["emission"]
        )
        transitions = inference.transition_counts(
            params.transmat, terms.q.reshape(s * t, k), terms.u.reshape(s * t, k)
        ) + jnp.sum(terms.transitions, axis=0)
        # the occupancy from the emission's statistics where they carry it
        # (XLA would otherwise recompute the posteriors for one more reduction)
        occupancy = getattr(emission, "nk", None)
        if occupancy is None:
            occupancy = jnp.sum(resp, axis=0)
        stats = HMMStats(
            start=jnp.sum(terms.posteriors[:, 0], axis=0),
            transitions=transitions,
            emission=emission,
            occupancy=occupancy,
            frames=jnp.sum(w * rows.lengths),
        )
        return stats, jnp.sum(w * terms.log_likelihood)

    def differentiable(self):
        # the emission's differentiable configuration (a Gaussian emission's
        # direct statistics: the same map without the route's decision)
        return dataclasses.replace(self, emission=self.emission.differentiable())

    def objective(self, params, stats, ll_sum, total):
        """Log-likelihood plus log prior per frame (per unit of frame weight)."""
        return (ll_sum + self.log_prior(params)) / stats.frames

    @property
    def likelihood_objective(self) -> bool:
        return True  # the sequences' log-likelihood (plus log prior), per frame

    def maximize(self, stats, params, context):
        active = stats.occupancy > 0
        dtype = stats.transitions.dtype
        uniform = active / jnp.maximum(jnp.sum(active), 1)
        # a row without counts (a state entered only at a sequence's last
        # frame, or never) keeps its probabilities among the active states,
        # so that an exact 0 stays 0; uniform where none is left
        keep_start = _normalize_rows(params.startprob * active, uniform)
        keep_trans = _normalize_rows(params.transmat * active[None, :], uniform[None, :])
        start = jnp.maximum(stats.start + (self.startprob_prior - 1), 0) * active
        start = jnp.where(params.startprob == 0, 0, start)
        startprob = _normalize_rows(start, keep_start)
        trans = jnp.maximum(stats.transitions + (self.transmat_prior - 1), 0) * active[None, :]
        trans = jnp.where(params.transmat == 0, 0, trans)
        transmat = _normalize_rows(trans, keep_trans)
        emission = self.emission.maximize(stats.emission, params.emission, context["emission"])
        return HMMParams(startprob.astype(dtype), transmat.astype(dtype), emission)

    @property
    def has_prior(self) -> bool:  # type: ignore[override]
        return True  # Dirichlet pseudo-counts weigh against absolute counts

    def log_prior(self, params):
        active = self._active(params)
        pair = active[:, None] & active[None, :]
        start = jnp.where(active, (self.startprob_prior - 1) * log_floor(params.startprob), 0)
        trans = jnp.where(pair, (self.transmat_prior - 1) * log_floor(params.transmat), 0)
        return jnp.sum(start) + jnp.sum(trans) + self.emission.log_prior(params.emission)

    def valid(self, params):
        return (
            jnp.all(params.startprob >= 0)
            & jnp.all(params.transmat >= 0)
            & self.emission.valid(params.emission)
        )

    def check_params(self, params: HMMParams) -> None:
        """Concrete parameters given at the Python boundary (scores, decoding,
        starts): finite start probabilities and rows of the transition matrix
        of the active states, non-negative and summing to 1, and :meth:`valid`;
        a ``ValueError`` otherwise (traced parameters pass)."""
        leaves = [concrete(leaf) for leaf in jax.tree.leaves(params)]
        if any(leaf is None for leaf in leaves):
            return
        start, trans = np.asarray(params.startprob), np.asarray(params.transmat)
        k = start.shape[-1]
        if start.ndim != 1 or trans.shape != (k, k):
            raise ValueError(
                f"startprob must be (K,) and transmat (K, K); got {start.shape} and {trans.shape}"
            )
        active = np.asarray(self._active(params))
        # float32's rounding whatever the dtype (float32 parameters cast to float64)
        atol = 1e-4 * max(1, k)
        rows = trans[active]
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(rows))):
            raise ValueError("startprob and transmat must be finite")
        if abs(float(start.sum()) - 1) > atol or np.any(np.abs(rows.sum(1) - 1) > atol):
            raise ValueError(
                f"startprob and each row of transmat must sum to 1; they sum to "
                f"{float(start.sum())!r} and {rows.sum(1).tolist()}"
            )
        if not bool(self.valid(params)):
            raise ValueError(
                "params lie outside the HMM's parameter space (negative start or transition "
                "probabilities, or emission parameters outside the emission family's)"
            )

    def check_start(self, params, x):
        super().check_start(params, x)
        for start in concrete_starts(self, params):
            self.check_params(start)

    def unconstrain(self, params):
        return HMMParams(
            log_weights(params.startprob),
            jax.vmap(log_weights)(params.transmat),
            self.emission.unconstrain(params.emission),
        )

    def boundary(self, params):
        emission = self.emission.boundary(params.emission)
        if emission is None:
            emission = no_coordinates(self.emission.unconstrain(params.emission))
        return HMMParams(
            below_resolution(params.startprob), below_resolution(params.transmat), emission
        )

    def constrain(self, u, like):
        return HMMParams(
            weights_from_logs(u.startprob, like.startprob),
            jax.vmap(weights_from_logs)(u.transmat, like.transmat),
            self.emission.constrain(u.emission, like.emission),
        )

    # ----------------------------------------------------------------- model

    def _active(self, params) -> jax.Array:
        return params.emission.weights > 0

    def n_parameters(self, params):
        """``(K−1) + K(K−1) +`` the emission's count without its mixing
        weights, over the active states: hmmlearn's count, except for a
        GMM-HMM, whose K(M − 1) mixing weights hmmlearn 0.3 counts as M − 1."""
        k = jnp.sum(self._active(params))
        return (k - 1) + k * (k - 1) + self.emission.n_parameters(params.emission) - (k - 1)

    def degenerate(self, params, context):
        return self.emission.degenerate(params.emission, context["emission"])

    def n_components_of(self, params):
        return params.startprob.shape[-1]

    def as_batch(self, params):
        if params.startprob.ndim == 2:
            return params
        return jax.tree.map(lambda a: jnp.asarray(a)[None], params)

    def trim(self, params):
        keep = np.asarray(self._active(params))
        return HMMParams(
            params.startprob[keep],
            params.transmat[keep][:, keep],
            self.emission.trim(params.emission),
        )

    # -------------------------------------------------------- initialisation

    def portfolio(self, n_init, n_samples, n_features=None):
        cycle = ("kmeans", "k-means++", "standardized_kmeans")
        return tuple(cycle[i % len(cycle)] for i in range(n_init))

    def initial_stats(self, keys, x, w, n_components, n_active, methods, context):
        """The emission family's initialisation on the frames (padding with
        weight 0), uniform start and transition probabilities over the active
        states (as hmmlearn)."""
        frames, wf = self._frames(x, w)
        em_stats, em_frame = self.emission.initial_stats(
            keys, frames, wf, n_components, n_active, methods, context["emission"]
        )
        # discrete emissions' hard starts come moved towards the data's mean
        # (DiscreteMixture.labels_init_stats): no state without mass for a symbol
        nk = em_stats.nk  # (R, K)
        active = (nk > 0).astype(frames.dtype)
        r = nk.shape[0]
        stats = HMMStats(
            start=active,
            transitions=active[:, :, None] * active[:, None, :],
            emission=em_stats,
            occupancy=nk,
            frames=jnp.broadcast_to(jnp.sum(wf), (r,)),
        )
        ones = jnp.ones((r, n_components), frames.dtype)
        frame = HMMParams(ones, ones[:, :, None] * ones[:, None, :], em_frame)
        return stats, frame

    # ---------------------------------------------------- inference for users

    def e_step(self, params: HMMParams, x) -> tuple[HMMStats, jax.Array]:
        """``(statistics, log-likelihood per frame)``; ``maximize(stats,
        params, context)`` is the M-step (the user-facing pair)."""
        x = self.check_data_for(params, x)
        stats, ll = _pass(self, params, x)
        return stats, ll / stats.frames

    def log_prob(self, params: HMMParams, x) -> jax.Array:
        """(S,) ``log p(x_s)`` of every sequence (hmmlearn's ``score`` of each)."""
        self.check_params(params)
        return _log_prob(self, params, self.check_data_for(params, x))

    def score(self, params: HMMParams, x) -> jax.Array:
        """() total log-likelihood of all sequences (hmmlearn's ``score``)."""
        return jnp.sum(self.log_prob(params, x))

    def predict_proba(self, params: HMMParams, x) -> jax.Array:
        """(S, T, K) posterior state probabilities ``p(z_t | x_s)`` (0 at padding)."""
        self.check_params(params)
        return _smooth(self, params, self.check_data_for(params, x)).posteriors

    def decode(self, params: HMMParams, x) -> tuple[jax.Array, jax.Array]:
        """Viterbi: ``(log p(x_s, z*_s) (S,), z* (S, T))``, −1 at padding."""
        self.check_params(params)
        return _decode(self, params, self.check_data_for(params, x))

    def predict(self, params: HMMParams, x) -> jax.Array:
        """(S, T) the Viterbi path of each sequence, −1 at padding."""
        return self.decode(params, x)[1]

    def bic(self, params: HMMParams, x) -> jax.Array:
        """``−2 log L + p log N`` with N the number of frames (hmmlearn's)."""
        x = self.check_data_for(params, x)
        n = jnp.sum(x.lengths).astype(x.x.dtype)
        return -2 * self.score(params, x) + self.n_parameters(params) * jnp.log(n)

    def aic(self, params: HMMParams, x) -> jax.Array:
        """``−2 log L + 2 p``."""
        return -2 * self.score(params, x) + 2 * self.n_parameters(params)

    def sample(
        self, key: jax.Array, params: HMMParams, n_steps: int, n_sequences: int = 1
    ) -> tuple[Sequences, jax.Array]:
        """Draw ``n_sequences`` sequences of ``n_steps`` frames.

        Returns:
            ``(x, states)``: :class:`Sequences` of (n_sequences, n_steps, D)
            frames and (n_sequences, n_steps) int32 states.
        """
        n_steps = check_static_int("n_steps", n_steps, minimum=1)
        n_sequences = check_static_int("n_sequences", n_sequences, minimum=1)
        return _sample(self, key, params, n_steps, n_sequences)

    def _sample(self, key, params, n_steps, n_sequences):
        key_z, key_x = jax.random.split(key)
        log_a = log_floor(params.transmat)
        log_a = jnp.where(params.transmat > 0, log_a, -jnp.inf)
        log_pi = jnp.where(params.startprob > 0, log_floor(params.startprob), -jnp.inf)

        def chain(key):
            k0, k1 = jax.random.split(key)
            z0 = jax.random.categorical(k0, log_pi)

            def step(z, k):
                nxt = jax.random.categorical(k, log_a[z])
                return nxt, nxt

            _, rest = jax.lax.scan(step, z0, jax.random.split(k1, n_steps - 1))
            return jnp.concatenate([z0[None], rest]).astype(jnp.int32)

        states = jax.vmap(chain)(jax.random.split(key_z, n_sequences))
        frames = self.emission.sample_components(key_x, params.emission, states.reshape(-1))
        x = frames.reshape(n_sequences, n_steps, -1)
        return Sequences(x, jnp.full((n_sequences,), n_steps, jnp.int32)), states


# The user-facing inference, one compiled program each per family and shapes
# (the family is a traced argument: its hyperparameters do not recompile).


@functools.partial(jax.jit, static_argnames=("n_steps", "n_sequences"))
def _sample(family: HMM, key, params: HMMParams, n_steps: int, n_sequences: int):
    return family._sample(key, params, n_steps, n_sequences)


@jax.jit
def _smooth(family: HMM, params: HMMParams, x: Sequences) -> inference.Smoothed:
    return family._smooth(params, x)


@jax.jit
def _pass(family: HMM, params: HMMParams, x: Sequences):
    w = jnp.ones(x.x.shape[0], x.x.dtype)
    ref = jax.tree.map(lambda a: a[0], x)
    return family.pass_(params, x, w, family.context(family.summarize(x, w, ref), ref))


@jax.jit
def _log_prob(family: HMM, params: HMMParams, x: Sequences) -> jax.Array:
    log_b = family.log_emissions(params, x, exact=True)

    def one(lb, mask):
        return inference.forward(
            params.startprob, params.transmat, lb, mask, parallel=family.parallel
        )[1]

    return jax.vmap(one)(log_b, x.mask)


@jax.jit
def _decode(family: HMM, params: HMMParams, x: Sequences):
    log_b = family.log_emissions(params, x, exact=True)
    return jax.vmap(lambda lb, m: inference.viterbi(params.startprob, params.transmat, lb, m))(
        log_b, x.mask
    )
