"""Depth at the paper's scale: a vanilla tanh CNN, delta-orthogonal vs Gaussian (Xiao et al. 2018).

Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington trained plain convolutional
networks (no BatchNorm, no skip connections) 10,000 layers deep by initializing every
conv kernel delta-orthogonal (zero except an orthogonal channel matrix at the window's
center) at the edge of chaos, and reported that Gaussian kernels of the same variance
fail. Here, per depth (``--depths``): the CNN of :mod:`experiments.common.deep_conv`
(3 x 3 convs, circular padding, tanh, a dense readout of the flattened last feature
map) on mean-pooled MNIST, with

* ``delta_orthogonal`` and ``gaussian`` kernels at the critical point
  (sigma_w2* = :func:`jinit.theory.critical_sigma_w2` for tanh at ``--sigma-b2``), and
  ``xavier`` and ``he`` (zero biases) at depths up to ``--baselines-up-to``;
* SGD, batch 32, the same batches for every init: the convolutions at lr = scale / depth
  for each ``--lr-scales`` value (the usable step shrinks as 1 / depth), the dense
  readout at the same lr (plain SGD) or at ``--readout-lr`` (not scaled by depth), all
  (init, lr) pairs of one depth trained in ONE compiled program, split over the CPU
  devices (one per core); the reported lr of an init is the one with the
  best final training accuracy;
* the singular values of the hidden layers' input-output Jacobian at init (one input),
  the mean-field chi1 and xi_c (:mod:`jinit.theory`; trainable predicted at depth
  <= 6 xi_c), and a control: the readout alone trained on frozen delta-orthogonal features.

  python -m experiments.deep_cnn --quick             # depth 1000, 1000 steps, cosine lr decay
  python -m experiments.deep_cnn --quick --depths 500,200,50  # the rest of the depth axis
  python -m experiments.deep_cnn                     # full: depth 10000, 400 steps, sigma_b2 1e-8

Each depth is written as ``depth_<D>.json`` when it finishes; ``--resume DIR`` skips the
depths done. At the end: ``depth.json`` (``{"depths", "final_train_acc": {init: [...]},
"steps", "lr": {init: [...]}}``, one value per depth, None where an init was not run),
``deep_cnn.png`` and ``summary.md``.

Reference: L. Xiao et al., "Dynamical Isometry and a Mean Field Theory of CNNs: How to
Train 10,000-Layer Vanilla Convolutional Neural Networks", ICML 2018,
https://arxiv.org/abs/1806.05393
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import cli
from experiments.common import deep_conv as dc
from experiments.common import results
from experiments.common import study
from experiments.common.provenance import format_provenance
from jinit import theory

NAME = "deep_cnn"
PROG = f"python -m experiments.{NAME}"
INITS = dc.INITS
CORE = ("delta_orthogonal", "gaussian")  # run at every depth
TARGETS = (0.5, 0.9)


def prepare_images(x_flat: np.ndarray, pool: int) -> np.ndarray:
  """(N, side^2) in [0, 1] -> (N, side/pool, side/pool, 1) float32, mean-pooled, centered."""
  side = round(math.sqrt(x_flat.shape[1]))
  if side * side != x_flat.shape[1] or side % pool:
    raise ValueError(f"--pool {pool}: expected square images with a side divisible by it, got "
                     f"{x_flat.shape[1]} pixels")
  x = np.asarray(x_flat, np.float32).reshape(-1, side // pool, pool, side // pool, pool)
  x = x.mean(axis=(2, 4))
  return (x - x.mean())[..., None].astype(np.float32)


def steps_to(curve: Sequence[float], target: float, every: int) -> int | None:
  """The first evaluated step with accuracy >= target (None: never)."""
  hit = np.nonzero(np.asarray(curve) >= target)[0]
  return int((hit[0] + 1) * every) if hit.size else None


def inits_at(depth: int, baselines_up_to: int) -> list[str]:
  """The inits run at ``depth``: the core two always, Xavier and He up to a depth."""
  return [n for n in INITS if n in CORE or depth <= baselines_up_to]


LR_DECAYS = ("none", "cosine")


def lr_factor(decay: str, chunk: int, chunks: int) -> float:
  """The lr multiplier of one training chunk (``eval_every`` steps) under ``decay``.

  ``"none"``: 1. ``"cosine"``: the cosine schedule at the chunk's midpoint,
  ``0.5 * (1 + cos(pi * (chunk + 0.5) / chunks))``, from ~1 down to ~0 over the run
  (Loshchilov & Hutter 2017, "SGDR", without restarts), piecewise constant so that one
  compiled chunk serves every chunk and a resumed run continues the same schedule.

  Args:
    decay: one of ``LR_DECAYS``.
    chunk: the chunk's index, ``0 <= chunk < chunks``.
    chunks: the number of chunks in the run.

  Returns:
    The factor, in (0, 1].
  """
  if decay not in LR_DECAYS:
    raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {decay!r}")
  if not 0 <= chunk < chunks:
    raise ValueError(f"chunk must be in [0, {chunks}), got {chunk}")
  if decay == "none":
    return 1.0
  return 0.5 * (1.0 + math.cos(math.pi * (chunk + 0.5) / chunks))


def run_depth(x, y, x_eval, y_eval, x_test, y_test, *, depth: int, inits: Sequence[str],
              channels: int, steps: int, eval_every: int, batch_size: int,
              lr_scales: Sequence[float], sigma_b2: float, seed: int, num_classes: int,
              jacobian: bool = True, readout: bool = True,
              partial: str | None = None, mesh=None,
              readout_lr: float | None = None, lr_decay: str = "none") -> dict[str, Any]:
  """Trains every (init, lr) at one depth in one program; returns the depth's record.

  With ``partial`` (a path), the training state is saved there after every
  ``eval_every`` steps and, if the file exists, training continues from it. With a
  ``mesh`` (one axis, several devices) the nets are split over its devices, padded with
  copies of the first net to a multiple of them (:func:`dc.sharded_train_sgd`). With a
  ``readout_lr``, the dense readout trains at that lr (one layer: not scaled by depth)
  and the convolutions at ``scale / depth``; without, every parameter at ``scale / depth``.
  ``lr_decay="cosine"`` multiplies every lr by :func:`lr_factor` of the chunk (constant
  within each ``eval_every`` steps), ``"none"`` keeps it constant.
  """
  sigma_w2 = float(theory.critical_sigma_w2(jnp.tanh, sigma_b2))
  lrs = dc.depth_lrs(depth, lr_scales)
  side = int(x.shape[1])
  keys = jax.random.split(jax.random.key(seed), len(inits))
  per_init = {n: dc.init_cnn(k, n, depth=depth, channels=channels, num_classes=num_classes,
                             sigma_w2=sigma_w2, sigma_b2=sigma_b2, image_side=side)
              for k, n in zip(keys, inits)}
  nets = [(n, lr) for n in inits for lr in lrs]  # each init starts from its own params
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *[per_init[n] for n, _ in nets])
  # One compiled program per eval_every steps, called steps / eval_every times: the state
  # after each chunk is saved (``partial``), so a stopped run resumes mid-depth.
  # remat: the backward pass recomputes each layer's im2col columns instead of storing
  # them; measured faster at depth 1,000 (less memory traffic) and 9x less memory.
  kw = {"steps": eval_every, "eval_every": eval_every, "batch_size": batch_size,
        "apply": functools.partial(dc.apply_cnn, remat=True)}
  n_nets, devices = len(nets), 1 if mesh is None else int(mesh.devices.size)
  pad = 0 if mesh is None else dc.pad_nets(n_nets, devices)
  # One device: the nets one after another (lax.map), measured faster than vmapped.
  fn = (jax.jit(functools.partial(dc.train_sgd, over_nets="map", **kw)) if mesh is None
        else dc.sharded_train_sgd(mesh, **kw))
  conv_lrs = [lr for _, lr in nets] + [nets[0][1]] * pad
  lr_arr = jnp.asarray(conv_lrs if readout_lr is None else
                       [[lr, readout_lr] for lr in conv_lrs], jnp.float32)
  base = jax.random.key(seed + 1)
  chunks = steps // eval_every
  done, losses, accs, train_seconds = 0, [], [], 0.0
  if partial and os.path.isfile(partial):
    done, stacked, losses, accs, train_seconds = _load_partial(partial, stacked)
    print(f"depth {depth}: resuming after step {done * eval_every}", flush=True)
  padded = jax.tree.map(lambda a: jnp.concatenate([a] + [a[:1]] * pad), stacked)
  args = (padded, lr_arr, jax.random.fold_in(base, done), x, y, x_eval, y_eval)
  t0 = time.time()
  compiled = fn.lower(*args).compile()
  compile_seconds = time.time() - t0
  for chunk in range(done, chunks):
    t0 = time.time()
    padded, loss, acc = jax.block_until_ready(compiled(
        padded, lr_arr * lr_factor(lr_decay, chunk, chunks), jax.random.fold_in(base, chunk),
        x, y, x_eval, y_eval))
    train_seconds += time.time() - t0
    losses.append(np.asarray(loss)[:n_nets, 0])
    accs.append(np.asarray(acc)[:n_nets, 0])
    if partial:  # the real nets only: a resumed run may use another number of devices
      _save_partial(partial, chunk + 1, jax.tree.map(lambda a: a[:n_nets], padded), losses,
                    accs, train_seconds)
    print(f"depth {depth}: step {(chunk + 1) * eval_every}/{steps}, train acc "
          + " ".join(f"{a:.2f}" for a in accs[-1]) + f" ({train_seconds:.0f} s)", flush=True)
  final = jax.tree.map(lambda a: np.asarray(a)[:n_nets], padded)
  losses, accs = np.stack(losses, axis=1), np.stack(accs, axis=1)
  runs: dict[str, Any] = {}
  for name in inits:
    idx = [i for i, (n, _) in enumerate(nets) if n == name]
    k = idx[dc.pick_lr([accs[i][-1] for i in idx], lrs)]
    p = jax.tree.map(lambda a, k=k: a[k], final)
    runs[name] = {
        "lr": nets[k][1], "lr_sweep": {f"{lr:.6g}": float(accs[i][-1])
                                       for i, lr in zip(idx, lrs)},
        "train_acc": accs[k].tolist(), "train_loss": losses[k].tolist(),
        "final_train_acc": float(accs[k][-1]), "best_train_acc": float(np.nanmax(accs[k])),
        "test_acc": dc.accuracy(p, x_test, y_test),
        **{f"steps_to_{round(t * 100)}": steps_to(accs[k], t, eval_every) for t in TARGETS}}
  record: dict[str, Any] = {
      "depth": depth, "inits": list(inits), "lrs_tried": lrs, "readout_lr": readout_lr,
      "lr_decay": lr_decay, "steps": steps,
      "eval_every": eval_every, "train_seconds": train_seconds,
      "compile_seconds": compile_seconds,
      "seconds_per_step_per_net": train_seconds / steps / len(nets), "nets": len(nets),
      "seconds_per_step": train_seconds / steps, "devices": devices,
      "sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "runs": runs}
  mean_field = {"delta_orthogonal": (sigma_w2, sigma_b2), "gaussian": (sigma_w2, sigma_b2),
                "xavier": (1.0, 0.0), "he": (2.0, 0.0)}
  record["mean_field"] = {}
  for name in inits:
    sw, sb = mean_field[name]
    xi = float(theory.xi_c(jnp.tanh, sw, sb))
    record["mean_field"][name] = {"sigma_w2": sw, "sigma_b2": sb,
                                  "chi1": float(theory.chi1(jnp.tanh, sw, sb)), "xi_c": xi,
                                  "predicted_trainable": bool(depth <= 6 * xi)}
  if jacobian:
    record["jacobian"] = {name: dc.spectrum_stats(dc.jacobian_singular_values(
        per_init[name], x[:1])) for name in inits}
  if readout:
    n = min(1000, len(y))
    record["readout_only_acc"] = dc.readout_only(per_init["delta_orthogonal"], x[:n], y[:n],
                                                 x_eval, y_eval)
  return record


def _save_partial(path: str, done: int, stacked, losses, accs, seconds: float) -> None:
  leaves = jax.tree.leaves(stacked)
  tmp = path + ".tmp.npz"
  np.savez(tmp, done=done, seconds=seconds, losses=np.stack(losses), accs=np.stack(accs),
           **{f"leaf{i}": np.asarray(a) for i, a in enumerate(leaves)})
  os.replace(tmp, path)


def _load_partial(path: str, like):
  with np.load(path) as z:
    treedef = jax.tree.structure(like)
    leaves = [jnp.asarray(z[f"leaf{i}"]) for i in range(treedef.num_leaves)]
    if [a.shape for a in leaves] != [a.shape for a in jax.tree.leaves(like)]:
      raise ValueError(f"{path}: saved by a run with other shapes")
    return (int(z["done"]), jax.tree.unflatten(treedef, leaves), list(z["losses"]),
            list(z["accs"]), float(z["seconds"]))


def collect(records: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
  """depth.json: one value per depth and init (None where the init was not run)."""
  depths = [r["depth"] for r in records]
  out: dict[str, Any] = {"depths": depths, "steps": steps, "final_train_acc": {}, "lr": {},
                         "test_acc": {}, "steps_to_90": {}, "jacobian_median_sv": {}}
  for name in INITS:
    if not any(name in r["runs"] for r in records):
      continue
    get = lambda r, key, name=name: r["runs"][name][key] if name in r["runs"] else None
    out["final_train_acc"][name] = [get(r, "final_train_acc") for r in records]
    out["lr"][name] = [get(r, "lr") for r in records]
    out["test_acc"][name] = [get(r, "test_acc") for r in records]
    out["steps_to_90"][name] = [get(r, "steps_to_90") for r in records]
    out["jacobian_median_sv"][name] = [
        r["jacobian"][name]["median"] if name in r.get("jacobian", {}) else None
        for r in records]
  out["readout_only_acc"] = [r.get("readout_only_acc") for r in records]
  out["seconds_per_step_per_net"] = [r["seconds_per_step_per_net"] for r in records]
  out["seconds_per_step"] = [r.get("seconds_per_step") for r in records]  # all nets, wall
  return out


def format_table(records: Sequence[dict[str, Any]]) -> str:
  lines = [("| depth | init | lr (scale / depth) | steps to 50% | steps to 90% | final train acc "
            "| test acc | Jacobian sv median (max / min) | chi1 | 6 xi_c |"),
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in records:
    for name, run in r["runs"].items():
      never = f"never (> {r['steps']})"
      jac = r.get("jacobian", {}).get(name)
      jac_s = (f"{jac['median']:.3g} ({jac['max']:.3g} / {jac['min']:.2g})" if jac else "-")
      mf = r["mean_field"][name]
      # xi_c = inf (tanh at sigma_b2 = 0 is exactly critical) is stored as null in JSON.
      six = math.inf if mf["xi_c"] is None else 6 * mf["xi_c"]
      lines.append(
          f"| {r['depth']} | {name} | {run['lr']:.3g} | "
          f"{run['steps_to_50'] if run['steps_to_50'] is not None else never} | "
          f"{run['steps_to_90'] if run['steps_to_90'] is not None else never} | "
          f"{run['final_train_acc']:.3f} | {run['test_acc']:.3f} | {jac_s} | "
          f"{mf['chi1']:.4f} | {'> 1e4' if six > 1e4 else f'{six:.0f}'} |")
    if r.get("readout_only_acc") is not None:
      lines.append(f"| {r['depth']} | readout only (frozen delta-orthogonal) | Adam 0.01 | - "
                   f"| - | {r['readout_only_acc']:.3f} (eval set) | - | - | - | - |")
  return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], path: str) -> None:
  plt = results.pyplot()
  fig, axes = plt.subplots(1, len(records), figsize=(3.2 * len(records), 3.2), squeeze=False,
                           sharey=True)
  for ax, r in zip(axes[0], records):
    for name, run in r["runs"].items():
      acc = np.asarray(run["train_acc"])
      ax.plot((np.arange(len(acc)) + 1) * r["eval_every"], acc, label=name)
    if r.get("readout_only_acc") is not None:
      ax.axhline(r["readout_only_acc"], color="gray", ls="--", lw=1, label="readout only")
    ax.axhline(0.9, color="gray", ls=":", lw=1)
    ax.set_title(f"depth {r['depth']}", fontsize=9)
    ax.set_xlabel("SGD step")
    ax.set_ylim(0, 1)
  axes[0][0].set_ylabel("training accuracy")
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  results.save_figure(fig, path)


def add_flags(p) -> None:
  p.add_argument("--quick", action="store_true",
                 help="depth 1000 only (the headline; --depths 500,200,50 is the rest of the "
                      "depth axis, a separate command), 7x7 images, 1000 steps with cosine lr "
                      "decay, 10000 examples")
  p.add_argument("--depths", default=None,
                 help="comma-separated conv depths, deepest first (default 10000: the full "
                      "run)")
  p.add_argument("--lr-scales", default=None,
                 help="comma-separated: lr = scale / depth, each tried, the best final train "
                      "acc reported (default 2 with --quick; 1 for the full run, whose "
                      "Jacobian at sigma_b2 1e-8 is near-isometric, so a step moves it more)")
  p.add_argument("--readout-lr", type=cli.positive_float, default=None,
                 help="SGD lr of the dense readout, not scaled by depth (default: plain SGD, "
                      "the convolutions' scale / depth; 0.2 at sigma_b2 1e-6 collapsed at "
                      "depth 1000, docs/results/deep_cnn/readout_lr_0.2/)")
  p.add_argument("--lr-decay", choices=LR_DECAYS, default=None,
                 help="lr schedule over the steps: none (constant) or cosine (piecewise "
                      "constant per --eval-every chunk; default cosine with --quick, else "
                      "none: the full run is far from converged in its steps)")
  p.add_argument("--no-jacobian", action="store_true", help="skip the Jacobian spectra")
  p.add_argument("--spectra", default=None, metavar="SIGMA_B2,...",
                 help="no training: only the Jacobian spectra at init of delta_orthogonal and "
                      "gaussian at each --depths value and each of these sigma_b2 (at tanh's "
                      "critical sigma_w2 for it); writes spectra.json and spectra.md")
  p.add_argument("--no-readout", action="store_true", help="skip the readout-only control")
  study.flags(p, baselines_up_to=(200, "run xavier and he at depths up to this (default "
                                       "%(default)s)", cli.nonneg_int),
              pool=(4, "mean-pool the images by this factor (default 4: 28x28 -> 7x7)"),
              channels=8, steps=(None, "SGD steps per depth (default 1000 with --quick, "
                                       "else 400)"),
              eval_every=(None, "default steps / 10; must divide --steps"),
              eval_size=(256, "training examples the accuracy is measured on (default "
                              "%(default)s)"), batch_size=32,
              sigma_b2=(None, "bias variance; the weights' sigma_w2 is tanh's critical "
                              "value for it (default 1e-4 with --quick; 1e-8 for the full "
                              "run: at 10000 layers 1e-4 leaves the delta-orthogonal "
                              "Jacobian's median singular value at ~1e-9)", cli.positive_float),
              train_size=(None, "default 10000"),
              seed=0, no_progress=(False, "no download progress bar"))


def _ints(text: str, flag: str) -> list[int]:
  try:
    vals = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise ValueError(f"{flag}: comma-separated ints, got {text!r}") from None
  if not vals or min(vals) < 1:
    raise ValueError(f"{flag}: ints >= 1, got {text!r}")
  return list(dict.fromkeys(vals))  # in the order given (--quick: deepest first)


def _floats(text: str, flag: str) -> list[float]:
  try:
    vals = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise ValueError(f"{flag}: comma-separated numbers, got {text!r}") from None
  if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
    raise ValueError(f"{flag}: positive finite numbers, got {text!r}")
  return vals


def make_config(args) -> dict[str, Any]:
  """Every check of the flags (before any data or folder): depths, steps, lr scales."""
  depths = _ints(args.depths or ("1000" if args.quick else "10000"), "--depths")
  steps = args.steps or (1000 if args.quick else 400)
  if args.lr_scales is None:
    args.lr_scales = "2" if args.quick else "1"
  if args.sigma_b2 is None:
    args.sigma_b2 = 1e-4 if args.quick else 1e-8
  if args.lr_decay is None:
    args.lr_decay = "cosine" if args.quick else "none"
  scales = _floats(args.lr_scales, "--lr-scales")
  if args.train_size is None:
    args.train_size = 10000
  if getattr(args, "parallel", "runs") != "runs":
    raise ValueError(f"--parallel {args.parallel}: {PROG} splits its nets over the devices "
                     "(runs), one after another on each; use --parallel runs")
  spectra = None if args.spectra is None else _floats(args.spectra, "--spectra")
  return {"depths": depths, "steps": steps, "scales": scales, "spectra": spectra,
          "eval_every": study.check_image_sgd(args, steps, PROG),
          "mesh": cli.mesh_from_args(args, PROG)}


def spectra_at_init(x1, depths: Sequence[int], sigma_b2s: Sequence[float], *, channels: int,
                    seed: int, num_classes: int, baselines_up_to: int) -> list[dict[str, Any]]:
  """The hidden layers' Jacobian spectrum at init per depth, sigma_b2 and init (no training).

  Each net is drawn as :func:`run_depth` draws it (tanh's critical sigma_w2 for the
  sigma_b2, the same keys: split over the inits run at the depth, which include Xavier
  and He up to ``baselines_up_to``); the statistics are :func:`dc.spectrum_stats` of
  d(last feature map) / d(first feature map) at the one input ``x1`` (1, H, W, 1).
  Dynamical isometry (Xiao et al. 2018) needs the singular values near 1 at the depth
  trained; at criticality the spread grows with depth and with q*, so smaller sigma_b2
  keeps deeper nets isometric.

  Returns:
    One record per (depth, sigma_b2, init): those keys, ``sigma_w2`` and the statistics.
  """
  rows = []
  for depth in depths:
    # run_depth's keys: one per init run at this depth, the core two first (inits_at)
    keys = jax.random.split(jax.random.key(seed), len(inits_at(depth, baselines_up_to)))
    for sb2 in sigma_b2s:
      sw2 = float(theory.critical_sigma_w2(jnp.tanh, sb2))
      for k, name in zip(keys, CORE):
        p = dc.init_cnn(k, name, depth=depth, channels=channels, num_classes=num_classes,
                        sigma_w2=sw2, sigma_b2=sb2, image_side=int(x1.shape[1]))
        rows.append({"depth": depth, "sigma_b2": sb2, "sigma_w2": sw2, "init": name,
                     **dc.spectrum_stats(dc.jacobian_singular_values(p, x1))})
        print(f"depth {depth}, sigma_b2 {sb2:g}, {name}: median singular value "
              f"{rows[-1]['median']:.3g}", flush=True)
  return rows


def format_spectra(rows: Sequence[dict[str, Any]]) -> str:
  lines = ["| depth | sigma_b2 | sigma_w2 | init | median singular value | max | min | "
           "fraction in [1/2, 2] |", "|---|---|---|---|---|---|---|---|"]
  lines += [f"| {r['depth']} | {r['sigma_b2']:g} | {r['sigma_w2']:.6f} | {r['init']} | "
            f"{r['median']:.3g} | {r['max']:.3g} | {r['min']:.2g} | "
            f"{r['frac_in_half_to_2']:.3f} |" for r in rows]
  return "\n".join(lines)


def run(ctx) -> dict[str, Any]:
  """Every depth (those done before skipped on --resume); writes the report after each."""
  args, dataset, out_dir, prov = ctx.args, ctx.dataset, ctx.out_dir, ctx.provenance
  if ctx.config["spectra"] is not None:
    x1 = jnp.asarray(prepare_images(dataset.x_train, args.pool)[:1])  # as run_depth's
    rows = spectra_at_init(x1, ctx.config["depths"], ctx.config["spectra"],
                           channels=args.channels, seed=args.seed,
                           num_classes=dataset.num_classes,
                           baselines_up_to=args.baselines_up_to)
    out = {"provenance": prov, "rows": rows, "channels": args.channels,
           "image_side": int(x1.shape[1])}
    results.write_json(os.path.join(out_dir, "spectra.json"), out)
    table = format_spectra(rows)
    results.write_text(os.path.join(out_dir, "spectra.md"),
                       f"# Deep vanilla CNN: Jacobian spectra at init\n\n"
                       f"{format_provenance(prov)}\n"
                       f"The hidden layers' input-output Jacobian at one training input "
                       f"({x1.shape[1]}x{x1.shape[2]}, {args.channels} channels, circular "
                       f"padding), tanh at the critical sigma_w2 of each sigma_b2, seed "
                       f"{args.seed}.\n\n{table}\n")
    print(table)
    return out
  q = args.quick
  depths, steps, scales, eval_every = (ctx.config[k] for k in ("depths", "steps", "scales",
                                                                "eval_every"))
  readout_lr = args.readout_lr
  x = prepare_images(dataset.x_train, args.pool)
  x_test = prepare_images(dataset.x_test, args.pool)
  load = os.getloadavg()[0]
  x, y = jnp.asarray(x), jnp.asarray(dataset.y_train)
  n_eval = min(args.eval_size, len(dataset.y_train))
  x_test, y_test = jnp.asarray(x_test[:1000]), jnp.asarray(dataset.y_test[:1000])
  print(f"Deep vanilla tanh CNN: depths {depths}, {args.channels} channels, "
        f"{x.shape[1]}x{x.shape[2]} images, {steps} SGD steps (lr = {scales} / depth"
        + ("" if readout_lr is None else f", readout {readout_lr:g}")
        + ("" if args.lr_decay == "none" else f", {args.lr_decay} decay")
        + f", batch {args.batch_size}, sigma_b2 {args.sigma_b2:g}) on {len(y)} {dataset.name} "
        f"examples; results in {out_dir}")
  t_start = time.time()
  records: list[dict[str, Any]] = []

  def report(stopped_at: int | None = None) -> dict[str, Any]:
    """depth.json, the figure and summary.md for the depths done (all, or up to a stop)."""
    done = sorted(records, key=lambda r: r["depth"])
    summary = collect(done, steps)
    summary.update({"provenance": prov, "quick": bool(q), "channels": args.channels,
                    "image_side": int(x.shape[1]), "batch_size": args.batch_size,
                    "lr_scales": scales, "readout_lr": readout_lr, "lr_decay": args.lr_decay,
                    "train_size": len(y), "eval_size": n_eval,
                    "depths_planned": depths, "stopped_at_depth": stopped_at,
                    "seconds_this_session": time.time() - t_start,
                    "load_avg_1min_at_start": load})
    results.write_json(os.path.join(out_dir, "depth.json"), summary)
    plot(done, os.path.join(out_dir, "deep_cnn.png"))
    table = format_table(done)
    stop = ("" if stopped_at is None else
            f" -- stopped during depth {stopped_at}: depths {[r['depth'] for r in done]} done")
    text = (f"# Deep vanilla CNN ({'--quick' if q else 'full'} run){stop}\n\n"
            f"{format_provenance(prov)}\n"
            f"- wall time this session: {summary['seconds_this_session']:.0f} s (1-min load "
            f"average at start {load:.1f}; per depth, seconds incl. compile: "
            + ", ".join(f"{r['depth']}: {r.get('seconds', float('nan')):.0f} s" for r in done)
            + ")\n- seconds per SGD step, all nets together (wall, "
            + f"{done[0].get('devices', 1) if done else 1} device(s)): "
            + ", ".join(f"depth {r['depth']}: {r.get('seconds_per_step', float('nan')):.2f}"
                        for r in done) + "\n\n"
            f"tanh CNN, no BatchNorm, no skips, circular padding: 3x3 convs, {args.channels} "
            f"channels, {x.shape[1]}x{x.shape[2]} {dataset.name}, dense readout; plain SGD "
            f"batch {args.batch_size}, lr = scale / depth (scales {scales}; best final train "
            f"acc chosen per init)"
            + ("" if readout_lr is None else
               f" for the convolutions and {readout_lr:g} for the readout")
            + ("" if args.lr_decay == "none" else
               f", {args.lr_decay} lr decay over the steps (constant per {eval_every}-step "
               "chunk)")
            + f", sigma_b2 {args.sigma_b2:g}, {steps} steps, same batches for every init; "
            f"train accuracy on the first {n_eval} training examples, test accuracy on "
            f"{len(y_test)} test examples.\n\n{table}\n")
    results.write_text(os.path.join(out_dir, "summary.md"), text)
    print(table)
    return summary

  for depth in depths:
    path = os.path.join(out_dir, f"depth_{depth}.json")
    if args.resume and os.path.isfile(path):
      records.append(results.read_json(path))
      print(f"depth {depth}: done before (resumed)")
      continue
    t0, load0 = time.time(), os.getloadavg()[0]
    try:
      rec = run_depth(x, y, x[:n_eval], y[:n_eval], x_test, y_test, depth=depth,
                      inits=inits_at(depth, args.baselines_up_to), channels=args.channels,
                      steps=steps, eval_every=eval_every, batch_size=args.batch_size,
                      lr_scales=scales, sigma_b2=args.sigma_b2, seed=args.seed,
                      num_classes=dataset.num_classes, jacobian=not args.no_jacobian,
                      readout=not args.no_readout,
                      partial=os.path.join(out_dir, f"depth_{depth}.partial.npz"),
                      mesh=ctx.config["mesh"], readout_lr=readout_lr,
                      lr_decay=args.lr_decay)
    except KeyboardInterrupt:
      if records:
        report(stopped_at=depth)
      sys.stderr.write(f"\nInterrupted at depth {depth}; depths done and the state after its "
                       f"last {eval_every} steps are in {out_dir}; resume with: {PROG} "
                       f"--resume {out_dir}\n")
      raise SystemExit(130) from None
    rec["seconds"] = time.time() - t0
    rec["load_avg_1min_at_start"] = load0
    results.write_json(path, rec)
    if os.path.exists(os.path.join(out_dir, f"depth_{depth}.partial.npz")):
      os.remove(os.path.join(out_dir, f"depth_{depth}.partial.npz"))
    records.append(rec)
    print(format_table([rec]).split("\n", 2)[2], flush=True)
    print(f"depth {depth}: {rec['seconds']:.0f} s ({rec['seconds_per_step_per_net']:.3f} s per "
          "step per net)", flush=True)
  summary = report()
  print(f"Done: {out_dir}")
  return summary


RUNNER = study.Runner(NAME, __doc__.split("\n")[0], add_flags, make_config, run,
                      resumable=True, announce=False)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
