"""The training engine: many MLP runs (seeds x inits) in one compiled program.

* The dataset lives on the device. One epoch is one compiled call: ``lax.scan`` over
  the shuffled batch indices (the last partial batch is dropped; every epoch
  reshuffles with ``fold_in(key, epoch)``, so epoch e's batches depend only on the
  run's key and e). Evaluation (validation each epoch, test at the end) is compiled.
* Several runs share the program through ``jax.vmap``: their parameters are stacked
  on a leading run axis. Runs share the architecture; each has its own kernel/bias
  init (applied before stacking), seed, initial weights and shuffling order. A run
  trained alone gives the same numbers as inside a batch of runs.
* Devices: a mesh with a ``"runs"`` axis shards the run axis (runs are independent:
  no communication; with fewer runs than devices each run gets its own device,
  otherwise the run count is padded to a multiple of the axis with copies of the
  last run, which are dropped from every output). A mesh with a ``"data"``
  axis shards every batch along its example axis, parameters replicated (XLA adds
  the gradient all-reduce): data parallelism for one big run. :func:`engine_mesh`
  builds either with :func:`jinit.sharding.make_mesh`.
* Loss: cross-entropy summed over the batch (PyTorch's ``reduction="sum"``), plain
  ``optax.sgd``; reported losses are the mean per example. The train loss/accuracy
  of an epoch are measured on the whole training split after the epoch (as the
  course does), or, with ``train_metrics="running"``, averaged over the epoch's
  batches before each update (no extra pass).
* A non-finite loss stops that run (message naming init, seed and epoch); the
  others go on; its history so far is kept.
* Checkpoints: with a :class:`Checkpointer`, the stacked parameters, optimizer
  state, shuffling keys, histories and epoch are saved after every epoch (Orbax
  ``CheckpointManager``, last 2 kept, each save atomic); ``train(..., resume=True)``
  continues from the last one and gives the same numbers as an uninterrupted run.

:func:`train` is four steps: :func:`prepare` (data and initial state on the
devices), :func:`compile_programs`, :func:`run_epochs`, :func:`report` (test metrics).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.common import data as data_lib
from experiments.common import distributed
from experiments.common import models
from experiments.common import results as results_lib
from jinit._src import validation

PostInit = Callable[[Any, jax.Array, jax.Array], Any]  # (params, key, x_batch) -> params
RUNS_AXIS = "runs"
DATA_AXIS = "data"
PARALLEL = (RUNS_AXIS, DATA_AXIS)
SHUFFLES = ("shared", "per_run")
TRAIN_METRICS = ("eval", "running")


class ResumeError(ValueError):
  """A checkpoint that cannot continue this study (another config or runs, or unreadable)."""


# jinit's own checks (TypeError for a non-int, ValueError below the minimum or for a
# value not among the choices; each names the argument).
check_int = validation.check_int
check_choice = validation.check_choice


class _Fields:
  """``to_json``: a dataclass's fields as a (JSON-able) dict."""

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Fields):
  """Architecture and optimization shared by every run (defaults: the course page)."""

  activation: str = "sigmoid"
  hidden: int = 50
  depth: int = 5  # hidden layers: Dense(784->50), 4 x Dense(50->50); then Dense(50->10)
  lr: float = 0.01
  batch_size: int = 32
  epochs: int = 30
  eval_batch_size: int = 1000  # chunk size of the compiled evaluation
  init_batch_size: int = 256  # examples handed to ``post_init``
  # "per_run": each run shuffles with its own seed (as torch.manual_seed(seed) would).
  # "shared": every run sees the same batch order, from ``data_seed``, so seeds and
  # inits differ in the initial weights only.
  shuffle: str = "per_run"
  data_seed: int = 0
  # "eval": train loss/accuracy measured on the whole training split after each epoch
  # (as the course does: its epoch-1 ReLU train loss is below the validation loss);
  # "running": the mean over the epoch's batches before each update (free, ~25% faster).
  train_metrics: str = "eval"

  def __post_init__(self):
    if not isinstance(self.activation, str):
      raise TypeError(f"activation must be a str, got {self.activation!r}")
    models.check_activation(self.activation)
    check_choice(self.shuffle, "shuffle", SHUFFLES)
    check_choice(self.train_metrics, "train_metrics", TRAIN_METRICS)
    check_int(self.data_seed, "data_seed", minimum=0)
    for name in ("hidden", "batch_size", "epochs", "eval_batch_size", "init_batch_size"):
      check_int(getattr(self, name), name)
    check_int(self.depth, "depth", minimum=0)
    if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
      raise TypeError(f"lr must be a number, got {type(self.lr).__name__} {self.lr!r}")
    if not (math.isfinite(self.lr) and self.lr > 0):
      raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")


@dataclasses.dataclass
class RunHistory(_Fields):
  """Per-epoch metrics of one run (losses: mean cross-entropy per example)."""

  init: str
  bias_init: str
  seed: int
  train_loss: list[float] = dataclasses.field(default_factory=list)
  val_loss: list[float] = dataclasses.field(default_factory=list)
  train_acc: list[float] = dataclasses.field(default_factory=list)
  val_acc: list[float] = dataclasses.field(default_factory=list)
  test_loss: float | None = None
  test_acc: float | None = None
  stopped: str | None = None  # why the run stopped early (non-finite loss), else None
  diverged_epoch: int | None = None  # the epoch whose loss was non-finite


@dataclasses.dataclass
class TrainResult:
  """What :func:`train` returns. ``params`` are the runs' parameters, stacked on axis 0."""

  config: TrainConfig
  dataset: str
  sizes: dict[str, int]
  runs: list[RunHistory]
  epoch_seconds: list[float]
  compile_seconds: float
  init_seconds: float
  devices: int
  params: Any = None
  finished: bool = False
  parallel: str | None = None  # "runs", "data" or None (one device)
  resumed_from: int | None = None  # the checkpoint epoch a resumed run started after
  post_init: bool = False  # the initial params went through a post-init step (LSUV)

  @property
  def epochs_done(self) -> int:
    return len(self.epoch_seconds)

  def to_json(self) -> dict[str, Any]:
    """The ``history.json`` layout (plus a few descriptive keys)."""
    return {
        "config": {**self.config.to_json(), "dataset": self.dataset, "sizes": self.sizes,
                   "devices": self.devices, "parallel": self.parallel},
        "runs": [r.to_json() for r in self.runs],
        "epoch_seconds": list(self.epoch_seconds),
        "compile_seconds": self.compile_seconds,
        "init_seconds": self.init_seconds,
        "finished": self.finished,
        "resumed_from": self.resumed_from,
        "post_init": self.post_init,
    }


# --------------------------------------------------------------------------- devices


def engine_mesh(devices: int | None = None, parallel: str = RUNS_AXIS) -> Mesh | None:
  """A 1-D mesh over the first ``devices`` devices for :func:`train`; ``None`` for one.

  Args:
    devices: how many devices (default: all local devices).
    parallel: ``"runs"`` shards the run axis (independent runs, no communication);
      ``"data"`` shards each batch (data parallelism, for one big run).

  Raises:
    TypeError: ``devices`` is not an int, or ``parallel`` not a str.
    ValueError: ``devices`` < 1 or more than available, or an unknown ``parallel``.
  """
  from jinit import sharding as js

  check_choice(parallel, "parallel", PARALLEL)
  if devices is not None and distributed.multi_process():
    check_int(devices, "devices")
    if devices != jax.device_count():
      raise ValueError(f"devices={devices}: across {jax.process_count()} processes the study "
                       f"uses all {jax.device_count()} devices of all processes (every "
                       "process computes); leave --devices out")
  mesh = js.make_mesh(devices, (parallel,))  # the device-count checks live there
  return None if mesh.devices.size == 1 else mesh


def _axis(mesh: Mesh | None, name: str) -> int:
  return 1 if mesh is None else int(mesh.shape.get(name, 1))


def _fit_runs(mesh: Mesh | None, runs: int) -> Mesh | None:
  """Fewer runs than devices on a runs-only mesh: one run per device, on the first ones."""
  if mesh is None or tuple(mesh.axis_names) != (RUNS_AXIS,) or mesh.devices.size <= runs:
    return mesh
  if distributed.multi_process():  # every process computes: pad the runs instead
    return mesh
  if runs == 1:
    return None
  from jinit import sharding as js

  return js.make_mesh(runs, (RUNS_AXIS,), devices=list(mesh.devices.flat))


def _check_mesh(mesh):
  if mesh is None:
    return
  if not isinstance(mesh, Mesh):
    raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")
  unknown = set(mesh.axis_names) - set(PARALLEL)
  if unknown:
    raise ValueError(f"mesh axes must be among {PARALLEL}, got {tuple(mesh.axis_names)}")


# --------------------------------------------------------------------------- the programs


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _make_epoch_fn(apply_fn, tx, n_train: int, batch_size: int, mesh: Mesh | None,
                   shared_order: bool):
  """``epoch(params, opt_state, keys, epoch, X, Y) -> (params, opt_state, loss, acc)``.

  Every argument but X, Y carries the run axis. Loss and accuracy are (runs,) means
  over the epoch's training batches.
  """
  num_batches = n_train // batch_size  # drop the last partial batch
  runs_ax = RUNS_AXIS if _axis(mesh, RUNS_AXIS) > 1 else None
  data_ax = DATA_AXIS if _axis(mesh, DATA_AXIS) > 1 else None

  def loss_fn(params, x, y):
    logits = apply_fn({"params": params}, x)
    loss = _cross_entropy(logits, y)
    return loss.sum(), jnp.sum(jnp.argmax(logits, -1).astype(y.dtype) == y)  # reduction="sum"

  def run_step(params, opt_state, x, y):
    (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, correct

  def constrain(tree, spec):
    if mesh is None:
      return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, spec))

  def epoch(params, opt_state, keys, epoch_index, x_all, y_all):
    def order(key):
      perm = jax.random.permutation(jax.random.fold_in(key, epoch_index), n_train)
      return perm[:num_batches * batch_size].reshape(num_batches, batch_size)

    if shared_order:  # one order for all runs: x is shared, so layer 1 is one wide GEMM
      batches = order(keys)  # (batches, batch)
      batch_axis, x_spec = None, P(data_ax)
    else:
      batches = jnp.swapaxes(jax.vmap(order)(keys), 0, 1)  # (batches, runs, batch)
      batch_axis, x_spec = 0, P(runs_ax, data_ax)

    def body(carry, idx):
      params, opt_state = carry
      x, y = x_all[idx], y_all[idx]  # ([runs,] batch, D), ([runs,] batch)
      x, y = constrain(x, x_spec), constrain(y, x_spec)
      params, opt_state, loss, correct = jax.vmap(
          run_step, in_axes=(0, 0, batch_axis, batch_axis))(params, opt_state, x, y)
      params, opt_state = constrain((params, opt_state), P(runs_ax))
      return (params, opt_state), (loss, correct)

    (params, opt_state), (losses, corrects) = jax.lax.scan(body, (params, opt_state), batches)
    seen = num_batches * batch_size
    return (params, opt_state, losses.sum(0) / seen,
            corrects.sum(0).astype(jnp.float32) / seen)

  return epoch


def _make_eval_fn(apply_fn):
  """``evaluate(params, x, y, mask) -> (loss_sum, correct)`` per run, on one chunk.

  Val and test are padded to chunks of one size, so one compiled program serves both.
  """

  def evaluate(params, x, y, mask):
    logits = jax.vmap(lambda p: apply_fn({"params": p}, x))(params)  # (runs, chunk, C)
    loss = (_cross_entropy(logits, y[None, :]) * mask[None, :]).sum(-1)
    correct = ((jnp.argmax(logits, -1).astype(y.dtype) == y[None, :]).astype(mask.dtype)
               * mask[None, :]).sum(-1)
    return loss, correct

  return evaluate


def how_long(seconds: float) -> str:
  """A time estimate as the studies print it: ``"42 s"`` under two minutes, else ``"3.5 min"``."""
  return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _time_estimate(first_epoch_seconds: float, epochs_left: int) -> str:
  """What the first epoch (training and evaluation) says about the rest of the run."""
  left = first_epoch_seconds * epochs_left
  return (f"First epoch: {first_epoch_seconds:.1f} s; the {epochs_left} epoch(s) left should "
          f"take about {how_long(left)} on this machine (more if it is busy)")


def _evaluate(eval_fn, params, chunks, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Mean loss and accuracy per run over a chunked split of ``n`` examples."""
  outs = [eval_fn(params, *chunk) for chunk in chunks]
  loss = sum(distributed.to_host(o[0]).astype(np.float64) for o in outs) / n
  acc = sum(distributed.to_host(o[1]).astype(np.float64) for o in outs) / n
  return loss, acc


def _chunked(x: np.ndarray, y: np.ndarray, chunk: int):
  """Zero-padded chunks ``[(x (chunk, D), y (chunk,), mask (chunk,)), ...]`` of a split."""
  n = len(y)
  chunks = max(1, -(-n // chunk))
  pad = chunks * chunk - n
  xp = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)]).reshape(chunks, chunk, -1)
  yp = np.concatenate([y, np.zeros((pad,), y.dtype)]).reshape(chunks, chunk)
  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return list(zip(xp, yp, mask.reshape(chunks, chunk)))


# --------------------------------------------------------------------------- init


def _host_unstack(tree, n):
  host = jax.tree.map(np.asarray, tree)
  return [jax.tree.map(lambda leaf, i=i: leaf[i], host) for i in range(n)]


def _host_stack(trees):
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)


def _pad_runs(tree, n_pad: int):
  """Appends ``n_pad`` copies of the last run along axis 0 of every leaf."""
  if not n_pad:
    return tree
  return jax.tree.map(
      lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], n_pad, axis=0)]), tree)


def _take_runs(tree, n: int):
  return jax.tree.map(lambda a: a[:n], tree)


def init_params(specs: Sequence[models.RunSpec], config: TrainConfig, input_dim: int,
                num_classes: int):
  """``(params, shuffle_keys, hook_keys)`` of the runs, in ONE compiled program.

  Run i gets ``k = jax.random.key(specs[i].seed)``; ``split(k, 3)`` are its init,
  shuffling and ``post_init`` keys. With ``config.shuffle == "shared"`` the
  shuffling key is ``jax.random.key(config.data_seed)`` for every run (a scalar key).
  Runs with the same (kernel, bias) init share one vmapped ``model.init``; the
  groups are concatenated back in spec order, so params are stacked on a leading
  run axis.
  """
  dummy = jnp.zeros((1, input_dim), jnp.float32)
  groups: dict[tuple[str, str], list[int]] = {}
  for i, spec in enumerate(specs):
    groups.setdefault(spec.group, []).append(i)
  order = np.argsort(np.concatenate([np.asarray(m) for m in groups.values()]), kind="stable")
  group_models = [models.build_model(specs[m[0]], hidden=config.hidden, depth=config.depth,
                                     num_classes=num_classes, activation=config.activation)
                  for m in groups.values()]

  def setup(seeds):
    keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s), 3))(seeds)
    parts = []
    for model, members in zip(group_models, groups.values()):
      init = jax.vmap(lambda k, model=model: model.init(k, dummy)["params"])
      parts.append(init(keys[np.asarray(members), 0]))
    params = jax.tree.map(lambda *leaves: jnp.concatenate(leaves)[order], *parts)
    shuffle = jax.random.key(config.data_seed) if config.shuffle == "shared" else keys[:, 1]
    return params, shuffle, keys[:, 2]

  seeds = np.asarray([s.seed for s in specs], np.uint32)
  return jax.jit(setup)(seeds)


# --------------------------------------------------------------------------- checkpoints


class Checkpointer:
  """Saves and restores the engine's state after every epoch (Orbax, last ``keep`` kept).

  A checkpoint holds the runs' stacked parameters and optimizer state (host arrays,
  so a study can resume on another device count), the shuffling keys' data, and as
  JSON the epoch, per-run histories, epoch times and the config. Each save is atomic
  (Orbax writes a temporary folder and renames it), so a kill mid-save leaves the
  previous checkpoint intact.

  Across ``jax.distributed`` processes process 0 alone reads and writes the folder
  (the state it is handed is gathered, whole, in every process); what it restores is
  sent to the others, which need no copy of the folder.
  """

  def __init__(self, directory: str, keep: int = 2):
    import orbax.checkpoint as ocp

    self._ocp = ocp
    self.directory = os.path.abspath(directory)
    keep = check_int(keep, "keep")
    self.manager = None

    def make():
      extra = {}
      if distributed.multi_process():  # Orbax's barriers: process 0 only (it must not create)
        extra["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
            primary_host=0, active_processes={0})
        os.makedirs(self.directory, exist_ok=True)
      options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not extra,
                                             enable_async_checkpointing=False, **extra)
      self.manager = ocp.CheckpointManager(self.directory, options=options)

    distributed.on_primary(make)  # a failure there ends every process

  def _manager(self):
    """The Orbax manager (process 0's; only process 0 calls this)."""
    assert self.manager is not None, "the checkpoint folder is process 0's"
    return self.manager

  def latest_epoch(self) -> int | None:
    return distributed.on_primary(lambda: self._manager().latest_step(), share=True)

  def save(self, epoch: int, state: dict, meta: dict) -> None:
    if self.manager is None:  # not process 0: it writes nothing
      return
    ocp = self._ocp
    self.manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave(results_lib.json_safe(meta))))
    self.manager.wait_until_finished()

  def restore(self, epoch: int | None = None, warn=None) -> tuple[dict, dict]:
    """The state and meta of checkpoint ``epoch`` (default: the newest readable one).

    Without ``epoch``, an unreadable newest checkpoint (corrupted, half-deleted) is
    skipped for the previous one, with one line to ``warn`` (default: stderr).

    Raises:
      ResumeError: no checkpoint can be read.
    """
    return distributed.on_primary(lambda: self._restore(epoch, warn), share=True)

  def _restore(self, epoch: int | None, warn) -> tuple[dict, dict]:
    ocp, manager = self._ocp, self._manager()
    steps = sorted(manager.all_steps(), reverse=True) if epoch is None else [epoch]
    if not steps:
      raise ResumeError(f"no checkpoint in {self.directory}")
    say = warn or (lambda m: sys.stderr.write(m + "\n"))
    for i, step in enumerate(steps):
      try:
        out = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        if not isinstance(out.meta, dict) or "result" not in out.meta:
          raise ValueError("its meta data is incomplete")
        return out.state, out.meta
      except Exception as e:  # noqa: BLE001  whatever Orbax or JSON raise for a damaged one
        first = (str(e).strip().splitlines() or [""])[0][:160]
        if i + 1 == len(steps):
          raise ResumeError(f"checkpoint {step} in {self.directory} is unreadable "
                            f"({type(e).__name__}: {first}) and there is no older one") from None
        say(f"WARNING: checkpoint {step} in {self.directory} is unreadable "
            f"({type(e).__name__}: {first}); resuming from checkpoint {steps[i + 1]}")
    raise AssertionError("unreachable")

  def close(self) -> None:
    if self.manager is not None:
      self.manager.close()


# --------------------------------------------------------------------------- the engine


@dataclasses.dataclass
class Prepared:
  """Step 1's output: data and the initial training state on the devices."""

  specs: list[models.RunSpec]
  config: TrainConfig
  dataset: data_lib.Dataset
  mesh: Mesh | None
  runs: int  # real runs (the state may hold padding runs after them)
  n_pad: int
  model: Any
  tx: Any
  x_train: Any
  y_train: Any
  val: list
  test: list
  train_chunks: list | None
  params: Any
  opt_state: Any
  shuffle_keys: Any
  init_seconds: float
  state_sharding: Any = None

  def put(self, tree, spec=P()):
    return distributed.put(tree, None if self.mesh is None else NamedSharding(self.mesh, spec))


def prepare(dataset: data_lib.Dataset, specs: Sequence[models.RunSpec],
            config: TrainConfig = TrainConfig(), *, post_init: PostInit | None = None,
            mesh: Mesh | None = None, skip_post_init: bool = False) -> Prepared:
  """Step 1: checks, data on the devices, initial params (jinit init, then ``post_init``).

  Raises:
    TypeError: ``specs`` holds something other than :class:`models.RunSpec`, or a bad mesh.
    ValueError: no specs, a batch larger than the training set, or a batch size not
      divisible by the mesh's ``"data"`` axis.
  """
  specs = list(specs)
  if not specs:
    raise ValueError("specs must be a non-empty list of RunSpec")
  if not all(isinstance(s, models.RunSpec) for s in specs):
    raise TypeError("specs must be a list of RunSpec")
  if not isinstance(config, TrainConfig):
    raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
  _check_mesh(mesh)
  mesh = _fit_runs(mesh, len(specs))
  n_data, n_run_dev = _axis(mesh, DATA_AXIS), _axis(mesh, RUNS_AXIS)
  if config.batch_size % n_data:
    raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of "
                     f"data-parallel devices ({n_data})")
  n_train = len(dataset.y_train)
  if n_train < config.batch_size:
    raise ValueError(f"batch_size={config.batch_size} exceeds the {n_train} training examples")
  runs = len(specs)
  n_pad = -runs % n_run_dev

  def put(tree, spec=P()):
    return distributed.put(tree, None if mesh is None else NamedSharding(mesh, spec))

  data_spec = P(DATA_AXIS) if n_data > 1 else P()
  x_train, y_train = put(dataset.x_train), put(dataset.y_train)  # replicated
  chunk = -(-min(config.eval_batch_size, max(len(dataset.y_val), len(dataset.y_test))) // n_data)
  chunk *= n_data
  splits = [(dataset.x_val, dataset.y_val), (dataset.x_test, dataset.y_test)]
  if config.train_metrics == "eval":
    splits.append((dataset.x_train, dataset.y_train))
  val, test, *train_chunks = (
      [tuple(put(a, data_spec) for a in part) for part in _chunked(x, y, chunk)]
      for x, y in splits)

  t0 = time.perf_counter()
  params, shuffle_keys, hook_keys = init_params(specs, config, dataset.input_dim,
                                                dataset.num_classes)
  if post_init is not None and not skip_post_init:
    n_hook = min(config.init_batch_size, n_train)
    per_run = _host_unstack(params, runs)
    for i, spec in enumerate(specs):  # the batch: n_hook examples drawn with the seed
      idx = np.sort(np.random.default_rng(spec.seed).choice(n_train, n_hook, replace=False))
      per_run[i] = post_init(per_run[i], hook_keys[i], jnp.asarray(dataset.x_train[idx]))
    params = _host_stack(per_run)
  run_spec = P(RUNS_AXIS) if n_run_dev > 1 else P()
  params = put(_pad_runs(params, n_pad), run_spec)
  if config.shuffle == "per_run":
    shuffle_keys = put(_pad_runs(shuffle_keys, n_pad), run_spec)
  else:
    shuffle_keys = put(shuffle_keys)
  model = models.build_model(specs[0], hidden=config.hidden, depth=config.depth,
                             num_classes=dataset.num_classes, activation=config.activation)
  tx = optax.sgd(config.lr)
  opt_state = put(jax.vmap(tx.init)(params), run_spec)
  jax.block_until_ready(params)
  return Prepared(specs, config, dataset, mesh, runs, n_pad, model, tx, x_train, y_train, val,
                  test, train_chunks[0] if train_chunks else None, params, opt_state,
                  shuffle_keys, time.perf_counter() - t0, run_spec)


@dataclasses.dataclass
class Compiled:
  """Step 2's output: the epoch and evaluation programs, compiled ahead of time."""

  epoch_fn: Any
  eval_fn: Any
  seconds: float


def compile_programs(prep: Prepared) -> Compiled:
  """Step 2: compiles one epoch and one evaluation chunk (so epoch times are run time)."""
  t0 = time.perf_counter()
  config = prep.config
  epoch_fn = jax.jit(_make_epoch_fn(prep.model.apply, prep.tx, len(prep.dataset.y_train),
                                    config.batch_size, prep.mesh, config.shuffle == "shared"))
  epoch_fn = epoch_fn.lower(prep.params, prep.opt_state, prep.shuffle_keys, np.int32(0),
                            prep.x_train, prep.y_train).compile()
  eval_fn = jax.jit(_make_eval_fn(prep.model.apply)).lower(prep.params, *prep.val[0]).compile()
  return Compiled(epoch_fn, eval_fn, time.perf_counter() - t0)


def _state_to_host(prep: Prepared, params, opt_state) -> dict:
  host = lambda t: jax.tree.map(lambda a: distributed.to_host(a)[:prep.runs], t)
  keys = prep.shuffle_keys
  key_data = distributed.to_host(jax.random.key_data(keys))
  if prep.config.shuffle == "per_run":
    key_data = key_data[:prep.runs]
  return {"params": host(params),
          "opt_state": {str(i): leaf for i, leaf in enumerate(jax.tree.leaves(host(opt_state)))},
          "shuffle_key_data": key_data}


def _restore_state(prep: Prepared, state: dict):
  """(params, opt_state) on the devices from a checkpoint's host arrays (padded again)."""
  params = jax.tree.map(lambda ref, a: np.asarray(a, ref.dtype), prep.params, state["params"])
  want = jax.tree.map(lambda a: a.shape[1:], prep.params)
  got = jax.tree.map(lambda a: np.shape(a)[1:], params)
  if want != got or len(jax.tree.leaves(params)[0]) != prep.runs:
    raise ValueError("the checkpoint's parameters do not match this study's model and runs")
  leaves, treedef = jax.tree.flatten(prep.opt_state)
  saved = state.get("opt_state", {}) or {}
  opt_leaves = [np.asarray(saved[str(i)], leaf.dtype) for i, leaf in enumerate(leaves)]
  keys = np.asarray(state["shuffle_key_data"], np.uint32)
  if not np.array_equal(keys, distributed.to_host(jax.random.key_data(prep.shuffle_keys))[
      :prep.runs if prep.config.shuffle == "per_run" else None]):
    raise ValueError("the checkpoint's shuffling keys differ from this study's seeds")
  params = prep.put(_pad_runs(params, prep.n_pad), prep.state_sharding)
  opt_state = prep.put(_pad_runs(jax.tree.unflatten(treedef, opt_leaves), prep.n_pad),
                       prep.state_sharding)
  return params, opt_state


def _runs_label_groups(specs):
  groups: dict[str, list[int]] = {}
  for i, spec in enumerate(specs):
    groups.setdefault(results_lib.init_label(spec.label, spec.bias_label), []).append(i)
  return groups


def run_epochs(prep: Prepared, comp: Compiled, result: TrainResult, *,
               on_epoch: Callable[[TrainResult], None] | None = None,
               log: Callable[[str], None] | None = print, log_every: int = 10,
               progress: bool = False, checkpointer: Checkpointer | None = None,
               start_state: tuple | None = None) -> tuple[Any, np.ndarray]:
  """Step 3: trains epoch after epoch; returns ``(params, active)`` (padded, on devices).

  Logs page-style lines, stops runs whose loss is non-finite, calls ``on_epoch``
  and saves a checkpoint after every epoch. A ``KeyboardInterrupt`` propagates
  after the last finished epoch's results were handed to ``on_epoch``.
  """
  from tqdm.auto import tqdm

  config, specs = prep.config, prep.specs
  histories = result.runs
  active = np.asarray([h.stopped is None for h in histories])
  params, opt_state = start_state or (prep.params, prep.opt_state)
  groups = _runs_label_groups(specs)
  start = result.epochs_done
  bar = tqdm(total=config.epochs, initial=start, unit="epoch", file=sys.stderr,
             disable=not progress, leave=False, dynamic_ncols=True)
  say = log or (lambda _: None)
  if progress and log is print:
    say = tqdm.write
  n_train = len(prep.dataset.y_train)
  try:
    for epoch in range(start + 1, config.epochs + 1):
      t0 = time.perf_counter()
      params, opt_state, train_loss, train_acc = comp.epoch_fn(
          params, opt_state, prep.shuffle_keys, np.int32(epoch - 1), prep.x_train,
          prep.y_train)
      jax.block_until_ready(params)
      seconds = time.perf_counter() - t0
      val_loss, val_acc = _evaluate(comp.eval_fn, params, prep.val, len(prep.dataset.y_val))
      if prep.train_chunks is not None:  # the page's train loss: whole split, after the epoch
        train_loss, train_acc = _evaluate(comp.eval_fn, params, prep.train_chunks, n_train)
      metrics = [distributed.to_host(m).astype(np.float64)[:prep.runs]
                 for m in (train_loss, val_loss, train_acc, val_acc)]
      for i in np.flatnonzero(active):
        h = histories[i]
        if not (np.isfinite(metrics[0][i]) and np.isfinite(metrics[1][i])):
          active[i] = False
          h.diverged_epoch = epoch
          h.stopped = (f"non-finite loss at epoch {epoch} (init {h.init}, bias {h.bias_init}, "
                       f"seed {h.seed}): run stopped, history kept up to epoch {epoch - 1}")
          say(f"WARNING: {h.stopped}")
          continue
        for name, values in zip(("train_loss", "val_loss", "train_acc", "val_acc"), metrics):
          getattr(h, name).append(float(values[i]))
      result.epoch_seconds.append(seconds)
      result.params = _take_runs(params, prep.runs) if prep.n_pad else params
      bar.update(1)  # one speed on the bar: tqdm's own (whole epoch, evaluation included)
      if epoch == start + 1 and epoch < config.epochs:
        say(_time_estimate(time.perf_counter() - t0, config.epochs - epoch))
      if epoch == 1 or epoch % log_every == 0 or epoch == config.epochs:
        for label, members in groups.items():
          live = [i for i in members if active[i]]
          if not live:
            continue
          tl, vl = (float(np.median(metrics[j][live])) for j in (0, 1))
          va = float(np.median(metrics[3][live]))
          tag = f"[{label}] " if len(groups) > 1 else ""
          note = f" (median of {len(live)} seeds)" if len(members) > 1 else ""
          say(f"{tag}Epoch: {epoch}/{config.epochs} | Train Loss: {tl:.4f} | Val Loss: "
              f"{vl:.4f} | Val Acc: {va:.4f}{note}")
      if checkpointer is not None:
        checkpointer.save(epoch, _state_to_host(prep, params, opt_state),
                          {"epoch": epoch, "result": result.to_json()})
      if on_epoch is not None:
        on_epoch(result)
      if not active.any():
        say("WARNING: every run stopped on a non-finite loss")
        break
  finally:
    bar.close()
  return params, active


def report(prep: Prepared, comp: Compiled, result: TrainResult, params,
           active: np.ndarray) -> TrainResult:
  """Step 4: test metrics of the runs still training; marks the result finished."""
  test_loss, test_acc = _evaluate(comp.eval_fn, params, prep.test, len(prep.dataset.y_test))
  for i in np.flatnonzero(active):
    result.runs[i].test_loss, result.runs[i].test_acc = float(test_loss[i]), float(test_acc[i])
  result.params = _take_runs(params, prep.runs) if prep.n_pad else params
  result.finished = True
  return result


def _history_from_json(run: dict) -> RunHistory:
  fields = {f.name for f in dataclasses.fields(RunHistory)}
  return RunHistory(**{k: v for k, v in run.items() if k in fields})


def _check_checkpoint(meta: dict, specs, config: TrainConfig, post_init: bool,
                      where: str) -> None:
  """ResumeError (one line) unless the checkpoint can continue this study exactly.

  Same config but ``epochs`` (which may grow), same post-init step, same runs.
  """
  saved = meta["result"]
  saved_config = saved["config"]
  changed = sorted(k for k, v in config.to_json().items()
                   if k != "epochs" and saved_config.get(k) != v)
  if changed:
    raise ResumeError(f"the checkpoint in {where} was made with other values of "
                      f"{', '.join(changed)} (saved: "
                      f"{', '.join(f'{k}={saved_config.get(k)!r}' for k in changed)})")
  done = len(saved["epoch_seconds"])
  if config.epochs < done:
    raise ResumeError(f"--epochs {config.epochs} is below the {done} epochs the checkpoint "
                      f"in {where} already holds")
  if bool(saved.get("post_init", False)) != post_init:
    raise ResumeError(f"the checkpoint in {where} was made "
                      f"{'with' if saved.get('post_init') else 'without'} a post-init step "
                      "(e.g. LSUV); this study is not")
  if [(r["init"], r["bias_init"], r["seed"]) for r in saved["runs"]] != [
      (s.label, s.bias_label, s.seed) for s in specs]:
    raise ResumeError(f"the checkpoint in {where} holds other runs")


def train(dataset: data_lib.Dataset, specs: Sequence[models.RunSpec],
          config: TrainConfig = TrainConfig(), *, post_init: PostInit | None = None,
          mesh: Mesh | None = None,
          on_epoch: Callable[[TrainResult], None] | None = None,
          log: Callable[[str], None] | None = print, log_every: int = 10,
          progress: bool = False, checkpointer: Checkpointer | None = None,
          resume: bool = False) -> TrainResult:
  """Trains one MLP per spec, all in one compiled program, and evaluates them.

  Args:
    dataset: host arrays (see :mod:`experiments.common.data`).
    specs: the runs: kernel init (+ hyperparameters), bias init, seed. The seed gives
      the run's key ``k = jax.random.key(seed)``; ``split(k, 3)`` are the init key,
      the shuffling key and the key handed to ``post_init``.
    config: architecture and optimization shared by all runs.
    post_init: optional ``post_init(params, key, x_batch) -> params``, applied to each
      run's parameters (a ``{"dense_0": {"kernel", "bias"}, ...}`` dict) after the
      jinit init and before training; ``x_batch`` is ``config.init_batch_size``
      training examples drawn with ``key`` (e.g. LSUV).
    mesh: from :func:`engine_mesh`: a ``"runs"`` axis shards the runs, a ``"data"``
      axis shards each batch. ``None``: one device.
    on_epoch: called with the result so far before the first epoch (``result.params``
      are then the initial parameters) and after every epoch (e.g. to write it).
    log: where the page-style lines and stop messages go (``None``: silent).
    log_every: log epoch 1, every ``log_every``-th epoch and the last.
    progress: draw a tqdm progress bar over epochs on stderr.
    checkpointer: save the state after every epoch (see :class:`Checkpointer`).
    resume: continue from ``checkpointer``'s last checkpoint (same specs and config).

  Returns:
    A :class:`TrainResult`: per-run histories, test metrics, epoch wall times
    (without compilation), and the final stacked parameters.

  Raises:
    TypeError, ValueError: bad specs, config or mesh; a batch larger than the
      training set; a checkpoint that does not belong to this study.
  """
  check_int(log_every, "log_every")
  if resume and checkpointer is None:
    raise ValueError("resume=True needs a checkpointer")
  restored = None
  if resume and checkpointer.latest_epoch() is not None:
    restored = checkpointer.restore(warn=log)  # before any work: a bad checkpoint stops here
    _check_checkpoint(restored[1], specs, config, post_init is not None, checkpointer.directory)
  # A post-init step (LSUV) is part of the checkpointed state: skipped only when a
  # checkpoint is restored, redone when the run was killed before its first checkpoint.
  prep = prepare(dataset, specs, config, post_init=post_init, mesh=mesh,
                 skip_post_init=restored is not None)
  comp = compile_programs(prep)
  histories = [RunHistory(s.label, s.bias_label, s.seed) for s in prep.specs]
  mesh = prep.mesh  # as fitted to the number of runs
  result = TrainResult(config, dataset.name, dataset.sizes(), histories, [], comp.seconds,
                       prep.init_seconds, 1 if mesh is None else int(mesh.devices.size),
                       _take_runs(prep.params, prep.runs) if prep.n_pad else prep.params,
                       parallel=None if mesh is None else mesh.axis_names[0])
  result.post_init = post_init is not None
  start_state = None
  if restored is not None:
    state, meta = restored
    saved = meta["result"]
    result.runs = histories = [_history_from_json(r) for r in saved["runs"]]
    result.epoch_seconds = list(saved["epoch_seconds"])
    result.init_seconds = saved["init_seconds"]
    result.resumed_from = int(meta["epoch"])
    try:
      start_state = _restore_state(prep, state)
    except (ValueError, KeyError, TypeError) as e:
      raise ResumeError(f"the checkpoint in {checkpointer.directory}: {e}") from None
    result.params = _take_runs(start_state[0], prep.runs) if prep.n_pad else start_state[0]
  if on_epoch is not None and result.epochs_done == 0:
    on_epoch(result)  # epoch 0: the initial parameters, no metrics yet
  params, active = run_epochs(prep, comp, result, on_epoch=on_epoch, log=log,
                              log_every=log_every, progress=progress,
                              checkpointer=checkpointer, start_state=start_state)
  return report(prep, comp, result, params, active)
