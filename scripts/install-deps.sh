#!/usr/bin/env bash
# install-deps.sh: installs the Debian 12 packages gradc needs to build and test, and only
# the missing ones. Idempotent: when everything is installed it runs no apt command at all.
# Prints one status line; the apt log goes to build/install-deps.log (tail shown on failure).
# Then ONNX Runtime for the deployment tests: onnxruntime-node from npm into build/node (once;
# npm install --ignore-scripts: the package carries its Linux x64 CPU library). When npm cannot
# reach the registry it says so, and the ONNX Runtime lit tests are skipped with that reason.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
  llvm-19-dev llvm-19-tools clang-19 libclang-rt-19-dev
  libfmt-dev libboost-program-options-dev
  python3-torch python3-numpy libopenblas-dev libdnnl-dev
  ninja-build cmake g++ libgtest-dev zlib1g-dev strace
  dataset-fashion-mnist
  base-files  # /usr/share/common-licenses/GPL-3: the text of models/char_lstm.model (essential; always installed)
  libopenmpi-dev openmpi-bin libonnx-dev libprotobuf-dev protobuf-compiler python3-onnx
  python3-matplotlib
)

# Node.js and npm run the ONNX Runtime check (tests/deploy/run_onnx.js); a node already on PATH
# (from any source) will do.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

# install_onnxruntime: onnxruntime-node into build/node unless it is there.
ONNXRUNTIME_NODE=onnxruntime-node@1.30.0
install_onnxruntime() {
  if [[ -f build/node/node_modules/onnxruntime-node/package.json ]]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: no npm; the ONNX Runtime tests will be skipped"
    return 0
  fi
  mkdir -p build/node
  echo "install-deps: npm install --ignore-scripts $ONNXRUNTIME_NODE into build/node"
  if ! (cd build/node && npm install --ignore-scripts --no-audit --no-fund "$ONNXRUNTIME_NODE") >build/npm-install.log 2>&1; then
    echo "install-deps: npm could not install $ONNXRUNTIME_NODE (log: build/npm-install.log); the ONNX Runtime tests will be skipped:" >&2
    tail -n 5 build/npm-install.log >&2
  fi
  return 0
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  install_onnxruntime
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
install_onnxruntime
