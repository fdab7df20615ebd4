"""The seed's data-parallel recipe in PyTorch, the peer of `parallm bench train --strategies dp`: one process
per GPU (torch.multiprocessing), torch.distributed over NCCL, HF GPT2LMHeadModel (124M, random init, the
same on every rank), bf16 autocast, cross-entropy in f32, and after each backward every gradient
all-reduced (sum) and divided by the world size (the seed's average_gradients), then AdamW (fused).
Random token batches. Prints one ANCHOR line (JSON) per world size with the global tokens/s.
Usage: python3 bench/peers/torch_dp_train.py [--strong] [--steps N] [BATCHxSEQ]   (default 128x128, weak
scaling: BATCH per GPU; --strong: BATCH is the global batch, split over the GPUs). World sizes 1 and all GPUs."""
import json, os, sys, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import GPT2Config, GPT2LMHeadModel

strong = "--strong" in sys.argv
steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 20
args = [a for a in sys.argv[1:] if "x" in a and not a.startswith("--")]
batch, seq = (int(x) for x in (args[0] if args else "128x128").split("x"))


def run(rank, world, port, q):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    dev = f"cuda:{rank}"
    torch.manual_seed(0)  # the same init on every rank
    model = GPT2LMHeadModel(GPT2Config()).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    b = batch // world if strong else batch
    g = torch.Generator(device=dev).manual_seed(1 + rank)
    ids = torch.randint(0, 50257, (b, seq), device=dev, generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids.reshape(-1))
        loss.backward()
        if world > 1:
            for p in model.parameters():  # the seed's average_gradients
                dist.all_reduce(p.grad.data, op=dist.ReduceOp.SUM)
                p.grad.data /= world
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    dist.barrier()
    t0 = time.time()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dist.barrier()
    t = (time.time() - t0) / steps
    if rank == 0:
        q.put({"what": "torch_gpt2_dp_train", "world": world, "scaling": "strong" if strong else "weak", "batch_per_gpu": b, "seq": seq,
               "ms_per_step": t * 1e3, "tok_s": b * world * seq / t, "peak_bytes": torch.cuda.max_memory_allocated()})
    dist.destroy_process_group()


if __name__ == "__main__":
    n = torch.cuda.device_count()
    ctx = mp.get_context("spawn")
    for world in sorted({1, n}):
        q = ctx.Queue()
        ps = [ctx.Process(target=run, args=(r, world, 29500 + world, q)) for r in range(world)]
        for p in ps:
            p.start()
        res = q.get(timeout=600)
        for p in ps:
            p.join()
        print("ANCHOR " + json.dumps(res), flush=True)
