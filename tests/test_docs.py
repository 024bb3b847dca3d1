"""The docs are executed and complete (issue 23, item 5; issue 16, item 5).

* Every code block in README.md and docs/*.md is run, each on its own (a fresh
  namespace, in a temporary directory): a block that needs a name defines it. A block
  that must not run says so and why on the line before its fence,
  ``<!-- docs-test: skip (REASON) -->``; one that needs simulated devices says
  ``<!-- docs-test: devices=N (...) -->`` and runs in a subprocess with that many CPU
  devices; one that takes more than ~30 s says ``<!-- docs-test: slow (REASON) -->`` and runs
  in the slow step (``-m slow``). ``text`` blocks are output or pseudo-code, not code.
* The API reference (docs/api/*.md, rendered by mkdocstrings in ``.ci/run``'s
  ``mkdocs build --strict``) lists exactly the names of every public module's
  ``__all__``, as optax's docs/ext/coverage_check.py does for its Sphinx pages.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import os
import re
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_FILES = ["README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
MARKER = re.compile(r"^<!-- docs-test: (skip|slow|devices=(\d+)) \((.+)\) -->$")
RUN_LANGS = ("python",)
NOT_CODE = ("text",)  # console output, tables, pseudo-code
PUBLIC_MODULES = ("jinit", "jinit.linen", "jinit.nnx", "jinit.flax", "jinit.sharding",
                  "jinit.diagnostics", "jinit.lsuv", "jinit.residual", "jinit.mup",
                  "jinit.theory", "jinit.equinox", "jinit.haiku", "jinit.recipes",
                  "jinit.learned")


@dataclasses.dataclass(frozen=True)
class Block:
  path: str
  line: int  # of the opening fence, 1-based
  lang: str
  code: str
  action: str  # "run", "slow" (run by the slow step), "skip", "devices", "text"
  devices: int = 1
  reason: str = ""

  @property
  def id(self) -> str:
    return f"{self.path}:{self.line}"


def _blocks(path: str) -> list[Block]:
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    lines = f.read().split("\n")
  blocks, i = [], 0
  while i < len(lines):
    if not lines[i].startswith("```"):
      i += 1
      continue
    lang = lines[i][3:].strip()
    j = i + 1
    while j < len(lines) and not lines[j].startswith("```"):
      j += 1
    assert j < len(lines), f"{path}:{i + 1}: unclosed code fence"
    marker = MARKER.match(lines[i - 1]) if i else None
    action, devices, reason = ("text" if lang in NOT_CODE else "run"), 1, ""
    if marker:
      action = marker.group(1) if marker.group(1) in ("skip", "slow") else "devices"
      devices = int(marker.group(2) or 1)
      reason = marker.group(3).strip()
    blocks.append(Block(path, i + 1, lang, "\n".join(lines[i + 1:j]), action, devices, reason))
    i = j + 1
  return blocks


ALL_BLOCKS = [b for p in DOC_FILES for b in _blocks(p)]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.action in ("run", "slow")]
DEVICE_BLOCKS = [b for b in ALL_BLOCKS if b.action == "devices"]


def test_every_block_is_run_or_says_why_not():
  assert len(ALL_BLOCKS) >= 35  # the parser finds the docs' blocks
  for b in ALL_BLOCKS:
    assert b.lang, f"{b.id}: a code fence without a language (python, bash, text...)"
    if b.action in ("run", "slow", "devices"):
      assert b.lang in RUN_LANGS, (
          f"{b.id}: a {b.lang} block is not run; say why with <!-- docs-test: skip (REASON) -->")
    if b.action in ("skip", "slow"):
      assert len(b.reason) >= 10, f"{b.id}: a {b.action} marker needs a reason"
  assert len(RUN_BLOCKS) >= 15 and len(DEVICE_BLOCKS) >= 3


def _run(code: str, name: str) -> None:
  """Runs a block as a reader would: under jax's default (standard) dtype promotion.

  conftest.py makes promotion strict for every test, which checks jinit's own code; a
  docs block also calls other libraries (optax's Adam is not strict-clean) and must
  run as written in a reader's session.
  """
  namespace = {"__name__": "__docs__"}
  with jax.numpy_dtype_promotion("standard"):
    exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the docs' own examples


@pytest.mark.parametrize("block", [
    pytest.param(b, marks=pytest.mark.slow) if b.action == "slow" else b for b in RUN_BLOCKS],
    ids=[b.id for b in RUN_BLOCKS])
def test_code_block_runs_on_its_own(block, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # blocks may save figures
  _run(block.code, block.id)


_DEVICE_SCRIPT = """
import json, sys
for name, code in json.load(sys.stdin):
  exec(compile(code, name, "exec"), {"__name__": "__docs__"})
  print("ran", name, flush=True)
"""


def test_device_blocks_run_on_simulated_devices(tmp_path):
  import json
  for devices in sorted({b.devices for b in DEVICE_BLOCKS}):
    blocks = [b for b in DEVICE_BLOCKS if b.devices == devices]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT,
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT],
                          input=json.dumps([(b.id, b.code) for b in blocks]), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ran ") == len(blocks), proc.stdout


# --------------------------------------------------------------------------- API coverage


def _api_pages() -> dict[str, list[str]]:
  """``{module: members}`` from docs/api/*.md's ``::: module`` blocks."""
  pages = {}
  for path in sorted(glob.glob(os.path.join(ROOT, "docs", "api", "*.md"))):
    with open(path, encoding="utf-8") as f:
      text = f.read()
    for match in re.finditer(r"^::: (\S+)\n((?:    .*\n|\n)*)", text, re.MULTILINE):
      members = re.findall(r"^        - (\S+)$", match.group(2), re.MULTILINE)
      pages[match.group(1)] = members
  return pages


def test_api_reference_lists_every_public_name():
  pages = _api_pages()
  assert set(pages) == set(PUBLIC_MODULES), "one API page per public module"
  for name in PUBLIC_MODULES:
    exported = importlib.import_module(name).__all__
    listed = pages[name]
    assert len(listed) == len(set(listed)), f"{name}: a member listed twice"
    missing, extra = sorted(set(exported) - set(listed)), sorted(set(listed) - set(exported))
    assert not missing and not extra, (
        f"{name}: missing from the API page {missing}, not in __all__ {extra}")


def test_public_modules_are_the_lazy_ones():
  import jinit
  assert set(PUBLIC_MODULES) == {"jinit"} | {f"jinit.{m}" for m in jinit._LAZY_SUBMODULES}


def test_mkdocs_nav_has_every_page():
  with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
    config = f.read()
  pages = [os.path.relpath(p, os.path.join(ROOT, "docs")) for p in
           glob.glob(os.path.join(ROOT, "docs", "*.md")) + glob.glob(
               os.path.join(ROOT, "docs", "api", "*.md"))]
  for page in pages:
    assert f": {page}\n" in config, f"{page} is not in mkdocs.yml's nav"
