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

from experiments import fans
from experiments import sigmoid_mnist
from experiments import symmetry
from experiments.common import cli
from experiments.common import results
from experiments.common import study

NAME = "story"
PROG = "python -m experiments"


STUDIES = ("symmetry", "fans", "sigmoid_mnist", "signal_propagation", "deep_relu", "lsuv",
           "trainability", "isometry", "deep_cnn", "mup_transfer", "mup_transfer_transformer",
           "mup_depth", "deep_transformer", "model_parallel")


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


def add_flags(p) -> None:
  study.flags(p, seeds=(8, "seeds per init in the MNIST study. Default: %(default)s"),
              epochs=(30, "epochs of the MNIST study. Default: %(default)s"),
              symmetry_epochs=(3, "epochs of the symmetry part's wide MLP. Default: %(default)s"),
              no_progress=False)


def make_config(args):
  """Every check of every part, before part 1: the MNIST study's specs and config, the mesh."""
  specs = study.make_specs(sigmoid_mnist.DEFAULT_INITS, args.seeds)
  config = study.train_lib.TrainConfig(epochs=args.epochs)
  study.dry_run(specs, config.activation)
  cli.check_batch_size(args, max(config.batch_size, symmetry.BATCH_SIZE), PROG)
  return specs, config, cli.mesh_from_args(args, PROG)


def _done(path: str, name: str):
  """A finished part's JSON (resume keeps it), else None."""
  file = os.path.join(path, name)
  return results.read_json(file) if os.path.isfile(file) else None


def run(ctx) -> dict:
  """The parts in sequence, each in its own folder; on --resume the finished ones are kept."""
  (specs, config, mesh), args, dataset, out = ctx.config, ctx.args, ctx.dataset, ctx.out_dir
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
      command=PROG, resume_dir=out)
  print(f"\n=== Done: {out} ===")
  study.finish(story["sigmoid_mnist"], part)
  return story


RUNNER = study.Runner(NAME, __doc__.split("\n")[0], add_flags, make_config, run,
                      resumable=True, announce=False, command=PROG, epilog=studies_help)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
