"""Times README's commands (wall clock, cold compilation cache) and writes the table README shows.

  python -m benchmarks.time_commands --out docs/results/timings [--data-dir DIR]
  python -m benchmarks.time_commands --tests-only --out docs/results/timings/tests

Each command runs in a fresh process with an empty compilation cache and its results in a
temporary folder (nothing is left in ``results/``). The machine's load average is recorded
before and after each command: timings on a loaded machine are several times longer, so a
table is only comparable with the load beside it.

Writes ``OUT/timings.json`` (command, wall seconds, exit code, loads, date, machine),
``OUT/summary.md`` (the table README includes) and each command's output in ``OUT/logs/``
(the tests' log ends with pytest's 15 slowest tests).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

# (label, argv after `python -m`); --out and --cache-dir are added per run.
COMMANDS = (
    ("python -m experiments (the main job)", ["experiments"]),
    ("python -m experiments.deep_transformer --quick", ["experiments.deep_transformer", "--quick"]),
)
# --durations=15 only adds the slowest tests to the log; the timed command is README's.
TESTS = ("python -m pytest -q (the tests)",
         ["pytest", "-q", "-p", "no:cacheprovider", "--durations=15"])


def _load() -> float:
  return round(os.getloadavg()[0], 2)


def _run(label: str, argv: list[str], env: dict, cwd: str, log: str) -> dict:
  """Runs ``python -m argv`` with its output in ``log``; the row of the table."""
  start, load_before = time.monotonic(), _load()
  with open(log, "w", encoding="utf-8") as f:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, stdout=f,
                          stderr=subprocess.STDOUT, check=False)
  wall = time.monotonic() - start
  row = {"command": label, "argv": argv, "log": os.path.basename(log), "wall_s": round(wall, 1),
         "exit_code": proc.returncode,
         "load_1min_before": load_before, "load_1min_after": _load()}
  print(f"{label}: {wall:.1f} s (exit {proc.returncode}, load {load_before} -> "
        f"{row['load_1min_after']})", flush=True)
  return row


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.time_commands",
                              description=__doc__.split("\n")[0])
  p.add_argument("--out", required=True, help="folder for timings.json and summary.md")
  p.add_argument("--data-dir", default=None, help="a prepared TFDS copy (else the data cache)")
  which = p.add_mutually_exclusive_group()
  which.add_argument("--skip-tests", action="store_true", help="time the experiments only")
  which.add_argument("--tests-only", action="store_true", help="time the tests only")
  args = p.parse_args(argv)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  started = datetime.datetime.now(datetime.timezone.utc)
  rows = []
  os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
  commands = (() if args.tests_only else COMMANDS) + (() if args.skip_tests else (TESTS,))
  for i, (label, cmd) in enumerate(commands):
    with tempfile.TemporaryDirectory() as tmp:
      env = {**os.environ, "PYTHONPATH": root, "JAX_COMPILATION_CACHE_DIR": os.path.join(tmp, "c")}
      extra = []
      if cmd[0].startswith("experiments"):
        extra = ["--out", os.path.join(tmp, "out"), "--cache-dir", os.path.join(tmp, "cache")]
        if args.data_dir:
          extra += ["--data-dir", args.data_dir]
      log = os.path.join(args.out, "logs", f"{i}-{cmd[0]}.log")
      rows.append(_run(label, cmd + extra, env, root, log))
  machine = {"platform": platform.platform(), "python": platform.python_version(),
             "cpus": os.cpu_count()}
  record = {"started": started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m benchmarks.time_commands " + " ".join(argv or sys.argv[1:]),
            "machine": machine, "rows": rows}
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "timings.json"), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  lines = ["| command | wall time | load (1 min) before → after |", "|---|---|---|"]
  for r in rows:
    status = "" if r["exit_code"] == 0 else f" (exit {r['exit_code']})"
    lines.append(f"| `{r['command']}` | {r['wall_s'] / 60:.1f} min{status} | "
                 f"{r['load_1min_before']} → {r['load_1min_after']} |")
  with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
    f.write(f"Measured {record['started']} on {machine['cpus']} CPUs ({machine['platform']}), "
            "cold compilation cache.\n\n" + "\n".join(lines) + "\n")
  return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
