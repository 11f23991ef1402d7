#!/usr/bin/env bash
# quickstart.sh: installs what is missing, builds gradc, compiles the default model to an
# executable and trains it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/build.sh

MODEL=models/seed_lstm_bn.model
echo "quickstart: build/bin/gradc $MODEL -o build/seed_lstm_bn"
build/bin/gradc "$MODEL" -o build/seed_lstm_bn
echo "quickstart: build/seed_lstm_bn"
exec build/seed_lstm_bn
