"""Input checks at the Python boundary.

Inside compiled code nothing raises (DESIGN.md, "failure is data"). These helpers
run before tracing: shapes, dtypes and static values are always checked; values
of arrays are checked only when they are concrete (not JAX tracers).
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def concrete(value: ArrayLike) -> np.ndarray | None:
    """``value`` as a NumPy array if it is concrete, ``None`` under tracing."""
    if isinstance(value, jax.core.Tracer):
        return None
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.extended):
        return None  # PRNG keys have no NumPy value
    try:
        array = np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
    # placeholders (jax.jit(...).lower's ArgInfo leaves) are objects, not values
    return None if array.dtype == object else array


def check_static_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """A static integer argument (``max_iter``, ``n_init``, ``n_components``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be a Python int (it is static: it sets array shapes or loop bounds); "
            f"got {type(value).__name__} {value!r}"
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_scalar(name: str, value: ArrayLike, *, minimum: float = 0.0) -> None:
    """A traced non-negative scalar hyperparameter (``tol``, ``reg_covar``).

    Checked for shape and dtype always, for finiteness and sign when concrete.
    """
    if type(value) not in (int, float):  # Python numbers skip JAX's dtype machinery
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
        shape = np.shape(value)
        if shape != ():
            raise ValueError(f"{name} must be a scalar; got an array of shape {shape}")
        dtype = jnp.result_type(value)
        if not jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(f"{name} must be a real number; got dtype {dtype}")
        concrete_value = concrete(value)
        if concrete_value is None:
            return
        value = concrete_value.item()
    if not ((type(value) is int or math.isfinite(value)) and value >= minimum):
        raise ValueError(f"{name} must be a finite number >= {minimum}; got {value!r}")


def check_hyperparameters(owner: object, minimums: dict[str, float]) -> None:
    """``owner``'s attributes ``name: minimum``, each finite and at least its
    minimum (every element), checked where concrete (a traced or placeholder
    value passes): a family's ``__post_init__``."""
    for name, minimum in minimums.items():
        value = concrete(getattr(owner, name))
        if value is None or value.dtype.kind not in "biuf":
            continue
        if not (np.all(np.isfinite(value)) and np.all(value >= minimum)):
            raise ValueError(
                f"{type(owner).__name__}'s {name} must be finite and >= {minimum}; got {value!r}"
            )


def dtype_of(name: str, value: object) -> np.dtype:
    """The dtype JAX would give ``value``; a ``TypeError`` naming ``name`` if none."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    dtype = getattr(value, "dtype", None)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and isinstance(dtype, np.dtype):
        if dtype.kind in "biufc":  # numbers: what jnp.result_type gives, without its cost
            return jax.dtypes.canonicalize_dtype(dtype)
    try:
        return jax.dtypes.canonicalize_dtype(jnp.result_type(value))
    except TypeError:
        dtype = getattr(value, "dtype", type(value).__name__)
        raise TypeError(f"{name} must be a real numeric array; got {dtype}") from None


def as_data(x: ArrayLike, *, name: str = "x", allow_nan: bool = False) -> jax.Array:
    """Validate and convert data to a floating (N, D) JAX array.

    Integer and boolean data are converted to JAX's default float dtype (float32,
    or float64 with ``jax_enable_x64``), as scikit-learn converts to float64;
    half-precision data (float16, bfloat16) to float32, since the linear algebra
    of the fits (Cholesky factors, eigenvalues) has no half-precision kernels
    and their 3 significant digits could not hold a covariance anyway.
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of shape (n_samples, n_features); got {x!r}")
    dtype = dtype_of(name, x)
    shape = np.shape(x)
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be 2-D, of shape (n_samples, n_features); got shape {shape}"
            + (" (reshape 1-D data with x[:, None])" if len(shape) == 1 else "")
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one feature; got shape {shape}")
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real; got dtype {dtype}")
    if not jnp.issubdtype(dtype, jnp.floating):
        if not (jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
            raise TypeError(f"{name} must hold numbers; got dtype {dtype}")
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64 is on
    elif jnp.finfo(dtype).bits < 32:
        dtype = np.dtype(np.float32)
    if isinstance(x, jax.Array):  # a JAX array (or a tracer): checked where it lives
        x = jnp.asarray(x, dtype)
        finite = True if allow_nan else all_finite(x)
    else:  # host data: converted and checked on the host, then copied once
        source = np.asarray(x)  # (a list or a DataFrame of float64 is float64 here)
        host = source.astype(dtype, copy=False)
        finite = allow_nan or bool(np.all(np.isfinite(host)))
        if finite and source.dtype == np.float64 and host.dtype == np.float32:
            warn_if_float32_loses_spread(name, host)
        if finite and not allow_nan:
            warn_if_spread_underflows(name, host)
        x = evaluate_now(_to_device, host)
    if finite is False:
        n_bad = int(np.sum(~np.isfinite(np.asarray(x))))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s); jaxem needs finite data"
        )
    return x


#: Largest rounding of float64 data cast to float32, as a fraction of a
#: feature's range, that :func:`warn_if_float32_loses_spread` lets pass: about
#: what data 10⁴ standard deviations from the origin lose (float32 rounds a
#: value by up to 2⁻²⁴ of its magnitude; a sample's range spans a few
#: standard deviations).
FLOAT32_SPREAD_LOSS = 2e-4

#: Rows :func:`warn_if_float32_loses_spread` reads (evenly spaced; all of smaller data).
SPREAD_CHECK_ROWS = 512


def warn_if_float32_loses_spread(name: str, cast: np.ndarray) -> None:
    """Warn where float64 data computed in float32 (``cast``, the data as
    float32; JAX's ``jax_enable_x64`` off) were rounded by more than
    :data:`FLOAT32_SPREAD_LOSS` of a feature's range: data far from the origin
    relative to their spread (Unix times, map coordinates in metres), which
    the fit would then see quantised. Read on :data:`SPREAD_CHECK_ROWS` rows
    (17–30 µs a call measured, whatever the size)."""
    rows = cast[:: max(1, cast.shape[0] // SPREAD_CHECK_ROWS)]
    top, bottom = rows.max(axis=0), rows.min(axis=0)
    span, magnitude = top - bottom, np.maximum(top, -bottom)
    # float32 rounds v by at most 2⁻²⁴|v|: a first test in few operations
    if not np.any((span > 0) & (magnitude > span * (FLOAT32_SPREAD_LOSS * 2**24))):
        return
    rounding = 0.5 * np.spacing(magnitude)
    loss = np.where(span > 0, rounding / np.where(span > 0, span, 1), 0)
    worst = int(np.argmax(loss))
    if loss[worst] > FLOAT32_SPREAD_LOSS:
        warnings.warn(
            f"{name} is float64, but JAX computes in float32 here (jax_enable_x64 is off), "
            f"where values of feature {worst} (about {top[worst]:.4g}) are rounded by up "
            f"to {rounding[worst]:.3g}, {loss[worst]:.2g} of their range: the data lie far "
            "from the origin for their spread. Enable float64 "
            "(jax.config.update('jax_enable_x64', True)) or centre the data first "
            "(x - x.mean(axis=0)).",
            UserWarning,
            stacklevel=stacklevel_outside_jaxem(),
        )


def warn_if_spread_underflows(name: str, host: np.ndarray) -> None:
    """Warn where a feature of ``host`` data spans so little that its variance
    falls below the dtype's smallest normal number (under ``tiny / eps``: data of
    spread 1e-19 in float32, 1e-160 in float64). XLA:CPU flushes such numbers to
    zero, and the fit's covariances lose their digits without any other sign
    (the components then merge, or fall back on ``reg_covar``). Read on
    :data:`SPREAD_CHECK_ROWS` rows."""
    rows = host[:: max(1, host.shape[0] // SPREAD_CHECK_ROWS)]
    span = rows.max(axis=0) - rows.min(axis=0)
    info = np.finfo(host.dtype)
    small = (span > 0) & (span < np.sqrt(info.tiny / info.eps))
    if np.any(small):
        worst = int(np.flatnonzero(small)[np.argmin(span[small])])
        warnings.warn(
            f"{name}'s feature {worst} spans only {span[worst]:.3g}: in {host.dtype} its "
            "variance is below the smallest normal number, where the fit's covariances "
            "lose their digits. Rescale the data (x / x.std(axis=0)).",
            UserWarning,
            stacklevel=stacklevel_outside_jaxem(),
        )


def constant_features(x: np.ndarray) -> list[int]:
    """The columns of concrete data ``x`` (N, D) that hold one value."""
    return np.flatnonzero(np.all(x == x[:1], axis=0)).tolist()


def name_constant_features(constant: list[int]) -> str:
    """``"feature [1] is constant"`` / ``"features [0, 2] are constant"``."""
    if len(constant) == 1:
        return f"feature {constant} is constant"
    return f"features {constant} are constant"


def stacklevel_outside_jaxem() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller of this
    function name the first frame outside the jaxem package (the public
    functions reach a check through different depths)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


@jax.jit
def _to_device(x: np.ndarray) -> jax.Array:
    """Host data on the default device: a compiled call's transfer costs less
    than ``jnp.asarray``'s (0.16 against 0.31 ms for 272 × 2 on a core that
    was idle, 7 against 17 µs on a busy one)."""
    return x


@jax.jit
def _all_finite(x: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(x))


def all_finite(x: jax.Array) -> bool | None:
    """Whether a JAX array holds only finite values (``None`` under tracing): one
    reduction on the array's device, so that checking data on an accelerator
    does not copy them to the host."""
    if isinstance(x, jax.core.Tracer):
        return None
    return bool(evaluate_now(_all_finite, x))


def evaluate_now(fn, *args):
    """``fn(*args)`` on concrete arrays, evaluated now: also inside a caller's
    ``jit`` or ``vmap``, where the arrays are constants of its trace."""
    with jax.ensure_compile_time_eval():
        return fn(*args)


def check_key(key: object, name: str = "key") -> None:
    """A JAX PRNG key: a typed key (``jax.random.key``) or a legacy uint32 (2,) key."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(key) != ():
            raise ValueError(f"{name} must be a single PRNG key; got a batch of shape {key.shape}")
        return
    if dtype == jnp.uint32 and np.shape(key) == (2,):
        return
    hint = ""
    if dtype is not None and len(np.shape(key)) == 2:
        hint = " (it looks like data: the key comes first, as in fit(key, x, n_components))"
    raise TypeError(
        f"{name} must be a JAX PRNG key (jax.random.key(seed)); got "
        f"{type(key).__name__}"
        + (f" of dtype {dtype} and shape {np.shape(key)}" if dtype else "")
        + hint
    )


def as_scalar(value: ArrayLike, dtype) -> np.ndarray | jax.Array:
    """A traced scalar argument of a compiled program as ``dtype``: a NumPy
    scalar when it is concrete (the program's call transfers it; an eager
    ``jnp.asarray`` costs a dispatch of its own, ~0.1 ms), a JAX array under tracing."""
    if isinstance(value, jax.core.Tracer):
        return jnp.asarray(value, dtype)
    return np.asarray(value, dtype)


def check_n_active(n_active: ArrayLike | None, n_components: int) -> np.ndarray | jax.Array:
    """The traced number of active components, in ``[1, n_components]``."""
    if n_active is None:
        return np.asarray(n_components, np.int32)
    if np.shape(n_active) != () or not jnp.issubdtype(dtype_of("n_active", n_active), jnp.integer):
        raise TypeError(f"n_active must be an integer scalar; got {n_active!r}")
    v = concrete(n_active)
    if v is not None and not 1 <= int(v) <= n_components:
        raise ValueError(f"n_active must be in [1, n_components={n_components}]; got {int(v)}")
    if v is not None:
        return np.asarray(v, np.int32)  # in range: checked above
    return jnp.clip(jnp.asarray(n_active, jnp.int32), 1, n_components)


def check_sample_weight(sample_weight: ArrayLike | None, x: jax.Array) -> jax.Array | None:
    """Optional (N,) sample weights: finite, non-negative, not all zero (when concrete)."""
    if sample_weight is None:
        return None
    dtype_of("sample_weight", sample_weight)
    if np.shape(sample_weight) != (x.shape[0],):
        raise ValueError(
            f"sample_weight must have shape (n_samples,) = ({x.shape[0]},); "
            f"got {np.shape(sample_weight)}"
        )
    if isinstance(sample_weight, jax.Array):
        w = jnp.asarray(sample_weight, x.dtype)
        valid = None if isinstance(w, jax.core.Tracer) else bool(evaluate_now(_valid_weights, w))
    else:
        host = np.asarray(sample_weight, x.dtype)
        valid = bool(np.all(np.isfinite(host)) and np.all(host >= 0) and np.any(host > 0))
        w = jnp.asarray(host)
    if valid is False:
        raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return w


@jax.jit
def _valid_weights(w: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(w)) & jnp.all(w >= 0) & jnp.any(w > 0)
