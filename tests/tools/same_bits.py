"""same_bits.py A B: two safetensors checkpoints hold the same tensors with bitwise-identical
contents (metadata is not compared); prints 'N tensors bitwise identical', or exits 1 naming
the first tensor and element that differ."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

a, b = safetensors_io.load(sys.argv[1]), safetensors_io.load(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit(f"different tensors: {sorted(a)} vs {sorted(b)}")
for k in sorted(a):
    x, y = np.ascontiguousarray(a[k]), np.ascontiguousarray(b[k])
    if x.dtype != y.dtype or x.shape != y.shape:
        sys.exit(f"{k}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
    xb, yb = x.view(np.uint8).reshape(-1), y.view(np.uint8).reshape(-1)
    if not np.array_equal(xb, yb):
        w = xb.reshape(x.size, -1) != yb.reshape(y.size, -1)
        e = int(np.flatnonzero(w.any(axis=1))[0])
        sys.exit(f"{k} differs at element {e}: {x.reshape(-1)[e]!r} vs {y.reshape(-1)[e]!r}")
print(f"{len(a)} tensors bitwise identical")
