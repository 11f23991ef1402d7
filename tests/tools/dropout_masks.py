"""dropout_masks.py: checks the masks of Dropout as the executable applied them, against an
independent Python Philox-4x32-10 (checked on Random123's known-answer vectors first).

  dropout_masks.py data OUT N           a data set of one sample x = ones f32[1, N] (twice)
  dropout_masks.py check W0 W1 P SEED STEP [STREAM]
      W0, W1: checkpoints before and after one SGD step (lr = N) of tests/lit/Inputs/
      dropout_probe.model, whose loss is mean(Dropout(p)(x * s.weight)): then
      s.weight_after = s.weight_before - mask, so the step's mask is W0 - W1. Checks that every
      element is 0 or 1/(1-p) (to 1e-6), that the kept fraction is 1 - p within 5 standard
      deviations, and that the mask is bitwise the one Philox gives for (SEED, STEP, STREAM).
      Prints the kept fraction and the agreement with the mask of the other seed, SEED + 1.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

M = 0xFFFFFFFF


def philox4x32_10(c, k0, k1):
    c = list(c)
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & M, (k1 + 0xBB67AE85) & M
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & M, (p0 >> 32) ^ c[3] ^ k1, p0 & M]
    return c


def kat():
    cases = [([0] * 4, 0, 0, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
             ([M] * 4, M, M, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
             ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], 0xA4093822, 0x299F31D0,
              [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1])]
    for c, k0, k1, want in cases:
        if philox4x32_10(c, k0, k1) != want:
            sys.exit("the Python Philox fails Random123's known answers")


def keep(seed, step, stream, n, p):
    """The kept elements (bool[n]) of dropout stream `stream` at (seed, step)."""
    thr = int(round(p * 16777216))
    k0, k1 = seed & M, ((seed >> 32) ^ stream) & M
    return np.array([philox4x32_10([i & M, i >> 32, step & M, step >> 32], k0, k1)[0] >> 8 >= thr
                     for i in range(n)])


def main():
    kat()
    if sys.argv[1] == "data":
        n = int(sys.argv[3])
        safetensors_io.save(sys.argv[2], {"x": np.ones((2, n), np.float32)})
        return
    w0 = safetensors_io.load(sys.argv[2])["s.weight"].astype(np.float64).reshape(-1)
    w1 = safetensors_io.load(sys.argv[3])["s.weight"].astype(np.float64).reshape(-1)
    p, seed, step = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    stream = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    mask = w0 - w1
    scale = 1 / (1 - p)
    dropped, kept = np.abs(mask) < 1e-6, np.abs(mask - scale) < 1e-6 * scale
    if not np.all(dropped | kept):
        bad = int(np.flatnonzero(~(dropped | kept))[0])
        sys.exit(f"element {bad} of the mask is {mask[bad]}, neither 0 nor 1/(1-p) = {scale}")
    n = mask.size
    rate, sd = kept.mean(), np.sqrt(p * (1 - p) / n)
    if abs(rate - (1 - p)) > 5 * sd:
        sys.exit(f"kept fraction {rate:.4f}, expected {1 - p:.4f} +- {5 * sd:.4f}")
    want = keep(seed, step, stream, n, p)
    if not np.array_equal(kept, want):
        sys.exit(f"the mask differs from Philox(seed {seed}, step {step}, stream {stream}) at "
                 f"{int((kept != want).sum())} of {n} elements")
    other = keep(seed + 1, step, stream, n, p)
    print(f"mask ok: {n} elements, kept {rate:.4f} (1 - p = {1 - p:.4f} +- {5 * sd:.4f}), scale {scale:.6f}, "
          f"the Philox mask of seed {seed} step {step} stream {stream}; agreement with seed {seed + 1}: "
          f"{(kept == other).mean():.3f}")


if __name__ == "__main__":
    main()
