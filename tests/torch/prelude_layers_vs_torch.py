"""prelude_layers_vs_torch.py: the round-2 prelude layers (Softmax, LogSoftmax and their call forms softmax(),
log_softmax(), GroupNorm, GRU,
stacked and bidirectional GRU and LSTM, Conv1d with its stride, padding and dilation, and BNLSTM
against the reference cell of bnlstm_reference.py) against PyTorch (Debian's python3-torch).

For each case and each optimizer (SGD with momentum and weight decay, Adam with weight decay):
  1. one training step in gradc's double-precision interpreter (tests/tools/gradc_step.cpp)
     against PyTorch in float64: the loss, every gradient, the parameters after the step and
     the buffers, to 1e-5 (the check of layers_vs_torch.py);
  2. a compiled executable (float32) and PyTorch (float64) from the same checkpoint over STEPS
     steps of the same batches (--load, --data, --no-shuffle): every parameter, buffer and
     optimizer state tensor the executable saves (momentum_buffer; exp_avg, exp_avg_sq, step)
     to 1e-4;
  3. the saved checkpoint (optimizer state left out) loads into the torch modules with
     load_state_dict(strict=True), and the executable's --predict (inference mode) on new
     data matches the torch modules in eval mode to 1e-4;
  4. the executable's --gradcheck passes (once per case).
Prints the max relative difference per tensor (max |a - b| / max(max |b|, 1e-6)); exits 1 on
any mismatch.

usage: prelude_layers_vs_torch.py GRADC GRADC_STEP WORKDIR [CASE...]
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
import layers_vs_torch  # noqa: E402
import bnlstm_reference  # noqa: E402
from layers_vs_torch import B, OPTIMIZERS, rel  # noqa: E402

torch.set_default_dtype(torch.float64)
TOL_STEP = 1e-5
TOL_EXE = 1e-4
STEPS = 5
F = torch.nn.functional


def case_softmax():
    # Softmax on the last axis and on a middle axis (axis = 1 of [B, 3, 4]).
    mods = torch.nn.ModuleDict({"d": torch.nn.Linear(4, 4)})
    model = ("input x: f32[B, 3, 4]\ntarget y: f32[B, 3, 4]\nlayer d = Dense(4, 4)\n"
             "layer sm = Softmax()\nlayer sm1 = Softmax(axis = 1)\n")
    graph = "z = d(x)\np = sm(z) + sm1(z * 3)\nloss = mse(p, y)\noutput p"
    out = lambda m, x: torch.softmax(m["d"](x), -1) + torch.softmax(m["d"](x) * 3, 1)
    return mods, model, graph, out, "mse", (B, 3, 4), (B, 3, 4)


def case_log_softmax():
    # LogSoftmax feeding a weighted negative log-likelihood, mean(-sum(logp * y)), against
    # F.log_softmax; logits scaled by 40 check that the max is subtracted.
    mods = torch.nn.ModuleDict({"d": torch.nn.Linear(5, 3)})
    model = "input x: f32[B, 5]\ntarget y: f32[B, 3]\nlayer d = Dense(5, 3)\nlayer ls = LogSoftmax(axis = -1)\n"
    graph = "logp = ls(d(x) * 40)\nloss = mean(-sum(logp * y, axis = 1))\noutput logp"
    out = lambda m, x: F.log_softmax(m["d"](x) * 40, -1)
    return mods, model, graph, out, "nll", (B, 5), (B, 3)


def case_softmax_calls():
    # The built-in call forms softmax(x) and log_softmax(x, axis = 1) (the prelude's layers
    # called as functions) on [B, 3, 4], against torch.softmax and F.log_softmax.
    mods = torch.nn.ModuleDict({"d": torch.nn.Linear(4, 4)})
    model = "input x: f32[B, 3, 4]\ntarget y: f32[B, 3, 4]\nlayer d = Dense(4, 4)\n"
    graph = "z = d(x)\np = softmax(z) + log_softmax(z * 3, axis = 1)\nloss = mse(p, y)\noutput p"
    out = lambda m, x: torch.softmax(m["d"](x), -1) + F.log_softmax(m["d"](x) * 3, 1)
    return mods, model, graph, out, "mse", (B, 3, 4), (B, 3, 4)


def case_groupnorm(seq):
    mods = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 6), "gn": torch.nn.GroupNorm(3, 6, eps=1e-4),
                                "d": torch.nn.Linear(6, 2)})
    xs = (B, 5, 3) if seq else (B, 3)
    ys = (B, 5, 2) if seq else (B, 2)
    model = (f"input x: f32[{', '.join(['B'] + [str(s) for s in xs[1:]])}]\n"
             f"target y: f32[{', '.join(['B'] + [str(s) for s in ys[1:]])}]\n"
             "layer a = Dense(3, 6)\nlayer gn = GroupNorm(3, 6, eps = 1e-4)\nlayer d = Dense(6, 2)\n")
    graph = "yhat = d(gn(relu(a(x))))\nloss = mse(yhat, y)\noutput yhat"

    def out(m, x):
        h = torch.relu(m["a"](x))
        h = m["gn"](h.transpose(1, -1)).transpose(1, -1)
        return m["d"](h)
    # The norm's affine parameters start away from 1 and 0 so that their gradients matter.
    with torch.no_grad():
        mods["gn"].weight.uniform_(0.5, 1.5)
        mods["gn"].bias.uniform_(-0.5, 0.5)
    return mods, model, graph, out, "mse", xs, ys


class FeaturesLast(torch.nn.Module):
    """A channels-first torch module applied to features-last [B, L, C] input, as gradc's Conv1d."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x.transpose(1, 2)).transpose(1, 2)


def case_conv(convs, length, bn=False):
    """Conv1d layers (in, out, kernel, stride, padding, dilation) in a chain with relu between
    them, then (bn) a BatchNorm, which --predict's inference graph folds into the last conv,
    and a Dense head, on features-last [B, length, in]; torch: nn.Conv1d (and BatchNorm1d) on
    the transpose."""
    torch_mods, decls, chain = {}, "", "h = x"
    n = length
    for i, (cin, cout, k, st, pad, dil) in enumerate(convs):
        torch_mods[f"c{i}"] = torch.nn.Conv1d(cin, cout, k, stride=st, padding=pad, dilation=dil)
        decls += (f"layer c{i} = Conv1d({cin}, {cout}, {k}, stride = {st}, padding = {pad}, "
                  f"dilation = {dil})\n")
        chain += f"\nh = c{i}(h)" if i == 0 else f"\nh = c{i}(relu(h))"
        n = (n + 2 * pad - dil * (k - 1) - 1) // st + 1
    cout = convs[-1][1]
    if bn:
        torch_mods["bn"] = torch.nn.BatchNorm1d(cout)
        decls += f"layer bn = BatchNorm({cout})\n"
        chain += "\nh = relu(bn(h))"
    torch_mods["d"] = torch.nn.Linear(cout, 2)
    mods = torch.nn.ModuleDict(torch_mods)
    xs, ys = (B, length, convs[0][0]), (B, n, 2)
    model = (f"input x: f32[B, {length}, {convs[0][0]}]\ntarget y: f32[B, {n}, 2]\n" + decls
             + f"layer d = Dense({cout}, 2)\n")
    graph = chain + "\nyhat = d(h)\nloss = mse(yhat, y)\noutput yhat"

    def out(m, x):
        h = x
        for i in range(len(convs)):
            h = FeaturesLast(m[f"c{i}"])(h if i == 0 else torch.relu(h))
        if bn:
            h = torch.relu(FeaturesLast(m["bn"])(h))
        return m["d"](h)
    return mods, model, graph, out, "mse", xs, ys


def case_bnlstm(steps, max_steps):
    """BNLSTM(2, 3, max_steps) -> Dense on every step; with max_steps < steps the last rows of
    statistics serve (and in training are updated by) several steps."""
    mods = torch.nn.ModuleDict({"rnn": bnlstm_reference.BNLSTM(2, 3, max_steps), "head": torch.nn.Linear(3, 1)})
    # Away from their initial 0.1 and 0 so that the affine parameters' gradients matter.
    with torch.no_grad():
        for bn in (mods["rnn"].bn_ih, mods["rnn"].bn_hh, mods["rnn"].bn_c):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        mods["rnn"].bias.uniform_(-0.5, 0.5)
    model = (f"input x: f32[B, {steps}, 2]\ntarget y: f32[B, {steps}, 1]\nlayer rnn = BNLSTM(2, 3, {max_steps})\n"
             "layer head = Dense(3, 1)\n")
    graph = "yhat = head(rnn(x))\nloss = mse(yhat, y)\noutput yhat"
    out = lambda m, x: m["head"](m["rnn"](x))
    return mods, model, graph, out, "mse", (B, steps, 2), (B, steps, 1)


def case_rnn(kind, layers, bidirectional):
    hid = 3
    D = 2 if bidirectional else 1
    ctor = torch.nn.GRU if kind == "GRU" else torch.nn.LSTM
    mods = torch.nn.ModuleDict({"rnn": ctor(2, hid, num_layers=layers, batch_first=True,
                                            bidirectional=bidirectional),
                                "head": torch.nn.Linear(D * hid, 1)})
    args = f"2, {hid}, layers = {layers}" + (", bidirectional = true" if bidirectional else "")
    model = (f"input x: f32[B, 5, 2]\ntarget y: f32[B, 5, 1]\nlayer rnn = {kind}({args})\n"
             f"layer head = Dense({D * hid}, 1)\n")
    # Every time step's output goes to the loss, so the reverse direction's early steps count.
    graph = "hs = rnn(x)\nyhat = head(hs)\nloss = mse(yhat, y)\noutput yhat"
    out = lambda m, x: m["head"](m["rnn"](x)[0])
    return mods, model, graph, out, "mse", (B, 5, 2), (B, 5, 1)


CASES = {
    "softmax": case_softmax,
    "log_softmax": case_log_softmax,
    "softmax_calls": case_softmax_calls,
    "groupnorm": lambda: case_groupnorm(False),
    "groupnorm_seq": lambda: case_groupnorm(True),
    "gru1": lambda: case_rnn("GRU", 1, False),
    "gru2": lambda: case_rnn("GRU", 2, False),
    "gru_bi2": lambda: case_rnn("GRU", 2, True),
    "lstm_bi2": lambda: case_rnn("LSTM", 2, True),
    # Conv1d: PyTorch's defaults; then stride, padding and dilation (a stride that leaves
    # input rows unread, a padding larger than the dilated kernel's reach, a 1-tap kernel).
    "conv1d": lambda: case_conv([(3, 5, 3, 1, 0, 1)], 9),
    "conv1d_spd": lambda: case_conv([(3, 6, 3, 2, 1, 2), (6, 4, 2, 3, 2, 1), (4, 3, 1, 1, 0, 1)], 16),
    "conv1d_bn": lambda: case_conv([(2, 4, 3, 1, 1, 1)], 8, bn=True),
    "bnlstm": lambda: case_bnlstm(5, 5),
    "bnlstm_clamped": lambda: case_bnlstm(5, 3),
}


def loss_of(kind, out, mods, x, y):
    p = out(mods, x)
    if kind == "nll":
        return -(p * y).sum(1).mean()
    return F.mse_loss(p, y)


def run_step(name, step_tool, work):
    """One interpreter step against PyTorch, by layers_vs_torch.py's check."""
    def make():
        mods, model, graph, out, kind, xs, ys = CASES[name]()
        return mods, model, graph, lambda x, y: loss_of(kind, out, mods, x, y), xs, ys
    layers_vs_torch.CASES[name] = make
    return layers_vs_torch.run_case(name, step_tool, work)


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


def run_exe(name, gradc, work):
    worst = 0.0
    for opt_name, (opt_src, opt_make) in OPTIMIZERS.items():
        torch.manual_seed(11)
        mods, decls, graph, out, kind, xs, ys = CASES[name]()
        mods.train()
        x = torch.randn(STEPS * B, *xs[1:])
        y = torch.randn(STEPS * B, *ys[1:])
        xp = torch.randn(B + 3, *xs[1:])  # --predict data: one full batch and a padded one
        yp = torch.randn(B + 3, *ys[1:])
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
        subprocess.run([stem + ".exe", "--quiet", "--load", stem + "_start.safetensors",
                        "--data", stem + "_data.safetensors", "--no-shuffle", "--epochs", "1",
                        "--save", stem + "_end.safetensors"], check=True, stdout=subprocess.DEVNULL)
        got = safetensors_io.load(stem + "_end.safetensors")
        subprocess.run([stem + ".exe", "--load", stem + "_end.safetensors", "--data", stem + "_new.safetensors",
                        "--predict", "--out", stem + "_pred.safetensors"], check=True, stdout=subprocess.DEVNULL)
        pred = next(iter(safetensors_io.load(stem + "_pred.safetensors").values()))

        opt = opt_make(mods.parameters())
        for s in range(STEPS):
            opt.zero_grad()
            loss_of(kind, out, mods, x[s * B:(s + 1) * B], y[s * B:(s + 1) * B]).backward()
            opt.step()
        want = {k: v.detach().numpy() for k, v in mods.state_dict().items()}
        want.update(opt_state(opt, mods, opt_name))
        missing = sorted(set(want) - set(got))
        if missing:
            print(f"{name:15s} {opt_name} checkpoint lacks {', '.join(missing)}  MISMATCH")
            worst = max(worst, float("inf"))
        for k, v in want.items():
            if k not in got:
                continue
            r = rel(got[k], v)
            worst = max(worst, r)
            print(f"{name:15s} {opt_name} {STEPS} steps {k:42s} max_rel_diff {r:.3e}"
                  f"{'  MISMATCH' if r > TOL_EXE else ''}")

        # The checkpoint into fresh torch modules, strictly; then inference in eval mode.
        fresh, *_ = CASES[name]()
        fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in got.items()
                               if not k.startswith("optimizer.")}, strict=True)
        fresh.eval()
        with torch.no_grad():
            want_pred = out(fresh, xp).numpy()
        r = rel(pred, want_pred)
        worst = max(worst, r)
        print(f"{name:15s} {opt_name} load_state_dict(strict=True) ok, --predict {str(list(pred.shape)):14s}"
              f"           max_rel_diff {r:.3e}{'  MISMATCH' if r > TOL_EXE else ''}")

    gc = subprocess.run([os.path.join(work, f"{name}_adam.exe"), "--gradcheck", "--data",
                         os.path.join(work, f"{name}_adam_data.safetensors")], capture_output=True, text=True)
    last = gc.stdout.strip().splitlines()[-1] if gc.stdout.strip() else gc.stderr.strip()
    print(f"{name:15s} gradcheck exit {gc.returncode}: {last}")
    if gc.returncode != 0:
        print(gc.stdout + gc.stderr)
        worst = float("inf")
    return worst


def main():
    gradc, step_tool, work = sys.argv[1], sys.argv[2], sys.argv[3]
    names = sys.argv[4:] or list(CASES)
    os.makedirs(work, exist_ok=True)
    worst_step = {n: run_step(n, step_tool, work) for n in names}
    worst_exe = {n: run_exe(n, gradc, work) for n in names}
    for n in names:
        print(f"worst {n:15s} step {worst_step[n]:.3e} exe {worst_exe[n]:.3e}")
    bad = [n for n in names if worst_step[n] > TOL_STEP or worst_exe[n] > TOL_EXE]
    print("prelude_layers_vs_torch:", "FAILED " + ", ".join(bad) if bad
          else f"all within {TOL_STEP:g} (one step) and {TOL_EXE:g} ({STEPS} steps, --predict)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
