"""embedding_vs_torch.py: the prelude's Embedding (i32 and i64 indices, with and without padding_idx) against torch.nn.Embedding.

For each case and each optimizer (SGD with momentum and weight decay, Adam with weight decay), a
compiled executable (float32) and PyTorch (float64) start from the same checkpoint and take STEPS
steps on the same batches (--load, --data, --no-shuffle); every parameter and optimizer state
tensor the executable saves must match to 1e-4 (max |a - b| / max |b|), the padding row must
stay exactly zero, the checkpoint must load into the torch modules with
load_state_dict(strict=True), --predict must match eval mode to 1e-4, and --gradcheck must pass.
A fresh executable's initial weight must have its padding row zero and the other rows drawn
from normal(0, 1) (mean and standard deviation checked loosely over 4000 draws).

usage: embedding_vs_torch.py GRADC WORKDIR [CASE...]
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
from layers_vs_torch import B, OPTIMIZERS, rel  # noqa: E402

torch.set_default_dtype(torch.float64)
TOL = 1e-4
STEPS = 5
NUM, DIM, T = 7, 3, 5


def case(padding, i64):
    """Embedding -> LSTM -> Dense on [B, T] indices; mse against [B, T, 1]."""
    mods = torch.nn.ModuleDict({"emb": torch.nn.Embedding(NUM, DIM, padding_idx=None if padding < 0 else padding),
                                "rnn": torch.nn.LSTM(DIM, 4, batch_first=True),
                                "head": torch.nn.Linear(4, 1)})
    pad = f", padding_idx = {padding}" if padding >= 0 else ""
    model = (f"input x: i32[B, {T}]\ntarget y: f32[B, {T}, 1]\nlayer emb = Embedding({NUM}, {DIM}{pad})\n"
             "layer rnn = LSTM(3, 4)\nlayer head = Dense(4, 1)\n")
    idx = 'cast(x, "i64")' if i64 else "x"
    graph = f"e = emb({idx})\nyhat = head(rnn(e))\nloss = mse(yhat, y)\noutput yhat"
    out = lambda m, x: m["head"](m["rnn"](m["emb"](x))[0])
    return mods, model, graph, out


CASES = {"embedding": lambda: case(-1, False), "embedding_pad_i64": lambda: case(2, True)}


def run(name, gradc, work):
    worst = 0.0
    for opt_name, (opt_src, opt_make) in OPTIMIZERS.items():
        torch.manual_seed(5)
        mods, decls, graph, out = CASES[name]()
        x = torch.randint(0, NUM, (STEPS * B, T))
        y = torch.randn(STEPS * B, T, 1)
        xp = torch.randint(0, NUM, (B + 3, T))
        start = {k: v.detach().numpy().copy() for k, v in mods.state_dict().items()}
        text = (f"model {name}\nlet B = {B}\n" + decls + "graph {\n" + graph + "\n}\n"
                + f"train {{\n  optimizer = {opt_src}\n  epochs = 1\n}}\n")
        stem = os.path.join(work, f"{name}_{opt_name}")
        with open(stem + ".model", "w") as f:
            f.write(text)
        safetensors_io.save(stem + "_start.safetensors", start)
        safetensors_io.save(stem + "_data.safetensors", {"x": x.numpy().astype(np.int32), "y": y.numpy()})
        safetensors_io.save(stem + "_new.safetensors", {"x": xp.numpy().astype(np.int32)})
        subprocess.run([gradc, stem + ".model", "-o", stem + ".exe"], check=True)
        subprocess.run([stem + ".exe", "--quiet", "--load", stem + "_start.safetensors", "--data", stem + "_data.safetensors",
                        "--no-shuffle", "--epochs", "1", "--save", stem + "_end.safetensors"], check=True,
                       stdout=subprocess.DEVNULL)
        got = safetensors_io.load(stem + "_end.safetensors")
        subprocess.run([stem + ".exe", "--load", stem + "_end.safetensors", "--data", stem + "_new.safetensors", "--predict",
                        "--out", stem + "_pred.safetensors"], check=True, stdout=subprocess.DEVNULL)
        pred = next(iter(safetensors_io.load(stem + "_pred.safetensors").values()))

        opt = opt_make(mods.parameters())
        for s in range(STEPS):
            opt.zero_grad()
            torch.nn.functional.mse_loss(out(mods, x[s * B:(s + 1) * B]), y[s * B:(s + 1) * B]).backward()
            opt.step()
        want = {k: v.detach().numpy() for k, v in mods.state_dict().items()}
        for k, p in mods.named_parameters():
            st = opt.state[p]
            if opt_name == "sgd":
                want[f"optimizer.{k}.momentum_buffer"] = st["momentum_buffer"].numpy()
            else:
                want[f"optimizer.{k}.exp_avg"] = st["exp_avg"].numpy()
                want[f"optimizer.{k}.exp_avg_sq"] = st["exp_avg_sq"].numpy()
                want["optimizer.step"] = np.array(float(st["step"]))
        for k, v in want.items():
            r = rel(got[k], v) if k in got else float("inf")
            worst = max(worst, r)
            print(f"{name:18s} {opt_name:4s} {STEPS} steps {k:36s} max_rel_diff {r:.3e}{'  MISMATCH' if r > TOL else ''}")
        if mods["emb"].padding_idx is not None:
            row = np.asarray(got["emb.weight"])[mods["emb"].padding_idx]
            ok = bool(np.all(row == 0))
            worst = worst if ok else float("inf")
            print(f"{name:18s} {opt_name:4s} padding row after {STEPS} steps {'exactly zero' if ok else 'NONZERO  MISMATCH'}")

        fresh, *_ = CASES[name]()
        fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in got.items() if not k.startswith("optimizer.")},
                              strict=True)
        fresh.eval()
        with torch.no_grad():
            r = rel(pred, out(fresh, xp).numpy())
        worst = max(worst, r)
        print(f"{name:18s} {opt_name:4s} load_state_dict(strict=True) ok, --predict max_rel_diff {r:.3e}"
              f"{'  MISMATCH' if r > TOL else ''}")

    exe = os.path.join(work, f"{name}_adam.exe")
    gc = subprocess.run([exe, "--gradcheck", "--data", os.path.join(work, f"{name}_adam_data.safetensors")],
                        capture_output=True, text=True)
    last = gc.stdout.strip().splitlines()[-1] if gc.stdout.strip() else gc.stderr.strip()
    print(f"{name:18s} gradcheck exit {gc.returncode}: {last}")
    if gc.returncode != 0:
        print(gc.stdout + gc.stderr)
        worst = float("inf")
    return worst


def check_init(gradc, work):
    """A fresh executable's Embedding(1001, 4, padding_idx = 3) weight: row 3 zero, the rest normal(0, 1)."""
    stem = os.path.join(work, "init")
    with open(stem + ".model", "w") as f:
        f.write("model init\nlet B = 2\ninput x: i32[B, 3]\ntarget y: f32[B, 3, 4]\n"
                "layer emb = Embedding(1001, 4, padding_idx = 3)\ngraph {\ne = emb(x)\nloss = mse(e, y)\noutput e\n}\n"
                "train {\n  optimizer = sgd(lr = 0.1)\n  epochs = 1\n}\n")
    subprocess.run([gradc, stem + ".model", "-o", stem + ".exe"], check=True)
    safetensors_io.save(stem + "_data.safetensors", {"x": np.zeros((2, 3), np.int32), "y": np.zeros((2, 3, 4), np.float32)})
    subprocess.run([stem + ".exe", "--quiet", "--data", stem + "_data.safetensors", "--epochs", "0", "--save",
                    stem + ".safetensors"], check=True, stdout=subprocess.DEVNULL)
    w = np.asarray(safetensors_io.load(stem + ".safetensors")["emb.weight"], np.float64)
    rest = np.delete(w, 3, axis=0)
    ok = bool(np.all(w[3] == 0)) and abs(rest.mean()) < 0.1 and abs(rest.std() - 1) < 0.1
    print(f"init: padding row zero {bool(np.all(w[3] == 0))}, other rows mean {rest.mean():.3f} std {rest.std():.3f}"
          f"{'' if ok else '  MISMATCH'}")
    return 0.0 if ok else float("inf")


def main():
    gradc, work = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(CASES)
    os.makedirs(work, exist_ok=True)
    worst = {n: run(n, gradc, work) for n in names}
    worst["init"] = check_init(gradc, work)
    for n, w in worst.items():
        print(f"worst {n:18s} {w:.3e}")
    bad = [n for n, w in worst.items() if w > TOL]
    print("embedding_vs_torch:", "FAILED " + ", ".join(bad) if bad else f"all within {TOL:g} ({STEPS} steps, --predict)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
