#!/usr/bin/python3
"""The float32 PyTorch twin of examples/mlp.sq with sqtrain's recipe (784-256-BN-ReLU-10, SGD
momentum 0.9, weight decay 5e-4, lr 0.05, batch 128, last partial batch dropped, pixels /255 then
the training set's mean and std): prints test accuracy after each epoch. For docs/results.md;
a peer for comparison only, never needed by sqc. Usage: bench/torch_mlp.py [EPOCHS]."""
import gzip
import os
import sys
import time

import numpy as np
import torch

DIR = os.environ.get("SQ_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


def idx(name):
    with gzip.open(f"{DIR}/{name}", "rb") as f:
        raw = f.read()
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    torch.manual_seed(1)
    xtr = idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
    ytr = idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    xte = idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
    yte = idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = torch.tensor((xtr - mean) / std), torch.tensor((xte - mean) / std)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.BatchNorm1d(256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr))
        t0 = time.time()
        for s in range(len(xtr) // 128):
            i = order[s * 128 : (s + 1) * 128]
            opt.zero_grad()
            loss = loss_fn(model(xtr[i]), ytr[i])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f} ({time.time() - t0:.1f} s)", flush=True)


main()
