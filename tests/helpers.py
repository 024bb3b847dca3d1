"""Helpers shared by several test files: reference laws and small models.

Imported as ``import helpers`` (tests/ is on sys.path: pytest's rootdir insertion).
"""

from __future__ import annotations

import jax.numpy as jnp
import scipy.stats
from flax import nnx


def uniform(bound):
  """U(-bound, bound), the law of a uniform initializer."""
  return scipy.stats.uniform(loc=-bound, scale=2 * bound)


def truncnorm(s, lower=-2.0, upper=2.0, loc=0.0):
  """Normal of PRE-truncation std ``s`` truncated to [lower, upper] (bounds in units of s)."""
  return scipy.stats.truncnorm(lower, upper, loc=loc, scale=s)


class DirectKernel(nnx.Module):
  """Two Linear layers; the second's kernel is read directly, never through a call."""

  def __init__(self, rngs):
    self.first = nnx.Linear(6, 8, rngs=rngs)
    self.second = nnx.Linear(8, 4, rngs=rngs)

  def __call__(self, x):
    return jnp.tanh(self.first(x)) @ self.second.kernel[...]  # no call of `second`
