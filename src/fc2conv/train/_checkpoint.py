"""Checkpoints: model (and optimiser) state in safetensors, written atomically.

Tensor names are a PyTorch ``state_dict``'s (``0.weight``, ``3.body.0.bias``), so
``torch.nn.Module.load_state_dict(safetensors.torch.load_file(path))`` loads our model weights
into the PyTorch twin of the architecture. Optimiser state is stored beside them under
``optimizer.<name>``; string metadata (step, seed, anything JSON-able) in the header. Loading
never unpickles: safetensors is a header plus raw little-endian buffers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_open
from .._errors import ArgumentError, Fc2convError

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]

_OPTIMIZER_PREFIX = "optimizer."
_META_KEY = "fc2conv"


class CheckpointError(Fc2convError, ValueError):
    """A checkpoint file is missing, truncated, foreign or does not fit the model."""


def save_checkpoint(path: str | os.PathLike[str], model: Any, optimizer: Any = None, *,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s parameters (and ``optimizer``'s state) to ``path`` atomically.

    The file is written to a temporary name in the same directory, flushed to disk, then
    renamed over ``path``: a crash leaves either the old checkpoint or the new one, never a
    half-written file. ``meta`` must be JSON-serialisable.

    >>> import numpy as np, tempfile, os
    >>> from fc2conv import nn
    >>> from fc2conv.train import load_checkpoint, save_checkpoint
    >>> model = nn.Sequential(nn.Linear(3, 2, rng=0))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> _ = save_checkpoint(path, model, meta={"step": 10})
    >>> fresh = nn.Sequential(nn.Linear(3, 2, rng=1))
    >>> load_checkpoint(path, fresh)
    {'step': 10}
    >>> bool(np.array_equal(fresh[0].weight, model[0].weight))
    True
    """
    from safetensors.numpy import save

    # np.array, not np.ascontiguousarray: the optimiser's 0-d "step" must stay 0-d
    tensors = {name: np.array(value, order="C") for name, value in model.state_dict().items()}
    if optimizer is not None:
        for name, value in optimizer.state_dict().items():
            tensors[_OPTIMIZER_PREFIX + name] = np.array(value, order="C")
    try:
        header = {_META_KEY: json.dumps(meta or {})}
    except TypeError as error:
        raise ArgumentError(f"meta must be JSON-serialisable: {error}") from None
    data = save(tensors, metadata=header)
    target = Path(path)
    with atomic_open(target) as f:
        f.write(data)
    return target


def load_checkpoint(path: str | os.PathLike[str], model: Any, optimizer: Any = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``).

    Returns the metadata dict. Raises :class:`CheckpointError` for a missing, truncated or
    foreign file, and names the mismatching tensors when the file is for another
    architecture (all names and shapes are checked before any parameter is written).
    """
    from safetensors import SafetensorError, safe_open

    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"no checkpoint at {str(source)!r}")
    try:
        with safe_open(str(source), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{str(source)!r} is not a readable safetensors checkpoint (truncated or foreign "
            f"file?): {error}"
        ) from None
    if _META_KEY not in header:
        raise CheckpointError(
            f"{str(source)!r} is a safetensors file but not an fc2conv checkpoint (no "
            f"{_META_KEY!r} metadata); load plain weights with model.load_state_dict("
            "safetensors.numpy.load_file(path))"
        )
    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPTIMIZER_PREFIX)}
    state = {k[len(_OPTIMIZER_PREFIX):]: v for k, v in tensors.items()
             if k.startswith(_OPTIMIZER_PREFIX)}
    if optimizer is not None and not state:
        raise CheckpointError(f"{str(source)!r} holds no optimiser state to resume from")
    try:
        model.load_state_dict(weights)
        if optimizer is not None:
            optimizer.load_state_dict(state)
    except Fc2convError as error:
        raise CheckpointError(f"{str(source)!r} does not fit this model: {error}") from None
    return json.loads(header[_META_KEY])
