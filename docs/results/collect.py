"""Copies a run's result files into docs/results/<name>/ with their provenance, and fills the
docs' result blocks from them, so no measured number in the docs is typed by hand.

  # after a run (the wrapper records start/end and the console):
  python docs/results/collect.py copy story-mnist /tmp/run --console /tmp/run.log \
      --command "python -m experiments" --started 2026-11-29T10:26:16Z \
      --finished 2026-11-29T10:28:13Z --note "..."
  # then refresh every <!-- results: FILE [TABLE] --> ... <!-- /results --> block:
  python docs/results/collect.py fill docs/experiments.md

``copy`` takes summary.md, *.json, *.png and *.txt from the run folder (keeping its
sub-folders), writes ``provenance.json`` (command, dates, wall time, machine, commit) and
puts the same facts as a header on top of every copied ``summary.md``. It also derives
``page_comparison.md`` from a sigmoid study's ``history.json`` (median train / validation
loss per init at epochs 1, 10, 20, 30, beside the course page's logged values).

``fill`` replaces the text between ``<!-- results: PATH -->`` and ``<!-- /results -->``
with the markdown tables found in PATH (relative to docs/), verbatim; a ``.txt`` PATH (a
run's console) goes in whole, as a code block; ``PATH#all`` is the whole summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
ROOT = os.path.dirname(DOCS)
KEEP = (".json", ".png", ".txt", ".md")

# The course page's logged run (train / validation loss at epochs 1, 10, 20, 30), as printed on
# the page (the Xavier + zero-bias model; the page logs no such lines for the default-init
# model, whose curves it shows only as a figure): cited, not measured here.
PAGE_LOG = {
    "xavier_uniform": ("page: sigmoid, Xavier + zero bias (1 run)",
                       [(2.308537656906164, 2.308519915898641),
                        (0.20434634447115443, 0.2530187802116076),
                        (0.07002673296947375, 0.15957480862239998),
                        (0.04259131510365781, 0.1637446080291023)]),
}
PAGE_EPOCHS = (1, 10, 20, 30)


def _machine() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  import jax

  return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(),
          "python": platform.python_version(), "jax": jax.__version__}


def _commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _header(p: dict) -> str:
  m = p["machine"]
  return (f"<!-- provenance: written by docs/results/collect.py from the run's own files -->\n"
          f"- command: `{p['command']}`\n"
          f"- run: {p['started']} to {p['finished']} ({p['wall_seconds']:.0f} s wall)\n"
          f"- machine: {m['cpu']}, {m['cores']} cores, {m['os']}; python {m['python']}, "
          f"jax {m['jax']}\n"
          f"- code: commit {p['commit']}\n"
          + (f"- /usr/bin/time -v: {p['time_v'].get('wall_clock', '?')} wall, "
             f"{p['time_v'].get('cpu_percent', '?')} of a CPU, max RSS "
             f"{p['time_v'].get('max_rss_kbytes', '?')} kB\n" if p.get("time_v") else "")
          + (f"- note: {p['note']}\n" if p.get("note") else "") + "\n")


def _page_comparison(history_path: str) -> str:
  with open(history_path) as f:
    history = json.load(f)
  rows = ["| run | " + " | ".join(f"epoch {e}" for e in PAGE_EPOCHS) + " |",
          "|---" * (len(PAGE_EPOCHS) + 1) + "|"]
  for init in dict.fromkeys(r["init"] for r in history["runs"]):
    runs = [r for r in history["runs"] if r["init"] == init]
    n = len(runs)
    cells = []
    for e in PAGE_EPOCHS:
      got = [r for r in runs if len(r["train_loss"]) >= e]
      if not got:
        cells.append("-")
        continue
      tr = float(np.median([r["train_loss"][e - 1] for r in got]))
      va = float(np.median([r["val_loss"][e - 1] for r in got]))
      cells.append(f"{tr:.4f} / {va:.4f}")
    if init in PAGE_LOG and history["config"].get("dataset") == "mnist":  # the page ran MNIST
      label, logged = PAGE_LOG[init]
      rows.append(f"| {label} | " + " | ".join(f"{a:.4f} / {b:.4f}" for a, b in logged) + " |")
    rows.append(f"| ours: {init}, median of {n} seeds | " + " | ".join(cells) + " |")
  cited = ("the course page's logged run (cited; the page logs only its Xavier model) and "
           if history["config"].get("dataset") == "mnist" else "")
  return (f"Train / validation loss at epochs 1, 10, 20, 30: {cited}this run's median over "
          "seeds per init (from history.json).\n\n"
          + "\n".join(rows) + "\n")


def _symmetry_table(path: str) -> str:
  with open(path) as f:
    sym = json.load(f)
  rows = ["| network | output | dL/dw1..dw6 |", "|---|---|---|"]
  for w, t in sym["tiny_network"].items():
    rows.append(f"| 2-2-1, x = {tuple(t['x'])}, all weights {w} | {t['output']:g} | "
                + ", ".join(f"{g:g}" for g in t["d_weights"]) + " |")
  c = sym["config"]
  rows += ["", f"| {c['activation']} MLP {c['depth']} x {c['hidden']}, {c['epochs']} epochs on "
           f"{c['dataset']} | width | test acc (median) | largest difference between two "
           "hidden units, at init and after each epoch | width-1 net's max logits difference |",
           "|---|---|---|---|---|"]
  for name, r in sym["at_scale"].items():
    diff = r["width_one_logits_difference"]
    rows.append(f"| {name} | {r['width']} | {r['test_acc']:.4f} | "
                + ", ".join(f"{d:.3g}" for d in r["max_unit_difference"])
                + f" | {'-' if diff is None else f'{diff:.2e}'} |")
  return ("The symmetry part, from symmetry.json.\n\n" + "\n".join(rows) + "\n")


def copy(args) -> None:
  name = args.name
  if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*", name):
    sys.exit(f"error: name must be lowercase letters, digits, '-', '_' or '.', in folders "
             f"joined by '/' (e.g. deep_cnn/full), got {name!r}")
  if args.run_dir != "-" and not os.path.isdir(args.run_dir):
    sys.exit(f"error: run_dir {args.run_dir!r} is not a folder ('-' for a console only)")
  if args.run_dir == "-" and not args.console:
    sys.exit("error: run_dir '-' needs --console")
  dest = os.path.join(HERE, name)
  tmp = dest + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  started = datetime.datetime.fromisoformat(args.started.replace("Z", "+00:00"))
  finished = datetime.datetime.fromisoformat(args.finished.replace("Z", "+00:00"))
  prov = {"command": args.command, "started": args.started, "finished": args.finished,
          "wall_seconds": (finished - started).total_seconds(), "machine": _machine(),
          "commit": args.commit or _commit(), "note": args.note}
  if args.console:
    os.makedirs(tmp, exist_ok=True)
    with open(args.console) as f:
      console = f.read()
    console, _, timed = console.partition("\tCommand being timed:")
    if timed:  # /usr/bin/time -v's report: its facts go to provenance.json
      keys = {"Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall_clock",
              "Percent of CPU this job got": "cpu_percent",
              "Maximum resident set size (kbytes)": "max_rss_kbytes"}
      for line in timed.splitlines():
        k, _, v = line.strip().rpartition(": ")
        if k in keys:
          prov.setdefault("time_v", {})[keys[k]] = v
    console = "\n".join(l for l in console.splitlines()
                        if not l.startswith("WARNING:absl:OpenCV"))  # TFDS's import noise
    with open(os.path.join(tmp, "console.txt"), "w") as f:
      f.write(console.rstrip() + "\n")
  for d, _, files in os.walk(args.run_dir) if args.run_dir != "-" else ():
    for f in sorted(files):
      if not f.endswith(KEEP) or f.startswith("."):
        continue
      rel = os.path.relpath(os.path.join(d, f), args.run_dir)
      out = os.path.join(tmp, rel)
      os.makedirs(os.path.dirname(out), exist_ok=True)
      if f == "summary.md":
        with open(os.path.join(d, f)) as src:
          text = src.read()
        with open(out, "w") as dst:
          dst.write(_header(prov) + text)
      else:
        shutil.copy(os.path.join(d, f), out)
      if f == "symmetry.json":
        with open(os.path.join(os.path.dirname(out), "summary.md"), "w") as dst:
          dst.write(_header(prov) + _symmetry_table(os.path.join(d, f)))
      if f == "history.json" and os.path.basename(d) == "sigmoid_mnist":
        with open(os.path.join(os.path.dirname(out), "page_comparison.md"), "w") as dst:
          dst.write(_header(prov) + _page_comparison(os.path.join(d, f)))
  with open(os.path.join(tmp, "provenance.json"), "w") as f:
    json.dump(prov, f, indent=1)
  shutil.rmtree(dest, ignore_errors=True)
  os.replace(tmp, dest)
  print(f"wrote {dest}")


def _tables(text: str) -> str:
  """The markdown table blocks of ``text`` (lines starting with '|'), with the line just
  before each (its caption) when that line is not blank."""
  lines = text.splitlines()
  out, i = [], 0
  while i < len(lines):
    if lines[i].startswith("|"):
      j = i
      while j < len(lines) and lines[j].startswith("|"):
        j += 1
      if out:
        out.append("")
      out.extend(lines[i:j])
      i = j
    else:
      i += 1
  return "\n".join(out)


def _strip_header(text: str) -> str:
  """``text`` without the provenance header that ``copy`` puts on top of a summary."""
  if not text.startswith("<!-- provenance"):
    return text
  head, _, rest = text.partition("\n\n")
  return rest


def block_body(rel_path: str) -> str | None:
  """What a ``<!-- results: REL_PATH -->`` block holds: ``file.txt`` (a console) whole, in a
  code block (``file.md#text`` too); ``file.md#all`` the summary without its provenance header; ``file.md`` its
  tables. None when the file does not exist (yet)."""
  rel, _, mode = rel_path.partition("#")
  path = os.path.join(DOCS, rel)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    text = f.read()
  if rel.endswith(".txt") or mode == "text":
    return f"```text\n{_strip_header(text).strip()}\n```\n"
  if mode == "all":
    return _strip_header(text).strip("\n") + "\n"
  body = _tables(text)
  if not body:
    sys.exit(f"error: {path} holds no markdown table")
  return body + "\n"


def fill(args) -> None:
  pattern = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- /results -->)", re.S)
  for page in args.pages:
    with open(page) as f:
      text = f.read()

    def repl(m):
      body = block_body(m.group(2))
      if body is None:
        print(f"warning: {page}: {m.group(2)} does not exist (yet); block left as it is")
        return m.group(0)
      return f"{m.group(1)}{body}{m.group(4)}"

    new, n = pattern.subn(repl, text)
    with open(page, "w") as f:
      f.write(new)
    print(f"{page}: {n} block(s) filled")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  c = sub.add_parser("copy")
  c.add_argument("name")
  c.add_argument("run_dir", help="the run's results folder ('-': the run wrote only a console)")
  c.add_argument("--command", required=True)
  c.add_argument("--started", required=True)
  c.add_argument("--finished", required=True)
  c.add_argument("--console")
  c.add_argument("--commit")
  c.add_argument("--note", default="")
  f = sub.add_parser("fill")
  f.add_argument("pages", nargs="+")
  args = p.parse_args(argv)
  copy(args) if args.cmd == "copy" else fill(args)


if __name__ == "__main__":
  main()
