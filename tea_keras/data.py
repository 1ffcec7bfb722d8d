"""Data: loading, the train/validation/test split, tf.data pipelines.

Data sets (``load(name)``):

* ``cifar10``: the full set, from a standard ``cifar-10-batches-py`` folder
  (``data_dir``) or else through ``keras.datasets.cifar10`` (downloads once
  to the Keras cache).
* ``cifar10_sample``: 6,102 real CIFAR-10 images shipped in this package
  (``resources/cifar10_sample.npz``, provenance in ``cifar10_sample.md``) so
  that the quickstart and the tests run offline.
* ``folder``: your own images (``data_dir``, required), one sub-folder per
  class, read by ``read_image_folder`` (layout and rules there): class names
  are the folder names, sorted; every image is converted to RGB and resized
  to 32x32 (``IMAGE_SHAPE``, the network's input); ``Splits.class_names``
  carries the classes, hence the number of logits.

Split (Cai et al., 2018, section IV-A): a seeded random ``VAL_FRACTION``
(5,000 of the 50,000) of the CIFAR-10 training images is held out for
validation; the test images are kept apart for final evaluation only. An
image folder holds out ``FOLDER_VAL_FRACTION`` of each class
(``split_per_class``): own data sets are small, and a per-class draw keeps
every class in both splits.

Normalization contract: ``normalize`` (NumPy, uint8 -> float32, per-channel
mean/std) is the one function training and deployment both use to prepare
images; ``normalize_tensor`` is the same arithmetic on tensors, inside the
tf.data pipeline. ``MEAN``/``STD`` are CIFAR-10's, for EVERY data set, image
folders included: the preparation of a deployed network's input is one
fixed formula that needs no statistics of the training data (an agent's
images, ``deploy.measure --write_data``, a board's own camera code), and the
network's first layers (a convolution, then batch normalization) absorb any
per-channel offset and scale of the input, so per-data-set statistics would
only change the conditioning of the stem's weights.

Augmentation (``augment``, paper IV-A: random crops, flips, brightness and
contrast) works on float32 images in [0, 255] and is *stateless*: the random
draws of an image depend only on ``(seed, epoch, image index)``, so a run is
reproducible and a resumed run sees the same batches as an uninterrupted one.
TensorFlow is imported lazily so that ``load``/``normalize`` stay light.

Batch files are unpickled by ``_BatchUnpickler``, which resolves only the
globals a CIFAR-10 python batch refers to (NumPy array reconstruction and
``_codecs.encode`` for bytes); a file naming anything else (``os.system``,
...) is refused with a ``DataError`` before any of it runs. ``check_splits``
is the driver's check of a whole data set before a search.
"""

import codecs
import dataclasses
import os
import pickle
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from tea_keras import errors

NAMES = ("cifar10", "cifar10_sample", "folder")
NUM_CLASSES = 10  # CIFAR-10's; an image folder's come from its sub-folders
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
# Held-out validation fraction: 5,000 of CIFAR-10's 50,000 training images.
VAL_FRACTION = 5000 / 50000
# Held-out validation fraction of each class of an image folder: own data sets
# are small (hundreds of images), and the search's error objective is measured
# on this split; 20% is also Keras' usual validation_split.
FOLDER_VAL_FRACTION = 0.2
# Per-channel (RGB) mean and standard deviation of the 50,000 CIFAR-10
# training images, in pixel units [0, 255].
MEAN = np.array([125.307, 122.950, 113.865], dtype=np.float32)
STD = np.array([62.993, 62.089, 66.705], dtype=np.float32)

SAMPLE_PATH = Path(__file__).resolve().parent / "resources" / "cifar10_sample.npz"
BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple("data_batch_%d" % i for i in range(1, 6))
TEST_FILE = "test_batch"
_HOW_TO_GET = ("Download the 'CIFAR-10 python version' from "
               "https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
               "(tar xzf cifar-10-python.tar.gz), then pass the "
               "'%s' folder or its parent." % BATCHES_FOLDER)


class DataError(ValueError):
  """A data folder or file is missing or not in the expected format."""


@dataclasses.dataclass(frozen=True)
class Splits:
  """uint8 NHWC images and int32 labels of the three splits of data set ``name``."""
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  name: str
  class_names: Tuple[str, ...] = CIFAR10_CLASSES  # label i is class_names[i]
  source: Optional[str] = None  # the folder read (None: the bundled or cached data)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def sizes(self) -> dict:
    return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


# -- loading -------------------------------------------------------------------
def load(name: str, data_dir: Optional[str] = None, seed: int = 0) -> Splits:
  """Load data set ``name`` (one of ``NAMES``) and split it (see module doc).

  ``data_dir``: for ``cifar10``, a ``cifar-10-batches-py`` folder or its
  parent; without it the Keras cache/download is used. For ``folder``, the
  image folder (required). ``seed`` picks the validation images.
  """
  if name == "folder":
    return _load_folder(data_dir, seed)
  if name == "cifar10":
    if data_dir is not None:
      train, test = read_batches_folder(data_dir)
    else:
      train, test = _keras_cifar10()
  elif name == "cifar10_sample":
    if data_dir is not None:
      raise ValueError("Invalid value for argument `data_dir`: the data set "
                       "'cifar10_sample' ships with tea_keras and takes no data_dir. "
                       "Received data_dir=%r" % (data_dir,))
    train, test = _read_sample()
  else:
    raise errors.invalid_value("name", "one of %s" % ", ".join(NAMES), name)
  (x_tr, y_tr), (x_val, y_val) = split_validation(train[0], train[1], seed)
  return Splits(x_tr, y_tr, x_val, y_val, test[0], test[1].astype(np.int32), name)


def split_validation(x: np.ndarray, y: np.ndarray, seed: int = 0,
                     fraction: float = VAL_FRACTION):
  """Seeded random hold-out of ``round(fraction * len(x))`` images.

  Returns ``((x_train, y_train), (x_val, y_val))``; both keep file order.
  """
  if not 0 < fraction < 1:
    raise errors.invalid_value("fraction", "a number in (0, 1)", fraction)
  n = len(x)
  num_val = int(round(fraction * n))
  order = np.random.default_rng(seed).permutation(n)
  val = np.sort(order[:num_val])
  train = np.sort(order[num_val:])
  y = np.asarray(y).astype(np.int32).ravel()
  return (x[train], y[train]), (x[val], y[val])


def _load_folder(data_dir, seed) -> Splits:
  if data_dir is None:
    raise ValueError("Invalid value for argument `data_dir`: the data set 'folder' reads "
                     "your images from data_dir. Expected %s Received data_dir=None"
                     % FOLDER_LAYOUT)
  train, test, class_names = read_image_folder(data_dir)
  (x_tr, y_tr), (x_val, y_val) = split_per_class(train[0], train[1], seed)
  order = np.random.default_rng([seed, 1]).permutation(len(test[1]))
  return Splits(x_tr, y_tr, x_val, y_val, test[0][order], test[1][order], "folder",
                class_names=class_names,
                source=str(Path(os.fspath(data_dir)).expanduser()))


def split_per_class(x: np.ndarray, y: np.ndarray, seed: int = 0,
                    fraction: float = FOLDER_VAL_FRACTION):
  """Seeded hold-out of ``max(1, round(fraction * n_c))`` images of each class.

  Returns ``((x_train, y_train), (x_val, y_val))``, each in a seeded random
  order (not grouped by class), so that a prefix (``train_images``,
  ``measure_images``) is a random subset of every class. Every class needs
  at least 2 images (one per split).
  """
  if not 0 < fraction < 1:
    raise errors.invalid_value("fraction", "a number in (0, 1)", fraction)
  y = np.asarray(y).astype(np.int32).ravel()
  rng = np.random.default_rng(seed)
  val = []
  for c in np.unique(y):
    members = np.flatnonzero(y == c)
    if len(members) < 2:
      raise ValueError("Invalid labels: class %d has %d image(s). Expected at least 2 "
                       "per class (one for training, one for validation)." % (c, len(members)))
    val.append(rng.permutation(members)[:max(1, int(round(fraction * len(members))))])
  val = rng.permutation(np.concatenate(val))
  train = rng.permutation(np.setdiff1d(np.arange(len(y)), val))
  return (x[train], y[train]), (x[val], y[val])


def _read_sample():
  with np.load(SAMPLE_PATH) as d:
    return ((d["x_train"], d["y_train"]), (d["x_test"], d["y_test"]))


def _keras_cifar10():
  # Keras: heavy, imported only when this runs.
  import keras  # pylint: disable=g-import-not-at-top
  try:
    (x_tr, y_tr), (x_te, y_te) = keras.datasets.cifar10.load_data()
  except Exception as e:  # pylint: disable=broad-except
    raise DataError("Could not download CIFAR-10 through keras.datasets.cifar10 (%s: "
                    "%s). Pass data_dir instead. %s" % (type(e).__name__, e, _HOW_TO_GET)
                   ) from e
  return (x_tr, y_tr.ravel()), (x_te, y_te.ravel())


def read_batches_folder(data_dir) -> Tuple[Tuple[np.ndarray, np.ndarray], ...]:
  """Read a standard ``cifar-10-batches-py`` folder (or its parent).

  Returns ``((x_train, y_train), (x_test, y_test))``, images uint8 NHWC.
  Raises ``DataError`` naming the path and the expected files.
  """
  folder = Path(os.fspath(data_dir)).expanduser()
  if (folder / BATCHES_FOLDER).is_dir():
    folder = folder / BATCHES_FOLDER
  expected = TRAIN_FILES + (TEST_FILE,)
  if not folder.is_dir():
    raise DataError("CIFAR-10 data folder %s does not exist. Expected a folder with "
                    "%s. %s" % (folder, ", ".join(expected), _HOW_TO_GET))
  missing = [f for f in expected if not (folder / f).is_file()]
  if missing:
    raise DataError("CIFAR-10 data folder %s lacks %s. Expected %s. %s"
                    % (folder, ", ".join(missing), ", ".join(expected), _HOW_TO_GET))
  parts = [_read_batch(folder / f) for f in TRAIN_FILES]
  train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
  return train, _read_batch(folder / TEST_FILE)


# -- image folders -------------------------------------------------------------
FOLDER_LAYOUT = ("an image folder with one sub-folder of images per class "
                 "(DIR/<class>/<image>), or DIR/train/<class>/<image> and optionally "
                 "DIR/test/<class>/<image> for a test split.")


def num_classes(name: str, data_dir: Optional[str] = None) -> int:
  """The number of classes of data set ``name``, without reading its images
  (an image folder: its class sub-folders, ``FOLDER_LAYOUT``)."""
  if name != "folder":
    return NUM_CLASSES
  folder = Path(os.fspath(data_dir or "")).expanduser()
  if (folder / "train").is_dir():
    folder = folder / "train"
  return len(_visible(p.name for p in folder.iterdir() if p.is_dir())) if folder.is_dir() \
      else NUM_CLASSES


def read_image_folder(data_dir):
  """Read an image folder into uint8 arrays, once (see ``FOLDER_LAYOUT``).

  Layouts: ``DIR/<class>/...`` (no test split) or ``DIR/train/<class>/...``
  with an optional ``DIR/test/<class>/...`` holding the same classes. Class
  names are the sub-folder names, sorted (label i is the i-th). A class
  folder's files are read recursively in sorted order; names starting with
  '.' (``.DS_Store``, ``.ipynb_checkpoints``) are skipped, files directly in
  DIR are ignored. Every other file must be an image that PIL reads (PNG,
  JPEG, BMP, GIF, ...; decided by content, not extension): it is converted
  to RGB (grayscale replicated, alpha dropped, palette expanded) and resized
  to 32x32 with bilinear filtering, ignoring the aspect ratio: exactly what
  ``keras.utils.load_img(path, color_mode="rgb", target_size=(32, 32),
  interpolation="bilinear")`` gives, without importing Keras (TensorFlow)
  into ``deploy.measure``. 8 bits per channel are expected.

  Returns ``((x_train, y_train), (x_test, y_test), class_names)``; images
  uint8 (N, 32, 32, 3), labels int32. Raises ``DataError`` naming the folder
  or file: a missing folder, fewer than 2 classes, a class without images (or
  with 1, none left for validation), test classes other than the training
  ones, a file that is not an image.
  """
  folder = Path(os.fspath(data_dir)).expanduser()
  if not folder.is_dir():
    raise DataError("Image folder %s does not exist. Expected %s" % (folder, FOLDER_LAYOUT))
  subdirs = _visible(p.name for p in folder.iterdir() if p.is_dir())
  train_root, test_root = folder, None
  if "train" in subdirs:
    others = [d for d in subdirs if d not in ("train", "test")]
    if others:
      raise DataError("Image folder %s holds train/ and also %s. Expected %s The validation "
                      "split is held out of train/ (seeded): merge a validation folder into "
                      "train/." % (folder, ", ".join(d + "/" for d in others), FOLDER_LAYOUT))
    train_root = folder / "train"
    test_root = folder / "test" if "test" in subdirs else None
  elif "test" in subdirs:
    raise DataError("Image folder %s holds test/ but no train/. Expected %s"
                    % (folder, FOLDER_LAYOUT))
  classes = _class_files(train_root, min_images=2)
  class_names = tuple(name for name, _ in classes)
  train = _read_classes(classes)
  if test_root is None:
    return train, (np.zeros((0,) + IMAGE_SHAPE, np.uint8), np.zeros(0, np.int32)), class_names
  test_classes = _class_files(test_root, min_images=1, expected=class_names)
  return train, _read_classes(test_classes), class_names


def _visible(names):
  return sorted(n for n in names if not n.startswith("."))


def _class_files(root: Path, min_images: int, expected=None):
  """``[(class name, [image paths])]`` of ``root``'s sub-folders, checked."""
  names = _visible(p.name for p in root.iterdir() if p.is_dir())
  if expected is not None and tuple(names) != tuple(expected):
    raise DataError("Image folder %s has classes %s; expected the training classes %s."
                    % (root, ", ".join(names) or "none", ", ".join(expected)))
  if len(names) < 2:
    raise DataError("Image folder %s has %d class folder(s)%s; a classifier needs at least 2. "
                    "Expected %s" % (root, len(names), " (%s)" % names[0] if names else "",
                                     FOLDER_LAYOUT))
  out = []
  for name in names:
    files = []
    for parent, dirs, found in os.walk(root / name):
      dirs[:] = _visible(dirs)
      files += [Path(parent) / f for f in _visible(found)]
    if len(files) < min_images:
      raise DataError("Class folder %s holds %d image(s); expected at least %d%s."
                      % (root / name, len(files), min_images,
                         " (one for training, one for validation)" if min_images == 2 else ""))
    out.append((name, files))
  return out


def _read_classes(classes):
  count = sum(len(files) for _, files in classes)
  x = np.empty((count,) + IMAGE_SHAPE, np.uint8)
  y = np.empty(count, np.int32)
  i = 0
  for label, (_, files) in enumerate(classes):
    for path in files:
      x[i], y[i] = read_image(path), label
      i += 1
  return x, y


def read_image(path) -> np.ndarray:
  """One image file as uint8 (32, 32, 3) RGB (see ``read_image_folder``)."""
  # Pillow: imported only to read image folders.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      if image.mode != "RGB":
        image = image.convert("RGB")
      size = (IMAGE_SHAPE[1], IMAGE_SHAPE[0])
      if image.size != size:
        image = image.resize(size, Image.BILINEAR)
      return np.asarray(image, dtype=np.uint8)
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many kinds)
    raise DataError("File %s is not an image that can be read (%s: %s). Expected only "
                    "image files (PNG, JPEG, ...) in class folders: remove it, or hide it "
                    "with a name starting with '.'." % (path, type(e).__name__, e)) from None


class _ForbiddenGlobal(pickle.UnpicklingError):
  """A pickle names a global that a CIFAR-10 batch never holds."""


def _allowed_globals() -> dict:
  """``{(module, name): object}``: all a CIFAR-10 python batch refers to.

  The batches are dicts of bytes, lists of ints/bytes and one uint8 array:
  the array is rebuilt by ``_reconstruct`` (named ``numpy.core.multiarray``
  by the original Python 2 files, ``numpy._core.multiarray`` by NumPy 2),
  ``ndarray`` and ``dtype``; a Python 3 protocol-2 pickle writes bytes as
  ``_codecs.encode(text, "latin1")``. Containers, ints, bytes and str are
  pickle opcodes, not globals.
  """
  reconstruct = np.zeros(0).__reduce__()[0]  # this NumPy's _reconstruct, either name
  return {("numpy.core.multiarray", "_reconstruct"): reconstruct,
          ("numpy._core.multiarray", "_reconstruct"): reconstruct,
          ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
          ("_codecs", "encode"): codecs.encode}


class _BatchUnpickler(pickle.Unpickler):
  """``pickle.Unpickler`` that resolves only ``_allowed_globals()``."""

  def find_class(self, module, name):
    found = _allowed_globals().get((module, name))
    if found is None:
      raise _ForbiddenGlobal("%s.%s" % (module, name))
    return found


def _read_batch(path: Path):
  """One pickled batch: ``data`` (N, 3072) uint8 in CHW order, ``labels``."""
  try:
    with open(path, "rb") as f:
      batch = _BatchUnpickler(f, encoding="bytes").load()
  except _ForbiddenGlobal as e:
    raise DataError("CIFAR-10 batch file %s refers to %s, which a CIFAR-10 batch never "
                    "holds; refusing to unpickle it (it could run code). Expected only "
                    "NumPy arrays, lists, dicts, bytes and str. %s"
                    % (path, e, _HOW_TO_GET)) from None
  except Exception as e:  # pylint: disable=broad-except
    raise _corrupt_batch(path, e) from e
  try:
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
        or data.shape[1] != 3072:
      raise ValueError("b'data' is %s %s" % (getattr(data, "dtype", type(data).__name__),
                                             getattr(data, "shape", "")))
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
      raise ValueError("%d images but b'labels' is %s %s"
                       % (len(data), labels.dtype, labels.shape))
  except Exception as e:  # pylint: disable=broad-except
    raise _corrupt_batch(path, e) from e
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise DataError("CIFAR-10 batch file %s has labels outside [0, %d]. %s"
                    % (path, NUM_CLASSES - 1, _HOW_TO_GET))
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def _corrupt_batch(path, e) -> DataError:
  return DataError("CIFAR-10 batch file %s is corrupt (%s: %s). Expected a pickled "
                   "dict with b'data' (N, 3072) uint8 and b'labels' (N,) integers. %s"
                   % (path, type(e).__name__, e, _HOW_TO_GET))


def check_splits(splits: Splits, min_train: int = 1) -> None:
  """Refuse a data set that no trial could train on, before any trial.

  Checks every split: uint8 images (N, 32, 32, 3), as many integer labels in
  [0, num_classes) as images, at least ``min_train`` images (e.g. the batch
  size) in the training split and one in the validation split; the test
  split may be empty (an image folder without ``test/``). Raises
  ``DataError`` naming the split and the folder read.
  """
  num_classes = splits.num_classes
  for split in ("train", "val", "test"):
    x, y = getattr(splits, "x_" + split), np.asarray(getattr(splits, "y_" + split))
    where = "Data set %r%s, %s split" % (splits.name, " (%s)" % splits.source
                                          if splits.source else "", split)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE:
      raise DataError("%s: expected uint8 images of shape (N, 32, 32, 3). Received %s %s"
                      % (where, getattr(x, "dtype", type(x).__name__), getattr(x, "shape", "")))
    if y.shape != (len(x),) or (len(y) and y.dtype.kind not in "iu"):
      raise DataError("%s: expected %d integer labels, one per image. Received %s %s"
                      % (where, len(x), y.dtype, y.shape))
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
      raise DataError("%s: expected labels in [0, %d]. Received labels in [%d, %d]"
                      % (where, num_classes - 1, y.min(), y.max()))
    needed = {"train": min_train, "val": 1, "test": 0}[split]
    if len(x) < needed:
      raise DataError("%s: expected at least %d image(s)%s. Received %d"
                      % (where, needed, " (one training batch)" if needed > 1 else "",
                         len(x)))


# -- normalization -------------------------------------------------------------
def normalize(x_uint8) -> np.ndarray:
  """``(x - MEAN) / STD`` per channel; uint8 (..., 3) -> float32, same shape."""
  x = np.asarray(x_uint8)
  if x.dtype != np.uint8 or x.ndim < 1 or x.shape[-1] != 3:
    raise errors.invalid_value("x_uint8", "a uint8 array with 3 channels last (..., 3)",
                               shown="dtype=%s shape=%s" % (x.dtype, x.shape))
  return (x.astype(np.float32) - MEAN) / STD


def normalize_tensor(x):
  """``normalize`` on a tensor of pixel values in [0, 255] (any dtype)."""
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return (tf.cast(x, tf.float32) - MEAN) / STD


# -- augmentation --------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Parameters of ``augment``; the recipes hold the numbers."""
  pad: int                      # zero-pad this many pixels, then crop 32x32
  flip: bool                    # random horizontal flip
  brightness_max_delta: float   # add U(-d, d), pixel units [0, 255]
  contrast_lower: float         # scale deviation from the image mean by
  contrast_upper: float         # U(lower, upper), per channel

  def __post_init__(self):
    if self.pad < 0 or self.brightness_max_delta < 0:
      raise ValueError("Invalid augmentation: expected pad >= 0 and "
                       "brightness_max_delta >= 0. Received %r" % (self,))
    if not 0 <= self.contrast_lower <= self.contrast_upper:
      raise ValueError("Invalid augmentation: expected 0 <= contrast_lower <= "
                       "contrast_upper. Received %r" % (self,))


def augment(image, seed, aug: Augmentation):
  """Randomly crop, flip, brighten and contrast one image.

  ``image``: float32 (32, 32, 3) in [0, 255]; ``seed``: int32/int64 shape (2,)
  stateless seed. Returns float32 (32, 32, 3) clipped to [0, 255]. Order as in
  the TensorFlow CIFAR-10 tutorial (``cifar10_input.distorted_inputs``).
  """
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  seeds = tf.random.experimental.stateless_split(seed, 4)
  shape = tf.shape(image)
  if aug.pad:
    padded = tf.pad(image, [[aug.pad, aug.pad], [aug.pad, aug.pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, seeds[0])
  if aug.flip:
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
  if aug.brightness_max_delta:
    image = tf.image.stateless_random_brightness(image, aug.brightness_max_delta, seeds[2])
  if (aug.contrast_lower, aug.contrast_upper) != (1.0, 1.0):
    image = tf.image.stateless_random_contrast(image, aug.contrast_lower,
                                               aug.contrast_upper, seeds[3])
  return tf.clip_by_value(image, 0.0, 255.0)


# -- pipelines -----------------------------------------------------------------
def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch (the remainder is dropped, a new one each epoch)."""
  steps = num_examples // batch_size
  if steps < 1:
    raise errors.invalid_value("batch_size",
                               "at most the number of training images (%d)" % (num_examples,),
                               shown="batch_size=%d" % (batch_size,))
  return steps


def train_dataset(x, y, *, batch_size: int, seed: int, augmentation: Optional[Augmentation],
                  first_epoch: int = 0, num_epochs: int = 1):
  """Shuffled, augmented, normalized batches for epochs ``first_epoch ..
  first_epoch + num_epochs - 1``, ``steps_per_epoch`` batches each.

  Epoch ``e``'s order and augmentations depend only on ``(seed, e)``, so the
  dataset for a resumed run continues the uninterrupted one exactly.
  Yields ``(float32 (B, 32, 32, 3), int32 (B,))``.
  """
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _check_images(x, y)
  n = len(x)
  per_epoch = steps_per_epoch(n, batch_size) * batch_size
  images = tf.constant(x)
  labels = tf.constant(np.asarray(y, dtype=np.int32))
  seed = int(seed)

  def epoch_indices(epoch):
    epoch_seed = tf.stack([tf.constant(2 * seed + 1, tf.int64), epoch])
    keys = tf.random.stateless_uniform([n], seed=epoch_seed)
    order = tf.argsort(keys)[:per_epoch]
    return tf.data.Dataset.from_tensor_slices(order).map(
        lambda i: (i, epoch * n + tf.cast(i, tf.int64)))

  def load_one(i, global_index):
    image = tf.cast(tf.gather(images, i), tf.float32)
    if augmentation is not None:
      image = augment(image, tf.stack([tf.constant(2 * seed, tf.int64), global_index]),
                      augmentation)
    return normalize_tensor(image), tf.gather(labels, i)

  ds = tf.data.Dataset.range(first_epoch, first_epoch + num_epochs).flat_map(epoch_indices)
  ds = ds.map(load_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(x, y, *, batch_size: int, cache: bool = True):
  """Normalized, unshuffled, unaugmented batches (last batch may be short)."""
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _check_images(x, y)
  ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y, dtype=np.int32)))
  ds = ds.batch(batch_size).map(lambda a, b: (normalize_tensor(a), b),
                                num_parallel_calls=tf.data.AUTOTUNE)
  if cache:
    ds = ds.cache()
  return ds.prefetch(tf.data.AUTOTUNE)


def _check_images(x, y):
  if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 \
      or x.shape[-1] != 3:
    raise ValueError("Invalid images. Expected a uint8 NumPy array (N, H, W, 3). "
                     "Received %s" % (getattr(x, "dtype", type(x)),) +
                     " shape=%s" % (getattr(x, "shape", None),))
  if len(x) != len(y) or len(x) == 0:
    raise ValueError("Invalid data: expected as many labels as images, at least one. "
                     "Received %d images, %d labels" % (len(x), len(y)))
