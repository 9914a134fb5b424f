#!/usr/bin/env python3
"""Peer of `harman bench eval`: the same HellaSwag log-likelihood requests (lm-evaluation-
harness' construction: context, " " + ending; the last max_seq_len ids) scored by PyTorch +
transformers' GPT2LMHeadModel on the CPU, batches of right-padded sequences, for a model of
the same shape with random weights. Prints items/s.

  python scripts/bench_eval_hf.py ITEMS.jsonl[.gz] [--layers 4 --heads 4 --channels 256
      --positions 64 --items 40 --batch 8 --threads 2]
"""
import argparse
import gzip
import json
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

ROOT = Path(__file__).resolve().parent.parent

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--channels", type=int, default=256)
ap.add_argument("--positions", type=int, default=64)
ap.add_argument("--items", type=int, default=40)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
gpt2 = ROOT / "tokenizer" / "data" / "gpt2"
tok = GPT2Tokenizer(vocab=str(gpt2 / "encoder.json"), merges=str(gpt2 / "vocab.bpe"))
opener = gzip.open if a.path.endswith(".gz") else open
items = [json.loads(l) for l in opener(a.path, "rt")][: a.items]
model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=a.positions, n_embd=a.channels,
                                   n_layer=a.layers, n_head=a.heads)).eval()
reqs = []
for it in items:
    for e in it["endings"]:
        ctx = tok.encode(it["ctx"])
        whole = tok.encode(it["ctx"] + " " + e)
        ids = whole[-(a.positions + 1):]
        reqs.append((ids[:-1], ids[1:], len(whole) - len(ctx)))
t0 = time.perf_counter()
with torch.no_grad():
    order = sorted(range(len(reqs)), key=lambda i: -len(reqs[i][0]))
    for s in range(0, len(order), a.batch):
        chunk = [reqs[i] for i in order[s:s + a.batch]]
        t = len(chunk[0][0])
        x = torch.full((len(chunk), t), 50256)
        for r, (inp, _, _) in enumerate(chunk):
            x[r, :len(inp)] = torch.tensor(inp)
        logp = torch.log_softmax(model(x).logits.float(), dim=-1)
        for r, (inp, tgt, n) in enumerate(chunk):
            n = min(n, len(tgt))
            pos = torch.arange(len(tgt) - n, len(tgt))
            logp[r, pos, torch.tensor(tgt[-n:])].sum().item()
dt = time.perf_counter() - t0
print(f"torch {torch.__version__} {a.threads} threads: {len(items) / dt:.2f} items/s ({dt:.1f} s for {len(items)} items)")
