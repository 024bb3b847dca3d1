"""jinit's u-μP against graphcore's ``unit_scaling`` (the paper's reference library).

Two comparisons, both on the same inputs:

* ops: every unit-scaled op of :mod:`jinit.mup` (``unit_linear`` with and without its
  constraint, ``unit_readout``, ``unit_embedding``, ``residual_apply`` at several taus,
  ``unit_attention`` full and causal at two multipliers, ``unit_gelu``, ``unit_layer_norm``,
  ``unit_rms_norm``, ``unit_softmax_cross_entropy``) and its ``unit_scaling.functional``
  counterpart run forward on the same arrays and backward on the same cotangents: every
  output and gradient is compared (its std in both, the largest difference relative to
  the reference's std), which compares the forward and backward scales;
* rules: a u-μP transformer built of ``unit_scaling`` modules (embedding, 3 layers in a
  ``DepthSequential``, LayerNorms with gains and biases, a biased Linear, the readout) at
  widths 64 and 256: per parameter, ``unit_scaling``'s ``mup_type``, init mean / std and
  ``unit_scaling.optim``'s Adam and SGD lr factors against jinit's role, init rule and
  ``lr_multiplier`` from ``jinit.mup.infinite_dims(..., parametrization="u_mup")``; and
  ``transformer_residual_scaling_rule``'s taus against ``jinit.mup.residual_taus``.

The reference side runs in another interpreter (``--reference-python``: one with torch,
unit-scaling and numpy; unit-scaling is not a jinit dependency) through
``benchmarks/unit_scaling_reference.py``.

  python -m experiments.u_mup_compare --reference-python /tmp/us/bin/python \
      --out docs/results/u_mup
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jinit import mup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "benchmarks", "unit_scaling_reference.py")
TAUS = (0.25, 1.0, 3.0)
ATTN_MULTS = (1.0, 4.0)
GELU_MULTS = (0.5, 1.0, 2.0)
RULE_SPECS = ({"vocab": 97, "width": 64, "layers": 3, "seed": 0},
              {"vocab": 97, "width": 256, "layers": 3, "seed": 1})
# unit_scaling's mup_type for each jinit u-μP role (embeddings and hidden kernels are
# both its "weight"; its lr rule reads an embedding's fan-in as its width).
MUP_TYPE = {"input": "weight", "hidden": "weight", "output": "output", "bias": "bias",
            "norm": "norm"}


def make_inputs(seed: int = 0) -> dict[str, np.ndarray]:
  """Every op's inputs and cotangents (unit normal), shapes in Flax layouts."""
  rng = np.random.default_rng(seed)
  n = rng.standard_normal
  b, s, h, d = 4, 32, 4, 16
  return {
      "lin_x": n((8, 16, 96)), "lin_w": n((96, 160)), "lin_b": n(160), "lin_g": n((8, 16, 160)),
      "emb_ids": rng.integers(0, 50, (8, 16)), "emb_table": n((50, 64)), "emb_g": n((8, 16, 64)),
      "taus": np.array(TAUS), "res_x": n((64, 48)), "res_g": n((64, 48)),
      "attn_q": n((b, s, h, d)), "attn_k": n((b, s, h, d)), "attn_v": n((b, s, h, d)),
      "attn_g": n((b, s, h, d)), "attn_mults": np.array(ATTN_MULTS),
      "gelu_x": n((64, 128)), "gelu_g": n((64, 128)), "gelu_mults": np.array(GELU_MULTS),
      "norm_x": n((8, 16, 64)) * 3.0 + 1.0, "norm_scale": 1.0 + 0.1 * n(64),
      "norm_bias": 0.1 * n(64), "norm_g": n((8, 16, 64)),
      "ce_logits": n((32, 10)), "ce_labels": rng.integers(0, 10, 32),
      "rule_specs": np.array(json.dumps(list(RULE_SPECS))),
  }


def _vjp(fn, cot, *args):
  out, vjp = jax.vjp(fn, *args)
  return [np.asarray(out)] + [np.asarray(g) for g in vjp(jnp.asarray(cot, out.dtype))]


def jinit_ops(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """jinit.mup's ops on ``a`` (float32), keyed as the reference's outputs."""
  f = {k: jnp.asarray(v, jnp.float32) for k, v in a.items()
       if isinstance(v, np.ndarray) and v.dtype.kind == "f"}
  r = {}
  for name, fn in (("linear", mup.unit_linear),
                   ("linear_free", lambda x, w, b: mup.unit_linear(x, w, b, constraint=None)),
                   ("readout", mup.unit_readout)):
    out, gx, gw, gb = _vjp(fn, f["lin_g"], f["lin_x"], f["lin_w"], f["lin_b"])
    r.update({f"{name}/out": out, f"{name}/gx": gx, f"{name}/gw": gw, f"{name}/gb": gb})
  ids = jnp.asarray(a["emb_ids"])
  out, gt = _vjp(lambda t: mup.unit_embedding(ids, t), f["emb_g"], f["emb_table"])
  r.update({"embedding/out": out, "embedding/gtable": gt})
  for tau in TAUS:
    out, gx = _vjp(lambda x, tau=tau: mup.residual_apply(lambda h: jnp.tanh(h) * 2.0, x, tau),
                   f["res_g"], f["res_x"])
    r.update({f"residual_{tau:g}/out": out, f"residual_{tau:g}/gx": gx})
  for causal in (False, True):
    for mult in ATTN_MULTS:
      out, gq, gk, gv = _vjp(
          lambda q, k, v, mult=mult, causal=causal: mup.unit_attention(
              q, k, v, mult=mult, causal=causal),
          f["attn_g"], f["attn_q"], f["attn_k"], f["attn_v"])
      key = f"attention_{'causal' if causal else 'full'}_{mult:g}"
      r.update({f"{key}/out": out, f"{key}/gq": gq, f"{key}/gk": gk, f"{key}/gv": gv})
  for mult in GELU_MULTS:
    out, gx = _vjp(lambda x, mult=mult: mup.unit_gelu(x, mult), f["gelu_g"], f["gelu_x"])
    r.update({f"gelu_{mult:g}/out": out, f"gelu_{mult:g}/gx": gx})
  out, gx, gs, gb = _vjp(mup.unit_layer_norm, f["norm_g"], f["norm_x"], f["norm_scale"],
                         f["norm_bias"])
  r.update({"layer_norm/out": out, "layer_norm/gx": gx, "layer_norm/gscale": gs,
            "layer_norm/gbias": gb})
  out, gx, gs = _vjp(mup.unit_rms_norm, f["norm_g"], f["norm_x"], f["norm_scale"])
  r.update({"rms_norm/out": out, "rms_norm/gx": gx, "rms_norm/gscale": gs})
  labels = jnp.asarray(a["ce_labels"])
  out, gl = _vjp(lambda z: mup.unit_softmax_cross_entropy(z, labels), np.float32(1.0),
                 f["ce_logits"])
  r.update({"cross_entropy/out": out, "cross_entropy/glogits": gl})
  return r


def run_reference(python: str, a: dict[str, np.ndarray]) -> tuple[dict, dict]:
  """``unit_scaling``'s outputs on ``a`` and its rules, from ``python`` (a subprocess)."""
  with tempfile.TemporaryDirectory() as tmp:
    inp, out, rules = (os.path.join(tmp, n) for n in ("in.npz", "out.npz", "rules.json"))
    np.savez(inp, **a)
    proc = subprocess.run([python, REFERENCE, inp, out, rules], capture_output=True,
                          text=True, timeout=600, check=False)
    if proc.returncode != 0:
      raise RuntimeError(f"{python} {REFERENCE} failed:\n{proc.stderr[-3000:]}")
    with np.load(out) as f:
      ref = {k: f[k] for k in f.files}
    with open(rules) as f:
      return ref, json.load(f)


def compare_ops(ours: dict, ref: dict) -> list[dict]:
  """Per output / gradient: both stds and ``max |ours - ref| / std(ref)``."""
  if set(ours) != set(ref):
    raise ValueError(f"outputs differ: only ours {sorted(set(ours) - set(ref))}, only theirs "
                     f"{sorted(set(ref) - set(ours))}")
  rows = []
  for key in sorted(ref):
    o, t = np.asarray(ours[key], np.float64), np.asarray(ref[key], np.float64)
    if o.shape != t.shape:
      raise ValueError(f"{key}: shape {o.shape} vs the reference's {t.shape}")
    scale = float(np.sqrt(np.mean(t * t)))  # RMS: a scalar loss has std 0
    rows.append({"tensor": key, "rms_jinit": float(np.sqrt(np.mean(o * o))), "rms_ref": scale,
                 "max_rel_diff": float(np.max(np.abs(o - t))) / scale})
  return rows


def _flax_path(name: str, shape: list[int]) -> tuple[str, tuple[int, ...]]:
  """A reference parameter's name and shape in the Flax layout of the same model."""
  parts = name.split(".")
  leaf = parts[-1]
  if parts[0] == "embed":
    return "embed/embedding", tuple(shape)
  if "norm" in parts[-2]:
    return "/".join(parts[:-1] + ["scale" if leaf == "weight" else "bias"]), tuple(shape)
  if leaf == "weight":  # torch Linear (out, in) -> Flax (in, out)
    return "/".join(parts[:-1] + ["kernel"]), tuple(reversed(shape))
  return "/".join(parts), tuple(shape)


def compare_rules(rules: dict) -> list[dict]:
  """Per parameter of the wider reference model: its rules there and in jinit."""
  models = rules["models"]
  base, wide = models[0], models[-1]
  shapes = dict(_flax_path(p["name"], p["shape"]) for p in wide["params"])
  base_shapes = dict(_flax_path(p["name"], p["shape"]) for p in base["params"])
  meta = mup.infinite_dims(shapes, base_shapes, parametrization="u_mup",
                           depth=wide["layers"], branches="blocks")
  rows = []
  for p in wide["params"]:
    path = _flax_path(p["name"], p["shape"])[0]
    m = meta[path]
    init = ("zeros" if m.role == "bias" else "ones" if m.role == "norm"
            else f"N(0, {m.init_std_mult:g})")
    rows.append({"parameter": p["name"], "path": path, "shape": list(m.shape),
                 "mup_type": p["mup_type"], "role": m.role,
                 "init_mean_ref": p["init_mean"], "init_std_ref": p["init_std"],
                 "init_size": p["init_size"], "init_jinit": init,
                 "adam_lr_ref": p["adam_lr"], "adam_lr_jinit": m.lr_multiplier("adam"),
                 "sgd_lr_ref": p["sgd_lr"], "sgd_lr_jinit": m.lr_multiplier("sgd"),
                 "forward_jinit": m.multiplier})
  return rows


def compare_taus(rules: dict) -> list[dict]:
  rows = []
  for t in rules["taus"]:
    ours = mup.residual_taus(t["layers"], residual_mult=t["residual_mult"],
                             residual_attn_ratio=t["residual_attn_ratio"])
    rows.append({**{k: t[k] for k in ("layers", "residual_mult", "residual_attn_ratio")},
                 "max_rel_diff": max(abs(a - b) / b for a, b in zip(ours, t["taus"])),
                 "taus_ref": t["taus"], "taus_jinit": list(ours)})
  return rows


def compare(python: str, seed: int = 0) -> dict:
  a = make_inputs(seed)
  ref, rules = run_reference(python, a)
  return {"ops": compare_ops(jinit_ops(a), ref), "rules": compare_rules(rules),
          "taus": compare_taus(rules), "reference_versions": rules["versions"]}


def _summary(result: dict, header: str) -> str:
  lines = [header, "", "## Ops: forward outputs and gradients on the same inputs", "",
           "RMS of each tensor in jinit (float32) and unit_scaling (float64), and the largest "
           "elementwise difference relative to the reference's RMS.", "",
           "| tensor | RMS jinit | RMS unit_scaling | max diff / RMS |", "|---|---|---|---|"]
  for r in result["ops"]:
    lines.append(f"| {r['tensor']} | {r['rms_jinit']:.4f} | {r['rms_ref']:.4f} | "
                 f"{r['max_rel_diff']:.1e} |")
  lines += ["", "## Rules: u-μP transformer of unit_scaling modules, width 256 (base 64), "
            "3 layers in a DepthSequential", "",
            "| parameter | mup_type | jinit role | init (unit_scaling: mean, std) | jinit init | "
            "Adam lr unit_scaling | Adam lr jinit | SGD lr unit_scaling | SGD lr jinit |",
            "|---|---|---|---|---|---|---|---|---|"]
  for r in result["rules"]:
    if r["parameter"].startswith("blocks.") and not r["parameter"].startswith("blocks.0."):
      continue  # the other layers repeat layer 0 (compared all the same)
    lines.append(f"| {r['parameter']} | {r['mup_type']} | {r['role']} | "
                 f"{r['init_mean_ref']:+.3f}, {r['init_std_ref']:.3f} | {r['init_jinit']} | "
                 f"{r['adam_lr_ref']:.5g} | {r['adam_lr_jinit']:.5g} | {r['sgd_lr_ref']:.5g} | "
                 f"{r['sgd_lr_jinit']:.5g} |")
  worst_tau = max(r["max_rel_diff"] for r in result["taus"])
  lines += ["", "## Residual taus", "",
            f"`residual_taus` vs `transformer_residual_scaling_rule` for layers 1, 4, 12 x "
            f"(residual_mult, residual_attn_ratio) in (1, 1), (0.5, 2), (2, 0.25): largest "
            f"relative difference {worst_tau:.1e}.", ""]
  v = result["verdict"]
  lines += ["## Verdict", "",
            f"- ops: largest difference {v['ops_max_rel_diff']:.1e} of a tensor's RMS over "
            f"{len(result['ops'])} outputs and gradients -> **{v['ops']}**",
            f"- lr factors: largest relative difference {v['lr_max_rel_diff']:.1e} over "
            f"{len(result['rules'])} parameters (Adam and SGD) -> **{v['lr']}**",
            f"- roles: jinit's role maps to unit_scaling's mup_type for every parameter -> "
            f"**{v['roles']}**",
            f"- taus -> **{v['taus']}**", ""]
  return "\n".join(lines)


def verdict(result: dict, *, rtol: float = 1e-4) -> dict:
  """``agrees`` / ``disagrees`` per comparison (float32 vs float64: ``rtol``)."""
  ops = max(r["max_rel_diff"] for r in result["ops"])
  lr = max(abs(r[f"{o}_lr_jinit"] - r[f"{o}_lr_ref"]) / r[f"{o}_lr_ref"]
           for r in result["rules"] for o in ("adam", "sgd"))
  roles = all(MUP_TYPE[r["role"]] == r["mup_type"] for r in result["rules"])
  taus = max(r["max_rel_diff"] for r in result["taus"])
  word = lambda ok: "agrees" if ok else "disagrees"  # noqa: E731
  return {"ops_max_rel_diff": ops, "ops": word(ops <= rtol), "lr_max_rel_diff": lr,
          "lr": word(lr <= 1e-12), "roles": word(roles), "taus_max_rel_diff": taus,
          "taus": word(taus <= 1e-12)}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reference-python", required=True,
                      help="a python with torch, unit-scaling and numpy")
  parser.add_argument("--out", required=True, help="folder for compare.json and summary.md")
  args = parser.parse_args(argv)
  start = time.time()
  started = datetime.datetime.now(datetime.timezone.utc)
  result = compare(args.reference_python)
  result["verdict"] = verdict(result)
  command = "python -m experiments.u_mup_compare " + " ".join(argv or sys.argv[1:])
  header = "\n".join([
      "# u-μP: jinit.mup vs graphcore's unit_scaling", "",
      f"Command: `{command}`  ",
      f"Date: {started:%Y-%m-%d %H:%M} UTC  ",
      f"Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
      f"jax {jax.__version__} on {jax.default_backend()}; reference: unit_scaling "
      f"{result['reference_versions']['unit_scaling']}, torch "
      f"{result['reference_versions']['torch']}  ",
      f"Wall time: {time.time() - start:.0f} s"])
  result["provenance"] = {"command": command, "date": started.isoformat(timespec="seconds"),
                          "machine": platform.platform(), "cores": os.cpu_count(),
                          "jax": jax.__version__}
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "compare.json"), "w") as f:
    json.dump(result, f, indent=1)
  text = _summary(result, header)
  with open(os.path.join(args.out, "summary.md"), "w") as f:
    f.write(text)
  print(text)
  if not math.isfinite(result["verdict"]["ops_max_rel_diff"]):
    raise SystemExit("non-finite comparison")


if __name__ == "__main__":
  main()
