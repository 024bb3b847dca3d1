"""Argument checks shared by every initializer.

Each check raises ``ValueError`` or ``TypeError`` naming the argument and what
is allowed, so bad input never turns into a silent NaN or a wrong shape.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np


def check_shape(shape: Any, *, min_rank: int = 0, name: str = "shape",
                allow_zero: bool = False) -> tuple[int, ...]:
  """Returns ``shape`` as a tuple of Python ints, or raises.

  Args:
    shape: a sequence of ints (a single int is a 1-D shape).
    min_rank: the smallest rank allowed.
    name: the argument's name, for the messages.
    allow_zero: whether a dimension may be 0 (a zero-size array). Negative
      dimensions are always rejected.

  Returns:
    The shape as a tuple of Python ints.
  """
  if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
    shape = (int(shape),)
  if not isinstance(shape, (Sequence, np.ndarray)) or isinstance(shape, str):
    raise TypeError(f"{name} must be a sequence of ints, got {shape!r}")
  dims = []
  for d in shape:
    if isinstance(d, bool) or not isinstance(d, (numbers.Integral, np.integer)):
      raise TypeError(f"{name} must contain ints, got {shape!r}")
    if d < 0 or (d == 0 and not allow_zero):
      what = "non-negative" if allow_zero else "positive"
      raise ValueError(f"{name} must contain {what} dimensions, got {tuple(shape)!r}")
    dims.append(int(d))
  if len(dims) < min_rank:
    raise ValueError(
        f"{name} must have rank >= {min_rank} for this initializer, got {tuple(dims)!r}")
  return tuple(dims)


def _int_what(minimum: int | None) -> str:
  if minimum is None:
    return "an int"
  if minimum == 1:
    return "a positive int"
  if minimum == 0:
    return "a non-negative int"
  return f"an int >= {minimum}"


def check_int(value: Any, name: str, *, minimum: int | None = 1, why: str = "") -> int:
  """Returns ``value`` as a Python int ``>= minimum``, or raises.

  A bool is not an int here; a numpy integer is. ``minimum=None`` admits any int.

  Args:
    value: the argument to check.
    name: the argument's name, for the messages.
    minimum: the smallest value allowed (1: a positive int, the default).
    why: appended to the ValueError's message, e.g. ``" (a block has two layers)"``.

  Returns:
    ``value`` as a Python int.

  Raises:
    TypeError: ``value`` is not an int.
    ValueError: ``value`` is below ``minimum``.
  """
  what = _int_what(minimum)
  if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
    raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
  value = int(value)
  if minimum is not None and value < minimum:
    raise ValueError(f"{name} must be {what}{why}, got {value!r}")
  return value


def check_init(init: Any, name: str) -> Any:
  """Returns ``init`` if it is callable (a jinit initializer), or raises a TypeError."""
  if not callable(init):
    raise TypeError(f"{name} must be a jinit initializer (a callable), got {init!r}")
  return init


def check_pattern(pattern: Any, name: str) -> str:
  """Returns ``pattern`` if it is a string that compiles as a regex, or raises."""
  if not isinstance(pattern, str):
    raise TypeError(f"{name} must be a regex string, got {pattern!r}")
  try:
    re.compile(pattern)
  except re.error as e:
    raise ValueError(f"{name}={pattern!r} is not a valid regex: {e}") from None
  return pattern


def check_patterns(patterns: Any, name: str) -> tuple[str, ...]:
  """Returns a regex string or a sequence of them as a tuple of checked regex strings."""
  if isinstance(patterns, str):
    patterns = (patterns,)
  if not isinstance(patterns, Sequence):
    raise TypeError(f"{name} must be a regex string or a sequence of them, got {patterns!r}")
  return tuple(check_pattern(p, f"{name}[{i}]") for i, p in enumerate(patterns))


# A fan counts the elements an output (or input) unit sees; no array has more than
# 2**63 - 1 elements, so a larger fan is a mistake (and 10**400 cannot be a float).
MAX_FAN = 2**63 - 1


def check_fan(value: Any, name: str, *, required: bool, allow_zero: bool = False) -> int | None:
  """Returns a fan as a Python int in [1, MAX_FAN] (or None when allowed), or raises.

  ``allow_zero`` admits 0, the fan of a zero-size kernel. An integral float
  (``64.0``) is accepted as an int; a bool is not.
  """
  if value is None:
    if required:
      raise ValueError(f"{name} is required by this initializer (a positive int), got None")
    return None
  if not isinstance(value, bool) and isinstance(value, (numbers.Real, np.floating)) \
      and not isinstance(value, (numbers.Integral, np.integer)) \
      and math.isfinite(float(value)) and float(value).is_integer():
    value = int(float(value))
  value = check_int(value, name, minimum=0 if allow_zero else 1)
  if value > MAX_FAN:
    digits = len(str(value))
    shown = str(value) if digits <= 30 else f"an int of {digits} digits"
    raise ValueError(f"{name} must be at most 2**63 - 1 (no array has more elements), "
                     f"got {shown}")
  return value


# A legacy raw key's shape under each PRNG implementation (jax_default_prng_impl).
_RAW_KEY_SHAPES = {"threefry2x32": (2,), "rbg": (4,), "unsafe_rbg": (4,)}


def _default_prng_impl() -> str:
  """The default PRNG implementation's name (honours a thread-local override)."""
  # jax sets the flag as a property on Config at runtime; config.read refuses flags with a
  # context manager (jax 0.10), so read the attribute that pyright cannot see.
  return jax.config.jax_default_prng_impl  # pyright: ignore[reportAttributeAccessIssue]


def _raw_key_shape() -> tuple[int, ...]:
  impl = _default_prng_impl()
  if impl not in _RAW_KEY_SHAPES:  # another registered implementation: ask jax (concrete)
    return tuple(jax.random.PRNGKey(0).shape)
  return _RAW_KEY_SHAPES[impl]


def check_key(key: Any, name: str = "key") -> Any:
  """Returns ``key`` if it is a JAX PRNG key, or raises a TypeError naming ``name``.

  Accepted: a typed key of any implementation (``jax.random.key(0)``,
  ``jax.random.key(0, impl="rbg")``, ``impl="unsafe_rbg"``: dtype ``key<...>``,
  shape ``()``) or a legacy raw key (``jax.random.PRNGKey(0)``), a uint32 vector
  of the default implementation's raw shape (``(2,)`` for ``threefry2x32``,
  ``(4,)`` for ``rbg``/``unsafe_rbg``, set by ``jax_default_prng_impl``),
  concrete or traced. A batch of keys is refused: vmap over the initializer instead.
  """
  how = ("a PRNG key made by jax.random.key(seed) (or a legacy jax.random.PRNGKey(seed)); "
         "for several keys, jax.vmap over the initializer")
  if not isinstance(key, (jax.Array, np.ndarray)):
    raise TypeError(f"{name} must be {how}, got {key!r}")
  dtype, shape = key.dtype, key.shape
  if jnp.issubdtype(dtype, jax.dtypes.prng_key):
    if shape != ():
      raise TypeError(f"{name} must be a single key (shape ()), got a key array of shape "
                      f"{shape}; {how}")
    return key
  if dtype == np.uint32 and len(shape) == 1 and shape[0] in (2, 4):
    want = _raw_key_shape()
    if tuple(shape) != want:
      raise TypeError(
          f"{name} is a raw uint32 key of shape {tuple(shape)}, but the default PRNG "
          f"implementation {_default_prng_impl()!r} has raw keys of shape {want} "
          "(threefry2x32: (2,), rbg and unsafe_rbg: (4,)); pass a typed key "
          "jax.random.key(seed, impl=...) or set jax_default_prng_impl")
    return key
  raise TypeError(f"{name} must be {how}, got an array of dtype {dtype} and shape {shape}")


_X64_HINT = ("64-bit types need JAX's x64 mode, which is off: without it JAX would "
             "silently return {fallback}. Enable it at startup with "
             "jax.config.update('jax_enable_x64', True) or the environment variable "
             "JAX_ENABLE_X64=1, or ask for {fallback}")


def check_float_dtype(dtype: Any, *, allow_complex: bool = False) -> np.dtype:
  """Returns ``dtype`` as a numpy dtype if it is floating (or complex, if allowed), or raises.

  ``None`` means JAX's default floating dtype (float32, float64 under x64), as in
  ``jax.nn.initializers``. A 64-bit dtype with x64 off raises ``ValueError``
  instead of being silently downcast to 32 bits.
  """
  allowed = "float16, bfloat16, float32, float64" + (
      ", complex64, complex128" if allow_complex else "")
  kind = "a floating or complex dtype" if allow_complex else "a floating dtype"
  if dtype is None:
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
  try:
    dt = jnp.dtype(dtype)
  except TypeError as e:
    raise TypeError(f"dtype must be {kind} ({allowed}), got {dtype!r}") from e
  if jnp.issubdtype(dt, jnp.complexfloating):
    if not allow_complex:
      raise TypeError(f"dtype must be {kind} ({allowed}), got {dt}; complex dtypes are "
                      "accepted by variance_scaling and its named cases (xavier_*, kaiming_*, "
                      "lecun_*, glorot_*, he_*), normal, orthogonal, delta_orthogonal, zeros, "
                      "ones and constant")
  elif not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"dtype must be {kind} ({allowed}), got {dt}")
  canonical = jax.dtypes.canonicalize_dtype(dt)
  if canonical != dt:
    raise ValueError(f"dtype={dt.name}: " + _X64_HINT.format(fallback=np.dtype(canonical).name))
  return dt


def check_real(value: Any, name: str, *, positive: bool = False,
               nonnegative: bool = False) -> Any:
  """Returns ``value`` as a finite Python float, or raises.

  A traced scalar (e.g. a hyperparameter swept under ``jax.vmap``) cannot be
  inspected and is returned unchanged.
  """
  if isinstance(value, (jax.Array, np.ndarray)) and not isinstance(value, bool):
    if value.shape != () or not jnp.issubdtype(value.dtype, jnp.number) \
        or jnp.issubdtype(value.dtype, jnp.complexfloating):
      raise TypeError(f"{name} must be a real scalar, got an array of shape {value.shape} "
                      f"and dtype {value.dtype}")
    if isinstance(value, jax.core.Tracer):
      return value
    value = value.item()
  if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
    raise TypeError(f"{name} must be a real number, got {value!r}")
  value = float(value)
  if not np.isfinite(value):
    raise ValueError(f"{name} must be finite, got {value!r}")
  if positive and value <= 0:
    raise ValueError(f"{name} must be > 0, got {value!r}")
  if nonnegative and value < 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}")
  return value


def _real_finfo(dtype: Any):
  dt = jnp.dtype(dtype)
  if jnp.issubdtype(dt, jnp.complexfloating):
    dt = jnp.dtype(np.real(np.zeros((), dt)).dtype)
  return jnp.finfo(dt)


def check_fits(value: Any, name: str, dtype: Any) -> None:
  """Raises if a concrete scalar ``value`` overflows ``dtype`` (it would become inf).

  E.g. ``constant(value=1e6, dtype=jnp.float16)`` (float16's largest value is 65504).
  A traced scalar cannot be inspected and passes.
  """
  if isinstance(value, jax.core.Tracer):
    return
  limit = float(_real_finfo(dtype).max)
  if abs(float(value)) > limit:
    raise ValueError(f"{name}={value!r} overflows dtype {jnp.dtype(dtype).name} "
                     f"(largest finite value {limit:g})")


def check_range(largest: Any, what: str, dtype: Any) -> None:
  """Raises if ``largest``, the largest magnitude a sampler can return, overflows ``dtype``.

  Unlike :func:`check_fits` on a hyperparameter, ``largest`` is the quantity that
  is actually computed (a uniform bound, a normal's largest tail value), so a pass
  guarantees finite samples. Traced values pass.
  """
  if isinstance(largest, jax.core.Tracer):
    return
  limit = float(_real_finfo(dtype).max)
  if not abs(float(largest)) <= limit:
    raise ValueError(f"{what} = {float(largest):.6g} overflows dtype {jnp.dtype(dtype).name} "
                     f"(largest finite value {limit:g}); the samples would be inf or NaN")


def check_no_underflow(scale: Any, name: str, dtype: Any) -> None:
  """Raises if a nonzero ``scale`` rounds to 0 in ``dtype`` (every sample would be 0).

  Traced values pass.
  """
  if isinstance(scale, jax.core.Tracer):
    return
  tiny = float(_real_finfo(dtype).smallest_subnormal)
  if 0.0 < abs(float(scale)) < tiny / 2:
    raise ValueError(f"{name}={float(scale):.6g} underflows to 0 in dtype "
                     f"{jnp.dtype(dtype).name} (smallest positive value {tiny:g}); every "
                     "sample would be 0")


def check_choice(value: Any, name: str, allowed: Sequence[str]) -> str:
  """Returns ``value`` if it is one of ``allowed``, or raises listing them."""
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
  return value


def check_call_args(call_kwargs: Any, rngs: Any) -> tuple[dict, dict | None]:
  """A model call's extra keyword arguments and rngs: mappings with string keys, or None."""
  out = []
  for value, name in ((call_kwargs, "call_kwargs"), (rngs, "rngs")):
    if value is None:
      out.append({} if name == "call_kwargs" else None)
      continue
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
      example = "{'train': False}" if name == "call_kwargs" else "{'dropout': key}"
      raise TypeError(f"{name} must be a mapping with string keys (e.g. {example}), "
                      f"got {value!r}")
    out.append(dict(value))
  return out[0], out[1]


def check_finite_array(x: Any, name: str) -> None:
  """Raises if a concrete floating array holds NaN or inf (traced values pass)."""
  if isinstance(x, jax.core.Tracer) or not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
    return
  bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
  if bad:
    raise ValueError(f"{name} holds {bad} NaN/inf value(s) of {np.size(x)}: statistics of a "
                     "non-finite batch would be NaN")
