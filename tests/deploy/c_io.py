"""c_io.py: the raw float32 files of predict_c.c.
  c_io.py raw DATA.safetensors OUT.f32      writes DATA's one tensor as raw float32 (int32 stays int32)
  c_io.py check OUT.f32 N PRED.safetensors TOL
      compares the N outputs in OUT.f32 with the first N rows of --predict's only tensor: prints
      the max absolute and relative (to max |pred|) difference, exits 1 above TOL (relative)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import safetensors_io  # noqa: E402

if sys.argv[1] == "raw":
    (t,) = safetensors_io.load(sys.argv[2]).values()
    np.ascontiguousarray(t).tofile(sys.argv[3])
    print(f"wrote {t.shape[0]} samples")
elif sys.argv[1] == "check":
    n, tol = int(sys.argv[3]), float(sys.argv[5])
    ((name, ref),) = safetensors_io.load(sys.argv[4]).items()
    ref = np.asarray(ref, np.float32)[:n].reshape(n, -1)
    got = np.fromfile(sys.argv[2], np.float32)
    if got.size != ref.size:
        sys.exit(f"{sys.argv[2]}: {got.size} values, expected {ref.size} ({n} samples of '{name}')")
    got = got.reshape(ref.shape)
    diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
    rel = diff / max(float(np.max(np.abs(ref))), 1e-6)
    print(f"{name} n={n}: max_abs_diff {diff:.3e} max_rel_diff {rel:.3e} bitwise {'yes' if np.array_equal(got, ref) else 'no'}")
    if not rel <= tol:
        sys.exit(f"{name}: the library's outputs differ from --predict's by {rel:.3e} > {tol}")
