"""Argument-validation errors in Keras's form, the device side's copy.

``Invalid value for argument `X`. Expected .... Received X=...``: the host
side writes it with ``tea_keras/errors.py``. The device side is copied to the
board as it is (Python 3.6, standard library + NumPy) and imports nothing
outside itself (``.importlinter``, contract ``device-side``), so it keeps
these lines itself; ``tests/tea_keras/errors_test.py`` checks that the copies
write the same messages. ``invalid_field`` words an invalid field of a file
the device reads (``cascade.json``).
"""

import json
from typing import Any, Optional

# Marks "no value received" (``None`` is a value that can be invalid).
_UNSET = object()  # type: Any


def message(name: str, expected: str, received: Any = _UNSET, *, noun: str = "argument",
            where: Optional[str] = None, shown: Optional[str] = None) -> str:
  """``Invalid value for NOUN `NAME`[ WHERE]. Expected EXPECTED. Received
  NAME=repr(received)``; arguments as ``tea_keras.errors.message``
  (``shown``: the received value in the caller's words, instead of
  ``received``; neither: the message ends after the expectation)."""
  head = "Invalid value for %s `%s`%s." % (noun, name, " " + where if where else "")
  text = "%s Expected %s" % (head, expected)
  if received is not _UNSET:
    return "%s. Received %s=%r" % (text, name, received)
  if shown is not None:
    return "%s. Received %s" % (text, shown)
  return text if text.endswith(".") else text + "."


def invalid_value(argument: str, expected: str, received: Any = _UNSET, *,
                  where: Optional[str] = None, shown: Optional[str] = None) -> ValueError:
  """A ValueError with ``message(argument, expected, received, ...)``, to
  raise: ``raise errors.invalid_value("batch_size", "a positive integer",
  batch_size)``."""
  return ValueError(message(argument, expected, received, where=where, shown=shown))


def invalid_field(path: str, field: str, expected: str, value: Any) -> str:
  """The message for field ``field`` of the JSON file ``path``:
  ``PATH: invalid `FIELD`. Expected EXPECTED. Received KEY=JSON`` (KEY: the
  field's last component, JSON: the value as JSON, cut at 100 characters)."""
  return "%s: invalid `%s`. Expected %s. Received %s=%s" % (
      path, field, expected, field.split(".")[-1], json.dumps(value)[:100])
