#!/usr/bin/env bash
# One call on the lent GPU machine does it all (see ../shared/device/README.md): GPU tests, the kernel
# and generation benchmarks, and the PyTorch peers on the same card. Run through the device tool as
#   bash .device/remote.sh bash bench/device-run.sh [tests] [kernels] [generate] [peers] [comm] [strategies]
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
    comm)
      timeout 60 node dist/cli/index.js bench comm --json "$out/comm.json" 2>&1 | tail -6
      timeout 60 python3 bench/peers/torch_anchors.py nccl > "$out/peer-nccl.log" 2>&1; grep ANCHOR "$out/peer-nccl.log" | cut -c1-160 ;;
    strategies)
      # The floors: LLaMA-2-7B shape on 2 GPUs; prefill 32 x 512 with 8 micro-batches, then
      # generation at batch 16/64/256/512 with several micro-batch counts (PP / MP curve). At most 8
      # files come back from the device, so the JSON goes into one archive.
      mkdir -p "$out/s"
      timeout 240 node dist/cli/index.js bench --model llama-2-7b --strategies single,mp,pp --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --json "$out/s/llama-prefill.json" 2>&1 | tail -5
      for b in 16 64 256 512; do for m in 2 4 8; do
        timeout 240 node dist/cli/index.js bench --model llama-2-7b --strategies pp --batch $b --prompt-tokens 128 --new-tokens 32 --micro-batches $m --json "$out/s/llama-pp-b$b-m$m.json" 2>&1 | tail -1
      done; timeout 240 node dist/cli/index.js bench --model llama-2-7b --strategies mp --batch $b --prompt-tokens 128 --new-tokens 32 --json "$out/s/llama-mp-b$b.json" 2>&1 | tail -1; done
      # DP floor: 512 prompts x 128 new tokens, 64 per device per batch.
      timeout 180 node dist/cli/index.js bench --model gpt2 --strategies single,dp --prompts 512 --batch 64 --json "$out/s/gpt2-dp.json" 2>&1 | tail -4
      tar -czf "$out/strategies.tgz" -C "$out" s && rm -rf "$out/s" ;;
    *) echo "unknown part $p" ;;
  esac
done
