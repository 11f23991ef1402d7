"""run.py: gradc against PyTorch, side by side in one run, on this machine.

The model is LSTM(F, H) -> BatchNorm on the last step -> Dense(H, 1), MSE, Adam, at three
sizes (small F=1 T=30 H=64 B=32; medium F=28 T=28 H=128 B=64; large F=64 T=50 H=512 B=64),
plus the Fashion-MNIST classifier LSTM(28, 128) -> BatchNorm -> Dense(128, 10) with
cross-entropy. Both sides run with 1 and with 2 threads, each in its own process, and the
better of each side is its reference; gradc also runs without --threads (its default: it
times its first steps with each count and keeps the faster), compared with its best. For each run: ms per step, samples/s, the
matrix-multiply GFLOP/s of forward plus backward, that as a share of this machine's GEMM
peak and FMA peak for the same number of threads (bench/gemm_bench --peaks, measured in the
same run), peak RSS, start-up (exec or import to the start of the first step: `ready`) and
to the end of the first step, and gradc's compile time.

A third column, oneDNN, times Intel's hand-tuned LSTM training primitives alone (forward in
training mode plus lstm_backward, bench/onednn_lstm, built when libdnnl-dev is found) on each
size's LSTM shape, with 1 and 2 OpenMP threads (OMP_NUM_THREADS) each in its own process; the
summary's 'gradc/dnnl' is gradc's whole step over that LSTM alone, each side's best thread
count (lower is better for gradc; 1.00x would mean gradc's whole step costs oneDNN's LSTM).

Then the example models of models/ that the sizes do not cover (bilstm_fashion, tcn_series,
bnlstm_fashion, seed_gate_bn) through bench/models.py, each against its PyTorch equivalent.

usage: /usr/bin/python3 bench/run.py [--build DIR] [--steps N] [--sizes small,medium,...] [--models a,b,...]
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
import safetensors_io  # noqa: E402

SIZES = {"small": (1, 30, 64, 32), "medium": (28, 28, 128, 64), "large": (64, 50, 512, 64),
         "fashion": (28, 28, 128, 64)}
FASHION_STEPS_PER_EPOCH = 60000 // 64

MODEL = """model bench_{name}
let B = {B}
let T = {T}
input x: f32[B, T, {F}]
target y: {ytype}
layer lstm = LSTM({F}, {H})
layer bn = BatchNorm({H})
layer head = Dense({H}, {O})
graph {{
  hs = lstm(x)
  yhat = head(bn(hs[:, -1, :]))
  loss = {loss}(yhat, y)
  output yhat
}}
train {{
  optimizer = adam(lr = 0.001)
  epochs = 1
}}
"""


def run_child(cmd):
    """Runs cmd; returns (stdout, stderr). Each side reports its own peak RSS (VmHWM of
    /proc/self/status): the child's ru_maxrss would include this Python process's resident
    memory at the fork (the data arrays made for the earlier sizes)."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout, p.stderr


def gemm_flops(F, T, H, B):
    """Matrix-multiply FLOPs of one training step: the LSTM's x@W_ih and h@W_hh per step
    forward, and twice that backward (gradients of the weights and of the multiplied
    operand); the head is negligible and left out, as is the input's own gradient."""
    return 3 * T * 2 * B * 4 * H * (F + H)


def write_bench(name, work, steps):
    """The bench model at this size and random data for `steps` steps (and a few more) in
    `work`: returns the paths of the .model and .safetensors files (bench/bf16.py uses them too)."""
    F, T, H, B = SIZES[name]
    fashion = name == "fashion"
    text = MODEL.format(name=name, B=B, T=T, F=F, H=H, O=10 if fashion else 1,
                        ytype="i32[B]" if fashion else "f32[B, 1]",
                        loss="cross_entropy" if fashion else "mse")
    model = os.path.join(work, f"{name}.model")
    with open(model, "w") as f:
        f.write(text)
    rng = np.random.default_rng(0)
    n = B * (steps + 4)
    x = rng.standard_normal((n, T, F), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32) if fashion else rng.standard_normal((n, 1), dtype=np.float32)
    data = os.path.join(work, f"{name}.safetensors")
    safetensors_io.save(data, {"x": x, "y": y})
    return model, data


def gradc_side(gradc, name, work, steps):
    model, data = write_bench(name, work, steps)
    exe = os.path.join(work, name)
    t0 = time.perf_counter()
    subprocess.run([gradc, model, "-o", exe], check=True)
    compile_s = time.perf_counter() - t0
    runs = []
    # 1 and 2 threads forced, then the default (no --threads: the run measures its first
    # steps with each count and keeps the faster; its timing starts after that measurement).
    for threads in (1, 2, None):
        flags = ["--threads", str(threads)] if threads else []
        _, err = run_child([exe, "--quiet", "--timing", "--data", data, "--no-shuffle", "--epochs", "1"] + flags)
        m = re.search(r"timing first_step_s (\S+) steps (\d+) ms_per_step (\S+) ready_s (\S+) peak_rss_mib (\S+)"
                      r" threads (\d+)", err)
        if not m:
            sys.exit(f"bench: no timing line from {exe}:\n{err}")
        runs.append({"threads": int(m.group(6)), "default": threads is None, "ms_per_step": float(m.group(3)),
                     "first_step_s": float(m.group(1)), "ready_s": float(m.group(4)),
                     "peak_rss_mib": float(m.group(5)), "compile_s": compile_s})
    return runs


def torch_side(name, steps):
    runs = []
    for threads in (1, 2):
        args = ["--fashion"] if name == "fashion" else ["--size", name]
        out, _ = run_child(["/usr/bin/python3", os.path.join(HERE, "torch_reference.py"), *args,
                                          "--threads", str(threads), "--steps", str(steps)])
        r = json.loads(out.strip().splitlines()[-1])
        r["first_step_s"] = r["start_to_first_step_s"]  # its peak_rss_mib is its own VmHWM
        runs.append(r)
    return runs


def onednn_side(onednn, name, steps):
    """oneDNN's LSTM alone on this size's shape, 1 and 2 threads, each in its own process;
    None when bench/onednn_lstm was not built."""
    if not os.path.exists(onednn):
        return None
    F, T, H, B = SIZES[name]
    iters = steps if name != "large" else max(5, steps // 2)
    runs = []
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        p = subprocess.run([onednn, str(F), str(T), str(H), str(B), str(iters), "3" if name == "large" else "5"],
                           capture_output=True, text=True, env=env)
        m = re.search(r"^onednn_lstm .* ms_per_iter (\S+) fwd_ms (\S+) bwd_ms (\S+)", p.stdout, re.M)
        if p.returncode != 0 or not m:
            sys.exit(f"bench: {onednn} failed ({p.returncode}):\n{p.stdout[-1000:]}{p.stderr[-2000:]}")
        runs.append({"threads": threads, "ms_per_step": float(m.group(1)), "fwd_ms": float(m.group(2)),
                     "bwd_ms": float(m.group(3))})
    return runs


def best(runs):
    """The run with the fewest ms per step."""
    return min(runs, key=lambda r: r["ms_per_step"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--sizes", default="small,medium,large,fashion")
    ap.add_argument("--models", default="bilstm_fashion,tcn_series,bnlstm_fashion,seed_gate_bn",
                    help="example models of models/ also timed against PyTorch by bench/models.py ('' for none)")
    a = ap.parse_args()
    gradc = os.path.join(a.build, "bin", "gradc")
    gemm_bench = os.path.join(a.build, "bin", "gemm_bench")
    onednn = os.path.join(a.build, "bin", "onednn_lstm")
    out = subprocess.run([gemm_bench, "--quick", "--peaks", "--threads", "2"], check=True, capture_output=True,
                         text=True).stdout
    peaks = {int(t): (float(f), float(g))
             for t, f, g in re.findall(r"threads (\d+) FMA peak ([\d.]+) GFLOP/s GEMM peak ([\d.]+) GFLOP/s", out)}
    for t, (f, g) in sorted(peaks.items()):
        print(f"measured now, {t} thread{'s' if t > 1 else ''}: single-precision GEMM peak {g:.1f} GFLOP/s "
              f"(best of gradc and OpenBLAS, square 512/1024), FMA peak {f:.1f} GFLOP/s")
    hdr = (f"{'size':8s} {'impl':6s} {'ms/step':>9s} {'samples/s':>10s} {'GFLOP/s':>8s} {'%GEMM':>6s} {'%FMA':>6s} "
           f"{'RSS MiB':>8s} {'ready s':>8s} {'1st step s':>10s} {'compile s':>9s}")
    rows, ratios, dnnl_rows = [], [], []
    with tempfile.TemporaryDirectory(prefix="gradc-bench-") as work:
        for name in a.sizes.split(","):
            F, T, H, B = SIZES[name]
            steps = a.steps if name != "large" else max(20, a.steps // 5)  # ~0.1-0.6 s a step
            g = gradc_side(gradc, name, work, steps)
            t = torch_side(name, steps)
            d = onednn_side(onednn, name, steps)
            fl = gemm_flops(F, T, H, B)
            gd = next(r for r in g if r["default"])
            g = [r for r in g if not r["default"]]
            for impl, r in ([(f"gradc{r['threads']}", r) for r in g] + [(f"gradcD{gd['threads']}", gd)] +
                            [(f"torch{r['threads']}", r) for r in t]):
                ms = r["ms_per_step"]
                fma, gp = peaks[r["threads"]]
                gf = fl / ms / 1e6
                rows.append(f"{name:8s} {impl:6s} {ms:9.3f} {B * 1000 / ms:10.0f} {gf:8.1f} {100 * gf / gp:5.1f}% "
                            f"{100 * gf / fma:5.1f}% {r['peak_rss_mib']:8.1f} {r['ready_s']:8.3f} {r['first_step_s']:10.3f} "
                            f"{r.get('compile_s', float('nan')):9.2f}")
            for r in d or []:
                ms = r["ms_per_step"]
                fma, gp = peaks[r["threads"]]
                gf = fl / ms / 1e6
                dnnl_rows.append(f"{name:8s} dnnl{r['threads']:<2d} {ms:9.3f} {r['fwd_ms']:9.3f} {r['bwd_ms']:9.3f} "
                                 f"{gf:8.1f} {100 * gf / gp:5.1f}% {100 * gf / fma:5.1f}%")
            bg, bt = best(g), best(t)
            g1 = next(r for r in g if r["threads"] == 1)
            ratios.append((name, bt["ms_per_step"] / bg["ms_per_step"], bt["ms_per_step"] / g1["ms_per_step"],
                           bt["peak_rss_mib"] / bg["peak_rss_mib"], bt["ready_s"] / bg["ready_s"],
                           bt["first_step_s"] / bg["first_step_s"], bg, bt, best(d) if d else None,
                           gd["ms_per_step"] / bg["ms_per_step"], gd["threads"]))
    print(hdr)
    for r in rows:
        print(r)
    if dnnl_rows:
        print()
        print("oneDNN's LSTM alone (forward training + backward, weight reorders, input gradient; no BatchNorm, "
              "head, loss or optimizer); GFLOP/s counted as for gradc")
        print(f"{'size':8s} {'impl':6s} {'ms/iter':>9s} {'fwd ms':>9s} {'bwd ms':>9s} {'GFLOP/s':>8s} {'%GEMM':>6s} "
              f"{'%FMA':>6s}")
        for r in dnnl_rows:
            print(r)
    else:
        print()
        print(f"oneDNN column left out: {onednn} was not built (needs libdnnl-dev)")
    print()
    print("PyTorch / gradc, each side's best thread count (higher is better for gradc); 'speed-up 1T' is against")
    print("gradc on one thread; start-up is to the start of the first step, '+1st step' to its end; 'default' is")
    print("gradc's run without --threads (gradcD<N>: it chose N threads) / its best forced count (1.00 = as fast)")
    if dnnl_rows:
        print("'gradc/dnnl': gradc's whole step / oneDNN's LSTM alone, each side's best thread count ('dnnl': "
              "oneDNN's; lower is better for gradc)")
    print(f"{'size':8s} {'threads':>7s} {'speed-up':>9s} {'speed-up 1T':>11s} {'RSS ratio':>10s} {'start-up':>9s} "
          f"{'+1st step':>9s} {'default':>8s}" + (f" {'dnnl':>4s} {'gradc/dnnl':>10s}" if dnnl_rows else ""))
    for name, sp, sp1, mem, st, st1, g, t, d, dflt, dthreads in ratios:
        extra = ""
        if name == "fashion":
            extra = (f"   s/epoch ({FASHION_STEPS_PER_EPOCH} steps): gradc {g['ms_per_step'] * FASHION_STEPS_PER_EPOCH / 1000:.1f}"
                     f", torch {t['ms_per_step'] * FASHION_STEPS_PER_EPOCH / 1000:.1f}")
        dnnl = f" {d['threads']:>4d} {g['ms_per_step'] / d['ms_per_step']:9.2f}x" if d else ""
        print(f"{name:8s} {g['threads']:>3d}/{t['threads']:<3d} {sp:8.2f}x {sp1:10.2f}x {mem:9.2f}x {st:8.1f}x "
              f"{st1:8.1f}x {dflt:5.2f}/{dthreads}{dnnl}{extra}")
    if a.models:
        n = max(a.steps // 5, 10)
        print(f"\nexample models (bench/models.py, {n} timed steps each):", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, "models.py"), "--build", a.build, "--models", a.models,
                        "--steps", str(n)], check=True)


if __name__ == "__main__":
    main()
