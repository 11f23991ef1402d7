"""bf16.py: gradc's bf16 mixed precision (precision = "bf16", --precision bf16) against its
fp32, and PyTorch's CPU autocast against PyTorch's fp32, side by side in one run.

Speed: the bench model of bench/run.py (LSTM -> BatchNorm -> Dense, Adam) at each size, gradc
with --precision f32 and bf16 and PyTorch without and with torch.autocast("cpu",
dtype=torch.bfloat16), each at 1 and 2 threads in its own process; the summary compares each
side's best thread count (and one thread with one thread). PyTorch's row says which dtype its
LSTM ran in under autocast (Debian's PyTorch 1.13 keeps the LSTM in float32: only the Linear
head runs in bf16).

Accuracy: models/fashion_lstm.model trained --epochs E with f32 and with bf16 on the same seed;
the test accuracy after each epoch and the difference in points.

usage: /usr/bin/python3 bench/bf16.py [--build DIR] [--steps N] [--sizes small,medium,large,fashion]
                                      [--accuracy-epochs E (0: skip)]
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run as bench  # noqa: E402  (write_bench, run_child)


def gradc_runs(gradc, name, work, steps):
    """ms per step of gradc's bench model at this size: {(precision, threads): ms}."""
    model, data = bench.write_bench(name, work, steps)
    exe = os.path.join(work, name)
    subprocess.run([gradc, model, "-o", exe], check=True)
    out = {}
    for precision in ("f32", "bf16"):
        for threads in (1, 2):
            _, err = bench.run_child([exe, "--quiet", "--timing", "--data", data, "--no-shuffle", "--epochs", "1",
                                      "--threads", str(threads), "--precision", precision])
            if "notice: precision bf16" in err:
                sys.exit("bench: this CPU or runtime build has no AVX512-BF16; nothing to compare")
            m = re.search(r"ms_per_step (\S+)", err)
            if not m:
                sys.exit(f"bench: no timing line from {exe}:\n{err}")
            out[(precision, threads)] = float(m.group(1))
    return out


def torch_runs(name, steps):
    """PyTorch's ms per step without and with autocast: {(mode, threads): ms}, and the LSTM's
    output dtype under autocast."""
    out, dtype = {}, None
    for mode in ("f32", "autocast"):
        for threads in (1, 2):
            args = ["--fashion"] if name == "fashion" else ["--size", name]
            if mode == "autocast":
                args.append("--autocast")
            o, _ = bench.run_child(["/usr/bin/python3", os.path.join(HERE, "torch_reference.py"), *args,
                                    "--threads", str(threads), "--steps", str(steps)])
            r = json.loads(o.strip().splitlines()[-1])
            out[(mode, threads)] = r["ms_per_step"]
            if mode == "autocast":
                dtype = r["lstm_dtype"].replace("torch.", "")
    return out, dtype


def accuracy(gradc, epochs, threads):
    """fashion_lstm's test accuracy per epoch: {precision: [acc, ...]} and seconds per epoch."""
    res = {}
    with tempfile.TemporaryDirectory(prefix="gradc-bf16-") as work:
        exe = os.path.join(work, "fashion_lstm")
        subprocess.run([gradc, os.path.join(REPO, "models", "fashion_lstm.model"), "-o", exe], check=True)
        for precision in ("f32", "bf16"):
            metrics = os.path.join(work, f"{precision}.csv")
            subprocess.run([exe, "--quiet", "--epochs", str(epochs), "--threads", str(threads), "--precision", precision,
                            "--metrics", metrics], check=True, stdout=subprocess.DEVNULL)
            rows = list(csv.DictReader(open(metrics)))
            res[precision] = ([100 * float(r["val_acc"]) for r in rows], [float(r["seconds"]) for r in rows])
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--sizes", default="small,medium,large,fashion")
    ap.add_argument("--accuracy-epochs", type=int, default=3)
    ap.add_argument("--accuracy-threads", type=int, default=1)
    a = ap.parse_args()
    gradc = os.path.join(a.build, "bin", "gradc")
    print(f"{'size':8s} {'gradc f32 1T/2T ms':>19s} {'gradc bf16 1T/2T ms':>20s} {'bf16 speed-up':>14s} "
          f"{'1T speed-up':>11s} {'torch f32 ms':>12s} {'autocast ms':>11s} {'autocast':>9s} {'LSTM under autocast':>20s}")
    with tempfile.TemporaryDirectory(prefix="gradc-bf16-") as work:
        for name in a.sizes.split(","):
            steps = a.steps if name != "large" else max(20, a.steps // 3)
            g = gradc_runs(gradc, name, work, steps)
            t, dtype = torch_runs(name, steps)
            gf, gb = min(g[("f32", 1)], g[("f32", 2)]), min(g[("bf16", 1)], g[("bf16", 2)])
            tf, ta = min(t[("f32", 1)], t[("f32", 2)]), min(t[("autocast", 1)], t[("autocast", 2)])
            print(f"{name:8s} {g[('f32', 1)]:9.2f}/{g[('f32', 2)]:<9.2f} {g[('bf16', 1)]:10.2f}/{g[('bf16', 2)]:<9.2f} "
                  f"{gf / gb:13.2f}x {g[('f32', 1)] / g[('bf16', 1)]:10.2f}x {tf:12.2f} {ta:11.2f} {tf / ta:8.2f}x "
                  f"{dtype:>20s}", flush=True)
    print("bf16 speed-up: gradc's best f32 / its best bf16 (each at its faster thread count); 1T: one thread each;")
    print("autocast: PyTorch's best f32 / its best under autocast (below 1: autocast is slower)")
    if a.accuracy_epochs > 0:
        r = accuracy(gradc, a.accuracy_epochs, a.accuracy_threads)
        print(f"\nfashion_lstm, test accuracy after each epoch (%), {a.accuracy_threads} thread(s):")
        print(f"{'epoch':>5s} {'f32':>7s} {'bf16':>7s} {'bf16-f32':>9s} {'f32 s':>6s} {'bf16 s':>6s}")
        for e, (af, ab, sf, sb) in enumerate(zip(r["f32"][0], r["bf16"][0], r["f32"][1], r["bf16"][1]), 1):
            print(f"{e:5d} {af:7.2f} {ab:7.2f} {ab - af:+9.2f} {sf:6.1f} {sb:6.1f}")


if __name__ == "__main__":
    main()
