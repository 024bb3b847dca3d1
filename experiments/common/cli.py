"""Command-line pieces shared by the experiments (data, devices, output folder)."""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from experiments.common import data as data_lib
from experiments.common import train as train_lib

DEFAULT_CACHE_DIR = os.path.join("results", "cache")


def add_common_args(parser: argparse.ArgumentParser, dataset: str = "mnist") -> None:
  parser.add_argument("--dataset", default=dataset, choices=data_lib.DATASETS,
                      help="mnist (TFDS) or digits (scikit-learn 8x8, offline). "
                           "Default: %(default)s")
  parser.add_argument("--data-dir", default=None,
                      help="TFDS data_dir holding a prepared mnist (default: TFDS's default, "
                           "$TFDS_DATA_DIR or ~/tensorflow_datasets)")
  parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                      help="cache of decoded arrays ('' to disable). Default: %(default)s")
  parser.add_argument("--download", action="store_true",
                      help="let TFDS download and prepare MNIST if missing (needs network "
                           "and TensorFlow: pip install 'jinit[prepare]')")
  parser.add_argument("--mnist-mirror", type=data_lib.mirror_arg, default=None, metavar="URL",
                      help="without a prepared TFDS copy, MNIST is fetched from public mirrors; "
                           "fetch from this base URL instead (http://, https://, file://; "
                           f"default: ${data_lib.MIRROR_ENV} or the public mirrors)")
  parser.add_argument("--digits-repeat", type=data_lib.repeat_arg, default=None,
                      metavar="{auto,N}",
                      help="digits only: repeat its 1,293 training images N times per epoch "
                           "(auto: as many SGD steps per epoch as MNIST, 42x)")
  parser.add_argument("--devices", type=int, default=None,
                      help="data-parallel over this many devices (default: all, when >1)")
  parser.add_argument("--out", default=None,
                      help="results folder (default: results/<experiment>-<UTC time>)")


def mesh_from_args(args):
  """Checked first: ``--devices`` larger than available raises before any work."""
  return train_lib.make_mesh(args.devices)


def load_from_args(args) -> data_lib.Dataset:
  """The dataset the flags name; exits with the how-to-prepare message if it is missing.

  With a ``--train-size N`` flag (where an experiment has one), the training split is
  subsampled to N examples (validation and test are kept whole).
  """
  try:
    dataset = data_lib.load_dataset(
        args.dataset, args.data_dir, args.cache_dir or None, args.download, fetch=True,
        mirror=getattr(args, "mnist_mirror", None),
        digits_repeat=getattr(args, "digits_repeat", None),
        progress=not getattr(args, "no_progress", False))
  except (data_lib.DatasetNotAvailableError, data_lib.BadDataError) as e:
    sys.exit(f"error: {e}")
  if getattr(args, "train_size", None):
    dataset = data_lib.subsample(dataset, args.train_size, len(dataset.y_val),
                                 len(dataset.y_test))
  return dataset


def out_dir_from_args(args, name: str) -> str:
  if args.out:
    return args.out
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
  return os.path.join("results", f"{name}-{stamp}")
