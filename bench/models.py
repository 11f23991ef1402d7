"""models.py: the example models of models/ that bench/run.py's fixed LSTM sizes do not cover,
each trained by gradc and by its PyTorch equivalent, side by side in one run on this machine.

For each model: gradc compiles models/NAME.model, and its executable trains on random data of
the model's shapes (--data, --no-shuffle, --batch-limit) with --threads 1, --threads 2 and no
--threads (its measured default); PyTorch trains the same network (same layers, sizes, loss and
optimizer) on random data with 1 and 2 threads, each run in its own process. Printed: ms per
training step for each run, and the ratio of PyTorch's best to gradc's best and to gradc's
default (higher is better for gradc). Validation is not timed.

usage: /usr/bin/python3 bench/models.py [--build DIR] [--steps N] [--models a,b,...]
       (the child side: bench/models.py --torch NAME --threads N --steps S)
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "torch"))
import safetensors_io  # noqa: E402


def _gate_bn_net(torch):
    from layers_vs_torch import GateBNCell  # the reference the layer tests compare with
    torch.set_default_dtype(torch.float32)  # (the test module works in float64)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = GateBNCell(1, 256)
            self.head = torch.nn.Linear(256, 1)

        def forward(self, x):
            return self.head(self.cell(x)[:, -1])
    return Net()


def _bilstm_net(torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(28, 128, 2, dropout=0.2, bidirectional=True, batch_first=True)
            self.bn = torch.nn.BatchNorm1d(256)
            self.head = torch.nn.Linear(256, 10)

        def forward(self, x):
            return self.head(self.bn(self.lstm(x)[0][:, -1]))
    return Net()


def _tcn_net(torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 16, 5, padding=2)
            self.bn = torch.nn.BatchNorm1d(16)
            self.lstm = torch.nn.LSTM(16, 32, batch_first=True)
            self.head = torch.nn.Linear(32, 1)

        def forward(self, x):  # x [B, T, 1], features last as in gradc
            f = torch.relu(self.bn(self.conv(x.transpose(1, 2)))).transpose(1, 2)
            return self.head(self.lstm(f)[0][:, -1])
    return Net()


def _bnlstm_net(torch):
    from bnlstm_reference import BNLSTM  # the reference the layer test compares with

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = BNLSTM(28, 128, 28)
            self.head = torch.nn.Linear(128, 10)

        def forward(self, x):
            return self.head(self.lstm(x)[:, -1])
    return Net()


def _char_lstm_net(torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(80, 32)
            self.lstm = torch.nn.LSTM(32, 128, 2, dropout=0.2, batch_first=True)
            self.head = torch.nn.Linear(128, 80)

        def forward(self, x):
            return self.head(self.lstm(self.emb(x))[0])  # [B, T, 80]
    return Net()


# name -> batch, x's shape and dtype per sample, y's, the loss, the PyTorch network and optimizer,
# clipping (clip_grad_value_) as the model's train block has it.
MODELS = {
    "seed_gate_bn": dict(B=32, x=((30, 1), "f32"), y=((1,), "f32"), loss="mse", net=_gate_bn_net,
                         opt=lambda torch, p: torch.optim.SGD(p, lr=0.001), clip=1.0),
    "tcn_series": dict(B=32, x=((30, 1), "f32"), y=((1,), "f32"), loss="mse", net=_tcn_net,
                       opt=lambda torch, p: torch.optim.Adam(p, lr=0.001), clip=None),
    "bnlstm_fashion": dict(B=64, x=((28, 28), "f32"), y=((), "i32"), loss="cross_entropy", net=_bnlstm_net,
                           opt=lambda torch, p: torch.optim.Adam(p, lr=0.002), clip=None),
    "bilstm_fashion": dict(B=64, x=((28, 28), "f32"), y=((), "i32"), loss="cross_entropy", net=_bilstm_net,
                           opt=lambda torch, p: torch.optim.Adam(p, lr=0.001), clip=None),
    "char_lstm": dict(B=32, x=((64,), "i32"), y=((64,), "i32"), loss="cross_entropy", net=_char_lstm_net,
                      opt=lambda torch, p: torch.optim.Adam(p, lr=0.003), clip=None),
}


def random_batch(spec, n, rng):
    """Random inputs and targets for n samples of model spec: x normal, labels in [0, 10)."""
    (xs, xt), (ys, yt) = spec["x"], spec["y"]
    x = rng.standard_normal((n, *xs), dtype=np.float32) if xt == "f32" else rng.integers(0, 10, (n, *xs)).astype(np.int32)
    y = rng.standard_normal((n, *ys), dtype=np.float32) if yt == "f32" else rng.integers(0, 10, (n, *ys)).astype(np.int32)
    return x, y


def torch_child(name, threads, steps, warmup=3):
    """PyTorch's side of one model (run in its own process): prints one JSON line."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = MODELS[name]
    net = spec["net"](torch)
    net.train()
    opt = spec["opt"](torch, net.parameters())
    loss_fn = torch.nn.functional.mse_loss if spec["loss"] == "mse" else torch.nn.functional.cross_entropy
    x, y = random_batch(spec, spec["B"], np.random.default_rng(0))
    x = torch.from_numpy(x).long() if spec["x"][1] == "i32" else torch.from_numpy(x)
    y = torch.from_numpy(y).long() if spec["y"][1] == "i32" else torch.from_numpy(y)
    if spec["loss"] == "cross_entropy" and y.dim() > 1:  # labels per position: logits [B, T, C] as [B*T, C]
        base = loss_fn
        loss_fn = lambda out, lab: base(out.reshape(-1, out.shape[-1]), lab.reshape(-1))
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        if spec["clip"]:
            torch.nn.utils.clip_grad_value_(net.parameters(), spec["clip"])
        opt.step()
    print(json.dumps({"threads": threads, "ms_per_step": (time.perf_counter() - t0) * 1e3 / steps}))


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout, p.stderr


def gradc_side(gradc, name, work, steps):
    """gradc's runs of one model: [(label, ms per step)] for --threads 1, 2 and the default."""
    spec = MODELS[name]
    exe = os.path.join(work, name)
    run([gradc, os.path.join(REPO, "models", name + ".model"), "-o", exe])
    x, y = random_batch(spec, spec["B"] * (steps + 6), np.random.default_rng(0))
    data = os.path.join(work, name + ".safetensors")
    safetensors_io.save(data, {"x": x, "y": y})
    runs = []
    for threads in (1, 2, None):
        flags = ["--threads", str(threads)] if threads else []
        _, err = run([exe, "--quiet", "--timing", "--data", data, "--no-shuffle", "--batch-limit", str(steps + 6)] + flags)
        m = re.search(r"ms_per_step (\S+) .*threads (\d+)", err)
        if not m:
            sys.exit(f"bench: no timing line from {exe}:\n{err}")
        label = f"gradc{m.group(2)}" if threads else f"gradcD{m.group(2)}"
        runs.append((label, float(m.group(1))))
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--torch")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.torch:
        torch_child(a.torch, a.threads, a.steps)
        return
    gradc = os.path.join(a.build, "bin", "gradc")
    names = [n for n in a.models.split(",") if n]
    for n in names:
        if n not in MODELS:
            sys.exit(f"bench: unknown model '{n}' (have: {', '.join(MODELS)})")
    print(f"{'model':16} {'run':8} {'ms/step':>10}")
    summary = []
    with tempfile.TemporaryDirectory(prefix="gradc-bench-models-") as work:
        for n in names:
            g = gradc_side(gradc, n, work, a.steps)
            t = []
            for threads in (1, 2):
                out, _ = run([sys.executable, os.path.abspath(__file__), "--torch", n, "--threads", str(threads),
                              "--steps", str(a.steps)])
                t.append((f"torch{threads}", json.loads(out.strip().splitlines()[-1])["ms_per_step"]))
            for label, ms in g + t:
                print(f"{n:16} {label:8} {ms:10.2f}", flush=True)
            best_g = min(ms for label, ms in g if not label.startswith("gradcD"))
            default_g = next(ms for label, ms in g if label.startswith("gradcD"))
            best_t = min(ms for _, ms in t)
            summary.append((n, best_t / best_g, best_t / default_g, default_g / best_g))
    print("\nmodel            torch/gradc(best)  torch/gradc(default)  default/best")
    for n, r, rd, db in summary:
        print(f"{n:16} {r:17.2f}x {rd:20.2f}x {db:13.2f}")


if __name__ == "__main__":
    main()
