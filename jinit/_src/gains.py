"""Gains: the factor that keeps a signal's scale through a nonlinearity.

``calculate_gain`` is PyTorch's table (``torch.nn.init.calculate_gain``).
``gain_for`` computes a gain for any activation function from its definition.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jinit._src import validation

NONLINEARITIES = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu",
                  "leaky_relu", "selu")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
  """PyTorch's recommended gain for a named nonlinearity.

  ============================ ==========================================
  nonlinearity                 gain
  ============================ ==========================================
  linear / identity / conv*    1
  sigmoid                      1
  tanh                         5/3
  relu                         sqrt(2)
  leaky_relu                   sqrt(2 / (1 + negative_slope^2)), slope = param or 0.01
  selu                         3/4
  ============================ ==========================================

  Args:
    nonlinearity: one of the names above.
    param: the negative slope, for ``leaky_relu`` only (default 0.01).

  Returns:
    The gain as a Python float.

  References: He et al. 2015, https://arxiv.org/abs/1502.01852 (relu, leaky_relu);
  the table is ``torch.nn.init.calculate_gain``'s.
  """
  validation.check_choice(nonlinearity, "nonlinearity", NONLINEARITIES)
  if nonlinearity != "leaky_relu" and param is not None:
    raise ValueError(f"param is only used by nonlinearity='leaky_relu', got param={param!r}")
  if nonlinearity in ("linear", "identity", "sigmoid") or nonlinearity.startswith("conv"):
    return 1.0
  if nonlinearity == "tanh":
    return 5.0 / 3.0
  if nonlinearity == "relu":
    return math.sqrt(2.0)
  if nonlinearity == "selu":
    return 3.0 / 4.0
  # leaky_relu
  if param is None:
    slope = 0.01
  elif isinstance(param, bool) or not isinstance(param, (numbers.Real, np.floating, np.integer)):
    raise TypeError(f"param (negative_slope of leaky_relu) must be a number, got {param!r}")
  else:
    slope = validation.check_real(param, "param")
  return math.sqrt(2.0 / (1.0 + slope**2))


# Number of Gauss-Hermite nodes. The rule is symmetric about 0 and exact for
# polynomials of degree < 2 * _QUAD_NODES, so for piecewise-linear activations
# with a kink at 0 (relu, leaky relu) E[f(z)^2] is exact up to rounding; for
# smooth activations 200 nodes converge far below float32 precision.
_QUAD_NODES = 200
# gain_for also evaluates the rule with half the nodes; where the two differ by more
# than this (relative), the quadrature has not converged and no gain is returned.
# Measured differences between 100 and 200 nodes: < 1e-7 for relu, tanh, gelu, silu,
# softplus; 3e-5 (elu), 7e-5 (selu), 1.2e-2 (hard_tanh, kinks at +-1); and for
# functions with an infinite second moment 0.31 (1/x) and 0.098 (1/sqrt|x|).
_CONVERGENCE_RTOL = 0.05


@functools.lru_cache(maxsize=8)
def _hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
  nodes, weights = np.polynomial.hermite_e.hermegauss(n)
  return nodes, weights / math.sqrt(2.0 * math.pi)  # weight exp(-z^2/2) -> N(0, 1)


def second_moment(fn: Callable[[Any], Any], n: int = _QUAD_NODES) -> float:
  """E[fn(z)^2] for z ~ N(0, 1), by n-node Gauss-Hermite quadrature (deterministic).

  Args:
    fn: an elementwise function of a JAX array.
    n: the number of quadrature nodes.

  Returns:
    The quadrature's value as a Python float (inf or nan if fn is).
  """
  nodes, weights = _hermite_rule(n)
  values = np.asarray(fn(jnp.asarray(nodes, dtype=jnp.float32)), dtype=np.float64)
  if values.shape != nodes.shape:
    raise ValueError(
        f"activation must map an array elementwise; got output shape {values.shape} "
        f"for input shape {nodes.shape}")
  return float(np.sum(weights * values**2))


def gain_for(activation: Callable[[Any], Any]) -> float:
  r"""The gain that preserves the second moment through ``activation``.

  .. math:: g = 1 / \sqrt{\mathbb{E}_{z \sim N(0,1)}[f(z)^2]}

  If a layer's pre-activations are N(0, 1) and its weights have variance
  ``g^2 / fan_in``, the next pre-activations again have second moment 1 (the
  derivation of He et al. 2015, §2.2, for any f). The expectation is computed by
  200-node Gauss-Hermite quadrature, so the result is deterministic.

  Relation to :func:`calculate_gain`: for relu (sqrt(2)), leaky_relu
  (sqrt(2/(1+slope^2))) and linear (1) the two agree exactly, since those table
  entries were derived this way. For the others the table is a heuristic of a
  different kind: PyTorch's tanh gain 5/3 and sigmoid gain 1 do not preserve the
  second moment of N(0, 1) inputs (``gain_for(jnp.tanh)`` is about 1.593,
  ``gain_for(jax.nn.sigmoid)`` about 1.846), and selu's 3/4 targets self-normalizing
  networks with lecun init rather than this criterion.

  Args:
    activation: any elementwise function of a JAX array, e.g. ``jax.nn.gelu``.

  Returns:
    The gain as a Python float.

  Raises:
    TypeError: if ``activation`` is not callable.
    ValueError: if E[f(z)^2] is zero or not finite, or the quadrature has not
      converged: the 200-node and 100-node rules differ by more than 5%, as they
      do when E[f(z)^2] is infinite (``1/x``: 16.7 vs 11.6) or f has a jump.

  Examples:
    >>> import jax, jinit
    >>> round(jinit.gain_for(jax.nn.relu), 4)
    1.4142
    >>> round(jinit.gain_for(jax.numpy.tanh), 4)
    1.5925
  """
  if not callable(activation):
    raise TypeError(f"activation must be callable, got {activation!r}")
  m2 = second_moment(activation)
  if not np.isfinite(m2) or m2 <= 0.0:
    raise ValueError(f"activation has E[f(z)^2] = {m2!r}; no finite gain exists")
  coarse = second_moment(activation, _QUAD_NODES // 2)
  if not abs(coarse - m2) <= _CONVERGENCE_RTOL * m2:
    raise ValueError(
        f"E[f(z)^2] did not converge: Gauss-Hermite quadrature gives {m2:.6g} with "
        f"{_QUAD_NODES} nodes and {coarse:.6g} with {_QUAD_NODES // 2} (relative "
        f"difference {abs(coarse - m2) / m2:.3g} > {_CONVERGENCE_RTOL}); the activation "
        "likely has an infinite second moment (a pole such as 1/x) or a jump, so no "
        "gain is returned")
  return 1.0 / math.sqrt(m2)
