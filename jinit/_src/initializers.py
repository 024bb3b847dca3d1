"""Weight initializers as pure functions.

Every initializer has the call shape::

    init(key, shape, fan_in=None, fan_out=None, *, <hyperparameters>, dtype=jnp.float32)

``key`` is a ``jax.random.key`` or a legacy ``jax.random.PRNGKey``; the result is a
function of the key alone (same key, same bits, under ``jax.jit`` or not). Fans are
explicit: initializers whose scale depends on them raise ``ValueError`` when the
needed fan is missing; the others accept and validate fans but do not use them.
:func:`jinit.compute_fans` derives fans from a shape and a named layout.
Hyperparameters are keyword-only. The result has exactly ``shape`` and ``dtype``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jinit._src import gains as gains_lib
from jinit._src import validation

Array = jax.Array
Shape = Sequence[int]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")


class Initializer(Protocol):
  """The call shape of every jinit initializer."""

  def __call__(self, key: Array, shape: Shape, fan_in: int | None = None,
               fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
    ...


def _prepare(shape, fan_in, fan_out, dtype, *, min_rank=0, need_in=False, need_out=False):
  shape = validation.check_shape(shape, min_rank=min_rank)
  fan_in = validation.check_fan(fan_in, "fan_in", required=need_in)
  fan_out = validation.check_fan(fan_out, "fan_out", required=need_out)
  return shape, fan_in, fan_out, validation.check_float_dtype(dtype)


def _concrete_scalar_to_python(value: Any) -> Any:
  """A concrete (untraced) numpy/JAX 0-d value as a Python scalar, so it can be static.

  Without this, ``gain=np.float32(2.0)`` or ``fan_in=np.int64(64)`` would take the
  op-by-op path below and could differ in the last bit from the same call under jit.
  """
  if isinstance(value, np.generic) or (
      isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer)
      and value.shape == ()):
    return value.item()
  return value


def _is_static(value: Any) -> bool:
  if isinstance(value, (jax.Array, jax.core.Tracer)) or hasattr(value, "__array__"):
    return False
  try:
    hash(value)
  except TypeError:
    return False
  return True


def _compiled(fn):
  """Runs ``fn`` as one compiled program with every argument but the key static.

  Eager op-by-op execution and XLA's fusion round differently (XLA folds the
  constants of ``(z * sqrt(2)) * std`` into one product), so without this an
  initializer called eagerly and the same call under ``jax.jit`` could differ in
  the last bit. Compiling the initializer itself makes both paths run the same
  program: same key, same bits. Arguments that cannot be static (arrays, e.g. a
  ``gain`` swept under ``vmap``) fall back to tracing ``fn`` directly.
  """
  sig = inspect.signature(fn)
  static = tuple(name for name in sig.parameters if name != "key")
  jitted = jax.jit(fn, static_argnames=static)

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      bound = sig.bind(*args, **kwargs)
    except TypeError as e:
      raise TypeError(f"{fn.__name__}: {e}") from None
    arguments = {name: _concrete_scalar_to_python(value)
                 for name, value in bound.arguments.items() if name != "key"}
    key = bound.arguments["key"]
    if isinstance(arguments.get("shape"), list):
      arguments["shape"] = tuple(arguments["shape"])
    if all(_is_static(v) for v in arguments.values()):
      return jitted(key, **arguments)
    return fn(key, **arguments)

  return wrapper


def _sampling_dtype(dtype) -> jnp.dtype:
  """float32, or float64 when float64 is asked for (used where low precision hurts)."""
  return jnp.dtype(jnp.float64) if dtype == jnp.float64 else jnp.dtype(jnp.float32)


# --------------------------------------------------------------------------- constants


@_compiled
def zeros(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
          dtype: DTypeLike = jnp.float32) -> Array:
  """All zeros. As weights, every unit is dead and identical (the course page's warning)."""
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  return jnp.zeros(shape, dtype)


@_compiled
def ones(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
         dtype: DTypeLike = jnp.float32) -> Array:
  """All ones."""
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  return jnp.ones(shape, dtype)


@_compiled
def constant(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None,
             *, value: ArrayLike = 0.0, dtype: DTypeLike = jnp.float32) -> Array:
  """Every entry equal to ``value``.

  Constant weights make all units of a layer clones of each other in value and
  gradient, so they stay clones under gradient descent (the symmetry problem).
  """
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  value = validation.check_real(value, "value")
  validation.check_fits(value, "value", dtype)
  return jnp.full(shape, value, dtype)


# --------------------------------------------------------------------------- simple laws


@_compiled
def normal(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
           std: ArrayLike = 1.0, mean: ArrayLike = 0.0, dtype: DTypeLike = jnp.float32) -> Array:
  """N(mean, std^2), independent of the fans (``torch.nn.init.normal_``)."""
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  std = validation.check_real(std, "std", positive=True)
  mean = validation.check_real(mean, "mean")
  validation.check_fits(std, "std", dtype)
  validation.check_fits(mean, "mean", dtype)
  return jax.random.normal(key, shape, dtype) * jnp.asarray(std, dtype) + jnp.asarray(mean, dtype)


@_compiled
def uniform(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
            a: ArrayLike = 1.0, dtype: DTypeLike = jnp.float32) -> Array:
  """U(-a, a): symmetric about zero, unlike ``jax.nn.initializers.uniform`` (U[0, scale)).

  Variance a^2 / 3. The course page's "old practice" example is ``a=0.5``.
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  a = validation.check_real(a, "a", positive=True)
  validation.check_fits(a, "a", dtype)
  a = jnp.asarray(a, dtype)
  return jax.random.uniform(key, shape, dtype, minval=-a, maxval=a)


def _std_normal_cdf(x: float) -> float:
  return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def truncated_std(lower: float = -2.0, upper: float = 2.0) -> float:
  r"""Std of a standard normal truncated to [lower, upper].

  .. math:: \sigma^2 = 1 + \frac{a\phi(a) - b\phi(b)}{Z} - \left(\frac{\phi(a) - \phi(b)}{Z}\right)^2,
     \quad Z = \Phi(b) - \Phi(a)

  For [-2, 2] this is 0.87962566103423978, the constant in
  ``jax.nn.initializers.variance_scaling``.
  """
  lower = validation.check_real(lower, "lower")
  upper = validation.check_real(upper, "upper")
  if not lower < upper:
    raise ValueError(f"lower must be < upper, got lower={lower}, upper={upper}")
  pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
  z = _std_normal_cdf(upper) - _std_normal_cdf(lower)
  if z <= 0.0:
    raise ValueError(f"[lower, upper] = [{lower}, {upper}] has no probability mass")
  m = (pdf(lower) - pdf(upper)) / z
  var = 1.0 + (lower * pdf(lower) - upper * pdf(upper)) / z - m * m
  return math.sqrt(var)


@_compiled
def truncated_normal(key: Array, shape: Shape, fan_in: int | None = None,
                     fan_out: int | None = None, *, std: ArrayLike = 1.0,
                     lower: float = -2.0, upper: float = 2.0, mean: ArrayLike = 0.0,
                     corrected: bool = False, dtype: DTypeLike = jnp.float32) -> Array:
  """N(mean, s^2) truncated to [mean + lower*s, mean + upper*s].

  The bounds are in units of ``s`` (jax's convention; ``torch.nn.init.trunc_normal_``
  takes absolute bounds instead).

  * ``corrected=False`` (default, as ``jax.nn.initializers.truncated_normal``):
    ``s = std`` is the std BEFORE truncation, so the samples' std is
    ``std * truncated_std(lower, upper)`` (0.880 * std for [-2, 2]).
  * ``corrected=True`` (what ``variance_scaling`` does): ``s = std /
    truncated_std(lower, upper)``, so ``std`` is the std AFTER truncation.
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  std = validation.check_real(std, "std", positive=True)
  mean = validation.check_real(mean, "mean")
  if not isinstance(corrected, bool):
    raise TypeError(f"corrected must be a bool, got {corrected!r}")
  factor = truncated_std(lower, upper)  # also validates lower < upper
  scale = std / factor if corrected else std
  validation.check_fits(scale, "std", dtype)
  validation.check_fits(mean, "mean", dtype)
  z = jax.random.truncated_normal(key, lower, upper, shape, dtype)
  return z * jnp.asarray(scale, dtype) + jnp.asarray(mean, dtype)


# --------------------------------------------------------------------------- variance scaling


def _fan_for_mode(mode: str, fan_in, fan_out) -> float:
  if mode == "fan_in":
    return fan_in
  if mode == "fan_out":
    return fan_out
  return (fan_in + fan_out) / 2.0


@_compiled
def variance_scaling(key: Array, shape: Shape, fan_in: int | None = None,
                     fan_out: int | None = None, *, scale: ArrayLike = 1.0,
                     mode: str = "fan_in", distribution: str = "truncated_normal",
                     dtype: DTypeLike = jnp.float32) -> Array:
  r"""Samples with variance ``scale / n``, n given by ``mode``.

  .. math:: \mathrm{Var}[W] = \frac{\text{scale}}{n}, \quad
     n \in \{\text{fan\_in}, \text{fan\_out}, (\text{fan\_in} + \text{fan\_out}) / 2\}

  ``distribution``: ``"normal"`` is N(0, scale/n); ``"uniform"`` is U(-b, b) with
  b = sqrt(3 scale / n); ``"truncated_normal"`` is a normal truncated at ±2 of its
  std, rescaled (``corrected=True``) so that the variance after truncation is
  scale/n. Same semantics as ``jax.nn.initializers.variance_scaling``.
  """
  validation.check_choice(mode, "mode", MODES)
  validation.check_choice(distribution, "distribution", DISTRIBUTIONS)
  shape, fan_in, fan_out, dtype = _prepare(
      shape, fan_in, fan_out, dtype, need_in=mode != "fan_out", need_out=mode != "fan_in")
  scale = validation.check_real(scale, "scale", positive=True)
  n = _fan_for_mode(mode, fan_in, fan_out)
  # A concrete scale gives a Python-float std, so the constant is the same
  # whether this runs under jit or not (same bits); a traced scale stays traced.
  std = jnp.sqrt(scale / n) if isinstance(scale, jax.Array) else math.sqrt(scale / n)
  validation.check_fits(std * math.sqrt(3.0), "sqrt(3 * scale / n)", dtype)  # >= std, bound
  if distribution == "normal":
    return jax.random.normal(key, shape, dtype) * jnp.asarray(std, dtype)
  if distribution == "uniform":
    bound = jnp.asarray(math.sqrt(3.0) * std, dtype)
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)
  return truncated_normal(key, shape, std=std, corrected=True, dtype=dtype)


@_compiled
def xavier_uniform(key: Array, shape: Shape, fan_in: int | None = None,
                   fan_out: int | None = None, *, gain: ArrayLike = 1.0,
                   dtype: DTypeLike = jnp.float32) -> Array:
  r"""Glorot/Xavier uniform: U(-a, a), :math:`a = \text{gain}\sqrt{6/(\text{fan\_in}+\text{fan\_out})}`.

  Variance 2 gain^2 / (fan_in + fan_out). Same as ``torch.nn.init.xavier_uniform_``.

  References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html
  """
  gain = validation.check_real(gain, "gain", positive=True)
  return variance_scaling(key, shape, fan_in, fan_out, scale=gain * gain, mode="fan_avg",
                          distribution="uniform", dtype=dtype)


@_compiled
def xavier_normal(key: Array, shape: Shape, fan_in: int | None = None,
                  fan_out: int | None = None, *, gain: ArrayLike = 1.0,
                  dtype: DTypeLike = jnp.float32) -> Array:
  r"""Glorot/Xavier normal: N(0, σ²), :math:`σ = \text{gain}\sqrt{2/(\text{fan\_in}+\text{fan\_out})}`.

  Untruncated, as ``torch.nn.init.xavier_normal_`` (``jinit.glorot_normal`` is jax's
  truncated version).

  References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html
  """
  gain = validation.check_real(gain, "gain", positive=True)
  return variance_scaling(key, shape, fan_in, fan_out, scale=gain * gain, mode="fan_avg",
                          distribution="normal", dtype=dtype)


def _kaiming_gain(a, nonlinearity: str) -> float:
  a = validation.check_real(a, "a")
  if nonlinearity == "leaky_relu":
    return gains_lib.calculate_gain("leaky_relu", a)
  validation.check_choice(nonlinearity, "nonlinearity", gains_lib.NONLINEARITIES)
  if a != 0:
    raise ValueError(
        f"a is the negative slope of leaky_relu; it must be 0 for nonlinearity="
        f"{nonlinearity!r}, got a={a!r}")
  return gains_lib.calculate_gain(nonlinearity)


@_compiled
def kaiming_uniform(key: Array, shape: Shape, fan_in: int | None = None,
                    fan_out: int | None = None, *, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", dtype: DTypeLike = jnp.float32) -> Array:
  r"""Kaiming/He uniform, PyTorch semantics: U(-b, b), :math:`b = \text{gain}\sqrt{3/n}`.

  gain = ``calculate_gain(nonlinearity, a)`` (a is leaky_relu's negative slope), n =
  fan_in or fan_out (``mode``). With the defaults (a=0, leaky_relu) the gain is
  sqrt(2), so b = sqrt(6/fan_in): a 5x5 matrix stays within ±sqrt(6/5) ≈ ±1.095.
  Same as ``torch.nn.init.kaiming_uniform_``.

  References: He et al. 2015, https://arxiv.org/abs/1502.01852
  """
  validation.check_choice(mode, "mode", ("fan_in", "fan_out"))
  gain = _kaiming_gain(a, nonlinearity)
  return variance_scaling(key, shape, fan_in, fan_out, scale=gain**2, mode=mode,
                          distribution="uniform", dtype=dtype)


@_compiled
def kaiming_normal(key: Array, shape: Shape, fan_in: int | None = None,
                   fan_out: int | None = None, *, a: float = 0.0, mode: str = "fan_in",
                   nonlinearity: str = "leaky_relu", dtype: DTypeLike = jnp.float32) -> Array:
  r"""Kaiming/He normal, PyTorch semantics: N(0, σ²), :math:`σ = \text{gain}/\sqrt{n}`.

  gain and n as in :func:`kaiming_uniform`; untruncated, as
  ``torch.nn.init.kaiming_normal_`` (``jinit.he_normal`` is jax's truncated version).

  References: He et al. 2015, https://arxiv.org/abs/1502.01852
  """
  validation.check_choice(mode, "mode", ("fan_in", "fan_out"))
  gain = _kaiming_gain(a, nonlinearity)
  return variance_scaling(key, shape, fan_in, fan_out, scale=gain**2, mode=mode,
                          distribution="normal", dtype=dtype)


@_compiled
def lecun_uniform(key: Array, shape: Shape, fan_in: int | None = None,
                  fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """LeCun uniform: U(-b, b), b = sqrt(3/fan_in); variance 1/fan_in.

  References: LeCun et al. 1998, "Efficient BackProp".
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_in",
                          distribution="uniform", dtype=dtype)


@_compiled
def lecun_normal(key: Array, shape: Shape, fan_in: int | None = None,
                 fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """LeCun normal: truncated normal with variance 1/fan_in (after truncation).

  As ``jax.nn.initializers.lecun_normal`` (Flax's default kernel init).
  References: LeCun et al. 1998; Klambauer et al. 2017, https://arxiv.org/abs/1706.02515
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_in",
                          distribution="truncated_normal", dtype=dtype)


@_compiled
def glorot_uniform(key: Array, shape: Shape, fan_in: int | None = None,
                   fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``glorot_uniform``: ``xavier_uniform`` with gain 1."""
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_avg",
                          distribution="uniform", dtype=dtype)


@_compiled
def glorot_normal(key: Array, shape: Shape, fan_in: int | None = None,
                  fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``glorot_normal``: truncated normal, variance 2/(fan_in + fan_out)."""
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_avg",
                          distribution="truncated_normal", dtype=dtype)


@_compiled
def he_uniform(key: Array, shape: Shape, fan_in: int | None = None,
               fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``he_uniform``: U(-b, b), b = sqrt(6/fan_in) (= ``kaiming_uniform`` defaults)."""
  return variance_scaling(key, shape, fan_in, fan_out, scale=2.0, mode="fan_in",
                          distribution="uniform", dtype=dtype)


@_compiled
def he_normal(key: Array, shape: Shape, fan_in: int | None = None,
              fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``he_normal``: truncated normal, variance 2/fan_in (after truncation)."""
  return variance_scaling(key, shape, fan_in, fan_out, scale=2.0, mode="fan_in",
                          distribution="truncated_normal", dtype=dtype)


@_compiled
def torch_linear_default(key: Array, shape: Shape, fan_in: int | None = None,
                         fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  r"""PyTorch's default for ``nn.Linear``/``nn.Conv*`` weights AND biases: U(±1/sqrt(fan_in)).

  For the weight PyTorch calls ``kaiming_uniform_(w, a=sqrt(5))``: gain
  sqrt(2/(1+5)) = sqrt(1/3), bound sqrt(3) * sqrt(1/3) / sqrt(fan_in) = 1/sqrt(fan_in).
  For the bias it samples U(±1/sqrt(fan_in)) with the layer's (weight's) fan_in, so a
  bias init needs the kernel's fan_in (see ``jinit.flax.Dense``).
  Glorot & Bengio 2010 call this the "standard" initialization.
  """
  shape, fan_in, _, dtype = _prepare(shape, fan_in, fan_out, dtype, need_in=True)
  bound = jnp.asarray(1.0 / math.sqrt(fan_in), dtype)
  return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)


# --------------------------------------------------------------------------- structured


def _orthogonal_matrix(key: Array, n_rows: int, n_cols: int, compute_dtype) -> Array:
  """An (n_rows, n_cols) matrix with orthonormal columns (rows if n_rows < n_cols)."""
  transpose = n_rows < n_cols
  rows, cols = (n_cols, n_rows) if transpose else (n_rows, n_cols)
  a = jax.random.normal(key, (rows, cols), compute_dtype)
  q, r = jnp.linalg.qr(a)
  # Sign correction (Mezzadri 2007) makes Q Haar-distributed; never multiply by 0.
  q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(compute_dtype)[None, :]
  return q.T if transpose else q


@_compiled
def orthogonal(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None,
               *, gain: ArrayLike = 1.0, column_axis: int = -1,
               dtype: DTypeLike = jnp.float32) -> Array:
  r"""(Semi-)orthogonal matrix times ``gain``, by QR with sign correction.

  The shape is viewed as a matrix of ``shape[column_axis]`` columns and
  ``prod(shape) / shape[column_axis]`` rows. With rows >= cols,
  :math:`W^T W = \text{gain}^2 I`; otherwise :math:`W W^T = \text{gain}^2 I`.
  For Flax kernels ``(..., in, out)`` the default ``column_axis=-1`` is right;
  for PyTorch's (out, in) layout use ``column_axis=0``. Computed in float32
  (float64 if asked for) and cast to ``dtype``.

  References: Saxe et al. 2014, https://arxiv.org/abs/1312.6120
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype, min_rank=2)
  if isinstance(column_axis, bool) or not isinstance(column_axis, int) \
      or not -len(shape) <= column_axis < len(shape):
    raise ValueError(f"column_axis must be an int in [-{len(shape)}, {len(shape)}), "
                     f"got {column_axis!r}")
  gain = validation.check_real(gain, "gain", positive=True)
  validation.check_fits(gain, "gain", dtype)
  n_cols = shape[column_axis]
  n_rows = math.prod(shape) // n_cols
  compute = _sampling_dtype(dtype)
  q = _orthogonal_matrix(key, n_rows, n_cols, compute)
  other = tuple(d for i, d in enumerate(shape) if i != column_axis % len(shape))
  q = jnp.moveaxis(q.reshape(*other, n_cols), -1, column_axis)
  return (q * jnp.asarray(gain, compute)).astype(dtype)


def _check_conv_shape(shape, name: str):
  if not 3 <= len(shape) <= 5:
    raise ValueError(f"{name} needs a Flax conv kernel shape (*window, in, out) with 1 to 3 "
                     f"window dims (rank 3 to 5), got shape {shape!r}")


@_compiled
def delta_orthogonal(key: Array, shape: Shape, fan_in: int | None = None,
                     fan_out: int | None = None, *, gain: ArrayLike = 1.0,
                     dtype: DTypeLike = jnp.float32) -> Array:
  """Delta-orthogonal conv kernel: zero except an orthogonal (in, out) matrix at the center.

  Flax layout ``(*window, in, out)`` with in <= out; the center of a window of size
  k is index (k - 1) // 2 (as ``jax.nn.initializers.delta_orthogonal``). Such a
  conv is norm-preserving at init (dynamical isometry).

  References: Xiao et al. 2018, https://arxiv.org/abs/1806.05393
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  _check_conv_shape(shape, "delta_orthogonal")
  n_in, n_out = shape[-2:]
  if n_in > n_out:
    raise ValueError(f"delta_orthogonal needs in <= out channels, got shape {shape!r}")
  ortho = orthogonal(key, (n_in, n_out), gain=gain, dtype=dtype)
  center = tuple((k - 1) // 2 for k in shape[:-2])
  return jnp.zeros(shape, dtype).at[center].set(ortho)


@_compiled
def eye(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
        dtype: DTypeLike = jnp.float32) -> Array:
  """Identity matrix (ones on the main diagonal) for a 2-D shape, as ``torch.nn.init.eye_``.

  A Dense layer with this kernel passes its first min(in, out) inputs through.
  """
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  if len(shape) != 2:
    raise ValueError(f"eye needs a 2-D shape, got shape {shape!r}")
  return jnp.eye(*shape, dtype=dtype)


@_compiled
def dirac(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
          groups: int = 1, dtype: DTypeLike = jnp.float32) -> Array:
  """Dirac delta conv kernel: the conv is the identity on the first min(in, out) channels.

  Flax layout ``(*window, in/groups, out)``: ``w[center, d, g * out/groups + d] = 1``
  for each group g and d < min(in/groups, out/groups); the center of a window of size k
  is k // 2, as ``torch.nn.init.dirac_`` (which uses PyTorch's (out, in, *window)).
  """
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  _check_conv_shape(shape, "dirac")
  if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
    raise ValueError(f"groups must be a positive int, got {groups!r}")
  n_in, n_out = shape[-2:]
  if n_out % groups:
    raise ValueError(f"groups={groups} must divide the out channels of shape {shape!r}")
  per_group = n_out // groups
  d = jnp.arange(min(n_in, per_group))
  outs = (jnp.arange(groups)[:, None] * per_group + d[None, :]).reshape(-1)
  ins = jnp.tile(d, groups)
  center = tuple(k // 2 for k in shape[:-2])
  return jnp.zeros(shape, dtype).at[(*center, ins, outs)].set(1)


@_compiled
def sparse(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
           sparsity: float = 0.1, std: ArrayLike = 0.01, dtype: DTypeLike = jnp.float32) -> Array:
  """Sparse init: N(0, std^2), then ceil(sparsity * in) random entries of each column zeroed.

  2-D Flax layout (in, out): every output unit gets the same number of nonzero
  incoming weights, as in Martens 2010. (``torch.nn.init.sparse_`` zeros along
  axis 0 of PyTorch's (out, in) weight instead; for its exact law, sample the
  transposed shape and transpose.)

  References: Martens 2010, "Deep learning via Hessian-free optimization".
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  if len(shape) != 2:
    raise ValueError(f"sparse needs a 2-D shape, got shape {shape!r}")
  sparsity = validation.check_real(sparsity, "sparsity")
  if not 0.0 <= sparsity < 1.0:
    raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
  std = validation.check_real(std, "std", positive=True)
  validation.check_fits(std, "std", dtype)
  rows, _ = shape
  num_zeros = math.ceil(sparsity * rows)
  k_values, k_mask = jax.random.split(key)
  values = jax.random.normal(k_values, shape, dtype) * jnp.asarray(std, dtype)
  return jnp.where(_random_rows_mask(k_mask, shape, num_zeros), jnp.zeros((), dtype), values)


def _random_rows_mask(key: Array, shape: tuple[int, int], k: int) -> Array:
  """Boolean (rows, cols) mask with a uniformly random k-subset of rows set in each column.

  A partial Fisher-Yates shuffle of every column's row indices at once: step i swaps
  position i with a uniform position in [i, rows), so positions [0, k) end up holding
  a uniform random k-subset. O(k * cols) work and no sort (XLA's CPU sort of all
  rows * cols entries took ~100 s at 4096 x 4096; this takes ~1 s).
  """
  rows, cols = shape
  if k == 0:
    return jnp.zeros(shape, bool)
  col_ids = jnp.arange(cols)

  def step(i, order):
    j = jax.random.randint(jax.random.fold_in(key, i), (cols,), i, rows)
    at_i = jax.lax.dynamic_index_in_dim(order, i, 0, keepdims=False)
    at_j = order[j, col_ids]
    # Both halves of the swap in ONE scatter: XLA then updates the loop carry in
    # place (two chained scatters copied the whole array every step, 45x slower).
    # Where j == i both writes carry the same value.
    row_idx = jnp.concatenate([jnp.full((cols,), i), j])
    return order.at[row_idx, jnp.tile(col_ids, 2)].set(jnp.concatenate([at_j, at_i]))

  order = jnp.broadcast_to(jnp.arange(rows, dtype=jnp.int32)[:, None], shape)
  order = jax.lax.fori_loop(0, k, step, order)
  chosen = order[:k]  # (k, cols): the zeroed rows of each column
  return jnp.zeros(shape, bool).at[chosen, jnp.broadcast_to(col_ids, (k, cols))].set(True)
