"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas 2016) for Flax.

A data-dependent init: start from orthonormal weights, then, layer by layer in
forward order, run a batch through the model and divide the layer's kernel by the
std of the layer's output until that output has unit variance::

  for each kernel layer L (in call order):
    while |Var(z_L) - 1| >= tol and iterations < max_iters:
      W_L <- W_L / sqrt(Var(z_L))

``z_L`` is the layer's own output (its pre-activation; biases are left as they are)
and ``Var`` is taken over all entries of the batch. Every layer that owns a
``kernel`` is handled -- Dense/Linear, Conv, ConvTranspose, DenseGeneral/
LinearGeneral, Einsum, the q/k/v/out projections of attention -- in linen and nnx
models of any structure, found as :mod:`jinit.diagnostics` finds them
(:mod:`jinit._src.capture`). The orthonormal pre-init is grouped: each kernel is
orthogonal as its ``(prod in axes, prod out axes)`` matrix (one per batch index of a
batched kernel), so an attention query kernel ``(d, heads, head_dim)`` is an
orthogonal ``(d, heads * head_dim)`` map. A layer called several times (shared
weights) is scaled at its first call. Kernels LSUV leaves alone (not called through
``__call__``, called inside ``scan``/``vmap``/``remat``, or excluded by
``layer_types``) are named in a warning.

Call shapes::

  variables = jinit.lsuv.lsuv(model, variables, x_batch, key)   # linen: new variables
  model = jinit.lsuv.lsuv(nnx_model, x_batch, key)              # nnx: in place, returns it

Reference: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016,
https://arxiv.org/abs/1511.06422.
"""

from jinit._src.lsuv import LayerInfo as LayerInfo
from jinit._src.lsuv import grouped_orthogonal as grouped_orthogonal
from jinit._src.lsuv import lsuv as lsuv

__all__ = [
    "LayerInfo", "grouped_orthogonal", "lsuv",
]
