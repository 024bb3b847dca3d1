"""Measures every Flax layer's kernel std (or orthogonality) under jinit's three paths.

For each layer and initializer: the std the formula gives with the layer's TRUE
fans, the std measured after ``jinit.nnx.reinit`` and ``jinit.linen.reinit``, and
the std measured when the same init is passed to the layer through the
shape-only adapter (``kernel_init=jinit.nnx.kernel_init(init)``, default layout),
which is what a user writes without reinit; plus flax's own default
(``lecun_normal``) against lecun with the true fans. For orthogonal: max |WᵀW − I|
over the grouped (∏ in axes, ∏ out axes) matrix of each batch slice.

Run from the repository root (about a minute on a quiet 2-core CPU):

  python docs/results/layer_fans/measure.py

Writes docs/results/layer_fans/{results.json, summary.md} atomically.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import platform
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import jinit  # noqa: E402  pylint: disable=wrong-import-position
from experiments.common import results  # noqa: E402  pylint: disable=wrong-import-position

OUT = os.path.dirname(os.path.abspath(__file__))
TN = jinit.truncated_std(-2.0, 2.0)

# (name, nnx maker(kernel_init or None) -> module, linen maker(kernel_init or None) -> module,
#  linen input, kernel paths, true fan_in, true fan_out, kernel -> (batch, in, out) matrices)
def _kw(kinit, name="kernel_init"):
  return {} if kinit is None else {name: kinit}


def _mha_nnx(k, r):
  return nnx.MultiHeadAttention(num_heads=4, in_features=192, qkv_features=192,
                                decode=False, rngs=r, **_kw(k))


def _mha_linen(k):
  return nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=192, **_kw(k))


LAYERS = [
    ("Linear / Dense 256→128",
     lambda k, r: nnx.Linear(256, 128, rngs=r, **_kw(k)),
     lambda k: nn.Dense(128, **_kw(k)), jnp.ones((1, 256)),
     ("kernel",), 256, 128, lambda w: w[None]),
    ("LinearGeneral / DenseGeneral, batch axis 4, 128→(4, 16)",
     lambda k, r: nnx.LinearGeneral(128, (4, 16), batch_axis={0: 4}, rngs=r, **_kw(k)),
     lambda k: nn.DenseGeneral((4, 16), axis=-1, batch_dims=(0,), **_kw(k)),
     jnp.ones((4, 3, 128)), ("kernel",), 128, 64, lambda w: w.reshape(4, 128, 64)),
    ("Conv 3×3 64→192, feature_group_count=4",
     lambda k, r: nnx.Conv(64, 192, (3, 3), feature_group_count=4, rngs=r, **_kw(k)),
     lambda k: nn.Conv(192, (3, 3), feature_group_count=4, **_kw(k)), jnp.ones((1, 8, 8, 64)),
     ("kernel",), 144, 432,
     lambda w: w.reshape(3, 3, 16, 4, 48).transpose(3, 0, 1, 2, 4).reshape(4, 144, 48)),
    ("ConvTranspose 3×3 32→96",
     lambda k, r: nnx.ConvTranspose(32, 96, (3, 3), rngs=r, **_kw(k)),
     lambda k: nn.ConvTranspose(96, (3, 3), **_kw(k)), jnp.ones((1, 8, 8, 32)),
     ("kernel",), 288, 864, lambda w: w.reshape(1, 288, 96)),
    ("Einsum q kernel btd,dhk->bthk (192, 4, 48)",
     lambda k, r: nnx.Einsum("btd,dhk->bthk", (192, 4, 48), (4, 48), rngs=r, **_kw(k)),
     lambda k: nn.Einsum((192, 4, 48), "btd,dhk->bthk", **_kw(k)), jnp.ones((1, 2, 192)),
     ("kernel",), 192, 192, lambda w: w.reshape(1, 192, 192)),
    ("Einsum out kernel bthk,hkd->btd (4, 48, 192)",
     lambda k, r: nnx.Einsum("bthk,hkd->btd", (4, 48, 192), (192,), rngs=r, **_kw(k)),
     lambda k: nn.Einsum((4, 48, 192), "bthk,hkd->btd", **_kw(k)), jnp.ones((1, 2, 4, 48)),
     ("kernel",), 192, 192, lambda w: w.reshape(1, 192, 192)),
    ("Einsum per-head bhd,hdk->bhk (8, 64, 64)",
     lambda k, r: nnx.Einsum("bhd,hdk->bhk", (8, 64, 64), (8, 64), rngs=r, **_kw(k)),
     lambda k: nn.Einsum((8, 64, 64), "bhd,hdk->bhk", **_kw(k)), jnp.ones((1, 8, 64)),
     ("kernel",), 64, 64, lambda w: w),
    ("Embed V=1000, d=64",
     lambda k, r: nnx.Embed(1000, 64, rngs=r, **_kw(k, "embedding_init")),
     lambda k: nn.Embed(1000, 64, **_kw(k, "embedding_init")), jnp.zeros((1, 3), jnp.int32),
     ("embedding",), 64, 1000, lambda w: w.T[None]),
    ("MultiHeadAttention q/k/v 192→(4, 48)", _mha_nnx, _mha_linen, jnp.ones((1, 4, 192)),
     ("query/kernel", "key/kernel", "value/kernel"), 192, 192,
     lambda w: w.reshape(1, 192, 192)),
    ("MultiHeadAttention out (4, 48)→192", _mha_nnx, _mha_linen, jnp.ones((1, 4, 192)),
     ("out/kernel",), 192, 192, lambda w: w.reshape(1, 192, 192)),
    ("LoRA A 256→rank 64",
     lambda k, r: nnx.LoRA(256, 64, 128, rngs=r, **_kw(k, "a_initializer")), None, None,
     ("lora_a",), 256, 64, lambda w: w[None]),
]

INITS = {  # name -> (init, expected std(fan_in, fan_out) or None for orthogonal)
    "xavier_uniform": (jinit.xavier_uniform, lambda fi, fo: math.sqrt(2 / (fi + fo))),
    "kaiming_normal(relu)": (functools.partial(jinit.kaiming_normal, nonlinearity="relu"),
                             lambda fi, fo: math.sqrt(2 / fi)),
    "lecun_normal": (jinit.lecun_normal, lambda fi, fo: math.sqrt(1 / fi)),
    "orthogonal": (jinit.orthogonal, None),
    "torch_linear_default": (jinit.torch_linear_default,
                             lambda fi, fo: 1 / math.sqrt(3 * fi)),
}


def _nnx_params(model):
  return {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.iter_graph(model)
          if isinstance(v, nnx.Param)}


def _linen_params(variables):
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return {"/".join(k.key for k in p): np.asarray(v) for p, v in flat}


def _ortho_error(mats):
  m = np.asarray(mats, np.float64)
  rows, cols = m.shape[1:]
  gram = np.einsum("bij,bik->bjk", m, m) if rows >= cols else np.einsum("bji,bki->bjk", m, m)
  return float(np.abs(gram - np.eye(min(rows, cols))[None]).max())


def _stat(kernels, layer, expected):
  if expected is None:
    return max(_ortho_error(layer[7](k)) for k in kernels)
  return float(np.concatenate([k.ravel() for k in kernels]).astype(np.float64).std())


def measure():
  key = jax.random.key(0)
  rows = []
  for layer in LAYERS:
    name, make_nnx, make_linen, x, paths, fan_in, fan_out, _ = layer
    base_nnx = make_nnx(None, nnx.Rngs(0))
    base_linen = None if make_linen is None else make_linen(None)
    linen_vars = None if make_linen is None else base_linen.init(key, x)
    for init_name, (init, std_of) in INITS.items():
      expected = None if std_of is None else std_of(fan_in, fan_out)
      got_nnx = _nnx_params(jinit.nnx.reinit(base_nnx, init, key=key))
      row = {"layer": name, "init": init_name, "fan_in": fan_in, "fan_out": fan_out,
             "n": int(sum(got_nnx[p].size for p in paths)), "expected_std": expected,
             "nnx_reinit": _stat([got_nnx[p] for p in paths], layer, expected)}
      if make_linen is not None:
        got = _linen_params(jinit.linen.reinit(base_linen, linen_vars, x, init, key=key))
        row["linen_reinit"] = _stat([got[p] for p in paths], layer, expected)
      shape_only = _nnx_params(make_nnx(jinit.nnx.kernel_init(init), nnx.Rngs(1)))
      row["shape_only_adapter"] = _stat([shape_only[p] for p in paths], layer, expected)
      rows.append(row)
    default = _nnx_params(make_nnx(None, nnx.Rngs(2)))  # flax's own default
    # Flax's defaults: lecun_normal for kernels, variance_scaling(1, fan_in, normal) for
    # Embed (the same std), he_uniform for LoRA's A (flax/nnx/nn/lora.py).
    default_name, scale = (("he_uniform", 2.0) if name.startswith("LoRA") else
                           ("variance_scaling(1, fan_in, normal)", 1.0) if name.startswith("Embed")
                           else ("lecun_normal", 1.0))
    rows.append({"layer": name, "init": f"flax default ({default_name})", "fan_in": fan_in,
                 "fan_out": fan_out, "n": int(sum(default[p].size for p in paths)),
                 "expected_std": math.sqrt(scale / fan_in),
                 "flax_default": _stat([default[p] for p in paths], layer, 1.0)})
  return rows


def _fmt(v, expected):
  if v is None:
    return "—"
  if expected is None:
    return f"{v:.1e}"
  return f"{v:.4f} ({v / expected:.2f}×)"


def summary(rows, meta) -> str:
  lines = [
      "# Layer fans: measured vs expected kernel std for every Flax layer", "",
      f"Written by `{meta['command']}` on {meta['date']} ({meta['machine']}; jax "
      f"{meta['jax']}, flax {meta['flax']}). One key, n samples per row: the std's "
      "standard error is about std/√(2n) (< 0.6% here).", "",
      "- **expected std**: the init's formula with the layer's true fans (table in "
      "`jinit/_src/layers.py`).",
      "- **nnx / linen reinit**: measured after `jinit.nnx.reinit` / `jinit.linen.reinit` "
      "(ratio to expected in brackets).",
      "- **shape-only adapter**: the same init given to the layer as "
      "`kernel_init=jinit.nnx.kernel_init(init)` (fans guessed from the shape the layer passes).",
      "- **orthogonal** rows give max |WᵀW − I| of the grouped (∏ in axes, ∏ out axes) "
      "matrix of each batch slice (semi-orthogonal: the smaller Gram matrix).", "",
      "| layer | init | fans (in, out) | n | expected std | nnx reinit | linen reinit "
      "| shape-only adapter |",
      "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if "flax_default" in r:
      continue
    e = r["expected_std"]
    lines.append(
        f"| {r['layer']} | {r['init']} | ({r['fan_in']}, {r['fan_out']}) | {r['n']} | "
        f"{'0 (exact)' if e is None else f'{e:.4f}'} | {_fmt(r['nnx_reinit'], e)} | "
        f"{_fmt(r.get('linen_reinit'), e)} | {_fmt(r['shape_only_adapter'], e)} |")
  lines += ["", "## Flax's own default on the same layers", "",
            "| layer | flax's default init | its std with true fans | measured |",
            "|---|---|---|---|"]
  for r in rows:
    if "flax_default" in r:
      e = r["expected_std"]
      lines.append(f"| {r['layer']} | {r['init'][len('flax default ('):-1]} | {e:.4f} | "
                   f"{_fmt(r['flax_default'], e)} |")
  return "\n".join(lines) + "\n"


def main():
  rows = measure()
  meta = {"command": "python docs/results/layer_fans/measure.py",
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {jax.default_backend()}",
          "jax": jax.__version__, "flax": flax.__version__}
  results.write_json(os.path.join(OUT, "results.json"), {"meta": meta, "rows": rows})
  text = summary(rows, meta)
  results.write_text(os.path.join(OUT, "summary.md"), text)
  print(text)
  print(f"results in {OUT}")


if __name__ == "__main__":
  main()
