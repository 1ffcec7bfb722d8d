"""Image files the device side reads: float32 normalized NHWC images in
``.npy`` / ``.npz`` (written on the host by ``python -m deploy.measure
--write_data`` / ``--write_calibration``)."""

import hashlib
import json
import os
from typing import Any, Optional

import numpy as np


def images_sha256(images: Any, with_shape: bool = False) -> str:
  """sha256 hex of the images' float32 C-order bytes: what names a set of
  images between the host and an agent (``data_sha256`` in its health
  answer, ``images_sha256`` in a result). ``with_shape``: the shape (JSON)
  hashed first, as the TensorRT engine cache keys int8 calibration images."""
  array = np.ascontiguousarray(images, np.float32)
  digest = hashlib.sha256()
  if with_shape:
    digest.update(json.dumps(list(array.shape)).encode("utf-8"))
  digest.update(array.tobytes())
  return digest.hexdigest()


def load_data(path: str, num_images: Optional[int] = None) -> np.ndarray:
  """float32 NHWC normalized images from ``.npy`` / ``.npz`` (``images``)."""
  if not os.path.exists(path):
    raise ValueError("Data file %r does not exist." % (path,))
  data = np.load(path)
  if hasattr(data, "files"):
    if "images" not in data.files:
      raise ValueError("%s: expected an `images` array, found %s." % (path, data.files))
    data = data["images"]
  if data.dtype != np.float32 or data.ndim != 4:
    raise ValueError("%s: expected float32 normalized NHWC images, found %s %s. Write "
                     "them on the host with python -m deploy.measure --write_data=FILE."
                     % (path, data.dtype, data.shape))
  if num_images:
    data = data[:int(num_images)]
  return data
