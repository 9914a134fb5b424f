#!/usr/bin/env python3
"""Hugging Face `tokenizers` BpeTrainer on the same data and settings as
`harman train-tokenizer` (byte-level, GPT-2 pre-tokenization, <|endoftext|>, min_frequency 2),
for the side-by-side training time in BENCHMARKS.md, and how many of its merges harman's
trainer also learned.

  python scripts/bench_train_tokenizer_hf.py CORPUS.jsonl.zst VOCAB [harman-tokenizer.json]
"""

import io
import json
import sys
import time

import zstandard
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

path, vocab = sys.argv[1], int(sys.argv[2])
raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))
docs = [json.loads(l)["text"] for l in io.TextIOWrapper(raw, encoding="utf-8")]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
trainer = trainers.BpeTrainer(
    vocab_size=vocab,
    min_frequency=2,
    special_tokens=["<|endoftext|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
)
t0 = time.perf_counter()
c0 = time.process_time()
tok.train_from_iterator(docs, trainer)
print(f"tokenizers BpeTrainer vocab {tok.get_vocab_size()}: {time.perf_counter() - t0:.2f} s wall, "
      f"{time.process_time() - c0:.2f} s CPU")
if len(sys.argv) > 3:
    theirs = json.loads(tok.to_str())["model"]["merges"]
    ours = json.load(open(sys.argv[3]))["model"]["merges"]
    norm = lambda ms: {tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in ms}
    a, b = norm(ours), norm(theirs)
    print(f"merges: harman {len(a)}, tokenizers {len(b)}, common {len(a & b)}")
