"""The Gaussian mixture as a family of the engine (:mod:`jaxem._src.family`).

Everything that depends on the covariance type lives in that type's module
(:mod:`jaxem._src.gmm.covariances`); this module only wires the Gaussian
passes (:mod:`jaxem._src.gmm.passes`), the M-step (:func:`maximize`), the
conjugate prior and the degeneracy check into the seam.

Statistics are :class:`Moments`: ``(n_k, Σ r (x − μ_k), second moments about
μ_k)`` about the means of the E-step's parameters, whichever formulation
computed them, so they add over chunks and devices and the M-step reads the
shift from the parameters.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.chunking import chunk_rows
from jaxem._src.family import (
    ChunkedRows,
    MixtureFamily,
    below_resolution,
    log_weights,
    no_coordinates,
    weights_from_logs,
)
from jaxem._src.gmm import covariances as cov_lib
from jaxem._src.gmm import layout as layout_lib
from jaxem._src.gmm import moments, passes
from jaxem._src.gmm.criteria import n_parameters
from jaxem._src.gmm.density import component_log_prob
from jaxem._src.gmm.params import GMMParams, from_covariances
from jaxem._src.gmm.prior import Prior, check_default_prior_data, log_prior, prior_from_moments
from jaxem._src.gmm.steps import (
    SuffStats,
    labelled_suff_stats,
    maximize,
    reshift,
    suff_stats,
)
from jaxem._src.gmm.unconstrained import from_unconstrained, to_unconstrained
from jaxem._src.hierarchical import UNROLL_MAX_FEATURES

__all__ = [
    "DEGENERATE_THRESHOLD",
    "FORMULATIONS",
    "TIE_THRESHOLD",
    "GaussianContext",
    "GaussianFamily",
]

FORMULATIONS = ("auto", "moments", "direct")

# A component is degenerate when its covariance, less reg_covar and in units of
# the data's feature variances, has an eigenvalue below TIE_THRESHOLD (its points
# lie on a lower-dimensional set: tied or discretised values), or below
# DEGENERATE_THRESHOLD while it holds at most D points (singular whatever their
# values): its likelihood is then held finite only by reg_covar (degenerate()).
DEGENERATE_THRESHOLD = 1e-6
TIE_THRESHOLD = 1e-9

#: Fewest rows for which a restart's first statistics from hard labels take
#: :func:`~jaxem._src.gmm.steps.labelled_suff_stats` (full and tied
#: covariances); below it the general sums cost little.
LABELLED_MIN_ROWS = 8192

#: Fewest ``rows × K`` for which a fit with a layout also keeps the features
#: of all rows about the data's mean (:meth:`GaussianFamily.whole_pass`). The
#: pass over them, where its check holds, is 2-3× faster than the layout's
#: loop over its chunks, but the fit program that holds both routes compiles
#: 0.3-0.6 s longer; below this the passes are short (20 000 × 8, K = 8:
#: 3.1 → 1.4 ms), so that only hundreds of iterations would repay the
#: compilation. Measured (float32, 2 cores, overlapping clusters, one start,
#: before / after): 100 000 × 16, K = 16, full covariances 14.5-14.7 →
#: 6.3-7.6 ms a pass (diagonal 7.4-8.0 → 3.2, tied 9.6-10.1 → 4.0, spherical
#: 6.6-6.9 → 3.0), the default fit's later call 426-430 → 341-349 ms and
#: its first 2.9 → 3.1-3.5 s; 200 000 × 8, K = 8: 9.1-9.3 → 3.2-3.7 ms;
#: clusters tens of σ apart (the check fails): the same pass, later calls
#: 170-175 → 184-193 ms (the features built for nothing).
WHOLE_PASS_MIN_ELEMENTS = 1 << 20

#: Largest ``rows × restarts × K`` of a pass over the features of all rows at
#: once (:meth:`GaussianFamily.whole_pass`, and over all the chunks of a
#: layout, :meth:`GaussianFamily.chunks_pass`: their logits and
#: responsibilities are temporaries of that many elements, 64 MB each in
#: float32); larger passes go over the layout's chunks one by one.
WHOLE_PASS_MAX_ELEMENTS = 1 << 24


class GaussianContext(NamedTuple):
    """What the Gaussian passes need of the data (weighted by the sample weights)."""

    count: jax.Array  # () Σ w
    center: jax.Array  # (D,) the weighted mean, the centre of the moment features
    covariance: jax.Array  # (D, D) the weighted covariance (divided by Σ w)
    variances: jax.Array  # (D,) its diagonal, 1 where a feature is constant


def gaussian_summary(x: jax.Array, w: jax.Array, ref: jax.Array):
    """``(Σ w, Σ w (x − r), Σ w (x − r)(x − r)ᵀ)`` about the row ``r``."""
    xr = x - ref
    return jnp.sum(w), w @ xr, (xr * w[:, None]).T @ xr


def gaussian_context(summary, ref: jax.Array) -> GaussianContext:
    count, s1, s2 = summary
    delta = s1 / count
    cov = s2 / count - jnp.outer(delta, delta)
    cov = 0.5 * (cov + cov.T)
    var = cov_lib.full.diagonal(cov)
    return GaussianContext(count, ref + delta, cov, jnp.where(var > 0, var, 1))


def constant_features(context: GaussianContext) -> jax.Array:
    """(D,) whether each feature is constant in the data (weighted variance 0;
    the context's ``variances`` hold 1 for them)."""
    return cov_lib.full.diagonal(context.covariance) <= 0


def degenerate(
    params: GMMParams,
    variances: jax.Array,
    reg_covar: ArrayLike,
    count: ArrayLike | None = None,
    constant: jax.Array | None = None,
) -> jax.Array:
    """Whether an active component is singular but for ``reg_covar``: a spike of
    the likelihood, not a meaningful optimum. Traceable.

    With ``λ`` the smallest eigenvalue of ``(Σ_k − reg_covar·I)`` standardised by
    the data's feature variances (``D^(−½) (Σ_k − reg·I) D^(−½)``):

    * ``λ <`` :data:`TIE_THRESHOLD`: its points lie on a lower-dimensional set
      (coincident or tied values, common on rounded data);
    * ``λ <`` :data:`DEGENERATE_THRESHOLD` and the component holds at most D
      points (``weight · count ≤ D``, ``count`` the data's total weight, a
      sample weight counting as that many points; a shared covariance: the
      whole ``count``): a covariance of at most D points is singular whatever
      their values, and in float32 its ``λ`` is rounding (up to about
      ``eps · λ_max``). ``count`` None: every component counts as few.

    A component of many points whose ``λ`` lies between the two thresholds is
    a nearly singular covariance of the data, not a spike. Measured: spikes of
    Old Faithful's random starts (K = 4–6, 120 keys) had ``λ`` within ±1.3e-10
    in float32 and ±6.5e-16 in float64; a 50-feature mixture whose generating
    covariances have ``λ`` of 5e-8 and 2e-7 (2000 points each) was flagged by
    the threshold alone, and fits with ten restarts returned a worse optimum
    that merged two clusters (−116.0 per sample against −111.6).

    ``constant`` (optional, (D,) bool): the features constant in the data
    (:func:`constant_features`; their ``variances`` are placeholders of 1).
    Every component has only ``reg_covar`` there, whatever the fit: such a
    feature is the data's, not a spike, and is left out of the check (before,
    one constant column flagged every restart, which turned the choice's
    protection against spikes off).
    """
    module = cov_lib.get(params.covariance_type)
    covariances = params.covariances
    if constant is not None and module.STORAGE != "spherical":
        # unit variance (in units of the placeholder) where the data is constant
        unit = constant.astype(covariances.dtype)
        covariances = covariances + (unit if module.STORAGE == "diag" else jnp.diag(unit))
    low = module.smallest_standardized_eigenvalue(covariances, variances, reg_covar)
    low = jnp.broadcast_to(low, params.weights.shape)
    few = jnp.asarray(True)
    if count is not None:
        points = count if module.SHARED else params.weights * count
        few = points <= params.n_features
    flagged = (low < TIE_THRESHOLD) | ((low < DEGENERATE_THRESHOLD) & few)
    return jnp.any((params.weights > 0) & flagged)


def context_degenerate(params: GMMParams, context: GaussianContext, reg_covar) -> jax.Array:
    """:func:`degenerate` with what the data's context gives it: the feature
    variances, the total weight and the constant features."""
    constant = constant_features(context)
    return degenerate(params, context.variances, reg_covar, context.count, constant)


def _at_once(n_rows: int, n_components: int, batch: int) -> bool:
    """Whether a pass over ``n_rows`` rows of features (a layout's slots,
    padding included) for ``batch`` restarts goes over all of them at once
    (:meth:`GaussianFamily.whole_pass`, :meth:`GaussianFamily.chunks_pass`):
    its temporaries within :data:`WHOLE_PASS_MAX_ELEMENTS`."""
    return n_rows * batch * n_components <= WHOLE_PASS_MAX_ELEMENTS


def layout_shape_of(n_rows: int, n_components: int, features: bool):
    """:func:`~jaxem._src.gmm.layout.layout_shape` of a layout of moment features
    (``features``) or of centred rows: features cut finer
    (:data:`~jaxem._src.gmm.layout.FLAT_CHUNKS_PER_GROUP`) where a pass over the
    finer layout's slots, padding included, takes all chunks at once."""
    shape = layout_lib.layout_shape(n_rows, n_components)
    if shape is None or not features:
        return shape
    finer = layout_lib.layout_shape(n_rows, n_components, layout_lib.FLAT_CHUNKS_PER_GROUP)
    return finer if _at_once(finer[1] * finer[2], n_components, 1) else shape


def portfolio(n_init: int, n_samples: int, n_features: int | None = None) -> tuple[str, ...]:
    """Initialisation methods of ``n_init`` restarts for ``init="auto"`` (static).

    ``standardized_kmeans`` first, then R mclust's start ``hc_vvv`` and the Ward
    agglomeration ``hc``, once each, then ``kmeans``, ``random_from_data`` and
    ``standardized_kmeans`` in turn. Measured on Old Faithful, iris and wine
    (experiments/initialisation.py): no single method reaches the best optimum
    everywhere. With 20 restarts and key 0 the mix is below R mclust's fit in 1
    of the 56 cells, and was in 3 without ``hc_vvv``, whose start leads to some
    optima no other method finds (experiments/README.md, section 6).

    Above :data:`~jaxem._src.init.HC_MAX_SAMPLES` rows the trees agglomerate
    random subsets, so further ``hc_vvv`` and ``hc`` restarts would differ,
    but they are not worth their cost: a tree of 256 rows of 8 features costs
    as much as a few dozen EM iterations of 5 000 rows. With the trees in the
    cycle instead (experiments/portfolio_subsets.py: 8 kinds of data of 569 to
    5 000 rows, 8 keys, ``n_init`` 8, 10 and 20), this portfolio ended higher in
    24 of 192 fits and lower in 6 (by at most 2.8e-4 per sample), in 0.66 to
    1.02 of the time (median 0.88).

    With more than :data:`~jaxem._src.hierarchical.UNROLL_MAX_FEATURES` features
    (``n_features``; None: unknown, as for chunked data) the portfolio leaves
    ``hc_vvv`` out: its determinants then go through LAPACK one small matrix at
    a time and a tree costs seconds (one CPU core: 256 rows of 30 features
    0.29 s, 1024 rows 3.5 s, against 0.11 s for 1024 rows of 16; Ward's tree of
    1024 × 30: 0.3 s).
    ``init="hc_vvv"`` still runs it.
    """
    agglomerations = ["hc_vvv", "hc"]
    if n_features is not None and n_features > UNROLL_MAX_FEATURES:
        agglomerations = ["hc"]
    cycle = ["kmeans", "random_from_data", "standardized_kmeans"]
    methods = ["standardized_kmeans", *agglomerations]
    first = len(methods)
    while len(methods) < n_init:
        methods.append(cycle[(len(methods) - first) % len(cycle)])
    return tuple(methods[:n_init])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianFamily(MixtureFamily):
    """Gaussian mixtures of one covariance type, as an engine family.

    Attributes:
        reg_covar: () added to the covariance diagonal in every M-step (traced).
        prior: optional conjugate prior (:class:`~jaxem.gmm.Prior`, traced);
            MAP EM.
        covariance_type: static.
        formulation: static, how each pass is computed: ``"moments"`` (two
            matrix products over moment features built once per fit, in
            spatially tight chunks centred at their own means for data of
            :data:`~jaxem._src.gmm.layout.LAYOUT_MIN_ROWS` rows or more),
            ``"direct"`` (scikit-learn's arithmetic, accurate in any regime) or
            ``"auto"``: moments in every chunk whose responsibilities pass
            :func:`jaxem._src.gmm.moments.chunk_is_accurate`, else direct; on
            data with a layout, first one pass over the features of all rows
            about the data's mean (:meth:`whole_pass`), and the layout's
            chunks where its check fails.
        default_prior: static; True for R mclust's default prior computed from
            the data and the number of active components (``prior`` is then
            ignored).
    """

    reg_covar: jax.Array
    prior: Prior | None = None
    covariance_type: str = dataclasses.field(default="full", metadata=dict(static=True))
    formulation: str = dataclasses.field(default="auto", metadata=dict(static=True))
    default_prior: bool = dataclasses.field(default=False, metadata=dict(static=True))

    # ------------------------------------------------------------------ data

    def summarize(self, x, w, ref):
        return gaussian_summary(x, w, ref)

    def context(self, summary, ref):
        return gaussian_context(summary, ref)

    def check_data(self, x, *, name="x"):
        x = super().check_data(x, name=name)
        if self.default_prior:
            check_default_prior_data(x, self.covariance_type)
        return x

    def bind(self, context: GaussianContext, n_active):
        if not self.default_prior:
            return self
        count = context.count
        unbiased = context.covariance * count / jnp.maximum(count - 1, 1e-12)
        prior = prior_from_moments(context.center, unbiased, n_active, self.covariance_type)
        return dataclasses.replace(self, prior=prior, default_prior=False)

    @property
    def has_features(self) -> bool:  # type: ignore[override]
        return self.formulation != "direct"

    def featurize(self, x, context: GaussianContext):
        return moments.features(x - context.center, self.covariance_type)

    def layout(self, x, w, context: GaussianContext, n_components, features=True):
        """The moment features in spatially tight chunks, each centred at its own
        mean (:mod:`jaxem._src.gmm.layout`), for data large enough; with
        ``features=False`` the chunks' centred rows (:class:`~jaxem._src.gmm.layout.RowChunk`),
        whose features :meth:`pass_` builds chunk by chunk."""
        shape = layout_shape_of(x.shape[0], n_components, features)
        if shape is None:
            return None
        if not features:
            arranged = layout_lib.arrange(x, w, shape)
            rows = layout_lib.RowChunk(arranged.centred, arranged.centers)
            return ChunkedRows(rows, arranged.weights)
        built = layout_lib.build(x, w, self.covariance_type, shape)
        return ChunkedRows((built.features, built.centers), built.weights)

    def layout_state(self, params, weights):
        """The accuracy budget the chunks of one ``"auto"`` pass share
        (:func:`~jaxem._src.gmm.moments.pooled_check`)."""
        if self.formulation != "auto":
            return None
        return moments.budget(params, jnp.sum(weights))

    def layout_pass(self, params, item, w, context, state):
        """A chunk of the layout: its features (built here from a
        :class:`~jaxem._src.gmm.layout.RowChunk`) about its own centre, checked
        against the pass's budget ``state`` (None: ``"moments"``, no check)."""
        if isinstance(item, layout_lib.RowChunk):
            phi = moments.features(item.centred, self.covariance_type)
            center, xc = item.center, item.centred
        else:
            (phi, center), xc = item, None
        out = passes.feature_chunk(params, phi, w, center, self.formulation, budget=state, xc=xc)
        return out if state is not None else (out, state)

    def chunks_pass(self, params, items, weights, context, loop, batch):
        """A layout of moment features (each chunk's about its own centre): all
        its chunks at once (:func:`~jaxem._src.gmm.passes.layout_pass`) while
        the pass's (rows, restarts × K) temporaries hold at most
        :data:`WHOLE_PASS_MAX_ELEMENTS`; else, and for a layout of centred
        rows (:class:`~jaxem._src.gmm.layout.RowChunk`), the loop."""
        if isinstance(items, layout_lib.RowChunk) or not _at_once(
            weights.size, params.means.shape[-2], batch
        ):
            return loop(params)
        phi, centers = items
        return passes.layout_pass(params, phi, weights, centers, self.formulation)

    def tries_whole_pass(self, n_rows, n_components):
        return self.formulation == "auto" and n_rows * n_components >= WHOLE_PASS_MIN_ELEMENTS

    def whole_pass(self, params, features, w, context, chunks, batch):
        """The moment route over the features of all rows about the data's
        centre, checked as :func:`~jaxem._src.gmm.passes.feature_chunk` checks
        a chunk that is the whole data, and the pass over the layout's chunks
        (``chunks``) where that check fails (before the E-step at the shares
        the weights predict, or after it): one pair of products instead of a
        loop over the chunks, which costs more than the products themselves.
        Passes of more than :data:`WHOLE_PASS_MAX_ELEMENTS` take the chunks."""
        k = params.means.shape[-2]
        if self.formulation != "auto" or not _at_once(w.shape[0], k, batch):
            return chunks(params)
        out, accurate = passes.feature_chunk(
            params, features, w, context.center, "auto", context.count, report=True
        )
        # one decision for a batch of restarts (feature_chunk's): a branch, not a select
        return jax.lax.cond(accurate, lambda: out, lambda: chunks(params))

    def chunk_rows(self, n_rows, params, rows, batch, mode):
        k, d = params.means.shape[-2:]
        if mode == "raw":
            return chunk_rows(n_rows, batch * k * d)
        if mode == "features":
            width = moments.n_features_of(self.covariance_type, d)
            return chunk_rows(n_rows, width + batch * k, target=passes.MOMENT_CHUNK_ELEMENTS)
        return chunk_rows(n_rows, batch * k, target=passes.CACHED_CHUNK_ELEMENTS)

    # -------------------------------------------------------------------- EM

    def pass_(self, params, rows, w, context):
        if self.formulation == "direct":
            return passes.direct_chunk(params, rows, w)
        # rows in the data's order, all of them or a chunk (a layout's chunks: layout_pass)
        return passes.feature_chunk(
            params, rows, w, context.center, self.formulation, context.count
        )

    def maximize(self, stats, params, context):
        shift = params.means
        full = SuffStats(stats.nk, stats.sum_x, stats.sum_xx, shift, self.covariance_type)
        return maximize(
            full, reg_covar=self.reg_covar, prior=self.prior, previous=params.covariances
        )

    @property
    def has_prior(self) -> bool:  # type: ignore[override]
        return self.prior is not None or self.default_prior

    def canonical(self, params):
        return from_covariances(
            params.weights, params.means, params.covariances, params.covariance_type
        )

    def watches_prior(self, criterion: str) -> bool:
        """With a prior, R mclust's relative rule (``criterion="relative"``)
        watches the log-likelihood alone, as its ``me`` does with
        ``priorControl()``; the log posterior otherwise. (Watching the
        posterior, fits from mclust's starts stopped 5–15 iterations early and
        select's BIC cells were off by up to 15.)"""
        return not (criterion == "relative" and self.prior is not None)

    def log_prior(self, params):
        if self.prior is None:
            return jnp.zeros((), params.dtype)
        return log_prior(params, self.prior)

    def valid(self, params):
        factor = params.precisions_cholesky
        if cov_lib.get(params.covariance_type).STORAGE in ("full", "tied"):
            factor = jnp.diagonal(factor, axis1=-2, axis2=-1)
        return super().valid(params) & jnp.all(factor > 0)

    def unconstrain(self, params):
        # log-weights, means, the precision Cholesky factors' free coordinates
        # (log diagonal): jaxem.gmm.unconstrained, inactive logits made finite
        u = to_unconstrained(params)
        return u._replace(logits=log_weights(params.weights))

    def boundary(self, params):
        return no_coordinates(self.unconstrain(params))._replace(
            logits=below_resolution(params.weights)
        )

    def constrain(self, u, like):
        params = from_unconstrained(u, like.covariance_type)
        return dataclasses.replace(params, weights=weights_from_logs(u.logits, like.weights))

    def differentiable(self):
        # the moment passes batch restarts with a custom vmap rule, which has
        # no reverse-mode derivative; the direct pass (the same map) has one
        return dataclasses.replace(self, formulation="direct")

    def reframe(self, stats, old, new):
        full = SuffStats(stats.nk, stats.sum_x, stats.sum_xx, old.means, self.covariance_type)
        moved = reshift(full, new.means)
        return passes.Moments(moved.nk, moved.sum_x, moved.sum_xx)

    # ----------------------------------------------------------------- model

    def log_components(self, params, x):
        return component_log_prob(params, x)

    def suff_stats(self, resp, x):
        raise NotImplementedError("the Gaussian family computes its statistics in pass_")

    def weighted_stats(self, params, resp, x, context=None):
        """:class:`~jaxem._src.gmm.passes.Moments` about ``params.means`` (the
        frame :meth:`maximize` reads) of rows ``x`` with responsibilities
        ``resp``: by the family's formulation about the data's centre
        (:func:`~jaxem._src.gmm.passes.responsibility_stats`) given the
        ``context``, directly without it."""
        formulation = "direct" if context is None else self.formulation
        center = None if context is None else context.center
        return passes.responsibility_stats(params, resp, x, center, formulation)

    def n_parameters(self, params):
        return n_parameters(params)

    def sample_components(self, key, params, labels):
        """(n, D) points drawn from the components ``labels`` (n,)."""
        module = cov_lib.get(params.covariance_type)
        z = jax.random.normal(key, (labels.shape[0], params.means.shape[-1]), params.dtype)
        return params.means[labels] + module.scale_noise(z, params.covariances, labels)

    def degenerate(self, params, context):
        return context_degenerate(params, context, self.reg_covar)

    def pass_name(self, fast):
        return "moments" if self.formulation == "moments" or fast else "direct"

    def fast(self, params, context):
        # about the data's mean: conservative where the features are centred
        # chunk by chunk (layout), whose chunks are checked in the pass itself
        if self.formulation == "direct":
            return jnp.asarray(False)
        return moments.is_accurate(params, context.center)

    def trim(self, params):
        return trim(params)

    # -------------------------------------------------------- initialisation

    def portfolio(self, n_init, n_samples, n_features=None):
        return portfolio(n_init, n_samples, n_features)

    def init_view(self):
        """Every covariance type, formulation and prior starts from the same
        responsibilities (k-means and the agglomerations of the data): one
        canonical family computes them for all. Subclasses that read the data
        otherwise (missing values) initialise inside their fit."""
        return _INIT_VIEW if type(self) is GaussianFamily else None

    def init_stats(self, resp, x, w, context):
        """Statistics about the responsibility-weighted means (two passes: the
        most accurate), and a frame whose means are those."""
        stats = suff_stats(resp, x, covariance_type=self.covariance_type, sample_weight=w)
        return self._with_frame(stats, x)

    def labels_init_stats(self, resp, x, w, context):
        """:meth:`init_stats` of hard labels (the starts of k-means and of the
        agglomerations): on :data:`LABELLED_MIN_ROWS` rows or more, full and
        tied statistics by :func:`~jaxem._src.gmm.steps.labelled_suff_stats`."""
        if self.covariance_type not in ("full", "tied") or x.shape[0] < LABELLED_MIN_ROWS:
            return self.init_stats(resp, x, w, context)
        stats = labelled_suff_stats(resp, x, covariance_type=self.covariance_type, sample_weight=w)
        return self._with_frame(stats, x)

    def _with_frame(self, stats, x):
        nk = stats.nk
        unit = cov_lib.get(self.covariance_type).unit(nk.shape[0], x.shape[1], x.dtype)
        frame = GMMParams(nk / jnp.sum(nk), stats.shift, unit, unit, self.covariance_type)
        return passes.Moments(stats.nk, stats.sum_x, stats.sum_xx), frame


def trim(params: GMMParams) -> GMMParams:
    """Concrete parameters without their inactive components; a tied covariance
    (D, D) is kept whole (the generic rule would cut it when D equals K)."""
    keep = np.asarray(params.weights) > 0
    shared = cov_lib.get(params.covariance_type).SHARED
    return dataclasses.replace(
        params,
        weights=params.weights[keep],
        means=params.means[keep],
        covariances=params.covariances if shared else params.covariances[keep],
        precisions_cholesky=(
            params.precisions_cholesky if shared else params.precisions_cholesky[keep]
        ),
    )


def check_formulation(formulation: object) -> str:
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}; got {formulation!r}")
    return formulation


# The family whose program computes the starts of every GaussianFamily.
_INIT_VIEW = GaussianFamily(reg_covar=0.0)


def shared_init_view() -> GaussianFamily:
    """The Gaussian family's init view (:meth:`GaussianFamily.init_view`), for
    other families whose starting responsibilities are the same functions of the
    raw rows (k-means and the agglomerations of the data; the Student-t mixture
    and the factor analysers): their fits and selections share its programs."""
    return _INIT_VIEW
