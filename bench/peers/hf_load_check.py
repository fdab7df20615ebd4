"""Load checkpoints written by parallm (bench/probes/hf-roundtrip.mjs) with transformers' from_pretrained,
and compare the logits transformers computes (float64) with parallm's. Prints one ANCHOR line per model.
Usage: python3 bench/peers/hf_load_check.py <folder written by hf-roundtrip.mjs>"""
import json, os, sys
import torch
from transformers import AutoModelForCausalLM

root = sys.argv[1]
for name in ["gpt2", "llama"]:
    folder = os.path.join(root, name)
    model = AutoModelForCausalLM.from_pretrained(folder).double().eval()
    ref = json.load(open(os.path.join(root, f"{name}-logits.json")))
    with torch.no_grad():
        logits = model(torch.tensor([ref["prompt"]])).logits[0].reshape(-1)
    mine = torch.tensor(ref["logits"], dtype=torch.float64)
    rel = ((logits - mine).abs().max() / logits.abs().max()).item()
    print(f"ANCHOR hf_load {name}: {type(model).__name__} loaded from parallm's checkpoint; "
          f"max |logit difference| / max |logit| = {rel:.2e} over {mine.numel()} logits")
