"""windows_scaling_check.py TRAIN.csv CKPT PRED.csv COLUMNS TARGET LENGTH [DATA.csv]: checks a
multi-column windows model against NumPy: the checkpoint's "gradc.scaling" metadata must equal
the min-max scaling NumPy fits on the first floor(0.8 * rows) rows of TRAIN.csv for every column
(exactly); torch.nn.LSTM + Linear loaded from the checkpoint (strict), fed the windows of
DATA.csv (default TRAIN.csv) scaled with that training scaling, must give, mapped back to the
target's units, gradc's --predict CSV (1e-4 relative). COLUMNS is comma-separated; the model is
LSTM(len(COLUMNS), H) on the last step -> Dense(H, 1), H read from the checkpoint."""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

train_csv, ckpt_path, pred_csv, columns, target, length = sys.argv[1:7]
data_csv = sys.argv[7] if len(sys.argv) > 7 else train_csv
columns = columns.split(",")
length = int(length)


def read(path):
    lines = open(path).read().splitlines()
    header = [h.strip('"') for h in lines[0].split(",")]
    rows = [[float(v) for v in l.split(",")] for l in lines[1:] if l]
    a = np.array(rows)
    return {h: a[:, i] for i, h in enumerate(header)}


train = read(train_csv)
s = int(np.floor(0.8 * len(train[target])))
fit = {c: (train[c][:s].min(), train[c][:s].max() - train[c][:s].min()) for c in set(columns) | {target}}

tensors, meta = safetensors_io.load_with_metadata(ckpt_path)
sc = json.loads(meta["gradc.scaling"])
assert sc["method"] == "minmax", sc
assert [c["name"] for c in sc["columns"]] == columns, sc
for c in sc["columns"] + [sc["target"]]:
    want = fit[c["name"]]
    if (c["offset"], c["scale"]) != want:
        sys.exit(f"column {c['name']}: checkpoint offset/scale {c['offset']}, {c['scale']}, numpy {want}")
assert sc["target"]["name"] == target
print(f"scaling matches numpy: {len(columns)} columns and target {target}")

H = tensors["lstm.weight_hh_l0"].shape[1]
mods = torch.nn.ModuleDict({"lstm": torch.nn.LSTM(len(columns), H, batch_first=True), "head": torch.nn.Linear(H, 1)})
mods.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if not k.startswith("optimizer.")},
                     strict=True)
mods.eval()
data = read(data_csv)
v = np.stack([(data[c] - fit[c][0]) / fit[c][1] for c in columns], axis=1)
x = np.stack([v[i:i + length] for i in range(len(v) - length)]).astype(np.float32)
with torch.no_grad():
    y = mods["head"](mods["lstm"](torch.from_numpy(x))[0][:, -1]).numpy()[:, 0].astype(np.float64)
y = y * fit[target][1] + fit[target][0]  # the inverse scaling, in the target's units
pred = np.array([float(l) for l in open(pred_csv).read().splitlines()[1:]])
if pred.shape != y.shape:
    sys.exit(f"{len(pred)} predictions, numpy/torch has {len(y)}")
err = np.max(np.abs(pred - y)) / np.max(np.abs(y))
print(f"max relative difference {err:.1e}")
if err > 1e-4:
    sys.exit("predictions differ")
print(f"predictions in the target's units agree: {len(y)} windows, mean {y.mean():.4g}")
