"""Datasets held as arrays: MNIST through TensorFlow Datasets, scikit-learn's 8x8 digits.

Images are flattened and scaled to [0, 1] (pixels / 255 for MNIST, / 16 for digits)
with no other normalization, as the course page does (``ToTensor()``). The training
split is divided 90/10 into train/validation, stratified by class, with a fixed
split seed, so every run and every seed sees the same validation set.

MNIST is read with ``tfds.data_source`` (random access, no TensorFlow needed for a
prepared dataset). Decoding 70k PNGs takes ~11 s, so the decoded arrays are cached
as an ``.npz`` (written atomically) in ``cache_dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile

import numpy as np

DATASETS = ("mnist", "digits")
VAL_FRACTION = 0.1  # the page's 90/10 train/validation split
SPLIT_SEED = 0  # fixed: the validation set does not depend on the run's seed

PREPARE_HELP = (
    "MNIST is not prepared in {data_dir}. Either\n"
    "  * prepare it once (needs network and TensorFlow):\n"
    "      pip install 'jinit[prepare]'   # brings tensorflow-cpu\n"
    "      tfds build mnist --data_dir {data_dir_arg}\n"
    "    (or rerun with --download to let TFDS download and prepare it),\n"
    "  * point --data-dir (or TFDS_DATA_DIR) at a TFDS data_dir that holds a prepared\n"
    "    mnist/3.0.1, or\n"
    "  * run offline on scikit-learn's 8x8 digits: --dataset digits.\n"
    "TFDS said: {error}")


class DatasetNotAvailableError(RuntimeError):
  """The dataset is not prepared in the data_dir (the message says how to prepare it)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A classification dataset as host arrays: ``x_*`` (N, D) float32, ``y_*`` (N,) int32."""

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
        raise ValueError(f"x_{part} must be (N, D) and y_{part} (N,), got {x.shape} and "
                         f"{y.shape}")

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
  y_train = np.asarray(y_train, np.int32)
  y_test = np.asarray(y_test, np.int32)
  keep, held = stratified_split(y_train, val_fraction)
  return Dataset(name, x_train[keep], y_train[keep], x_train[held], y_train[held], x_test,
                 y_test, num_classes)


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


def _get_many(source, keys):
  """``source[keys]`` decoded in one call; one by one where ``__getitems__`` is missing
  (``tfds.testing.mock_data`` patches it with an incompatible signature)."""
  try:
    return source.__getitems__(keys)
  except (AttributeError, TypeError):
    return [source[k] for k in keys]


def _read_tfds_split(name: str, split: str, data_dir: str | None, download: bool):
  """(images uint8 (N, ...), labels int32 (N,)) of a TFDS split, via ``tfds.data_source``."""
  import tensorflow_datasets as tfds  # heavy import: only when MNIST is asked for

  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
  except Exception as e:  # TFDS raises many types here (NotImplementedError, FileNotFound...)
    shown = data_dir or "TFDS's default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    raise DatasetNotAvailableError(PREPARE_HELP.format(
        data_dir=shown, data_dir_arg=data_dir or "~/tensorflow_datasets",
        error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")) from e
  n = len(source)
  images, labels = [], []
  for start in range(0, n, 5000):  # __getitems__ decodes a chunk in one call
    chunk = _get_many(source, list(range(start, min(start + 5000, n))))
    images.append(np.stack([ex["image"] for ex in chunk]))
    labels.append(np.asarray([ex["label"] for ex in chunk], np.int32))
  return np.concatenate(images), np.concatenate(labels)


def _cache_path(cache_dir: str, name: str, data_dir: str | None) -> str:
  where = os.path.realpath(os.path.expanduser(data_dir)) if data_dir else "default"
  tag = hashlib.sha1(where.encode()).hexdigest()[:10]
  return os.path.join(cache_dir, f"{name}-{tag}.npz")


def load_mnist(data_dir: str | None = None, cache_dir: str | None = None,
               download: bool = False) -> Dataset:
  """MNIST from a TFDS data_dir (``None``: TFDS's default / ``TFDS_DATA_DIR``).

  Args:
    data_dir: the TFDS data_dir holding ``mnist/3.0.1``.
    cache_dir: where to cache the decoded arrays (``None``: no cache).
    download: let TFDS download and prepare MNIST when missing (needs network and
      TensorFlow, the ``prepare`` extra).

  Raises:
    DatasetNotAvailableError: MNIST is not prepared (the message says how to prepare it).
  """
  path = _cache_path(cache_dir, "mnist", data_dir) if cache_dir else None
  if path and os.path.exists(path):
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  else:
    x_train, y_train = _read_tfds_split("mnist", "train", data_dir, download)
    x_test, y_test = _read_tfds_split("mnist", "test", data_dir, download)
    arrays = dict(x_train=x_train.reshape(len(x_train), -1),
                  y_train=y_train, x_test=x_test.reshape(len(x_test), -1), y_test=y_test)
    if path:
      _atomic_save_npz(path, **arrays)
  scale = np.float32(255.0)  # ToTensor(): uint8 pixels / 255
  return from_arrays("mnist", arrays["x_train"].astype(np.float32) / scale, arrays["y_train"],
                     arrays["x_test"].astype(np.float32) / scale, arrays["y_test"], 10)


def load_digits() -> Dataset:
  """scikit-learn's 8x8 digits (1797 images, offline): 80/20 stratified train/test, then 90/10.

  Pixels (0..16) are scaled to [0, 1].
  """
  from sklearn import datasets as sk_datasets

  digits = sk_datasets.load_digits()
  x = digits.data.astype(np.float32) / np.float32(16.0)
  y = digits.target.astype(np.int32)
  train, test = stratified_split(y, 0.2, seed=SPLIT_SEED)
  return from_arrays("digits", x[train], y[train], x[test], y[test], 10)


def load_dataset(name: str, data_dir: str | None = None, cache_dir: str | None = None,
                 download: bool = False) -> Dataset:
  """``"mnist"`` (TFDS) or ``"digits"`` (scikit-learn, offline)."""
  if name == "mnist":
    return load_mnist(data_dir, cache_dir, download)
  if name == "digits":
    return load_digits()
  raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}, got {name!r}")


def subsample(dataset: Dataset, n_train: int, n_val: int | None = None,
              n_test: int | None = None) -> Dataset:
  """The first examples of each split (for quick runs and tests)."""
  n_val = n_train if n_val is None else n_val
  n_test = n_train if n_test is None else n_test
  return Dataset(dataset.name, dataset.x_train[:n_train], dataset.y_train[:n_train],
                 dataset.x_val[:n_val], dataset.y_val[:n_val], dataset.x_test[:n_test],
                 dataset.y_test[:n_test], dataset.num_classes)
