"""Writes a small image folder (``--dataset=folder``) for the tests.

Three classes with a pattern a network can tell apart at any size: a bright
disc in the middle (``disc``), horizontal stripes (``hstripes``), vertical
stripes (``vstripes``), over noise. Images have different sizes (16x16 to
75x60), and a few are stored other than as RGB PNG: ``GRAYSCALE`` (mode L),
``RGBA`` (mode RGBA) and ``JPEG``.
"""

import os

import numpy as np
from PIL import Image

CLASSES = ("disc", "hstripes", "vstripes")
GRAYSCALE = os.path.join("disc", "img_01.png")
RGBA = os.path.join("hstripes", "img_02.png")
JPEG = os.path.join("vstripes", "img_03.jpg")


def pattern(label: int, height: int, width: int, rng) -> np.ndarray:
  """uint8 (height, width, 3): class ``label``'s pattern over noise."""
  rows, cols = np.mgrid[0:height, 0:width]
  if label == 0:
    bright = (rows - height / 2) ** 2 / height ** 2 + (cols - width / 2) ** 2 / width ** 2 < 0.08
  elif label == 1:
    bright = (rows * 6 // height) % 2 == 0
  else:
    bright = (cols * 6 // width) % 2 == 0
  noise = rng.integers(0, 60, (height, width, 3))
  return (np.where(bright[..., None], 180, 20) + noise).clip(0, 255).astype(np.uint8)


def write(root, per_class: int = 24, classes=CLASSES, seed: int = 0) -> str:
  """``per_class`` images in ``root/<class>/``; returns ``root``."""
  rng = np.random.default_rng(seed)
  for label, name in enumerate(classes):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(per_class):
      height, width = 16 + (7 * i + 5 * label) % 60, 16 + (11 * i + 3 * label) % 45
      image = Image.fromarray(pattern(label % 3, height, width, rng))
      path = os.path.join(name, "img_%02d.png" % i)
      if path == GRAYSCALE:
        image = image.convert("L")
      elif path == RGBA:
        image = image.convert("RGBA")
      elif path.replace(".png", ".jpg") == JPEG:
        path = JPEG
      image.save(os.path.join(root, path))
  return root
