"""Implementation of :mod:`jinit.sharding`; its public names are re-exported there."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jinit._src import initializers
from jinit._src import validation

_AXIS_TYPE = getattr(jax.sharding, "AxisType", None)  # jax >= 0.5; older meshes are all Auto

_SIMULATE_HINT = ("on CPU, simulate N devices with "
                  "XLA_FLAGS=--xla_force_host_platform_device_count=N set before jax is imported")


def make_mesh(n_devices: int | None = None, axis_names: Sequence[str] = ("data",),
              axis_sizes: Sequence[int] | None = None, *,
              devices: Sequence[Any] | None = None,
              axis_types: Sequence[Any] | None = None) -> Mesh:
  """A :class:`jax.sharding.Mesh` over the first ``n_devices`` devices.

  Examples::

    make_mesh()                                   # all devices, one axis "data"
    make_mesh(8, ("data", "model"), (2, 4))       # 2-way data x 4-way model
    make_mesh(8, ("data", "model"), (-1, 2))      # -1: inferred (here 4)

  Args:
    n_devices: how many devices (default: all of ``jax.devices()``, which
      spans every host after ``jax.distributed.initialize()``).
    axis_names: mesh axis names, distinct strings.
    axis_sizes: size of each axis, product ``n_devices``; one entry may be -1
      (inferred). Default: all devices on the first axis, 1 on the others.
    devices: the devices to choose from (default ``jax.devices()``).
    axis_types: default ``Auto`` for every axis (GSPMD sharding propagation,
      what ``jit(out_shardings=...)`` and Flax partitioning metadata expect).

  Raises:
    TypeError: ``n_devices`` (or an entry of ``axis_sizes``) is not an int.
    ValueError: ``n_devices`` is < 1 or exceeds the devices available; bad
      ``axis_names``/``axis_sizes``.
  """
  available = list(jax.devices() if devices is None else devices)
  if n_devices is None:
    n_devices = len(available)
  n_devices = validation.check_int(n_devices, "n_devices")
  if n_devices > len(available):
    platform = available[0].platform if available else "none"
    raise ValueError(
        f"n_devices={n_devices} but only {len(available)} {platform} device(s) are available; "
        f"{_SIMULATE_HINT}")
  if isinstance(axis_names, str) or not isinstance(axis_names, Sequence) or not axis_names \
      or not all(isinstance(a, str) and a for a in axis_names):
    raise ValueError(f"axis_names must be a non-empty sequence of strings, got {axis_names!r}")
  axis_names = tuple(axis_names)
  if len(set(axis_names)) != len(axis_names):
    raise ValueError(f"axis_names must be distinct, got {axis_names!r}")
  if axis_sizes is None:
    sizes = [n_devices] + [1] * (len(axis_names) - 1)
  else:
    sizes = list(axis_sizes)
    if len(sizes) != len(axis_names):
      raise ValueError(f"axis_sizes {tuple(sizes)!r} must have one size per axis name "
                       f"{axis_names!r}")
    if sum(s == -1 for s in sizes) > 1:
      raise ValueError(f"at most one of axis_sizes may be -1, got {tuple(sizes)!r}")
    for s in sizes:
      if s != -1:
        validation.check_int(s, "each of axis_sizes")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
      if n_devices % known:
        raise ValueError(f"axis_sizes {tuple(sizes)!r}: {known} does not divide "
                         f"n_devices={n_devices}")
      sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
      raise ValueError(f"axis_sizes {tuple(sizes)!r} multiply to {math.prod(sizes)}, "
                       f"not n_devices={n_devices}")
  kwargs = {}
  if _AXIS_TYPE is not None:
    kwargs["axis_types"] = tuple(axis_types or (_AXIS_TYPE.Auto,) * len(axis_names))
  elif axis_types is not None:
    raise ValueError(f"axis_types needs jax >= 0.5 (jax.sharding.AxisType), got jax "
                     f"{jax.__version__}")
  if devices is None and n_devices == len(available) and hasattr(jax, "make_mesh"):
    # Topology-aware device order (matters on TPU/GPU).
    return jax.make_mesh(tuple(sizes), axis_names, devices=available, **kwargs)
  grid = np.empty(n_devices, dtype=object)
  grid[:] = available[:n_devices]
  return Mesh(grid.reshape(sizes), axis_names, **kwargs)


def _spec_axes(entry) -> tuple[str, ...]:
  if entry is None:
    return ()
  if isinstance(entry, str):
    return (entry,)
  if isinstance(entry, (tuple, list)):
    return tuple(entry)
  return (entry,)  # e.g. PartitionSpec.UNCONSTRAINED: checked below


def check_sharding(shape: Sequence[int], sharding: NamedSharding | PartitionSpec,
                   mesh: Mesh | None = None) -> NamedSharding:
  """Validates ``sharding`` for an array of ``shape``; returns it as a NamedSharding.

  Args:
    shape: the array's shape.
    sharding: a :class:`~jax.sharding.NamedSharding`, or a
      :class:`~jax.sharding.PartitionSpec` together with ``mesh``.
    mesh: the mesh for a ``PartitionSpec``.

  Raises:
    ValueError: the spec has more entries than ``shape`` has dims, names an axis
      the mesh does not have (the message lists the mesh's axis names), uses an
      axis twice, or a dimension is not divisible by the product of the mesh
      axis sizes it is split over (the message names the dim, axis and sizes).
    TypeError: ``sharding`` is neither of the above.
  """
  shape = validation.check_shape(shape)
  if isinstance(sharding, NamedSharding):
    if mesh is not None and mesh != sharding.mesh:
      raise ValueError("mesh was given but differs from the NamedSharding's mesh")
    mesh, spec = cast(Mesh, sharding.mesh), sharding.spec
  elif isinstance(sharding, PartitionSpec):
    if mesh is None:
      raise ValueError("a PartitionSpec sharding needs mesh= (or pass a NamedSharding)")
    if not isinstance(mesh, Mesh):
      raise TypeError(f"mesh must be a jax.sharding.Mesh, got {mesh!r}")
    spec = sharding
  else:
    raise TypeError("sharding must be a jax.sharding.NamedSharding or a PartitionSpec "
                    f"(with mesh=), got {sharding!r}")
  if len(spec) > len(shape):
    raise ValueError(f"PartitionSpec {spec} has {len(spec)} entries but shape {shape} has "
                     f"only {len(shape)} dims")
  sizes = dict(zip(mesh.axis_names, mesh.devices.shape))
  used: set[str] = set()
  for dim, entry in enumerate(spec):
    if entry is PartitionSpec.UNCONSTRAINED:
      continue
    axes = _spec_axes(entry)
    for axis in axes:
      if axis not in sizes:
        raise ValueError(f"PartitionSpec {spec} names mesh axis {axis!r} (for dim {dim}), "
                         f"but the mesh's axis names are {tuple(mesh.axis_names)!r}")
      if axis in used:
        raise ValueError(f"PartitionSpec {spec} uses mesh axis {axis!r} more than once")
      used.add(axis)
    ways = math.prod(sizes[a] for a in axes)
    if shape[dim] % ways:
      detail = " x ".join(f"{a!r} (size {sizes[a]})" for a in axes)
      raise ValueError(f"shape[{dim}] = {shape[dim]} of shape {shape} is not divisible by mesh "
                       f"axis {detail} = {ways} ways (PartitionSpec {spec})")
  if isinstance(sharding, NamedSharding):
    return sharding
  return NamedSharding(mesh, spec)


def _apply(init, shape, fan_in, fan_out, dtype, hyper_items, key):
  return init(key, shape, fan_in, fan_out, dtype=dtype, **dict(hyper_items))


@functools.lru_cache(maxsize=256)
def _jitted(sharding: NamedSharding):
  return jax.jit(_apply, static_argnums=(0, 1, 2, 3, 4, 5), out_shardings=sharding)


def sharded_init(init, key: jax.Array, shape: Sequence[int], fan_in: int | None = None,
                 fan_out: int | None = None, sharding: NamedSharding | PartitionSpec | None = None,
                 *, mesh: Mesh | None = None, dtype: Any = jnp.float32,
                 **hyperparameters: Any) -> jax.Array:
  """``init(key, shape, fan_in, fan_out, **hyperparameters)`` created already sharded.

  Runs the initializer as one program compiled with ``out_shardings=sharding``:
  with ``jax_threefry_partitionable`` (the default) each device generates only
  its own shard, and the values equal the unsharded ``init(key, shape, ...)`` bit
  for bit (see the module docstring; ``sparse`` is exact but computes the whole
  matrix on every device; ``orthogonal`` gets ``out_sharding=sharding`` and runs
  its draw split by rows: no device holds the whole matrix, values equal the
  unsharded call's up to float rounding). Example::

    mesh = jinit.sharding.make_mesh(8, ("data", "model"), (2, 4))
    w = jinit.sharding.sharded_init(jinit.kaiming_normal, jax.random.key(0),
                                    (8192, 8192), 8192, 8192,
                                    NamedSharding(mesh, P("data", "model")))
    w.addressable_shards[0].data.shape  # (4096, 2048)

  Args:
    init: a jinit initializer (or any function with its call shape).
    key, shape, fan_in, fan_out, dtype, **hyperparameters: as for ``init``.
    sharding: a ``NamedSharding``, or a ``PartitionSpec`` with ``mesh=``.
    mesh: the mesh for a ``PartitionSpec`` sharding.

  Raises:
    ValueError: before any computation, if the sharding does not fit the shape
      or the mesh (see :func:`check_sharding`).
  """
  if not callable(init):
    raise TypeError(f"init must be a jinit initializer (callable), got {init!r}")
  if sharding is None:
    raise ValueError("sharding is required: a NamedSharding, or a PartitionSpec with mesh=")
  shape = validation.check_shape(shape)
  sharding = check_sharding(shape, sharding, mesh)
  if init is initializers.orthogonal and "out_sharding" not in hyperparameters:
    # orthogonal's draw runs split by rows when it knows the sharding (no full copy).
    hyperparameters = {**hyperparameters, "out_sharding": sharding}
  hyper_items = tuple(sorted(hyperparameters.items()))
  try:
    hash((init, fan_in, fan_out, dtype, hyper_items))
  except TypeError:  # e.g. an array hyperparameter: trace it instead of baking it in
    fn = lambda k, h: init(k, shape, fan_in, fan_out, dtype=dtype, **h)
    return jax.jit(fn, out_shardings=sharding)(key, dict(hyperparameters))
  return _jitted(sharding)(init, shape, fan_in, fan_out, dtype, hyper_items, key)


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of ``mesh`` (parameters in data parallelism)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: str = "data") -> NamedSharding:
  """Split along the first (batch) dim over mesh axis ``axis``, other dims whole."""
  if axis not in mesh.axis_names:
    raise ValueError(f"axis {axis!r} is not a mesh axis; the mesh's axis names are "
                     f"{tuple(mesh.axis_names)!r}")
  return NamedSharding(mesh, PartitionSpec(axis))
