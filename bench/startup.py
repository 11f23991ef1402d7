"""startup.py: for each model in models/, how long until it trains, with each backend.

Per model it measures (the best of --repeat runs, wall clock on this machine: the least
disturbed by other work on a shared machine):
  run_first_step   `gradc run MODEL` (LLVM JIT, in process): from exec of gradc to the end of
                   the first training step, as the driver's --timing reports it (includes
                   parsing, autodiff, LLVM's -O2 pipeline and code generation, data loading)
  build            `gradc MODEL --backend=B -o EXE`: the time to build an executable
  exe_first_step   the executable's own exec-to-first-step (data loading, initialisation)
  build+first      build + exe_first_step: the C++ backend's zero-set-up equivalent of gradc run
  ms_per_step      the steady-state step time (--timing: after 3 warm-up steps), for the
                   JIT and both executables, with the same --threads
and prints one table. Needs a built gradc (--build DIR, default build/).

usage: /usr/bin/python3 bench/startup.py [--build DIR] [--steps N] [--repeat N] [--threads N] [MODEL...]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TIMING = re.compile(r"timing first_step_s (\S+) steps (\d+) ms_per_step (\S+)")


def run(cmd):
    """Runs cmd; returns (wall seconds, stderr). Exits with the output on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return wall, p.stderr


def timing(stderr):
    m = TIMING.search(stderr)
    if not m:
        sys.exit("no --timing line in:\n" + stderr[-2000:])
    return float(m.group(1)), float(m.group(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--steps", type=int, default=30, help="training steps per run (--batch-limit)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="--threads of every run (default 1: steadier on a shared machine)")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    gradc = os.path.join(a.build, "bin", "gradc")
    models = a.models or sorted(os.path.join(REPO, "models", f) for f in os.listdir(os.path.join(REPO, "models")) if f.endswith(".model"))
    flags = ["--quiet", "--no-shuffle", "--batch-limit", str(a.steps), "--threads", str(a.threads), "--timing"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            name = os.path.splitext(os.path.basename(model))[0]
            r = {"model": name}
            samples = {k: [] for k in ["run_first", "run_ms", "build_llvm", "build_cpp", "first_llvm", "first_cpp", "ms_llvm", "ms_cpp"]}
            for _ in range(a.repeat):
                _, err = run([gradc, "run", model, "--"] + flags)
                first, ms = timing(err)
                samples["run_first"].append(first)
                samples["run_ms"].append(ms)
                for backend in ["llvm", "cpp"]:
                    exe = os.path.join(tmp, f"{name}.{backend}")
                    wall, _ = run([gradc, model, f"--backend={backend}", "-o", exe])
                    samples[f"build_{backend}"].append(wall)
                    _, err = run([exe] + flags)
                    first, ms = timing(err)
                    samples[f"first_{backend}"].append(first)
                    samples[f"ms_{backend}"].append(ms)
            for k, v in samples.items():
                r[k] = min(v)
            rows.append(r)
            print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"best of {a.repeat} runs, {a.steps} steps, --threads {a.threads}; seconds unless marked ms")
    head = ("model", "run_first_step", "build_llvm", "build_cpp", "llvm_build+first", "cpp_build+first",
            "ms/step_jit", "ms/step_llvm", "ms/step_cpp")
    print(" ".join(f"{h:>16}" for h in head))
    for r in rows:
        vals = [r["run_first"], r["build_llvm"], r["build_cpp"], r["build_llvm"] + r["first_llvm"],
                r["build_cpp"] + r["first_cpp"], r["run_ms"], r["ms_llvm"], r["ms_cpp"]]
        print(f"{r['model']:>16} " + " ".join(f"{v:16.3f}" for v in vals))


if __name__ == "__main__":
    main()
