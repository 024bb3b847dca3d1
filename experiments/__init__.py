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
* ``mup_transfer``: μP learning-rate transfer across widths (Yang et al. 2022);
  ``mup_transfer_transformer``: the same on a pre-LN ViT.
* ``mup_depth``: learning-rate transfer across depth: SP, μP, depth-μP (Yang et al. 2023)
  and CompleteP (Dey et al. 2025).
* ``trainability``, ``isometry``, ``deep_cnn``: mean-field theory against training
  (Schoenholz et al. 2017, Pennington et al. 2017, Xiao et al. 2018).
* ``deep_transformer``: LayerNorm placement and depth-scaled residual inits in a ViT.

Shared pieces live in :mod:`experiments.common`: data, models, the compiled training
engine (``train``), the study pipeline (``study``), flags (``cli``), result writing.

Every study runs through one runner, :class:`experiments.common.study.Runner` (flags,
checks, results folder, data, provenance, summary), or, for the multi-run MLP studies,
:func:`experiments.common.study.run_study`; ``python -m experiments --help`` lists them.

Importing ``experiments`` (or any of its modules) sets nothing up. What a program
needs is done by its entry point:

* devices: run as ``python -m experiments[.<name>]`` (and only then: ``sys.argv[0]``
  is ``"-m"`` while the package is imported by ``-m``), the CPU gets one XLA device per
  core before jax is imported, so a study's runs are sharded over every core. A device
  count already in ``XLA_FLAGS`` is left alone; so is a process that imported jax first.
* the compilation cache: :func:`experiments.common.cli.entry`, the ``__main__`` of every
  experiment, keeps compiled programs in ``results/cache/jax`` (jax's persistent cache;
  ``JAX_COMPILATION_CACHE_DIR`` overrides), so a second run skips most compilation. It
  also makes SIGTERM behave as Ctrl-C.
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


# The experiments' extra dependencies (pyproject's [experiments]): module -> package.
EXTRAS = {"flax": "flax", "optax": "optax", "matplotlib": "matplotlib", "sklearn": "scikit-learn",
          "orbax.checkpoint": "orbax-checkpoint", "tqdm": "tqdm"}


def missing_extras() -> list[str]:
  """The packages of ``jinit[experiments]`` that are not installed."""
  import importlib.util

  missing = []
  for module, package in EXTRAS.items():
    try:
      found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
      found = False
    if not found:
      missing.append(package)
  return missing


if _sys.argv[:1] == ["-m"]:  # `python -m experiments...`: the entry point, before jax
  _missing = missing_extras()
  if _missing:
    _sys.stderr.write(f"error: the experiments need {', '.join(_missing)}: "
                      "pip install 'jinit[experiments]'\n")
    raise SystemExit(2)
  use_host_devices()
