"""The training engine: many MLP runs (seeds x inits) in one compiled program.

Design (issue 3, DESIGN.md):

* The dataset lives on the device. One epoch is one compiled call: ``lax.scan`` over
  the shuffled batch indices (the last partial batch is dropped; every epoch
  reshuffles). Evaluation (validation each epoch, test at the end) is compiled too.
* Several runs share the program through ``jax.vmap``: their parameters are stacked
  on a leading run axis. Runs share the architecture; each has its own kernel/bias
  init (applied before stacking), seed, initial weights and shuffling order. A run
  trained alone gives the same numbers as inside a batch of runs.
* Loss: cross-entropy summed over the batch (PyTorch's ``reduction="sum"``), plain
  ``optax.sgd``; reported losses are the mean per example. The train loss/accuracy
  of an epoch are measured on the whole training split after the epoch (as the
  course does), or, with ``train_metrics="running"``, averaged over the epoch's
  batches before each update (no extra pass).
* Data parallelism: given a ``jax.sharding.Mesh`` with a ``"data"`` axis, every batch
  is sharded along its example axis and the parameters are replicated; XLA adds the
  gradient all-reduce. Results equal the single-device ones within float tolerance.
* A non-finite loss stops that run (message naming init, seed and epoch); the
  others go on; its history so far is kept.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from experiments.common import data as data_lib
from experiments.common import models
from experiments.common import results as results_lib

PostInit = Callable[[Any, jax.Array, jax.Array], Any]  # (params, key, x_batch) -> params
DATA_AXIS = "data"
SHUFFLES = ("shared", "per_run")
TRAIN_METRICS = ("eval", "running")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
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
    models.check_activation(self.activation)
    if self.shuffle not in SHUFFLES:
      raise ValueError(f"shuffle must be one of {', '.join(map(repr, SHUFFLES))}, got "
                       f"{self.shuffle!r}")
    if self.train_metrics not in TRAIN_METRICS:
      raise ValueError(f"train_metrics must be one of {', '.join(map(repr, TRAIN_METRICS))}, "
                       f"got {self.train_metrics!r}")
    if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int) \
        or self.data_seed < 0:
      raise ValueError(f"data_seed must be a non-negative int, got {self.data_seed!r}")
    for name in ("hidden", "batch_size", "epochs", "eval_batch_size", "init_batch_size"):
      _check_positive_int(getattr(self, name), name)
    if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
      raise ValueError(f"depth must be an int >= 0, got {self.depth!r}")
    if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
      raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _check_positive_int(value, name):
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclasses.dataclass
class RunHistory:
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

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


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

  def to_json(self) -> dict[str, Any]:
    """The ``history.json`` layout of issue 3 (plus a few descriptive keys)."""
    return {
        "config": {**self.config.to_json(), "dataset": self.dataset, "sizes": self.sizes,
                   "devices": self.devices},
        "runs": [r.to_json() for r in self.runs],
        "epoch_seconds": list(self.epoch_seconds),
        "compile_seconds": self.compile_seconds,
        "init_seconds": self.init_seconds,
        "finished": self.finished,
    }


# --------------------------------------------------------------------------- devices


def make_mesh(devices: int | None = None) -> Mesh | None:
  """A 1-D ``("data",)`` mesh over the first ``devices`` devices; ``None`` for one device.

  ``devices=None`` uses every device when there is more than one.

  Raises:
    ValueError: ``devices`` is not a positive int or exceeds the devices present.
  """
  available = jax.devices()
  if devices is None:
    devices = len(available)
  elif isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
    raise ValueError(f"devices must be a positive int, got {devices!r}")
  if devices > len(available):
    raise ValueError(
        f"devices={devices} but only {len(available)} {available[0].platform} device(s) are "
        "available (to simulate CPU devices set XLA_FLAGS="
        "--xla_force_host_platform_device_count=N before starting Python)")
  if devices == 1:
    return None
  return Mesh(np.asarray(available[:devices]), (DATA_AXIS,))


def _mesh_size(mesh: Mesh | None) -> int:
  if mesh is None:
    return 1
  if DATA_AXIS not in mesh.shape:
    raise ValueError(f"mesh must have a {DATA_AXIS!r} axis, got axes {tuple(mesh.shape)}")
  return mesh.shape[DATA_AXIS]


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

  def loss_fn(params, x, y):
    logits = apply_fn({"params": params}, x)
    loss = _cross_entropy(logits, y)
    return loss.sum(), jnp.sum(jnp.argmax(logits, -1) == y)  # reduction="sum"

  def run_step(params, opt_state, x, y):
    (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, correct

  def epoch(params, opt_state, keys, epoch_index, x_all, y_all):
    def order(key):
      perm = jax.random.permutation(jax.random.fold_in(key, epoch_index), n_train)
      return perm[:num_batches * batch_size].reshape(num_batches, batch_size)

    if shared_order:  # one order for all runs: x is shared, so layer 1 is one wide GEMM
      batches = order(keys)  # (batches, batch)
      batch_axis = None
    else:
      batches = jnp.swapaxes(jax.vmap(order)(keys), 0, 1)  # (batches, runs, batch)
      batch_axis = 0
    sharding = None
    if mesh is not None:
      sharding = NamedSharding(mesh, P(DATA_AXIS) if shared_order else P(None, DATA_AXIS))

    def body(carry, idx):
      params, opt_state = carry
      x, y = x_all[idx], y_all[idx]  # ([runs,] batch, D), ([runs,] batch)
      if sharding is not None:
        x = jax.lax.with_sharding_constraint(x, sharding)
        y = jax.lax.with_sharding_constraint(y, sharding)
      params, opt_state, loss, correct = jax.vmap(
          run_step, in_axes=(0, 0, batch_axis, batch_axis))(params, opt_state, x, y)
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
    loss = (_cross_entropy(logits, y[None]) * mask).sum(-1)
    correct = ((jnp.argmax(logits, -1) == y[None]) * mask).sum(-1)
    return loss, correct

  return evaluate


def _evaluate(eval_fn, params, chunks, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Mean loss and accuracy per run over a chunked split of ``n`` examples."""
  outs = [eval_fn(params, *chunk) for chunk in chunks]
  loss = sum(np.asarray(o[0], np.float64) for o in outs) / n
  acc = sum(np.asarray(o[1], np.float64) for o in outs) / n
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
  return [jax.tree.map(lambda leaf: leaf[i], host) for i in range(n)]


def _host_stack(trees):
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)


def init_params(specs: Sequence[models.RunSpec], config: TrainConfig, input_dim: int,
                num_classes: int):
  """``(params, shuffle_keys, hook_keys)`` of the runs, in ONE compiled program.

  Run i gets ``k = jax.random.key(specs[i].seed)``; ``split(k, 3)`` are its init,
  shuffling and ``post_init`` keys. With ``config.shuffle == "shared"`` the
  shuffling key is ``jax.random.key(config.data_seed)`` for every run (a scalar key).
  Runs with the same (kernel, bias) init share one
  vmapped ``model.init``; the groups are concatenated back in spec order, so params
  are stacked on a leading run axis.
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


# --------------------------------------------------------------------------- the engine


def train(dataset: data_lib.Dataset, specs: Sequence[models.RunSpec],
          config: TrainConfig = TrainConfig(), *, post_init: PostInit | None = None,
          mesh: Mesh | None = None,
          on_epoch: Callable[[TrainResult], None] | None = None,
          log: Callable[[str], None] | None = print, log_every: int = 10,
          progress: bool = False) -> TrainResult:
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
      training examples drawn with ``key``. The model is
      ``models.build_model(spec, ...)``; e.g. a data-dependent init (LSUV).
    mesh: a mesh with a ``"data"`` axis (see :func:`make_mesh`): batches are sharded
      along their example axis, parameters replicated. ``None``: one device.
    on_epoch: called with the result so far before the first epoch (``result.params``
      are then the initial parameters) and after every epoch (e.g. to write it).
    log: where the page-style lines and stop messages go (``None``: silent).
    log_every: log epoch 1, every ``log_every``-th epoch and the last.
    progress: draw a progress bar over epochs on stderr.

  Returns:
    A :class:`TrainResult`: per-run histories, test metrics, epoch wall times
    (without compilation), and the final stacked parameters.

  Raises:
    ValueError: bad specs, a batch larger than the training set, or a batch size
      not divisible by the number of devices in ``mesh``.
  """
  specs = list(specs)
  if not specs or not all(isinstance(s, models.RunSpec) for s in specs):
    raise ValueError("specs must be a non-empty list of RunSpec")
  n_dev = _mesh_size(mesh)
  if config.batch_size % n_dev:
    raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of "
                     f"devices ({n_dev})")
  n_train = len(dataset.y_train)
  if n_train < config.batch_size:
    raise ValueError(f"batch_size={config.batch_size} exceeds the {n_train} training examples")
  _check_positive_int(log_every, "log_every")
  say = log or (lambda _: None)
  runs = len(specs)

  def put(tree, spec=P()):
    if mesh is None:
      return jax.device_put(tree)
    return jax.device_put(tree, NamedSharding(mesh, spec))

  # Data on the device (replicated over a mesh: each device gathers its batch shard).
  x_train, y_train = put(dataset.x_train), put(dataset.y_train)
  chunk = -(-min(config.eval_batch_size, max(len(dataset.y_val), len(dataset.y_test))) // n_dev)
  chunk *= n_dev
  splits = [(dataset.x_val, dataset.y_val), (dataset.x_test, dataset.y_test)]
  if config.train_metrics == "eval":
    splits.append((dataset.x_train, dataset.y_train))
  val, test, *train_chunks = (
      [tuple(put(a, P(DATA_AXIS)) for a in part) for part in _chunked(x, y, chunk)]
      for x, y in splits)

  # Initial parameters: jinit init per group, then the optional hook, then stacked.
  t0 = time.perf_counter()
  params, shuffle_keys, hook_keys = init_params(specs, config, dataset.input_dim,
                                                dataset.num_classes)
  if post_init is not None:
    n_hook = min(config.init_batch_size, n_train)
    per_run = _host_unstack(params, runs)
    for i, spec in enumerate(specs):  # the batch: n_hook examples drawn with the seed
      idx = np.sort(np.random.default_rng(spec.seed).choice(n_train, n_hook, replace=False))
      per_run[i] = post_init(per_run[i], hook_keys[i], jnp.asarray(dataset.x_train[idx]))
    params = _host_stack(per_run)
  params = put(params)
  shuffle_keys = put(shuffle_keys)
  model = models.build_model(specs[0], hidden=config.hidden, depth=config.depth,
                             num_classes=dataset.num_classes, activation=config.activation)
  tx = optax.sgd(config.lr)
  opt_state = put(jax.vmap(tx.init)(params))
  jax.block_until_ready(params)
  init_seconds = time.perf_counter() - t0

  # Compile ahead of time, so epoch times are pure run time.
  t0 = time.perf_counter()
  epoch_fn = jax.jit(_make_epoch_fn(model.apply, tx, n_train, config.batch_size, mesh,
                                    config.shuffle == "shared"))
  epoch_fn = epoch_fn.lower(params, opt_state, shuffle_keys, jnp.int32(0), x_train,
                            y_train).compile()
  eval_fn = jax.jit(_make_eval_fn(model.apply)).lower(
      params, *val[0]).compile()
  compile_seconds = time.perf_counter() - t0

  histories = [RunHistory(s.label, s.bias_label, s.seed) for s in specs]
  result = TrainResult(config, dataset.name, dataset.sizes(), histories, [], compile_seconds,
                       init_seconds, n_dev, params)
  groups: dict[str, list[int]] = {}
  for i, spec in enumerate(specs):
    groups.setdefault(results_lib.init_label(spec.label, spec.bias_label), []).append(i)
  bar = _ProgressBar(config.epochs) if progress else None
  active = np.ones(runs, bool)
  if on_epoch is not None:
    on_epoch(result)  # epoch 0: the initial parameters, no metrics yet

  for epoch in range(1, config.epochs + 1):
    t0 = time.perf_counter()
    params, opt_state, train_loss, train_acc = epoch_fn(params, opt_state, shuffle_keys,
                                                        jnp.int32(epoch - 1), x_train, y_train)
    jax.block_until_ready(params)
    result.epoch_seconds.append(time.perf_counter() - t0)
    val_loss, val_acc = _evaluate(eval_fn, params, val, len(dataset.y_val))
    if train_chunks:  # the page's train loss: the whole training split, after the epoch
      train_loss, train_acc = _evaluate(eval_fn, params, train_chunks[0], n_train)
    metrics = [np.asarray(m, np.float64) for m in (train_loss, val_loss, train_acc, val_acc)]
    for i in np.flatnonzero(active):
      h = histories[i]
      if not (np.isfinite(metrics[0][i]) and np.isfinite(metrics[1][i])):
        active[i] = False
        h.stopped = (f"non-finite loss at epoch {epoch} (init {h.init}, bias {h.bias_init}, "
                     f"seed {h.seed}): run stopped, history kept up to epoch {epoch - 1}")
        say(f"WARNING: {h.stopped}")
        continue
      for name, values in zip(("train_loss", "val_loss", "train_acc", "val_acc"), metrics):
        getattr(h, name).append(float(values[i]))
    result.params = params
    if bar:
      bar.update(epoch, result.epoch_seconds[-1])
    if epoch == 1 or epoch % log_every == 0 or epoch == config.epochs:
      for label, members in groups.items():
        live = [i for i in members if active[i]]
        if not live:
          continue
        tl, vl = (float(np.median(metrics[j][live])) for j in (0, 1))
        va = float(np.median(metrics[3][live]))
        tag = f"[{label}] " if len(groups) > 1 else ""
        note = f" (median of {len(live)} seeds)" if len(members) > 1 else ""
        if bar:
          bar.clear()
        say(f"{tag}Epoch: {epoch}/{config.epochs} | Train Loss: {tl:.4f} | Val Loss: {vl:.4f} "
            f"| Val Acc: {va:.4f}{note}")
    if on_epoch is not None:
      on_epoch(result)
    if not active.any():
      say("WARNING: every run stopped on a non-finite loss")
      break
  if bar:
    bar.close()

  test_loss, test_acc = _evaluate(eval_fn, params, test, len(dataset.y_test))
  for i in np.flatnonzero(active):
    histories[i].test_loss, histories[i].test_acc = float(test_loss[i]), float(test_acc[i])
  result.finished = True
  return result


class _ProgressBar:
  """A one-line text progress bar over epochs (stderr; redrawn only on a terminal)."""

  def __init__(self, total: int, width: int = 30, stream=None):
    self.total, self.width = total, width
    self.stream = stream or sys.stderr
    self.tty = getattr(self.stream, "isatty", lambda: False)()
    self.start = time.perf_counter()

  def update(self, done: int, seconds: float) -> None:
    if not self.tty:
      return
    filled = int(self.width * done / self.total)
    elapsed = time.perf_counter() - self.start
    eta = elapsed / done * (self.total - done)
    self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
                      f"epochs | {seconds:.2f} s/epoch | ETA {eta:.0f} s ")
    self.stream.flush()

  def clear(self) -> None:
    if self.tty:
      self.stream.write("\r" + " " * (self.width + 60) + "\r")
      self.stream.flush()

  def close(self) -> None:
    if self.tty:
      self.stream.write("\n")
      self.stream.flush()
