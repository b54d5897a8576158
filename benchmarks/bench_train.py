"""Training speed on MNIST-1D: one epoch of the paper's recipe, fc2conv vs PyTorch (CPU).

An epoch is 40 steps of Adam (lr 1e-2) on batches of 100 of the 4,000 training signals:
forward, cross-entropy, backward, update, float32. The same architecture in PyTorch: the
paper's ``ConvBase``/``MLPBase``/logistic models, and for the untied rungs (which PyTorch
lacks) the usual ``unfold`` + ``einsum`` locally connected layer and an ``einsum``
dense-on-grid layer. Median of ``--repeat`` epochs after a warm-up epoch, both libraries in one
process with their default threads, each timed in its own block.

    python benchmarks/bench_train.py [--repeat 5] [--models cnn,mlp] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from bench_conv import median_time

from fc2conv import train
from fc2conv.data import mnist1d
from fc2conv.models import MNIST1D_MODELS, mnist1d_model


class _Residual(torch.nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class _Untied(torch.nn.Module):
    """Locally connected (``kernel`` given) or dense-on-grid (``kernel=None``) 1-D layer with
    fc2conv's weight layout ``(S_out, C_out, C_in, K)``, so weights can be copied over."""

    def __init__(self, weight, bias, kernel=None, stride=1, padding=0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.from_numpy(weight.copy()))
        self.bias = torch.nn.Parameter(torch.from_numpy(bias.copy()))
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        if self.kernel is None:
            y = torch.einsum("nck,pock->nop", x, self.weight)
        else:
            cols = F.unfold(x[:, :, None, :], (1, self.kernel), stride=(1, self.stride),
                            padding=(0, self.padding))  # (N, C_in*K, P)
            w = self.weight.reshape(self.weight.shape[0], self.weight.shape[1], -1)
            y = torch.einsum("ncp,poc->nop", cols, w)
        return y + self.bias.T[None]


def torch_twin(name, ours):
    """The same model in PyTorch, with fc2conv's initial weights."""
    t = torch.nn
    if name in ("lc", "dense"):
        layers = []
        for i in (0, 2, 4):
            layer = ours[i]
            kernel = layer.kernel_size[0] if name == "lc" else None
            stride = layer.stride[0] if name == "lc" else 1
            padding = layer.padding if name == "lc" else 0
            layers += [_Untied(layer.weight, layer.bias, kernel, stride, padding), t.ReLU()]
        twin = t.Sequential(*layers, t.Flatten(), t.Linear(125, 10))
        twin[7].load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v) for k, v in
                                 ours.state_dict().items() if k.startswith("7.")})
        return twin
    if name == "logistic":
        twin = t.Sequential(t.Flatten(), t.Linear(40, 10))
    elif name == "mlp":
        twin = t.Sequential(t.Flatten(), t.Linear(40, 100), t.ReLU(),
                            _Residual(t.Sequential(t.Linear(100, 100), t.ReLU())),
                            t.Linear(100, 10))
    else:
        twin = t.Sequential(t.Conv1d(1, 25, 5, 2, 1), t.ReLU(), t.Conv1d(25, 25, 3, 2, 1),
                            t.ReLU(), t.Conv1d(25, 25, 3, 2, 1), t.ReLU(), t.Flatten(),
                            t.Linear(125, 10))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return twin


def epoch_ours(model, optimizer, x, y, batch=100):
    for start in range(0, len(x), batch):
        _, grad = train.cross_entropy(model(x[start:start + batch]), y[start:start + batch])
        optimizer.zero_grad()
        model.backward(grad)
        optimizer.step()


def epoch_torch(model, optimizer, x, y, batch=100):
    for start in range(0, len(x), batch):
        loss = F.cross_entropy(model(x[start:start + batch]), y[start:start + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def run(name, data, repeat):
    ours = mnist1d_model(name, rng=0)
    twin = torch_twin(name, ours)
    # the twins agree before training: same function, so the comparison is like for like
    xt = torch.from_numpy(data.x_train[:100].copy())
    gap = float(np.max(np.abs(ours(data.x_train[:100]) - twin(xt).detach().numpy())))
    opt = train.Adam(ours, lr=1e-2)
    topt = torch.optim.Adam(twin.parameters(), lr=1e-2)
    x, y = data.x_train, data.y_train
    tx, ty = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
    t_ours = median_time(lambda: epoch_ours(ours, opt, x, y), repeat)[0]
    t_torch = median_time(lambda: epoch_torch(twin, topt, tx, ty), repeat)[0]
    return {"model": name, "fc2conv_ms": 1e3 * t_ours, "torch_ms": 1e3 * t_torch,
            "ratio": t_ours / t_torch, "initial_max_abs_diff": gap}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", default=",".join(MNIST1D_MODELS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = mnist1d()
    print(f"MNIST-1D, one epoch = 40 steps of Adam on batches of 100, float32; torch "
          f"{torch.__version__} with {torch.get_num_threads()} threads; median of "
          f"{args.repeat} epochs")
    print(f"{'model':10} {'fc2conv ms':>11} {'torch ms':>9} {'ratio':>6}  twin diff")
    rows = []
    for name in args.models.split(","):
        row = run(name, data, args.repeat)
        rows.append(row)
        print(f"{name:10} {row['fc2conv_ms']:>11.1f} {row['torch_ms']:>9.1f} "
              f"{row['ratio']:>6.2f}  {row['initial_max_abs_diff']:.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
