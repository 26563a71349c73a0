"""One-call fitting: initialisation, vmapped restarts and EM in one compiled program."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._validation import (
    as_data,
    check_key,
    check_n_active,
    check_sample_weight,
    check_scalar,
    check_static_int,
)
from jaxem.em import EMResult, iterate
from jaxem.gmm import covariances as cov_lib
from jaxem.gmm.init import HC_MAX_SAMPLES, INIT_METHODS, check_method, init_resp
from jaxem.gmm.moments import is_accurate
from jaxem.gmm.params import GMMParams
from jaxem.gmm.passes import direct_pass, moment_pass_for
from jaxem.gmm.prior import Prior, check_prior, default_prior, log_prior
from jaxem.gmm.steps import m_step, maximize

__all__ = [
    "DEGENERATE_THRESHOLD",
    "REFINE_MAX_ITER",
    "REFINE_TOL",
    "FitResult",
    "default_n_refine",
    "degenerate",
    "fit",
    "portfolio",
    "refine",
    "selection_scores",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitResult:
    """The best of ``n_init`` restarts of EM.

    Attributes:
        params: :class:`GMMParams` of the chosen restart.
        log_likelihood: () its mean per-sample log-likelihood.
        history: (max_iter,), or (max_iter + refine_max_iter,) when restarts
            were refined: its per-iteration log-likelihoods, the refinement's
            following the screening's (NaN after the end).
        n_iter: () its number of EM iterations (screening and refinement).
        converged: () whether it converged: within ``max_iter`` by the change
            rule, or, if it was refined, within ``refine_max_iter`` by Aitken's rule.
        restart_log_likelihoods: (n_init,) final mean log-likelihood of every
            restart (after refinement for the refined ones).
        best_restart: () index of the chosen restart.
        fast_path: () whether EM ran on the moment formulation
            (:mod:`jaxem.gmm.moments`) rather than the direct one.
        restart_initializers: (n_init,) int32 index into
            :data:`~jaxem.gmm.init.INIT_METHODS` of the method that started each
            restart, −1 for starts given by the caller (:attr:`initializer`
            names the chosen one).
        restart_degenerate: (n_init,) whether each restart ended degenerate
            (:func:`degenerate`); such restarts are chosen only if all are.
        restart_refined: (n_init,) whether each restart was refined (continued
            to ``refine_tol`` after the screening, see :func:`fit`).
    """

    params: GMMParams
    log_likelihood: jax.Array
    history: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    restart_log_likelihoods: jax.Array
    best_restart: jax.Array
    fast_path: jax.Array
    restart_initializers: jax.Array
    restart_degenerate: jax.Array
    restart_refined: jax.Array

    @property
    def initializer(self) -> str:
        """Name of the initialisation method of the chosen restart (concrete results)."""
        code = int(self.restart_initializers[self.best_restart])
        return INIT_METHODS[code] if code >= 0 else "given"

    @property
    def degenerate(self) -> jax.Array:
        """Whether the chosen restart is degenerate (:func:`degenerate`)."""
        return self.restart_degenerate[self.best_restart]


FORMULATIONS = ("auto", "moments", "direct")


def _run(pass_fn, params, *, tol, reg_covar, max_iter, prior=None, criterion="change"):
    """EM with ``pass_fn(params) -> (stats, mean ll)``; with a prior the objective
    is the mean log posterior ``ll + log p(θ) / Σ w``."""

    def objective(p, stats, ll):
        return ll if prior is None else ll + log_prior(p, prior) / jnp.sum(stats.nk)

    def step(p):
        stats, ll = pass_fn(p)
        return maximize(stats, reg_covar=reg_covar, prior=prior), objective(p, stats, ll)

    def value(p):
        return objective(p, *pass_fn(p))

    return iterate(step, value, params, tol=tol, max_iter=max_iter, criterion=criterion)


def run_batch(
    starts: GMMParams,
    x: jax.Array,
    *,
    tol: ArrayLike,
    reg_covar: ArrayLike,
    max_iter: int,
    sample_weight: jax.Array | None = None,
    formulation: str = "auto",
    prior: Prior | None = None,
    criterion: str = "change",
):
    """EM from a batch of starting parameters (leading axis), traceable, no validation.

    ``formulation`` picks how each pass is computed (:mod:`jaxem.gmm.passes`):
    ``"moments"`` (fast), ``"direct"`` (accurate in any regime) or ``"auto"``:
    moments while every restart passes :func:`jaxem.gmm.moments.is_accurate` at
    its start and at its end (always, in practice, in float64; in float32 unless
    components are very tight relative to their distance from the data mean),
    else the whole batch is run again with the direct formulation. The choice is
    a ``lax.cond`` outside the vmap over restarts; under a user's own ``vmap``
    it becomes a select that computes both, so pass ``"moments"`` or
    ``"direct"`` explicitly there if speed matters.

    Returns:
        ``(EMResult batched over starts, whether the moment formulation was used)``.
    """
    w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else sample_weight
    center = jnp.sum(x * w[:, None], axis=0) / jnp.sum(w)
    kwargs = dict(tol=tol, reg_covar=reg_covar, max_iter=max_iter, prior=prior, criterion=criterion)

    def fast():
        moment_fn = moment_pass_for(x, w, center, starts.covariance_type)  # shared by restarts
        return jax.vmap(lambda p: _run(moment_fn, p, **kwargs))(starts)

    def direct():
        return jax.vmap(lambda p: _run(lambda q: direct_pass(q, x, w), p, **kwargs))(starts)

    if formulation == "direct":
        return direct(), jnp.asarray(False)
    if formulation == "moments":
        return fast(), jnp.asarray(True)

    return auto_formulation(fast, direct, center, starts)


def auto_formulation(fast, direct, center, starts):
    """``formulation="auto"`` of :func:`run_batch`: ``fast()`` when every start
    and every result passes :func:`~jaxem.gmm.moments.is_accurate` about
    ``center``, else ``direct()``. Returns ``(results, whether fast was used)``.

    Each formulation's loop is traced once: a second call site of ``direct()``
    would be compiled a second time.
    """

    def all_accurate(params):
        return jnp.all(jax.vmap(lambda p: is_accurate(p, center))(params))

    def fast_then_check():
        results = fast()
        return results, all_accurate(results.params)

    def skipped():
        shapes = jax.eval_shape(fast)
        return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes), jnp.asarray(False)

    results, fast_ok = jax.lax.cond(all_accurate(starts), fast_then_check, skipped)
    return jax.lax.cond(
        fast_ok, lambda: (results, jnp.asarray(True)), lambda: (direct(), jnp.asarray(False))
    )


def fit_from(
    params: GMMParams,
    x: jax.Array,
    *,
    tol: ArrayLike,
    reg_covar: ArrayLike,
    max_iter: int,
    sample_weight: jax.Array | None = None,
    formulation: str = "auto",
    prior: Prior | None = None,
    criterion: str = "change",
):
    """EM from one start with the fast fused passes (traceable, no validation)."""
    batch = jax.tree.map(lambda a: a[None], params)
    results, _ = run_batch(
        batch,
        x,
        tol=tol,
        reg_covar=reg_covar,
        max_iter=max_iter,
        sample_weight=sample_weight,
        formulation=formulation,
        prior=prior,
        criterion=criterion,
    )
    return jax.tree.map(lambda a: a[0], results)


# A component is degenerate when its covariance, less reg_covar and in units of
# the data's feature variances, has an eigenvalue below this: its points lie on
# a lower-dimensional set (tied or discretised values) and its likelihood is
# held finite only by reg_covar.
DEGENERATE_THRESHOLD = 1e-6

# Defaults of the refinement of the best restarts (see fit): Aitken's rule at
# 1e-6 per sample and at most 1000 more iterations.
REFINE_TOL = 1e-6
REFINE_MAX_ITER = 1000


def _feature_variances(x: jax.Array, w: jax.Array) -> jax.Array:
    mean = jnp.sum(w[:, None] * x, axis=0) / jnp.sum(w)
    var = jnp.sum(w[:, None] * (x - mean) ** 2, axis=0) / jnp.sum(w)
    return jnp.where(var > 0, var, 1)


def degenerate(params: GMMParams, variances: jax.Array, reg_covar: ArrayLike) -> jax.Array:
    """Whether an active component is singular but for ``reg_covar``.

    The smallest eigenvalue of ``(Σ_k − reg_covar·I)`` standardised by the data's
    feature variances (``D^(−½) (Σ_k − reg·I) D^(−½)``) below
    :data:`DEGENERATE_THRESHOLD`: a spike of the likelihood on a few coincident
    or collinear points (common on rounded data), which is not a meaningful
    optimum. Traceable.
    """
    cov = params.covariances
    ctype = params.covariance_type
    if ctype in ("full", "tied"):
        d = variances.shape[0]
        scale = jax.lax.rsqrt(variances)
        std = (cov - reg_covar * jnp.eye(d, dtype=cov.dtype)) * scale[:, None] * scale[None, :]
        low = jnp.linalg.eigvalsh(std)[..., 0]
        low = jnp.broadcast_to(low, params.weights.shape)
    elif ctype == "diag":
        low = jnp.min((cov - reg_covar) / variances, axis=-1)
    else:
        low = (cov - reg_covar) / jnp.mean(variances)
    return jnp.any((params.weights > 0) & (low < DEGENERATE_THRESHOLD))


def portfolio(n_init: int, n_samples: int) -> tuple[str, ...]:
    """Initialisation methods of ``n_init`` restarts for ``init="auto"`` (static).

    ``standardized_kmeans`` first, then R mclust's start ``hc_vvv`` and the Ward
    agglomeration ``hc`` (each once when every row is agglomerated: they then
    do not depend on the key), then ``kmeans``, ``random_from_data`` and
    ``standardized_kmeans`` in turn (``hc_vvv`` and ``hc`` join the cycle when
    they run on random subsets). Measured on Old Faithful, iris and wine
    (experiments/initialisation.py): no single method reaches the best optimum
    everywhere. With 20 restarts and key 0 the mix is below R mclust's fit in 1
    of the 56 cells, and was in 3 without ``hc_vvv``, whose start leads to some
    optima no other method finds (experiments/README.md, section 6).
    """
    cycle = ["kmeans", "random_from_data", "standardized_kmeans"]
    if n_samples > HC_MAX_SAMPLES:
        cycle += ["hc_vvv", "hc"]
    methods = ["standardized_kmeans", "hc_vvv", "hc"]
    while len(methods) < n_init:
        methods.append(cycle[(len(methods) - 3) % len(cycle)])
    return tuple(methods[:n_init])


@functools.partial(
    jax.jit,
    static_argnames=(
        "n_components",
        "covariance_type",
        "init",
        "n_init",
        "max_iter",
        "formulation",
        "prior_default",
        "n_refine",
        "refine_max_iter",
    ),
)
def _fit(
    key,
    x,
    n_active,
    tol,
    reg_covar,
    sample_weight=None,
    prior=None,
    refine_tol=None,
    *,
    n_components,
    covariance_type,
    init,
    n_init,
    max_iter,
    formulation="auto",
    prior_default=False,
    n_refine=0,
    refine_max_iter=0,
):
    if prior_default:
        k = n_components if n_active is None else n_active
        prior = default_prior(x, k, covariance_type, sample_weight=sample_weight)

    starts, codes = initial_params(
        key,
        x,
        n_components=n_components,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        n_active=n_active,
        reg_covar=reg_covar,
        sample_weight=sample_weight,
        prior=prior,
    )
    batch = functools.partial(
        run_batch,
        x=x,
        reg_covar=reg_covar,
        sample_weight=sample_weight,
        formulation=formulation,
        prior=prior,
    )
    results, fast_path = batch(starts, tol=tol, max_iter=max_iter)
    run = functools.partial(batch, tol=refine_tol, max_iter=refine_max_iter, criterion="aitken")
    return best_of(
        results, fast_path, codes, x, reg_covar, sample_weight, n_refine=n_refine, run=run
    )


def initial_params(
    key: jax.Array,
    x: jax.Array,
    *,
    n_components: int,
    covariance_type: str,
    init: str,
    n_init: int,
    n_active: ArrayLike,
    reg_covar: ArrayLike,
    sample_weight: jax.Array | None = None,
    prior: Prior | None = None,
) -> tuple[GMMParams, jax.Array]:
    """Starting parameters of the ``n_init`` restarts (leading axis) and their
    method codes (traceable, no validation).

    Restart ``i`` uses ``jax.random.split(key, n_init)[i]`` and the method
    ``init`` (or ``portfolio(n_init, N)[i]`` for ``"auto"``); restarts of one
    method are computed as one ``vmap``.
    """
    keys = jax.random.split(key, n_init)
    methods = portfolio(n_init, x.shape[0]) if init == "auto" else (init,) * n_init

    def starts_of(method, keys):
        def start(k):
            resp = init_resp(k, x, n_components, method, n_active, sample_weight)
            return m_step(
                resp,
                x,
                covariance_type=covariance_type,
                reg_covar=reg_covar,
                sample_weight=sample_weight,
                prior=prior,
            )

        return jax.vmap(start)(keys)

    groups: dict[str, list[int]] = {}
    for i, method in enumerate(methods):
        groups.setdefault(method, []).append(i)
    order = np.concatenate([np.asarray(ix) for ix in groups.values()])
    parts = [starts_of(m, keys[np.asarray(ix)]) for m, ix in groups.items()]
    starts = jax.tree.map(lambda *a: jnp.concatenate(a)[np.argsort(order)], *parts)
    codes = jnp.asarray([INIT_METHODS.index(m) for m in methods], jnp.int32)
    return starts, codes


def selection_scores(log_likelihood: ArrayLike, bad: ArrayLike) -> jax.Array:
    """Restarts' final log-likelihoods ranked for choosing: NaN and (unless every
    restart is) degenerate restarts at −∞. A likelihood spike on a singular
    component is an artefact of reg_covar, not a better optimum."""
    log_likelihood, bad = jnp.asarray(log_likelihood), jnp.asarray(bad)
    score = jnp.where(jnp.isnan(log_likelihood), -jnp.inf, log_likelihood)
    return jnp.where(bad & ~jnp.all(bad), -jnp.inf, score)


def degenerate_restarts(results: EMResult, x, reg_covar, sample_weight=None) -> jax.Array:
    """:func:`degenerate` of every restart of ``results`` (traceable)."""
    w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else sample_weight
    variances = _feature_variances(x, w)
    return jax.vmap(lambda p: degenerate(p, variances, reg_covar))(results.params)


def check_refine(n_refine, refine_tol, refine_max_iter, n_init) -> tuple[int, int]:
    """Validate the refinement arguments of :func:`fit`; returns the static
    ``(n_refine, refine_max_iter)`` with the default ``n_refine`` resolved."""
    if n_refine is None:
        n_refine = default_n_refine(n_init)
    n_refine = check_static_int("n_refine", n_refine, minimum=0)
    if n_refine > n_init:
        raise ValueError(f"n_refine={n_refine} must be <= n_init={n_init}")
    check_scalar("refine_tol", refine_tol)
    refine_max_iter = check_static_int("refine_max_iter", refine_max_iter, minimum=1)
    return n_refine, refine_max_iter


def default_n_refine(n_init: int) -> int:
    """Restarts refined by default: none for a single fit, else a quarter
    (rounded up) of the restarts. Measured on Old Faithful, iris and wine with
    ``n_init=20`` (experiments/refinement.py, 56 cells × 8 keys): refining the
    best restart after screening reaches the best known optimum in 359 of 448
    runs, the best quarter in 364 and every restart in 377, at 5–6 times the
    time of the quarter (the batch runs until its slowest restart stops)."""
    return 0 if n_init == 1 else -(-n_init // 4)


def refine(
    results: EMResult,
    bad: jax.Array,
    run: Callable[[GMMParams], tuple[EMResult, jax.Array]],
    n_refine: int,
) -> tuple[EMResult, jax.Array, jax.Array]:
    """Continue the ``n_refine`` best restarts and merge them back (traceable).

    The screened restarts are ranked by :func:`selection_scores` (``bad``: which
    are degenerate), as :func:`best_of` ranks them; ``run(starts)`` continues
    the best ``n_refine`` from where they stopped, as one batch, with Aitken's
    rule (:func:`jaxem.em.iterate`), and returns ``(EMResult, whether it ran on
    the moment formulation)``. Their results replace theirs in ``results``; each
    history continues after its own last screening iteration.

    Returns:
        ``(merged results, which restarts were refined, the moment flag of ``run``)``.
    """
    top = jax.lax.top_k(selection_scores(results.log_likelihood, bad), n_refine)[1]
    more, fast_path = run(jax.tree.map(lambda a: a[top], results.params))
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
    )
    refined = jnp.zeros(results.n_iter.shape, bool).at[top].set(True)
    return merged, refined, fast_path


def best_of(
    results: EMResult,
    fast_path: jax.Array,
    codes: jax.Array,
    x: jax.Array,
    reg_covar: ArrayLike,
    sample_weight: jax.Array | None = None,
    *,
    n_refine: int = 0,
    run: Callable[[GMMParams], tuple[EMResult, jax.Array]] | None = None,
) -> FitResult:
    """The :class:`FitResult` of the best restart: the highest final
    log-likelihood among the non-degenerate restarts (among all if every one is),
    after :func:`refine` continued the ``n_refine`` best with ``run``."""
    refined = jnp.zeros(results.n_iter.shape, bool)
    if n_refine:
        bad = degenerate_restarts(results, x, reg_covar, sample_weight)
        results, refined, refine_fast = refine(results, bad, run, n_refine)
        fast_path = fast_path & refine_fast
    bad = degenerate_restarts(results, x, reg_covar, sample_weight)
    best = jnp.argmax(selection_scores(results.log_likelihood, bad))
    chosen = jax.tree.map(lambda a: a[best], results)
    return FitResult(
        params=chosen.params,
        log_likelihood=chosen.log_likelihood,
        history=chosen.history,
        n_iter=chosen.n_iter,
        converged=chosen.converged,
        restart_log_likelihoods=results.log_likelihood,
        best_restart=best,
        fast_path=fast_path,
        restart_initializers=codes,
        restart_degenerate=bad,
        restart_refined=refined,
    )


def fit(
    key: jax.Array,
    x: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    init: str = "auto",
    n_init: int = 1,
    tol: ArrayLike = 1e-3,
    max_iter: int = 100,
    reg_covar: ArrayLike = 1e-6,
    n_active: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    formulation: str = "auto",
    prior: Prior | str | None = None,
    n_refine: int | None = None,
    refine_tol: ArrayLike = REFINE_TOL,
    refine_max_iter: int = REFINE_MAX_ITER,
) -> FitResult:
    """Fit a Gaussian mixture by EM: initialisation and ``n_init`` restarts in one call.

    The restarts run as one ``vmap`` until scikit-learn's rule stops each
    (``tol``, ``max_iter``: the screening); then the ``n_refine`` best continue
    until Aitken's rule says less than ``refine_tol`` is left to gain (the
    refinement, Biernacki et al.'s "em-EM"), and the one with the highest final
    log-likelihood is returned. Screening alone ranks restarts that stopped at
    different distances from their optima: on a flat ridge the change rule stops
    early and a restart that would end best can look worse than one that
    stopped near its own, lower, optimum. The program is compiled once per static
    configuration (``n_components``, ``covariance_type``, ``init``, ``n_init``,
    ``max_iter``, data shape and dtype); ``key``, ``x``, ``tol``, ``reg_covar`` and
    ``n_active`` are traced, so ``fit`` can be vmapped over any of them.

    Args:
        key: JAX PRNG key (restart ``i`` uses ``jax.random.split(key, n_init)[i]``).
        x: (N, D) data.
        n_components: K, static: the number of components (or the maximum, with
            ``n_active``).
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        init: ``"auto"`` (default): the restarts spread over several methods
            (:func:`portfolio`: k-means on standardised data, R mclust's
            model-based agglomeration, Ward agglomeration, k-means, random data
            points), which finds better optima than any one method on real data
            whose features differ in scale; or one method of
            :data:`~jaxem.gmm.init.INIT_METHODS` for every restart (``"kmeans"``,
            ``"k-means++"``, ``"random"`` and ``"random_from_data"`` have
            scikit-learn's semantics).
            :attr:`FitResult.initializer` names the method of the chosen restart.
        n_init: number of restarts (static). Restarts that end
            :func:`degenerate` (a likelihood spike on a singular component) are
            chosen only when every restart does.
        tol: tolerance on the change of the mean log-likelihood.
        max_iter: maximum EM iterations per restart (static).
        reg_covar: added to the covariance diagonal.
        n_active: fit a mixture of ``n_active ≤ K`` components (traced); the
            other components have weight 0. One compiled program covers every K.
        sample_weight: optional (N,) non-negative weights; integer weights give
            the fit of the data with rows repeated (traced: vmap over weights
            gives bootstrap fits in one call).
        formulation: ``"auto"`` (default), ``"moments"`` or ``"direct"``: how each
            EM pass is computed (see :func:`run_batch`); ``"auto"`` is fast and
            falls back to ``"direct"`` where float32 would lose accuracy.
        prior: MAP EM under a conjugate prior (:mod:`jaxem.gmm.prior`): a
            :class:`~jaxem.gmm.prior.Prior`, or ``"default"`` for R mclust's
            default (:func:`~jaxem.gmm.prior.default_prior` with K = ``n_active``
            or ``n_components``). The log-likelihoods reported (and the stopping
            rule) are then the mean log posterior ``(Σ log p(x_n) + log p(θ)) / N``.
        n_refine: how many of the best screened restarts to refine (static,
            ``0 ≤ n_refine ≤ n_init``); default :func:`default_n_refine`: none
            when ``n_init`` is 1, else a quarter of the restarts, rounded up.
            ``n_refine=0`` is scikit-learn's procedure exactly.
        refine_tol: the refinement stops when Aitken's extrapolation predicts
            a gain in mean log-likelihood under this (:func:`jaxem.em.iterate`).
        refine_max_iter: at most this many more iterations per refined restart
            (static).

    Returns:
        :class:`FitResult`.

    Example:
        >>> import jax
        >>> from jaxem import gmm
        >>> x = jax.random.normal(jax.random.key(0), (300, 2))
        >>> result = gmm.fit(jax.random.key(1), x, 2, n_init=3)
        >>> result.restart_log_likelihoods.shape
        (3,)
    """
    x = as_data(x)
    check_key(key)
    n_components = check_static_int("n_components", n_components, minimum=1)
    if n_components > x.shape[0]:
        raise ValueError(
            f"n_components={n_components} must be <= the number of samples ({x.shape[0]})"
        )
    cov_lib.check_covariance_type(covariance_type)
    check_method(init, allow_auto=True)
    n_init = check_static_int("n_init", n_init, minimum=1)
    max_iter = check_static_int("max_iter", max_iter, minimum=1)
    check_scalar("tol", tol)
    check_scalar("reg_covar", reg_covar)
    n_refine, refine_max_iter = check_refine(n_refine, refine_tol, refine_max_iter, n_init)
    n_active = check_n_active(n_active, n_components)
    sample_weight = check_sample_weight(sample_weight, x)
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}; got {formulation!r}")
    prior_default = isinstance(prior, str)
    if prior_default and prior != "default":
        raise ValueError(f"prior must be a gmm.Prior, 'default' or None; got {prior!r}")
    if not prior_default:
        check_prior(prior, covariance_type, x.shape[1])
    return _fit(
        key,
        x,
        n_active,
        jnp.asarray(tol, x.dtype),
        jnp.asarray(reg_covar, x.dtype),
        sample_weight,
        None if prior_default else prior,
        jnp.asarray(refine_tol, x.dtype),
        n_components=n_components,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        formulation=formulation,
        prior_default=prior_default,
        n_refine=n_refine,
        refine_max_iter=refine_max_iter,
    )
