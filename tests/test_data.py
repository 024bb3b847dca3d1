"""Data: MNIST fetched from a mirror (offline, a local http.server), the cache, data checks.

No network and no /work/shared: the mirror is a ``ThreadingHTTPServer`` on 127.0.0.1
serving gzip'd IDX files built here from small synthetic arrays, with a test-only
checksum table (``data.MnistFile`` rows with these files' sizes and SHA-256s).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from experiments.common import cli
from experiments.common import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN, N_TEST = 120, 40  # small, but enough to stratify 10 classes 90/10


def _idx_gz(array: np.ndarray) -> bytes:
  """A gzip'd IDX file (big-endian header: magic 0x0000080<ndim>, then each dim)."""
  header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(
      d.to_bytes(4, "big") for d in array.shape)
  return gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), mtime=0)


def _synthetic_mnist():
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
            "y_train": (np.arange(N_TRAIN) % 10).astype(np.uint8),
            "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
            "y_test": (np.arange(N_TEST) % 10).astype(np.uint8)}
  blobs, table = {}, []
  for spec in data.MNIST_FILES:  # the real names, with this data's sizes and checksums
    blob = _idx_gz(arrays[spec.key])
    blobs[spec.name] = blob
    table.append(data.MnistFile(spec.name, len(blob), hashlib.sha256(blob).hexdigest(),
                                spec.key, len(arrays[spec.key])))
  return arrays, blobs, tuple(table)


ARRAYS, BLOBS, TABLE = _synthetic_mnist()


class _Mirror:
  """An HTTP mirror on 127.0.0.1: ``files`` name -> bytes; names in ``cut`` are sent with
  their full Content-Length but only half their bytes before the connection closes."""

  def __init__(self, files):
    self.files, self.cut, self.requests = dict(files), set(), []
    mirror = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.rsplit("/", 1)[-1]
        mirror.requests.append(name)
        if name not in mirror.files:
          self.send_error(404)
          return
        blob = mirror.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        self.wfile.write(blob[:len(blob) // 2] if name in mirror.cut else blob)
        self.close_connection = True

      def log_message(self, *args):
        pass

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def close(self):
    self.server.shutdown()
    self.server.server_close()


@pytest.fixture
def mirror():
  m = _Mirror(BLOBS)
  yield m
  m.close()


def _closed_port_url() -> str:
  """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/"


def _load(tmp_path, mirror_url, **kw):
  """MNIST with no TFDS copy (an empty data_dir), fetched from ``mirror_url``."""
  empty = tmp_path / "no-tfds"
  empty.mkdir(exist_ok=True)
  return data.load_mnist(str(empty), str(tmp_path / "cache"), fetch=True, mirror=mirror_url,
                         progress=False, files=TABLE, **kw)




# --------------------------------------------------------------------------- fetch


def test_fetch_from_mirror_decodes_checks_and_caches(tmp_path, mirror, capsys):
  ds = _load(tmp_path, mirror.url)
  assert ds.sizes() == {"train": 108, "val": 12, "test": N_TEST}
  assert ds.x_train.shape == (108, 784) and ds.x_train.dtype == np.float32
  # The decoded pixels are the served ones: train + val together are the whole train file.
  x_all = np.concatenate([ds.x_train, ds.x_val])
  y_all = np.concatenate([ds.y_train, ds.y_val])
  order = np.lexsort(x_all.T[::-1])
  expected = ARRAYS["x_train"].reshape(N_TRAIN, -1).astype(np.float32) / np.float32(255)
  expected_order = np.lexsort(expected.T[::-1])
  np.testing.assert_array_equal(x_all[order], expected[expected_order])
  np.testing.assert_array_equal(y_all[order], ARRAYS["y_train"][expected_order])
  np.testing.assert_array_equal(ds.x_test * 255, ARRAYS["x_test"].reshape(N_TEST, -1))
  np.testing.assert_array_equal(ds.y_test, ARRAYS["y_test"])
  out = capsys.readouterr().out
  assert "no prepared TFDS copy" in out and "published SHA-256" in out
  assert sorted(mirror.requests) == sorted(BLOBS)
  cache = tmp_path / "cache"
  assert (cache / "mnist-fetched.npz").is_file()
  assert sorted(os.listdir(cache / "mnist-download")) == sorted(BLOBS)  # no .part left
  # Second load: from the cache, the mirror is not asked again (it is even gone).
  mirror.close()
  again = _load(tmp_path, _closed_port_url())
  np.testing.assert_array_equal(again.x_val, ds.x_val)
  assert len(mirror.requests) == len(BLOBS)


def test_mirror_flag_and_env_reach_the_fetch(tmp_path, mirror, monkeypatch, capsys):
  monkeypatch.setattr(data, "MNIST_FILES", TABLE)  # the test-only checksum table
  parser = argparse.ArgumentParser()
  cli.add_common_args(parser)
  empty = tmp_path / "no-tfds"
  empty.mkdir()
  args = parser.parse_args(["--data-dir", str(empty), "--cache-dir", str(tmp_path / "c1"),
                            "--mnist-mirror", mirror.url])
  assert cli.load_from_args(args).sizes()["test"] == N_TEST
  monkeypatch.setenv(data.MIRROR_ENV, mirror.url)
  args = parser.parse_args(["--data-dir", str(empty), "--cache-dir", str(tmp_path / "c2")])
  assert cli.load_from_args(args).sizes()["test"] == N_TEST
  assert len(mirror.requests) == 2 * len(BLOBS)
  assert f"MNIST: downloading {mirror.url}" in capsys.readouterr().out


def test_mirrors_default_env_and_bad_scheme(monkeypatch):
  monkeypatch.delenv(data.MIRROR_ENV, raising=False)
  assert data.mirrors_from(None) == data.MNIST_MIRRORS
  assert "https://storage.googleapis.com/cvdf-datasets/mnist/" in data.MNIST_MIRRORS
  monkeypatch.setenv(data.MIRROR_ENV, "http://a/x, file:///srv/mnist/")
  assert data.mirrors_from(None) == ("http://a/x/", "file:///srv/mnist/")
  assert data.mirrors_from("https://b/") == ("https://b/",)  # the flag wins over the env
  with pytest.raises(ValueError, match="mnist_mirror must be an http://, https:// or file://"):
    data.mirrors_from("ftp://c/")
  with pytest.raises(TypeError, match="mnist_mirror must be a URL string"):
    data.mirrors_from(3)
  parser = argparse.ArgumentParser()
  cli.add_common_args(parser)
  with pytest.raises(SystemExit) as e:  # argparse: exit 2, before any work
    parser.parse_args(["--mnist-mirror", "ftp://c/"])
  assert e.value.code == 2


def test_real_table_has_the_published_checksums():
  by_name = {f.name: f for f in data.MNIST_FILES}
  # tensorflow_datasets/url_checksums/mnist.txt, as published.
  assert by_name["train-images-idx3-ubyte.gz"].sha256.startswith("440fcabf73cc546f")
  assert by_name["t10k-labels-idx1-ubyte.gz"].size == 4542
  assert [f.count for f in data.MNIST_FILES] == [60000, 60000, 10000, 10000]
  tfds_file = os.path.join(os.path.dirname(pytest.importorskip("tensorflow_datasets").__file__),
                           "url_checksums", "mnist.txt")
  if os.path.exists(tfds_file):  # the installed TFDS's own table agrees with ours
    with open(tfds_file) as f:
      rows = [line.split("\t") for line in f.read().splitlines() if line.strip()]
    assert {r[0].rsplit("/", 1)[-1]: (int(r[1]), r[2]) for r in rows} == {
        f.name: (f.size, f.sha256) for f in data.MNIST_FILES}


def test_checksum_mismatch_falls_back_to_the_next_mirror(tmp_path, mirror, capsys):
  bad = _Mirror({**BLOBS, "train-labels-idx1-ubyte.gz": BLOBS["t10k-labels-idx1-ubyte.gz"]})
  try:
    ds = _load(tmp_path, f"{bad.url},{mirror.url}")
  finally:
    bad.close()
  assert ds.sizes()["test"] == N_TEST
  out = capsys.readouterr().out
  # The bad mirror's file is named, and why (its size or its SHA-256).
  assert re.search(r"train-labels-idx1-ubyte.gz: (got \d+ bytes|SHA-256 \w+\.\.\. does not "
                   r"match)", out), out
  assert mirror.requests == ["train-labels-idx1-ubyte.gz"]  # only the bad file re-fetched


def test_checksum_mismatch_everywhere_is_one_clear_error(tmp_path):
  garbled = dict(BLOBS)
  blob = bytearray(BLOBS["t10k-images-idx3-ubyte.gz"])
  blob[100] ^= 0xFF  # same size, other bytes
  garbled["t10k-images-idx3-ubyte.gz"] = bytes(blob)
  m = _Mirror(garbled)
  try:
    with pytest.raises(data.DatasetNotAvailableError) as e:
      _load(tmp_path, m.url)
  finally:
    m.close()
  message = str(e.value)
  assert "t10k-images-idx3-ubyte.gz: SHA-256" in message and "does not match" in message
  download_dir = tmp_path / "cache" / "mnist-download"
  assert "t10k-images-idx3-ubyte.gz" not in os.listdir(download_dir)  # nothing kept
  assert not [f for f in os.listdir(download_dir) if f.endswith(".part")]
  assert not (tmp_path / "cache" / "mnist-fetched.npz").exists()


def test_half_written_download_from_the_server(tmp_path, mirror, capsys):
  mirror.cut.add("train-images-idx3-ubyte.gz")
  with pytest.raises(data.DatasetNotAvailableError) as e:
    _load(tmp_path, mirror.url)
  message = str(e.value)
  assert "train-images-idx3-ubyte.gz" in message
  assert "IncompleteRead" in message or "half-written" in message
  assert not [f for f in os.listdir(tmp_path / "cache" / "mnist-download")
              if f.startswith("train-images") or f.endswith(".part")]
  mirror.cut.clear()  # the next run fetches it whole
  assert _load(tmp_path, mirror.url).sizes()["train"] == 108


def test_half_written_file_left_on_disk_is_downloaded_again(tmp_path, mirror, capsys):
  download_dir = tmp_path / "cache" / "mnist-download"
  download_dir.mkdir(parents=True)
  name = "train-images-idx3-ubyte.gz"
  (download_dir / name).write_bytes(BLOBS[name][:len(BLOBS[name]) // 2])  # e.g. a copy cut off
  stale = download_dir / f".{name}.abc.part"
  stale.write_bytes(b"partial")  # left by a fetch killed two hours ago
  os.utime(stale, (stale.stat().st_atime - 7200, stale.stat().st_mtime - 7200))
  running = download_dir / f".{name}.def.part"
  running.write_bytes(b"partial")  # another process's download in progress: left alone
  for spec in TABLE[1:]:  # the other three are complete: reused, not fetched
    (download_dir / spec.name).write_bytes(BLOBS[spec.name])
  ds = _load(tmp_path, mirror.url)
  assert ds.sizes()["train"] == 108
  out = capsys.readouterr().out
  assert f"MNIST file {download_dir / name} does not match its published SHA-256" in out
  assert mirror.requests == [name]
  assert (download_dir / name).read_bytes() == BLOBS[name]
  assert [f for f in os.listdir(download_dir) if f.endswith(".part")] == [running.name]


def test_offline_without_data_lists_the_ways_out(tmp_path):
  with pytest.raises(data.DatasetNotAvailableError) as e:
    _load(tmp_path, _closed_port_url())
  message = str(e.value)
  for hint in ("MNIST is not available", "train-images-idx3-ubyte.gz", "--mnist-mirror",
               data.MIRROR_ENV, "--data-dir", "TFDS_DATA_DIR", "tfds build mnist",
               "--dataset digits", str(tmp_path / "no-tfds")):
    assert hint in message, hint


def test_offline_command_line_exits_1_with_one_message_and_no_traceback(tmp_path):
  empty = tmp_path / "no-tfds"
  empty.mkdir()
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("TFDS_DATA_DIR", None)
  proc = subprocess.run(
      [sys.executable, "-m", "experiments", "--data-dir", str(empty), "--cache-dir",
       str(tmp_path / "cache"), "--mnist-mirror", _closed_port_url(), "--out",
       str(tmp_path / "out"), "--no-progress"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  assert proc.stderr.count("error: MNIST is not available") == 1
  assert "--dataset digits" in proc.stderr


# --------------------------------------------------------------------------- the cache


def _garbage(path):
  path.write_bytes(b"not an npz at all" * 100)


def _truncated(path):
  blob = path.read_bytes()
  path.write_bytes(blob[:len(blob) // 3])


def _bad_labels(path):
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files if k != "sha256"}
  arrays["y_train"] = (arrays["y_train"] + 100).astype(np.uint8)  # labels 100..109
  data._write_cache(str(path), arrays)  # a valid digest: only the range check catches it


def _bad_pixels(path):
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files if k != "sha256"}
  arrays["x_test"] = arrays["x_test"].astype(np.int16) + 300
  data._write_cache(str(path), arrays)


def _flipped_byte(path):
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  arrays["x_train"] = arrays["x_train"].copy()
  arrays["x_train"][0, 0] ^= 1  # still a valid npz and in range: the digest catches it
  np.savez(path, **arrays)


def _no_digest(path):  # a cache written by an older version: rebuilt, not trusted
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files if k != "sha256"}
  np.savez(path, **arrays)


@pytest.mark.parametrize("corrupt, reason", [
    (_garbage, "BadDataError: not an npz"), (_truncated, "not an npz|BadZipFile|EOFError"),
    (_bad_labels, r"labels in \[100, 109\]"), (_bad_pixels, r"pixels in \[300, 555\]"),
    (_flipped_byte, "SHA-256 does not match"), (_no_digest, "no stored SHA-256"),
])
def test_corrupt_cache_is_reported_with_its_path_and_rebuilt(tmp_path, mirror, capsys,
                                                             corrupt, reason):
  ds = _load(tmp_path, mirror.url)
  cache = tmp_path / "cache" / "mnist-fetched.npz"
  corrupt(cache)
  capsys.readouterr()
  mirror.close()  # rebuilt from the verified .gz files kept on disk: no network needed
  again = _load(tmp_path, _closed_port_url())
  out = capsys.readouterr().out
  assert f"MNIST cache {cache} is unusable" in out and "rebuilding it" in out
  assert re.search(reason, out), out
  np.testing.assert_array_equal(again.x_train, ds.x_train)
  np.testing.assert_array_equal(again.y_val, ds.y_val)
  assert data._read_cache(str(cache), {f.key: f.count for f in TABLE}) is not None  # rewritten


def test_bad_idx_file_is_named(tmp_path):
  path = tmp_path / "t10k-labels-idx1-ubyte.gz"
  path.write_bytes(_idx_gz(np.zeros((5, 2), np.uint8)))  # an image-style header for labels
  with pytest.raises(data.BadDataError, match=f"{path}: IDX header magic 0x802"):
    data._decode_idx(str(path), TABLE[3])
  path.write_bytes(b"plain text")
  with pytest.raises(data.BadDataError, match=f"{path}: not a readable gzip file"):
    data._decode_idx(str(path), TABLE[3])


# --------------------------------------------------------------------------- data checks


def test_labels_outside_the_classes_are_refused_before_training():
  x = np.zeros((40, 4), np.float32)
  with pytest.raises(data.BadDataError, match=r"y_train holds labels \[100, 109\], not "
                                              r"integers in 0\.\.9"):
    data.from_arrays("bad", x, np.arange(40) % 10 + 100, x, np.arange(40) % 10, 10)
  with pytest.raises(data.BadDataError, match="y_test"):
    data.from_arrays("bad", x, np.arange(40) % 10, x, np.arange(40) % 10 - 1, 10)
  with pytest.raises(data.BadDataError, match="not integers"):
    data.from_arrays("bad", x, np.arange(40) % 10 + 0.5, x, np.arange(40) % 10, 10)
  good = data.from_arrays("ok", x, np.arange(40) % 10, x, np.arange(40) % 10, 10)
  with pytest.raises(data.BadDataError, match=r"y_val holds labels in \[1\d, 1\d\], outside"):
    data.Dataset("bad", good.x_train, good.y_train, good.x_val, good.y_val + 10, good.x_test,
                 good.y_test, 10)
  nan_x = good.x_test.copy()
  nan_x[0, 0] = np.nan
  with pytest.raises(data.BadDataError, match="x_test holds non-finite values"):
    data.Dataset("bad", good.x_train, good.y_train, good.x_val, good.y_val, nan_x,
                 good.y_test, 10)
  assert issubclass(data.BadDataError, ValueError)


def test_mnist_array_checks_name_the_source():
  arrays = {k: v.reshape(len(v), -1) if k[0] == "x" else v for k, v in ARRAYS.items()}
  counts = {f.key: f.count for f in TABLE}
  data.check_mnist_arrays(arrays, "src", counts)  # the good ones pass
  data.check_mnist_arrays(arrays, "src")  # without counts: any consistent N
  real = {f.key: f.count for f in data.MNIST_FILES}
  with pytest.raises(data.BadDataError, match=r"src: x_train \(120, 784\) and y_train "
                                              r"\(120,\), expected \(60000, 784\)"):
    data.check_mnist_arrays(arrays, "src", real)
  with pytest.raises(data.BadDataError, match=r"src: x_test \(40, 784\) and y_test \(39,\)"):
    data.check_mnist_arrays({**arrays, "y_test": arrays["y_test"][:39]}, "src")
  with pytest.raises(data.BadDataError, match=r"src: x_test has dtype float32"):
    data.check_mnist_arrays({**arrays, "x_test": arrays["x_test"].astype(np.float32)},
                            "src", counts)
  with pytest.raises(data.BadDataError, match=r"src: missing arrays \['y_test'\]"):
    data.check_mnist_arrays({k: v for k, v in arrays.items() if k != "y_test"}, "src", counts)


# --------------------------------------------------------------------------- digits


def test_digits_repeated_to_mnist_steps_per_epoch(capsys):
  assert data.repeat_for_mnist_steps(1293) == 42  # round(54000 / 1293) = round(41.76)
  assert data.repeat_for_mnist_steps(60_000) == 1
  ds = data.load_dataset("digits", digits_repeat=None)
  plain = data.load_dataset("digits")
  assert len(plain.y_train) == 1293
  assert len(ds.y_train) == 42 * 1293 and abs(len(ds.y_train) / 54_000 - 1) < 0.01
  np.testing.assert_array_equal(ds.x_train[1293:2586], plain.x_train)
  np.testing.assert_array_equal(ds.x_val, plain.x_val)  # validation and test not repeated
  np.testing.assert_array_equal(ds.y_test, plain.y_test)
  assert "repeated 42x per epoch (54,306 examples)" in capsys.readouterr().out
  assert data.repeat_arg("auto") is None and data.repeat_arg("3") == 3
  for bad in ("0", "-2", "x"):
    with pytest.raises(argparse.ArgumentTypeError, match="'auto' or a positive integer"):
      data.repeat_arg(bad)
  with pytest.raises(ValueError, match="repeat must be >= 1"):
    data.repeat_train(plain, 0)
  with pytest.raises(TypeError, match="repeat must be an int"):
    data.repeat_train(plain, 2.0)


def test_file_url_mirror(tmp_path):
  folder = tmp_path / "copy"
  folder.mkdir()
  for name, blob in BLOBS.items():
    (folder / name).write_bytes(blob)
  assert _load(tmp_path, folder.as_uri()).sizes()["test"] == N_TEST


def test_a_tfds_copy_is_read_before_any_fetch(tmp_path, mirror):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=200):  # stands for a prepared TFDS copy
    ds = data.load_mnist(cache_dir=str(tmp_path), fetch=True, mirror=mirror.url,
                         progress=False, files=TABLE)
  assert ds.sizes() == {"train": 180, "val": 20, "test": 200}
  assert mirror.requests == []  # the mirror was never asked
  assert not (tmp_path / "mnist-fetched.npz").exists()


# --------------------------------------------------------------------------- one cache per user


def test_default_cache_dir_order(monkeypatch, tmp_path):
  monkeypatch.delenv(data.CACHE_ENV, raising=False)
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert data.default_cache_dir() == str(tmp_path / "home" / ".cache" / "jinit")
  monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute only
  assert data.default_cache_dir() == str(tmp_path / "home" / ".cache" / "jinit")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert data.default_cache_dir() == str(tmp_path / "xdg" / "jinit")
  monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "mine"))
  assert data.default_cache_dir() == str(tmp_path / "mine")


# Run in a subprocess with an empty HOME: the command line's flags (cli.add_common_args,
# cli.load_from_args, as every experiment), the test-only checksum table, and optionally
# tfds.testing.mock_data standing for a prepared TFDS copy in --data-dir.
_LOAD_SCRIPT = """
import argparse, contextlib, json, sys
from experiments.common import cli, data
table, flags, mock = json.loads(sys.argv[1])
data.MNIST_FILES = tuple(data.MnistFile(*row) for row in table)
parser = argparse.ArgumentParser()
cli.add_common_args(parser)
args = parser.parse_args(flags)
if mock:
  import tensorflow_datasets as tfds
  context = tfds.testing.mock_data(num_examples=200)
else:
  context = contextlib.nullcontext()
with context:
  print("SIZES", json.dumps(cli.load_from_args(args).sizes()))
"""


def _run_load(home, flags, mock=False):
  env = {k: v for k, v in os.environ.items()
         if k not in (data.CACHE_ENV, "XDG_CACHE_HOME", "TFDS_DATA_DIR", data.MIRROR_ENV)}
  env.update(HOME=str(home), JAX_PLATFORMS="cpu")
  table = [list(dataclasses.astuple(row)) for row in TABLE]
  return subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, json.dumps([table, flags, mock])],
                        cwd=ROOT, env={**env, "PYTHONPATH": ROOT}, capture_output=True,
                        text=True, timeout=300, check=False)


def test_empty_home_every_experiment_finds_one_cache(tmp_path):
  """Issue 23 item 3: ``--data-dir X`` once, then any command without a data flag."""
  home = tmp_path / "home"
  home.mkdir()
  tfds_copy = tmp_path / "tfds"
  (tfds_copy / "mnist").mkdir(parents=True)
  first = _run_load(home, ["--data-dir", str(tfds_copy)], mock=True)
  assert first.returncode == 0, first.stderr
  assert 'SIZES {"train": 180, "val": 20, "test": 200}' in first.stdout
  cache = home / ".cache" / "jinit"
  written = [n for n in os.listdir(cache) if n.endswith(".npz")]
  assert len(written) == 1 and written[0].startswith("mnist-"), written
  # No data flag, offline (the mirror refuses connections), no TFDS copy in ~: the cache.
  second = _run_load(home, ["--mnist-mirror", _closed_port_url()])
  assert second.returncode == 0, second.stderr
  assert 'SIZES {"train": 180, "val": 20, "test": 200}' in second.stdout
  assert f"using the checked cache {cache / written[0]}" in second.stdout
  # The cache is checked as before: a corrupted one is reported and not used.
  _flipped_byte(str(cache / written[0]))
  third = _run_load(home, ["--mnist-mirror", _closed_port_url()])
  assert third.returncode == 1
  assert f"MNIST cache {cache / written[0]} is unusable" in third.stdout
  assert "error: MNIST is not available" in third.stderr


def test_tfds_lookup_logs_no_spurious_absl_warnings(tmp_path, caplog):
  """Issue 23 item 5: no "Variant folder ... has no dataset_info.json" for a missing copy."""
  import logging

  (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)  # a folder TFDS warns about
  absl = logging.getLogger("absl")
  level = absl.level
  with caplog.at_level(logging.WARNING):
    with pytest.raises(data.DatasetNotAvailableError):
      data._read_tfds_split("mnist", "train", str(tmp_path), False)
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING
              and "Variant folder" in r.getMessage()], caplog.text
  assert absl.level == level  # restored
  # Without the guard TFDS does log it (so the assertion above can fail).
  import tensorflow_datasets as tfds
  with caplog.at_level(logging.WARNING):
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever TFDS raises
      tfds.data_source("mnist", split="train", data_dir=str(tmp_path))
  assert "Variant folder" in caplog.text
