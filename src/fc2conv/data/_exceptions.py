"""The errors :mod:`fc2conv.data` raises besides those of :mod:`fc2conv._errors`.

Each derives from :class:`fc2conv.Fc2convError` and from the builtin a caller would catch
(``FileNotFoundError``, ``ValueError``, ``ImportError``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .._errors import Fc2convError

__all__ = ["DataFormatError", "DatasetNotFoundError", "MissingDependencyError", "require"]


class DatasetNotFoundError(Fc2convError, FileNotFoundError):
    """A data set's files are not on this machine; the message says how to get them."""


class DataFormatError(Fc2convError, ValueError):
    """A data file is truncated, corrupted or not in the format expected."""


class MissingDependencyError(Fc2convError, ImportError):
    """An optional package a loader needs is not installed; the message says what to install."""


def require(module: str, *, package: str, purpose: str) -> ModuleType:
    """Import ``module`` lazily, or raise :class:`MissingDependencyError` naming ``package``.

    >>> require("numpy", package="numpy", purpose="this example").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {package!r}, which could not be imported "
            f"({exc}); install it with `pip install {package}` or `pip install 'fc2conv[data]'`"
        ) from exc
