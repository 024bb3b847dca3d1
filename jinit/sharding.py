"""Sharded initialization: create parameters already split across devices.

jinit initializers are pure functions of a key, so JAX's own sharding machinery
applies to them unchanged: ``jax.jit(init, out_shardings=...)`` or Flax's
partitioning metadata (``nn.with_partitioning`` / ``nnx.with_partitioning``).
This module adds the few pieces that make that safe and short:

* :func:`make_mesh`: a device mesh, with a clear error when more devices are
  asked for than exist.
* :func:`check_sharding`: validates a sharding against a shape (unknown mesh
  axis, a mesh axis that does not divide a dimension) before any work starts.
* :func:`sharded_init`: ``init(key, shape, fan_in, fan_out, **hyper)`` compiled
  with ``out_shardings``: each device computes only its own shard.
* :func:`replicated`, :func:`batch_sharding`: the two shardings of data-parallel
  training (parameters on every device, the batch split along its first axis).

Values. For the same key, a sharded initializer returns exactly the same bits
as the unsharded call, for every initializer (``orthogonal`` and
``delta_orthogonal``: up to float32 rounding, see below), mesh and ``PartitionSpec``: ``jit``
semantics do not depend on shardings (tests/test_sharding.py checks all
initializers on a 2 x 4 mesh, and Flax linen/nnx partitioning). What
``jax_threefry_partitionable`` (True by default since jax 0.5; checked on jax 0.10.2)
decides is the COST: when True, the random bits are counter-based per element and XLA
partitions their generation, so each device generates only its shard and no device ever
holds the full array. When False, the same call still gives sharded == unsharded values, but
every device generates the full random array and keeps a slice (no memory
saving), and the values differ from those drawn with the flag set to True.

``orthogonal``: a QR couples all entries of the matrix and XLA has no
partitioned QR (``jax.nn.initializers.orthogonal`` raises ``NotImplementedError``
when given ``out_sharding``). jinit's ``orthogonal`` multiplies out Householder
reflectors drawn from a Gaussian matrix in panels: matmuls, which XLA partitions.
:func:`sharded_init` passes it ``out_sharding=sharding``: the Gaussian, the
reflectors and the result are split by rows over all devices (one all-reduce of a
(128, cols) panel product per panel), so no device holds the whole matrix; the
values equal the unsharded call's up to float32 rounding (not bit for bit: the
reductions are split). Under a plain ``jit(out_shardings=...)`` without
``out_sharding``, XLA's sharding propagation decides how much of its matmuls it
splits (values again equal up to float32 rounding); no memory bound is promised.

Exceptions (values exact, memory not saved): ``sparse`` draws its per-column zero
mask from a permutation of all entries, and ``delta_orthogonal`` replicates only
its (in, out) center matrix (1/prod(window) of the kernel); the rest of its kernel
is sharded.

Multi-host: after ``jax.distributed.initialize()``, ``jax.devices()`` lists the
devices of all processes, :func:`make_mesh` spans them, and every process calls
the same :func:`sharded_init` (same key); each process then holds only its
addressable shards.
"""

from jinit._src.sharding import batch_sharding as batch_sharding
from jinit._src.sharding import check_sharding as check_sharding
from jinit._src.sharding import make_mesh as make_mesh
from jinit._src.sharding import replicated as replicated
from jinit._src.sharding import sharded_init as sharded_init

__all__ = [
    "batch_sharding", "check_sharding", "make_mesh", "replicated", "sharded_init",
]
