#!/usr/bin/env bash
# Build and run the host emulation of the Hopper matmul tiles and prefill attention, the attention kernels, the
# pipelined GEMV, the training kernels and the persistent decode layer
# (emu.h; no GPU needed): copies the kernel headers of native/cuda beside this directory's stand-in
# mma_ptx.cuh (inline PTX cannot run on a CPU; the one other asm, ex2.approx, becomes exp2f), compiles
# with g++ and the CUDA headers, runs.
#   bash native/cuda/emu/run.sh [kernels|training|tiles|attention]   (a few minutes on 2 cores; `kernels`: skip the
#   attention and tiles stages; `training`: only the stage of the .cu files rewritten by rewrite.py, as
#   test/unit/kernels-emu.test.ts runs it; `tiles`: only the Hopper matmul tiles and prefill attention, as
#   test/unit/tiles-emu.test.ts does; `attention`: only the mma.sync prefill and the attention backward kernels, as
#   test/unit/attention-emu.test.ts does)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cuda=${CUDA_HOME:-/usr/local/cuda}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ex2.approx as exp2f in the files given (the one asm the kernels' arithmetic uses).
ex2_as_exp2f() {
  perl -0pi -e 's/float y;\s*asm\("ex2\.approx\.ftz\.f32 %0, %1;" : "=f"\(y\) : "f"\(x\)\);\s*return y;/return exp2f(x);/' "$@"
}
# The PTX-only asm statements of the sm90 kernels given (fences, wgmma fence / commit / wait, setmaxnreg, the empty
# asm that pins accumulators: ordering and register hints the emulation has no use for) as empty statements; any
# other asm left is an error.
strip_ptx() {
  perl -0pi -e 's/asm volatile\("(?:fence|wgmma|setmaxnreg)\.[^"]*"(?:\s*:::\s*"memory")?\);/;/g;
                s/asm volatile\(""\s*:\s*"\+f"\([^;]*?\)\s*::\s*"memory"\);/;/g' "$@"
  if grep -n 'asm volatile("[^"]' "$@"; then
    echo "run.sh: a PTX asm statement above has no emulated form" >&2; exit 1
  fi
}

# The Hopper matmul tiles (matmul_sm90.cuh, matmul_sm90_wtile.cuh), then the Hopper prefill attention, beside the
# stand-ins sm90_common.cuh and matmul_wgmma_op.cuh, their PTX-only asm stripped (strip_ptx). `tiles`: only this
# stage.
if [ -z "${1:-}" ] || [ "${1:-}" = tiles ]; then
  mkdir -p "$tmp"/t
  cp "$here"/../matmul_sm90.cuh "$here"/../matmul_sm90_wtile.cuh "$here"/../matmul_common.cuh "$here"/../common.cuh \
     "$here"/../pdl.cuh "$here"/emu.h "$here"/sm90_common.cuh "$here"/matmul_wgmma_op.cuh "$here"/tiles_emu.cc "$tmp"/t/
  strip_ptx "$tmp"/t/matmul_sm90.cuh "$tmp"/t/matmul_sm90_wtile.cuh
  g++ -std=c++20 -O2 -pthread -Wno-psabi -I"$cuda"/include -I"$tmp"/t "$tmp"/t/tiles_emu.cc -o "$tmp"/t/tiles_emu
  "$tmp"/t/tiles_emu
  # The Hopper prefill attention: its PTX helpers (the wgmmas, the ping-pong's named barriers, the predicated
  # arrival) spliced out for attn90_ops_emu.h and attn90_sync_emu.h; its launch and shared array as rewrite.py
  # makes them; ex2 as exp2f.
  mkdir -p "$tmp"/a/cuda
  ln -s "$here"/../../core "$tmp"/a/core
  cp "$here"/../attention_prefill_sm90.cuh "$here"/../attention_prefill_mma.cuh "$here"/../common.cuh "$here"/../pdl.cuh \
     "$here"/../check.h "$here"/../device_attr.cuh "$here"/emu.h "$here"/sm90_common.cuh "$here"/matmul_wgmma_op.cuh \
     "$here"/mma_ptx.cuh "$here"/attention_ref.h "$here"/attn90_ops_emu.h "$here"/attn90_sync_emu.h "$here"/attn90_emu.cc \
     "$here"/cuda_stubs.cc "$tmp"/a/cuda/
  cd "$tmp"/a/cuda
  ex2_as_exp2f attention_prefill_mma.cuh
  perl -0pi -e 's{// The wgmma shapes this kernel uses.*?\n(#endif\n\n// A consumer.s online softmax)}{#include "attn90_ops_emu.h"\n$1}s or die "run.sh: the wgmma helpers were not found\n";
                s{(constexpr int kPpBar = 8;\n).*?void mbar_arrive_if\(.*?\n\}\n}{$1#include "attn90_sync_emu.h"\n}s or die "run.sh: the ping-pong helpers were not found\n";' attention_prefill_sm90.cuh
  python3 "$here"/rewrite.py attention_prefill_sm90.cuh attention_prefill_sm90.cuh
  strip_ptx attention_prefill_sm90.cuh
  g++ -std=c++20 -O2 -pthread -Wno-psabi -I"$cuda"/include -I. attn90_emu.cc cuda_stubs.cc -o attn90_emu
  ./attn90_emu
  cd "$here"
  [ "${1:-}" = tiles ] && exit 0
fi
cp "$here"/../attention_prefill_mma.cuh "$here"/../attention_backward_mma.cuh "$here"/../attention_backward.cuh \
   "$here"/../common.cuh "$here"/../pdl.cuh "$here"/emu.h "$here"/mma_ptx.cuh "$here"/attention_ref.h "$here"/attention_emu.cc "$tmp"/
ex2_as_exp2f "$tmp"/attention_prefill_mma.cuh
grep -q 'return exp2f(x);' "$tmp"/attention_prefill_mma.cuh || { echo "run.sh: ex2 patch did not apply" >&2; exit 1; }
if [ -z "${1:-}" ] || [ "${1:-}" = attention ]; then
  g++ -std=c++20 -O2 -pthread -I"$cuda"/include -include "$tmp"/emu.h -I"$tmp" "$tmp"/attention_emu.cc -o "$tmp"/attention_emu
  "$tmp"/attention_emu
  [ "${1:-}" = attention ] && exit 0
fi

# The pipelined GEMV (matmul_gemv.cuh) beside the stand-in mma_ptx.cuh.
if [ "${1:-}" != training ]; then
  cp "$here"/../matmul_gemv.cuh "$here"/../matmul_common.cuh "$here"/gemv_emu.cc "$tmp"/
  g++ -std=c++20 -O2 -pthread -I"$cuda"/include -I"$tmp" "$tmp"/gemv_emu.cc -o "$tmp"/gemv_emu
  "$tmp"/gemv_emu
fi

# The other training kernels: their .cu files (and reduce.cuh) with launches rewritten (rewrite.py).
mkdir -p "$tmp"/k/cuda
ln -s "$here"/../../core "$tmp"/k/core
cp "$here"/../check.h "$here"/../common.cuh "$here"/../pdl.cuh "$here"/../kernels.h "$here"/../rope_common.cuh "$here"/../workspace.h \
   "$here"/launch.cuh "$tmp"/k/cuda/
python3 "$here"/rewrite.py "$here"/../reduce.cuh "$tmp"/k/cuda/reduce.cuh
objs=()
pids=()
cp "$tmp"/attention_prefill_mma.cuh "$tmp"/attention_backward_mma.cuh "$tmp"/attention_backward.cuh "$here"/mma_ptx.cuh "$here"/emu.h \
   "$tmp"/k/cuda/  # (the patched copies, and the stand-in mma_ptx.cuh)
for f in norm elementwise activation rope kvcache embedding classifier optimizer softmax attention; do
  python3 "$here"/rewrite.py "$here"/../$f.cu "$tmp"/k/cuda/$f.cc
  ex2_as_exp2f "$tmp"/k/cuda/$f.cc
  # (-fno-strict-aliasing: kernels read packed registers through element pointers, as nvcc allows)
  g++ -std=c++20 -O2 -fno-strict-aliasing -pthread -w -I"$cuda"/include -include "$tmp"/k/cuda/emu.h -c "$tmp"/k/cuda/$f.cc -o "$tmp"/k/$f.o &
  pids+=($!)
  objs+=("$tmp"/k/$f.o)
done
for p in "${pids[@]}"; do wait "$p" || { echo "run.sh: a kernel file did not compile" >&2; exit 1; }; done
g++ -std=c++20 -O2 -pthread -I"$cuda"/include -I"$tmp"/k/cuda -I"$here" "$here"/kernels_emu.cc "$here"/cuda_stubs.cc "${objs[@]}" \
  -o "$tmp"/kernels_emu
"$tmp"/kernels_emu

# The persistent decode-layer kernel (decode_layer.cu): a cooperative launch, its blocks all at once.
[ "${1:-}" = training ] && exit 0
mkdir -p "$tmp"/dl/cuda
ln -s "$here"/../../core "$tmp"/dl/core
cp "$here"/../check.h "$here"/../common.cuh "$here"/../pdl.cuh "$here"/../kernels.h "$here"/../workspace.h "$here"/launch.cuh \
   "$here"/emu.h "$here"/decode_layer_emu.cc "$here"/cuda_stubs.cc "$tmp"/dl/cuda/
cp "$here"/../decode_layer.cu "$tmp"/dl/cuda/decode_layer.cc
g++ -std=c++20 -O2 -fno-strict-aliasing -pthread -w -I"$cuda"/include -include "$tmp"/dl/cuda/emu.h -I"$tmp"/dl/cuda \
  "$tmp"/dl/cuda/decode_layer.cc "$tmp"/dl/cuda/decode_layer_emu.cc "$tmp"/dl/cuda/cuda_stubs.cc -o "$tmp"/decode_layer_emu
"$tmp"/decode_layer_emu
