"""Deep ViTs on MNIST without warmup: LayerNorm placement vs depth-scaled residual inits.

A small Vision Transformer (7x7 patches: 16 tokens of 49 pixels, width 32, 4 heads,
GELU MLP of width 64, mean-pooled tokens, linear head; sized for a 2-core CPU) at
depths 6 / 24 / 48, six variants trained with the SAME optimizer (Adam, constant lr
1e-3, no warmup, no gradient clipping, batch 32) on the same batches:

====================  =========  ====================================================
variant               norm       init
====================  =========  ====================================================
``preln_standard``    Pre-LN     Xavier uniform kernels, zero biases (+ final LN)
``postln_standard``   Post-LN    Xavier uniform (LN after each residual add)
``noln_standard``     none       Xavier uniform
``noln_rezero``       none       Xavier + ReZero/SkipInit gate alpha = 0 per block
``noln_tfixup``       none       T-Fixup (Huang et al. 2020)
``preln_gpt2``        Pre-LN     GPT-2: N(0, 0.02^2), residual projections / sqrt(2L)
====================  =========  ====================================================

and, with ``--variants all`` (or by name), five more from
:mod:`experiments.common.transformer_inits`: ``postln_deepnorm`` (DeepNorm: Post-LN
``LN(alpha x + G(x))`` with DeepNet's alpha and beta-scaled Xavier), ``postln_gradinit``
(Post-LN, Xavier rescaled by GradInit for Adam at the study's lr), ``noln_metainit`` (no
LN, Xavier rescaled by MetaInit), ``preln_smallinit_wang`` (gpt-neox: SmallInit, Wang on
the residual outputs) and ``preln_mimetic`` (mimetic q/k and v/o). They are not in the
default set so that the default and ``--quick`` commands still reproduce their committed
results (docs/results/deep_transformer/{full,quick}); the learned inits also cost extra
time before training. They train exactly like the six (same batches, steps, optimizer,
seeds and run keys), through the same compiled program.

Pixels are standardized by the training split's mean and std. Every init is written
as ``rules`` (``jinit.residual``) and applied to the per-layer params
(``blocks/<i>/attn/out/kernel``, ...) by :func:`jinit.residual.apply_rules`. The
model takes its variant as data (Pre-LN / Post-LN / gated flags), the blocks run under
``lax.scan``, and each variant's runs (seeds x lrs) are ``vmap``-ed: the variants take
turns through ONE compiled program per depth, so the peak memory is one variant's.
``--lrs`` sweeps the learning rate: the table gives each variant's best lr, and the
claims hold each variant (and its reference) at its own best lr. Two more variants,
``postln_gradinit_paper`` and ``noln_metainit_paper``, are the learned inits at their
papers' own settings (by name only).

Reported per variant and depth: the residual stream's std after every block at init
(256 training images, seed 0), the training loss per step, the loss after N steps
(mean of the last 10% of steps, median over seeds), the test accuracy, and divergence
(a non-finite loss at any step).

  python -m experiments.deep_transformer --quick      # depths 6/24/48, 150 steps, 1 seed
  python -m experiments.deep_transformer              # 400 steps, 2 seeds

Writes ``results.json`` (atomically after each depth, ``"complete": false`` until the
last), then ``summary.md``, ``residual_std.png`` and ``loss.png`` to the results folder.

Claims held against: ReZero (Bachlechner et al. 2020, https://arxiv.org/abs/2003.04887):
120-layer transformers train without LayerNorm; T-Fixup (Huang et al. 2020,
https://proceedings.mlr.press/v119/huang20f.html): deep encoder-decoders train without
warmup or LayerNorm; Xiong et al. 2020 (https://arxiv.org/abs/2002.04745): Post-LN
without warmup fails, increasingly with depth, while Pre-LN trains; DeepNorm (Wang et
al. 2022, https://arxiv.org/abs/2203.00555): Post-LN with DeepNorm trains where Post-LN
fails; GradInit (Zhu et al. 2021, https://arxiv.org/abs/2102.08098): Post-LN trains with
Adam without warmup; MetaInit (Dauphin & Schoenholz 2019): trains without normalization;
SmallInit (Nguyen & Salazar 2019, https://arxiv.org/abs/1910.05895) with Wang's init
(GPT-J): trains faster than the standard init early on; mimetic init (Trockman & Kolter
2023, https://arxiv.org/abs/2305.09828): faster early training.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from experiments.common import cli
from experiments.common import results
from experiments.common import study
from experiments.common import transformer_inits as extra
from jinit import residual
from jinit._src import validation

VARIANTS = ("preln_standard", "postln_standard", "noln_standard", "noln_rezero", "noln_tfixup",
            "preln_gpt2")
EXTRA_VARIANTS = extra.EXTRA_VARIANTS
PAPER_VARIANTS = extra.PAPER_VARIANTS  # by name only (not in --variants all)
ALL_VARIANTS = VARIANTS + EXTRA_VARIANTS + PAPER_VARIANTS
LEARNED, LR_DEPENDENT = extra.LEARNED, extra.LR_DEPENDENT
# (pre_ln, post_ln, gated) per variant: the architecture as data, so one program runs all.
ARCH = {
    "preln_standard": (1.0, 0.0, 0.0),
    "postln_standard": (0.0, 1.0, 0.0),
    "noln_standard": (0.0, 0.0, 0.0),
    "noln_rezero": (0.0, 0.0, 1.0),
    "noln_tfixup": (0.0, 0.0, 0.0),
    "preln_gpt2": (1.0, 0.0, 0.0),
    "postln_deepnorm": (0.0, 1.0, 0.0),
    "postln_gradinit": (0.0, 1.0, 0.0),
    "noln_metainit": (0.0, 0.0, 0.0),
    "preln_smallinit_wang": (1.0, 0.0, 0.0),
    "preln_mimetic": (1.0, 0.0, 0.0),
    "postln_gradinit_paper": (0.0, 1.0, 0.0),
    "noln_metainit_paper": (0.0, 0.0, 0.0),
}
LN_EPS = 1e-6
POS_STD = 0.02  # position embedding N(0, 0.02^2), as ViT and GPT-2
QUICK = {"steps": 150, "seeds": 1}
FULL = {"steps": 400, "seeds": 2}


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """The model: ``tokens`` patches of ``patch_dim`` pixels, ``depth`` blocks of width ``width``."""

  tokens: int
  patch_dim: int
  depth: int
  width: int = 32
  heads: int = 4
  mlp: int = 64
  num_classes: int = 10

  def __post_init__(self):
    for name in ("tokens", "patch_dim", "depth", "width", "heads", "mlp", "num_classes"):
      validation.check_int(getattr(self, name), name)
    if self.width % self.heads:
      raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")


# --------------------------------------------------------------------------- data


def patchify(x: np.ndarray, patch: int) -> np.ndarray:
  """(N, side*side) images -> (N, (side/patch)^2, patch*patch) non-overlapping patches."""
  n, dim = x.shape
  side = math.isqrt(dim)
  if side * side != dim:
    raise ValueError(f"images must be square, got {dim} pixels")
  if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1 or side % patch:
    raise ValueError(f"patch must be a positive divisor of the image side {side}, got {patch!r}")
  g = side // patch
  x = x.reshape(n, g, patch, g, patch).transpose(0, 1, 3, 2, 4)
  return np.ascontiguousarray(x.reshape(n, g * g, patch * patch))


# --------------------------------------------------------------------------- params and inits


def param_shapes(cfg: ViTConfig) -> dict[str, Any]:
  """Per-layer param shapes, paths as an nnx model's: ``blocks/<i>/attn/out/kernel``."""
  d = cfg.width
  dense = lambda i, o: {"kernel": (i, o), "bias": (o,)}
  ln = {"scale": (d,), "bias": (d,)}
  block = {"ln1": ln, "attn": {n: dense(d, d) for n in ("query", "key", "value", "out")},
           "ln2": ln, "mlp": {"fc1": dense(d, cfg.mlp), "fc2": dense(cfg.mlp, d)},
           "gate": {"alpha": ()}}
  return {"embed": dense(cfg.patch_dim, d), "pos_embed": (cfg.tokens, d),
          "blocks": [block for _ in range(cfg.depth)], "final_ln": ln,
          "head": dense(d, cfg.num_classes)}


def _pos_normal(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
  return jinit.normal(key, shape, fan_in, fan_out, std=POS_STD, dtype=dtype)


def _gpt2_normal(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
  return jinit.normal(key, shape, fan_in, fan_out, std=residual.GPT2_STD, dtype=dtype)


# Every parameter is covered by the base rules; a variant's rules come first (first match wins).
STANDARD_RULES = [(r"kernel$", jinit.xavier_uniform), (r"^pos_embed$", _pos_normal),
                  (r"(^|/)bias$", jinit.zeros), (r"(^|/)scale$", jinit.ones),
                  (r"(^|/)alpha$", jinit.ones)]
GPT2_BASE_RULES = [(r"kernel$", _gpt2_normal), (r"^pos_embed$", _gpt2_normal)]


def arch_vector(variant: str, depth: int) -> tuple[float, float, float, float]:
  """``(pre_ln, post_ln, gated, residual_alpha)``: the model of a variant, as data.

  ``residual_alpha`` scales the stream in each residual add, ``alpha x + G(x)``
  (DeepNorm's alpha; 1 for every other variant).
  """
  if variant not in ALL_VARIANTS:
    raise ValueError(f"variant must be one of {', '.join(ALL_VARIANTS)}, got {variant!r}")
  return (*ARCH[variant], extra.residual_alpha(variant, depth))


def variant_rules(variant: str, depth: int, width: int = 32) -> list:
  """The ``(pattern, init)`` rules of a variant (the standard rules complete them).

  GradInit, MetaInit and mimetic then change the drawn params (:func:`init_params`).
  """
  if variant not in ALL_VARIANTS:
    raise ValueError(f"variant must be one of {', '.join(ALL_VARIANTS)}, got {variant!r}")
  if variant in EXTRA_VARIANTS + PAPER_VARIANTS:
    return extra.extra_rules(variant, depth, width)
  if variant == "noln_rezero":
    return residual.rezero_rules(r"gate/alpha$")
  if variant == "noln_tfixup":
    return residual.tfixup_rules(depth, embeddings=(r"^embed/kernel$", r"^pos_embed$"))
  if variant == "preln_gpt2":
    return residual.gpt2_rules(depth, r"(attn/out|mlp/fc2)/kernel$") + GPT2_BASE_RULES
  return []


def init_params(variant: str, cfg: ViTConfig, key: jax.Array, *, batch: Any = None,
                lr: float = 1e-3) -> dict[str, Any]:
  """The variant's per-layer params (``blocks`` a list), drawn through its rules.

  Args:
    variant: one of :data:`ALL_VARIANTS`.
    cfg: the model.
    key: PRNG key (the run's).
    batch: ``(patches, labels)`` training examples GradInit and MetaInit learn from
      (:func:`init_batch`; only those two variants need it).
    lr: the training learning rate (GradInit's eta).

  Returns:
    The params; the same structure for every variant.
  """
  shapes = param_shapes(cfg)
  placeholders = jax.tree.map(lambda s: np.zeros(s, np.float32), shapes,
                              is_leaf=lambda s: isinstance(s, tuple))
  rules = variant_rules(variant, cfg.depth, cfg.width)
  if variant not in EXTRA_VARIANTS + PAPER_VARIANTS:
    return residual.apply_rules(placeholders, rules + STANDARD_RULES, key=key)
  return extra.init_extra(variant, placeholders, cfg.depth, cfg.width, key,
                          standard_rules=STANDARD_RULES, loss_fn=_learn_loss(variant, cfg),
                          batch=batch, lr=lr)


@functools.cache
def _learn_loss(variant: str, cfg: ViTConfig):
  """The loss GradInit/MetaInit learn from, one function per (variant, model).

  The same function object for every seed, so ``jinit.learned`` compiles its loop once
  per depth (and settings) instead of once per run.
  """
  arch = tuple(arch_vector(variant, cfg.depth))

  def loss_fn(p, b):  # p: blocks stacked (transformer_inits.stack)
    return _loss(p, jnp.asarray(arch, jnp.float32), b[0], b[1], cfg)

  return loss_fn


def init_batch(x_train, y_train, data_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The ``extra.LEARN_BATCH`` training examples GradInit and MetaInit learn from.

  Drawn without replacement by their own generator (``data_seed``, stream 1), so the
  training batches are the same as without the learned variants.
  """
  rng = np.random.default_rng([data_seed, 1])
  idx = np.sort(rng.choice(len(y_train), size=min(extra.LEARN_BATCH, len(y_train)),
                           replace=False))
  return np.asarray(x_train)[idx], np.asarray(y_train)[idx]


def stack_blocks(params: dict[str, Any]) -> dict[str, Any]:
  """``blocks`` as one pytree with a leading depth axis (for ``lax.scan``)."""
  out = dict(params)
  out["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *params["blocks"])
  return out


# --------------------------------------------------------------------------- model


def _layer_norm(h, p):
  mean = jnp.mean(h, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
  return (h - mean) * jax.lax.rsqrt(var + LN_EPS) * p["scale"][None, None, :] \
      + p["bias"][None, None, :]


def _dense(h, p):
  return h @ p["kernel"] + p["bias"][None, None, :]


def _attention(h, p, heads):
  b, t, d = h.shape
  split = lambda z: z.reshape(b, t, heads, d // heads)
  q, k, v = (split(_dense(h, p[n])) for n in ("query", "key", "value"))
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // heads)
  out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
  return _dense(out.reshape(b, t, d), p["out"])


def forward(params, arch, patches, cfg: ViTConfig):
  """Logits (B, classes) and the residual stream's std after the embedding and each block.

  ``arch`` = (pre_ln, post_ln, gated, residual_alpha) (:func:`arch_vector`): Pre-LN
  normalizes each branch's input (and the output, with the final LN); Post-LN normalizes
  after each residual add; gated multiplies both branches of block i by its scalar
  ``alpha`` param (ReZero); each residual add is ``residual_alpha * h + branch``
  (DeepNorm's constant; 1 otherwise, where it changes nothing: x * 1.0 == x exactly).
  """
  pre, post, gated, res = arch[0] > 0.5, arch[1] > 0.5, arch[2] > 0.5, arch[3]
  h = _dense(patches, params["embed"]) + params["pos_embed"][None, :, :]

  def block(h, p):
    g = jnp.where(gated, p["gate"]["alpha"], 1.0)
    a = _attention(jnp.where(pre, _layer_norm(h, p["ln1"]), h), p["attn"], cfg.heads)
    h = res * h + g * a
    h = jnp.where(post, _layer_norm(h, p["ln1"]), h)
    m_in = jnp.where(pre, _layer_norm(h, p["ln2"]), h)
    m = _dense(jax.nn.gelu(_dense(m_in, p["mlp"]["fc1"])), p["mlp"]["fc2"])
    h = res * h + g * m
    h = jnp.where(post, _layer_norm(h, p["ln2"]), h)
    return h, jnp.std(h)

  std0 = jnp.std(h)
  h, stds = jax.lax.scan(block, h, params["blocks"])
  h = jnp.where(pre, _layer_norm(h, params["final_ln"]), h)
  logits = jnp.mean(h, axis=1) @ params["head"]["kernel"] + params["head"]["bias"][None, :]
  return logits, jnp.concatenate([std0[None], stds])


def _loss(params, arch, patches, labels, cfg):
  logits = forward(params, arch, patches, cfg)[0]
  logp = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


# --------------------------------------------------------------------------- training


def train_depth(cfg: ViTConfig, variants: Sequence[str], seeds: int, x_train, y_train, x_test,
                y_test, *, steps: int, batch_size: int, lr: float = 1e-3,
                lrs: Sequence[float] | None = None, chunk: int = 50, data_seed: int = 0,
                probe: int = 256, progress: bool = True, together: bool = False,
                on_group: Any = None, previous: dict[str, Any] | None = None
                ) -> dict[str, Any]:
  """Trains every (variant, lr, seed) of one depth, one variant at a time (vmap over its runs).

  Each variant's runs (its seeds at each learning rate) are one ``vmap``-ed program;
  the variants take turns through the same compiled program (the architecture is data,
  so it compiles once per depth when every variant has as many runs), which keeps the
  peak memory at one variant's. ``together=True`` trains all runs in one program, as
  the study did before; the results agree to float rounding (tests/test_deep_transformer.py).

  Args:
    cfg: the model at this depth.
    variants: names from :data:`ALL_VARIANTS`.
    seeds: seeds per (variant, lr); seed s draws its init with ``key(1000 s + depth)``.
    x_train, y_train, x_test, y_test: patches and labels.
    steps, batch_size: Adam steps and examples per step (the same batches for every run).
    lr: the learning rate when ``lrs`` is None.
    lrs: the learning rates of a sweep (every variant at each).
    chunk: steps per compiled chunk (progress lines between chunks).
    data_seed: the batches' generator seed.
    probe: training images for the residual stream's std at init.
    progress: print a line per chunk.
    together: one program for all variants (the old way; more memory).
    on_group: ``on_group(partial)`` after each variant, with this depth's result so far
      (the study writes it, so a killed run keeps its finished variants).
    previous: a partial result of this depth (``--resume``): its variants' runs are kept
      and those variants are not trained again.

  Returns:
    ``{"depth", "runs", "seconds", "init_seconds", "chunk_seconds"}``; per run: variant,
    lr, seed, losses (per step), test accuracy, first non-finite step and the residual
    stream's std per block at init. ``seconds`` is training, ``init_seconds`` the inits
    (GradInit's and MetaInit's learning included).
  """
  import optax

  lrs = [float(lr)] if lrs is None else [float(x) for x in lrs]
  kept = list(previous["runs"]) if previous else []
  finished = {r["variant"] for r in kept}
  variants = [v for v in variants if v not in finished]
  groups = [list(variants)] if together else [[v] for v in variants]
  if not groups:  # every variant was finished before
    return {**previous, "partial": False}
  learn = (init_batch(x_train, y_train, data_seed)
           if set(LEARNED) & set(variants) else None)
  x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
  x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)

  # One jitted function each, shared by the groups: same shapes, one compile per depth.
  stream_fn = jax.jit(jax.vmap(lambda p, a: forward(p, a, x_train[:probe], cfg)[1]))

  @jax.jit
  def run_chunk(params, opt_state, arch, lr_vec, idx):  # idx: (chunk, batch), the same for all
    def one(p, s, a, r):
      def loss_fn(p, i):
        return _loss(p, a, x_train[i], y_train[i], cfg)
      p, s, losses, _ = study.scan_sgd(loss_fn, p, optax.adam(r), idx, opt_state=s)
      return p, s, losses
    return jax.vmap(one)(params, opt_state, arch, lr_vec)

  @jax.jit
  def accuracy(params, arch):
    logits = jax.vmap(lambda p, a: forward(p, a, x_test, cfg)[0])(params, arch)
    return jnp.mean(jnp.argmax(logits, axis=-1).astype(y_test.dtype) == y_test[None, :],
                    axis=-1)

  rng = np.random.default_rng(data_seed)  # the same batches for every run and depth
  idx = rng.integers(0, len(y_train), size=(steps, batch_size)).astype(np.int32)
  out, chunk_seconds, init_seconds, t0 = kept, [], 0.0, time.time()
  for group in groups:
    runs = [(v, r, s) for v in group for r in lrs for s in range(seeds)]
    t_init = time.time()
    drawn = {}  # only GradInit's init depends on the lr: the others are drawn once per seed
    for v, r, s in runs:
      k = (v, r if v in LR_DEPENDENT else None, s)
      if k not in drawn:
        drawn[k] = stack_blocks(init_params(v, cfg, jax.random.key(1000 * s + cfg.depth),
                                            batch=learn, lr=r))
    params = jax.tree.map(lambda *xs: jnp.stack(xs),
                          *[drawn[(v, r if v in LR_DEPENDENT else None, s)] for v, r, s in runs])
    del drawn
    arch = jnp.asarray([arch_vector(v, cfg.depth) for v, _, _ in runs], jnp.float32)
    lr_vec = jnp.asarray([r for _, r, _ in runs], jnp.float32)
    init_seconds += time.time() - t_init
    t_train = time.time()
    stream = stream_fn(params, arch)
    opt_state = jax.vmap(optax.adam(lrs[0]).init)(params)  # Adam's state does not hold the lr
    losses = []
    for start in range(0, steps, chunk):
      t_chunk = time.time()
      params, opt_state, loss = run_chunk(params, opt_state, arch, lr_vec,
                                          jnp.asarray(idx[start:start + chunk]))
      losses.append(np.asarray(loss))
      chunk_seconds.append(time.time() - t_chunk)
      if progress:
        print(f"  depth {cfg.depth}, {'+'.join(group) if len(group) < 3 else 'all'}: step "
              f"{min(start + chunk, steps)}/{steps} ({time.time() - t_train:.0f} s)",
              file=sys.stderr, flush=True)
    losses = np.concatenate(losses, axis=1)  # (runs, steps)
    acc = np.asarray(accuracy(params, arch))
    for i, (v, r, s) in enumerate(runs):
      bad = np.flatnonzero(~np.isfinite(losses[i]))
      out.append({"variant": v, "lr": r, "seed": s, "loss": losses[i].tolist(),
                  "test_acc": float(acc[i]) if np.isfinite(losses[i]).all() else None,
                  "diverged_at": int(bad[0]) + 1 if bad.size else None,
                  "stream_std_at_init": np.asarray(stream[i]).tolist()})
    if on_group is not None and group is not groups[-1]:
      on_group({"depth": cfg.depth, "runs": list(out), "partial": True})
  return {"depth": cfg.depth, "runs": out, "seconds": time.time() - t0 - init_seconds,
          "init_seconds": init_seconds, "chunk_seconds": chunk_seconds}


def time_left(first: dict[str, Any], depths_left: Sequence[int]) -> float:
  """Seconds the depths left should take, from the first depth's timings.

  A depth costs a fixed part (the inits, which compile per variant, and compiling the training
  program: the first chunk's excess over the others) plus a part proportional to its depth
  (training and evaluation: one scanned block per layer). On a quick run at a load of ~5
  (2026-12-03), depth 6 predicted 375 s for depths 24 and 48, which took 367 s.

  Args:
    first: the first depth's :func:`train_depth` result (``depth``, ``seconds``,
      ``init_seconds``, ``chunk_seconds``).
    depths_left: the depths still to run.

  Returns:
    The estimate in seconds (0 when nothing is left).
  """
  chunks = first["chunk_seconds"]
  compile_s = max(chunks[0] - float(np.median(chunks[1:])), 0.0) if len(chunks) > 1 else 0.0
  per_layer = max(first["seconds"] - compile_s, 0.0) / first["depth"]
  return sum(compile_s + first["init_seconds"] + per_layer * d for d in depths_left)


# --------------------------------------------------------------------------- summary


def final_loss(losses: Sequence[float]) -> float:
  """Mean training loss over the last 10% of steps (non-finite if the run diverged)."""
  arr = np.asarray(losses, np.float64)
  return float(np.mean(arr[-max(1, len(arr) // 10):]))


def summarize(depth_results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per (depth, variant, lr): medians over seeds, diverged seeds, stream std at init.

  A run without an ``lr`` (results written before the lr sweep) has row lr None.
  """
  rows = []
  for res in depth_results:
    for v, lr in dict.fromkeys((r["variant"], r.get("lr")) for r in res["runs"]):
      runs = [r for r in res["runs"] if r["variant"] == v and r.get("lr") == lr]
      finals = [final_loss(r["loss"]) for r in runs]
      finite = [f for f in finals if math.isfinite(f)]
      accs = [r["test_acc"] for r in runs if r["test_acc"] is not None]
      std = runs[0]["stream_std_at_init"]
      rows.append({
          "depth": res["depth"], "variant": v, "lr": lr, "seeds": len(runs),
          "diverged": sum(r["diverged_at"] is not None for r in runs),
          "loss_after_n": float(np.median(finite)) if len(finite) == len(runs) else None,
          "seed_losses": [f if math.isfinite(f) else None for f in finals],
          "test_acc": float(np.median(accs)) if accs else None,
          "stream_std_embed": std[0], "stream_std_mid": std[len(std) // 2],
          "stream_std_last": std[-1],
      })
  return rows


def best_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Each (depth, variant)'s row at its best lr: the lowest loss after N steps.

  Only lrs where no seed diverged compete (a diverged seed leaves the row's loss None);
  when every lr diverged, the first lr's row stands. With one lr, ``rows`` as they are.
  """
  best: dict[tuple, dict[str, Any]] = {}
  for r in rows:
    k = (r["depth"], r["variant"])
    b = best.get(k)
    if b is None or (r["loss_after_n"] is not None and
                     (b["loss_after_n"] is None or r["loss_after_n"] < b["loss_after_n"])):
      best[k] = r
  return list(best.values())


def _swept(rows: Sequence[dict[str, Any]]) -> bool:
  return len({r.get("lr") for r in rows}) > 1


def _fmt(v, spec=".3g"):
  return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_table(rows: Sequence[dict[str, Any]], steps: int) -> str:
  swept = _swept(rows)
  lr_head, lr_rule = ("lr | ", "---|") if swept else ("", "")
  lines = [f"| depth | variant | {lr_head}stream std at init: embed / mid / last block | loss "
           f"after {steps} steps | test acc | diverged seeds |",
           f"|---|---|{lr_rule}---|---|---|---|"]
  for r in rows:
    lr_cell = f"{_fmt(r.get('lr'), 'g')} | " if swept else ""
    lines.append(f"| {r['depth']} | {r['variant']} | {lr_cell}{_fmt(r['stream_std_embed'])} / "
                 f"{_fmt(r['stream_std_mid'])} / {_fmt(r['stream_std_last'])} | "
                 f"{_fmt(r['loss_after_n'], '.4f')} | {_fmt(r['test_acc'], '.3f')} | "
                 f"{r['diverged']}/{r['seeds']} |")
  return "\n".join(lines)


def format_sweep(rows: Sequence[dict[str, Any]], steps: int) -> str:
  """The lr sweep: each variant's loss at every lr, its best lr, and each seed's loss there."""
  lrs = sorted({r["lr"] for r in rows if r.get("lr") is not None})
  best = {(r["depth"], r["variant"]): r for r in best_rows(rows)}
  at = {(r["depth"], r["variant"], r.get("lr")): r for r in rows}
  lines = ["| depth | variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) +
           f" | best lr | loss after {steps} steps there | each seed's loss there |",
           "|---|---|" + "---|" * len(lrs) + "---|---|---|"]
  for (d, v), b in best.items():
    cells = []
    for lr in lrs:
      r = at.get((d, v, lr))
      cells.append("" if r is None else _fmt(r["loss_after_n"], ".4f") if not r["diverged"]
                   else f"diverged {r['diverged']}/{r['seeds']}")
    seeds = ", ".join(_fmt(x, ".3f") for x in b["seed_losses"]) if "seed_losses" in b else "-"
    lines.append(f"| {d} | {v} | " + " | ".join(cells) +
                 f" | {_fmt(b.get('lr'), 'g')} | {_fmt(b['loss_after_n'], '.4f')} | {seeds} |")
  return "\n".join(lines)


_CLAIM_NUMBERS = (("loss", "loss"), ("lr", "at its best lr"), ("preln_loss", "Pre-LN"),
                  ("preln_lr", "at its best lr"), ("reference_loss", "reference"),
                  ("reference_lr", "at its best lr"), ("postln_loss", "plain Post-LN"),
                  ("postln_lr", "at its best lr"),
                  ("gap_post_minus_pre", "Post-LN minus Pre-LN"))


def format_claims(claim_list: Sequence[dict[str, Any]]) -> str:
  """The claims as a markdown table: claim, depth, verdict, status and the losses behind it."""
  def numbers(c):
    parts = []
    for k, label in _CLAIM_NUMBERS:
      if k not in c:
        continue
      v = c[k]
      spec = "g" if k.endswith("lr") else ".3f"  # 0.0003, not 0.000
      shown = (", ".join(f"{d}: {_fmt(x, spec)}" for d, x in v.items()) if isinstance(v, dict)
               else _fmt(v, spec))
      if k == "reference_loss":
        label = c.get("reference", label)
      parts.append(f"{label} {shown}")
    return "; ".join(parts)

  lines = ["| claim | depth | verdict | status | numbers |", "|---|---|---|---|---|"]
  lines += [f"| {c['claim']} | {c['depth']} | **{c['verdict']}** | {c['status']} | "
            f"{numbers(c)} |" for c in claim_list]
  return "\n".join(lines)


def claims(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """The papers' claims, checked on the run's numbers, each with a verdict.

  A variant at a depth "trains like Pre-LN" when no seed diverged and its loss after N
  steps is at most Pre-LN's (the baseline all papers agree trains) at that depth; it
  "trains" when no seed diverged and its loss is below 0.9 ln(10) (clearly under
  chance); otherwise it "does not train". Verdicts: ``agrees``, ``partly agrees`` (for
  "X trains at depth": X trains, but worse than Pre-LN), ``disagrees``.

  The five extra variants, where run: GradInit (Post-LN) and MetaInit (no LN) as ReZero
  and T-Fixup (their status at the deepest depth). DeepNorm: agrees when it trains at
  the deepest depth and plain Post-LN does not, partly when both train there (the
  contrast the paper shows is absent), disagrees when DeepNorm does not train.
  SmallInit+Wang and mimetic ("better than the standard init early in training"; N
  steps of batch 32 are under one epoch, early by the papers' measure): their loss after
  N steps against standard Pre-LN's at each depth, agrees when lower at every depth,
  partly at some, disagrees at none (a diverged run is not lower).

  With an lr sweep (rows at several lrs), every variant is held at its own best lr
  (:func:`best_rows`), the references (Pre-LN; plain Post-LN for GradInit, no-LN
  standard for MetaInit) at theirs, and the claims carry those lrs. The paper-settings
  variants (``postln_gradinit_paper``, ``noln_metainit_paper``) are held like GradInit
  and MetaInit.
  """
  swept = _swept(rows)
  rows = best_rows(rows)
  depths = sorted({r["depth"] for r in rows})
  at = {(r["depth"], r["variant"]): r for r in rows}

  def lr_of(d, v):
    r = at.get((d, v))
    return None if r is None else r.get("lr")
  stuck = 0.9 * math.log(10)

  def loss(d, v):
    r = at.get((d, v))
    return None if r is None or r["diverged"] else r["loss_after_n"]

  def status(d, v):
    lv, lp = loss(d, v), loss(d, "preln_standard")
    if lv is None or lv >= stuck:
      return "does not train"
    return "trains like Pre-LN" if lp is not None and lv <= lp else "trains"

  deep, shallow = depths[-1], depths[0]
  out = []
  for v, text in (("noln_rezero", "ReZero: without LayerNorm, gate alpha = 0 trains at depth"),
                  ("noln_tfixup", "T-Fixup: without LayerNorm and warmup, trains at depth"),
                  ("postln_gradinit", "GradInit: Post-LN trains with Adam without warmup "
                                      "(at depth)"),
                  ("postln_gradinit_paper", "GradInit at its paper's settings (gamma 1000, 780 "
                                            "steps, tau 2.5e-3, eta 1e-3): Post-LN trains with "
                                            "Adam without warmup (at depth)"),
                  ("noln_metainit", "MetaInit: trains without normalization (at depth)"),
                  ("noln_metainit_paper", "MetaInit at its paper's settings (lr 0.1, momentum "
                                          "0.9, 500 steps): trains without normalization "
                                          "(at depth)")):
    if (deep, v) in at and (deep, "preln_standard") in at:
      st = status(deep, v)
      verdict = {"trains like Pre-LN": "agrees", "trains": "partly agrees"}.get(st, "disagrees")
      c = {"claim": text, "depth": deep, "verdict": verdict, "status": st,
           "loss": loss(deep, v), "preln_loss": loss(deep, "preln_standard")}
      if swept:
        c.update(lr=lr_of(deep, v), preln_lr=lr_of(deep, "preln_standard"))
        ref = ("postln_standard" if v.startswith("postln") else
               "noln_standard" if v.startswith("noln_metainit") else None)
        if ref and (deep, ref) in at:
          c.update(reference=ref, reference_loss=loss(deep, ref), reference_lr=lr_of(deep, ref))
      out.append(c)
  if all((d, v) in at for d in (deep, shallow) for v in ("postln_standard", "preln_standard")):
    gaps = {}
    for d in (shallow, deep):
      lpost, lpre = loss(d, "postln_standard"), loss(d, "preln_standard")
      gaps[d] = math.inf if lpost is None else (None if lpre is None else lpost - lpre)
    worse = gaps[deep] is not None and gaps[deep] > 0
    grows = worse and gaps[shallow] is not None and gaps[deep] > gaps[shallow]
    out.append({"claim": "Xiong et al.: without warmup Post-LN trains worse than Pre-LN at "
                         "depth, and the gap grows with depth", "depth": deep,
                "verdict": "agrees" if grows else ("partly agrees" if worse else "disagrees"),
                "status": status(deep, "postln_standard"),
                "gap_post_minus_pre": {str(d): g for d, g in gaps.items()}})
  if (deep, "noln_standard") in at:
    st = status(deep, "noln_standard")
    out.append({"claim": "Without LayerNorm or a depth-scaled init, a deep transformer does "
                         "not train (diverges, or loss >= 0.9 ln 10)", "depth": deep,
                "verdict": "agrees" if st == "does not train" else "disagrees", "status": st,
                "loss": loss(deep, "noln_standard")})
  if (deep, "postln_deepnorm") in at and (deep, "postln_standard") in at:
    st, plain = status(deep, "postln_deepnorm"), status(deep, "postln_standard")
    verdict = ("disagrees" if st == "does not train" else
               "agrees" if plain == "does not train" else "partly agrees")
    out.append({"claim": "DeepNorm: Post-LN with DeepNorm trains at depths where plain Post-LN "
                         "fails", "depth": deep, "verdict": verdict,
                "status": f"DeepNorm {st}; plain Post-LN {plain}",
                "loss": {str(d): loss(d, "postln_deepnorm") for d in depths},
                "postln_loss": {str(d): loss(d, "postln_standard") for d in depths}})
  for v, text in (("preln_smallinit_wang", "SmallInit + Wang (gpt-neox): lower loss than the "
                                           "standard Pre-LN init early in training"),
                  ("preln_mimetic", "Mimetic init: faster early training than the standard "
                                    "Pre-LN init")):
    both = [d for d in depths if (d, v) in at and (d, "preln_standard") in at]
    if not both:
      continue

    def lower(d, v=v):  # a diverged run is not lower; anything finite beats a diverged Pre-LN
      lv, lp = loss(d, v), loss(d, "preln_standard")
      return lv is not None and (lp is None or lv < lp)

    better = [d for d in both if lower(d)]
    verdict = ("agrees" if len(better) == len(both) else
               "partly agrees" if better else "disagrees")
    c = {"claim": text, "depth": "/".join(map(str, both)), "verdict": verdict,
         "status": f"lower at {len(better)}/{len(both)} depths"
                   f"{' (' + ', '.join(map(str, better)) + ')' if better else ''}",
         "loss": {str(d): loss(d, v) for d in both},
         "preln_loss": {str(d): loss(d, "preln_standard") for d in both}}
    if swept:
      # each seed at the variant's best lr against Pre-LN's median at its own best lr
      below = [(x, loss(d, "preln_standard")) for d in both
               for x in at[(d, v)].get("seed_losses", [])]
      n_below = sum(x is not None and lp is not None and x < lp for x, lp in below)
      c["status"] += f"; {n_below}/{len(below)} seeds below Pre-LN's median"
      c.update(lr={str(d): lr_of(d, v) for d in both},
               preln_lr={str(d): lr_of(d, "preln_standard") for d in both})
    out.append(c)
  return out


def plot(depth_results: Sequence[dict[str, Any]], out_dir: str) -> None:
  plt = results.pyplot()  # the experiments' one figure style

  n = len(depth_results)
  best = {(r["depth"], r["variant"]): r.get("lr") for r in best_rows(summarize(depth_results))}
  swept = len({r.get("lr") for res in depth_results for r in res["runs"]}) > 1
  many = len({r["variant"] for res in depth_results for r in res["runs"]}) > len(VARIANTS)
  for name, fn in (("residual_std.png", "std"), ("loss.png", "loss")):
    # more than the six variants: the legend goes right of the last panel, not over it
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n + 3.2 * many, 3.6), squeeze=False)
    for ax, res in zip(axes[0], depth_results):
      for v in dict.fromkeys(r["variant"] for r in res["runs"]):
        lr = best[(res["depth"], v)]  # a sweep: the variant's runs at its best lr
        runs = [r for r in res["runs"] if r["variant"] == v and r.get("lr") == lr]
        label = f"{v} (lr {lr:g})" if swept else v
        # Post-LN's std 1 overlaps ReZero's; the five extra variants: dash-dot / dotted.
        style = {(True, False): "--", (False, False): "-", (True, True): "-.",
                 (False, True): ":"}[v.startswith("postln"), v in EXTRA_VARIANTS + PAPER_VARIANTS]
        if fn == "std":
          ax.semilogy(runs[0]["stream_std_at_init"], style, label=label)
          ax.set_xlabel("block (0 = embedding)")
          ax.set_ylabel("residual stream std at init")
        else:
          loss = np.median(np.asarray([r["loss"] for r in runs], np.float64), axis=0)
          k = max(1, len(loss) // 50)  # moving average over ~2% of the steps
          smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
          finite = smooth[np.isfinite(smooth)]
          off = finite.size == 0 or finite.min() > 3  # drawn above the y-limit: say so
          ax.plot(np.arange(k, len(loss) + 1), smooth, style,
                  label=f"{label} (off the plot: loss > 3 or diverged)" if off else label)
          ax.set_ylim(0, 3)
          ax.set_xlabel("step")
          ax.set_ylabel("training loss (moving avg.)")
      ax.set_title(f"depth {res['depth']}")
      ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, **({"loc": "upper left", "bbox_to_anchor": (1.02, 1)}
                                      if many else {}))
    fig.tight_layout()
    results.save_figure(fig, os.path.join(out_dir, name))


# --------------------------------------------------------------------------- CLI


def _variants(text: str) -> list[str]:
  if text.strip() == "all":
    return list(VARIANTS + EXTRA_VARIANTS)
  names = [t.strip() for t in text.split(",")]
  bad = [n for n in names if n not in ALL_VARIANTS]
  if bad or not names:
    raise argparse.ArgumentTypeError(f"must be 'all' or a comma-separated subset of "
                                     f"{','.join(ALL_VARIANTS)}, got {text!r}")
  return names


SIDES = {"mnist": 28, "digits": 8}  # image side per dataset, to check --patch before loading


def add_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--depths", type=cli.positive_int_list, default=[6, 24, 48], metavar="L,L,...",
                 help="depths (blocks), comma-separated. Default: 6,24,48")
  p.add_argument("--variants", type=_variants, default=list(VARIANTS), metavar="NAME,...",
                 help=f"comma-separated subset of {', '.join(ALL_VARIANTS)}, or 'all' "
                      f"(default: the first six, {','.join(VARIANTS)}; 'all' adds the next "
                      "five, the recipes and learned inits of "
                      "experiments/common/transformer_inits.py; the last two, the learned "
                      "inits at their papers' settings, by name only)")
  p.add_argument("--steps", type=cli.positive_int, default=None,
                 help=f"training steps (default {FULL['steps']}, --quick {QUICK['steps']})")
  p.add_argument("--seeds", type=cli.positive_int, default=None,
                 help=f"seeds per variant (default {FULL['seeds']}, --quick {QUICK['seeds']})")
  p.add_argument("--lr", type=cli.positive_float, default=1e-3,
                 help="Adam, constant. Default: %(default)s")
  p.add_argument("--lrs", type=cli.positive_float_list, default=None, metavar="LR,LR,...",
                 help="an lr sweep: every variant at each of these lrs (replaces --lr); the "
                      "table gives each variant's best lr and the claims hold each variant "
                      "at its own best lr. Default: --lr alone")
  p.add_argument("--batch-size", type=cli.positive_int, default=32,
                 help="examples per step. Default: %(default)s")
  p.add_argument("--width", type=cli.positive_int, default=32,
                 help="residual stream width. Default: %(default)s")
  p.add_argument("--heads", type=cli.positive_int, default=4,
                 help="attention heads (must divide --width). Default: %(default)s")
  p.add_argument("--mlp", type=cli.positive_int, default=64,
                 help="hidden width of each block's MLP. Default: %(default)s")
  p.add_argument("--patch", type=cli.positive_int, default=7,
                 help="patch side (must divide the image side). Default: %(default)s")
  p.add_argument("--test-size", type=cli.positive_int, default=2000,
                 help="test examples for the accuracy. Default: %(default)s")
  p.add_argument("--train-size", type=cli.positive_int, default=None,
                 help="first N training examples (default: all)")
  p.add_argument("--resummarize", default=None, metavar="DIR",
                 help="only recompute the rows, claims, summary.md and figures of the finished "
                      "run in DIR from its results.json (no training)")


def make_config(args) -> dict[str, Any]:
  """Every check of the flags (before any data or folder)."""
  if args.width % args.heads:
    raise ValueError(f"--heads {args.heads} must divide --width {args.width}")
  side = SIDES.get(args.dataset)
  if side and side % args.patch:
    raise ValueError(f"--patch {args.patch} must divide the image side {side} of "
                     f"{args.dataset}")
  cli.check_batch_size(args, args.batch_size, RUNNER.prog)
  lrs = list(dict.fromkeys(args.lrs)) if args.lrs else [args.lr]
  return {"steps": RUNNER.value(args, "steps"), "seeds": RUNNER.value(args, "seeds"),
          "lrs": lrs}


def run(ctx) -> dict[str, Any]:
  """Every depth, each one compiled program; results.json after each depth, then the summary."""
  args, dataset = ctx.args, ctx.dataset
  steps, seeds, lrs = ctx.config["steps"], ctx.config["seeds"], ctx.config["lrs"]
  depths, variants = args.depths, args.variants
  mean, std = float(dataset.x_train.mean()), float(dataset.x_train.std())
  norm = lambda x: ((x - mean) / std).astype(np.float32)
  x_train = patchify(norm(dataset.x_train), args.patch)
  x_test = patchify(norm(dataset.x_test[:args.test_size]), args.patch)
  y_test = dataset.y_test[:args.test_size]
  tokens, patch_dim = x_train.shape[1:]
  meta = {
      "command": ctx.provenance["command"], "date": ctx.provenance["date"],
      "machine": f"{ctx.provenance['machine']}, jax {jax.__version__} on "
                 f"{jax.devices()[0].platform}",
      "config": {"depths": depths, "variants": variants, "steps": steps, "seeds": seeds,
                 "lr": lrs[0] if len(lrs) == 1 else None, "lrs": lrs,
                 "optimizer": "adam (constant lr, no warmup, no clipping)",
                 "batch_size": args.batch_size, "width": args.width, "heads": args.heads,
                 "mlp": args.mlp, "patch": args.patch, "tokens": tokens,
                 "dataset": dataset.name, "train_size": len(dataset.y_train),
                 "test_size": len(y_test), "quick": args.quick},
  }
  if set(variants) & set(EXTRA_VARIANTS + PAPER_VARIANTS):
    meta["config"]["extra_variants"] = extra.settings()
  sweep = f" x {len(lrs)} lrs ({', '.join(f'{x:g}' for x in lrs)})" if len(lrs) > 1 else ""
  print(f"{len(variants)} variant(s){sweep} x {seeds} seed(s) at depth(s) "
        f"{', '.join(map(str, depths))}: {steps} Adam steps each, one variant at a time "
        "through one compiled program per depth; the time left is estimated after the first "
        "depth", flush=True)
  depth_results, t0 = [], time.time()

  def write(done, complete):
    rows = summarize(done)
    record = {**meta, "seconds": time.time() - t0, "cpu_seconds": time.process_time(),
              "rows": rows, "claims": claims(rows), "complete": complete, "depth_results": done}
    ctx.write_json("results.json", record)
    return record

  before = {}  # --resume: what the interrupted run finished, per depth
  if args.resume and os.path.exists(ctx.path("results.json")):
    before = {r["depth"]: r for r in results.read_json(ctx.path("results.json"))
              .get("depth_results", [])}
    whole = [str(d) for d, r in before.items() if not r.get("partial")]
    runs_kept = sum(len(r["runs"]) for r in before.values() if r.get("partial"))
    print(f"Resuming: keeping depth(s) {', '.join(whole) or 'none'} and {runs_kept} run(s) of "
          "a partly finished depth", flush=True)
  for i, depth in enumerate(depths):
    if depth in before and not before[depth].get("partial"):
      depth_results.append(before[depth])
      continue
    cfg = ViTConfig(tokens=tokens, patch_dim=patch_dim, depth=depth, width=args.width,
                    heads=args.heads, mlp=args.mlp, num_classes=dataset.num_classes)
    depth_results.append(train_depth(cfg, variants, seeds, x_train, dataset.y_train, x_test,
                                     y_test, steps=steps, batch_size=args.batch_size,
                                     lrs=lrs, progress=not args.no_progress,
                                     previous=before.get(depth),
                                     on_group=lambda part: write(depth_results + [part],
                                                                 False)))
    if i == 0 and len(depths) > 1:
      left = time_left(depth_results[0], depths[1:])
      print(f"Depth {depth} took {time.time() - t0:.0f} s; the depth(s) left "
            f"({', '.join(map(str, depths[1:]))}) should take about "
            f"{study.how_long(left)} on this machine (more if it is busy)",
            flush=True)
    record = write(depth_results, depth == depths[-1])
  write_summary(ctx.out_dir, record)
  return record


def write_summary(out_dir: str, record: dict[str, Any]) -> str:
  """Writes ``summary.md`` and the figures from a results record; prints the table."""
  cfg = record["config"]
  table = format_table(record["rows"], cfg["steps"])
  lines = [f"# deep_transformer{' (--quick)' if cfg['quick'] else ''}", "",
           f"Command: `{record['command']}`  ", f"Date: {record['date']}  ",
           f"Machine: {record['machine']}  ",
           f"Wall time: {record['seconds']:.0f} s; CPU time (all threads): "
           f"{_fmt(record.get('cpu_seconds'), '.0f')} s  ",
           f"Model: ViT, {cfg['tokens']} patches of {cfg['patch']}x{cfg['patch']}, width "
           f"{cfg['width']}, {cfg['heads']} heads, MLP {cfg['mlp']}; Adam lr "
           f"{_lr_text(cfg)} "
           f"(constant, no warmup, no clipping), batch {cfg['batch_size']}, {cfg['steps']} "
           f"steps, {cfg['seeds']} seed(s), {cfg['dataset']} ({cfg['train_size']} train, "
           f"{cfg['test_size']} test)", "",
           *([] if record.get("complete", True) else [
               "**Incomplete run**: finished depths "
               f"{', '.join(str(r['depth']) for r in record['depth_results'])} of "
               f"{', '.join(map(str, cfg['depths']))} (the process ended before the rest; "
               "the claims are held at the deepest finished depth)"
               + "".join(f"; depth {r['depth']} only for "
                         f"{', '.join(dict.fromkeys(x['variant'] for x in r['runs']))}"
                         for r in record["depth_results"] if r.get("partial")) + ".", ""]),
           "Loss after N steps: mean training loss over the last 10% of the steps, median "
           "over seeds; stream std: seed 0, 256 training images.", "",
           *([] if not _swept(record["rows"]) else [
               "The lr sweep (each variant's best lr: its lowest loss among the lrs where no "
               "seed diverged; figures and claims at each variant's best lr):", "",
               format_sweep(record["rows"], cfg["steps"]), ""]),
           table, "",
           "Claims (criteria: `claims` in experiments/deep_transformer.py; losses after "
           f"{cfg['steps']} steps, per depth where several):", "",
           format_claims(record["claims"])]
  path = os.path.join(out_dir, "summary.md")
  results.write_text(path, "\n".join(lines) + "\n")
  plot(record["depth_results"], out_dir)
  print(table)
  for c in record["claims"]:
    print(f"{c['verdict']} ({c['status']}): {c['claim']} (depth {c['depth']})")
  return path


def _lr_text(cfg: dict[str, Any]) -> str:
  lrs = cfg.get("lrs") or [cfg["lr"]]
  return f"{lrs[0]:g}" if len(lrs) == 1 else "swept over " + ", ".join(f"{x:g}" for x in lrs)


def resummarize(out_dir: str) -> dict[str, Any]:
  """Recomputes rows and claims of a run's ``results.json``; rewrites the summary.

  The measured numbers (``depth_results``) are kept as they are. A run that did not
  complete (killed or interrupted after some depths) is summarized over the depths it
  finished, and its summary says which depths are missing.
  """
  path = os.path.join(out_dir, "results.json")
  if not os.path.exists(path):
    raise SystemExit(f"error: --resummarize: no results.json in {out_dir}")
  record = results.read_json(path)
  if not record.get("depth_results"):
    raise SystemExit(f"error: --resummarize: the run in {out_dir} finished no depth")
  record["rows"] = summarize(record["depth_results"])
  record["claims"] = claims(record["rows"])
  record["resummarized"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")
  results.write_json(path, record)
  write_summary(out_dir, record)
  return record


def _shortcut(args) -> dict[str, Any] | None:
  return resummarize(args.resummarize) if args.resummarize else None


RUNNER = study.Runner("deep_transformer", (__doc__ or "").split("\n")[0], add_flags, make_config,
                      run, presets={"full": FULL, "quick": QUICK}, shortcut=_shortcut,
                      resumable=True)
build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
