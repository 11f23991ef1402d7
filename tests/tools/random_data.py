"""random_data.py OUT N SHAPE_X SHAPE_Y SEED: a safetensors data set with x f32[N, *SHAPE_X]
uniform in [0, 1) and y f32[N, *SHAPE_Y] a fixed function of x (shapes as comma lists)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

out, n = sys.argv[1], int(sys.argv[2])
sx = [int(d) for d in sys.argv[3].split(",")]
sy = [int(d) for d in sys.argv[4].split(",")]
rng = np.random.default_rng(int(sys.argv[5]))
x = rng.uniform(0, 1, (n, *sx)).astype(np.float32)
flat = x.reshape(n, -1)
y = np.sin(flat[:, : int(np.prod(sy))] * 3 + flat.mean(axis=1, keepdims=True)).reshape(n, *sy).astype(np.float32)
safetensors_io.save(out, {"x": x, "y": y})
