"""mpi.py: data-parallel training on this machine, side by side: one process with 1 and with 2
threads, and the same model compiled for 2 MPI ranks (gradc --ranks 2) under mpirun -np 2 with
1 thread each; also the one-process executable under mpirun -np 1 (which must cost what it
costs without mpirun).

The model is bench/run.py's LSTM(F, H) -> BatchNorm on the last step -> Dense(H, 1), MSE,
Adam at the medium (F=28 T=28 H=128 B=64) and large (F=64 T=50 H=512 B=64) sizes; B is the
global batch (32 rows per rank under -np 2). For each run: ms per step and steps/s (the
executable's --timing, after 3 warm-up steps), and under -np 2 the share of a step spent in
the compiled all-reduces (BatchNorm's statistics and the parameter-gradient buckets; waiting
for the slower rank included), their number and the bytes all-reduced per step and rank.
These are the measured inputs of docs/distributed.md's model. The last row is the -np 2
build with --disable-pass=early-allreduce: every all-reduce blocks where it is, none is in
flight during the backward pass (the overlap's effect is the difference to the row above).

usage: /usr/bin/python3 bench/mpi.py [--build DIR] [--steps N] [--sizes medium,large]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from run import MODEL, SIZES  # noqa: E402

MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np"]
TIMING = re.compile(r"timing first_step_s \S+ steps (\d+) ms_per_step (\S+)")
ALLREDUCE = re.compile(r"timing ranks \d+ allreduce_ms_per_step (\S+) allreduce_share (\S+) "
                       r"allreduce_bytes_per_step (\S+) allreduce_calls_per_step (\S+)")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    m = TIMING.search(p.stderr)
    if not m:
        sys.exit(f"bench: no timing line from {' '.join(cmd)}:\n{p.stderr}")
    r = {"ms": float(m.group(2))}
    a = ALLREDUCE.search(p.stderr)
    if a:
        r.update(ar_ms=float(a.group(1)), share=float(a.group(2)), bytes=float(a.group(3)), calls=float(a.group(4)))
    return r


def size_runs(gradc, name, work, steps):
    F, T, H, B = SIZES[name]
    model = os.path.join(work, f"{name}.model")
    with open(model, "w") as f:
        f.write(MODEL.format(name=name, B=B, T=T, F=F, H=H, O=1, ytype="f32[B, 1]", loss="mse"))
    rng = np.random.default_rng(0)
    n = B * (steps + 4)
    data = os.path.join(work, f"{name}.safetensors")
    safetensors_io.save(data, {"x": rng.standard_normal((n, T, F), dtype=np.float32),
                               "y": rng.standard_normal((n, 1), dtype=np.float32)})
    one, two = os.path.join(work, name + "_1"), os.path.join(work, name + "_2")
    subprocess.run([gradc, model, "-o", one], check=True)
    subprocess.run([gradc, model, "--ranks", "2", "-o", two], check=True)
    blocking = os.path.join(work, name + "_2b")
    subprocess.run([gradc, model, "--ranks", "2", "--disable-pass=early-allreduce", "-o", blocking], check=True)
    flags = ["--quiet", "--timing", "--data", data, "--no-shuffle", "--epochs", "1"]
    rows = [("1 process, 1 thread", run([one] + flags + ["--threads", "1"])),
            ("1 process, 2 threads", run([one] + flags + ["--threads", "2"])),
            ("mpirun -np 1, 1 thread", run(MPIRUN + ["1", one] + flags + ["--threads", "1"])),
            ("mpirun -np 2, 1 thread each", run(MPIRUN + ["2", two] + flags + ["--threads", "1"])),
            ("  the same, blocking all-reduces", run(MPIRUN + ["2", blocking] + flags + ["--threads", "1"]))]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--sizes", default="medium,large")
    a = ap.parse_args()
    gradc = os.path.join(a.build, "bin", "gradc")
    print(f"{'size':7s} {'run':28s} {'ms/step':>9s} {'steps/s':>8s} {'vs 1p2t':>8s} "
          f"{'allreduce ms':>12s} {'share':>6s} {'calls':>6s} {'bytes/step':>11s}")
    with tempfile.TemporaryDirectory(prefix="gradc-bench-mpi-") as work:
        for name in a.sizes.split(","):
            steps = a.steps if name != "large" else max(20, a.steps // 3)
            rows = size_runs(gradc, name, work, steps)
            ref = rows[1][1]["ms"]  # one process with 2 threads
            for label, r in rows:
                ar = (f"{r['ar_ms']:12.3f} {r['share']:6.3f} {r['calls']:6.0f} {r['bytes']:11.0f}" if "share" in r
                      else f"{'-':>12s} {'-':>6s} {'-':>6s} {'-':>11s}")
                print(f"{name:7s} {label:28s} {r['ms']:9.3f} {1000.0 / r['ms']:8.2f} {ref / r['ms']:7.2f}x {ar}",
                      flush=True)


if __name__ == "__main__":
    main()
