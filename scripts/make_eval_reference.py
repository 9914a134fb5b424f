#!/usr/bin/env python3
"""The independent reference of harman's evaluation scoring: PyTorch + transformers'
GPT2LMHeadModel (the weights of a `harman` export, see eval/tests/reference.rs) and
transformers' GPT2Tokenizer (GPT-2's encoder.json / vocab.bpe), with lm-evaluation-harness'
request building written again here in Python: `_encode_pair` (trailing whitespace moves to
the continuation; continuation ids = encode(context + continuation) after encode(context);
empty context = <|endoftext|>), the window of the last max_length + 1 ids, the sum of the
continuation's log-softmax, greedy = every continuation id is the argmax; multiple choice
`acc` = argmax Σ log p, `acc_norm` = argmax Σ log p / len(choice); rolling windows for raw
text and bits per byte = −Σ log p / (UTF-8 bytes · ln 2). Run once; writes
tests/data/eval/reference.json, which `scores_match_the_pytorch_reference` compares with.

  HARMAN_EVAL_MODEL_OUT=/tmp/m cargo test -p harman-eval --test reference -- --ignored
  python scripts/make_eval_reference.py /tmp/m tests/data/eval [ITEMS]

Needs torch and transformers (pip).
"""

import json
import math
import sys
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel, GPT2Tokenizer

torch.use_deterministic_algorithms(True)
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    model_dir, data = Path(sys.argv[1]), Path(sys.argv[2])
    items = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    model = GPT2LMHeadModel.from_pretrained(model_dir).float().eval()
    gpt2 = ROOT / "tokenizer" / "data" / "gpt2"
    tok = GPT2Tokenizer(vocab=str(gpt2 / "encoder.json"), merges=str(gpt2 / "vocab.bpe"))
    assert tok.encode("Hello world") == [15496, 995], "GPT-2 vocabulary not loaded"
    eot = 50256
    max_len = model.config.n_positions

    def enc(s):
        return tok.encode(s)

    def encode_pair(context, continuation):
        if context == "":
            return [eot], enc(continuation)
        n = len(context) - len(context.rstrip())
        if n > 0:
            continuation = context[-n:] + continuation
            context = context[:-n]
        whole = enc(context + continuation)
        ctx = enc(context)
        return ctx, whole[len(ctx):]

    @torch.no_grad()
    def loglik(context, continuation):
        ctx, cont = encode_pair(context, continuation)
        ids = (ctx + cont)[-(max_len + 1):][:-1]
        logits = model(torch.tensor([ids])).logits[0].double()
        cont = cont[-len(ids):]  # a continuation longer than the window: its last ids
        logp = torch.log_softmax(logits, dim=-1)[-len(cont):]
        target = torch.tensor(cont)
        ll = logp.gather(1, target[:, None]).sum().item()
        greedy = bool((logp.argmax(dim=-1) == target).all())
        return ll, greedy

    def jsonl(name):
        return [json.loads(l) for l in (data / name).read_text().splitlines() if l.strip()][:items]

    out = {"items": items, "torch": torch.__version__}

    def mc(rows, context_of, choices_of, answer_of):
        lls, acc, acc_norm = [], 0, 0
        for r in rows:
            ctx, choices = context_of(r), choices_of(r)
            ll = [loglik(ctx, " " + c)[0] for c in choices]
            norm = [l / len(c) for l, c in zip(ll, choices)]
            acc += int(max(range(len(ll)), key=lambda i: (ll[i], -i)) == answer_of(r))
            acc_norm += int(max(range(len(norm)), key=lambda i: (norm[i], -i)) == answer_of(r))
            lls.append(ll)
        return {"lls": lls, "acc": acc / len(rows), "acc_norm": acc_norm / len(rows)}

    out["hellaswag"] = mc(jsonl("hellaswag_sample.jsonl"), lambda r: r["ctx"],
                          lambda r: r["endings"], lambda r: int(r["label"]))
    out["mc"] = mc(jsonl("mc_sample.jsonl"), lambda r: f"Question: {r['question']}\nAnswer:",
                   lambda r: r["choices"], lambda r: "ABCD".index(r["answer"]))
    lls, greedy = [], []
    docs = [r["text"] for r in jsonl("lambada_sample.jsonl")]
    for text in docs:
        ctx, word = text.rsplit(" ", 1)
        ll, g = loglik(ctx, " " + word)
        lls.append(ll)
        greedy.append(g)
    out["lambada"] = {"lls": lls, "greedy": greedy}
    # Rolling windows over each document after <|endoftext|>: every token predicted once.
    nll, tokens, nbytes = 0.0, 0, 0
    with torch.no_grad():
        for text in docs:
            all_ids = [eot] + enc(text)
            s = 1
            while s < len(all_ids):
                e = min(s + max_len, len(all_ids))
                w0 = max(0, e - 1 - max_len)
                logits = model(torch.tensor([all_ids[w0:e - 1]])).logits[0].double()
                logp = torch.log_softmax(logits, dim=-1)
                for j in range(s, e):
                    nll -= logp[j - 1 - w0, all_ids[j]].item()
                    tokens += 1
                s = e
            nbytes += len(text.encode("utf-8"))
    out["text"] = {"tokens": tokens, "bytes": nbytes, "loss": nll / tokens,
                   "bits_per_byte": nll / (nbytes * math.log(2))}
    (data / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"hellaswag acc {out['hellaswag']['acc']:.3f}, mc acc {out['mc']['acc']:.3f}, "
          f"lambada greedy {sum(greedy)}/{len(greedy)}, bpb {out['text']['bits_per_byte']:.4f}")


if __name__ == "__main__":
    main()
