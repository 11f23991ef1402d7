"""exe_vs_torch.py: compiled executables against PyTorch over several training steps.

For each model of layers_vs_torch.py and each optimizer (SGD with momentum and weight decay,
Adam with weight decay): gradc compiles the model to an executable (float32); the executable
and PyTorch (float64) start from the same checkpoint (`--load`) and take the same batches in
file order (`--data`, `--no-shuffle`) for STEPS steps; the parameters and buffers the
executable saves (`--save`) must match PyTorch's to a relative error of 1e-4. Prints the max
relative difference per tensor (max |a - b| / max(max |b|, 1e-6)); exits 1 on any mismatch.

With --ranks N the executable is compiled for N MPI ranks (gradc --ranks N) and trained under
`mpirun -np N`: each rank computes B / N rows of every batch (BatchNorm synchronised over the
ranks), and PyTorch trains on the whole batch (plain BatchNorm1d on the concatenated batch).

usage: exe_vs_torch.py GRADC WORKDIR [--ranks N] [CASE...]
"""
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from layers_vs_torch import B, CASES, OPTIMIZERS, rel  # noqa: E402

torch.set_default_dtype(torch.float64)
TOL = 1e-4
STEPS = 5


def make_batches(yshape, xshape):
    n = STEPS * B
    x = torch.randn(n, *xshape[1:])
    if yshape == "labels3":
        y = torch.randint(0, 3, (n,), dtype=torch.int32)
    elif yshape == "probs2":
        y = torch.rand(n, 2)
    else:
        y = torch.randn(n, *yshape[1:])
    return x, y


MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np"]


def run_case(name, gradc, work, ranks=1):
    worst = 0.0
    for opt_name, (opt_src, opt_make) in OPTIMIZERS.items():
        torch.manual_seed(11)
        mods, decls, graph, fwd, xshape, yshape = CASES[name]()
        mods.train()
        x, y = make_batches(yshape, xshape)
        start = {k: v.detach().numpy().copy() for k, v in mods.state_dict().items()}
        text = (f"model {name}\nlet B = {B}\n" + decls + "graph {\n" + graph + "\n}\n"
                + f"train {{\n  optimizer = {opt_src}\n  epochs = 1\n}}\n")
        stem = os.path.join(work, f"{name}_{opt_name}")
        with open(stem + ".model", "w") as f:
            f.write(text)
        safetensors_io.save(stem + "_start.safetensors", start)
        safetensors_io.save(stem + "_data.safetensors", {"x": x.numpy(), "y": y.numpy()})
        subprocess.run([gradc, stem + ".model", "-o", stem + ".exe", f"--ranks={ranks}"], check=True)
        launch = MPIRUN + [str(ranks), "--bind-to", "none"] if ranks > 1 else []
        threads = ["--threads", "1"] if ranks > 1 else []
        subprocess.run(launch + [stem + ".exe"] + threads + ["--quiet", "--load", stem + "_start.safetensors",
                        "--data", stem + "_data.safetensors", "--no-shuffle", "--epochs", "1",
                        "--save", stem + "_end.safetensors"], check=True, stdout=subprocess.DEVNULL)
        got = safetensors_io.load(stem + "_end.safetensors")

        opt = opt_make(mods.parameters())
        for s in range(STEPS):
            opt.zero_grad()
            fwd(x[s * B:(s + 1) * B], y[s * B:(s + 1) * B]).backward()
            opt.step()
        for k, v in mods.state_dict().items():
            r = rel(got[k], v.detach().numpy())
            worst = max(worst, r)
            print(f"{name:15s} {opt_name} {STEPS} steps{f' ranks {ranks}' if ranks > 1 else ''} {k:34s} max_rel_diff {r:.3e}"
                  f"{'  MISMATCH' if r > TOL else ''}")
    return worst


def main():
    gradc, work = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    ranks = 1
    if rest[:1] == ["--ranks"]:
        ranks, rest = int(rest[1]), rest[2:]
    names = rest or list(CASES)
    os.makedirs(work, exist_ok=True)
    worst = {n: run_case(n, gradc, work, ranks) for n in names}
    for n, w in worst.items():
        print(f"worst {n:15s} {w:.3e}")
    bad = [n for n, w in worst.items() if w > TOL]
    print("exe_vs_torch:", "FAILED " + ", ".join(bad) if bad else f"all within {TOL:g}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
