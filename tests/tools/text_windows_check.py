"""text_windows_check.py TEXT CKPT PRED.csv LENGTH: checks the text data source against Python:
the checkpoint's "gradc.vocabulary" must be the sorted set of TEXT's characters (code points),
and the windows that --predict printed (the model's output xs, tests/lit/Inputs/tiny_text.model)
must be the text's characters as vocabulary indices, LENGTH at a time, not overlapping."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

text = open(sys.argv[1], encoding="utf-8").read()
_, meta = safetensors_io.load_with_metadata(sys.argv[2])
L = int(sys.argv[4])
vocab = sorted(set(text))
if meta["gradc.vocabulary"] != "".join(vocab):
    sys.exit(f"vocabulary {meta['gradc.vocabulary']!r}, python {''.join(vocab)!r}")
print(f"vocabulary matches python: {len(vocab)} characters {''.join(vocab)!r}")
index = {c: i for i, c in enumerate(vocab)}
n = (len(text) - 1) // L
want = [[index[c] for c in text[i * L:(i + 1) * L]] for i in range(n)]
rows = open(sys.argv[3]).read().splitlines()[1:]
got = [[int(float(v)) for v in r.split(",")[:L]] for r in rows]
if got != want:
    sys.exit(f"windows differ: gradc {got}, python {want}")
print(f"windows match python: {n} windows of {L}")
