"""Flax linen adapters and model-level (re)initialization with every layer's true fans.

* :func:`kernel_init` / :func:`bias_init`: a jinit initializer as a Flax
  ``(key, shape, dtype)`` initializer (fans read off the shape, an einsum
  equation, or explicit axes).
* :class:`Dense`: ``nn.Dense`` whose bias init sees the kernel's fan_in, so
  PyTorch's default ``nn.Linear`` init is one line (impossible with ``nn.Dense``,
  flax #3019).
* :func:`reinit`: re-draws every parameter of a linen model knowing each layer's
  type, so its true fans (Dense, DenseGeneral with batch axes, Conv with groups,
  ConvTranspose, Einsum, Embed, attention), with ordered ``(pattern, init)`` rules.

Needs the ``flax`` package (``pip install jinit[flax]``).
"""

from jinit._src.linen import Dense as Dense
from jinit._src.linen import UncoveredParametersWarning as UncoveredParametersWarning
from jinit._src.linen import bias_init as bias_init
from jinit._src.linen import kernel_init as kernel_init
from jinit._src.linen import reinit as reinit

__all__ = [
    "Dense", "UncoveredParametersWarning", "bias_init", "kernel_init", "reinit",
]
