"""Tests of tea_keras/data.py's image folders (``load("folder", DIR)``)."""

import dataclasses
import os
import shutil

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tea_keras import data
from tests.tea_keras import image_folder

# 24 images per class: round(0.2 * 24) = 5 held out per class.
PER_CLASS, VAL_PER_CLASS = 24, 5


def _keras_pixels(path):
  """What Keras' own loader makes of an image file at the network's size."""
  import keras  # pylint: disable=g-import-not-at-top
  image = keras.utils.load_img(path, color_mode="rgb", target_size=(32, 32),
                               interpolation="bilinear")
  return keras.utils.img_to_array(image, dtype="uint8")


class FolderLoadTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = image_folder.write(os.path.join(self.get_temp_dir(), "images"), PER_CLASS)

  def test_load_folder_shapes_labels_class_names_and_split_sizes(self):
    splits = data.load("folder", self.dir, seed=0)
    self.assertEqual(splits.name, "folder")
    self.assertEqual(splits.source, self.dir)
    self.assertEqual(splits.class_names, ("disc", "hstripes", "vstripes"))
    self.assertEqual(splits.num_classes, 3)
    self.assertEqual(splits.sizes(), {"train": 3 * (PER_CLASS - VAL_PER_CLASS),
                                      "val": 3 * VAL_PER_CLASS, "test": 0})
    for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val)):
      self.assertEqual((x.dtype, x.shape[1:]), (np.uint8, (32, 32, 3)))
      self.assertEqual(y.dtype, np.int32)
    self.assertAllEqual(np.bincount(splits.y_val), [VAL_PER_CLASS] * 3)
    self.assertAllEqual(np.bincount(splits.y_train), [PER_CLASS - VAL_PER_CLASS] * 3)
    self.assertEqual(splits.x_test.shape, (0, 32, 32, 3))
    data.check_splits(splits, min_train=32)

  def test_load_folder_split_is_seeded_disjoint_and_shuffled(self):
    a, b = data.load("folder", self.dir, seed=0), data.load("folder", self.dir, seed=0)
    other = data.load("folder", self.dir, seed=1)
    self.assertAllEqual(a.x_val, b.x_val)
    self.assertNotAllEqual(a.x_val, other.x_val)
    rows = lambda x: {img.tobytes() for img in x}
    self.assertEmpty(rows(a.x_train) & rows(a.x_val))
    self.assertEqual(rows(a.x_train) | rows(a.x_val), rows(other.x_train) | rows(other.x_val))
    # Not grouped by class: a prefix (--train_images, --measure_images) holds every class.
    self.assertLen(set(a.y_train[:12]), 3)
    self.assertLen(set(a.y_val[:6]), 3)

  def test_read_image_folder_pixels_are_keras_load_img(self):
    (x, y), _, names = data.read_image_folder(self.dir)
    files = {name: sorted(os.listdir(os.path.join(self.dir, name))) for name in names}
    for rel in (image_folder.GRAYSCALE, image_folder.RGBA, image_folder.JPEG,
                os.path.join("vstripes", "img_10.png")):
      name, base = os.path.split(rel)
      index = names.index(name) * PER_CLASS + files[name].index(base)
      self.assertEqual(y[index], names.index(name))
      self.assertAllEqual(x[index], _keras_pixels(os.path.join(self.dir, rel)))
    gray = x[names.index("disc") * PER_CLASS + files["disc"].index("img_01.png")]
    self.assertAllEqual(gray[..., 0], gray[..., 1])
    self.assertAllEqual(gray[..., 0], gray[..., 2])

  def test_load_folder_train_test_layout(self):
    root = os.path.join(self.get_temp_dir(), "split")
    shutil.copytree(self.dir, os.path.join(root, "train"))
    image_folder.write(os.path.join(root, "test"), per_class=4, seed=1)
    splits = data.load("folder", root, seed=0)
    self.assertEqual(splits.class_names, image_folder.CLASSES)
    self.assertEqual(splits.sizes(), {"train": 57, "val": 15, "test": 12})
    self.assertAllEqual(np.bincount(splits.y_test), [4, 4, 4])
    data.check_splits(splits)

  def test_load_folder_skips_hidden_files_and_folders(self):
    with open(os.path.join(self.dir, "disc", ".DS_Store"), "wb") as f:
      f.write(b"\0not an image")
    os.makedirs(os.path.join(self.dir, ".ipynb_checkpoints"))
    with open(os.path.join(self.dir, "README.txt"), "w") as f:  # beside the classes: ignored
      f.write("my data")
    splits = data.load("folder", self.dir)
    self.assertEqual(splits.class_names, image_folder.CLASSES)
    self.assertEqual(len(splits.y_train) + len(splits.y_val), 3 * PER_CLASS)

  def test_folder_validation_pipeline_is_deployment_normalization(self):
    # What the search validates on (the tf.data pipeline) is what deployment is
    # given (data.normalize): the same fixed per-channel constants as CIFAR-10.
    splits = data.load("folder", self.dir)
    batches = [x for x, _ in data.eval_dataset(splits.x_val, splits.y_val, batch_size=8)]
    normalized = data.normalize(splits.x_val)
    self.assertAllClose(np.concatenate(batches), normalized, rtol=1e-6, atol=1e-6)
    pixels = splits.x_val.reshape(-1, 3).astype(np.float64)
    self.assertAllClose(normalized.reshape(-1, 3), (pixels - [125.307, 122.950, 113.865])
                        / [62.993, 62.089, 66.705], rtol=1e-5, atol=1e-5)


class FolderErrorTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = image_folder.write(os.path.join(self.get_temp_dir(), "images"), per_class=3)

  def _assert_refused(self, pattern, data_dir=None):
    with self.assertRaisesRegex(data.DataError, pattern):
      data.load("folder", data_dir or self.dir)

  def test_load_folder_refuses_a_missing_folder(self):
    missing = os.path.join(self.dir, "nope")
    self._assert_refused("Image folder %s does not exist. Expected an image folder with one "
                         "sub-folder of images per class" % missing, missing)

  def test_load_folder_refuses_fewer_than_two_classes(self):
    shutil.rmtree(os.path.join(self.dir, "hstripes"))
    shutil.rmtree(os.path.join(self.dir, "vstripes"))
    self._assert_refused("Image folder %s has 1 class folder\\(s\\) \\(disc\\); a classifier "
                         "needs at least 2" % self.dir)

  def test_load_folder_refuses_an_empty_class(self):
    os.makedirs(os.path.join(self.dir, "zebra"))
    self._assert_refused("Class folder %s/zebra holds 0 image\\(s\\); expected at least 2"
                         % self.dir)

  def test_load_folder_refuses_a_class_with_nothing_to_validate_on(self):
    for name in ("img_01.png", "img_02.png"):
      os.remove(os.path.join(self.dir, "disc", name))
    self._assert_refused("Class folder %s/disc holds 1 image\\(s\\); expected at least 2 "
                         "\\(one for training, one for validation\\)" % self.dir)

  @parameterized.named_parameters(("text", "notes.txt", b"my labels"),
                                  ("truncated_png", "broken.png", b"\x89PNG\r\n\x1a\n\0\0"))
  def test_load_folder_refuses_a_file_that_is_not_an_image_naming_it(self, name, content):
    path = os.path.join(self.dir, "hstripes", name)
    with open(path, "wb") as f:
      f.write(content)
    self._assert_refused("File %s is not an image that can be read" % path)

  def test_load_folder_refuses_test_classes_other_than_training_ones(self):
    root = os.path.join(self.get_temp_dir(), "split")
    shutil.copytree(self.dir, os.path.join(root, "train"))
    image_folder.write(os.path.join(root, "test"), per_class=2, classes=("disc", "hstripes"))
    self._assert_refused("Image folder %s/test has classes disc, hstripes; expected the "
                         "training classes disc, hstripes, vstripes" % root, root)

  def test_load_folder_refuses_other_folders_beside_train(self):
    root = os.path.join(self.get_temp_dir(), "split")
    shutil.copytree(self.dir, os.path.join(root, "train"))
    shutil.copytree(self.dir, os.path.join(root, "val"))
    self._assert_refused("Image folder %s holds train/ and also val/" % root, root)

  def test_load_folder_requires_data_dir(self):
    with self.assertRaisesRegex(ValueError, "Invalid value for argument `data_dir`: the data "
                                "set 'folder' reads your images from data_dir"):
      data.load("folder")

  def test_check_splits_refuses_a_folder_smaller_than_a_batch_naming_it(self):
    splits = data.load("folder", self.dir)  # 2 training images per class
    with self.assertRaisesRegex(data.DataError, "Data set 'folder' \\(%s\\), train split: "
                                "expected at least 32 image\\(s\\) \\(one training batch\\). "
                                "Received 6" % self.dir):
      data.check_splits(splits, min_train=32)

  def test_check_splits_refuses_labels_beyond_the_folders_classes(self):
    splits = data.load("folder", self.dir)
    y = splits.y_val.copy()
    y[0] = 3
    with self.assertRaisesRegex(data.DataError, "val split: expected labels in \\[0, 2\\]"):
      data.check_splits(dataclasses.replace(splits, y_val=y))


if __name__ == "__main__":
  tf.test.main()
