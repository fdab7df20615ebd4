#!/usr/bin/env bash
# One call on the lent GPU machine does it all (see ../shared/device/README.md): build check, GPU tests,
# the kernel benchmark, and the PyTorch peer on the same card. Run through the device tool as
#   bash .device/remote.sh bash bench/device-run.sh [tests|bench|peer ...]
# with carry [".device", "build", "dist"]. Logs and JSON go to $OUT.
set -uo pipefail
out=${OUT:-/tmp/parallm-out}
mkdir -p "$out"
parts=("${@:-tests bench peer}")
parts=(${parts[@]})
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
node dist/cli/index.js devices
for p in "${parts[@]}"; do
  case "$p" in
    tests) npx vitest run test/gpu 2>&1 | tail -80 | tee "$out/gpu-tests.log" ;;
    bench) node dist/cli/index.js bench kernels --json "$out/kernels.json" 2>&1 | tee "$out/kernels.log" ;;
    peer) python3 bench/peers/torch_anchors.py micro 2>&1 | grep ANCHOR | tee "$out/peer.log" ;;
    *) echo "unknown part $p" ;;
  esac
done
