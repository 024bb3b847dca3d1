"""jinit.theory against independent references: scipy quadrature / root-finding and closed forms.

  PYTHONPATH=. python docs/results/theory_accuracy/accuracy.py [--out DIR] [--quick]

Writes DIR/accuracy.json (every point) and DIR/summary.md (the largest relative error of q*,
chi1, c*, xi_c, xi_q and critical sigma_w2 per activation). The references share no code with
jinit: q* by scipy.optimize.brentq on L(q) - q, Gaussian expectations by scipy.integrate.quad
(adaptive, split at 0 and at the activation's kinks; 2-D ones as nested quad over u and v | u),
phi' written out by hand, the slope of the length map by a central difference of L, and for
relu, leaky relu, abs, erf, sign, step, sin their closed forms in numpy. Tests import the
reference functions from here (tests/test_theory_reference.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np
from scipy import integrate
from scipy import optimize
from scipy import special

HERE = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------- activations


def _gelu(x):  # jax.nn.gelu's default (approximate=True)
  return 0.5 * x * (1.0 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _dgelu(x):
  a = math.sqrt(2 / math.pi)
  t = math.tanh(a * (x + 0.044715 * x ** 3))
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * a * (1.0 + 3 * 0.044715 * x * x)


def _sig(x):
  return float(special.expit(x))


SMOOTH = {  # name: (phi, phi', kinks)
    "tanh": (math.tanh, lambda x: 1.0 - math.tanh(x) ** 2, ()),
    "gelu": (_gelu, _dgelu, ()),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1.0 + x * (1.0 - _sig(x))), ()),
    "sigmoid": (_sig, lambda x: _sig(x) * (1.0 - _sig(x)), ()),
    "hard_tanh": (lambda x: min(1.0, max(-1.0, x)), lambda x: 1.0 if abs(x) < 1 else 0.0,
                  (-1.0, 1.0)),
}


# ----------------------------------------------------------------------------- quadrature


def e1(f, q, kinks=()):
  """E[f(u)], u ~ N(0, q), adaptive quad on [-14 sqrt(q), 14 sqrt(q)] split at 0 and kinks."""
  s = math.sqrt(q)
  br = sorted({-14 * s, 14 * s, 0.0, *[k for k in kinks if abs(k) < 14 * s]})
  dens = lambda u: math.exp(-u * u / (2 * q)) / math.sqrt(2 * math.pi * q)
  return sum(integrate.quad(lambda u: f(u) * dens(u), a, b, epsabs=0, epsrel=1e-10,
                            limit=400)[0] for a, b in zip(br[:-1], br[1:]))


def e2(f, g, q, c, kinks=()):
  """E[f(u) g(v)], u, v ~ N(0, q) with correlation c: nested quad over u and v | u."""
  sd = math.sqrt(q * (1 - c * c))
  inner = lambda u: e1(lambda t: g(c * u + t), sd * sd, tuple(k - c * u for k in kinks)) \
      if sd > 0 else g(c * u)
  return e1(lambda u: f(u) * inner(u), q, kinks)


# ----------------------------------------------------------------------------- closed forms


def _relu_k(q, c):
  c = min(1.0, max(-1.0, c))
  th = math.acos(c)
  return q * (math.sin(th) + (math.pi - th) * c) / (2 * math.pi)


def _two(a, b):
  """phi = a x (x > 0), b x (x < 0): moment, dmoment, kernel(q, c), dkernel(q, c)."""
  return (lambda q: 0.5 * (a * a + b * b) * q, lambda q: 0.5 * (a * a + b * b),
          lambda q, c: (a - b) ** 2 * _relu_k(q, c) + a * b * c * q,
          lambda q, c: (a - b) ** 2 * (math.pi - math.acos(c)) / (2 * math.pi) + a * b)


CLOSED = {  # name: (moment(q), dmoment(q), kernel(q, c), dkernel(q, c))
    "relu": _two(1.0, 0.0),
    "leaky_relu": _two(1.0, 0.01),
    "abs": _two(1.0, -1.0),
    "erf": (lambda q: 2 / math.pi * math.asin(2 * q / (1 + 2 * q)),
            lambda q: 4 / math.pi / math.sqrt(1 + 4 * q),
            lambda q, c: 2 / math.pi * math.asin(2 * c * q / (1 + 2 * q)),
            lambda q, c: 4 / math.pi / math.sqrt((1 + 2 * q) ** 2 - 4 * c * c * q * q)),
    "sign": (lambda q: 1.0, lambda q: math.inf, lambda q, c: 2 / math.pi * math.asin(c),
             lambda q, c: 2 / math.pi / (q * math.sqrt(1 - c * c))),
    "step": (lambda q: 0.5, lambda q: math.inf, lambda q, c: 0.25 + math.asin(c) / (2 * math.pi),
             lambda q, c: 1 / (2 * math.pi * q * math.sqrt(1 - c * c))),
    "sin": (lambda q: 0.5 * (1 - math.exp(-2 * q)), lambda q: 0.5 * (1 + math.exp(-2 * q)),
            lambda q, c: math.exp(-q) * math.sinh(c * q),
            lambda q, c: math.exp(-q) * math.cosh(c * q)),
}


DQ = {  # d/dq E[phi(sqrt(q) z)^2], by hand
    "relu": lambda q: 0.5, "leaky_relu": lambda q: 0.5 * (1 + 0.01 ** 2), "abs": lambda q: 1.0,
    "erf": lambda q: 4 / math.pi / ((1 + 2 * q) * math.sqrt(1 + 4 * q)),
    "sign": lambda q: 0.0, "step": lambda q: 0.0, "sin": lambda q: math.exp(-2 * q),
}


def ops(name):
  """(moment, dmoment, kernel, dkernel) of an activation: closed form or quadrature."""
  if name in CLOSED:
    return CLOSED[name]
  phi, dphi, kinks = SMOOTH[name]
  return (lambda q: e1(lambda u: phi(u) ** 2, q, kinks),
          lambda q: e1(lambda u: dphi(u) ** 2, q, kinks),
          lambda q, c: e2(phi, phi, q, c, kinks), lambda q, c: e2(dphi, dphi, q, c, kinks))


# ----------------------------------------------------------------------------- references


def q_star(name, sw, sb):
  """The root of L(q) - q reached from q = 1 (doubling/halving bracket, then brentq)."""
  m = ops(name)[0]
  g = lambda q: sw * m(q) + sb - q
  g1 = g(1.0)
  if g1 == 0:
    return 1.0
  step = 2.0 if g1 > 0 else 0.5
  a = 1.0
  for _ in range(100):
    b = a * step
    if g(b) * g1 <= 0 and abs(g(b)) > 1e-13 * b:
      lo, hi = sorted((a, b))
      return optimize.brentq(g, lo, hi, xtol=1e-300, rtol=1e-14, maxiter=500)
    a = b
  return math.inf if g1 > 0 else 0.0


def chi1(name, sw, sb):
  q = q_star(name, sw, sb)
  return sw * ops(name)[1](max(q, 1e-30))


def xi_q(name, sw, sb):
  """-1 / log L'(q*), L' by a central difference of the length map."""
  q = max(q_star(name, sw, sb), 1e-30)
  m = ops(name)[0]
  h = 1e-4 * q
  if name in DQ:  # closed form: the derivative by hand (a difference loses e^{-2q} for sin)
    slope = sw * DQ[name](q)
  else:
    slope = sw * (m(q + h) - m(q - h)) / (2 * h)
  return -1 / math.log(slope) if slope < 1 - 1e-9 else math.inf  # 1 within rounding: inf


def c_star(name, sw, sb):
  q = q_star(name, sw, sb)
  if chi1(name, sw, sb) <= 1:
    return 1.0
  m, _, k, _ = ops(name)
  den = sw * m(q) + sb
  f = lambda c: (sw * k(q, c) + sb) / den - c
  if f(0.0) <= 0:
    return 0.0
  # Bracket [lo, 1 - eps] with f < 0 at its top, eps shrinking from 1e-2: near c = 1,
  # f(c) ~ (1 - chi1)(1 - c) is smaller than the 2-D quadrature's error (~1e-7; measured for
  # hard_tanh at sigma_w2 = 3: f(1 - 1e-6) = +9e-8 where the true value is -5.7e-7), so
  # starting the bracket at 1 - 1e-6 read "no root below 1" in the chaotic phase.
  lo = 0.0
  for eps in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
    if f(1 - eps) < 0:
      return optimize.brentq(f, lo, 1 - eps, xtol=1e-14, rtol=1e-13)
    lo = 1 - eps
  return 1.0  # chi1 within ~1e-6 of 1 (the critical point): c* = 1 to that accuracy


def xi_c(name, sw, sb):
  ch = chi1(name, sw, sb)
  if ch <= 1:
    return -1 / math.log(ch) if ch < 1 else math.inf
  q, c = q_star(name, sw, sb), c_star(name, sw, sb)
  slope = sw * ops(name)[3](q, c)
  return -1 / math.log(slope) if slope < 1 else math.inf


def critical(name, sb, lo=1e-3, hi=1e6):
  """brentq on chi1(sigma_w2) - 1 over a log grid's first crossing."""
  grid = np.logspace(math.log10(lo), math.log10(hi), 10)
  vals = [chi1(name, w, sb) - 1 for w in grid]
  for a, b, fa, fb in zip(grid[:-1], grid[1:], vals[:-1], vals[1:]):
    if fa < 0 <= fb:
      root = optimize.brentq(lambda w: chi1(name, w, sb) - 1, a, b, xtol=1e-14, rtol=1e-13)
      # a crossing where q* stops existing (relu, sigma_b2 > 0) is no critical point
      return math.nan if math.isinf(q_star(name, root * (1 + 1e-9), sb)) and sb > 0 else root
  return math.nan


# ----------------------------------------------------------------------------- the table

SW = ("0.5", "critical", "3", "30", "1e4")
SB = (0.0, 0.05, 1.0, 10.0, 50.0)


def _jinit_fn(name):
  import jax
  import jax.numpy as jnp
  return {"tanh": jnp.tanh, "gelu": jax.nn.gelu, "silu": jax.nn.silu, "sigmoid": jax.nn.sigmoid,
          "hard_tanh": jax.nn.hard_tanh, "relu": jax.nn.relu,
          "leaky_relu": jax.nn.leaky_relu, "abs": jnp.abs, "erf": jax.scipy.special.erf,
          "sign": jnp.sign, "sin": jnp.sin,
          "step": __import__("jinit").theory.Activation.step()}[name]


def rel(a, b):
  if math.isinf(a) and math.isinf(b):
    return 0.0
  if b == 0:
    return abs(a)
  return abs(a - b) / abs(b)


def run(names, quick=False):
  from jinit import theory
  rows = []
  for name in names:
    phi = _jinit_fn(name)
    for sb in (SB[:2] if quick else SB):
      try:
        crit_ref = critical(name, sb)
      except Exception:  # noqa: BLE001 - recorded as no reference
        crit_ref = math.nan
      try:
        crit = float(theory.critical_sigma_w2(phi, sb))
      except ValueError as e:
        crit = math.nan
        crit_err = str(e)
      else:
        crit_err = None
      for sw_label in SW:
        sw = crit_ref if sw_label == "critical" else float(sw_label)
        if not math.isfinite(sw):
          continue
        row = {"phi": name, "sigma_w2": sw, "sw_label": sw_label, "sigma_b2": sb,
               "critical_ref": crit_ref, "critical": crit, "critical_error": crit_err}
        try:
          q_ref = q_star(name, sw, sb)
        except Exception:  # noqa: BLE001
          q_ref = math.nan
        row["q_star_ref"] = q_ref
        for key, fn in (("q_star", theory.q_star), ("chi1", theory.chi1), ("xi_q", theory.xi_q),
                        ("c_star", theory.c_star), ("xi_c", theory.xi_c)):
          try:
            row[key] = float(fn(phi, sw, sb))
          except ValueError as e:
            row[key], row[key + "_error"] = math.nan, str(e)
        if math.isfinite(q_ref) and q_ref > 0:
          for key, fn in (("chi1", chi1), ("xi_q", xi_q), ("c_star", c_star), ("xi_c", xi_c)):
            if key == "xi_c" and sw_label == "critical":
              row[key + "_ref"] = math.inf
              continue
            try:
              row[key + "_ref"] = fn(name, sw, sb)
            except Exception:  # noqa: BLE001 - no reference at this point
              row[key + "_ref"] = math.nan
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_error")}),
              flush=True)
  return rows


def summarize(rows):
  keys = ("q_star", "chi1", "c_star", "xi_q", "xi_c")
  lines = ["| activation | points | q* | χ₁ | c* | ξ_q | ξ_c | critical σ_w² | raised |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name in dict.fromkeys(r["phi"] for r in rows):
    rs = [r for r in rows if r["phi"] == name]
    errs = {}
    for key in keys:
      e = [rel(r[key], r[key + "_ref"]) for r in rs
           if key + "_ref" in r and not (key == "xi_c" and r["sw_label"] == "critical")
           and math.isfinite(r[key + "_ref"]) | math.isinf(r[key])]
      errs[key] = max(e) if e else math.nan
    crit = {(r["sigma_b2"]): rel(r["critical"], r["critical_ref"]) for r in rs
            if math.isfinite(r["critical_ref"])}
    raised = sum(any(k.endswith("_error") and r[k] for k in r) for r in rs)
    fmt = lambda x: "—" if math.isnan(x) else f"{x:.1e}"
    lines.append(f"| {name} | {len(rs)} | " + " | ".join(fmt(errs[k]) for k in keys) +
                 f" | {fmt(max(crit.values()) if crit else math.nan)} | {raised} |")
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default=HERE)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--phi", nargs="*", default=list(SMOOTH) + list(CLOSED))
  p.add_argument("--merge", nargs="*", default=None,
                 help="combine the accuracy.json of these folders (runs per activation); an "
                 "activation's rows in a later folder replace those of an earlier one (a rerun)")
  args = p.parse_args(argv)
  start = datetime.datetime.now(datetime.timezone.utc)
  t0 = time.time()
  parts_meta = None
  if args.merge:
    parts = [json.load(open(os.path.join(d, "accuracy.json"))) for d in args.merge]
    by_phi: dict[str, tuple[int, list]] = {}
    for i, part in enumerate(parts):
      for name in dict.fromkeys(r["phi"] for r in part["rows"]):
        by_phi[name] = (i, [r for r in part["rows"] if r["phi"] == name])  # a later part wins
    rows = [r for _, rs in by_phi.values() for r in rs]
    start = min(datetime.datetime.fromisoformat(p["meta"]["started"]) for p in parts)
    t0 -= sum(p["meta"]["wall_s"] for p in parts)
    # each part's own record (a merged part keeps its parts) and the activations whose rows
    # were taken from it, so the provenance of every row survives a merge into the folder it
    # was read from
    parts_meta = [{**p["meta"], "phi": [n for n, (j, _) in by_phi.items() if j == i]}
                  for i, p in enumerate(parts)]
  else:
    rows = run(args.phi, args.quick)
  table = summarize(rows)
  os.makedirs(args.out, exist_ok=True)
  meta = {"command": "PYTHONPATH=. python docs/results/theory_accuracy/accuracy.py " +
          " ".join(argv if argv is not None else sys.argv[1:]),
          "started": start.isoformat(timespec="seconds"), "wall_s": round(time.time() - t0, 1),
          "machine": platform.platform()}
  if parts_meta is not None:
    meta["parts"] = parts_meta
  with open(os.path.join(args.out, "accuracy.json"), "w") as f:
    json.dump({"meta": meta, "rows": rows}, f, indent=1, default=float)
  with open(os.path.join(args.out, "summary.md"), "w") as f:
    f.write(f"Written by `{meta['command']}` on {meta['started']} ({meta['machine']}, "
            f"{meta['wall_s']} s).\n\nLargest relative error of jinit.theory against the "
            "references, over σ_w² ∈ {0.5, critical, 3, 30, 1e4} × σ_b² ∈ {0, 0.05, 1, 10, "
            "50} (absolute where the reference is 0; ξ_c not compared at the critical point; "
            "'raised': points where jinit raised, e.g. no fixed point):\n\n" + table + "\n")
    if parts_meta is not None:
      f.write("\nMerged from (the activations whose rows each run gave; a later run of an "
              "activation replaces an earlier one):\n\n" +
              "".join(f"- {', '.join(m['phi'])}: `{m['command']}` on {m['started']} "
                      f"({m['wall_s']} s)\n" for m in parts_meta))
  print(table)


if __name__ == "__main__":
  main()
