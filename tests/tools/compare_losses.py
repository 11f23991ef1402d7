"""compare_losses.py A B TOL: the `epoch E loss L [val_loss V]` lines of two runs agree to a
relative error TOL; prints 'N losses agree' or the first difference and exits 1."""
import re
import sys


def losses(path):
    out = []
    for m in re.finditer(r"^epoch (\d+) loss (\S+)(?: val_loss (\S+))?", open(path).read(), re.M):
        out += [float(m.group(2))] + ([float(m.group(3))] if m.group(3) else [])
    return out


a, b, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
if len(a) != len(b) or not a:
    sys.exit(f"different numbers of losses: {len(a)} vs {len(b)}")
for x, y in zip(a, b):
    if abs(x - y) > tol * max(abs(y), 1e-12):
        sys.exit(f"losses differ: {x} vs {y}")
print(f"{len(a)} losses agree")
