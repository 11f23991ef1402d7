"""cross_entropy_vs_torch.py: cross_entropy over [..., C] logits with [...] labels (a sequence
model's [B, T, C] and [B, T]) against F.cross_entropy on the flattened tensors (Debian's
python3-torch): a compiled executable (float32) and PyTorch (float64) from the same checkpoint
over STEPS SGD-with-momentum steps of the same batches: the parameters and momentum to 1e-4;
then the executable's --gradcheck. Exits 1 on a mismatch.

usage: cross_entropy_vs_torch.py GRADC WORKDIR
"""
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import safetensors_io  # noqa: E402

torch.set_default_dtype(torch.float64)
B, T, C, STEPS, TOL = 4, 3, 5, 5, 1e-4

MODEL = f"""model ce_seq
let B = {B}
input x: f32[B, {T}, 2]
target y: i32[B, {T}]
layer d = Dense(2, {C})
graph {{
  z = d(x)
  loss = cross_entropy(z * 3, y)
  output z
}}
train {{
  optimizer = sgd(lr = 0.1, momentum = 0.9)
}}
"""


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-6))


def main():
    gradc, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(3)
    d = torch.nn.Linear(2, C)
    x = torch.randn(STEPS * B, T, 2)
    y = torch.randint(0, C, (STEPS * B, T))
    stem = os.path.join(work, "ce_seq")
    with open(stem + ".model", "w") as f:
        f.write(MODEL)
    safetensors_io.save(stem + "_start.safetensors", {"d.weight": d.weight.detach().numpy(), "d.bias": d.bias.detach().numpy()})
    safetensors_io.save(stem + "_data.safetensors", {"x": x.numpy().astype(np.float32), "y": y.numpy().astype(np.int32)})
    subprocess.run([gradc, stem + ".model", "-o", stem + ".exe"], check=True)
    subprocess.run([stem + ".exe", "--quiet", "--load", stem + "_start.safetensors", "--data", stem + "_data.safetensors",
                    "--no-shuffle", "--epochs", "1", "--save", stem + "_end.safetensors"], check=True, stdout=subprocess.DEVNULL)
    got = safetensors_io.load(stem + "_end.safetensors")
    opt = torch.optim.SGD(d.parameters(), lr=0.1, momentum=0.9)
    for s in range(STEPS):
        opt.zero_grad()
        z = d(x[s * B:(s + 1) * B]) * 3
        torch.nn.functional.cross_entropy(z.reshape(-1, C), y[s * B:(s + 1) * B].reshape(-1)).backward()
        opt.step()
    want = {"d.weight": d.weight, "d.bias": d.bias,
            "optimizer.d.weight.momentum_buffer": opt.state[d.weight]["momentum_buffer"],
            "optimizer.d.bias.momentum_buffer": opt.state[d.bias]["momentum_buffer"]}
    worst = 0.0
    for k, v in want.items():
        r = rel(got[k], v.detach().numpy())
        worst = max(worst, r)
        print(f"cross_entropy [B,T,C] {STEPS} steps {k:36s} max_rel_diff {r:.3e}{'  MISMATCH' if r > TOL else ''}")
    gc = subprocess.run([stem + ".exe", "--gradcheck", "--data", stem + "_data.safetensors"], capture_output=True, text=True)
    print(f"gradcheck exit {gc.returncode}: {gc.stdout.strip().splitlines()[-1] if gc.stdout.strip() else gc.stderr.strip()}")
    ok = worst <= TOL and gc.returncode == 0
    print("cross_entropy_vs_torch:", f"all within {TOL:g}" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
