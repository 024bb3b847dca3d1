"""Weight initializers as pure functions.

Every initializer has the call shape::

    init(key, shape, fan_in=None, fan_out=None, *, <hyperparameters>, dtype=jnp.float32)

``key`` is a ``jax.random.key`` or a legacy ``jax.random.PRNGKey``; the result is a
function of the key alone (same key, same bits, under ``jax.jit`` or not). Fans are
explicit: initializers whose scale depends on them raise ``ValueError`` when the
needed fan is missing; the others accept and validate fans but do not use them.
:func:`jinit.compute_fans` derives fans from a shape and a named layout.
Hyperparameters are keyword-only. The result has exactly ``shape`` and ``dtype``:

* float16 and bfloat16 samples are drawn in float32 and cast (float64 and
  complex128 in 64 bits); float32 results are jax's samples (to rounding) where
  jinit follows jax.
* A 64-bit dtype (float64, complex128) needs JAX's x64 mode; with it off the call
  raises ``ValueError`` saying how to enable it, rather than silently returning
  32 bits. ``dtype=None`` is jax's default float dtype.
* A zero-size shape gives an empty array (fans of 0 are then allowed).
* Every argument is checked before anything is compiled or sampled; a sample range
  that would overflow the dtype (inf/NaN) raises ``ValueError``.

See docs/parity.md for how each initializer compares with ``jax.nn.initializers``
and ``torch.nn.init``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from jinit._src import gains as gains_lib
from jinit._src import rbg_cpu
from jinit._src import validation

Array = jax.Array
Shape = Sequence[int]

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")


class Initializer(Protocol):
  """The call shape of every jinit initializer."""

  def __call__(self, key: Array, shape: Shape, fan_in: int | None = None,
               fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
    ...


# The initializers that accept complex dtypes: those jax's accept (the variance-scaling
# family, normal, orthogonal, delta_orthogonal, the constants). uniform, truncated_normal,
# eye, dirac, sparse and torch_linear_default are real-only, as in jax and PyTorch.
COMPLEX_OK = frozenset({
    "zeros", "ones", "constant", "normal", "variance_scaling", "xavier_uniform",
    "xavier_normal", "kaiming_uniform", "kaiming_normal", "lecun_uniform", "lecun_normal",
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "orthogonal",
    "delta_orthogonal"})


def _prepare(shape, fan_in, fan_out, dtype, *, min_rank=0, need_in=False, need_out=False,
             allow_complex=False):
  """Validates the arguments every initializer has; returns them canonical.

  A zero-size shape (a dimension of 0) is allowed, and then so are fans of 0 (the
  fans of a zero-size kernel); the initializer returns an empty array.
  """
  shape = validation.check_shape(shape, min_rank=min_rank, allow_zero=True)
  empty = math.prod(shape) == 0
  fan_in = validation.check_fan(fan_in, "fan_in", required=need_in, allow_zero=empty)
  fan_out = validation.check_fan(fan_out, "fan_out", required=need_out, allow_zero=empty)
  dtype = validation.check_float_dtype(dtype, allow_complex=allow_complex)
  return shape, fan_in, fan_out, dtype


def _is_empty(shape: tuple[int, ...]) -> bool:
  return math.prod(shape) == 0


def _concrete_scalar_to_python(value: Any) -> Any:
  """A concrete (untraced) numpy/JAX 0-d value as a Python scalar, so it can be static.

  Without this, ``gain=np.float32(2.0)`` or ``fan_in=np.int64(64)`` would take the
  op-by-op path below and could differ in the last bit from the same call under jit.
  """
  if isinstance(value, np.generic) or (
      isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer)
      and value.shape == () and not jnp.issubdtype(value.dtype, jax.dtypes.prng_key)):
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


def _typed(value: Any) -> Any:
  """``value`` with the type of every part attached: 3, 3.0 and True become distinct."""
  if isinstance(value, (tuple, list)):
    return (type(value), tuple(_typed(v) for v in value))
  return (type(value), value)


class _Static:
  """A static jit argument whose cache identity includes its type.

  jit finds a compiled program by comparing static arguments with ``==`` and
  ``hash``, under which ``3 == 3.0 == True``: a call with ``gain=True`` would reuse
  the program traced for ``gain=1`` and skip the validation that rejects a bool.
  Comparing the typed value makes a cache hit imply the same
  arguments, types included, that passed validation when the program was traced.
  """

  __slots__ = ("value", "_key")

  def __init__(self, value: Any):
    self.value = value
    self._key = _typed(value)

  def __hash__(self) -> int:
    return hash(self._key)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Static) and self._key == other._key


_NO_FANS_HINT = (
    "Pass fan_in/fan_out explicitly (jinit.compute_fans), or let jinit.linen.reinit / "
    "jinit.nnx.reinit give every layer its true fans, or wrap the initializer as "
    "jinit.linen.kernel_init(init, equation=...) / jinit.nnx.kernel_init(init, equation=...) "
    "for an Einsum kernel (in_axis=/out_axis= for other layouts).")

_FLAX_CALL_DOC = """

  Drop-in use: this initializer can also be passed wherever Flax or
  ``jax.nn.initializers`` expect ``init(key, shape, dtype)`` (``kernel_init=`` of
  ``nn.Dense``, ``nn.Conv``, ``nnx.Linear``...). Called that way (a dtype as the third
  positional argument), or with neither fan given, the fans are read from ``shape``
  with Flax's layout, as ``jax.nn.initializers`` does: ``fan_in = shape[-2] * r``,
  ``fan_out = shape[-1] * r`` with ``r`` the product of the leading (receptive
  field) axes. That is right for ``Dense`` and ungrouped ``Conv`` kernels; for
  Einsum/``DenseGeneral`` kernels and grouped convolutions use
  ``jinit.linen.reinit`` / ``jinit.nnx.reinit`` (true per-layer fans) or
  ``jinit.linen.kernel_init(init, equation=...)``. Explicit fans are used as given.
"""


def flax_fans(shape: tuple[int, ...]) -> tuple[int, int]:
  """The fans ``jax.nn.initializers`` reads from a kernel shape (``in_axis=-2, out_axis=-1``).

  Args:
    shape: a checked shape of rank >= 2.

  Returns:
    ``(shape[-2] * r, shape[-1] * r)``, r the product of the other (leading) axes.
  """
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


def _is_dtype_like(value: Any) -> bool:
  """Whether ``value`` is a dtype (as Flax passes ``param_dtype``), not a fan."""
  if value is None or isinstance(value, (bool, int, float, np.number)):
    return False
  if isinstance(value, (np.dtype, str, type)) or (
      hasattr(value, "dtype") and not hasattr(value, "shape")):
    try:
      np.dtype(value)
    except TypeError:
      return isinstance(value, np.dtype)
    return True
  return False


def _flax_call(name: str, arguments: dict[str, Any], dtype_given: bool) -> None:
  """Rewrites ``init(key, shape, dtype)`` (Flax's call) as ``init(key, shape, dtype=dtype)``.

  Flax and ``jax.nn.initializers`` pass the parameter dtype as the third positional
  argument, which jinit's signature names ``fan_in``. A dtype there (not a number) is
  moved to ``dtype``; the fans are then read from the shape by the caller.
  """
  if not _is_dtype_like(arguments["fan_in"]):
    return
  if arguments["fan_out"] is not None or dtype_given:
    raise TypeError(
        f"{name}: a dtype as the third positional argument is Flax's call init(key, shape, "
        f"dtype); it takes no fan_out and no dtype= besides, got fan_in={arguments['fan_in']!r}, "
        f"fan_out={arguments['fan_out']!r}")
  arguments["dtype"] = arguments["fan_in"]
  arguments["fan_in"] = None


def _sampling_key(key: Array) -> Array:
  """The key the samplers draw with: ``key``, or for rbg/unsafe_rbg keys the same key data
  with faster CPU bits (identical to jax's, see :mod:`jinit._src.rbg_cpu`)."""
  return rbg_cpu.fast_key(key)


def _compiled(fn):
  """Validates the common arguments, then runs ``fn`` as one compiled program.

  Before any compiled call, the key, shape, fans and dtype are checked and put in
  canonical form (a tuple of ints, ints, a numpy dtype), so a bad one raises
  whatever jit's cache holds; the remaining hyperparameters are static arguments
  compared with their types (:class:`_Static`), so they are validated whenever the
  program is traced and a cache hit cannot hide a bad one.

  Eager op-by-op execution and XLA's fusion round differently (XLA folds the
  constants of ``(z * sqrt(2)) * std`` into one product), so without compiling an
  initializer called eagerly and the same call under ``jax.jit`` could differ in
  the last bit. Compiling the initializer itself makes both paths run the same
  program: same key, same bits. Arguments that cannot be static (arrays, e.g. a
  ``gain`` swept under ``vmap``) fall back to tracing ``fn`` directly.
  """
  sig = inspect.signature(fn)
  static = tuple(name for name in sig.parameters if name != "key")

  def unwrapped(key, **tagged):
    return fn(_sampling_key(key), **{name: t.value for name, t in tagged.items()})

  jitted = jax.jit(unwrapped, static_argnames=static)

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      bound = sig.bind(*args, **kwargs)
    except TypeError as e:
      raise TypeError(f"{fn.__name__}: {e}") from None
    dtype_given = "dtype" in bound.arguments
    passed_fans = {n: bound.arguments[n] for n in ("fan_in", "fan_out") if n in bound.arguments}
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    key = validation.check_key(arguments.pop("key"))
    _flax_call(fn.__name__, arguments, dtype_given)
    # Fans are read from the shape only when the caller gave none: Flax's (key, shape, dtype)
    # call (the dtype in fan_in's place, moved by _flax_call) or (key, shape). An explicit
    # fan_in=None (a caller that could not tell the fans, e.g. jinit.residual on an
    # ambiguous kernel) keeps the error of an initializer that needs them.
    fans_omitted = all(v is not None and arguments[n] is None for n, v in passed_fans.items())
    arguments = {name: _concrete_scalar_to_python(v) for name, v in arguments.items()}
    shape = validation.check_shape(arguments["shape"], allow_zero=True)
    empty = _is_empty(shape)
    arguments["shape"] = shape
    for name in ("fan_in", "fan_out"):
      arguments[name] = validation.check_fan(arguments[name], name, required=False,
                                             allow_zero=empty)
    fans_from_shape = (fans_omitted and arguments["fan_in"] is None
                       and arguments["fan_out"] is None)
    if fans_from_shape and len(shape) >= 2:
      arguments["fan_in"], arguments["fan_out"] = flax_fans(shape)
    arguments["dtype"] = validation.check_float_dtype(
        arguments["dtype"], allow_complex=fn.__name__ in COMPLEX_OK)
    try:
      if all(_is_static(v) for v in arguments.values()):
        return jitted(key, **{name: _Static(v) for name, v in arguments.items()})
      return fn(_sampling_key(key), **arguments)
    except ValueError as e:
      if fans_from_shape and str(e).startswith(("fan_in is required", "fan_out is required")):
        raise ValueError(f"{fn.__name__}: {e}; a shape of rank {len(shape)} has no fans "
                         f"to read. {_NO_FANS_HINT}") from None
      raise

  # On the wrapped function too: tools that unwrap (griffe, for the API reference) see it.
  wrapper.__doc__ = fn.__doc__ = (wrapper.__doc__ or "").rstrip() + _FLAX_CALL_DOC
  return wrapper


def _real_dtype(dtype) -> np.dtype:
  dtype = np.dtype(dtype)
  return np.real(np.zeros((), dtype)).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def _is_complex(dtype) -> bool:
  return bool(jnp.issubdtype(dtype, jnp.complexfloating))


def _sampling_dtype(dtype) -> np.dtype:
  """The real dtype samples are drawn in: float32, or float64 for a 64-bit ``dtype``.

  float16 and bfloat16 samples are drawn in float32 and cast: drawn directly in
  16 bits, a normal takes only ~1,000 (float16) or ~100 (bfloat16) distinct values,
  and the cast costs nothing that matters.
  """
  return np.dtype(np.float64) if _real_dtype(dtype) == np.float64 else np.dtype(np.float32)


def _complex_of(real_dtype) -> np.dtype:
  return np.dtype(np.complex128) if real_dtype == np.float64 else np.dtype(np.complex64)


@functools.cache
def _normal_z_max(dtype_name: str) -> float:
  """The largest |z| that ``jax.random.normal`` can return in a real dtype.

  jax draws u uniformly in [nextafter(-1, 0), 1) and returns sqrt(2) erfinv(u), so
  the extreme is at u = nextafter(-1, 0): about 5.42 in float32, 8.29 in float64.
  The overflow check of normal samples uses this rather than a guess (a check on
  ``std`` alone would pass ``normal(std=3e4, dtype=float16)``, which returns inf).
  """
  dt = np.dtype(dtype_name)
  with jax.ensure_compile_time_eval():
    u = np.nextafter(np.array(-1.0, dt), np.array(0.0, dt))
    z = jax.lax.mul(jnp.asarray(np.sqrt(2.0), dt), jax.lax.erf_inv(jnp.asarray(u, dt)))
    return abs(float(z))


def _cast(value, real, x: Array) -> Array:
  """``value`` rounded to the sampling dtype ``real``, then cast to ``x``'s dtype.

  A real scale for complex samples is cast to the complex dtype explicitly (no
  float32 x complex64 promotion, which jax's strict dtype promotion refuses); the
  product ``z * (s + 0j)`` is bit-identical to ``z * s``.
  """
  return jnp.asarray(value, real).astype(x.dtype)


def _std_normal(key: Array, shape, dtype, post=None) -> Array:
  """N(0, 1) samples in the sampling dtype; complex: E|z|^2 = 1 (re, im each variance 1/2).

  ``post`` (elementwise: a scale, a shift) is applied to them; with rbg keys on CPU inside
  the draw's chunk loop (no extra pass over the array), with the same numbers.
  """
  real = _sampling_dtype(dtype)
  if real == np.float32 and not _is_complex(dtype) and rbg_cpu.is_rbg(key):
    return rbg_cpu.normal(key, shape, post)  # jax.random.normal's numbers, faster on CPU
  z = jax.random.normal(key, shape, _complex_of(real) if _is_complex(dtype) else real)
  return z if post is None else post(z)


def _std_uniform(key: Array, shape, dtype, post=None) -> Array:
  """U(-1, 1) in the sampling dtype: the bound is applied after, by a multiplication.

  Sampling U(-b, b) directly computes b - (-b) = 2b, which overflows when b is
  above half the dtype's maximum. ``post`` as in :func:`_std_normal`.
  """
  real = _sampling_dtype(dtype)
  if real == np.float32 and rbg_cpu.is_rbg(key):
    return rbg_cpu.uniform(key, shape, -1.0, 1.0, post)  # jax.random.uniform's numbers
  u = jax.random.uniform(key, shape, real, -1.0, 1.0)
  return u if post is None else post(u)


def _complex_uniform(key: Array, shape, dtype) -> Array:
  """Uniform on the disk of radius sqrt(2) (E|w|^2 = 1), jax's complex "uniform"."""
  real = _sampling_dtype(dtype)
  k_r, k_theta = jax.random.split(key)
  r = jnp.sqrt(2.0 * jax.random.uniform(k_r, shape, real))
  theta = (2.0 * np.pi) * jax.random.uniform(k_theta, shape, real)
  return jax.lax.complex(r * jnp.cos(theta), r * jnp.sin(theta))


def complex_truncated_std(upper: float = 2.0) -> float:
  r"""Std of a complex standard normal (E|z|^2 = 1) with its modulus truncated to ``upper``.

  |z|^2 is Exp(1), so with :math:`t = \text{upper}^2`:

  .. math:: \sigma^2 = E[|z|^2 \mid |z|^2 \le t] = \frac{1 - (1 + t) e^{-t}}{1 - e^{-t}}

  For ``upper=2`` this is 0.96196. (``jax.nn.initializers.variance_scaling``
  divides by 0.95311 = sqrt(1 - 5 e^-4), the numerator alone, so its complex
  truncated-normal samples have 1.87% more variance than ``scale / n``; see
  docs/parity.md.)
  """
  upper = validation.check_real(upper, "upper", positive=True)
  t = upper * upper
  return math.sqrt((1.0 - (1.0 + t) * math.exp(-t)) / (1.0 - math.exp(-t)))


def _complex_truncated_normal(key: Array, shape, dtype, upper: float = 2.0) -> Array:
  """Complex normal (E|z|^2 = 1 before truncation) with modulus truncated to ``upper``.

  The modulus is drawn by inverting the CDF of |z|^2 ~ Exp(1) restricted to
  [0, upper^2]; the phase is uniform. Same sampler as jax's.
  """
  real = _sampling_dtype(dtype)
  k_r, k_theta = jax.random.split(key)
  t = (1.0 - math.exp(-upper * upper)) * jax.random.uniform(k_r, shape, real)
  r = jnp.sqrt(-jnp.log1p(-t))
  theta = (2.0 * np.pi) * jax.random.uniform(k_theta, shape, real)
  return jax.lax.complex(r * jnp.cos(theta), r * jnp.sin(theta))


# --------------------------------------------------------------------------- constants


@_compiled
def zeros(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
          dtype: DTypeLike = jnp.float32) -> Array:
  """All zeros. As weights, every unit is dead and identical (the course page's warning).

  Args:
    key: unused (the call shape is shared by every initializer).
    shape: the array's shape.
    fan_in, fan_out: accepted and validated, unused.
    dtype: a floating or complex dtype.

  Returns:
    ``jnp.zeros(shape, dtype)``.

  Examples:
    >>> import jax, jinit
    >>> jinit.zeros(jax.random.key(0), (2, 3)).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
  """
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype, allow_complex=True)
  return jnp.zeros(shape, dtype)


@_compiled
def ones(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
         dtype: DTypeLike = jnp.float32) -> Array:
  """All ones (arguments as :func:`zeros`).

  Examples:
    >>> import jax, jax.numpy as jnp, jinit
    >>> w = jinit.ones(jax.random.key(0), (2, 3), dtype=jnp.bfloat16)
    >>> w.dtype, float(w.sum())
    (dtype(bfloat16), 6.0)
  """
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype, allow_complex=True)
  return jnp.ones(shape, dtype)


@_compiled
def constant(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None,
             *, value: ArrayLike = 0.0, dtype: DTypeLike = jnp.float32) -> Array:
  """Every entry equal to ``value``.

  Constant weights make all units of a layer clones of each other in value and
  gradient, so they stay clones under gradient descent (the symmetry problem).

  Args:
    key: unused.
    shape: the array's shape.
    fan_in, fan_out: accepted and validated, unused.
    value: a finite real number that fits ``dtype``.
    dtype: a floating or complex dtype.

  Returns:
    ``jnp.full(shape, value, dtype)``.

  Examples:
    >>> import jax, jinit
    >>> jinit.constant(jax.random.key(0), (2, 2), value=0.5).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
  """
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype, allow_complex=True)
  value = validation.check_real(value, "value")
  validation.check_fits(value, "value", dtype)
  return jnp.full(shape, value, dtype)


# --------------------------------------------------------------------------- simple laws


@_compiled
def normal(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
           std: ArrayLike = 1.0, mean: ArrayLike = 0.0, dtype: DTypeLike = jnp.float32) -> Array:
  r"""N(mean, std^2), independent of the fans (``torch.nn.init.normal_``).

  Drawn in float32 (float64 for a 64-bit dtype) and cast. For a complex dtype the
  samples are ``mean + std * z`` with z complex normal, E|z|^2 = 1 (real and
  imaginary parts each of variance 1/2), as ``jax.nn.initializers.normal``.

  Args:
    key: a ``jax.random.key``.
    shape: the array's shape; a zero-size shape gives an empty array.
    fan_in, fan_out: accepted and validated, unused.
    std: the standard deviation, > 0.
    mean: the mean (real).
    dtype: a floating or complex dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  Raises:
    ValueError: if the largest sample the sampler can return,
      :math:`|\text{mean}| + \text{std}\cdot z_{max}` (z_max = 5.42 in float32),
      overflows ``dtype``.

  Examples:
    >>> import jax, jinit
    >>> w = jinit.normal(jax.random.key(0), (256, 128), std=0.02)
    >>> round(float(w.mean()), 3), round(float(w.std()), 3)
    (-0.0, 0.02)
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype, allow_complex=True)
  std = validation.check_real(std, "std", positive=True)
  mean = validation.check_real(mean, "mean")
  validation.check_fits(std, "std", dtype)
  validation.check_fits(mean, "mean", dtype)
  validation.check_no_underflow(std, "std", dtype)
  if not isinstance(std, jax.core.Tracer) and not isinstance(mean, jax.core.Tracer):
    z_max = _normal_z_max(_sampling_dtype(dtype).name)
    validation.check_range(abs(mean) + std * z_max,
                           f"the largest sample |mean| + std * {z_max:.4g}", dtype)
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  real = _sampling_dtype(dtype)
  return _std_normal(key, shape, dtype,
                     lambda z: z * _cast(std, real, z) + _cast(mean, real, z)).astype(dtype)


@_compiled
def uniform(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
            a: ArrayLike = 1.0, dtype: DTypeLike = jnp.float32) -> Array:
  """U(-a, a): symmetric about zero, unlike ``jax.nn.initializers.uniform`` (U[0, scale)).

  Variance a^2 / 3. The course page's "old practice" example is ``a=0.5``.
  Drawn as ``a * U(-1, 1)`` in float32 (float64 for float64) and cast, so any
  ``a`` up to the dtype's largest value gives finite samples.

  Args:
    key: a ``jax.random.key``.
    shape: the array's shape; a zero-size shape gives an empty array.
    fan_in, fan_out: accepted and validated, unused.
    a: the bound, > 0, at most the dtype's largest value.
    dtype: a floating dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  Examples:
    >>> import jax, jinit
    >>> w = jinit.uniform(jax.random.key(0), (256, 128), a=0.5)
    >>> round(float(w.min()), 2), round(float(w.max()), 2)
    (-0.5, 0.5)
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  a = validation.check_real(a, "a", positive=True)
  validation.check_fits(a, "a", dtype)
  validation.check_no_underflow(a, "a", dtype)
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  real = _sampling_dtype(dtype)
  return _std_uniform(key, shape, dtype, lambda u: u * jnp.asarray(a, real)).astype(dtype)


def _std_normal_cdf(x: float) -> float:
  return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def truncated_std(lower: float = -2.0, upper: float = 2.0) -> float:
  r"""Std of a standard normal truncated to [lower, upper].

  .. math::
     \sigma^2 = 1 + \frac{a\phi(a) - b\phi(b)}{Z} - \left(\frac{\phi(a) - \phi(b)}{Z}\right)^2,
     \quad Z = \Phi(b) - \Phi(a)

  For [-2, 2] this is 0.87962566103423978, the constant in
  ``jax.nn.initializers.variance_scaling``.

  Args:
    lower, upper: the truncation bounds, in units of the untruncated std.

  Returns:
    The std as a Python float.
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

  Drawn in float32 (float64 for float64) and cast: in float16 10,000 samples take
  over 3,000 distinct values (drawn directly in float16, about 1,000).

  Args:
    key: a ``jax.random.key``.
    shape: the array's shape; a zero-size shape gives an empty array.
    fan_in, fan_out: accepted and validated, unused.
    std: see above, > 0.
    lower, upper: truncation bounds in units of ``s``, lower < upper.
    mean: the mean.
    corrected: whether ``std`` is the std after truncation.
    dtype: a floating dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  Examples:
    >>> import jax, jinit
    >>> w = jinit.truncated_normal(jax.random.key(0), (256, 128), std=0.02)
    >>> bool(abs(w).max() <= 2 * 0.02)
    True
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
  validation.check_no_underflow(scale, "std", dtype)
  if not isinstance(scale, jax.core.Tracer) and not isinstance(mean, jax.core.Tracer):
    validation.check_range(abs(mean) + scale * max(abs(lower), abs(upper)),
                           "the largest sample |mean| + s * max(|lower|, |upper|)", dtype)
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  real = _sampling_dtype(dtype)
  z = jax.random.truncated_normal(key, lower, upper, shape, real)
  return (z * jnp.asarray(scale, real) + jnp.asarray(mean, real)).astype(dtype)


# --------------------------------------------------------------------------- variance scaling


def _fan_for_mode(mode: str, fan_in, fan_out) -> float:
  if mode == "fan_in":
    return fan_in
  if mode == "fan_out":
    return fan_out
  if mode == "fan_geo_avg":
    return math.sqrt(fan_in) * math.sqrt(fan_out)
  return (fan_in + fan_out) / 2.0


# The largest |sample| of each unit-variance law, in units of its std (the complex
# normal's bound is on the modulus, conservative for the parts).
def _unit_law_max(distribution: str, dtype) -> float:
  if distribution == "uniform":
    return math.sqrt(2.0) if _is_complex(dtype) else math.sqrt(3.0)
  if distribution == "truncated_normal":
    return 2.0 / (complex_truncated_std(2.0) if _is_complex(dtype) else truncated_std(-2.0, 2.0))
  return _normal_z_max(_sampling_dtype(dtype).name)


@_compiled
def variance_scaling(key: Array, shape: Shape, fan_in: int | None = None,
                     fan_out: int | None = None, *, scale: ArrayLike = 1.0,
                     mode: str = "fan_in", distribution: str = "truncated_normal",
                     dtype: DTypeLike = jnp.float32) -> Array:
  r"""Samples with variance ``scale / n``, n given by ``mode``.

  .. math:: \mathrm{Var}[W] = \frac{\text{scale}}{n}, \quad
     n \in \{\text{fan\_in}, \text{fan\_out}, \tfrac{\text{fan\_in} + \text{fan\_out}}{2},
     \sqrt{\text{fan\_in}\cdot\text{fan\_out}}\}

  ``distribution``: ``"normal"`` is N(0, scale/n); ``"uniform"`` is U(-b, b) with
  b = sqrt(3 scale / n); ``"truncated_normal"`` is a normal truncated at ±2 of its
  std, rescaled so that the variance after truncation is scale/n. Same semantics
  as ``jax.nn.initializers.variance_scaling``, complex dtypes included: there
  E|W|^2 = scale/n, "normal" is complex normal, "uniform" is uniform on a disk of
  radius sqrt(2 scale / n), "truncated_normal" is complex normal with its modulus
  truncated at 2 (rescaled by :func:`complex_truncated_std`, which makes the
  variance exactly scale/n; jax's constant leaves it 1.87% high).

  Samples are drawn in float32 (float64 for 64-bit dtypes) and cast to ``dtype``.

  Args:
    key: a ``jax.random.key``.
    shape: the array's shape; a zero-size shape gives an empty array (its fans may be 0).
    fan_in, fan_out: the fans ``mode`` needs (see :func:`jinit.compute_fans`).
    scale: the variance times n, > 0.
    mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` or ``"fan_geo_avg"``.
    distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
    dtype: a floating or complex dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  Raises:
    ValueError: if the largest sample the law can return overflows ``dtype``, or
      the std underflows to 0 in it.

  Examples:
    >>> import jax, jinit
    >>> w = jinit.variance_scaling(jax.random.key(0), (256, 128), fan_in=256, fan_out=128,
    ...                            scale=2.0, distribution='normal')
    >>> w.shape, w.dtype, round(float(w.std()), 3)  # sqrt(2 / 256) = 0.088
    ((256, 128), dtype('float32'), 0.089)
  """
  validation.check_choice(mode, "mode", MODES)
  validation.check_choice(distribution, "distribution", DISTRIBUTIONS)
  shape, fan_in, fan_out, dtype = _prepare(
      shape, fan_in, fan_out, dtype, need_in=mode != "fan_out", need_out=mode != "fan_in",
      allow_complex=True)
  scale = validation.check_real(scale, "scale", positive=True)
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  n = _fan_for_mode(mode, fan_in, fan_out)
  # A concrete scale gives a Python-float std, so the constant is the same
  # whether this runs under jit or not (same bits); a traced scale stays traced.
  std = (jnp.sqrt(scale / n) if isinstance(scale, jax.Array)
         else math.sqrt(scale / n))  # pyright: ignore[reportArgumentType]  (a real scalar)
  if not isinstance(std, jax.Array):
    validation.check_range(std * _unit_law_max(distribution, dtype),
                           f"the largest {distribution} sample for std sqrt(scale / n) = "
                           f"{std:.6g}", dtype)
    validation.check_no_underflow(std, "sqrt(scale / n)", dtype)
  real = _sampling_dtype(dtype)
  complex_ = _is_complex(dtype)
  if distribution == "normal":
    return _std_normal(key, shape, dtype, lambda z: z * _cast(std, real, z)).astype(dtype)
  if distribution == "uniform":
    if complex_:
      w = _complex_uniform(key, shape, dtype)
      return (w * _cast(std, real, w)).astype(dtype)
    bound = math.sqrt(3.0) * std
    return _std_uniform(key, shape, dtype, lambda u: u * jnp.asarray(bound, real)).astype(dtype)
  if complex_:
    s = jnp.asarray(std, real) / jnp.asarray(complex_truncated_std(2.0), real)
    w = _complex_truncated_normal(key, shape, dtype)
    return (w * _cast(s, real, w)).astype(dtype)
  return truncated_normal(key, shape, std=std, corrected=True, dtype=dtype)


@_compiled
def xavier_uniform(key: Array, shape: Shape, fan_in: int | None = None,
                   fan_out: int | None = None, *, gain: ArrayLike = 1.0,
                   dtype: DTypeLike = jnp.float32) -> Array:
  r"""Glorot/Xavier uniform: U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)).

  Variance 2 gain^2 / (fan_in + fan_out). Same as ``torch.nn.init.xavier_uniform_``.
  Arguments as :func:`variance_scaling` (``gain`` > 0 replaces ``scale = gain^2``).

  References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html

  Examples:
    >>> import jax, jinit
    >>> w = jinit.xavier_uniform(jax.random.key(0), (256, 128), fan_in=256, fan_out=128, gain=2.0)
    >>> round(float(w.std()), 3), round(float(abs(w).max()), 3)  # std 2 sqrt(2 / 384) = 0.144
    (0.145, 0.25)
  """
  gain = validation.check_real(gain, "gain", positive=True)
  return variance_scaling(key, shape, fan_in, fan_out, scale=gain * gain, mode="fan_avg",
                          distribution="uniform", dtype=dtype)


@_compiled
def xavier_normal(key: Array, shape: Shape, fan_in: int | None = None,
                  fan_out: int | None = None, *, gain: ArrayLike = 1.0,
                  dtype: DTypeLike = jnp.float32) -> Array:
  r"""Glorot/Xavier normal: N(0, σ²), σ = gain sqrt(2 / (fan_in + fan_out)).

  Untruncated, as ``torch.nn.init.xavier_normal_`` (``jinit.glorot_normal`` is jax's
  truncated version). Arguments as :func:`xavier_uniform`.

  References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html

  Examples:
    >>> import jax, jinit
    >>> w = jinit.xavier_normal(jax.random.key(0), (256, 128), fan_in=256, fan_out=128)
    >>> w.shape, w.dtype, round(float(w.std()), 3)  # sqrt(2 / (256 + 128)) = 0.072
    ((256, 128), dtype('float32'), 0.072)
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

  Examples:
    >>> import jax, jinit
    >>> w = jinit.kaiming_uniform(jax.random.key(0), (256, 128), fan_in=256, nonlinearity='relu')
    >>> round(float(abs(w).max()), 3)  # bound sqrt(6 / 256) = 0.153
    0.153
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

  Examples:
    >>> import jax, jinit
    >>> w = jinit.kaiming_normal(jax.random.key(0), (128, 512), fan_out=512, mode='fan_out')
    >>> w.dtype, round(float(w.std()), 3)  # leaky_relu gain: sqrt(2 / 512) = 0.0625
    (dtype('float32'), 0.063)
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

  Examples:
    >>> import jax, jinit
    >>> jinit.lecun_uniform(jax.random.key(0), (3, 3, 16, 32), fan_in=144).shape
    (3, 3, 16, 32)
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_in",
                          distribution="uniform", dtype=dtype)


@_compiled
def lecun_normal(key: Array, shape: Shape, fan_in: int | None = None,
                 fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """LeCun normal: truncated normal with variance 1/fan_in (after truncation).

  As ``jax.nn.initializers.lecun_normal`` (Flax's default kernel init).
  References: LeCun et al. 1998; Klambauer et al. 2017, https://arxiv.org/abs/1706.02515

  Examples:
    >>> import jax, jinit
    >>> w = jinit.lecun_normal(jax.random.key(0), (256, 128), fan_in=256)
    >>> w.shape, w.dtype, round(float(w.std()), 3)  # sqrt(1 / 256) = 0.0625
    ((256, 128), dtype('float32'), 0.063)
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_in",
                          distribution="truncated_normal", dtype=dtype)


@_compiled
def glorot_uniform(key: Array, shape: Shape, fan_in: int | None = None,
                   fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``glorot_uniform``: ``xavier_uniform`` with gain 1.

  Examples:
    >>> import jax, jinit
    >>> w = jinit.glorot_uniform(jax.random.key(0), (256, 128), fan_in=256, fan_out=128)
    >>> bool(abs(w).max() <= (6 / 384) ** 0.5)
    True
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_avg",
                          distribution="uniform", dtype=dtype)


@_compiled
def glorot_normal(key: Array, shape: Shape, fan_in: int | None = None,
                  fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``glorot_normal``: truncated normal, variance 2/(fan_in + fan_out).

  Examples:
    >>> import jax, jax.numpy as jnp, jinit
    >>> jinit.glorot_normal(jax.random.key(0), (64, 32), 64, 32, dtype=jnp.bfloat16).dtype
    dtype(bfloat16)
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=1.0, mode="fan_avg",
                          distribution="truncated_normal", dtype=dtype)


@_compiled
def he_uniform(key: Array, shape: Shape, fan_in: int | None = None,
               fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``he_uniform``: U(-b, b), b = sqrt(6/fan_in) (= ``kaiming_uniform`` defaults).

  Examples:
    >>> import jax, jinit
    >>> round(float(jinit.he_uniform(jax.random.key(0), (256, 128), 256).std()), 3)  # sqrt(2/256)
    0.089
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=2.0, mode="fan_in",
                          distribution="uniform", dtype=dtype)


@_compiled
def he_normal(key: Array, shape: Shape, fan_in: int | None = None,
              fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  """jax's ``he_normal``: truncated normal, variance 2/fan_in (after truncation).

  Examples:
    >>> import jax, jinit
    >>> w = jinit.he_normal(jax.random.key(0), (256, 128), fan_in=256)
    >>> w.shape, w.dtype, round(float(w.std()), 3)  # sqrt(2 / 256) = 0.088
    ((256, 128), dtype('float32'), 0.089)
  """
  return variance_scaling(key, shape, fan_in, fan_out, scale=2.0, mode="fan_in",
                          distribution="truncated_normal", dtype=dtype)


@_compiled
def torch_linear_default(key: Array, shape: Shape, fan_in: int | None = None,
                         fan_out: int | None = None, *, dtype: DTypeLike = jnp.float32) -> Array:
  r"""PyTorch's default for ``nn.Linear``/``nn.Conv*`` weights AND biases: U(±1/sqrt(fan_in)).

  For the weight PyTorch calls ``kaiming_uniform_(w, a=sqrt(5))``: gain
  sqrt(2/(1+5)) = sqrt(1/3), bound sqrt(3) * sqrt(1/3) / sqrt(fan_in) = 1/sqrt(fan_in).
  For the bias it samples U(±1/sqrt(fan_in)) with the layer's (weight's) fan_in, so a
  bias init needs the kernel's fan_in (see ``jinit.linen.Dense``).
  Glorot & Bengio 2010 call this the "standard" initialization.

  Args:
    key: a ``jax.random.key``.
    shape: the array's shape; a zero-size shape gives an empty array.
    fan_in: the layer's fan_in (required; > 0 unless the shape is zero-size).
    fan_out: accepted and validated, unused.
    dtype: a floating dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  Examples:
    >>> import jax, jinit
    >>> w = jinit.torch_linear_default(jax.random.key(0), (256, 128), fan_in=256)
    >>> bool(abs(w).max() <= 1 / 16), round(float(w.std()), 3)  # U(-1/16, 1/16): std 0.036
    (True, 0.036)
  """
  shape, fan_in, _, dtype = _prepare(shape, fan_in, fan_out, dtype, need_in=True)
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  bound = 1.0 / math.sqrt(fan_in)  # pyright: ignore[reportArgumentType]  (need_in: an int)
  validation.check_no_underflow(bound, "1 / sqrt(fan_in)", dtype)
  real = _sampling_dtype(dtype)
  return _std_uniform(key, shape, dtype, lambda u: u * jnp.asarray(bound, real)).astype(dtype)


# --------------------------------------------------------------------------- structured


# Panel width of the blocked Householder product: 128 columns per matmul panel (a
# multiple of the CPU/GPU matmul tiles; 128 vs 256 within noise at 2048^2 on CPU),
# wider for more than 32 panels so that the unrolled program (and its compile) stays
# at <= 32 panels.
_HOUSEHOLDER_BLOCK = 128
_MAX_PANELS = 32


def _block_size(n: int) -> int:
  return max(_HOUSEHOLDER_BLOCK, -(-n // (_MAX_PANELS * 128)) * 128)


def _householder_reflectors(a: Array) -> tuple[Array, Array, Array]:
  r"""Householder reflectors drawn from a real Gaussian ``a`` (m, n), m >= n.

  Reflector k is built from ``x = a[k:, k]`` the way LAPACK's ``larfg`` would
  (:math:`H_k x = \beta_k e_1`, :math:`\beta_k = -\mathrm{sign}(x_1)\|x\|`, no
  cancellation). Returns ``(v, tau, d)``: ``v`` (m, n) holds the vectors (unit
  diagonal, zero above it), ``tau`` (n,) their scales (:math:`H_k = I - \tau_k
  v_k v_k^T`) and ``d = sign(beta)`` (n,), the sign fix. Only the lower triangle
  of ``a`` is read. Every op is elementwise or a column reduction, so a row-sharded
  ``a`` gives row-sharded ``v``.
  """
  m, n = a.shape
  row = jax.lax.broadcasted_iota(jnp.int32, (m, n), 0)
  col = jax.lax.broadcasted_iota(jnp.int32, (m, n), 1)
  norm = jnp.sqrt(jnp.sum(jnp.where(row >= col, a * a, 0), axis=0))
  alpha = jnp.diagonal(a)
  sign = jnp.where(alpha >= 0, 1, -1).astype(a.dtype)
  beta = -sign * norm
  ok = norm > 0  # a zero column (probability 0) gets H = I
  tau = jnp.where(ok, (beta - alpha) / jnp.where(ok, beta, 1), 0)
  scale = 1 / jnp.where(ok, alpha - beta, 1)
  v = jnp.where(row > col, a * scale[None, :], (row == col).astype(a.dtype))
  return v, tau, -sign


def _householder_block(v_panel: Array, tau_panel: Array) -> Array:
  """T^{-1} of a panel of reflectors, with H_1 ... H_b = I - V T V^T.

  The UT transform (Joffrain et al. 2006, https://doi.org/10.1145/1141885.1141886):
  T^{-1} = striu(V^T V) + diag(1/tau).
  """
  gram = v_panel.T @ v_panel
  return jnp.triu(gram, 1) + jnp.diag(1 / tau_panel)


def _householder_q(v: Array, tau: Array, d: Array) -> Array:
  """Q = H_1 ... H_n [I; 0] diag(d), blocked: matmuls only (no LAPACK call).

  Accumulated backward one panel of ``_HOUSEHOLDER_BLOCK`` reflectors at a time, as
  LAPACK's ``orgqr``: panel j only changes the trailing block ``Q[c0:, c0:]``, so a
  square matrix costs (4/3) n^3 flops, half of QR-then-form-Q.
  """
  m, n = v.shape
  b = _block_size(n)
  q = jnp.eye(m, n, dtype=v.dtype)
  for c0 in reversed(range(0, n, b)):
    c1 = min(c0 + b, n)
    panel = v[c0:, c0:c1]
    t_inv = _householder_block(panel, tau[c0:c1])
    trailing = q[c0:, c0:]
    y = jax.lax.linalg.triangular_solve(t_inv, panel.T @ trailing, left_side=True, lower=False)
    q = q.at[c0:, c0:].set(trailing - panel @ y)
  return q * d[None, :]


def _householder_q_sharded(v: Array, tau: Array, d: Array, rows_sharding) -> Array:
  """``_householder_q`` with the rows of ``v`` and Q split over devices (no full copy).

  Each panel's update ``Q -= V_j T_j (V_j^T Q)`` is applied to all of Q (the zeros
  of V_j leave the untouched block unchanged, bit for bit): row-local matmuls and
  one all-reduce of the (block, n) product V_j^T Q, so every device holds its rows
  of Q and V and a few (block, n) and (block, block) matrices. 4 m n^2 flops
  (3x the unsharded trailing-block version for a square matrix), split N ways.
  """
  m, n = v.shape
  b = _block_size(n)
  constrain = lambda x: jax.lax.with_sharding_constraint(x, rows_sharding)
  v = constrain(v)

  def apply(q, panel, tau_panel):
    t_inv = _householder_block(panel, tau_panel)
    y = jax.lax.linalg.triangular_solve(t_inv, panel.T @ q, left_side=True, lower=False)
    return constrain(q - panel @ y)

  q = constrain(jnp.eye(m, n, dtype=v.dtype))
  full = n // b
  if n % b:  # the last, narrower panel first (backward accumulation)
    q = apply(q, v[:, full * b:], tau[full * b:])

  def body(i, q):
    c0 = (full - 1 - i) * b
    panel = jax.lax.dynamic_slice_in_dim(v, c0, b, axis=1)
    return apply(q, panel, jax.lax.dynamic_slice_in_dim(tau, c0, b))

  if full:
    q = jax.lax.fori_loop(0, full, body, q)
  return constrain(q * d[None, :])


def _orthogonal_matrix(key: Array, n_rows: int, n_cols: int, compute_dtype,
                       out_sharding=None, out_split: str | None = None) -> Array:
  """An (n_rows, n_cols) matrix with orthonormal columns (rows if n_rows < n_cols).

  Real dtypes: Stewart's algorithm (1980, https://doi.org/10.1137/0717034): the
  product of Householder reflections built from independent Gaussian vectors of
  lengths m, m-1, ..., m-n+1 (the lower triangle of one Gaussian draw), times the
  sign fix. These are exactly the reflectors Householder QR of a Gaussian matrix
  would compute (each column it meets is a fresh Gaussian vector, by rotation
  invariance), so Q is the sign-corrected QR factor of a Gaussian matrix: Haar
  distributed (Mezzadri 2007, https://arxiv.org/abs/math-ph/0609050), without
  the QR: half the flops, all in matmuls (on CPU, XLA's QR and Householder product
  are LAPACK calls several times slower than PyTorch's ``orthogonal_``).

  ``compute_dtype`` may be complex: then the columns are orthonormal in the
  Hermitian inner product (a unitary matrix when square), by QR with phase fix.

  ``out_sharding`` (a ``NamedSharding``, real dtypes): the Gaussian, the
  reflectors and Q are split by rows over all the mesh's devices
  (:func:`_householder_q_sharded`) when the device count divides the rows; the
  values equal the unsharded ones up to float rounding (the same reflectors).
  ``out_split`` is ``"rows"`` or ``"cols"`` when the result is split along that
  dim only: Q then moves there by one all-to-all (XLA's partitioner otherwise
  gathers the whole matrix to change the split dim).
  """
  transpose = n_rows < n_cols
  rows, cols = (n_cols, n_rows) if transpose else (n_rows, n_cols)
  a = jax.random.normal(key, (rows, cols), compute_dtype)
  if not jnp.issubdtype(compute_dtype, jnp.complexfloating):
    mesh = getattr(out_sharding, "mesh", None)
    if mesh is not None and mesh.size > 1 and rows % mesh.size == 0:
      assert out_sharding is not None  # its mesh is not None
      used = [a for e in out_sharding.spec if e is not None
              for a in ((e,) if isinstance(e, str) else tuple(e))]
      order = tuple(dict.fromkeys(used + list(mesh.axis_names)))  # the output's axes first
      P = jax.sharding.PartitionSpec
      rows_sharding = jax.sharding.NamedSharding(mesh, P(order, None))
      a = jax.lax.with_sharding_constraint(a, rows_sharding)
      q = _householder_q_sharded(*_householder_reflectors(a), rows_sharding)
      # The output split along the other dim of q (cols of q, or rows of q.T): all-to-all.
      if out_split == ("rows" if transpose else "cols") and cols % mesh.size == 0:
        q = jax.lax.with_sharding_constraint(q, jax.sharding.NamedSharding(mesh, P(None, order)))
    else:
      q = _householder_q(*_householder_reflectors(a))
    return q.T if transpose else q
  q, r = jnp.linalg.qr(a)
  # Phase correction (Mezzadri 2007) makes Q Haar-distributed: scale column j by the
  # phase of r_jj; never by 0. Explicit [None, :] (no implicit rank promotion).
  d = jnp.diagonal(r)
  if jnp.issubdtype(compute_dtype, jnp.complexfloating):
    modulus = jnp.abs(d)
    safe = jnp.where(modulus == 0, jnp.ones_like(modulus), modulus).astype(d.dtype)
    phase = jnp.where(modulus == 0, jnp.ones_like(d), d / safe)
  else:
    phase = jnp.where(d < 0, -1.0, 1.0).astype(compute_dtype)
  q = q * phase[None, :]
  return q.T if transpose else q


@_compiled
def orthogonal(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None,
               *, gain: ArrayLike = 1.0, column_axis: int = -1,
               dtype: DTypeLike = jnp.float32, out_sharding: Any = None) -> Array:
  r"""(Semi-)orthogonal matrix times ``gain``: Haar-distributed, from Householder reflections.

  The shape is viewed as a matrix of ``shape[column_axis]`` columns and
  ``prod(shape) / shape[column_axis]`` rows. With rows >= cols,
  :math:`W^T W = \text{gain}^2 I`; otherwise :math:`W W^T = \text{gain}^2 I`.
  For Flax kernels ``(..., in, out)`` the default ``column_axis=-1`` is right;
  for PyTorch's (out, in) layout use ``column_axis=0``. Computed in float32
  (float64 if asked for) and cast to ``dtype``. A complex dtype gives a
  (semi-)unitary matrix (:math:`W^H W = \text{gain}^2 I`), as
  ``jax.random.orthogonal``.

  Algorithm (real dtypes): Stewart's product of Householder reflections drawn
  from the lower triangle of a Gaussian matrix, times the sign fix: the same law
  as sign-corrected QR of a Gaussian matrix (Haar), in matmuls only, with half
  QR's flops. Values differ from QR-based versions (jax, PyTorch, earlier jinit)
  for the same key; the law does not (tests/test_orthogonal.py). With
  ``out_sharding`` the draw runs split by rows over the sharding's devices: no
  device holds the whole Gaussian or the whole matrix (docs/scaling.md);
  ``jinit.sharding.sharded_init`` passes it.

  Args:
    key: a ``jax.random.key``.
    shape: rank >= 2; a zero-size shape gives an empty array (as jax).
    fan_in, fan_out: accepted and validated, unused.
    gain: the scale, > 0.
    column_axis: the axis whose entries are the columns.
    dtype: a floating or complex dtype.
    out_sharding: ``None``, or the ``jax.sharding.NamedSharding`` of the result
      (used under ``jax.jit``; complex dtypes, one device, or rows not divisible
      by the device count compute replicated, then shard).

  Returns:
    An array of ``shape`` and ``dtype``.

  References: Saxe et al. 2014, https://arxiv.org/abs/1312.6120

  Examples:
    >>> import jax, jinit
    >>> import jax.numpy as jnp
    >>> w = jinit.orthogonal(jax.random.key(0), (128, 64))
    >>> w.shape, bool(jnp.allclose(w.T @ w, jnp.eye(64), atol=1e-5))
    ((128, 64), True)
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype, min_rank=2, allow_complex=True)
  column_axis = validation.check_int(column_axis, "column_axis", minimum=None)
  if not -len(shape) <= column_axis < len(shape):
    raise ValueError(f"column_axis must be an int in [-{len(shape)}, {len(shape)}), "
                     f"got {column_axis!r}")
  gain = validation.check_real(gain, "gain", positive=True)
  validation.check_fits(gain, "gain", dtype)
  if out_sharding is not None and not isinstance(out_sharding, jax.sharding.NamedSharding):
    raise TypeError(f"out_sharding must be None or a jax.sharding.NamedSharding, got "
                    f"{out_sharding!r}")
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  n_cols = shape[column_axis]
  n_rows = math.prod(shape) // n_cols
  real = _sampling_dtype(dtype)
  compute = _complex_of(real) if _is_complex(dtype) else real
  out_split = None
  if out_sharding is not None and len(shape) == 2:
    spec = tuple(out_sharding.spec) + (None,) * (2 - len(out_sharding.spec))
    col = column_axis % 2
    if spec[col] is not None and spec[1 - col] is None:
      out_split = "cols"
    elif spec[1 - col] is not None and spec[col] is None:
      out_split = "rows"
  q = _orthogonal_matrix(key, n_rows, n_cols, compute, out_sharding, out_split)
  other = tuple(d for i, d in enumerate(shape) if i != column_axis % len(shape))
  q = jnp.moveaxis(q.reshape(*other, n_cols), -1, column_axis)
  out = (q * _cast(gain, real, q)).astype(dtype)
  if out_sharding is not None:
    out = jax.lax.with_sharding_constraint(out, out_sharding)
  return out


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

  Args:
    key: a ``jax.random.key``.
    shape: rank 3 to 5; a zero-size shape gives an empty array.
    fan_in, fan_out: accepted and validated, unused.
    gain: the scale of the orthogonal matrix, > 0.
    dtype: a floating or complex dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  References: Xiao et al. 2018, https://arxiv.org/abs/1806.05393

  Examples:
    >>> import jax, jinit
    >>> w = jinit.delta_orthogonal(jax.random.key(0), (3, 3, 16, 16))
    >>> w.shape, float(abs(w[0, 0]).max())  # zero off the window's center
    ((3, 3, 16, 16), 0.0)
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype, allow_complex=True)
  _check_conv_shape(shape, "delta_orthogonal")
  n_in, n_out = shape[-2:]
  if n_in > n_out:
    raise ValueError(f"delta_orthogonal needs in <= out channels, got shape {shape!r}")
  gain = validation.check_real(gain, "gain", positive=True)
  validation.check_fits(gain, "gain", dtype)
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  ortho = orthogonal(key, (n_in, n_out), gain=gain, dtype=dtype)
  center = tuple((k - 1) // 2 for k in shape[:-2])
  return jnp.zeros(shape, dtype).at[center].set(ortho)


@_compiled
def eye(key: Array, shape: Shape, fan_in: int | None = None, fan_out: int | None = None, *,
        dtype: DTypeLike = jnp.float32) -> Array:
  """Identity matrix (ones on the main diagonal) for a 2-D shape, as ``torch.nn.init.eye_``.

  A Dense layer with this kernel passes its first min(in, out) inputs through.

  Args:
    key: unused.
    shape: a 2-D shape (zero-size allowed).
    fan_in, fan_out: accepted and validated, unused.
    dtype: a floating dtype.

  Returns:
    ``jnp.eye(*shape, dtype=dtype)``.

  Examples:
    >>> import jax, jinit
    >>> jinit.eye(jax.random.key(0), (2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
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

  Args:
    key: unused.
    shape: rank 3 to 5; a zero-size shape gives an empty array.
    fan_in, fan_out: accepted and validated, unused.
    groups: the conv's feature groups; must divide the out channels.
    dtype: a floating dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  Examples:
    >>> import jax, jinit
    >>> w = jinit.dirac(jax.random.key(0), (3, 3, 4, 4))
    >>> w[1, 1].tolist() == jax.numpy.eye(4).tolist(), float(w.sum())
    (True, 4.0)
  """
  del key
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  _check_conv_shape(shape, "dirac")
  groups = validation.check_int(groups, "groups")
  n_in, n_out = shape[-2:]
  if n_out % groups:
    raise ValueError(f"groups={groups} must divide the out channels of shape {shape!r}")
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
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

  Args:
    key: a ``jax.random.key``.
    shape: a 2-D shape ``(in, out)``; a zero-size shape gives an empty array.
    fan_in, fan_out: accepted and validated, unused.
    sparsity: the fraction of each column to zero, in [0, 1). It must leave at
      least one nonzero row, ``ceil(sparsity * in) < in``: an all-zero weight is
      never what is wanted, so it raises rather than returning one.
    std: the std of the nonzero entries, > 0.
    dtype: a floating dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  References: Martens 2010, "Deep learning via Hessian-free optimization".

  Examples:
    >>> import jax, jinit
    >>> w = jinit.sparse(jax.random.key(0), (100, 20), sparsity=0.1)
    >>> int((w == 0).sum(axis=0).min())  # 10 zeros per column
    10
  """
  shape, _, _, dtype = _prepare(shape, fan_in, fan_out, dtype)
  if len(shape) != 2:
    raise ValueError(f"sparse needs a 2-D shape, got shape {shape!r}")
  sparsity = validation.check_real(sparsity, "sparsity")
  if not 0.0 <= sparsity < 1.0:
    raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
  std = validation.check_real(std, "std", positive=True)
  validation.check_fits(std, "std", dtype)
  validation.check_no_underflow(std, "std", dtype)
  if not isinstance(std, jax.core.Tracer):
    z_max = _normal_z_max(_sampling_dtype(dtype).name)
    validation.check_range(std * z_max, f"the largest sample std * {z_max:.4g}", dtype)
  rows, _ = shape
  num_zeros = math.ceil(sparsity * rows)
  if rows and num_zeros >= rows:
    raise ValueError(
        f"sparsity={sparsity!r} zeroes ceil({sparsity!r} * {rows}) = {num_zeros} of the "
        f"{rows} rows of every column, so the weight would be all zeros; with {rows} rows "
        f"use sparsity <= {(rows - 1) / rows:.6g}")
  if _is_empty(shape):
    return jnp.zeros(shape, dtype)
  k_values, k_mask = jax.random.split(key)
  real = _sampling_dtype(dtype)
  values = (jax.random.normal(k_values, shape, real) * jnp.asarray(std, real)).astype(dtype)
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
