"""μP learning-rate transfer: the best Adam lr of an MNIST MLP vs width, SP against μP.

Tensor Programs V (G. Yang et al., 2022, https://arxiv.org/abs/2203.03466, Fig. 1 and
mup's README figure) claims that under the standard parametrization (SP) the best learning
rate shifts as a model widens, while under μP it stays put, so it can be tuned on a narrow
model and transferred. This study trains an MLP ``784 -> width -> width -> 10`` (ReLU) on
MNIST with Adam at every width, learning rate (powers of 2) and seed, for both:

* ``sp``: LeCun-normal init (variance ``1/fan_in``), biases zero, one Adam lr for all;
* ``mup``: the same model with :class:`jinit.mup.LinenReadout` (readout multiplier
  ``base_width/width``, width-independent readout init), its metadata from
  :func:`jinit.mup.infinite_dims` against the base (smallest) width, and
  ``optax.chain(optax.adam(lr), jinit.mup.scale_updates(meta, "adam"))`` (hidden weight lr
  ``lr * base_width/width``; Table 8 of the paper). At the base width the two coincide.

All learning rates x seeds of one width train in one compiled program (``jax.vmap`` over
runs inside ``jax.lax.map`` chunks, a ``lax.scan`` over steps); a seed fixes the init and
the batch order, shared by every learning rate. The loss of a run is the mean training
cross-entropy on a fixed subset of the training set after the last step (mup's figure plots
training loss); a diverged run counts as +inf.

Outputs (in ``--out``, default ``results/mup_transfer-<UTC time>``):

* ``transfer.json``: ``{"widths", "lrs", "parametrizations": {"sp": {"best_lr",
  "final_loss"}, "mup": {...}}}``; ``best_lr[i]`` is the argmin over lrs at ``widths[i]``
  of the median over seeds, ``final_loss[i][j]`` that median at ``widths[i]``, ``lrs[j]``;
* ``runs.json``: every run's final loss (per seed), validation accuracy, and the config;
* ``loss_vs_lr.png``: loss vs learning rate, one line per width (SP and μP side by side);
* ``coord_check_sp.png``, ``coord_check_mup.png`` and ``coord_check.json``: a coordinate
  check (:func:`jinit.mup.coord_check`, 3 Adam steps at the transferred lr);
* ``summary.md`` / ``summary.json``: the best-lr table, the claims held against the paper,
  the command, date and machine.

  python -m experiments.mup_transfer --quick     # 3 widths, 64 -> 1024, a few minutes
  python -m experiments.mup_transfer             # 6 widths, 64 -> 2048, 9 lrs
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import provenance as provenance_lib
from experiments.common import results
from experiments.common import study
from jinit import mup
from jinit._src import validation

PARAMETRIZATIONS = ("sp", "mup")
SEED = 20221  # the root of every run's keys: run_keys(SEED, seed) -> (init key, data key)


@dataclasses.dataclass(frozen=True)
class Config:
  widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
  log2_lrs: tuple[int, ...] = tuple(range(-13, -4))  # 2^-13 .. 2^-5
  seeds: int = 3
  steps: int = 150
  batch_size: int = 64
  eval_size: int = 4096  # training examples the final loss is measured on
  val_size: int = 2000  # validation examples for the accuracy (not used to pick the lr)
  chunk: int = 12  # runs vmapped together inside lax.map (bounds memory at the widest width)
  coord_steps: int = 3
  coord_batch: int = 256
  coord_seeds: int = 1  # seeds the coord check's sizes are averaged over
  zero_readout: bool = False  # zero-init readout for SP and μP (mup's MLP example does)

  def __post_init__(self):
    if len(self.widths) < 2 or any(b <= a for a, b in zip(self.widths, self.widths[1:])):
      raise ValueError(f"widths must be at least 2 strictly increasing ints, got {self.widths}")
    if any(b != a + 1 for a, b in zip(self.log2_lrs, self.log2_lrs[1:])) or len(self.log2_lrs) < 3:
      raise ValueError("log2_lrs must be at least 3 consecutive ints (a grid of powers of 2), "
                       f"got {self.log2_lrs}")
    for name in ("seeds", "steps", "batch_size", "eval_size", "val_size", "chunk",
                 "coord_steps", "coord_batch", "coord_seeds"):
      validation.check_int(getattr(self, name), name)

  @property
  def lrs(self) -> list[float]:
    return [2.0 ** k for k in self.log2_lrs]


QUICK = Config(widths=(64, 256, 1024), log2_lrs=tuple(range(-12, -4)), seeds=3, steps=150,
               eval_size=2048)


class MLP(nn.Module):
  """``784 -> width -> width -> 10``, ReLU; SP when ``base_width`` is None, else μP's readout."""
  width: int
  base_width: int | None
  zero_readout: bool = False
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.width, name="in")(x))
    x = nn.relu(nn.Dense(self.width, name="hidden")(x))
    parametrization = "sp" if self.base_width is None else "mup"
    return mup.LinenReadout(self.num_classes, base_in_features=self.base_width,
                            zero_init=self.zero_readout, parametrization=parametrization,
                            name="out")(x)


def make_model(parametrization: str, width: int, base_width: int,
               zero_readout: bool = False) -> MLP:
  return MLP(width, base_width if parametrization == "mup" else None, zero_readout)


def _as_is(x: np.ndarray) -> np.ndarray:
  return x


@dataclasses.dataclass(frozen=True)
class Family:
  """What a width study trains: a linen model per parametrization and width, and its inputs.

  Attributes:
    title: the model and its data, for the summary and the figure (``"MNIST MLP"``).
    make_model: ``(parametrization, width, base_width) -> nn.Module``; the two coincide at
      the base width up to the zero inits μP may add.
    inputs: the dataset's rows ``(N, features)`` -> the model's inputs (default: as they are).
  """
  title: str
  make_model: Callable[[str, int, int], nn.Module]
  inputs: Callable[[np.ndarray], np.ndarray] = _as_is


def mlp_family(config: Config) -> Family:
  """This study's model: :class:`MLP`, the readout zero-initialized if ``config`` says so."""
  return Family("MNIST MLP", lambda p, width, base: make_model(p, width, base,
                                                                config.zero_readout))


def family_meta(family: Family, parametrization: str, width: int, base_width: int, x):
  """:func:`jinit.mup.infinite_dims` of ``family``'s model at ``width`` against the base."""
  return mup.infinite_dims(family.make_model(parametrization, width, base_width),
                           family.make_model(parametrization, base_width, base_width), x,
                           parametrization=parametrization)


def params_meta(parametrization: str, width: int, base_width: int, input_dim: int):
  x = jnp.zeros((1, input_dim), jnp.float32)
  return family_meta(mlp_family(Config()), parametrization, width, base_width, x)


def run_keys(root: int, seed):
  """``(init_key, data_key)`` of run ``seed``: ``split(fold_in(key(root), seed))``.

  A seed fixes the init and the batch order, shared by every learning rate (the microsoft/mup
  reference scripts under benchmarks/ draw their batches with this and :func:`batch_indices`).
  """
  return jax.random.split(jax.random.fold_in(jax.random.key(root), seed))


def batch_indices(step_key, batch_size: int, n_train: int):
  """One step's batch: ``batch_size`` indices into the ``n_train`` training examples."""
  return jax.random.randint(step_key, (batch_size,), 0, n_train)


def _loss(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_sweep(model: nn.Module, meta, config: Config, x_train, y_train, x_eval, y_eval, x_val,
               y_val):
  """``sweep(lrs_R, seeds_R) -> (eval_loss_R, val_acc_R)``: R runs in one compiled program."""
  n_train = x_train.shape[0]

  def one_run(lr, seed):
    init_key, data_key = run_keys(SEED, seed)
    params = model.init(init_key, x_train[:1])["params"]
    tx = optax.chain(optax.adam(lr), mup.scale_updates(meta, "adam"))

    def loss_fn(p, step_key):  # one step's batch, drawn from its key
      idx = batch_indices(step_key, config.batch_size, n_train)
      return _loss(model.apply({"params": p}, x_train[idx]), y_train[idx])

    params, _, _, _ = study.scan_sgd(loss_fn, params, tx,
                                     jax.random.split(data_key, config.steps))
    eval_loss = _loss(model.apply({"params": params}, x_eval), y_eval)
    val_logits = model.apply({"params": params}, x_val)
    hits = jnp.argmax(val_logits, -1).astype(y_val.dtype) == y_val
    val_acc = jnp.mean(hits.astype(jnp.float32))
    return eval_loss, val_acc

  @jax.jit
  def sweep(lrs, seeds):
    return jax.lax.map(lambda a: one_run(*a), (lrs, seeds), batch_size=config.chunk)

  return sweep


def best_lrs(final_loss: np.ndarray, lrs: Sequence[float]) -> list[float | None]:
  """Per width, the lr minimizing the (median) loss; None when every lr diverged."""
  out = []
  for row in final_loss:
    finite = np.where(np.isfinite(row), row, np.inf)
    out.append(None if not np.isfinite(finite).any() else float(lrs[int(np.argmin(finite))]))
  return out


def claims(transfer: dict[str, Any]) -> dict[str, Any]:
  """The issue's three claims, evaluated on ``transfer.json``'s content."""
  widths, lrs = transfer["widths"], transfer["lrs"]
  sp, mu = transfer["parametrizations"]["sp"], transfer["parametrizations"]["mup"]

  def shift(best):
    if best[0] is None or best[-1] is None:
      return None
    return abs(round(math.log2(best[-1]) - math.log2(best[0])))

  mup_shift, sp_shift = shift(mu["best_lr"]), shift(sp["best_lr"])
  out = {
      "mup_shift_steps": mup_shift, "sp_shift_steps": sp_shift,
      "mup_best_lr_moves_at_most_1_step": mup_shift is not None and mup_shift <= 1,
      "sp_best_lr_moves_at_least_2_steps": sp_shift is not None and sp_shift >= 2,
  }
  transferred = mu["best_lr"][0]
  sp_best = sp["best_lr"][-1]
  mup_loss = (mu["final_loss"][-1][lrs.index(transferred)] if transferred is not None else None)
  sp_loss = sp["final_loss"][-1][lrs.index(sp_best)] if sp_best is not None else None
  # Wider is better (Fig. 1/3): at the transferred lr, each width's loss is at most the
  # narrower one's.
  at_transferred = ([row[lrs.index(transferred)] for row in mu["final_loss"]]
                    if transferred is not None else None)
  out.update({
      "mup_loss_per_width_at_transferred_lr": at_transferred,
      "mup_wider_is_better_at_transferred_lr": at_transferred is not None and all(
          b <= a for a, b in zip(at_transferred, at_transferred[1:])),
      "widest": widths[-1], "transferred_lr": transferred,
      "mup_widest_loss_at_transferred_lr": mup_loss,
      "sp_widest_best_lr": sp_best, "sp_widest_loss_at_its_best_lr": sp_loss,
      "mup_transferred_at_least_as_good_as_sp_tuned": (
          mup_loss is not None and sp_loss is not None and mup_loss <= sp_loss),
  })
  return out


def _fmt_lr(lr):
  return "-" if lr is None else f"2^{round(math.log2(lr))}"


def summary_markdown(transfer, claim, coord, meta_info) -> str:
  widths = transfer["widths"]
  lines = [f"# μP learning-rate transfer: {meta_info['model']} ({meta_info['dataset']})", "",
           f"Command: `{meta_info['command']}`  ", f"Date: {meta_info['date']}  ",
           f"Machine: {meta_info['machine']}  ",
           f"Wall time: {meta_info['seconds']:.0f} s (CPU time {meta_info['cpu_seconds']:.0f} s; "
           f"1-min load average {meta_info['load_average_1min_at_start_and_end'][0]:.1f} at "
           f"start, {meta_info['load_average_1min_at_start_and_end'][1]:.1f} at the end)", "",
           "## Best learning rate per width (median training loss over seeds)", "",
           "| width | SP best lr | SP loss | μP best lr | μP loss |", "|---|---|---|---|---|"]
  for i, w in enumerate(widths):
    row = [str(w)]
    for p in ("sp", "mup"):
      best = transfer["parametrizations"][p]["best_lr"][i]
      loss = (transfer["parametrizations"][p]["final_loss"][i][transfer["lrs"].index(best)]
              if best is not None else None)
      row += [_fmt_lr(best), "-" if loss is None else f"{loss:.4f}"]
    lines.append("| " + " | ".join(row) + " |")
  yes = {True: "agrees", False: "disagrees"}
  lines += ["", "## Claims (Tensor Programs V, Fig. 1 and 3)", "",
            f"- μP best lr moves by at most one grid step from width {widths[0]} to "
            f"{widths[-1]}: moved {claim['mup_shift_steps']} step(s) -> "
            f"**{yes[claim['mup_best_lr_moves_at_most_1_step']]}**.",
            f"- SP best lr moves by at least two grid steps: moved {claim['sp_shift_steps']} "
            f"step(s) -> **{yes[claim['sp_best_lr_moves_at_least_2_steps']]}**.",
            f"- Widest μP at the lr transferred from width {widths[0]} "
            f"({_fmt_lr(claim['transferred_lr'])}) is at least as good as widest SP at its own "
            f"best lr ({_fmt_lr(claim['sp_widest_best_lr'])}): "
            f"{_fmt(claim['mup_widest_loss_at_transferred_lr'])} vs "
            f"{_fmt(claim['sp_widest_loss_at_its_best_lr'])} -> "
            f"**{yes[claim['mup_transferred_at_least_as_good_as_sp_tuned']]}**.",
            f"- Wider is better under μP at the transferred lr (each width's loss at most the "
            f"narrower one's): "
            f"{', '.join(_fmt(v) for v in claim['mup_loss_per_width_at_transferred_lr'] or [])}"
            f" -> **{yes[claim['mup_wider_is_better_at_transferred_lr']]}**.", "",
            f"## Coordinate check ({coord['steps']} Adam steps at lr "
            f"{_fmt_lr(coord['lr'])}, widths {widths[0]}-{widths[-1]})", "",
            "Slope of log RMS(layer output) vs log width (0: width-independent).", ""]
  for p in PARAMETRIZATIONS:
    lines += [f"### {p}", "", coord[p]["table"], ""]
  return "\n".join(lines)


def _fmt(v):
  return "-" if v is None else f"{v:.4f}"


def plot_loss_vs_lr(transfer, path, title: str = "MNIST MLP"):
  plt = results.pyplot()  # the experiments' one figure style

  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  widths, lrs = transfer["widths"], np.asarray(transfer["lrs"])
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
  finite = [v for p in PARAMETRIZATIONS for row in transfer["parametrizations"][p]["final_loss"]
            for v in row if v is not None and math.isfinite(v)]
  top = min(max(finite), 2.5) if finite else 2.5
  for ax, p in zip(axes, PARAMETRIZATIONS):
    d = transfer["parametrizations"][p]
    for i, w in enumerate(widths):
      loss = np.array([np.nan if v is None else v for v in d["final_loss"][i]], float)
      ax.plot(lrs, loss, "o-", ms=3, color=colors[i], label=f"width {w}")
      if d["best_lr"][i] is not None:
        j = list(lrs).index(d["best_lr"][i])
        ax.plot(lrs[j], loss[j], "*", ms=11, color=colors[i], markeredgecolor="k")
    ax.set_xscale("log", base=2)
    ax.set_ylim(min(finite) * 0.8 if finite else 0, top)
    ax.set_xlabel("Adam learning rate (base)")
    ax.set_title({"sp": "SP", "mup": "μP"}[p])
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("training loss (median over seeds)")
  axes[1].legend(fontsize=8)
  fig.suptitle(f"{title}: training loss vs learning rate (star: best lr per width)")
  fig.tight_layout()
  results.save_figure(fig, path)


def run_coord_check(family: Family, x, y, config, lr):
  """coord_check for SP and μP at ``lr`` on one batch ``(x, y)`` of model inputs."""
  base = config.widths[0]
  x1 = jnp.asarray(x[:1])
  out = {"steps": config.coord_steps, "lr": lr}
  for p in PARAMETRIZATIONS:
    def make(width, seed, p=p):
      model = family.make_model(p, width, base)
      return model, model.init(jax.random.key(seed), x1)

    def opt(width, p=p):
      return optax.chain(optax.adam(lr),
                         mup.scale_updates(family_meta(family, p, width, base, x1), "adam"))

    # optax's Adam raises a python float to its int32 step count, which strict dtype
    # promotion rejects (as in study.scan_sgd): the coord check traces with standard rules.
    with jax.numpy_dtype_promotion("standard"):
      cc = mup.coord_check(make, config.widths, x, y, steps=config.coord_steps,
                           optimizer=opt, seeds=config.coord_seeds)
    out[p] = {**cc.to_dict(), "table": cc.table(),
              "max_abs_slope_last_step": cc.max_abs_slope(-1)}
    out[p]["_figure"] = cc.plot(title=f"{p.upper() if p == 'sp' else 'μP'}: coordinate check "
                                      f"(Adam lr {_fmt_lr(lr)})")
  return out


def run(dataset: data_lib.Dataset, config: Any, out_dir: str, command: str,
        log=print, prov: dict | None = None, family: Family | None = None) -> dict[str, Any]:
  """The whole study; writes every output atomically in ``out_dir`` and returns transfer.json.

  ``config`` is a :class:`Config`, or any config with its fields (widths, lrs, seeds, steps,
  batch_size, eval_size, val_size, chunk, coord_steps, coord_batch); ``family`` the model
  trained (default: :func:`mlp_family`).
  """
  start, cpu_start, load_start = time.time(), time.process_time(), os.getloadavg()[0]
  family = family or mlp_family(config)
  x_train = jnp.asarray(family.inputs(dataset.x_train))
  y_train = jnp.asarray(dataset.y_train)
  n_eval = min(config.eval_size, len(dataset.y_train))
  x_eval, y_eval = x_train[:n_eval], y_train[:n_eval]
  x_val = jnp.asarray(family.inputs(dataset.x_val[:config.val_size]))
  y_val = jnp.asarray(dataset.y_val[:config.val_size])
  lrs = config.lrs
  n_l, n_s = len(lrs), config.seeds
  lr_r = jnp.asarray(np.repeat(lrs, n_s), jnp.float32)
  seed_r = jnp.asarray(np.tile(np.arange(n_s), n_l), jnp.int32)
  base = config.widths[0]
  per_run = {p: {"loss": np.full((len(config.widths), n_l, n_s), np.nan),
                 "val_acc": np.full((len(config.widths), n_l, n_s), np.nan)}
             for p in PARAMETRIZATIONS}
  for i, width in enumerate(config.widths):
    for p in PARAMETRIZATIONS:
      t0 = time.time()
      model = family.make_model(p, width, base)
      sweep = make_sweep(model, family_meta(family, p, width, base, x_train[:1]), config,
                         x_train, y_train, x_eval, y_eval, x_val, y_val)
      loss, acc = jax.device_get(sweep(lr_r, seed_r))
      per_run[p]["loss"][i] = np.asarray(loss).reshape(n_l, n_s)
      per_run[p]["val_acc"][i] = np.asarray(acc).reshape(n_l, n_s)
      med = np.median(np.where(np.isfinite(per_run[p]["loss"][i]), per_run[p]["loss"][i],
                               np.inf), axis=1)
      log(f"width {width:5d} {p:3s}: {n_l * n_s} runs in {time.time() - t0:6.1f} s; best lr "
          f"{_fmt_lr(lrs[int(np.argmin(med))]) if np.isfinite(med).any() else '-'}, "
          f"loss {np.min(med):.4f}")
    results.write_json(os.path.join(out_dir, "runs.json"), {  # progress, rewritten per width
        "config": dataclasses.asdict(config), "done_widths": list(config.widths[:i + 1]),
        "runs": {p: {k: v[:i + 1] for k, v in d.items()} for p, d in per_run.items()}})

  transfer = {"widths": list(config.widths), "lrs": lrs, "parametrizations": {}}
  for p in PARAMETRIZATIONS:
    loss = np.where(np.isfinite(per_run[p]["loss"]), per_run[p]["loss"], np.inf)
    median = np.median(loss, axis=2)
    transfer["parametrizations"][p] = {"best_lr": best_lrs(median, lrs),
                                       "final_loss": median.tolist()}
  claim = claims(transfer)
  transferred = claim["transferred_lr"] or lrs[len(lrs) // 2]
  log(f"coordinate check at lr {_fmt_lr(transferred)} ...")
  coord = run_coord_check(family, x_train[:config.coord_batch], y_train[:config.coord_batch],
                          config, transferred)
  for p in PARAMETRIZATIONS:
    results.save_figure(coord[p].pop("_figure"), os.path.join(out_dir, f"coord_check_{p}.png"))
  results.write_json(os.path.join(out_dir, "coord_check.json"), coord)
  results.write_json(os.path.join(out_dir, "transfer.json"), transfer)
  plot_loss_vs_lr(transfer, os.path.join(out_dir, "loss_vs_lr.png"), family.title)
  prov = prov or {}
  info = {"command": command,
          "date": prov.get("date") or datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%d %H:%M UTC"),
          "machine": f"{provenance_lib.machine()}, jax {jax.__version__} on "
                     f"{jax.default_backend()}",
          "model": family.title,
          "dataset": f"{dataset.name}, {len(dataset.y_train)} training examples",
          "seconds": time.time() - start,
          # CPU time of this process (all threads): on a shared machine, what the run
          # would take with the cores to itself is closer to cpu_seconds / cores.
          "cpu_seconds": time.process_time() - cpu_start,
          "load_average_1min_at_start_and_end": [load_start, os.getloadavg()[0]]}
  summary = {"info": info, "config": dataclasses.asdict(config), "claims": claim,
             "coord_check_max_abs_slope_last_step": {
                 p: coord[p]["max_abs_slope_last_step"] for p in PARAMETRIZATIONS},
             "coord_check_slopes_last_step": {
                 p: dict(zip(coord[p]["layers"], np.asarray(coord[p]["slopes"])[:, -1].tolist()))
                 for p in PARAMETRIZATIONS}}
  results.write_json(os.path.join(out_dir, "summary.json"), summary)
  text = summary_markdown(transfer, claim, coord, info)
  results.write_text(os.path.join(out_dir, "summary.md"), text + "\n")
  log(text)
  return transfer


def add_sweep_flags(p: argparse.ArgumentParser, full: Any, axis: str, example: str) -> None:
  """The lr-sweep flags every μP study has (lr grid, seeds, steps, batch and eval sizes), with
  ``full``'s defaults shown; ``axis`` names what the study varies ("width", "depth")."""
  p.add_argument("--log2-lrs", default=None, metavar="FIRST:LAST",
                 help=f"exponents of the lr grid, e.g. --log2-lrs={example} (default "
                      f"{full.log2_lrs[0]}:{full.log2_lrs[-1]})")
  p.add_argument("--seeds", type=cli.positive_int, default=None,
                 help=f"seeds per ({axis}, lr) (default {full.seeds})")
  p.add_argument("--steps", type=cli.positive_int, default=None,
                 help=f"Adam steps per run (default {full.steps})")
  p.add_argument("--batch-size", type=cli.positive_int, default=None,
                 help=f"examples per step (default {full.batch_size})")
  p.add_argument("--eval-size", type=cli.positive_int, default=None,
                 help=f"training examples the final loss is measured on (default "
                      f"{full.eval_size})")


def add_width_flags(p: argparse.ArgumentParser, full: Config, quick: Config) -> None:
  """The flags of a width study (widths, lr grid, seeds, steps, sizes), defaults shown."""
  p.add_argument("--widths", type=cli.positive_int_list, default=None, metavar="W,W,...",
                 help="comma-separated increasing widths (default "
                      f"{','.join(map(str, full.widths))}; --quick "
                      f"{','.join(map(str, quick.widths))})")
  add_sweep_flags(p, full, "width", "-14:-4")
  p.add_argument("--zero-readout", action=argparse.BooleanOptionalAction, default=None,
                 help="zero-init the readout kernel (SP and μP alike)")
  p.add_argument("--coord-steps", type=cli.positive_int, default=None,
                 help=f"Adam steps of the coord check (default {full.coord_steps})")
  p.add_argument("--train-size", type=cli.positive_int, default=None,
                 help="subsample the training split to this many examples")


def add_flags(p: argparse.ArgumentParser) -> None:
  add_width_flags(p, Config(), QUICK)


ConfigT = TypeVar("ConfigT", bound=Config)


def sweep_config(args, base: Any, names: Sequence[str]) -> Any:
  """``base`` (a config dataclass) with the sweep flags given: ``--log2-lrs FIRST:LAST`` and
  the flags ``names`` (attribute = field name; a list, e.g. ``--widths``, becomes a tuple)."""
  changes: dict[str, Any] = {}
  if args.log2_lrs:
    try:
      lo, hi = (int(v) for v in args.log2_lrs.split(":"))
    except ValueError:
      raise ValueError(f"--log2-lrs must be 'first:last' ints, got {args.log2_lrs!r}") from None
    changes["log2_lrs"] = tuple(range(lo, hi + 1))
  for name in names:
    value = getattr(args, name)
    if isinstance(value, list):
      if value:
        changes[name] = tuple(value)
    elif value is not None:
      changes[name] = value
  return dataclasses.replace(base, **changes)


def width_config(args, full: ConfigT, quick: ConfigT, prog: str,
                 extra: Sequence[str] = ()) -> ConfigT:
  """Every check of a width study's flags (before any data or folder): ``full`` or ``quick``
  (``--quick``) with the flags given, ``extra`` naming the study's own flags (same names)."""
  config = sweep_config(args, quick if args.quick else full,
                        ("widths", "seeds", "steps", "batch_size", "eval_size", "coord_steps",
                         "zero_readout", *extra))
  cli.check_batch_size(args, config.batch_size, prog)
  return config


def config_from_args(args) -> Config:
  """Every check of the flags (before any data or folder); the study's :class:`Config`."""
  return width_config(args, Config(), QUICK, RUNNER.prog)


def _run(ctx) -> dict[str, Any]:
  return run(ctx.dataset, ctx.config, ctx.out_dir, ctx.provenance["command"], log=ctx.log,
             prov=ctx.provenance)


RUNNER = study.Runner("mup_transfer", __doc__.split("\n")[0], add_flags, config_from_args, _run,
                      presets={"quick": {"widths": QUICK.widths, "steps": QUICK.steps,
                                         "lrs": f"2^{QUICK.log2_lrs[0]}..2^{QUICK.log2_lrs[-1]}"}})


build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
