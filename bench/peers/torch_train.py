"""The seed's training recipe in PyTorch on one GPU, the peer of `parallm bench train`: HF GPT2LMHeadModel
(124M, random init), AdamW (fused), bf16 autocast, cross-entropy over the logits in f32, random token
batches. Prints one ANCHOR line (JSON) per shape with tokens/s, ms/step and peak memory.
Usage: python3 bench/peers/torch_train.py [BATCHxSEQ ...]   (default 128x128 16x1024)"""
import json, sys, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel

shapes = [tuple(int(x) for x in s.split("x")) for s in (sys.argv[1:] or ["128x128", "16x1024"])]
torch.manual_seed(0)
dev = "cuda:0"
for batch, seq in shapes:
    model = GPT2LMHeadModel(GPT2Config()).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, 50257, (batch, seq), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids.reshape(-1))
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    steps = 20
    t0 = time.time()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    t = (time.time() - t0) / steps
    print("ANCHOR " + json.dumps({"what": "torch_gpt2_train", "batch": batch, "seq": seq, "ms_per_step": t * 1e3,
                                  "tok_s": batch * seq / t, "peak_bytes": torch.cuda.max_memory_allocated()}), flush=True)
    del model, opt
    torch.cuda.empty_cache()
