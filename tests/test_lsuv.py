"""jinit.lsuv: unit output variance per layer, orthogonal pre-init, purity, bad input.

Layer outputs are checked with Flax's own ``capture_intermediates`` (independent of
the interceptor LSUV uses internally).
"""

from __future__ import annotations

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
import jinit.lsuv as lsuv_lib


class MLP(nn.Module):
  features: tuple[int, ...] = (64, 64, 64, 10)
  act: str = "tanh"

  @nn.compact
  def __call__(self, x):
    f = {"tanh": jnp.tanh, "relu": nn.relu}[self.act]
    for i, n in enumerate(self.features):
      x = nn.Dense(n, bias_init=nn.initializers.normal(0.1))(x)
      if i + 1 < len(self.features):
        x = f(x)
    return x


class ConvNet(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3))(x))
    x = nn.relu(nn.Conv(8, (3, 3))(x))
    return nn.Dense(4)(x.reshape(x.shape[0], -1))


def layer_outputs(model, variables, x, names):
  """Output of each named submodule's ``__call__``, via Flax's capture_intermediates."""
  _, state = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True,
                                              mutable=["intermediates"]))(variables, x)
  return [np.asarray(state["intermediates"][n]["__call__"][0]) for n in names]


@pytest.fixture(scope="module")
def mlp_case():
  model = MLP()
  x = jax.random.normal(jax.random.key(0), (128, 32)) * 3.0 + 1.0
  variables = jax.jit(model.init)(jax.random.key(1), x)
  original = jax.tree.map(np.array, variables)  # host copies, to check purity
  out, info = lsuv_lib.lsuv(model, variables, x, jax.random.key(2), return_info=True)
  return model, x, variables, original, out, info


def test_every_layer_has_unit_variance(mlp_case):
  model, x, _, _, out, info = mlp_case
  names = [f"Dense_{i}" for i in range(4)]
  for z, layer in zip(layer_outputs(model, out, x, names), info):
    assert abs(np.var(z) - 1.0) < 0.1  # the paper's tolerance
    assert layer.variance == pytest.approx(np.var(z), rel=1e-4)
    assert layer.converged and 0 <= layer.iterations <= 10
  assert [l.name for l in info] == names
  # Inputs of variance 9 make the first layer need rescaling: the loop did work.
  assert info[0].variance_before > 2 and info[0].iterations >= 1


def test_input_untouched_and_structure_kept(mlp_case):
  _, _, variables, original, out, _ = mlp_case
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, variables), original)
  assert jax.tree.structure(out) == jax.tree.structure(variables)
  for name in out["params"]:
    assert not np.allclose(out["params"][name]["kernel"], original["params"][name]["kernel"])
    # Biases are left as they are (the paper rescales weights only).
    np.testing.assert_array_equal(out["params"][name]["bias"],
                                  original["params"][name]["bias"])
    assert out["params"][name]["kernel"].dtype == original["params"][name]["kernel"].dtype


def test_kernels_are_scaled_orthogonal(mlp_case):
  out = mlp_case[4]
  for name in out["params"]:
    w = np.asarray(out["params"][name]["kernel"], np.float64)  # (in, out)
    g = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    c = np.mean(np.diag(g))
    np.testing.assert_allclose(g / c, np.eye(len(g)), atol=1e-5)


def test_deterministic_and_key_dependent(mlp_case):
  model, x, variables, _, out, _ = mlp_case
  again = lsuv_lib.lsuv(model, variables, x, jax.random.key(2))
  jax.tree.map(np.testing.assert_array_equal, again, out)
  other = lsuv_lib.lsuv(model, variables, x, jax.random.key(3))
  assert not np.allclose(other["params"]["Dense_1"]["kernel"], out["params"]["Dense_1"]["kernel"])


def test_max_iters_and_no_orthogonal(mlp_case):
  model, x, variables, _, _, _ = mlp_case
  # A tolerance no float32 variance meets: every layer stops after max_iters rescalings.
  with pytest.warns(UserWarning, match="did not reach"):
    out, info = lsuv_lib.lsuv(model, variables, x, jax.random.key(2), tol=1e-12, max_iters=2,
                              return_info=True)
  assert [l.iterations for l in info] == [2, 2, 2, 2]
  # Without the orthogonal step, kernels are the given ones rescaled: same direction.
  out, info = lsuv_lib.lsuv(model, variables, x, jax.random.key(2), orthogonal=False,
                            return_info=True)
  for name in out["params"]:
    a = np.asarray(out["params"][name]["kernel"]).ravel()
    b = np.asarray(variables["params"][name]["kernel"]).ravel()
    assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) == pytest.approx(1, abs=1e-6)
  assert all(l.converged for l in info)


def test_conv_model_and_frozen_dict():
  model = ConvNet()
  x = jax.random.normal(jax.random.key(4), (16, 6, 6, 3))
  variables = flax.core.freeze(jax.jit(model.init)(jax.random.key(5), x))
  out = lsuv_lib.lsuv(model, variables, x, jax.random.key(6))
  assert isinstance(out, flax.core.FrozenDict)
  for z in layer_outputs(model, out, x, ["Conv_0", "Conv_1", "Dense_0"]):
    assert abs(np.var(z) - 1.0) < 0.1


class NoLayers(nn.Module):

  @nn.compact
  def __call__(self, x):
    return jnp.tanh(x)


def test_bad_input(mlp_case):
  model, x, variables, _, _, _ = mlp_case
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="non-empty batch"):
    lsuv_lib.lsuv(model, variables, x[:0], key)
  with pytest.raises(ValueError, match="zero"):
    lsuv_lib.lsuv(model, variables, jnp.zeros_like(x), key)
  with pytest.raises(ValueError, match="Dense/Conv"):
    lsuv_lib.lsuv(NoLayers(), {}, x, key)
  with pytest.raises(TypeError, match="jit"):
    jax.jit(lambda v: lsuv_lib.lsuv(model, v, x, key))(variables)
  with pytest.raises(ValueError, match="tol"):
    lsuv_lib.lsuv(model, variables, x, key, tol=0.0)
  with pytest.raises(ValueError, match="max_iters"):
    lsuv_lib.lsuv(model, variables, x, key, max_iters=0)


def test_dead_layer_is_a_clear_error():
  model = MLP(features=(16, 16, 4), act="relu")
  x = jax.random.normal(jax.random.key(7), (32, 8))
  variables = jax.jit(model.init)(jax.random.key(8), x)
  params = flax.core.unfreeze(variables)["params"]
  params["Dense_0"]["bias"] = jnp.full((16,), -100.0)  # every unit of layer 1 dead
  # Layer 2's output is then its bias alone: weights cannot change its variance.
  with pytest.warns(UserWarning, match="Dense_1 did not reach"):
    _, info = lsuv_lib.lsuv(model, {"params": params}, x, jax.random.key(9), return_info=True)
  assert not info[1].converged and info[1].iterations == 10
  params["Dense_1"]["bias"] = jnp.zeros((16,))  # now its output is exactly 0
  with pytest.raises(ValueError, match="Dense_1.*variance"):
    lsuv_lib.lsuv(model, {"params": params}, x, jax.random.key(9))


def test_lazy_import():
  assert jinit.lsuv is lsuv_lib


# ------------------------------------------------------------- nnx, attention, residual

import math  # noqa: E402
import warnings  # noqa: E402

import signal_models as sm  # noqa: E402
from flax import nnx  # noqa: E402
from helpers import DirectKernel  # noqa: E402  (tests/ is on sys.path: pytest's rootdir insertion)


def kernel_of(model, variables, name):
  """The kernel of the layer called ``name`` (a "/"-joined path), read from the params."""
  node = model if variables is None else variables["params"]
  for part in name.split("/"):
    node = node[int(part)] if part.isdigit() else (
        getattr(node, part) if variables is None else node[part])
  return np.asarray(node.kernel[...] if variables is None else node["kernel"], np.float64)


@pytest.fixture(scope="module", params=sm.MODELS)
def model_case(request):
  model, variables, x, hand = sm.build(request.param)
  names = [r.name for r in (hand() if variables is None else hand(variables))
           if r.role == "layer"]
  before = {n: kernel_of(model, variables, n) for n in names}
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # every kernel is handled: nothing left alone
    if variables is None:
      out, info = lsuv_lib.lsuv(model, x, jax.random.key(5), return_info=True)
      assert out is model  # nnx: in place
      rows = hand()
    else:
      out, info = lsuv_lib.lsuv(model, variables, x, jax.random.key(5), return_info=True)
      rows = hand(out)
  return request.param, model, variables, out, names, before, info, rows


def test_every_kernel_layer_gets_unit_variance(model_case):
  name, model, variables, out, names, _, info, rows = model_case
  layers = [r for r in rows if r.role == "layer"]
  # Attention q/k/v/out and the Einsum are among them: 12 in the 2-block transformer.
  assert len(layers) == {"nnx_mlp": 6, "nnx_block": 6, "linen_transformer": 12,
                         "residual_mlp": 6}[name]
  assert [l.name for l in info] == [r.name for r in layers]
  for r, layer in zip(layers, info):
    # Hand-computed (float64) forward pass of the final weights: every layer's own output.
    assert abs(r.output.var() - 1.0) < 0.1, (r.name, r.output.var())
    assert layer.converged and layer.variance == pytest.approx(r.output.var(), rel=1e-3)


def test_grouped_orthogonal_pre_init(model_case):
  _, model, variables, out, names, before, _, _ = model_case
  for n in names:
    w = kernel_of(model, None if variables is None else out, n)
    assert not np.allclose(w, before[n])
    # The kernel as its (prod in axes, prod out axes) matrix: attention's out projection
    # (heads, head_dim, d) contracts two axes, q/k/v (d, heads, head_dim) one.
    split = 2 if (w.ndim == 3 and n.endswith("/out")) else 1
    m = w.reshape(math.prod(w.shape[:split]), -1)
    g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    c = np.mean(np.diag(g))  # LSUV's scale
    np.testing.assert_allclose(g / c, np.eye(len(g)), atol=1e-5, err_msg=n)



def test_nnx_warns_on_kernels_left_alone():
  model = DirectKernel(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (32, 6))
  second = np.asarray(model.second.kernel[...])
  with pytest.warns(UserWarning, match=r"leaves these kernels alone: second \(no recorded"):
    lsuv_lib.lsuv(model, x, jax.random.key(2))
  np.testing.assert_array_equal(model.second.kernel[...], second)
  assert abs(float(jnp.var(model.first(x))) - 1.0) < 0.1


def test_bad_input_nnx():
  model, _, x, _ = sm.build("nnx_mlp")
  key = jax.random.key(0)
  with pytest.raises(TypeError, match=r"lsuv takes \(model, x, key\) for an nnx model"):
    lsuv_lib.lsuv(model, {"params": {}}, x, key)
  with pytest.raises(TypeError, match="missing key"):
    lsuv_lib.lsuv(model, x)
  with pytest.raises(TypeError, match="key must be a PRNG key"):
    lsuv_lib.lsuv(model, x, 0)
  with pytest.raises(TypeError, match="linen Module or a flax.nnx Module"):
    lsuv_lib.lsuv([model], x, key)
  with pytest.raises(ValueError, match="non-empty batch"):
    lsuv_lib.lsuv(model, x[:0], key)
