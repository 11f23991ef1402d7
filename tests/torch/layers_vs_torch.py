"""layers_vs_torch.py: the standard layers against PyTorch (Debian's python3-torch), in double
precision. For each model: the same parameters and batch go to PyTorch and to gradc's
interpreter (tests/tools/gradc_step.cpp, one training step); the loss, every gradient, the
parameters after one SGD step and after one Adam step, and the updated BatchNorm running
statistics must agree to a relative error of 1e-5. Prints the max relative difference per
tensor (max |a - b| / max(max |b|, 1e-6)); exits 1 on any mismatch.

usage: layers_vs_torch.py GRADC_STEP WORKDIR
"""
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import safetensors_io  # noqa: E402

torch.set_default_dtype(torch.float64)
TOL = 1e-5
B = 4

OPTIMIZERS = {
    "sgd": ("sgd(lr = 0.1, momentum = 0.9, weight_decay = 0.01)",
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adam": ("adam(lr = 0.01, weight_decay = 0.01)",
             lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01)),
}


class GateBNCell(torch.nn.Module):
    """The seed article's cell: an LSTMCell-style loop calling a BatchNorm1d per gate each step."""

    def __init__(self, inp, hidden):
        super().__init__()
        k = 1 / hidden ** 0.5
        self.hidden = hidden
        self.weight_ih = torch.nn.Parameter(torch.empty(4 * hidden, inp).uniform_(-k, k))
        self.weight_hh = torch.nn.Parameter(torch.empty(4 * hidden, hidden).uniform_(-k, k))
        self.bias_ih = torch.nn.Parameter(torch.empty(4 * hidden).uniform_(-k, k))
        self.bias_hh = torch.nn.Parameter(torch.empty(4 * hidden).uniform_(-k, k))
        self.bn_i = torch.nn.BatchNorm1d(hidden)
        self.bn_f = torch.nn.BatchNorm1d(hidden)
        self.bn_g = torch.nn.BatchNorm1d(hidden)
        self.bn_o = torch.nn.BatchNorm1d(hidden)

    def forward(self, x):
        n, H = x.shape[0], self.hidden
        h = x.new_zeros(n, H)
        c = x.new_zeros(n, H)
        outs = []
        for t in range(x.shape[1]):
            gates = x[:, t] @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
            i = torch.sigmoid(self.bn_i(gates[:, :H]))
            f = torch.sigmoid(self.bn_f(gates[:, H:2 * H]))
            g = torch.tanh(self.bn_g(gates[:, 2 * H:3 * H]))
            o = torch.sigmoid(self.bn_o(gates[:, 3 * H:]))
            c = f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, 1)


GATE_BN_LAYER = """
layer GateBNLSTM(in, hidden) {
  let k = 1 / sqrt(hidden)
  param weight_ih: f32[4 * hidden, in] = uniform(-k, k)
  param weight_hh: f32[4 * hidden, hidden] = uniform(-k, k)
  param bias_ih: f32[4 * hidden] = uniform(-k, k)
  param bias_hh: f32[4 * hidden] = uniform(-k, k)
  layer bn_i = BatchNorm(hidden)
  layer bn_f = BatchNorm(hidden)
  layer bn_g = BatchNorm(hidden)
  layer bn_o = BatchNorm(hidden)
  forward(x) {
    let H = hidden
    return scan xt in x along 1 carry (h = zeros(dim(x, 0), H), c = zeros(dim(x, 0), H)) {
      gates = xt @ transpose(weight_ih) + bias_ih + h @ transpose(weight_hh) + bias_hh
      i = sigmoid(bn_i(gates[:, 0:H]))
      f = sigmoid(bn_f(gates[:, H:2*H]))
      g = tanh(bn_g(gates[:, 2*H:3*H]))
      o = sigmoid(bn_o(gates[:, 3*H:4*H]))
      c = f * c + i * g
      h = o * tanh(c)
      yield h
    }
  }
}
"""


def case_dense():
    mods = torch.nn.ModuleDict({"d": torch.nn.Linear(5, 2)})
    model = "input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer d = Dense(5, 2)\n"
    graph = "yhat = d(x)\nloss = mse(yhat, y)\noutput yhat"
    fwd = lambda x, y: torch.nn.functional.mse_loss(mods["d"](x), y)
    return mods, model, graph, fwd, (B, 5), (B, 2)


def case_lstm(layers):
    mods = torch.nn.ModuleDict({"lstm": torch.nn.LSTM(2, 3, num_layers=layers, batch_first=True),
                                "head": torch.nn.Linear(3, 1)})
    model = f"input x: f32[B, 5, 2]\ntarget y: f32[B, 1]\nlayer lstm = LSTM(2, 3, layers = {layers})\nlayer head = Dense(3, 1)\n"
    graph = "hs = lstm(x)\nyhat = head(hs[:, -1, :])\nloss = mse(yhat, y)\noutput yhat"
    fwd = lambda x, y: torch.nn.functional.mse_loss(mods["head"](mods["lstm"](x)[0][:, -1]), y)
    return mods, model, graph, fwd, (B, 5, 2), (B, 1)


def case_batchnorm():
    mods = torch.nn.ModuleDict({"a": torch.nn.Linear(5, 6), "bn": torch.nn.BatchNorm1d(6), "d": torch.nn.Linear(6, 2)})
    model = "input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer a = Dense(5, 6)\nlayer bn = BatchNorm(6)\nlayer d = Dense(6, 2)\n"
    graph = "yhat = d(relu(bn(a(x))))\nloss = mse(yhat, y)\noutput yhat"
    fwd = lambda x, y: torch.nn.functional.mse_loss(mods["d"](torch.relu(mods["bn"](mods["a"](x)))), y)
    return mods, model, graph, fwd, (B, 5), (B, 2)


def case_batchnorm_seq():
    # Features on the last axis of [B, T, F]: PyTorch's BatchNorm1d on [B, F, T].
    mods = torch.nn.ModuleDict({"bn": torch.nn.BatchNorm1d(3), "d": torch.nn.Linear(3, 1)})
    model = "input x: f32[B, 5, 3]\ntarget y: f32[B, 5, 1]\nlayer bn = BatchNorm(3, momentum = 0.2)\nlayer d = Dense(3, 1)\n"
    mods["bn"].momentum = 0.2
    graph = "yhat = d(bn(x))\nloss = mse(yhat, y)\noutput yhat"
    fwd = lambda x, y: torch.nn.functional.mse_loss(mods["d"](mods["bn"](x.transpose(1, 2)).transpose(1, 2)), y)
    return mods, model, graph, fwd, (B, 5, 3), (B, 5, 1)


def case_layernorm():
    mods = torch.nn.ModuleDict({"ln": torch.nn.LayerNorm(5), "d": torch.nn.Linear(5, 2)})
    model = "input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer ln = LayerNorm(5)\nlayer d = Dense(5, 2)\n"
    graph = "yhat = d(ln(x))\nloss = mse(yhat, y)\noutput yhat"
    fwd = lambda x, y: torch.nn.functional.mse_loss(mods["d"](mods["ln"](x)), y)
    return mods, model, graph, fwd, (B, 5), (B, 2)


def case_gate_bn():
    mods = torch.nn.ModuleDict({"cell": GateBNCell(1, 3), "head": torch.nn.Linear(3, 1)})
    model = "input x: f32[B, 4, 1]\ntarget y: f32[B, 1]\n" + GATE_BN_LAYER + "layer cell = GateBNLSTM(1, 3)\nlayer head = Dense(3, 1)\n"
    graph = "hs = cell(x)\nyhat = head(hs[:, -1, :])\nloss = mse(yhat, y)\noutput yhat"
    fwd = lambda x, y: torch.nn.functional.mse_loss(mods["head"](mods["cell"](x)[:, -1]), y)
    return mods, model, graph, fwd, (B, 4, 1), (B, 1)


def case_cross_entropy():
    mods = torch.nn.ModuleDict({"d": torch.nn.Linear(5, 3)})
    model = "input x: f32[B, 5]\ntarget y: i32[B]\nlayer d = Dense(5, 3)\n"
    graph = "logits = d(x)\nloss = cross_entropy(logits, y)\noutput logits"
    fwd = lambda x, y: torch.nn.functional.cross_entropy(mods["d"](x), y.long())
    return mods, model, graph, fwd, (B, 5), "labels3"


def case_bce():
    mods = torch.nn.ModuleDict({"d": torch.nn.Linear(5, 2)})
    model = "input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer d = Dense(5, 2)\n"
    graph = "z = d(x)\nloss = bce_with_logits(z, y)\noutput z"
    fwd = lambda x, y: torch.nn.functional.binary_cross_entropy_with_logits(mods["d"](x), y)
    return mods, model, graph, fwd, (B, 5), "probs2"


CASES = {
    "dense": case_dense, "lstm1": lambda: case_lstm(1), "lstm2": lambda: case_lstm(2),
    "batchnorm": case_batchnorm, "batchnorm_seq": case_batchnorm_seq, "layernorm": case_layernorm,
    "gate_bn_lstm": case_gate_bn, "cross_entropy": case_cross_entropy, "bce_with_logits": case_bce,
}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-6)) if b.size else 0.0


def run_case(name, step_tool, work):
    worst = 0.0
    for opt_name, (opt_src, opt_make) in OPTIMIZERS.items():
        torch.manual_seed(7)
        mods, decls, graph, fwd, xshape, yshape = CASES[name]()
        mods.train()
        x = torch.randn(*xshape)
        if yshape == "labels3":
            y = torch.randint(0, 3, (B,), dtype=torch.int32)
        elif yshape == "probs2":
            y = torch.rand(B, 2)
        else:
            y = torch.randn(*yshape)
        state = {k: v.detach().numpy().copy() for k, v in mods.state_dict().items()}
        text = (f"model {name}\nlet B = {B}\n" + decls + "graph {\n" + graph + "\n}\n"
                + f"train {{\n  optimizer = {opt_src}\n}}\n")
        model_path = os.path.join(work, f"{name}_{opt_name}.model")
        with open(model_path, "w") as f:
            f.write(text)
        state_path = os.path.join(work, f"{name}_{opt_name}_state.safetensors")
        batch_path = os.path.join(work, f"{name}_{opt_name}_batch.safetensors")
        out_path = os.path.join(work, f"{name}_{opt_name}_out.safetensors")
        safetensors_io.save(state_path, state)
        safetensors_io.save(batch_path, {"x": x.numpy(), "y": y.numpy()})
        subprocess.run([step_tool, model_path, state_path, batch_path, out_path], check=True)
        got = safetensors_io.load(out_path)

        opt = opt_make(mods.parameters())
        opt.zero_grad()
        loss = fwd(x, y)
        loss.backward()
        grads = {k: p.grad.detach().numpy().copy() for k, p in mods.named_parameters()}
        opt.step()
        after = {k: v.detach().numpy() for k, v in mods.state_dict().items()}

        checks = [("loss", got["loss"], loss.item())]
        checks += [(f"grad {k}", got["grad." + k], g) for k, g in grads.items()]
        checks += [(f"{opt_name} {k}", got[k], v) for k, v in after.items()]
        for label, a, b in checks:
            r = rel(a, b)
            worst = max(worst, r)
            print(f"{name:15s} {label:40s} max_rel_diff {r:.3e}{'  MISMATCH' if r > TOL else ''}")
    return worst


def main():
    step_tool, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    worst = {n: run_case(n, step_tool, work) for n in CASES}
    for n, w in worst.items():
        print(f"worst {n:15s} {w:.3e}")
    bad = [n for n, w in worst.items() if w > TOL]
    print("layers_vs_torch:", "FAILED " + ", ".join(bad) if bad else "all within 1e-5")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
