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
import math
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from experiments.common import data as data_lib
from experiments.common import results as results_lib

DEFAULT_CACHE_DIR = data_lib.default_cache_dir()  # one per user: every experiment finds it
RUN_FILE = "run.json"  # the flags of a study, written when its folder is made (for --resume)
LOCK_FILE = ".lock"  # held (flock) by the process that owns a results folder; holds its PID
# Flags that --resume may change: where the data comes from, how the run is shown and where
# it runs (a checkpoint holds host arrays), and --epochs (to extend a run). Any other flag
# given with --resume must equal the saved one.
RESUME_MAY_CHANGE = frozenset({"resume", "no_progress", "log_every", "epochs", "devices",
                               "parallel", "data_dir", "cache_dir", "download", "mnist_mirror",
                               "distributed", "coordinator", "num_processes", "process_id"})
JOIN_FLAGS = ("distributed", "coordinator", "num_processes", "process_id")  # jax.distributed
# Training examples per dataset after the 90/10 train/validation split (checked again
# after loading), so --batch-size is checked before any data is loaded.
TRAIN_SIZES = {"mnist": 54_000, "digits": 1_293}
IMAGE_SIDES = {"mnist": 28, "digits": 8}  # image side per dataset, to check a pooling before


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


def checked(parser: argparse.ArgumentParser | str, fn, *args, flag: str = "", **kwargs):
  """``fn(*args, **kwargs)``; its ValueError/TypeError ends the program in one line (exit 2).

  ``flag`` (e.g. ``"--init"``) starts the message unless it already names a flag.
  """
  try:
    return fn(*args, **kwargs)
  except (TypeError, ValueError) as e:
    message = str(e)
    fail(parser, message if not flag or message.startswith("--") else f"{flag}: {message}")


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
  if not (value > 0 and math.isfinite(value)):
    raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
  return value


def positive_int_list(text: str) -> list[int]:
  """argparse ``type=``: one list syntax for every study, ``6,24,48`` (ints >= 1)."""
  items = [t.strip() for t in str(text).split(",")]
  if not items or any(not t for t in items):
    raise argparse.ArgumentTypeError(f"must be comma-separated ints >= 1, e.g. 6,24,48, got "
                                     f"{text!r}")
  return [_int(t, 1) for t in items]


def int_list(text: str) -> list[int]:
  """argparse ``type=``: comma-separated ints of any sign, e.g. ``-8,-4,0`` (give it as
  ``--flag=-8,-4,0``: argparse reads a separate ``-8`` as a flag)."""
  items = [t.strip() for t in str(text).split(",")]
  if not items or any(not t for t in items):
    raise argparse.ArgumentTypeError(f"must be comma-separated ints, e.g. -8,-4,0, got {text!r}")
  return [_int(t, -(2 ** 31)) for t in items]


def positive_float_list(text: str) -> list[float]:
  """argparse ``type=``: comma-separated finite floats > 0, e.g. ``1.0,1.76,2.5``."""
  items = [t.strip() for t in str(text).split(",")]
  if not items or any(not t for t in items):
    raise argparse.ArgumentTypeError(f"must be comma-separated numbers > 0, got {text!r}")
  return [positive_float(t) for t in items]


def subset_of(allowed: Sequence[str]):
  """argparse ``type=``: a comma-separated subset of ``allowed``, e.g. ``a,c``."""

  def parse(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    if not names or any(n not in allowed for n in names):
      raise argparse.ArgumentTypeError(f"must be a comma-separated subset of "
                                       f"{','.join(allowed)}, got {text!r}")
    return names

  return parse


def fraction(text: str) -> float:
  """argparse ``type=``: a float strictly between 0 and 1."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
  if not 0.0 < value < 1.0:
    raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
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
  add_folder_args(parser)


def add_folder_args(parser: argparse.ArgumentParser, resumable: bool = True) -> None:
  """``--out``, ``--resume``, ``--overwrite`` (each unless the parser has it already)."""
  add = functools.partial(_add_once, parser)
  add("--out", default=None,
      help="results folder (default: results/<experiment>-<UTC time>); an existing non-empty "
           "folder is refused")
  add("--resume", default=None, metavar="DIR",
      help="continue the study saved in DIR from its last finished epoch, with the flags it "
           "was started with" if resumable else "refused: this study cannot resume a run")
  add("--overwrite", action="store_true",
      help="replace an existing results folder given as --out")


def _add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
  if flag not in parser._option_string_actions:  # pylint: disable=protected-access
    parser.add_argument(flag, **kwargs)


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised where SIGINT raises ``KeyboardInterrupt`` (see :func:`entry`)."""


def _on_sigterm(signum, frame):  # pylint: disable=unused-argument
  raise Terminated()


def interrupt_code(exc: BaseException) -> int:
  """The exit code of an interrupted program: 143 for SIGTERM, 130 for Ctrl-C (SIGINT)."""
  return 143 if isinstance(exc, Terminated) else 130


def use_compilation_cache(directory: str = os.path.join("results", "cache", "jax")) -> None:
  """Keeps compiled programs in ``directory`` (jax's persistent cache) for the next run.

  Called by :func:`entry`, i.e. only when an experiment runs as a program
  (``python -m experiments...``); importing ``experiments`` changes nothing. An
  existing ``JAX_COMPILATION_CACHE_DIR`` (or ``jax_compilation_cache_dir``) wins.
  """
  import jax

  if not os.environ.get("JAX_COMPILATION_CACHE_DIR") and not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", directory)


def entry(main) -> None:
  """Runs ``main()`` as a program: the one place an experiment's process is set up.

  * jax's persistent compilation cache is switched on (:func:`use_compilation_cache`);
  * SIGTERM behaves as Ctrl-C (SIGINT): a study writes the summary of the epochs done
    and says how to resume; the exit code is 143 (SIGTERM) or 130 (SIGINT);
  * an interrupt outside a study's epochs prints one line, never a traceback.
  """
  use_compilation_cache()
  try:
    signal.signal(signal.SIGTERM, _on_sigterm)
  except ValueError:  # not the main thread: leave SIGTERM alone
    pass
  try:
    main()
  except KeyboardInterrupt as e:
    sys.stderr.write("\nTerminated\n" if isinstance(e, Terminated) else "\nInterrupted\n")
    raise SystemExit(interrupt_code(e)) from None
  except ValueError as e:
    from experiments.common import train as train_lib

    if not isinstance(e, train_lib.ResumeError):
      raise
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    fail(f"python -m {spec.name}" if spec else "experiments", f"--resume: {e}")


_UNSET = object()


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, object]:
  """The flags (dest -> value) that ``argv`` itself sets, defaults left out."""
  names = {}
  for a in parser._actions:  # pylint: disable=protected-access
    if a.dest != argparse.SUPPRESS:
      names[a.dest] = None if isinstance(a, argparse._AppendAction) else _UNSET  # pylint: disable=protected-access
  ns = parser.parse_args(argv, argparse.Namespace(**names))
  return {k: v for k, v in vars(ns).items() if v is not _UNSET and v is not None}


def _flag(parser: argparse.ArgumentParser, dest: str) -> str:
  for a in parser._actions:  # pylint: disable=protected-access
    if a.dest == dest and a.option_strings:
      return max(a.option_strings, key=len)
  return dest


def parse_args(parser: argparse.ArgumentParser, argv, name: str) -> argparse.Namespace:
  """``parser.parse_args(argv)``; with ``--resume DIR``, the flags saved in ``DIR/run.json``.

  Resume is exact or refused: a flag given with ``--resume`` must equal the saved one,
  except those in :data:`RESUME_MAY_CHANGE` (``--epochs`` extends the run; the data
  location, ``--devices``, ``--no-progress``); a changed flag ends the program with one
  line naming it (exit 2). The resumed namespace keeps ``--resume`` and sets ``--out DIR``.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parser.parse_args(argv)
  args.argv = argv
  resume = getattr(args, "resume", None)
  _join_processes(args, parser)
  if not resume:
    return args
  from experiments.common import distributed

  # Across processes the folder may exist on process 0's machine only: it reads run.json.
  resumed = distributed.on_primary(lambda: _resumed_args(parser, args, argv, name), share=True)
  for dest in JOIN_FLAGS:  # how this process joined: its own flags, not the saved ones
    if hasattr(args, dest):
      setattr(resumed, dest, getattr(args, dest))
  return resumed


def _resumed_args(parser, args, argv: list[str], name: str) -> argparse.Namespace:
  resume = args.resume
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
  given = _given(parser, argv)
  changed = [d for d, v in given.items()
             if d not in RESUME_MAY_CHANGE and d != "out" and getattr(resumed, d, None) != v]
  if given.get("out") not in (None, resume):
    changed.insert(0, "out")
  if changed:
    fail(parser, f"--resume {resume}: the run was started with other values of "
                 f"{', '.join(_flag(parser, d) for d in changed)}; resume it with its own flags "
                 "(only --epochs, --devices, --no-progress and the data location may change) "
                 "or start a new run with --out")
  extra: list[str] = []
  for d in sorted(set(given) & RESUME_MAY_CHANGE - {"resume"}):
    setattr(resumed, d, given[d])
    if d == "epochs" and "--epochs" in parser._option_string_actions:  # pylint: disable=protected-access
      extra = ["--epochs", str(given[d])]
  if extra:  # a longer run: the new --epochs is recorded for the next --resume
    saved_argv = [a for i, a in enumerate(saved_argv)
                  if a != "--epochs" and not a.startswith("--epochs=")
                  and (i == 0 or saved_argv[i - 1] != "--epochs")] + extra
  resumed.argv = saved_argv
  resumed.resume, resumed.out, resumed.overwrite = resume, resume, False
  return resumed


def _join_processes(args, parser) -> None:
  """``jax.distributed.initialize`` when the flags ask for it (before any jax work)."""
  if hasattr(args, "distributed"):  # a study with the flags (study.add_args)
    from experiments.common import distributed

    distributed.initialize_from_args(args, parser)


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


def _contents(path: str) -> list[str]:
  """A folder's entries, its lock file left out."""
  return [e for e in os.listdir(path) if e != LOCK_FILE]


def _check_writable_dir(path: str, flag: str, parser) -> None:
  """Exits (one line) unless ``path`` is a writable folder or can be created as one."""
  if os.path.exists(path):
    if not os.path.isdir(path):
      fail(parser, f"{flag}: exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
      fail(parser, f"{flag}: folder is not writable")
    return
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    fail(parser, f"{flag}: {parent} is a file, not a folder")
  if not os.access(parent, os.W_OK | os.X_OK):
    fail(parser, f"{flag}: cannot create it, {parent} is not writable")


def holds_run(path: str) -> bool:
  """True when ``path`` is a results folder an experiment made (it holds ``run.json``)."""
  return os.path.isfile(os.path.join(path, RUN_FILE))


def check_out(args, name: str, parser: argparse.ArgumentParser | str = "experiments",
              *, guard_overwrite: bool = True) -> str:
  """The results folder ``--out`` names (or the default), checked; nothing is created.

  Exits (one line, code 2) when it is a file, lies under a file, cannot be created
  or written, is an existing non-empty folder without ``--resume``/``--overwrite``,
  or is in use by another running experiment (its lock is held). ``--overwrite`` is
  refused for a folder that holds no run (no ``run.json``): :func:`start_out` empties
  the folder, so it must hold a run, never a user's files (the one check every
  experiment shares; ``guard_overwrite`` is kept for old callers and ignored). The
  ``--cache-dir`` (when the experiment has one) is checked too, before any data.
  """
  del guard_overwrite
  checked = getattr(args, "_out_checked", None)
  if checked:
    return checked
  from experiments.common import distributed

  # Across processes, process 0 alone checks (and later takes and writes) the folder;
  # a refusal there ends every process with its exit code.
  path = distributed.on_primary(lambda: _check_out(args, name, parser),
                                args.out or _default_out(name))
  args._out_checked = path
  return path


def _check_out(args, name: str, parser) -> str:
  path = args.out or _default_out(name)
  if not args.out:  # a default name is never an existing folder: -2, -3, ... if taken
    base, k = path, 1
    while os.path.exists(path):
      k += 1
      path = f"{base}-{k}"
  flag = f"--out {path}"
  resume = getattr(args, "resume", None)
  if os.path.exists(path):
    if not os.path.isdir(path):
      fail(parser, f"{flag}: exists and is not a folder")
    if _contents(path) and not resume:
      if not getattr(args, "overwrite", False):
        fail(parser, f"{flag}: folder exists and is not empty (pass --resume {path} to "
                     "continue it, or --overwrite to replace it)")
      if not holds_run(path):
        fail(parser, f"{flag}: --overwrite refuses to delete a folder that holds no run "
                     f"({RUN_FILE} missing)")
    if not os.access(path, os.W_OK | os.X_OK):
      fail(parser, f"{flag}: folder is not writable")
    holder = _lock_holder(path)
    if holder is not None:
      fail(parser, f"{flag}: in use by another run (PID {holder}); wait for it to end or "
                   "choose another --out")
  else:
    if resume:
      fail(parser, f"--resume {resume}: no such folder")
    _check_writable_dir(path, flag, parser)
  if getattr(args, "cache_dir", None):
    _check_writable_dir(args.cache_dir, f"--cache-dir {args.cache_dir}", parser)
  args._out_checked = path
  return path


# --------------------------------------------------------------------------- folder ownership

_HELD: dict[str, int] = {}  # real path of a folder this process owns -> its lock's fd


def _read_pid(lock: str) -> int | None:
  try:
    with open(lock) as f:
      return int(f.read().split()[0])
  except (OSError, ValueError, IndexError):
    return None


def _alive(pid: int | None) -> bool:
  if not pid or pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _lock_holder(path: str) -> int | None:
  """The PID of another live process that owns ``path`` (holds its lock), else None."""
  if os.path.realpath(path) in _HELD:
    return None
  lock = os.path.join(path, LOCK_FILE)
  if not os.path.exists(lock):
    return None
  try:
    import fcntl
  except ImportError:  # no flock: a lock whose PID is alive is held
    pid = _read_pid(lock)
    return pid if _alive(pid) else None
  try:
    fd = os.open(lock, os.O_RDONLY)
  except OSError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError:
    return _read_pid(lock) or -1
  finally:
    os.close(fd)  # closing drops the probe's shared lock
  return None


def take_folder(path: str, parser: argparse.ArgumentParser | str = "experiments") -> None:
  """Makes this process the owner of results folder ``path`` (until it exits).

  The owner holds an exclusive ``flock`` on ``path/.lock`` (which records its PID).
  The kernel drops the lock when the process dies, however it dies, so a lock left
  by a killed run is stale and taken over (with one line saying so). A folder owned
  by a live run: one line, exit 2.
  """
  key = os.path.realpath(path)
  if key in _HELD:
    return
  lock = os.path.join(path, LOCK_FILE)
  old = _read_pid(lock) if os.path.exists(lock) else None
  try:
    import fcntl
  except ImportError:
    fcntl = None
  if fcntl is None:  # create-exclusive, a stale PID removed once
    for _ in range(2):
      try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        break
      except FileExistsError:
        pid = _read_pid(lock)
        if _alive(pid):
          fail(parser, f"--out {path}: in use by another run (PID {pid})")
        os.remove(lock)
    else:
      fail(parser, f"--out {path}: in use by another run")
  else:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      os.close(fd)
      fail(parser, f"--out {path}: in use by another run (PID {_read_pid(lock)}); wait for it "
                   "to end or choose another --out")
  if old and old != os.getpid():
    print(f"{path}: taking over the lock of run PID {old}, which is no longer running")
  os.ftruncate(fd, 0)
  os.write(fd, f"{os.getpid()}\n".encode())
  _HELD[key] = fd


def release_folder(path: str) -> None:
  """Gives up ownership of ``path`` (the lock file stays, stale)."""
  fd = _HELD.pop(os.path.realpath(path), None)
  if fd is not None:
    os.close(fd)


def _new_folder(path: str, default: bool, parser) -> str:
  """Creates ``path`` exclusively (a default name gets ``-2``, ``-3``, ... if taken)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  base, k = path, 1
  while True:
    try:
      os.mkdir(path)
      return path
    except FileExistsError:
      if not default:
        if os.path.isdir(path) and not _contents(path):
          return path  # an empty folder: the lock decides who owns it
        fail(parser, f"--out {path}: another run created it meanwhile; choose another --out")
      k += 1
      path = f"{base}-{k}"


def _claim(path: str, args, resume, overwrite: bool, parser) -> None:
  """With the lock held: what the folder must hold for this run, and the emptying."""
  run_file = os.path.join(path, RUN_FILE)
  argv = [a for a in getattr(args, "argv", []) if a != "--overwrite"]
  if resume:
    saved = results_lib.read_json(run_file)
    if saved.get("argv") != argv:
      results_lib.write_json(run_file, {**saved, "argv": argv})
    return
  if _contents(path):
    if not overwrite:  # filled by another run between the check and the lock
      fail(parser, f"--out {path}: folder is not empty (another run wrote in it meanwhile); "
                   "choose another --out")
    if not holds_run(path):
      fail(parser, f"--out {path}: --overwrite refuses to delete a folder that holds no run "
                   f"({RUN_FILE} missing)")
    for entry_name in _contents(path):
      entry_path = os.path.join(path, entry_name)
      if os.path.isdir(entry_path) and not os.path.islink(entry_path):
        shutil.rmtree(entry_path)
      else:
        os.remove(entry_path)


def start_out(args, name: str, parser: argparse.ArgumentParser | str = "experiments") -> str:
  """Takes the checked results folder (see :func:`take_folder`) and records the flags.

  A new folder is created exclusively (two runs never share one: a default name gets
  a suffix, a taken ``--out`` is refused); with ``--overwrite`` a previous run's folder
  is emptied (after the lock is taken); with ``--resume`` the folder is kept and
  ``run.json`` updated when ``--epochs`` changed.
  """
  from experiments.common import distributed

  path = check_out(args, name, parser)
  # Across processes only process 0 makes, locks and writes it; the others write nothing.
  return distributed.on_primary(lambda: _start_out(args, name, parser, path), path)


def _start_out(args, name: str, parser, path: str) -> str:
  resume = getattr(args, "resume", None)
  overwrite = getattr(args, "overwrite", False)
  if not resume and not os.path.isdir(path):
    path = _new_folder(path, getattr(args, "out", None) is None, parser)
    args._out_checked = path
  take_folder(path, parser)
  try:
    _claim(path, args, resume, overwrite, parser)
  except BaseException:
    release_folder(path)
    raise
  if resume:
    return path
  run_file = os.path.join(path, RUN_FILE)
  argv = [a for a in getattr(args, "argv", []) if a != "--overwrite"]
  results_lib.write_json(run_file, {
      "experiment": name, "command": f"python -m experiments.{name}".replace(
          "experiments.story", "experiments"),
      "argv": argv, "pid": os.getpid(),
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
  return path


def out_dir_from_args(args, name: str) -> str:
  """The checked results folder of an experiment that cannot resume, taken (see start_out).

  Exits (one line, code 2) on ``--resume``: only the study pipeline resumes.
  """
  prog = f"python -m experiments.{name}"
  if getattr(args, "resume", None):
    fail(prog, f"--resume: {prog} cannot resume a run; start it again with a new --out")
  check_out(args, name, prog)
  return args._out_checked


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
