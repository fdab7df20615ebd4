"""Decode-kernel peers on one GPU, timed as `parallm bench kernels` times its GEMV and decode-attention
cases: a CUDA graph of 24 back-to-back calls (inputs rotating among 3 copies when one would sit in L2),
replayed; the median of 30 replays, divided by 24. bf16, random inputs (never zeros).
  gemv: y = x W^T through cuBLAS (torch.mm) at M = 1 and 16 on LLaMA-7B's projection shapes, each next to a
        device-to-device copy of the weight bytes (read + written), the ceiling parallm's table sets beside
        its own GEMV;
  attn: one query per sequence over a long KV cache: F.scaled_dot_product_attention (the backend PyTorch
        picks; grouped heads through enable_gqa), and flash_attn_with_kvcache (FlashAttention's
        flash-decoding) when the flash_attn package is installed.
Usage: python3 decode_peers.py [gemv|attn|both]. Prints 'ANCHOR {json}' lines."""
import json
import sys

import torch
import torch.nn.functional as F

CALLS = 24


def emit(**kw):
    print("ANCHOR " + json.dumps(kw), flush=True)


def graph_ms(fns):
    """Median ms of one call: fns[i % len(fns)] for i < CALLS captured in one graph, replayed."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:
            f()  # warm-up outside the capture (handles, workspaces)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(CALLS):
            fns[i % len(fns)]()
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(30):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) / CALLS)
    ts.sort()
    return ts[len(ts) // 2]


def rnd(*shape):
    return torch.rand(*shape, device="cuda", dtype=torch.bfloat16) * 2 - 1


def gemv():
    for m in (1, 16):
        for n, k in ((4096, 4096), (11008, 4096), (4096, 11008), (12288, 4096), (22016, 4096)):
            nbytes = n * k * 2
            copies = 3 if nbytes < 192 << 20 else 1  # a copy alone several times L2, else rotate
            x = rnd(m, k)
            ws = [rnd(n, k) for _ in range(copies)]
            out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            ms = graph_ms([lambda w=w: torch.mm(x, w.t(), out=out) for w in ws])
            pairs = 3 if 2 * nbytes < 192 << 20 else 1
            src = [torch.empty(nbytes, device="cuda", dtype=torch.uint8) for _ in range(pairs)]
            dst = [torch.empty(nbytes, device="cuda", dtype=torch.uint8) for _ in range(pairs)]
            cms = graph_ms([lambda a=a, b=b: b.copy_(a) for a, b in zip(src, dst)])
            gbps, cgbps = nbytes / ms / 1e6, 2 * nbytes / cms / 1e6
            emit(what="gemv", peer="cublas", m=m, n=n, k=k, ms=round(ms, 5), gbps=round(gbps, 1),
                 copy_gbps=round(cgbps, 1), of_copy=round(gbps / cgbps, 4))
            del x, ws, out, src, dst
            torch.cuda.empty_cache()


def attn():
    try:
        from flash_attn import flash_attn_with_kvcache
    except Exception as ex:  # not installed on every image
        flash_attn_with_kvcache = None
        emit(what="decode_attention", peer="flash_attn", error=str(ex)[:120])
    for b, h, hkv, length, d in ((1, 32, 32, 2048, 128), (16, 32, 32, 2048, 128), (128, 32, 32, 160, 128),
                                 (1, 32, 32, 8192, 128), (1, 32, 32, 32768, 128), (1, 32, 8, 8192, 128),
                                 (4, 32, 8, 16384, 128)):
        nbytes = 2 * b * length * hkv * d * 2
        copies = 3 if nbytes < 192 << 20 else 1  # a copy alone several times L2, else rotate
        q = rnd(b, h, 1, d)
        kv = [(rnd(b, hkv, length, d), rnd(b, hkv, length, d)) for _ in range(copies)]
        try:
            ms = graph_ms([lambda k=k, v=v: F.scaled_dot_product_attention(q, k, v, enable_gqa=hkv != h) for k, v in kv])
            emit(what="decode_attention", peer="sdpa", b=b, h=h, hkv=hkv, len=length, d=d, ms=round(ms, 5),
                 gbps=round(nbytes / ms / 1e6, 1))
        except Exception as ex:
            emit(what="decode_attention", peer="sdpa", b=b, h=h, hkv=hkv, len=length, d=d, error=str(ex)[:120])
        if flash_attn_with_kvcache is not None:
            qf = rnd(b, 1, h, d)
            caches = [(rnd(b, length, hkv, d), rnd(b, length, hkv, d)) for _ in range(copies)]
            lens = torch.full((b,), length, device="cuda", dtype=torch.int32)
            try:
                ms = graph_ms([lambda k=k, v=v: flash_attn_with_kvcache(qf, k, v, cache_seqlens=lens) for k, v in caches])
                emit(what="decode_attention", peer="flash_attn", b=b, h=h, hkv=hkv, len=length, d=d, ms=round(ms, 5),
                     gbps=round(nbytes / ms / 1e6, 1))
            except Exception as ex:
                emit(what="decode_attention", peer="flash_attn", b=b, h=h, hkv=hkv, len=length, d=d, error=str(ex)[:120])
            del qf, caches
        del q, kv
        torch.cuda.empty_cache()


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    emit(what="device", name=torch.cuda.get_device_name(), torch=torch.__version__)
    if which in ("gemv", "both"):
        gemv()
    if which in ("attn", "both"):
        attn()
