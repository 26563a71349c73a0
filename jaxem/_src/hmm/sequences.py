"""Many observation sequences of different lengths as one padded pytree.

An HMM's data are S sequences, sequence ``s`` of ``T_s ≤ T`` frames of D
features, held as :class:`Sequences`: ``x`` (S, T, D) padded after each
sequence's end and ``lengths`` (S,). Every leaf has S leading rows, so the
engine's sources chunk (and shard) over sequences and the statistics of an
HMM add over them; frames past a sequence's end take no part in anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxem._src.validation import as_data, concrete, warn_if_float32_loses_spread

__all__ = ["Sequences", "sequences"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Sequences:
    """S sequences padded to a common length T.

    Attributes:
        x: (S, T, D) frames; ``x[s, t]`` for ``t ≥ lengths[s]`` is padding
            (its value is ignored).
        lengths: (S,) int32 number of frames of each sequence, in ``[1, T]``.
    """

    x: jax.Array
    lengths: jax.Array

    @property
    def mask(self) -> jax.Array:
        """(S, T) bool: which frames are observed (not padding)."""
        return jnp.arange(self.x.shape[1]) < self.lengths[:, None]

    @property
    def n_frames(self) -> int:
        """Total number of observed frames (concrete lengths only)."""
        return int(np.sum(np.asarray(self.lengths)))

    def frames(self) -> jax.Array:
        """(S·T, D) all frames, padding included (set to 0)."""
        s, t, d = self.x.shape
        return jnp.where(self.mask[..., None], self.x, 0).reshape(s * t, d)


def _pad(arrays: Sequence[np.ndarray], name: str) -> Sequences:
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
    if not arrays or any(a.ndim != 2 for a in arrays):
        raise ValueError(f"{name} must be a non-empty list of (T_s, D) or (T_s,) arrays")
    d = arrays[0].shape[1]
    if any(a.shape[1] != d for a in arrays):
        raise ValueError(
            f"every sequence of {name} must have the same number of features; got "
            f"{sorted({a.shape[1] for a in arrays})}"
        )
    lengths = np.asarray([a.shape[0] for a in arrays])
    if np.any(lengths == 0):
        raise ValueError(f"every sequence of {name} must have at least one frame")
    dtype = np.result_type(*arrays)
    if dtype == np.float64 and jax.dtypes.canonicalize_dtype(np.float64) == np.float32:
        # checked on the frames (the padding's zeros would widen a feature's
        # range), then padded as the float32 they become
        warn_if_float32_loses_spread(name, np.concatenate(arrays).astype(np.float32))
        dtype = np.dtype(np.float32)
    padded = np.zeros((len(arrays), int(lengths.max()), d), dtype)
    for i, a in enumerate(arrays):
        padded[i, : a.shape[0]] = a
    return Sequences(as_data_3d(padded, name), jnp.asarray(lengths, jnp.int32))


def as_data_3d(x: ArrayLike, name: str) -> jax.Array:
    """A floating (S, T, D) array (values checked as :func:`as_data` does)."""
    shape = np.shape(x)
    if isinstance(x, jax.Array):
        frames = jnp.reshape(x, (-1, shape[-1]))
    else:  # host data stay on the host for as_data's checks (float64 rounding included)
        frames = np.reshape(np.asarray(x), (-1, shape[-1]))
    flat = as_data(frames, name=name, allow_nan=True)
    return flat.reshape(shape)


def sequences(x: object, lengths: ArrayLike | None = None, *, name: str = "x") -> Sequences:
    """Sequences from the common layouts of sequence data.

    Args:
        x: one of

            * a list of (T_s, D) (or (T_s,)) arrays, one per sequence: padded;
            * a (N, D) array with ``lengths`` summing to N: hmmlearn's layout,
              the sequences concatenated;
            * a (S, T, D) array, with optional (S,) ``lengths`` (default: all T);
            * a (T, D) array without ``lengths``: one sequence;
            * :class:`Sequences` (returned as they are).
        lengths: see ``x``.
        name: the argument's name in error messages.

    Returns:
        :class:`Sequences`.

    Example:
        >>> import numpy as np
        >>> from jaxem import hmm
        >>> s = hmm.sequences(np.arange(5.0)[:, None], lengths=[3, 2])
        >>> s.x.shape, s.lengths.tolist()
        ((2, 3, 1), [3, 2])
    """
    if isinstance(x, Sequences):
        return check_sequences(x, name)
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise ValueError("lengths must be None when x is a list of sequences")
        return _pad(x, name)
    shape = np.shape(x)
    if len(shape) == 3:
        data = as_data_3d(x, name)
        if lengths is None:
            lengths = np.full(shape[0], shape[1])
        _check_whole(lengths)
        return check_sequences(Sequences(data, jnp.asarray(lengths, jnp.int32)), name)
    if len(shape) == 1:
        x = jnp.asarray(x)[:, None]
        shape = np.shape(x)
    if len(shape) != 2:
        raise ValueError(f"{name} must be (N, D), (S, T, D) or a list of sequences; got {shape}")
    if lengths is None:
        return Sequences(as_data_3d(jnp.asarray(x)[None], name), jnp.asarray([shape[0]], jnp.int32))
    v = concrete(lengths)
    if v is None:
        raise TypeError("lengths of concatenated sequences must be concrete")
    _check_whole(v)
    v = np.asarray(v, dtype=np.int64).ravel()
    if np.any(v <= 0) or int(v.sum()) != shape[0]:
        raise ValueError(
            f"lengths must be positive and sum to the {shape[0]} rows of {name}; got "
            f"{v.tolist()} (sum {int(v.sum())})"
        )
    host = np.asarray(x)
    return _pad(np.split(host, np.cumsum(v)[:-1]), name)


def _check_whole(lengths: ArrayLike) -> None:
    """A clear error for concrete lengths that are not whole numbers (an int
    cast truncated 2.5 to 2)."""
    v = concrete(lengths)
    if v is not None and not (
        np.issubdtype(v.dtype, np.integer)
        or np.issubdtype(v.dtype, np.bool_)
        or np.all(np.isfinite(v) & (v == np.round(v)))
    ):
        raise ValueError(f"lengths must be whole numbers; got {np.ravel(v).tolist()}")


def check_sequences(seqs: Sequences, name: str = "x") -> Sequences:
    """Shapes always; lengths in ``[1, T]`` when concrete."""
    x = seqs.x
    if np.ndim(x) != 3:
        raise ValueError(f"{name}.x must be (S, T, D); got shape {np.shape(x)}")
    if np.shape(seqs.lengths) != (x.shape[0],):
        raise ValueError(
            f"{name}.lengths must have shape ({x.shape[0]},) to match x {x.shape}; "
            f"got {np.shape(seqs.lengths)}"
        )
    _check_whole(seqs.lengths)
    v = concrete(seqs.lengths)
    if v is not None and (np.any(v < 1) or np.any(v > x.shape[1])):
        raise ValueError(f"{name}.lengths must lie in [1, {x.shape[1]}]; got {v.tolist()}")
    lengths = jnp.asarray(seqs.lengths, jnp.int32)
    return Sequences(x if jnp.issubdtype(x.dtype, jnp.floating) else as_data_3d(x, name), lengths)
