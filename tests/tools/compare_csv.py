"""compare_csv.py A B TOL: two CSV files of numbers (a header line allowed) have the same
shape and agree to TOL relative to the largest |value| of B; prints 'N rows agree (max_rel_diff
R)' or exits 1."""
import sys

import numpy as np


def load(path):
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    try:
        float(lines[0].split(",")[0])
    except ValueError:
        lines = lines[1:]
    return np.array([[float(v) for v in l.split(",")] for l in lines])


a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if a.shape != b.shape or a.size == 0:
    sys.exit(f"different shapes: {a.shape} vs {b.shape}")
r = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-6))
if not r <= tol:
    sys.exit(f"values differ: max_rel_diff {r:.3e} > {tol:g}")
print(f"{a.shape[0]} rows agree (max_rel_diff {r:.3e})")
