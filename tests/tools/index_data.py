"""index_data.py: writes a safetensors file of i32 index windows x [N, T] (and zero targets y), all 0 but one element.

usage: index_data.py OUT N T ROW COL VALUE [--no-targets]
"""
import sys

import numpy as np

import safetensors_io

out, n, t, row, col, value = sys.argv[1], *map(int, sys.argv[2:7])
x = np.zeros((n, t), np.int32)
x[row, col] = value
tensors = {"x": x}
if "--no-targets" not in sys.argv:
    tensors["y"] = np.zeros((n, t), np.int32)
safetensors_io.save(out, tensors)
