"""make_inputs.py MODEL.onnx N OUT.safetensors [SEED]: writes N random samples of an exported
model's input (its name, dtype and per-sample shape from the ONNX graph; f32 uniform in
[-1, 1), i32 labels in [0, 10)) as a safetensors file that `EXE --predict --data` and
run_onnx.js both read, and prints the tensor's shape."""
import os
import sys

import numpy as np
import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import safetensors_io  # noqa: E402

m = onnx.load(sys.argv[1])
n, out = int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
vi = m.graph.input[0]
t = vi.type.tensor_type
shape = [n] + [d.dim_value for d in t.shape.dim][1:]
if t.elem_type == onnx.TensorProto.FLOAT:
    x = rng.uniform(-1, 1, size=shape).astype(np.float32)
else:
    x = rng.integers(0, 10, size=shape).astype(np.int32)
safetensors_io.save(out, {vi.name: x})
print(f"{vi.name} {list(x.shape)}")
