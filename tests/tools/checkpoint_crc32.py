"""checkpoint_crc32.py CKPT: recomputes a checkpoint's gradc.crc32 checksum with Python's zlib.crc32,
from the raw bytes of the file (standard library only), as docs/robustness.md describes it: per
tensor, in ascending byte order of the names, u64 len(name), name (UTF-8), u64 len(dtype), dtype
("F32", ...), u64 rank, u64 each dimension, u64 len(data), the data bytes; every u64 8 bytes
little-endian. Prints "crc32 ok <hex>" and exits 0 if it equals the file's gradc.crc32, else
prints both values and exits 1 (2 if the file has no gradc.crc32)."""
import json
import struct
import sys
import zlib


def u64(v):
    return struct.pack("<Q", v)


def main(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    crc = 0
    for name in sorted(header, key=lambda s: s.encode("utf-8")):
        entry = header[name]
        begin, end = entry["data_offsets"]
        key = name.encode("utf-8")
        dtype = entry["dtype"].encode("ascii")
        record = u64(len(key)) + key + u64(len(dtype)) + dtype + u64(len(entry["shape"]))
        record += b"".join(u64(d) for d in entry["shape"])
        record += u64(end - begin) + body[begin:end]
        crc = zlib.crc32(record, crc)
    got = f"{crc:08x}"
    want = meta.get("gradc.crc32")
    if want is None:
        print(f"{path}: no gradc.crc32 in the metadata (computed {got})")
        return 2
    if want != got:
        print(f"crc32 mismatch: the file says {want}, zlib.crc32 gives {got}")
        return 1
    print(f"crc32 ok {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
