"""The study runner and pipeline every experiment shares: flags, checks, folder, data, summary.

Two layers:

* :class:`Runner`, the one runner of every study (``python -m experiments`` and each
  ``python -m experiments.<name>``): presets (``--quick``), flags through the one-line-error
  parser (shared ones from one table, :data:`FLAGS`, via :func:`flags`), every check before
  any data or folder, ``--out``/``--resume``/``--overwrite`` (the folder taken by
  :func:`cli.start_out`), data, provenance, then the study's ``run(ctx)`` writing its
  results, figure and summary; :func:`scan_sgd` is the theory studies' one training loop.
* :func:`run_study`, the multi-run MLP pipeline (below), with checkpoints and
  ``--resume``; :func:`training_runner` is the :class:`Runner` of a study built on it.

A study is several inits x several seeds of one MLP, trained in one compiled
program (:func:`experiments.common.train.train`). An experiment module only says
what differs: its defaults, its specs and anything extra it measures. A new one is::

  RUNNER = study.training_runner("mine", "My study.", inits=("xavier_uniform",), seeds=4,
                                 epochs=10, title=lambda args, dataset_name, plan: "mine")
  build_parser, main = RUNNER.parser, RUNNER.main

:func:`run_study` writes, in the results folder: ``history.json`` (after every
epoch, atomically), ``checkpoints/`` (Orbax, last 2 epochs), and at the end (or on
Ctrl-C, for the epochs done) ``metrics.png`` and ``summary.md``. Ctrl-C prints one
line saying how to resume and exits 130 (143 for SIGTERM); a study whose runs all diverged exits 1
(:func:`finish`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import distributed
from experiments.common import models
from experiments.common import results
from experiments.common import train as train_lib

CHECKPOINTS = "checkpoints"


# --------------------------------------------------------------------------- specs


def parse_inits(values: Sequence[str] | None, default: Sequence[str] = ()) -> list[str]:
  """Init strings from repeatable / comma-separated flags; unknown names raise ValueError."""
  inits = [v.strip() for value in (values or default) for v in value.split(",") if v.strip()]
  if not inits:
    raise ValueError("--init: give at least one initializer")
  for text in inits:
    models.parse_init(text)  # ValueError listing the known names
  return inits


def make_specs(inits: Sequence[str], seeds: int, first_seed: int = 0,
               bias_init: str = models.AUTO_BIAS) -> list[models.RunSpec]:
  """One :class:`models.RunSpec` per (init, seed), inits outermost."""
  train_lib.check_int(seeds, "seeds")
  train_lib.check_int(first_seed, "first_seed", minimum=0)
  return [models.RunSpec.parse(init, first_seed + s, bias_init)
          for init in inits for s in range(seeds)]


def dry_run(specs: Sequence[models.RunSpec], activation: str = "sigmoid") -> None:
  """Binds every (kernel, bias) init of ``specs`` and runs it on a tiny model (5 -> 4 -> 3).

  Raises:
    ValueError: naming the init, when it raises or gives non-finite weights.
  """
  import jax
  import numpy as np

  seen = set()
  for spec in specs:
    if spec.group in seen:
      continue
    seen.add(spec.group)
    where = f"--init {spec.label}" + (f" (bias {spec.bias_label})" if spec.bias_label else "")
    try:
      model = models.build_model(spec, hidden=4, depth=1, num_classes=3, activation=activation)
      params = model.init(jax.random.key(0), np.zeros((1, 5), np.float32))
      leaves = [np.asarray(a) for a in jax.tree.leaves(params)]
    except Exception as e:  # whatever the init raises, reported as a usage error
      msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise ValueError(f"{where}: {type(e).__name__}: {msg}") from None
    if not all(np.isfinite(a).all() for a in leaves):
      raise ValueError(f"{where}: gives non-finite weights")


# --------------------------------------------------------------------------- flags


# The shared flag table: dest -> (argparse type, or a tuple of choices, or bool for an on/off
# switch; help; metavar). A study picks its rows with :func:`flags`, giving each its default
# (and, where the study says more, its own help).
FLAGS: dict[str, tuple[Any, str, str | None]] = {
    "seed": (cli.nonneg_int, "PRNG seed. Default: %(default)s", None),
    "seeds": (cli.positive_int, "seeds per init. Default: %(default)s", None),
    "first_seed": (cli.nonneg_int, "seed of the first run. Default: %(default)s", None),
    "lr": (cli.positive_float, "SGD step size. Default: %(default)s", None),
    "batch_size": (cli.positive_int, "examples per SGD step. Default: %(default)s", None),
    "train_size": (cli.positive_int, "use only the first N training examples (default: all)",
                   None),
    "steps": (cli.positive_int, "SGD steps. Default: %(default)s", None),
    "epochs": (cli.positive_int, "epochs of SGD. Default: %(default)s", None),
    "width": (cli.positive_int, "hidden width. Default: %(default)s", None),
    "hidden": (cli.positive_int, "width of the hidden layers. Default: %(default)s", None),
    "depth": (cli.nonneg_int, "number of hidden layers. Default: %(default)s", None),
    "depths": (cli.positive_int_list, "depths, comma-separated. Default: %(default)s",
               "L,L,..."),
    "activation": (tuple(models.ACTIVATIONS),
                   "activation of the hidden layers. Default: %(default)s", None),
    "eval_every": (cli.positive_int, "evaluate every N steps (must divide --steps)", None),
    "eval_size": (cli.positive_int, "training examples the accuracy is measured on. "
                                    "Default: %(default)s", None),
    "pool": (cli.positive_int, "average-pool the 28x28 images by this factor. "
                               "Default: %(default)s", None),
    "log_every": (cli.positive_int, "print every N epochs (and the first and last)", None),
    "no_progress": (bool, "no progress bar", None),
}


def flags(parser: argparse.ArgumentParser, **rows: Any) -> None:
  """Adds rows of :data:`FLAGS`: ``name=default``, or ``name=(default, help[, type])``.

  ``--name-with-dashes`` is the flag of ``name_with_underscores``; a ``bool`` row is an
  on/off switch (its default is False); a name the table lacks is a positive int
  (``name=(default, help)``), a study's own count or size.
  """
  for name, value in rows.items():
    kind, text, metavar = FLAGS.get(name, (cli.positive_int, None, None))
    row: tuple[Any, ...] = value if isinstance(value, tuple) else (value,)
    default = row[0]
    text = row[1] if len(row) > 1 else text
    kind = row[2] if len(row) > 2 else kind
    flag = "--" + name.replace("_", "-")
    if kind is bool:
      parser.add_argument(flag, action="store_true", help=text)
    elif isinstance(kind, tuple):
      parser.add_argument(flag, default=default, choices=kind, help=text)
    else:
      parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)


def add_args(parser: argparse.ArgumentParser, *, inits: Sequence[str], seeds: int = 8,
             epochs: int | None = None, bias_init: str = models.AUTO_BIAS,
             init_flag: bool = True, common: bool = True, **config: Any) -> None:
  """The flags of a study (init, seeds, architecture, optimization) plus the common ones.

  ``config`` overrides :class:`train_lib.TrainConfig`'s defaults shown in ``--help``;
  ``common=False`` leaves the data and folder flags to the caller (:class:`Runner` adds them).
  """
  d = dataclasses.replace(train_lib.TrainConfig(),
                          **({"epochs": epochs} if epochs else {}), **config)
  if init_flag:
    parser.add_argument("--init", action="append", default=None, metavar="NAME[:k=v...]",
                        help="kernel initializer (any jinit name; repeatable or comma-separated;"
                             " hyperparameters as NAME:key=value, e.g. kaiming_normal:"
                             f"nonlinearity=relu). Default: {','.join(inits)}")
    parser.add_argument("--bias-init", default=bias_init, metavar="NAME[:k=v...]",
                        help="bias initializer for every run; 'auto' = torch_linear_default "
                             "biases with torch_linear_default weights, zeros otherwise. "
                             "Default: %(default)s")
  flags(parser, activation=d.activation,
        seeds=(seeds, "seeds per init (FIRST..FIRST+N-1). Default: %(default)s"), first_seed=0,
        epochs=(d.epochs, "epochs (with --resume: may grow, to extend a run). "
                          "Default: %(default)s"),
        lr=(d.lr, "SGD learning rate (summed loss). Default: %(default)s"),
        batch_size=d.batch_size, hidden=d.hidden,
        depth=(d.depth, "number of hidden layers (Dense + activation). Default: %(default)s"))
  parser.add_argument("--shuffle", default=d.shuffle, choices=train_lib.SHUFFLES,
                      help="per_run: each seed its own batch order (default); shared: one order "
                           "(--data-seed) for all runs, so runs differ only in their init")
  parser.add_argument("--data-seed", type=cli.nonneg_int, default=d.data_seed,
                      help="batch order seed of --shuffle shared. Default: %(default)s")
  parser.add_argument("--train-metrics", default=d.train_metrics,
                      choices=train_lib.TRAIN_METRICS,
                      help="eval: train loss/acc on the whole training split after each epoch "
                           "(the page); running: mean over the epoch's batches (faster)")
  flags(parser, train_size=None, log_every=10, no_progress=False)
  if common:
    cli.add_common_args(parser)
  distributed.add_args(parser)  # jax.distributed: a study across processes


def check_image_sgd(args, steps: int, prog: str) -> int:
  """The checks of an image study trained for ``steps`` SGD steps (deep_cnn, deep_residual).

  ``--eval-every`` (default steps / 10) must divide the steps, ``--batch-size`` and
  ``--eval-size`` fit in ``--train-size`` examples, ``--pool`` divide the image side; a
  bad flag ends the program in one line (exit 2), before any data.

  Returns:
    The evaluation interval.
  """
  eval_every = args.eval_every or max(steps // 10, 1)
  if steps % eval_every:
    cli.fail(prog, f"--eval-every {eval_every} must divide --steps {steps}")
  cli.check_batch_size(args, args.batch_size, prog)
  if args.eval_size > args.train_size:
    cli.fail(prog, f"--eval-size {args.eval_size} exceeds --train-size {args.train_size}")
  side = cli.IMAGE_SIDES.get(args.dataset)
  if side and side % args.pool:
    cli.fail(prog, f"--pool {args.pool}: expected square images with a side divisible by it, "
                   f"got {side * side} pixels")
  return eval_every


def config_from_args(args, **overrides: Any) -> train_lib.TrainConfig:
  """The :class:`train_lib.TrainConfig` the flags name (``overrides`` win)."""
  values = dict(activation=args.activation, hidden=args.hidden, depth=args.depth, lr=args.lr,
                batch_size=args.batch_size, epochs=args.epochs, shuffle=args.shuffle,
                data_seed=args.data_seed, train_metrics=args.train_metrics)
  values.update(overrides)
  return train_lib.TrainConfig(**values)


@dataclasses.dataclass
class Plan:
  """Everything checked before any work: specs, config, mesh, results folder."""

  specs: list[models.RunSpec]
  config: train_lib.TrainConfig
  mesh: Any
  out_dir: str
  resume: bool
  inits: list[str]


def plan_from_args(parser: argparse.ArgumentParser | str, args, name: str, *,
                   default_inits: Sequence[str] = (), bias_init: str | None = None,
                   specs: Sequence[models.RunSpec] | None = None,
                   **config_overrides: Any) -> Plan:
  """Checks every flag (one line naming it, exit 2 on error) before any data or folder.

  Inits are bound and dry-run on a tiny model, the batch size is checked against the
  dataset, ``--out`` must be writable and new (or ``--resume``/``--overwrite``), and
  ``--devices`` must exist.
  """
  if specs is None:
    inits = cli.checked(parser, parse_inits, getattr(args, "init", None), default_inits,
                        flag="--init/--bias-init")
    bias = bias_init if bias_init is not None else args.bias_init
    specs = cli.checked(parser, make_specs, inits, args.seeds, args.first_seed, bias,
                        flag="--init/--bias-init")
  else:
    inits = list(dict.fromkeys(s.label for s in specs))
  config = cli.checked(parser, config_from_args, args, **config_overrides)
  cli.checked(parser, dry_run, specs, config.activation)
  cli.check_batch_size(args, config.batch_size, parser)
  out_dir = cli.check_out(args, name, parser)
  mesh = cli.mesh_from_args(args, parser)
  n_data = 1 if mesh is None else int(mesh.shape.get(train_lib.DATA_AXIS, 1))
  if config.batch_size % n_data:
    cli.fail(parser, f"--batch-size {config.batch_size} must be divisible by the {n_data} "
                     "devices of --parallel data")
  return Plan(list(specs or ()), config, mesh, out_dir, bool(getattr(args, "resume", None)), inits)


# --------------------------------------------------------------------------- running


def _timing(result: train_lib.TrainResult, runs: int) -> str:
  epoch_s = result.epoch_seconds
  where = (f"{result.devices} devices ({result.parallel})" if result.devices > 1
           else "1 device")
  return (f"compile {result.compile_seconds:.1f} s, init {result.init_seconds:.1f} s, "
          f"{len(epoch_s)} epochs in {sum(epoch_s):.1f} s "
          f"({sum(epoch_s) / max(len(epoch_s), 1):.2f} s/epoch for {runs} runs, "
          f"{sum(epoch_s) / max(len(epoch_s), 1) / runs:.3f} s per run-epoch) on {where}")


def write_report(out_dir: str, history: dict, num_classes: int, epochs: int,
                 title: str | None, timing: str, log=print, note: str = "") -> str:
  """Adds the summary rows to ``history``; writes history.json, metrics.png, summary.md."""
  say = log or (lambda _: None)
  rows = results.summary_rows(history, num_classes)
  history["summary"] = rows
  results.write_json(os.path.join(out_dir, "history.json"), history)
  results.plot_history(history, os.path.join(out_dir, "metrics.png"), title=title)
  table = results.format_table(rows, epochs)
  done = len(history["epoch_seconds"])
  status = "" if history.get("finished") else f" -- interrupted after epoch {done} of {epochs}"
  text = f"{title or 'Summary'} (median over seeds){status}\n\n{table}\n\n{timing}\n"
  if note:
    text += f"\n{note}\n"
  results.write_text(os.path.join(out_dir, "summary.md"), text)
  say("\nFinal metrics (median over seeds); escape epoch = first epoch with val acc > 0.5; "
      f"at chance = val acc < {results.chance_threshold(num_classes):.2f}")
  say(table)
  say(timing)
  return table


def run_study(dataset: data_lib.Dataset, specs: Sequence[models.RunSpec],
              config: train_lib.TrainConfig, out_dir: str, *, mesh=None, post_init=None,
              log=print, log_every: int = 10, progress: bool = True,
              title: str | None = None, resume: bool = False,
              checkpoints: bool = True, command: str | None = None,
              resume_dir: str | None = None) -> dict:
  """Trains ``specs`` in one compiled run and writes history.json, metrics.png, summary.md.

  history.json is rewritten (atomically) after every epoch and a checkpoint saved,
  so an interrupted or killed study keeps its results and can be resumed
  (``resume=True`` continues from ``<out_dir>/checkpoints``). Ctrl-C writes the
  summary and figure of the epochs done, prints how to resume (``command --resume
  resume_dir``, default ``out_dir``) and exits 130.

  Across processes (:mod:`experiments.common.distributed`) every process trains its
  share of the runs and gets the whole history; only process 0 writes ``out_dir``
  (checkpoints included) and prints, the others write nothing.

  Returns:
    The history dict (with "summary").
  """
  if not distributed.is_primary():  # the same work, silent; results.write_* write nothing
    log, progress = None, False
  say = log or (lambda _: None)
  if distributed.is_primary():
    os.makedirs(out_dir, exist_ok=True)
  say(f"Results folder: {out_dir}")
  say(f"{dataset.name}: {dataset.sizes()} | {len(specs)} runs "
      f"({len({s.group for s in specs})} init(s) x seeds) in one compiled program")
  checkpointer = (train_lib.Checkpointer(os.path.join(out_dir, CHECKPOINTS))
                  if checkpoints else None)
  if resume:
    last = checkpointer.latest_epoch() if checkpointer else None
    say(f"Resuming after epoch {last}" if last else "No checkpoint yet: starting from epoch 1")
  last: dict[str, Any] = {}

  def on_epoch(result):
    last["result"] = result
    results.save_history(out_dir, result)

  try:
    result = train_lib.train(dataset, specs, config, post_init=post_init, mesh=mesh,
                             on_epoch=on_epoch, log=log, log_every=log_every,
                             progress=progress, checkpointer=checkpointer, resume=resume)
  except train_lib.ResumeError as e:
    cli.fail(command or "experiments", f"--resume: {e}")
  except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM under cli.entry
    partial = last.get("result")
    if partial is not None and partial.epochs_done:
      write_report(out_dir, partial.to_json(), dataset.num_classes, config.epochs, title,
                   _timing(partial, len(specs)), log=None)
    done = partial.epochs_done if partial is not None else 0
    how = command or "python -m experiments.<name>"
    sys.stderr.write(f"\nInterrupted after epoch {done}; summary of the epochs done in "
                     f"{out_dir}; resume with: {how} --resume {resume_dir or out_dir}\n")
    raise SystemExit(cli.interrupt_code(e)) from None
  finally:
    if checkpointer is not None:
      checkpointer.close()
  history = result.to_json()
  write_report(out_dir, history, dataset.num_classes, config.epochs, title,
               _timing(result, len(specs)), log=log)
  for run in history["runs"]:
    if run["stopped"]:
      say(f"WARNING: {run['stopped']}")
  say(f"Wrote {out_dir}/history.json, metrics.png, summary.md")
  return history


def finish(history: dict, out_dir: str | None = None) -> dict:
  """Returns ``history``; exits with code 1 (one line) when every run diverged."""
  if results.all_diverged(history):
    where = f" (see {out_dir}/summary.md)" if out_dir else ""
    sys.stderr.write(f"error: every run diverged (non-finite loss){where}\n")
    raise SystemExit(1)
  return history


# --------------------------------------------------------------------------- one training loop


def scan_sgd(loss_fn: Callable[[Any, Any], Any], params: Any, tx: Any, batches: Any, *,
             opt_state: Any = None, eval_fn: Callable[[Any], Any] | None = None,
             chunks: int = 1) -> tuple[Any, Any, Any, Any]:
  """Optimizer steps in ONE ``lax.scan``: the training loop of the theory, μP and ViT studies.

  Traceable (no jit inside): callers ``jax.jit`` it and ``jax.vmap`` it over runs
  (seeds, learning rates, sigma_w2), so a whole grid is one compiled program.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``; ``batch`` is one step's slice of
      ``batches`` (batch indices, a PRNG key to draw them, images...).
    params: any pytree of arrays (an MLP's dict, a deep CNN's, a ViT's stacked blocks).
    tx: an optax ``GradientTransformation`` (the learning rate lives there).
    batches: a pytree whose leaves have a leading steps axis (steps = its length).
    opt_state: the optimizer state to continue from (default ``tx.init(params)``).
    eval_fn: ``eval_fn(params) -> pytree``, evaluated after each of ``chunks`` equal
      chunks of steps (a learning curve); None: no evaluation.
    chunks: how many chunks the steps are cut into (must divide the steps).

  Returns:
    ``(params, opt_state, losses, evals)``: the trained params and state, the loss of
    every step (before its update; shape ``(steps,)``), and ``eval_fn``'s outputs
    stacked over chunks (None without ``eval_fn``).
  """
  import jax
  import optax

  steps = jax.tree.leaves(batches)[0].shape[0]
  if chunks < 1 or steps % chunks:
    raise ValueError(f"chunks={chunks} must divide the {steps} steps")
  if opt_state is None:
    opt_state = tx.init(params)

  def step(carry, batch):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    # optax's Adam bias correction raises a python float to its int32 step count, which
    # jax_numpy_dtype_promotion="strict" rejects: optax's code, traced with standard rules.
    with jax.numpy_dtype_promotion("standard"):
      updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  def chunk(carry, part):
    carry, losses = jax.lax.scan(step, carry, part)
    return carry, (losses, None if eval_fn is None else eval_fn(carry[0]))

  parts = jax.tree.map(lambda a: a.reshape((chunks, steps // chunks) + a.shape[1:]), batches)
  (params, opt_state), (losses, evals) = jax.lax.scan(chunk, (params, opt_state), parts)
  return params, opt_state, losses.reshape(-1), evals


# --------------------------------------------------------------------------- the study runner


@dataclasses.dataclass
class Context:
  """What a study's ``run`` gets from :class:`Runner`: everything checked and set up.

  Attributes:
    args: the parsed flags (presets applied, see :meth:`Runner.value`).
    config: what the study's ``config(args)`` returned.
    out_dir: the results folder, owned by this process (lock taken, ``run.json`` written).
    dataset: the data the flags name (None for a study without data).
    provenance: command, date, machine, devices (:mod:`experiments.common.provenance`).
    log: where progress lines go.
    state: what a study's steps hand on to each other (e.g. a ``before`` to an ``after``).
  """

  args: argparse.Namespace
  config: Any
  out_dir: str
  dataset: data_lib.Dataset | None
  provenance: dict
  log: Callable[[str], None] = print
  state: dict = dataclasses.field(default_factory=dict)

  def path(self, name: str) -> str:
    return os.path.join(self.out_dir, name)

  def write_json(self, name: str, obj: Any) -> str:
    """``out_dir/name`` as JSON, atomically."""
    results.write_json(self.path(name), obj)
    return self.path(name)

  def write_text(self, name: str, text: str) -> str:
    results.write_text(self.path(name), text)
    return self.path(name)

  def save_figure(self, fig, name: str) -> str:
    results.save_figure(fig, self.path(name))
    return self.path(name)


@dataclasses.dataclass(frozen=True)
class Runner:
  """The one study runner: every study is ``Runner(...)`` plus what it measures.

  ``main(argv)`` does, in order: flags through the one-line-error parser (presets,
  ``--out``/``--resume``/``--overwrite``, the data flags); ``config(args)`` -- every
  check, before any data is loaded or folder made (a ``ValueError``/``TypeError``
  becomes one line, exit 2); the results folder checked; the data loaded; the folder
  taken (:func:`cli.start_out`); provenance; ``run(ctx)`` (which writes its results,
  figure and summary through ``ctx``). An interrupt (Ctrl-C or SIGTERM) prints one
  line saying what was written and exits 130/143; run it with ``cli.entry(main)``.

  Attributes:
    name: the module name (``python -m experiments.<name>``).
    description: the ``--help`` summary.
    add_flags: adds the study's own flags to the parser.
    config: ``config(args) -> config``, all checks; raises ValueError/TypeError.
    run: ``run(ctx) -> dict``, the study itself.
    presets: ``{"full": {...}, "quick": {...}}``: each preset but ``full`` becomes a
      flag (``--quick``); :meth:`value` reads a flag, or the chosen preset's default.
    needs_data: ``needs_data(args) -> bool`` (default: always).
    resumable: False (every theory study): ``--resume`` is refused in one line.
    data_flags: False: no data flags (only ``--out``/``--overwrite``/``--resume``).
    announce: False when ``run`` prints the results folder itself (:func:`run_study` does).
    command: the command, when not ``python -m experiments.<name>``.
    epilog: ``epilog() -> str``, text after the flags in ``--help`` (kept as written).
    shortcut: ``shortcut(args) -> dict | None``, called right after the flags are parsed:
      a dict it returns is ``main``'s result, nothing else runs (``deep_transformer``'s
      ``--resummarize``, which only rewrites a finished run's summary).
  """

  name: str
  description: str
  add_flags: Callable[[argparse.ArgumentParser], None]
  config: Callable[[argparse.Namespace], Any]
  run: Callable[[Context], dict]
  presets: dict = dataclasses.field(default_factory=dict)
  needs_data: Callable[[argparse.Namespace], bool] | None = None
  resumable: bool = False
  data_flags: bool = True
  announce: bool = True
  command: str = ""
  epilog: Callable[[], str] | None = None
  shortcut: Callable[[argparse.Namespace], dict | None] | None = None

  @property
  def prog(self) -> str:
    return self.command or f"python -m experiments.{self.name}"

  def parser(self) -> cli.ArgumentParser:
    kw = ({} if self.epilog is None else
          {"epilog": self.epilog(), "formatter_class": argparse.RawDescriptionHelpFormatter})
    p = cli.ArgumentParser(prog=self.prog, description=self.description, **kw)
    for preset, values in self.presets.items():
      if preset != "full":
        shown = ", ".join(f"{k} {_shown(v)}" for k, v in values.items())
        p.add_argument(f"--{preset}", action="store_true", help=f"preset: {shown}")
    self.add_flags(p)
    if not any(a.dest == "no_progress" for a in p._actions):  # pylint: disable=protected-access
      p.add_argument("--no-progress", action="store_true", help="no progress lines")
    cli.add_folder_args(p, self.resumable)
    if self.data_flags:
      cli.add_common_args(p)
    return p

  def value(self, args, name: str):
    """Flag ``name`` if given, else the default of the chosen preset (``full`` if none)."""
    given = getattr(args, name, None)
    if given is not None:
      return given
    for preset, values in self.presets.items():
      if preset != "full" and getattr(args, preset, False) and name in values:
        return values[name]
    return self.presets.get("full", {}).get(name)

  def main(self, argv: Sequence[str] | None = None) -> dict:
    from experiments.common import provenance as provenance_lib

    parser = self.parser()
    args = cli.parse_args(parser, argv, self.name)
    done = self.shortcut(args) if self.shortcut is not None else None
    if done is not None:
      return done
    if args.resume and not self.resumable:
      cli.fail(parser, f"--resume: {self.prog} cannot resume a run; start it again with a new "
                       "--out (or --overwrite)")
    try:
      config = self.config(args)
    except (TypeError, ValueError) as e:
      cli.fail(parser, str(e))
    cli.check_out(args, self.name, parser)
    needs = self.data_flags and (self.needs_data is None or self.needs_data(args))
    dataset = cli.load_from_args(args) if needs else None
    out_dir = cli.start_out(args, self.name, parser)
    ctx = Context(args, config, out_dir, dataset,
                  provenance_lib.provenance(f"experiments.{self.name}", args.argv))
    if self.announce and distributed.is_primary():  # the others write no folder
      print(f"Results folder: {out_dir}")
    try:
      result = self.run(ctx)
      if self.announce and distributed.is_primary():
        print(f"Done. In {out_dir}: {', '.join(_written(out_dir))}")
      return result
    except KeyboardInterrupt as e:
      if not distributed.is_primary():  # process 0 says what was written
        raise SystemExit(cli.interrupt_code(e)) from None
      done = _written(out_dir)
      how = (f"resume with: {self.prog} --resume {out_dir}" if self.resumable else
             f"{self.prog} cannot resume: run it again with --out {out_dir} --overwrite")
      sys.stderr.write(f"\nInterrupted; written so far in {out_dir}: {', '.join(done)}; "
                       f"{how}\n")
      raise SystemExit(cli.interrupt_code(e)) from None
    finally:
      cli.release_folder(out_dir)


def _written(out_dir: str) -> list[str]:
  """What a study wrote in its folder (hidden files such as the lock left out)."""
  return sorted(n for n in os.listdir(out_dir) if not n.startswith("."))


how_long = train_lib.how_long  # "42 s" / "3.5 min", as every study prints its estimates


def time_left(sizes_done: Sequence[float], seconds_done: Sequence[float],
              sizes_left: Sequence[float]) -> float:
  """Seconds the work left should take, from the work done, as ``seconds = a + b * size``.

  A study's items (depths, widths) cost a fixed part (compiling a program) plus a part that
  grows with their size. With two or more different sizes done, ``a`` and ``b`` are the
  least-squares fit (``a`` kept >= 0); with one size, ``b = seconds / size`` and ``a = 0``.

  Args:
    sizes_done: the size of each item done (e.g. its depth).
    seconds_done: the wall seconds each took.
    sizes_left: the sizes of the items still to run.

  Returns:
    The estimate in seconds (0 when nothing is left).
  """
  x, y = np.asarray(sizes_done, float), np.asarray(seconds_done, float)
  if len(set(x.tolist())) >= 2:
    b, a = np.polyfit(x, y, 1)
    if a < 0 or b < 0:  # noise: fall back to proportional
      a, b = 0.0, float(y.sum() / x.sum())
  else:
    a, b = 0.0, float(y.sum() / x.sum())
  return float(sum(a + b * s for s in sizes_left))


def _shown(v) -> str:
  if isinstance(v, (list, tuple)):
    return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
  return str(v)


def training_runner(name: str, description: str, *, inits: Sequence[str],
                    title: Callable[[argparse.Namespace, str, Plan], str],
                    before: Callable[[Context], None] | None = None,
                    after: Callable[[Context, dict], None] | None = None,
                    defaults: dict | None = None, **add_args_kw: Any) -> Runner:
  """The :class:`Runner` of a multi-run MLP study: :func:`add_args` flags, :func:`run_study`.

  Args:
    name, description: as :class:`Runner`'s.
    inits: the default ``--init`` values.
    title: ``title(args, dataset_name, plan)``, the title of the figure and summary.
    before: ``before(ctx)``, run after the folder is taken and before training.
    after: ``after(ctx, history)``, run after training (e.g. to add to history.json).
    defaults: flag defaults to change after the flags are added (``parser.set_defaults``).
    **add_args_kw: :func:`add_args`'s keywords (seeds, epochs, bias_init, config defaults).

  Returns:
    A resumable :class:`Runner` whose ``main`` returns the history (exit 1 if every run
    diverged, :func:`finish`).
  """
  prog = f"python -m experiments.{name}"

  def add_flags(p: argparse.ArgumentParser) -> None:
    add_args(p, inits=inits, common=False, **add_args_kw)
    p.set_defaults(**(defaults or {}))

  def config(args) -> Plan:
    return plan_from_args(prog, args, name, default_inits=inits)

  def run(ctx: Context) -> dict:
    plan, args, dataset = ctx.config, ctx.args, ctx.dataset
    assert dataset is not None  # a training study always loads its data
    if before is not None:
      before(ctx)
    history = run_study(dataset, plan.specs, plan.config, ctx.out_dir, mesh=plan.mesh,
                        log_every=args.log_every, progress=not args.no_progress,
                        title=title(args, dataset.name, plan), resume=plan.resume,
                        command=prog)
    if after is not None:
      after(ctx, history)
    return finish(history, ctx.out_dir)

  return Runner(name, description, add_flags, config, run, resumable=True, announce=False)
