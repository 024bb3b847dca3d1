"""Experiments that reproduce the course page on weight initialization, and go further.

Run the whole story with ``python -m experiments``, or one part with
``python -m experiments.<name>``:

* ``symmetry``: constant init makes every unit of a layer a clone (the page's 2-2-1
  network, exactly; then a wide MLP under SGD).
* ``fans``: fan_in/fan_out of the page's 2-3-2 network, Xavier bounds, ``kaiming_uniform``.
* ``sigmoid_mnist``: the page's deep sigmoid MLP on MNIST, default vs Xavier init,
  over several seeds in one compiled run.
* ``signal_propagation``, ``deep_relu``, ``lsuv``: beyond the page (Glorot & Bengio
  Figs. 6-7, He et al. Fig. 3, Mishkin & Matas' LSUV).
* ``model_parallel``: one large Dense layer split along its output axis over a mesh.
* ``mup_transfer``: μP learning-rate transfer across widths (Yang et al. 2022).
* ``trainability``, ``isometry``, ``deep_cnn``: mean-field theory against training
  (Schoenholz et al. 2017, Pennington et al. 2017, Xiao et al. 2018).
* ``deep_transformer``: LayerNorm placement and depth-scaled residual inits in a ViT.

Shared pieces live in :mod:`experiments.common`: data, models, the compiled training
engine (``train``), the study pipeline (``study``), flags (``cli``), result writing.

Devices: run as ``python -m experiments[.<name>]``, this package gives the CPU one XLA
device per core (before jax is imported), so a study's runs are sharded over every
core. A device count already in ``XLA_FLAGS`` is left alone; so is a process that
imported jax first. Compiled programs are kept in ``results/cache/jax`` (jax's
persistent compilation cache; ``JAX_COMPILATION_CACHE_DIR`` overrides), so a second
run skips most compilation.
"""

import os as _os
import sys as _sys

_COUNT_FLAG = "--xla_force_host_platform_device_count"


def use_host_devices(count: int | None = None) -> bool:
  """Sets ``XLA_FLAGS`` so the CPU has ``count`` devices (default: one per usable core).

  Returns False (and changes nothing) when jax is already imported or ``XLA_FLAGS``
  already sets a device count.
  """
  flags = _os.environ.get("XLA_FLAGS", "")
  if "jax" in _sys.modules or _COUNT_FLAG in flags:
    return False
  if count is None:
    count = (len(_os.sched_getaffinity(0)) if hasattr(_os, "sched_getaffinity")
             else _os.cpu_count() or 1)
  _os.environ["XLA_FLAGS"] = f"{flags} {_COUNT_FLAG}={int(count)}".strip()
  return True


def use_compilation_cache(directory: str = _os.path.join("results", "cache", "jax")) -> None:
  """Keeps compiled programs in ``directory`` (jax's persistent cache) for the next run.

  An existing ``JAX_COMPILATION_CACHE_DIR`` wins.
  """
  _os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", directory)


if _sys.argv[:1] == ["-m"]:  # `python -m experiments...`: the entry point, before jax
  use_host_devices()
  use_compilation_cache()
