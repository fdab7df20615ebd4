"""PyTorch peer for the pipeline-prefill floor: LLaMA-2-7B shape split 16 + 16 layers over cuda:0 and
cuda:1 (on one GPU only the single lines), prefill of 32 prompts x 512 tokens, the same work three ways:
  single  all 32 layers on cuda:0;
  mp      stage 0 runs all 32 prompts, then stage 1 (the seed's model parallelism);
  pp      8 micro-batches of 4 prompts in the clock-cycle schedule: at clock k stage 0 runs
          micro-batch k while stage 1 runs k - 1 (launches are asynchronous, so both GPUs overlap).
cuBLAS GEMMs, SDPA's default attention (and cuDNN's, on one GPU), fused qkv and gate+up weights, random bf16 weights.
Also, with 'sustain': one 2048 x 22016 x 4096 GEMM (a micro-batch's gate+up) back to back for 2 s on
one GPU and then on both at once, its TFLOP/s in the first 50 ms against the last second.
Prints 'ANCHOR {json}' lines. Usage: python3 torch_pp_prefill.py [prefill] [sustain]"""
import json, sys, time
import torch
import torch.nn.functional as F

def emit(**kw): print("ANCHOR " + json.dumps(kw), flush=True)

D, H, FFN, LAYERS, VOCAB = 4096, 32, 11008, 32, 32000

def stage(dev, layers, seed):
    g = torch.Generator(device=dev).manual_seed(seed)
    r = lambda *s: (torch.randn(*s, device=dev, generator=g) * 0.02).to(torch.bfloat16)
    one = lambda: torch.ones(D, device=dev, dtype=torch.bfloat16)
    return [dict(wqkv=r(3 * D, D), wo=r(D, D), w13=r(2 * FFN, D), w2=r(D, FFN), n1=one(), n2=one()) for _ in range(layers)]

def rms(x, w): return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w

def rope_tables(T, dev):
    hd = D // H
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=dev).float() / hd))
    ang = torch.arange(T, device=dev).float()[:, None] * inv[None]
    return ang.cos().to(torch.bfloat16), ang.sin().to(torch.bfloat16)

def rope(x, cs):  # x [B, H, T, hd]
    c, s = cs
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)

def run_layers(L, x, cs):
    B, T, _ = x.shape; hd = D // H
    for l in L:
        h = rms(x, l["n1"])
        q, k, v = (h @ l["wqkv"].t()).split(D, -1)
        q = rope(q.view(B, T, H, hd).transpose(1, 2), cs); k = rope(k.view(B, T, H, hd).transpose(1, 2), cs)
        v = v.view(B, T, H, hd).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + a.transpose(1, 2).reshape(B, T, D) @ l["wo"].t()
        g_, u = (rms(x, l["n2"]) @ l["w13"].t()).split(FFN, -1)
        x = x + (F.silu(g_) * u) @ l["w2"].t()
    return x

def sync(): [torch.cuda.synchronize(d) for d in range(torch.cuda.device_count())]

def timed(fn, warmup=2, repeats=5):
    for _ in range(warmup): fn()
    sync(); ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t0)
    ts.sort(); return ts[len(ts) // 2]

@torch.no_grad()
def prefill(batch=32, T=512, micro=8):
    # With one GPU only the 'single' lines (stage 1's layers made on cuda:0).
    two = torch.cuda.device_count() > 1
    d1 = "cuda:1" if two else "cuda:0"
    s0, s1 = stage("cuda:0", LAYERS // 2, 1), stage(d1, LAYERS // 2, 2)
    cs0, cs1 = rope_tables(T, "cuda:0"), rope_tables(T, d1)
    emb = (torch.randn(VOCAB, D, device="cuda:0") * 0.02).to(torch.bfloat16)
    ids = torch.randint(0, VOCAB, (batch, T), device="cuda:0")
    def mp():
        x = run_layers(s0, emb[ids], cs0)
        return run_layers(s1, x.to(d1, non_blocking=True), cs1)
    def pp():
        mb = batch // micro; outs = []; pending = None
        for k in range(micro + 1):  # clock k: stage 0 takes micro-batch k, stage 1 takes k - 1
            nxt = run_layers(s0, emb[ids[k * mb:(k + 1) * mb]], cs0) if k < micro else None
            if pending is not None: outs.append(run_layers(s1, pending.to(d1, non_blocking=True), cs1))
            pending = nxt
        return outs
    tok = batch * T
    if two:
        t_mp = timed(mp); t_pp = timed(pp)
        emit(what="torch_prefill", strategy="mp", batch=batch, prompt=T, ms=t_mp * 1e3, tok_s=tok / t_mp)
        emit(what="torch_prefill", strategy="pp", batch=batch, prompt=T, micro=micro, ms=t_pp * 1e3, tok_s=tok / t_pp,
             pp_over_mp=t_mp / t_pp)
    s1b = [{k: v.to("cuda:0") for k, v in l.items()} for l in s1]
    t_1 = timed(lambda: run_layers(s1b, run_layers(s0, emb[ids], cs0), cs0))
    emit(what="torch_prefill", strategy="single", sdpa="default", batch=batch, prompt=T, ms=t_1 * 1e3, tok_s=tok / t_1)
    # The same on one GPU with SDPA held to its cuDNN backend (the fastest causal attention on Hopper in
    # attn_peers.py), so the one-GPU peer is cuBLAS + the best SDPA.
    try:
        from torch.nn.attention import sdpa_kernel, SDPBackend
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            t_c = timed(lambda: run_layers(s1b, run_layers(s0, emb[ids], cs0), cs0))
        emit(what="torch_prefill", strategy="single", sdpa="cudnn", batch=batch, prompt=T, ms=t_c * 1e3, tok_s=tok / t_c)
    except Exception as e:  # an older torch without the cuDNN backend
        emit(what="torch_prefill", strategy="single", sdpa="cudnn", error=str(e)[:200])

@torch.no_grad()
def sustain(M=2048, N=2 * FFN, K=D, seconds=2.0):
    devs = [d for d in range(min(2, torch.cuda.device_count()))]
    ops = {d: (torch.randn(M, K, device=f"cuda:{d}").bfloat16(), torch.randn(N, K, device=f"cuda:{d}").bfloat16()) for d in devs}
    flop = 2 * M * N * K
    for load in ([devs[0]], devs) if len(devs) > 1 else ([devs[0]],):
        sync(); time.sleep(1.0)  # start cool
        evs = {d: [] for d in load}; t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for d in load:
                with torch.cuda.device(d):
                    a, b = ops[d]
                    for _ in range(10): a @ b.t()
                    e = torch.cuda.Event(enable_timing=True); e.record(); evs[d].append(e)
            if len(evs[load[0]]) % 20 == 0: sync()  # keep the host at most ~20 records ahead
        sync()
        for d in load:
            es = evs[d]; t = [0.0]
            for a, b in zip(es, es[1:]): t.append(t[-1] + a.elapsed_time(b))
            rate = lambda i, j: 10 * (j - i) * flop / ((t[j] - t[i]) / 1e3) / 1e12
            first = next(i for i, x in enumerate(t) if x >= 50)
            last = next(i for i, x in enumerate(t) if x >= t[-1] - 1000)
            emit(what="torch_gemm_sustained", shape=f"{M}x{N}x{K} B^T", device=d, loaded=len(load),
                 tflops_first_50ms=rate(0, first), tflops_last_1s=rate(last, len(t) - 1))

if __name__ == "__main__":
    parts = sys.argv[1:] or ["prefill"]
    if "prefill" in parts: prefill()
    if "sustain" in parts: sustain()
