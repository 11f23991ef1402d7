"""generate_vs_torch.py: --generate against PyTorch: the step function (one character at a time,
carrying the LSTMs' state) must continue a prompt exactly as torch.nn re-running the whole text.

A character model (Embedding -> 2-layer LSTM with dropout -> Dense) is compiled and trained for 40
epochs on a short English text, its checkpoint loaded into torch.nn.Embedding / nn.LSTM /
nn.Linear (load_state_dict(strict=True), the vocabulary from the checkpoint's metadata). Then:
  - greedy: `--generate N --temperature 0` must print what torch gives by taking, N times, the
    argmax of the last position's logits of the whole text so far (no state carried: an
    independent computation of the same function);
  - sampled: `--temperature X --seed S` must print what the same torch logits give when each
    draw is made as the runtime documents it (softmax(logits / X) over the vocabulary, the
    uniform number (philox24(key = {S, 0}, stream 0x67656e, index n) + 0.5) / 2^24);
  - both for the LLVM backend (default) and the C++ backend (--backend=cpp).

usage: generate_vs_torch.py GRADC WORKDIR
"""
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import safetensors_io  # noqa: E402
from dropout_masks import philox4x32_10, kat  # noqa: E402

torch.set_default_dtype(torch.float64)
M = 0xFFFFFFFF
STREAM = 0x67656E
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
        "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season "
        "of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair.\n") * 6
MODEL = """model gen_char
let B = 8
let T = 24
input  x: i32[B, T]
target y: i32[B, T]
layer emb  = Embedding(40, 12)
layer lstm = LSTM(12, 32, layers = 2, dropout = 0.2)
layer head = Dense(32, 40)
graph {
  logits = head(lstm(emb(x)))
  loss   = cross_entropy(logits, y)
  output logits
}
train {
  optimizer = adam(lr = 0.01)
  epochs    = 1
  seed      = 3
  data      = text("text.txt", length = T)
}
"""


def philox24(seed, step, stream, index):
    k0, k1 = seed & M, ((seed >> 32) ^ stream) & M
    return philox4x32_10([index & M, index >> 32, step & M, step >> 32], k0, k1)[0] >> 8


def torch_generate(mods, vocab, prompt, n, temperature, seed):
    """Continues `prompt` by n characters, re-running the whole text each time."""
    ids = [vocab.index(c) for c in prompt]
    out = ""
    V = len(vocab)
    with torch.no_grad():
        for k in range(n):
            x = torch.tensor([ids])
            logits = mods["head"](mods["lstm"](mods["emb"](x))[0])[0, -1, :V].numpy()
            if temperature == 0:
                pick = int(np.argmax(logits))
            else:
                p = np.exp((logits - logits.max()) / temperature)
                u = (philox24(seed, 0, STREAM, k) + 0.5) / 16777216.0 * p.sum()
                pick = int(np.searchsorted(np.cumsum(p), u, side="right"))
                pick = min(pick, V - 1)
            ids.append(pick)
            out += vocab[pick]
    return out


def main():
    kat()
    gradc, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "text.txt"), "w") as f:
        f.write(TEXT)
    with open(os.path.join(work, "gen_char.model"), "w") as f:
        f.write(MODEL)
    run = lambda *a: subprocess.run(list(a), cwd=work, check=True, capture_output=True, text=True).stdout
    run(gradc, "gen_char.model", "-o", "gen_char")
    run(gradc, "gen_char.model", "--backend=cpp", "-o", "gen_char_cpp")
    run("./gen_char", "--quiet", "--epochs", "40", "--save", "ck.safetensors")
    tensors, meta = safetensors_io.load_with_metadata(os.path.join(work, "ck.safetensors"))
    vocab = list(meta["gradc.vocabulary"])
    mods = torch.nn.ModuleDict({"emb": torch.nn.Embedding(40, 12), "lstm": torch.nn.LSTM(12, 32, 2, dropout=0.2, batch_first=True),
                                "head": torch.nn.Linear(32, 40)})
    state = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in tensors.items() if not k.startswith("optimizer.")}
    mods.load_state_dict(state, strict=True)
    mods.eval()
    print("load_state_dict(strict=True) ok, vocabulary", len(vocab))
    prompt, n = "it was the ", 60
    failures = 0
    for exe in ("gen_char", "gen_char_cpp"):
        for temperature, seed in ((0, 1), (0.8, 7), (1.5, 11)):
            got = run("./" + exe, "--load", "ck.safetensors", "--generate", str(n), "--prompt", prompt,
                      "--temperature", str(temperature), "--seed", str(seed))
            want = prompt + torch_generate(mods, vocab, prompt, n, temperature, seed) + "\n"
            same = got == want
            failures += not same
            print(f"{exe:12s} temperature {temperature:<3} seed {seed:<2}: {'same' if same else 'DIFFERENT'} "
                  f"({n} characters) {got.strip()!r}")
            if not same:
                print(f"  torch: {want.strip()!r}")
    if failures:
        sys.exit(f"generate_vs_torch: {failures} generations differ from torch")
    print("generate_vs_torch: every generation equals torch's")


main()
