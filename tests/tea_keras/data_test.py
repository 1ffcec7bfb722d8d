"""Tests of tea_keras/data.py: loading, the split, normalization, the tf.data pipelines."""

import dataclasses
import os
import pickle
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tea_keras import data

AUG = data.Augmentation(pad=4, flip=True, brightness_max_delta=63.0, contrast_lower=0.2,
                        contrast_upper=1.8)


def _write_batches_folder(root, images, labels, per_file, numpy_1_names=False):
  """A cifar-10-batches-py folder in the real pickle format (bytes keys, CHW rows).

  ``numpy_1_names``: name the array reconstructor ``numpy.core.multiarray``
  as the original (Python 2, NumPy 1) files do, not NumPy 2's ``numpy._core``.
  """
  folder = os.path.join(root, data.BATCHES_FOLDER)
  os.makedirs(folder)
  names = data.TRAIN_FILES + (data.TEST_FILE,)
  for k, name in enumerate(names):
    x = images[k * per_file:(k + 1) * per_file]
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    batch = {b"batch_label": name.encode(), b"data": rows,
             b"labels": [int(v) for v in labels[k * per_file:(k + 1) * per_file]],
             b"filenames": [b"%d.png" % i for i in range(len(x))]}
    raw = pickle.dumps(batch, protocol=2)  # GLOBAL opcodes: "c<module>\n<name>\n"
    if numpy_1_names:
      raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
      assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    with open(os.path.join(folder, name), "wb") as f:
      f.write(raw)
  return folder


class _RunsCode:
  """Unpickling this runs ``function(*args)`` (what a crafted batch does)."""

  def __init__(self, function, *args):
    self.function, self.args = function, args

  def __reduce__(self):
    return self.function, self.args


class LoadTest(tf.test.TestCase, parameterized.TestCase):

  def test_load_sample_split_sizes_and_disjoint(self):
    splits = data.load("cifar10_sample", seed=0)
    self.assertEqual(splits.sizes(), {"train": 4577, "val": 508, "test": 1017})
    self.assertEqual(splits.name, "cifar10_sample")
    self.assertEqual(splits.x_train.dtype, np.uint8)
    self.assertEqual(splits.x_train.shape[1:], (32, 32, 3))
    self.assertEqual(splits.y_val.dtype, np.int32)
    # The first test labels of CIFAR-10 (provenance note): cat, ship, ship, airplane.
    self.assertAllEqual(splits.y_test[:4], [3, 8, 8, 0])
    train = {x.tobytes() for x in splits.x_train}
    self.assertEmpty([x for x in splits.x_val if x.tobytes() in train])

  def test_load_split_is_seeded(self):
    a, b, c = (data.load("cifar10_sample", seed=s) for s in (0, 0, 1))
    self.assertAllEqual(a.x_val, b.x_val)
    self.assertNotAllEqual(a.y_val, c.y_val)
    self.assertAllEqual(a.x_test, c.x_test)

  def test_split_validation_fraction_of_paper(self):
    x = np.zeros((50000, 1, 1, 3), np.uint8)
    (x_tr, _), (x_val, _) = data.split_validation(x, np.zeros(50000), seed=3)
    self.assertEqual((len(x_tr), len(x_val)), (45000, 5000))

  def test_load_unknown_name_raises(self):
    with self.assertRaisesRegex(ValueError, "Expected one of cifar10, cifar10_sample"):
      data.load("mnist")

  def test_load_sample_rejects_data_dir(self):
    with self.assertRaisesRegex(ValueError, "takes no data_dir"):
      data.load("cifar10_sample", data_dir=self.get_temp_dir())

  @parameterized.parameters(False, True)
  def test_load_data_dir_reads_real_pickle_format(self, numpy_1_names):
    sample = np.load(data.SAMPLE_PATH)
    images, labels = sample["x_train"][:60], sample["y_train"][:60]
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    folder = _write_batches_folder(root, images, labels, per_file=10,
                                   numpy_1_names=numpy_1_names)
    (x_tr, y_tr), (x_te, y_te) = data.read_batches_folder(folder)
    self.assertAllEqual(x_tr, images[:50])
    self.assertAllEqual(y_tr, labels[:50])
    self.assertAllEqual(x_te, images[50:])
    self.assertAllEqual(y_te, labels[50:])
    splits = data.load("cifar10", data_dir=root, seed=0)  # the parent works too
    self.assertEqual(splits.sizes(), {"train": 45, "val": 5, "test": 10})
    self.assertEqual(splits.name, "cifar10")

  def test_load_missing_folder_names_path_and_files(self):
    missing = os.path.join(self.get_temp_dir(), "nowhere")
    with self.assertRaisesRegex(data.DataError, "nowhere does not exist.*data_batch_1.*"
                                "test_batch.*cifar.html"):
      data.load("cifar10", data_dir=missing)

  def test_load_folder_missing_file_names_it(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    folder = _write_batches_folder(root, np.zeros((60, 32, 32, 3), np.uint8),
                                   np.zeros(60), per_file=10)
    os.remove(os.path.join(folder, "data_batch_3"))
    with self.assertRaisesRegex(data.DataError, "lacks data_batch_3"):
      data.load("cifar10", data_dir=folder)

  def test_load_corrupt_file_names_it(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    folder = _write_batches_folder(root, np.zeros((60, 32, 32, 3), np.uint8),
                                   np.zeros(60), per_file=10)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
      f.write(b"not a pickle")
    with self.assertRaisesRegex(data.DataError, "test_batch is corrupt.*b'data'"):
      data.load("cifar10", data_dir=folder)

  # Protocol 2 writes Python 2's names: posix.system, __builtin__.exec.
  @parameterized.named_parameters(("os_system", os.system, "posix.system"),
                                  ("builtins_exec", exec, "__builtin__.exec"))
  def test_load_refuses_crafted_pickle_without_running_it(self, function, name):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    folder = _write_batches_folder(root, np.zeros((60, 32, 32, 3), np.uint8),
                                   np.zeros(60), per_file=10)
    marker = os.path.join(root, "ran")
    code = ("touch " + marker) if function is os.system else "open(%r, 'w').close()" % marker
    with open(os.path.join(folder, "data_batch_2"), "wb") as f:
      pickle.dump({b"data": _RunsCode(function, code), b"labels": []}, f, protocol=2)
    with self.assertRaisesRegex(data.DataError, "data_batch_2 refers to %s, which a CIFAR-10 "
                                "batch never holds; refusing" % name):
      data.load("cifar10", data_dir=folder)
    self.assertFalse(os.path.exists(marker))

  def test_load_refuses_batch_of_float_pixels(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    folder = _write_batches_folder(root, np.zeros((60, 32, 32, 3), np.uint8),
                                   np.zeros(60), per_file=10)
    with open(os.path.join(folder, "data_batch_1"), "wb") as f:
      pickle.dump({b"data": np.zeros((10, 3072)), b"labels": [0] * 10}, f, protocol=2)
    with self.assertRaisesRegex(data.DataError, "data_batch_1 is corrupt.*b'data' is float64"):
      data.load("cifar10", data_dir=folder)


class CheckSplitsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.splits = data.load("cifar10_sample", seed=0)

  def test_check_splits_accepts_the_sample(self):
    data.check_splits(self.splits, min_train=32)

  def test_check_splits_refuses_labels_out_of_range(self):
    y = self.splits.y_val.copy()
    y[3] = 10
    with self.assertRaisesRegex(data.DataError, "val split: expected labels in \\[0, 9\\]. "
                                "Received labels in \\[0, 10\\]"):
      data.check_splits(dataclasses.replace(self.splits, y_val=y))

  def test_check_splits_refuses_wrong_dtype_or_shape(self):
    with self.assertRaisesRegex(data.DataError, "train split: expected uint8 images of shape "
                                "\\(N, 32, 32, 3\\). Received float32"):
      data.check_splits(dataclasses.replace(
          self.splits, x_train=self.splits.x_train.astype(np.float32)))
    with self.assertRaisesRegex(data.DataError, "test split: expected 1017 integer labels"):
      data.check_splits(dataclasses.replace(self.splits, y_test=self.splits.y_test[:5]))

  def test_check_splits_refuses_fewer_training_images_than_a_batch(self):
    few = dataclasses.replace(self.splits, x_train=self.splits.x_train[:20],
                              y_train=self.splits.y_train[:20])
    with self.assertRaisesRegex(data.DataError, "expected at least 32 image\\(s\\) \\(one "
                                "training batch\\). Received 20"):
      data.check_splits(few, min_train=32)


class NormalizeTest(tf.test.TestCase):

  def test_normalize_per_channel_constants(self):
    x = np.stack([np.full((2, 2), v, np.uint8) for v in (0, 128, 255)], axis=-1)
    out = data.normalize(x)
    self.assertEqual(out.dtype, np.float32)
    expected = (np.array([0, 128, 255], np.float64) - data.MEAN) / data.STD
    self.assertAllClose(out[0, 0], expected, rtol=1e-6)

  def test_normalize_sample_is_roughly_standard(self):
    out = data.normalize(np.load(data.SAMPLE_PATH)["x_train"])
    self.assertAllClose(out.reshape(-1, 3).mean(0), np.zeros(3), atol=0.03)
    self.assertAllClose(out.reshape(-1, 3).std(0), np.ones(3), atol=0.03)

  def test_normalize_tensor_matches_numpy(self):
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    self.assertAllClose(data.normalize_tensor(x), data.normalize(x), rtol=1e-6, atol=1e-6)

  def test_normalize_rejects_floats(self):
    with self.assertRaisesRegex(ValueError, "Expected a uint8 array.*float32"):
      data.normalize(np.zeros((2, 32, 32, 3), np.float32))


class AugmentTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.image = tf.constant(np.load(data.SAMPLE_PATH)["x_train"][7], tf.float32)

  def test_augment_keeps_shape_dtype_and_range(self):
    for i in range(20):
      out = data.augment(self.image, tf.constant([5, i], tf.int64), AUG)
      self.assertEqual(out.shape, (32, 32, 3))
      self.assertEqual(out.dtype, tf.float32)
      self.assertBetween(float(tf.reduce_min(out)), 0.0, 255.0)
      self.assertBetween(float(tf.reduce_max(out)), 0.0, 255.0)

  def test_augment_deterministic_under_seed(self):
    a = data.augment(self.image, tf.constant([1, 2], tf.int64), AUG)
    b = data.augment(self.image, tf.constant([1, 2], tf.int64), AUG)
    c = data.augment(self.image, tf.constant([1, 3], tf.int64), AUG)
    self.assertAllEqual(a, b)
    self.assertNotAllClose(a, c)

  def test_augment_crop_only_is_a_shift_of_the_padded_image(self):
    crop = data.Augmentation(pad=4, flip=False, brightness_max_delta=0.0,
                             contrast_lower=1.0, contrast_upper=1.0)
    out = data.augment(self.image, tf.constant([0, 9], tf.int64), crop).numpy()
    padded = np.pad(self.image.numpy(), ((4, 4), (4, 4), (0, 0)))
    shifts = [(i, j) for i in range(9) for j in range(9)
              if np.array_equal(padded[i:i + 32, j:j + 32], out)]
    self.assertNotEmpty(shifts)

  def test_augmentation_rejects_bad_contrast(self):
    with self.assertRaisesRegex(ValueError, "contrast_lower <= contrast_upper"):
      data.Augmentation(pad=4, flip=True, brightness_max_delta=1.0, contrast_lower=2.0,
                        contrast_upper=1.0)


class PipelineTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    sample = np.load(data.SAMPLE_PATH)
    self.x, self.y = sample["x_train"][:100], sample["y_train"][:100].astype(np.int32)

  def _batches(self, **kwargs):
    ds = data.train_dataset(self.x, self.y, batch_size=16, seed=4, **kwargs)
    return [(a.numpy(), b.numpy()) for a, b in ds]

  def test_train_dataset_shapes_and_steps(self):
    batches = self._batches(augmentation=AUG, num_epochs=2)
    self.assertLen(batches, 2 * (100 // 16))
    self.assertEqual(batches[0][0].shape, (16, 32, 32, 3))
    self.assertEqual(batches[0][0].dtype, np.float32)
    low, high = data.normalize(np.array([0, 255], np.uint8).repeat(3).reshape(2, 3))
    values = np.concatenate([b[0] for b in batches]).reshape(-1, 3)
    self.assertAllGreaterEqual(values - low, -1e-5)
    self.assertAllLessEqual(values - high, 1e-5)

  def test_train_dataset_deterministic_and_resumable(self):
    full = self._batches(augmentation=AUG, num_epochs=3)
    again = self._batches(augmentation=AUG, num_epochs=3)
    resumed = self._batches(augmentation=AUG, first_epoch=2, num_epochs=1)
    for (a, b), (c, d) in zip(full, again):
      self.assertAllEqual(a, c)
      self.assertAllEqual(b, d)
    for (a, b), (c, d) in zip(full[12:], resumed):
      self.assertAllEqual(a, c)
      self.assertAllEqual(b, d)

  def test_train_dataset_epoch_is_a_permutation(self):
    batches = self._batches(augmentation=None, num_epochs=2)
    index = {img.tobytes(): i for i, img in enumerate(self.x)}
    pixels = lambda a: np.round(a * data.STD + data.MEAN).astype(np.uint8).tobytes()
    epochs = []
    for e in range(2):
      seen = [index[pixels(img)] for a, _ in batches[6 * e:6 * e + 6] for img in a]
      self.assertLen(set(seen), 96)  # no repeats; 4 left out of each epoch
      self.assertAllEqual(np.concatenate([b for _, b in batches[6 * e:6 * e + 6]]),
                          self.y[seen])
      epochs.append(seen)
    self.assertNotEqual(epochs[0], epochs[1])

  def test_eval_dataset_is_normalize_in_order(self):
    ds = data.eval_dataset(self.x, self.y, batch_size=32)
    xs = np.concatenate([a.numpy() for a, _ in ds])
    ys = np.concatenate([b.numpy() for _, b in ds])
    self.assertAllClose(xs, data.normalize(self.x), atol=1e-6)
    self.assertAllEqual(ys, self.y)

  def test_steps_per_epoch_rejects_big_batch(self):
    with self.assertRaisesRegex(ValueError, "at most the number of training images"):
      data.steps_per_epoch(10, 32)


if __name__ == "__main__":
  tf.test.main()
