"""The deep transformer study's extra variants: DeepNorm, GradInit, MetaInit, SmallInit+Wang,
mimetic.

Each variant is an architecture (``deep_transformer.ARCH`` and, for DeepNorm, the
residual scale :func:`residual_alpha`) and an init of ``deep_transformer.param_shapes``'s
per-layer params (Flax names: ``blocks/<i>/attn/{query,key,value,out}/kernel``,
``blocks/<i>/mlp/{fc1,fc2}/kernel``):

=======================  =========  ==================================================
variant                  norm       init
=======================  =========  ==================================================
``postln_deepnorm``      Post-LN    DeepNorm (Wang et al. 2022): Xavier normal, gain
                                    beta = (8N)^(-1/4) on value/out/MLP, gain 1 on q/k;
                                    residual LN(alpha x + G(x)), alpha = (2N)^(1/4), a
                                    constant of the model (encoder-only constants)
``postln_gradinit``      Post-LN    Xavier, then GradInit (Adam, the study's lr, no warmup)
``noln_metainit``        none       Xavier, then MetaInit (init2winit's defaults)
``preln_smallinit_wang`` Pre-LN     gpt-neox: SmallInit, Wang on attn out and fc2
``preln_mimetic``        Pre-LN     Xavier, then mimetic q/k and v/o (Trockman & Kolter)
=======================  =========  ==================================================

GradInit and MetaInit learn their scales before training from ``LEARN_BATCH`` training
examples (``deep_transformer.init_batch``), deterministically for the run's key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jinit import learned
from jinit import recipes
from jinit import residual

EXTRA_VARIANTS = ("postln_deepnorm", "postln_gradinit", "noln_metainit", "preln_smallinit_wang",
                  "preln_mimetic")
MIMETIC = (0.7, 0.7, 0.4, 0.4)  # (alpha1, beta1, alpha2, beta2): chosen here, not the paper's
GRADINIT = {"steps": 100, "gamma": 1.0, "scale_lr": 1e-2}  # chosen here; state them in results
METAINIT = {"steps": 50, "lr": 0.1, "momentum": 0.5, "batch_size": 8}  # init2winit's defaults
LEARN_BATCH = 64  # training examples GradInit/MetaInit learn from (GradInit: two halves of 32)


def settings() -> dict[str, Any]:
  """The extra variants' chosen constants, for the results' config."""
  a1, b1, a2, b2 = MIMETIC
  return {"mimetic": {"alpha1": a1, "beta1": b1, "alpha2": a2, "beta2": b2},
          "gradinit": {**GRADINIT, "optimizer": "adam", "lr": "the study's --lr"},
          "metainit": dict(METAINIT), "learn_batch": LEARN_BATCH,
          "deepnorm": "encoder-only: alpha = (2N)^(1/4), beta = (8N)^(-1/4)"}


def residual_alpha(variant: str, depth: int) -> float:
  """The residual scale alpha of ``x + branch`` -> ``alpha x + branch`` (DeepNorm's; else 1)."""
  if variant == "postln_deepnorm":
    return recipes.deepnorm_alpha(depth, "encoder")
  return 1.0


def extra_rules(variant: str, depth: int, width: int) -> list:
  """The variant's ``(pattern, init)`` rules, to be completed by the study's STANDARD_RULES."""
  if variant not in EXTRA_VARIANTS:
    raise ValueError(f"variant must be one of {', '.join(EXTRA_VARIANTS)}, got {variant!r}")
  if variant == "postln_deepnorm":
    recipe = recipes.deepnorm(depth, "encoder")
    return recipe["rules"] + [(r"kernel$", recipe["init"])]
  if variant == "preln_smallinit_wang":
    recipe = recipes.gpt_neox(depth, width, attn_out=r"attn/out/kernel$",
                              ffn_out=r"mlp/fc2/kernel$")
    return recipe["rules"] + [(r"kernel$", recipe["init"])]
  return []


def init_extra(variant: str, placeholders: Any, depth: int, width: int, key: jax.Array, *,
               standard_rules: list, loss_fn: Callable[[Any, Any], Any] | None = None,
               batch: Any = None, lr: float = 1e-3) -> dict[str, Any]:
  """The variant's per-layer params (``blocks`` a list).

  Args:
    variant: one of :data:`EXTRA_VARIANTS`.
    placeholders: the params' shapes, as zero arrays (``blocks`` a list).
    depth, width: the model's blocks and residual width.
    key: PRNG key (split: the rules' draw, then mimetic's or the learned init's).
    standard_rules: the study's ``STANDARD_RULES`` (Xavier kernels, zero biases, ...).
    loss_fn: ``loss_fn(params, batch)`` on per-layer params (GradInit, MetaInit only).
    batch: ``(patches, labels)`` for GradInit/MetaInit.
    lr: the training learning rate (GradInit's eta).

  Returns:
    The params, same structure as ``placeholders``.
  """
  rules = extra_rules(variant, depth, width)
  if variant in ("postln_gradinit", "noln_metainit") and (loss_fn is None or batch is None):
    raise ValueError(f"{variant} needs loss_fn and batch")
  k_init, k_post = jax.random.split(key)
  params = residual.apply_rules(placeholders, rules + standard_rules, key=k_init)
  if variant == "preln_mimetic":
    a1, b1, a2, b2 = MIMETIC
    params = recipes.mimetic_attention(params, key=k_post, alpha=a1, beta=b1, value_alpha=a2,
                                       value_beta=b2, layout="flax")
  elif variant == "postln_gradinit":
    assert loss_fn is not None  # checked above
    params = learned.gradinit(params, batch, loss_fn, key=k_post, optimizer="adam", lr=lr,
                              **GRADINIT).model
  elif variant == "noln_metainit":
    assert loss_fn is not None  # checked above
    params = learned.metainit(params, batch, loss_fn, key=k_post, **METAINIT).model
  return params
