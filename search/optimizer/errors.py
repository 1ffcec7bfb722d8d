"""Argument-validation errors in Keras's form, the optimizer's own copy.

``Invalid value for argument `X`. Expected .... Received X=...``: the host
side writes it with ``tea_keras/errors.py``. The optimizer keeps these few
lines itself because it is a library usable on its own that imports nothing
else of the project (``.importlinter``, contract ``optimizer-library``);
``tests/tea_keras/errors_test.py`` checks that the copies write the same
messages.
"""

from typing import Any, Optional

# Marks "no value received" (``None`` is a value that can be invalid).
_UNSET: Any = object()


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
  """A ValueError with ``message(argument, expected, received, ...)``."""
  return ValueError(message(argument, expected, received, where=where, shown=shown))


def invalid_option(option: str, expected: str, received: Any = _UNSET, *,
                   shown: Optional[str] = None) -> ValueError:
  """A ValueError for one of a strategy's options (``options={...}``):
  ``Invalid value for option `OPTION`. Expected ...``."""
  return ValueError(message(option, expected, received, noun="option", shown=shown))
