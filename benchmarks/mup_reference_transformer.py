"""microsoft/mup on the μP transformer study's setup: best Adam lr of the pre-LN ViT vs width.

The PyTorch reference of :mod:`experiments.mup_transfer_transformer` (Tensor Programs V,
G. Yang et al., 2022, https://arxiv.org/abs/2203.03466, Fig. 1 and 3): the same pre-LN ViT on
MNIST (16 patches of 7x7, ``depth`` blocks ``x + attn(LN(x))``, ``x + fc2(gelu(fc1(LN(x))))``
with MLP ``4 * width`` and tanh-GELU, ``heads`` heads of dim ``width / heads``, position
embedding N(0, 0.02^2), final LN, mean over tokens, linear readout; LayerNorm epsilon 1e-6 as
flax's), the same widths, lr grid, seeds and steps, trained on the same examples in the same
batch order and scored on the same evaluation subset:

* ``sp``: attention logits ``q.k / sqrt(d_head)``, ``torch.optim.Adam`` with one lr;
* ``mup``: microsoft/mup: ``mup.MuReadout`` (multiplier ``1/width_mult``),
  ``mup.set_base_shapes`` against the model at the base (smallest) width, ``mup.MuAdam``
  (hidden weights' lr ``/ width_mult``), attention logits ``q.k * sqrt(d_head_base) / d_head``
  (μP's ``1/d``, equal to SP's at the base width, as :func:`jinit.mup.attention_scale`), and,
  as the jinit study by default, the query projections and the readout zero-initialized.

The weights are an independent ``torch`` draw with the jinit study's law
(:mod:`benchmarks.mup_reference_common`); ``set_base_shapes`` runs with ``rescale_params=False``
because the law already holds μP's readout init. A run's loss is the mean training
cross-entropy on the study's evaluation subset after the last step, the median over seeds is
taken per (width, lr), and the claims are :func:`experiments.mup_transfer.claims` of the
``transfer.json`` written here (the study's schema).

  python benchmarks/mup_reference_transformer.py --data-dir DIR --out OUT [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mup  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import mup_reference_common as common  # noqa: E402
from experiments import mup_transfer  # noqa: E402
from experiments import mup_transfer_transformer as study  # noqa: E402

POS_STD = study.POS_STD
LN_EPS = 1e-6  # flax.linen.LayerNorm's default epsilon (torch's is 1e-5)
JINIT_RESULT = "docs/results/mup_transfer_transformer/full/transfer.json"


def attention_scale(parametrization: str, head_dim: int, base_head_dim: int) -> float:
  """SP ``1/sqrt(d_head)``; μP ``sqrt(d_head_base)/d_head`` (Tensor Programs V, §4)."""
  if parametrization == "sp":
    return 1.0 / math.sqrt(head_dim)
  return math.sqrt(base_head_dim) / head_dim


class Attention(nn.Module):
  """Multi-head self-attention with logits ``q.k * scale``."""

  def __init__(self, width: int, heads: int, scale: float):
    super().__init__()
    self.heads, self.scale = heads, scale
    self.query, self.key, self.value, self.out = (nn.Linear(width, width) for _ in range(4))

  def forward(self, x):
    b, t, d = x.shape
    q, k, v = (m(x).view(b, t, self.heads, d // self.heads)
               for m in (self.query, self.key, self.value))
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) * self.scale
    o = torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v).reshape(b, t, d)
    return self.out(o)


class Block(nn.Module):
  """Pre-LN: ``x + attn(LN(x))``, then ``x + fc2(gelu(fc1(LN(x))))``."""

  def __init__(self, width: int, heads: int, scale: float):
    super().__init__()
    self.ln1 = nn.LayerNorm(width, eps=LN_EPS)
    self.attn = Attention(width, heads, scale)
    self.ln2 = nn.LayerNorm(width, eps=LN_EPS)
    self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

  def forward(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class ViT(nn.Module):
  """Patches ``(B, tokens, patch_dim)`` -> logits; μP's ``MuReadout`` when ``mu``."""

  def __init__(self, width: int, base_width: int, *, mu: bool, depth: int, heads: int,
               tokens: int, patch_dim: int, num_classes: int = 10):
    super().__init__()
    scale = attention_scale("mup" if mu else "sp", width // heads, base_width // heads)
    self.embed = nn.Linear(patch_dim, width)
    self.pos_embed = nn.Parameter(torch.zeros(tokens, width))
    self.depth = depth
    for i in range(depth):
      self.add_module(f"block{i}", Block(width, heads, scale))
    self.final_ln = nn.LayerNorm(width, eps=LN_EPS)
    self.head = (mup.MuReadout(width, num_classes) if mu else nn.Linear(width, num_classes))

  def forward(self, x):
    h = self.embed(x) + self.pos_embed
    for i in range(self.depth):
      h = getattr(self, f"block{i}")(h)
    return self.head(self.final_ln(h).mean(dim=-2))


def init_(model: ViT, *, base_width: int, mu: bool, zero_query: bool, zero_readout: bool,
          gen: torch.Generator) -> None:
  """The jinit study's init law: LeCun truncated normal kernels, biases zero, LN 1/0,
  position embedding N(0, 0.02^2), readout N(0, 1/fan_in) (SP) or N(0, 1/base_width) (μP),
  query and readout zero where configured."""
  common.init_linears_(model, model.head, base_width=base_width, mu=mu, gen=gen,
                       zero_readout=zero_readout,
                       zero=lambda name: zero_query and name.endswith("attn.query"))
  common.normal_(model.pos_embed, POS_STD, gen)


def build(config: study.Config, parametrization: str, width: int, seed: int, tokens: int,
          patch_dim: int) -> tuple[ViT, Any]:
  """``(model, make_optimizer(lr))`` of ``parametrization`` at ``width``, drawn from ``seed``."""
  mu = parametrization == "mup"
  base_width = config.widths[0]

  def make(w: int) -> ViT:
    return ViT(w, base_width, mu=mu, depth=config.depth, heads=config.heads, tokens=tokens,
               patch_dim=patch_dim)

  model = make(width)
  if mu:
    mup.set_base_shapes(model, make(base_width), rescale_params=False)
  gen = torch.Generator().manual_seed(seed)
  zero = mu and config.mup_zero_init
  init_(model, base_width=base_width, mu=mu, zero_query=zero,
        zero_readout=config.zero_readout or zero, gen=gen)

  def optimizer(lr):
    if mu:
      return mup.MuAdam(model.parameters(), lr=lr)
    return torch.optim.Adam(model.parameters(), lr=lr)

  return model, optimizer


def lr_multipliers(optimizer: torch.optim.Optimizer, model: nn.Module, lr: float
                   ) -> dict[str, float]:
  """``{torch parameter name: its group's lr / lr}``: the optimizer's per-parameter factors."""
  names = {id(p): n for n, p in model.named_parameters()}
  return {names[id(p)]: g["lr"] / lr for g in optimizer.param_groups for p in g["params"]}


def summary_markdown(transfer: dict, claim: dict, inf: dict, config: study.Config,
                     jinit: dict | None, jinit_path: str = JINIT_RESULT) -> str:
  widths, lrs = transfer["widths"], transfer["lrs"]
  lines = common.header("microsoft/mup reference: μP lr transfer on the pre-LN ViT "
                        "(PyTorch)", inf)
  lines += [f"Same setup as `experiments.mup_transfer_transformer`: {config.depth} blocks, "
            f"{config.heads} heads, widths {widths[0]}-{widths[-1]} (base {widths[0]}), "
            f"{config.steps} Adam steps of batch {config.batch_size}, {config.seeds} seeds, lrs "
            f"{common.fmt_lr(lrs[0])}..{common.fmt_lr(lrs[-1])}, zero query and readout under "
            f"μP: {config.mup_zero_init}; the same batches and evaluation subset "
            f"({config.eval_size} training examples). Init: an independent torch draw with "
            "jinit's law; μP by `mup` 1.0.0 (`MuReadout`, `set_base_shapes`, `MuAdam`).", "",
            "## Best learning rate per width (median training loss over seeds)", "",
            "| width | mup SP best lr | loss | mup μP best lr | loss |"
            + (" jinit SP best lr | loss | jinit μP best lr | loss |" if jinit else ""),
            "|---|---|---|---|---|" + ("---|---|---|---|" if jinit else "")]
  rows = [("mup", transfer)] + ([("jinit", jinit)] if jinit else [])
  for i, w in enumerate(widths):
    cells = [str(w)]
    for _, t in rows:
      for p in ("sp", "mup"):
        best = t["parametrizations"][p]["best_lr"][i]
        loss = (None if best is None else
                t["parametrizations"][p]["final_loss"][i][t["lrs"].index(best)])
        cells += [common.fmt_lr(best), common.fmt(loss)]
    lines.append("| " + " | ".join(cells) + " |")
  yes = {True: "agrees", False: "disagrees"}
  at = claim["mup_loss_per_width_at_transferred_lr"] or []
  lines += ["", "## Claims (Tensor Programs V, Fig. 1 and 3), from this transfer.json", "",
            f"- μP best lr moves by at most one grid step: moved {claim['mup_shift_steps']} "
            f"step(s) -> **{yes[claim['mup_best_lr_moves_at_most_1_step']]}**.",
            f"- SP best lr moves by at least two grid steps: moved {claim['sp_shift_steps']} "
            f"step(s) -> **{yes[claim['sp_best_lr_moves_at_least_2_steps']]}**.",
            f"- Widest μP at the lr transferred from width {widths[0]} "
            f"({common.fmt_lr(claim['transferred_lr'])}) at least as good as widest SP at its "
            f"own best lr ({common.fmt_lr(claim['sp_widest_best_lr'])}): "
            f"{common.fmt(claim['mup_widest_loss_at_transferred_lr'])} vs "
            f"{common.fmt(claim['sp_widest_loss_at_its_best_lr'])} -> "
            f"**{yes[claim['mup_transferred_at_least_as_good_as_sp_tuned']]}**.",
            f"- Wider is better under μP at the transferred lr: "
            f"{', '.join(common.fmt(v) for v in at)} -> "
            f"**{yes[claim['mup_wider_is_better_at_transferred_lr']]}**."]
  if jinit:
    jc = mup_transfer.claims(jinit)
    lines += ["", f"jinit's run (`{jinit_path}`): widest μP at the transferred lr "
              f"({common.fmt_lr(jc['transferred_lr'])}) "
              f"{common.fmt(jc['mup_widest_loss_at_transferred_lr'])} vs widest SP at its best "
              f"lr ({common.fmt_lr(jc['sp_widest_best_lr'])}) "
              f"{common.fmt(jc['sp_widest_loss_at_its_best_lr'])}."]
  return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
  common.add_sweep_flags(p, "width")
  p.add_argument("--mup-zero-init", action=argparse.BooleanOptionalAction, default=None)
  p.add_argument("--jinit-result", default=JINIT_RESULT,
                 help="the jinit run's transfer.json to compare with (same grid)")
  args = p.parse_args(argv)
  config = common.sweep_config(p, args, study.Config(), study.QUICK, "width", ("mup_zero_init",))
  torch.set_num_threads(args.threads)
  start, cpu_start, load_start = time.time(), time.process_time(), os.getloadavg()[0]
  command = "python benchmarks/mup_reference_transformer.py " + " ".join(
      sys.argv[1:] if argv is None else argv)

  from experiments.common import data as data_lib
  from experiments.common import results

  dataset = data_lib.load_dataset("mnist", data_dir=args.data_dir)
  inputs = study.family(config).inputs
  x_train, y_train, x_eval, y_eval, x_val, y_val = common.data_tensors(dataset, config, inputs)
  tokens, patch_dim = x_train.shape[1:]
  batches = [common.batch_schedule(mup_transfer.SEED, s, config.steps, config.batch_size,
                                   len(y_train)) for s in range(config.seeds)]
  os.makedirs(args.out, exist_ok=True)

  def run(parametrization, width, lr, seed):
    model, optimizer = build(config, parametrization, width, seed, tokens, patch_dim)
    return common.train_run(model, optimizer(lr), batches[seed], x_train, y_train, x_eval,
                            y_eval, x_val, y_val)

  def progress(per_run, done):
    results.write_json(os.path.join(args.out, "runs.json"), {
        "config": dataclasses.asdict(config), "done_widths": list(config.widths[:done]),
        "runs": {p: {k: v[:done] for k, v in d.items()} for p, d in per_run.items()}})

  per_run = common.sweep(config.widths, mup_transfer.PARAMETRIZATIONS, config.lrs,
                         config.seeds, run, log=lambda s: print(s, flush=True),
                         progress=progress)
  transfer = mup_transfer.transfer_table("widths", config.widths, config.lrs, per_run)
  claim = mup_transfer.claims(transfer)
  results.write_json(os.path.join(args.out, "transfer.json"), transfer)
  mup_transfer.plot_loss_vs_lr(transfer, os.path.join(args.out, "loss_vs_lr.png"),
                               "microsoft/mup pre-LN ViT")
  jinit = (results.read_json(args.jinit_result) if os.path.exists(args.jinit_result)
           else None)
  if jinit is not None and (jinit["widths"] != transfer["widths"]
                            or jinit["lrs"] != transfer["lrs"]):
    jinit = None  # another grid: not comparable row by row
  inf = common.info(command, start, cpu_start, load_start)
  results.write_json(os.path.join(args.out, "summary.json"), {
      "info": inf, "config": dataclasses.asdict(config), "claims": claim})
  text = summary_markdown(transfer, claim, inf, config, jinit, args.jinit_result)
  results.write_text(os.path.join(args.out, "summary.md"), text + "\n")
  print(text)
  return transfer


if __name__ == "__main__":
  main()
