"""Interchangeable ways to compute the same correlation, selected with ``method=``.

Every algorithm module has the same three functions, all on the *padded* input and all exact
to float rounding against :mod:`fc2conv.functional.reference`:

- ``correlate(xp, x_pad, w, spec, method) -> (N, C_out, *S_out)``;
- ``input_grad(xp, grad_out, w, spec, method) -> (N, C_in, *S_pad)`` (the transposed
  correlation, gradient with respect to the padded input);
- ``weight_grad(xp, grad_out, x_pad, spec, method) -> (C_out, C_in // G, *K)``;

and ``unsupported(spec, method) -> str | None``, the reason it cannot run a layer (``None``
when it can). :func:`choose` picks the method for ``method="auto"``; :func:`implementation`
returns the module that runs a method.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .._errors import ArgumentError
from .select import METHODS, choose

__all__ = ["METHODS", "choose", "implementation"]


def implementation(spec, method: str) -> ModuleType:  # type: ignore[no-untyped-def]
    """The module running ``method`` for ``spec``; a clear error if it cannot."""
    module = importlib.import_module(f".{METHODS[method]}", __name__)
    reason = module.unsupported(spec, method)
    if reason is not None:
        raise ArgumentError(f"method={method!r} cannot compute this layer: {reason}")
    return module
