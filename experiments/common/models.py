"""The course page's MLP as a Flax module with jinit initializers, and run specs.

``MLP(hidden=50, depth=5, activation="sigmoid")`` is the page's model::

  Dense(784->50) -> act -> 4 x [Dense(50->50) -> act] -> Dense(50->10)

``depth`` counts the hidden layers (Dense + activation); the output layer is extra.
Layers are ``jinit.linen.Dense`` named ``dense_0 .. dense_<depth>``, so a bias init
sees its layer's fan_in (PyTorch's ``nn.Linear`` default needs it).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import jinit
import jinit.linen
from jinit._src import validation

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}

AUTO_BIAS = "auto"  # the page's pairing: torch_linear_default bias with its weights, else zeros


def check_activation(name: str) -> str:
  if name not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, "
                     f"got {name!r}")
  return name


class MLP(nn.Module):
  """Dense -> act, ``depth`` times, then Dense(num_classes); inputs (N, D) or (N, ...).

  Attributes:
    hidden: width of every hidden layer.
    depth: number of hidden layers (the page: 5).
    num_classes: output width.
    activation: a key of :data:`ACTIVATIONS`.
    kernel_init, bias_init: jinit initializers (hyperparameters bound).
  """

  hidden: int = 50
  depth: int = 5
  num_classes: int = 10
  activation: str = "sigmoid"
  kernel_init: Callable[..., jax.Array] = jinit.torch_linear_default
  bias_init: Callable[..., jax.Array] = jinit.torch_linear_default

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[check_activation(self.activation)]
    x = x.reshape((x.shape[0], -1))  # nn.Flatten()
    for i in range(self.depth):
      x = jinit.linen.Dense(self.hidden, kernel_init=self.kernel_init,
                            bias_init=self.bias_init, name=f"dense_{i}")(x)
      x = act(x)
    return jinit.linen.Dense(self.num_classes, kernel_init=self.kernel_init,
                             bias_init=self.bias_init, name=f"dense_{self.depth}")(x)


def _parse_value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word, e.g. nonlinearity=relu


def parse_init(text: str) -> tuple[str, dict[str, Any]]:
  """``"kaiming_normal:nonlinearity=relu:a=0"`` -> ``("kaiming_normal", {...})``.

  Raises:
    ValueError: unknown initializer (lists the known ones) or a malformed hyperparameter.
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"an init must be a non-empty name, got {text!r}")
  name, *pairs = [part.strip() for part in text.strip().split(":")]
  if name != AUTO_BIAS:
    jinit.get_initializer(name)  # ValueError listing the known names
  hyper = {}
  for pair in pairs:
    if "=" not in pair:
      raise ValueError(f"init hyperparameters are written NAME:key=value, got {text!r}")
    key, value = pair.split("=", 1)
    hyper[key.strip()] = _parse_value(value.strip())
  return name, hyper


def format_init(name: str, hyper: dict[str, Any] | None = None) -> str:
  """Inverse of :func:`parse_init`: ``kaiming_normal:nonlinearity=relu``."""
  return ":".join([name] + [f"{k}={v}" for k, v in sorted((hyper or {}).items())])


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One training run: kernel init (+ hyperparameters), bias init, seed.

  ``seed`` sets the initial weights and the shuffling order of the run.
  ``bias_init="auto"`` is the page's pairing: ``torch_linear_default`` biases with
  ``torch_linear_default`` weights (PyTorch's ``nn.Linear``), zeros otherwise.
  """

  init: str
  seed: int = 0
  bias_init: str = AUTO_BIAS
  init_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  bias_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    jinit.get_initializer(self.init)  # ValueError listing the known names
    if self.bias_init != AUTO_BIAS:
      jinit.get_initializer(self.bias_init)
    validation.check_int(self.seed, "seed", minimum=0)

  @classmethod
  def parse(cls, init: str, seed: int = 0, bias_init: str = AUTO_BIAS) -> RunSpec:
    """From command-line strings, e.g. ``RunSpec.parse("kaiming_normal:nonlinearity=relu")``."""
    name, hyper = parse_init(init)
    bias_name, bias_hyper = parse_init(bias_init)
    return cls(name, seed, bias_name, hyper, bias_hyper)

  @property
  def resolved_bias(self) -> tuple[str, dict[str, Any]]:
    if self.bias_init == AUTO_BIAS:
      return ("torch_linear_default" if self.init == "torch_linear_default" else "zeros"), {}
    return self.bias_init, dict(self.bias_kwargs)

  @property
  def label(self) -> str:
    """The kernel init as written on the command line, e.g. ``xavier_uniform``."""
    return format_init(self.init, self.init_kwargs)

  @property
  def bias_label(self) -> str:
    return format_init(*self.resolved_bias)

  @property
  def group(self) -> tuple[str, str]:
    """Runs with the same group differ only in their seed."""
    return self.label, self.bias_label

  def initializers(self):
    """(kernel_init, bias_init) as jinit initializers with hyperparameters bound."""
    bias_name, bias_hyper = self.resolved_bias
    return (jinit.get_initializer(self.init, **self.init_kwargs),
            jinit.get_initializer(bias_name, **bias_hyper))


def build_model(spec: RunSpec, *, hidden: int, depth: int, num_classes: int,
                activation: str) -> MLP:
  """The :class:`MLP` of a run (architecture from the config, inits from the spec)."""
  kernel_init, bias_init = spec.initializers()
  return MLP(hidden=hidden, depth=depth, num_classes=num_classes,
             activation=check_activation(activation), kernel_init=kernel_init,
             bias_init=bias_init)
