"""make_inputs_raw.py SAMPLE_SIZE N OUT.safetensors OUT.f32 [ROWS]: N random float32 samples of
SAMPLE_SIZE values (uniform in [-1, 1), seed 0) as tensor 'x' of shape [N, SAMPLE_SIZE, 1]
(or [N, ROWS, SAMPLE_SIZE / ROWS]) for --predict --data, and the same values raw for predict_c.c."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import safetensors_io  # noqa: E402

size, n = int(sys.argv[1]), int(sys.argv[2])
rows = int(sys.argv[5]) if len(sys.argv) > 5 else size
x = np.random.default_rng(0).uniform(-1, 1, size=(n, rows, size // rows)).astype(np.float32)
safetensors_io.save(sys.argv[3], {"x": x})
x.tofile(sys.argv[4])
