"""The one user-error type of atrous.

A :class:`UserError` is a bad file, a bad configuration value or a bad argument: something the
user gave and can fix. Its message is one line that names the file, key or argument and says what
was expected; the ``atrous`` command prints it as ``atrous CMD: error: MESSAGE`` and exits with 2.
Every other exception is a bug and keeps its traceback.

The subclasses keep the built-in type a caller may already catch: :class:`MissingFile` is also a
``FileNotFoundError``, :class:`UnknownName` also a ``KeyError`` (the smp convention for an unknown
model name) but prints without KeyError's quotes.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: a file, a configuration value or an argument."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownName(UserError, KeyError):
    """An unknown registered name (model, recipe, backend); the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WeightsError(UserError):
    """A weights file that cannot be read, holds code, or does not fit the model it is loaded
    into. ``report`` is the :class:`atrous.weights.LoadReport` of a mismatch, when there is one."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
