#!/usr/bin/env bash
# gradcheck-models.sh: compiles every model in models/ and runs its --gradcheck (the
# double-precision build against finite differences); prints each model's worst error and
# time. The 256-unit models take minutes each, so the test command runs only the small ones
# (tests/lit/codegen/models_gradcheck.test). usage: scripts/gradcheck-models.sh [MODEL...]
set -euo pipefail
cd "$(dirname "$0")/.."
gradc=build/bin/gradc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(models/*.model)
for m in "${models[@]}"; do
  name=$(basename "$m" .model)
  "$gradc" "$m" -o "$out/$name"
  start=$(date +%s%N)
  if line=$("$out/$name" --gradcheck | tail -1); then result=passed; else result=FAILED; status=1; fi
  printf '%-20s %-7s %s (%.1f s)\n' "$name" "$result" "$line" "$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }')"
done
exit $status
