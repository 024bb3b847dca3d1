"""Measures every Equinox and Haiku layer's weight std (or orthogonality) after jinit's reinit.

For each layer and initializer: the std the formula gives with the layer's TRUE fans
(per gate for recurrent cells, per group for grouped convs), and the std measured after
``jinit.equinox.reinit`` (Equinox) or ``jinit.haiku.reinit`` (Haiku). For orthogonal:
max |WᵀW − I| over every (∏ in axes, ∏ out axes) matrix of each gate, group or stacked
copy (the smaller Gram matrix).

Run from the repository root (a few minutes on a busy 2-core CPU):

  python docs/results/equinox_haiku_fans/measure.py

Writes docs/results/equinox_haiku_fans/{results.json, summary.md} atomically.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import platform
import sys

import equinox as eqx
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import jinit
import jinit.equinox as je
import jinit.haiku as jh
from experiments.common import results

OUT = os.path.dirname(os.path.abspath(__file__))
KEY = jax.random.key(0)

INITS = [
    ("xavier_uniform", jinit.xavier_uniform, lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("kaiming_normal(relu)", functools.partial(jinit.kaiming_normal, nonlinearity="relu"),
     lambda fi, fo: math.sqrt(2 / fi)),
    ("lecun_normal", jinit.lecun_normal, lambda fi, fo: math.sqrt(1 / fi)),
    ("torch_linear_default", jinit.torch_linear_default, lambda fi, fo: 1 / math.sqrt(3 * fi)),
    ("orthogonal", jinit.orthogonal, None),
]


def _t(w):
  return np.asarray(w, np.float64)


# Each layer: (framework, name, build() -> model or params, weight(new) -> array,
#              fan_in, fan_out, matrices(array) -> list of (in, out) matrices)
def _eqx_layers():
  k = jax.random.split(KEY, 10)

  class Block(eqx.Module):
    linear: eqx.nn.Linear

    def __init__(self, key):
      self.linear = eqx.nn.Linear(128, 128, key=key)

  def mha():
    return eqx.nn.MultiheadAttention(4, 192, key=k[1])

  return [
      ("Linear 256→128", lambda: eqx.nn.Linear(256, 128, key=k[0]), lambda m: m.weight,
       256, 128, lambda w: [_t(w).T]),
      ("MultiheadAttention d=192, 4 heads: query_proj", mha, lambda m: m.query_proj.weight,
       192, 192, lambda w: [_t(w).T]),
      ("MultiheadAttention d=192, 4 heads: output_proj", mha, lambda m: m.output_proj.weight,
       192, 192, lambda w: [_t(w).T]),
      ("MLP 128→512→128: layers/0", lambda: eqx.nn.MLP(128, 128, 512, 1, key=k[2]),
       lambda m: m.layers[0].weight, 128, 512, lambda w: [_t(w).T]),
      ("Embedding 1000×64", lambda: eqx.nn.Embedding(1000, 64, key=k[3]), lambda m: m.weight,
       64, 1000, lambda w: [_t(w).T]),
      ("Conv2d 3×3 64→192, groups=4", lambda: eqx.nn.Conv2d(64, 192, 3, groups=4, key=k[4]),
       lambda m: m.weight, 144, 432,
       lambda w: [_t(w).reshape(4, 48, 144)[g].T for g in range(4)]),
      ("ConvTranspose2d 3×3 32→96, groups=2",
       lambda: eqx.nn.ConvTranspose2d(32, 96, 3, groups=2, key=k[5]), lambda m: m.weight,
       144, 432, lambda w: [_t(w).reshape(2, 48, 144)[g].T for g in range(2)]),
      ("Conv1d 5, 32→64", lambda: eqx.nn.Conv1d(32, 64, 5, key=k[6]), lambda m: m.weight,
       160, 320, lambda w: [_t(w).reshape(64, 160).T]),
      ("GRUCell 128→128: weight_ih (3 gates)", lambda: eqx.nn.GRUCell(128, 128, key=k[7]),
       lambda m: m.weight_ih, 128, 128,
       lambda w: [_t(w).reshape(3, 128, 128)[g].T for g in range(3)]),
      ("LSTMCell 64→128: weight_ih (4 gates)", lambda: eqx.nn.LSTMCell(64, 128, key=k[8]),
       lambda m: m.weight_ih, 64, 128,
       lambda w: [_t(w).reshape(4, 128, 64)[g].T for g in range(4)]),
      ("LSTMCell 64→128: weight_hh (4 gates)", lambda: eqx.nn.LSTMCell(64, 128, key=k[8]),
       lambda m: m.weight_hh, 128, 128,
       lambda w: [_t(w).reshape(4, 128, 128)[g].T for g in range(4)]),
      ("filter_vmap-stacked Linear 128→128 ×4", lambda: eqx.filter_vmap(Block)(
          jax.random.split(k[9], 4)), lambda m: m.linear.weight, 128, 128,
       lambda w: [_t(w)[c].T for c in range(4)]),
  ]


def _hk_params(fn, *args):
  return hk.transform(fn).init(KEY, *args)


def _hk_layers():
  x64 = jnp.ones((1, 8, 8, 64))

  def mha(x):
    return hk.MultiHeadAttention(4, 48, w_init=hk.initializers.VarianceScaling())(x, x, x)

  def lstm(x):
    return hk.LSTM(128)(x, hk.LSTM(128).initial_state(1))

  def gru(x):
    return hk.GRU(128)(x, jnp.zeros((1, 128)))

  x = jnp.ones((1, 64))
  seq = jnp.ones((1, 3, 192))
  return [
      ("Linear 256→128", lambda: _hk_params(lambda v: hk.Linear(128)(v), jnp.ones((1, 256))),
       ("linear", "w"), 256, 128, lambda w: [_t(w)]),
      ("MultiHeadAttention d=192, 4 heads: query", lambda: _hk_params(mha, seq),
       ("multi_head_attention/query", "w"), 192, 192, lambda w: [_t(w)]),
      ("MultiHeadAttention d=192, 4 heads: linear (output)", lambda: _hk_params(mha, seq),
       ("multi_head_attention/linear", "w"), 192, 192, lambda w: [_t(w)]),
      ("nets.MLP 128→512→128: linear_0", lambda: _hk_params(
          lambda v: hk.nets.MLP([512, 128])(v), jnp.ones((1, 128))),
       ("mlp/~/linear_0", "w"), 128, 512, lambda w: [_t(w)]),
      ("Embed 1000×64", lambda: _hk_params(lambda t: hk.Embed(1000, 64)(t),
                                            jnp.zeros((2,), jnp.int32)),
       ("embed", "embeddings"), 64, 1000, lambda w: [_t(w).T]),
      ("Conv2D 3×3 64→192, feature_group_count=4", lambda: _hk_params(
          lambda v: hk.Conv2D(192, 3, feature_group_count=4)(v), x64),
       ("conv2_d", "w"), 144, 432,
       lambda w: [_t(w).reshape(144, 4, 48)[:, g] for g in range(4)]),
      ("Conv2DTranspose 3×3 32→96", lambda: _hk_params(
          lambda v: hk.Conv2DTranspose(96, 3)(v), jnp.ones((1, 8, 8, 32))),
       ("conv2_d_transpose", "w"), 288, 864,
       lambda w: [_t(w).transpose(0, 1, 3, 2).reshape(288, 96)]),
      ("Conv1D 5, 32→64", lambda: _hk_params(lambda v: hk.Conv1D(64, 5)(v),
                                             jnp.ones((1, 8, 32))),
       ("conv1_d", "w"), 160, 320, lambda w: [_t(w).reshape(160, 64)]),
      ("LSTM 64→128: linear (4 gates on [x, h])", lambda: _hk_params(lstm, x),
       ("lstm/linear", "w"), 192, 128,
       lambda w: [_t(w).reshape(192, 4, 128)[:, g] for g in range(4)]),
      ("GRU 64→128: w_i (3 gates)", lambda: _hk_params(gru, x), ("gru", "w_i"), 64, 128,
       lambda w: [_t(w).reshape(64, 3, 128)[:, g] for g in range(3)]),
  ]


def _ortho_err(mats) -> float:
  err = 0.0
  for m in mats:
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    err = max(err, float(np.abs(gram - np.eye(gram.shape[0])).max()))
  return err


def measure():
  rows = []
  for framework, layer_list in (("equinox", _eqx_layers()), ("haiku", _hk_layers())):
    for name, build, where, fi, fo, mats in layer_list:
      model = build()
      for init_name, init, formula in INITS:
        if framework == "equinox":
          w = where(je.reinit(model, init, key=jax.random.key(1)))
        else:
          groups = {"conv2_d": 4} if where[0] == "conv2_d" else None
          new = jh.reinit(model, init, key=jax.random.key(1), groups=groups)
          w = new[where[0]][where[1]]
        row = {"framework": framework, "layer": name, "init": init_name, "fan_in": fi,
               "fan_out": fo, "n": int(np.size(w))}
        if formula is None:
          row.update(expected_std=None, measured=_ortho_err(mats(w)))
        else:
          e = formula(fi, fo)
          row.update(expected_std=e, measured=float(np.std(_t(w))),
                     ratio=float(np.std(_t(w))) / e)
        rows.append(row)
        print(row, flush=True)
  return rows


def summary(rows, meta) -> str:
  worst = max(abs(r["ratio"] - 1) for r in rows if r["expected_std"] is not None)
  worst_o = max(r["measured"] for r in rows if r["expected_std"] is None)
  lines = [
      "# Equinox and Haiku layer fans: measured vs expected weight std after reinit", "",
      (f"Written by `{meta['command']}` on {meta['date']} ({meta['machine']}; jax "
       f"{meta['jax']}, equinox {meta['equinox']}, dm-haiku {meta['haiku']}). One key; the "
       "std's standard error is about std/√(2n) (< 0.6% for n ≥ 16384)."), "",
      ("- **expected std**: the init's formula with the layer's true fans (per gate for "
       "recurrent cells, per group for grouped convs; tables in `jinit/_src/equinox.py`, "
       "`jinit/_src/haiku.py`)."),
      ("- **measured**: the std of the weight after `jinit.equinox.reinit` / "
       "`jinit.haiku.reinit` (ratio to expected in brackets)."),
      "- **orthogonal** rows give max |WᵀW − I| over every gate, group and stacked copy.", "",
      (f"Largest deviation from the formula: {100 * worst:.2f}% (std rows); largest "
       f"orthogonality error: {worst_o:.1e}."), "",
      "| framework | layer | init | fans (in, out) | n | expected std | measured |",
      "|---|---|---|---|---|---|---|"]
  for r in rows:
    e = r["expected_std"]
    got = (f"{r['measured']:.1e}" if e is None
           else f"{r['measured']:.4f} ({r['ratio']:.3f}×)")
    lines.append(f"| {r['framework']} | {r['layer']} | {r['init']} | ({r['fan_in']}, "
                 f"{r['fan_out']}) | {r['n']} | {'0 (exact)' if e is None else f'{e:.4f}'} | "
                 f"{got} |")
  return "\n".join(lines) + "\n"


def main():
  rows = measure()
  meta = {"command": "python docs/results/equinox_haiku_fans/measure.py",
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {jax.default_backend()}",
          "jax": jax.__version__, "equinox": eqx.__version__, "haiku": hk.__version__}
  results.write_json(os.path.join(OUT, "results.json"), {"meta": meta, "rows": rows})
  text = summary(rows, meta)
  results.write_text(os.path.join(OUT, "summary.md"), text)
  print(text)
  print(f"results in {OUT}")


if __name__ == "__main__":
  main()
