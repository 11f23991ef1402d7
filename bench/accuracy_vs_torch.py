"""accuracy_vs_torch.py: a Fashion-MNIST model of models/ trained for its epochs by gradc and by
its PyTorch equivalent (bench/models.py's registry), printing the test accuracy after each epoch
side by side, and each side's seconds per epoch. Both read the same IDX files, shuffle every
epoch, use full batches of B (the last partial batch dropped, as gradc does) and the model's
optimizer; the initialisations differ (each side's own random numbers), so the comparison is of
learning curves, not of numbers.

usage: /usr/bin/python3 bench/accuracy_vs_torch.py [--model bilstm_fashion] [--epochs N]
       [--threads N] [--build DIR] [--side both|gradc|torch]
"""
import argparse
import csv
import gzip
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from models import MODELS  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (gzip) as a numpy array of its dimensions."""
    with gzip.open(path, "rb") as f:
        b = f.read()
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def torch_side(name, epochs, threads, seed=42):
    """PyTorch's accuracies and seconds per epoch."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    spec = MODELS[name]
    xs = torch.from_numpy(read_idx(f"{DATA}/train-images-idx3-ubyte.gz").astype(np.float32) / 255)
    ys = torch.from_numpy(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
    xt = torch.from_numpy(read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255)
    yt = torch.from_numpy(read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    net = spec["net"](torch)
    opt = spec["opt"](torch, net.parameters())
    B = spec["B"]
    rows = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(len(xs))
        for s in range(len(xs) // B):
            idx = perm[s * B:(s + 1) * B]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
        secs = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xt[i:i + 500]).argmax(1) == yt[i:i + 500]).sum()) for i in range(0, len(xt), 500))
        rows.append((epoch, correct / len(xt), secs))
        print(f"torch epoch {epoch} val_acc {correct / len(xt):.4f} train_s {secs:.1f}", flush=True)
    return rows


def gradc_side(name, epochs, threads, build):
    """gradc's accuracies and seconds per epoch (from --metrics)."""
    with tempfile.TemporaryDirectory(prefix="gradc-accuracy-") as work:
        exe = os.path.join(work, name)
        subprocess.run([os.path.join(build, "bin", "gradc"), os.path.join(REPO, "models", name + ".model"), "-o", exe],
                       check=True)
        metrics = os.path.join(work, "metrics.csv")
        subprocess.run([exe, "--quiet", "--epochs", str(epochs), "--threads", str(threads), "--metrics", metrics],
                       check=True, stdout=subprocess.DEVNULL)
        rows = []
        for r in csv.DictReader(open(metrics)):  # seconds: the epoch's, validation included
            rows.append((int(r["epoch"]), float(r["val_acc"]), float(r["seconds"])))
            print(f"gradc epoch {r['epoch']} val_acc {float(r['val_acc']):.4f} epoch_s {rows[-1][2]:.1f}", flush=True)
        return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bilstm_fashion")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--side", choices=("both", "gradc", "torch"), default="both")
    a = ap.parse_args()
    if a.model not in MODELS or MODELS[a.model]["loss"] != "cross_entropy":
        sys.exit(f"accuracy_vs_torch: '{a.model}' is not a Fashion-MNIST model of bench/models.py")
    g = gradc_side(a.model, a.epochs, a.threads, a.build) if a.side != "torch" else []
    t = torch_side(a.model, a.epochs, a.threads) if a.side != "gradc" else []
    print(f"\n{'epoch':>5} {'gradc acc':>10} {'torch acc':>10} {'diff (points)':>14} {'gradc s':>8} {'torch s':>8}")
    for e in range(a.epochs):
        ga, gs = (g[e][1], g[e][2]) if e < len(g) else (float("nan"), float("nan"))
        ta, ts = (t[e][1], t[e][2]) if e < len(t) else (float("nan"), float("nan"))
        print(f"{e + 1:5} {ga * 100:9.2f}% {ta * 100:9.2f}% {(ga - ta) * 100:14.2f} {gs:8.1f} {ts:8.1f}")


if __name__ == "__main__":
    main()
