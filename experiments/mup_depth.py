"""Depth transfer: best Adam lr of a residual MLP vs depth, SP vs μP vs depth-μP vs CompleteP.

Depth-μP (G. Yang et al., "Tensor Programs VI", 2023, https://arxiv.org/abs/2310.02244;
B. Bordelon et al., 2023, https://arxiv.org/abs/2309.16620) and CompleteP (N. Dey et al.,
"Don't be lazy: CompleteP enables compute-efficient deep transformers", 2025,
https://arxiv.org/abs/2505.01618, Fig. 1) claim that with residual branches scaled by
``(L/L_base)^-alpha`` and their learning rates adjusted per depth, the best learning rate
stays put as a network deepens (tune on a shallow proxy, transfer), while under SP and μP
(width-only) it moves; and that at the transferred lr deeper is better. This study trains a
pre-LN residual MLP ``784 -> width``, ``L`` blocks ``x <- x + a * fc2(relu(fc1(LN(x))))``,
``LN -> 10`` on MNIST with Adam, at every depth, learning rate (powers of 2) and seed, for:

* ``sp``: LeCun-normal init, biases zero, ``a = 1``, one Adam lr for all;
* ``mup``: μP for width only (base width ``--base-width``, :class:`jinit.mup.LinenReadout`,
  :func:`jinit.mup.scale_updates`), ``a = 1``;
* ``depth_mup``: μP plus ``a = (L/L_base)^-1/2``, block Adam lr and epsilon
  ``x (L/L_base)^-1/2`` (``jinit.mup``'s ``"depth_mup"``);
* ``completep``: μP plus ``a = (L/L_base)^-1``, block Adam lr unchanged, block epsilon
  ``x (L/L_base)^-1`` (``"completep"``).

The base depth ``L_base`` is the smallest depth; the optimizer is ``optax.chain(
jinit.mup.scale_eps(meta), optax.adam(lr), jinit.mup.scale_updates(meta, "adam"))``. At the
base depth depth-μP and CompleteP are μP exactly. All learning rates x seeds of one
(depth, parametrization) train in one compiled program (``vmap`` in ``lax.map`` chunks,
``lax.scan`` over steps, the blocks stacked by ``nn.scan``). A run's loss is the mean training
cross-entropy on a fixed subset of the training set after the last step; a diverged run
counts as +inf.

Outputs (in ``--out``, default ``results/mup_depth-<UTC time>``):

* ``transfer.json``: ``{"depths", "lrs", "parametrizations": {p: {"best_lr",
  "final_loss"}}}`` (mup_transfer's schema with ``depths`` for ``widths``);
* ``runs.json``: every run's final loss and validation accuracy, and the config;
* ``loss_vs_lr.png``: loss vs learning rate, one line per depth, one panel per parametrization;
* ``summary.md`` / ``summary.json``: the best-lr table, the three claims computed from
  ``transfer.json`` with their verdicts, the command, date and machine.

  python -m experiments.mup_depth --quick     # depths 2, 8, 32: a few minutes
  python -m experiments.mup_depth             # depths 2 -> 32, 8 lrs, 3 seeds, 500 steps
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import optax

from experiments import mup_transfer
from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import results
from experiments.common import study
from jinit import mup
from jinit._src import validation

PARAMETRIZATIONS = ("sp", "mup", "depth_mup", "completep")
DEPTH_PARAMETRIZATIONS = ("depth_mup", "completep")
WIDTH_ONLY = ("sp", "mup")
NAMES = {"sp": "SP", "mup": "μP (width only)", "depth_mup": "depth-μP", "completep": "CompleteP"}
BRANCHES = "blocks"  # the path prefix of every parameter inside a residual branch
SEED = 20231004  # the root of every run's keys (mup_transfer.run_keys)


@dataclasses.dataclass(frozen=True)
class Config:
  depths: tuple[int, ...] = (2, 4, 8, 16, 32)
  log2_lrs: tuple[int, ...] = tuple(range(-11, -3))  # 2^-11 .. 2^-4
  width: int = 64
  base_width: int = 16
  seeds: int = 3
  steps: int = 500  # ~0.6 epoch of MNIST at batch 64
  batch_size: int = 64
  eval_size: int = 4096  # training examples the final loss is measured on
  val_size: int = 2000  # validation examples for the accuracy (not used to pick the lr)
  chunk: int = 8  # runs vmapped together inside lax.map (24 runs per program: 3 chunks)

  def __post_init__(self):
    if len(self.depths) < 2 or any(b <= a for a, b in zip(self.depths, self.depths[1:])):
      raise ValueError(f"depths must be at least 2 strictly increasing ints, got {self.depths}")
    for i, d in enumerate(self.depths):
      validation.check_int(d, f"depths[{i}]")
    if any(b != a + 1 for a, b in zip(self.log2_lrs, self.log2_lrs[1:])) or len(self.log2_lrs) < 3:
      raise ValueError("log2_lrs must be at least 3 consecutive ints (a grid of powers of 2), "
                       f"got {self.log2_lrs}")
    for name in ("width", "base_width", "seeds", "steps", "batch_size", "eval_size", "val_size",
                 "chunk"):
      validation.check_int(getattr(self, name), name)

  @property
  def lrs(self) -> list[float]:
    return [2.0 ** k for k in self.log2_lrs]

  @property
  def base_depth(self) -> int:
    return self.depths[0]


QUICK = Config(depths=(2, 8, 32), log2_lrs=tuple(range(-11, -4)), seeds=2, steps=150,
               eval_size=2048)


class Block(nn.Module):
  """One pre-LN residual block: ``x + mult * fc2(relu(fc1(LN(x))))`` (an ``nn.scan`` body)."""
  width: int
  mult: float

  @nn.compact
  def __call__(self, x, _):
    h = nn.relu(nn.Dense(self.width, name="fc1")(nn.LayerNorm(name="ln")(x)))
    return x + jnp.asarray(self.mult, x.dtype) * nn.Dense(self.width, name="fc2")(h), None


class ResMLP(nn.Module):
  """``in -> depth x Block -> LN -> readout``; ``base_width=None``: SP's readout."""
  width: int
  depth: int
  branch_mult: float = 1.0
  base_width: int | None = None
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.width, name="in")(x)
    blocks = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                     length=self.depth)
    x, _ = blocks(self.width, self.branch_mult, name=BRANCHES)(x, None)
    x = nn.LayerNorm(name="ln_f")(x)
    readout = "sp" if self.base_width is None else "mup"
    return mup.LinenReadout(self.num_classes, base_in_features=self.base_width,
                            parametrization=readout, name="out")(x)


def make_model(parametrization: str, width: int, depth: int, config: Config) -> ResMLP:
  mult = mup.branch_multiplier(parametrization, depth, config.base_depth)
  base_width = None if parametrization == "sp" else config.base_width
  return ResMLP(width, depth, mult, base_width)


def params_meta(parametrization: str, depth: int, config: Config, input_dim: int):
  """``jinit.mup.infinite_dims`` against the base width at this depth, with the base depth."""
  x = jnp.zeros((1, input_dim), jnp.float32)
  return mup.infinite_dims(make_model(parametrization, config.width, depth, config),
                           make_model(parametrization, config.base_width, depth, config), x,
                           parametrization=parametrization, depth=depth,
                           base_depth=config.base_depth, branches=BRANCHES)


def make_optimizer(meta, lr):
  return optax.chain(mup.scale_eps(meta), optax.adam(lr), mup.scale_updates(meta, "adam"))


def make_sweep(model: ResMLP, meta, config: Config, x_train, y_train, x_eval, y_eval, x_val,
               y_val):
  """``sweep(lrs_R, seeds_R) -> (eval_loss_R, val_acc_R)``: R runs in one compiled program
  (:func:`experiments.mup_transfer.make_sweep` with this study's seed and optimizer)."""
  return mup_transfer.make_sweep(model, meta, config, x_train, y_train, x_eval, y_eval, x_val,
                                 y_val, root_seed=SEED,
                                 make_tx=make_optimizer)


def _steps(a: float | None, b: float | None) -> int | None:
  return None if a is None or b is None else round(math.log2(b) - math.log2(a))


def _verdict(flags: Sequence[bool]) -> str:
  return "agrees" if all(flags) else "partly" if any(flags) else "not"


def claims(transfer: dict[str, Any]) -> dict[str, Any]:
  """The three claims, evaluated on ``transfer.json``'s content.

  1. Under depth-μP and CompleteP the best lr stays within one grid step (a factor 2) of the
     base depth's at every depth.
  2. Under SP and μP (width only) it moves by two steps or more from the shallowest to the
     deepest model.
  3. Under depth-μP and CompleteP, at the lr transferred from the base depth, deeper is
     better: the loss does not increase from one depth to the next ("partly": only the
     deepest beats the base depth).

  Each claim's verdict is "agrees" (every parametrization it names), "partly" (some) or
  "not" (none).
  """
  depths, lrs = transfer["depths"], transfer["lrs"]
  ps = transfer["parametrizations"]
  per: dict[str, Any] = {}
  for p, d in ps.items():
    best = d["best_lr"]
    shifts = [_steps(best[0], b) for b in best]
    transferred = best[0]
    at_transferred = (None if transferred is None else
                      [row[lrs.index(transferred)] for row in d["final_loss"]])
    finite = at_transferred is not None and all(math.isfinite(v) for v in at_transferred)
    per[p] = {
        "shift_steps": shifts[-1],
        "max_abs_shift_steps": None if None in shifts else max(abs(s) for s in shifts),
        "transferred_lr": transferred,
        "loss_at_transferred_lr": at_transferred,
        "deeper_is_better_every_depth": finite and all(
            b <= a for a, b in zip(at_transferred, at_transferred[1:])),
        "deepest_beats_base_at_transferred_lr": finite and at_transferred[-1] < at_transferred[0],
        "deepest_loss_at_own_best_lr": (None if best[-1] is None else
                                        d["final_loss"][-1][lrs.index(best[-1])]),
    }
  stable = {p: per[p]["max_abs_shift_steps"] is not None and per[p]["max_abs_shift_steps"] <= 1
            for p in DEPTH_PARAMETRIZATIONS if p in per}
  moves = {p: per[p]["shift_steps"] is not None and abs(per[p]["shift_steps"]) >= 2
           for p in WIDTH_ONLY if p in per}
  deeper = {p: per[p]["deeper_is_better_every_depth"] for p in DEPTH_PARAMETRIZATIONS if p in per}
  deeper_partly = {p: per[p]["deepest_beats_base_at_transferred_lr"]
                   for p in DEPTH_PARAMETRIZATIONS if p in per}
  deeper_verdict = _verdict(list(deeper.values()))
  if deeper_verdict == "not" and any(deeper_partly.values()):
    deeper_verdict = "partly"
  return {
      "depths": [depths[0], depths[-1]], "per_parametrization": per,
      "best_lr_stable_under_depth_parametrizations": stable,
      "best_lr_stable_verdict": _verdict(list(stable.values())),
      "best_lr_moves_under_sp_and_mup": moves,
      "best_lr_moves_verdict": _verdict(list(moves.values())),
      "deeper_is_better_at_transferred_lr": deeper,
      "deepest_beats_base_at_transferred_lr": deeper_partly,
      "deeper_is_better_verdict": deeper_verdict,
  }


_fmt_lr, _fmt = mup_transfer._fmt_lr, mup_transfer._fmt  # pylint: disable=protected-access


def summary_markdown(transfer, claim, info, config: Config) -> str:
  depths, lrs = transfer["depths"], transfer["lrs"]
  ps = [p for p in PARAMETRIZATIONS if p in transfer["parametrizations"]]
  per = claim["per_parametrization"]
  lines = [f"# Depth transfer: best Adam lr vs depth ({info['dataset']})", "",
           f"Command: `{info['command']}`  ", f"Date: {info['date']}  ",
           f"Machine: {info['machine']}  ",
           f"Wall time: {info['seconds']:.0f} s (CPU time {info['cpu_seconds']:.0f} s; "
           f"1-min load average {info['load_average_1min_at_start_and_end'][0]:.1f} at "
           f"start, {info['load_average_1min_at_start_and_end'][1]:.1f} at the end)", "",
           f"Pre-LN residual MLP, width {config.width} (μP base width {config.base_width}), "
           f"base depth {config.base_depth}, Adam, {config.steps} steps of batch "
           f"{config.batch_size}, {config.seeds} seeds, lrs {_fmt_lr(lrs[0])}..{_fmt_lr(lrs[-1])}.",
           "", "## Best learning rate per depth (median training loss over seeds)", "",
           "| depth | " + " | ".join(f"{NAMES[p]} best lr | loss" for p in ps) + " |",
           "|---|" + "---|---|" * len(ps)]
  for i, depth in enumerate(depths):
    row = [str(depth)]
    for p in ps:
      best = transfer["parametrizations"][p]["best_lr"][i]
      loss = (transfer["parametrizations"][p]["final_loss"][i][lrs.index(best)]
              if best is not None else None)
      row += [_fmt_lr(best), _fmt(loss)]
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", f"## Loss at the lr transferred from depth {depths[0]}", "",
            "| depth | " + " | ".join(
                f"{NAMES[p]} at {_fmt_lr(per[p]['transferred_lr'])}" for p in ps) + " |",
            "|---|" + "---|" * len(ps)]
  for i, depth in enumerate(depths):
    lines.append("| " + " | ".join([str(depth)] + [
        _fmt(None if per[p]["loss_at_transferred_lr"] is None
             else per[p]["loss_at_transferred_lr"][i]) for p in ps]) + " |")
  lines += ["", "## Claims (Tensor Programs VI; CompleteP Fig. 1)", ""]
  stable = ", ".join(f"{NAMES[p]} max {per[p]['max_abs_shift_steps']} step(s)"
                     for p in DEPTH_PARAMETRIZATIONS if p in per)
  moves = ", ".join(f"{NAMES[p]} {per[p]['shift_steps']:+d} step(s)"
                    if per[p]["shift_steps"] is not None else f"{NAMES[p]} -"
                    for p in WIDTH_ONLY if p in per)
  deeper = "; ".join(
      f"{NAMES[p]}: " + " -> ".join(_fmt(v) for v in (per[p]["loss_at_transferred_lr"] or []))
      for p in DEPTH_PARAMETRIZATIONS if p in per)
  lines += [
      f"- Best lr stays within one grid step of depth {depths[0]}'s at every depth under "
      f"depth-μP and CompleteP: {stable} -> **{claim['best_lr_stable_verdict']}**.",
      f"- Best lr moves by two steps or more from depth {depths[0]} to {depths[-1]} under SP "
      f"and μP (width only): {moves} -> **{claim['best_lr_moves_verdict']}**.",
      f"- Deeper is better at the transferred lr (loss non-increasing with depth): {deeper} "
      f"-> **{claim['deeper_is_better_verdict']}**.",
      "", "Verdicts: agrees = every parametrization the claim names; partly = some (for "
      "the third: or only the deepest beats the base depth); not = none.", ""]
  deepest = ", ".join(f"{NAMES[p]} {_fmt(per[p]['deepest_loss_at_own_best_lr'])}" for p in ps)
  lines += [f"Deepest model ({depths[-1]} blocks) at its own best lr: {deepest}."]
  return "\n".join(lines)


def plot_loss_vs_lr(transfer, path):
  mup_transfer.plot_loss_vs_lr(
      transfer, path, axis="depths", value_label="{} blocks", names=NAMES,
      suptitle="MNIST pre-LN residual MLP: training loss vs learning rate (star: best lr per "
               "depth)")


def run(dataset: data_lib.Dataset, config: Config, out_dir: str, command: str,
        log=print, prov: dict | None = None) -> dict[str, Any]:
  """The whole study; writes every output atomically in ``out_dir`` and returns transfer.json."""
  clock = time.time(), time.process_time(), os.getloadavg()[0]
  data = mup_transfer.sweep_data(dataset, config)
  input_dim = dataset.x_train.shape[1]

  def build(p, depth):
    return make_sweep(make_model(p, config.width, depth, config),
                      params_meta(p, depth, config, input_dim), config, *data.arrays)

  per_run = mup_transfer.sweep_axis("depth", config.depths, PARAMETRIZATIONS, build, config,
                                    data, out_dir, log)
  transfer = mup_transfer.transfer_table("depths", config.depths, config.lrs, per_run)
  claim = claims(transfer)
  results.write_json(os.path.join(out_dir, "transfer.json"), transfer)
  plot_loss_vs_lr(transfer, os.path.join(out_dir, "loss_vs_lr.png"))
  info = mup_transfer.run_info(command, prov, dataset, clock)
  results.write_json(os.path.join(out_dir, "summary.json"), {
      "info": info, "config": dataclasses.asdict(config), "claims": claim})
  text = summary_markdown(transfer, claim, info, config)
  results.write_text(os.path.join(out_dir, "summary.md"), text + "\n")
  log(text)
  return transfer


def add_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--depths", type=cli.positive_int_list, default=None, metavar="L,L,...",
                 help="comma-separated increasing numbers of residual blocks; the first is the "
                      f"base depth (default {','.join(map(str, Config.depths))}; --quick "
                      f"{','.join(map(str, QUICK.depths))})")
  mup_transfer.add_sweep_flags(p, Config(), "depth", "-12:-4")
  p.add_argument("--width", type=cli.positive_int, default=None,
                 help=f"width of the residual stream and blocks (default {Config.width})")
  p.add_argument("--base-width", type=cli.positive_int, default=None,
                 help=f"μP base width (default {Config.base_width})")
  p.add_argument("--train-size", type=cli.positive_int, default=None,
                 help="subsample the training split to this many examples")


def config_from_args(args) -> Config:
  """Every check of the flags (before any data or folder); the study's :class:`Config`."""
  config = mup_transfer.sweep_config(
      args, QUICK if args.quick else Config(),
      ("depths", "width", "base_width", "seeds", "steps", "batch_size", "eval_size"))
  if config.base_width >= config.width:
    raise ValueError(f"--base-width {config.base_width} must be smaller than --width "
                     f"{config.width} (else μP is SP)")
  cli.check_batch_size(args, config.batch_size, RUNNER.prog)
  return config


def _run(ctx) -> dict[str, Any]:
  return run(ctx.dataset, ctx.config, ctx.out_dir, ctx.provenance["command"], log=ctx.log,
             prov=ctx.provenance)


RUNNER = study.Runner("mup_depth", __doc__.split("\n")[0], add_flags, config_from_args, _run,
                      presets={"quick": {"depths": QUICK.depths, "steps": QUICK.steps,
                                         "lrs": f"2^{QUICK.log2_lrs[0]}..2^{QUICK.log2_lrs[-1]}"}})


build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
