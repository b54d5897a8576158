"""Optimisers with ``torch.optim``'s update rules, updating a model's parameter arrays in place.

An optimiser holds the :class:`~fc2conv.nn.Module` itself, not a list of arrays: every
:meth:`Optimizer.step` reads ``module.named_parameters()`` and ``module.named_grads()`` afresh,
so the gradients of the latest ``backward`` are used and the parameters are updated in place
(any reference to ``layer.weight`` sees the new values). The gradients are only read.

The arithmetic follows torch's single-tensor (CPU) implementations term by term, so a model and
its PyTorch twin driven by the same gradients stay equal to rounding. One difference: a
parameter that received no gradient counts as having a zero gradient (``named_grads`` fills in
zeros), so weight decay and momentum still move it, where ``torch.optim`` skips a parameter
whose ``.grad`` is ``None``.

:meth:`Optimizer.state_dict` is a flat ``dict[str, numpy.ndarray]`` that safetensors can store:
``"step"`` (0-d int64), ``"lr"`` (0-d float64) and one array per parameter and buffer, named
``"<parameter>.<buffer>"`` (``"0.weight.momentum_buffer"``, ``"0.weight.exp_avg"``, ...).
Loading it into a fresh optimiser resumes training bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .._errors import ArgumentError, DTypeError, ShapeError
from ..nn._module import Module

__all__ = ["SGD", "Adam", "AdamW", "Optimizer"]


def _real(name: str, value: Any, *, minimum: float | None = 0.0) -> float:
    """A finite real number, at least ``minimum`` (unless ``None``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ArgumentError(f"{name} must be finite; got {value!r}")
    if minimum is not None and value < minimum:
        raise ArgumentError(f"{name} must be >= {minimum:g}; got {value!r}")
    return value


def _copy(a: Any) -> Any:
    return array_api_compat.array_namespace(a).asarray(a, copy=True)


def _lerp_(start: Any, end: Any, weight: float) -> None:
    """``start += weight * (end - start)`` in place, in torch's two-branch form."""
    # torch evaluates lerp from whichever end is nearer to the weight, so a weight near 1
    # lands exactly on ``end``; copying the branch keeps us within an ulp of torch.
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1.0 - weight)


class Optimizer:
    """Base class: the module, the learning rate, the step count and per-parameter buffers.

    Subclasses define :attr:`_buffer_names` and :meth:`_update`. ``lr`` may be reassigned
    between steps (learning-rate schedules); ``step_count`` is the number of steps taken.
    ``state[name]`` maps a parameter's state-dict name to its buffers.
    """

    def __init__(self, params: Module, lr: float) -> None:
        if not isinstance(params, Module):
            raise DTypeError(
                f"params must be an fc2conv.nn Module (pass the model itself, not "
                f"model.parameters()); got {type(params).__name__}"
            )
        self.module = params
        self._names = [name for name, _ in params.named_parameters()]
        if not self._names:
            raise ArgumentError(f"params ({type(params).__name__}) has no parameters to optimise")
        self.lr = lr
        self.step_count = 0
        self.state: dict[str, dict[str, Any]] = {name: {} for name in self._names}

    @property
    def lr(self) -> float:
        """The learning rate of the next step; assign a new value to schedule it."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _real("lr", value)

    # -- to implement ------------------------------------------------------------------------

    def _buffer_names(self) -> tuple[str, ...]:
        """Buffers every parameter holds once a step has been taken."""
        raise NotImplementedError

    def _update(self, param: Any, grad: Any, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------

    def zero_grad(self) -> None:
        """Clear the module's gradients (``module.zero_grad()``) before the next backward."""
        self.module.zero_grad()

    def step(self) -> None:
        """Update every parameter in place from its current gradient."""
        params = self.module.named_parameters()
        grads = self.module.named_grads()
        names = [name for name, _ in params]
        if names != self._names:
            raise ArgumentError(
                f"the module's parameters changed since the optimiser was built: had "
                f"{self._names}, now {names}"
            )
        for (name, param), (_, grad) in zip(params, grads):
            if tuple(grad.shape) != tuple(param.shape):
                raise ShapeError(
                    f"gradient of {name!r} has shape {tuple(grad.shape)} but the parameter has "
                    f"shape {tuple(param.shape)}"
                )
        self.step_count += 1
        for (name, param), (_, grad) in zip(params, grads):
            self._update(param, grad, self.state[name])

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the step count, ``lr`` and every buffer as a flat dict of NumPy arrays."""
        out = {"step": np.asarray(self.step_count, dtype=np.int64),
               "lr": np.asarray(self.lr, dtype=np.float64)}
        for name in self._names:
            for key, buffer in self.state[name].items():
                out[f"{name}.{key}"] = np.array(buffer, copy=True)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (copied, cast to each parameter's dtype).

        The keys must be exactly those this optimiser would save after ``state["step"]`` steps;
        nothing changes unless the whole ``state`` is valid.
        """
        if "step" not in state:
            raise ArgumentError(f"state has no 'step' entry; got keys {sorted(state)}")
        raw_step = np.asarray(state["step"])
        if (raw_step.shape != () or not np.issubdtype(raw_step.dtype, np.integer)
                or int(raw_step) < 0):
            raise ArgumentError(
                f"state['step'] must be a non-negative 0-d integer array; got {state['step']!r}"
            )
        step = int(raw_step)
        buffers = self._buffer_names() if step > 0 else ()
        expected = {"step", "lr"} | {f"{n}.{b}" for n in self._names for b in buffers}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ArgumentError(
                f"state does not match this {type(self).__name__} after {step} steps: missing "
                f"{missing}, unexpected {unexpected}"
            )
        lr = _real("state['lr']", np.asarray(state["lr"]).item())
        params = dict(self.module.named_parameters())
        restored: dict[str, dict[str, Any]] = {name: {} for name in self._names}
        for name in self._names:
            param = params[name]
            xp = array_api_compat.array_namespace(param)
            for b in buffers:
                value = np.asarray(state[f"{name}.{b}"])
                if tuple(value.shape) != tuple(param.shape):
                    raise ShapeError(
                        f"state[{name + '.' + b!r}] has shape {tuple(value.shape)} but the "
                        f"parameter has shape {tuple(param.shape)}"
                    )
                restored[name][b] = xp.asarray(np.array(value, dtype=param.dtype))
        self.step_count, self.lr, self.state = step, lr, restored

    def _hyper_repr(self) -> str:
        return f"lr={self.lr!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._hyper_repr()})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    With ``g`` the gradient, ``p`` the parameter and ``b`` the momentum buffer::

        g = g + weight_decay * p                        (L2 penalty, if weight_decay)
        b = g  (first step)  or  momentum * b + (1 - dampening) * g
        g = g + momentum * b  (nesterov)  or  b         (if momentum)
        p = p - lr * g

    ``params`` is the model (an ``fc2conv.nn`` Module). ``nesterov`` needs ``momentum > 0``
    and ``dampening == 0``.

    >>> import numpy as np
    >>> from fc2conv import nn, train
    >>> layer = nn.Linear(2, 1, rng=0)
    >>> layer.weight[...] = 1.0
    >>> opt = train.SGD(layer, lr=0.1, momentum=0.9)
    >>> layer.grads = {"weight": np.ones((1, 2), np.float32), "bias": np.ones(1, np.float32)}
    >>> opt.step(); opt.step()
    >>> layer.weight.tolist()    # 1 - 0.1 * 1, then - 0.1 * (0.9 * 1 + 1)
    [[0.71, 0.71]]
    """

    def __init__(self, params: Module, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr)
        self.momentum = _real("momentum", momentum)
        self.dampening = _real("dampening", dampening, minimum=None)
        self.weight_decay = _real("weight_decay", weight_decay)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ArgumentError(f"nesterov must be True or False; got {nesterov!r}")
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ArgumentError(
                f"nesterov=True needs momentum > 0 and dampening == 0; got "
                f"momentum={momentum!r}, dampening={dampening!r}"
            )
        self.nesterov = bool(nesterov)

    def _buffer_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _update(self, param: Any, grad: Any, state: dict[str, Any]) -> None:
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * param
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = _copy(grad)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        param -= self.lr * grad

    def _hyper_repr(self) -> str:
        return (f"lr={self.lr!r}, momentum={self.momentum!r}, dampening={self.dampening!r}, "
                f"weight_decay={self.weight_decay!r}, nesterov={self.nesterov!r}")


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient, as ``torch.optim.Adam``.

    At step ``t`` (from 1), with ``m``, ``v`` the first and second moment buffers::

        g = g + weight_decay * p                        (if weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``betas`` must lie in ``[0, 1)``. For decoupled weight decay use :class:`AdamW`.

    >>> import numpy as np
    >>> from fc2conv import nn, train
    >>> layer = nn.Linear(2, 1, rng=0)
    >>> before = layer.weight.copy()
    >>> opt = train.Adam(layer, lr=0.01)
    >>> layer.grads = {"weight": np.array([[3.0, -0.5]], np.float32),
    ...                "bias": np.zeros(1, np.float32)}
    >>> opt.step()
    >>> (layer.weight - before).round(6).tolist()   # the first step moves each by lr * sign(g)
    [[-0.01, 0.01]]
    >>> sorted(opt.state_dict())
    ['bias.exp_avg', 'bias.exp_avg_sq', 'lr', 'step', 'weight.exp_avg', 'weight.exp_avg_sq']
    """

    _decoupled = False

    def __init__(self, params: Module, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ArgumentError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= _real(f"betas[{i}]", beta) < 1.0:
                raise ArgumentError(f"betas[{i}] must be in [0, 1); got {beta!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _real("eps", eps)
        self.weight_decay = _real("weight_decay", weight_decay)

    def _buffer_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _update(self, param: Any, grad: Any, state: dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        lr, t = self.lr, self.step_count
        xp = array_api_compat.array_namespace(param)
        if self.weight_decay != 0:
            if self._decoupled:
                param *= 1.0 - lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * param
        if not state:
            state["exp_avg"], state["exp_avg_sq"] = xp.zeros_like(param), xp.zeros_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        _lerp_(exp_avg, grad, 1.0 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * grad * grad
        # Python floats (double) for the corrections, as torch's float step count gives.
        step_size = lr / (1.0 - beta1 ** float(t))
        correction2_sqrt = (1.0 - beta2 ** float(t)) ** 0.5
        denom = xp.sqrt(exp_avg_sq) / correction2_sqrt + self.eps
        param += -step_size * exp_avg / denom

    def _hyper_repr(self) -> str:
        return (f"lr={self.lr!r}, betas={self.betas!r}, eps={self.eps!r}, "
                f"weight_decay={self.weight_decay!r}")


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    The parameter is first shrunk, ``p = p * (1 - lr * weight_decay)``, then updated as
    :class:`Adam` without weight decay in the gradient. Default ``weight_decay=1e-2``.

    >>> import numpy as np
    >>> from fc2conv import nn, train
    >>> layer = nn.Linear(2, 1, rng=0)
    >>> layer.weight[...] = 1.0
    >>> opt = train.AdamW(layer, lr=0.1, weight_decay=0.5)
    >>> opt.step()          # no gradient yet: only the decay acts, 1 * (1 - 0.1 * 0.5)
    >>> layer.weight.tolist()
    [[0.95, 0.95]]
    """

    _decoupled = True

    def __init__(self, params: Module, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
