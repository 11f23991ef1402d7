"""test_safetensors_io.py: checks that the runtime's C++ safetensors reader/writer (through safetensors_tool) interoperates with the pure-Python tests/tools/safetensors_io.py and with torch.

Usage: /usr/bin/python3 tests/unit/test_safetensors_io.py PATH/TO/safetensors_tool
Exits non-zero on the first failure.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import safetensors_io  # noqa: E402

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def same(a, b):
    """Same dtype, shape and bit pattern (so NaN, -0.0 and infinities count)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def run_tool(tool, *args):
    return subprocess.run([tool, *args], capture_output=True, text=True)


def sample_arrays():
    rng = np.random.default_rng(7)
    return {
        # Insertion order = name order, so the C++ rewrite (name order) is byte-identical.
        "bias": rng.standard_normal(5).astype(np.float64),
        "counts": np.array([[np.iinfo(np.int32).min, -1], [0, np.iinfo(np.int32).max]], dtype=np.int32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "lstm.weight_hh_l0": rng.standard_normal((8, 2)).astype(np.float32),
        "scalar": np.array(2**62 + 1, dtype=np.int64),
        "special": np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4028235e38], dtype=np.float32),
        "t\u00e4nsor \"quoted\"": np.arange(24, dtype=np.int64).reshape(2, 3, 4) - 12,
    }


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    tool = sys.argv[1]
    arrays = sample_arrays()
    meta = {"format": "pt", "gradc": "caf\u00e9 \\ \"x\"\n"}
    with tempfile.TemporaryDirectory(prefix="gradc-st-") as tmp:
        a = os.path.join(tmp, "a.safetensors")
        b = os.path.join(tmp, "b.safetensors")

        # 1. Python writes, C++ reads and rewrites, Python reads: identical values.
        safetensors_io.save(a, arrays, meta)
        r = run_tool(tool, "roundtrip", a, b)
        check(r.returncode == 0, f"C++ roundtrip of a Python-written file failed: {r.stderr}")
        if r.returncode == 0:
            back, meta2 = safetensors_io.load_with_metadata(b)
            check(set(back) == set(arrays), f"names differ: {sorted(back)} vs {sorted(arrays)}")
            for k, v in arrays.items():
                check(k in back and same(back[k], v), f"tensor {k!r} differs after the C++ round trip")
            check(meta2 == meta, f"metadata differs: {meta2!r} vs {meta!r}")
            with open(a, "rb") as fa, open(b, "rb") as fb:
                check(fa.read() == fb.read(), "C++ rewrite is not byte-identical to the Python file")
            check(not any(n.startswith("b.safetensors.tmp") for n in os.listdir(tmp)),
                  "temporary file left behind")

        # 2. C++ writes the fixed sample, Python reads it.
        s = os.path.join(tmp, "sample.safetensors")
        r = run_tool(tool, "write-sample", s)
        check(r.returncode == 0, f"write-sample failed: {r.stderr}")
        if r.returncode == 0:
            with open(s, "rb") as f:
                raw = f.read()
            n = int.from_bytes(raw[:8], "little")
            check(n % 8 == 0, f"header length {n} is not a multiple of 8")
            check(raw[8:8 + n].rstrip(b" ").endswith(b"}"), "header is not padded with spaces")
            got, gmeta = safetensors_io.load_with_metadata(s)
            want = {
                "layer.weight": (0.5 * np.arange(6, dtype=np.float32) - 1.0).astype(np.float32).reshape(2, 3),
                "layer.bias": np.array([3.141592653589793, -2.5e-300, 1e300], dtype=np.float64),
                "counts": np.array([[-2**31, -1], [0, 2**31 - 1]], dtype=np.int32),
                "step": np.array(-9007199254740993, dtype=np.int64),
                "empty": np.zeros((0, 4), dtype=np.float32),
            }
            check(list(got) == list(want), f"sample tensors/order: {list(got)}")
            for k, v in want.items():
                check(k in got and same(got[k], v), f"sample tensor {k!r}: {got.get(k)!r} != {v!r}")
            check(gmeta == {"format": "pt", "note": "gr\u00e4dc \"sample\""}, f"sample metadata {gmeta!r}")

            # 3. torch sees the same values.
            try:
                import torch
            except ImportError:
                check(False, "torch is not importable")
            else:
                for k, v in want.items():
                    t = torch.from_numpy(got[k])
                    check(torch.equal(t, torch.from_numpy(v)), f"torch values of {k!r} differ")
                    check(list(t.shape) == list(v.shape), f"torch shape of {k!r} differs")

                # A torch module's state_dict through Python -> C++ -> Python -> load_state_dict.
                torch.manual_seed(0)
                lstm = torch.nn.LSTM(1, 4, batch_first=True)
                head = torch.nn.Linear(4, 1)
                sd = {f"lstm.{k}": v.detach().numpy() for k, v in lstm.state_dict().items()}
                sd.update({f"head.{k}": v.detach().numpy() for k, v in head.state_dict().items()})
                c1, c2 = os.path.join(tmp, "ckpt.safetensors"), os.path.join(tmp, "ckpt2.safetensors")
                safetensors_io.save(c1, sd)
                r = run_tool(tool, "roundtrip", c1, c2)
                check(r.returncode == 0, f"roundtrip of a torch checkpoint failed: {r.stderr}")
                if r.returncode == 0:
                    back = safetensors_io.load(c2)
                    lstm2 = torch.nn.LSTM(1, 4, batch_first=True)
                    head2 = torch.nn.Linear(4, 1)
                    lstm2.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in back.items() if k.startswith("lstm.")})
                    head2.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in back.items() if k.startswith("head.")})
                    x = torch.randn(3, 7, 1)
                    with torch.no_grad():
                        y1 = head(lstm(x)[0][:, -1, :])
                        y2 = head2(lstm2(x)[0][:, -1, :])
                    check(torch.equal(y1, y2), "torch outputs differ after the checkpoint round trip")

        # 4. Malformed files: the C++ side reports an error naming the file and a byte offset.
        with open(a, "rb") as f:
            good = f.read()
        bad = os.path.join(tmp, "bad.safetensors")
        for cut in (0, 5, 8, 20, len(good) - 1):
            with open(bad, "wb") as f:
                f.write(good[:cut])
            r = run_tool(tool, "dump", bad)
            check(r.returncode == 1 and "bad.safetensors: byte " in r.stderr,
                  f"truncated at {cut}: rc={r.returncode} stderr={r.stderr!r}")
            try:
                safetensors_io.load(bad)
                check(False, f"Python reader accepted a file truncated at {cut}")
            except ValueError:
                pass
        bf16 = b'{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}'
        bf16 += b" " * ((8 - len(bf16) % 8) % 8)
        with open(bad, "wb") as f:
            f.write(len(bf16).to_bytes(8, "little") + bf16 + b"\0" * 4)
        r = run_tool(tool, "dump", bad)
        check(r.returncode == 1 and "unsupported dtype 'BF16'" in r.stderr, f"BF16: {r.stderr!r}")
        r = run_tool(tool, "dump", os.path.join(tmp, "missing.safetensors"))
        check(r.returncode == 1 and "missing.safetensors: cannot open" in r.stderr, f"missing file: {r.stderr!r}")

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    print("test_safetensors_io: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
