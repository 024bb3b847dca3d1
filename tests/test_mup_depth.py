"""jinit.mup's depth parametrizations (depth-μP, CompleteP): the tables against the papers'
formulas, the branch multiplier, lr and epsilon multipliers per role, equality with μP at the
base depth, scale_eps, bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jinit import mup

# --------------------------------------------------------------------------- the papers

# Transcribed as exponents of the depth multiplier m_L = L / L_base, for a parameter inside a
# residual branch (TP VI: arXiv:2310.02244, "Depth-μP": block multiplier a/sqrt(L), SGD lr
# eta, Adam lr eta/sqrt(L); CompleteP: arXiv:2505.01618, Table 1 with alpha = 1 and
# nanoGPT-mup@completep's configure_optimizers: residual_scaling m_L^-alpha, lr_scale
# m_L^(alpha-1) for block weights, biases and norm gains, hidden adam_eps m_L^-alpha).
# The CompleteP SGD entry (m_L^(2 alpha - 1)) is jinit's extension (documented deviation).
PAPER_DEPTH = {  # branch multiplier, init var, forward multiplier, SGD lr, Adam lr, Adam eps
    "depth_mup": (-0.5, 0.0, 0.0, 0.0, -0.5, -0.5),
    "completep": (-1.0, 0.0, 0.0, 1.0, 0.0, -1.0),
}
FIELDS = ("init_var", "multiplier", "sgd_lr", "adam_lr", "eps")
ROLES = mup.PARAM_ROLES


def _exps(power):
  return (power.fan_in_exp, power.fan_out_exp, power.depth_exp)


@pytest.mark.parametrize("parametrization", sorted(PAPER_DEPTH))
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("field", FIELDS)
def test_depth_tables_match_papers(parametrization, role, field):
  width = mup.rule("mup", role, branch=False)
  # Outside the branches: μP, every entry (width and depth) identical.
  assert mup.rule(parametrization, role) == width
  inside = getattr(mup.rule(parametrization, role, branch=True), field)
  w = getattr(width, field)
  depth_exp = PAPER_DEPTH[parametrization][1 + FIELDS.index(field)]
  # Inside: μP's width exponents unchanged, the paper's depth exponent added.
  assert _exps(inside) == (w.fan_in_exp, w.fan_out_exp, depth_exp)


@pytest.mark.parametrize("parametrization", sorted(PAPER_DEPTH))
def test_depth_rule_is_the_alpha_formula(parametrization):
  alpha = mup.DEPTH_ALPHA[parametrization]
  r = mup.depth_rule(alpha)
  assert (r.sgd_lr.depth_exp, r.adam_lr.depth_exp, r.eps.depth_exp) == (
      2 * alpha - 1, alpha - 1, -alpha)
  assert -alpha == PAPER_DEPTH[parametrization][0]


@pytest.mark.parametrize("parametrization", ["sp", "mup", "mup_table3"])
def test_width_only_parametrizations_have_no_depth_rule(parametrization):
  for role in ROLES:
    assert mup.rule(parametrization, role, branch=True) == mup.rule(parametrization, role)
    assert mup.branch_multiplier(parametrization, 32, 2) == 1.0


# --------------------------------------------------------------------------- branch multiplier


@pytest.mark.parametrize("parametrization", sorted(PAPER_DEPTH))
@pytest.mark.parametrize("depth, base_depth", [(2, 2), (8, 2), (32, 2), (3, 12), (48, 6)])
def test_branch_multiplier(parametrization, depth, base_depth):
  got = mup.branch_multiplier(parametrization, depth, base_depth)
  expected = (depth / base_depth) ** PAPER_DEPTH[parametrization][0]
  assert got == pytest.approx(expected, rel=1e-15)
  if depth == base_depth:
    assert got == 1.0  # exactly: the base model is the μP model
  # depth-μP: 1/sqrt(m_L); CompleteP: 1/m_L, checked in closed form too.
  m = depth / base_depth
  assert got == pytest.approx(1 / np.sqrt(m) if parametrization == "depth_mup" else 1 / m,
                              rel=1e-15)


# --------------------------------------------------------------------------- per-role multipliers


def residual_mlp_shapes(width, depth, din=10, dout=3):
  """A pre-LN residual MLP with stacked blocks (linen nn.scan layout)."""
  return {
      "in/kernel": (din, width), "in/bias": (width,),
      "blocks/ln/scale": (depth, width), "blocks/ln/bias": (depth, width),
      "blocks/fc1/kernel": (depth, width, width), "blocks/fc1/bias": (depth, width),
      "blocks/fc2/kernel": (depth, width, width), "blocks/fc2/bias": (depth, width),
      "ln_f/scale": (width,), "ln_f/bias": (width,),
      "out/kernel": (width, dout), "out/bias": (dout,),
  }


ROLE_OF = {"in/kernel": "input", "in/bias": "bias", "blocks/ln/scale": "norm",
           "blocks/ln/bias": "bias", "blocks/fc1/kernel": "hidden", "blocks/fc1/bias": "bias",
           "blocks/fc2/kernel": "hidden", "blocks/fc2/bias": "bias", "ln_f/scale": "norm",
           "ln_f/bias": "bias", "out/kernel": "output", "out/bias": "fixed"}

# μP (Table 8) lr multipliers at width multiplier m_N, by role: (Adam, SGD).
MUP_LR = {"input": (lambda m: 1.0, lambda m: m), "bias": (lambda m: 1.0, lambda m: m),
          "norm": (lambda m: 1.0, lambda m: m), "hidden": (lambda m: 1 / m, lambda m: 1.0),
          "output": (lambda m: 1.0, lambda m: m), "fixed": (lambda m: 1.0, lambda m: 1.0)}


@pytest.mark.parametrize("parametrization", sorted(PAPER_DEPTH) + ["mup", "sp"])
@pytest.mark.parametrize("width, depth", [(64, 16), (16, 16), (64, 2), (128, 32)])
def test_lr_and_eps_multipliers_per_role(parametrization, width, depth):
  base_width, base_depth = 16, 2
  meta = mup.infinite_dims(residual_mlp_shapes(width, depth),
                           residual_mlp_shapes(base_width, depth),
                           parametrization=parametrization, depth=depth, base_depth=base_depth,
                           branches="blocks")
  m_n, m_l = width / base_width, depth / base_depth
  _, _, _, sgd_e, adam_e, eps_e = PAPER_DEPTH.get(parametrization, (0,) * 6)
  for path, m in meta.items():
    in_branch = path.startswith("blocks/")
    assert m.branch == in_branch and m.depth_mult == m_l
    role = ROLE_OF[path] if width != base_width else "fixed"  # nothing grows at the base width
    assert m.role == role, path
    adam, sgd = MUP_LR[role]
    if parametrization == "sp":
      adam = sgd = lambda m: 1.0  # noqa: E731
    depth_adam, depth_sgd, depth_eps = ((m_l ** adam_e, m_l ** sgd_e, m_l ** eps_e)
                                        if in_branch else (1.0, 1.0, 1.0))
    assert m.lr_multiplier("adam") == pytest.approx(adam(m_n) * depth_adam, rel=1e-12), path
    assert m.lr_multiplier("sgd") == pytest.approx(sgd(m_n) * depth_sgd, rel=1e-12), path
    assert m.eps_multiplier == pytest.approx(depth_eps, rel=1e-12), path
    # init and forward multipliers do not depend on depth
    mup_like = mup.infinite_dims(residual_mlp_shapes(width, depth),
                                 residual_mlp_shapes(base_width, depth),
                                 parametrization="sp" if parametrization == "sp" else "mup")[path]
    assert (m.init_std_mult, m.multiplier) == (mup_like.init_std_mult, mup_like.multiplier)


@pytest.mark.usefixtures("optax_adam_promotion")  # optax.adam is not strict-clean (conftest)
@pytest.mark.parametrize("parametrization", sorted(PAPER_DEPTH))
def test_equals_mup_at_base_depth(parametrization):
  """At depth == base_depth every multiplier and every optimizer update is μP's, exactly."""
  shapes, base = residual_mlp_shapes(64, 6), residual_mlp_shapes(16, 6)
  depth_meta = mup.infinite_dims(shapes, base, parametrization=parametrization, depth=6,
                                 base_depth=6, branches="blocks")
  mup_meta = mup.infinite_dims(shapes, base, parametrization="mup")
  assert mup.branch_multiplier(parametrization, 6, 6) == 1.0
  for path, m in depth_meta.items():
    mu = mup_meta[path]
    assert m.branch == path.startswith("blocks/")
    assert (m.role, m.init_std_mult, m.multiplier, m.eps_multiplier) == (
        mu.role, mu.init_std_mult, mu.multiplier, 1.0)
    for opt in mup.OPTIMIZERS:
      assert m.lr_multiplier(opt) == mu.lr_multiplier(opt)
  # the optax chains give bit-identical updates
  keys = jax.random.split(jax.random.key(0), len(shapes))
  params = {p: jax.random.normal(k, s) for k, (p, s) in zip(keys, shapes.items())}
  grads = jax.tree.map(lambda a: jnp.sin(3.0 * a), params)
  for opt, core in (("adam", optax.adam(1e-2, eps=1e-3)), ("sgd", optax.sgd(1e-2))):
    chains = [optax.chain(*([mup.scale_eps(meta)] if opt == "adam" else []), core,
                          mup.scale_updates(meta, opt)) for meta in (depth_meta, mup_meta)]
    a, b = ((tx.update(grads, tx.init(params), params)[0]) for tx in chains)
    for p in params:
      np.testing.assert_array_equal(a[p], b[p])


# --------------------------------------------------------------------------- scale_eps


@pytest.mark.usefixtures("optax_adam_promotion")
def test_scale_eps_is_adam_with_per_parameter_epsilon():
  shapes, base = residual_mlp_shapes(32, 16), residual_mlp_shapes(32, 16)
  meta = mup.infinite_dims(shapes, base, parametrization="completep", depth=16, base_depth=2,
                           branches="blocks")
  eps = 1e-2  # large, so that epsilon matters against |g| ~ 1
  keys = jax.random.split(jax.random.key(1), len(shapes))
  params = {p: jax.random.normal(k, s) for k, (p, s) in zip(keys, shapes.items())}
  labels = {p: p for p in params}
  reference = optax.multi_transform(
      {p: optax.adam(1e-2, eps=eps * m.eps_multiplier) for p, m in meta.items()}, labels)
  ours = optax.chain(mup.scale_eps(meta), optax.adam(1e-2, eps=eps))
  s_ref, s_ours = reference.init(params), ours.init(params)
  for t in range(3):
    grads = jax.tree.map(lambda a, t=t: jnp.cos(a * (t + 1.0)) * 0.05, params)
    u_ref, s_ref = reference.update(grads, s_ref, params)
    u_ours, s_ours = ours.update(grads, s_ours, params)
    for p in params:
      # the same float32 algebra in another order: a few ulps
      np.testing.assert_allclose(u_ours[p], u_ref[p], rtol=1e-5, atol=1e-9, err_msg=p)
  assert {m.eps_multiplier for p, m in meta.items() if p.startswith("blocks")} == {1 / 8}
  # the epsilon matters here: Adam with μP's epsilon gives different block updates
  plain = optax.adam(1e-2, eps=eps)
  u_plain, _ = plain.update(grads, plain.init(params), params)
  u_one, _ = ours.update(grads, ours.init(params), params)
  assert not np.allclose(u_plain["blocks/fc1/kernel"], u_one["blocks/fc1/kernel"], rtol=1e-3)


def test_branches_as_list_and_predicate_and_format():
  shapes, base = residual_mlp_shapes(32, 4), residual_mlp_shapes(16, 4)
  kw = dict(parametrization="depth_mup", depth=4, base_depth=1)
  by_prefix = mup.infinite_dims(shapes, base, branches=["blocks/fc1", "blocks/fc2"], **kw)
  by_fn = mup.infinite_dims(shapes, base, branches=lambda p: "/fc" in p, **kw)
  assert by_prefix == by_fn
  assert {p for p, m in by_fn.items() if m.branch} == {
      "blocks/fc1/kernel", "blocks/fc1/bias", "blocks/fc2/kernel", "blocks/fc2/bias"}
  table = mup.format_meta(by_fn, "adam")
  assert "| branch | depth x | adam eps x |" in table
  assert "| blocks/fc1/kernel | (4, 32, 32) | (4, 16, 16) | hidden |" in table
  assert "| yes | 4 | 0.5 | 0.25 |" in table  # eps 4^-1/2, Adam lr (1/2) * 4^-1/2


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(parametrization="completep", base_depth=2, branches="blocks"), ValueError,
     "depth is required by parametrization='completep'"),
    (dict(parametrization="depth_mup", depth=4, branches="blocks"), ValueError,
     "base_depth is required"),
    (dict(parametrization="completep", depth=4, base_depth=2), ValueError,
     "branches is required"),
    (dict(parametrization="mup", depth=4), ValueError, "depth and base_depth go together"),
    (dict(parametrization="completep", depth=0, base_depth=2, branches="blocks"), ValueError,
     "depth must be"),
    (dict(parametrization="completep", depth=4, base_depth=2.0, branches="blocks"), TypeError,
     "base_depth must be"),
    (dict(parametrization="completep", depth="4", base_depth=2, branches="blocks"), TypeError,
     "depth must be"),
    (dict(parametrization="completep", depth=4, base_depth=2, branches=3), TypeError,
     "branches must be"),
    (dict(parametrization="completep", depth=4, base_depth=2, branches="block"), ValueError,
     "branches: 'block' matches no parameter"),
])
def test_bad_depth_arguments(kwargs, error, message):
  with pytest.raises(error, match=message.replace("(", r"\(")):
    mup.infinite_dims(residual_mlp_shapes(32, 4), residual_mlp_shapes(16, 4), **kwargs)


@pytest.mark.parametrize("args, error, message", [
    (("completep", 0, 2), ValueError, "depth must be"),
    (("completep", 4, -1), ValueError, "base_depth must be"),
    (("completep", 4.0, 2), TypeError, "depth must be"),
    (("ntk", 4, 2), ValueError, "parametrization must be one of"),
    ((None, 4, 2), TypeError, "parametrization must be a str"),
])
def test_bad_branch_multiplier(args, error, message):
  with pytest.raises(error, match=message):
    mup.branch_multiplier(*args)


def test_rule_branch_must_be_bool():
  with pytest.raises(TypeError, match="branch must be a bool"):
    mup.rule("completep", "hidden", branch="yes")


def test_every_parametrization_has_both_tables():
  for p, role in itertools.product(mup.PARAMETRIZATIONS, ROLES):
    assert isinstance(mup.TABLES[p][role], mup.Rule)
    assert isinstance(mup.BRANCH_TABLES[p][role], mup.Rule)
