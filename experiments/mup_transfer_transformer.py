"""μP learning-rate transfer on a transformer: the best Adam lr of a pre-LN ViT vs width, SP and μP.

Tensor Programs V (G. Yang et al., 2022, https://arxiv.org/abs/2203.03466, Fig. 1 and 3)
shows its headline result on Transformers: under the standard parametrization (SP) the best
learning rate shifts as ``d_model`` grows, under μP it stays put, and at the transferred lr
wider is better. This study is :mod:`experiments.mup_transfer` (same sweep, same
``transfer.json``, same claims) on a small pre-LN GPT-style encoder on MNIST patches
(a ViT: 7x7 patches, 16 tokens of 49 pixels; on 8x8 digits 2x2 patches), trained with Adam:

* ``depth`` blocks ``x + attn(LN(x))``, ``x + fc2(gelu(fc1(LN(x))))`` (MLP ``4 * width``),
  ``heads`` heads of dim ``width / heads`` (heads fixed, head dim grows with width, as in the
  paper's transformers), learned position embedding (N(0, 0.02^2)), final LN, mean-pooled
  tokens, linear readout; every kernel LeCun normal (variance ``1/fan_in``), biases zero.
* ``sp``: attention logits ``q.k / sqrt(d_head)``, one Adam lr for every parameter.
* ``mup``: attention logits ``q.k * sqrt(d_head_base) / d_head``
  (:func:`jinit.mup.attention_fn`), the query projection and the readout zero-initialized
  (``--no-mup-zero-init`` keeps them random), :class:`jinit.mup.LinenReadout` (multiplier
  ``base_width / width``), and per-parameter Adam lr multipliers from
  :func:`jinit.mup.infinite_dims` against the base (smallest) width and
  :func:`jinit.mup.scale_updates` (hidden weights q/k/v/out/fc1/fc2: ``lr * base/width``).
  At the base width it is SP but for the zero query and readout.

All learning rates x seeds of one width train in one compiled program; the loss of a run
is the training cross-entropy on a fixed subset of the training set after the last step,
median over seeds (``mup_transfer.run``). Outputs as :mod:`experiments.mup_transfer`'s
(``transfer.json`` with the same schema, ``runs.json``, ``loss_vs_lr.png``,
``coord_check_{sp,mup}.png``, ``coord_check.json``, ``summary.md``/``summary.json``).

  python -m experiments.mup_transfer_transformer --quick   # widths 32-128, 80 steps
  python -m experiments.mup_transfer_transformer           # widths 32-256, 100 steps
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

import flax.linen as nn
import numpy as np

from experiments import deep_transformer
from experiments import mup_transfer
from experiments.common import cli
from experiments.common import study
from jinit import mup
from jinit._src import validation

POS_STD = deep_transformer.POS_STD  # position embedding N(0, 0.02^2), as ViT and GPT-2
LECUN = nn.initializers.lecun_normal()  # flax's default kernel init: variance 1/fan_in


@dataclasses.dataclass(frozen=True)
class Config(mup_transfer.Config):
  """:class:`experiments.mup_transfer.Config` with the transformer's sizes."""
  widths: tuple[int, ...] = (32, 64, 128, 256)
  log2_lrs: tuple[int, ...] = tuple(range(-12, -4))  # 2^-12 .. 2^-5
  seeds: int = 2
  steps: int = 100
  batch_size: int = 32
  eval_size: int = 1024
  val_size: int = 1000
  chunk: int = 4  # runs vmapped together: bounds the evaluation's memory at width 256
  # 16 sequences (256 tokens): with many more tokens than the widths, an update's
  # alignment with the next input is a finite-batch sum that shrinks like 1/sqrt(width)
  # at these widths (measured: zero-initialized query, slope -0.2 at 1024 tokens).
  coord_batch: int = 16
  coord_seeds: int = 2
  depth: int = 2  # transformer blocks
  heads: int = 4  # fixed; the head dim (width / heads) grows with width
  grid: int = 4  # patches per image side: 16 tokens
  mup_zero_init: bool = True  # μP: zero query and readout (the paper's transformers)

  def __post_init__(self):
    super().__post_init__()
    for name in ("depth", "heads", "grid"):
      validation.check_int(getattr(self, name), name)
    bad = [w for w in self.widths if w % self.heads]
    if bad:
      raise ValueError(f"widths must be divisible by heads ({self.heads}), got {bad}")


QUICK = Config(widths=(32, 64, 128), log2_lrs=tuple(range(-11, -4)), seeds=2, steps=80, chunk=8)


class Attention(nn.Module):
  """Multi-head self-attention, logits scaled by :func:`jinit.mup.attention_scale`."""
  heads: int
  base_head_dim: int | None  # None: SP (1/sqrt(d_head))
  zero_query: bool = False

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    head_dim = d // self.heads

    def proj(name, init=LECUN):
      return nn.DenseGeneral((self.heads, head_dim), kernel_init=init, name=name)(x)

    q = proj("query", nn.initializers.zeros if self.zero_query else LECUN)
    k, v = proj("key"), proj("value")
    parametrization = "sp" if self.base_head_dim is None else "mup"
    attend = mup.attention_fn(self.base_head_dim, parametrization=parametrization,
                              inner=nn.dot_product_attention)
    return nn.DenseGeneral(d, axis=(-2, -1), name="out")(attend(q, k, v))


class Block(nn.Module):
  """Pre-LN: ``x + attn(LN(x))``, then ``x + fc2(gelu(fc1(LN(x))))``."""
  heads: int
  base_head_dim: int | None
  zero_query: bool = False

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    x = x + Attention(self.heads, self.base_head_dim, self.zero_query,
                      name="attn")(nn.LayerNorm(name="ln1")(x))
    h = nn.gelu(nn.Dense(4 * d, name="fc1")(nn.LayerNorm(name="ln2")(x)))
    return x + nn.Dense(d, name="fc2")(h)


class ViT(nn.Module):
  """Patches ``(B, tokens, patch_dim)`` -> logits; SP when ``base_width`` is None, else μP."""
  width: int
  base_width: int | None
  depth: int = 2
  heads: int = 4
  zero_query: bool = False
  zero_readout: bool = False
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(self.width, name="embed")(x)
    pos = self.param("pos_embed", nn.initializers.normal(POS_STD), h.shape[-2:])
    h = h + pos.reshape((1,) * (h.ndim - 2) + pos.shape)  # explicit rank (no promotion)
    base_head_dim = None if self.base_width is None else self.base_width // self.heads
    for i in range(self.depth):
      h = Block(self.heads, base_head_dim, self.zero_query, name=f"block{i}")(h)
    h = nn.LayerNorm(name="final_ln")(h).mean(axis=-2)
    parametrization = "sp" if self.base_width is None else "mup"
    return mup.LinenReadout(self.num_classes, base_in_features=self.base_width,
                            zero_init=self.zero_readout, parametrization=parametrization,
                            name="head")(h)


def make_model(config: Config, parametrization: str, width: int, base_width: int) -> ViT:
  """The ViT of ``parametrization`` at ``width``: μP's zero query and readout if configured."""
  mu = parametrization == "mup"
  return ViT(width, base_width if mu else None, config.depth, config.heads,
             zero_query=mu and config.mup_zero_init,
             zero_readout=config.zero_readout or (mu and config.mup_zero_init))


def family(config: Config) -> mup_transfer.Family:
  """The study's :class:`experiments.mup_transfer.Family`: the ViT on square images' patches."""

  def inputs(x: np.ndarray) -> np.ndarray:
    side = math.isqrt(x.shape[1])
    if side % config.grid:
      raise ValueError(f"grid {config.grid} must divide the image side {side}")
    return deep_transformer.patchify(np.asarray(x, np.float32), side // config.grid)

  return mup_transfer.Family(
      f"pre-LN ViT, {config.depth} blocks, {config.heads} heads",
      lambda p, width, base: make_model(config, p, width, base), inputs)


def add_flags(p: argparse.ArgumentParser) -> None:
  mup_transfer.add_width_flags(p, Config(), QUICK)
  p.add_argument("--mup-zero-init", action=argparse.BooleanOptionalAction, default=None,
                 help="μP: zero-init the query projections and the readout (default on)")


def config_from_args(args) -> Config:
  """Every check of the flags (before any data or folder); the study's :class:`Config`."""
  return mup_transfer.width_config(args, Config(), QUICK, RUNNER.prog, extra=("mup_zero_init",))


def _run(ctx) -> dict[str, Any]:
  return mup_transfer.run(ctx.dataset, ctx.config, ctx.out_dir, ctx.provenance["command"],
                          log=ctx.log, prov=ctx.provenance, family=family(ctx.config))


RUNNER = study.Runner("mup_transfer_transformer", (__doc__ or "").split("\n")[0], add_flags,
                      config_from_args, _run,
                      presets={"quick": {"widths": QUICK.widths, "steps": QUICK.steps,
                                         "lrs": f"2^{QUICK.log2_lrs[0]}..2^{QUICK.log2_lrs[-1]}"}})


build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
