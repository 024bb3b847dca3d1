"""Flax nnx adapters and model-level (re)initialization with every layer's true fans.

* :func:`kernel_init` / :func:`bias_init`: a jinit initializer as a Flax
  ``(key, shape, dtype)`` initializer (the same adapters as :mod:`jinit.linen`).
* :func:`linear`: an ``nnx.Linear`` whose kernel and bias inits see its fans.
* :func:`reinit`: re-draws every parameter of an nnx model in place, knowing each
  layer's type, so its true fans (Linear, LinearGeneral with batch axes, Conv
  with groups, ConvTranspose, Einsum, Embed, MultiHeadAttention, LoRA), with
  ordered ``(pattern, init)`` rules.

Needs the ``flax`` package (``pip install jinit[flax]``).
"""

from jinit._src.nnx import UncoveredParametersWarning as UncoveredParametersWarning
from jinit._src.nnx import bias_init as bias_init
from jinit._src.nnx import kernel_init as kernel_init
from jinit._src.nnx import linear as linear
from jinit._src.nnx import reinit as reinit

__all__ = [
    "UncoveredParametersWarning", "bias_init", "kernel_init", "linear", "reinit",
]
