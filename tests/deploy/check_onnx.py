"""check_onnx.py MODEL.onnx: runs onnx.checker.check_model(full_check=True) on an exported model
and prints its inputs, outputs (name, element type, shape), initializers, node op types and
the recurrent nodes (LSTM, GRU, Scan) with their attributes and inputs."""
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
# The recurrences: ONNX LSTM/GRU ops with their attributes, and Scans.
for n in m.graph.node:
    if n.op_type in ("LSTM", "GRU", "Scan"):
        attrs = []
        for a in sorted(n.attribute, key=lambda a: a.name):
            if a.type == onnx.AttributeProto.GRAPH:
                continue
            v = onnx.helper.get_attribute_value(a)
            attrs.append(f"{a.name}={v.decode() if isinstance(v, bytes) else v}")
        print(f"node {n.op_type} {' '.join(attrs)} inputs {list(n.input)}")
