"""Training: losses, optimisers (torch.optim's update rules), the loop, checkpoints.

>>> import numpy as np
>>> from fc2conv import nn, train
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=0))
>>> optimizer = train.Adam(model, lr=1e-2)
>>> x = np.ones((5, 1, 4), np.float32); y = np.array([0, 1, 2, 0, 1])
>>> value, grad = train.cross_entropy(model(x), y)      # loss and d loss / d logits
>>> optimizer.zero_grad(); _ = model.backward(grad); optimizer.step()
"""

from ._checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ._loop import History, evaluate, fit
from ._losses import accuracy, cross_entropy, log_softmax, mse
from ._optim import SGD, Adam, AdamW

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CheckpointError",
    "History",
    "accuracy",
    "cross_entropy",
    "evaluate",
    "fit",
    "load_checkpoint",
    "log_softmax",
    "mse",
    "save_checkpoint",
]
