"""deploy_latency.py: inference latency of deployed gradc models, side by side: the C library
(--emit=lib, called from C), ONNX Runtime (--emit=onnx, onnxruntime-node's session.run only,
one intra-op thread) and PyTorch eager (torch.nn.LSTM -> BatchNorm1d -> Linear with the same
weights, one thread, no_grad), for seed_lstm_bn and fashion_lstm_bn at batch 1 and 64. gradc's
batch is static: batch 64 recompiles the model with `let B = 64` (the checkpoint's weights
unchanged); batch 1 uses the model's own B (a B = 1 model does not compile: BatchNorm's
unbiased variance divides by B - 1), so the C library's n = 1 call and ONNX Runtime's run
compute one padded batch of B while PyTorch computes one sample. A second ONNX Runtime column
runs the model's own file exported with --onnx-dynamic-batch on exactly `batch` rows (one
sample at batch 1). Prints the median ms per call of each and the ratios to the C library.

usage: /usr/bin/python3 bench/deploy_latency.py [--reps N] [--build BUILD]"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
import safetensors_io  # noqa: E402

MODELS = {"seed_lstm_bn": (1, 30, 64, 1), "fashion_lstm_bn": (28, 28, 128, 10)}  # F, T, H, outputs


def run(*cmd, cwd=None):
    r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r.stdout


def ms_of(out):
    return float(re.search(r"ms_per_run ([0-9.]+)", out).group(1))


def torch_ms(ckpt, dims, batch, reps):
    import torch
    torch.set_num_threads(1)
    f, t, h, o = dims

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(f, h, batch_first=True)
            self.bn = torch.nn.BatchNorm1d(h)
            self.head = torch.nn.Linear(h, o)

        def forward(self, x):
            return self.head(self.bn(self.lstm(x)[0][:, -1, :]))

    net = Net()
    w = safetensors_io.load(ckpt)
    state = {k: torch.from_numpy(w[k].copy()) for k in net.state_dict()}
    net.load_state_dict(state)
    net.eval()
    x = torch.rand(batch, t, f) * 2 - 1
    times = []
    with torch.no_grad():
        net(x)
        for _ in range(reps):
            a = time.perf_counter()
            net(x)
            times.append((time.perf_counter() - a) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    args = ap.parse_args()
    gradc = os.path.join(args.build, "bin", "gradc")
    env = dict(os.environ, GRADC_NODE_MODULES=os.path.join(args.build, "node", "node_modules"))
    work = tempfile.mkdtemp(prefix="gradc-deploy-bench-")
    rows = []
    for name, dims in MODELS.items():
        src = os.path.join(REPO, "models", name + ".model")
        exe, ckpt = os.path.join(work, name), os.path.join(work, name + ".safetensors")
        run(gradc, src, "-o", exe)
        run(exe, "--quiet", "--epochs", "1", "--batch-limit", "5", "--save", ckpt, cwd=os.path.join(REPO, "models"))
        text = open(src).read()
        own_b = int(re.search(r"let B = (\d+)", text).group(1))
        dyn_onnx = os.path.join(work, name + ".dyn.onnx")
        run(gradc, src, "--emit=onnx", "--onnx-dynamic-batch", "--weights", ckpt, "-o", dyn_onnx)
        for batch in (1, 64):
            d = os.path.join(work, f"{name}_b{batch}")
            os.makedirs(d)
            variant = os.path.join(d, name + ".model")
            model_b = own_b if batch == 1 else batch
            open(variant, "w").write(re.sub(r"let B = \d+", f"let B = {model_b}", text, count=1))
            lib, onnx_path = os.path.join(d, f"lib{name}.a"), os.path.join(d, name + ".onnx")
            run(gradc, variant, "--emit=lib", "--weights", ckpt, "-o", lib)
            run(gradc, variant, "--emit=onnx", "--weights", ckpt, "-o", onnx_path)
            up = name.upper()
            prog = os.path.join(d, "latency")
            run("cc", "-O2", "-I" + d, "-include", name + ".h", f"-DPREDICT={name}_predict", f"-DIN_SIZE={up}_INPUT_SIZE",
                f"-DOUT_SIZE={up}_OUTPUT_SIZE", os.path.join(REPO, "bench", "deploy_latency.c"), lib, "-lm", "-lpthread",
                "-lstdc++", "-o", prog)
            c = ms_of(run(prog, str(batch), str(args.reps)))
            data = os.path.join(d, "x.safetensors")
            run(sys.executable, os.path.join(REPO, "tests", "deploy", "make_inputs.py"), onnx_path, str(model_b), data)
            r = subprocess.run(["node", os.path.join(REPO, "tests", "deploy", "run_onnx.js"), "--time", str(args.reps), onnx_path, data],
                               capture_output=True, text=True, env=env)
            ort = ms_of(r.stdout) if r.returncode == 0 else float("nan")
            dyn_data = os.path.join(d, "x_dyn.safetensors")
            run(sys.executable, os.path.join(REPO, "tests", "deploy", "make_inputs.py"), dyn_onnx, str(batch), dyn_data)
            r = subprocess.run(["node", os.path.join(REPO, "tests", "deploy", "run_onnx.js"), "--time", str(args.reps), dyn_onnx, dyn_data],
                               capture_output=True, text=True, env=dict(env, GRADC_ONNX_BATCH=str(batch)))
            ort_dyn = ms_of(r.stdout) if r.returncode == 0 else float("nan")
            pt = torch_ms(ckpt, dims, batch, args.reps)
            rows.append((name, batch, model_b, c, ort, ort_dyn, pt))
            print(f"{name:16s} batch {batch:3d} (B = {model_b:2d}): C library {c:8.3f} ms  ONNX Runtime {ort:8.3f} ms"
                  f"  (dynamic batch {ort_dyn:8.3f} ms)  PyTorch {pt:8.3f} ms", flush=True)
    print()
    print("| model | batch | gradc's B | C library (ms) | ONNX Runtime, Node (ms) | ORT, dynamic batch (ms) | PyTorch eager (ms) | ORT / C | PyTorch / C |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, batch, model_b, c, ort, ort_dyn, pt in rows:
        print(f"| {name} | {batch} | {model_b} | {c:.3f} | {ort:.3f} | {ort_dyn:.3f} | {pt:.3f} | {ort / c:.2f} | {pt / c:.2f} |")
    print(f"\n(median of {args.reps} calls each, one thread; work files in {work})")


if __name__ == "__main__":
    main()
