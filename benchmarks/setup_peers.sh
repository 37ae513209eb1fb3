#!/usr/bin/env bash
# Create the peer programs' own venvs for the side-by-side benchmarks (never project dependencies).
#   bash benchmarks/setup_peers.sh
# Makes benchmarks/.peers/agilerl-venv with a CPU build of torch and a pinned AgileRL.
# Idempotent: an existing venv that already imports AgileRL at the pinned version is kept.
set -euo pipefail

PEER_PIN=2.58.0  # the AgileRL release measured against; it requires torch>=2.11 (the CPU wheel below)
TORCH_VERSION=2.13.0    # the project's torch; its PyPI wheel for Linux x86_64 here is the CPU build
# agilerl.algorithms imports peft at import time (agilerl.distributed), though peft is only in
# its LLM extras; these are the versions those extras pin.
LLM_IMPORTS=("peft==0.21.0" "transformers==5.14.1")
PYTHON=${PYTHON:-python3}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$here/.peers/agilerl-venv"

if "$venv/bin/python" -c "import agilerl.algorithms, importlib.metadata as m; \
    assert m.version('agilerl') == '$PEER_PIN'" 2>/dev/null; then
  echo "agilerl $PEER_PIN venv already set up: $venv"
  exit 0
fi

rm -rf "$venv"
"$PYTHON" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
# torch first, pinned, so resolving agilerl cannot pull a CUDA build.
"$venv/bin/pip" install --quiet "torch==$TORCH_VERSION"
"$venv/bin/pip" install --quiet "agilerl==$PEER_PIN" "${LLM_IMPORTS[@]}" "torch==$TORCH_VERSION"
"$venv/bin/python" -c "import agilerl.algorithms, torch; print('torch', torch.__version__)"
echo "agilerl venv ready: $venv"
