"""LSUV (Mishkin & Matas 2016) vs Xavier/Kaiming on the page's sigmoid MLP and a 30-layer ReLU MLP.

LSUV: orthonormal kernels, then layer by layer rescale each kernel until the
layer's output (pre-activation) variance on a batch of 256 training examples is
1 +- 0.1 (at most 10 rescalings per layer), :func:`jinit.lsuv.lsuv`; biases zero.
It runs as the training engine's ``post_init`` hook, per run (seed), then all runs
of a study train in one compiled program (``experiments.common.train``); the
baselines train in a second one (a hook applies to every run of a call).

Studies (defaults chosen so each takes a few minutes on a 2-core CPU):

* ``sigmoid``: the course page's model, 5 x 50 sigmoid, SGD lr 0.01 on the summed
  loss, batch 32; 10 epochs (the page: 30), 3 seeds; baselines ``xavier_uniform`` +
  zero bias (the page's fix) and ``torch_linear_default`` (PyTorch's default).
* ``deep_relu``: the ``deep_relu`` experiment's net, 30 x 128 ReLU, SGD lr 0.0005
  (summed loss), batch 64, 5 epochs, 3 seeds; baselines ``xavier_uniform`` and
  ``kaiming_normal(relu)``, zero biases.

  python -m experiments.lsuv
  python -m experiments.lsuv --study sigmoid --epochs 30 --seeds 8

Writes per study ``<study>/history.json``, ``metrics.png``, ``summary.md`` (and the
LSUV iterations per layer in ``history.json["lsuv"]``), and prints a table per study.

Reference: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016.
"""

from __future__ import annotations

import dataclasses
import os

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import models
from experiments.common import results
from experiments.common import study
from experiments.common import train as train_lib
from jinit import lsuv as lsuv_lib

NAME = "lsuv"
LSUV_LABEL = "lsuv"
# The engine's jinit init of the LSUV runs; LSUV replaces every kernel by an orthonormal one
# (with the run's post_init key), so this only has to be cheap (no QR in the vmapped init).
LSUV_BASE = "lecun_normal"


@dataclasses.dataclass(frozen=True)
class Study:
  config: train_lib.TrainConfig
  baselines: tuple[str, ...]
  bias_init: str  # for the baselines ("auto": the page's pairing)


STUDIES = {
    "sigmoid": Study(train_lib.TrainConfig(activation="sigmoid", hidden=50, depth=5, lr=0.01,
                                           batch_size=32, epochs=10),
                     ("xavier_uniform", "torch_linear_default"), models.AUTO_BIAS),
    "deep_relu": Study(train_lib.TrainConfig(activation="relu", hidden=128, depth=30, lr=0.0005,
                                             batch_size=64, epochs=5),
                       ("xavier_uniform", "kaiming_normal:nonlinearity=relu"), "zeros"),
}


def lsuv_hook(config: train_lib.TrainConfig, num_classes: int, sink: list):
  """``post_init`` for the training engine: LSUV on the run's params (info kept in ``sink``)."""
  model = models.build_model(models.RunSpec(LSUV_BASE, bias_init="zeros"),
                             hidden=config.hidden, depth=config.depth, num_classes=num_classes,
                             activation=config.activation)

  def post_init(params, key, x_batch):
    variables, info = lsuv_lib.lsuv(model, {"params": params}, x_batch, key, return_info=True)
    sink.append([layer.to_dict() for layer in info])
    return variables["params"]

  return post_init


def run(dataset: data_lib.Dataset, name: str, study_def: Study, seeds: int, out_dir: str,
        log=print, progress: bool = True, mesh=None, resume: bool = False) -> dict:
  """Trains LSUV runs and baseline runs of one study; writes and returns the merged history.

  Each of the two programs checkpoints after every epoch (``checkpoints_lsuv/``,
  ``checkpoints_baselines/``), so ``resume=True`` continues both.
  """
  os.makedirs(out_dir, exist_ok=True)
  cfg = study_def.config
  log(f"\n== {name}: {cfg.depth} x {cfg.hidden} {cfg.activation} MLP, SGD lr {cfg.lr} (summed "
      f"loss), batch {cfg.batch_size}, {cfg.epochs} epochs, {seeds} seeds; results in {out_dir}")
  info: list = []
  every = max(1, cfg.epochs // 5)
  lsuv_specs = study.make_specs([LSUV_BASE], seeds, 0, "zeros")
  log(f"-- LSUV ({seeds} runs; post_init on {cfg.init_batch_size} training examples)")
  info_path = os.path.join(out_dir, "lsuv.json")

  def save_info(result):  # LSUV's record, once, before the first epoch
    if result.epochs_done == 0 and info:
      results.write_json(info_path, {"per_run_layers": info})

  ckpt = train_lib.Checkpointer(os.path.join(out_dir, "checkpoints_lsuv"))
  try:
    lsuv_result = train_lib.train(dataset, lsuv_specs, cfg,
                                  post_init=lsuv_hook(cfg, dataset.num_classes, info), log=log,
                                  log_every=every, progress=progress, mesh=mesh,
                                  checkpointer=ckpt, resume=resume, on_epoch=save_info)
  finally:
    ckpt.close()
  if not info and os.path.exists(info_path):  # resumed: LSUV ran before the interruption
    info = results.read_json(info_path)["per_run_layers"]
  base_specs = study.make_specs(list(study_def.baselines), seeds, 0, study_def.bias_init)
  log(f"-- baselines: {', '.join(study_def.baselines)}")
  ckpt = train_lib.Checkpointer(os.path.join(out_dir, "checkpoints_baselines"))
  try:
    base_result = train_lib.train(dataset, base_specs, cfg, log=log, log_every=every,
                                  progress=progress, mesh=mesh, checkpointer=ckpt, resume=resume)
  finally:
    ckpt.close()
  history = base_result.to_json()
  lsuv_history = lsuv_result.to_json()
  for r in lsuv_history["runs"]:
    r["init"] = LSUV_LABEL  # trained from LSUV: orthonormal kernels, rescaled per layer
  history["runs"] = lsuv_history["runs"] + history["runs"]
  history["lsuv"] = {"per_run_layers": info, "tol": 0.1, "max_iters": 10,
                     "epoch_seconds": lsuv_history["epoch_seconds"],
                     "compile_seconds": lsuv_history["compile_seconds"],
                     "init_seconds": lsuv_history["init_seconds"]}
  title = f"{name}: LSUV vs baselines ({cfg.depth} x {cfg.hidden} {cfg.activation}, {dataset.name})"
  iters = [sum(l["iterations"] for l in layers) for layers in info]
  note = (f"LSUV rescalings per run (all layers): {iters}; layers converged: "
          f"{sum(l['converged'] for layers in info for l in layers)}/"
          f"{sum(len(layers) for layers in info)}; LSUV time (init, all runs) "
          f"{lsuv_result.init_seconds:.1f} s")
  timing = (f"baselines: {study._timing(base_result, len(base_specs))}; LSUV: "
            f"{study._timing(lsuv_result, len(lsuv_specs))}")
  study.write_report(out_dir, history, dataset.num_classes, cfg.epochs, title, timing, log=log,
                     note=note)
  log(note)
  return history


def add_flags(p) -> None:
  p.add_argument("--study", action="append", choices=tuple(STUDIES), default=None,
                 help="which study (repeatable). Default: all")
  study.flags(p, seeds=3, epochs=(None, "override the study's epochs"), train_size=None)


def make_config(args) -> tuple[dict[str, train_lib.TrainConfig], object]:
  """Every check of the flags (before any data or folder): each study's config, the mesh."""
  n_train = cli.TRAIN_SIZES.get(args.dataset, 0)
  if args.train_size:
    n_train = min(n_train, args.train_size) if n_train else args.train_size
  configs = {}
  for name in args.study or list(STUDIES):  # a batch larger than a small training set: clipped
    config = STUDIES[name].config
    configs[name] = dataclasses.replace(config, epochs=args.epochs or config.epochs,
                                        batch_size=min(config.batch_size, n_train or
                                                       config.batch_size))
  return configs, cli.mesh_from_args(args, RUNNER.prog)


def _run(ctx) -> dict:
  configs, mesh = ctx.config
  out = {}
  for name, config in configs.items():
    config = dataclasses.replace(config, batch_size=min(config.batch_size,
                                                        len(ctx.dataset.y_train)))
    out[name] = run(ctx.dataset, name, dataclasses.replace(STUDIES[name], config=config),
                    ctx.args.seeds, ctx.path(name), progress=not ctx.args.no_progress,
                    mesh=mesh, resume=bool(ctx.args.resume))
  print(f"Wrote {ctx.out_dir}/<study>/history.json, metrics.png, summary.md")
  for history in out.values():
    study.finish(history, ctx.out_dir)
  return out


RUNNER = study.Runner(NAME, __doc__.split("\n")[0], add_flags, make_config, _run,
                      resumable=True)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
