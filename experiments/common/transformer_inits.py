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
import jax.numpy as jnp

from jinit import learned
from jinit import recipes
from jinit import residual

EXTRA_VARIANTS = ("postln_deepnorm", "postln_gradinit", "noln_metainit", "preln_smallinit_wang",
                  "preln_mimetic")
# The learned inits again at their papers' own settings (by name only: not in --variants all).
PAPER_VARIANTS = ("postln_gradinit_paper", "noln_metainit_paper")
MIMETIC = (0.7, 0.7, 0.4, 0.4)  # (alpha1, beta1, alpha2, beta2): chosen here, not the paper's
GRADINIT = {"steps": 100, "gamma": 1.0, "scale_lr": 1e-2}  # chosen here; state them in results
METAINIT = {"steps": 50, "lr": 0.1, "momentum": 0.5, "batch_size": 8}  # init2winit's defaults
# GradInit's official Transformer run (zhuchen03/gradinit,
# fairseq/gradinit/launch/run_iwslt_14_gradinit_no_clipping.sh and its config defaults):
# gamma 1000 (gradinit_gamma's default; the script sets none), tau 2.5e-3, 780 iterations,
# min scale 0.01, eta 1e-3 whatever the training lr (5e-4 there). Not matched: its Adam
# beta2 0.98 on the scales (ours 0.999), max scale 100 on LN gains, no lower bound on biases.
GRADINIT_PAPER = {"steps": 780, "gamma": 1000.0, "scale_lr": 2.5e-3, "lr": 1e-3}
# MetaInit's paper (Dauphin & Schoenholz 2019, Figure 2's code): lr 0.1, momentum 0.9, 500
# steps; its minibatch is not given there: init2winit's 8.
METAINIT_PAPER = {"steps": 500, "lr": 0.1, "momentum": 0.9, "batch_size": 8}
LEARNED = ("postln_gradinit", "noln_metainit") + PAPER_VARIANTS  # learn from a batch
LR_DEPENDENT = ("postln_gradinit",)  # its init depends on the training lr (GradInit's eta)
LEARN_BATCH = 64  # training examples GradInit/MetaInit learn from (GradInit: two halves of 32)


def settings() -> dict[str, Any]:
  """The extra variants' chosen constants, for the results' config."""
  a1, b1, a2, b2 = MIMETIC
  return {"mimetic": {"alpha1": a1, "beta1": b1, "alpha2": a2, "beta2": b2},
          "gradinit": {**GRADINIT, "optimizer": "adam", "lr": "the study's --lr"},
          "metainit": dict(METAINIT), "learn_batch": LEARN_BATCH,
          "gradinit_paper": {**GRADINIT_PAPER, "optimizer": "adam",
                             "source": "zhuchen03/gradinit IWSLT'14 Post-LN run"},
          "metainit_paper": {**METAINIT_PAPER, "source": "Dauphin & Schoenholz 2019, Fig. 2"},
          "deepnorm": "encoder-only: alpha = (2N)^(1/4), beta = (8N)^(-1/4)"}


def residual_alpha(variant: str, depth: int) -> float:
  """The residual scale alpha of ``x + branch`` -> ``alpha x + branch`` (DeepNorm's; else 1)."""
  if variant == "postln_deepnorm":
    return recipes.deepnorm_alpha(depth, "encoder")
  return 1.0


def extra_rules(variant: str, depth: int, width: int) -> list:
  """The variant's ``(pattern, init)`` rules, to be completed by the study's STANDARD_RULES."""
  if variant not in EXTRA_VARIANTS + PAPER_VARIANTS:
    raise ValueError(f"variant must be one of {', '.join(EXTRA_VARIANTS + PAPER_VARIANTS)}, "
                     f"got {variant!r}")
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
    loss_fn: ``loss_fn(params, batch)`` on params with ``blocks`` stacked along a leading
      depth axis (GradInit, MetaInit only: they learn one scale per layer of the stacked
      blocks, ``stacked=STACKED``, in a program whose size does not grow with depth).
    batch: ``(patches, labels)`` for GradInit/MetaInit.
    lr: the training learning rate (GradInit's eta).

  Returns:
    The params, same structure as ``placeholders``.
  """
  rules = extra_rules(variant, depth, width)
  if variant in LEARNED and (loss_fn is None or batch is None):
    raise ValueError(f"{variant} needs loss_fn and batch")
  k_init, k_post = jax.random.split(key)
  params = residual.apply_rules(placeholders, rules + standard_rules, key=k_init)
  if variant == "preln_mimetic":
    a1, b1, a2, b2 = MIMETIC
    params = recipes.mimetic_attention(params, key=k_post, alpha=a1, beta=b1, value_alpha=a2,
                                       value_beta=b2, layout="flax")
  elif variant in LEARNED:
    assert loss_fn is not None  # checked above
    try:
      out = _learn(variant, params, batch, loss_fn, k_post, lr)
    except FloatingPointError:
      # The learned init is not finite (MetaInit from an unnormalized deep stack whose
      # activations overflow): the run starts non-finite and is recorded as diverged at
      # step 1, the study's meaning of a failed init.
      return jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
    params = unstack(out.model, depth)
  return params


def _learn(variant: str, params, batch, loss_fn, key, lr):
  """The learned init of a LEARNED variant (its jinit.learned call and settings)."""
  if variant == "postln_gradinit":
    return learned.gradinit(stack(params), batch, loss_fn, key=key, optimizer="adam", lr=lr,
                            stacked=STACKED, **GRADINIT)
  if variant == "postln_gradinit_paper":
    return learned.gradinit(stack(params), batch, loss_fn, key=key, optimizer="adam",
                            stacked=STACKED, **GRADINIT_PAPER)
  settings = METAINIT if variant == "noln_metainit" else METAINIT_PAPER
  return learned.metainit(stack(params), batch, loss_fn, key=key, stacked=STACKED, **settings)


STACKED = r"^blocks/"  # the stacked blocks' leaves: one learned scale per layer


def stack(params: dict[str, Any]) -> dict[str, Any]:
  """``blocks`` (a list of per-layer dicts) as one pytree with a leading depth axis."""
  return {**params, "blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *params["blocks"])}


def unstack(params: dict[str, Any], depth: int) -> dict[str, Any]:
  """The inverse of :func:`stack`: ``blocks`` as a list of ``depth`` per-layer dicts."""
  return {**params, "blocks": [jax.tree.map(lambda x, i=i: x[i], params["blocks"])
                               for i in range(depth)]}
