#!/usr/bin/env bash
# regen.sh: regenerates generated/<model>.cpp (gradc --emit=cpp) for every models/*.model.
# The repository's absolute path in data paths is written as @REPO@ so the files do not
# depend on where the repository is checked out. `regen.sh --check` changes nothing and
# fails when a file differs from what the compiler emits now (tests/lit/generated).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GRADC=${GRADC:-build/bin/gradc}
check=0
[[ "${1:-}" == "--check" ]] && check=1
out=generated
if [[ $check == 1 ]]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
mkdir -p "$out"
stale=0
for m in models/*.model; do
  b=$(basename "$m" .model)
  "$GRADC" "$m" --emit=cpp | sed "s|$(pwd)|@REPO@|g" > "$out/$b.cpp.tmp"
  mv "$out/$b.cpp.tmp" "$out/$b.cpp"
  if [[ $check == 1 ]] && ! diff -u "generated/$b.cpp" "$out/$b.cpp" > /dev/null; then
    echo "stale: generated/$b.cpp (run scripts/regen.sh)"
    stale=1
  fi
done
if [[ $check == 1 ]]; then
  [[ $stale == 0 ]] && echo "generated/ is up to date"
  exit $stale
fi
echo "regen: $(ls generated/*.cpp | wc -l) files in generated/"
