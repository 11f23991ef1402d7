"""step_rows_check.py CKPT DATA PRED: recomputes tests/lit/autodiff/step_rows.model's output in
NumPy (float64) from the checkpoint's ss.scale and the data's x, and prints the max relative
difference to the executable's --predict output."""
import sys
sys.path.insert(0, "/work/wt-data/tests/tools")
import numpy as np, safetensors_io as s
ck, data, pred = s.load(sys.argv[1]), s.load(sys.argv[2]), s.load(sys.argv[3])
scale, x = ck["ss.scale"].astype(np.float64), data["x"].astype(np.float64)
T = x.shape[1]
h = np.zeros((x.shape[0], 3)); hs = []
for t in range(T):
    h = np.tanh(h + x[:, t] * scale[t]); hs.append(h)
table = np.zeros((T, x.shape[0], 3))
for t in reversed(range(T)):
    table[t] = hs[t] * scale[T - 1 - t]
want = table.mean(0)
got = pred["yhat"]
print("predict vs numpy max_rel_diff %.3e" % (np.abs(got - want).max() / np.abs(want).max()))
