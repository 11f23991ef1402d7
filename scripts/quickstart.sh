#!/usr/bin/env bash
# quickstart.sh: installs what is missing, builds, and compiles the default model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/build.sh

MODEL=models/seed_lstm_bn.model
if [[ ! -f "$MODEL" ]]; then
  echo "quickstart: $MODEL does not exist yet; the build is done, nothing to compile." >&2
  exit 0
fi
echo "quickstart: build/bin/gradc $MODEL --emit=graph"
exec build/bin/gradc "$MODEL" --emit=graph
