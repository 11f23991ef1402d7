"""bad_values.py data OUT N INDEX | ckpt IN OUT NAME: writes broken inputs for the
non-finite tests. `data`: a tensors data set for tests/lit/Inputs/tiny_lstm_bn.model
(x f32[N, 6, 1], y f32[N, 1], seeded) whose sample INDEX holds a NaN input (INDEX < 0: none).
`ckpt`: a copy of checkpoint IN with element 0 of tensor NAME set to NaN, without IN's
metadata (so without its checksum) unless a fifth argument `keep-metadata` is given."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

if sys.argv[1] == "data":
    out, n, index = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (n, 6, 1)).astype(np.float32)
    y = x.mean(axis=1).astype(np.float32)
    if index >= 0:
        x[index, 2, 0] = np.nan
    safetensors_io.save(out, {"x": x, "y": y})
else:
    src, out, name = sys.argv[2], sys.argv[3], sys.argv[4]
    tensors, meta = safetensors_io.load_with_metadata(src)
    t = {k: np.array(v) for k, v in tensors.items()}
    t[name].reshape(-1)[0] = np.nan
    safetensors_io.save(out, t, meta if sys.argv[5:] == ["keep-metadata"] else None)
