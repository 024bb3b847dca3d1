"""Activations for the mean-field calculator: closed-form Gaussian kernels, kinks and jumps.

An :class:`Activation` wraps an elementwise function with what the calculator needs to
get its Gaussian expectations right:

* ``kind``: a closed form of ``E[phi(u) phi(v)]`` and ``E[phi'(u) phi'(v)]`` for
  ``(u, v) ~ N(0, [[q1, k], [k, q2]])`` (``"two_slope"``: relu, leaky relu, abs,
  identity, the arc-cosine kernel of Cho & Saul 2009; ``"erf"``, ``"sign"``, ``"step"``,
  ``"sin"``, ``"cos"``: Williams 1998 and elementary integrals). With a closed form no
  quadrature runs.
* ``kinks``: points where ``phi'`` jumps (hard_tanh at +-1, relu6 at 0 and 6). The
  quadrature splits its panels there, so ``phi''``'s delta terms are integrated exactly.
* ``jumps``: points where ``phi`` itself jumps (sign, step): ``phi'`` has a delta there,
  so chi1 = E[phi'^2] is infinite.

:func:`as_activation` recognises jax's own activations (``jax.nn.relu``, ``jnp.tanh``, ...)
and, for any other callable, finds kinks and jumps on a fine grid of [-12, 12].

References:
  Cho & Saul 2009, "Kernel methods for deep learning" (arc-cosine kernels).
  Williams 1998, "Computation with infinite neural networks" (erf kernel).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("two_slope", "erf", "sign", "step", "sin", "cos")
# Kink / jump detection grid: [-DETECT_RANGE, DETECT_RANGE] in steps of DETECT_STEP.
DETECT_RANGE = 12.0
DETECT_STEP = 1e-3


@dataclasses.dataclass(frozen=True)
class Activation:
  """An elementwise activation with what the mean-field calculator knows about it.

  Build one directly for your own function (``Activation(fn, kinks=(0.0, 1.0))``), or use
  the constructors with closed forms: :meth:`relu`, :meth:`leaky_relu`, :meth:`two_slope`,
  :meth:`abs`, :meth:`identity`, :meth:`erf`, :meth:`sign`, :meth:`step`, :meth:`sin`,
  :meth:`cos`. Calling it applies ``fn``.

  Attributes:
    fn: the elementwise function.
    name: a label for messages.
    kinks: points where ``fn'`` jumps (quadrature panels split there).
    jumps: points where ``fn`` jumps (chi1 is infinite).
    kind: one of :data:`KINDS` for a closed form, or None (quadrature).
    params: the closed form's parameters (``two_slope``: (alpha, beta)).
  """

  fn: Callable[[jax.Array], jax.Array]
  name: str = "phi"
  kinks: tuple[float, ...] = ()
  jumps: tuple[float, ...] = ()
  kind: str | None = None
  params: tuple[float, ...] = ()

  def __post_init__(self):
    if not callable(self.fn):
      raise TypeError(f"Activation.fn must be callable, got {self.fn!r}")
    if self.kind is not None and self.kind not in KINDS:
      raise ValueError(f"Activation.kind must be one of {KINDS} or None, got {self.kind!r}")
    for field in ("kinks", "jumps", "params"):
      value = getattr(self, field)
      try:
        value = tuple(float(v) for v in value)
      except TypeError:
        raise TypeError(f"Activation.{field} must be a sequence of numbers, got {value!r}") \
            from None
      if not all(math.isfinite(v) for v in value):
        raise ValueError(f"Activation.{field} must be finite, got {value!r}")
      object.__setattr__(self, field, tuple(sorted(value)) if field != "params" else value)

  def __call__(self, x):
    return self.fn(x)

  @property
  def __name__(self):  # messages use getattr(phi, "__name__")
    return self.name

  @property
  def closed_form(self) -> bool:
    return self.kind is not None

  @property
  def homogeneous(self) -> bool:
    """Positively homogeneous of degree 1 (phi(a x) = a phi(x), a > 0): the normalized
    correlation map does not depend on q."""
    return self.kind == "two_slope"

  @property
  def linear(self) -> bool:
    return self.kind == "two_slope" and self.params[0] == self.params[1]

  # ----------------------------------------------------------------- constructors

  @classmethod
  def two_slope(cls, alpha: float, beta: float, name: str | None = None) -> Activation:
    """phi(x) = alpha x for x > 0, beta x for x < 0 (relu: (1, 0); abs: (1, -1))."""
    a, b = float(alpha), float(beta)
    fn = functools.partial(_two_slope_fn, alpha=a, beta=b)
    return cls(fn, name or f"two_slope({a:g}, {b:g})", kinks=() if a == b else (0.0,),
               kind="two_slope", params=(a, b))

  @classmethod
  def relu(cls) -> Activation:
    return cls(jax.nn.relu, "relu", kinks=(0.0,), kind="two_slope", params=(1.0, 0.0))

  @classmethod
  def leaky_relu(cls, negative_slope: float = 0.01) -> Activation:
    return cls.two_slope(1.0, negative_slope, f"leaky_relu({float(negative_slope):g})")

  @classmethod
  def abs(cls) -> Activation:
    return cls(jnp.abs, "abs", kinks=(0.0,), kind="two_slope", params=(1.0, -1.0))

  @classmethod
  def identity(cls) -> Activation:
    return cls(_identity, "identity", kind="two_slope", params=(1.0, 1.0))

  @classmethod
  def erf(cls) -> Activation:
    return cls(jax.scipy.special.erf, "erf", kind="erf")

  @classmethod
  def sign(cls) -> Activation:
    return cls(jnp.sign, "sign", jumps=(0.0,), kind="sign")

  @classmethod
  def step(cls) -> Activation:
    return cls(_step, "step", jumps=(0.0,), kind="step")

  @classmethod
  def sin(cls) -> Activation:
    return cls(jnp.sin, "sin", kind="sin")

  @classmethod
  def cos(cls) -> Activation:
    return cls(jnp.cos, "cos", kind="cos")


def _identity(x):
  return x


def _step(x):
  return jnp.where(x > 0, jnp.ones_like(x), jnp.zeros_like(x))


def _two_slope_fn(x, *, alpha, beta):
  return jnp.where(x > 0, alpha * x, beta * x)


# --------------------------------------------------------------------------- closed forms
# (u, v) ~ N(0, [[q1, k], [k, q2]]), c = k / sqrt(q1 q2), theta = arccos(c).


def _corr(q1, q2, k):
  return jnp.clip(k / jnp.sqrt(q1 * q2), -1.0, 1.0)


def _relu_kernel(q1, q2, k):
  """E[relu(u) relu(v)] = sqrt(q1 q2) (sin(theta) + (pi - theta) c) / (2 pi) (Cho & Saul)."""
  c = _corr(q1, q2, k)
  theta = jnp.arccos(c)
  return jnp.sqrt(q1 * q2) * (jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0)) + (jnp.pi - theta) * c) \
      / (2.0 * jnp.pi)


# Each closed-form kind's five expectations side by side, (u, v) as above, u ~ N(0, q):
# kernel E[phi(u) phi(v)], moment E[phi(u)^2], dq_moment d/dq E[phi(u)^2] (by hand:
# autodiff of expm1 loses e^{-2q} to rounding), dkernel E[phi'(u) phi'(v)] (= d/dk of the
# kernel, Price's theorem) and dmoment E[phi'(u)^2] (inf for sign and step: phi' has a delta).
# ``p`` is the Activation's params.


class _TwoSlope:
  """phi(x) = a x (x > 0), b x (x <= 0): relu, leaky relu, abs, identity (Cho & Saul 2009)."""

  @staticmethod
  def kernel(p, q1, q2, k):
    a, b = p
    return (a - b) ** 2 * _relu_kernel(q1, q2, k) + a * b * k

  @staticmethod
  def moment(p, q):
    a, b = p
    return 0.5 * (a * a + b * b) * q

  @staticmethod
  def dq_moment(p, q):
    a, b = p
    return 0.5 * (a * a + b * b) * jnp.ones_like(q)

  @staticmethod
  def dkernel(p, q1, q2, k):
    a, b = p
    theta = jnp.arccos(_corr(q1, q2, k))
    return (a - b) ** 2 * (jnp.pi - theta) / (2.0 * jnp.pi) + a * b

  dmoment = dq_moment  # E[phi'^2] = (a^2 + b^2) / 2 = d/dq E[phi^2]


class _Erf:
  """phi = erf (Williams 1997)."""

  @staticmethod
  def kernel(p, q1, q2, k):
    del p
    return (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(
        2.0 * k / jnp.sqrt((1.0 + 2.0 * q1) * (1.0 + 2.0 * q2)), -1.0, 1.0))

  @staticmethod
  def moment(p, q):
    del p
    return (2.0 / jnp.pi) * jnp.arcsin(2.0 * q / (1.0 + 2.0 * q))

  @staticmethod
  def dq_moment(p, q):
    del p
    return (4.0 / jnp.pi) / ((1.0 + 2.0 * q) * jnp.sqrt(1.0 + 4.0 * q))

  @staticmethod
  def dkernel(p, q1, q2, k):
    del p
    return (4.0 / jnp.pi) / jnp.sqrt((1.0 + 2.0 * q1) * (1.0 + 2.0 * q2) - 4.0 * k * k)

  @staticmethod
  def dmoment(p, q):
    del p
    return (4.0 / jnp.pi) / jnp.sqrt(1.0 + 4.0 * q)


class _Jump:
  """phi = sign (``scale`` 2/pi, ``offset`` 0) or the step 1[x > 0] (1/(2 pi), 1/4)."""

  def __init__(self, scale: float, offset: float, second_moment: float):
    self.scale, self.offset, self.second_moment = scale, offset, second_moment

  def kernel(self, p, q1, q2, k):
    del p
    return self.offset + self.scale * jnp.arcsin(_corr(q1, q2, k))

  def moment(self, p, q):
    del p
    return jnp.full_like(q, self.second_moment)

  def dq_moment(self, p, q):
    del p
    return jnp.zeros_like(q)

  def dkernel(self, p, q1, q2, k):
    del p
    det = jnp.maximum(q1 * q2 - k * k, 0.0)
    return jnp.where(det > 0, self.scale / jnp.sqrt(jnp.where(det > 0, det, 1.0)), jnp.inf)

  def dmoment(self, p, q):
    del p
    return jnp.full_like(q, jnp.inf)


class _Trig:
  """phi = sin: E[phi(u) phi(v)] = e^{-(q1+q2)/2} sinh k; phi = cos: e^{-(q1+q2)/2} cosh k."""

  def __init__(self, cos: bool):
    self.cos = cos

  def _hyp(self, k, derivative: bool):
    return jnp.cosh(k) if self.cos != derivative else jnp.sinh(k)

  def kernel(self, p, q1, q2, k):
    del p
    return jnp.exp(-0.5 * (q1 + q2)) * self._hyp(k, False)

  def moment(self, p, q):
    del p
    half = 0.5 * jnp.expm1(-2.0 * q)  # (e^{-2q} - 1) / 2
    return 1.0 + half if self.cos else -half

  def dq_moment(self, p, q):
    del p
    return -jnp.exp(-2.0 * q) if self.cos else jnp.exp(-2.0 * q)

  def dkernel(self, p, q1, q2, k):
    del p
    return jnp.exp(-0.5 * (q1 + q2)) * self._hyp(k, True)

  def dmoment(self, p, q):
    del p
    half = 0.5 * jnp.expm1(-2.0 * q)
    return -half if self.cos else 1.0 + half


_FORMS: dict[str | None, Any] = {  # keyed by Activation.kind (None: no closed form)
    "two_slope": _TwoSlope, "erf": _Erf,
    "sign": _Jump(2.0 / math.pi, 0.0, 1.0), "step": _Jump(1.0 / (2.0 * math.pi), 0.25, 0.5),
    "sin": _Trig(cos=False), "cos": _Trig(cos=True),
}


def kernel(act: Activation, q1, q2, k):
  """E[phi(u) phi(v)] in closed form."""
  return _FORMS[act.kind].kernel(act.params, q1, q2, k)


def moment(act: Activation, q):
  """E[phi(u)^2], u ~ N(0, q), in closed form."""
  return _FORMS[act.kind].moment(act.params, q)


def dq_moment(act: Activation, q):
  """d/dq E[phi(u)^2], u ~ N(0, q), in closed form."""
  return _FORMS[act.kind].dq_moment(act.params, q)


def dkernel(act: Activation, q1, q2, k):
  """E[phi'(u) phi'(v)] in closed form (= d/dk E[phi(u) phi(v)], Price's theorem)."""
  return _FORMS[act.kind].dkernel(act.params, q1, q2, k)


def dmoment(act: Activation, q):
  """E[phi'(u)^2], u ~ N(0, q), in closed form (inf for sign and step)."""
  return _FORMS[act.kind].dmoment(act.params, q)


# --------------------------------------------------------------------------- recognition


def _known() -> dict[Any, Callable[[], Activation]]:
  known: dict[Any, Callable[[], Activation]] = {
      jax.nn.relu: Activation.relu,
      jnp.abs: Activation.abs,
      jnp.absolute: Activation.abs,
      jax.scipy.special.erf: Activation.erf,
      jax.lax.erf: Activation.erf,
      jnp.sign: Activation.sign,
      jnp.sin: Activation.sin,
      jnp.cos: Activation.cos,
      jax.nn.leaky_relu: Activation.leaky_relu,
      jax.nn.relu6: lambda: Activation(jax.nn.relu6, "relu6", kinks=(0.0, 6.0)),
      jax.nn.hard_tanh: lambda: Activation(jax.nn.hard_tanh, "hard_tanh", kinks=(-1.0, 1.0)),
      jax.nn.hard_sigmoid: lambda: Activation(jax.nn.hard_sigmoid, "hard_sigmoid",
                                              kinks=(-3.0, 3.0)),
      jax.nn.hard_silu: lambda: Activation(jax.nn.hard_silu, "hard_silu", kinks=(-3.0, 3.0)),
      jax.nn.celu: lambda: Activation(jax.nn.celu, "celu"),
  }
  return known


@functools.lru_cache(maxsize=256)
def as_activation(phi: Any) -> Activation:
  """``phi`` as an :class:`Activation`: jax's own activations with their closed forms or
  kinks; any other callable with the kinks and jumps found on [-12, 12] (step 1e-3).

  Raises:
    TypeError: phi is not callable or not hashable.
  """
  if isinstance(phi, Activation):
    return phi
  if isinstance(phi, functools.partial) and phi.func is jax.nn.leaky_relu and not phi.args \
      and set(phi.keywords) <= {"negative_slope"}:
    return Activation.leaky_relu(phi.keywords.get("negative_slope", 0.01))
  make = _known().get(phi)
  if make is not None:
    return make()
  name = getattr(phi, "__name__", type(phi).__name__)
  kinks, jumps = detect_kinks_and_jumps(phi)
  return Activation(phi, name, kinks=kinks, jumps=jumps)


def detect_kinks_and_jumps(fn: Callable) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Points of [-12, 12] where fn jumps, or where fn' jumps (an isolated jump of the
  derivative between grid points 1e-3 apart), located by bisection to ~1e-14."""
  with jax.ensure_compile_time_eval():
    x = np.linspace(-DETECT_RANGE, DETECT_RANGE, round(2 * DETECT_RANGE / DETECT_STEP) + 1)
    f = jax.jit(lambda t: jax.jvp(fn, (t,), (jnp.ones_like(t),)))
    xs = jnp.asarray(x, jnp.float32)
    val, der = (np.asarray(a, np.float64) for a in f(xs))
    if not (np.isfinite(val).all() and np.isfinite(der).all()):
      return (), ()  # the value checks report it
    dx = np.diff(x)
    # A jump of fn: the increment disagrees with the trapezoid rule on fn'.
    resid = np.abs(np.diff(val) - 0.5 * dx * (der[1:] + der[:-1]))
    scale = 1e-3 * (1.0 + np.abs(val[1:]) + np.abs(val[:-1]))
    jump_idx = np.nonzero(resid > scale)[0]
    # A kink: fn' changes by much more between two neighbours than between the pairs around.
    dd = np.abs(np.diff(der))
    # (two grid steps away: at a kink on a grid point fn' may take a middle value there,
    # splitting the jump over two neighbouring differences)
    pad = np.concatenate([[0.0, 0.0], dd, [0.0, 0.0]])
    around = np.maximum(pad[:-4], pad[4:])
    kink_idx = np.nonzero((dd > 1e-4 * (1.0 + np.abs(der[1:]))) & (dd > 20.0 * around))[0]
    kink_idx = np.setdiff1d(kink_idx, jump_idx)
    jumps = _locate(lambda t: np.asarray(f(jnp.asarray(t, jnp.float32))[0]), x, jump_idx)
    kinks = _locate(lambda t: np.asarray(f(jnp.asarray(t, jnp.float32))[1]), x, kink_idx)
  return kinks, jumps


def _locate(g, x, idx) -> tuple[float, ...]:
  """Bisection for the switch of g between x[i] and x[i+1], for every i in idx at once."""
  if len(idx) == 0:
    return ()
  lo, hi = x[idx].astype(np.float64), x[idx + 1].astype(np.float64)
  g_lo = g(lo)
  for _ in range(40):
    mid = 0.5 * (lo + hi)
    same = np.abs(g(mid) - g_lo) < 1e-6 * (1.0 + np.abs(g_lo))
    lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
  pts = 0.5 * (lo + hi)
  pts = np.where(np.abs(pts) < 1e-9, 0.0, pts)  # a kink at 0 up to float32 rounding
  return tuple(sorted({float(np.round(p, 6)) for p in pts}))
