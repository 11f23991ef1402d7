"""check_bn_fold.py MODEL.onnx CKPT.safetensors: checks the folded BatchNorm -> Dense constants an
--emit=onnx file of an LSTM -> BatchNorm(bn) -> Dense(head) model carries, against numpy in
float64 from the checkpoint: head.weight.folded = (head.weight * s)^T with s = bn.weight /
sqrt(bn.running_var + 1e-5), and bn.running_mean.folded = head.weight @ (bn.bias -
bn.running_mean * s). Prints the largest difference relative to the largest |value| of each; exits
1 above 1e-6."""
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import safetensors_io  # noqa: E402

m = onnx.load(sys.argv[1])
init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
ck = {k: np.asarray(v, dtype=np.float64) for k, v in safetensors_io.load(sys.argv[2]).items()}
s = ck["bn.weight"] / np.sqrt(ck["bn.running_var"] + 1e-5)
want = {
    "head.weight.folded": (ck["head.weight"] * s).T,
    "bn.running_mean.folded": ck["head.weight"] @ (ck["bn.bias"] - ck["bn.running_mean"] * s),
}
bad = False
for name, ref in want.items():
    got = init[name].astype(np.float64)
    if got.shape != ref.shape:
        sys.exit(f"{name}: shape {list(got.shape)}, expected {list(ref.shape)}")
    rel = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
    print(f"{name} {list(got.shape)} max_rel_diff {rel:.3e}")
    bad |= rel > 1e-6
sys.exit(1 if bad else 0)
