"""The one exception family of fc2conv.

Every error raised for bad input derives from :class:`Fc2convError` and from the builtin
exception a caller would expect (``ValueError`` or ``TypeError``), so both
``except fc2conv.Fc2convError`` and ``except ValueError`` work.
"""

from __future__ import annotations

__all__ = ["ArgumentError", "DTypeError", "Fc2convError", "ShapeError"]


class Fc2convError(Exception):
    """Base class of every error fc2conv raises for bad input."""


class ShapeError(Fc2convError, ValueError):
    """An array has the wrong rank or size for the operation."""


class ArgumentError(Fc2convError, ValueError):
    """A non-array argument (stride, padding, mode, ...) has a bad value."""


class DTypeError(Fc2convError, TypeError):
    """An argument has the wrong type: not an array, or not a supported dtype."""
