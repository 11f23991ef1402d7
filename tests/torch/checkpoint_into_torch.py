"""checkpoint_into_torch.py CKPT PRED.csv [MODEL]: loads a gradc checkpoint of MODEL (tiny_lstm_bn,
tests/lit/Inputs/tiny_lstm_bn.model, the default; or gru, models/gru.model) into the equivalent
torch.nn modules with load_state_dict(strict=True), runs them in inference mode on the CO2
windows (scaled as gradc does: min-max fitted on the first 80% of the series) and compares
with gradc's --predict CSV, which is in the series' units (ppm): torch's outputs are mapped
back with the inverse of that scaling."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import safetensors_io  # noqa: E402

ckpt = safetensors_io.load(sys.argv[1])
which = sys.argv[3] if len(sys.argv) > 3 else "tiny_lstm_bn"
if which == "gru":
    mods = torch.nn.ModuleDict({"gru": torch.nn.GRU(1, 48, batch_first=True), "head": torch.nn.Linear(48, 1)})
    L = 30
    net = lambda x: mods["head"](mods["gru"](x)[0][:, -1])
else:
    mods = torch.nn.ModuleDict({"lstm": torch.nn.LSTM(1, 4, batch_first=True), "bn": torch.nn.BatchNorm1d(4),
                                "head": torch.nn.Linear(4, 1)})
    L = 6
    net = lambda x: mods["head"](mods["bn"](mods["lstm"](x)[0][:, -1]))
state = {k: torch.from_numpy(np.array(v)) for k, v in ckpt.items() if not k.startswith("optimizer.")}
mods.load_state_dict(state, strict=True)
print("load_state_dict(strict=True): ok")
mods.eval()
repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
vals = np.array([float(l.split(",")[1]) for l in open(os.path.join(repo, "models/data/series.csv")).read().splitlines()[1:]])
s = int(len(vals) * 0.8)
lo, hi = vals[:s].min(), vals[:s].max()
v = (vals - lo) / (hi - lo)
x = np.stack([v[i:i + L] for i in range(len(v) - L)])[:, :, None].astype(np.float32)
with torch.no_grad():
    y = net(torch.from_numpy(x)).numpy()[:, 0].astype(np.float64) * (hi - lo) + lo
lines = open(sys.argv[2]).read().splitlines()
pred = np.array([float(l) for l in lines[1:]])
if pred.shape != y.shape:
    sys.exit(f"{len(pred)} predictions, torch has {len(y)}")
err = np.max(np.abs(pred - y)) / max(np.max(np.abs(y)), 1e-6)
print(f"max relative difference {err:.3e}")
if err > 1e-4:
    sys.exit("predictions differ")
print("predictions agree")
