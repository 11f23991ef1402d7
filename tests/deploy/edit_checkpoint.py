"""edit_checkpoint.py IN OUT EDIT [NAME]: writes a damaged copy of checkpoint IN (without its
checksum, so only the edit is wrong) for the --weights error tests. EDIT is
  drop NAME      leaves tensor NAME out
  reshape NAME   gives NAME one more row
  dtype NAME     stores NAME as int32
  foreign        renames every tensor ('other.' prefix): a checkpoint of another model
edit_checkpoint.py --write OUT NAME=D0,D1 ...: writes a checkpoint of float32 tensors with
those shapes (values 0.1 * index), for a model that has no data to train on."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import safetensors_io  # noqa: E402

if sys.argv[1] == "--write":
    out = {}
    for spec in sys.argv[3:]:
        name, dims = spec.split("=")
        shape = [int(d) for d in dims.split(",")]
        out[name] = (0.1 * np.arange(int(np.prod(shape)), dtype=np.float32)).reshape(shape)
    safetensors_io.save(sys.argv[2], out)
    sys.exit(0)
src, dst, edit = sys.argv[1], sys.argv[2], sys.argv[3]
name = sys.argv[4] if len(sys.argv) > 4 else None
t = safetensors_io.load(src)
if edit == "drop":
    del t[name]
elif edit == "reshape":
    a = t[name]
    t[name] = np.concatenate([a, a[:1]], axis=0)
elif edit == "dtype":
    t[name] = t[name].astype(np.int32)
elif edit == "foreign":
    t = {"other." + k: v for k, v in t.items()}
else:
    sys.exit(f"unknown edit {edit}")
safetensors_io.save(dst, t)
