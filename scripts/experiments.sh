#!/usr/bin/env bash
# experiments.sh: reruns the experiments of docs/experiments.md and redraws its pictures.
# Compiles seed_gate_bn, seed_plain_lstm, fashion_lstm_bn, fashion_lstm and bnlstm_fashion (models/), trains
# each with the same seed (42), writing --metrics files to docs/img/*.csv, and draws them with
# scripts/plot_metrics.py into docs/img/seed_bn_vs_plain.png, docs/img/fashion_bn_vs_plain.png and
# docs/img/fashion_bnlstm_vs_plain.png; then char_lstm for CHAR_EPOCHS (default 20, its own) epochs,
# its bits per character into docs/img/char_lstm.png and a --generate sample into
# docs/img/char_lstm_sample.txt.
# The seed models train for SEED_EPOCHS epochs (default 8; their own 20, with early stopping,
# take longer than this is meant to). The Fashion-MNIST models train for FASHION_EPOCHS
# (default 6) on the first FASHION_TRAIN (6400) training images and validate on the first
# FASHION_VAL (2000) test images: the same model files with their idx() paths pointed at
# those subsets (written to a temporary directory from Debian's dataset-fashion-mnist).
# About 6 minutes on 2 busy cores.
#
# usage: scripts/experiments.sh [GRADC]   (default build/bin/gradc)
set -euo pipefail
cd "$(dirname "$0")/.."
GRADC=${1:-build/bin/gradc}
SEED_EPOCHS=${SEED_EPOCHS:-8}
FASHION_EPOCHS=${FASHION_EPOCHS:-6}
FASHION_TRAIN=${FASHION_TRAIN:-6400}
FASHION_VAL=${FASHION_VAL:-2000}
CHAR_EPOCHS=${CHAR_EPOCHS:-20}
FASHION=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
OUT=docs/img
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

train() { # MODEL_FILE EPOCHS
  local file=$1 epochs=$2 m
  m=$(basename "$file" .model)
  echo "== $m ($epochs epochs)"
  "$GRADC" "$file" -o "$WORK/$m"
  "$WORK/$m" --quiet --seed 42 --epochs "$epochs" --metrics "$OUT/$m.csv"
}

# The Fashion-MNIST subsets (IDX, gzip), and the two models reading them.
mkdir -p "$WORK/fashion"
$PY - "$FASHION" "$WORK/fashion" "$FASHION_TRAIN" "$FASHION_VAL" <<'PYEOF'
import gzip, struct, sys
src, dst, ntrain, nval = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for split, n in (("train", ntrain), ("t10k", nval)):
    for kind, per in (("images-idx3", 28 * 28), ("labels-idx1", 1)):
        name = f"{split}-{kind}-ubyte.gz"
        data = gzip.open(f"{src}/{name}").read()
        head = 16 if per > 1 else 8
        dims = list(struct.unpack(">" + "I" * ((head - 4) // 4), data[4:head]))
        if n > dims[0]:
            sys.exit(f"{src}/{name} has {dims[0]} items, fewer than {n}")
        dims[0] = n
        out = data[:4] + struct.pack(">" + "I" * len(dims), *dims) + data[head:head + n * per]
        with gzip.open(f"{dst}/{name}", "wb") as f:
            f.write(out)
PYEOF
for m in fashion_lstm_bn fashion_lstm bnlstm_fashion; do
  sed "s|$FASHION/|$WORK/fashion/|g" "models/$m.model" > "$WORK/fashion/$m.model"
done

train models/seed_gate_bn.model "$SEED_EPOCHS"
train models/seed_plain_lstm.model "$SEED_EPOCHS"
train "$WORK/fashion/fashion_lstm_bn.model" "$FASHION_EPOCHS"
train "$WORK/fashion/fashion_lstm.model" "$FASHION_EPOCHS"
train "$WORK/fashion/bnlstm_fashion.model" "$FASHION_EPOCHS"
# The character model: its own 20 epochs on the GPL-3 text, then a sample of its --generate.
"$GRADC" models/char_lstm.model -o "$WORK/char_lstm"
echo "== char_lstm ($CHAR_EPOCHS epochs)"
"$WORK/char_lstm" --quiet --epochs "$CHAR_EPOCHS" --metrics "$OUT/char_lstm.csv" --save "$WORK/char_lstm.safetensors"
"$WORK/char_lstm" --load "$WORK/char_lstm.safetensors" --generate 400 --prompt "The licenses " --temperature 0.7 \
  --seed 1 > "$OUT/char_lstm_sample.txt"

$PY scripts/plot_metrics.py -o "$OUT/seed_bn_vs_plain.png" --log --metrics loss,val_loss \
  --labels "seed_gate_bn (BatchNorm in the gates),seed_plain_lstm" \
  --title "CO2 series, next-week forecast: SGD lr 0.001, seed 42" \
  "$OUT/seed_gate_bn.csv" "$OUT/seed_plain_lstm.csv"
$PY scripts/plot_metrics.py -o "$OUT/fashion_bn_vs_plain.png" --metrics loss,val_loss,val_acc \
  --labels "fashion_lstm_bn (BatchNorm after the LSTM),fashion_lstm" \
  --title "Fashion-MNIST ($FASHION_TRAIN training images), rows as a sequence: Adam lr 0.002, seed 42" \
  "$OUT/fashion_lstm_bn.csv" "$OUT/fashion_lstm.csv"
$PY scripts/plot_metrics.py -o "$OUT/fashion_bnlstm_vs_plain.png" --metrics loss,val_loss,val_acc \
  --labels "bnlstm_fashion (recurrent BatchNorm at every step),fashion_lstm" \
  --title "Fashion-MNIST ($FASHION_TRAIN training images), rows as a sequence: Adam lr 0.002, seed 42" \
  "$OUT/bnlstm_fashion.csv" "$OUT/fashion_lstm.csv"
$PY scripts/plot_metrics.py -o "$OUT/char_lstm.png" --metrics bpc,val_bpc --labels "char_lstm" \
  --title "char_lstm on the GPL-3 text: bits per character, Adam lr 0.003, seed 1" "$OUT/char_lstm.csv"
echo "wrote $OUT/seed_bn_vs_plain.png $OUT/fashion_bn_vs_plain.png $OUT/fashion_bnlstm_vs_plain.png $OUT/char_lstm.png" \
  "$OUT/char_lstm_sample.txt"
