"""Packaging: the wheel ships ``jinit`` only; ``experiments`` runs from a checkout.

Builds the wheel offline from a copy of the project's files (``pip wheel --no-deps
--no-build-isolation``, so the checkout gets no ``build/`` folder), reads its file
list, then imports from the unpacked wheel in a fresh interpreter, in a folder outside
the checkout, with site-packages on the path but its ``.pth`` files not run (an
editable install of this checkout would otherwise put ``experiments`` back).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("wheel")
  src = tmp / "src"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "results")
  for name in ("jinit", "experiments", "benchmarks", "tests"):
    shutil.copytree(os.path.join(ROOT, name), src / name, ignore=ignore)
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(ROOT, name), src / name)
  proc = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
       "--no-index", "-q", "-w", str(tmp / "dist"), str(src)],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  wheels = list((tmp / "dist").glob("jinit-*.whl"))
  assert len(wheels) == 1, wheels
  return wheels[0]


def test_wheel_holds_jinit_only(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  top = {n.split("/", 1)[0] for n in names}
  dist_info = {t for t in top if t.endswith(".dist-info")}
  assert top - dist_info == {"jinit"}, sorted(top)
  for module in ("jinit/__init__.py", "jinit/_src/initializers.py", "jinit/sharding.py"):
    assert module in names, module
  assert "jinit/py.typed" in names  # type checkers read the package's annotations (PEP 561)
  # Every module of the source tree is shipped.
  shipped = {n for n in names if n.endswith(".py")}
  source = {os.path.relpath(os.path.join(d, f), ROOT).replace(os.sep, "/")
            for d, _, files in os.walk(os.path.join(ROOT, "jinit")) for f in files
            if f.endswith(".py")}
  assert source <= shipped, sorted(source - shipped)
  metadata = zipfile.ZipFile(wheel).read(f"{sorted(dist_info)[0]}/METADATA").decode()
  assert "Requires-Dist: jax" in metadata and "Provides-Extra: experiments" in metadata


def test_installed_wheel_imports_jinit_and_not_experiments(wheel, tmp_path):
  site = tmp_path / "site"
  zipfile.ZipFile(wheel).extractall(site)
  run_dir = tmp_path / "elsewhere"
  run_dir.mkdir()
  probe = (
      "import sys; sys.path.insert(0, {site!r}); sys.path.append({purelib!r})\n"
      "import jinit, jax\n"
      "assert jinit.__file__.startswith({site!r}), jinit.__file__\n"
      "w = jinit.xavier_uniform(jax.random.key(0), (4, 3), 4, 3)\n"
      "assert w.shape == (4, 3)\n"
      "try:\n"
      "  import experiments\n"
      "except ModuleNotFoundError:\n"
      "  print('experiments: not installed')\n"
      "else:\n"
      "  raise SystemExit('experiments importable from ' + experiments.__file__)\n"
  ).format(site=str(site), purelib=sysconfig.get_paths()["purelib"])
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["JAX_PLATFORMS"] = "cpu"
  # -S: no site module, so no .pth file (an editable install's path hook) is run.
  proc = subprocess.run([sys.executable, "-S", "-c", probe], cwd=run_dir, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "experiments: not installed" in proc.stdout


# --------------------------------------------------------------------------- README and docs


def _read(*parts):
  with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
    return f.read()


def test_readme_fits_on_a_screen_and_ci_runs_its_test_command():
  readme = _read("README.md")
  assert len(readme.splitlines()) <= 200
  commands = [l.strip() for l in readme.splitlines() if l.startswith("python3 -m venv")]
  assert len(commands) == 2, commands  # the two fresh-machine commands
  main_job, tests = commands
  assert main_job.endswith('pip install -e ".[experiments]" && python -m experiments')
  assert "shared" not in main_job and "--data-dir" not in main_job  # no workspace paths
  ci = [l.strip() for l in _read(".ci", "run").splitlines() if l.strip()]
  # CI runs README's test command verbatim, before any extra step (the x64 re-run of the core).
  assert tests in ci and all(not l.startswith("python") for l in ci[:ci.index(tests)]), ci


def test_docs_links_resolve_and_result_blocks_match_their_files():
  """Every relative link in README and docs/ points at a file (except the pages other
  branches add), and every <!-- results: PATH --> block holds PATH's tables verbatim."""
  import re

  sys.path.insert(0, os.path.join(ROOT, "docs", "results"))
  try:
    import collect
  finally:
    sys.path.pop(0)
  pending = {"diagnostics.md", "parity.md", "models.md", "mup.md", "theory.md", "residual.md"}
  pages = ["README.md"] + [os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
                           if f.endswith(".md")]
  blocks = 0
  for page in pages:
    text = _read(page)
    base = os.path.dirname(os.path.join(ROOT, page))
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
      if os.path.basename(target) in pending:
        continue
      assert os.path.exists(os.path.join(base, target)), f"{page}: broken link {target}"
    for path, body in re.findall(r"<!-- results: (\S+) -->\n(.*?)<!-- /results -->", text, re.S):
      blocks += 1
      expected = collect.block_body(path)
      assert expected is not None, f"{page}: {path} does not exist"
      assert body == expected, f"{page}: the block of {path} differs from the file: rerun " \
                               "python docs/results/collect.py fill"
  assert blocks >= 5


def test_readme_flax_example_runs():
  import re

  import jax

  code = re.findall(r"```python\n(.*?)```", _read("README.md"), re.S)[0]
  assert len(code.strip().splitlines()) <= 12  # "a 10-line Flax example"
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)
  shapes = jax.tree_util.tree_map(lambda a: a.shape, namespace["params"])["params"]
  assert shapes["Dense_0"]["kernel"] == (784, 256) and shapes["Dense_1"]["bias"] == (10,)
