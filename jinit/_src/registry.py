"""Initializers by name, for command lines and configs."""

from __future__ import annotations

import functools
from typing import Any

from jinit._src import initializers as inits

INITIALIZERS: dict[str, inits.Initializer] = {
    name: getattr(inits, name) for name in (
        "zeros", "ones", "constant", "normal", "uniform", "truncated_normal",
        "variance_scaling", "xavier_uniform", "xavier_normal", "kaiming_uniform",
        "kaiming_normal", "lecun_uniform", "lecun_normal", "glorot_uniform", "glorot_normal",
        "he_uniform", "he_normal", "orthogonal", "delta_orthogonal", "eye", "dirac", "sparse",
        "torch_linear_default")
}


def get_initializer(name: str, **hyperparameters: Any) -> inits.Initializer:
  """The initializer called ``name``, with ``hyperparameters`` bound (keyword-only).

  ``get_initializer("kaiming_uniform", nonlinearity="relu")`` is
  ``functools.partial(jinit.kaiming_uniform, nonlinearity="relu")``.

  Raises:
    ValueError: for an unknown name (the message lists the known ones).
  """
  if not isinstance(name, str) or name not in INITIALIZERS:
    raise ValueError(f"unknown initializer {name!r}; known: {', '.join(sorted(INITIALIZERS))}")
  fn = INITIALIZERS[name]
  return functools.partial(fn, **hyperparameters) if hyperparameters else fn
