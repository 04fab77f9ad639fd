#!/usr/bin/env bash
# Install PyTorch into a Python environment, choosing the build that fits this machine:
# the CPU build where no NVIDIA GPU is visible (nvidia-smi absent or failing), the CUDA build
# where one is. PyPI's Linux wheels of torch carry CUDA (a multi-gigabyte download), so the CPU
# build is asked for by its local version label "+cpu", which PyPI never serves: first from the
# indexes and wheel folders pip is configured with, then from the PyTorch CPU index.
#
# Usage: tools/install_torch.sh [--dry-run] PYTHON [VERSION]
# Environment (the Makefile passes its variables of the same names):
#   TORCH_BUILD      auto (default), cpu or cuda
#   TORCH_CPU_INDEX  index of the CPU builds (default https://download.pytorch.org/whl/cpu)
#   TORCH_INSTALL    if set, the exact pip arguments to use instead (no build check)
set -euo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=1; shift; fi
if [[ $# -lt 1 ]]; then
    echo "usage: $0 [--dry-run] PYTHON [VERSION]" >&2
    exit 2
fi
python=$1
version=${2:-2.13.0}
build=${TORCH_BUILD:-auto}
cpu_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
override="make TORCH_BUILD=cpu or make TORCH_BUILD=cuda (or TORCH_INSTALL=\"<pip arguments>\")"

if [[ -n "${TORCH_INSTALL:-}" ]]; then
    echo "torch: installing '${TORCH_INSTALL}' as given by TORCH_INSTALL"
    if [[ $dry_run == 1 ]]; then exit 0; fi
    # shellcheck disable=SC2086  # TORCH_INSTALL holds several pip arguments
    "$python" -m pip install --quiet ${TORCH_INSTALL}
    "$python" -W ignore -c "import torch; print(f'torch: installed {torch.__version__} (CUDA: {torch.version.cuda})')"
    exit 0
fi

case "$build" in
    auto)
        if ! command -v nvidia-smi > /dev/null 2>&1; then
            build=cpu; reason="no NVIDIA GPU visible: nvidia-smi not found"
        elif gpu=$(nvidia-smi -L 2> /dev/null | head -n 1) && [[ -n "$gpu" ]]; then
            build=cuda; reason="nvidia-smi sees ${gpu%% (UUID*}"
        else
            build=cpu; reason="no NVIDIA GPU visible: nvidia-smi fails or lists no GPU"
        fi ;;
    cpu|cuda) reason="TORCH_BUILD=$build" ;;
    *)
        echo "torch: TORCH_BUILD must be auto, cpu or cuda, got '$build'" >&2
        exit 2 ;;
esac
echo "torch: installing the $(echo "$build" | tr a-z A-Z) build of torch $version ($reason)"
if [[ $build == cpu ]]; then other=cuda; else other=cpu; fi
echo "torch: to override: make TORCH_BUILD=$other (or TORCH_INSTALL=\"<pip arguments>\")"
if [[ $dry_run == 1 ]]; then exit 0; fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() { "$python" -m pip install --quiet "$@" > "$log" 2>&1; }
if [[ $build == cuda ]]; then
    install "torch==$version" || { cat "$log" >&2; exit 1; }
elif [[ "$(uname -s)" != Linux ]]; then
    # torch's macOS and Windows wheels on PyPI are CPU builds
    install "torch==$version" || { cat "$log" >&2; exit 1; }
elif install "torch==$version+cpu"; then
    echo "torch: found torch $version+cpu where pip looks by default"
else
    echo "torch: no torch $version+cpu where pip looks by default; trying $cpu_index"
    if ! install "torch==$version+cpu" --index-url "$cpu_index"; then
        cat "$log" >&2
        echo "torch: could not install the CPU build torch==$version+cpu (above: pip's" \
             "message). Set TORCH_CPU_INDEX to a reachable mirror of $cpu_index, or" \
             "TORCH_INSTALL to pip arguments that install torch $version." >&2
        exit 1
    fi
fi

read -r installed cuda < <("$python" -W ignore -c \
    "import torch; print(torch.__version__, torch.version.cuda or '')")
if [[ $build == cpu && -n "$cuda" ]]; then
    echo "torch: expected a CPU build but torch $installed is built for CUDA $cuda;" \
         "remove the environment and choose explicitly: $override" >&2
    exit 1
fi
if [[ $build == cuda && -z "$cuda" ]]; then
    echo "torch: expected a CUDA build but torch $installed is a CPU build (a CPU wheel" \
         "shadows PyPI's here?); remove the environment and choose explicitly: $override" >&2
    exit 1
fi
echo "torch: installed torch $installed (CUDA: ${cuda:-none, CPU build})"
