"""The deep transformer study's extra variants: DeepNorm, GradInit, MetaInit, SmallInit+Wang,
mimetic.

Each variant is an architecture (``(pre_ln, post_ln, gated)``, as ``deep_transformer.ARCH``)
and an init of ``deep_transformer.param_shapes``'s per-layer params (Flax names:
``blocks/<i>/attn/{query,key,value,out}/kernel``, ``blocks/<i>/mlp/{fc1,fc2}/kernel``):

=======================  =========  ==================================================
variant                  norm       init
=======================  =========  ==================================================
``postln_deepnorm``      Post-LN    DeepNorm (Wang et al. 2022): Xavier normal, gain beta
                                    on value/out/MLP; residual LN(alpha x + G(x)), run as
                                    LN(x + G(x) / alpha) (LN is scale-invariant) through
                                    the gate set to 1/alpha (the gate is trained: a
                                    deviation from DeepNet's constant alpha)
``postln_gradinit``      Post-LN    Xavier, then GradInit (Adam, the study's lr, no warmup)
``noln_metainit``        none       Xavier, then MetaInit (init2winit's defaults)
``preln_smallinit_wang`` Pre-LN     gpt-neox: SmallInit, Wang on attn out and fc2
``preln_mimetic``        Pre-LN     Xavier, then mimetic q/k and v/o (Trockman & Kolter)
=======================  =========  ==================================================

Not wired into ``experiments/deep_transformer.py`` yet (that file is being ported to the
shared runner): it takes ``ARCH_EXTRA`` next to ``ARCH`` and ``init_extra`` for these names.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jinit import learned
from jinit import recipes
from jinit import residual

EXTRA_VARIANTS = ("postln_deepnorm", "postln_gradinit", "noln_metainit", "preln_smallinit_wang",
                  "preln_mimetic")
ARCH_EXTRA = {
    "postln_deepnorm": (0.0, 1.0, 1.0),
    "postln_gradinit": (0.0, 1.0, 0.0),
    "noln_metainit": (0.0, 0.0, 0.0),
    "preln_smallinit_wang": (1.0, 0.0, 0.0),
    "preln_mimetic": (1.0, 0.0, 0.0),
}
MIMETIC = (0.7, 0.7, 0.4, 0.4)  # (alpha1, beta1, alpha2, beta2): chosen here, not the paper's
GRADINIT = {"steps": 100, "gamma": 1.0, "scale_lr": 1e-2}  # chosen here; state them in results


def extra_rules(variant: str, depth: int, width: int) -> list:
  """The variant's ``(pattern, init)`` rules, to be completed by the study's STANDARD_RULES."""
  if variant not in EXTRA_VARIANTS:
    raise ValueError(f"variant must be one of {', '.join(EXTRA_VARIANTS)}, got {variant!r}")
  if variant == "postln_deepnorm":
    recipe = recipes.deepnorm(depth, "encoder")
    gate = residual.rezero_rules(r"gate/alpha$", 1.0 / recipes.deepnorm_alpha(depth, "encoder"))
    return recipe["rules"] + gate + [(r"kernel$", recipe["init"])]
  if variant == "preln_smallinit_wang":
    recipe = recipes.gpt_neox(depth, width, attn_out=r"attn/out/kernel$",
                              ffn_out=r"mlp/fc2/kernel$")
    return recipe["rules"] + [(r"kernel$", recipe["init"])]
  return []


def init_extra(variant: str, cfg: Any, key: jax.Array, *, standard_rules: list,
               loss_fn=None, batch: Any = None, lr: float = 1e-3) -> dict[str, Any]:
  """The variant's per-layer params (``blocks`` a list).

  Args:
    variant: one of :data:`EXTRA_VARIANTS`.
    cfg: the study's ``ViTConfig``.
    key: PRNG key.
    standard_rules: the study's ``STANDARD_RULES`` (Xavier kernels, zero biases, ...).
    loss_fn: ``loss_fn(params, batch)`` on per-layer params (GradInit, MetaInit only).
    batch: ``(patches, labels)`` for GradInit/MetaInit.
    lr: the training learning rate (GradInit's eta).
  """
  shapes = _shapes(cfg)
  placeholders = jax.tree.map(lambda s: np.zeros(s, np.float32), shapes,
                              is_leaf=lambda s: isinstance(s, tuple))
  k_init, k_post = jax.random.split(key)
  params = residual.apply_rules(placeholders, extra_rules(variant, cfg.depth, cfg.width)
                                + standard_rules, key=k_init)
  if variant == "preln_mimetic":
    a1, b1, a2, b2 = MIMETIC
    params = recipes.mimetic_attention(params, key=k_post, alpha=a1, beta=b1, value_alpha=a2,
                                       value_beta=b2, layout="flax")
  elif variant in ("postln_gradinit", "noln_metainit"):
    if loss_fn is None or batch is None:
      raise ValueError(f"{variant} needs loss_fn and batch")
    if variant == "postln_gradinit":
      params = learned.gradinit(params, batch, loss_fn, key=k_post, optimizer="adam", lr=lr,
                                **GRADINIT).model
    else:
      params = learned.metainit(params, batch, loss_fn, key=k_post).model
  return params


def _shapes(cfg: Any) -> dict[str, Any]:
  from experiments import deep_transformer  # pylint: disable=import-outside-toplevel
  return deep_transformer.param_shapes(cfg)
