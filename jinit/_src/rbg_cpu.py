"""XLA's RngBitGenerator bits for ``rbg``/``unsafe_rbg`` keys, in cache-sized chunks on CPU.

A ``jax.random.key(seed, impl="rbg")`` (or ``"unsafe_rbg"``) draws its bits with
``lax.rng_bit_generator``, whose default algorithm on XLA's CPU backend is
Philox4x32-10 (Salmon et al. 2011, https://doi.org/10.1145/2063384.2063405): one
128-bit counter gives four 32-bit words. XLA expands it into one elementwise loop
whose root concatenates the four words along a minor axis of size 4; each output
element then evaluates the whole 10-round chain for its counter and keeps one word
(four times the work), in a loop that the concatenation keeps from being
vectorized, and a ``normal`` draw's ``erf_inv`` is fused into that same scalar
loop (docs/benchmarks.md has the measurements).

:func:`fast_key` rewraps such a key's data in a PRNG implementation that is the
same as jax's in everything (seed, split, fold_in, 8/16/64-bit draws, other
platforms) except 32-bit bits on CPU: there the same Philox4x32-10 words, in the
same order, come from a loop over chunks of counters whose rounds run on
materialized word arrays (small enough to stay in cache), so each chain runs once
and vectorized. The bits are identical to ``jax.random.bits`` with the original key
(tests/test_prng_impls.py checks it), so every ``jax.random`` law drawn from them
(uniform, normal, truncated normal, randint) gives the same numbers.

Under ``jax.vmap`` over keys each key draws what it draws alone (jax's batching rule of
``rng_bit_generator`` does not: its batched draws differ from the unbatched ones).

:func:`normal` and :func:`uniform` (float32) go one step further: they apply
``jax.random``'s own formulas (same numbers) chunk by chunk, on materialized words, so
the transform runs vectorized on words still in cache instead of in one more pass, and
with it an initializer's scale and shift (``post``): what XLA computes for
``jax.jit(lambda k: jax.random.normal(k, shape) * std + mean)``, bit for bit.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np
from jax import lax

# Philox4x32 constants (Random123): the round multipliers and the key increments (Weyl).
_M0, _M1 = np.uint32(0xD2511F53), np.uint32(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_ROUNDS = 10
# Counters per chunk: drawn as _CHAINS independent round loops of 16384 counters each, whose
# two uint64 state arrays (128 KiB each) stay in a core's L2 cache.
_CHUNK = 32768
_CHAINS = 2
# Rounds per materialized step: XLA fuses a step's rounds into each of the two state arrays
# (recomputing what they share), so a few per step, not all ten.
_ROUNDS_PER_STEP = 2
_LOW = np.uint64(0xFFFFFFFF)


def _counters(key_data: jax.Array, i: jax.Array) -> tuple[jax.Array, ...]:
  """The 128-bit counters XLA's Philox gives counter index ``i``, as four uint32 words.

  The uint32[4] key data (k0, k1, k2, k3) is XLA's u64[2] state s = (k0 | k1 << 32,
  k2 | k3 << 32); counter i is (low 64 bits s[1] + i, high 64 bits s[0] + carry).
  """
  k0, k1, k2, k3 = key_data[0], key_data[1], key_data[2], key_data[3]
  x0 = k2 + i
  carry = (x0 < i).astype(jnp.uint32)
  x1 = k3 + carry
  carry = carry & (x1 == 0).astype(jnp.uint32)
  x2 = k0 + carry
  x3 = k1 + (carry & (x2 == 0).astype(jnp.uint32))
  return x0, x1, x2, x3


def _round(a: jax.Array, b: jax.Array, k_a: jax.Array, k_b: jax.Array):
  """One Philox4x32 round on the words packed in pairs, a = x0 | x1 << 32, b = x2 | x3 << 32.

  Philox's round (Salmon et al. 2011) maps (x0, x1, x2, x3) to (hi(M1 x2) ^ x1 ^ k_a,
  lo(M1 x2), hi(M0 x0) ^ x3 ^ k_b, lo(M0 x0)). With p = M1 x2 as a uint64, the new pair
  hi(p) ^ x1 ^ k_a | lo(p) << 32 is rot32(p) ^ (x1 ^ k_a) (rot32: the halves swapped), so
  a' = rot32(M1 (b & 0xFFFFFFFF)) ^ (a >> 32) ^ k_a, b' = rot32(M0 (a & 0xFFFFFFFF)) ^
  (b >> 32) ^ k_b: one 32x32->64 multiply (``vpmuludq``), one rotate and three cheap
  operations per pair, no separate high and low products. Not ``lax.mulhi``: jax 0.10.2
  lowers it to ``chlo.mulhi``, which has no MHLO counterpart; a program with shardings and
  nested calls (a Flax init under ``out_shardings``) goes through MHLO and fails
  ("failed to legalize operation 'mhlo.unknown'").

  Args:
    a: uint64 pairs (x0, x1).
    b: uint64 pairs (x2, x3).
    k_a: the round's first key word, as a uint64 scalar.
    k_b: the round's second key word, as a uint64 scalar.

  Returns:
    The pairs (a', b') after the round.
  """
  rot = lambda p: (p >> np.uint64(32)) | (p << np.uint64(32))
  return (rot((b & _LOW) * np.uint64(int(_M1))) ^ (a >> np.uint64(32)) ^ k_a,
          rot((a & _LOW) * np.uint64(int(_M0))) ^ (b >> np.uint64(32)) ^ k_b)


def _wide(v: jax.Array) -> jax.Array:
  """``v`` as uint64 (under ``jax.enable_x64``)."""
  return lax.convert_element_type(v, np.uint64)


def _always(x: jax.Array) -> jax.Array:
  """A boolean that is true at run time but not known to XLA: ``(x | 1) != 0``."""
  return (x | np.asarray(1, x.dtype)) != 0


def _materialized(fn, skip, pred: jax.Array, operand):
  """``fn(operand)``, computed apart: the true branch of a conditional on ``pred``.

  XLA fuses nothing across a conditional, so its result is materialized in a fresh buffer:
  what it consumes is not recomputed inside it (as one fusion of all ten Philox rounds would
  recompute the earlier rounds) and what consumes it does not pull it into its own loop
  (as a transform fused into the words' interleaving runs element by element); a fresh
  buffer is no loop carry, which XLA would copy. ``pred`` (from :func:`_always`) is true at
  run time, so ``skip`` (cheap, of ``fn``'s output type) never runs; were XLA to fold
  ``pred``, it would inline ``fn``: the same numbers, only not materialized. ``fn`` and
  ``skip`` are module-level functions, the same objects at every call, so that jax reuses
  their traced branches (and their compiled conditionals when a draw runs eagerly).
  """
  return lax.cond(pred, fn, skip, operand)


def _rounds_step(step: int, operand):
  """Rounds ``step * _ROUNDS_PER_STEP`` onward of ``operand = ((a, b), (k0, k1))``: the
  pairs after them (under ``jax.enable_x64``)."""
  ab, (k0, k1) = operand
  for r in range(step * _ROUNDS_PER_STEP, (step + 1) * _ROUNDS_PER_STEP):
    # The key after r increments (mod 2^32).
    k_a = k0 + np.uint32(r * int(_W0) & 0xFFFFFFFF)
    k_b = k1 + np.uint32(r * int(_W1) & 0xFFFFFFFF)
    a, b = ab
    ab = _round(a, b, _wide(k_a), _wide(k_b))
  return ab


def _pairs_unchanged(operand):
  return operand[0]


_STEPS = tuple(functools.partial(_rounds_step, s) for s in range(_ROUNDS // _ROUNDS_PER_STEP))


def _interleave(pairs):
  """uint32[size, 2, 2]: each counter's pairs (a, b) bitcast to words, chains one after another."""
  with jax.enable_x64(True):
    return jnp.concatenate([lax.bitcast_convert_type(jnp.stack(ab, axis=1), jnp.uint32)
                            for ab in pairs])


def _no_words(pairs):
  return jnp.zeros((sum(a.shape[0] for a, _ in pairs), 2, 2), jnp.uint32)


def _philox_pairs(key_data: jax.Array, start: jax.Array, size: int, pred: jax.Array):
  """Philox4x32-10 of counters start .. start + size - 1, as uint64 pairs (x0 | x1 << 32,
  x2 | x3 << 32) (see :func:`_round`), ``_ROUNDS_PER_STEP`` rounds per materialized step.

  Computed under ``jax.enable_x64`` whatever the global setting; :func:`_philox_chunk`
  returns uint32.
  """
  x0, x1, x2, x3 = _counters(key_data, start + lax.iota(jnp.uint32, size))
  with jax.enable_x64(True):
    ab = (_wide(x0) | (_wide(x1) << np.uint64(32)), _wide(x2) | (_wide(x3) << np.uint64(32)))
    for step in _STEPS:
      ab = _materialized(step, _pairs_unchanged, pred, (ab, (key_data[0], key_data[1])))
  return ab


def _philox_chunk(key_data: jax.Array, start: jax.Array, size: int,
                  pred: jax.Array) -> jax.Array:
  """The words of counters start .. start + size - 1, as uint32[size, 4] (XLA's order).

  A ``size`` that is a multiple of ``_CHAINS`` (and at least 1024 per chain) is split into
  ``_CHAINS`` runs of counters, each its own chain of rounds: independent chains, which
  XLA's CPU runtime may run side by side and which cost less CPU time than one chain over
  all (docs/benchmarks.md). Little-endian, the pair x0 | x1 << 32 bitcast to uint32 is
  (x0, x1): interleaving the two pairs of each counter gives XLA's order, in a materialized
  step of its own. ``pred``: true at run time, unknown to XLA (see :func:`_materialized`);
  one that does not depend on the key stays unbatched under ``jax.vmap`` over keys, where a
  batched one turns the conditionals into selects (same bits, no materialization).
  """
  chains = _CHAINS if size % _CHAINS == 0 and size >= 1024 * _CHAINS else 1
  part = size // chains
  pairs = [_philox_pairs(key_data, start + np.uint32(j * part), part, pred)
           for j in range(chains)]
  return _materialized(_interleave, _no_words, pred, pairs).reshape(size, 4)


def _philox_bits32(key_data: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 bits of ``shape``, equal to XLA CPU's ``rng_bit_generator(key_data, shape)``."""
  n = math.prod(shape)
  n_counters = -(-n // 4)
  if n_counters <= _CHUNK:
    # One chunk, from counter 0: only the key is unknown to XLA.
    words = _philox_chunk(key_data, jnp.uint32(0), n_counters, _always(key_data[0]))
  else:
    n_chunks = -(-n_counters // _CHUNK)
    starts = jnp.arange(n_chunks, dtype=jnp.uint32) * np.uint32(_CHUNK)
    words = lax.map(lambda s: _philox_chunk(key_data, s, _CHUNK, _always(s)), starts)
  return words.reshape(-1)[:n].reshape(shape)


# Jitted (shape static) so that an eager draw compiles once per shape; inlined under jit.
_philox_bits32_jit = jax.jit(_philox_bits32, static_argnums=1)


def _uniform_from_bits(bits: jax.Array, minval: float, maxval: float) -> jax.Array:
  """float32 U[minval, maxval) from uint32 bits: ``jax.random.uniform``'s formula, step by step.

  The top 23 bits become the mantissa of a float in [1, 2); minus 1, scaled and shifted,
  clipped below at ``minval`` (jax/_src/random/core.py ``_uniform``).
  """
  lo, hi = np.float32(minval), np.float32(maxval)
  one = np.array(1.0, np.float32).view(np.uint32)
  floats = lax.bitcast_convert_type((bits >> np.uint32(32 - 23)) | one, jnp.float32)
  return lax.max(lo, (floats - np.float32(1.0)) * (hi - lo) + lo)


def _normal_from_bits(bits: jax.Array) -> jax.Array:
  """float32 N(0, 1) from uint32 bits: ``jax.random.normal``'s sqrt(2) erf_inv(u),
  u uniform on [nextafter(-1, 0), 1)."""
  lo = float(np.nextafter(np.float32(-1.0), np.float32(0.0)))
  return np.float32(np.sqrt(2.0)) * lax.erf_inv(_uniform_from_bits(bits, lo, 1.0))


def _draw_chunked(key_data: jax.Array, shape: tuple[int, ...], transform) -> jax.Array:
  """``transform(bits)`` for the bits of ``shape``, chunk by chunk.

  Loop step c draws chunk c's words (materialized: see :func:`_philox_chunk`), so the
  transform is its own elementwise (vectorized) loop, fused into the write of its results
  into the output, on words still in cache.
  """
  n = math.prod(shape)
  n_counters = -(-n // 4)
  if n_counters <= _CHUNK:
    return transform(_philox_bits32(key_data, shape))
  n_chunks = -(-n_counters // _CHUNK)
  size = 4 * _CHUNK

  def step(c, out):
    words = _philox_chunk(key_data, c.astype(jnp.uint32) * np.uint32(_CHUNK), _CHUNK,
                          _always(c))
    return lax.dynamic_update_slice(out, transform(words.reshape(size)), (c * size,))

  out = jnp.zeros((n_chunks * size,), jnp.float32)
  return lax.fori_loop(0, n_chunks, step, out)[:n].reshape(shape)


def _draw(key: jax.Array, shape, transform, fallback, post=None) -> jax.Array:
  """``transform`` of the key's bits (chunked on CPU), else ``fallback(key)``; then ``post``.

  ``post`` (elementwise, float32 -> float32) runs inside the chunk loop on CPU, so a scale
  costs no extra pass over the whole array; it computes what it computes on the full draw.
  """
  shape = tuple(shape)
  n = math.prod(shape)
  if post is not None:
    transform, fallback = (lambda b, t=transform: post(t(b))), (lambda k, f=fallback: post(f(k)))
  if n == 0 or -(-n // 4) + _CHUNK > np.iinfo(np.uint32).max:
    return fallback(key)
  key_data = jax.random.key_data(key)
  return lax.platform_dependent(
      key_data, cpu=lambda kd: _draw_chunked(kd, shape, transform),
      default=lambda kd: fallback(key))


def is_rbg(key: jax.Array) -> bool:
  """Whether ``key`` is a typed rbg/unsafe_rbg key (jax's, or rewrapped by :func:`fast_key`)."""
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return False
  return key.dtype in _key_dtypes() or key.dtype in _fast_dtypes()


def uniform(key: jax.Array, shape, minval: float, maxval: float, post=None) -> jax.Array:
  """``jax.random.uniform(key, shape, float32, minval, maxval)`` of an rbg-family key, faster
  on CPU (the same numbers); ``post`` (elementwise, e.g. a scale) applied to it in the loop."""
  return _draw(key, shape, lambda b: _uniform_from_bits(b, minval, maxval),
               lambda k: jax.random.uniform(k, shape, jnp.float32, minval, maxval), post)


def normal(key: jax.Array, shape, post=None) -> jax.Array:
  """``jax.random.normal(key, shape, float32)`` of an rbg-family key, faster on CPU (the same
  numbers); ``post`` (elementwise, e.g. a scale) applied to it in the loop."""
  return _draw(key, shape, _normal_from_bits,
               lambda k: jax.random.normal(k, shape, jnp.float32), post)


def _rbg_bits(key_data: jax.Array, bit_width: int, shape) -> jax.Array:
  """``random_bits`` of the rbg implementations, with the fast path for 32 bits on CPU."""
  shape = tuple(shape)
  dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}[bit_width]
  xla = lambda kd: lax.rng_bit_generator(kd, shape, dtype=dtype)[1]
  n = math.prod(shape)
  # The counter index is a uint32 (n < 2^34 elements); zero-size draws need no loop.
  if bit_width != 32 or n == 0 or -(-n // 4) > np.iinfo(np.uint32).max:
    return xla(key_data)
  # RngBitGenerator's default algorithm is backend-specific: reproduce it on CPU only.
  return lax.platform_dependent(key_data, cpu=lambda kd: _philox_bits32_jit(kd, shape),
                                default=xla)


def _spec(impl):
  return jax.extend.random.define_prng_impl(
      key_shape=impl.key_shape, seed=impl.seed, split=impl.split, random_bits=_rbg_bits,
      fold_in=impl.fold_in, name=f"{impl.name} (jinit CPU Philox)", tag=impl.tag)


_FAST = {"rbg": _spec(jax.extend.random.rbg_prng_impl),
         "unsafe_rbg": _spec(jax.extend.random.unsafe_rbg_prng_impl)}


@functools.cache
def _fast_dtypes() -> tuple:
  """The key dtypes of :data:`_FAST`'s implementations."""
  return tuple(jax.eval_shape(lambda s=spec: jax.random.wrap_key_data(
      jnp.zeros((4,), jnp.uint32), impl=s)).dtype for spec in _FAST.values())


@functools.cache
def _key_dtypes() -> dict:
  """jax's own rbg and unsafe_rbg key dtypes -> implementation name (no computation)."""
  return {jax.eval_shape(lambda n=name: jax.random.key(0, impl=n)).dtype: name for name in _FAST}


def fast_key(key: jax.Array) -> jax.Array:
  """``key`` itself, or for an rbg/unsafe_rbg key the same key data with the fast bits.

  Args:
    key: a typed key of any implementation, or a raw uint32 key of jax's default
      implementation (``jax_default_prng_impl``).

  Returns:
    A key that draws the same bits as ``key``.
  """
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    impl = _key_dtypes().get(key.dtype)  # a key already rewrapped is not jax's: unchanged
    if impl is None:
      return key
    return jax.random.wrap_key_data(jax.random.key_data(key), impl=_FAST[impl])
  default_impl = jax.config.jax_default_prng_impl  # pyright: ignore[reportAttributeAccessIssue]
  if default_impl in _FAST:
    return jax.random.wrap_key_data(key, impl=_FAST[default_impl])
  return key
