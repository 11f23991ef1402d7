"""scaling.py: how gradc's cost grows with the sequence length T and the width H, beside PyTorch.

The model is bench/run.py's LSTM(F, H) -> BatchNorm on the last step -> Dense(H, 1), MSE, Adam,
with F = 28 and B = 64: T from 10 to 1,000 at H = 128, and H from 32 to 1,024 at T = 28. For
each point, both sides on one thread (steadier on a shared machine), each in its own process:
  ms          a training step (gradc: --timing after 3 warm-up steps; torch: after 2)
  rss_mib     the process's peak resident memory (VmHWM)
  compile_s   gradc only: `gradc MODEL -o EXE`, wall clock
  arena_mib   gradc only: the arena the memory plan keeps (--emit=memory-plan), f32
and writes docs/img/scaling_{T,H}_{gradc,torch}.csv, then draws them with
scripts/plot_metrics.py --loglog into docs/img/scaling_T.png, scaling_H.png and
scaling_compile.png (docs/performance.md). Prints the tables and, per sweep, the slope of
log(ms) against log(T) or log(H) between the last two points of each side.

usage: /usr/bin/python3 bench/scaling.py [--build DIR] [--out DIR] [--quick]
"""
import argparse
import json
import math
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
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from run import MODEL, run_child  # noqa: E402

F, B = 28, 64
TIMING = re.compile(r"timing first_step_s \S+ steps \d+ ms_per_step (\S+) ready_s \S+ peak_rss_mib (\S+)")
ARENA = re.compile(r"arena: (\d+) elements")


def steps_for(T, H):
    """Enough steps for about a second of gradc, at least 3."""
    work = T * H * (H + F)
    return max(3, min(40, int(4e9 / (work * B * 24 * 6))))


def gradc_point(gradc, work, T, H):
    name = f"T{T}_H{H}"
    model = os.path.join(work, name + ".model")
    with open(model, "w") as f:
        f.write(MODEL.format(name=name, B=B, T=T, F=F, H=H, O=1, ytype="f32[B, 1]", loss="mse"))
    steps = steps_for(T, H)
    rng = np.random.default_rng(0)
    n = B * (steps + 4)
    data = os.path.join(work, name + ".safetensors")
    safetensors_io.save(data, {"x": rng.standard_normal((n, T, F), dtype=np.float32),
                               "y": rng.standard_normal((n, 1), dtype=np.float32)})
    exe = os.path.join(work, name)
    t0 = time.perf_counter()
    subprocess.run([gradc, model, "-o", exe], check=True)
    compile_s = time.perf_counter() - t0
    plan, _ = run_child([gradc, model, "--emit=memory-plan"])
    arena = int(ARENA.search(plan).group(1))
    _, err = run_child([exe, "--quiet", "--timing", "--threads", "1", "--data", data, "--no-shuffle", "--epochs", "1"])
    m = TIMING.search(err)
    if not m:
        sys.exit(f"scaling: no timing line from {exe}:\n{err}")
    os.unlink(data)
    return {"ms": float(m.group(1)), "rss_mib": float(m.group(2)), "compile_s": compile_s,
            "arena_mib": arena * 4 / 2**20, "steps": steps}


def torch_point(T, H):
    steps = max(2, steps_for(T, H) // 3)
    out, _ = run_child(["/usr/bin/python3", os.path.join(HERE, "torch_reference.py"), "--shape", f"{F},{T},{H},{B}",
                        "--threads", "1", "--steps", str(steps), "--warmup", "2"])
    r = json.loads(out.strip().splitlines()[-1])
    return {"ms": r["ms_per_step"], "rss_mib": r["peak_rss_mib"]}


def write_csv(path, key, rows, cols):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(",".join([key] + cols) + "\n")
        for k, r in rows:
            f.write(",".join([str(k)] + [f"{r[c]:.6g}" for c in cols]) + "\n")
    os.replace(tmp, path)


def slope(rows, a, b):
    (k0, r0), (k1, r1) = rows[a], rows[b]
    return math.log(r1["ms"] / r0["ms"]) / math.log(k1 / k0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "img"))
    ap.add_argument("--quick", action="store_true", help="three points per sweep (a smoke run)")
    a = ap.parse_args()
    gradc = os.path.join(a.build, "bin", "gradc")
    sweeps = {"T": ([10, 30, 100, 300, 1000], lambda v: (v, 128)),
              "H": ([32, 64, 128, 256, 512, 1024], lambda v: (28, v))}
    if a.quick:
        sweeps = {"T": ([10, 30, 100], sweeps["T"][1]), "H": ([32, 64, 128], sweeps["H"][1])}
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gradc-scaling-") as work:
        for key, (values, shape) in sweeps.items():
            g_rows, t_rows = [], []
            print(f"{key:>5s} {'gradc ms':>10s} {'torch ms':>10s} {'ratio':>6s} {'compile s':>9s} "
                  f"{'gradc MiB':>9s} {'torch MiB':>9s} {'arena MiB':>9s}", flush=True)
            for v in values:
                T, H = shape(v)
                g, t = gradc_point(gradc, work, T, H), torch_point(T, H)
                g_rows.append((v, g))
                t_rows.append((v, t))
                print(f"{v:5d} {g['ms']:10.2f} {t['ms']:10.2f} {t['ms'] / g['ms']:5.2f}x {g['compile_s']:9.2f} "
                      f"{g['rss_mib']:9.1f} {t['rss_mib']:9.1f} {g['arena_mib']:9.1f}", flush=True)
            print(f"slope of log(ms) against log({key}), last two points: gradc {slope(g_rows, -2, -1):.2f}, "
                  f"torch {slope(t_rows, -2, -1):.2f}; first to last: gradc {slope(g_rows, 0, -1):.2f}, "
                  f"torch {slope(t_rows, 0, -1):.2f}\n", flush=True)
            write_csv(os.path.join(a.out, f"scaling_{key}_gradc.csv"), key, g_rows, ["ms", "rss_mib", "compile_s", "arena_mib"])
            write_csv(os.path.join(a.out, f"scaling_{key}_torch.csv"), key, t_rows, ["ms", "rss_mib"])
    plot = ["/usr/bin/python3", os.path.join(REPO, "scripts", "plot_metrics.py"), "--loglog", "--labels", "gradc,PyTorch"]
    for key, what in (("T", "sequence length T (H = 128)"), ("H", "width H (T = 28)")):
        subprocess.run(plot + ["-o", os.path.join(a.out, f"scaling_{key}.png"), "--x", key, "--metrics", "ms,rss_mib",
                               "--title", f"one training step against the {what}, B = 64, one thread",
                               os.path.join(a.out, f"scaling_{key}_gradc.csv"),
                               os.path.join(a.out, f"scaling_{key}_torch.csv")], check=True)
        subprocess.run(["/usr/bin/python3", os.path.join(REPO, "scripts", "plot_metrics.py"), "--loglog", "--labels", "gradc",
                        "-o", os.path.join(a.out, f"scaling_compile_{key}.png"), "--x", key,
                        "--metrics", "compile_s,arena_mib", "--title", f"gradc: compile time and arena against {key}",
                        os.path.join(a.out, f"scaling_{key}_gradc.csv")], check=True)
    print("wrote", ", ".join(f"{a.out}/scaling_{k}.png" for k in ("T", "H", "compile_T", "compile_H")))


main()
