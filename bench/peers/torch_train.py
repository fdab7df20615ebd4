"""The seed's training recipe in PyTorch on one GPU, the peer of `parallm bench train`: HF GPT2LMHeadModel
(124M, random init) or, with `--llama-1b`, LlamaForCausalLM at parallm's llama-1b preset shape
(TinyLlama-1.1B's), AdamW (fused), bf16 autocast, cross-entropy over the logits in f32, random token
batches. Prints one ANCHOR line (JSON) per shape with tokens/s, ms/step and peak memory.
Usage: python3 bench/peers/torch_train.py [--llama-1b] [BATCHxSEQ ...]   (default 128x128 16x1024)"""
import json, sys, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel

llama = "--llama-1b" in sys.argv
args = [a for a in sys.argv[1:] if not a.startswith("--")]
shapes = [tuple(int(x) for x in s.split("x")) for s in (args or ["128x128", "16x1024"])]


def make_model():
    if not llama:
        return GPT2LMHeadModel(GPT2Config()), 50257
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)
    return LlamaForCausalLM(cfg), 32000

torch.manual_seed(0)
dev = "cuda:0"
for batch, seq in shapes:
    model, vocab = make_model()
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, vocab, (batch, seq), device=dev)

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
    print("ANCHOR " + json.dumps({"what": "torch_llama1b_train" if llama else "torch_gpt2_train", "batch": batch, "seq": seq, "ms_per_step": t * 1e3,
                                  "tok_s": batch * seq / t, "peak_bytes": torch.cuda.max_memory_allocated()}), flush=True)
    del model, opt
    torch.cuda.empty_cache()
