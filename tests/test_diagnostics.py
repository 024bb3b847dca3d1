"""jinit.diagnostics: analytic signal propagation, exact backward statistics, bad input.

Compiles are slow here, so every test reuses a handful of models (module-scoped
fixtures) whose weights are set directly with jinit functions: one compiled
program per model structure serves every initializer.
"""

from __future__ import annotations

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
import jinit.diagnostics as diag

WIDTH = 256
BATCH = 512
DEPTH = 8


class Chain(nn.Module):
  """Dense layers of ``features`` with ``act`` between them (none after the last)."""
  features: tuple[int, ...]
  act: str = "identity"

  @nn.compact
  def __call__(self, x):
    f = {"identity": lambda z: z, "relu": nn.relu, "tanh": jnp.tanh,
         "sigmoid": nn.sigmoid}[self.act]
    x = x.reshape(x.shape[0], -1)
    for i, n in enumerate(self.features):
      x = nn.Dense(n)(x)
      if i + 1 < len(self.features):
        x = f(x)
    return x


def chain_variables(key, in_dim, features, init, bias=0.0, **hyper):
  """``{"params": {"Dense_i": {kernel, bias}}}`` with ``init`` kernels (explicit fans)."""
  params, dims = {}, (in_dim,) + tuple(features)
  for i, k in enumerate(jax.random.split(key, len(features))):
    kernel = init(k, (dims[i], dims[i + 1]), dims[i], dims[i + 1], **hyper)
    params[f"Dense_{i}"] = {"kernel": kernel, "bias": jnp.full((dims[i + 1],), bias)}
  return {"params": params}


def manual_forward(variables, x, act):
  """The chain's z and h per layer, in numpy float64 (independent of the library)."""
  f = {"identity": lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
       "sigmoid": lambda z: 1 / (1 + np.exp(-z))}[act]
  p = variables["params"]
  h, zs, hs = np.asarray(x, np.float64), [], []
  for i in range(len(p)):
    z = h @ np.asarray(p[f"Dense_{i}"]["kernel"], np.float64) + np.asarray(
        p[f"Dense_{i}"]["bias"], np.float64)
    h = f(z) if i + 1 < len(p) else z
    zs.append(z)
    hs.append(h)
  return zs, hs


@pytest.fixture(scope="module")
def x_white():
  return jax.random.normal(jax.random.key(0), (BATCH, WIDTH))


# --------------------------------------------------------------------------- analytic


def linear_tolerance(k: int) -> float:
  """6 standard errors of log(Var z_k / Var z_{k-1}) in a deep linear net, Var(W) = 1/n.

  Given the layer input's second-moment matrix C (n x n), Var z_k is
  (1/n) sum_j w_j^T C w_j over n independent columns w_j ~ (0, I/n), so its
  relative variance is 2 m2 / n^2 with m2 = n tr(C^2) / tr(C)^2 (Gaussian weights;
  uniform or truncated normal ones, of kurtosis < 3, give less). For white inputs
  from B examples m2 = 1 + n/B, and each of the k - 1 square Gaussian layers before
  adds 1 (free multiplicative convolution of Marchenko-Pastur laws).
  """
  m2 = 1 + WIDTH / BATCH + (k - 1)
  return 6 * math.sqrt(2 * m2) / WIDTH


def relu_tolerance(k: int) -> float:
  """6 standard errors of log(Var z_k / Var z_{k-1}) in a ReLU net (as above).

  Now C is the second moment of h = relu(z), mean mu plus covariance S: tr C =
  n q/2 and |mu|^2 = n q/(2 pi) for Var z = q, so m2 >= n/pi^2 from the mean alone;
  the covariance and cross terms add at most 1 + (1 + n/B + k) (their exact
  factors 0.47 and 0.43 are rounded up to 1).
  """
  m2 = WIDTH / math.pi**2 + 1 + (1 + WIDTH / BATCH + k)
  return 6 * math.sqrt(2 * m2) / WIDTH


@pytest.fixture(scope="module")
def linear_reports(x_white):
  model = Chain((WIDTH,) * DEPTH)
  reports = {}
  for name, init in (("xavier_uniform", jinit.xavier_uniform),
                     ("lecun_normal", jinit.lecun_normal)):
    v = chain_variables(jax.random.key(1), WIDTH, (WIDTH,) * DEPTH, init)
    reports[name] = diag.diagnose(model, v, x_white)
  return reports


@pytest.mark.parametrize("init", ["xavier_uniform", "lecun_normal"])
def test_deep_linear_net_preserves_variance(linear_reports, x_white, init):
  report = linear_reports[init]
  var = np.concatenate([[np.var(np.asarray(x_white))], report.column("act_std") ** 2])
  log_ratios = np.diff(np.log(var))
  for k, r in enumerate(log_ratios, start=1):
    assert abs(r) <= linear_tolerance(k), (init, k, r)
  total_tol = 6 * math.sqrt(sum((linear_tolerance(k) / 6)**2 for k in range(1, DEPTH + 1)))
  assert abs(np.log(var[-1] / var[0])) <= total_tol
  assert all(l.nonlinearity == "identity" for l in report.layers)
  assert report.loss is None and report.layers[0].grad_preact_std is None


@pytest.fixture(scope="module")
def relu_reports(x_white):
  model = Chain((WIDTH,) * DEPTH, act="relu")
  reports = {}
  for name, init, hyper in (("kaiming", jinit.kaiming_normal, {"nonlinearity": "relu"}),
                            ("xavier", jinit.xavier_normal, {})):
    v = chain_variables(jax.random.key(2), WIDTH, (WIDTH,) * DEPTH, init, **hyper)
    reports[name] = diag.diagnose(model, v, x_white)
  return reports


@pytest.mark.parametrize("init,factor", [("kaiming", 1.0), ("xavier", 0.5)])
def test_relu_kaiming_keeps_second_moment_xavier_halves_it(relu_reports, init, factor):
  # He et al. 2015 eq. (10): Var z_k = (n Var w / 2) Var z_{k-1}; n Var w = 2 (Kaiming) or
  # 1 (Xavier with fan_in = fan_out).
  report = relu_reports[init]
  var = report.column("preact_std") ** 2
  log_ratios = np.diff(np.log(var))
  for k, r in enumerate(log_ratios, start=2):
    assert abs(r - math.log(factor)) <= relu_tolerance(k), (init, k, r)
  total_tol = 6 * math.sqrt(sum((relu_tolerance(k) / 6)**2 for k in range(2, DEPTH + 1)))
  assert abs(np.log(var[-1] / var[0]) - (DEPTH - 1) * math.log(factor)) <= total_tol
  assert [l.nonlinearity for l in report.layers] == ["relu"] * (DEPTH - 1) + ["identity"]
  # Layer 1 sees white inputs of variance 1: Var z_1 = n Var w.
  assert report.layers[0].preact_std**2 == pytest.approx(2 * factor, rel=0.1)


# --------------------------------------------------------------------------- exact values

SMALL = (16, 16, 16, 5)


@pytest.fixture(scope="module")
def tanh_case():
  model = Chain(SMALL, act="tanh")
  x = jax.random.normal(jax.random.key(3), (32, 8))
  labels = jnp.arange(32) % 5
  v = chain_variables(jax.random.key(4), 8, SMALL, jinit.normal, bias=0.1, std=0.7)
  return model, v, x, labels, diag.diagnose(model, v, x, labels, bins=20)


def test_forward_stats_match_manual_forward(tanh_case):
  _, v, x, _, report = tanh_case
  zs, hs = manual_forward(v, x, "tanh")
  assert [l.name for l in report.layers] == [f"Dense_{i}" for i in range(4)]
  assert [l.nonlinearity for l in report.layers] == ["tanh"] * 3 + ["identity"]
  for l, z, h in zip(report.layers, zs, hs):
    assert l.shape == z.shape
    np.testing.assert_allclose([l.preact_mean, l.preact_std, l.act_mean, l.act_std],
                               [z.mean(), z.std(), h.mean(), h.std()], rtol=1e-4, atol=1e-6)
  for l, h in zip(report.layers[:3], hs):
    assert l.saturated == pytest.approx(np.mean(np.abs(h) >= 0.95), abs=1e-6)
    assert l.dead is None
  assert any(l.saturated > 0 for l in report.layers[:3])  # the check has teeth


def test_backward_stats_match_jax_grad(tanh_case):
  model, v, x, labels, report = tanh_case
  params = v["params"]

  def loss_from(zs_offsets, params):
    h = x
    for i in range(4):
      p = params[f"Dense_{i}"]
      z = h @ p["kernel"] + p["bias"][None, :] + zs_offsets[i]
      h = jnp.tanh(z) if i < 3 else z
    logp = jax.nn.log_softmax(h)
    return -jnp.mean(logp[jnp.arange(32), labels])

  offsets = [jnp.zeros((32, n)) for n in SMALL]
  g_z, g_p = jax.grad(loss_from, argnums=(0, 1))(offsets, params)
  assert report.loss == pytest.approx(float(loss_from(offsets, params)), rel=1e-5)
  for i, l in enumerate(report.layers):
    assert l.grad_preact_std == pytest.approx(float(jnp.std(g_z[i])), rel=1e-4)
    assert l.grad_kernel_std == pytest.approx(
        float(jnp.std(g_p[f"Dense_{i}"]["kernel"])), rel=1e-4)


def test_histograms_count_every_entry(tanh_case):
  _, _, x, _, report = tanh_case
  for l in report.layers:
    assert len(l.act_hist.counts) == 20 and len(l.act_hist.edges) == 21
    assert l.act_hist.counts.sum() == x.shape[0] * l.shape[1]
    assert l.grad_hist.counts.sum() == x.shape[0] * l.shape[1]
    integral = np.sum(l.act_hist.density * np.diff(l.act_hist.edges))
    assert integral == pytest.approx(1.0, rel=1e-6)


def test_report_serializes_and_prints(tanh_case):
  report = tanh_case[-1]
  d = json.loads(json.dumps(report.to_dict()))
  assert len(d["rows"]) == 4 and d["rows"][0]["act_hist"]["counts"]
  assert [r["role"] for r in d["rows"]] == ["layer"] * 4
  table = report.table()
  assert table.count("\n") == 5 and "Dense_3" in table
  with pytest.raises(ValueError, match="field"):
    report.column("nope")


def test_plot_histograms(tanh_case, tmp_path):
  report = tanh_case[-1]
  fig = diag.plot_histograms(report, "gradients", title="Fig. 7")
  assert len(fig.axes[0].lines) == 3  # hidden layers; the output layer is left out
  fig.savefig(tmp_path / "g.png")
  assert (tmp_path / "g.png").stat().st_size > 0
  fig = diag.plot_histograms(report, layers=[1, 4])
  assert len(fig.axes[0].lines) == 2
  with pytest.raises(ValueError, match="which"):
    diag.plot_histograms(report, "weights")
  with pytest.raises(ValueError, match="layers"):
    diag.plot_histograms(report, layers=[5])


def test_dead_and_saturated_units():
  model = Chain(SMALL, act="relu")
  x = jax.random.normal(jax.random.key(5), (64, 8))
  v = chain_variables(jax.random.key(6), 8, SMALL, jinit.kaiming_normal)
  # Layer 2 gets a bias of -50 on its first 10 units: those are dead for any input.
  p = v["params"]["Dense_1"]
  v["params"]["Dense_1"] = {"kernel": p["kernel"], "bias": p["bias"].at[:10].set(-50.0)}
  report = diag.diagnose(model, v, x)
  _, hs = manual_forward(v, x, "relu")
  for l, h in zip(report.layers[:3], hs):
    assert l.dead == pytest.approx(np.mean(np.all(h == 0, axis=0)))
  assert report.layers[1].dead >= 10 / 16
  # The same weights read as sigmoid (explicit nonlinearity) report saturation instead.
  forced = diag.diagnose(model, v, x, nonlinearity="sigmoid")
  assert forced.layers[1].dead is None
  assert forced.layers[1].saturated == pytest.approx(
      np.mean((hs[1] <= 0.05) | (hs[1] >= 0.95)))


class ConvNet(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.relu(nn.Conv(6, (3, 3), strides=2)(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_conv_model_without_special_writing():
  model = ConvNet()
  x = jax.random.normal(jax.random.key(7), (8, 8, 8, 2))
  v = jax.jit(model.init)(jax.random.key(8), x)  # one compile, not one per op
  labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
  report = diag.diagnose(model, v, x, labels)
  assert [l.kind for l in report.layers] == ["Conv", "Conv", "Dense"]
  assert [l.shape for l in report.layers] == [(8, 8, 8, 4), (8, 4, 4, 6), (8, 3)]
  # Conv 2's activation is the flattened input of the Dense layer: still detected as relu.
  assert [l.nonlinearity for l in report.layers] == ["relu", "relu", "identity"]
  grads = jax.jit(jax.grad(
      lambda p: diag.cross_entropy(model.apply({"params": p}, x), labels)))(v["params"])
  for l, name in zip(report.layers, ("Conv_0", "Conv_1", "Dense_0")):
    assert l.grad_kernel_std == pytest.approx(float(jnp.std(grads[name]["kernel"])),
                                              rel=1e-4)


# --------------------------------------------------------------------------- bad input


class NoLayers(nn.Module):

  @nn.compact
  def __call__(self, x):
    return jnp.tanh(x)


def test_bad_input():
  model = Chain((4,))
  x = jnp.ones((3, 2))
  v = chain_variables(jax.random.key(0), 2, (4,), jinit.lecun_normal)
  with pytest.raises(ValueError, match="Dense/Conv"):
    diag.diagnose(NoLayers(), {}, x)
  with pytest.raises(ValueError, match="non-empty batch"):
    diag.diagnose(model, v, jnp.ones((0, 2)))
  with pytest.raises(TypeError, match="linen Module"):
    diag.diagnose(lambda x: x, v, x)
  with pytest.raises(ValueError, match="labels"):
    diag.diagnose(model, v, x, jnp.zeros((2,), jnp.int32))
  with pytest.raises(ValueError, match="nonlinearity"):
    diag.diagnose(model, v, x, nonlinearity="elu")
  with pytest.raises(ValueError, match="nonlinearity"):
    diag.diagnose(model, v, x, nonlinearity=["tanh", "tanh"])
  with pytest.raises(ValueError, match="bins"):
    diag.diagnose(model, v, x, bins=0)
  with pytest.raises(TypeError, match="layer_types"):
    diag.diagnose(model, v, x, layer_types=[nn.Dense])


def test_lazy_import():
  assert jinit.diagnostics is diag


def test_detection_survives_vanishing_signals(relu_reports, tanh_case, x_white):
  # Same models (and compiled programs) as above, with tiny weights: signals of ~1e-8
  # are still told apart from a linear layer (the match is relative to the signal).
  model = Chain((WIDTH,) * DEPTH, act="relu")
  v = chain_variables(jax.random.key(9), WIDTH, (WIDTH,) * DEPTH, jinit.normal, std=0.01)
  report = diag.diagnose(model, v, x_white)
  assert report.layers[-2].act_std < 1e-6
  assert [l.nonlinearity for l in report.layers[:-1]] == ["relu"] * (DEPTH - 1)
  assert all(l.dead is not None for l in report.layers[:-1])
  model, _, x, labels, _ = tanh_case
  v = chain_variables(jax.random.key(10), 8, SMALL, jinit.normal, std=1e-3)
  report = diag.diagnose(model, v, x, labels, bins=20)
  # The output layer's z *is* the model output (the same array): identity, even though its
  # outputs (~1e-9) are where tanh(z) == z.
  assert [l.nonlinearity for l in report.layers] == ["tanh"] * 3 + ["identity"]
  # Where only values decide (a tanh layer vs an identity one), stating the nonlinearity
  # removes the ambiguity: the reported h is still the tensor the model used.
  forced = diag.diagnose(model, v, x, labels, bins=20,
                         nonlinearity=["identity"] + ["tanh"] * 2 + ["identity"])
  assert forced.layers[0].nonlinearity == "identity" and forced.layers[0].saturated is None
  assert forced.layers[0].act_std == pytest.approx(report.layers[0].act_std, rel=1e-6)


# ------------------------------------------------------------- models that are not chains

import signal_models as sm  # noqa: E402
from flax import nnx  # noqa: E402
from helpers import DirectKernel  # noqa: E402  (tests/ is on sys.path: pytest's rootdir insertion)


def kernel_count(model, variables):
  """Params named "kernel", counted from the parameter tree (not from the recorder)."""
  if variables is None:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return sum(1 for path, _ in flat if path[-1] == "kernel")
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return sum(1 for path, _ in flat if path[-1].key == "kernel")


def run_diagnose(model, variables, x, **kw):
  if variables is None:
    return diag.diagnose(model, x, **kw)
  return diag.diagnose(model, variables, x, **kw)


@pytest.fixture(scope="module", params=sm.MODELS)
def model_case(request):
  model, variables, x, hand = sm.build(request.param)
  return request.param, model, variables, x, hand, run_diagnose(model, variables, x)


def assert_rows_match(report, hand_rows):
  """Each row's own input and output (and activation) against the hand-computed forward."""
  got = [r for r in report.rows if r.role != "uninstrumented"]
  assert [(r.role, r.name) for r in got] == [(h.role, h.name) for h in hand_rows]
  for r, h in zip(got, hand_rows):
    # float32 forward vs float64 hand forward: relative errors ~1e-6; 1e-4 leaves room for
    # the softmax and LayerNorm (absolute 1e-6 for means near 0).
    expected = [h.input.mean(), h.input.std(), h.output.mean(), h.output.std()]
    np.testing.assert_allclose([r.input_mean, r.input_std, r.preact_mean, r.preact_std],
                               expected, rtol=1e-4, atol=1e-6, err_msg=r.name)
    assert r.shape == h.output.shape, r.name
    if r.role == "layer":
      assert r.nonlinearity == h.act, r.name
      if h.act is None:  # unknown: no made-up h (not the next layer's input)
        assert r.act_std is None and r.act_mean is None and r.act_hist is None, r.name
      else:
        np.testing.assert_allclose([r.act_mean, r.act_std], [h.h.mean(), h.h.std()],
                                   rtol=1e-4, atol=1e-6, err_msg=r.name)


def test_row_per_kernel_with_its_own_input_and_output(model_case):
  name, model, variables, x, hand, report = model_case
  n_kernels = kernel_count(model, variables)
  assert len(report.layers) == n_kernels  # none skipped
  assert not report.by_role("uninstrumented")
  assert_rows_match(report, hand())
  # Rows per role (layer, norm, residual) each model must give.
  expected = {"nnx_mlp": (6, 0, 0), "nnx_block": (6, 2, 2), "linen_transformer": (12, 4, 4),
              "residual_mlp": (6, 0, 2)}[name]
  assert tuple(len(report.by_role(r)) for r in ("layer", "norm", "residual")) == expected


def test_activations_detected_or_explicitly_unknown(model_case):
  name, *_, report = model_case
  found = [l.nonlinearity for l in report.layers]
  if name == "nnx_mlp":
    assert found == ["relu", "gelu", "silu", "tanh", "sigmoid", "identity"]
    assert report.layers[0].dead is not None and report.layers[3].saturated is not None
  elif name == "residual_mlp":
    # The residual branch's last layer feeds an add, not an activation: unknown, and the
    # residual stream gets its own row instead of being shown as that layer's h.
    assert found == ["identity", "relu", None, "relu", None, "identity"]
  else:
    # q/k/v/out feed attention, down feeds a residual add: no elementwise activation.
    blocks = 2 if name == "linen_transformer" else 1
    assert found == [None, None, None, None, "gelu", None] * blocks
  table = report.table()
  assert table.count("\n") == len(report.rows) + 1
  assert (" ? " in table) == (name != "nnx_mlp")  # "?" marks an unknown activation


def test_nnx_backward_matches_nnx_grad():
  model, _, x, _ = sm.build("nnx_mlp")
  labels = jnp.arange(x.shape[0]) % sm.CLASSES
  report = diag.diagnose(model, x, labels)

  def loss(m):
    return diag.cross_entropy(m(x), labels)

  grads = nnx.grad(loss)(model)
  assert report.loss == pytest.approx(float(loss(model)), rel=1e-5)
  for i, l in enumerate(report.layers):
    assert l.grad_kernel_std == pytest.approx(float(jnp.std(grads.layers[i].kernel[...])),
                                              rel=1e-4)
    assert l.grad_preact_std is not None and l.grad_preact_std > 0


class Remat(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(8)(x))
    return nn.remat(nn.Dense)(4)(x)



def test_layers_that_cannot_be_instrumented_are_listed():
  x = jax.random.normal(jax.random.key(0), (16, 6))
  model = Remat()
  v = jax.jit(model.init)(jax.random.key(1), x)
  with pytest.warns(UserWarning, match="CheckpointDense_0.*lifted transform"):
    report = diag.diagnose(model, v, x)
  assert [(r.role, r.name) for r in report.rows] == [("layer", "Dense_0"),
                                                    ("uninstrumented", "CheckpointDense_0")]
  assert report.rows[1].preact_std is None and "u1" in report.table()
  with pytest.warns(UserWarning, match="second"):
    report = diag.diagnose(DirectKernel(nnx.Rngs(0)), x)
  assert [(r.role, r.name) for r in report.rows] == [("layer", "first"),
                                                    ("uninstrumented", "second")]
  assert report.rows[0].nonlinearity is None  # tanh(z) is read by a matmul, not a layer


def test_einsum_kernel_axes():
  from jinit._src import capture
  assert capture.einsum_kernel_axes("bld,dhk->blhk", 3) == ((), (0,), (1, 2))
  assert capture.einsum_kernel_axes("blhk,hkd->bld", 3) == ((), (0, 1), (2,))
  assert capture.einsum_kernel_axes("bhd,hdk->bhk", 3) == ((0,), (1,), (2,))
  assert capture.einsum_kernel_axes("...d,df->...f", 2) == ((), (0,), (1,))
  with pytest.raises(ValueError, match="kernel has rank 2"):
    capture.einsum_kernel_axes("bld,dhk->blhk", 2)
  with pytest.raises(ValueError, match="equation must have the form"):
    capture.einsum_kernel_axes("bld->bl", 1)


def test_bad_input_nnx():
  model, _, x, _ = sm.build("nnx_mlp")
  with pytest.raises(TypeError, match=r"diagnose takes \(model, x, labels\) for an nnx"):
    diag.diagnose(model, {"params": {}}, x, jnp.zeros((64,), jnp.int32))
  with pytest.raises(TypeError, match="missing variables, x"):
    diag.diagnose(sm.ResidualMLP())
  with pytest.raises(TypeError, match="linen Module or a flax.nnx Module"):
    diag.diagnose(object(), x)
  with pytest.raises(TypeError, match="norm_types"):
    diag.diagnose(model, x, norm_types=[nnx.LayerNorm])
  with pytest.raises(ValueError, match="labels"):
    diag.diagnose(model, x, labels=jnp.zeros((3,), jnp.int32))
  with pytest.raises(TypeError, match="unexpected argument 'y'"):
    diag.diagnose(model, x, y=1)


class ReZero(nn.Module):
  """x + alpha * branch(x) with alpha = 0 at init (Bachlechner et al. 2020)."""

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(8, name="embed")(x)
    for i in range(2):
      alpha = self.param(f"alpha{i}", nn.initializers.constant(0.5 * i), ())
      x = x + alpha * nn.Dense(8, name=f"b{i}")(nn.relu(nn.Dense(8, name=f"a{i}")(x)))
    return x


def test_gated_residual_streams_are_found():
  x = jax.random.normal(jax.random.key(0), (16, 4))
  model = ReZero()
  v = jax.jit(model.init)(jax.random.key(1), x)
  report = diag.diagnose(model, v, x)
  res = report.by_role("residual")
  assert [r.name for r in res] == ["b0+skip", "b1+skip"]
  # The fitted gate is alpha: 0 (the stream passes unchanged), then 0.5.
  assert res[0].note == "stream = skip + 0 * output of b0"
  assert res[1].note == "stream = skip + 0.5 * output of b1"
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"])
  e = np.asarray(x, np.float64) @ p["embed"]["kernel"] + p["embed"]["bias"]
  u = np.maximum(e @ p["a1"]["kernel"] + p["a1"]["bias"], 0)
  stream = e + 0.5 * (u @ p["b1"]["kernel"] + p["b1"]["bias"])
  assert res[1].preact_std == pytest.approx(stream.std(), rel=1e-4)
  assert res[0].preact_std == pytest.approx(e.std(), rel=1e-4)


class DropNorm(nnx.Module):

  def __init__(self, rngs):
    self.lin = nnx.Linear(4, 8, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)

  def __call__(self, x):
    return self.bn(self.drop(self.lin(x)))


def test_nnx_model_with_rng_and_batch_stats_is_not_modified():
  model = DropNorm(nnx.Rngs(0))  # training mode: dropout draws keys, batch norm updates
  x = jax.random.normal(jax.random.key(0), (16, 4))

  def leaves():  # params, batch stats, RNG counts (keys as their raw data)
    return [np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
                       else a) for a in jax.tree.leaves(nnx.to_pure_dict(nnx.state(model)))]

  before = leaves()
  report = diag.diagnose(model, x, loss_fn=lambda y, _: jnp.mean(y**2))
  after = leaves()
  assert all(np.array_equal(a, b) for a, b in zip(before, after))
  assert [(r.role, r.name) for r in report.rows] == [("layer", "lin"), ("norm", "bn")]
  # Dropout's output is not an elementwise f(z): unknown, not mislabelled.
  assert report.layers[0].nonlinearity is None
  assert report.rows[1].input_std > report.rows[0].preact_std  # dropout rescales by 2
