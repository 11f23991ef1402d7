#!/usr/bin/env bash
# build.sh: installs missing packages, configures build/ (once; Ninja when available) and
# builds everything with -j2. Extra arguments go to the first configure, e.g.
#   bash scripts/build.sh -DCMAKE_BUILD_TYPE=Debug
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

# Configure when build/ holds no generated build system (never configured, or it failed).
if [[ ! -f build/build.ninja && ! -f build/Makefile ]]; then
  generator=()
  if command -v ninja >/dev/null 2>&1; then
    generator=(-G Ninja)
  fi
  cmake -S . -B build "${generator[@]}" "$@"
fi
cmake --build build -j2
