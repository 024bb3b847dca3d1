"""microsoft/mup on ``experiments.mup_transfer``'s MLP sweep: the same setup, in PyTorch.

The reference for the μP MLP study's verdicts (Tensor Programs V, G. Yang et al. 2022,
https://arxiv.org/abs/2203.03466, Fig. 3; mup's ``examples/MLP/main.py``): the MLP
``784 -> width -> width -> 10`` (ReLU) of that example, built and trained with
microsoft/mup 1.0.0 and torch, on the same MNIST examples in the same batch order as the
jinit study, with the same protocol:

* the model is mup's example's: ``fc_1`` init ``kaiming_normal_(a=1)`` (variance
  ``1/fan_in``) divided by ``sqrt(input_mult)``, output times ``sqrt(input_mult)``;
  ``fc_2`` the same without multiplier; ``fc_3`` a ``mup.MuReadout(output_mult=...)``,
  zero-initialized when the study's readout is (``--zero-readout``); biases as the
  study's (``--bias``, zero-initialized, as jinit's);
* SP: ``set_base_shapes(model, None)``; μP: ``set_base_shapes(model, base, delta=...)``
  with the base width's model (and width + 1 as mup's ``make_base_shapes`` does);
  ``mup.MuSGD(momentum)`` or ``mup.MuAdam``;
* batches: step ``t`` of seed ``s`` uses the training rows jinit's sweep draws
  (``jax.random.randint`` from the same keys; ``experiments.mup_transfer.make_sweep``), the
  init is torch's own (seeded by ``s``): the same law as jinit's, not the same numbers;
* a run's loss is the mean cross-entropy on the first ``eval_size`` training examples
  after the last step (+inf when not finite); per (width, lr) the median over seeds;
* with ``--log2-input-mults``/``--log2-output-mults`` every pair is tried with every lr at
  the base width and the best pair is held for every width (mup's example's protocol).

Writes ``transfer.json`` (``experiments.mup_transfer``'s schema), ``runs.json`` and
``summary.md``/``summary.json`` with the claims computed by
``experiments.mup_transfer.claims`` from the file. Needs torch 2.13.0 (the ``bench``
extra) and ``pip install mup==1.0.0``; neither is a jinit dependency.

  python benchmarks/mup_reference_mlp.py --paper --data-dir DIR \
      --out docs/results/mup_transfer/mup_reference
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import mup_reference_common as common  # noqa: E402
from experiments import mup_transfer  # noqa: E402
from experiments.common import cli  # noqa: E402
from experiments.common import data as data_lib  # noqa: E402
from experiments.common import results  # noqa: E402


def batch_indices(seed: int, steps: int, batch_size: int, n_train: int) -> np.ndarray:
  """The training rows jinit's sweep trains seed ``seed`` on: ``(steps, batch_size)`` ints
  (:func:`benchmarks.mup_reference_common.batch_schedule` with the study's root key)."""
  return common.batch_schedule(mup_transfer.SEED, seed, steps, batch_size, n_train)


def make_mlp(width: int, input_mult: float, output_mult: float, zero_readout: bool,
             bias: bool, input_dim: int = 784, num_classes: int = 10):
  """mup's examples/MLP model (its ``reset_parameters``), biases zero when present."""
  import torch
  from mup import MuReadout
  from torch import nn

  class MLP(nn.Module):
    def __init__(self):
      super().__init__()
      self.fc_1 = nn.Linear(input_dim, width, bias=bias)
      self.fc_2 = nn.Linear(width, width, bias=bias)
      self.fc_3 = MuReadout(width, num_classes, bias=bias, output_mult=output_mult,
                            readout_zero_init=zero_readout)
      nn.init.kaiming_normal_(self.fc_1.weight, a=1, mode="fan_in")
      self.fc_1.weight.data /= input_mult ** 0.5
      nn.init.kaiming_normal_(self.fc_2.weight, a=1, mode="fan_in")
      if not zero_readout:  # jinit's readout: LeCun normal (variance 1/fan_in)
        nn.init.kaiming_normal_(self.fc_3.weight, a=1, mode="fan_in")
      if bias:
        for layer in (self.fc_1, self.fc_2, self.fc_3):
          nn.init.zeros_(layer.bias)

    def forward(self, x):
      out = torch.relu(self.fc_1(x) * input_mult ** 0.5)
      out = torch.relu(self.fc_2(out))
      return self.fc_3(out)

  return MLP()


def build(parametrization: str, width: int, base_width: int, config, input_mult: float = 1.0,
          output_mult: float = 1.0, seed: int = 0):
  """The seeded model with its base shapes set (SP: none; μP: against the base width)."""
  import torch
  from mup import set_base_shapes

  def mlp(w):
    return make_mlp(w, input_mult, output_mult, config.zero_readout, config.bias)

  torch.manual_seed(seed)
  model = mlp(width)
  if parametrization == "sp":
    set_base_shapes(model, None)
  else:
    set_base_shapes(model, mlp(base_width), delta=mlp(base_width + 1))
  return model


def train_one(model, config, lr: float, x_train, y_train, x_eval, y_eval, x_val, y_val,
              idx: np.ndarray) -> tuple[float, float]:
  """One run: ``config.steps`` steps of MuSGD (momentum) or MuAdam at ``lr`` over the rows
  ``idx``; (final loss on the eval subset, validation accuracy)."""
  from mup import MuAdam
  from mup import MuSGD

  opt = (MuSGD(model.parameters(), lr=lr, momentum=config.momentum)
         if config.optimizer == "sgd" else MuAdam(model.parameters(), lr=lr))
  return common.train_run(model, opt, idx, x_train, y_train, x_eval, y_eval, x_val, y_val)


def lr_seed_grid(parametrization, width, base_width, config, mults, tensors, indices):
  """Every (lr, seed) at one width, ``mults`` as :func:`build`'s keywords: loss and accuracy
  arrays ``(lrs, seeds)``."""
  loss = np.full((len(config.lrs), config.seeds), np.nan)
  acc = np.full_like(loss, np.nan)
  for j, lr in enumerate(config.lrs):
    for s in range(config.seeds):
      model = build(parametrization, width, base_width, config, seed=s, **mults)
      loss[j, s], acc[j, s] = train_one(model, config, lr, *tensors, indices[s])
  return loss, acc


def run(config, dataset: data_lib.Dataset, out_dir: str, command: str, threads: int,
        log=print) -> dict:
  """The whole reference sweep; writes transfer.json, runs.json, summary.* in ``out_dir``."""
  import torch

  if threads:
    torch.set_num_threads(threads)
  clock = time.time(), time.process_time(), os.getloadavg()[0]
  tensors = common.data_tensors(dataset, config)
  indices = [batch_indices(s, config.steps, config.batch_size, len(dataset.y_train))
             for s in range(config.seeds)]
  base, lrs = config.widths[0], config.lrs
  grid = None
  mults = mup_transfer.given_multipliers(mup_transfer.mlp_family(config), config)
  if config.tunes_multipliers:
    ins, outs = config.log2_input_mults, config.log2_output_mults
    gl = np.full((len(ins), len(outs), len(lrs), config.seeds), np.nan)
    for a, la in enumerate(ins):
      for b, lb in enumerate(outs):
        t0 = time.time()
        gl[a, b], _ = lr_seed_grid("mup", base, base, config,
                                   {"input_mult": 2.0 ** la, "output_mult": 2.0 ** lb}, tensors,
                                   indices)
        med = np.median(np.where(np.isfinite(gl[a, b]), gl[a, b], np.inf), axis=1)
        log(f"base width {base}: input_mult 2^{la}, output_mult 2^{lb}: "
            f"{time.time() - t0:5.1f} s; best loss {np.min(med):.4f}")
    grid = mup_transfer.multiplier_grid(ins, outs, gl, lrs)
    mults = mup_transfer.grid_multipliers(grid)

  def one(p, width, lr, seed):
    model = build(p, width, base, config, seed=seed, **mults)
    return train_one(model, config, lr, *tensors, indices[seed])

  per_run = common.sweep(config.widths, mup_transfer.PARAMETRIZATIONS, lrs, config.seeds, one,
                         log)
  transfer = mup_transfer.transfer_table("widths", config.widths, lrs, per_run)
  if mults:  # as experiments.mup_transfer writes it
    transfer["multipliers"] = mup_transfer.multipliers_entry(mults, grid, base)
  claim = mup_transfer.claims(transfer)
  info = {**common.info(command, *clock), "model": "MNIST MLP, microsoft/mup (PyTorch)",
          "dataset": f"{dataset.name}, {len(dataset.y_train)} training examples"}
  info["machine"] = f"{info['machine']}, {info['libraries']}"
  results.write_json(os.path.join(out_dir, "runs.json"), {
      "config": dataclasses.asdict(config), "runs": per_run,
      **({"multiplier_grid": grid} if grid is not None else {})})
  results.write_json(os.path.join(out_dir, "transfer.json"), transfer)
  summary = {"info": info, "config": dataclasses.asdict(config), "claims": claim}
  if grid is not None:
    summary["multiplier_grid"] = {k: v for k, v in grid.items() if k != "loss"}
  results.write_json(os.path.join(out_dir, "summary.json"), summary)
  text = _summary_markdown(transfer, claim, info, grid, config)
  results.write_text(os.path.join(out_dir, "summary.md"), text + "\n")
  log(text)
  return transfer


def _summary_markdown(transfer, claim, info, grid, config) -> str:
  """mup_transfer's summary without the coordinate check (mup has its own, not run here)."""
  coord = {"steps": 0, "lr": None, "sp": {"table": "(not run)"}, "mup": {"table": "(not run)"}}
  text = mup_transfer.summary_markdown(transfer, claim, coord, info, grid,
                                       {"adam": "Adam", "sgd": "SGD"}[config.optimizer])
  return text.split("\n## Coordinate check")[0].rstrip()


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true")
  p.add_argument("--paper", action="store_true")
  mup_transfer.add_flags(p)
  cli.add_common_args(p)  # --dataset, --data-dir, ... as the study's
  p.add_argument("--threads", type=cli.nonneg_int, default=0,
                 help="torch.set_num_threads (0: torch's default)")
  args = p.parse_args(argv)
  config = mup_transfer.config_from_args(args)
  if not args.out:
    raise SystemExit("--out is required: a new or empty results folder")
  if os.path.isdir(args.out) and os.listdir(args.out):
    raise SystemExit(f"--out {args.out} is not empty: give a new folder")
  dataset = cli.load_from_args(args)  # the study's data (and --train-size subsample)
  os.makedirs(args.out, exist_ok=True)
  command = "python benchmarks/mup_reference_mlp.py " + " ".join(
      sys.argv[1:] if argv is None else argv)
  return run(config, dataset, args.out, command, args.threads)


if __name__ == "__main__":
  main()
