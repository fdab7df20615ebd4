#!/usr/bin/env bash
# One call on the lent GPU machine does it all (see ../shared/device/README.md): GPU tests, the kernel
# and generation benchmarks, and the PyTorch peers on the same card. Run through the device tool as
#   bash .device/remote.sh bash bench/device-run.sh [tests] [kernels] [generate] [peers]
# with carry [".device", "build/Release/parallm.node", "dist"]. Logs and JSON go to $OUT.
set -uo pipefail
out=${OUT:-/tmp/parallm-out}
mkdir -p "$out"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests kernels generate peers)
nvidia-smi -L
for p in "${parts[@]}"; do
  case "$p" in
    tests) timeout 200 vitest run test/gpu > "$out/gpu-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-tests.log" ;;
    kernels) timeout 200 node dist/cli/index.js bench kernels --json "$out/kernels.json" 2>&1 | tail -17 ;;
    generate)
      timeout 90 node dist/cli/index.js bench generate --model gpt2 --batch 1,16,64 --json "$out/gen-gpt2.json" 2>&1 | tail -4
      timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 --json "$out/gen-llama.json" 2>&1 | tail -4 ;;
    peers)
      timeout 150 python3 bench/peers/torch_anchors.py micro > "$out/peer-micro.log" 2>&1
      timeout 200 python3 bench/peers/torch_graph_decode.py > "$out/peer-decode.log" 2>&1; grep ANCHOR "$out/peer-decode.log" | cut -c1-200 ;;
    *) echo "unknown part $p" ;;
  esac
done
