"""Datasets held as arrays: MNIST (a TFDS copy, or fetched from public mirrors) and digits.

Images are flattened and scaled to [0, 1] (pixels / 255 for MNIST, / 16 for digits)
with no other normalization, as the course page does (``ToTensor()``). The training
split is divided 90/10 into train/validation, stratified by class, with a fixed
split seed, so every run and every seed sees the same validation set.

Where MNIST comes from, in order:

1. the decoded-array cache (``<cache_dir>/mnist-*.npz``), checked before it is used
   (keys, dtypes, shapes, label and pixel ranges, and a SHA-256 of its arrays stored
   inside it); a cache that fails a check is reported with its path and rebuilt.
   The command line's cache is one per user, :func:`default_cache_dir`
   (``$JINIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/jinit``, else ``~/.cache/jinit``), so
   every experiment finds MNIST once any of them has read or fetched it: without
   ``data_dir`` and with no TFDS copy in TFDS's default place, any checked MNIST
   cache in it serves (one written from another ``--data-dir``, or fetched);
2. a prepared TFDS data_dir (``data_dir``, ``$TFDS_DATA_DIR``, ``~/tensorflow_datasets``),
   read with ``tfds.data_source`` (random access, no TensorFlow needed to read);
3. with ``fetch=True`` (what the experiments' command line does), the four MNIST
   files from public mirrors (the URLs TFDS and torchvision use), each checked
   against its published SHA-256 (TFDS's ``url_checksums/mnist.txt``), decoded with
   numpy (IDX format), and kept in ``<cache_dir>/mnist-download/``. Preparing MNIST
   through TFDS would need TensorFlow; this path needs only numpy.

Every loaded dataset is validated (labels in ``0..num_classes-1``, pixels in range,
sizes) before any training, so bad data is refused rather than reported as
divergence.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

import numpy as np

DATASETS = ("mnist", "digits")
VAL_FRACTION = 0.1  # the page's 90/10 train/validation split
SPLIT_SEED = 0  # fixed: the validation set does not depend on the run's seed
MNIST_TRAIN_SIZE = 54_000  # MNIST's 60,000 training images after the 90/10 split

# Public MNIST mirrors, tried in order: TFDS's, torchvision's first, and the original
# (torchvision's fallback). All serve the same four gzip'd IDX files.
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MIRROR_ENV = "JINIT_MNIST_MIRROR"  # base URL(s), comma-separated, replacing MNIST_MIRRORS
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, not per file
STALE_PART_S = 3600.0  # a .part file untouched this long was left by a killed fetch


@dataclasses.dataclass(frozen=True)
class MnistFile:
  """One of the four MNIST files: its name, byte size and SHA-256, and what it holds."""

  name: str
  size: int
  sha256: str
  key: str  # the array it decodes to: x_train, y_train, x_test, y_test
  count: int  # number of images or labels


# Sizes and SHA-256s as published by TensorFlow Datasets
# (tensorflow_datasets/url_checksums/mnist.txt).
MNIST_FILES = (
    MnistFile("train-images-idx3-ubyte.gz", 9_912_422,
              "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
              "x_train", 60_000),
    MnistFile("train-labels-idx1-ubyte.gz", 28_881,
              "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
              "y_train", 60_000),
    MnistFile("t10k-images-idx3-ubyte.gz", 1_648_877,
              "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
              "x_test", 10_000),
    MnistFile("t10k-labels-idx1-ubyte.gz", 4_542,
              "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
              "y_test", 10_000),
)
MNIST_IMAGE_SHAPE = (28, 28)

PREPARE_HELP = (
    "MNIST is not prepared in {data_dir}. Either\n"
    "  * run the experiments' command line without flags: it fetches MNIST from public\n"
    "    mirrors (or --mnist-mirror URL / $JINIT_MNIST_MIRROR),\n"
    "  * prepare it once (needs network and TensorFlow):\n"
    "      pip install 'jinit[prepare]'   # brings tensorflow-cpu\n"
    "      tfds build mnist --data_dir {data_dir_arg}\n"
    "    (or rerun with --download to let TFDS download and prepare it),\n"
    "  * point --data-dir (or TFDS_DATA_DIR) at a TFDS data_dir that holds a prepared\n"
    "    mnist/3.0.1, or\n"
    "  * run offline on scikit-learn's 8x8 digits: --dataset digits.\n"
    "TFDS said: {error}")

FETCH_HELP = (
    "MNIST is not available: no prepared TFDS copy in {data_dir}, and fetching it failed:\n"
    "{failures}\n"
    "Ways out:\n"
    "  * connect to the network and rerun: the four files (~11 MB) are fetched once and\n"
    "    cached in {download_dir},\n"
    "  * point --mnist-mirror URL (or ${env}) at a copy of the four MNIST .gz files\n"
    "    (http://, https:// or file://; e.g. a folder served with python -m http.server),\n"
    "  * point --data-dir (or TFDS_DATA_DIR) at a TFDS data_dir holding a prepared\n"
    "    mnist/3.0.1 (to prepare one: pip install 'jinit[prepare]' && tfds build mnist),\n"
    "  * run offline on scikit-learn's 8x8 digits: --dataset digits.")


class DatasetNotAvailableError(RuntimeError):
  """The dataset is neither prepared nor fetchable (the message lists the ways out)."""


class BadDataError(ValueError):
  """Loaded data fails a check (label range, pixel range, sizes): refused before training."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A classification dataset as host arrays: ``x_*`` (N, D) float32, ``y_*`` (N,) int32.

  Checked on construction: shapes, labels in ``0..num_classes-1`` and finite inputs, so
  bad data is refused before training instead of showing up as a diverged run.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int

  def __post_init__(self):
    for part in ("train", "val", "test"):
      x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
      if x.ndim != 2 or y.shape != (x.shape[0],):
        raise BadDataError(f"{self.name}: x_{part} must be (N, D) and y_{part} (N,), got "
                           f"{x.shape} and {y.shape}")
      if not np.issubdtype(y.dtype, np.integer):
        raise BadDataError(f"{self.name}: y_{part} must hold integer labels, got {y.dtype}")
      if y.size and (y.min() < 0 or y.max() >= self.num_classes):
        raise BadDataError(
            f"{self.name}: y_{part} holds labels in [{y.min()}, {y.max()}], outside "
            f"0..{self.num_classes - 1}: bad data, refused before training")
      if x.size and not np.all(np.isfinite(x)):
        raise BadDataError(f"{self.name}: x_{part} holds non-finite values: bad data, "
                           "refused before training")

  @property
  def input_dim(self) -> int:
    return self.x_train.shape[1]

  def sizes(self) -> dict[str, int]:
    return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def stratified_split(labels: np.ndarray, fraction: float, seed: int = SPLIT_SEED):
  """Indices (keep, held_out), ``fraction`` of them held out with class proportions kept."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
  from sklearn.model_selection import train_test_split

  counts = np.unique(labels, return_counts=True)[1]
  n_held = int(np.ceil(fraction * len(labels)))
  stratify = labels if counts.min() >= 2 and min(n_held, len(labels) - n_held) >= len(counts) \
      else None  # too few examples to stratify (tiny test data): a plain random split
  keep, held = train_test_split(np.arange(len(labels)), test_size=fraction,
                                random_state=seed, stratify=stratify)
  return np.sort(keep), np.sort(held)


def from_arrays(name: str, x_train, y_train, x_test, y_test, num_classes: int,
                val_fraction: float = VAL_FRACTION) -> Dataset:
  """A :class:`Dataset` from a train/test pair: train split 90/10 stratified into train/val."""
  x_train = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
  x_test = np.asarray(x_test, np.float32).reshape(len(x_test), -1)
  y_train = np.asarray(y_train)
  y_test = np.asarray(y_test)
  for part, y in (("y_train", y_train), ("y_test", y_test)):  # checked before the split
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0
                   or y.max() >= num_classes):
      lo_hi = f"[{y.min()}, {y.max()}]" if np.issubdtype(y.dtype, np.number) else y.dtype
      raise BadDataError(f"{name}: {part} holds labels {lo_hi}, not integers in "
                         f"0..{num_classes - 1}: bad data, refused before training")
  y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
  keep, held = stratified_split(y_train, val_fraction)
  return Dataset(name, x_train[keep], y_train[keep], x_train[held], y_train[held], x_test,
                 y_test, num_classes)


# ------------------------------------------------------------------------ the array cache


def _atomic_save_npz(path: str, **arrays) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0o600
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _digest(arrays: dict) -> str:
  """SHA-256 over the MNIST arrays' names, dtypes, shapes and bytes."""
  h = hashlib.sha256()
  for k in MNIST_KEYS:
    a = np.ascontiguousarray(arrays[k])
    h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
    h.update(a.data)
  return h.hexdigest()


def check_mnist_arrays(arrays: dict, source: str, counts: dict | None = None) -> None:
  """Raises :class:`BadDataError` (naming ``source``) unless ``arrays`` look like MNIST.

  Checks: the four keys; images (N, 784) with pixels in [0, 255] and labels (N,) in
  0..9, both integers, N > 0; with ``counts`` (the fetched files' table), N equal to
  it (60,000 / 10,000 for the real files). A TFDS copy's own split sizes are kept
  (``tfds.testing.mock_data`` has other sizes).
  """
  missing = [k for k in MNIST_KEYS if k not in arrays]
  if missing:
    raise BadDataError(f"{source}: missing arrays {missing}")
  pixels = int(np.prod(MNIST_IMAGE_SHAPE))
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    n = counts[f"x_{split}"] if counts else len(y)
    if x.shape != (n, pixels) or y.shape != (n,) or n == 0:
      raise BadDataError(f"{source}: x_{split} {x.shape} and y_{split} {y.shape}, expected "
                         f"({n}, {pixels}) and ({n},), N > 0")
    for name, a, hi in ((f"x_{split}", x, 255), (f"y_{split}", y, 9)):
      if not np.issubdtype(a.dtype, np.integer):
        raise BadDataError(f"{source}: {name} has dtype {a.dtype}, expected integers")
      if a.min() < 0 or a.max() > hi:
        what = "pixels" if name[0] == "x" else "labels"
        raise BadDataError(f"{source}: {name} holds {what} in [{a.min()}, {a.max()}], "
                           f"outside [0, {hi}]: bad data, refused before training")


def _read_cache(path: str, counts: dict | None = None) -> dict | None:
  """The cached MNIST arrays, or None after reporting why the cache at ``path`` is unusable.

  A cache that can't be read, lacks its digest, or fails a check is deleted (it is
  rebuilt by the caller): never trusted blindly.
  """
  if not os.path.exists(path):
    return None
  try:
    if not zipfile.is_zipfile(path):
      raise BadDataError("not an npz (zip) file")
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
    stored = str(arrays.pop("sha256", ""))
    check_mnist_arrays(arrays, path, counts)
    if stored != _digest(arrays):
      raise BadDataError("its SHA-256 does not match the one stored in it"
                         if stored else "it has no stored SHA-256 (an older cache)")
  except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    reason = reason.replace(f"{path}: ", "")
    print(f"MNIST cache {path} is unusable ({type(e).__name__}: {reason}); rebuilding it",
          flush=True)
    try:
      os.remove(path)
    except OSError:
      pass
    return None
  return arrays


def _write_cache(path: str, arrays: dict) -> None:
  _atomic_save_npz(path, sha256=np.asarray(_digest(arrays)), **arrays)


# ------------------------------------------------------------------------ TFDS


def _get_many(source, keys):
  """``source[keys]`` decoded in one call; one by one where ``__getitems__`` is missing
  (``tfds.testing.mock_data`` patches it with an incompatible signature)."""
  try:
    return source.__getitems__(keys)
  except (AttributeError, TypeError):
    return [source[k] for k in keys]


def _tfds_dir_shown(data_dir: str | None) -> str:
  return data_dir or "TFDS's default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"


@contextlib.contextmanager
def _quiet_tfds():
  """TFDS's absl warnings off while jinit reads MNIST through it; errors still show.

  Two are spurious here (issue 23, item 5): "Variant folder .../mnist/3.0.1 has no
  dataset_info.json", logged while TFDS looks for a copy that jinit then reports
  missing in its own message, and "OpenCV is not installed" (PIL decodes MNIST's
  28x28 PNGs fine). absl logs through the standard ``logging`` logger "absl".
  """
  import logging

  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(max(level, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(level)


def _read_tfds_split(name: str, split: str, data_dir: str | None, download: bool):
  """(images uint8 (N, ...), labels int32 (N,)) of a TFDS split, via ``tfds.data_source``."""
  import tensorflow_datasets as tfds  # heavy import: only when MNIST is asked for

  with _quiet_tfds():
    try:
      source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except Exception as e:  # TFDS raises many types here (NotImplementedError, FileNotFound...)
      raise DatasetNotAvailableError(PREPARE_HELP.format(
          data_dir=_tfds_dir_shown(data_dir), data_dir_arg=data_dir or "~/tensorflow_datasets",
          error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")) from e
    n = len(source)
    images, labels = [], []
    for start in range(0, n, 5000):  # __getitems__ decodes a chunk in one call
      chunk = _get_many(source, list(range(start, min(start + 5000, n))))
      images.append(np.stack([ex["image"] for ex in chunk]))
      labels.append(np.asarray([ex["label"] for ex in chunk], np.int32))
  return np.concatenate(images), np.concatenate(labels)


def _tfds_mnist_present(data_dir: str | None) -> bool:
  """Whether a TFDS data_dir (the given one, or TFDS's default) has an ``mnist`` folder."""
  root = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return os.path.isdir(os.path.join(os.path.expanduser(root), "mnist"))


# ------------------------------------------------------------------------ fetching


def mirrors_from(mirror: str | None = None) -> tuple[str, ...]:
  """The base URLs to fetch from: ``mirror`` (comma-separated), else ``$JINIT_MNIST_MIRROR``,
  else :data:`MNIST_MIRRORS`. Each ends with ``/``."""
  if mirror is not None and not isinstance(mirror, str):
    raise TypeError(f"mnist_mirror must be a URL string, got {type(mirror).__name__}")
  text = mirror or os.environ.get(MIRROR_ENV, "")
  urls = tuple(u.strip() for u in text.split(",") if u.strip()) or MNIST_MIRRORS
  for u in urls:
    scheme = urllib.parse.urlparse(u).scheme
    if scheme not in ("http", "https", "file"):
      raise ValueError(f"mnist_mirror must be an http://, https:// or file:// URL, got {u!r}")
  return tuple(u if u.endswith("/") else u + "/" for u in urls)


def _sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _download(url: str, spec: MnistFile, path: str, progress: bool, timeout: float) -> None:
  """``url`` to ``path``, written atomically after its size and SHA-256 match ``spec``.

  Raises:
    OSError: the transfer failed or stopped early (a half-written download).
    ValueError: the bytes don't match the published size or SHA-256.
  """
  from tqdm.auto import tqdm

  directory = os.path.dirname(path)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{spec.name}.", suffix=".part")
  try:
    h, got = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp, \
        tqdm(total=spec.size, unit="B", unit_scale=True, desc=spec.name, leave=False,
             disable=not progress, file=sys.stderr) as bar:
      while True:
        block = resp.read(1 << 16)
        if not block:
          break
        out.write(block)
        h.update(block)
        got += len(block)
        bar.update(len(block))
        if got > spec.size:
          break
    if got != spec.size:
      raise ValueError(f"{spec.name}: got {got:,} bytes, expected {spec.size:,}"
                       + (" (a half-written download)" if got < spec.size else ""))
    if h.hexdigest() != spec.sha256:
      raise ValueError(f"{spec.name}: SHA-256 {h.hexdigest()[:16]}... does not match the "
                       f"published {spec.sha256[:16]}...")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _decode_idx(path: str, spec: MnistFile) -> np.ndarray:
  """A gzip'd IDX file as uint8: images (count, 784), labels (count,)."""
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise BadDataError(f"{path}: not a readable gzip file ({type(e).__name__}: {e})") from e
  ndim = 3 if spec.key.startswith("x") else 1
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise BadDataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
  magic = int.from_bytes(raw[:4], "big")
  dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected_dims = (spec.count, *MNIST_IMAGE_SHAPE)[:ndim]
  if magic != 0x800 + ndim or dims != expected_dims:  # 0x08 = unsigned byte data
    raise BadDataError(f"{path}: IDX header magic {magic:#x} dims {dims}, expected "
                       f"{0x800 + ndim:#x} and {expected_dims}")
  body = np.frombuffer(raw, np.uint8, offset=header)
  if body.size != int(np.prod(dims)):
    raise BadDataError(f"{path}: {body.size} data bytes, expected {int(np.prod(dims))}")
  return body.reshape(spec.count, -1) if ndim == 3 else body.copy()


def fetch_mnist(download_dir: str, mirror: str | None = None, progress: bool = True,
                files: tuple[MnistFile, ...] | None = None,
                timeout: float = DOWNLOAD_TIMEOUT_S) -> dict:
  """The four MNIST files, fetched from public mirrors into ``download_dir`` and decoded.

  A file already in ``download_dir`` is used when its SHA-256 matches (so a rebuild
  needs no network); otherwise it is downloaded again, trying each mirror in turn.
  Downloads go to a temporary ``.part`` file that becomes the file only once its size
  and SHA-256 match the published ones, so a killed or cut-off transfer never leaves a
  file that looks complete.

  Args:
    download_dir: where the ``.gz`` files are kept.
    mirror: base URL(s), comma-separated (default: ``$JINIT_MNIST_MIRROR``, else
      :data:`MNIST_MIRRORS`).
    progress: show a tqdm download bar.
    files: the file table (default :data:`MNIST_FILES`; tests pass their own).
    timeout: seconds per socket operation.

  Returns:
    ``{"x_train": uint8 (60000, 784), "y_train": uint8 (60000,), "x_test", "y_test"}``.

  Raises:
    DatasetNotAvailableError: a file could not be fetched from any mirror (the
      message names the file, each mirror's failure, and the ways out).
  """
  files = MNIST_FILES if files is None else files
  mirrors = mirrors_from(mirror)
  os.makedirs(download_dir, exist_ok=True)
  for stale in os.listdir(download_dir):  # left by a killed fetch (not a running one)
    stale = os.path.join(download_dir, stale)
    if stale.endswith(".part") and time.time() - os.path.getmtime(stale) > STALE_PART_S:
      with contextlib.suppress(OSError):
        os.remove(stale)
  arrays = {}
  for spec in files:
    path = os.path.join(download_dir, spec.name)
    if os.path.exists(path) and _sha256_file(path) != spec.sha256:
      print(f"MNIST file {path} does not match its published SHA-256 (a half-written or "
            "corrupt download); downloading it again", flush=True)
      os.remove(path)
    if not os.path.exists(path):
      failures = []
      for base in mirrors:
        url = base + spec.name
        print(f"MNIST: downloading {url}", flush=True)
        try:
          _download(url, spec, path, progress, timeout)
          break
        # URLError, HTTPError and timeouts are OSErrors; IncompleteRead is an HTTPException.
        except (OSError, ValueError, EOFError, http.client.HTTPException) as e:
          reason = getattr(e, "reason", None) or e
          failures.append(f"  {url}: {type(e).__name__}: {reason}")
          print(failures[-1].strip(), flush=True)
      else:
        raise DatasetNotAvailableError(FETCH_HELP.format(
            data_dir="the TFDS data_dir", failures="\n".join(failures),
            download_dir=download_dir, env=MIRROR_ENV))
    arrays[spec.key] = _decode_idx(path, spec)
  return arrays


# ------------------------------------------------------------------------ loading


CACHE_ENV = "JINIT_CACHE_DIR"


def default_cache_dir() -> str:
  """The user-level cache shared by every experiment, resolved from the environment now.

  ``$JINIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/jinit``, else ``~/.cache/jinit``
  (the XDG base-directory default). Nothing is created until something is cached.
  """
  if os.environ.get(CACHE_ENV):
    return os.path.expanduser(os.environ[CACHE_ENV])
  xdg = os.environ.get("XDG_CACHE_HOME")
  base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "jinit")


def _any_cached_mnist(cache_dir: str, skip: tuple[str, ...]) -> dict | None:
  """The first checked MNIST cache in ``cache_dir`` (newest first), or None.

  Every candidate goes through :func:`_read_cache` (keys, ranges, stored SHA-256), so
  a cache written from any data_dir, or fetched, is as trustworthy as the one asked for.
  """
  try:
    names = [n for n in os.listdir(cache_dir) if n.startswith("mnist-") and n.endswith(".npz")]
  except OSError:
    return None
  paths = [os.path.join(cache_dir, n) for n in names]
  paths = [p for p in paths if p not in skip and os.path.isfile(p)]
  for path in sorted(paths, key=os.path.getmtime, reverse=True):
    arrays = _read_cache(path)
    if arrays is not None:
      print(f"MNIST: no TFDS copy in {_tfds_dir_shown(None)}; using the checked cache {path} "
            "(--data-dir reads a TFDS copy instead)", flush=True)
      return arrays
  return None


def _cache_path(cache_dir: str, name: str, data_dir: str | None) -> str:
  where = os.path.realpath(os.path.expanduser(data_dir)) if data_dir else "default"
  tag = hashlib.sha1(where.encode()).hexdigest()[:10]
  return os.path.join(cache_dir, f"{name}-{tag}.npz")


def _fetched_arrays(data_dir: str | None, cache_dir: str | None, mirror: str | None,
                    progress: bool, files: tuple[MnistFile, ...] | None) -> dict:
  counts = {f.key: f.count for f in (MNIST_FILES if files is None else files)}
  cache = os.path.join(cache_dir, "mnist-fetched.npz") if cache_dir else None
  arrays = _read_cache(cache, counts) if cache else None
  if arrays is not None:
    return arrays
  keep = os.path.join(cache_dir, "mnist-download") if cache_dir else None
  with (contextlib.nullcontext(keep) if keep else
        tempfile.TemporaryDirectory(prefix="jinit-mnist-")) as download_dir:
    print(f"MNIST: no prepared TFDS copy in {_tfds_dir_shown(data_dir)}; fetching the four "
          f"MNIST files (checked against their published SHA-256) into {download_dir}",
          flush=True)
    try:
      arrays = fetch_mnist(download_dir, mirror, progress, files)
    except DatasetNotAvailableError as e:
      raise DatasetNotAvailableError(
          str(e).replace("the TFDS data_dir", _tfds_dir_shown(data_dir), 1)) from None
  arrays = {k: arrays[k] for k in MNIST_KEYS}
  check_mnist_arrays(arrays, "the fetched MNIST files", counts)
  if cache:
    _write_cache(cache, arrays)
    print(f"MNIST: decoded and cached in {cache}", flush=True)
  return arrays


def load_mnist(data_dir: str | None = None, cache_dir: str | None = None,
               download: bool = False, fetch: bool = False, mirror: str | None = None,
               progress: bool = True, files: tuple[MnistFile, ...] | None = None) -> Dataset:
  """MNIST from a TFDS data_dir or, with ``fetch=True``, from public mirrors.

  Args:
    data_dir: the TFDS data_dir holding ``mnist/3.0.1`` (``None``: TFDS's default,
      ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    cache_dir: where to cache the decoded arrays and the fetched files (``None``: no
      cache; fetched files then go to a temporary folder). The command line passes
      :func:`default_cache_dir` unless ``--cache-dir`` says otherwise.
    download: let TFDS download and prepare MNIST when missing (needs network and
      TensorFlow, the ``prepare`` extra).
    fetch: when no prepared TFDS copy is found, fetch the four MNIST files from public
      mirrors (SHA-256 checked, decoded with numpy). Off by default so that library
      calls never touch the network unasked; the experiments' command line turns it on.
    mirror: base URL(s) to fetch from instead of :data:`MNIST_MIRRORS` (also
      ``$JINIT_MNIST_MIRROR``).
    progress: show a download bar while fetching.
    files: the fetched files' table (default :data:`MNIST_FILES`; for tests).

  Raises:
    DatasetNotAvailableError: MNIST is neither prepared nor fetchable (the message
      lists the ways out).
    BadDataError: the data fails a check (labels outside 0..9, pixels outside
      [0, 255], wrong sizes).
  """
  arrays = None
  tfds_path = _cache_path(cache_dir, "mnist", data_dir) if cache_dir else None
  if tfds_path:
    arrays = _read_cache(tfds_path)
  fetched_cache = os.path.join(cache_dir, "mnist-fetched.npz") if cache_dir else None
  if (arrays is None and fetch and not download and fetched_cache
      and os.path.exists(fetched_cache) and not _tfds_mnist_present(data_dir)):
    # Fetched before and still no TFDS copy: the checked cache, without importing TFDS.
    counts = {f.key: f.count for f in (MNIST_FILES if files is None else files)}
    arrays = _read_cache(fetched_cache, counts)
  if (arrays is None and data_dir is None and not download and cache_dir
      and not _tfds_mnist_present(None)):
    # No data_dir and no TFDS copy in the default place: a cache another command wrote.
    arrays = _any_cached_mnist(cache_dir, skip=(tfds_path, fetched_cache))
  if arrays is None:
    try:
      x_train, y_train = _read_tfds_split("mnist", "train", data_dir, download)
      x_test, y_test = _read_tfds_split("mnist", "test", data_dir, download)
    except DatasetNotAvailableError:
      if not fetch or download:
        raise
    else:
      arrays = dict(x_train=x_train.reshape(len(x_train), -1), y_train=y_train,
                    x_test=x_test.reshape(len(x_test), -1), y_test=y_test)
      check_mnist_arrays(arrays, f"MNIST in {_tfds_dir_shown(data_dir)}")
      if tfds_path:
        _write_cache(tfds_path, arrays)
  if arrays is None:
    arrays = _fetched_arrays(data_dir, cache_dir, mirror, progress, files)
  scale = np.float32(255.0)  # ToTensor(): uint8 pixels / 255
  return from_arrays("mnist", arrays["x_train"].astype(np.float32) / scale, arrays["y_train"],
                     arrays["x_test"].astype(np.float32) / scale, arrays["y_test"], 10)


def load_digits() -> Dataset:
  """scikit-learn's 8x8 digits (1797 images, offline): 80/20 stratified train/test, then 90/10.

  Pixels (0..16) are scaled to [0, 1]. The training split has 1,293 images.
  """
  from sklearn import datasets as sk_datasets

  digits = sk_datasets.load_digits()
  x = digits.data.astype(np.float32) / np.float32(16.0)
  y = digits.target.astype(np.int32)
  train, test = stratified_split(y, 0.2, seed=SPLIT_SEED)
  return from_arrays("digits", x[train], y[train], x[test], y[test], 10)


def repeat_train(dataset: Dataset, repeat: int) -> Dataset:
  """``dataset`` with its training split repeated ``repeat`` times (validation and test kept).

  An epoch over the result is ``repeat`` passes over the original training split, in
  one reshuffled order per epoch.
  """
  if isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)):
    raise TypeError(f"repeat must be an int, got {type(repeat).__name__}")
  if repeat < 1:
    raise ValueError(f"repeat must be >= 1, got {repeat}")
  if repeat == 1:
    return dataset
  return dataclasses.replace(dataset, x_train=np.tile(dataset.x_train, (repeat, 1)),
                             y_train=np.tile(dataset.y_train, repeat))


def repeat_for_mnist_steps(n_train: int) -> int:
  """The repeat that gives a training split of ``n_train`` about as many SGD steps per epoch
  as MNIST's 54,000 (same batch size): round(54,000 / n_train), at least 1.

  Digits (1,293 training images): 42, i.e. 54,306 examples per epoch (0.6% more).
  """
  return max(1, round(MNIST_TRAIN_SIZE / n_train))


def mirror_arg(text: str) -> str:
  """argparse type for ``--mnist-mirror``: checked before any work (exit 2, one line)."""
  try:
    mirrors_from(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e).replace("mnist_mirror must", "must")) from None
  return text


def repeat_arg(text: str) -> int | None:
  """argparse type for ``--digits-repeat``: ``auto`` (None) or a positive int."""
  if text == "auto":
    return None
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"must be 'auto' or a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be 'auto' or a positive integer, got {text!r}")
  return value


def load_dataset(name: str, data_dir: str | None = None, cache_dir: str | None = None,
                 download: bool = False, *, fetch: bool = False, mirror: str | None = None,
                 digits_repeat: int | None = 1, progress: bool = True) -> Dataset:
  """``"mnist"`` (TFDS, or fetched with ``fetch=True``) or ``"digits"`` (scikit-learn, offline).

  Args:
    name: ``"mnist"`` or ``"digits"``.
    data_dir, cache_dir, download, fetch, mirror, progress: see :func:`load_mnist`.
    digits_repeat: digits only: repeats of the training split per epoch; ``None`` =
      :func:`repeat_for_mnist_steps` (as many SGD steps per epoch as MNIST),
      said on the console.
  """
  if name == "mnist":
    return load_mnist(data_dir, cache_dir, download, fetch=fetch, mirror=mirror,
                      progress=progress)
  if name == "digits":
    ds = load_digits()
    n = len(ds.y_train)
    repeat = repeat_for_mnist_steps(n) if digits_repeat is None else digits_repeat
    ds = repeat_train(ds, repeat)
    if repeat > 1:
      print(f"digits: the {n:,} training images are repeated {repeat}x per epoch "
            f"({len(ds.y_train):,} examples), so an epoch has about as many SGD steps as "
            f"MNIST's {MNIST_TRAIN_SIZE:,} (--digits-repeat 1 turns this off)", flush=True)
    return ds
  raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}, got {name!r}")


def subsample(dataset: Dataset, n_train: int, n_val: int | None = None,
              n_test: int | None = None) -> Dataset:
  """The first examples of each split (for quick runs and tests)."""
  n_val = n_train if n_val is None else n_val
  n_test = n_train if n_test is None else n_test
  return Dataset(dataset.name, dataset.x_train[:n_train], dataset.y_train[:n_train],
                 dataset.x_val[:n_val], dataset.y_val[:n_val], dataset.x_test[:n_test],
                 dataset.y_test[:n_test], dataset.num_classes)
