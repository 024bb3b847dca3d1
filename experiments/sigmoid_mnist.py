"""The course page's deep sigmoid MLP on MNIST: PyTorch's default init vs Xavier, over seeds.

Model: Dense(784->50) -> sigmoid -> 4 x [Dense(50->50) -> sigmoid] -> Dense(50->10).
Cross-entropy summed over the batch, plain SGD (lr 0.01), batch 32, 30 epochs,
pixels in [0, 1], MNIST train split 90/10 into train/validation, test at the end.
Two models by default: PyTorch's ``nn.Linear`` default (weights and biases
U(+-1/sqrt(fan_in)), ``torch_linear_default``) and the page's fix, Xavier uniform
weights with zero biases. Every seed of every init trains in ONE compiled program,
the runs sharded over the devices.

  python -m experiments.sigmoid_mnist --seeds 8
  python -m experiments.sigmoid_mnist --activation relu --init torch_linear_default \\
      --init kaiming_uniform:nonlinearity=relu --seeds 4
  python -m experiments.sigmoid_mnist --resume results/sigmoid_mnist-<time>   # after a kill

Writes ``<out>/history.json``, ``metrics.png``, ``summary.md`` (and ``checkpoints/``)
and prints a table per init: final losses/accuracies (median over seeds), the escape
epoch (first epoch with validation accuracy > 0.5) and the fraction of seeds still
at chance (validation accuracy < 0.2) after 5 and after the last epoch.

References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.common import cli
from experiments.common import study

NAME = "sigmoid_mnist"
DEFAULT_INITS = ("torch_linear_default", "xavier_uniform")
# Kept importable from here for code written against the old layout.
make_specs, parse_inits, run_study = study.make_specs, study.parse_inits, study.run_study


def title_for(args, dataset_name: str, inits: Sequence[str]) -> str:
  return (f"{args.activation} MLP ({args.depth} x {args.hidden}), {dataset_name}, lr {args.lr}, "
          f"batch {args.batch_size}: {', '.join(inits)} x {args.seeds} seeds")


RUNNER = study.training_runner(
    NAME, "The course page's deep MLP on MNIST: several inits x several seeds in one compiled "
          "run.", inits=DEFAULT_INITS, seeds=8,
    title=lambda args, data, plan: title_for(args, data, plan.inits))

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
