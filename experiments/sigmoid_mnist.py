"""The course page's deep sigmoid MLP on MNIST: PyTorch's default init vs Xavier, over seeds.

Model: Dense(784->50) -> sigmoid -> 4 x [Dense(50->50) -> sigmoid] -> Dense(50->10).
Cross-entropy summed over the batch, plain SGD (lr 0.01), batch 32, 30 epochs,
pixels in [0, 1], MNIST train split 90/10 into train/validation, test at the end.
Two models by default: PyTorch's ``nn.Linear`` default (weights and biases
U(+-1/sqrt(fan_in)), ``torch_linear_default``) and the page's fix, Xavier uniform
weights with zero biases. Every seed of every init trains in ONE compiled program.

  python -m experiments.sigmoid_mnist --seeds 8
  python -m experiments.sigmoid_mnist --activation relu --init torch_linear_default \\
      --init kaiming_uniform:nonlinearity=relu --seeds 4

Writes ``<out>/history.json``, ``<out>/metrics.png`` and ``<out>/summary.md`` and
prints a table per init: final losses/accuracies (median over seeds), the escape
epoch (first epoch with validation accuracy > 0.5) and the fraction of seeds still
at chance (validation accuracy < 0.2) after 5 and after the last epoch.

References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import models
from experiments.common import results
from experiments.common import train as train_lib

DEFAULT_INITS = ("torch_linear_default", "xavier_uniform")


def build_parser() -> argparse.ArgumentParser:
  defaults = train_lib.TrainConfig()
  p = argparse.ArgumentParser(
      prog="python -m experiments.sigmoid_mnist",
      description="The course page's deep MLP on MNIST: several inits x several seeds in one "
                  "compiled run.")
  p.add_argument("--init", action="append", default=None, metavar="NAME[:k=v...]",
                 help="kernel initializer (any jinit name; repeatable or comma-separated; "
                      "hyperparameters as NAME:key=value, e.g. kaiming_normal:nonlinearity=relu)"
                      f". Default: {','.join(DEFAULT_INITS)}")
  p.add_argument("--bias-init", default=models.AUTO_BIAS, metavar="NAME[:k=v...]",
                 help="bias initializer for every run; 'auto' (default) = torch_linear_default "
                      "biases with torch_linear_default weights, zeros otherwise (the page)")
  p.add_argument("--activation", default=defaults.activation, choices=tuple(models.ACTIVATIONS))
  p.add_argument("--seeds", type=int, default=8, help="seeds per init (0..N-1). Default: 8")
  p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1")
  p.add_argument("--epochs", type=int, default=defaults.epochs)
  p.add_argument("--lr", type=float, default=defaults.lr)
  p.add_argument("--batch-size", type=int, default=defaults.batch_size)
  p.add_argument("--hidden", type=int, default=defaults.hidden, help="width of hidden layers")
  p.add_argument("--depth", type=int, default=defaults.depth,
                 help="number of hidden layers (Dense + activation); the page has 5")
  p.add_argument("--shuffle", default=defaults.shuffle, choices=train_lib.SHUFFLES,
                 help="per_run: each seed its own batch order (default); shared: one order "
                      "(--data-seed) for all runs, so runs differ only in their init")
  p.add_argument("--data-seed", type=int, default=defaults.data_seed)
  p.add_argument("--train-metrics", default=defaults.train_metrics, choices=train_lib.TRAIN_METRICS,
                 help="eval: train loss/acc on the whole training split after each epoch, as the "
                      "page (default); running: mean over the epoch's batches (faster)")
  p.add_argument("--log-every", type=int, default=10, help="print every N epochs (and 1, last)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  cli.add_common_args(p)
  return p


def parse_inits(values: Sequence[str] | None) -> list[str]:
  inits = [v.strip() for value in (values or DEFAULT_INITS) for v in value.split(",")
           if v.strip()]
  for text in inits:
    models.parse_init(text)  # ValueError listing the known names
  return inits


def make_specs(inits: Sequence[str], seeds: int, first_seed: int = 0,
               bias_init: str = models.AUTO_BIAS) -> list[models.RunSpec]:
  if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
    raise ValueError(f"seeds must be a positive int, got {seeds!r}")
  return [models.RunSpec.parse(init, first_seed + s, bias_init)
          for init in inits for s in range(seeds)]


def run_study(dataset: data_lib.Dataset, specs: Sequence[models.RunSpec],
              config: train_lib.TrainConfig, out_dir: str, *, mesh=None, post_init=None,
              log=print, log_every: int = 10, progress: bool = True,
              title: str | None = None) -> dict:
  """Trains ``specs`` in one compiled run and writes history.json, metrics.png, summary.md.

  history.json is rewritten (atomically) after every epoch, so an interrupted or
  diverged run keeps its results so far. Returns the history dict (with "summary").
  """
  say = log or (lambda _: None)
  os.makedirs(out_dir, exist_ok=True)
  say(f"Results folder: {out_dir}")
  say(f"{dataset.name}: {dataset.sizes()} | {len(specs)} runs "
      f"({len({s.group for s in specs})} init(s) x seeds) in one compiled program")
  result = train_lib.train(dataset, specs, config, post_init=post_init, mesh=mesh,
                           on_epoch=lambda r: results.save_history(out_dir, r), log=log,
                           log_every=log_every, progress=progress)
  history = result.to_json()
  rows = results.summary_rows(history, dataset.num_classes)
  history["summary"] = rows
  results.write_json(os.path.join(out_dir, "history.json"), history)
  results.plot_history(history, os.path.join(out_dir, "metrics.png"), title=title)
  table = results.format_table(rows, config.epochs)
  epoch_s = result.epoch_seconds
  timing = (f"compile {result.compile_seconds:.1f} s, init {result.init_seconds:.1f} s, "
            f"{len(epoch_s)} epochs in {sum(epoch_s):.1f} s "
            f"({sum(epoch_s) / max(len(epoch_s), 1):.2f} s/epoch for {len(specs)} runs)")
  results.write_text(os.path.join(out_dir, "summary.md"),
                     f"{title or 'Summary'} (median over seeds)\n\n{table}\n\n{timing}\n")
  say("\nFinal metrics (median over seeds); escape epoch = first epoch with val acc > 0.5; "
      f"at chance = val acc < {results.chance_threshold(dataset.num_classes):.2f}")
  say(table)
  say(timing)
  for run in history["runs"]:
    if run["stopped"]:
      say(f"WARNING: {run['stopped']}")
  say(f"Wrote {out_dir}/history.json, metrics.png, summary.md")
  return history


def main(argv: Sequence[str] | None = None) -> dict:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:  # bad names and values: a usage error that lists what is allowed
    inits = parse_inits(args.init)
    specs = make_specs(inits, args.seeds, args.first_seed, args.bias_init)
    config = train_lib.TrainConfig(activation=args.activation, hidden=args.hidden,
                                   depth=args.depth, lr=args.lr, batch_size=args.batch_size,
                                   epochs=args.epochs, shuffle=args.shuffle,
                                   data_seed=args.data_seed, train_metrics=args.train_metrics)
  except ValueError as e:
    parser.error(str(e))
  mesh = cli.mesh_from_args(args)  # bad --devices fails before loading anything
  dataset = cli.load_from_args(args)
  title = (f"{args.activation} MLP ({args.depth} x {args.hidden}), {dataset.name}, lr {args.lr}, "
           f"batch {args.batch_size}: {', '.join(inits)} x {args.seeds} seeds")
  return run_study(dataset, specs, config, cli.out_dir_from_args(args, "sigmoid_mnist"),
                   mesh=mesh, log_every=args.log_every, progress=not args.no_progress,
                   title=title)


if __name__ == "__main__":
  main()
