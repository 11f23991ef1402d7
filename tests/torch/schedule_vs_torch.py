"""schedule_vs_torch.py: AdamW and the learning-rate schedules against PyTorch over several epochs.

For each configuration (an optimizer, a schedule, a number of epochs): gradc compiles a small
model (Dense -> BatchNorm -> Dense, or an LSTM -> Dense) to an executable (float32); the
executable and PyTorch (float64) start from the same checkpoint (`--load`) and take the same
batches in file order (`--no-shuffle`), with a validation set, for EPOCHS epochs of STEPS steps,
PyTorch stepping torch.optim.AdamW / lr_scheduler.StepLR, CosineAnnealingLR, OneCycleLR
(cycle_momentum=False) and ReduceLROnPlateau as section 7 of the contract says. Checked:
- the learning rate of each epoch's last step (the `lr` column of `--metrics`) equals
  PyTorch's exactly (the same double-precision formulas);
- every parameter and buffer the executable saves (`--save`) matches PyTorch's to a relative
  error of 1e-4 (max |a - b| / max(max |b|, 1e-6)).
Prints one line per configuration and tensor; exits 1 on any mismatch.

usage: schedule_vs_torch.py GRADC WORKDIR [CONFIG...]
"""
import csv
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from layers_vs_torch import B, CASES, rel  # noqa: E402

torch.set_default_dtype(torch.float64)
TOL = 1e-4
STEPS = 4      # training steps per epoch
VAL = 2 * B    # validation samples

Sched = torch.optim.lr_scheduler
# name: (case, gradc optimizer, torch optimizer, gradc schedule or "", torch schedule or None, how
# it steps, epochs)
CONFIGS = {
    "adamw_default": ("batchnorm", "adamw(lr = 0.01)", lambda p: torch.optim.AdamW(p, lr=0.01),
                      "", None, None, 5),
    "adamw_lstm": ("lstm1", "adamw(lr = 0.02, beta1 = 0.8, weight_decay = 0.1)",
                   lambda p: torch.optim.AdamW(p, lr=0.02, betas=(0.8, 0.999), weight_decay=0.1),
                   "", None, None, 5),
    "step": ("batchnorm", "adam(lr = 0.02)", lambda p: torch.optim.Adam(p, lr=0.02),
             "step(step_size = 2, gamma = 0.5)", lambda o: Sched.StepLR(o, step_size=2, gamma=0.5), "epoch", 7),
    "cosine": ("batchnorm", "sgd(lr = 0.05, momentum = 0.9)", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
               "cosine(t_max = 3, eta_min = 0.001)", lambda o: Sched.CosineAnnealingLR(o, T_max=3, eta_min=0.001),
               "epoch", 8),
    "onecycle": ("lstm1", "adamw(lr = 0.01)", lambda p: torch.optim.AdamW(p, lr=0.01),
                 "onecycle(max_lr = 0.05, total_steps = 26, pct_start = 0.25)",
                 lambda o: Sched.OneCycleLR(o, max_lr=0.05, total_steps=26, pct_start=0.25, cycle_momentum=False),
                 "step", 6),
    "plateau": ("batchnorm", "sgd(lr = 0.5)", lambda p: torch.optim.SGD(p, lr=0.5),
                "plateau(factor = 0.5, patience = 0)", lambda o: Sched.ReduceLROnPlateau(o, factor=0.5, patience=0),
                "validation", 8),
}


def data(w, xshape, n):
    """n samples of a noisy linear map x -> x.flatten() @ w."""
    x = torch.randn(n, *xshape[1:])
    return x, x.reshape(n, -1) @ w + 0.1 * torch.randn(n, w.shape[1])


def run(name, gradc, work):
    case, opt_src, opt_make, sched_src, sched_make, stepping, epochs = CONFIGS[name]
    torch.manual_seed(5)
    mods, decls, graph, fwd, xshape, yshape = CASES[case]()
    mods.train()
    w = 0.5 * torch.randn(int(np.prod(xshape[1:])), yshape[1])
    x, y = data(w, xshape, STEPS * B)
    xv, yv = data(w, xshape, VAL)
    start = {k: v.detach().numpy().copy() for k, v in mods.state_dict().items()}
    stem = os.path.join(work, name)
    safetensors_io.save(stem + "_start.safetensors", start)
    safetensors_io.save(stem + "_train.safetensors", {"x": x.numpy(), "y": y.numpy()})
    safetensors_io.save(stem + "_val.safetensors", {"x": xv.numpy(), "y": yv.numpy()})
    text = (f"model {name}\nlet B = {B}\n" + decls + "graph {\n" + graph + "\n}\n"
            + f"train {{\n  optimizer = {opt_src}\n" + (f"  schedule = {sched_src}\n" if sched_src else "")
            + f"  epochs = {epochs}\n  data = tensors(\"{stem}_train.safetensors\")\n"
            + f"  validation = tensors(\"{stem}_val.safetensors\")\n}}\n")
    with open(stem + ".model", "w") as f:
        f.write(text)
    subprocess.run([gradc, stem + ".model", "-o", stem + ".exe"], check=True)
    subprocess.run([stem + ".exe", "--quiet", "--load", stem + "_start.safetensors", "--no-shuffle",
                    "--metrics", stem + ".csv", "--save", stem + "_end.safetensors"], check=True,
                   stdout=subprocess.DEVNULL)
    got = safetensors_io.load(stem + "_end.safetensors")
    with open(stem + ".csv") as f:
        rows = list(csv.DictReader(f))
    got_lrs = [float(r["lr"]) for r in rows]
    got_vals = [float(r["val_loss"]) for r in rows]

    opt = opt_make(mods.parameters())
    sched = sched_make(opt) if sched_make else None
    lrs, vals = [], []
    for e in range(epochs):
        for s in range(STEPS):
            opt.zero_grad()
            fwd(x[s * B:(s + 1) * B], y[s * B:(s + 1) * B]).backward()
            opt.step()
            lr = opt.param_groups[0]["lr"]
            if stepping == "step":
                sched.step()
        if stepping == "validation":
            mods.eval()
            with torch.no_grad():
                v = float(fwd(xv, yv))
            mods.train()
            vals.append(v)
            sched.step(v)
        elif stepping == "epoch":
            sched.step()
        lrs.append(lr)
    worst = 0.0
    lr_ok = got_lrs == lrs
    print(f"{name:14s} lr per epoch {' '.join(f'{v:.6g}' for v in got_lrs)}"
          f"{'' if lr_ok else '  MISMATCH torch ' + ' '.join(f'{v:.6g}' for v in lrs)}")
    if vals:
        # How far each plateau decision is from its threshold (best * (1 - 1e-4)), next to
        # how far gradc's validation losses are from PyTorch's: the decisions are not close calls.
        best, margin = float("inf"), float("inf")
        for v in vals:
            if best < float("inf"):
                margin = min(margin, abs(v - best * (1 - 1e-4)) / v)
            best = min(best, v) if v < best * (1 - 1e-4) else best
        vdiff = max(abs(a - b) / b for a, b in zip(got_vals, vals))
        print(f"{name:14s} val_loss max_rel_diff {vdiff:.3e}, decisions at least {margin:.3e} from the threshold"
              f"{'  CLOSE CALL' if margin < 100 * vdiff else ''}")
        lr_ok = lr_ok and margin >= 100 * vdiff
    for k, v in mods.state_dict().items():
        r = rel(got[k], v.detach().numpy())
        worst = max(worst, r)
        print(f"{name:14s} {epochs} epochs {k:24s} max_rel_diff {r:.3e}{'  MISMATCH' if r > TOL else ''}")
    return worst, lr_ok


def main():
    gradc, work = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(CONFIGS)
    os.makedirs(work, exist_ok=True)
    results = {n: run(n, gradc, work) for n in names}
    for n, (w, ok) in results.items():
        print(f"worst {n:14s} {w:.3e} lr {'exact' if ok else 'DIFFERS'}")
    bad = [n for n, (w, ok) in results.items() if w > TOL or not ok]
    print("schedule_vs_torch:", "FAILED " + ", ".join(bad) if bad else f"all within {TOL:g}, learning rates exact")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
