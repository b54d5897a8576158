"""Interchangeable ways to compute the same correlation (selected with ``method=``)."""

from .select import choose

__all__ = ["choose"]
