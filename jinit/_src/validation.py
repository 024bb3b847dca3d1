"""Argument checks shared by every initializer.

Each check raises ``ValueError`` or ``TypeError`` naming the argument and what
is allowed, so bad input never turns into a silent NaN or a wrong shape.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_shape(shape: Any, *, min_rank: int = 0, name: str = "shape") -> tuple[int, ...]:
  """Returns ``shape`` as a tuple of positive ints, or raises."""
  if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
    shape = (int(shape),)
  if not isinstance(shape, (Sequence, np.ndarray)) or isinstance(shape, str):
    raise TypeError(f"{name} must be a sequence of ints, got {shape!r}")
  dims = []
  for d in shape:
    if isinstance(d, bool) or not isinstance(d, (numbers.Integral, np.integer)):
      raise TypeError(f"{name} must contain ints, got {shape!r}")
    if d <= 0:
      raise ValueError(f"{name} must contain positive dimensions, got {tuple(shape)!r}")
    dims.append(int(d))
  if len(dims) < min_rank:
    raise ValueError(
        f"{name} must have rank >= {min_rank} for this initializer, got {tuple(dims)!r}")
  return tuple(dims)


def check_fan(value: Any, name: str, *, required: bool) -> int | None:
  """Returns a fan as a positive int (or None when allowed), or raises."""
  if value is None:
    if required:
      raise ValueError(f"{name} is required by this initializer (a positive int), got None")
    return None
  if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
    if not isinstance(value, bool) and isinstance(value, (numbers.Real, np.floating)) \
        and float(value).is_integer():
      value = int(value)
    else:
      raise TypeError(f"{name} must be a positive int, got {value!r}")
  if value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return int(value)


def check_float_dtype(dtype: Any) -> jnp.dtype:
  """Returns ``dtype`` as a numpy dtype if it is a floating type, or raises."""
  try:
    dt = jnp.dtype(dtype)
  except TypeError as e:
    raise TypeError(f"dtype must be a floating dtype, got {dtype!r}") from e
  if not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(
        f"dtype must be a floating dtype (float16, bfloat16, float32, float64), got {dt}")
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


def check_fits(value: Any, name: str, dtype: Any) -> None:
  """Raises if a concrete scalar ``value`` overflows ``dtype`` (it would become inf).

  E.g. ``constant(value=1e6, dtype=jnp.float16)`` (float16's largest value is 65504).
  A traced scalar cannot be inspected and passes.
  """
  if isinstance(value, jax.core.Tracer):
    return
  limit = float(jnp.finfo(dtype).max)
  if abs(float(value)) > limit:
    raise ValueError(f"{name}={value!r} overflows dtype {jnp.dtype(dtype).name} "
                     f"(largest finite value {limit:g})")


def check_choice(value: Any, name: str, allowed: Sequence[str]) -> str:
  """Returns ``value`` if it is one of ``allowed``, or raises listing them."""
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
  return value
