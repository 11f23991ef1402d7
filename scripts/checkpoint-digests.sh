#!/usr/bin/env bash
# checkpoint-digests.sh [--check]: trains every models/*.model for 100 steps (--no-shuffle,
# both backends) and prints the digest of each checkpoint's tensors
# (tests/tools/checkpoint_digest.py). Without --check it writes them to
# tests/lit/Inputs/checkpoint_digests/<isa>.txt, where <isa> is the widest vector ISA of this
# CPU (the GEMM kernels differ between avx512 and avx2, so their bits may too). With --check
# it compares against that file and fails on any difference: a change meant to keep results
# must keep them bitwise (tests/lit/codegen/checkpoints_bitwise.test). Models added since the
# file was written are listed as not recorded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GRADC=${GRADC:-build/bin/gradc}
isa=avx2
grep -q avx512f /proc/cpuinfo && isa=avx512
want=tests/lit/Inputs/checkpoint_digests/$isa.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for m in models/*.model; do
  b=$(basename "$m" .model)
  for backend in llvm cpp; do
    "$GRADC" "$m" --backend=$backend -o "$work/$b.$backend"
    "$work/$b.$backend" --quiet --batch-limit 100 --no-shuffle --threads 2 --save "$work/$b.$backend.safetensors" > /dev/null
  done
done
(cd "$work" && /usr/bin/python3 "$OLDPWD/tests/tools/checkpoint_digest.py" *.safetensors) > "$work/digests.txt"
if [[ "${1:-}" == "--check" ]]; then
  if [[ ! -f $want ]]; then echo "no recorded digests for $isa ($want)"; exit 2; fi
  # A model added since the digests were recorded has nothing to compare with: it is listed,
  # not failed; a recorded checkpoint that is missing or differs fails.
  awk 'NR == FNR { known[$1] = 1; next } !($1 in known) { print "not recorded (new model): " $1 }' \
    "$want" "$work/digests.txt"
  awk 'NR == FNR { known[$1] = 1; next } ($1 in known)' "$want" "$work/digests.txt" > "$work/recorded.txt"
  if diff -u "$want" "$work/recorded.txt"; then
    echo "checkpoints bitwise unchanged: $(wc -l < "$want") checkpoints ($isa)"
  else
    echo "checkpoints differ from $want"; exit 1
  fi
else
  mkdir -p "$(dirname "$want")"
  cp "$work/digests.txt" "$want"
  echo "wrote $want ($(wc -l < "$want") checkpoints)"
fi
