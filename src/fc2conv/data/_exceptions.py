"""The errors :mod:`fc2conv.data` raises besides those of :mod:`fc2conv._errors`.

Each derives from :class:`fc2conv.Fc2convError` and from the builtin a caller would catch
(``FileNotFoundError``, ``ValueError``). ``MissingDependencyError`` and ``require`` live in
:mod:`fc2conv._errors` and are re-exported here.
"""

from __future__ import annotations

from .._errors import Fc2convError, MissingDependencyError, require

__all__ = ["DataFormatError", "DatasetNotFoundError", "MissingDependencyError", "require"]


class DatasetNotFoundError(Fc2convError, FileNotFoundError):
    """A data set's files are not on this machine; the message says how to get them."""


class DataFormatError(Fc2convError, ValueError):
    """A data file is truncated, corrupted or not in the format expected."""
