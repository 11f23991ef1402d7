#!/usr/bin/python3
"""plot_metrics.py: draws the learning curves of one or more `--metrics` CSV files.

The files are what a training executable writes with `--metrics FILE.csv` (one row per
epoch: epoch, step, loss, val_loss, val_acc when there is one, bpc and val_bpc for a text
model, lr, seconds). Each metric
asked for gets its own panel, with one curve per file, against the epoch (or --x step /
seconds, the latter summed over the epochs). The picture is a PNG or an SVG, chosen by the
output's extension, written atomically. Uses matplotlib's Agg backend (no display needed;
Debian: python3-matplotlib).

usage: plot_metrics.py -o OUT.png|OUT.svg [--metrics loss,val_loss,val_acc,lr] [--x epoch|step|seconds|COLUMN]
                       [--labels A,B,...] [--title TEXT] [--log | --loglog] FILE.csv [FILE.csv ...]

With --x naming another column (bench/scaling.py's tables: T, H), the files are any CSV of
numbers with that column and the metrics asked for; --loglog draws both axes logarithmic.
A file that is not such a CSV (no header with epoch and the metrics asked for, a non-numeric
cell, a row of the wrong length, no rows) is an error naming the file and the line; exit 1.
"""
import argparse
import csv
import math
import os
import sys

PROG = "plot_metrics.py"
KNOWN = ["loss", "val_loss", "val_acc", "bpc", "val_bpc", "lr", "seconds", "step", "epoch"]
TITLES = {"loss": "training loss", "val_loss": "validation loss", "val_acc": "validation accuracy",
          "bpc": "bits per character (training)", "val_bpc": "bits per character (validation)",
          "lr": "learning rate", "seconds": "seconds per epoch",
          "ms": "ms per training step", "rss_mib": "peak resident memory (MiB)",
          "compile_s": "compile time (s)", "arena_mib": "arena (MiB)"}


class BadInput(Exception):
    """A file or argument that cannot be plotted; the message names it."""


def read_metrics(path, wanted, xcol="epoch"):
    """The columns of metrics file `path` as {name: [float]} (every column, checked). A file
    plotted against another column than epoch, step or seconds (--x) need not be a --metrics
    file: any CSV of numbers with a header that has the --x column and the metrics."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}")
    except (UnicodeDecodeError, csv.Error) as e:
        raise BadInput(f"{path}: not a CSV text file ({e})")
    if not rows:
        raise BadInput(f"{path}:1: empty file; expected a header 'epoch,step,loss,...,lr,seconds'")
    header = [h.strip() for h in rows[0]]
    if xcol in ("epoch", "step", "seconds") and "epoch" not in header:
        raise BadInput(f"{path}:1: the header has no 'epoch' column (found {','.join(header)!r}); "
                       "is this a --metrics file?")
    if xcol not in header:
        raise BadInput(f"{path}:1: no column '{xcol}' for --x (the file has {', '.join(header)})")
    for m in wanted:
        if m not in header:
            raise BadInput(f"{path}:1: no column '{m}' (the file has {', '.join(header)})")
    cols = {h: [] for h in header}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise BadInput(f"{path}:{line}: {len(row)} cells, but the header has {len(header)}")
        for h, cell in zip(header, row):
            try:
                v = float(cell)
            except ValueError:
                raise BadInput(f"{path}:{line}: column '{h}' holds {cell.strip()[:40]!r}, not a number")
            cols[h].append(v)
    if not cols[xcol]:
        raise BadInput(f"{path}: the file has a header but no rows")
    return cols


def x_values(cols, kind, path):
    if kind == "epoch":
        return cols["epoch"]
    if kind not in cols:
        raise BadInput(f"{path}:1: no column '{kind}' for --x")
    if kind == "seconds":  # per-epoch seconds, summed: wall-clock time at the end of each epoch
        out, t = [], 0.0
        for v in cols["seconds"]:
            t += v
            out.append(t)
        return out
    return cols[kind]


def plot(files, labels, metrics, xkind, out, title, log, logx=False):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    data = [read_metrics(f, metrics, xkind) for f in files]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for cols, label, path in zip(data, labels, files):
            ys = cols[m]
            ax.plot(x_values(cols, xkind, path), ys, marker="o", markersize=3, linewidth=1.5, label=label)
        ax.set_title(TITLES.get(m, m))
        ax.set_xlabel({"epoch": "epoch", "step": "training step", "seconds": "seconds"}.get(xkind, xkind))
        if log and m != "val_acc" and all(v > 0 for cols in data for v in cols[m] if math.isfinite(v)):
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        elif xkind in ("epoch", "step"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    ext = os.path.splitext(out)[1].lower()
    tmp = f"{out}.tmp.{os.getpid()}{ext}"
    try:
        fig.savefig(tmp, format=ext[1:], dpi=110)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Learning curves of --metrics CSV files.")
    ap.add_argument("files", nargs="+", metavar="FILE.csv")
    ap.add_argument("-o", "--output", required=True, help="the picture: .png or .svg")
    ap.add_argument("--metrics", default="", help="comma-separated columns (default: loss, and val_loss and "
                    "val_acc when every file has them)")
    ap.add_argument("--x", default="epoch", help="the x axis: epoch (default), step, seconds (summed over the "
                    "epochs), or any other column of the files (e.g. T of bench/scaling.py's tables)")
    ap.add_argument("--labels", default="", help="comma-separated curve names (default: the file names)")
    ap.add_argument("--title", default="")
    ap.add_argument("--log", action="store_true", help="logarithmic y axis for positive metrics")
    ap.add_argument("--loglog", action="store_true", help="logarithmic x and y axes")
    a = ap.parse_args(argv)
    try:
        ext = os.path.splitext(a.output)[1].lower()
        if ext not in (".png", ".svg"):
            raise BadInput(f"{a.output}: the output must end in .png or .svg")
        metrics_files = a.x in ("epoch", "step", "seconds")
        if a.metrics:
            metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
        elif metrics_files:
            heads = [read_metrics(f, []) for f in a.files]
            metrics = ["loss"] + [m for m in ("val_loss", "val_acc") if all(m in h for h in heads)]
        else:
            raise BadInput(f"--metrics: name the columns to plot against '{a.x}'")
        for m in metrics:
            if metrics_files and m not in KNOWN:
                raise BadInput(f"--metrics: unknown column '{m}' (known: {', '.join(KNOWN)})")
        labels = [s.strip() for s in a.labels.split(",")] if a.labels else \
            [os.path.splitext(os.path.basename(f))[0] for f in a.files]
        if len(labels) != len(a.files):
            raise BadInput(f"--labels: {len(labels)} names for {len(a.files)} files")
        plot(a.files, labels, metrics, a.x, a.output, a.title, a.log or a.loglog, a.loglog)
    except BadInput as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
