"""safetensors_io.py: a tiny pure-Python (numpy) reader and writer of the Hugging Face safetensors format, for tests and scripts on machines without the `safetensors` package.

    load(path) -> dict[str, np.ndarray]
    load_with_metadata(path) -> (dict[str, np.ndarray], dict[str, str])
    save(path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None)

The layout is the reference one: an 8-byte little-endian header length, a JSON header
{"__metadata__": {...}, name: {"dtype", "shape", "data_offsets"}, ...} padded with spaces to a
multiple of 8, then the tensors' little-endian bytes, contiguous, in header order. load()
validates the header (offsets in range and matching the shape, no overlaps or gaps) and raises
ValueError on malformed files.
"""

import json
import os

import numpy as np

_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
}
_MAX_HEADER = 100_000_000


def _dtype_name(arr):
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    for k, v in _DTYPES.items():
        if np.dtype(v) == dt:
            return k
    raise ValueError(f"unsupported numpy dtype {arr.dtype}")


def load_with_metadata(path):
    """Reads a safetensors file; returns (tensors by name, metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    where = os.fspath(path)
    if len(data) < 8:
        raise ValueError(f"{where}: file shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > _MAX_HEADER or n > len(data) - 8:
        raise ValueError(f"{where}: header length {n} is invalid for a {len(data)}-byte file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: header is not a JSON object")
    buf = memoryview(data)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{where}: __metadata__ must map strings to strings")
    tensors, spans = {}, []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where}: tensor {name!r}: expected dtype, shape and data_offsets")
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{where}: tensor {name!r}: unsupported dtype {info['dtype']!r}")
        shape = info["shape"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ValueError(f"{where}: tensor {name!r}: bad shape {shape!r}")
        offs = info["data_offsets"]
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
            raise ValueError(f"{where}: tensor {name!r}: bad data_offsets {offs!r}")
        begin, end = offs
        dt = np.dtype(_DTYPES[info["dtype"]])
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if not (0 <= begin <= end <= len(buf)) or end - begin != count * dt.itemsize:
            raise ValueError(f"{where}: tensor {name!r}: data_offsets {offs} do not fit "
                             f"{info['dtype']}{shape} in a {len(buf)}-byte buffer")
        tensors[name] = np.frombuffer(buf[begin:end], dtype=dt).reshape(shape).copy()
        spans.append((begin, end, name))
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin != cursor:
            raise ValueError(f"{where}: tensor {name!r} starts at {begin}, expected {cursor} "
                             "(overlap or gap)")
        cursor = end
    if cursor != len(buf):
        raise ValueError(f"{where}: {len(buf) - cursor} bytes after the last tensor")
    return tensors, dict(metadata)


def load(path):
    """Reads a safetensors file; returns its tensors by name (numpy arrays, native order)."""
    return load_with_metadata(path)[0]


def save(path, tensors, metadata=None):
    """Writes tensors (name -> numpy array, in the dict's order) as a safetensors file."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        kind = _dtype_name(arr)
        raw = np.ascontiguousarray(arr, dtype=np.dtype(_DTYPES[kind])).tobytes()
        header[name] = {"dtype": kind, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{os.fspath(path)}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
