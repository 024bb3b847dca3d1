"""Where a result came from: the command, the UTC date, the machine and the JAX devices."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from collections.abc import Sequence


def machine() -> str:
  """The machine a result was measured on, in one line (the one place it is described)."""
  return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores "
          f"({platform.processor() or 'unknown CPU'})")


def command(module: str, argv: Sequence[str] | None) -> str:
  """``python -m module args...``, shell-quoted (``argv`` None: this process's arguments)."""
  args = list(sys.argv[1:] if argv is None else argv)
  return " ".join(["python", "-m", module] + [shlex.quote(str(a)) for a in args])


def provenance(module: str, argv: Sequence[str] | None) -> dict[str, str]:
  """A dict to store next to a result: command, date, machine, devices, jax, jaxlib, count."""
  import jax

  devices = jax.devices()
  return {
      "command": command(module, argv),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "machine": machine(),
      "devices": f"{len(devices)} x {devices[0].platform} ({devices[0].device_kind})",
      "jax": jax.__version__,
      # What a result's numbers depend on besides the command (docs/experiments.md,
      # "Reproducibility"): the XLA build and how many devices the run could use.
      "jaxlib": _jaxlib_version(),
      "device_count": str(len(devices)),
      # A busy machine makes wall times longer: record how busy it was at the start.
      "load_average_1min_at_start": f"{os.getloadavg()[0]:.1f}",
  }


def _jaxlib_version() -> str:
  try:
    import jaxlib
    return str(jaxlib.__version__)
  except (ImportError, AttributeError):
    return "unknown"


def format_provenance(p: dict[str, str]) -> str:
  return "\n".join(f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in p.items())
