"""The layer protocol: parameters as named arrays, forward, and backward through the VJPs.

A :class:`Module` keeps its parameters as plain array attributes (``self.weight``), listed in
``_param_names``, and its gradients in ``self.grads`` under the same names. ``forward`` caches
what ``backward`` needs (the input); ``backward(grad_out)`` returns the gradient with respect to
the input and *adds* the parameter gradients into ``grads`` (so several backward passes
accumulate, as in PyTorch, until :meth:`Module.zero_grad`). Optimisers update the parameter
arrays in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._errors import ArgumentError, ShapeError

__all__ = ["Module", "Residual", "Sequential"]


class Module:
    """Base class of every layer: named parameters, gradients, state dicts, train/eval.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> layer = nn.Linear(3, 2, rng=0)
    >>> [(name, p.shape) for name, p in layer.named_parameters()]
    [('weight', (2, 3)), ('bias', (2,))]
    >>> y = layer(np.ones((4, 3), dtype=np.float32))
    >>> gx = layer.backward(np.ones_like(y))
    >>> layer.grads["bias"].tolist()
    [4.0, 4.0]
    """

    _param_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.training = True
        self.grads: dict[str, Any] = {}
        self._input: Any = None

    # -- to implement ------------------------------------------------------------------------

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any) -> Any:
        raise NotImplementedError

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one example's output for one example's input shape ``(C, *S)``."""
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def children(self) -> list[tuple[str, Module]]:
        """Direct sub-layers as ``(name, module)``; their parameters are ``name.param``."""
        return []

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Any]]:
        """Every parameter array (not copies) with its state-dict name, e.g. ``0.weight``."""
        named = [(prefix + name, getattr(self, name)) for name in self._param_names
                 if getattr(self, name) is not None]
        for child_name, child in self.children():
            named += child.named_parameters(f"{prefix}{child_name}.")
        return named

    def parameters(self) -> list[Any]:
        return [p for _, p in self.named_parameters()]

    def named_grads(self, prefix: str = "") -> list[tuple[str, Any]]:
        """Gradients aligned with :meth:`named_parameters` (zeros where none was computed)."""
        named = [(prefix + name, self.grads.get(name, np.zeros_like(getattr(self, name))))
                 for name in self._param_names if getattr(self, name) is not None]
        for child_name, child in self.children():
            named += child.named_grads(f"{prefix}{child_name}.")
        return named

    def zero_grad(self) -> None:
        self.grads = {}
        for _, child in self.children():
            child.zero_grad()

    def forget_inputs(self) -> None:
        """Drop the inputs cached for backward (after evaluation, to free the memory)."""
        self._input = None
        for _, child in self.children():
            child.forget_inputs()

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch-compatible names (``0.weight``, ...)."""
        return {name: np.array(p, copy=True) for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy ``state`` into the parameters; names and shapes must match exactly."""
        own = dict(self.named_parameters())
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ArgumentError(
                f"state does not match this {type(self).__name__}: missing {missing}, "
                f"unexpected {unexpected}"
            )
        for name, value in state.items():
            if tuple(value.shape) != tuple(own[name].shape):
                raise ShapeError(
                    f"state[{name!r}] has shape {tuple(value.shape)} but the parameter has "
                    f"shape {tuple(own[name].shape)}"
                )
        for name, value in state.items():
            own[name][...] = np.asarray(value, dtype=own[name].dtype)

    def _accumulate(self, name: str, grad: Any) -> None:
        if grad is None:
            return
        previous = self.grads.get(name)
        self.grads[name] = grad if previous is None else previous + grad

    def _saved_input(self) -> Any:
        if self._input is None:
            raise ArgumentError(
                f"{type(self).__name__}.backward called before forward: call the layer on an "
                "input first"
            )
        return self._input

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = self.children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            lines.append("  " + f"({name}): {child!r}".replace("\n", "\n  "))
        return "\n".join(lines + [")"])


class Sequential(Module):
    """Layers applied in order; parameters are named ``0.weight``, ``1.bias``, ... like PyTorch.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1, rng=0), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(4 * 8, 2, rng=0))
    >>> model(np.ones((5, 1, 8), dtype=np.float32)).shape
    (5, 2)
    >>> [name for name, _ in model.named_parameters()]
    ['0.weight', '0.bias', '3.weight', '3.bias']
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise ArgumentError(
                    f"Sequential takes fc2conv.nn layers; argument {i} is a {type(layer).__name__}"
                )
        self.layers = list(layers)

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out: Any) -> Any:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        for layer in self.layers:
            in_shape = layer.output_shape(in_shape)
        return in_shape

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)


class Residual(Module):
    """``y = x + body(x)``: a skip connection around ``body`` (whose output shape is x's).

    Its parameters are named like PyTorch's attribute ``body``: ``body.0.weight``, ...

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> block = nn.Residual(nn.Sequential(nn.Linear(3, 3, rng=0), nn.ReLU()))
    >>> block(np.zeros((2, 3), dtype=np.float32)).shape
    (2, 3)
    """

    def __init__(self, body: Module) -> None:
        super().__init__()
        self.body = body

    def children(self) -> list[tuple[str, Module]]:
        return [("body", self.body)]

    def forward(self, x: Any) -> Any:
        y = self.body(x)
        if tuple(y.shape) != tuple(x.shape):
            raise ShapeError(
                f"Residual: body maps x of shape {tuple(x.shape)} to shape {tuple(y.shape)}; a "
                "skip connection needs the same shape"
            )
        return x + y

    def backward(self, grad_out: Any) -> Any:
        return grad_out + self.body.backward(grad_out)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape
