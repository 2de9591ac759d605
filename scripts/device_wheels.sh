#!/usr/bin/env bash
# Download the wheels the GPU check machine lacks into .whl/ (ignored by git), for scripts/gpu_check.sh.
#
# That machine (docs/gpu-check.md) has Python 3.12, torch, onnx, onnxruntime, numpy, msgpack, click,
# pillow, tqdm, prometheus-client, aiohttp, pytest and hypothesis, but no package index. Of what
# spike-edge imports it lacks only pyzmq (the daemon's sockets; one self-contained wheel with libzmq
# inside, no dependencies). The list below is that difference; add a name here when the project
# starts importing something the machine does not have.
#
# Usage: scripts/device_wheels.sh [DEST]      (DEST default: .whl beside the repository root)
# Environment: PYTHON (default python3; any Python with pip, the target's version is given to pip).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$REPO/.whl}
PYTHON=${PYTHON:-python3}
WHEELS=("pyzmq>=25")
mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$DEST" "${WHEELS[@]}"
ls -1 "$DEST"/*.whl
