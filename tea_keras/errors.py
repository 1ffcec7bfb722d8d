"""Argument-validation errors in one form, Keras's (CONVENTIONS.md, "Errors say
what was expected")::

  raise errors.invalid_value("filters", "an integer >= 2", filters)
  # ValueError: Invalid value for argument `filters`. Expected an integer >= 2.
  #             Received filters=0

This is the host side's home for that message, imported by ``tea_keras``,
host-side ``deploy`` and ``search``. Two packages keep a copy of these few
lines instead of importing this one, each because of a layout rule
(``.importlinter``):

* ``deploy/device/errors.py``: the device side is copied to the board as it is
  (Python 3.6, standard library + NumPy) and imports nothing outside itself.
* ``search/optimizer/errors.py``: the optimizer is a library usable on its own
  and imports nothing else of the project.

``tests/tea_keras/errors_test.py`` checks that the three copies write the same
messages.
"""

from typing import Any, Optional

# Marks "no value received" (``None`` is a value that can be invalid).
_UNSET: Any = object()


def message(name: str, expected: str, received: Any = _UNSET, *, noun: str = "argument",
            where: Optional[str] = None, shown: Optional[str] = None) -> str:
  """The message: ``Invalid value for NOUN `NAME`[ WHERE]. Expected EXPECTED.
  Received NAME=repr(received)``.

  Args:
    name: the argument (setting, option, flag) that is invalid.
    expected: what it should be, a phrase without the final period ("an
      integer >= 2", "one of a|b").
    received: the value received, shown as ``name=repr(received)``.
    noun: what ``name`` is: "argument", "option", "flag", ...
    where: a qualifier after the name ("with runtime=keras").
    shown: the received value as the caller words it ("shape (3, 4)"), when
      ``name=repr(received)`` does not say it; instead of ``received``.

  Without ``received`` or ``shown`` the message ends after the expectation.
  """
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
  raise: ``raise invalid_value("stride", "1 or 2", stride)``."""
  return ValueError(message(argument, expected, received, where=where, shown=shown))

