"""The course page's whole story, in sequence: symmetry, fans, the sigmoid MLP on MNIST.

  python -m experiments --data-dir ~/tensorflow_datasets          # MNIST, 8 seeds
  python -m experiments --dataset digits                          # offline, quick

Each part writes to ``<out>/<part>/`` (default ``results/story-<UTC time>``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from experiments import fans
from experiments import sigmoid_mnist
from experiments import symmetry
from experiments.common import cli


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n")[0])
  p.add_argument("--seeds", type=int, default=8, help="seeds per init in the MNIST study")
  p.add_argument("--epochs", type=int, default=30, help="epochs of the MNIST study")
  p.add_argument("--symmetry-epochs", type=int, default=3)
  p.add_argument("--no-progress", action="store_true")
  cli.add_common_args(p)
  args = p.parse_args(argv)
  mesh = cli.mesh_from_args(args)
  out = cli.out_dir_from_args(args, "story")
  dataset = cli.load_from_args(args)
  print(f"=== The story, results in {out} ===\n\n=== 1. Symmetry ===")
  story = {"symmetry": symmetry.run(dataset, os.path.join(out, "symmetry"),
                                    epochs=args.symmetry_epochs, mesh=mesh)}
  print("\n=== 2. Fans ===")
  story["fans"] = fans.run(os.path.join(out, "fans"))
  print(f"\n=== 3. The deep sigmoid MLP: default init vs Xavier, {args.seeds} seeds ===")
  config = sigmoid_mnist.train_lib.TrainConfig(epochs=args.epochs)
  specs = sigmoid_mnist.make_specs(sigmoid_mnist.DEFAULT_INITS, args.seeds)
  story["sigmoid_mnist"] = sigmoid_mnist.run_study(
      dataset, specs, config, os.path.join(out, "sigmoid_mnist"), mesh=mesh,
      progress=not args.no_progress,
      title=f"sigmoid MLP 5 x 50, {dataset.name}: default vs Xavier, {args.seeds} seeds")
  print(f"\n=== Done: {out} ===")
  return story


if __name__ == "__main__":
  main()
