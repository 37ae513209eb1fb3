#!/usr/bin/env bash
# Create the peer programs' own venvs for the side-by-side benchmarks (never project dependencies).
#   bash benchmarks/setup_peers.sh
# Makes, each with a CPU build of torch:
#   benchmarks/.peers/agilerl-venv  a pinned AgileRL (benchmarks/peers/agilerl_w1.py)
#   benchmarks/.peers/sb3-venv      pinned stable-baselines3 + sb3-contrib (benchmarks/peers/sb3_recurrent.py),
#                                   which imports this checkout's evopop.envs for its registered ids
# Idempotent: an existing venv that already imports its peer at the pinned version is kept.
set -euo pipefail

# The peers as pip requirements (package versions; no speed or score is stored anywhere: every
# ratio comes from both programs measured in the same run). AgileRL's needs torch>=2.11.
AGILERL_REQUIREMENT="agilerl==2.58.0"
SB3_REQUIREMENTS=("stable-baselines3==2.9.2" "sb3-contrib==2.9.2")  # released together
TORCH_VERSION=2.13.0    # the project's torch; its PyPI wheel for Linux x86_64 here is the CPU build
# agilerl.algorithms imports peft at import time (agilerl.distributed), though peft is only in
# its LLM extras; these are the versions those extras pin.
LLM_IMPORTS=("peft==0.21.0" "transformers==5.14.1")
# What `import evopop.envs` needs beyond sb3's own dependencies (numpy, gymnasium, torch).
EVOPOP_ENV_IMPORTS=("pydantic>=2.5" "pyyaml>=6" "safetensors>=0.4")
PYTHON=${PYTHON:-python3}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

# make_venv NAME CHECK PACKAGE...: the venv benchmarks/.peers/NAME, kept when CHECK (Python code)
# already passes in it, else made afresh with the pinned CPU torch first (so that resolving the
# peer cannot pull a CUDA build) and then PACKAGE... (torch pinned again).
make_venv() {
  local name=$1 check=$2
  shift 2
  local venv="$here/.peers/$name"
  if "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "$name already set up: $venv"
    return 1
  fi
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "torch==$TORCH_VERSION"
  "$venv/bin/pip" install --quiet "$@" "torch==$TORCH_VERSION"
}

setup_agilerl() {
  local venv="$here/.peers/agilerl-venv"
  make_venv agilerl-venv "import agilerl.algorithms, importlib.metadata as m; \
      assert m.version('agilerl') == '${AGILERL_REQUIREMENT#*==}'" \
    "$AGILERL_REQUIREMENT" "${LLM_IMPORTS[@]}" || return 0
  "$venv/bin/python" -c "import agilerl.algorithms, torch; print('torch', torch.__version__)"
  echo "agilerl venv ready: $venv"
}

setup_sb3() {
  local venv="$here/.peers/sb3-venv"
  make_venv sb3-venv "import sb3_contrib, evopop.envs, importlib.metadata as m; \
      assert m.version('sb3-contrib') == m.version('stable-baselines3') \
          == '${SB3_REQUIREMENTS[0]#*==}'" \
    "${SB3_REQUIREMENTS[@]}" "gymnasium[classic-control]" \
    "${EVOPOP_ENV_IMPORTS[@]}" || return 0
  # This checkout on the venv's path (not installed: evopop's own dependencies stay out), so
  # the peer sees exactly the env ids evopop registers.
  local site
  site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$repo" > "$site/evopop-checkout.pth"
  "$venv/bin/python" -c "import sb3_contrib, evopop.envs, torch; \
      print('torch', torch.__version__, 'sb3-contrib', sb3_contrib.__version__)"
  echo "sb3 venv ready: $venv"
}

setup_agilerl
setup_sb3
