"""The one exception family of fc2conv.

Every error raised for bad input derives from :class:`Fc2convError` and from the builtin
exception a caller would expect (``ValueError`` or ``TypeError``), so both
``except fc2conv.Fc2convError`` and ``except ValueError`` work.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "ArgumentError",
    "DTypeError",
    "Fc2convError",
    "MissingDependencyError",
    "ShapeError",
    "require",
]


class Fc2convError(Exception):
    """Base class of every error fc2conv raises for bad input."""


class ShapeError(Fc2convError, ValueError):
    """An array has the wrong rank or size for the operation."""


class ArgumentError(Fc2convError, ValueError):
    """A non-array argument (stride, padding, mode, ...) has a bad value."""


class DTypeError(Fc2convError, TypeError):
    """An argument has the wrong type: not an array, or not a supported dtype."""


class MissingDependencyError(Fc2convError, ImportError):
    """An optional package is not installed; the message says what to install."""


def require(module: str, *, package: str, purpose: str, extra: str = "data") -> ModuleType:
    """Import ``module`` lazily, or raise :class:`MissingDependencyError` naming ``package``
    and the fc2conv extra that installs it.

    >>> require("numpy", package="numpy", purpose="this example").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {package!r}, which could not be imported "
            f"({exc}); install it with `pip install {package}` or "
            f"`pip install 'fc2conv[{extra}]'`"
        ) from exc
