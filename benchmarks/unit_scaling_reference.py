"""graphcore's ``unit_scaling`` (u-μP's reference library) on given arrays: the PyTorch side of
``experiments/u_mup_compare.py``.

Runs under an interpreter with ``torch`` and ``unit-scaling`` (0.3.5) and numpy, and no jax
(keep it out of jinit's environment: ``python3 -m venv /tmp/us && /tmp/us/bin/pip install
torch==2.13.0 unit-scaling numpy``). Reads the inputs that the JAX side wrote (Flax layouts),
applies ``unit_scaling.functional``'s ops, backpropagates the given cotangents, and writes
every output and gradient back in Flax layouts; it also builds a u-μP transformer of
``unit_scaling`` modules and writes each parameter's ``mup_type``, init std and the
learning-rate factors of ``unit_scaling.optim``, and the residual taus of
``transformer_residual_scaling_rule``.

  /tmp/us/bin/python benchmarks/unit_scaling_reference.py IN.npz OUT.npz RULES.json
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
import unit_scaling as uu
import unit_scaling.functional as U
from unit_scaling.core.functional import transformer_residual_scaling_rule
from unit_scaling.optim import lr_scale_func_adam
from unit_scaling.optim import lr_scale_func_sgd

torch.set_default_dtype(torch.float64)


def _t(a):
  return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def _grads(out, cot, *inputs):
  out.backward(torch.tensor(np.asarray(cot), dtype=torch.float64))
  return [None if i.grad is None else i.grad.detach().numpy() for i in inputs]


def ops(a: dict) -> dict:
  r = {}
  for name, fn in (("linear", lambda x, w, b: U.linear(x, w, b)),
                   ("linear_free", lambda x, w, b: U.linear(x, w, b, constraint=None)),
                   ("readout", lambda x, w, b: U.linear_readout(x, w, b))):
    x, w, b = _t(a["lin_x"]), _t(a["lin_w"].T), _t(a["lin_b"])  # torch weight is (out, in)
    y = fn(x, w, b)
    gx, gw, gb = _grads(y, a["lin_g"], x, w, b)
    r.update({f"{name}/out": y.detach().numpy(), f"{name}/gx": gx, f"{name}/gw": gw.T,
              f"{name}/gb": gb})
  ids = torch.tensor(a["emb_ids"], dtype=torch.long)
  table = _t(a["emb_table"])
  y = U.embedding(ids, table)
  (gt,) = _grads(y, a["emb_g"], table)
  r.update({"embedding/out": y.detach().numpy(), "embedding/gtable": gt})
  for tau in a["taus"]:
    x = _t(a["res_x"])
    y = U.residual_apply(lambda h: torch.tanh(h) * 2.0, x, tau=float(tau))
    (gx,) = _grads(y, a["res_g"], x)
    r.update({f"residual_{tau:g}/out": y.detach().numpy(), f"residual_{tau:g}/gx": gx})
  for causal in (False, True):
    for mult in a["attn_mults"]:
      q, k, v = (_t(np.swapaxes(a[f"attn_{n}"], -2, -3)) for n in "qkv")  # (B, H, S, D)
      y = U.scaled_dot_product_attention(q, k, v, is_causal=causal, mult=float(mult))
      gq, gk, gv = _grads(y, np.swapaxes(a["attn_g"], -2, -3), q, k, v)
      key = f"attention_{'causal' if causal else 'full'}_{mult:g}"
      r.update({f"{key}/out": np.swapaxes(y.detach().numpy(), -2, -3),
                f"{key}/gq": np.swapaxes(gq, -2, -3), f"{key}/gk": np.swapaxes(gk, -2, -3),
                f"{key}/gv": np.swapaxes(gv, -2, -3)})
  for mult in a["gelu_mults"]:
    x = _t(a["gelu_x"])
    y = U.gelu(x, mult=float(mult))
    (gx,) = _grads(y, a["gelu_g"], x)
    r.update({f"gelu_{mult:g}/out": y.detach().numpy(), f"gelu_{mult:g}/gx": gx})
  x, w, b = _t(a["norm_x"]), _t(a["norm_scale"]), _t(a["norm_bias"])
  d = a["norm_x"].shape[-1]
  y = U.layer_norm(x, (d,), w, b, eps=1e-5)
  gx, gw, gb = _grads(y, a["norm_g"], x, w, b)
  r.update({"layer_norm/out": y.detach().numpy(), "layer_norm/gx": gx, "layer_norm/gscale": gw,
            "layer_norm/gbias": gb})
  x, w = _t(a["norm_x"]), _t(a["norm_scale"])
  y = U.rms_norm(x, (d,), w, eps=1e-5)
  gx, gw = _grads(y, a["norm_g"], x, w)
  r.update({"rms_norm/out": y.detach().numpy(), "rms_norm/gx": gx, "rms_norm/gscale": gw})
  logits = _t(a["ce_logits"])
  loss = U.cross_entropy(logits, torch.tensor(a["ce_labels"], dtype=torch.long))
  (gl,) = _grads(loss, np.array(1.0), logits)
  r.update({"cross_entropy/out": loss.detach().numpy(), "cross_entropy/glogits": gl})
  return r


class Block(torch.nn.Module):
  """The parameters of one pre-LN transformer layer, as jinit's comparison model names them."""

  def __init__(self, d: int):
    super().__init__()
    self.qkv = uu.Linear(d, 3 * d)
    self.o = uu.Linear(d, d)
    self.up = uu.Linear(d, 4 * d, bias=True)
    self.down = uu.Linear(4 * d, d)
    self.norm = uu.LayerNorm(d, elementwise_affine=True)


class Model(torch.nn.Module):
  def __init__(self, vocab: int, d: int, layers: int):
    super().__init__()
    self.embed = uu.Embedding(vocab, d)
    self.blocks = uu.DepthSequential(*(Block(d) for _ in range(layers)))
    self.final_norm = uu.LayerNorm(d, elementwise_affine=True)
    self.head = uu.LinearReadout(d, vocab)


def rules(specs: list[dict]) -> dict:
  out = {"models": []}
  sgd = lr_scale_func_sgd(None)
  for spec in specs:
    torch.manual_seed(spec["seed"])
    model = Model(spec["vocab"], spec["width"], spec["layers"])
    params = []
    for name, p in model.named_parameters():
      data = p.detach().numpy()
      params.append({"name": name, "shape": list(p.shape), "mup_type": p.mup_type,
                     "mup_scaling_depth": p.mup_scaling_depth,
                     "init_mean": float(data.mean()), "init_std": float(data.std()),
                     "init_size": int(data.size),
                     "adam_lr": float(lr_scale_func_adam(p)), "sgd_lr": float(sgd(p))})
    out["models"].append({**spec, "params": params})
  out["taus"] = [{"layers": n, "residual_mult": m, "residual_attn_ratio": ratio,
                  "taus": [transformer_residual_scaling_rule(m, ratio)(i, 2 * n)
                           for i in range(2 * n)]}
                 for n in (1, 4, 12) for m, ratio in ((1.0, 1.0), (0.5, 2.0), (2.0, 0.25))]
  out["versions"] = {"torch": torch.__version__, "unit_scaling": uu.__version__
                     if hasattr(uu, "__version__") else _version()}
  return out


def _version() -> str:
  from importlib.metadata import version

  return version("unit-scaling")


def main(argv: list[str]) -> None:
  if len(argv) != 3:
    raise SystemExit("usage: unit_scaling_reference.py IN.npz OUT.npz RULES.json")
  inp, out, rules_path = argv
  with np.load(inp) as f:
    a = {k: f[k] for k in f.files}
  np.savez(out, **ops(a))
  specs = json.loads(str(a["rule_specs"]))
  with open(rules_path, "w") as f:
    json.dump(rules(specs), f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1:])
