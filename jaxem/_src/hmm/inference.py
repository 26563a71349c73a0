"""Forward–backward and Viterbi for one sequence (vmap them over sequences).

All functions take the state probabilities ``startprob`` (K,) and ``transmat``
(K, K) (rows: from, columns: to), the emission log-densities ``log_b`` (T, K)
and a mask (T,) of observed frames: a masked frame is neither emitted nor
transitioned into, so a padded sequence gives exactly the results of its
unpadded prefix.

Forward–backward uses scaling (Rabiner 1989): each frame's densities are
divided by their largest, ``b̃_t = exp(log b_t − m_t)``, the filtered
probabilities ``α̂_t = p(z_t | x_≤t)`` are normalised at every step and the
log-likelihood is ``Σ_t (log c_t + m_t)`` with ``c_t`` the normaliser. Nothing
underflows however long the sequence (10⁶ steps are tested). The backward
messages are normalised at every step too; posteriors and two-slice sums are
then normalised per frame, so any scaling of ``β`` is exact.

Two ways to compute ``α̂`` and ``β̂``, equal up to rounding:

* ``parallel=False``: ``lax.scan`` over time (T sequential steps of O(K²));
* ``parallel=True``: ``lax.associative_scan`` of the K×K matrices
  ``A ⊙ b̃_tᵀ`` (O(log T) depth, O(T K³) work), for long sequences on
  accelerators.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Smoothed", "backward", "forward", "smooth", "viterbi"]


def _scaled(log_b: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(b̃ (T, K), m (T,))``: densities over their per-frame maximum (1 at
    masked frames) and that maximum (0 at masked frames)."""
    log_b = jnp.where(mask[:, None], log_b, 0)
    m = jnp.max(log_b, axis=1)
    m = jnp.where(jnp.isfinite(m), m, 0)
    return jnp.exp(log_b - m[:, None]), m


def _normalize(v: jax.Array, axis=-1) -> tuple[jax.Array, jax.Array]:
    total = jnp.sum(v, axis=axis, keepdims=True)
    return v / jnp.where(total > 0, total, 1), total


def forward(startprob, transmat, log_b, mask, *, parallel: bool = False):
    """Filtered state probabilities and the log-likelihood of one sequence.

    Args:
        startprob: (K,) ``p(z_0)``.
        transmat: (K, K) ``p(z_t = j | z_{t−1} = i)`` at ``[i, j]``.
        log_b: (T, K) ``log p(x_t | z_t = k)``.
        mask: (T,) bool, observed frames (a prefix).
        parallel: static, associative scan instead of a sequential scan.

    Returns:
        ``(alpha (T, K), log_likelihood ())``: ``alpha[t] = p(z_t | x_≤t)``
        (carried unchanged over masked frames).
    """
    b, m = _scaled(log_b, mask)
    if parallel:
        alpha = _forward_parallel(startprob, transmat, b, mask)
    else:
        alpha = _forward_sequential(startprob, transmat, b, mask)
    # c_t = Σ_j (α̂_{t−1} A)_j b̃_tj (c_0 = Σ π b̃_0): the scaled one-step predictive
    predicted = jnp.concatenate([startprob[None], alpha[:-1] @ transmat])
    c = jnp.sum(predicted * b, axis=1)
    log_c = jnp.where(mask, jnp.log(c), 0)
    return alpha, jnp.sum(log_c) + jnp.sum(jnp.where(mask, m, 0))


def _forward_sequential(startprob, transmat, b, mask):
    alpha0 = _normalize(startprob * b[0])[0]

    def step(alpha, inputs):
        b_t, mask_t = inputs
        new = _normalize((alpha @ transmat) * b_t)[0]
        new = jnp.where(mask_t, new, alpha)
        return new, new

    _, alphas = jax.lax.scan(step, alpha0, (b[1:], mask[1:]))
    return jnp.concatenate([alpha0[None], alphas])


def _matrices(startprob, transmat, b, mask):
    """(T, K, K) the elements of the associative scans: ``E_0`` every row
    ``π ⊙ b̃_0``; ``E_t = A ⊙ b̃_t`` (identity where masked), each normalised."""
    k = startprob.shape[0]
    first = jnp.broadcast_to(startprob * b[0], (k, k))
    rest = transmat[None] * b[1:, None, :]
    rest = jnp.where(mask[1:, None, None], rest, jnp.eye(k, dtype=b.dtype))
    elems = jnp.concatenate([first[None], rest])
    return _normalize(elems, axis=(-2, -1))[0]


def _compose(a, b):
    """``normalise(a @ b)``: the scanned operation (associative up to scale)."""
    return _normalize(a @ b, axis=(-2, -1))[0]


def _forward_parallel(startprob, transmat, b, mask):
    prefix = jax.lax.associative_scan(_compose, _matrices(startprob, transmat, b, mask))
    return _normalize(prefix[:, 0, :])[0]  # every row of E_0 ⋯ E_t is α_t up to scale


def backward(transmat, log_b, mask, *, parallel: bool = False) -> jax.Array:
    """(T, K) backward messages ``β̂_t ∝ p(x_>t | z_t)`` (each normalised; ones
    from the sequence's last frame on)."""
    b, _ = _scaled(log_b, mask)
    k = transmat.shape[0]
    ones = jnp.ones((k,), b.dtype)
    if parallel:
        elems = _matrices(jnp.ones((k,), b.dtype), transmat, b, mask)[1:]
        # suffix products E_{t+1} ⋯ E_{T−1}: a forward scan of the reversed
        # elements with the operands swapped
        suffix = jax.lax.associative_scan(lambda x, y: _compose(y, x), elems[::-1])[::-1]
        beta = _normalize(suffix @ ones)[0]
        return jnp.concatenate([beta, ones[None]])

    def step(beta, inputs):
        b_t, mask_t = inputs  # frame t + 1
        new = _normalize(transmat @ (b_t * beta))[0]
        new = jnp.where(mask_t, new, beta)
        return new, new

    _, betas = jax.lax.scan(step, ones, (b[1:], mask[1:]), reverse=True)
    return jnp.concatenate([betas, ones[None]])


class Smoothed(NamedTuple):
    """Expected statistics of one sequence's hidden states."""

    posteriors: jax.Array  # (T, K) p(z_t | x), 0 at masked frames
    transitions: jax.Array  # (K, K) Σ_t p(z_t = i, z_{t+1} = j | x)
    log_likelihood: jax.Array  # () log p(x)


def smooth(startprob, transmat, log_b, mask, *, parallel: bool = False) -> Smoothed:
    """Forward–backward: posteriors, expected transition counts and log p(x).

    ``γ_t ∝ α̂_t ⊙ β̂_t`` and ``Σ_t ξ_t = A ⊙ Σ_t (α̂_t / z_t) ⊗ (b̃_{t+1} ⊙
    β̂_{t+1})`` with ``z_t = α̂_tᵀ A (b̃_{t+1} ⊙ β̂_{t+1})``: one (K, T)·(T, K)
    product, no (T, K, K) array.
    """
    alpha, log_likelihood = forward(startprob, transmat, log_b, mask, parallel=parallel)
    beta = backward(transmat, log_b, mask, parallel=parallel)
    b, _ = _scaled(log_b, mask)
    posteriors = _normalize(alpha * beta)[0] * mask[:, None]
    u = b[1:] * beta[1:]  # (T−1, K)
    z = jnp.sum((alpha[:-1] @ transmat) * u, axis=1)
    scale = jnp.where(mask[1:], 1 / jnp.where(z > 0, z, 1), 0)
    transitions = transmat * ((alpha[:-1] * scale[:, None]).T @ u)
    return Smoothed(posteriors, transitions, log_likelihood)


def viterbi(startprob, transmat, log_b, mask) -> tuple[jax.Array, jax.Array]:
    """The most probable state path of one sequence (max-product in log space).

    Returns:
        ``(log_prob (), path (T,))``: ``log p(x, z*)`` and ``z*`` (int32; −1 at
        masked frames). Ties go to the lowest state index.
    """
    k = startprob.shape[0]
    log_b = jnp.where(mask[:, None], log_b, 0)
    log_a = jnp.log(transmat)
    delta0 = jnp.log(startprob) + log_b[0]
    identity = jnp.arange(k, dtype=jnp.int32)

    def step(delta, inputs):
        lb, mask_t = inputs
        scores = delta[:, None] + log_a  # [from, to]
        best = jnp.argmax(scores, axis=0).astype(jnp.int32)
        new = jnp.max(scores, axis=0) + lb
        return jnp.where(mask_t, new, delta), jnp.where(mask_t, best, identity)

    delta, pointers = jax.lax.scan(step, delta0, (log_b[1:], mask[1:]))
    last = jnp.argmax(delta).astype(jnp.int32)

    def back(state, ptr):
        previous = ptr[state]
        return previous, previous

    _, path = jax.lax.scan(back, last, pointers, reverse=True)
    path = jnp.concatenate([path, last[None]])
    return jnp.max(delta), jnp.where(mask, path, -1)
