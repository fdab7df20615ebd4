#!/usr/bin/env bash
# One call on the lent GPU machine does it all (see ../shared/device/README.md): GPU tests, the kernel
# and generation benchmarks, and the PyTorch peers on the same card. Run through the device tool as
#   bash .device/remote.sh bash bench/device-run.sh [tests] [kernels] [generate] [peers] [comm]
#   [clocks] [prefill] [curve] [dp] [pack] [strategy-peers] [decode] (strategies = prefill curve dp pack)
#   [train-tests] [train-dp] [train-peers] [train-pp] [train-pp-dw] [train-13b] [train-1gpu-7b] [train-epochs]
# with carry [".device", "build/Release/parallm.node", "dist"]. Logs and JSON go to $OUT.
set -uo pipefail
out=${OUT:-/tmp/parallm-out}
mkdir -p "$out"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests kernels generate peers)
nvidia-smi -L
for p in "${parts[@]}"; do
  case "$p" in
    tests) timeout 500 vitest run test/gpu > "$out/gpu-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-tests.log" ;;
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
    clocks)
      # SM clock, power and throttle reasons of every GPU every 200 ms until the script ends.
      nvidia-smi --query-gpu=timestamp,index,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv,noheader -lms 200 > "$out/clocks.log" 2>&1 &
      trap 'kill %1 2>/dev/null' EXIT ;;
    prefill)
      # LLaMA-2-7B shape on 2 GPUs: prefill 32 x 512 (PP with 8 micro-batches against MP and one GPU).
      mkdir -p "$out/s"
      timeout 240 node dist/cli/index.js bench --model llama-2-7b --strategies single,mp,pp --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --repeats 5 --json "$out/s/llama-prefill.json" 2>&1 | tail -5
      # The same pipeline with 2 and 4 interleaved stages a GPU (a smaller fill and drain).
      for c in 2 4; do
        timeout 120 node dist/cli/index.js bench --model llama-2-7b --strategies pp --chunks $c --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --repeats 5 --json "$out/s/llama-prefill-c$c.json" 2>&1 | tail -2 | head -1
      done
      # PyTorch peer: the same split and schedule with cuBLAS and SDPA (mp, pp with 8 micro-batches, one GPU).
      timeout 200 python3 bench/peers/torch_pp_prefill.py prefill > "$out/peer-prefill.log" 2>&1; grep ANCHOR "$out/peer-prefill.log" | cut -c1-200
      # Micro-batch counts past NCCL's queue of unreceived sends (the ids sent back to the first stage).
      timeout 90 node dist/cli/index.js bench --model llama-2-7b --strategies pp --batch 32 --prompt-tokens 512 --new-tokens 8 --micro-batches 16 --json "$out/s/llama-prefill-m16.json" 2>&1 | tail -2 | head -1 ;;
    curve)
      # Generation at batch 16/64/256/512: MP and PP with several micro-batch counts (the PP / MP curve).
      mkdir -p "$out/s"
      for b in ${CURVE_BATCHES:-16 64 256 512}; do for m in ${CURVE_MICRO:-2 4 8}; do
        timeout 240 node dist/cli/index.js bench --model llama-2-7b --strategies pp --batch $b --prompt-tokens 128 --new-tokens ${CURVE_NEW:-128} --repeats ${REPEATS:-3} --micro-batches $m --json "$out/s/llama-pp-b$b-m$m.json" 2>&1 | tail -1
      done
      # One run per baseline: one GPU runs out of memory at batch 512, which must not lose the MP run.
      for base in ${CURVE_BASE:-single mp}; do
        timeout 240 node dist/cli/index.js bench --model llama-2-7b --strategies $base --batch $b --prompt-tokens 128 --new-tokens ${CURVE_NEW:-128} --repeats ${REPEATS:-3} --json "$out/s/llama-$base-b$b.json" 2>&1 | tail -2 | head -1
      done; done ;;
    dp)
      # DP floor: GPT-2, 512 prompts x 128 new tokens, 64 per device per batch.
      mkdir -p "$out/s"
      timeout 180 node dist/cli/index.js bench --model gpt2 --strategies single,dp --prompts 512 --batch 64 --repeats ${REPEATS:-3} --json "$out/s/gpt2-dp.json" 2>&1 | tail -4 ;;
    train-tests)
      timeout 300 vitest run test/gpu/train-pp.gpu.test.ts test/gpu/train-dp.gpu.test.ts test/gpu/bench.gpu.test.ts test/gpu/train.gpu.test.ts test/gpu/grad-kernels.gpu.test.ts test/gpu/grad-references.gpu.test.ts > "$out/gpu-train-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-train-tests.log" ;;
    peer-train)
      timeout 120 python3 bench/peers/torch_train.py 128x128 16x1024 > "$out/peer-train.log" 2>&1; grep ANCHOR "$out/peer-train.log" | cut -c1-200 ;;
    train-dp)
      # GPT-2 124M, sequence 128: weak scaling (128 per GPU) over single, dp, mp, pp; strong (global 128).
      mkdir -p "$out/t/gpt2"
      timeout 240 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp,mp,pp --shapes 128x128 --steps 20 --out "$out/t/gpt2" --json "$out/t/gpt2-weak.json" 2>&1 | tail -7
      timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --shapes 128x128 --steps 20 --json "$out/t/gpt2-strong.json" 2>&1 | tail -3
      timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --bucket-mb ${BUCKET_MB:-25} --shapes 128x128 --steps 20 --json "$out/t/gpt2-weak-bucket.json" 2>&1 | tail -3 ;;
    train-peers)
      # The seed's recipe in PyTorch on 1 and 2 GPUs (weak and strong scaling).
      timeout 240 python3 bench/peers/torch_dp_train.py 128x128 > "$out/peer-dp-weak.log" 2>&1; grep ANCHOR "$out/peer-dp-weak.log" | cut -c1-220
      timeout 240 python3 bench/peers/torch_dp_train.py --strong 128x128 > "$out/peer-dp-strong.log" 2>&1; grep ANCHOR "$out/peer-dp-strong.log" | cut -c1-220 ;;
    train-pp)
      # LLaMA-2-7B shape on 2 GPUs: PP (8 micro-batches, 1F1B) against MP; one GPU for its memory.
      mkdir -p "$out/t"
      mkdir -p "$out/t/pp"
      timeout 300 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies mp,pp --micro-batches 8 --shapes ${PP_SHAPE:-8x512} --steps ${PP_STEPS:-5} --out "$out/t/pp" --json "$out/t/pp/llama-pp.json" 2>&1 | tail -4 ;;
    train-pp-dw)
      # train-pp with deferred weight gradients: one dW matmul per layer over the step's 8 micro-batches
      # (~32 GiB more a GPU at 8x2048 tokens: DW_EVERY=4 flushes every 4 micro-batches, half that)
      mkdir -p "$out/t/pp-dw"
      timeout 300 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies mp,pp --micro-batches 8 --defer-dw ${DW_EVERY:-} --shapes ${PP_SHAPE:-8x512} --steps ${PP_STEPS:-5} --out "$out/t/pp-dw" --json "$out/t/pp-dw/llama-pp-dw.json" 2>&1 | tail -4 ;;
    train-13b)
      timeout 300 node dist/cli/index.js bench train --model llama-2-13b --devices cuda:0,cuda:1 --strategies pp --micro-batches 8 --shapes ${PP_SHAPE:-8x512} --steps 3 --json "$out/t/llama13-pp.json" 2>&1 | tail -3 ;;
    train-1gpu-7b)
      timeout 200 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0 --strategies single --shapes ${PP_SHAPE:-8x512} --steps 3 --json "$out/t/llama-single.json" 2>&1 | tail -3 ;;
    train-profile)
      timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 128x128,16x1024 --profile 2>&1 | tail -80 > "$out/train-profile.log"; cat "$out/train-profile.log" | head -36 ;;
    train-7b-profile)
      timeout 240 node dist/cli/index.js bench train --model llama-2-7b --shapes ${PROF_SHAPES:-1x512,8x512} --steps 3 --profile 2>&1 | tail -70 > "$out/train-7b-profile.log"; grep -E "tokens/s|bwd|fwd|adamw|norm" "$out/train-7b-profile.log" | head -60 ;;
    train-strong)
      # GPT-2, global batch 128 over 2 GPUs (strong scaling), gradient buckets overlapped with the backward.
      mkdir -p "$out/t"
      timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb ${BUCKET_MB:-25} --shapes 128x128 --steps 30 --json "$out/t/gpt2-strong-bucket.json" 2>&1 | tail -3
      timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --bucket-mb ${BUCKET_MB:-25} --shapes 128x128 --steps 30 --json "$out/t/gpt2-weak-bucket.json" 2>&1 | tail -2 ;;
    train-profile-64)
      # GPT-2 at strong scaling's per-GPU batch (64) beside 128: where the fixed per-step cost goes.
      timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 20 --profile 2>&1 | tail -90 > "$out/train-profile-64.log"; grep -E "tokens/s|ms" "$out/train-profile-64.log" | head -60 ;;
    train-llama1b)
      timeout 150 node dist/cli/index.js bench train --model llama-1b --shapes 16x1024 --steps 10 2>&1 | tail -3
      timeout 150 python3 bench/peers/torch_train.py --llama-1b 16x1024 > "$out/peer-llama1b.log" 2>&1; grep ANCHOR "$out/peer-llama1b.log" | cut -c1-200 ;;
    tp-tests)
      timeout 200 vitest run test/gpu/tp.gpu.test.ts test/gpu/grad-kernels.gpu.test.ts -t "tp|attentionBackward B1 T1" > "$out/gpu-tp-tests.log" 2>&1; grep -E "×|✓.*tp|Test Files|Tests " "$out/gpu-tp-tests.log" | head -20 ;;
    train-pp-shapes)
      # PP against MP at larger batches (micro-batches of 2048 tokens), and GPT-2 on one GPU at the per-GPU batch of strong scaling.
      mkdir -p "$out/t/pp2"
      for sh in ${PP_SHAPES:-32x512 16x1024}; do
        timeout 200 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies mp,pp --micro-batches 8 --shapes $sh --steps 4 --out "$out/t/pp2" --json "$out/t/pp2/llama-pp-$sh.json" 2>&1 | tail -3
      done
      timeout 60 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -3 ;;
    train-pp-interleaved)
      mkdir -p "$out/t/pp3"
      timeout 120 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies pp --chunks 2 --micro-batches 8 --shapes 16x1024 --steps 4 --out "$out/t/pp3" --json "$out/t/pp3/llama-pp-c2-16x1024.json" 2>&1 | tail -1
      timeout 200 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies mp,pp --micro-batches 8 --shapes 48x512 --steps 4 --json "$out/t/pp3/llama-pp-48x512.json" 2>&1 | tail -2
      timeout 120 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies pp --chunks 2 --micro-batches 8 --shapes 48x512 --steps 4 --json "$out/t/pp3/llama-pp-c2-48x512.json" 2>&1 | tail -1 ;;
    dw-experiment)
      # The weight gradient through a scratch buffer and one add, against the matmul's beta = 1 epilogue.
      for f in 0 1; do
        PARALLM_DW_SCRATCH=$f timeout 150 node dist/cli/index.js bench train --model llama-2-7b --shapes 4x512 --steps 3 --profile 2>&1 | grep -E "tokens/s|dW" | head -6 | sed "s/^/[dw=$f] /"
      done
      PARALLM_DW_SCRATCH=1 timeout 150 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies pp --micro-batches 8 --shapes 32x512 --steps 4 2>&1 | tail -1 | sed "s/^/[dw=1] /" ;;
    peer)
      # The peer all-reduce: its GPU test, latency by size against NCCL (same call, same graph timing),
      # and tp decode with it (auto) against NCCL only (PARALLM_PEER_ALLREDUCE=0).
      timeout 200 vitest run test/gpu/peer-allreduce.gpu.test.ts test/gpu/tp.gpu.test.ts > "$out/gpu-peer-tests.log" 2>&1; grep -E "×|✓|Test Files|Tests " "$out/gpu-peer-tests.log" | head -20
      timeout 120 node dist/cli/index.js bench comm --devices cuda:0,cuda:1 --json "$out/comm.json" 2>&1 | tail -30
      mkdir -p "$out/s"
      for b in 1 16; do
        PARALLM_PEER_ALLREDUCE=0 timeout 150 node dist/cli/index.js bench --model llama-2-7b --strategies tp --batch $b --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/s/llama-tp-nccl-b$b.json" 2>&1 | tail -1 | sed "s/^/[nccl only] /"
      done ;;
    gemv-sweep)
      # The register GEMV's deeper shapes (matmulGemv 4..6) against the default and a copy, and their tests.
      timeout 200 vitest run test/gpu/decode.gpu.test.ts -t "GEMV" > "$out/gpu-gemv-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-gemv-tests.log"
      timeout 150 node dist/cli/index.js bench kernels --filter gemv copy --json "$out/kernels-gemv.json" 2>&1 | grep -E "gemv|copy" | head -40 ;;
    pdl)
      # Programmatic dependent launch of the decode GEMVs (native/cuda/pdl.cuh): the decode, tp and peer
      # all-reduce GPU tests with it on, the GEMVs with it on and off beside a copy, then decode and tp decode
      # with it on and off (PARALLM_PDL=0), and the cuBLAS GEMV peer with the same L2 rotation.
      timeout 240 vitest run test/gpu/decode.gpu.test.ts test/gpu/tp.gpu.test.ts test/gpu/peer-allreduce.gpu.test.ts > "$out/gpu-pdl-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-pdl-tests.log" | head -20
      timeout 150 node dist/cli/index.js bench kernels --filter gemv copy --json "$out/kernels-gemv.json" 2>&1 | grep -E "gemv|copy" | head -60
      timeout 100 python3 bench/peers/decode_peers.py gemv > "$out/peer-gemv.log" 2>&1; grep ANCHOR "$out/peer-gemv.log" | cut -c1-160
      for pdl in 1 0; do
        PARALLM_PDL=$pdl timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama-pdl$pdl.json" 2>&1 | tail -2 | sed "s/^/[pdl=$pdl] /"
        PARALLM_PDL=$pdl timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2-pdl$pdl.json" 2>&1 | tail -2 | sed "s/^/[pdl=$pdl] /"
      done
      if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
        mkdir -p "$out/s"
        for pdl in 1 0; do
          PARALLM_PDL=$pdl timeout 150 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch 1 --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/s/llama-tp-b1-pdl$pdl.json" 2>&1 | tail -2 | sed "s/^/[pdl=$pdl] /"
        done
      fi ;;
    gemv-lines)
      # The pipelined GEMV copying whole 128-byte lines of rows: its tests, the GEMVs beside a copy, decode
      # and tp decode at batch 1.
      timeout 200 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-gemv-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-gemv-tests.log" | head -20
      timeout 150 node dist/cli/index.js bench kernels --filter gemv copy --json "$out/kernels-gemv.json" 2>&1 | grep -E "gemv|copy" | head -60
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama.json" 2>&1 | tail -2
      timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2.json" 2>&1 | tail -2
      if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
        timeout 150 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch 1 --prompt-tokens 128 --new-tokens 128 --repeats 3 2>&1 | tail -2
      fi ;;
    l2hint)
      # The GEMVs' W loads with and without the L2::256B prefetch hint (PARALLM_GEMV_L2HINT), in one call.
      timeout 200 vitest run test/gpu/decode.gpu.test.ts -t "GEMV|gemv|rmsnorm" > "$out/gpu-gemv-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-gemv-tests.log" | head -20
      for h in 1 0 1; do
        PARALLM_GEMV_L2HINT=$h timeout 150 node dist/cli/index.js bench kernels --filter gemv copy --json "$out/kernels-gemv-h$h.json" 2>&1 | grep -E "gemv (1|16)x|gemv-(pipe|reg) 1x|copy" | sed "s/^/[hint=$h] /" | head -40
      done
      for h in 1 0; do
        PARALLM_GEMV_L2HINT=$h timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[hint=$h] /"
      done ;;
    pp-big)
      # PP (1F1B, 8 micro-batches) against MP on the LLaMA-2-7B shape at 48 x 512 (6 sequences a micro-batch).
      mkdir -p "$out/t/pp48"
      timeout 400 node dist/cli/index.js bench train --model llama-2-7b --devices cuda:0,cuda:1 --strategies mp,pp --micro-batches 8 --shapes ${PP_SHAPE:-48x512} --steps ${PP_STEPS:-4} --out "$out/t/pp48" --json "$out/t/pp48/llama-pp.json" 2>&1 | tail -4 ;;
    s7-final)
      # Fourth session, last call: the GEMV tests (every path, the register kernel's two load forms) and the
      # tp / peer / captured-step tests with PDL, the GEMVs side by side, decode (7B, GPT-2), tp decode at
      # batch 1, then the compiled-PyTorch 7B peer at batch 1.
      timeout 200 vitest run test/gpu/decode.gpu.test.ts test/gpu/tp.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-final.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-final.log" | head -20
      timeout 100 node dist/cli/index.js bench kernels --filter gemv copy --json "$out/kernels-gemv.json" 2>&1 | grep -E "gemv (1|16)x|gemv-(pipe|reg|reg1) 1x|copy" | head -50
      timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama.json" 2>&1 | tail -2
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2.json" 2>&1 | tail -2
      if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
        timeout 100 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch 1 --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/llama-tp-b1.json" 2>&1 | tail -2
      fi
      timeout 120 python3 bench/peers/torch_compile_decode.py llama 1 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    next)
      # What the fourth session left unrun on GPUs (three calls: next, next-b, next-c). Here every GPU test
      # (the register GEMV's fused rmsnorm / SwiGLU / layernorm / GELU forms, matmulGemv 5; ZeRO-1 in the
      # captured step; the gradient memset), then the GEMVs with the N < 6144 plain-load dispatch beside a
      # copy.
      timeout 400 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      # (the table's rows: kernel, shape, ms, GB/s, the copy's GB/s, and the share of it)
      timeout 140 node dist/cli/index.js bench kernels --filter gemv copy --json "$out/kernels-gemv.json" 2>&1 | grep -E "^(gemv|copy)" | grep -vE "nopdl|pipe" | head -40 ;;
    next-b)
      # The GEMVs asking L2 for all of a W up to 32 MiB before their PDL wait (PARALLM_GEMV_PREFETCH=all;
      # next ran the default), then decode with PDL off, on the GEMVs (the default), on every decode kernel
      # (PARALLM_PDL=2), with the fused norms (PARALLM_GEMV_FUSE=1), and with the whole prefetch.
      PARALLM_GEMV_PREFETCH=all timeout 150 node dist/cli/index.js bench kernels --filter gemv copy --json "$out/kernels-gemv-pfall.json" 2>&1 | grep -E "^(gemv|copy) " | head -20 | sed "s/^/[prefetch all] /"
      for cfg in "PARALLM_PDL=0" "PARALLM_PDL=1" "PARALLM_PDL=2" "PARALLM_GEMV_FUSE=1" "PARALLM_GEMV_PREFETCH=all"; do
        env $cfg timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama-${cfg//=/}.json" 2>&1 | tail -2 | sed "s/^/[$cfg] /"
        env $cfg timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2-${cfg//=/}.json" 2>&1 | tail -2 | sed "s/^/[$cfg] /"
      done
      # GPT-2's compiled-PyTorch peer in the same call as GPT-2's decode above (7B's is in next-c, beside tp's single line).
      timeout 150 python3 bench/peers/torch_compile_decode.py gpt2 1,16 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200 ;;
    next-c)
      # tp decode at batch 1 (the default, PDL on every decode kernel, the fused norms), then 7B's compiled
      # PyTorch peer in the same call as the single-GPU lines.
      if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
        for cfg in "PARALLM_PDL=1" "PARALLM_PDL=2" "PARALLM_GEMV_FUSE=1"; do
          env $cfg timeout 90 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch 1 --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/llama-tp-b1-${cfg//=/}.json" 2>&1 | tail -2 | sed "s/^/[$cfg] /"
        done
      fi
      timeout 200 python3 bench/peers/torch_compile_decode.py llama 1,16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    s8-decode)
      # Fifth session: the fused-rmsnorm GEMV tests after the s_norm fix (S8-1 failed 5), 1x4096x4096 with
      # the whole-W prefetch beside the default, decode by setting (PDL level, fused norms), and the
      # compiled-PyTorch peers (GPT-2, then 7B) in the same call.
      timeout 150 vitest run test/gpu/decode.gpu.test.ts -t "rmsnormLinear|layernormLinear|GEMV" > "$out/gpu-decode.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-decode.log" | head -20
      for pf in default all; do
        PARALLM_GEMV_PREFETCH=$pf timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x4096x2048" "copy" 2>&1 | grep -E "^(gemv|copy) " | head -12 | sed "s/^/[prefetch $pf] /"
      done
      for cfg in "PARALLM_PDL=1" "PARALLM_PDL=2" "PARALLM_GEMV_FUSE=1"; do
        env $cfg timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama-${cfg// /_}.json" 2>&1 | tail -2 | sed "s/^/[$cfg] /"
        env $cfg timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2-${cfg// /_}.json" 2>&1 | tail -2 | sed "s/^/[$cfg] /"
      done
      timeout 250 python3 bench/peers/torch_compile_decode.py both 1,16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    s8-fuse)
      # The fused-norm GEMVs with every W load of a step issued before the normalization: their tests, their
      # kernel time against rmsnorm + GEMV (+ siluGate), decode at batch 1 with them on and off.
      timeout 100 vitest run test/gpu/decode.gpu.test.ts -t "rmsnormLinear|layernormLinear" > "$out/gpu-fuse.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-fuse.log" | head -20
      timeout 60 node dist/cli/index.js bench kernels --filter gemv-rms "gemv 1x12288x4096" "gemv 1x22016x4096" copy 2>&1 | grep -E "^(gemv|copy)" | head -12
      for cfg in "PARALLM_GEMV_FUSE=0" "PARALLM_GEMV_FUSE=1"; do
        env $cfg timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[$cfg] /"
        env $cfg timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[$cfg] /"
      done ;;
    s8-tp)
      # allReduceAddNorm (the peer LL all-reduce with the residual add and the next RMSNorm) and tp: their GPU
      # tests; tp decode at batch 1 against one GPU (default), then with the whole-W prefetch of W <= 32 MiB
      # (tp's out projection shard is 16 MiB); GPT-2 decode (all its W under 5 MiB but the head) both ways.
      timeout 200 vitest run test/gpu/peer-allreduce.gpu.test.ts test/gpu/tp.gpu.test.ts > "$out/gpu-tp.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-tp.log" | head -20
      for pf in default all; do
        PARALLM_GEMV_PREFETCH=$pf timeout 100 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch 1 --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/tp-b1-$pf.json" 2>&1 | tail -2 | sed "s/^/[prefetch $pf] /"
        PARALLM_GEMV_PREFETCH=$pf timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[prefetch $pf] /"
      done ;;
    s8-attn)
      # The sm90 (wgmma + TMA) prefill attention: its GPU test (against float64 and the mma.sync kernel),
      # the peer all-reduce test again (the fixed fallback case), then every prefill kernel side by side and
      # SDPA's cuDNN and FlashAttention-2 backends in the same call.
      timeout 200 vitest run test/gpu/attention-sm90.gpu.test.ts test/gpu/peer-allreduce.gpu.test.ts > "$out/gpu-attn.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-attn.log" | head -30
      timeout 150 node dist/cli/index.js bench kernels --filter attention-prefill --json "$out/kernels-attn.json" 2>&1 | grep -E "^attention" | head -20
      timeout 200 python3 bench/peers/attn_peers.py > "$out/peer-attn.log" 2>&1; grep ANCHOR "$out/peer-attn.log" | cut -c1-220 ;;
    s8-attn2)
      # The sm90 prefill now the default for D = 128, with its ping-pong variants: every GPU test, every
      # prefill kernel side by side with SDPA's cuDNN backend in the same call, then issue 13's 7B prefill.
      timeout 300 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      timeout 150 node dist/cli/index.js bench kernels --filter attention-prefill --json "$out/kernels-attn.json" 2>&1 | grep -E "^attention" | head -24
      timeout 100 python3 bench/peers/attn_peers.py > "$out/peer-attn.log" 2>&1; grep ANCHOR "$out/peer-attn.log" | grep -E "cudnn" | cut -c1-220
      bash "$0" prefill-7b ;;
    s8-final)
      # Tensor-parallel decode with allReduceAddNorm at batch 1 and 16 against one GPU. (S8-7 also ran decode
      # with the norms and projections as separate ops, a measurement switch since removed: no difference.)
      for b in 1 16; do
        timeout 100 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch $b --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/tp-b$b.json" 2>&1 | tail -2
      done ;;
    s8-strat)
      # The strategy prefill figures after the sm90 attention became the default for D = 128: one GPU, MP
      # and PP (8 micro-batches, 1F1B-free prefill schedule) on LLaMA-2-7B 32 x 512.
      timeout 280 node dist/cli/index.js bench --model llama-2-7b --strategies single,mp,pp --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --repeats 3 --json "$out/prefill-strat.json" 2>&1 | tail -4 ;;
    s8-last)
      # Decode's activations in the GEMV epilogue and the norms in the residual projections' epilogue
      # (linearResidualNorm, linearSwiGLU, linearGelu): every GPU test, tp decode at batch 1 against one GPU
      # (whose decode these speed up), then decode (7B, GPT-2).
      timeout 150 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      timeout 80 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch 1 --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/tp-b1.json" 2>&1 | tail -2
      timeout 45 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama.json" 2>&1 | tail -2
      timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2.json" 2>&1 | tail -2 ;;
    layer9e)
      # The layer kernel's GPU tests, its kernel cases and GPT-2 decode with it and without: each change to
      # decode_layer.cu (S9-5 ran it with the compiled peer too, as layer9b; S9-8 the last-split merge and
      # the epilogues' loads before the barriers).
      timeout 100 vitest run test/gpu/decode-layer.gpu.test.ts > "$out/gpu-layer.log" 2>&1; grep -E "×|Test Files|Tests |Error" "$out/gpu-layer.log" | head -30
      timeout 40 node dist/cli/index.js bench kernels --filter decode-layer 2>&1 | grep -E "^decode" | head -8
      for v in 0 1; do
        PARALLM_DECODE_LAYER=$v timeout 45 node dist/cli/index.js bench generate --model gpt2 --batch 1,4 2>&1 | tail -2 | sed "s/^/[layer kernel $v] /"
      done ;;
    layer9c)
      # Where decodeLayerGpt2's time goes (S9-4/S9-5: 34-37 µs a layer, no faster than the ops apart), by
      # leaving parts out (PARALLM_DECODE_LAYER_SKIP: 1 grid barriers, 2 attention, 4 merge, 8 norms, 16
      # GEMVs; 30 barriers alone, 31 the launch alone). Results are wrong with a mask: timing only.
      for m in 0 1 2 4 8 16 30 31; do
        PARALLM_DECODE_LAYER_SKIP=$m timeout 40 node dist/cli/index.js bench kernels --filter decode-layer-fused 2>&1 | grep -E "^decode" | head -4 | sed "s/^/[skip $m] /"
      done
      PARALLM_DECODE_LAYER=1 timeout 50 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[layer kernel] /"
      timeout 50 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[default] /" ;;
    layer9)
      # GPT-2's decode layer as one persistent kernel (ops.decodeLayerGpt2, native/cuda/decode_layer.cu): its
      # GPU tests first (a hung grid barrier would show here, bounded), the kernel case, GPT-2 decode with
      # it and without (PARALLM_DECODE_LAYER=0), the compiled-PyTorch peer, then every GPU test.
      timeout 150 vitest run test/gpu/decode-layer.gpu.test.ts > "$out/gpu-layer.log" 2>&1; grep -E "✓|×|Test Files|Tests |Error" "$out/gpu-layer.log" | head -30
      timeout 60 node dist/cli/index.js bench kernels --filter decode-layer copy 2>&1 | grep -E "^(decode|copy)" | head -10
      for v in 0 1; do
        PARALLM_DECODE_LAYER=$v timeout 50 node dist/cli/index.js bench generate --model gpt2 --batch 1,4,16 2>&1 | tail -3 | sed "s/^/[layer kernel $v] /"
      done  # (then the default was on; since S9-5 it is off and =1 turns it on)
      timeout 150 python3 bench/peers/torch_compile_decode.py gpt2 1,4 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200
      timeout 260 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30 ;;
    pf9)
      # How much of its W a GEMV asks L2 for before its PDL wait (PARALLM_GEMV_PREFETCH=<MiB>, a budget
      # spread over the warps; unset: each warp's first pass), on the GEMVs of issue 13's floor and 7B's
      # decode, then 7B and GPT-2 decode at batch 1 with the compiled-PyTorch peer in the same call.
      for pf in unset 8 12 16 24; do
        if [ $pf = unset ]; then unset PARALLM_GEMV_PREFETCH; else export PARALLM_GEMV_PREFETCH=$pf; fi
        timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x11008x4096" "gemv 1x4096x2048" "gemv 1x22016x4096" "gemv 1x12288x4096" "copy" 2>&1 | grep -E "^(gemv|copy) " | grep -vE "nopdl|pipe|reg" | head -14 | sed "s/^/[prefetch $pf] /"
      done
      for pf in unset 16; do
        if [ $pf = unset ]; then unset PARALLM_GEMV_PREFETCH; else export PARALLM_GEMV_PREFETCH=$pf; fi
        timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[prefetch $pf] /"
        timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[prefetch $pf] /"
      done
      unset PARALLM_GEMV_PREFETCH
      timeout 250 python3 bench/peers/torch_compile_decode.py both 1 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    ten-a)
      # First call of the seventh session on two H200s: every GPU test (the commits S9 left unrun on a GPU:
      # the layer kernel's split-count fence, load_splits, launch.cuh's config builder; the two-GPU cases),
      # then DP strong scaling as it stands (buckets; ZeRO-1 in the graph) for the baseline of this session.
      timeout 330 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      mkdir -p "$out/t"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 --json "$out/t/strong-bucket.json" 2>&1 | tail -2 | sed "s/^/[buckets] /"
      PARALLM_TRAIN_GRAPH_ZERO=1 timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --shapes 128x128 --steps 30 --json "$out/t/strong-zero-graph.json" 2>&1 | tail -1 | sed "s/^/[zero, in the graph] /" ;;
    ten-b)
      # ZeRO-1 with a slice of every gradient bucket a rank (src/train/zero-layout.ts: reduce-scatters in the
      # backward, all-gathers waited for by the next forward) and the norms' rounding fix (c6b2a94): every GPU
      # test, then DP strong scaling (GPT-2, seq 128, global batch 128) against one GPU in the same call.
      timeout 330 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      mkdir -p "$out/t"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 --json "$out/t/strong-bucket.json" 2>&1 | tail -2 | sed "s/^/[buckets] /"
      export PARALLM_TRAIN_GRAPH_ZERO=1
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --shapes 128x128 --steps 30 --json "$out/t/strong-zero.json" 2>&1 | tail -1 | sed "s/^/[zero, one bucket] /"
      for mb in ${ZERO_MB:-10 25 50}; do
        timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --bucket-mb $mb --shapes 128x128 --steps 30 --json "$out/t/strong-zero-b$mb.json" 2>&1 | tail -1 | sed "s/^/[zero, $mb MiB buckets] /"
      done
      unset PARALLM_TRAIN_GRAPH_ZERO
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single --scaling strong --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[single again] /"
      tar -czf "$out/t.tgz" -C "$out" t && rm -rf "$out/t" ;;
    ten-c)
      # The bucketed ZeRO-1 GPU tests with buckets small enough to be several (S10-2 had one), then where a DP
      # step's time goes on the host (PARALLM_TRACE_STEP, each rank's last steps): plain buckets against ZeRO-1
      # with 25 MiB buckets, and one GPU at 64 sequences (the step DP strong scaling has to match).
      timeout 150 vitest run test/gpu/train-zero.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-zero.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-zero.log" | head -20
      mkdir -p "$out/t"
      PARALLM_TRACE_STEP=1 timeout 100 node dist/cli/index.js bench train --model gpt2 --shapes 64x128 --steps 30 > "$out/t/trace-single64.log" 2>&1
      grep "parallm trace" "$out/t/trace-single64.log" | tail -2 | sed "s/^/[single 64] /"; grep -E "^gpt2|single" "$out/t/trace-single64.log" | tail -1
      PARALLM_TRACE_STEP=1 timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 > "$out/t/trace-dp.log" 2>&1
      grep "parallm trace" "$out/t/trace-dp.log" | tail -3 | sed "s/^/[dp buckets] /"; grep -E "^dp " "$out/t/trace-dp.log" | tail -1
      PARALLM_TRAIN_GRAPH_ZERO=1 PARALLM_TRACE_STEP=1 timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --bucket-mb 25 --shapes 128x128 --steps 30 > "$out/t/trace-zero.log" 2>&1
      grep "parallm trace" "$out/t/trace-zero.log" | tail -3 | sed "s/^/[dp zero 25] /"; grep -E "^dp " "$out/t/trace-zero.log" | tail -1
      tar -czf "$out/t.tgz" -C "$out" t && rm -rf "$out/t" ;;
    ten-d)
      # The next DP step requested while one runs (DataParallelTrainer.prefetchStep; S10-3's traces: one GPU
      # at 64 sequences 17.5 ms, DP 19.0 with ~1 ms outside the workers' steps): the DP GPU tests, then DP
      # strong scaling with and without it (PARALLM_DP_PREFETCH=0), plain buckets and ZeRO-1, one GPU in the same call.
      # (S10-4: 18.9 against 19.0 ms, no gain; prefetchStep was reverted, PARALLM_DP_PREFETCH is gone)
      timeout 200 vitest run test/gpu/train-dp.gpu.test.ts test/gpu/train-zero.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-dp.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-dp.log" | head -20
      mkdir -p "$out/t"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 --json "$out/t/strong-bucket.json" 2>&1 | tail -2 | sed "s/^/[buckets] /"
      PARALLM_DP_PREFETCH=0 timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[buckets, no prefetch] /"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --shapes 128x128 --steps 30 --json "$out/t/strong-one.json" 2>&1 | tail -1 | sed "s/^/[one all-reduce] /"
      export PARALLM_TRAIN_GRAPH_ZERO=1
      for mb in 0 25 50; do
        timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --bucket-mb $mb --shapes 128x128 --steps 30 --json "$out/t/strong-zero-b$mb.json" 2>&1 | tail -1 | sed "s/^/[zero, $mb MiB buckets] /"
      done
      unset PARALLM_TRAIN_GRAPH_ZERO
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[again] /"
      tar -czf "$out/t.tgz" -C "$out" t && rm -rf "$out/t" ;;
    ten-e)
      # Where DP strong scaling's extra ~1.3 ms a step goes (one GPU at 64 sequences 17.5 ms, DP 18.7-19.1):
      # the pool on one GPU (no communication), DP on two with no gradient reduction (PARALLM_DP_SKIP_REDUCE,
      # timing only), and with it; plus each GPU alone at 64 (the two cards' own speeds).
      mkdir -p "$out/t"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0 --strategies single,dp --shapes 64x128 --steps 30 2>&1 | tail -2 | sed "s/^/[one GPU, in process and through the pool] /"
      timeout 100 node dist/cli/index.js bench train --devices cuda:1 --strategies single --shapes 64x128 --steps 30 2>&1 | tail -1 | sed "s/^/[cuda:1 alone] /"
      PARALLM_DP_SKIP_REDUCE=1 timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[dp, no reduction] /"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[dp, one all-reduce] /"
      PARALLM_TRAIN_GRAPH_ZERO=1 timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[dp, zero 1] /" ;;
    ten-g)
      # Where a GPT-2 training step's fixed cost goes (S10-5: one GPU at 64 sequences is ~3.7 ms more than half
      # of one at 128): device time by op group at 64 and 128 x 128 (--profile: op by op, events only).
      timeout 150 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 6 --profile 2>&1 | tail -70 ;;
    ten-h)
      # The GPT-2 layer kernel on 512 threads a block (-DPARALLM_LAYER_THREADS=512: the GEMV phases' rows over
      # twice the warps; attention on 256 of them) against 256, two addons in one call (.device/layers.txz:
      # l256.node, l512.node, one archive so both fit the carry): its GPU tests, the kernel case, GPT-2 decode with it and without; then LLaMA-2-7B decode at
      # batch 64 (issue 13's unmeasured floor) and GPT-2 at 1 with the compiled-PyTorch peer in the same call.
      tar -xJf .device/layers.txz -C .device && mkdir -p build/Release
      for v in 256 512; do
        cp .device/l$v.node build/Release/parallm.node
        timeout 100 vitest run test/gpu/decode-layer.gpu.test.ts > "$out/gpu-layer-$v.log" 2>&1; grep -E "Tests " "$out/gpu-layer-$v.log" | sed "s/^/[$v] /"
        timeout 40 node dist/cli/index.js bench kernels --filter decode-layer 2>&1 | grep -E "^decode" | head -8 | sed "s/^/[$v] /"
        for l in 0 1; do
          PARALLM_DECODE_LAYER=$l timeout 45 node dist/cli/index.js bench generate --model gpt2 --batch 1,4 2>&1 | tail -2 | sed "s/^/[$v, layer kernel $l] /"
        done
      done
      cp .device/l256.node build/Release/parallm.node
      timeout 120 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,64 2>&1 | tail -2 | sed "s/^/[7B] /"
      timeout 240 python3 bench/peers/torch_compile_decode.py llama 1,64 > "$out/peer-compile-7b.log" 2>&1; grep ANCHOR "$out/peer-compile-7b.log" | cut -c1-200
      timeout 100 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200 ;;
    ten-z)
      # The session's last call: every GPU test on its last commit, then DP strong scaling as it stands.
      timeout 330 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[buckets] /"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[zero, one bucket] /"
      timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --zero 1 --bucket-mb 50 --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[zero, 50 MiB buckets] /" ;;
    ten-nccl)
      # DP strong scaling against NCCL's own settings (read at init; the environment of the workers): more
      # channels (the exposed last bucket moves faster, the overlapped ones take more SMs), the Simple
      # protocol, ring against tree, and bucket sizes, with one GPU at the start and the end of the call.
      timeout 60 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single --scaling strong --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[single] /"
      for cfg in "" "NCCL_MIN_NCHANNELS=16" "NCCL_MIN_NCHANNELS=32" "NCCL_PROTO=Simple" "NCCL_ALGO=Ring" "NCCL_ALGO=Tree" "NCCL_MIN_NCHANNELS=32 NCCL_PROTO=Simple"; do
        env $cfg timeout 60 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[25 MiB ${cfg:-default}] /"
      done
      for mb in 10 50 100; do
        timeout 60 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --bucket-mb $mb --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[$mb MiB] /"
      done
      timeout 60 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single --scaling strong --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[single again] /" ;;
    eleven-a)
      # The sm90 GEMM's 64-row tile (decode batches of at most 64 rows; the dispatch now sends M <= 64 to it):
      # its GPU tests, then the decode GEMMs at 64 rows and the batch-16 GEMVs on it against the 128-row tile
      # and the register GEMV, the K slices chosen and forced; then LLaMA-2-7B decode at batch 1 / 16 / 64 and
      # batch 16 with its products on the tile (PARALLM_GEMV_TILE=16).
      timeout 120 vitest run test/gpu/kernels.gpu.test.ts -t "64-row|split-K|tensor-core" > "$out/gpu-tile.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-tile.log" | head -20
      timeout 90 node dist/cli/index.js bench kernels --filter "gemm-decode 64x" "gemm-decode-t128 64x" "gemv-tile64 16x" "gemv-tile64-t128" "gemv 16x" 2>&1 | grep -E "^(gemm|gemv)" | sed "s/^/[auto] /"
      for sk in 1 2 3 4 6 8; do
        timeout 60 node dist/cli/index.js bench kernels --filter "gemm-decode 64x" "gemv-tile64 16x" --split-k $sk 2>&1 | grep -E "^(gemm|gemv)" | sed "s/^/[split-k $sk] /"
      done
      timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7B] /"
      PARALLM_GEMV_TILE=16 timeout 80 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7B, b16 on the tile] /" ;;
    eleven-b)
      # The 64-row tile with the dispatch's measured rule (S11-1), two H200s: every GPU test, the decode GEMMs
      # at 16 and 64 rows as dispatched against the register GEMV and the 128-row tile, GPT-2 decode, and
      # LLaMA-2-7B's decode curve at batch 64 (PP micro-batches of 32 and 16 rows now on the tile).
      timeout 300 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      timeout 90 node dist/cli/index.js bench kernels --filter "gemm-decode 64x" "gemm-decode-t128 64x" "gemv 16x" "gemv-reg 16x" 2>&1 | grep -E "^(gemm|gemv)"
      timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2] /"
      CURVE_BATCHES=64 CURVE_MICRO="2 4" REPEATS=1 bash "$0" curve ;;
    eleven-c)
      # The decode GPU tests (two rewritten for the dispatch's tile at 16 rows), then LLaMA-2-7B decode at batch
      # 1 / 16 / 64 with the compiled-PyTorch peer in the same call (issue 13's floors).
      timeout 120 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-decode.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-decode.log" | head -20
      timeout 130 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 --json "$out/gen-llama.json" 2>&1 | tail -3 | sed "s/^/[7B] /"
      timeout 420 python3 bench/peers/torch_compile_decode.py llama 1,16,64 > "$out/peer-compile-7b.log" 2>&1; grep ANCHOR "$out/peer-compile-7b.log" | cut -c1-200 ;;
    eleven-d)
      # PDL on the 64-row tile and its split-K reduce (the GEMM's set-up and first weight k-tiles' trip to L2
      # overlap the kernel before): the kernel and decode GPU tests, the decode GEMMs with and without PDL,
      # then decode with PDL on the GEMMs (level 1, the default) and on every small decode kernel too (level
      # 2: never yet run on a GPU, so its decode and model tests first).
      timeout 150 vitest run test/gpu/kernels.gpu.test.ts test/gpu/decode.gpu.test.ts > "$out/gpu-pdl1.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-pdl1.log" | head -20
      PARALLM_PDL=2 timeout 150 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts test/gpu/families.gpu.test.ts > "$out/gpu-pdl2.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-pdl2.log" | sed "s/^/[pdl 2] /" | head -20
      timeout 60 node dist/cli/index.js bench kernels --filter "gemm-decode 64x" "gemm-decode-nopdl 64x" "gemv 16x" "gemv-nopdl 16x" 2>&1 | grep -E "^(gemm|gemv)"
      for l in 1 2; do
        PARALLM_PDL=$l timeout 100 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7B, pdl $l] /"
        PARALLM_PDL=$l timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2, pdl $l] /"
      done ;;
    eleven-e)
      # The session's last kernel code (PDL on the 64-row tile behind PARALLM_PDL_TILE=1, off by default): the
      # matmul and decode GPU tests, then 7B decode at batch 16 / 64 with the tile's PDL off and on, twice,
      # alternating (S11-4 had it on against S11-3's off in another call).
      timeout 140 vitest run test/gpu/kernels.gpu.test.ts -t "64-row|split-K|tensor-core|sm90" > "$out/gpu-mm.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-mm.log" | head -20
      timeout 100 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-decode.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-decode.log" | head -20
      for r in 1 2; do for t in 0 1; do
        PARALLM_PDL_TILE=$t timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7B, tile pdl $t, round $r] /"
      done; done ;;
    tile-a)
      # (S12-1; both options were removed after it.) Written in the eighth session, not yet run (two options of the 64-row tile, both off by default): 128
      # columns (PARALLM_TILE_COLS=128: twice the tiles for a decode GEMM's few 256-column strips, so fewer
      # K slices) and SwiGLU in its epilogue (PARALLM_TILE_SWIGLU=1: the gate+up product and silu_gate in one
      # launch). Their GPU tests, then the decode GEMMs at 16 and 64 rows on 128 and 256 columns with the K
      # slices chosen and forced, and decode attention at the batches the tile serves.
      timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "64-row|64 x 128|64 x 256|split-K" > "$out/gpu-tile.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-tile.log" | head -20
      timeout 150 vitest run test/gpu/decode.gpu.test.ts -t "SwiGLU" > "$out/gpu-swiglu.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-swiglu.log" | head -20
      timeout 120 node dist/cli/index.js bench kernels --filter "gemm-decode 64x" "gemm-decode-n128 64x" "gemv 16x" "gemv-tile64-n128" attention-decode 2>&1 | grep -E "^(gemm|gemv|attention)" | sed "s/^/[auto] /"
      for sk in 1 2 4; do
        timeout 90 node dist/cli/index.js bench kernels --filter "gemm-decode-n128 64x" "gemv-tile64-n128" --split-k $sk 2>&1 | grep -E "^(gemm|gemv)" | sed "s/^/[split-k $sk] /"
      done ;;
    tile-b)
      # (S12-2; both options were removed after it.) 7B decode at batch 16 / 64 with the tile's options off (the default), 128 columns, SwiGLU in the
      # epilogue, and both, alternating, ROUNDS times (1); then the compiled-PyTorch peer in the same call.
      for r in $(seq 1 ${ROUNDS:-1}); do for cfg in "PARALLM_TILE_COLS=256" "PARALLM_TILE_COLS=128" "PARALLM_TILE_SWIGLU=1" "PARALLM_TILE_COLS=128 PARALLM_TILE_SWIGLU=1"; do
        env $cfg timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7B, $cfg, round $r] /"
      done; done
      timeout 300 python3 bench/peers/torch_compile_decode.py llama 16,64 > "$out/peer-compile-7b.log" 2>&1; grep ANCHOR "$out/peer-compile-7b.log" | cut -c1-200 ;;
    attn9)
      # The sm90 prefill attention with no wgmma serialized by ptxas (the ninth session: the overlapped and
      # ping-pong variants had every wgmma serialized; the softmax's scale now in the exponent's fma): its GPU
      # test (every variant against float64 and the mma.sync kernel), every prefill variant, and SDPA's cuDNN
      # and FlashAttention-2 backends in the same call.
      timeout 200 vitest run test/gpu/attention-sm90.gpu.test.ts > "$out/gpu-attn.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-attn.log" | head -30
      timeout 150 node dist/cli/index.js bench kernels --filter attention-prefill --json "$out/kernels-attn.json" 2>&1 | grep -E "^attention" | head -24
      timeout 200 python3 bench/peers/attn_peers.py > "$out/peer-attn.log" 2>&1; grep ANCHOR "$out/peer-attn.log" | cut -c1-220 ;;
    attn-vars)
      # Several builds of the sm90 prefill attention (addons in .device/vars.txz, sm_90a only), its prefill
      # variants timed by each in turn, ROUNDS times (2): where a change to the kernel won or lost.
      mkdir -p /tmp/vars build/Release && tar -xJf .device/vars.txz -C /tmp/vars
      for r in $(seq 1 ${ROUNDS:-2}); do for f in /tmp/vars/*.node; do
        cp "$f" build/Release/parallm.node
        timeout 100 node dist/cli/index.js bench kernels --filter attention-prefill-sm90 2>&1 | grep -E "^attention" | sed "s/^/[$(basename $f .node) r$r] /"
      done; done ;;
    attn-vars2)
      # The last of .device/vars.txz (sorted) installed: the sm90 attention's GPU test, SDPA's backends, and
      # GPT-2 training on one GPU with the sm90 kernel at D = 64 (PARALLM_ATTN_PREFILL=sm90) against the
      # default (prefill_mma there), twice alternating.
      bash "$0" attn-vars
      timeout 200 vitest run test/gpu/attention-sm90.gpu.test.ts > "$out/gpu-attn.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-attn.log" | head -30
      timeout 200 python3 bench/peers/attn_peers.py > "$out/peer-attn.log" 2>&1; grep ANCHOR "$out/peer-attn.log" | grep -E '"s": (2048|8192)|"d": 64' | cut -c1-220
      for r in 1 2; do for a in default sm90; do
        PARALLM_ATTN_PREFILL=$a timeout 60 node dist/cli/index.js bench train --model gpt2 --shapes 128x128 --steps 20 2>&1 | grep -E "^gpt2" | tail -1 | sed "s/^/[attn $a, r$r] /"
      done; done ;;
    attn-vars3)
      # As attn-vars2 without the training runs: the builds timed in turn, then the last one's GPU test and
      # SDPA's backends.
      bash "$0" attn-vars
      timeout 200 vitest run test/gpu/attention-sm90.gpu.test.ts > "$out/gpu-attn.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-attn.log" | head -30
      timeout 200 python3 bench/peers/attn_peers.py > "$out/peer-attn.log" 2>&1; grep ANCHOR "$out/peer-attn.log" | grep -E '"s": (2048|8192)|"d": 64' | grep cudnn | cut -c1-220 ;;
    final9)
      # The ninth session's attention (persistent sm90 prefill, the overlap by default for D = 128): its GPU
      # test and the gradient kernels' (the training forward), the model and family tests (prefill through the default path), the
      # prefill kernels beside SDPA's cuDNN backend, LLaMA-2-7B prefill 32 x 512 against PyTorch, and GPT-2
      # training on one GPU with the sm90 kernel at D = 64 against the default (prefill_mma).
      timeout 250 vitest run test/gpu/attention-sm90.gpu.test.ts test/gpu/models.gpu.test.ts test/gpu/families.gpu.test.ts > "$out/gpu-a.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-a.log" | head -20
      timeout 120 vitest run test/gpu/grad-kernels.gpu.test.ts > "$out/gpu-k.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-k.log" | head -20
      timeout 100 node dist/cli/index.js bench kernels --filter attention-prefill --json "$out/kernels-attn.json" 2>&1 | grep -E "^attention" | head -24
      timeout 150 python3 bench/peers/attn_peers.py > "$out/peer-attn.log" 2>&1; grep ANCHOR "$out/peer-attn.log" | grep -E '"s": (2048|8192)|"d": 64' | grep cudnn | cut -c1-220
      bash "$0" prefill-7b
      for a in default sm90; do
        PARALLM_ATTN_PREFILL=$a timeout 60 node dist/cli/index.js bench train --model gpt2 --shapes 128x128 --steps 20 2>&1 | grep -E "^gpt2" | tail -1 | sed "s/^/[attn $a] /"
      done ;;
    strat9)
      # The strategy prefill figures after the ninth session's attention (persistent, overlapped sm90 prefill
      # by default for D = 128): one GPU, MP and PP (8 micro-batches) on LLaMA-2-7B 32 x 512, and the
      # PyTorch peer's single / mp / pp lines in the same call.
      timeout 280 node dist/cli/index.js bench --model llama-2-7b --strategies single,mp,pp --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --repeats 3 --json "$out/prefill-strat.json" 2>&1 | tail -4
      timeout 200 python3 bench/peers/torch_pp_prefill.py prefill > "$out/peer-prefill.log" 2>&1; grep ANCHOR "$out/peer-prefill.log" | cut -c1-200 ;;
    ncu-decode)
      # Every kernel of a few decode steps under Nsight Compute: each kernel timed alone (serialized, no PDL
      # overlap), its DRAM bytes and grid; clocks and caches left alone. RUNS: model:batch:skip:count (skip
      # lands past the weights' fill, the warm-up and the timed run's prefill). A CSV a run in $out.
      ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
      m=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size
      for spec in ${NCU_RUNS:-llama-2-7b:1:2500:700 llama-2-7b:16:2500:700 llama-2-7b:64:2500:700 gpt2:1:1300:400}; do
        IFS=: read -r model b skip count <<< "$spec"
        timeout 150 "$ncu" --clock-control none --cache-control none --graph-profiling node --metrics $m --csv \
          --launch-skip $skip --launch-count $count --log-file "$out/ncu-$model-b$b.csv" \
          node ${NCU_CLI:-dist/cli/index.js} bench generate --model $model --batch $b --new-tokens 16 2>&1 | tail -2 | sed "s/^/[ncu $spec] /"
        echo "[ncu $spec] $(wc -l < "$out/ncu-$model-b$b.csv") lines"
      done ;;
    s13-a)
      # The session's first call: the host-side device cache (a2dda6c) and the unrolled sum of squares under
      # their GPU tests; the optimizer kernels against a copy; decode's kernels under ncu; the cluster reduce
      # (its part since removed with the option).
      timeout 120 vitest run test/gpu/kernels.gpu.test.ts -t "sm90|64-row|split-K|cluster" test/gpu/attention-sm90.gpu.test.ts > "$out/gpu-a.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-a.log" | head -20
      timeout 90 vitest run test/gpu/grad-kernels.gpu.test.ts -t "sumSquares|adamw" > "$out/gpu-opt.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-opt.log" | head -20
      timeout 60 node dist/cli/index.js bench kernels --filter sum-squares adamw 2>&1 | grep -E "^(sum|adamw)"
      bash "$0" ncu-decode ;;
    s13-b)
      # rope_kv_write a block a head (and the GEMV's L2 prefetch ahead, PARALLM_GEMV_PFD, since removed): their GPU tests,
      # the GEMVs at each prefetch distance, 7B and GPT-2 decode with each.
      timeout 150 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-decode.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-decode.log" | head -20
      PARALLM_GEMV_PFD=2 timeout 100 vitest run test/gpu/decode.gpu.test.ts -t "every kernel against|bits of|bit for bit" > "$out/gpu-decode-pfd.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-decode-pfd.log" | head -20
      for d in 0 1 2 4; do
        PARALLM_GEMV_PFD=$d timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x" 2>&1 | grep -E "^gemv " | grep -v -- "-" | sed "s/^/[pfd $d] /"
      done
      for d in 0 2 4; do
        PARALLM_GEMV_PFD=$d timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7B pfd $d] /"
      done
      for d in 0 2; do
        PARALLM_GEMV_PFD=$d timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 pfd $d] /"
      done
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 64 2>&1 | tail -1 | sed "s/^/[7B b64] /" ;;
    s13-c)
      # HEAD's addon (OLD90) against this session's (NEW90: rope_kv_write a block a head), both sm_90a only,
      # alternating: 7B decode at 1 and 16, GPT-2 at 1. Then the N = 4096 GEMVs with every variant at both
      # load forms (PARALLM_GEMV_SEL_ROWS=4096: the L2-hinted one; a knob since removed), 7B batch 1 with it; the rope test.
      mkdir -p /tmp/vars build/Release && tar -xJf .device/vars.txz -C /tmp/vars
      for r in 1 2; do for v in OLD90 NEW90; do
        cp /tmp/vars/$v.node build/Release/parallm.node
        timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[$v r$r 7B] /"
        timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[$v r$r gpt2] /"
      done; done
      for rows in 6144 4096; do
        PARALLM_GEMV_SEL_ROWS=$rows timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096" "gemv-reg 1x4096" "gemv-pipe 1x4096" "gemv-reg1 1x4096" 2>&1 | grep -E "^gemv" | sed "s/^/[sel from $rows] /"
      done
      PARALLM_GEMV_SEL_ROWS=4096 timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[NEW90 sel 4096 7B] /"
      timeout 60 vitest run test/gpu/decode.gpu.test.ts -t "ropeKvWrite" > "$out/gpu-rope.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-rope.log" | head -20 ;;
    s13-d)
      # The register GEMV's always-hinted load (SEL 2: 56 registers against the run-time choice's 76, so 4
      # blocks an SM): PARALLM_GEMV_HINTED unset / low (below 6144 rows) / all (a knob since removed: low is the default). GEMVs, then decode alternating.
      for h in "" low all; do
        PARALLM_GEMV_HINTED=$h timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x" "gemv 16x" 2>&1 | grep -E "^gemv " | sed "s/^/[hinted=$h] /"
      done
      for r in 1 2; do for h in "" low all; do
        PARALLM_GEMV_HINTED=$h timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[hinted=$h r$r 7B] /"
        PARALLM_GEMV_HINTED=$h timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[hinted=$h r$r gpt2] /"
      done; done
      PARALLM_GEMV_HINTED=all timeout 100 vitest run test/gpu/decode.gpu.test.ts -t "every kernel against|bits of|bit for bit" > "$out/gpu-hinted.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-hinted.log" | head -20 ;;
    s13-e)
      # Every GPU test on the session's kernels (rope + KV write, the sum of squares, the GEMV's load form),
      # then the GEMVs against the copy rate (issue 13's GEMV floor).
      timeout 400 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -40
      timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x" 2>&1 | grep -E "^gemv " ;;
    s13-f)
      # Decode against the compiled-PyTorch peer in one call: parallm, the peer, parallm again.
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7B a] /"
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 a] /"
      timeout 300 python3 bench/peers/torch_compile_decode.py llama 1,16,64 > "$out/peer-compile-7b.log" 2>&1; grep ANCHOR "$out/peer-compile-7b.log" | cut -c1-200
      timeout 100 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7B b] /"
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b] /" ;;
    s14-a)
      # Written in the tenth session, not yet run: the tile's split-K reduce with the norm in it
      # (splitk_reduce_norm, reached through linearResidualNorm) and the cluster reduce's removal (the s90
      # kernels specialised to no cluster). Their GPU tests, then 7B decode at 16 and 64 with the norm in the
      # residual projections at every batch (PARALLM_DECODE_NORM_IN_GEMV=1) against the default, alternating;
      # then where batch 64's time goes with it (ncu).
      # Also the argmax cut into chunks (on by default: GPT-2's 50,257 logits took one block 27 µs a step).
      timeout 150 vitest run test/gpu/decode.gpu.test.ts test/gpu/kernels.gpu.test.ts -t "linearResidualNorm|sm90|64-row|split-K|tensor-core|argmax" > "$out/gpu-s14a.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s14a.log" | head -20
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1, chunked argmax] /"
      for r in 1 2; do for n in "" 1; do
        PARALLM_DECODE_NORM_IN_GEMV=$n timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[norm-in-gemv=$n r$r 7B] /"
        PARALLM_DECODE_NORM_IN_GEMV=$n timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 16 2>&1 | tail -1 | sed "s/^/[norm-in-gemv=$n r$r gpt2] /"
      done; done
      PARALLM_DECODE_NORM_IN_GEMV=1 NCU_RUNS="llama-2-7b:64:2500:700" bash "$0" ncu-decode ;;
    train-pdl)
      # Written in the eighth session, not yet run (two GPUs): every sm90 GEMM launched with PDL
      # (PARALLM_PDL_GEMM=1; training's ~150 GEMMs a step, each launch and prologue overlapping the kernel
      # before), the small kernels too (PARALLM_PDL=2), and the tied embeddings' gradient in two parts
      # (PARALLM_DP_TIED_SPLIT=1), for DP strong scaling's fixed and exposed costs. The training GPU tests
      # with all on (train-dp's tied-split case among them), then one GPU at 128 and DP at 64 a GPU (25 MiB
      # buckets) under each setting.
      PARALLM_PDL_GEMM=1 PARALLM_PDL=2 PARALLM_DP_TIED_SPLIT=1 timeout 200 vitest run test/gpu/train*.gpu.test.ts > "$out/gpu-train-pdl.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-train-pdl.log" | head -20
      for cfg in "PARALLM_PDL=1" "PARALLM_DP_TIED_SPLIT=1" "PARALLM_PDL_GEMM=1" "PARALLM_PDL_GEMM=1 PARALLM_PDL=2 PARALLM_DP_TIED_SPLIT=1"; do
        env $cfg timeout 100 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[$cfg] /"
      done ;;
    ten-sk)
      # The decode GEMMs of LLaMA-7B at batch 64 / 128 / 256 (issue 13's batch-64 floor: 1.07× in S10-8) with
      # split-K forced to 1..4 slices against the dispatch's choice (a quarter wave of 128 x 256 tiles at
      # most is cut: qkv's 48 tiles and gate+up's 86 never are), beside a copy of the same bytes.
      for sk in auto 1 2 3 4; do
        timeout 60 node dist/cli/index.js bench kernels --filter gemm-decode copy --split-k $sk 2>&1 | grep -E "^(gemm-decode|copy) " | sed "s/^/[split-k $sk] /"
      done ;;
    one9a)
      # next9 on one H200 (no x2 lent): every GPU test (two-GPU cases skip), then GPT-2 decode with the norms
      # in the GEMV epilogues off / on and with one-kernel decode attention.
      timeout 300 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      for v in 0 1; do
        PARALLM_DECODE_NORM_IN_GEMV=$v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[norm in gemv $v] /"
      done
      PARALLM_DECODE_SPLITS=1 timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[splits 1] /" ;;
    one9b)
      # next9's 7B half on one H200 with the compiled-PyTorch peer in the same call.
      for v in 0 1; do
        PARALLM_DECODE_NORM_IN_GEMV=$v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[norm in gemv $v] /"
      done
      PARALLM_DECODE_SPLITS=1 timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[splits 1] /"
      timeout 330 python3 bench/peers/torch_compile_decode.py both 1,16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    next9a)
      # What the fifth session left unrun (S8-9 failed its model tests: the block counter was made under
      # capture; made at load now): every GPU test (the decode tests run the tiny models with
      # Transformer.normInGemv too), tp at batch 1, then decode with and without the norms in the GEMV
      # epilogues, with the compiled-PyTorch peers in the same call.
      timeout 200 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      timeout 90 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch 1 --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/tp-b1.json" 2>&1 | tail -2 ;;
    next9b)
      # next9's decode half (one call cannot hold both): the norm placements and one-kernel decode
      # attention against the compiled-PyTorch peer.
      for v in 0 1; do
        PARALLM_DECODE_NORM_IN_GEMV=$v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[norm in gemv $v] /"
        PARALLM_DECODE_NORM_IN_GEMV=$v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[norm in gemv $v] /"
      done
      # Decode attention in one kernel (no key split, no combine) at these short contexts: fewer launches.
      PARALLM_DECODE_SPLITS=1 timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[splits 1] /"
      PARALLM_DECODE_SPLITS=1 timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[splits 1] /"
      timeout 300 python3 bench/peers/torch_compile_decode.py both 1,16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    prefill-7b)
      # Issue 13's last floor: LLaMA-2-7B prefill 32 x 512 on one GPU against PyTorch (cuBLAS + SDPA flash),
      # the peer's 'single' line (its mp / pp lines need cuda:1 too).
      timeout 200 node dist/cli/index.js bench --model llama-2-7b --strategies single --devices cuda:0 --batch 32 --prompt-tokens 512 --new-tokens 1 --repeats 3 --json "$out/prefill-7b.json" 2>&1 | tail -3
      timeout 240 python3 bench/peers/torch_pp_prefill.py prefill > "$out/peer-prefill.log" 2>&1; grep ANCHOR "$out/peer-prefill.log" | cut -c1-200 ;;
    dp-ctas)
      # DP strong scaling (issue 12) with NCCL held to fewer CTAs (NCCL_MAX_CTAS, read by NCCL at init): the
      # gradient buckets have the whole backward to finish in, and every SM NCCL does not take is the
      # backward's. One GPU and dp at global batch 128, 25 MiB buckets, for each cap.
      mkdir -p "$out/t"
      for ctas in default 2 4 8; do
        if [ $ctas = default ]; then unset NCCL_MAX_CTAS; else export NCCL_MAX_CTAS=$ctas; fi
        timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb ${BUCKET_MB:-25} --shapes 128x128 --steps 30 --json "$out/t/strong-ctas-$ctas.json" 2>&1 | tail -2 | sed "s/^/[NCCL_MAX_CTAS=$ctas] /"
      done
      unset NCCL_MAX_CTAS
      # ZeRO-1 with its reduce-scatter and norm inside the step's graph (half of AdamW leaves each GPU).
      PARALLM_TRAIN_GRAPH_ZERO=1 timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --zero 1 --shapes 128x128 --steps 30 --json "$out/t/strong-zero-graph.json" 2>&1 | tail -2 | sed "s/^/[zero, in the graph] /" ;;
    pending)
      # What the third session left unrun on GPUs: the deferred weight gradients' GPU test and the decode
      # tests with the batch-1 dispatch's K >= 4096 condition; then PP with deferred dW against MP.
      timeout 300 vitest run test/gpu/train-defer-dw.gpu.test.ts test/gpu/decode.gpu.test.ts > "$out/gpu-pending.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-pending.log" | head -20
      bash "$0" train-pp-dw ;;
    verify-a)
      # Every GPU test, then the training figures with the step as one CUDA graph: one GPU at 64 and 128 x 128
      # (and where a step's time goes on the host), DP strong and weak scaling, DP across processes.
      timeout 330 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      mkdir -p "$out/t"
      for sh in 64x128 128x128; do
        PARALLM_TRACE_STEP=1 timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes $sh --steps 30 > "$out/t/trace-$sh.log" 2>&1
        grep "parallm trace" "$out/t/trace-$sh.log" | tail -2; grep -E "^gpt2" "$out/t/trace-$sh.log" | tail -1
      done
      timeout 150 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --shapes 128x128 --steps 30 --json "$out/t/gpt2-strong.json" 2>&1 | tail -4
      timeout 150 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --shapes 128x128 --steps 30 --json "$out/t/gpt2-weak.json" 2>&1 | tail -3
      timeout 200 node bench/dp-procs.mjs --steps 40 --rounds 2 --json "$out/t/dp-procs.json" 2>&1 | tail -5
      tar -czf "$out/train.tgz" -C "$out" t && rm -rf "$out/t" ;;
    verify-b)
      # The captured step's GPU tests (and the two test fixes of S6-6), DP strong scaling with gradient
      # buckets inside the graph, tensor-parallel decode against one GPU, and decode with this build.
      timeout 200 vitest run test/gpu/train-graph.gpu.test.ts test/gpu/train-dp.gpu.test.ts test/gpu/grad-kernels.gpu.test.ts -t "graph|data-parallel|crossEntropy" > "$out/gpu-b.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-b.log" | head -20
      mkdir -p "$out/t"
      timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 --json "$out/t/gpt2-strong-bucket.json" 2>&1 | tail -3
      for b in 1 16; do
        timeout 150 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch $b --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/t/llama-tp-b$b.json" 2>&1 | tail -2
      done
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/t/gen-llama.json" 2>&1 | tail -3
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/t/gen-gpt2.json" 2>&1 | tail -3
      tar -czf "$out/b.tgz" -C "$out" t && rm -rf "$out/t" ;;
    verify-c)
      # Decode with this build beside the compiled-PyTorch peer in the same call (7B and GPT-2, batch 1 and 16).
      timeout 90 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2.json" 2>&1 | tail -3
      timeout 120 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama.json" 2>&1 | tail -3
      timeout 300 python3 bench/peers/torch_compile_decode.py both 1,16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    verify-d)
      # The peer all-reduce after its kernels share their call bookkeeping (begin_call / end_call).
      timeout 150 vitest run test/gpu/peer-allreduce.gpu.test.ts test/gpu/tp.gpu.test.ts > "$out/gpu-d.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-d.log"
      timeout 60 node dist/cli/index.js bench comm --devices cuda:0,cuda:1 --quick 2>&1 | tail -14 ;;
    train-trace)
      # Host time of a GPT-2 training step against its wall time (PARALLM_TRACE_STEP), at strong scaling's per-GPU batch and at 128.
      for sh in 64x128 128x128; do
        PARALLM_TRACE_STEP=1 timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes $sh --steps 12 > "$out/train-trace-$sh.log" 2>&1
        grep "parallm trace" "$out/train-trace-$sh.log" | tail -3 | sed "s/^/[$sh] /"; grep -E "tokens/s|^gpt2" "$out/train-trace-$sh.log" | tail -1
      done ;;
    dp-procs)
      # GPT-2 DP training, 2 processes x 1 GPU (parallm launch) against 1 process x 2 GPUs, alternating.
      timeout 300 node bench/dp-procs.mjs --steps ${DP_STEPS:-30} --rounds ${DP_ROUNDS:-2} --json "$out/dp-procs.json" 2>&1 | tail -7
      # The same with the gradient all-reduced in 25 MiB buckets during the backward (as DDP does).
      timeout 300 node bench/dp-procs.mjs --steps ${DP_STEPS:-30} --rounds ${DP_ROUNDS:-2} --json "$out/dp-procs-bucket.json" -- --bucket-mb 25 2>&1 | tail -7 ;;
    tp-decode)
      # Tensor parallelism against one GPU: LLaMA-2-7B decode at batch 1 and 16 (128 prompt + 128 new tokens).
      mkdir -p "$out/s"
      for b in 1 16; do
        timeout 150 node dist/cli/index.js bench --model llama-2-7b --strategies single,tp --batch $b --prompt-tokens 128 --new-tokens 128 --repeats 3 --json "$out/s/llama-tp-b$b.json" 2>&1 | tail -2
      done ;;
    final)
      # Every GPU test after the session's merges, then decode speed with this build.
      node -e "const b=require('./build/Release/parallm.node'); console.log('addon testing hooks:', Object.keys(b.testing).join(','))"
      timeout 330 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -40
      timeout 60 node dist/cli/index.js bench kernels --filter gemv attention-decode copy --json "$out/kernels-decode.json" 2>&1 | tail -14
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama.json" 2>&1 | tail -3
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2.json" 2>&1 | tail -3 ;;
    train-epochs)
      mkdir -p "$out/t"
      mkdir -p "$out/t/epochs"
      timeout 400 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --epochs ${EPOCHS:-3} --shapes 128x128 --out "$out/t/epochs" --json "$out/t/epochs/epochs.json" 2>&1 | tail -5 ;;
    strategy-peers)
      # Peers for the strategies: PyTorch decode in one CUDA graph per step on one GPU (LLaMA-2-7B shape at
      # the curve's batches; GPT-2 at DP's per-device batch), and HF + accelerate's layer split (the seed's
      # model parallelism) over both GPUs.
      timeout 200 python3 bench/peers/torch_graph_decode.py llama ${PEER_BATCHES:-16,64,256} > "$out/peer-strat.log" 2>&1
      timeout 60 python3 bench/peers/torch_graph_decode.py gpt2 64 >> "$out/peer-strat.log" 2>&1
      timeout 200 python3 bench/peers/torch_anchors.py llama >> "$out/peer-strat.log" 2>&1
      grep ANCHOR "$out/peer-strat.log" | cut -c1-220 ;;
    pack)
      # At most 8 files come back from the device, so the JSON goes into one archive.
      [ -d "$out/s" ] && tar -czf "$out/strategies.tgz" -C "$out" s && rm -rf "$out/s" ;;
    decode)
      # Decode speed (bench/DECODE-NOTES.md): its GPU tests, the GEMV / decode-attention kernels beside a copy
      # of their bytes, generation, and the peers (cuBLAS GEMV and SDPA / flash_attn decode, compiled torch).
      timeout 300 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-decode-tests.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-decode-tests.log"
      timeout 200 node dist/cli/index.js bench kernels --filter gemv attention-decode copy --json "$out/kernels-decode.json" 2>&1 | tail -50
      timeout 150 python3 bench/peers/decode_peers.py both > "$out/peer-decode-kernels.log" 2>&1; grep ANCHOR "$out/peer-decode-kernels.log" | cut -c1-200
      timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 --json "$out/gen-llama.json" 2>&1 | tail -4
      timeout 90 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 --json "$out/gen-gpt2.json" 2>&1 | tail -4
      timeout 300 python3 bench/peers/torch_compile_decode.py both 1,16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    s14-b)
      # rope_kv_write a warp a head with its loads in flight (9.4 µs at batch 64 as a block a head, S14-1), the
      # split-K reduce's slices loaded four at a time, splitk_reduce_norm from shared memory (11.8 µs, S14-1):
      # their GPU tests; then 7B decode at 1/16/64, the last commit's addon (.device/old.txz) against this one,
      # each with PARALLM_DECODE_NORM_IN_GEMV unset and 1, alternating; then where batch 64's time goes.
      timeout 150 vitest run test/gpu/decode.gpu.test.ts test/gpu/kernels.gpu.test.ts -t "rope|KV|kvWrite|linearResidualNorm|64-row|split-K|every kernel against|bit for bit" > "$out/gpu-s14b.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s14b.log" | head -20
      mkdir -p /tmp/ab/old /tmp/ab/new && tar -xJf .device/old.txz -C /tmp/ab/old && cp build/Release/parallm.node /tmp/ab/new/
      for r in 1 2; do for b in old new; do cp /tmp/ab/$b/build/Release/parallm.node build/Release/ 2>/dev/null || cp /tmp/ab/$b/parallm.node build/Release/; for n in "" 1; do
        PARALLM_DECODE_NORM_IN_GEMV=$n timeout 70 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[$b norm-in-gemv=$n r$r 7B] /"
      done; timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[$b r$r gpt2] /"; done; done
      cp /tmp/ab/new/parallm.node build/Release/
      PARALLM_DECODE_NORM_IN_GEMV=1 NCU_RUNS="llama-2-7b:64:2500:700 llama-2-7b:16:2500:700" bash "$0" ncu-decode ;;
    s14-c)
      # Decode's rope frequencies as a table (Transformer.ropeTable: the double pow per element made
      # rope_kv_write 7.5 µs at batch 64, S14-2): the decode, model and family GPU tests; 7B and GPT-2 decode,
      # the last commit (its dist in .device/old/dist, its addon in .device/old.txz) against this tree, with
      # PARALLM_DECODE_NORM_IN_GEMV unset and 1, alternating; GPT-2 batch 1 under ncu with each.
      timeout 200 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts test/gpu/families.gpu.test.ts > "$out/gpu-s14c.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s14c.log" | head -20
      tar -xJf .device/old.txz -C .device/old && cp package.json .device/old/
      for r in 1 2; do for b in old new; do
        [ $b = old ] && cli=.device/old/dist/cli/index.js || cli=dist/cli/index.js
        for n in "" 1; do
          PARALLM_DECODE_NORM_IN_GEMV=$n timeout 70 node $cli bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[$b norm-in-gemv=$n r$r 7B] /"
        done; timeout 40 node $cli bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[$b r$r gpt2] /"; done; done
      NCU_RUNS="gpt2:1:1300:400" bash "$0" ncu-decode; mv "$out/ncu-gpt2-b1.csv" "$out/ncu-gpt2-b1-new.csv"
      NCU_CLI=.device/old/dist/cli/index.js NCU_RUNS="gpt2:1:1300:400" bash "$0" ncu-decode; mv "$out/ncu-gpt2-b1.csv" "$out/ncu-gpt2-b1-old.csv" ;;
    s14-d)
      # Two H200s, this session's last build: every GPU test; then the strategy figures decode touches, the
      # session's first commit (.device/old: dist, the sm_90a addon in old.txz) against this build, alternating:
      # DP generation (GPT-2, 512 prompts, 64 per device) and PP decode (LLaMA-2-7B, batch 256, 2 micro-batches).
      timeout 280 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      mkdir -p .device/old && tar -xJf .device/old.txz -C .device/old && cp package.json .device/old/ && cp -r assets .device/old/
      for r in 1 2; do for b in old new; do
        [ $b = old ] && cli=.device/old/dist/cli/index.js || cli=dist/cli/index.js
        timeout 150 node $cli bench --model gpt2 --strategies single,dp --prompts 512 --batch 64 --repeats 2 2>&1 | tail -3 | sed "s/^/[$b r$r dp] /"
        timeout 150 node $cli bench --model llama-2-7b --strategies pp --batch 256 --prompt-tokens 128 --new-tokens 64 --micro-batches 2 --repeats 2 2>&1 | tail -2 | sed "s/^/[$b r$r pp-decode] /"
      done; done ;;
    s14-e)
      # Decode against compiled PyTorch (s13-f), then the prefill strategies (one GPU, MP, PP with 8
      # micro-batches; LLaMA-2-7B 32 x 512) on this build.
      bash "$0" s13-f
      timeout 200 node dist/cli/index.js bench --model llama-2-7b --strategies single,mp,pp --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --repeats 3 2>&1 | tail -4 ;;
    s14-f)
      # 7B decode at batch 64 against compiled PyTorch twice more in one call (S14-5 met the floor once):
      # parallm, the peer, parallm, the peer, parallm.
      for r in 1 2 3; do
        timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 64 2>&1 | tail -1 | sed "s/^/[7B b64 r$r] /"
        [ $r = 3 ] || { timeout 150 python3 bench/peers/torch_compile_decode.py llama 64 > "$out/peer-b64-$r.log" 2>&1; grep ANCHOR "$out/peer-b64-$r.log" | cut -c1-200; }
      done ;;
    s14-g)
      # Decode attention's chunks merged by the split kernel's last block (KvCache.counter): its GPU tests and
      # the decode paths' (models, families); then 7B and GPT-2 decode, 1a47725 (.device/old: dist, its
      # sm_90a addon in old.txz) against this build, alternating.
      timeout 200 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts test/gpu/families.gpu.test.ts > "$out/gpu-s14g.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s14g.log" | head -20
      mkdir -p .device/old && tar -xJf .device/old.txz -C .device/old && cp package.json .device/old/ && cp -r assets .device/old/
      for r in 1 2; do for b in old new; do
        [ $b = old ] && cli=.device/old/dist/cli/index.js || cli=dist/cli/index.js
        timeout 60 node $cli bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[$b r$r 7B] /"
        timeout 40 node $cli bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[$b r$r gpt2] /"
      done; done ;;
    s14-h)
      # Batch 1 against compiled PyTorch with the chunks merged in the split kernel: parallm, the peers, parallm.
      timeout 40 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7B a] /"
      timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 a] /"
      timeout 100 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-gpt2.log" 2>&1; grep ANCHOR "$out/peer-gpt2.log" | cut -c1-200
      timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b] /"
      timeout 120 python3 bench/peers/torch_compile_decode.py llama 1 > "$out/peer-7b.log" 2>&1; grep ANCHOR "$out/peer-7b.log" | cut -c1-200
      timeout 40 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7B b] /" ;;
    s15-a)
      # The next session's first call (two H200s): every GPU test on the eleventh session's last commit
      # (decode attention's chunks merged in the split kernel with KvCache.counter, also in pipeline
      # micro-batches and tp shards, not yet run there; the GEMV post-layernorm from shared memory, not yet
      # run at all); PP decode and DP generation; where GPT-2 batch 1's and 7B batch 16's time goes (ncu).
      # Then s15-b.
      timeout 280 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      timeout 150 node dist/cli/index.js bench --model gpt2 --strategies single,dp --prompts 512 --batch 64 --repeats 2 2>&1 | tail -3 | sed "s/^/[dp] /"
      timeout 150 node dist/cli/index.js bench --model llama-2-7b --strategies pp --batch 256 --prompt-tokens 128 --new-tokens 64 --micro-batches 2 --repeats 2 2>&1 | tail -2 | sed "s/^/[pp-decode] /"
      NCU_RUNS="gpt2:1:1300:400 llama-2-7b:16:2500:700" bash "$0" ncu-decode ;;
    s15-b)
      # The GEMV post-layernorm from shared memory (written after the eleventh session's device time, not yet
      # on a GPU): its bits (linearResidualNorm against matmul then layernorm), then GPT-2 decode, c41e813's
      # addon (built into .device/old.txz first: sm_90a, as in the eleventh session) against this one, alternating.
      timeout 120 vitest run test/gpu/decode.gpu.test.ts -t "linearResidualNorm|layernormLinear|tiny models" > "$out/gpu-s15b.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s15b.log" | head -20
      mkdir -p /tmp/ab/old && tar -xJf .device/old.txz -C /tmp/ab/old && cp build/Release/parallm.node /tmp/ab/new.node
      for r in 1 2; do for b in old new; do
        [ $b = old ] && cp /tmp/ab/old/build/Release/parallm.node build/Release/ || cp /tmp/ab/new.node build/Release/parallm.node
        timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,4 2>&1 | tail -2 | sed "s/^/[$b r$r gpt2] /"
      done; done
      cp /tmp/ab/new.node build/Release/parallm.node ;;
    s15-c)
      # Decode's rope + KV write folded into the split attention kernel (ops.ropeKvAttentionDecode, the
      # default; PARALLM_DECODE_FUSED_ATTN=0 runs the two launches): every GPU test (the decode path of
      # pipelines and tp shards changed too), then decode with and without it, alternating.
      timeout 280 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      bash "$0" fused-ab ;;
    s15-e)
      # The fused form held to the plain form's registers at one head a block (S15-3: 80 registers cost 7B
      # batch 64 3%): its GPU tests, then decode with and without it, alternating.
      timeout 150 vitest run test/gpu/decode.gpu.test.ts -t "ropeKvAttentionDecode|tiny models" > "$out/gpu-s15e.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s15e.log" | head -20
      bash "$0" fused-ab ;;
    s15-f)
      # The fused form without rope (kFresh) its own kernel, taken by default only where nothing rotates
      # (GPT-2): its GPU tests and the models' (every mode the same tokens), then GPT-2 decode with and
      # without it, three rounds alternating, and one 7B run (the two launches either way).
      timeout 200 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts test/gpu/families.gpu.test.ts > "$out/gpu-s15f.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s15f.log" | head -20
      for r in 1 2 3; do for b in apart fused; do
        [ $b = apart ] && export PARALLM_DECODE_FUSED_ATTN=0 || unset PARALLM_DECODE_FUSED_ATTN
        timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,4,16 2>&1 | tail -3 | sed "s/^/[$b r$r gpt2] /"
      done; done; unset PARALLM_DECODE_FUSED_ATTN
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[default 7B] /" ;;
    s15-g)
      # The fused attention for one block a kv head (the new rows written before the keys are read; the
      # rotating form held to 64 registers) and the register GEMV's deep form (12 chunks a pass on grids of
      # at most one block an SM): their GPU tests, then 7B decode fused (PARALLM_DECODE_FUSED_ATTN=1)
      # against the default (two launches), and GPT-2 with the deep form against without
      # (PARALLM_GEMV_DEEP=0), alternating. (S15-8: neither gained; the deep form was removed after it, so
      # PARALLM_GEMV_DEEP no longer exists.)
      timeout 200 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts test/gpu/families.gpu.test.ts > "$out/gpu-s15g.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s15g.log" | head -20
      for r in 1 2; do for b in base new; do
        [ $b = new ] && export PARALLM_DECODE_FUSED_ATTN=1 || export PARALLM_GEMV_DEEP=0
        timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[$b r$r 7B] /"
        timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,4,16 2>&1 | tail -3 | sed "s/^/[$b r$r gpt2] /"
        unset PARALLM_DECODE_FUSED_ATTN PARALLM_GEMV_DEEP
      done; done ;;
    s15-h)
      # The session's last call (two H200s): every GPU test on its last commit, then 7B decode with the
      # rotating fused attention (each pair's sincosf once a block into shared memory, where every thread
      # took its own dims': 16 times a head's) against the two launches, alternating.
      timeout 280 vitest run test/gpu > "$out/gpu-all.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-all.log" | head -30
      for r in 1 2; do for b in apart fused; do
        [ $b = fused ] && export PARALLM_DECODE_FUSED_ATTN=1
        timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[$b r$r 7B] /"
        unset PARALLM_DECODE_FUSED_ATTN
      done; done ;;
    s15-i)
      # The strategy figures after the fused attention became GPT-2's default (issue 13's rule): DP
      # generation (GPT-2) and 7B PP decode; then GPT-2 batch 1 against compiled PyTorch.
      timeout 100 node dist/cli/index.js bench --model gpt2 --strategies single,dp --prompts 512 --batch 64 --repeats 2 2>&1 | tail -3 | sed "s/^/[dp] /"
      timeout 120 node dist/cli/index.js bench --model llama-2-7b --strategies pp --batch 256 --prompt-tokens 128 --new-tokens 64 --micro-batches 2 --repeats 2 2>&1 | tail -2 | sed "s/^/[pp-decode] /"
      timeout 25 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 a] /"
      timeout 80 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-gpt2.log" 2>&1; grep ANCHOR "$out/peer-gpt2.log" | cut -c1-200
      timeout 25 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b] /" ;;
    s15-j)
      # The register GEMV's persistent form (GPT-2's head: 6,283 one-pass blocks in ~16 waves before): the
      # GEMV and tiny-model GPU tests, then GPT-2 decode with and without it (PARALLM_GEMV_PERSIST=0), alternating.
      # (S15-11: 1.7-2.5% slower; the persistent form was removed, so PARALLM_GEMV_PERSIST no longer exists.)
      timeout 120 vitest run test/gpu/decode.gpu.test.ts -t "GEMV, M <= 16|tiny models" > "$out/gpu-s15j.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s15j.log" | head -20
      for r in 1 2 3; do for b in off on; do
        [ $b = off ] && export PARALLM_GEMV_PERSIST=0
        timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[$b r$r gpt2] /"
        unset PARALLM_GEMV_PERSIST
      done; done ;;
    fused-ab)
      for r in 1 2; do for b in apart fused; do
        [ $b = apart ] && export PARALLM_DECODE_FUSED_ATTN=0 || unset PARALLM_DECODE_FUSED_ATTN
        timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[$b r$r 7B] /"
        timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[$b r$r gpt2] /"
      done; done; unset PARALLM_DECODE_FUSED_ATTN ;;
    s15-d)
      # Decode against compiled PyTorch after s15-c: parallm, the peer, parallm at 7B batch 1, 16, 64 and GPT-2 batch 1.
      for m in "llama-2-7b 1" "llama-2-7b 16" "llama-2-7b 64" "gpt2 1"; do set -- $m
        timeout 60 node dist/cli/index.js bench generate --model $1 --batch $2 2>&1 | tail -1 | sed "s/^/[$1 b$2 a] /"
        timeout 150 python3 bench/peers/torch_compile_decode.py ${1%%-*} $2 > "$out/peer-$1-$2.log" 2>&1; grep ANCHOR "$out/peer-$1-$2.log" | cut -c1-200
        timeout 60 node dist/cli/index.js bench generate --model $1 --batch $2 2>&1 | tail -1 | sed "s/^/[$1 b$2 b] /"
      done ;;
    s16-a)
      # Where the decode step's time goes as replayed (PARALLM_DECODE_SKIP, timing only: the tokens are wrong):
      # 7B at batch 16 and 64 with rope + KV write and/or attention left out, alternating with the full step;
      # GPT-2 at batch 1 and 16 with the two launches (not the fused op) and attention left out.
      for r in 1 2; do for sk in none rope attn rope,attn; do
        PARALLM_DECODE_SKIP=$([ $sk = none ] || echo $sk) timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b skip=$sk r$r] /"
      done; done
      for sk in none attn; do
        PARALLM_DECODE_FUSED_ATTN=0 PARALLM_DECODE_SKIP=$([ $sk = none ] || echo $sk) timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 two-launch skip=$sk] /"
      done ;;
    s16-b)
      # Decode attention's key chunks (PARALLM_DECODE_SPLITS, default chosen by the cache's length) at batch 16 and
      # 64, and batch 1's step with rope + KV write and attention left out (timing only).
      for r in 1 2; do for sp in auto 1 2 4 8; do
        PARALLM_DECODE_SPLITS=$([ $sp = auto ] || echo $sp) timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b splits=$sp r$r] /"
      done; done
      for sk in none rope attn rope,attn; do
        PARALLM_DECODE_SKIP=$([ $sk = none ] || echo $sk) timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 skip=$sk] /"
      done ;;
    s16-c)
      # Decode attention's L2 hint (PARALLM_DECODE_PREFETCH=<MiB>: the projections after it, out then up then
      # down, while they fit): its GPU tests, then decode with and without it, alternating. (S16-3: no gain;
      # the hint was removed, so this part now times the same code four ways.)
      timeout 200 vitest run test/gpu/decode.gpu.test.ts -t "L2 prefetch|tiny models|graph of two layers|with a counter, in a graph" > "$out/gpu-prefetch.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-prefetch.log" | head -20
      for r in 1 2; do for mb in 0 40; do
        PARALLM_DECODE_PREFETCH=$mb PARALLM_DECODE_PREFETCH_ROWS=16 timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,4,16 2>&1 | tail -3 | sed "s/^/[7b pf=$mb r$r] /"
      done; done
      for r in 1 2; do for mb in 0 2 16; do
        PARALLM_DECODE_PREFETCH=$mb PARALLM_DECODE_PREFETCH_ROWS=16 timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 1,4,16 2>&1 | tail -3 | sed "s/^/[gpt2 pf=$mb r$r] /"
      done; done ;;
    s16-d)
      # PDL beyond the GEMVs on today's decode (S11-4/S11-5 measured it before the tenth-twelfth sessions' kernels):
      # the small kernels (PARALLM_PDL=2), the 64-row tile and its reduce (PARALLM_PDL_TILE=1), both; alternating.
      for r in 1 2; do for v in "" "PARALLM_PDL=2" "PARALLM_PDL_TILE=1" "PARALLM_PDL=2 PARALLM_PDL_TILE=1"; do
        env $v timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done ;;
    s17-a)
      # A training step's host part against its graph (PARALLM_TRAIN_GAPS, a timing probe): GPT-2 at 64 and 128
      # sequences on one GPU, the full step, the graph with the batch written before each replay, and the
      # graph replayed back to back.
      PARALLM_TRAIN_GAPS=1 timeout 200 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 20 2>&1 | grep -E "gaps|tokens/s" ;;
    s17-b)
      # The rotating fused decode attention as a cos/sin table would run it (PARALLM_DECODE_ROPE_EMU=1, timing
      # only: the tokens are wrong), against the fused form with sincosf and the two launches; alternating.
      # (S17-2: the probe was removed after it; the variable now changes nothing.)
      for r in 1 2; do for v in "PARALLM_DECODE_FUSED_ATTN=0" "PARALLM_DECODE_FUSED_ATTN=1" "PARALLM_DECODE_FUSED_ATTN=1 PARALLM_DECODE_ROPE_EMU=1"; do
        env $v timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b $v r$r] /"
      done; done ;;
    s17-c)
      # The sm90 tile's producer issuing k-tiles in pairs (PARALLM_TILE_PAIRS=1: 256 contiguous bytes of each W
      # row a visit instead of 128), against the default: the decode GEMMs beside a copy, then 7B decode;
      # alternating. (S17-3: no gain; the probe was removed, so this now times the same code twice.)
      for r in 1 2; do for v in "" "PARALLM_TILE_PAIRS=1"; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter gemm-decode gemv-tile64 copy 2>&1 | grep -E "^(gemm-decode|gemv|copy)" | sed "s/^/[k ${v:-default} r$r] /"
        env $v timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done ;;
    s17-d)
      # The sm90 wave rule for K slices (training's weight gradients; PARALLM_SPLITK_WAVE=0 leaves them whole):
      # its GPU tests and the training GPU tests, then GPT-2 training with and without it, alternating, and the
      # op groups of each.
      timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "wave rule|split-K|tensor-core|64-row" > "$out/gpu-s17d-kernels.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s17d-kernels.log" | head -20
      timeout 300 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts test/gpu/grad-kernels.gpu.test.ts test/gpu/train-defer-dw.gpu.test.ts > "$out/gpu-s17d-train.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s17d-train.log" | head -20
      for r in 1 2; do for v in "PARALLM_SPLITK_WAVE=0" "PARALLM_SPLITK_WAVE=1"; do
        env $v timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | grep -E "^gpt2" | sed "s/^/[$v r$r] /"
      done; done
      for v in "PARALLM_SPLITK_WAVE=0" "PARALLM_SPLITK_WAVE=1"; do
        env $v timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 20 --profile 2>&1 | grep -E "tokens/s|dW|dX|adamw" | sed "s/^/[$v profile] /"
      done ;;
    s17-e)
      # GPT-2's weight-gradient products (bench kernels' gemm-dw cases) with the K slices the wave rule picks
      # (auto) and forced to 1-6, to calibrate the rule.
      for sk in auto 1 2 3 4 5 6; do
        timeout 90 node dist/cli/index.js bench kernels --filter gemm-dw --split-k $sk 2>&1 | grep -E "^gemm-dw" | sed "s/^/[split-k $sk] /"
      done ;;
    s17-f)
      # Norm backward with each row's packs kept in registers (one memory latency a row; S17-6): the addon in
      # build/Release (NEW) against build/old/parallm.node (OLD, the same tree before it). NEW's gradient-kernel and
      # training GPU tests, then GPT-2 training on each, alternating, and the op groups of each. (S17-6: not kept;
      # the part needs an addon at build/old/parallm.node.)
      mkdir -p build/new && cp build/Release/parallm.node build/new/parallm.node
      timeout 300 vitest run test/gpu/grad-kernels.gpu.test.ts test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-s17f.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s17f.log" | head -20
      for r in 1 2; do for b in old new; do
        cp build/$b/parallm.node build/Release/parallm.node
        timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | grep -E "^gpt2" | sed "s/^/[$b r$r] /"
      done; done
      for b in old new; do
        cp build/$b/parallm.node build/Release/parallm.node
        timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 20 --profile 2>&1 | grep -E "tokens/s|norm" | sed "s/^/[$b profile] /"
      done
      cp build/new/parallm.node build/Release/parallm.node ;;
    s18-a)
      # The W-as-A tile (matmul_sm90_wtile.cuh; matmulWTile / PARALLM_WTILE): its GPU tests, decode's GPU tests with
      # every product of at most 64 rows on it (PARALLM_WTILE=2), then the decode GEMMs and GEMVs on it beside the
      # 64-row tile, the register GEMV and a copy of the weight bytes, and its K slices forced 1-4.
      timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A" > "$out/gpu-s18a-wtile.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s18a-wtile.log" | head -20
      PARALLM_WTILE=2 timeout 300 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s18a-decode.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s18a-decode.log" | head -20
      timeout 120 node dist/cli/index.js bench kernels --filter "gemv 1x" "gemv 16x" "gemv-wtile" "gemv-tile64" gemm-decode copy 2>&1 | grep -E "^(gemm-decode|gemv|copy)" | grep -v -E "nopdl|pipe|reg" | sed "s/^/[k] /"
      for sk in 1 2 3 4; do
        timeout 60 node dist/cli/index.js bench kernels --filter wtile --split-k $sk 2>&1 | grep -E "wtile" | sed "s/^/[split-k $sk] /"
      done ;;
    s18-b)
      # 7B and GPT-2 decode with the W-as-A tile off (default), on the 64-row tile's products (1) and on every product
      # of at most 64 rows (2), alternating, then compiled PyTorch.
      for r in 1 2; do for v in 0 1 2; do
        PARALLM_WTILE=$v timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b wtile=$v r$r] /"
      done; done
      for v in 0 2; do
        PARALLM_WTILE=$v timeout 90 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 wtile=$v] /"
      done
      timeout 240 python3 bench/peers/torch_compile_decode.py llama 1,16,64 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    s18-c)
      # The W-as-A tile with four accumulator sets (S18-2): its GPU tests; the decode GEMMs and GEMVs on it beside the
      # 64-row tile, the register GEMV and a copy of the weight bytes; 7B decode with it off, on the 64-row tile's
      # products, and on every product of at most 64 rows.
      timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A" > "$out/gpu-s18c-wtile.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s18c-wtile.log" | head -20
      timeout 150 node dist/cli/index.js bench kernels --filter "gemv 1x" "gemv 16x" "gemv-wtile" "gemv-tile64" gemm-decode copy > "$out/kernels-s18c.log" 2>&1
      grep -E "^(gemm-decode|gemv|copy)" "$out/kernels-s18c.log" | grep -v -E "nopdl|pipe|reg|t128" | grep -E " (1|16|64)x(4096|11008|12288|22016)x(4096|11008) " | sed "s/^/[k] /"
      for v in 0 1 2; do
        PARALLM_WTILE=$v timeout 150 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b wtile=$v] /"
      done ;;
    s18-d)
      # The W-as-A tile as the dispatch's choice at 9-16 rows (S18-3): the decode, model and W-as-A GPU tests on
      # that default, then 7B and GPT-2 decode with it and without (PARALLM_WTILE=0).
      timeout 330 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s18d.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s18d.log" | head -30
      timeout 120 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A|tensor-core matmul|64-row tile" > "$out/gpu-s18d-k.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s18d-k.log" | head -30
      for r in 1; do for v in "" 0; do
        env ${v:+PARALLM_WTILE=$v} timeout 100 node dist/cli/index.js bench generate --model llama-2-7b --batch 8,16 2>&1 | tail -2 | sed "s/^/[7b wtile=${v:-auto} r$r] /"
        env ${v:+PARALLM_WTILE=$v} timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 16 2>&1 | tail -1 | sed "s/^/[gpt2 wtile=${v:-auto} r$r] /"
      done; done ;;
    s18-e)
      # The W-as-A tile's default narrowed to 7B-sized products (K >= 4096, N x K >= 2^24) of 9-16 rows (S18-4): the
      # decode and model GPU tests, 7B and GPT-2 decode at batch 16 with it and without, then compiled PyTorch.
      timeout 250 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s18e.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s18e.log" | head -30
      for v in "" 0 ""; do
        env ${v:+PARALLM_WTILE=$v} timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b wtile=${v:-auto}] /"
        env ${v:+PARALLM_WTILE=$v} timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 16 2>&1 | tail -1 | sed "s/^/[gpt2 wtile=${v:-auto}] /"
      done
      timeout 200 python3 bench/peers/torch_compile_decode.py llama 16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200 ;;
    s19-a)
      # Sixteenth session: the W-as-A tile's GPU tests with PDL and its first lap asked of L2 (PARALLM_PDL_WTILE=1);
      # its 16-row products as dispatched, under each timing probe (PARALLM_WTILE_PROBE=1: no wgmma, 2: no weight
      # loads; a build with PARALLM_PROBES) and with PDL; 7B decode at batch 16 with PDL_WTILE unset, 1 and 2.
      # (Since removed: PARALLM_PDL_WTILE, PARALLM_WTILE_GROUP and PARALLM_PDL_TILE=1|2; the tiles launch with PDL
      # by default, without prefetch, PARALLM_PDL_TILE=0 turning it off: matmul.cu's sm90_pdl.)
      PARALLM_PDL_WTILE=1 timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A" > "$out/gpu-s19a-wtile.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s19a-wtile.log" | head -20
      for v in "" PARALLM_WTILE_PROBE=1 PARALLM_WTILE_PROBE=2 PARALLM_PDL_WTILE=1 PARALLM_PDL_WTILE=2; do
        env $v timeout 100 node dist/cli/index.js bench kernels --filter "gemv-wtile 16x" copy > "$out/kernels-s19a-${v:-default}.log" 2>&1
        grep -E "wtile|^copy" "$out/kernels-s19a-${v:-default}.log" | sed "s/^/[k ${v:-default}] /"
      done
      for v in "" PARALLM_PDL_WTILE=1 PARALLM_PDL_WTILE=2 "" PARALLM_PDL_WTILE=1; do
        env $v timeout 80 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b b16 ${v:-default}] /"
      done ;;
    s19-b)
      # The W-as-A tile's producer issuing 1, 2 or 4 k-tiles at a time (PARALLM_WTILE_GROUP): its GPU tests at 1 and 4,
      # its 16-row products at each; the decode GEMMs at 64 rows with the 64-row tile's PDL off, bare (PARALLM_PDL_TILE=2)
      # and with its L2 prefetch (1); 7B decode at 16 and 64 with each, alternating.
      for v in "" PARALLM_WTILE_GROUP=4; do
        env $v timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A" > "$out/gpu-s19b-wtile-${v:-default}.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s19b-wtile-${v:-default}.log" | sed "s/^/[${v:-default}] /" | head -20
      done
      for v in "" PARALLM_WTILE_GROUP=2 PARALLM_WTILE_GROUP=4; do
        env $v timeout 100 node dist/cli/index.js bench kernels --filter "gemv-wtile 16x" copy 2>&1 | grep -E "^gemv-wtile|^copy" | sed "s/^/[k ${v:-default}] /"
      done
      for v in "" PARALLM_PDL_TILE=2 PARALLM_PDL_TILE=1; do
        env $v timeout 100 node dist/cli/index.js bench kernels --filter "gemm-decode 64x" copy 2>&1 | grep -E "^gemm-decode|^copy" | sed "s/^/[k ${v:-default}] /"
      done
      for r in 1 2; do
        for v in "" PARALLM_PDL_WTILE=2 "PARALLM_PDL_WTILE=2 PARALLM_WTILE_GROUP=4"; do
          env $v timeout 80 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b b16 ${v:-default}] /"
        done
        for v in "" PARALLM_PDL_TILE=2 PARALLM_PDL_TILE=1; do
          env $v timeout 80 node dist/cli/index.js bench generate --model llama-2-7b --batch 64 2>&1 | tail -1 | sed "s/^/[7b b64 ${v:-default}] /"
        done
      done ;;
    s19-c)
      # The sm90 tiles with PDL by default (no prefetch): the sm90 kernels' and decode's GPU tests; 7B decode at batch
      # 1 with the register GEMV's pre-wait L2 prefetch (default) and without (PARALLM_GEMV_PREFETCH=none), alternating.
      timeout 150 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A|tensor-core matmul|64-row tile|sm90|split" > "$out/gpu-s19c-k.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s19c-k.log" | head -20
      timeout 300 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s19c-decode.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s19c-decode.log" | head -20
      for r in 1 2; do for v in "" PARALLM_GEMV_PREFETCH=none; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
      done; done ;;
    s19-d)
      # The register GEMV without its pre-wait L2 prefetch by default (PARALLM_GEMV_PREFETCH=first: the old default):
      # the GEMV floors' products and GPT-2 at batch 1 with each, then 7B decode at 1, 16 and 64 and GPT-2 at 1 on this
      # session's defaults beside compiled PyTorch in the same call.
      for v in "" PARALLM_GEMV_PREFETCH=first; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x11008x4096" "gemv 1x4096x11008" copy 2>&1 | grep -E "^(gemv|copy) " | sed "s/^/[k ${v:-default}] /"
      done
      for r in 1 2; do for v in "" PARALLM_GEMV_PREFETCH=first; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
      done; done
      timeout 120 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b] /"
      timeout 300 python3 bench/peers/torch_compile_decode.py llama 1,16,64 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200
      timeout 120 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b after] /" ;;
    s19-e)
      # The register GEMV's trigger at its start (default) or after its wait (PARALLM_GEMV_TRIGGER_LATE=1), with and
      # without its pre-wait L2 prefetch (PARALLM_GEMV_PREFETCH=first / default none): the GEMV floors' products, then
      # 7B and GPT-2 decode at batch 1.
      for v in "" PARALLM_GEMV_TRIGGER_LATE=1 "PARALLM_GEMV_TRIGGER_LATE=1 PARALLM_GEMV_PREFETCH=first" PARALLM_GEMV_PREFETCH=first; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x11008x4096" copy 2>&1 | grep -E "^(gemv|copy) " | sed "s/^/[k ${v:-default}] /"
      done
      for r in 1 2; do for v in "" PARALLM_GEMV_TRIGGER_LATE=1 "PARALLM_GEMV_TRIGGER_LATE=1 PARALLM_GEMV_PREFETCH=first"; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
      done; done ;;
    s19-f)
      # This session's final native code (the sm90 tiles with PDL, the register GEMV without its prefetch and with its
      # trigger after the wait): every GPU test file (those needing two GPUs skip on one), then GPT-2 decode at batch 1
      # with the GEMV's trigger late (default) and early (PARALLM_GEMV_TRIGGER_LATE=0), alternating, and 7B decode.
      timeout 450 vitest run test/gpu > "$out/gpu-s19f.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s19f.log" | head -30
      for r in 1 2 3; do for v in "" PARALLM_GEMV_TRIGGER_LATE=0; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
      done; done
      timeout 120 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b] /" ;;
    s19-g)
      # Compiled PyTorch beside parallm in one call, again: GPT-2 at batch 1 and 7B at batch 16 and 1.
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b] /"
      timeout 100 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200
      timeout 170 python3 bench/peers/torch_compile_decode.py llama 1,16 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 after] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b after] /" ;;
    s19-h)
      # SwiGLU in the gate+up product's split-K reduce (splitk_reduce_swiglu; PARALLM_REDUCE_SWIGLU=1): linearSwiGLU's
      # GPU tests (16x11008x4096 takes it: the W-as-A tile's three slices) and the W-as-A tile's with it on; 7B decode at
      # batch 16 without and with it, alternating.
      PARALLM_REDUCE_SWIGLU=1 timeout 100 vitest run test/gpu/decode.gpu.test.ts test/gpu/kernels.gpu.test.ts -t "linearSwiGLU|W-as-A" > "$out/gpu-s19h.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s19h.log" | head -20
      for r in 1 2; do for v in "" PARALLM_REDUCE_SWIGLU=1; do
        env $v timeout 40 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b b16 ${v:-default}] /"
      done; done ;;
    s19-i)
      # Written for the next session: PDL's other switches again now that no decode kernel prefetches before its wait
      # (S19-1 ... S19-4). Decode's small kernels with PDL too (PARALLM_PDL=2; S8-2 had it within noise), GPT-2 and 7B
      # at batch 1, alternating; then training's GEMMs on the 128-row tile with PDL (PARALLM_PDL_GEMM=1, never timed):
      # GPT-2 training steps on one GPU without and with it, alternating.
      for r in 1 2; do for v in "" PARALLM_PDL=2; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
      done; done
      for r in 1 2; do for v in "" PARALLM_PDL_GEMM=1; do
        env $v timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 20 2>&1 | tail -2 | sed "s/^/[train ${v:-default}] /"
      done; done ;;
    s20-a)
      # (Since removed: PARALLM_GEMV_PREFETCH=wave and PARALLM_TILE_WPRE; PARALLM_GEMV_WPRE=1 here meant the run-time
      # preload of that build in every GEMV. Now the preload is the WPRE instance, taken under decode's frozen weights
      # only, and PARALLM_GEMV_WPRE=0 turns it off.)
      # Seventeenth session, first call: the code written after S19-6 (the SwiGLU reduce behind PARALLM_REDUCE_SWIGLU=1,
      # splitk_sum2) under its GPU tests; the register GEMV's prefetch in the first wave's blocks only
      # (PARALLM_GEMV_PREFETCH=wave), its first pass of W loaded before its PDL wait (PARALLM_GEMV_WPRE=1) and GPT-2's
      # persistent layer without its L2 prefetch (PARALLM_DECODE_LAYER_SKIP=32) under theirs; then the GEMV floors'
      # products with each GEMV setting.
      PARALLM_REDUCE_SWIGLU=1 timeout 100 vitest run test/gpu/decode.gpu.test.ts test/gpu/kernels.gpu.test.ts -t "linearSwiGLU|W-as-A" > "$out/gpu-s20a-swiglu.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s20a-swiglu.log" | sed "s/^/[swiglu] /" | head -20
      for v in wave wpre; do  # (decode.gpu.test.ts needs more than 100 s: these printed nothing in S20-1; s20-b runs them)
        [ $v = wave ] && e=PARALLM_GEMV_PREFETCH=wave || e=PARALLM_GEMV_WPRE=1
        env $e timeout 100 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-s20a-$v.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s20a-$v.log" | sed "s/^/[$e] /" | head -20
      done
      PARALLM_DECODE_LAYER_SKIP=32 timeout 80 vitest run test/gpu/decode-layer.gpu.test.ts > "$out/gpu-s20a-layer.log" 2>&1; grep -E "×|Test Files|Tests " "$out/gpu-s20a-layer.log" | sed "s/^/[layer32] /" | head -20
      for v in "" PARALLM_GEMV_PREFETCH=wave PARALLM_GEMV_PREFETCH=first PARALLM_GEMV_WPRE=1; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x11008x4096" copy 2>&1 | grep -E "^(gemv|copy) " | sed "s/^/[k ${v:-default}] /"
      done ;;
    s20-b)
      # decode.gpu.test.ts under the two GEMV settings of s20-a (with time to finish); then decode with each setting of
      # s20-a, alternating: GPT-2 and 7B at batch 1, 7B at batch 16 with the SwiGLU reduce.
      for v in wpre wave; do
        [ $v = wave ] && e=PARALLM_GEMV_PREFETCH=wave || e=PARALLM_GEMV_WPRE=1
        env $e timeout 150 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-s20b-$v.log" 2>&1; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s20b-$v.log" | sed "s/^/[$e] /" | head -20
      done
      for r in 1 2; do
        for v in "" PARALLM_GEMV_PREFETCH=wave PARALLM_GEMV_WPRE=1 PARALLM_DECODE_LAYER=1 "PARALLM_DECODE_LAYER=1 PARALLM_DECODE_LAYER_SKIP=32"; do
          env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
        done
        for v in "" PARALLM_GEMV_PREFETCH=wave PARALLM_GEMV_WPRE=1; do
          env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
        done
        for v in "" PARALLM_REDUCE_SWIGLU=1; do
          env $v timeout 40 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b b16 ${v:-default}] /"
        done
      done ;;
    s20-c)
      # The register GEMV's first pass loaded before its wait (PARALLM_GEMV_WPRE=1) pays only where the kernel before
      # lets it start early: decode attention does so at PARALLM_PDL=2 (pdl_begin), not at the default level 1.
      # decode.gpu.test.ts under both (168 tests; 100-150 s were too few in S20-1, S20-2), then GPT-2 and 7B decode at
      # batch 1 with each of the four, alternating.
      PARALLM_GEMV_WPRE=1 PARALLM_PDL=2 timeout 280 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-s20c.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s20c.log" | head -20
      for r in 1 2; do
        for v in "" PARALLM_PDL=2 PARALLM_GEMV_WPRE=1 "PARALLM_PDL=2 PARALLM_GEMV_WPRE=1"; do
          env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
          env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
        done
      done ;;
    s20-d)
      # The sm90 tiles' first lap of weight boxes issued before their PDL wait (PARALLM_TILE_WPRE=1): the tiles' GPU
      # tests with it (and the GEMV's, PDL=2); then 7B decode at 16 and 64 with it, with PDL=2 too, and GPT-2 / 7B at
      # batch 1 with the GEMV's (PARALLM_GEMV_WPRE=1 PARALLM_PDL=2), alternating, three rounds.
      PARALLM_TILE_WPRE=1 PARALLM_GEMV_WPRE=1 PARALLM_PDL=2 timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A|64-row tile|sm90|split|tensor-core matmul" > "$out/gpu-s20d.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s20d.log" | head -20
      for r in 1 2 3; do
        for v in "" PARALLM_TILE_WPRE=1 "PARALLM_TILE_WPRE=1 PARALLM_PDL=2"; do
          env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
        done
        for v in "" "PARALLM_GEMV_WPRE=1 PARALLM_PDL=2"; do
          env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
          env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
        done
      done ;;
    s20-e)
      # Decode's frozen weights (withFrozenWeights: the register GEMV's first pass of W before its PDL wait, the kernel's
      # WPRE instance), the default in decode now: every GPU test file; GPT-2 and 7B at batch 1 with it and without
      # (PARALLM_GEMV_WPRE=0), alternating; compiled PyTorch at batch 1 in the same call.
      timeout 330 vitest run test/gpu > "$out/gpu-s20e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s20e.log" | head -30
      for r in 1 2 3; do for v in "" PARALLM_GEMV_WPRE=0; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 b1 ${v:-default}] /"
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
      done; done
      timeout 100 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200
      timeout 130 python3 bench/peers/torch_compile_decode.py llama 1 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 after] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b after] /" ;;
    s20-f)
      # The batch-1 ratios again, in a second call: parallm, compiled PyTorch, parallm (GPT-2, then 7B).
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b] /"
      timeout 90 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200
      timeout 120 python3 bench/peers/torch_compile_decode.py llama 1 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 after] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b after] /" ;;
    s20-g)
      # bench kernels' GEMVs now run under decode's frozen weights, as decode does: the GEMV floors' products with the
      # preload (default) and without (PARALLM_GEMV_WPRE=0), twice, alternating.
      for r in 1 2; do for v in "" PARALLM_GEMV_WPRE=0; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x11008x4096" copy 2>&1 | grep -E "^(gemv|copy) " | sed "s/^/[k ${v:-default}] /"
      done; done ;;
    s20-h)
      # Written for the next session: bench generate now also reports decode by the median step (its 8th column), as
      # the compiled-PyTorch peer times its steps; GPT-2 at 1 and 7B at 1, 16 and 64 beside the peer, before and after.
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /"
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b] /"
      timeout 90 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200
      timeout 300 python3 bench/peers/torch_compile_decode.py llama 1,16,64 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 after] /"
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b after] /" ;;
    s20-i)
      # Written for the next session: decode attention's PRE form (PARALLM_ATTN_PRE=1: the plain fused form loads its
      # first keys below pos before its PDL wait, under decode's frozen weights), never run on a GPU: decode's and the
      # fused attention's GPU tests with it, then GPT-2 decode at batch 1 (and 16) without and with it, alternating.
      PARALLM_ATTN_PRE=1 timeout 250 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s20i.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s20i.log" | head -20
      for r in 1 2 3; do for v in "" PARALLM_ATTN_PRE=1; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 ${v:-default}] /"
      done; done ;;
    s21-a)
      # Eighteenth session's first call: s20-i (decode attention's PRE form under its GPU tests, GPT-2 A/B), then
      # 7B decode at batch 16 and GPT-2 at batch 1 kernel by kernel under ncu, for where the step's time goes now.
      bash "$0" s20-i
      NCU_RUNS="llama-2-7b:16:2500:700 gpt2:1:1300:400" bash "$0" ncu-decode ;;
    s21-b)
      # Decode attention's PRE form on by default, and two forms timed against it (their code since removed): the
      # plain kernel's PRE after rope_kv_write, told the row it writes (on by default in that build; PARALLM_ATTN_PRE=0
      # off), and the register GEMV for 16-row products wider than deep (PARALLM_WTILE_WIDE=0). Decode A/B, then the
      # GPU tests under each (both cut by their limits: the test file had grown).
      for r in 1 2; do for v in "" PARALLM_ATTN_PRE=0 PARALLM_WTILE_WIDE=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done
      for v in "" PARALLM_ATTN_PRE=0; do
        env $v timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 ${v:-default}] /"
      done ;;
    s21-c)
      # The session's final native code: every single-GPU test, then GPT-2 at batch 1 beside compiled PyTorch.
      timeout 340 vitest run test/gpu > "$out/gpu-all.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-all.log" | head -20
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /"
      timeout 90 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 after] /" ;;
    s21-d)
      # 7B at 1, 16 and 64 beside compiled PyTorch, before and after, by the whole run and by the median step.
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b] /"
      timeout 330 python3 bench/peers/torch_compile_decode.py llama 1,16,64 > "$out/peer-compile.log" 2>&1; grep ANCHOR "$out/peer-compile.log" | cut -c1-200
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b after] /" ;;
    s21-e)
      # The register GEMV in one pass of 12 chunks a warp where its blocks fit one wave (PARALLM_GEMV_ONEPASS=1: GPT-2's
      # down projection, 96 blocks, K 3072 in 3 passes of 4 until now): GPT-2 decode A/B, then the GEMV GPU tests with it.
      for r in 1 2 3; do for v in "" PARALLM_GEMV_ONEPASS=1; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 ${v:-default}] /"
      done; done
      PARALLM_GEMV_ONEPASS=1 timeout 150 vitest run test/gpu/decode.gpu.test.ts -t "every kernel against float64|x and h bit for bit|tiny models" > "$out/gpu-s21e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s21e.log" | head -20 ;;
    s21-f)
      # The one-pass GEMV on by default: every single-GPU test, GPT-2 at batch 1 with and without it (=0), alternating,
      # then beside compiled PyTorch.
      timeout 300 vitest run test/gpu > "$out/gpu-all.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-all.log" | head -20
      for r in 1 2 3 4 5; do for v in "" PARALLM_GEMV_ONEPASS=0; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 ${v:-default}] /"
      done; done
      timeout 90 python3 bench/peers/torch_compile_decode.py gpt2 1 > "$out/peer-compile-gpt2.log" 2>&1; grep ANCHOR "$out/peer-compile-gpt2.log" | cut -c1-200
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 after] /" ;;
    s22-b)
      # Written in the eighteenth session for the next: the W-as-A tile's K slices at 16 rows (S21-1: 7B's out projection
      # at 59% of the copy rate in 4 slices, then a reduce with the norm), graph-timed at each forced count beside a copy
      # of the same bytes; no build needed.
      for k in auto 1 2 3 4 6 8; do
        timeout 120 node dist/cli/index.js bench kernels --filter 16x4096x4096 16x4096x11008 16x12288x4096 16x22016x4096 --split-k $k 2>&1 | grep -E "^ +[a-z].*16x" | sed "s/^/[split-k $k] /"
      done ;;
    s22-c)
      # (Its knobs are on the branch wip/s22-experiments only: measured even or worse, S22-3, and removed.)
      # Nineteenth session: the W-as-A tile with a shallower ring (PARALLM_WTILE_RING, KiB) so its blocks can start
      # beside the kernel before, its first lap of weight boxes before the PDL wait under frozen weights
      # (PARALLM_WTILE_PRE=1), and one L1 / shared split for every kernel (PARALLM_CARVEOUT=100). The W-as-A GPU
      # tests under the first two, then 7B decode at batch 16 under each, alternating with the default.
      PARALLM_WTILE_PRE=1 PARALLM_WTILE_RING=64 timeout 200 vitest run test/gpu/kernels.gpu.test.ts -t "W-as-A" > "$out/gpu-s22c.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s22c.log" | head -20
      for v in "" "PARALLM_WTILE_RING=96" "PARALLM_WTILE_RING=96 PARALLM_WTILE_PRE=1" "PARALLM_WTILE_RING=96 PARALLM_WTILE_PRE=1 PARALLM_CARVEOUT=100" \
               "" "PARALLM_WTILE_PRE=1" "PARALLM_WTILE_RING=64 PARALLM_WTILE_PRE=1 PARALLM_CARVEOUT=100" "PARALLM_CARVEOUT=100"; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b b16 ${v:-default}] /"
      done
      for r in 1 2; do
        timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x11008x4096" 2>&1 | grep -E "^gemv " | sed "s/^/[k$r] /"
      done ;;
    s22-d)
      # (PARALLM_DECODE_L2PF is on the branch wip/s22-experiments only: it lost, S22-6, and was removed.)
      # Nineteenth session: decode attention's cache rows read with ld.global.cs (evicted first), and the out
      # projection's weight asked of L2 while the attention runs (PARALLM_DECODE_L2PF=<parts>,<fraction>: S22's
      # PARALLM_DECODE_SKIP=attn put decode attention at ~12% of 7B's batch-16 step, at ~2.6 TB/s). The GPU tests of
      # both, then the build before (.device/old.tgz) against this one, and this one under each prefetch.
      timeout 200 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-s22d.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s22d.log" | head -20
      timeout 100 vitest run test/gpu/kernels.gpu.test.ts -t "l2Prefetch|decode attention|attention_decode|rope" > "$out/gpu-s22d-k.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s22d-k.log" | head -20
      mkdir -p /tmp/old && tar -xzf .device/old.tgz -C /tmp/old && ln -sfn "$PWD/node_modules" /tmp/old/node_modules
      for r in 1 2; do for b in old new; do
        [ $b = old ] && cli=/tmp/old/dist/cli/index.js || cli=dist/cli/index.js
        timeout 40 node $cli bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 $b] /"
        timeout 60 node $cli bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b $b] /"
      done; done
      for r in 1 2; do for v in "" 1,1 4,0.5 4,0.25 1,0.5; do
        env ${v:+PARALLM_DECODE_L2PF=$v} timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b l2pf=${v:-none}] /"
      done; done ;;
    s22-e)
      # (-DPARALLM_GEMV_EVICT_FIRST is on the branch wip/s22-experiments only: even, S22-10, and removed.)
      # Nineteenth session, last call: every single-GPU test on main's build (decode attention's cache rows read with
      # ld.global.cs); then that build against one whose GEMV marks its weight lines evict-first in L2 (.device/b.txz:
      # the same sources built with -DPARALLM_GEMV_EVICT_FIRST), alternating, and that one's GEMV tests.
      timeout 260 vitest run test/gpu > "$out/gpu-s22e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s22e.log" | head -30
      mkdir -p /tmp/b && cp -r dist package.json assets /tmp/b/ && tar -xJf .device/b.txz -C /tmp/b && ln -sfn "$PWD/node_modules" /tmp/b/node_modules
      for r in 1 2; do for b in main evict; do
        [ $b = main ] && cli=dist/cli/index.js || cli=/tmp/b/dist/cli/index.js
        timeout 40 node $cli bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 $b] /"
        timeout 60 node $cli bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b $b] /"
      done; done
      cp /tmp/b/build/Release/parallm.node build/Release/parallm.node  # (last: this call's main build is done with)
      timeout 60 vitest run test/gpu/kernels.gpu.test.ts -t "GEMV|gemv" > "$out/gpu-s22e-b.log" 2>&1; echo "vitest (evict) rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s22e-b.log" | head ;;
    s23-b)
      # Written in the nineteenth session for the next: 7B decode against compiled PyTorch with the peer run twice at
      # batch 1 and 16 (S22-7 and S22-9 found it at 172.1 and 201.3 at batch 1 on the same machine kind), parallm
      # before, between and after: the floors' ratios with the peer's own spread beside them.
      for b in 1 16; do timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch $b 2>&1 | tail -1 | sed "s/^/[7b b$b, before] /"; done
      for r in 1 2; do
        for b in 1 16; do
          timeout 200 python3 bench/peers/torch_compile_decode.py llama $b > "$out/peer-s23b-$r-$b.log" 2>&1; grep ANCHOR "$out/peer-s23b-$r-$b.log" | cut -c1-200
        done
        for b in 1 16; do timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch $b 2>&1 | tail -1 | sed "s/^/[7b b$b, after peer round $r] /"; done
      done ;;
    s26-a)
      # Twenty-second session: decode one step ahead (generate enqueues step s + 1 before it waits for step s's
      # tokens; PARALLM_DECODE_AHEAD=0 the step-at-a-time loop) and the rotating fused attention's PRE form (7B
      # batch 1; PARALLM_ATTN_PRE_ROPE=0 without). Their GPU tests: decode (the fused attention against the two
      # launches, PRE now on for LLaMA's rows), models (the tokens either way, readBegin's ordering), DP generate,
      # and the one-row GEMV cases (the new 1x4100x11008 edge among them).
      timeout 240 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-s26a-d.log" 2>&1; echo "vitest decode rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s26a-d.log" | head -20
      timeout 150 vitest run test/gpu/models.gpu.test.ts test/gpu/parallel.gpu.test.ts > "$out/gpu-s26a.log" 2>&1; echo "vitest models+parallel rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s26a.log" | head -20
      timeout 100 vitest run test/gpu/kernels.gpu.test.ts -t "GEMV|gemv" > "$out/gpu-s26a-k.log" 2>&1; echo "vitest gemv rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s26a-k.log" | head -10 ;;
    s26-b)
      # Then both ways, alternating: GPT-2 and 7B at batch 1 and 16 ahead or not, 7B batch 1 with and without the
      # PRE form; then the compiled-PyTorch peer at 7B batch 1 and 16 with parallm after it.
      for r in 1 2 3; do for v in "" PARALLM_DECODE_AHEAD=0 PARALLM_ATTN_PRE_ROPE=0; do
        [ -n "$v" ] && [ "$v" != PARALLM_DECODE_AHEAD=0 ] || env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 ${v:-default}] /"
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done
      for b in 1 16; do
        timeout 150 python3 bench/peers/torch_compile_decode.py llama $b > "$out/peer-s26b-$b.log" 2>&1; grep ANCHOR "$out/peer-s26b-$b.log" | cut -c1-200
      done
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b default, after the peer] /" ;;
    s26-c)
      # The fused rope + attention at batch 16 again, now with its PRE form (S17-2: even without it), against the
      # default (rope + KV write, then the attention); and the one-row GEMV edge case's test.
      timeout 100 vitest run test/gpu/kernels.gpu.test.ts -t "1x4100x11008" > "$out/gpu-s26c-k.log" 2>&1; echo "vitest 1x4100x11008 rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s26c-k.log" | head -10
      for r in 1 2 3; do for v in "" PARALLM_DECODE_FUSED_ATTN=1 "PARALLM_DECODE_FUSED_ATTN=1 PARALLM_ATTN_PRE_ROPE=0"; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s26-d)
      # What the rope + KV write launch costs inside 7B's batch-16 and 64 steps (PARALLM_DECODE_SKIP=rope: timing
      # only, the tokens are wrong): the most a fusion of it into the qkv product's split-K reduce can gain.
      for r in 1 2 3; do for v in "" PARALLM_DECODE_SKIP=rope PARALLM_DECODE_SKIP=attn; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s26-e)
      # The session's final build (decode ahead; the rotating fused attention's PRE at batch 1 only): every
      # single-GPU test, then the decode figures once.
      timeout 430 vitest run test/gpu > "$out/gpu-s26e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s26e.log" | head -30
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b] /" ;;
    s26-f)
      # 7B's batch-16 attention (~6 us a layer over its bytes, S25-6): the chunks merged by decode_combine's launch
      # instead of the split kernel's last block (PARALLM_DECODE_ATTN_COUNTER=0), and the key-chunk count forced
      # (PARALLM_DECODE_SPLITS), three rounds alternating.
      for r in 1 2 3; do for v in "" PARALLM_DECODE_ATTN_COUNTER=0 PARALLM_DECODE_SPLITS=2 "PARALLM_DECODE_SPLITS=2 PARALLM_DECODE_ATTN_COUNTER=0" PARALLM_DECODE_SPLITS=1; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s26-g)
      # The plain decode attention with two steps' loads in flight a group (PARALLM_DECODE_ATTN_PIPE=1, a switch of
      # that build, since removed: S25-9 measured it slower), 7B at 16 and 64, three rounds alternating.
      for r in 1 2 3; do for v in "" PARALLM_DECODE_ATTN_PIPE=1; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s26-i)
      # The qkv projection's split-K reduce doing decode's rope + KV write (linearRopeKvWrite; S25-6: the rope
      # launch ~2.8 us a layer at batch 16). Its tests first (decode: the new op against linear then ropeKvWrite
      # bit for bit, and LLaMA decode through it), then 7B at 16 and 64 with it and without
      # (PARALLM_DECODE_ROPE_IN_PROJECTION=0), three rounds alternating.
      timeout 240 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s26i.log" 2>&1; echo "vitest decode+models rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s26i.log" | head -20
      for r in 1 2 3; do for v in "" PARALLM_DECODE_ROPE_IN_PROJECTION=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s26-j)
      # The session's last build against compiled PyTorch at 7B batch 16, parallm before and after the peer.
      timeout 30 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b before] /"
      timeout 110 python3 bench/peers/torch_compile_decode.py llama 16 > "$out/peer-s26j.log" 2>&1; grep ANCHOR "$out/peer-s26j.log" | cut -c1-200
      timeout 30 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b after] /" ;;
    s28-f)
      # The final rule (one key chunk from three (sequence, head group) blocks an SM): 7B at 12 (three chunks again)
      # and 16, GPT-2 at 16 on 1, 2 and the chosen 6 chunks (for the rule's next step), then the compiled-PyTorch
      # peer at 7B batch 16 with parallm before and after it.
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 12,16 2>&1 | tail -2 | sed "s/^/[7b] /"
      for v in "" PARALLM_DECODE_SPLITS=1 PARALLM_DECODE_SPLITS=2; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 16 2>&1 | tail -1 | sed "s/^/[gpt2 ${v:-default}] /"
      done
      bash "$0" s26-j ;;
    s28-e)
      # The twenty-fourth session's final build (decode attention in one key chunk where its (sequence, head group)
      # blocks come to two an SM; the split-K reduces' last slices loaded at once; gate+up's reduce on 8 columns a
      # thread): every single-GPU test; the old chunk counts forced (PARALLM_DECODE_SPLITS) against the new rule where
      # it changes them (7B at 16 and 12: 3 before; GPT-2 at 64: 2), two rounds alternating; then the compiled-PyTorch
      # peer at 7B batch 16 with parallm before and after it.
      timeout 300 vitest run test/gpu > "$out/gpu-s28e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s28e.log" | head -30
      for r in 1 2; do for v in "" PARALLM_DECODE_SPLITS=3; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 12,16 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; for v in "" PARALLM_DECODE_SPLITS=2; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 64 2>&1 | tail -1 | sed "s/^/[gpt2 ${v:-default}] /"
      done; done
      bash "$0" s26-j ;;
    s28-d)
      # The split-K reduces triggering the next launch before their wait (PARALLM_REDUCE_EARLY=1, a knob of that build,
      # since removed: even in S27-4): the decode tests
      # under it, then 7B at 16 and 64 with and without, three rounds alternating. Decode attention's key chunks at
      # 7B batch 16 again (PARALLM_DECODE_SPLITS; 3 chosen: 1,536 blocks of 128 threads, more than one wave once the
      # third chunk holds keys), two rounds alternating; then the compiled-PyTorch peer at batch 1 with parallm
      # before and after it.
      PARALLM_REDUCE_EARLY=1 timeout 200 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-s28d.log" 2>&1; echo "vitest decode (early) rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s28d.log" | head -20
      for r in 1 2 3; do for v in "" PARALLM_REDUCE_EARLY=1; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done
      for r in 1 2; do for v in "" PARALLM_DECODE_SPLITS=1 PARALLM_DECODE_SPLITS=2 PARALLM_DECODE_SPLITS=4; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default}] /"
      done; done
      timeout 30 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 before] /"
      timeout 150 python3 bench/peers/torch_compile_decode.py llama 1 > "$out/peer-s28d.log" 2>&1; grep ANCHOR "$out/peer-s28d.log" | cut -c1-200
      timeout 30 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 after] /" ;;
    s28-c)
      # The split-K reduces' last group of slices loaded at once (splitk_sum2 / splitk_sum8: gate+up's three slices
      # were three latencies) and the gate+up reduce on 8 columns a thread (splitk_reduce_swiglu8): every single-GPU
      # test, then 7B at 16 and 64, the build before (.device/old.txz, sm_90a) against this one, three rounds
      # alternating, with what the gate+up reduce still costs (PARALLM_SKIP=gateup-reduce, timing only).
      timeout 300 vitest run test/gpu > "$out/gpu-s28c.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s28c.log" | head -30
      mkdir -p /tmp/ab/old && tar -xJf .device/old.txz -C /tmp/ab/old && cp build/Release/parallm.node /tmp/ab/new.node
      for r in 1 2 3; do for b in old new; do
        [ $b = old ] && cp /tmp/ab/old/build/Release/parallm.node build/Release/ || cp /tmp/ab/new.node build/Release/parallm.node
        timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[$b r$r 7b] /"
      done
        PARALLM_SKIP=gateup-reduce timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[new r$r 7b skip gateup-reduce] /"
      done
      cp /tmp/ab/new.node build/Release/parallm.node ;;
    s28-b)
      # Twenty-fourth session: what each of 7B's batch-16 products and split-K reduces costs inside the step as
      # replayed (PARALLM_SKIP, a timing knob: the W-as-A tile's launch or its reduce left out; the tokens are wrong),
      # against the attention's (PARALLM_DECODE_SKIP=attn), two rounds alternating; then the compiled-PyTorch peer at
      # batch 16 with parallm before and after it.
      for r in 1 2; do for v in "" PARALLM_SKIP=reduce PARALLM_SKIP=qkv PARALLM_SKIP=out PARALLM_SKIP=gateup PARALLM_SKIP=down PARALLM_SKIP=qkv-reduce PARALLM_SKIP=out-reduce PARALLM_SKIP=gateup-reduce PARALLM_SKIP=down-reduce PARALLM_DECODE_SKIP=attn; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default}] /"
      done; done
      bash "$0" s26-j ;;
    s35-e)
      # The session's last build (the draw policy taken out again, S35-3): the GPU tests of what changed (busySms, the
      # rehearsal; the training kernels are S35-1's); then the rehearsal as NCCL with
      # fewer channels would hold the GPU (fewer SMs, each bucket longer if the rate falls with them: NCCL_MAX_NCHANNELS,
      # s35-dp's question on two GPUs), GPT-2 at 64 x 128.
      timeout 120 vitest run test/gpu/matmul-schedule.gpu.test.ts test/gpu/bench.gpu.test.ts > "$out/gpu-s35e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|✗|FAIL|Test Files|Tests " "$out/gpu-s35e.log" | head -20
      timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128 --steps 30 2>&1 | tail -1 | sed "s/^/[plain] /"
      for a in 16:330 8:165 4:83; do
        timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128 --steps 30 --rehearse-dp $a 2>&1 | tail -1 | sed "s/^/[rehearse $a] /"
      done ;;
    s35-d)
      # The backward's matmuls drawing while buckets reduce (PARALLM_DP_DRAW, src/train/grad-buckets.ts), rehearsed on
      # one GPU (bench train --rehearse-dp SMS:GBPS: each 25 MiB bucket launched when DP launches it, a kernel holding
      # SMS SMs for bytes / GBPS on the buckets' stream; no bytes move). GPU tests first (the thread's schedule, busySms,
      # the rehearsal's losses bit for bit); then GPT-2 at 64 x 128 (a rank's share of DP's strong scaling) plain and
      # rehearsed at 16 SMs with each policy, two rounds; then 32 SMs. (The policy was taken out after this call, S35-3:
      # PARALLM_DP_DRAW is read no more.)
      timeout 200 vitest run test/gpu/matmul-schedule.gpu.test.ts test/gpu/bench.gpu.test.ts > "$out/gpu-s35d.log" 2>&1; echo "vitest rc=$?"; grep -E "×|✗|FAIL|Test Files|Tests " "$out/gpu-s35d.log" | head -20
      for r in 1 2; do
        timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128 --steps 30 2>&1 | tail -1 | sed "s/^/[plain r$r] /"
        for d in off launch backward; do
          PARALLM_DP_DRAW=$d timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128 --steps 30 --rehearse-dp 16:330 2>&1 | tail -1 | sed "s/^/[rehearse16 $d r$r] /"
        done
      done
      for d in off launch backward; do
        PARALLM_DP_DRAW=$d timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128 --steps 30 --rehearse-dp 32:330 2>&1 | tail -1 | sed "s/^/[rehearse32 $d] /"
      done
      # weak scaling's share (128 a GPU)
      for d in off launch backward; do
        PARALLM_DP_DRAW=$d timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 128x128 --steps 30 --rehearse-dp 16:330 2>&1 | tail -1 | sed "s/^/[rehearse16 128x128 $d] /"
      done ;;
    s35-c)
      # S35-2: the copy lost too beside held SMs, but cudaMemcpy's own grid may be persistent. Controls whose grids are
      # not: AdamW (grid-stride over 8.4 M) and prefill attention (512 blocks); and the holding blocks reading the
      # host's flag every 2 us (the default) against every 500 us (PARALLM_HOLD_POLL_US).
      f="8192x2304x768 16384x3072x768 adamw T2048"
      for b in 0 16; do
        for poll in 2 500; do
          [ $b -eq 0 ] && [ $poll -eq 500 ] && continue
          a=""; [ $b -gt 0 ] && a="--busy-sms $b"
          PARALLM_HOLD_POLL_US=$poll timeout 60 node dist/cli/index.js bench kernels --filter $f $a 2>&1 | grep -E "^gemm|^adamw|^attention|rror" | sed "s/^/[k strided busy$b poll$poll] /" | cut -c1-150
        done
      done
      PARALLM_HOLD_POLL_US=500 PARALLM_GEMM_SCHEDULE=drawn timeout 60 node dist/cli/index.js bench kernels --filter $f --busy-sms 16 2>&1 | grep -E "^gemm|^adamw|^attention|rror" | sed "s/^/[k drawn busy16 poll500] /" | cut -c1-150 ;;
    s35-b)
      # S35-1's GEMMs beside held SMs ran 3-30x slower than alone, far more than the late blocks' extra round would
      # cost (at most 2x): is it the GEMMs or the hold? The copy (a grid that is not persistent) as the control; held
      # counts 2, 8, 16; strided and drawn; lazy module loading off (EAGER) once.
      f="8192x2304x768 16384x3072x768 copy"
      for b in 0 2 8 16; do
        for sch in strided drawn; do
          a=""; [ $b -gt 0 ] && a="--busy-sms $b"
          PARALLM_GEMM_SCHEDULE=$sch timeout 60 node dist/cli/index.js bench kernels --filter $f $a 2>&1 | grep -E "^gemm|^copy|rror" | sed "s/^/[k $sch busy$b] /" | cut -c1-150
        done
      done
      CUDA_MODULE_LOADING=EAGER PARALLM_GEMM_SCHEDULE=strided timeout 60 node dist/cli/index.js bench kernels --filter $f --busy-sms 16 2>&1 | grep -E "^gemm|^copy|rror" | sed "s/^/[k eager strided busy16] /" | cut -c1-150 ;;
    s35-a)
      # The twenty-ninth session's last build, not yet on a GPU: the 128-row tile's strided loop as before and its drawn
      # form a second instantiation (DRAWN); hold.cu's expiry check; bench kernels --busy-sms (one call before the hold:
      # s34-c/d's held runs hung, likely each case's first launch waiting for the holding kernel, lazy module loading).
      # The schedule's and the sm90 GPU tests; GPT-2 training strided (the default) / drawn / drawn-after-own, two rounds;
      # the GEMMs beside 16 and 32 held SMs each way; the training tests.
      timeout 200 vitest run test/gpu/matmul-schedule.gpu.test.ts test/gpu/kernels.gpu.test.ts -t "drawn|sm90|192|weight-gradient|split-K|64-row|W-as-A|tensor-core|graph" > "$out/gpu-s35a-k.log" 2>&1; echo "vitest kernels rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s35a-k.log" | head -20
      for r in 1 2; do
        for sch in strided drawn drawn-after-own; do
          PARALLM_GEMM_SCHEDULE=$sch timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train $sch r$r] /"
        done
      done
      f="8192x768x3072 16384x3072x768 3072x768x8192 8192x2304x768"
      for b in 0 16 32; do
        for sch in strided drawn drawn-after-own; do
          a=""; [ $b -gt 0 ] && a="--busy-sms $b"
          PARALLM_GEMM_SCHEDULE=$sch timeout 60 node dist/cli/index.js bench kernels --filter $f $a 2>&1 | grep -E "^gemm|rror" | sed "s/^/[k $sch busy$b] /" | cut -c1-150
        done
      done
      timeout 200 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-s35a-train.log" 2>&1; echo "vitest train rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s35a-train.log" | head -20 ;;
    s35-dp)
      # Two GPUs (nvidia-h200-x2): issue 12's DP strong-scaling floor with each tile schedule (does drawing help the GEMMs
      # that share the GPU with NCCL?), one GPU in the same runs; then strided again (the call's drift).
      for sch in strided drawn drawn-after-own strided; do
        PARALLM_GEMM_SCHEDULE=$sch timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies single,dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 2>&1 | tail -3 | sed "s/^/[dp $sch] /"
      done
      # Fewer NCCL channels hold fewer SMs beside the backward's GEMMs (S10-10 tried only more: 16, 32).
      for ch in 2 4 8; do
        for sch in strided drawn; do
          NCCL_MAX_NCHANNELS=$ch PARALLM_GEMM_SCHEDULE=$sch timeout 120 node dist/cli/index.js bench train --devices cuda:0,cuda:1 --strategies dp --scaling strong --bucket-mb 25 --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[dp $sch ch$ch] /"
        done
      done ;;
    s35-strat)
      # Two GPUs: issue 13's rule, the strategy figures re-measured after the kernel changes since they were last taken
      # (S14-4 … S14-6): DP generation (GPT-2, 512 prompts, 64 a device), PP decode (LLaMA-2-7B, batch 256, two
      # micro-batches), the prefill strategies (LLaMA-2-7B 32 x 512: one GPU, MP, PP with 8 micro-batches). (Every GPU
      # test on two GPUs: the `tests` part, a call of its own.)
      timeout 150 node dist/cli/index.js bench --model gpt2 --strategies single,dp --prompts 512 --batch 64 --repeats 2 2>&1 | tail -3 | sed "s/^/[dp] /"
      timeout 150 node dist/cli/index.js bench --model llama-2-7b --strategies pp --batch 256 --prompt-tokens 128 --new-tokens 64 --micro-batches 2 --repeats 2 2>&1 | tail -2 | sed "s/^/[pp-decode] /"
      timeout 200 node dist/cli/index.js bench --model llama-2-7b --strategies single,mp,pp --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --repeats 3 2>&1 | tail -4 | sed "s/^/[prefill] /" ;;
    s34-d)
      # s34-c's held-SM GEMMs again (bench kernels' timing no longer waits on every stream: s34-c's waited out the holding
      # kernel's 30 s): beside 16 and 32 SMs held, strided, drawn, drawn after each block's own first unit.
      f="8192x768x3072 16384x3072x768 3072x768x8192 8192x2304x768"
      for b in 16 32; do
        for sch in strided drawn drawn-after-own; do
          PARALLM_GEMM_SCHEDULE=$sch timeout 40 node dist/cli/index.js bench kernels --filter $f --busy-sms $b 2>&1 | grep -E "^gemm|rror" | sed "s/^/[k $sch busy$b] /" | cut -c1-150
        done
      done ;;
    s34-c)
      # s34-b's GEMMs again with the filters right (a case a word: no case matched two), alone and beside 16 and 32 SMs
      # held by another stream's kernel: strided, drawn, and drawn after each block's own first unit (drawn-after-own:
      # no atomic before a block's first loads); then GPT-2 training at 64 and 128 the three ways.
      f="8192x768x3072 8192x2304x768 16384x3072x768 3072x768x8192 2304x768x16384 4096x4096x4096"
      for b in 0 16 32; do
        for sch in strided drawn drawn-after-own; do
          a=""; [ $b -gt 0 ] && a="--busy-sms $b"
          PARALLM_GEMM_SCHEDULE=$sch timeout 60 node dist/cli/index.js bench kernels --filter $f $a 2>/dev/null | grep -E "^gemm" | sed "s/^/[k $sch busy$b] /" | cut -c1-140
        done
      done
      for sch in strided drawn drawn-after-own; do
        PARALLM_GEMM_SCHEDULE=$sch timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train $sch] /"
      done ;;
    s34-b)
      # The sm90 tile's blocks drawing their tiles from a counter (matmul.cu's tile_counter; PARALLM_GEMM_SCHEDULE=strided
      # the old striding): its GPU tests and the sm90 ones; GEMMs alone and beside 16 SMs held by another stream's
      # kernel (--busy-sms, as NCCL's blocks hold them in DP training), drawn and strided; GPT-2 training at 64 and 128
      # both ways, two rounds alternating; decode both ways (the first draw sits before each tile's first load); the
      # training GPU tests.
      timeout 200 vitest run test/gpu/matmul-schedule.gpu.test.ts test/gpu/kernels.gpu.test.ts -t "drawn|sm90|192|weight-gradient|split-K|64-row|W-as-A|tensor-core|graph" > "$out/gpu-s34b-k.log" 2>&1; echo "vitest kernels rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s34b-k.log" | head -20
      f="gemm 8192x gemm 16384x3072 gemm-dw 3072x768x8192 gemm-dw 2304x768x16384 gemm 4096x4096x4096"
      for b in 0 16; do
        for sch in drawn strided; do
          a=""; [ $b -gt 0 ] && a="--busy-sms $b"
          PARALLM_GEMM_SCHEDULE=$sch timeout 60 node dist/cli/index.js bench kernels --filter $f $a 2>/dev/null | grep -E "^ *gemm" | sed "s/^/[k $sch busy$b] /"
        done
      done
      for r in 1 2; do
        for sch in drawn strided; do
          PARALLM_GEMM_SCHEDULE=$sch timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train $sch r$r] /"
        done
      done
      for sch in drawn strided; do
        PARALLM_GEMM_SCHEDULE=$sch timeout 100 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b $sch] /"
        PARALLM_GEMM_SCHEDULE=$sch timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 $sch] /"
      done
      timeout 200 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-s34b-train.log" 2>&1; echo "vitest train rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s34b-train.log" | head -20 ;;
    s34-a)
      # Twenty-ninth session: every kernel of GPT-2's op-by-op training steps at 64 x 128 and 128 x 128 under Nsight
      # Compute (PARALLM_TRAIN_GRAPH=0, each kernel timed alone, 2 steps after the warm-up), to set the kernels' sum
      # against the graph step's time at each shape (what does not halve with the batch: launches and gaps, or
      # kernels); the graph steps and the PyTorch peer (the seed's recipe) at 128 in the same call.
      ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
      m=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size
      for s in 64 128; do
        PARALLM_TRAIN_GRAPH=0 timeout 200 "$ncu" --clock-control none --cache-control none --metrics $m --csv \
          --launch-count 8000 --log-file "$out/ncu-train-$s.csv" \
          node dist/cli/index.js bench train --model gpt2 --shapes ${s}x128 --steps 2 2>&1 | tail -1 | sed "s/^/[ncu train $s] /"
        echo "[ncu train $s] $(wc -l < "$out/ncu-train-$s.csv") lines"
      done
      for r in 1 2; do
        timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train r$r] /"
      done
      timeout 150 python3 bench/peers/torch_train.py 128x128 > "$out/peer-train.log" 2>&1; grep ANCHOR "$out/peer-train.log" | cut -c1-200 ;;
    s33-a)
      # Twenty-eighth session: gradients stored, not added, on their first write after zeroGrad (FlatParams.takeZeroed:
      # no dW scratch and add); the norms' dgamma and dbeta summed in one launch (reduce.cuh's colsum_n, a short sum in
      # one launch); the up bias's gradient summed in the GELU backward's pass (geluBackward with biasGrad), the
      # attention-out and MLP-down biases' in the layernorm backward's (layernormBackward with dxSum): the changed
      # kernels' GPU tests; GPT-2 training at 64 and 128, the session's start (.device/old.txz: 41c211c's dist and
      # addon) against this build, two rounds alternating, and each change switched off alone; the training tests.
      # (Written in the twenty-eighth session, which got no GPU: not yet run.)
      tar -xJf .device/old.txz -C /tmp && ln -sfn "$PWD/node_modules" /tmp/old/node_modules
      timeout 240 vitest run test/gpu/grad-kernels.gpu.test.ts -t "sumRows|Backward [0-9]|crossEntropy|sumSquares" > "$out/gpu-s33a-k.log" 2>&1; echo "vitest kernels rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s33a-k.log" | head -20
      for r in 1 2; do
        (cd /tmp/old && timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train old r$r] /")
        timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train new r$r] /"
      done
      # (PARALLM_GRAD_STORE=0 adds every gradient as before; PARALLM_BIAS_IN_GELU=0 sums the up bias's gradient apart,
      # as before; PARALLM_BIAS_IN_NORM=0 the out and down biases')
      for v in PARALLM_GRAD_STORE=0 PARALLM_BIAS_IN_GELU=0 PARALLM_BIAS_IN_NORM=0; do
        env $v timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train $v] /"
      done
      timeout 200 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-s33a-train.log" 2>&1; echo "vitest train rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s33a-train.log" | head -20 ;;
    s32-h)
      # Review: the attention backward kernels' stores through one helper (store_rows; the same bits): their GPU tests
      # and the training tests.
      timeout 240 vitest run test/gpu/grad-kernels.gpu.test.ts -t "attention" > "$out/gpu-s32h-attn.log" 2>&1; echo "vitest attention rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s32h-attn.log" | head -20
      timeout 300 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-s32h-train.log" 2>&1; echo "vitest train rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s32h-train.log" | head -20
      timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 128x128 --steps 30 2>&1 | tail -1 | sed "s/^/[train] /" ;;
    s32-g)
      # The layernorm backward's block count (PARALLM_NORM_BWD_BLOCKS, a knob of that call's build only, removed after it:
      # bench/RESULTS.md S32-6; 512 in norm.cu): GPT-2 training at 64 and 128 sequences with 512, 1024 and 2048 blocks,
      # two rounds alternating; then the norm's GPU tests with 2048.
      for r in 1 2; do for n in 512 1024 2048; do
        PARALLM_NORM_BWD_BLOCKS=$n timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train blocks=$n r$r] /"
      done; done
      PARALLM_NORM_BWD_BLOCKS=2048 timeout 200 vitest run test/gpu/grad-kernels.gpu.test.ts -t "norm" > "$out/gpu-s32g.log" 2>&1; echo "vitest norm (2048) rc=$?"; grep -E "×|Test Files|Tests " "$out/gpu-s32g.log" | head -10 ;;
    s32-f)
      # Every kernel of GPT-2's training steps at 128 x 128 under Nsight Compute (op by op, PARALLM_TRAIN_GRAPH=0; each
      # kernel timed alone; 2 warm-up and 2 timed steps), and the one-kernel attention backward's sections.
      ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
      m=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size
      PARALLM_TRAIN_GRAPH=0 timeout 240 "$ncu" --clock-control none --cache-control none --metrics $m --csv \
        --launch-count 8000 --log-file "$out/ncu-train.csv" \
        node dist/cli/index.js bench train --model gpt2 --shapes 128x128 --steps 2 2>&1 | tail -1 | sed "s/^/[ncu train] /"
      echo "[ncu train] $(wc -l < "$out/ncu-train.csv") lines"
      PARALLM_TRAIN_GRAPH=0 timeout 120 "$ncu" --clock-control none --kernel-name regex:bwd_short_mma --launch-skip 24 \
        --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
        --section MemoryWorkloadAnalysis --log-file "$out/ncu-bwd-short.txt" \
        node dist/cli/index.js bench train --model gpt2 --shapes 128x128 --steps 2 2>&1 | tail -1 | sed "s/^/[ncu short] /"
      grep -E "Duration|Throughput|Occupancy|Registers|Stall|Warp Cycles|Eligible|Issued" "$out/ncu-bwd-short.txt" | head -40 ;;
    s32-e)
      # The session's final build: every single-GPU test; GPT-2 training at 64 and 128 sequences and the PyTorch peer
      # (the seed's recipe) at 128 in the same call; decode figures (7B at 1, 16, 64; GPT-2 at 1) as a check that the
      # matmul dispatch's new width left them alone.
      timeout 330 vitest run test/gpu > "$out/gpu-s32e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s32e.log" | head -30
      timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train] /"
      timeout 150 python3 bench/peers/torch_train.py 128x128 > "$out/peer-train.log" 2>&1; grep ANCHOR "$out/peer-train.log" | cut -c1-200
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b] /"
      timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /" ;;
    s32-d)
      # The one-kernel attention backward for T <= 128 (attention.cu's bwd_short_mma; PARALLM_ATTN_BWD_SHORT=0 the
      # three kernels): the attention and training GPU tests, GPT-2 training at 64 and 128 sequences both ways (two
      # rounds, alternating), and the op groups at 128 with it.
      timeout 240 vitest run test/gpu/grad-kernels.gpu.test.ts -t "attention" > "$out/gpu-s32d-attn.log" 2>&1; echo "vitest attention rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s32d-attn.log" | head -30
      timeout 300 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts > "$out/gpu-s32d-train.log" 2>&1; echo "vitest train rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s32d-train.log" | head -30
      for r in 1 2; do for v in "" PARALLM_ATTN_BWD_SHORT=0; do
        env $v timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train ${v:-short} r$r] /"
      done; done
      for v in "" PARALLM_ATTN_BWD_SHORT=0; do
        env $v timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 128x128 --steps 20 --profile 2>&1 | grep -E "bwd attention|tokens/s" | sed "s/^/[profile ${v:-short}] /"
      done ;;
    s32-c)
      # The 192-column tile against 256 on single products (PARALLM_TILE192=0: 256 always; =all: 192 always) at 8,192
      # rows (GPT-2's linears at 64 sequences) and the dW products; GPT-2 generation at batch 64 (a prefill of 8,192
      # rows) and LLaMA-1B training, each with the rule and with 256 only.
      for v in "" PARALLM_TILE192=0 PARALLM_TILE192=all; do
        env $v timeout 90 node dist/cli/index.js bench kernels --filter "gemm 8192x" "gemm 16384x" gemm-dw 2>&1 | grep -E "^ +gemm" | sed "s/^/[kernels ${v:-auto}] /"
      done
      for r in 1 2; do for v in "" PARALLM_TILE192=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 64 2>&1 | tail -1 | sed "s/^/[gpt2 gen ${v:-auto} r$r] /"
        env $v timeout 120 node dist/cli/index.js bench train --model llama-1b --shapes 16x1024 --steps 10 2>&1 | tail -1 | sed "s/^/[llama-1b train ${v:-auto} r$r] /"
      done; done ;;
    s32-b)
      # The 128-row tile 192 columns wide where its tiles fill the last round better (matmul.cu's sm90_width;
      # PARALLM_TILE192=0 keeps 256): its kernel tests, the training and model GPU tests, GPT-2's dW products both ways,
      # GPT-2 training at 64 and 128 sequences both ways (two rounds, alternating), and the op groups with it.
      timeout 240 vitest run test/gpu/kernels.gpu.test.ts -t "192|weight-gradient|split-K|sm90|tensor-core|64-row" > "$out/gpu-s32b.log" 2>&1; echo "vitest kernels rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s32b.log" | head -30
      timeout 300 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts test/gpu/grad-kernels.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s32b-train.log" 2>&1; echo "vitest train+models rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s32b-train.log" | head -30
      for v in "" PARALLM_TILE192=0; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter gemm-dw 2>&1 | grep -E "^ +gemm-dw" | sed "s/^/[dw ${v:-auto}] /"
      done
      for r in 1 2; do for v in "" PARALLM_TILE192=0; do
        env $v timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -2 | sed "s/^/[train ${v:-auto} r$r] /"
      done; done
      timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 20 --profile 2>&1 | tail -90 > "$out/train-profile-s32b.log"; echo "profile rc=$?"
      PARALLM_TILE192=0 timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128 --steps 20 --profile 2>&1 | tail -40 > "$out/train-profile-s32b-256.log"; echo "profile 256 rc=$?" ;;
    s32-a)
      # Twenty-seventh session: stream-K for the 128-row sm90 tile's weight-gradient products (matmul.cu's
      # sm90_streamk, reverted after this call: bench/RESULTS.md S32-1; PARALLM_STREAMK=0 the wave rule's K slices, as
      # before): its kernel tests and the training GPU
      # tests, GPT-2's dW products both ways, GPT-2 training at 64 and 128 sequences both ways (two rounds,
      # alternating), and the op groups with stream-K.
      timeout 240 vitest run test/gpu/kernels.gpu.test.ts -t "stream-K|weight-gradient|split-K|sm90|tensor-core|64-row" > "$out/gpu-s32a.log" 2>&1; echo "vitest kernels rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s32a.log" | head -30
      timeout 300 vitest run test/gpu/train.gpu.test.ts test/gpu/grad-references.gpu.test.ts test/gpu/train-graph.gpu.test.ts test/gpu/grad-kernels.gpu.test.ts > "$out/gpu-s32a-train.log" 2>&1; echo "vitest train rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s32a-train.log" | head -30
      for v in "" PARALLM_STREAMK=0; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter gemm-dw 2>&1 | grep -E "gemm-dw" | sed "s/^/[dw ${v:-streamk}] /"
      done
      for r in 1 2; do for v in "" PARALLM_STREAMK=0; do
        env $v timeout 90 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 30 2>&1 | tail -3 | sed "s/^/[train ${v:-streamk} r$r] /"
      done; done
      timeout 120 node dist/cli/index.js bench train --model gpt2 --shapes 64x128,128x128 --steps 20 --profile 2>&1 | tail -90 > "$out/train-profile-s32.log"; echo "profile rc=$?" ;;
    s31-e)
      # s31-d cut to the device time left: every single-GPU test on the final build, 7B at 1, 16, 64, batch 64 without
      # the shared workspaces and with every tile early, GPT-2 at 1, then the compiled-PyTorch peer at 7B batch 16 with
      # parallm before and after it.
      timeout 300 vitest run test/gpu > "$out/gpu-s31e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s31e.log" | head -30
      timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b default] /"
      for v in PARALLM_CAPTURE_WORKSPACE=0 PARALLM_PDL_PARTIAL_TILE=1; do
        env $v timeout 40 node dist/cli/index.js bench generate --model llama-2-7b --batch 64 2>&1 | tail -1 | sed "s/^/[7b $v] /"
      done
      timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /"
      bash "$0" s26-j ;;
    s31-d)
      # The final build: the capture's shared workspaces (every slot) with only near-full-grid tiles launched early
      # (matmul.cu's tile_pdl; S31-3's timelines: partial grids launched early ran 4-6 µs longer): every single-GPU
      # test, then 7B at 1, 16, 64 and GPT-2 at 1 with and without the shared workspaces, and with every tile early
      # (PARALLM_PDL_PARTIAL_TILE=1), two rounds alternating.
      timeout 300 vitest run test/gpu > "$out/gpu-s31d.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s31d.log" | head -30
      for r in 1 2; do for v in "" PARALLM_CAPTURE_WORKSPACE=0 PARALLM_PDL_PARTIAL_TILE=1; do
        env $v timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done
      timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /" ;;
    s31-c)
      # The kernel timelines (a PARALLM_TRACE build, .device/trace.txz) of 7B's step at batch 64 and 16 with every slot
      # of the capture's workspaces shared (the default) and with the split-K partials alone (S31-2: batch 64 lost
      # 3.6% once the scratch was shared too, batch 16 gained 0.7%); each report the mean over the rings' steps.
      mkdir -p /tmp/tr && tar -xJf .device/trace.txz -C /tmp/tr && cp /tmp/tr/build/Release/parallm.node build/Release/parallm.node
      for b in 64 16; do for v in "" PARALLM_CAPTURE_WORKSPACE=splitk; do
        tag="b$b-${v#PARALLM_CAPTURE_WORKSPACE=}"; tag=${tag%-}
        env $v PARALLM_TRACE_OUT=/tmp/trace.csv timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch $b 2>&1 | tail -1 | sed "s/^/[trace $tag] /"
        timeout 90 node bench/trace-report.mjs /tmp/trace.csv --mean > "$out/report-$tag.txt" 2>&1; echo "report $tag rc=$?"; rm -f /tmp/trace.csv
      done; done ;;
    s31-b)
      # Which of the capture's shared slots costs 7B batch 64 (S31-1: -4.2% with all, +1.4% at 16, +2.6% at 1):
      # PARALLM_CAPTURE_WORKSPACE naming the slots shared, two rounds alternating.
      for r in 1 2; do for v in "" PARALLM_CAPTURE_WORKSPACE=0 PARALLM_CAPTURE_WORKSPACE=splitk PARALLM_CAPTURE_WORKSPACE=attn,rows,argmax,layer,scratch PARALLM_CAPTURE_WORKSPACE=splitk,scratch PARALLM_CAPTURE_WORKSPACE=splitk,attn; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done ;;
    s31-a)
      # Twenty-sixth session: the capture's shared workspaces (native/cuda/workspace.h: a graph's split-K partials,
      # attention partials, argmax winners and scratch in buffers its capture allocates once, so no allocation or free
      # node stands between two kernels and every W-as-A tile may launch with PDL; PARALLM_CAPTURE_WORKSPACE=0 the
      # allocation and free per call, as before) and the largest shared-memory carveout on every PDL launch
      # (PARALLM_CARVEOUT_MAX=1, a trial): the decode and model GPU tests, then 7B at 1, 16, 64 and GPT-2 at 1, 16 in
      # the three settings, two rounds alternating.
      timeout 240 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s31a.log" 2>&1; echo "vitest decode+models rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s31a.log" | head -20
      for r in 1 2; do for v in "" PARALLM_CAPTURE_WORKSPACE=0 PARALLM_CARVEOUT_MAX=1; do
        env $v timeout 90 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b ${v:-default} r$r] /"
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2 ${v:-default} r$r] /"
      done; done ;;
    s30-e)
      # The session's final build against compiled PyTorch at each of issue 13's decode floors in one call: parallm's
      # figures, then the peer at 7B batch 16, 64 and 1 and GPT-2 batch 1 (its compile apart), parallm at 16 again.
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[7b] /"
      timeout 30 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2] /"
      for c in "llama 16:100" "llama 64:110" "llama 1:95" "gpt2 1:70"; do
        timeout "${c#*:}" python3 bench/peers/torch_compile_decode.py ${c%:*} > "$out/peer-s30e.log" 2>&1; grep ANCHOR "$out/peer-s30e.log" | cut -c1-200
      done
      timeout 30 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b after] /" ;;
    s30-d)
      # SwiGLU in gate+up's split-K reduce on by default (PARALLM_REDUCE_SWIGLU=0 the reduce then silu_gate, as
      # before: off by default since S20-2, so S27-3's 8-column form never ran in decode; S29-5's kernel timeline
      # showed silu_gate's launch and gap): every single-GPU test; 7B at 16 and 64 with and without it, two rounds;
      # the compiled-PyTorch peer at batch 16 with parallm before and after it.
      timeout 430 vitest run test/gpu > "$out/gpu-s30d.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s30d.log" | head -30
      for r in 1 2; do for v in "" PARALLM_REDUCE_SWIGLU=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done
      bash "$0" s26-j ;;
    s30-c)
      # The session's final build (the SUM form only as PRE, else the two launches; GPT-2's keys in one chunk where a
      # group's cache is 64 KiB or less): every single-GPU test; 7B at 16 with and without the SUM form, two rounds;
      # the decode figures; the compiled-PyTorch peer at 7B batch 16 with parallm before and after it.
      timeout 430 vitest run test/gpu > "$out/gpu-s30c.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s30c.log" | head -30
      for r in 1 2; do for v in "" PARALLM_DECODE_ATTN_IN_PROJECTION=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done
      timeout 60 node dist/cli/index.js bench generate --model gpt2 --batch 1,16,64 2>&1 | tail -3 | sed "s/^/[gpt2] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,64 2>&1 | tail -2 | sed "s/^/[7b] /"
      bash "$0" s26-j ;;
    s30-b)
      # The SUM form with the block's rows summed into shared memory first (sum_rows: every slice's load in flight
      # at once; S30-1's per-thread sums lost 2-4%): its tests, 7B at 16 in three settings, two rounds; GPT-2 at 1-2
      # on one chunk against the chosen four, two more rounds (S30-1's batch-1 run was noisy: mean -12%, median +5%).
      timeout 200 vitest run test/gpu/decode.gpu.test.ts -t "linearRopeKvAttentionDecode|LLaMA" > "$out/gpu-s30b.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s30b.log" | head -20
      for r in 1 2; do for v in "" PARALLM_DECODE_ATTN_IN_PROJECTION=0 PARALLM_ATTN_PRE_SUM=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done
      for r in 1 2; do for v in "" PARALLM_DECODE_SPLITS=1; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,2 2>&1 | tail -2 | sed "s/^/[gpt2 ${v:-default} r$r] /"
      done; done ;;
    s30-a)
      # Twenty-fifth session: the qkv product's split-K slices summed by decode attention itself
      # (linearRopeKvAttentionDecode; on by default, PARALLM_DECODE_ATTN_IN_PROJECTION=0 the reduce + attention
      # apart, PARALLM_ATTN_PRE_SUM=0 its form without PRE): its GPU tests with the decode and model tests, then 7B
      # at 16 in three settings, two rounds alternating; then one key chunk against the chosen count where no
      # figure has said yet (GPT-2 at 1-2, 7B at 1-8).
      timeout 240 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s30a.log" 2>&1; echo "vitest decode+models rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s30a.log" | head -20
      for r in 1 2; do for v in "" PARALLM_DECODE_ATTN_IN_PROJECTION=0 PARALLM_ATTN_PRE_SUM=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default} r$r] /"
      done; done
      for v in "" PARALLM_DECODE_SPLITS=1; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,2 2>&1 | tail -2 | sed "s/^/[gpt2 ${v:-default}] /"
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,4,8 2>&1 | tail -3 | sed "s/^/[7b ${v:-default}] /"
      done ;;
    s29-a)
      # Written in the twenty-fourth session for the next (main as it stands, nothing new to build): the pipelined
      # GEMV (gemv_pipe_kernel: 8-row tiles split evenly over one block an SM, no K slices, so no reduce) at the four
      # 16-row 7B products against the W-as-A tile with its reduce (the default) and the 32-row register GEMV, never
      # timed at 16 rows since the second session; GPT-2 at 16 on one and four (chosen) key chunks, two more rounds
      # (S27-6's one round: +3.7% on one); 7B at 16 with decode attention left out (its cost in one chunk).
      timeout 150 node dist/cli/index.js bench kernels --filter "gemv 16x4096x4096" "gemv-pipe 16x4096x4096" "gemv-reg32 16x4096x4096" "gemv 16x4096x11008" "gemv-pipe 16x4096x11008" "gemv-reg32 16x4096x11008" "gemv 16x12288x4096" "gemv-pipe 16x12288x4096" "gemv-reg32 16x12288x4096" "gemv 16x22016x4096" "gemv-pipe 16x22016x4096" "gemv-reg32u2 16x22016x4096" 2>&1 | grep -E "16x(4096|12288|22016)" | head -40
      for r in 1 2; do for v in "" PARALLM_DECODE_SPLITS=1 PARALLM_DECODE_SPLITS=2; do
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 4,8,16 2>&1 | tail -3 | sed "s/^/[gpt2 ${v:-default} r$r] /"
      done; done
      for v in "" PARALLM_DECODE_SKIP=attn; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default}] /"
      done ;;
    s28-a)
      # Twenty-fourth session: which of 7B's batch-16 products gain on the register GEMV on 32 W rows a block where
      # they add no launch (PARALLM_WIDE, a measurement knob of that build, since removed: S27-1 measured every form
      # slower; "swiglu" dropped gate+up's reduce; "rope", "out" and "down" put the rope or the norm back in a launch). Decode and models tests with every product on
      # it, then 7B at 16 in five settings, three rounds alternating.
      PARALLM_WIDE=swiglu,rope,out,down timeout 240 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s28a.log" 2>&1; echo "vitest decode+models (wide) rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s28a.log" | head -20
      for r in 1 2 3; do for v in "" PARALLM_WIDE=swiglu PARALLM_WIDE=swiglu,rope PARALLM_WIDE=swiglu,out PARALLM_WIDE=swiglu,down; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s27-a)
      # Twenty-third session, main with two candidates for 7B at batch 16, defaults unchanged: every single-GPU test
      # (the new GEMV paths 8-10 against path 0 bit for bit among them), then the 16-row products on each GEMV
      # form: the W-as-A tile with its reduce (default), the register kernel on 8 / 16 / 32 / 64 W rows a block (64:
      # path 10 of that build, since removed, so its filters now match nothing).
      timeout 430 vitest run test/gpu > "$out/gpu-s27a.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s27a.log" | head -30
      timeout 150 node dist/cli/index.js bench kernels --filter "gemv 16x4096x4096" "gemv-reg 16x4096x4096" "gemv-reg16 16x4096x4096" "gemv-reg32 16x4096x4096" "gemv-reg32u2 16x4096x4096" "gemv-reg64u2 16x4096x4096" "gemv 16x4096x11008" "gemv-reg 16x4096x11008" "gemv-reg16 16x4096x11008" "gemv-reg32 16x4096x11008" "gemv-reg32u2 16x4096x11008" "gemv-reg64u2 16x4096x11008" "gemv 16x12288x4096" "gemv-reg32 16x12288x4096" "gemv-reg32u2 16x12288x4096" "gemv-reg64u2 16x12288x4096" "gemv 16x22016x4096" "gemv-reg32 16x22016x4096" "gemv-reg32u2 16x22016x4096" "gemv-reg64u2 16x22016x4096" 2>&1 | grep -E "16x(4096|12288|22016)" | head -60 ;;
    s27-b)
      # Two candidates for 7B at batch 16, off by default: the plain decode attention's PRE form after the qkv
      # reduce (PARALLM_ATTN_PRE_PLAIN=1: the rows below lens - 1 loaded before the PDL wait, the kernel launched
      # with PDL) and the products of 9-16 rows on the register GEMV on 32 W rows a block instead of the W-as-A tile
      # (PARALLM_GEMV_WIDE=1, a switch of that build, since removed: S26-2/S26-4 measured it slower; the norms and
      # the rope then ran apart). Decode and models tests with both on, then 7B at 16 in five settings, three rounds
      # alternating.
      PARALLM_ATTN_PRE_PLAIN=1 PARALLM_GEMV_WIDE=1 timeout 240 vitest run test/gpu/decode.gpu.test.ts test/gpu/models.gpu.test.ts > "$out/gpu-s27b.log" 2>&1; echo "vitest decode+models rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s27b.log" | head -20
      for r in 1 2 3; do for v in "" PARALLM_GEMV_WIDE=1 PARALLM_ATTN_PRE_PLAIN=1 "PARALLM_GEMV_WIDE=1 PARALLM_ATTN_PRE_PLAIN=1" "PARALLM_GEMV_WIDE=1 PARALLM_PDL=2"; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s27-c)
      # PARALLM_GEMV_WIDE's SwiGLU product on its own grid (S26-3's ncu: twice the blocks, half of them idle, 71 us
      # for gate+up; the switch since removed): its tests, then 7B at 16 in four settings, three rounds alternating.
      PARALLM_GEMV_WIDE=1 timeout 120 vitest run test/gpu/decode.gpu.test.ts -t "linearSwiGLU|LLaMA" > "$out/gpu-s27c.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s27c.log" | head -20
      for r in 1 2 3; do for v in "" PARALLM_GEMV_WIDE=1 PARALLM_ATTN_PRE_PLAIN=1 "PARALLM_GEMV_WIDE=1 PARALLM_ATTN_PRE_PLAIN=1"; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16 2>&1 | tail -1 | sed "s/^/[7b ${v:-default}] /"
      done; done ;;
    s27-e)
      # The twenty-third session's final build (the plain decode attention's PRE form on by default; matmulGemv 8, 9):
      # every single-GPU test; 7B at 16 and 64 with and without the PRE form, two rounds; the decode figures; the
      # compiled-PyTorch peer at 7B batch 16 with parallm before and after it.
      timeout 430 vitest run test/gpu > "$out/gpu-s27e.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s27e.log" | head -30
      for r in 1 2; do for v in "" PARALLM_ATTN_PRE_PLAIN=0; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 16,64 2>&1 | tail -2 | sed "s/^/[7b ${v:-default}] /"
      done; done
      timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1,16 2>&1 | tail -2 | sed "s/^/[gpt2] /"
      timeout 40 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b] /"
      bash "$0" s26-j ;;
    s25-b)
      # Written in the twenty-first session for the next: where 7B's batch-1 step goes. The layer's four one-row
      # products alone (qkv 1x12288x4096, out 1x4096x4096, gate+up with SwiGLU 1x22016x4096, down 1x4096x11008;
      # 32 layers of them against the ~4.0 ms step), then decode without rope + KV write and/or attention
      # (PARALLM_DECODE_SKIP: timing only; it acts where they are two launches, so with the fused batch-1 launch
      # off, PARALLM_DECODE_FUSED_ATTN=0), alternating, three rounds.
      for r in 1 2; do
        timeout 90 node dist/cli/index.js bench kernels --filter "gemv 1x12288x4096" "gemv 1x4096x4096" "gemv 1x4096x11008" "gemv-swiglu 1x22016x4096" "gemv 1x22016x4096" 2>&1 | grep -E "^gemv" | sed "s/^/[k r$r] /"
      done
      for r in 1 2 3; do for v in "" PARALLM_DECODE_FUSED_ATTN=0 "PARALLM_DECODE_FUSED_ATTN=0 PARALLM_DECODE_SKIP=rope" "PARALLM_DECODE_FUSED_ATTN=0 PARALLM_DECODE_SKIP=attn" "PARALLM_DECODE_FUSED_ATTN=0 PARALLM_DECODE_SKIP=rope,attn"; do
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b b1 ${v:-default}] /"
      done; done ;;
    s24-b)
      # Twenty-first session: every single-GPU test with GEMV-xs on (it met the GEMV floor in s24-a: 94.6% of the
      # copy rate at 1x4096x4096), then 7B decode against compiled PyTorch at batch 1 and 16, parallm around the peer.
      PARALLM_GEMV_XS=1 timeout 290 vitest run test/gpu > "$out/gpu-s24b.log" 2>&1; echo "vitest (xs) rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s24b.log" | head -30
      PARALLM_GEMV_XS=1 timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b xs, before] /"
      for b in 1 16; do
        timeout 150 python3 bench/peers/torch_compile_decode.py llama $b > "$out/peer-s24b-$b.log" 2>&1; grep ANCHOR "$out/peer-s24b-$b.log" | cut -c1-200
      done
      PARALLM_GEMV_XS=1 timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b xs, after] /"
      timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1,16 2>&1 | tail -2 | sed "s/^/[7b default, after] /"
      PARALLM_GEMV_XS=1 timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" 2>&1 | grep -E "^gemv " | sed "s/^/[k xs] /" ;;
    s23-c)
      # Written in the nineteenth session for the next (branch wip/gemv-xs): the one-row GEMV with X's row in shared
      # memory and unroll 8 (PARALLM_GEMV_XS=1: twice the weight bytes in flight a warp at the same registers, 62-64
      # with the pre-wait pass; S22-3 left 1x4096x4096 at 81% of the copy rate under every other switch). Its GPU
      # tests (the GEMV kernels, and decode at batch 1 where qkv, out and down take it), then bench kernels and decode
      # at batch 1 with it and without, alternating.
      PARALLM_GEMV_XS=1 timeout 120 vitest run test/gpu/kernels.gpu.test.ts -t "GEMV|gemv" > "$out/gpu-s23c-k.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s23c-k.log" | head -20
      PARALLM_GEMV_XS=1 timeout 220 vitest run test/gpu/decode.gpu.test.ts > "$out/gpu-s23c.log" 2>&1; echo "vitest rc=$?"; grep -E "×|Test Files|Tests |Duration" "$out/gpu-s23c.log" | head -20
      for r in 1 2 3; do for v in "" PARALLM_GEMV_XS=1; do
        env $v timeout 60 node dist/cli/index.js bench kernels --filter "gemv 1x4096x4096" "gemv 1x11008x4096" "gemv 1x12288x4096" 2>&1 | grep -E "^gemv " | sed "s/^/[k ${v:-default}] /"
        env $v timeout 60 node dist/cli/index.js bench generate --model llama-2-7b --batch 1 2>&1 | tail -1 | sed "s/^/[7b ${v:-default}] /"
        env $v timeout 40 node dist/cli/index.js bench generate --model gpt2 --batch 1 2>&1 | tail -1 | sed "s/^/[gpt2 ${v:-default}] /"
      done; done ;;
    strategies) bash "$0" prefill curve dp pack ;;
    compare)
      # The build from before a restructuring (unpacked from .device/old.tgz: its dist/ and addon) against
      # this one, in the same call on the same GPUs, alternating: kernels, GPT-2 and LLaMA-2-7B decode, DP,
      # MP and PP prefill (8 micro-batches), PP decode at batch 256. Every figure goes to $out/cmp/*.json.
      mkdir -p "$out/cmp" /tmp/old && tar -xzf .device/old.tgz -C /tmp/old && ln -sfn "$PWD/node_modules" /tmp/old/node_modules
      for round in $(seq 1 ${ROUNDS:-1}); do for b in old new; do
        [ $b = old ] && cli=/tmp/old/dist/cli/index.js || cli=dist/cli/index.js
        j="$out/cmp/$b-r$round"
        timeout 150 node $cli bench kernels --quick --json "$j-kernels.json" > /dev/null 2>&1
        timeout 120 node $cli bench generate --model gpt2 --batch 1,16 --json "$j-gen-gpt2.json" > /dev/null 2>&1
        timeout 200 node $cli bench generate --model llama-2-7b --batch 1,16 --json "$j-gen-llama.json" > /dev/null 2>&1
        timeout 200 node $cli bench --model gpt2 --strategies single,dp --prompts 512 --batch 64 --json "$j-dp.json" > /dev/null 2>&1
        timeout 240 node $cli bench --model llama-2-7b --strategies mp,pp --batch 32 --prompt-tokens 512 --new-tokens 2 --micro-batches 8 --repeats 3 --json "$j-prefill.json" > /dev/null 2>&1
        timeout 240 node $cli bench --model llama-2-7b --strategies pp --batch 256 --prompt-tokens 128 --new-tokens 64 --micro-batches 2 --repeats 2 --json "$j-ppdecode.json" > /dev/null 2>&1
        echo "compare: $b round $round done"
      done; done
      node bench/compare-builds.mjs "$out/cmp" | tee "$out/compare.txt"
      tar -czf "$out/compare.tgz" -C "$out" cmp && rm -rf "$out/cmp" ;;
    *) echo "unknown part $p" ;;
  esac
done
