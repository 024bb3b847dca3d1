"""The course page's whole story, in sequence: symmetry, fans, the sigmoid MLP on MNIST.

  python -m experiments                                  # MNIST, 8 seeds
  python -m experiments --dataset digits                 # offline, quick
  python -m experiments --resume results/story-<time>    # continue after a kill

Each part writes to ``<out>/<part>/`` (default ``results/story-<UTC time>``). Every
flag is checked before part 1; with ``--resume`` the finished parts are kept and the
MNIST study continues from its last checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from experiments import fans
from experiments import sigmoid_mnist
from experiments import symmetry
from experiments.common import cli
from experiments.common import results
from experiments.common import study

NAME = "story"


STUDIES = ("symmetry", "fans", "sigmoid_mnist", "signal_propagation", "deep_relu", "lsuv",
           "trainability", "isometry", "deep_cnn", "mup_transfer", "deep_transformer",
           "model_parallel")


def studies_help() -> str:
  """One line per study: ``python -m experiments.<name>`` and its docstring's first line."""
  import ast
  import importlib.util

  lines = ["studies (each: python -m experiments.<name> --help):"]
  for name in STUDIES:
    spec = importlib.util.find_spec(f"experiments.{name}")
    doc = ""
    if spec and spec.origin:
      with open(spec.origin, encoding="utf-8") as f:
        doc = (ast.get_docstring(ast.parse(f.read())) or "").split("\n")[0]
    lines.append(f"  {name:<19} {doc}")
  return "\n".join(lines)


def build_parser() -> cli.ArgumentParser:
  import argparse

  p = cli.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n")[0],
                         epilog=studies_help(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--seeds", type=cli.positive_int, default=8,
                 help="seeds per init in the MNIST study. Default: %(default)s")
  p.add_argument("--epochs", type=cli.positive_int, default=30,
                 help="epochs of the MNIST study. Default: %(default)s")
  p.add_argument("--symmetry-epochs", type=cli.positive_int, default=3,
                 help="epochs of the symmetry part's wide MLP. Default: %(default)s")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  cli.add_common_args(p)
  return p


def _done(path: str, name: str):
  """A finished part's JSON (resume keeps it), else None."""
  file = os.path.join(path, name)
  return results.read_json(file) if os.path.isfile(file) else None


def main(argv: Sequence[str] | None = None) -> dict:
  parser = build_parser()
  args = cli.parse_args(parser, argv, NAME)
  # Every check of every part, before part 1.
  specs = study.make_specs(sigmoid_mnist.DEFAULT_INITS, args.seeds)
  config = sigmoid_mnist.study.train_lib.TrainConfig(epochs=args.epochs)
  try:
    study.dry_run(specs, config.activation)
  except ValueError as e:
    cli.fail(parser, str(e))
  cli.check_batch_size(args, max(config.batch_size, symmetry.BATCH_SIZE), parser)
  cli.check_out(args, NAME, parser)
  mesh = cli.mesh_from_args(args, parser)
  dataset = cli.load_from_args(args)
  out = cli.start_out(args, NAME, parser)
  resume = bool(args.resume)
  print(f"=== The story, results in {out} ===\n\n=== 1. Symmetry ===")
  part = os.path.join(out, "symmetry")
  story = {"symmetry": resume and _done(part, "symmetry.json") or symmetry.run(
      dataset, part, epochs=args.symmetry_epochs, mesh=mesh)}
  print("\n=== 2. Fans ===")
  part = os.path.join(out, "fans")
  story["fans"] = resume and _done(part, "fans.json") or fans.run(part)
  print(f"\n=== 3. The deep sigmoid MLP: default init vs Xavier, {args.seeds} seeds ===")
  part = os.path.join(out, "sigmoid_mnist")
  story["sigmoid_mnist"] = study.run_study(
      dataset, specs, config, part, mesh=mesh, progress=not args.no_progress,
      title=f"sigmoid MLP 5 x 50, {dataset.name}: default vs Xavier, {args.seeds} seeds",
      resume=resume and os.path.isdir(os.path.join(part, study.CHECKPOINTS)),
      command=parser.prog, resume_dir=out)
  print(f"\n=== Done: {out} ===")
  study.finish(story["sigmoid_mnist"], part)
  return story


if __name__ == "__main__":
  cli.entry(main)
