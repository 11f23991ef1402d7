"""dropout_vs_torch.py: Dropout and the dropout between stacked LSTM and GRU layers against
PyTorch (Debian's python3-torch), with the masks gradc draws (an independent Python
Philox-4x32-10, tests/tools/dropout_masks.py) applied in torch in place of torch's own.

For each case and each optimizer (SGD with momentum and weight decay, Adam with weight decay):
  1. a compiled executable (float32) and PyTorch (float64) from the same checkpoint over STEPS
     steps of the same batches (--seed SEED, --no-shuffle): step s drops the elements whose
     Philox(SEED, s, stream) bits fall below the threshold, stream k being the k-th dropout of
     the training graph; every parameter and optimizer state tensor to 1e-4;
  2. the saved checkpoint (optimizer state left out) loads into the torch modules (nn.LSTM,
     nn.GRU with their `dropout`) with load_state_dict(strict=True), and --predict matches
     the torch modules in eval mode (dropout off) to 1e-4;
  3. the executable's --gradcheck passes (its losses all draw the same masks).
The hand-written recurrences used for training are checked against nn.LSTM / nn.GRU in eval
mode first (1e-10). Prints the max relative difference per tensor; exits 1 on any mismatch.

usage: dropout_vs_torch.py GRADC WORKDIR [CASE...]
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
from dropout_masks import keep  # noqa: E402
from layers_vs_torch import OPTIMIZERS, rel  # noqa: E402

torch.set_default_dtype(torch.float64)
TOL = 1e-4
STEPS = 5
B = 4
SEED = 5


class Masks:
    """The masks of one training step: the k-th call draws stream k at step `step`."""

    def __init__(self, step):
        self.step, self.stream = step, 0

    def __call__(self, x, p):
        if self.step is None or p == 0:
            return x
        m = keep(SEED, self.step, self.stream, x.numel(), p).reshape(x.shape)
        self.stream += 1
        return x * torch.from_numpy(m.astype(np.float64)) / (1 - p)


def lstm_dir(m, x, l, sfx):
    """One direction of layer l of nn.LSTM `m`, by hand (gates i, f, g, o)."""
    wi, wh = getattr(m, f"weight_ih_l{l}{sfx}"), getattr(m, f"weight_hh_l{l}{sfx}")
    b = getattr(m, f"bias_ih_l{l}{sfx}") + getattr(m, f"bias_hh_l{l}{sfx}")
    H = wh.shape[1]
    h = c = torch.zeros(x.shape[0], H)
    steps = range(x.shape[1] - 1, -1, -1) if sfx else range(x.shape[1])
    out = [None] * x.shape[1]
    for t in steps:
        g = x[:, t] @ wi.T + h @ wh.T + b
        i, f, gg, o = g[:, :H].sigmoid(), g[:, H:2 * H].sigmoid(), g[:, 2 * H:3 * H].tanh(), g[:, 3 * H:].sigmoid()
        c = f * c + i * gg
        h = o * c.tanh()
        out[t] = h
    return torch.stack(out, 1)


def gru_dir(m, x, l, sfx):
    """One direction of layer l of nn.GRU `m`, by hand (gates r, z, n)."""
    wi, wh = getattr(m, f"weight_ih_l{l}{sfx}"), getattr(m, f"weight_hh_l{l}{sfx}")
    bi, bh = getattr(m, f"bias_ih_l{l}{sfx}"), getattr(m, f"bias_hh_l{l}{sfx}")
    H = wh.shape[1]
    h = torch.zeros(x.shape[0], H)
    steps = range(x.shape[1] - 1, -1, -1) if sfx else range(x.shape[1])
    out = [None] * x.shape[1]
    for t in steps:
        gi, gh = x[:, t] @ wi.T + bi, h @ wh.T + bh
        r = (gi[:, :H] + gh[:, :H]).sigmoid()
        z = (gi[:, H:2 * H] + gh[:, H:2 * H]).sigmoid()
        n = (gi[:, 2 * H:] + r * gh[:, 2 * H:]).tanh()
        h = (1 - z) * n + z * h
        out[t] = h
    return torch.stack(out, 1)


def rnn(m, x, masks):
    """nn.LSTM / nn.GRU `m` by hand, masks applied between layers as nn.LSTM's dropout."""
    one = gru_dir if isinstance(m, torch.nn.GRU) else lstm_dir
    seq = x
    for l in range(m.num_layers):
        if l > 0:
            seq = masks(seq, m.dropout)
        outs = [one(m, seq, l, "")] + ([one(m, seq, l, "_reverse")] if m.bidirectional else [])
        seq = torch.cat(outs, -1)
    return seq


def case_dropout():
    mods = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 6), "b": torch.nn.Linear(6, 2)})
    model = ("input x: f32[B, 4]\ntarget y: f32[B, 2]\nlayer a = Dense(4, 6)\nlayer drop = Dropout(0.4)\n"
             "layer drop2 = Dropout(p = 0.25)\nlayer b = Dense(6, 2)\n")
    graph = "yhat = b(drop2(drop(relu(a(x)))))\nloss = mse(yhat, y)\noutput yhat"

    def out(m, x, masks):
        return m["b"](masks(masks(torch.relu(m["a"](x)), 0.4), 0.25))

    def ref(m, x):
        drop = lambda t, p: torch.nn.functional.dropout(t, p, training=m.training)
        return m["b"](drop(drop(torch.relu(m["a"](x)), 0.4), 0.25))
    return mods, model, graph, out, ref, (B, 4), (B, 2)


def case_rnn(kind, layers, bidirectional, p):
    hid = 3
    D = 2 if bidirectional else 1
    ctor = torch.nn.GRU if kind == "GRU" else torch.nn.LSTM
    mods = torch.nn.ModuleDict({"rnn": ctor(2, hid, num_layers=layers, batch_first=True, dropout=p,
                                            bidirectional=bidirectional),
                                "head": torch.nn.Linear(D * hid, 1)})
    args = f"2, {hid}, layers = {layers}, dropout = {p}" + (", bidirectional = true" if bidirectional else "")
    model = (f"input x: f32[B, 5, 2]\ntarget y: f32[B, 5, 1]\nlayer rnn = {kind}({args})\n"
             f"layer drop = Dropout(0.5)\nlayer head = Dense({D * hid}, 1)\n")
    graph = "hs = drop(rnn(x))\nyhat = head(hs)\nloss = mse(yhat, y)\noutput yhat"

    def out(m, x, masks):
        return m["head"](masks(rnn(m["rnn"], x, masks), 0.5))

    def ref(m, x):
        return m["head"](torch.nn.functional.dropout(m["rnn"](x)[0], 0.5, training=m.training))
    return mods, model, graph, out, ref, (B, 5, 2), (B, 5, 1)


CASES = {
    "dropout": case_dropout,
    "lstm2_dropout": lambda: case_rnn("LSTM", 2, False, 0.3),
    "lstm_bi2_dropout": lambda: case_rnn("LSTM", 2, True, 0.3),
    "gru3_dropout": lambda: case_rnn("GRU", 3, False, 0.2),
}


def opt_state(opt, mods, opt_name):
    """PyTorch's optimizer state under gradc's checkpoint names."""
    st = {}
    for k, p in mods.named_parameters():
        s = opt.state[p]
        if opt_name == "sgd":
            st[f"optimizer.{k}.momentum_buffer"] = s["momentum_buffer"].numpy()
        else:
            st[f"optimizer.{k}.exp_avg"] = s["exp_avg"].numpy()
            st[f"optimizer.{k}.exp_avg_sq"] = s["exp_avg_sq"].numpy()
            st["optimizer.step"] = np.array(float(s["step"]))
    return st


def run(name, gradc, work):
    worst = 0.0
    for opt_name, (opt_src, opt_make) in OPTIMIZERS.items():
        torch.manual_seed(11)
        mods, decls, graph, out, ref, xs, ys = CASES[name]()
        x = torch.randn(STEPS * B, *xs[1:])
        y = torch.randn(STEPS * B, *ys[1:])
        xp = torch.randn(B + 3, *xs[1:])
        yp = torch.randn(B + 3, *ys[1:])
        mods.eval()
        with torch.no_grad():  # the hand-written forward is the module's (eval: no dropout)
            r = rel(out(mods, x[:B], Masks(None)).numpy(), ref(mods, x[:B]).numpy())
        if r > 1e-10:
            print(f"{name:17s} hand-written forward differs from torch's modules by {r:.3e}  MISMATCH")
            worst = float("inf")
        start = {k: v.detach().numpy().copy() for k, v in mods.state_dict().items()}
        text = (f"model {name}\nlet B = {B}\n" + decls + "graph {\n" + graph + "\n}\n"
                + f"train {{\n  optimizer = {opt_src}\n  epochs = 1\n}}\n")
        stem = os.path.join(work, f"{name}_{opt_name}")
        with open(stem + ".model", "w") as f:
            f.write(text)
        safetensors_io.save(stem + "_start.safetensors", start)
        safetensors_io.save(stem + "_data.safetensors", {"x": x.numpy(), "y": y.numpy()})
        safetensors_io.save(stem + "_new.safetensors", {"x": xp.numpy(), "y": yp.numpy()})
        subprocess.run([gradc, stem + ".model", "-o", stem + ".exe"], check=True)
        subprocess.run([stem + ".exe", "--quiet", "--load", stem + "_start.safetensors", "--seed", str(SEED),
                        "--data", stem + "_data.safetensors", "--no-shuffle", "--epochs", "1",
                        "--save", stem + "_end.safetensors"], check=True, stdout=subprocess.DEVNULL)
        got = safetensors_io.load(stem + "_end.safetensors")
        subprocess.run([stem + ".exe", "--load", stem + "_end.safetensors", "--data", stem + "_new.safetensors",
                        "--predict", "--out", stem + "_pred.safetensors"], check=True, stdout=subprocess.DEVNULL)
        pred = next(iter(safetensors_io.load(stem + "_pred.safetensors").values()))

        mods.train()
        opt = opt_make(mods.parameters())
        for s in range(STEPS):
            opt.zero_grad()
            p = out(mods, x[s * B:(s + 1) * B], Masks(s))
            torch.nn.functional.mse_loss(p, y[s * B:(s + 1) * B]).backward()
            opt.step()
        want = {k: v.detach().numpy() for k, v in mods.state_dict().items()}
        want.update(opt_state(opt, mods, opt_name))
        missing = sorted(set(want) - set(got))
        if missing:
            print(f"{name:17s} {opt_name} checkpoint lacks {', '.join(missing)}  MISMATCH")
            worst = float("inf")
        for k, v in want.items():
            if k not in got:
                continue
            r = rel(got[k], v)
            worst = max(worst, r)
            print(f"{name:17s} {opt_name} {STEPS} steps {k:36s} max_rel_diff {r:.3e}{'  MISMATCH' if r > TOL else ''}")

        fresh, *_ = CASES[name]()
        fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in got.items()
                               if not k.startswith("optimizer.")}, strict=True)
        fresh.eval()
        with torch.no_grad():
            want_pred = ref(fresh, xp).numpy()
        r = rel(pred, want_pred)
        worst = max(worst, r)
        print(f"{name:17s} {opt_name} load_state_dict(strict=True) ok, --predict (eval mode) "
              f"max_rel_diff {r:.3e}{'  MISMATCH' if r > TOL else ''}")

    gc = subprocess.run([os.path.join(work, f"{name}_adam.exe"), "--gradcheck", "--data",
                         os.path.join(work, f"{name}_adam_data.safetensors")], capture_output=True, text=True)
    last = gc.stdout.strip().splitlines()[-1] if gc.stdout.strip() else gc.stderr.strip()
    print(f"{name:17s} gradcheck exit {gc.returncode}: {last}")
    if gc.returncode != 0:
        print(gc.stdout + gc.stderr)
        worst = float("inf")
    return worst


def main():
    gradc, work = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(CASES)
    os.makedirs(work, exist_ok=True)
    worst = {n: run(n, gradc, work) for n in names}
    for n in names:
        print(f"worst {n:17s} {worst[n]:.3e}")
    bad = [n for n in names if worst[n] > TOL]
    print("dropout_vs_torch:", "FAILED " + ", ".join(bad) if bad else f"all within {TOL:g} ({STEPS} steps, --predict)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
