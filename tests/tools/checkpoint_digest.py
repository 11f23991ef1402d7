"""checkpoint_digest.py CKPT...: one line per checkpoint, 'NAME sha256' over every tensor's
name, dtype, shape and little-endian bytes in sorted name order (the metadata, which holds
the checksum and training position, is left out), so two checkpoints print the same digest
exactly when their tensors are bitwise equal."""
import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def digest(path):
    h = hashlib.sha256()
    tensors = safetensors_io.load(path)
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{list(a.shape)}|".encode())
        h.update(a.astype(a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: checkpoint_digest.py CKPT...")
    for p in sys.argv[1:]:
        print(f"{os.path.basename(p)} {digest(p)}")
