#!/usr/bin/env bash
# install-deps.sh: installs the Debian 12 packages gradc needs to build and test, and only
# the missing ones. Idempotent: when everything is installed it runs no apt command at all.
# Prints one status line; the apt log goes to build/install-deps.log (tail shown on failure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
  llvm-19-dev llvm-19-tools clang-19 libclang-rt-19-dev
  libfmt-dev libboost-program-options-dev
  python3-torch python3-numpy libopenblas-dev libdnnl-dev
  ninja-build cmake g++ libgtest-dev zlib1g-dev strace
  dataset-fashion-mnist
  libopenmpi-dev openmpi-bin libonnx-dev libprotobuf-dev protobuf-compiler python3-onnx
  python3-matplotlib
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: not root and no sudo; cannot install: ${missing[*]}" >&2
    exit 1
  fi
fi

mkdir -p build
LOG=build/install-deps.log
: >"$LOG"
echo "install-deps: installing ${#missing[@]} missing package(s): ${missing[*]} (log: $LOG)"
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update &&
       "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
         -o Dpkg::Use-Pty=0 "${missing[@]}"; } </dev/null >>"$LOG" 2>&1; then
  echo "install-deps: FAILED; last lines of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi
echo "install-deps: installed ${missing[*]}"
