"""compare_checkpoints.py A B TOL: every tensor of two safetensors checkpoints agrees to a
relative error TOL (max |a - b| / max(max |b|, 1e-6) per tensor); prints the worst per
tensor and 'N tensors agree', or exits 1 naming the first that differs."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

a, b, tol = safetensors_io.load(sys.argv[1]), safetensors_io.load(sys.argv[2]), float(sys.argv[3])
if sorted(a) != sorted(b):
    sys.exit(f"different tensors: {sorted(a)} vs {sorted(b)}")
bad = []
for k in sorted(a):
    x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
    r = float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-6)) if y.size else 0.0
    print(f"{k:40s} max_rel_diff {r:.3e}")
    if not r <= tol:
        bad.append(k)
if bad:
    sys.exit(f"tensors differ above {tol:g}: {', '.join(bad)}")
print(f"{len(a)} tensors agree")
