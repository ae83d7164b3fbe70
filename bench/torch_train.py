#!/usr/bin/python3
"""Training speed and peak memory of the float32 PyTorch twins of examples/mlp.sq,
examples/cnn.sq and bench/cnn5.sq (same layers, batch, SGD with momentum and weight decay) on
synthetic batches: prints "torch MODEL images_per_s peak_rss_kb", the median of REPS runs of
STEPS steps after a warm-up. Threads: THREADS for torch.set_num_threads, and OPENBLAS_NUM_THREADS for its BLAS
(they add up: bench/run.sh tries the splits of its thread count and keeps PyTorch's best).
A peer for `make bench` only. Usage: bench/torch_train.py MODEL THREADS STEPS REPS"""
import resource
import statistics
import sys
import time

import torch


def model_of(name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10)), (784,)
    if name == "cnn5":
        return nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10)), (1, 28, 28)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)), (1, 28, 28)


def main():
    name, threads, steps, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model, shape = model_of(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.randn(128, *shape), torch.randint(0, 10, (128,))
    model.train()

    def run(n):
        for _ in range(n):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

    run(3)
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run(steps)
        rates.append(steps * 128 / (time.perf_counter() - t0))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"torch {name} {statistics.median(rates):.1f} {rss}")


main()
