"""norm_fusion.py: what fusion and memory planning buy on normalization layers.

The model is x [B, F] -> Dense(F, F) -> BatchNorm -> ReLU -> LayerNorm -> BatchNorm -> tanh
-> LayerNorm -> Dense(F, 1), MSE, SGD, on wide inputs (B = 256, F = 1024 by default). Its
twin has the same Dense layers and activations with the four normalization layers removed.
Both are built with gradc, for each backend (--backends, default cpp,llvm), twice: with the
passes on (the default) and with them off (--disable-pass for fuse, centered-sums and
one-pass-variance: every node its own loop, the statistics and backward sums as written).
It prints ms per step of each build (--timing, 1 thread, median of --repeat runs), the
normalization layers' share of the step (the full model's time minus the twin's) off and on
and their ratio, and the arena of the full model with and without memory planning
(--emit=memory-plan) and their ratio.

usage: /usr/bin/python3 bench/norm_fusion.py [--build DIR] [--batch B] [--features F] [--steps N] [--repeat R]
                                             [--backends cpp,llvm]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
import safetensors_io  # noqa: E402

MODEL = """model {name}
let B = {B}
let F = {F}
input x: f32[B, F]
target y: f32[B, 1]
layer a = Dense(F, F)
{layers}
layer head = Dense(F, 1)
graph {{
  yhat = head({body})
  loss = mse(yhat, y)
  output yhat
}}
train {{
  optimizer = sgd(lr = 0.01)
  epochs = 1
}}
"""
NORMS = "layer bn1 = BatchNorm(F)\nlayer ln1 = LayerNorm(F)\nlayer bn2 = BatchNorm(F)\nlayer ln2 = LayerNorm(F)"
OFF = ["--disable-pass=fuse", "--disable-pass=centered-sums", "--disable-pass=one-pass-variance"]


def build(gradc, work, name, text, flags, backend):
    model = os.path.join(work, name + ".model")
    with open(model, "w") as f:
        f.write(text)
    exe = os.path.join(work, f"{name}_{backend}_" + ("off" if flags else "on"))
    subprocess.run([gradc, model, "-o", exe, f"--backend={backend}", *flags], check=True)
    return model, exe


def ms_per_step(exe, data, repeat):
    times = []
    for _ in range(repeat):
        err = subprocess.run([exe, "--quiet", "--timing", "--data", data, "--no-shuffle", "--epochs", "1", "--threads", "1"],
                             check=True, capture_output=True, text=True).stderr
        m = re.search(r"ms_per_step (\S+)", err)
        if not m:
            sys.exit(f"norm_fusion: no timing line from {exe}:\n{err}")
        times.append(float(m.group(1)))
    return statistics.median(times)


def arena(gradc, model, flags):
    out = subprocess.run([gradc, model, "--emit=memory-plan", *flags], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"^arena: (\d+) elements", out, re.M).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", default="cpp,llvm")
    a = ap.parse_args()
    gradc = os.path.join(a.build, "bin", "gradc")
    B, F = a.batch, a.features
    full = MODEL.format(name="norms", B=B, F=F, layers=NORMS, body="ln2(tanh(bn2(ln1(relu(bn1(a(x)))))))")
    twin = MODEL.format(name="twin", B=B, F=F, layers="", body="tanh(relu(a(x)))")
    with tempfile.TemporaryDirectory(prefix="gradc-normbench-") as work:
        rng = np.random.default_rng(0)
        n = B * (a.steps + 1)
        data = os.path.join(work, "data.safetensors")
        safetensors_io.save(data, {"x": (rng.standard_normal((n, F)) * 2 + 1).astype(np.float32),
                                   "y": rng.standard_normal((n, 1)).astype(np.float32)})
        print(f"model: x [{B}, {F}] -> Dense -> BatchNorm -> ReLU -> LayerNorm -> BatchNorm -> tanh -> LayerNorm -> Dense(F, 1); "
              f"twin without the 4 norms; 1 thread, median of {a.repeat} runs of {a.steps} steps")
        print("off: " + " ".join(OFF) + "; on: the default passes")
        for backend in a.backends.split(","):
            t = {}
            for name, text in (("norms", full), ("twin", twin)):
                for mode, flags in (("off", OFF), ("on", [])):
                    model, exe = build(gradc, work, name, text, flags, backend)
                    t[name, mode] = ms_per_step(exe, data, a.repeat)
            print(f"--backend={backend}")
            print(f"  {'passes':8s} {'full ms/step':>13s} {'twin ms/step':>13s} {'norms ms/step':>14s}")
            share = {}
            for mode in ("off", "on"):
                share[mode] = t["norms", mode] - t["twin", mode]
                print(f"  {mode:8s} {t['norms', mode]:13.3f} {t['twin', mode]:13.3f} {share[mode]:14.3f}")
            print(f"  normalization layers' share of the step: {share['off']:.3f} ms off, {share['on']:.3f} ms on: "
                  f"{share['off'] / share['on']:.2f}x cheaper with the passes")
            print(f"  whole step: {t['norms', 'off'] / t['norms', 'on']:.2f}x faster with the passes")
        model = os.path.join(work, "norms.model")
        planned, unplanned = arena(gradc, model, []), arena(gradc, model, ["--disable-pass=memory-plan"])
        print(f"arena: {planned * 4 / 2**20:.1f} MiB with memory planning, {unplanned * 4 / 2**20:.1f} MiB without: "
              f"{unplanned / planned:.2f}x smaller")


if __name__ == "__main__":
    main()
