"""check_onnx.py MODEL.onnx: runs onnx.checker.check_model(full_check=True) on an exported model
and prints its inputs, outputs (name, element type, shape), initializers and node op types."""
import collections
import sys

import onnx

m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
print("onnx.checker full_check: ok")
print(f"opset {m.opset_import[0].version} ir_version {m.ir_version}")


def show(kind, vi):
    t = vi.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
    print(f"{kind} {vi.name} {onnx.TensorProto.DataType.Name(t.elem_type)} {dims}")


for vi in m.graph.input:
    show("input", vi)
for vi in m.graph.output:
    show("output", vi)
for t in m.graph.initializer:
    print(f"initializer {t.name} {list(t.dims)}")
ops = collections.Counter(n.op_type for n in m.graph.node)
print("ops " + " ".join(f"{k}={v}" for k, v in sorted(ops.items())))
