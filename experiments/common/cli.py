"""Command-line pieces shared by the experiments: flags, checks before any work, results folder.

The rule for bad input: every flag is checked before any data is loaded or folder
made; a bad one ends the program with ONE line naming the flag (``prog: error:
--flag ...``), exit code 2, no traceback, no folder. :class:`ArgumentParser` gives
argparse's own errors that shape too.

A results folder is never overwritten: an existing non-empty ``--out`` is refused
unless ``--resume DIR`` (continue the study saved there, with the flags read from
``DIR/run.json``) or ``--overwrite`` (replace a folder that holds a previous run).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import shutil
import sys
from typing import NoReturn

from experiments.common import data as data_lib
from experiments.common import results as results_lib

DEFAULT_CACHE_DIR = data_lib.default_cache_dir()  # one per user: every experiment finds it
RUN_FILE = "run.json"  # the flags of a study, written when its folder is made (for --resume)
# Training examples per dataset after the 90/10 train/validation split (checked again
# after loading), so --batch-size is checked before any data is loaded.
TRAIN_SIZES = {"mnist": 54_000, "digits": 1_293}


class ArgumentParser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` whose errors are one line (``prog: error: ...``), exit 2."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {message}\n")


def fail(parser: argparse.ArgumentParser | str, message: str) -> NoReturn:
  """One line on stderr, ``prog: error: message``, and exit code 2 (a usage error)."""
  prog = parser if isinstance(parser, str) else parser.prog
  first = str(message).strip().splitlines()[0] if str(message).strip() else "bad input"
  sys.stderr.write(f"{prog}: error: {first}\n")
  raise SystemExit(2)


def _int(text: str, minimum: int) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
  if value < minimum:
    raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}")
  return value


def positive_int(text: str) -> int:
  """argparse ``type=``: an int >= 1."""
  return _int(text, 1)


def nonneg_int(text: str) -> int:
  """argparse ``type=``: an int >= 0."""
  return _int(text, 0)


def positive_float(text: str) -> float:
  """argparse ``type=``: a finite float > 0."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
  if not (value > 0 and value != float("inf")):
    raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
  return value


def add_common_args(parser: argparse.ArgumentParser, dataset: str = "mnist") -> None:
  parser.add_argument("--dataset", default=dataset, choices=data_lib.DATASETS,
                      help="mnist (TFDS) or digits (scikit-learn 8x8, offline). "
                           "Default: %(default)s")
  parser.add_argument("--data-dir", default=None,
                      help="TFDS data_dir holding a prepared mnist (default: TFDS's default, "
                           "$TFDS_DATA_DIR or ~/tensorflow_datasets)")
  parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                      help="cache of decoded MNIST arrays, shared by every experiment ('' "
                           f"to disable; ${data_lib.CACHE_ENV} or $XDG_CACHE_HOME move it). "
                           "Default: %(default)s")
  parser.add_argument("--download", action="store_true",
                      help="let TFDS download and prepare MNIST if missing (needs network "
                           "and TensorFlow: pip install 'jinit[prepare]')")
  add = functools.partial(_add_once, parser)  # an experiment may define some of these itself
  add("--mnist-mirror", type=data_lib.mirror_arg, default=None, metavar="URL",
      help="without a prepared TFDS copy, MNIST is fetched from public mirrors; "
           "fetch from this base URL instead (http://, https://, file://; "
           f"default: ${data_lib.MIRROR_ENV} or the public mirrors)")
  add("--digits-repeat", type=data_lib.repeat_arg, default=None,
      metavar="{auto,N}",
      help="digits only: repeat its 1,293 training images N times per epoch "
           "(auto: as many SGD steps per epoch as MNIST, 42x)")
  add("--devices", type=positive_int, default=None,
      help="use this many devices (default: all; on CPU the experiments use "
           "one device per core unless XLA_FLAGS sets a device count)")
  add("--parallel", default="runs", choices=("runs", "data"),
      help="runs: shard the runs over the devices (default); data: shard each batch (data "
           "parallelism, for one big run)")
  add("--out", default=None,
      help="results folder (default: results/<experiment>-<UTC time>); an existing non-empty "
           "folder is refused")
  add("--resume", default=None, metavar="DIR",
      help="continue the study saved in DIR from its last finished epoch, with the flags it "
           "was started with")
  add("--overwrite", action="store_true",
      help="replace an existing results folder given as --out")


def _add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
  if flag not in parser._option_string_actions:  # pylint: disable=protected-access
    parser.add_argument(flag, **kwargs)


def entry(main) -> None:
  """Runs ``main()`` as a program: Ctrl-C outside a study's epochs exits 130, no traceback.

  (Inside the epochs, :func:`experiments.common.study.run_study` first writes the
  summary of the epochs done and says how to resume.)
  """
  try:
    main()
  except KeyboardInterrupt:
    sys.stderr.write("\nInterrupted\n")
    raise SystemExit(130) from None


def parse_args(parser: argparse.ArgumentParser, argv, name: str) -> argparse.Namespace:
  """``parser.parse_args(argv)``; with ``--resume DIR``, the flags saved in ``DIR/run.json``.

  The resumed namespace keeps ``--resume`` and sets ``--out DIR``; ``--no-progress``
  is taken from this command line.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parser.parse_args(argv)
  args.argv = argv
  resume = getattr(args, "resume", None)
  if not resume:
    return args
  if getattr(args, "overwrite", False):
    fail(parser, "--resume and --overwrite exclude each other")
  path = os.path.join(resume, RUN_FILE)
  if not os.path.isfile(path):
    fail(parser, f"--resume {resume}: not a results folder (no {RUN_FILE})")
  try:
    saved = results_lib.read_json(path)
    saved_argv = [str(a) for a in saved["argv"]]
  except (OSError, ValueError, KeyError, TypeError) as e:
    fail(parser, f"--resume {resume}: unreadable {RUN_FILE} ({type(e).__name__}: {e})")
  if saved.get("experiment") != name:
    fail(parser, f"--resume {resume}: that folder holds a run of {saved.get('experiment')!r}, "
                 f"not {name!r}")
  resumed = parser.parse_args(saved_argv)
  resumed.argv = saved_argv
  resumed.resume, resumed.out, resumed.overwrite = resume, resume, False
  if getattr(args, "no_progress", False):
    resumed.no_progress = True
  return resumed


def mesh_from_args(args, parser: argparse.ArgumentParser | str = "experiments"):
  """The engine's mesh for ``--devices``/``--parallel``; a bad value exits (one line, code 2)."""
  from experiments.common import train as train_lib

  try:
    return train_lib.engine_mesh(getattr(args, "devices", None),
                                 getattr(args, "parallel", None) or "runs")
  except (TypeError, ValueError) as e:
    fail(parser, f"--devices {getattr(args, 'devices', None)}: {e}")


def check_batch_size(args, batch_size: int, parser: argparse.ArgumentParser | str,
                     flag: str = "--batch-size") -> None:
  """Exits (code 2) if ``batch_size`` exceeds the dataset's training examples."""
  n = TRAIN_SIZES.get(args.dataset)
  repeat = getattr(args, "digits_repeat", None)  # digits repeated N times per epoch
  if n is not None and args.dataset == "digits" and repeat:
    n *= repeat if isinstance(repeat, int) else max(1, TRAIN_SIZES["mnist"] // n)
  if getattr(args, "train_size", None):
    n = min(n, args.train_size) if n else args.train_size
  if n is not None and batch_size > n:
    fail(parser, f"{flag} {batch_size} exceeds the {n} training examples of {args.dataset}")


def _default_out(name: str) -> str:
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
  return os.path.join("results", f"{name}-{stamp}")


def check_out(args, name: str, parser: argparse.ArgumentParser | str = "experiments",
              *, guard_overwrite: bool = True) -> str:
  """The results folder ``--out`` names (or the default), checked; nothing is created.

  Exits (one line, code 2) when it is a file, lies under a file, cannot be created
  or written, or is an existing non-empty folder without ``--resume``/``--overwrite``.
  With ``guard_overwrite``, ``--overwrite`` is refused for a folder without ``run.json``
  (:func:`start_out` empties the folder, so it must hold a run, not a user's files).
  """
  checked = getattr(args, "_out_checked", None)
  if checked:
    return checked
  path = args.out or _default_out(name)
  flag = f"--out {path}"
  resume = getattr(args, "resume", None)
  if os.path.exists(path):
    if not os.path.isdir(path):
      fail(parser, f"{flag}: exists and is not a folder")
    if os.listdir(path) and not resume:
      if not getattr(args, "overwrite", False):
        fail(parser, f"{flag}: folder exists and is not empty (pass --resume {path} to "
                     "continue it, or --overwrite to replace it)")
      if guard_overwrite and not os.path.isfile(os.path.join(path, RUN_FILE)):
        fail(parser, f"{flag}: --overwrite refuses to delete a folder that holds no run "
                     f"({RUN_FILE} missing)")
    if not os.access(path, os.W_OK | os.X_OK):
      fail(parser, f"{flag}: folder is not writable")
  else:
    if resume:
      fail(parser, f"--resume {resume}: no such folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
      parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
      fail(parser, f"{flag}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
      fail(parser, f"{flag}: cannot create it, {parent} is not writable")
  args._out_checked = path
  return path


def start_out(args, name: str, parser: argparse.ArgumentParser | str = "experiments") -> str:
  """Makes the checked results folder and records the flags in ``run.json`` (once).

  With ``--overwrite`` a previous run's folder is emptied first; with ``--resume``
  the folder and its ``run.json`` are kept as they are.
  """
  path = check_out(args, name, parser)
  if not getattr(args, "resume", None):
    if getattr(args, "overwrite", False) and os.path.isdir(path) and os.listdir(path):
      shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    results_lib.write_json(os.path.join(path, RUN_FILE), {
        "experiment": name, "command": f"python -m experiments.{name}".replace(
            "experiments.story", "experiments"),
        "argv": [a for a in getattr(args, "argv", []) if a != "--overwrite"],
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
  return path


def out_dir_from_args(args, name: str) -> str:
  """The checked results folder (see :func:`check_out`) of an experiment that cannot resume.

  Exits (one line, code 2) on ``--resume``: only the study pipeline resumes. With
  ``--overwrite`` the experiment itself decides what it replaces (nothing is deleted).
  """
  prog = f"python -m experiments.{name}"
  if getattr(args, "resume", None):
    fail(prog, f"--resume: {prog} cannot resume a run; start it again with a new --out")
  return check_out(args, name, prog, guard_overwrite=False)


def load_from_args(args) -> data_lib.Dataset:
  """The dataset the flags name; exits with the how-to-prepare message if it is missing.

  With a ``--train-size N`` flag (where an experiment has one), the training split is
  subsampled to N examples (validation and test are kept whole).
  """
  try:
    dataset = data_lib.load_dataset(
        args.dataset, args.data_dir, args.cache_dir or None, args.download, fetch=True,
        mirror=getattr(args, "mnist_mirror", None),
        digits_repeat=getattr(args, "digits_repeat", None),
        progress=not getattr(args, "no_progress", False))
  except (data_lib.DatasetNotAvailableError, data_lib.BadDataError) as e:
    sys.exit(f"error: {e}")
  if getattr(args, "train_size", None):
    dataset = data_lib.subsample(dataset, args.train_size, len(dataset.y_val),
                                 len(dataset.y_test))
  return dataset
