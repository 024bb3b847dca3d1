"""μP width transfer for Flax (nnx, linen) and optax: parametrizations, lr multipliers, coord check.

Under the maximal-update parametrization (μP; G. Yang et al., "Tensor Programs V: Tuning
Large Neural Networks via Zero-Shot Hyperparameter Transfer", 2022,
https://arxiv.org/abs/2203.03466) the best learning rate of a model stays put as its width
grows, so it can be tuned on a narrow *base* model and transferred. This module implements
the "μP via learning-rate scaling" formulation of the reference implementation ``mup``
(Table 8 of the paper): every parameter keeps its usual ``1/fan_in`` init except the readout,
the readout gets a forward multiplier ``1/width_mult``, and the optimizer scales learning
rates per parameter (Adam: hidden weights ``lr / width_mult``; SGD: input weights, biases and
readout ``lr * width_mult``). Table 3 and SP are available as ``parametrization=``.

Use::

  base = MLP(width=64, base_width=64, rngs=nnx.Rngs(0))     # the model you tune
  model = MLP(width=1024, base_width=64, rngs=nnx.Rngs(0))  # the one you train
  meta = jinit.mup.infinite_dims(model, base)                # {path: ParamMeta}
  tx = optax.chain(optax.adam(lr), jinit.mup.scale_updates(meta, "adam"))

Pieces:

* :func:`base_shapes`, :func:`infinite_dims`: which axes grow with width, each parameter's
  role and width multipliers (nnx modules, linen modules with example inputs, or params).
* :func:`scale_updates`: the optax transform applying the per-parameter lr multipliers.
* :class:`Readout` (nnx) and :class:`LinenReadout` (linen): the readout with the
  ``1/width_mult`` multiplier and the μP init, zero init optional.
* :func:`attention_scale`, :func:`attention_fn`: attention logits ``q.k / d`` (scaled to equal
  ``1/sqrt(d)`` at the base head dim) for ``nnx.MultiHeadAttention`` and linen's
  ``MultiHeadDotProductAttention``; :func:`zero_query` zero-inits the query projections.
* :func:`coord_check`: size of every layer's output vs width over a few training steps,
  with the slope of log size vs log width as the verdict, and mup's plot.

Depth transfer (``parametrization="depth_mup"``: Tensor Programs VI, branches ``x
(L/L_base)^-1/2``; ``"completep"``: Dey et al. 2025, branches ``x (L/L_base)^-1``): the
model multiplies each residual branch by :func:`branch_multiplier`; ``infinite_dims(model,
base, depth=L, base_depth=L_base, branches="blocks", parametrization=...)`` marks the
branches' parameters, whose lr (:func:`scale_updates`) and Adam epsilon (:func:`scale_eps`)
get the depth factors of :data:`BRANCH_TABLES`::

  tx = optax.chain(jinit.mup.scale_eps(meta), optax.adam(lr),
                   jinit.mup.scale_updates(meta, "adam"))

u-μP (``parametrization="u_mup"``: C. Blake et al., "u-μP: The Unit-Scaled Maximal Update
Parametrization", ICLR 2025, https://arxiv.org/abs/2407.17465; graphcore's ``unit_scaling``):
every weight N(0, 1), the scales in the ops, each a ``jax.custom_vjp`` where its backward
scale differs from the forward one (:func:`scale_fwd`, :func:`scale_bwd`,
:func:`unit_linear`, :func:`unit_readout`, :func:`unit_embedding`, :func:`residual_split`,
:func:`residual_add` with :func:`residual_taus`, :func:`unit_attention`, :func:`unit_gelu`,
:func:`unit_layer_norm`, :func:`unit_rms_norm`, :func:`unit_softmax_cross_entropy`), and
Adam learning rates in absolute fans (``infinite_dims(..., parametrization="u_mup")`` then
:func:`scale_updates`).
"""


from jinit._src.mup import ABSOLUTE_PARAMETRIZATIONS as ABSOLUTE_PARAMETRIZATIONS
from jinit._src.mup import BRANCH_TABLES as BRANCH_TABLES
from jinit._src.mup import DEPTH_ALPHA as DEPTH_ALPHA
from jinit._src.mup import OPTIMIZERS as OPTIMIZERS
from jinit._src.mup import PARAMETRIZATIONS as PARAMETRIZATIONS
from jinit._src.mup import PARAM_ROLES as PARAM_ROLES
from jinit._src.mup import ParamMeta as ParamMeta
from jinit._src.mup import Power as Power
from jinit._src.mup import Rule as Rule
from jinit._src.mup import TABLES as TABLES
from jinit._src.mup import UNIT_DEPTH_RULE as UNIT_DEPTH_RULE
from jinit._src.mup import branch_multiplier as branch_multiplier
from jinit._src.mup import depth_rule as depth_rule
from jinit._src.mup import format_meta as format_meta
from jinit._src.mup import lr_multipliers as lr_multipliers
from jinit._src.mup import rule as rule
from jinit._src.mup import scale_eps as scale_eps
from jinit._src.mup import scale_updates as scale_updates
from jinit._src.mup_models import CoordCheck as CoordCheck
from jinit._src.mup_models import LinenReadout as LinenReadout
from jinit._src.mup_models import Readout as Readout
from jinit._src.mup_models import attention_fn as attention_fn
from jinit._src.mup_models import attention_scale as attention_scale
from jinit._src.mup_models import base_shapes as base_shapes
from jinit._src.mup_models import coord_check as coord_check
from jinit._src.mup_models import infinite_dims as infinite_dims
from jinit._src.mup_models import zero_query as zero_query
from jinit._src.umup import CONSTRAINTS as CONSTRAINTS
from jinit._src.umup import attention_output_scale as attention_output_scale
from jinit._src.umup import constrain as constrain
from jinit._src.umup import gelu_scales as gelu_scales
from jinit._src.umup import linear_scales as linear_scales
from jinit._src.umup import residual_add as residual_add
from jinit._src.umup import residual_apply as residual_apply
from jinit._src.umup import residual_split as residual_split
from jinit._src.umup import residual_taus as residual_taus
from jinit._src.umup import scale_bwd as scale_bwd
from jinit._src.umup import scale_fwd as scale_fwd
from jinit._src.umup import unit_attention as unit_attention
from jinit._src.umup import unit_embedding as unit_embedding
from jinit._src.umup import unit_gelu as unit_gelu
from jinit._src.umup import unit_layer_norm as unit_layer_norm
from jinit._src.umup import unit_linear as unit_linear
from jinit._src.umup import unit_readout as unit_readout
from jinit._src.umup import unit_rms_norm as unit_rms_norm
from jinit._src.umup import unit_softmax_cross_entropy as unit_softmax_cross_entropy

__all__ = [
    "ABSOLUTE_PARAMETRIZATIONS", "BRANCH_TABLES", "CONSTRAINTS", "DEPTH_ALPHA", "OPTIMIZERS",
    "PARAM_ROLES", "PARAMETRIZATIONS", "TABLES", "UNIT_DEPTH_RULE",
    "CoordCheck", "LinenReadout", "ParamMeta", "Power", "Readout", "Rule", "attention_fn",
    "attention_output_scale", "attention_scale", "base_shapes", "branch_multiplier",
    "constrain", "coord_check", "depth_rule", "format_meta", "gelu_scales", "infinite_dims",
    "linear_scales", "lr_multipliers", "residual_add", "residual_apply", "residual_split",
    "residual_taus", "rule", "scale_bwd", "scale_eps", "scale_fwd", "scale_updates",
    "unit_attention", "unit_embedding", "unit_gelu", "unit_layer_norm", "unit_linear",
    "unit_readout", "unit_rms_norm", "unit_softmax_cross_entropy", "zero_query",
]

# Kept for code written before the rename (not in __all__): the parameter roles.
ROLES = PARAM_ROLES
