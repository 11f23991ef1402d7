"""torch_reference.py: PyTorch's side of the gradc benchmark: the same model as gradc's
bench models (LSTM(F, H) -> BatchNorm on the last step -> Dense(H, 1), MSE, Adam) trained on
random data; prints one JSON line with ms per step, peak RSS, import-to-first-step time (ready_s: until
the first step starts; start_to_first_step_s: until it ends).

usage: torch_reference.py --size small|medium|large --threads N [--steps S] [--warmup W]
       torch_reference.py --shape F,T,H,B --threads N [--steps S]
       torch_reference.py --fashion --threads N [--steps S]   (LSTM(28,128) -> BN -> Dense(128,10), CE)
       ... --autocast: the forward under torch.autocast("cpu", dtype=torch.bfloat16); the JSON
       line's lstm_dtype says whether the LSTM ran in bf16 or stayed float32 (bench/bf16.py)
Run in its own process so RSS and start-up are measured cleanly.
"""
import argparse
import json
import resource
import time

T0 = time.perf_counter()
import torch  # noqa: E402

SIZES = {"small": (1, 30, 64, 32), "medium": (28, 28, 128, 64), "large": (64, 50, 512, 64)}


def peak_rss_mib():
    """This process's peak RSS (VmHWM): unlike ru_maxrss it leaves out what the parent had
    resident when it forked this process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Net(torch.nn.Module):
    def __init__(self, f, h, out):
        super().__init__()
        self.lstm = torch.nn.LSTM(f, h, batch_first=True)
        self.bn = torch.nn.BatchNorm1d(h)
        self.head = torch.nn.Linear(h, out)

    def forward(self, x):
        return self.head(self.bn(self.lstm(x)[0][:, -1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=SIZES)
    ap.add_argument("--fashion", action="store_true")
    ap.add_argument("--shape", help="F,T,H,B: the bench model at another shape (bench/scaling.py)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--autocast", action="store_true", help="forward under CPU autocast to bfloat16")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.fashion:
        f, t, h, b, out = 28, 28, 128, 64, 10
    elif a.shape:
        f, t, h, b = (int(v) for v in a.shape.split(","))
        out = 1
    else:
        f, t, h, b = SIZES[a.size]
        out = 1
    net = Net(f, h, out)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(b, t, f)
    y = torch.randint(0, 10, (b,)) if a.fashion else torch.randn(b, 1)
    lossf = torch.nn.functional.cross_entropy if a.fashion else torch.nn.functional.mse_loss

    lstm_dtype = []
    net.lstm.register_forward_hook(lambda m, i, o: lstm_dtype.append(str(o[0].dtype)))

    def step():
        opt.zero_grad(set_to_none=True)
        if a.autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = net(x)
            loss = lossf(out.float(), y)
        else:
            loss = lossf(net(x), y)
        loss.backward()
        opt.step()
        return loss

    ready = time.perf_counter() - T0
    step()
    first = time.perf_counter() - T0
    for _ in range(a.warmup):
        step()
    t1 = time.perf_counter()
    for _ in range(a.steps):
        step()
    ms = (time.perf_counter() - t1) * 1000 / a.steps
    rss = peak_rss_mib()
    print(json.dumps({"impl": "torch", "size": "fashion" if a.fashion else a.size or a.shape, "threads": a.threads,
                      "ms_per_step": ms, "peak_rss_mib": rss, "start_to_first_step_s": first,
                      "ready_s": ready, "autocast": a.autocast, "lstm_dtype": lstm_dtype[-1],
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
