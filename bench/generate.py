"""generate.py: how fast --generate samples text from models/char_lstm.model, next to PyTorch.

It compiles models/char_lstm.model, trains it for --steps steps (the weights only need to be
those of a real run, not good) and saves a checkpoint. Then, best of --repeat runs (wall clock):
  gradc_N      `EXE --load CKPT --generate N`: the whole process (start, reading the text for its
               vocabulary, loading the checkpoint, N step-function calls, printing)
  gradc_1      the same with N = 1: the process's fixed cost
  gradc_steps  gradc_N - gradc_1: the N - 1 further characters
  torch_steps  the same model in torch.nn (Embedding, nn.LSTM(2 layers), Linear), one thread,
               float32, eval mode, N characters one step at a time with the LSTM state
               carried (the fast way in PyTorch), sampling with torch.multinomial
  window       for scale: PyTorch re-running a whole 64-character window per character
and prints the table with the ratio torch_steps / gradc_steps.

usage: /usr/bin/python3 bench/generate.py [--build DIR] [--chars N] [--steps N] [--repeat N]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
import safetensors_io  # noqa: E402


def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return wall, p.stdout


def torch_timings(ckpt, chars, repeat):
    import torch
    torch.set_num_threads(1)
    tensors, meta = safetensors_io.load_with_metadata(ckpt)
    V, E = tensors["emb.weight"].shape
    H = tensors["lstm.weight_hh_l0"].shape[1]
    mods = torch.nn.ModuleDict({"emb": torch.nn.Embedding(V, E), "lstm": torch.nn.LSTM(E, H, 2, dropout=0.2, batch_first=True),
                                "head": torch.nn.Linear(H, V)})
    mods.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()
                          if not k.startswith("optimizer.")}, strict=True)
    mods.eval()
    nv = len(meta["gradc.vocabulary"])
    gen = torch.Generator().manual_seed(1)

    def stepwise():
        x, state = torch.zeros(1, 1, dtype=torch.long), None
        for _ in range(chars):
            out, state = mods["lstm"](mods["emb"](x), state)
            p = torch.softmax(mods["head"](out[0, -1])[:nv], 0)
            x = torch.multinomial(p, 1, generator=gen).view(1, 1)

    def window():
        ids = [0] * 64
        for _ in range(chars):
            out, _ = mods["lstm"](mods["emb"](torch.tensor([ids[-64:]])))
            p = torch.softmax(mods["head"](out[0, -1])[:nv], 0)
            ids.append(int(torch.multinomial(p, 1, generator=gen)))

    best = {}
    with torch.no_grad():
        for name, f in (("torch_steps", stepwise), ("window", window)):
            for _ in range(repeat):
                t0 = time.perf_counter()
                f()
                best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--chars", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50, help="training steps before the checkpoint")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    gradc = os.path.join(a.build, "bin", "gradc")
    with tempfile.TemporaryDirectory() as tmp:
        exe, ckpt = os.path.join(tmp, "char_lstm"), os.path.join(tmp, "ck.safetensors")
        run([gradc, os.path.join(REPO, "models", "char_lstm.model"), "-o", exe])
        run([exe, "--quiet", "--batch-limit", str(a.steps), "--save", ckpt])
        best = {}
        for name, n in (("gradc_N", a.chars), ("gradc_1", 1)):
            for _ in range(a.repeat):
                wall, out = run([exe, "--load", ckpt, "--generate", str(n), "--seed", "1"])
                best[name] = min(best.get(name, 1e9), wall)
        if len(out) < 2:
            sys.exit("--generate printed nothing")
        best.update(torch_timings(ckpt, a.chars, a.repeat))
    best["gradc_steps"] = best["gradc_N"] - best["gradc_1"]
    print(f"char_lstm: {a.chars} characters, best of {a.repeat}, seconds (one thread)")
    for k in ("gradc_N", "gradc_1", "gradc_steps", "torch_steps", "window"):
        print(f"  {k:12s} {best[k]:8.4f}")
    print(f"  per character: gradc {best['gradc_steps'] / (a.chars - 1) * 1e6:.1f} us, "
          f"torch {best['torch_steps'] / a.chars * 1e6:.1f} us")
    print(f"  ratio torch_steps / gradc_steps: {best['torch_steps'] / best['gradc_steps']:.2f}x")


main()
